"""Tests for unsuplab.metrics: k-NN and the linear probe against scikit-learn, clustering metrics
against hand-computed answers, BLEU against sacreBLEU and by hand."""

import math

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import normalized_mutual_info_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import StandardScaler

from unsuplab import metrics


def blobs(n_per_class, n_classes, dim, spread, seed):
    """Gaussian blobs: class centres N(0, 1) * 3, points centre + spread * N(0, 1)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, dim)) * 3.0
    y = np.repeat(np.arange(n_classes), n_per_class)
    x = centres[y] + spread * rng.normal(size=(len(y), dim))
    order = rng.permutation(len(y))
    return x[order], y[order]


def split(x, y, n_train):
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


# --------------------------------------------------------------------------------------- k-NN

@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_knn_matches_sklearn_without_vote_ties(metric):
    # Two classes and an odd k: a vote can never tie, so every prediction must agree.
    x, y = blobs(150, 2, 8, spread=3.0, seed=1)
    xtr, ytr, xte, yte = split(x, y, 200)
    sk = KNeighborsClassifier(n_neighbors=5, algorithm="brute", metric=metric).fit(xtr, ytr)
    ours = metrics.knn_predict(xtr, ytr, xte, k=5, metric=metric).numpy()
    np.testing.assert_array_equal(ours, sk.predict(xte))
    acc = metrics.knn_accuracy(xtr, ytr, xte, yte, k=5, metric=metric)
    assert acc == pytest.approx(sk.score(xte, yte), abs=1e-12)
    assert 0.6 < acc < 1.0  # a problem with errors, so the comparison means something


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_knn_matches_sklearn_on_rows_without_ties_multiclass(metric):
    x, y = blobs(100, 4, 6, spread=3.0, seed=2)
    xtr, ytr, xte, yte = split(x, y, 250)
    sk = KNeighborsClassifier(n_neighbors=6, algorithm="brute", metric=metric).fit(xtr, ytr)
    neighbours = sk.kneighbors(xte, return_distance=False)
    votes = np.stack([np.bincount(ytr[row], minlength=4) for row in neighbours])
    no_tie = (votes == votes.max(1, keepdims=True)).sum(1) == 1
    assert no_tie.sum() > 100 and (~no_tie).sum() > 0  # both kinds of rows are present
    ours = metrics.knn_predict(xtr, ytr, xte, k=6, metric=metric).numpy()
    np.testing.assert_array_equal(ours[no_tie], sk.predict(xte)[no_tie])
    # On tied rows our rule picks the class of the nearest neighbour among the tied classes.
    for row in np.flatnonzero(~no_tie):
        top = np.flatnonzero(votes[row] == votes[row].max())
        nearest_tied = next(ytr[j] for j in neighbours[row] if ytr[j] in top)
        assert ours[row] == nearest_tied


def test_knn_tie_goes_to_the_nearer_neighbour():
    xtr = np.array([[0.0], [1.0], [2.0], [3.0]])
    ytr = np.array([1, 0, 0, 1])
    # k=2: query 0.4 sees label 1 (d=0.4) then label 0 (d=0.6): a 1-1 tie, the nearer (1) wins.
    # query 0.9 sees label 0 (d=0.1) then label 1 (d=0.9): the nearer (0) wins.
    pred = metrics.knn_predict(xtr, ytr, np.array([[0.4], [0.9]]), k=2)
    assert pred.tolist() == [1, 0]


def test_knn_weighted_euclidean_matches_sklearn_distance_weights():
    x, y = blobs(80, 3, 5, spread=3.0, seed=3)
    xtr, ytr, xte, _ = split(x, y, 160)
    sk = KNeighborsClassifier(n_neighbors=7, algorithm="brute", weights="distance").fit(xtr, ytr)
    ours = metrics.knn_predict(xtr, ytr, xte, k=7, weighted=True).numpy()
    np.testing.assert_array_equal(ours, sk.predict(xte))
    # A test point equal to a training point takes that point's label (distance 0 wins the vote).
    assert metrics.knn_predict(xtr, ytr, xtr[:20], k=7, weighted=True).tolist() == ytr[:20].tolist()


def test_knn_weighted_cosine_uses_exp_similarity_over_temperature():
    x, y = blobs(80, 3, 5, spread=3.0, seed=4)
    xtr, ytr, xte, _ = split(x, y, 160)
    k, tau = 9, 0.07
    a = xtr / np.linalg.norm(xtr, axis=1, keepdims=True)
    b = xte / np.linalg.norm(xte, axis=1, keepdims=True)
    sim = b @ a.T
    expected = []
    for row in sim:
        near = np.argsort(-row)[:k]
        votes = np.zeros(3)
        np.add.at(votes, ytr[near], np.exp(row[near] / tau))
        expected.append(votes.argmax())
    ours = metrics.knn_predict(xtr, ytr, xte, k=k, metric="cosine", weighted=True).numpy()
    np.testing.assert_array_equal(ours, expected)
    # The weights matter: on this data some predictions differ from the plain vote.
    plain = metrics.knn_predict(xtr, ytr, xte, k=k, metric="cosine").numpy()
    assert (plain != ours).any()


def test_knn_batch_size_does_not_change_the_answer():
    x, y = blobs(60, 3, 4, spread=3.0, seed=5)
    xtr, ytr, xte, yte = split(x, y, 100)
    full = metrics.knn_predict(xtr, ytr, xte, k=5, batch_size=1024)
    for batch_size in (1, 7, 33):
        assert torch.equal(metrics.knn_predict(xtr, ytr, xte, k=5, batch_size=batch_size), full)
    small = metrics.knn_accuracy(xtr, ytr, xte, yte, batch_size=7)
    assert small == metrics.knn_accuracy(xtr, ytr, xte, yte)


def test_knn_flattens_images_accepts_torch_and_keeps_label_values():
    rng = np.random.default_rng(6)
    images = rng.random((40, 1, 4, 4)).astype(np.float32)
    labels = rng.choice([3, 7, 9], size=40)
    flat = images.reshape(40, -1)
    a = metrics.knn_predict(torch.from_numpy(images[:30]), torch.from_numpy(labels[:30]),
                            torch.from_numpy(images[30:]), k=3)
    b = metrics.knn_predict(flat[:30], labels[:30], flat[30:], k=3)
    assert torch.equal(a, b) and set(a.tolist()) <= {3, 7, 9}
    # k=1 on the training set itself finds each point: accuracy 1.
    assert metrics.knn_accuracy(images, labels, images, labels, k=1) == 1.0


def test_knn_bad_inputs_say_what_was_expected():
    x, y = blobs(10, 2, 3, spread=1.0, seed=7)
    with pytest.raises(ValueError, match=r"train_x has 20 rows but train_y has 19"):
        metrics.knn_accuracy(x, y[:-1], x, y)
    with pytest.raises(ValueError, match=r"test_x has 20 rows but test_y has 18"):
        metrics.knn_accuracy(x, y, x, y[:-2])
    with pytest.raises(ValueError, match=r"1 <= k <= N_train = 20, got k=0"):
        metrics.knn_accuracy(x, y, x, y, k=0)
    with pytest.raises(ValueError, match=r"1 <= k <= N_train = 20, got k=21"):
        metrics.knn_accuracy(x, y, x, y, k=21)
    bad = x.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match=r"finite features in train_x, got 1 NaN or inf"):
        metrics.knn_accuracy(bad, y, x, y)
    with pytest.raises(ValueError, match=r"finite features in test_x"):
        metrics.knn_accuracy(x, y, np.where(bad == bad, bad, np.inf), y)
    with pytest.raises(ValueError, match=r"'euclidean' or 'cosine', got 'manhattan'"):
        metrics.knn_accuracy(x, y, x, y, metric="manhattan")
    with pytest.raises(ValueError, match=r"train_x has 3 features per sample but test_x has 2"):
        metrics.knn_accuracy(x, y, x[:, :2], y)
    with pytest.raises(ValueError, match=r"shape \(N, D\).*got shape \(20,\)"):
        metrics.knn_accuracy(x[:, 0], y, x, y)
    with pytest.raises(ValueError, match=r"shape \(N,\).*got shape \(20, 2\).*argmax"):
        metrics.knn_accuracy(x, np.eye(2)[y], x, y)
    with pytest.raises(ValueError, match=r"positive integer batch_size, got 0"):
        metrics.knn_accuracy(x, y, x, y, batch_size=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_knn_and_probe_on_gpu_agree_with_cpu():
    x, y = blobs(100, 3, 8, spread=3.0, seed=8)
    xtr, ytr, xte, yte = split(x, y, 200)
    for metric in ("euclidean", "cosine"):
        cpu = metrics.knn_predict(xtr, ytr, xte, k=5, metric=metric)
        gpu = metrics.knn_predict(torch.tensor(xtr, device="cuda"), ytr, xte, k=5, metric=metric)
        assert torch.equal(cpu, gpu)
    acc_cpu = metrics.linear_probe(xtr, ytr, xte, yte)
    acc_gpu, model = metrics.linear_probe(xtr, ytr, xte, yte, device="cuda", return_model=True)
    assert model.linear.weight.device.type == "cuda"
    assert abs(acc_cpu - acc_gpu) <= 0.01


# ------------------------------------------------------------------------------- linear probe

def test_linear_probe_separates_separable_blobs():
    x, y = blobs(100, 4, 5, spread=0.3, seed=10)
    xtr, ytr, xte, yte = split(x, y, 300)
    assert metrics.linear_probe(xtr, ytr, xte, yte) >= 0.99


def test_linear_probe_matches_sklearn_logistic_regression():
    x, y = blobs(300, 3, 20, spread=6.0, seed=11)
    xtr, ytr, xte, yte = split(x, y, 600)
    weight_decay = 1e-2
    acc, model = metrics.linear_probe(xtr, ytr, xte, yte, weight_decay=weight_decay,
                                      return_model=True)
    scaler = StandardScaler().fit(xtr)
    sk = LogisticRegression(C=1.0 / (weight_decay * len(xtr)), max_iter=2000, tol=1e-8)
    sk.fit(scaler.transform(xtr), ytr)
    sk_acc = sk.score(scaler.transform(xte), yte)
    assert 0.6 < sk_acc < 0.95  # a hard problem
    assert abs(acc - sk_acc) <= 0.02
    # Same objective, so the same weights (both solutions have columns summing to zero).
    np.testing.assert_allclose(model.linear.weight.detach().numpy(), sk.coef_, atol=2e-3)
    agree = (model.predict(xte).numpy() == sk.predict(scaler.transform(xte))).mean()
    assert agree >= 0.98


def test_linear_probe_is_deterministic_and_standardises_with_train_statistics():
    x, y = blobs(50, 3, 6, spread=2.0, seed=12)
    x[:, 2] = 5.0  # a constant feature must not divide by zero
    labels = np.array([2, 5, 11])[y]
    xtr, ytr, xte, yte = split(x, labels, 100)
    acc1, m1 = metrics.linear_probe(xtr, ytr, xte, yte, max_iter=50, return_model=True)
    acc2, m2 = metrics.linear_probe(xtr, ytr, xte, yte, max_iter=50, return_model=True)
    assert acc1 == acc2 and torch.equal(m1.linear.weight, m2.linear.weight)
    np.testing.assert_allclose(m1.mean.numpy(), xtr.mean(0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(m1.std.numpy()[[0, 1]], xtr.std(0)[[0, 1]], rtol=1e-4)
    assert m1.std[2] == 1.0 and torch.isfinite(m1.linear.weight).all()
    assert m1.classes.tolist() == [2, 5, 11]
    assert acc1 == pytest.approx((m1.predict(xte).numpy() == yte).mean(), abs=1e-12)
    # Without standardisation the model keeps mean 0 and std 1.
    _, m3 = metrics.linear_probe(xtr, ytr, xte, yte, max_iter=5, standardize=False, return_model=True)
    assert float(m3.mean.abs().max()) == 0.0 and float(m3.std.min()) == 1.0


def test_linear_probe_bad_inputs():
    x, y = blobs(10, 2, 3, spread=1.0, seed=13)
    with pytest.raises(ValueError, match=r"at least two classes in train_y, got only \[0\]"):
        metrics.linear_probe(x, np.zeros(20, int), x, y)
    with pytest.raises(ValueError, match=r"train_x has 20 rows but train_y has 10"):
        metrics.linear_probe(x, y[:10], x, y)
    with pytest.raises(ValueError, match=r"weight_decay >= 0, got -1"):
        metrics.linear_probe(x, y, x, y, weight_decay=-1)
    with pytest.raises(ValueError, match=r"integer class labels in train_y"):
        metrics.linear_probe(x, y + 0.5, x, y)


# -------------------------------------------------------------------------------- clustering

def test_cluster_accuracy_is_one_for_a_renamed_clustering():
    rng = np.random.default_rng(20)
    y = rng.integers(0, 5, size=200)
    renamed = np.array([3, 0, 4, 1, 2])[y] + 10  # any ids, any order
    assert metrics.cluster_accuracy(y, renamed) == 1.0
    assert metrics.cluster_accuracy(torch.from_numpy(y), torch.from_numpy(renamed)) == 1.0


def test_cluster_accuracy_hand_computed_cases():
    # Contingency (cluster x class): cluster 0 -> [1, 3], cluster 1 -> [2, 0].
    # Best one-to-one map: cluster 1 -> class 0 (2 right), cluster 0 -> class 1 (3 right): 5/6.
    assert metrics.cluster_accuracy([0, 0, 0, 1, 1, 1], [1, 1, 0, 0, 0, 0]) == pytest.approx(5 / 6)
    # More clusters than classes: cluster 2 -> class 1 (2 right), cluster 0 or 1 -> class 0
    # (1 right); the third cluster stays unmatched and its sample counts as wrong: 3/4.
    assert metrics.cluster_accuracy([0, 0, 1, 1], [0, 1, 2, 2]) == pytest.approx(3 / 4)
    # One cluster per sample: only 2 clusters can be matched (a many-to-one map would say 1.0).
    assert metrics.cluster_accuracy([0, 0, 1, 1], [0, 1, 2, 3]) == pytest.approx(2 / 4)
    # Fewer clusters than classes: class 2's samples have no cluster: 4/6.
    assert metrics.cluster_accuracy([0, 0, 1, 1, 2, 2], [5, 5, 7, 7, 7, 7]) == pytest.approx(4 / 6)
    # String labels work too.
    assert metrics.cluster_accuracy(["a", "a", "b"], [1, 1, 0]) == 1.0


def test_nmi_matches_sklearn():
    rng = np.random.default_rng(21)
    y = rng.integers(0, 4, size=300)
    k = np.where(rng.random(300) < 0.7, y, rng.integers(0, 6, size=300))
    expected = normalized_mutual_info_score(y, k, average_method="arithmetic")
    assert metrics.nmi(y, k) == pytest.approx(expected, abs=1e-12)
    assert 0.2 < metrics.nmi(y, k) < 0.9
    assert metrics.nmi(y, (y + 1) % 4) == pytest.approx(1.0)


def test_clustering_bad_inputs():
    with pytest.raises(ValueError, match=r"y_true has 3 labels but y_pred has 2 cluster ids"):
        metrics.cluster_accuracy([0, 1, 1], [0, 1])
    with pytest.raises(ValueError, match=r"y_pred of shape \(N,\).*got shape \(3, 2\)"):
        metrics.nmi([0, 1, 1], np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"at least one sample"):
        metrics.cluster_accuracy([], [])


# ------------------------------------------------------------------------------- the protocol

def test_evaluate_features_reports_the_same_numbers():
    x, y = blobs(60, 3, 5, spread=2.5, seed=30)
    xtr, ytr, xte, yte = split(x, y, 120)
    result = metrics.evaluate_features(xtr, ytr, xte, yte, k=3, metric="cosine")
    assert set(result) == {"knn", "linear"}
    assert result["knn"] == metrics.knn_accuracy(xtr, ytr, xte, yte, k=3, metric="cosine")
    assert result["linear"] == metrics.linear_probe(xtr, ytr, xte, yte)
    assert metrics.evaluate_features(xtr, ytr, xte, yte, probe=False) == {
        "knn": metrics.knn_accuracy(xtr, ytr, xte, yte)}


def test_gaussian_frechet_distance_refuses_a_matrix_that_is_no_covariance():
    with pytest.raises(ValueError, match=r"sigma1 is not positive semi-definite .*smallest eigenvalue is -1"):
        metrics.gaussian_frechet_distance(np.zeros(2), -np.eye(2), np.zeros(2), np.eye(2))
    with pytest.raises(ValueError, match="sigma2 is not positive semi-definite"):
        metrics.gaussian_frechet_distance(np.zeros(2), np.eye(2), np.zeros(2), np.diag([1.0, -0.5]))
    # a singular covariance (fewer samples than dimensions) is fine, rounding included
    x = np.random.default_rng(0).normal(size=(3, 5))
    sigma = np.cov(x, rowvar=False)
    assert metrics.gaussian_frechet_distance(np.zeros(5), sigma, np.zeros(5), sigma) == pytest.approx(0, abs=1e-6)


# --------------------------------------------------------------------------- BLEU (9.12), chapter 9

SYSTEM = ["the cat sat on the mat .", "a man is riding a red bike down the street .",
          "two dogs play in the snow near a tree .", "a woman in a blue dress smiles ."]
REFERENCE = ["the cat sat on a mat .", "a man rides a red bicycle down the street .",
             "two dogs are playing in the snow by a tree .", "a woman in a blue dress is smiling ."]


def test_bleu_matches_sacrebleu():
    sacrebleu = pytest.importorskip("sacrebleu")
    ours = metrics.bleu([s.split() for s in SYSTEM], [r.split() for r in REFERENCE])
    theirs = sacrebleu.corpus_bleu(SYSTEM, [REFERENCE], tokenize="none", smooth_method="none").score
    assert ours == pytest.approx(theirs, abs=1e-6) and 20 < ours < 80
    assert metrics.corpus_bleu(SYSTEM, REFERENCE) == pytest.approx(
        sacrebleu.corpus_bleu(SYSTEM, [REFERENCE], lowercase=True).score)
    # a short hypothesis is penalised by BP; identical text scores 100
    assert metrics.bleu([r.split() for r in REFERENCE], [r.split() for r in REFERENCE]) == pytest.approx(100)
    short = [s.split()[:-2] for s in REFERENCE]
    bp = math.exp(1 - sum(len(r.split()) for r in REFERENCE) / sum(map(len, short)))
    assert metrics.bleu(short, [r.split() for r in REFERENCE]) == pytest.approx(100 * bp)


def test_bleu_by_hand_on_one_sentence():
    # hyp "a b c d", ref "a b c e": p1 = 3/4, p2 = 2/3, p3 = 1/2, p4 = 0/1 -> 0 without smoothing
    assert metrics.bleu([["a", "b", "c", "d"]], [["a", "b", "c", "e"]]) == 0.0
    # clipped counts: "the the the the" against "the cat": p1 = 1/4
    assert metrics.bleu([["the"] * 4], [["the", "cat"]], max_n=1) == pytest.approx(25.0)


def test_bleu_rejects_bad_input():
    with pytest.raises(ValueError, match="one reference per hypothesis"):
        metrics.bleu([["a"]], [])
    with pytest.raises(TypeError, match="tokenised sentences"):
        metrics.bleu(["a b"], ["a b"])


def test_bleu_of_no_sentences_is_an_error_not_a_score():
    with pytest.raises(ValueError, match="no sentences to score"):
        metrics.bleu([], [])
    with pytest.raises(ValueError, match="no sentences to score"):
        metrics.corpus_bleu([], [])
