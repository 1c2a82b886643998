"""Chapter 7 (unsuplab.models.ssl, unsuplab.scripts.simclr, unsuplab.data.cifar10): exact answers on
tiny cases — the rotation batch and its labels, NT-Xent against a direct loop (also as the sum over
simulated processes), the empty-cluster split — plus the augmentations, the colour conversions, the
DDP script under torchrun with 2 CPU processes (gloo), and the CIFAR-10 loaders."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from unsuplab import data
from unsuplab.checks import CheckFailed
from unsuplab.models import ssl

ROOT = Path(__file__).resolve().parents[1]
MIRROR = os.environ.get(data.MIRROR_ENV)
needs_mirror = pytest.mark.skipif(not MIRROR, reason="UNSUPLAB_DATA_MIRROR is not set (make test sets it)")


@pytest.fixture(autouse=True)
def seeded():
    torch.manual_seed(0)


# ---------------------------------------------------------------------------- rotation (7.1)

def test_rotate_batch_gives_four_rotations_with_their_labels():
    x = torch.arange(2 * 1 * 2 * 2, dtype=torch.float32).view(2, 1, 2, 2)  # image 0 = [[0, 1], [2, 3]]
    x_rot, r = ssl.rotate_batch(x)
    assert x_rot.shape == (8, 1, 2, 2)
    assert r.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert torch.equal(x_rot[:2], x)
    # 90 degrees counter-clockwise: the right column becomes the top row
    assert x_rot[2, 0].tolist() == [[1.0, 3.0], [0.0, 2.0]]
    assert x_rot[4, 0].tolist() == [[3.0, 2.0], [1.0, 0.0]]  # 180 degrees
    assert x_rot[6, 0].tolist() == [[2.0, 0.0], [3.0, 1.0]]  # 270 degrees
    for k in range(4):  # undoing each rotation gives the batch back
        assert torch.equal(torch.rot90(x_rot[k * 2:(k + 1) * 2], -k, dims=(2, 3)), x)


def test_rotate_batch_rejects_what_it_cannot_rotate():
    with pytest.raises(ValueError, match="square"):
        ssl.rotate_batch(torch.rand(2, 3, 4, 5))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        ssl.rotate_batch(torch.rand(3, 4, 4))
    with pytest.raises(ValueError, match="divide by 255"):
        ssl.rotate_batch(torch.zeros(1, 3, 4, 4, dtype=torch.uint8))


# ---------------------------------------------------------------------------- NT-Xent (7.6)

def nt_xent_loop(z1, z2, tau):
    """Eq. (7.6) written out with Python loops: views 2k-1 and 2k of the paper are rows k of z1, z2."""
    views = [v for pair in zip(z1.tolist(), z2.tolist()) for v in pair]  # z1[0], z2[0], z1[1], z2[1], ...

    def cos(a, b):
        return sum(p * q for p, q in zip(a, b)) / math.sqrt(sum(p * p for p in a) * sum(q * q for q in b))

    def loss(i, j):
        denominator = sum(math.exp(cos(views[i], views[k]) / tau) for k in range(len(views)) if k != i)
        return -math.log(math.exp(cos(views[i], views[j]) / tau) / denominator)

    n = len(z1)
    return sum(loss(2 * k, 2 * k + 1) + loss(2 * k + 1, 2 * k) for k in range(n)) / (2 * n)


@pytest.mark.parametrize("n, d, tau", [(1, 2, 0.5), (5, 3, 0.5), (7, 4, 0.1), (4, 8, 1.0)])
def test_nt_xent_matches_a_direct_loop(n, d, tau):
    z1, z2 = torch.randn(n, d, dtype=torch.float64), torch.randn(n, d, dtype=torch.float64)
    assert ssl.nt_xent(z1, z2, tau).item() == pytest.approx(nt_xent_loop(z1, z2, tau), rel=1e-5)


def test_nt_xent_ignores_the_length_of_z_and_knows_its_extremes():
    z1, z2 = torch.randn(6, 5), torch.randn(6, 5)
    assert torch.allclose(ssl.nt_xent(3 * z1, 0.5 * z2), ssl.nt_xent(z1, z2))
    # all views equal: every candidate is as similar as the positive, so the loss is log(2N - 1)
    same = torch.ones(6, 5)
    assert ssl.nt_xent(same, same).item() == pytest.approx(math.log(11), rel=1e-6)
    # two views identical and the images orthogonal: the loss falls towards 0 as tau shrinks
    basis = torch.eye(6)
    assert ssl.nt_xent(basis, basis, 0.05).item() < 1e-6


def test_nt_xent_with_candidates_from_two_simulated_processes_is_the_global_loss(monkeypatch):
    # Two "processes" hold 3 images each. Each computes NT-Xent for its own anchors against all 12 views
    # (what gather_with_grad gives it); the mean of the two losses, and its gradient, must be those of
    # the global batch. This checks the anchor/positive/self indices for rank > 0.
    Z1 = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    Z2 = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    full = ssl.nt_xent(Z1, Z2, 0.3)
    (g1, g2) = torch.autograd.grad(full, (Z1, Z2))

    total = 0.0
    for rank in (0, 1):
        rows = slice(3 * rank, 3 * rank + 3)
        gathered = iter([F.normalize(Z1, dim=1), F.normalize(Z2, dim=1)])

        def fake_gather(local, rank=rank, rows=rows, gathered=gathered):
            everyone = next(gathered)
            return torch.cat([everyone[:rows.start], local, everyone[rows.stop:]])  # own rows carry grad

        monkeypatch.setattr(ssl, "_rank_and_world", lambda rank=rank: (rank, 2))
        monkeypatch.setattr(ssl, "gather_with_grad", fake_gather)
        total = total + ssl.nt_xent(Z1[rows], Z2[rows], 0.3) / 2
    assert total.item() == pytest.approx(full.item(), rel=1e-10)
    h1, h2 = torch.autograd.grad(total, (Z1, Z2))
    assert torch.allclose(h1, g1, atol=1e-12) and torch.allclose(h2, g2, atol=1e-12)


def test_nt_xent_errors_speak_to_the_student():
    with pytest.raises(ValueError, match="same image"):
        ssl.nt_xent(torch.randn(4, 3), torch.randn(5, 3))
    with pytest.raises(ValueError, match="temperature > 0"):
        ssl.nt_xent(torch.randn(4, 3), torch.randn(4, 3), 0.0)


# ---------------------------------------------------------------------------- DeepCluster (7.7, 7.8)

def test_reassign_splits_the_largest_cluster_exactly():
    # 1-D points 0, 1, 2, 3 all in cluster 0: the farthest point from the centroid 1.5 is 0 (first of
    # the tie), so 0 and 1 have the largest projections and move to the empty cluster 1.
    features = torch.tensor([[0.0], [1.0], [2.0], [3.0]])
    assert ssl.reassign_empty_clusters(features, torch.zeros(4, dtype=torch.long), 2).tolist() == [1, 1, 0, 0]
    # three empty clusters of four: 8 -> 4 + 4 -> the first of the largest (0) splits, then cluster 1
    features = torch.randn(8, 3)
    new = ssl.reassign_empty_clusters(features, torch.zeros(8, dtype=torch.long), 4)
    assert torch.bincount(new, minlength=4).tolist() == [2, 2, 2, 2]


def test_reassign_leaves_no_empty_cluster_and_moves_points_only_into_empty_ones():
    features = torch.randn(50, 4)
    old = torch.randint(0, 3, (50,))  # clusters 3..9 are empty
    kept = old.clone()
    new = ssl.reassign_empty_clusters(features, old, 10)
    assert torch.equal(old, kept)  # the input is not modified
    assert (torch.bincount(new, minlength=10) > 0).all()
    moved = new != old
    assert moved.any() and (new[moved] >= 3).all()  # points only ever move into clusters that were empty
    # a full assignment comes back unchanged
    full = torch.arange(50) % 10
    assert torch.equal(ssl.reassign_empty_clusters(features, full, 10), full)
    with pytest.raises(ValueError, match="k <= N"):
        ssl.reassign_empty_clusters(torch.randn(3, 2), torch.zeros(3, dtype=torch.long), 5)


def split_the_other_way(features, assignments, k):
    """A correct split with every choice among equals made unlike the reference: the last of the largest
    clusters, the last of its farthest points, and the floor(s/2) points with the smallest projections move."""
    assignments = assignments.clone()
    sizes = torch.bincount(assignments, minlength=k)
    for j in torch.nonzero(sizes == 0).flatten().tolist():
        c = int(torch.nonzero(sizes == sizes.max()).flatten()[-1])
        members = torch.nonzero(assignments == c).flatten()
        centred = features[members] - features[members].mean(0)
        norms = centred.pow(2).sum(1)
        direction = centred[torch.nonzero(norms == norms.max()).flatten()[-1]]
        moving = members[torch.argsort(centred @ direction, stable=True)[: len(members) // 2]]
        assignments[moving] = j
        sizes[j], sizes[c] = len(moving), len(members) - len(moving)
    return assignments


def reassignment_cases():
    g = torch.Generator().manual_seed(3)
    corners = torch.tensor([[0.0, 0.0], [5.0, 0.0], [0.0, 5.0]]).repeat(10, 1)  # every split has ties
    return [(torch.tensor([[0.0], [1.0], [2.0], [3.0]]), torch.zeros(4, dtype=torch.long), 2),
            (torch.randn(40, 5, generator=g), torch.randint(0, 3, (40,), generator=g), 8),
            (torch.randn(30, 2, generator=g), torch.zeros(30, dtype=torch.long), 6),
            (torch.randn(100, 4, generator=g), torch.randint(0, 4, (100,), generator=g), 20),
            (corners, torch.zeros(30, dtype=torch.long), 7),
            (torch.randn(50, 3, generator=g), torch.arange(50) % 10, 10)]  # nothing to do


def test_the_reassignment_check_accepts_any_tie_breaking(capsys):
    cases = reassignment_cases()
    ssl.check_reassignment(ssl.reassign_empty_clusters, cases)
    ssl.check_reassignment(split_the_other_way, cases)
    assert capsys.readouterr().out.count("✓") == 2
    differ = [not torch.equal(ssl.reassign_empty_clusters(*case), split_the_other_way(*case)) for case in cases]
    assert sum(differ) >= 4  # a check by equality with the reference would refuse a correct answer
    points, before, k = cases[0]  # 0, 1, 2, 3: both 0 and 3 are farthest from 1.5, so either half may move
    assert ssl.reassign_empty_clusters(points, before, k).tolist() == [1, 1, 0, 0]
    assert ssl.reassignment_problem(points, before, torch.tensor([0, 0, 1, 1]), k) is None
    assert ssl.reassignment_problem(points, before, torch.tensor([1, 0, 1, 0]), k) is not None
    for seed in range(20):  # the reference always passes, also on random, partly empty assignments
        g = torch.Generator().manual_seed(seed)
        features, before = torch.randn(60, 3, generator=g), torch.randint(0, 4, (60,), generator=g)
        assert ssl.reassignment_problem(features, before, ssl.reassign_empty_clusters(features, before, 12), 12) is None


def test_the_reassignment_check_names_what_is_wrong(capsys):
    def random_half(features, assignments, k):  # the right sizes, but not a cut across a radius
        assignments = assignments.clone()
        sizes = torch.bincount(assignments, minlength=k)
        for j in torch.nonzero(sizes == 0).flatten().tolist():
            c = int(torch.argmax(sizes))
            members = torch.nonzero(assignments == c).flatten()
            moving = members[torch.randperm(len(members))[: (len(members) + 1) // 2]]
            assignments[moving] = j
            sizes[j], sizes[c] = len(moving), len(members) - len(moving)
        return assignments

    def along_the_first_axis(features, assignments, k):  # a median cut, but along another direction
        return ssl.reassign_empty_clusters(features[:, :1], assignments, k)

    def a_third(features, assignments, k):  # a cut across the radius, but not in half
        assignments = assignments.clone()
        sizes = torch.bincount(assignments, minlength=k)
        for j in torch.nonzero(sizes == 0).flatten().tolist():
            c = int(torch.argmax(sizes))
            members = torch.nonzero(assignments == c).flatten()
            centred = features[members] - features[members].mean(0)
            direction = centred[centred.pow(2).sum(1).argmax()]
            moving = members[torch.argsort(centred @ direction, descending=True)[: (len(members) + 2) // 3]]
            assignments[moving] = j
            sizes[j], sizes[c] = len(moving), len(members) - len(moving)
        return assignments

    def whole_cluster(features, assignments, k):  # the largest cluster moves to j and is left empty
        assignments = assignments.clone()
        for j in torch.nonzero(torch.bincount(assignments, minlength=k) == 0).flatten().tolist():
            assignments[assignments == torch.bincount(assignments, minlength=k).argmax()] = j
        return assignments

    def into_a_full_cluster(features, assignments, k):
        new = ssl.reassign_empty_clusters(features, assignments, k)
        return torch.where(new == 1, 2, torch.where(new == 2, 1, new))  # swaps two non-empty clusters

    def in_place(features, assignments, k):
        assignments.copy_(ssl.reassign_empty_clusters(features, assignments, k))
        return assignments

    cases = reassignment_cases()[1:4]
    for wrong, message in [(random_half, "not one half of a largest cluster cut across"),
                           (along_the_first_axis, "not one half of a largest cluster cut across"),
                           (a_third, "cluster sizes, largest first, should be"),
                           (whole_cluster, r"cluster\(s\) \[.*\] are still empty"),
                           (into_a_full_cluster, "which was not empty"),
                           (in_place, "in place"),
                           (lambda f, a, k: ssl.reassign_empty_clusters(f, a, k).tolist(), "expected a torch.Tensor"),
                           (lambda f, a, k: ssl.reassign_empty_clusters(f, a, k).float(), "integer cluster ids")]:
        with pytest.raises(CheckFailed, match=message):
            ssl.check_reassignment(wrong, cases)

    def stub(features, assignments, k):  # the lab's exercise before it is written
        raise NotImplementedError("TODO: split the largest cluster")

    with pytest.raises(NotImplementedError):
        ssl.check_reassignment(stub, cases)
    assert "✗ reassign_empty_clusters is not written yet" in capsys.readouterr().out


def test_kmeans_without_reassignment_leaves_clusters_empty_and_with_it_none():
    # 3 distinct points, each 20 times: K-means with k = 6 starts from duplicated centroids and
    # leaves clusters empty; the split fills every one of them.
    features = torch.tensor([[0.0, 0.0], [5.0, 0.0], [0.0, 5.0]]).repeat(20, 1)
    plain, _ = ssl.kmeans_pseudo_labels(features, 6, reassign=None, generator=torch.Generator().manual_seed(0))
    fixed, _ = ssl.kmeans_pseudo_labels(features, 6, generator=torch.Generator().manual_seed(0))
    assert (torch.bincount(plain, minlength=6) == 0).any()
    assert (torch.bincount(fixed, minlength=6) > 0).all()


def test_kmeans_from_given_centroids_keeps_a_stranded_one_empty_unless_reassigned():
    # Two blobs and three starting centroids, the third where no point is any more (as when the features
    # moved since the last round): Lloyd's steps never give it a point; the split does.
    g = torch.Generator().manual_seed(0)
    features = torch.cat([torch.randn(30, 2, generator=g) * 0.1, torch.randn(30, 2, generator=g) * 0.1 + 4])
    init = torch.tensor([[0.0, 0.0], [4.0, 4.0], [-50.0, 50.0]])
    plain, centroids = ssl.kmeans_pseudo_labels(features, 3, reassign=None, init=init)
    assert torch.bincount(plain, minlength=3).tolist() == [30, 30, 0]
    assert torch.equal(centroids[2], init[2])                       # frozen where it started
    fixed, _ = ssl.kmeans_pseudo_labels(features, 3, init=init)
    assert (torch.bincount(fixed, minlength=3) > 0).all()
    with pytest.raises(ValueError, match="k = 3 centroids"):
        ssl.kmeans_pseudo_labels(features, 3, init=init[:2])


def test_deepcluster_carries_centroids_only_without_whitening():
    model = ssl.Classifier(ssl.make_backbone("convnet", 4), 4)
    x = torch.rand(40, 3, 32, 32)
    with pytest.raises(ValueError, match="whiten=False"):
        ssl.train_deepcluster(model, x, rounds=1, steps_per_round=1, batch_size=8, lr=1e-3, carry_centroids=True)
    calls = []
    real = ssl.kmeans_pseudo_labels

    def spy(features, k, **kwargs):
        labels, centroids = real(features, k, **kwargs)
        calls.append((features, kwargs["init"], centroids))
        return labels, centroids

    import unittest.mock

    with unittest.mock.patch.object(ssl, "kmeans_pseudo_labels", spy):
        history = ssl.train_deepcluster(model, x, rounds=3, steps_per_round=1, batch_size=8, lr=1e-3, whiten=False,
                                        carry_centroids=True, progress_bar=False)
    assert len(history.epochs["empty"]) == 3 and calls[0][1] is None
    for features, _, _ in calls:
        assert torch.allclose(features.norm(dim=1), torch.ones(len(x)), atol=1e-5)  # L2-normalised, not whitened
    for (_, _, ended), (_, init, _) in zip(calls, calls[1:]):  # each round starts where the last one's K-means ended
        assert torch.equal(init, ended)
    assert not torch.equal(calls[1][1], calls[2][1])


def test_balanced_weights_make_every_cluster_equally_likely():
    labels = torch.tensor([0, 0, 0, 0, 1, 2, 2, 4])  # cluster 3 is empty
    w = ssl.balanced_weights(labels, 5)
    per_cluster = torch.zeros(5).index_add_(0, labels, w)
    assert per_cluster.tolist() == [1.0, 1.0, 1.0, 0.0, 1.0]


def off_diagonal(c):
    return (c - torch.diag(c.diag())).abs().max().item()


def test_pca_whiten_gives_unit_rows_of_decorrelated_components():
    f = torch.randn(200, 10) @ torch.randn(10, 10)  # ten strongly correlated features
    w = ssl.pca_whiten(f, 4)
    assert w.shape == (200, 4) and torch.allclose(w.norm(dim=1), torch.ones(200), atol=1e-5)
    # the whitened codes are uncorrelated; dividing each row by its norm keeps them nearly so
    assert off_diagonal(torch.corrcoef(f.T)) > 0.5 and off_diagonal(torch.corrcoef(w.T)) < 0.15
    # Exactly, where every whitened row has the same norm: 4 zero-mean, orthogonal +-1 columns of a
    # 64 x 64 Hadamard matrix, scaled 4 : 3 : 2 : 1 and mixed into 10 features. The normalisation is
    # then one factor for all rows, so the components keep mean 0 and equal, uncorrelated variances:
    # w^T w / N = I / 4 (without the whitening, the components would keep the 16 : 9 : 4 : 1 variances).
    H = torch.ones(1, 1)
    while len(H) < 64:
        H = torch.cat([torch.cat([H, H], 1), torch.cat([H, -H], 1)])
    f = H[:, 1:5] @ torch.diag(torch.tensor([4.0, 3.0, 2.0, 1.0])) @ torch.randn(4, 10)  # (64, 10)
    w = ssl.pca_whiten(f, 4)
    assert off_diagonal(torch.corrcoef(f.T)) > 0.5
    assert torch.allclose(w.mean(0), torch.zeros(4), atol=1e-6)
    assert torch.allclose(w.T @ w / 64, torch.eye(4) / 4, atol=1e-6)


# ---------------------------------------------------------------------------- relative position (7.2)

def coordinate_image(size=32):
    """One image whose pixel (i, j) holds i * 100 + j on all channels: a patch says where it was cut."""
    grid = torch.arange(size)[:, None] * 100.0 + torch.arange(size)[None, :]
    return grid.expand(3, size, size)[None].clone()


@pytest.mark.parametrize("patch, gap, jitter", [(8, 2, 0), (8, 0, 0), (6, 3, 2)])
def test_patch_pairs_cut_the_centre_and_the_labelled_neighbour(patch, gap, jitter):
    x = coordinate_image().repeat(64, 1, 1, 1)
    centre, neighbour, k = ssl.patch_pairs(x, patch, gap, jitter)
    assert centre.shape == neighbour.shape == (64, 3, patch, patch) and k.shape == (64,)
    assert set(k.tolist()) <= set(range(8)) and len(set(k.tolist())) > 4
    corner = lambda p: torch.stack([p[:, 0, 0, 0] // 100, p[:, 0, 0, 0] % 100], 1)  # noqa: E731
    step = corner(neighbour) - corner(centre)  # (64, 2) pixels from centre to neighbour
    expected = torch.tensor(ssl.NEIGHBOUR_OFFSETS, dtype=step.dtype)[k] * (patch + gap)
    assert ((step - expected).abs() <= 2 * jitter).all()
    # patches are contiguous crops: the last pixel is patch - 1 rows and columns after the first
    assert torch.equal(centre[:, 0, -1, -1] - centre[:, 0, 0, 0], torch.full((64,), (patch - 1) * 101.0))


def test_patch_pairs_on_a_2x2_grid_ask_all_eight_offsets_inside_the_grid():
    patch, gap, jitter = 14, 2, 1
    x = coordinate_image().repeat(512, 1, 1, 1)[..., :32, :32]  # the 32-pixel images the lab uses
    torch.manual_seed(0)
    first, second, k = ssl.patch_pairs(x, patch, gap, jitter, grid=2)
    assert first.shape == second.shape == (512, 3, patch, patch)
    assert set(k.tolist()) == set(range(8))  # diagonals too, as on the 3 x 3 grid
    corner = lambda p: torch.stack([p[:, 0, 0, 0] // 100, p[:, 0, 0, 0] % 100], 1)  # noqa: E731
    step = corner(second) - corner(first)
    expected = torch.tensor(ssl.NEIGHBOUR_OFFSETS, dtype=step.dtype)[k] * (patch + gap)
    assert ((step - expected).abs() <= 2 * jitter).all()
    # a straight step (up, down, left, right) starts from either cell of its row or column, not always the same
    straight = (torch.tensor(ssl.NEIGHBOUR_OFFSETS)[k] == 0).any(1)
    assert len(set(corner(first)[straight & (k == 4), 0].div(patch + gap, rounding_mode="floor").tolist())) == 2
    with pytest.raises(ValueError, match="grid must be 3"):
        ssl.patch_pairs(x, 8, 2, 1, grid=4)


def test_recolour_patches_is_a_colour_jitter_then_grey_for_a_share_of_them():
    patches = torch.rand(400, 3, 14, 14)
    torch.manual_seed(0)
    out = ssl.recolour_patches(patches)
    torch.manual_seed(0)
    assert torch.equal(out, ssl.random_grayscale(ssl.color_jitter(patches), p=0.5))
    grey = (out[:, 0] == out[:, 1]).flatten(1).all(1) & (out[:, 1] == out[:, 2]).flatten(1).all(1)
    assert 0.35 < grey.float().mean() < 0.65 and out.shape == patches.shape
    coloured = ssl.recolour_patches(patches, p_grey=0.0)
    assert not (coloured[:, 0] == coloured[:, 1]).flatten(1).all(1).any()  # none grey when p_grey = 0


def test_patch_pairs_refuse_a_grid_that_does_not_fit():
    with pytest.raises(ValueError, match="needs 36 pixels"):
        ssl.patch_pairs(torch.rand(2, 3, 32, 32), 10, 2, 1)


def test_the_boundary_shortcut_needs_touching_patches():
    # random images, smooth over 2-3 pixels: borders continue across touching patches, not across a gap
    x = F.interpolate(torch.rand(400, 3, 12, 12), size=32, mode="bicubic", align_corners=False).clamp(0, 1)
    side = torch.tensor(ssl.SIDE_NEIGHBOURS)

    def accuracy(gap, jitter):
        centre, neighbour, k = ssl.patch_pairs(x, 8, gap, jitter)
        keep = torch.isin(k, side)
        return (ssl.boundary_guess(centre[keep], neighbour[keep]) == k[keep]).float().mean().item()

    assert accuracy(0, 0) > 0.9  # chance is 1 in 4
    assert accuracy(3, 1) < 0.4


def test_relative_position_net_is_siamese():
    net = ssl.RelativePositionNet(ssl.convnet(4), hidden=16).eval()
    centre, neighbour = torch.rand(5, 3, 8, 8), torch.rand(5, 3, 8, 8)
    assert net(centre, neighbour).shape == (5, 8)
    assert len({id(m) for m in net.modules() if isinstance(m, ssl.Backbone)}) == 1  # one shared trunk


# ---------------------------------------------------------------------------- colorization (7.3)

def test_rgb_to_lab_matches_skimage_and_inverts():
    from skimage.color import rgb2lab

    x = torch.rand(3, 3, 5, 5, dtype=torch.float64)
    lab = ssl.rgb_to_lab(x)
    expected = torch.from_numpy(rgb2lab(x.permute(0, 2, 3, 1).numpy())).permute(0, 3, 1, 2)
    assert torch.allclose(lab, expected, atol=0.02)
    assert torch.allclose(ssl.lab_to_rgb(lab), x, atol=1e-6)
    grey = torch.full((1, 3, 2, 2), 0.5)
    assert ssl.rgb_to_lab(grey)[:, 1:].abs().max() < 1e-3  # greys have no colour: a = b = 0


def test_colour_bins_and_rebalancing_weights():
    centres = ssl.ab_bin_centres(20.0)
    assert centres.shape == (121, 2)
    ab = centres.T.reshape(1, 2, 11, 11)
    assert torch.equal(ssl.quantize_ab(ab, 20.0).flatten(), torch.arange(121))  # each centre in its bin
    counts = torch.tensor([90.0, 9.0, 1.0, 0.0])
    v = ssl.rebalancing_weights(counts, lam=0.5)
    p = counts / counts.sum()
    assert (p * v).sum().item() == pytest.approx(1.0)
    assert v[0] < v[1] < v[2] < v[3]  # rarer colours weigh more
    assert torch.allclose(ssl.rebalancing_weights(counts, lam=1.0), torch.ones(4))  # lambda = 1: no reweighting


def test_colorizer_predicts_a_colour_distribution_per_location():
    net = ssl.Colorizer(ssl.convnet(4), grid=20.0).eval()
    x = torch.rand(2, 3, 32, 32)
    logits = net(x)
    assert logits.shape == (2, 121, 4, 4)
    assert net.targets(x, logits.shape[-2:]).shape == (2, 4, 4)
    # the features come from the grey image only: recolouring with the same lightness changes nothing
    lab = ssl.rgb_to_lab(x.double())
    recoloured = ssl.lab_to_rgb(torch.cat([lab[:, :1], torch.zeros_like(lab[:, 1:])], 1)).float()
    assert torch.allclose(net.lightness(recoloured), net.lightness(x), atol=2e-3)
    loss = ssl.colorization_loss(logits, net.targets(x, (4, 4)), torch.ones(121))
    assert loss.item() == pytest.approx(F.cross_entropy(logits, net.targets(x, (4, 4))).item(), rel=1e-6)


# ---------------------------------------------------------------------------- instance discrimination (7.4, 7.5)

def test_npid_loss_is_the_softmax_over_the_memory_bank_and_the_update_stays_on_the_sphere():
    bank = ssl.MemoryBank(10, dim=4, momentum=0.5)
    v = F.normalize(torch.randn(3, 4), dim=1)
    index = torch.tensor([2, 5, 7])
    logits = v @ bank.v.T / 0.07
    expected = -torch.log_softmax(logits, 1)[torch.arange(3), index].mean()
    assert ssl.npid_loss(v, index, bank, 0.07).item() == pytest.approx(expected.item(), rel=1e-6)
    before = bank.v.clone()
    bank.update(index, v)
    assert torch.allclose(bank.v[index], F.normalize(0.5 * before[index] + 0.5 * v, dim=1))
    assert torch.equal(bank.v[[0, 1, 3]], before[[0, 1, 3]])
    assert torch.allclose(bank.v.norm(dim=1), torch.ones(10))


def test_the_memory_bank_can_start_from_the_networks_own_embeddings():
    torch.manual_seed(0)
    net = ssl.InstanceNet(ssl.convnet(4), dim=8)
    x = torch.rand(10, 3, 16, 16)
    bank = ssl.MemoryBank(10, dim=8)
    assert bank.start_from(net, x, batch_size=4) is bank  # in batches, in the order of the images
    with torch.no_grad():
        expected = torch.cat([net(x[i:i + 4]) for i in range(0, 10, 4)])
    torch.testing.assert_close(bank.v, expected)
    assert torch.allclose(bank.v.norm(dim=1), torch.ones(10))
    # so the first step's loss is far below that of random memories: each image is near its own memory
    index = torch.arange(10)
    assert ssl.npid_loss(expected, index, bank) < ssl.npid_loss(expected, index, ssl.MemoryBank(10, dim=8)) - 1
    with pytest.raises(ValueError, match="holds 10 memories but 9 images"):
        bank.start_from(net, x[:9])
    with pytest.raises(ValueError, match="dim=8"):
        ssl.MemoryBank(10, dim=5).start_from(net, x)


# ---------------------------------------------------------------------------- augmentations

def test_augmentations_keep_shape_and_range_and_do_nothing_when_told_to():
    x = torch.rand(16, 3, 32, 32)
    for augment in (ssl.simclr_augment, ssl.random_crop_flip, ssl.color_jitter, ssl.random_grayscale):
        y = augment(x)
        assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1
    assert not torch.allclose(ssl.simclr_augment(x), ssl.simclr_augment(x))  # random every call
    # the whole image at its own size is the identity
    same = ssl.random_resized_crop(x, scale=(1.0, 1.0), ratio=(1.0, 1.0), flip=False)
    assert torch.allclose(same, x, atol=1e-5)
    assert torch.allclose(ssl.color_jitter(x, p=0.0), x, atol=1e-6)
    assert torch.allclose(ssl.color_jitter(x, 0, 0, 0, 0, p=1.0), x, atol=1e-5)
    # no shift: each image is either itself or its mirror image
    flipped = ssl.random_crop_flip(x, padding=0)
    is_same = (flipped == x).flatten(1).all(1)
    is_mirror = (flipped == x.flip(3)).flatten(1).all(1)
    assert (is_same | is_mirror).all() and is_same.any() and is_mirror.any()
    grey = ssl.random_grayscale(x, p=1.0)
    assert torch.allclose(grey[:, 0], grey[:, 2]) and torch.allclose(ssl.grayscale(grey), ssl.grayscale(x), atol=1e-6)


def test_hue_rotation_keeps_luma_and_a_full_turn_is_the_identity():
    x = torch.rand(4, 3, 8, 8, dtype=torch.float64)
    turned = ssl._rotate_hue(x, torch.tensor([0.3, 1.0, -2.0, 0.0], dtype=torch.float64))
    assert torch.allclose(ssl.grayscale(turned), ssl.grayscale(x), atol=1e-9)
    assert torch.allclose(ssl._rotate_hue(x, torch.full((4,), 2 * math.pi, dtype=torch.float64)), x, atol=1e-9)


# ---------------------------------------------------------------------------- trunks, batches, evaluation

def test_backbones_give_one_feature_vector_per_image_at_any_size():
    net = ssl.convnet(4)
    assert net(torch.rand(2, 3, 32, 32)).shape == (2, 32)
    assert net.feature_map(torch.rand(2, 3, 32, 32)).shape == (2, 32, 4, 4)
    assert net(torch.rand(2, 3, 8, 8)).shape == (2, 32)  # relative-position patches go through it too
    assert ssl.make_backbone("resnet18").eval()(torch.rand(2, 3, 32, 32)).shape == (2, 512)
    with pytest.raises(ValueError, match="convnet"):
        ssl.make_backbone("vgg")



def test_extract_features_and_the_protocol():
    net = ssl.convnet(4).train()
    f = ssl.extract_features(net, torch.rand(10, 3, 32, 32), batch_size=4)
    assert f.shape == (10, 32) and net.training  # eval mode only while extracting
    g = torch.Generator().manual_seed(0)
    centres = torch.eye(3) * 10
    y_train, y_test = torch.arange(60) % 3, torch.arange(30) % 3
    f_train = centres[y_train] + torch.randn(60, 3, generator=g)
    f_test = centres[y_test] + torch.randn(30, 3, generator=g)
    scores = ssl.evaluate(f_train, y_train, f_test, y_test)
    assert scores == {"knn": 1.0, "linear": 1.0}


def test_train_simclr_runs_a_few_steps_and_stops_where_told():
    model = ssl.SimCLR(ssl.convnet(4), hidden=16, out=8)
    history = ssl.train_simclr(model, torch.rand(40, 3, 32, 32), epochs=3, batch_size=8, lr=0.1,
                               max_steps=7, progress_bar=False, log_every=1)
    assert history.steps["step"] == list(range(1, 8))
    assert all(math.isfinite(v) for v in history.steps["loss"])
    assert history.steps["loss"][0] == pytest.approx(math.log(15), abs=1.0)  # near log(2N - 1) at the start
    assert len(history.epochs["loss"]) == 2 and not model.training
    with pytest.raises(ValueError, match="smaller batch"):
        ssl.train_simclr(model, torch.rand(4, 3, 32, 32), epochs=1, batch_size=8, lr=0.1)


def run_simclr(path, interrupt_at=None, saved=None):
    """Three epochs of two steps with a checkpoint. With ``interrupt_at``, the augmentation call of that
    number keeps the random state in ``saved["rng"]`` and raises a KeyboardInterrupt (a Colab disconnect);
    with ``saved``, a resumed run: other initial weights, which the checkpoint must replace, and the
    augmentations' random stream where the interrupted run left it (where the uninterrupted run has it)."""
    x = torch.rand(32, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    resuming = saved is not None and interrupt_at is None
    torch.manual_seed(1 if resuming else 0)
    model = ssl.SimCLR(ssl.convnet(4), hidden=16, out=8)
    if resuming:
        torch.set_rng_state(saved["rng"])
    calls = 0

    def augment(images):
        nonlocal calls
        if calls == interrupt_at:
            saved["rng"] = torch.get_rng_state()
            raise KeyboardInterrupt
        calls += 1
        return ssl.simclr_augment(images)

    history = ssl.train_simclr(model, x, epochs=3, batch_size=16, lr=0.1, augment=augment, progress_bar=False,
                               checkpoint=path)
    return model, history


def test_train_simclr_resumes_from_its_checkpoint_to_the_same_model_and_optimizer(tmp_path, capsys):
    reference, reference_history = run_simclr(tmp_path / "whole.pt")
    path, saved = tmp_path / "interrupted.pt", {}
    with pytest.raises(KeyboardInterrupt):
        run_simclr(path, interrupt_at=4, saved=saved)  # the first augmentation of epoch 2: the file holds epoch 1
    assert torch.load(path)["epoch"] == 1
    # a fresh model and optimizer, as after a restarted runtime: the checkpoint must restore the weights
    # and the momentum, or the two remaining epochs end elsewhere
    resumed, resumed_history = run_simclr(path, saved=saved)
    assert "resumed from" in capsys.readouterr().out
    for (name, a), b in zip(reference.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(b, a, rtol=0, atol=0, msg=f"{name} after resuming")
    # the checkpoints written after the last epoch: SGD's momentum buffers, bit for bit
    whole, again = torch.load(tmp_path / "whole.pt"), torch.load(path)
    assert whole["epoch"] == again["epoch"] == 3
    momentum = {i: state["momentum_buffer"] for i, state in whole["optimizer"]["state"].items()}
    assert len(momentum) == len(list(reference.parameters()))
    for i, buffer in momentum.items():
        torch.testing.assert_close(again["optimizer"]["state"][i]["momentum_buffer"], buffer, rtol=0, atol=0,
                                   msg=f"momentum buffer of parameter {i} after resuming")
    assert resumed_history.epochs["loss"] == reference_history.epochs["loss"]


# ---------------------------------------------------------------------------- the DDP script

def script_env():
    env = {**os.environ, "UNSUPLAB_PROGRESS": "0", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return env


@needs_mirror
def test_simclr_script_runs_under_torchrun_with_negatives_from_both_processes(tmp_path):
    # 2 CPU processes on gloo, a global batch of 32 (16 each). With a huge temperature every logit is
    # ~0, so the first loss is log(2N - 1) for the GLOBAL N = 32 (log 63) only if each process's
    # anchors met the other process's views as negatives; its own 16 would give log 31.
    out = tmp_path / "ddp.json"
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [str(torchrun), "--standalone", "--nproc_per_node=2", "-m", "unsuplab.scripts.simclr",
           "--profile", "smoke", "--n-train", "64", "--batch-size", "32", "--epochs", "2",
           "--temperature", "1e6", "--no-eval", "--out", str(out)]
    proc = subprocess.run(cmd, cwd=tmp_path, env=script_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["world_size"] == 2 and result["global_batch"] == 32 and result["negatives_per_anchor"] == 62
    assert result["first_loss"] == pytest.approx(math.log(63), abs=1e-3)
    assert result["steps"] == 4
    sums = result["param_checksums"]
    assert len(sums) == 2 and sums[0] == pytest.approx(sums[1], rel=1e-9)  # DDP kept the replicas equal
    assert "JPEG" in result["data"] or "official" in result["data"]


@needs_mirror
def test_simclr_script_runs_on_one_process_and_evaluates(tmp_path):
    from unsuplab.scripts import simclr

    result = simclr.main(["--profile", "smoke", "--n-train", "64", "--n-test", "40", "--batch-size", "32",
                          "--max-steps", "2", "--out", str(tmp_path / "one.json")])
    assert result["world_size"] == 1 and result["negatives_per_anchor"] == 62 and result["steps"] == 2
    assert 0 <= result["knn_acc"] <= 1 and 0 <= result["linear_acc"] <= 1
    assert json.loads((tmp_path / "one.json").read_text())["knn_acc"] == result["knn_acc"]


# ---------------------------------------------------------------------------- CIFAR-10 (unsuplab.data)

@needs_mirror
def test_cifar10_jpeg_copy_from_the_mirror(tmp_path, monkeypatch):
    monkeypatch.setenv(data.CACHE_ENV, str(tmp_path / "empty-cache"))  # no official archive cached
    assert data.cifar10_source("auto") == "jpeg"
    assert "lossy" in data.CIFAR10_DESCRIPTIONS["jpeg"] and "not the original" in data.CIFAR10_DESCRIPTIONS["jpeg"]
    x, y = data.cifar10("test", n=30, source="auto")
    assert x.shape == (30, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert 0 <= x.min() and x.max() <= 1 and x.std() > 0.1
    assert y.tolist() == list(range(10)) * 3  # classes interleaved: every prefix is balanced
    train_x, train_y = data.cifar10("train", n=1000, source="jpeg")
    assert torch.bincount(train_y).tolist() == [100] * 10
    official_means = torch.tensor([125.31, 122.95, 113.87]) / 255
    assert torch.allclose(train_x.mean(dim=(0, 2, 3)), official_means, atol=0.03)


@needs_mirror
def test_cifar10_jpeg_decoding_agrees_with_pil():
    import io

    from PIL import Image

    with np.load(data.fetch("cifar10-jpeg/test.npz")) as archive:
        jpeg, offsets, labels = archive["jpeg"], archive["offsets"], archive["labels"]
    first_cat = int(np.flatnonzero(labels == 3)[0])  # the class-interleaved order puts it at position 3
    pil = np.asarray(Image.open(io.BytesIO(jpeg[offsets[first_cat]:offsets[first_cat + 1]].tobytes())).convert("RGB"))
    x, y = data.cifar10("test", n=4, source="jpeg")
    assert y[3] == 3 and data.CIFAR10_CLASSES[3] == "cat"
    assert np.abs(x[3].permute(1, 2, 0).numpy() * 255 - pil).max() <= 1.0


def test_cifar10_errors_say_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv(data.CACHE_ENV, str(tmp_path / "empty-cache"))
    with pytest.raises(ValueError, match="'train'.*'test'"):
        data.cifar10("validation")
    with pytest.raises(ValueError, match="'auto', 'official'"):
        data.cifar10("test", source="png")
    with pytest.raises(data.DataUnavailableError, match="source='jpeg'"):
        data.cifar10("test", source="official", download=False)
    if MIRROR:
        with pytest.raises(ValueError, match="n=20,000 is larger"):
            data.cifar10("test", n=20_000, source="jpeg")


def run_benchmark(script: str, argv: list[str], tmp_path) -> dict:
    """A tiny run of ``benchmarks/<script>`` (the measured numbers come from the cpu-sized run): its
    ``main`` must succeed and write its results file, returned parsed."""
    import runpy

    bench = runpy.run_path(str(ROOT / "benchmarks" / script))
    out = tmp_path / "result.json"
    assert bench["main"]([*argv, "--out", str(out), "--allow-busy"]) == 0
    return json.loads(out.read_text())


@needs_mirror
def test_the_ablation_benchmark_runs_every_comparison_and_measures_each_against_random_weights(tmp_path):
    result = run_benchmark("ssl_ablations.py", [
        "--n-train", "256", "--n-test", "128", "--width", "4", "--batch-size", "32", "--steps", "2",
        "--npid-steps", "2", "--dc-k", "8", "--dc-rounds", "2", "--dc-steps", "2", "--dc-long-rounds", "3",
        "--dc-long-steps", "1", "--relpos-steps", "2", "3"], tmp_path)
    runs = result["results"]
    assert len(runs) == 1 + 2 + 2 + 2 + 2 + 2 + 3 + 1
    assert len(runs["DeepCluster, 3 rounds of 1 steps, no fixes"]["largest"]) == 3
    assert "the lab's 2 x 2 grid of relative position, 2 steps" in runs
    assert runs["random weights"]["linear_over_random"] == 0
    lopsided = runs["DeepCluster from a lopsided start, no fixes"]
    assert lopsided["largest"][0] >= 0.4 and lopsided["empty"][0] >= 8 // 2 - 1  # the first round is forced uneven
    assert runs["DeepCluster from a lopsided start, both fixes"]["empty"][1:] == [0]  # re-assignment fills them
    for r in runs.values():
        assert 0 <= r["linear"] <= 1 and 0 <= r["knn"] <= 1 and r["seconds"] >= 0
    assert result["settings"]["n_train"] == 256 and "load_average_at_start" in result


@needs_mirror
def test_the_collapse_benchmark_runs_each_setting_with_and_without_the_fixes(tmp_path):
    result = run_benchmark("deepcluster_collapse.py", [
        "--n-train", "256", "--n-test", "128", "--width", "4", "--batch-size", "32", "--dc-k", "8", "--rounds", "2",
        "--steps", "1", "--long-steps", "2", "--many-k", "16", "--guard-k", "20", "--guard-rounds", "2",
        "--guard-steps", "1"], tmp_path)
    runs = result["results"]
    assert len(runs) == 1 + 3 * 2 + 5 and len(result["runs"]) == 3 and len(result["guards_down"]) == 5
    guarded = {name.rsplit(", ", 2)[-2] + ", " + name.rsplit(", ", 1)[-1]: kw for name, kw in result["guards_down"].items()}
    assert all(kw["k"] == 20 and kw["whiten"] is False for kw in guarded.values())
    assert "carry_centroids" not in guarded["K-means restarted, no fixes"]
    assert guarded["centroids carried over, re-assignment only"] == {**guarded["centroids carried over, no fixes"],
                                                                      "reassign": True}
    both = runs[next(name for name in result["guards_down"] if name.endswith("both fixes"))]
    assert both["empty"] == [0, 0] and len(both["nmi"]) == 2
    naive, fixed = runs["16 clusters, 2 rounds of 1 steps, no fixes"], runs["16 clusters, 2 rounds of 1 steps, both fixes"]
    assert len(naive["largest"]) == 2 and len(fixed["clusters_used"]) == 2
    assert fixed["empty"] == [0, 0] and max(naive["clusters_used"]) <= 16
    assert result["runs"]["crops and flips, 2 rounds of 1 steps"]["augment"] == "random_crop_flip"
    for r in runs.values():
        assert 0 <= r["linear"] <= 1 and 0 <= r["knn"] <= 1 and r["seconds"] >= 0
