"""How good are frozen features? The evaluation protocol that every chapter reuses.

An unsupervised model is judged by what its features make easy. Every chapter freezes the
encoder, computes features for the training and the test images, and reports the same numbers:

``knn_accuracy``
    a k-nearest-neighbour classifier on the features (no training at all): does the geometry of
    the feature space put images of the same class next to each other?
``linear_probe``
    a multinomial logistic regression on the standardised features: is the class information
    *linearly* readable?
``cluster_accuracy`` and ``nmi``
    for methods that output cluster ids (k-means, mixtures): how well do the clusters match the
    classes, under the best one-to-one renaming of clusters (accuracy) or not caring about names
    at all (normalised mutual information)?
``evaluate_features``
    k-NN and linear probe together, so that every table in the book reports the same protocol.

Later sections hold the metrics of single chapters: disentanglement against known factors (``mig``,
chapter 5), the Fréchet distance between feature sets (``frechet_distance``, chapter 6), and BLEU for
translations (``bleu`` on tokens, ``corpus_bleu`` as sacreBLEU, eq. 9.12, chapter 9).

Features can be NumPy arrays or torch tensors of shape (N, D); inputs with more dimensions, such as
raw images (N, 1, 28, 28), are flattened to (N, D) so that the pixels themselves give a baseline.
Computation happens in float32 with torch, on the device of the data (or the ``device`` given).

    >>> from unsuplab import metrics                                      # doctest: +SKIP
    >>> metrics.evaluate_features(f_train, y_train, f_test, y_test)        # doctest: +SKIP
    {'knn': 0.97, 'linear': 0.92}
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["knn_predict", "knn_accuracy", "linear_probe", "LinearProbe", "cluster_accuracy", "nmi",
           "evaluate_features"]

METRICS = ("euclidean", "cosine")
#: Temperature of the weighted cosine vote, as in Wu et al. (2018), "Unsupervised feature
#: learning via non-parametric instance discrimination".
KNN_TEMPERATURE = 0.07


# ---------------------------------------------------------------------------------------------
# Input checks: every public function goes through these, so every error reads the same way.
# ---------------------------------------------------------------------------------------------

def _as_tensor(x: Any, name: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach()
    array = np.asarray(x)
    if array.dtype == object or array.dtype.kind in "USV":
        raise ValueError(f"expected {name} to be a numeric array or tensor, got dtype {array.dtype}: "
                         "convert it to numbers first (e.g. np.asarray(x, dtype=np.float32)).")
    if not array.flags.writeable:  # e.g. np.frombuffer or a read-only memmap: we never write to it
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            return torch.as_tensor(array)
    return torch.as_tensor(array)


def _features(x: Any, name: str) -> torch.Tensor:
    """A float32 (N, D) tensor; higher-dimensional inputs are flattened per sample."""
    t = _as_tensor(x, name)
    if t.ndim < 2:
        raise ValueError(
            f"expected {name} of shape (N, D) (or (N, ...), which is flattened), got shape "
            f"{tuple(t.shape)}: use x[:, None] for a single feature per sample, x[None] for one sample."
        )
    if t.shape[0] == 0:
        raise ValueError(f"expected at least one sample in {name}, got shape {tuple(t.shape)}.")
    t = t.reshape(t.shape[0], -1).float()
    bad = ~torch.isfinite(t)
    if bad.any():
        rows = int(bad.any(dim=1).sum())
        raise ValueError(
            f"expected finite features in {name}, got {int(bad.sum())} NaN or inf values in {rows} of "
            f"{t.shape[0]} rows: the encoder probably diverged (check the training loss), "
            "or the inputs contain NaN."
        )
    return t


def _labels(y: Any, name: str) -> torch.Tensor:
    """A 1-D int64 tensor of class labels."""
    t = _as_tensor(y, name)
    if t.ndim != 1:
        hint = " If they are one-hot or scores, use y.argmax(1)." if t.ndim == 2 else ""
        raise ValueError(f"expected {name} of shape (N,) with one integer label per sample, "
                         f"got shape {tuple(t.shape)}.{hint}")
    if t.is_floating_point():
        if not torch.isfinite(t).all() or not torch.equal(t, t.round()):
            raise ValueError(f"expected integer class labels in {name}, got non-integer values "
                             f"such as {t[t != t.round()][:3].tolist()}.")
    return t.long()


def _check_pair(x: torch.Tensor, y: torch.Tensor, x_name: str, y_name: str) -> None:
    if len(x) != len(y):
        raise ValueError(f"{x_name} has {len(x)} rows but {y_name} has {len(y)} labels: they must "
                         "describe the same samples, in the same order.")


def _check_same_width(train_x: torch.Tensor, test_x: torch.Tensor) -> None:
    if train_x.shape[1] != test_x.shape[1]:
        raise ValueError(f"train_x has {train_x.shape[1]} features per sample but test_x has "
                         f"{test_x.shape[1]}: compute both with the same encoder.")


def _resolve_device(device: Any, data: Any) -> torch.device:
    if device is not None:
        return torch.device(device)
    return data.device if isinstance(data, torch.Tensor) else torch.device("cpu")


# ---------------------------------------------------------------------------------------------
# k-nearest neighbours
# ---------------------------------------------------------------------------------------------

@torch.no_grad()
def knn_predict(train_x: Any, train_y: Any, test_x: Any, *, k: int = 5, metric: str = "euclidean",
                weighted: bool = False, batch_size: int = 1024, device: Any = None,
                temperature: float = KNN_TEMPERATURE) -> torch.Tensor:
    """Predict a label for every row of ``test_x`` by a vote of its ``k`` nearest training rows.

    Distances: ``metric="euclidean"`` uses ||a - b||; ``metric="cosine"`` ranks by the cosine
    similarity a.b / (||a|| ||b||) (the same order as scikit-learn's cosine distance 1 - cos).

    Votes: each of the k neighbours gives one vote to its class (``weighted=False``). With
    ``weighted=True`` a neighbour's vote is its similarity: exp(cos / temperature) with
    temperature 0.07 for cosine, as in Wu et al. (2018); 1 / distance for euclidean, as
    scikit-learn's ``weights="distance"`` (a neighbour at distance 0 takes the whole vote).

    Ties: when two classes get the same vote, the class of the *nearer* neighbour wins (the first
    neighbour, in order of distance, whose class has the top vote). scikit-learn breaks the same
    ties toward the smaller label instead, so the two agree wherever there is no tie.

    Test rows are processed ``batch_size`` at a time, so at most a (batch_size, N_train) block of
    distances is held in memory; the answer does not depend on ``batch_size``. Features are
    flattened to (N, D) and cast to float32 on ``device`` (None: the device of ``train_x``).
    Returns a CPU int64 tensor of shape (N_test,) holding labels of ``train_y``.
    """
    metric = str(metric).lower()
    if metric not in METRICS:
        raise ValueError(f"expected metric 'euclidean' or 'cosine', got {metric!r}.")
    device = _resolve_device(device, train_x)
    x_train, y_train = _features(train_x, "train_x"), _labels(train_y, "train_y")
    x_test = _features(test_x, "test_x")
    _check_pair(x_train, y_train, "train_x", "train_y")
    _check_same_width(x_train, x_test)
    n_train = len(x_train)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= n_train:
        raise ValueError(f"expected an integer k with 1 <= k <= N_train = {n_train}, got k={k!r}.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"expected a positive integer batch_size, got {batch_size!r}.")
    if weighted and metric == "cosine" and not temperature > 0:
        raise ValueError(f"expected a positive temperature, got {temperature!r}.")
    k = int(k)

    classes, y_index = torch.unique(y_train, return_inverse=True)  # labels -> 0..C-1
    n_classes = len(classes)
    x_train, y_index = x_train.to(device), y_index.to(device)
    if metric == "cosine":
        x_train = F.normalize(x_train, dim=1)
    else:
        train_sq = x_train.pow(2).sum(dim=1)  # (N_train,)

    predictions = []
    for start in range(0, len(x_test), batch_size):
        q = x_test[start:start + batch_size].to(device)  # (B, D)
        if metric == "cosine":
            sim = F.normalize(q, dim=1) @ x_train.T  # (B, N_train)
            near_sim, near = sim.topk(k, dim=1, largest=True, sorted=True)  # nearest first
            weights = torch.exp(near_sim / temperature) if weighted else None
        else:
            d2 = q.pow(2).sum(1, keepdim=True) - 2.0 * q @ x_train.T + train_sq  # (B, N_train)
            near_d2, near = d2.clamp_min_(0.0).topk(k, dim=1, largest=False, sorted=True)
            weights = None
            if weighted:
                dist = near_d2.sqrt()
                exact = dist == 0
                weights = torch.where(exact.any(dim=1, keepdim=True), exact.float(), 1.0 / dist)
        if weights is None:
            weights = torch.ones_like(near, dtype=torch.float32)
        near_class = y_index[near]  # (B, k)
        votes = torch.zeros(len(q), n_classes, device=device).scatter_add_(1, near_class, weights)
        # Tie-break: the first neighbour (nearest) whose class holds the top vote.
        is_top = votes.gather(1, near_class) == votes.max(dim=1, keepdim=True).values  # (B, k)
        position = torch.arange(k, device=device).expand_as(near_class)
        first = torch.where(is_top, position, torch.full_like(position, k)).min(dim=1).values
        predictions.append(near_class.gather(1, first[:, None]).squeeze(1).cpu())
    return classes[torch.cat(predictions)]


def knn_accuracy(train_x: Any, train_y: Any, test_x: Any, test_y: Any, *, k: int = 5,
                 metric: str = "euclidean", weighted: bool = False, batch_size: int = 1024,
                 device: Any = None) -> float:
    """Accuracy of a k-nearest-neighbour classifier on frozen features: fraction of test rows whose
    predicted label (see :func:`knn_predict` for distances, weights and the tie rule) equals
    ``test_y``.

    Features of any shape (N, ...) are flattened to (N, D), so raw images give a pixel baseline.
    Batched over test rows (never the full N_test x N_train matrix), on ``device`` (None: the
    device of ``train_x``). Raises ValueError for mismatched lengths, k < 1 or k > N_train, and
    NaN or inf features.
    """
    x_test, y_test = _features(test_x, "test_x"), _labels(test_y, "test_y")
    _check_pair(x_test, y_test, "test_x", "test_y")
    predicted = knn_predict(train_x, train_y, x_test, k=k, metric=metric, weighted=weighted,
                            batch_size=batch_size, device=device)
    return float((predicted == y_test.cpu()).double().mean())


# ---------------------------------------------------------------------------------------------
# Linear probe
# ---------------------------------------------------------------------------------------------

class LinearProbe(nn.Module):
    """The classifier that :func:`linear_probe` fits: standardise with the training mean and std,
    then one linear layer. ``forward`` gives logits (B, C); ``predict`` gives labels."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, linear: nn.Linear,
                 classes: torch.Tensor):
        super().__init__()
        self.register_buffer("mean", mean)  # (D,)
        self.register_buffer("std", std)  # (D,)
        self.register_buffer("classes", classes)  # (C,) the label of each logit
        self.linear = linear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(x.shape[0], -1)  # (B, ...) -> (B, D)
        return self.linear((x - self.mean) / self.std)  # (B, D) -> (B, C)

    @torch.no_grad()
    def predict(self, x: Any) -> torch.Tensor:
        """Labels (on the probe's device) for features ``x`` (array or tensor, (N, D) or (N, ...))."""
        x = _features(x, "x").to(self.mean.device)
        return self.classes[self.forward(x).argmax(dim=1)]


def linear_probe(train_x: Any, train_y: Any, test_x: Any, test_y: Any, *,
                 weight_decay: float = 1e-4, max_iter: int = 200, standardize: bool = True,
                 device: Any = None, return_model: bool = False):
    """Test accuracy of a multinomial logistic regression trained on frozen features.

    Protocol (the same in every chapter):

    1. Flatten features to (N, D), float32. If ``standardize``, subtract the TRAIN mean and divide
       by the TRAIN standard deviation, per feature (features constant on the training set, such
       as MNIST's border pixels, are divided by 1 instead of 0). The test set never informs them.
    2. Fit W (C, D) and b (C,), starting from zeros, by minimising the full-batch loss

           L(W, b) = mean_i CE(W x_i + b, y_i) + (weight_decay / 2) * ||W||^2

       (the bias is not penalised) with ``torch.optim.LBFGS`` and a strong-Wolfe line search, for
       at most ``max_iter`` iterations. This is scikit-learn's ``LogisticRegression`` objective
       with ``C = 1 / (weight_decay * N_train)``. The problem is convex, the start is fixed and the
       batch is full, so the result has no randomness.
    3. Report the accuracy on the test set (test labels absent from training count as errors).

    Runs on ``device`` (None: the device of ``train_x``). Returns the accuracy, or
    ``(accuracy, model)`` with ``return_model=True``, where ``model`` is a :class:`LinearProbe`.
    """
    if not weight_decay >= 0:
        raise ValueError(f"expected weight_decay >= 0, got {weight_decay!r}.")
    if isinstance(max_iter, bool) or not isinstance(max_iter, (int, np.integer)) or max_iter < 1:
        raise ValueError(f"expected a positive integer max_iter, got {max_iter!r}.")
    device = _resolve_device(device, train_x)
    x_train, y_train = _features(train_x, "train_x"), _labels(train_y, "train_y")
    x_test, y_test = _features(test_x, "test_x"), _labels(test_y, "test_y")
    _check_pair(x_train, y_train, "train_x", "train_y")
    _check_pair(x_test, y_test, "test_x", "test_y")
    _check_same_width(x_train, x_test)
    classes, target = torch.unique(y_train, return_inverse=True)
    if len(classes) < 2:
        raise ValueError(f"expected at least two classes in train_y, got only {classes.tolist()}.")

    x_train, target = x_train.to(device), target.to(device)
    n_features = x_train.shape[1]
    if standardize:
        mean = x_train.mean(dim=0)
        std = x_train.std(dim=0, unbiased=False)
        std = torch.where(std > 1e-8, std, torch.ones_like(std))
    else:
        mean = torch.zeros(n_features, device=device)
        std = torch.ones(n_features, device=device)
    z_train = (x_train - mean) / std  # (N, D)

    linear = nn.Linear(n_features, len(classes)).to(device)
    with torch.no_grad():
        linear.weight.zero_()
        linear.bias.zero_()
    optimizer = torch.optim.LBFGS(linear.parameters(), lr=1.0, max_iter=int(max_iter),
                                  history_size=10, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(linear(z_train), target) + 0.5 * weight_decay * linear.weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)  # runs up to max_iter L-BFGS iterations
    if not (torch.isfinite(linear.weight).all() and torch.isfinite(linear.bias).all()):
        raise RuntimeError("the linear probe's weights became NaN or inf: try standardize=True "
                           "or a larger weight_decay.")

    model = LinearProbe(mean, std, linear, classes.to(device)).eval()
    predicted = model.predict(x_test).cpu()
    accuracy = float((predicted == y_test.cpu()).double().mean())
    return (accuracy, model) if return_model else accuracy


# ---------------------------------------------------------------------------------------------
# Clustering
# ---------------------------------------------------------------------------------------------

def _label_array(y: Any, name: str) -> np.ndarray:
    array = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
    if array.ndim != 1:
        raise ValueError(f"expected {name} of shape (N,), one id per sample, got shape {array.shape}.")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise ValueError(f"expected finite ids in {name}, got NaN or inf.")
    return array


def _label_pair(y_true: Any, y_pred: Any) -> tuple[np.ndarray, np.ndarray]:
    y_true, y_pred = _label_array(y_true, "y_true"), _label_array(y_pred, "y_pred")
    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true has {len(y_true)} labels but y_pred has {len(y_pred)} cluster ids: "
                         "they must describe the same samples.")
    if len(y_true) == 0:
        raise ValueError("expected at least one sample, got empty y_true and y_pred.")
    return y_true, y_pred


def cluster_accuracy(y_true: Any, y_pred: Any) -> float:
    """Clustering accuracy: the fraction of samples whose cluster, renamed by the best one-to-one
    mapping of cluster ids to class labels, is their class.

    The mapping maximises the number of matched samples (Hungarian algorithm,
    ``scipy.optimize.linear_sum_assignment`` on the cluster x class contingency table).
    One-to-one means that with more clusters than classes only as many clusters as there are
    classes receive a label, and the samples of the unmatched clusters count as wrong (a
    many-to-one mapping would reward over-clustering: one cluster per sample would score 1.0).
    With fewer clusters than classes, the samples of unmatched classes count as wrong.
    Ids can be any values (they need not be 0..K-1).
    """
    from scipy.optimize import linear_sum_assignment

    y_true, y_pred = _label_pair(y_true, y_pred)
    _, true_index = np.unique(y_true, return_inverse=True)
    _, pred_index = np.unique(y_pred, return_inverse=True)
    counts = np.zeros((pred_index.max() + 1, true_index.max() + 1), dtype=np.int64)  # (K, C)
    np.add.at(counts, (pred_index.ravel(), true_index.ravel()), 1)
    rows, cols = linear_sum_assignment(counts, maximize=True)
    return float(counts[rows, cols].sum() / len(y_true))


def nmi(y_true: Any, y_pred: Any) -> float:
    """Normalised mutual information between classes and cluster ids, I(Y; K) divided by the
    arithmetic mean of H(Y) and H(K) (scikit-learn's ``normalized_mutual_info_score``). 1 for a
    perfect clustering up to renaming, near 0 for one unrelated to the classes."""
    from sklearn.metrics import normalized_mutual_info_score

    y_true, y_pred = _label_pair(y_true, y_pred)
    return float(normalized_mutual_info_score(y_true, y_pred, average_method="arithmetic"))


# ---------------------------------------------------------------------------------------------
# The protocol in one call
# ---------------------------------------------------------------------------------------------

def evaluate_features(train_x: Any, train_y: Any, test_x: Any, test_y: Any, *, k: int = 5,
                      metric: str = "euclidean", weighted: bool = False, probe: bool = True,
                      probe_iters: int = 200, device: Any = None) -> dict:
    """The book's evaluation of frozen features: ``{"knn": acc, "linear": acc}``, the one protocol of
    every chapter (chapter 7 sets it as ``unsuplab.models.ssl.evaluate`` does).

    ``knn`` is :func:`knn_accuracy` with ``k``, ``metric`` and ``weighted`` (default: an unweighted
    majority vote); ``linear`` is :func:`linear_probe` with ``max_iter=probe_iters``, present only when
    ``probe`` is True (skip it for a quick look). Both are test accuracies in [0, 1].
    """
    results = {"knn": knn_accuracy(train_x, train_y, test_x, test_y, k=k, metric=metric, weighted=weighted,
                                   device=device)}
    if probe:
        results["linear"] = linear_probe(train_x, train_y, test_x, test_y, max_iter=probe_iters, device=device)
    return results


# ---------------------------------------------------------------------------------------------
# Disentanglement against known factors (chapter 5)
# ---------------------------------------------------------------------------------------------

__all__ += ["discretize", "discrete_mutual_information", "mutual_information_matrix", "mig"]


def discretize(codes: Any, n_bins: int = 20) -> torch.Tensor:
    """Each column of ``codes`` (N, J) cut into ``n_bins`` equal-width bins between its own minimum
    and maximum: int64 bin ids (N, J) in [0, n_bins). A constant column falls into bin 0. This is the
    histogram discretisation used to estimate the mutual information of continuous codes (Chen et al.
    2018; Locatello et al. 2019 also use 20 bins)."""
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 2:
        raise ValueError(f"n_bins must be a whole number >= 2, got {n_bins!r}.")
    z = _features(codes, "codes").double()                  # (N, J)
    low, high = z.min(dim=0).values, z.max(dim=0).values    # (J,)
    span = torch.where(high > low, high - low, torch.ones_like(high))
    return ((z - low) / span * n_bins).floor().clamp_(0, n_bins - 1).long()


def _discrete_column(x: Any, name: str) -> torch.Tensor:
    t = _labels(x, name)                                    # (N,) int64, any integer values
    return torch.unique(t, return_inverse=True)[1]          # -> 0 .. n_values - 1


def discrete_mutual_information(a: Any, b: Any) -> float:
    """I(A; B) in nats of two discrete variables from their N paired samples (N,) and (N,):
    sum over (i, j) of p(i, j) log(p(i, j) / (p(i) p(j))) with the empirical frequencies. Equals
    scikit-learn's ``mutual_info_score``; I(A; A) is the entropy H(A)."""
    a, b = _discrete_column(a, "a"), _discrete_column(b, "b")
    _check_pair(a, b, "a", "b")
    n_a, n_b = int(a.max()) + 1, int(b.max()) + 1
    joint = torch.bincount(a * n_b + b, minlength=n_a * n_b).double().reshape(n_a, n_b) / len(a)
    p_a, p_b = joint.sum(1, keepdim=True), joint.sum(0, keepdim=True)     # (n_a, 1), (1, n_b)
    nonzero = joint > 0
    return float((joint[nonzero] * (joint / (p_a * p_b))[nonzero].log()).sum().clamp_min(0.0))


def mutual_information_matrix(codes: Any, factors: Any, *, n_bins: int = 20) -> np.ndarray:
    """I(z_j; v_k) in nats between every code dimension j of ``codes`` (N, J) (discretised with
    :func:`discretize`) and every known factor k of ``factors`` (N, K) (integer values): (J, K)."""
    binned = discretize(codes, n_bins)
    v = _as_tensor(factors, "factors")
    if v.ndim != 2 or len(v) != len(binned):
        raise ValueError(f"expected factors of shape (N, K) = ({len(binned)}, K), one row per code, got "
                         f"{tuple(v.shape)}: use factors[:, None] for a single factor.")
    return np.array([[discrete_mutual_information(binned[:, j], v[:, k]) for k in range(v.shape[1])]
                     for j in range(binned.shape[1])])


def mig(codes: Any, factors: Any, *, n_bins: int = 20, per_factor: bool = False):
    """Mutual information gap (Chen et al. 2018; eq. 5.8 of the book): for each known factor v_k,
    the gap between the two code dimensions that know most about it, divided by its entropy,

        MIG = 1/K sum_k (I(z_j(1); v_k) - I(z_j(2); v_k)) / H(v_k),

    with j(1) and j(2) the dimensions of largest and second-largest I(z_j; v_k). It lies in [0, 1]: 1
    when each factor is captured by one dimension alone, 0 when two dimensions share it equally or
    none holds it. ``codes`` (N, J) are continuous (use the posterior means), ``factors`` (N, K) the
    integer factor indices of the same N inputs; J >= 2. Returns the MIG as a float, or with
    ``per_factor`` the (K,) array of normalised gaps (their mean is the MIG)."""
    mi = mutual_information_matrix(codes, factors, n_bins=n_bins)          # (J, K)
    if mi.shape[0] < 2:
        raise ValueError(f"MIG needs at least two code dimensions to compare, got {mi.shape[0]}.")
    v = _as_tensor(factors, "factors")
    entropy = np.array([discrete_mutual_information(v[:, k], v[:, k]) for k in range(v.shape[1])])
    if (entropy <= 0).any():
        k = int(np.flatnonzero(entropy <= 0)[0])
        raise ValueError(f"factor column {k} takes a single value in these samples, so it has no "
                         "entropy and its gap cannot be normalised: drop that column.")
    top2 = np.sort(mi, axis=0)[-2:]                                         # (2, K) second, first
    gaps = (top2[1] - top2[0]) / entropy
    return gaps if per_factor else float(gaps.mean())


# ---------------------------------------------------------------------------------------------
# Fréchet distance between two sets of features (chapter 6)
# ---------------------------------------------------------------------------------------------

__all__ += ["gaussian_frechet_distance", "frechet_distance"]


def _sqrt_psd(matrix: torch.Tensor) -> torch.Tensor:
    """The symmetric square root of a symmetric positive semi-definite matrix, by eigendecomposition."""
    eigvals, eigvecs = torch.linalg.eigh(matrix)
    return (eigvecs * eigvals.clamp_min(0).sqrt()) @ eigvecs.T


def gaussian_frechet_distance(mu1: Any, sigma1: Any, mu2: Any, sigma2: Any) -> float:
    """The Fréchet (2-Wasserstein) distance, squared, between N(mu1, sigma1) and N(mu2, sigma2)::

        d^2 = ||mu1 - mu2||^2 + Tr(sigma1 + sigma2 - 2 (sigma1^{1/2} sigma2 sigma1^{1/2})^{1/2})

    (Dowson & Landau 1982). Tr (sigma1^{1/2} sigma2 sigma1^{1/2})^{1/2} equals Tr (sigma1 sigma2)^{1/2},
    the form written in Heusel et al. (2017); the symmetric form is computed in float64 by two
    eigendecompositions, so it needs no general matrix square root and has no imaginary part.
    Means have shape (D,), covariances (D, D), symmetric positive semi-definite.
    """
    mu1, mu2 = (torch.as_tensor(np.asarray(m) if not isinstance(m, torch.Tensor) else m).double().cpu()
                for m in (mu1, mu2))
    sigma1, sigma2 = (torch.as_tensor(np.asarray(s) if not isinstance(s, torch.Tensor) else s).double().cpu()
                      for s in (sigma1, sigma2))
    d = mu1.shape[0] if mu1.ndim == 1 else -1
    for name, mu in (("mu1", mu1), ("mu2", mu2)):
        if mu.ndim != 1 or mu.shape[0] != d:
            raise ValueError(f"expected mu1 and mu2 of the same shape (D,), got {tuple(mu1.shape)} and {tuple(mu2.shape)}.")
    for name, sigma in (("sigma1", sigma1), ("sigma2", sigma2)):
        if sigma.shape != (d, d):
            raise ValueError(f"expected {name} of shape ({d}, {d}) to match the means, got {tuple(sigma.shape)}.")
        if not torch.isfinite(sigma).all():
            raise ValueError(f"{name} contains NaN or inf values.")
        if not torch.allclose(sigma, sigma.T, rtol=1e-6, atol=1e-8 * (1 + sigma.abs().max().item())):
            raise ValueError(f"{name} is not symmetric: a covariance matrix must be.")
        eigvals = torch.linalg.eigvalsh((sigma + sigma.T) / 2)
        if eigvals[0] < -1e-6 * max(eigvals.abs().max().item(), 1e-12):  # beyond rounding
            raise ValueError(f"{name} is not positive semi-definite (its smallest eigenvalue is {eigvals[0]:.3g}, "
                             f"its largest {eigvals[-1]:.3g}): a covariance matrix never has a negative "
                             "eigenvalue. Compute it from features with torch.cov(x.T) or np.cov(x, rowvar=False).")
    root1 = _sqrt_psd(sigma1)
    middle = root1 @ sigma2 @ root1
    trace_cross = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp_min(0).sqrt().sum()
    distance = (mu1 - mu2).pow(2).sum() + torch.trace(sigma1) + torch.trace(sigma2) - 2 * trace_cross
    return max(float(distance), 0.0)


def _features_float64(x: Any, name: str) -> torch.Tensor:
    """(N, D) float64 CPU features, with the same checks and messages as :func:`_features`."""
    t = _as_tensor(x, name)
    _features(t[:1] if t.ndim >= 2 else t, name)  # shape message for (N,) inputs
    t = t.reshape(t.shape[0], -1).double().cpu()
    if not torch.isfinite(t).all():
        _features(t, name)  # raises the NaN / inf message
    if len(t) < 2:
        raise ValueError(f"expected at least 2 rows in {name} to estimate a covariance, got {len(t)}.")
    return t


def frechet_distance(features1: Any, features2: Any) -> float:
    """Fréchet distance between two sets of features, (N1, D) and (N2, D): fit a Gaussian to each
    (mean and unbiased covariance, as numpy.cov) and return :func:`gaussian_frechet_distance`.

    With Inception-v3 features of images this is the FID of Heusel et al. (2017); the course uses the
    features of its own small MNIST classifier instead (``unsuplab.models.mnist_classifier``). The
    estimate is biased upward for finite N, so compare numbers computed with the same N and D only.
    Zero for two identical sets (up to rounding).
    """
    a, b = _features_float64(features1, "features1"), _features_float64(features2, "features2")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"features1 has {a.shape[1]} features per sample but features2 has {b.shape[1]}: "
                         "compute both with the same feature network.")
    return gaussian_frechet_distance(a.mean(0), torch.cov(a.T).reshape(a.shape[1], -1),
                                     b.mean(0), torch.cov(b.T).reshape(b.shape[1], -1))


# ---------------------------------------------------------------------------------------------
# BLEU, for translations (chapter 9): Papineni et al. (2002), and sacreBLEU (Post 2018) to compare
# ---------------------------------------------------------------------------------------------

__all__ += ["bleu", "corpus_bleu"]


def _ngrams(tokens: Sequence[str], n: int) -> Counter:
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def _check_not_empty(hypotheses: Sequence) -> None:
    if len(hypotheses) == 0:
        raise ValueError("no sentences to score: BLEU of an empty corpus is undefined (not 0). Check that the "
                         "test set loaded and that the translations were produced.")


def bleu(hypotheses: Sequence[Sequence[str]], references: Sequence[Sequence[str]], max_n: int = 4) -> float:
    """Corpus BLEU of tokenised sentences against one reference each, eq. (9.12), in [0, 100].

    ``p_n`` = (n-grams of the hypotheses found in their reference, each counted at most as often as it
    occurs there) / (n-grams of the hypotheses), summed over the corpus; ``BP = min(1, exp(1 - r / c))``
    with ``r`` and ``c`` the total reference and hypothesis lengths; BLEU = ``BP exp(mean_n log p_n)``.
    Zero when some ``p_n`` is zero (no smoothing): sacreBLEU's default corpus score smooths that case
    (``smooth_method="exp"``), so the two agree only when every ``p_n > 0``, as on any real test set.
    """
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references: give one reference "
                         "per hypothesis.")
    _check_not_empty(hypotheses)
    if any(isinstance(h, str) for h in hypotheses) or any(isinstance(r, str) for r in references):
        raise TypeError("bleu takes tokenised sentences (lists of words); split strings first, or use "
                        "corpus_bleu for raw text.")
    matches, totals = [0] * max_n, [0] * max_n
    c = sum(len(h) for h in hypotheses)
    r = sum(len(ref) for ref in references)
    for hyp, ref in zip(hypotheses, references):
        for n in range(1, max_n + 1):
            h_counts, r_counts = _ngrams(hyp, n), _ngrams(ref, n)
            matches[n - 1] += sum(min(count, r_counts[g]) for g, count in h_counts.items())  # clipped counts
            totals[n - 1] += max(len(hyp) - n + 1, 0)
    if c == 0 or min(matches) == 0:
        return 0.0
    log_p = sum(math.log(m / t) for m, t in zip(matches, totals)) / max_n
    bp = min(1.0, math.exp(1 - r / c))
    return 100 * bp * math.exp(log_p)


def corpus_bleu(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """sacreBLEU (Post 2018) of raw sentences against one reference each: case-insensitive, 13a tokenisation.

    The score to compare across papers and runs; :func:`bleu` is the same formula on tokens.
    """
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references: give one per hypothesis.")
    _check_not_empty(hypotheses)
    try:
        import sacrebleu
    except ImportError:
        raise ImportError("corpus_bleu needs sacrebleu: `pip install sacrebleu` (it is in the course "
                          "environment).") from None
    return float(sacrebleu.corpus_bleu(list(hypotheses), [list(references)], lowercase=True).score)
