"""Learning with few labels (chapter 10, lab 10b): the k-NN graph, label propagation and its class mass
normalisation, pseudo-label selection, self-training, the from-scratch baseline, and the lab's self-checks."""

import math

import pytest
import torch
import torch.nn.functional as F

from unsuplab import checks
from unsuplab.models import semi_supervised as semi


def two_moons(n_per_moon: int = 150, noise: float = 0.05, seed: int = 0):
    """Two interleaved half circles (scikit-learn's make_moons), classes 0 and 1."""
    g = torch.Generator().manual_seed(seed)
    t = torch.rand(n_per_moon, generator=g) * math.pi
    upper = torch.stack([t.cos(), t.sin()], 1)
    t = torch.rand(n_per_moon, generator=g) * math.pi
    lower = torch.stack([1 - t.cos(), 0.5 - t.sin()], 1)
    x = torch.cat([upper, lower]) + noise * torch.randn(2 * n_per_moon, 2, generator=g)
    return x, torch.cat([torch.zeros(n_per_moon), torch.ones(n_per_moon)]).long()


def test_knn_graph_is_symmetric_without_self_loops_and_has_the_nearest_neighbours():
    x = torch.randn(60, 3, generator=torch.Generator().manual_seed(0))
    k = 4
    W = semi.knn_graph(x, k, batch_size=7).to_dense()            # a batch size that does not divide N
    assert torch.allclose(W, W.T) and (W.diagonal() == 0).all()
    assert ((W > 0) & (W <= 1)).sum(1).min() >= k
    d2 = torch.cdist(x, x).pow(2).fill_diagonal_(float("inf"))
    near = d2.topk(k, largest=False).indices
    sigma2 = d2.gather(1, near)[:, -1].mean()
    rows = torch.arange(60)[:, None].expand(-1, k)
    assert torch.allclose(W[rows, near], torch.exp(-d2.gather(1, near) / sigma2), atol=1e-5)   # eq. (10.5)
    others = torch.ones_like(W, dtype=torch.bool)
    others[rows, near] = False
    others[near, rows] = False
    assert (W[others] == 0).all()


def test_knn_graph_refuses_an_impossible_k():
    with pytest.raises(ValueError, match="neighbours"):
        semi.knn_graph(torch.randn(5, 2), 5)


def test_transition_matrix_rows_sum_to_one():
    P = semi.transition_matrix(semi.knn_graph(torch.randn(50, 2), 5))
    assert P.layout == torch.sparse_csr
    assert torch.allclose(P.to_dense().sum(1), torch.ones(50), atol=1e-6)


def test_propagation_converges_to_the_harmonic_solution():
    x, y = two_moons(40, seed=1)
    P = semi.transition_matrix(semi.knn_graph(x, 6)).to_dense().double()
    labelled = torch.tensor([0, 1, 40, 41])
    F_ = semi.propagate_labels(P, labelled, y[labelled], 2, steps=5_000).double()
    unlabelled = torch.ones(len(x), dtype=torch.bool)
    unlabelled[labelled] = False
    U, L = unlabelled.nonzero().flatten(), labelled
    Y_L = F.one_hot(y[L], 2).double()
    harmonic = torch.linalg.solve(torch.eye(len(U), dtype=torch.float64) - P[U][:, U], P[U][:, L] @ Y_L)
    assert torch.allclose(F_[U], harmonic, atol=1e-4)
    assert torch.equal(F_[L], Y_L)                                # the labelled rows stay clamped


def test_label_propagation_recovers_two_moons_from_two_labels():
    x, y = two_moons(150, noise=0.05)
    labelled = torch.tensor([0, 150])                              # one label per moon
    P = semi.transition_matrix(semi.knn_graph(x, 8))
    F_ = semi.propagate_labels(P, labelled, y[labelled], 2, steps=2_000)
    unlabelled = torch.ones(300, dtype=torch.bool)
    unlabelled[labelled] = False
    predicted = semi.class_mass_normalize(F_[unlabelled]).argmax(1)
    assert (predicted == y[unlabelled]).float().mean() >= 0.95
    # a probe on the two labelled points cannot: the moons are not linearly separable
    line = ((x - x[labelled].mean(0)) @ (x[150] - x[0])) > 0
    assert (line.long() == y).float().mean() < 0.95


def test_class_mass_normalisation_gives_each_class_its_prior_mass():
    scores = torch.rand(100, 3) * torch.tensor([1e-6, 1e-3, 1.0])   # very uneven masses, as with few labels
    out = semi.class_mass_normalize(scores)
    assert torch.allclose(out.sum(0), torch.full((3,), 1 / 3))
    prior = torch.tensor([0.5, 0.3, 0.2])
    assert torch.allclose(semi.class_mass_normalize(scores, prior).sum(0), prior)
    assert (semi.class_mass_normalize(scores).argmax(1) != 2).any()   # the plain argmax would say 2 everywhere


def test_pseudo_labels_are_only_the_confident_ones():
    probs = torch.tensor([[0.95, 0.05], [0.6, 0.4], [0.1, 0.9], [0.97, 0.03], [0.45, 0.55], [0.92, 0.08]])
    index, labels = semi.select_pseudo_labels(probs, 0.9)
    assert index.tolist() == [0, 2, 3, 5] and labels.tolist() == [0, 1, 0, 0]
    index, labels = semi.select_pseudo_labels(probs, 0.9, per_class=2)      # the two most confident 0s
    assert index.tolist() == [0, 2, 3]                                      # 0.95 and 0.97 beat 0.92
    assert semi.select_pseudo_labels(probs, 0.99)[0].numel() == 0
    assert semi.pseudo_label_problem(probs, 0.9, 2, (index, labels)) is None


def test_self_training_without_pseudo_labels_is_the_probe():
    from unsuplab import metrics

    g = torch.Generator().manual_seed(0)
    centres = 3 * torch.randn(3, 5, generator=g)
    y = torch.arange(300) % 3
    x = centres[y] + torch.randn(300, 5, generator=g)
    labelled, pool, test = torch.arange(6), x[6:200], slice(200, None)
    probe = metrics.linear_probe(x[labelled], y[labelled], x[test], y[test])
    none = semi.self_train(x[labelled], y[labelled], pool, x[test], y[test], threshold=1.1)   # nobody is that sure
    assert none == pytest.approx(probe)
    some = semi.self_train(x[labelled], y[labelled], pool, x[test], y[test], threshold=0.9, per_class=50, rounds=2)
    assert some >= 0.9


def test_random_shift_moves_whole_images_by_at_most_the_shift():
    x = torch.zeros(64, 1, 12, 12)
    x[:, :, 5:7, 5:7] = 1.0                                          # a square away from the border
    torch.manual_seed(0)
    shifted = semi.random_shift(x, 2)
    assert shifted.shape == x.shape and torch.allclose(shifted.sum((1, 2, 3)), x.sum((1, 2, 3)))
    rows = shifted[:, 0].amax(2).argmax(1)                          # the square's top row in each image
    assert (rows - 5).abs().max() <= 2 and len(rows.unique()) > 1
    assert torch.equal(semi.random_shift(x, 0), x)


def test_train_from_scratch_fits_a_few_labelled_images():
    torch.manual_seed(0)
    x = torch.rand(10, 1, 8, 8)
    y = torch.arange(10)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    history = semi.train_from_scratch(net, x, y, steps=150, batch_size=64, lr=1e-2, augment=None, progress_bar=False)
    assert len(history.steps["loss"]) == 150 and history.steps["loss"][-1] < history.steps["loss"][0] / 5
    assert (semi.predict(net, x) == y).all()


def test_the_propagation_check_accepts_the_reference_and_rejects_slips(capsys):
    semi.check_propagation_step(semi.propagation_step)
    assert "✓" in capsys.readouterr().out

    def dense_copy(P, scores, labelled, targets):                      # another correct way
        out = P.to_dense() @ scores.clone() if P.layout != torch.strided else P @ scores
        out[labelled] = targets
        return out

    semi.check_propagation_step(dense_copy)

    def no_clamp(P, scores, labelled, targets):
        return P @ scores

    with pytest.raises(checks.CheckFailed, match="reset the labelled rows"):
        semi.check_propagation_step(no_clamp)

    def in_place(P, scores, labelled, targets):
        scores[labelled] = targets
        return P @ scores

    with pytest.raises(checks.CheckFailed, match="in place"):
        semi.check_propagation_step(in_place)


def test_the_pseudo_label_check_accepts_any_correct_answer_and_rejects_wrong_ones(capsys):
    semi.check_select_pseudo_labels(semi.select_pseudo_labels)
    assert "✓" in capsys.readouterr().out

    def other_tie(probs, threshold, per_class=None):                  # breaks ties at the cut the other way
        confidence, predicted = probs.max(1)
        keep = torch.nonzero(confidence >= threshold).flatten().flip(0)
        if per_class is not None:
            keep = torch.cat([k[confidence[k].argsort(descending=True, stable=True)[:per_class]]
                              for k in (keep[predicted[keep] == c] for c in range(probs.shape[1]))])
        keep = keep.sort().values
        return keep, predicted[keep]

    semi.check_select_pseudo_labels(other_tie)

    def no_cap(probs, threshold, per_class=None):
        return semi.select_pseudo_labels(probs, threshold, None)

    with pytest.raises(checks.CheckFailed, match="more than per_class"):
        semi.check_select_pseudo_labels(no_cap)

    def least_confident(probs, threshold, per_class=None):
        confidence, predicted = probs.max(1)
        keep = torch.nonzero(confidence >= threshold).flatten()
        if per_class is not None:
            keep = torch.cat([k[confidence[k].argsort()[:per_class]]
                              for k in (keep[predicted[keep] == c] for c in range(probs.shape[1]))])
        keep = keep.sort().values
        return keep, predicted[keep]

    with pytest.raises(checks.CheckFailed, match="most confident"):
        semi.check_select_pseudo_labels(least_confident)

    with pytest.raises(checks.CheckFailed, match="not confident enough"):
        semi.check_select_pseudo_labels(lambda probs, threshold, per_class=None: (torch.arange(len(probs)),
                                                                                 probs.argmax(1)))
