"""PCA and K-means against scikit-learn and against exact answers on small problems."""

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans as SkKMeans
from sklearn.decomposition import PCA as SkPCA

from unsuplab.models.baselines import PCA, KMeans, pairwise_sq_dists


@pytest.fixture
def correlated():
    g = torch.Generator().manual_seed(0)
    return torch.randn(500, 8, generator=g) @ torch.randn(8, 8, generator=g) + 2.0


def test_pca_matches_sklearn(correlated):
    ours = PCA(4).fit(correlated)
    ref = SkPCA(4).fit(correlated.numpy())
    np.testing.assert_allclose(ours.explained_variance_.numpy(), ref.explained_variance_, rtol=1e-4)
    np.testing.assert_allclose(ours.explained_variance_ratio_.numpy(), ref.explained_variance_ratio_, rtol=1e-4)
    # components agree up to sign
    np.testing.assert_allclose(np.abs(ours.components_.numpy() @ ref.components_.T), np.eye(4), atol=1e-4)


def test_pca_exact_case_and_reconstruction():
    # Points on a 2-D plane inside 5-D: two components reconstruct exactly, variance ratios sum to 1.
    g = torch.Generator().manual_seed(1)
    basis = torch.linalg.qr(torch.randn(5, 2, generator=g))[0].T        # (2, 5) orthonormal rows
    x = torch.randn(300, 2, generator=g) * torch.tensor([3.0, 1.0]) @ basis + 1.0
    pca = PCA(2).fit(x)
    recon = pca.inverse_transform(pca.transform(x))
    assert torch.allclose(recon, x, atol=1e-4)
    assert pca.explained_variance_ratio_.sum().item() == pytest.approx(1.0, abs=1e-5)
    assert torch.allclose(pca.components_ @ pca.components_.T, torch.eye(2), atol=1e-5)
    # error with k components equals the sum of the discarded eigenvalues (times N-1, per point)
    full = PCA().fit(x)
    one = PCA(1).fit(x)
    err = ((one.inverse_transform(one.transform(x)) - x) ** 2).sum() / (len(x) - 1)
    assert err.item() == pytest.approx(full.explained_variance_[1:].sum().item(), rel=1e-3)


def test_pca_errors():
    with pytest.raises(ValueError, match="between 1 and the dimension"):
        PCA(10).fit(torch.randn(20, 5))
    with pytest.raises(RuntimeError, match="not fitted"):
        PCA(2).transform(torch.randn(3, 5))
    with pytest.raises(ValueError, match=r"shape \(N, D\)"):
        PCA(2).fit(torch.randn(5))
    with pytest.raises(ValueError, match="NaN"):
        PCA(2).fit(torch.tensor([[1.0, float("nan")], [0.0, 1.0], [2.0, 2.0]]))
    with pytest.raises(ValueError, match="expected 5 features"):
        PCA(2).fit(torch.randn(10, 5)).transform(torch.randn(3, 4))


def test_pairwise_sq_dists():
    x, c = torch.randn(7, 3), torch.randn(4, 3)
    assert torch.allclose(pairwise_sq_dists(x, c), torch.cdist(x, c) ** 2, atol=1e-5)


def blobs(seed=0, n=300):
    g = torch.Generator().manual_seed(seed)
    centers = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    labels = torch.arange(n) % 3
    return centers[labels] + 0.5 * torch.randn(n, 2, generator=g), labels


def test_kmeans_recovers_separated_blobs():
    x, labels = blobs()
    km = KMeans(3, n_init=2, seed=0).fit(x)
    # one-to-one correspondence between clusters and blobs
    pairs = set(zip(km.labels_.tolist(), labels.tolist()))
    assert len(pairs) == 3
    assert km.inertia_ == pytest.approx(((x - km.cluster_centers_[km.labels_]) ** 2).sum().item(), rel=1e-5)
    assert torch.equal(km.predict(x), km.labels_)


def test_kmeans_inertia_close_to_sklearn():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1000, 10, generator=g)
    ours = KMeans(8, n_init=3, seed=0).fit(x).inertia_
    ref = SkKMeans(8, n_init=3, random_state=0).fit(x.numpy()).inertia_
    assert ours <= ref * 1.02


def test_kmeans_steps_and_empty_clusters():
    x = torch.tensor([[0.0], [1.0], [10.0], [11.0]])
    labels, d = KMeans._assign(KMeans(batch_size=3), x, torch.tensor([[0.5], [10.5], [100.0]]))
    assert labels.tolist() == [0, 0, 1, 1] and torch.allclose(d, torch.full((4,), 0.25))
    centers, counts = KMeans._update(x, labels, 3)
    assert centers[:, 0].tolist() == [0.5, 10.5, 0.0] and counts.tolist() == [2, 2, 0]
    # duplicated points force an empty cluster in Lloyd's loop: it must be re-seeded, not left at 0
    x = torch.cat([torch.zeros(50, 2), torch.ones(50, 2) * 5, torch.tensor([[100.0, 100.0]])])
    km = KMeans(3, seed=0, max_iter=20).fit(x)
    assert km.labels_.unique().numel() == 3


def test_kmeans_features_and_errors():
    x, _ = blobs()
    km = KMeans(5, seed=0).fit(x)
    d = km.transform(x[:4])
    assert d.shape == (4, 5) and torch.allclose(d, torch.cdist(x[:4], km.cluster_centers_), atol=1e-4)
    f = km.triangle_features(x[:4])
    assert (f >= 0).all() and torch.allclose(f, (d.mean(1, keepdim=True) - d).clamp_min(0))
    with pytest.raises(ValueError, match="n_clusters must be between"):
        KMeans(500).fit(x)
    with pytest.raises(RuntimeError, match="not fitted"):
        KMeans(3).predict(x)


def test_kmeans_is_reproducible():
    x, _ = blobs(seed=4)
    a = KMeans(4, seed=7).fit(x).cluster_centers_
    b = KMeans(4, seed=7).fit(x).cluster_centers_
    assert torch.equal(a, b)
