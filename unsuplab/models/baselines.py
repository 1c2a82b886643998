"""Chapter 1's strong baselines: principal component analysis and K-means, in PyTorch.

Both follow scikit-learn's estimator conventions (``fit`` / ``transform`` / ``predict`` on arrays)
but run in torch, so the same code is fast on a GPU and a 60,000-image MNIST fits in seconds.

PCA (Pearson 1901; Hotelling 1933). For centred data :math:`\\tilde X = X - \\mu`, the covariance is
:math:`C = \\tilde X^\\top \\tilde X / (N-1)`. Its eigenvectors :math:`u_1, \\dots, u_k` with the largest
eigenvalues :math:`\\lambda_1 \\ge \\dots \\ge \\lambda_k` span the k-dimensional subspace that keeps the most
variance (eq. 1.1); the code of ``x`` is :math:`z = U_k^\\top (x - \\mu)` (eq. 1.2) and its reconstruction
:math:`\\hat x = \\mu + U_k z` (eq. 1.3).

K-means (Lloyd 1982; k-means++ seeding, Arthur & Vassilvitskii 2007) minimises the inertia
:math:`\\sum_i \\min_j \\lVert x_i - c_j \\rVert^2` (eq. 1.4) by alternating the assignment step
:math:`a_i = \\arg\\min_j \\lVert x_i - c_j \\rVert^2` (eq. 1.5) and the update step
:math:`c_j = \\mathrm{mean}\\{x_i : a_i = j\\}` (eq. 1.6).

As features for a downstream classifier, K-means with many centroids works well with the "triangle"
encoding of Coates, Lee & Ng (2011): :math:`f_j(x) = \\max(0, \\bar d(x) - d_j(x))`, where :math:`d_j` is
the distance to centroid j and :math:`\\bar d` its mean over centroids.
"""

from __future__ import annotations

import numpy as np
import torch

from ..checks import finite_floats

__all__ = ["PCA", "pairwise_sq_dists", "KMeans"]


def _as_matrix(x, name: str = "x", device=None) -> torch.Tensor:
    """(N, ...) array or tensor -> float32 (N, D) tensor (images are flattened)."""
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    if t.ndim < 2:
        raise ValueError(f"expected {name} of shape (N, D) or (N, C, H, W), got shape {tuple(t.shape)}: "
                         "put one example per row (use x[None] for a single example).")
    return finite_floats(t.reshape(len(t), -1), name, device=device)


class PCA:
    """Principal component analysis by eigendecomposition of the covariance (eqs. 1.1-1.3).

    Parameters
    ----------
    n_components : int or None
        k, the number of components kept (``None`` keeps all D).

    Attributes
    ----------
    mean_ : tensor (D,)
        The mean :math:`\\mu`, set by ``fit``.
    components_ : tensor (k, D)
        The rows are the unit-norm eigenvectors :math:`u_j`.
    explained_variance_ : tensor (k,)
        The eigenvalues :math:`\\lambda_j`.
    explained_variance_ratio_ : tensor (k,)
        :math:`\\lambda_j / \\sum_i \\lambda_i`.
    """

    def __init__(self, n_components: int | None = None):
        self.n_components = n_components

    def fit(self, x) -> "PCA":
        x = _as_matrix(x)
        n, d = x.shape
        k = d if self.n_components is None else int(self.n_components)
        if not 1 <= k <= d:
            raise ValueError(f"n_components must be between 1 and the dimension D={d}, got {self.n_components}.")
        if n < 2:
            raise ValueError(f"PCA needs at least 2 examples to estimate a covariance, got {n}.")
        xd = x.double()  # float64: the covariance of 60,000 images loses digits in float32
        self.mean_ = xd.mean(0)
        xc = xd - self.mean_                              # (N, D)
        cov = xc.T @ xc / (n - 1)                         # (D, D), eq. 1.1
        eigvals, eigvecs = torch.linalg.eigh(cov)         # ascending order
        eigvals, eigvecs = eigvals.flip(0), eigvecs.flip(1)
        # A sign convention makes the components reproducible: largest |entry| positive.
        signs = torch.sign(eigvecs[eigvecs.abs().argmax(0), torch.arange(d)])
        eigvecs = eigvecs * torch.where(signs == 0, 1.0, signs)
        total = eigvals.clamp_min(0).sum()
        self.components_ = eigvecs[:, :k].T.to(x.dtype).contiguous()    # (k, D)
        self.explained_variance_ = eigvals[:k].clamp_min(0).to(x.dtype)
        self.explained_variance_ratio_ = (eigvals[:k].clamp_min(0) / total).to(x.dtype)
        self.mean_ = self.mean_.to(x.dtype)
        return self

    def _check_fitted(self):
        if not hasattr(self, "components_"):
            raise RuntimeError("this PCA is not fitted yet: call pca.fit(x_train) first.")

    def transform(self, x) -> torch.Tensor:
        """Codes z = U_k^T (x - mu), eq. 1.2: (N, D) -> (N, k)."""
        self._check_fitted()
        x = _as_matrix(x, device=self.mean_.device)
        if x.shape[1] != self.mean_.numel():
            raise ValueError(f"expected {self.mean_.numel()} features (as in fit), got {x.shape[1]}.")
        return (x - self.mean_) @ self.components_.T

    def inverse_transform(self, z) -> torch.Tensor:
        """Reconstruction mu + U_k z, eq. 1.3: (N, k) -> (N, D)."""
        self._check_fitted()
        z = torch.as_tensor(z, dtype=self.components_.dtype, device=self.components_.device)
        return self.mean_ + z @ self.components_

    def fit_transform(self, x) -> torch.Tensor:
        return self.fit(x).transform(x)

    def to(self, device) -> "PCA":
        """Move the fitted parameters to a device."""
        self._check_fitted()
        for name in ("mean_", "components_", "explained_variance_", "explained_variance_ratio_"):
            setattr(self, name, getattr(self, name).to(device))
        return self


def pairwise_sq_dists(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances ||x_i - c_j||^2: (N, D), (K, D) -> (N, K), never negative."""
    d = (x * x).sum(1, keepdim=True) - 2 * x @ c.T + (c * c).sum(1)
    return d.clamp_min_(0)


class KMeans:
    """K-means by Lloyd's algorithm with k-means++ seeding (eqs. 1.4-1.6), batched for large N.

    Parameters
    ----------
    n_clusters : int
        k, the number of centroids.
    n_init : int
        Runs from different seeds; the one with the lowest inertia is kept.
    max_iter, tol : int, float
        Stop after ``max_iter`` Lloyd steps or when the centroids move less than ``tol`` (relative to
        the data's variance), as scikit-learn does.
    seed : int
        Seed of the k-means++ draws (results are reproducible for a given seed and device).
    batch_size : int
        Rows per block when computing distances (bounds memory at batch_size x k).

    Attributes
    ----------
    cluster_centers_ : tensor (k, D)
        The centroids :math:`c_j`, set by ``fit``.
    labels_ : tensor (N,)
        The cluster of each training row.
    inertia_ : float
        The objective, eq. 1.4, at the end.
    n_iter_ : int
        Lloyd steps taken by the best run.
    n_empty_reassigned_ : int
        How many times an empty cluster was re-seeded.
    """

    def __init__(self, n_clusters: int = 10, *, n_init: int = 1, max_iter: int = 100, tol: float = 1e-4,
                 seed: int = 0, batch_size: int = 8192, device=None):
        self.n_clusters, self.n_init, self.max_iter, self.tol = n_clusters, n_init, max_iter, tol
        self.seed, self.batch_size, self.device = seed, batch_size, device

    # -- the two steps of Lloyd's algorithm -------------------------------------------------
    def _assign(self, x: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Assignment step, eq. 1.5: nearest centroid and its squared distance for every row."""
        labels = torch.empty(len(x), dtype=torch.long, device=x.device)
        mind = torch.empty(len(x), dtype=x.dtype, device=x.device)
        for s in range(0, len(x), self.batch_size):
            d = pairwise_sq_dists(x[s:s + self.batch_size], c)    # (B, K)
            mind[s:s + self.batch_size], labels[s:s + self.batch_size] = d.min(1)
        return labels, mind

    @staticmethod
    def _update(x: torch.Tensor, labels: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Update step, eq. 1.6: each centroid becomes the mean of its points; also the counts."""
        sums = torch.zeros(k, x.shape[1], dtype=x.dtype, device=x.device).index_add_(0, labels, x)
        counts = torch.bincount(labels, minlength=k).to(x.dtype)
        return sums / counts.clamp_min(1)[:, None], counts

    def _kmeanspp(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """k-means++ seeding: each new centroid drawn with probability proportional to D(x)^2."""
        n, k = len(x), self.n_clusters
        first = torch.randint(n, (1,), generator=g, device="cpu").item()
        centers = [x[first]]
        mind = pairwise_sq_dists(x, x[first][None])[:, 0]
        for _ in range(1, k):
            probs = mind / mind.sum() if mind.sum() > 0 else torch.full_like(mind, 1.0 / n)
            idx = torch.multinomial(probs.cpu().double(), 1, generator=g).item()
            centers.append(x[idx])
            mind = torch.minimum(mind, pairwise_sq_dists(x, x[idx][None])[:, 0])
        return torch.stack(centers)

    def _lloyd(self, x: torch.Tensor, g: torch.Generator):
        k = self.n_clusters
        c = self._kmeanspp(x, g)
        threshold = self.tol * x.var(0).mean().item()
        n_empty = 0
        for it in range(1, self.max_iter + 1):
            labels, mind = self._assign(x, c)
            new_c, counts = self._update(x, labels, k)
            empty = torch.nonzero(counts == 0).flatten()
            if len(empty):  # re-seed an empty cluster at the point farthest from its centroid
                far = torch.topk(mind, len(empty)).indices
                new_c[empty] = x[far]
                n_empty += len(empty)
            shift = ((new_c - c) ** 2).sum(1).max().item()
            c = new_c
            if shift <= threshold:
                break
        labels, mind = self._assign(x, c)
        return c, labels, mind.sum().item(), it, n_empty

    def fit(self, x) -> "KMeans":
        x = _as_matrix(x, device=self.device)
        if not 1 <= self.n_clusters <= len(x):
            raise ValueError(f"n_clusters must be between 1 and the number of examples ({len(x)}), "
                             f"got {self.n_clusters}.")
        g = torch.Generator().manual_seed(self.seed)
        best = None
        for _ in range(max(1, self.n_init)):
            run = self._lloyd(x, g)
            if best is None or run[2] < best[2]:
                best = run
        (self.cluster_centers_, self.labels_, self.inertia_, self.n_iter_,
         self.n_empty_reassigned_) = best
        return self

    def _check_fitted(self):
        if not hasattr(self, "cluster_centers_"):
            raise RuntimeError("this KMeans is not fitted yet: call kmeans.fit(x_train) first.")

    def predict(self, x) -> torch.Tensor:
        """Index of the nearest centroid for each row (eq. 1.5)."""
        self._check_fitted()
        return self._assign(_as_matrix(x, device=self.cluster_centers_.device), self.cluster_centers_)[0]

    def fit_predict(self, x) -> torch.Tensor:
        return self.fit(x).labels_

    def transform(self, x) -> torch.Tensor:
        """Euclidean distances to every centroid: (N, D) -> (N, k)."""
        self._check_fitted()
        x = _as_matrix(x, device=self.cluster_centers_.device)
        return torch.cat([pairwise_sq_dists(x[s:s + self.batch_size], self.cluster_centers_).sqrt()
                          for s in range(0, len(x), self.batch_size)])

    def triangle_features(self, x) -> torch.Tensor:
        """Coates et al. (2011) 'triangle' encoding max(0, mean_j d_j - d_j): (N, D) -> (N, k)."""
        d = self.transform(x)
        return (d.mean(1, keepdim=True) - d).clamp_min_(0)
