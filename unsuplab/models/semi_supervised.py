"""Chapter 10: learning with few labels, from features learned without them.

Every chapter measured a representation with *all* the labels of its training set (the linear probe and
the k-NN of chapter 1). What unsupervised learning promises is more modest and more useful: when labels
are few and images are many, features learned from the images alone should need fewer labels than a
network trained from scratch. Three ways to use the unlabelled images are compared with that baseline:

**A probe on label-free features.** Fit the features on every image, labelled or not, then the book's
linear probe (:func:`unsuplab.metrics.linear_probe`) on the n labelled ones alone: a multinomial logistic
regression on the standardised features :math:`\\phi(x)`,

.. math:: p(y = c \\mid x) = \\mathrm{softmax}_c\\big(W \\phi(x) + b\\big), \\qquad
          \\min_{W, b}\\ \\frac{1}{n} \\sum_{i=1}^{n} -\\log p(y_i \\mid x_i) + \\frac{\\lambda}{2} \\lVert W \\rVert^2   (10.4)

**Label propagation** (Zhu & Ghahramani 2002). Build a graph over all N images, labelled and not: each
image is joined to its k nearest neighbours in feature space, with a weight that falls with distance,

.. math:: W_{ij} = \\exp\\!\\big(-\\lVert \\phi(x_i) - \\phi(x_j) \\rVert^2 / \\sigma^2\\big) \\ \\text{ if } j \\in
          \\mathcal{N}_k(i) \\text{ or } i \\in \\mathcal{N}_k(j), \\text{ else } 0   (10.5)

(:func:`knn_graph`; :math:`\\sigma^2` is the mean squared distance of an image to its k-th neighbour). Let
:math:`P = D^{-1} W` be the random walk on that graph (:math:`D_{ii} = \\sum_j W_{ij}`), and :math:`F` an (N, C)
matrix of class scores. Starting from the one-hot labels :math:`Y_L` on the labelled rows and zeros on the
others, repeat

.. math:: F \\leftarrow P F, \\qquad F_L \\leftarrow Y_L   (10.6)

(:func:`propagation_step`, :func:`propagate_labels`): every image takes the weighted average of its
neighbours' scores, and the labelled images are clamped back to their labels. The iteration converges to
the **harmonic** solution :math:`F_U = (I - P_{UU})^{-1} P_{UL} Y_L`, in which every unlabelled score is the
average of its neighbours' and, read as a random walk, :math:`F_{uc}` is the probability that a walk from u
reaches a labelled image of class c before any other labelled image. With one label per class among tens
of thousands of images, a walk forgets where it started long before it meets a label, so :math:`F_{uc}` is
nearly the same for every u: about the share of a long walk's time spent at class c's labelled images
(their degree). Where u is changes only small differences around those constants, and the plain argmax gives
almost every image the class of the best-connected labelled image. **Class mass normalisation** (Zhu,
Ghahramani & Lafferty 2003) divides each class's column by its total, so that the classes share the
unlabelled images in proportion to their prior :math:`q_c` (uniform here, as the labels are balanced):

.. math:: \\hat y_u = \\arg\\max_c\\ q_c \\frac{F_{uc}}{\\sum_{u'} F_{u'c}}   (10.7)

(:func:`class_mass_normalize`). It is transductive: the images to classify are nodes of the graph (their
labels are never used).

**Pseudo-labelling** (Lee 2013; self-training). Train a classifier on the labelled images, label the
unlabelled ones with its predictions, and keep only the confident ones,

.. math:: \\hat y_u = \\arg\\max_c p(c \\mid x_u) \\quad \\text{for} \\quad \\max_c p(c \\mid x_u) \\ge \\tau   (10.8)

(:func:`select_pseudo_labels`, at most m per class so that no class swallows the rest), then train again
on the labelled and the pseudo-labelled images together (:func:`self_train`, with the linear probe as the
classifier).

The baseline they are measured against is a network trained from scratch on the n labelled images only,
for a fixed number of steps with small random shifts of the images (:func:`train_from_scratch`,
:func:`random_shift`). None of this imports another model family: the features come from whichever
chapter the lab takes them.
"""

from __future__ import annotations

import math
import warnings
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .. import metrics
from ..checks import CheckFailed, _not_written
from ..train import TensorBatches, eval_mode, fit

__all__ = ["knn_graph", "transition_matrix", "propagation_step", "propagate_labels", "class_mass_normalize",
           "select_pseudo_labels",
           "self_train", "random_shift", "train_from_scratch", "predict", "propagation_step_problem",
           "check_propagation_step", "pseudo_label_problem", "check_select_pseudo_labels"]


def _check_features(x: torch.Tensor, name: str = "features") -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.ndim != 2:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"expected {name} of shape (N, D), one row per image, got {shape}: flatten images "
                         "with x.flatten(1) or compute their features first.")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contain NaN or inf values: the encoder probably diverged.")
    return x.float()


# ----------------------------------------------------------------------------------------------
# Label propagation (Zhu & Ghahramani 2002): the graph, eq. (10.5), and the iteration, eq. (10.6)
# ----------------------------------------------------------------------------------------------

@torch.no_grad()
def knn_graph(features: torch.Tensor, k: int = 10, *, batch_size: int = 1024) -> torch.Tensor:
    """The symmetric k-nearest-neighbour graph of eq. (10.5) as a sparse (N, N) tensor of weights.

    Each row's k nearest other rows (Euclidean distance) get the weight
    ``exp(-d^2 / sigma^2)``, with ``sigma^2`` the mean over rows of the squared distance to the k-th
    neighbour; the graph is made symmetric by keeping an edge when either end chose it (with its weight).
    Computed ``batch_size`` rows at a time, so at most a (batch_size, N) block of distances is in memory.
    """
    x = _check_features(features)
    n = len(x)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k < n:
        raise ValueError(f"expected a whole number of neighbours 1 <= k < N = {n}, got k={k!r}.")
    sq = x.pow(2).sum(1)                                                        # (N,)
    near_d2, near = [], []
    for start in range(0, n, batch_size):
        q = x[start:start + batch_size]                                         # (B, D)
        # |x_j|^2 - 2 q.x_j ranks the rows j as |q - x_j|^2 does (|q|^2 is the same for all j): one pass
        score = torch.addmm(sq[None, :], q, x.T, alpha=-2.0)                    # (B, N)
        own = torch.arange(len(q), device=x.device)
        score[own, own + start] = float("inf")                                  # not its own neighbour
        values, index = score.topk(k, dim=1, largest=False)                     # (B, k), nearest first
        near_d2.append((values + sq[start:start + batch_size, None]).clamp_min_(0))
        near.append(index)
    near_d2, near = torch.cat(near_d2), torch.cat(near)                         # (N, k)
    sigma2 = near_d2[:, -1].mean().clamp_min(1e-12)
    weights = torch.exp(-near_d2 / sigma2)                                      # (N, k)
    rows = torch.arange(n, device=x.device).repeat_interleave(k)
    i, j, w = torch.cat([rows, near.flatten()]), torch.cat([near.flatten(), rows]), weights.flatten().repeat(2)
    # an edge chosen by both ends appears twice, with the same weight (the distance is symmetric): keep one
    key = i * n + j
    key, order = key.sort()
    w = w[order]
    first = torch.ones_like(key, dtype=torch.bool)
    first[1:] = key[1:] != key[:-1]
    key, w = key[first], w[first]
    return torch.sparse_coo_tensor(torch.stack([key // n, key % n]), w, (n, n), check_invariants=True).coalesce()


def transition_matrix(graph: torch.Tensor) -> torch.Tensor:
    """P = D^-1 W of eq. (10.6): the graph's weights divided by their row sums (a sparse (N, N) tensor
    whose rows sum to 1), in CSR form for fast products."""
    if not graph.is_sparse or graph.ndim != 2 or graph.shape[0] != graph.shape[1]:
        raise ValueError("expected the (N, N) sparse graph of knn_graph(features, k).")
    graph = graph.coalesce()
    i, j = graph.indices()
    w = graph.values()
    degree = torch.zeros(graph.shape[0], device=w.device, dtype=w.dtype).index_add_(0, i, w)   # D_ii
    if (degree <= 0).any():
        raise ValueError(f"{int((degree <= 0).sum())} rows of the graph have no edge: every image needs a neighbour.")
    P = torch.sparse_coo_tensor(graph.indices(), w / degree[i], graph.shape, check_invariants=True).coalesce()
    with warnings.catch_warnings():                 # "sparse CSR support is in beta": the product is all we use
        warnings.filterwarnings("ignore", message=".*[Ss]parse CSR tensor support is in beta.*")
        return P.to_sparse_csr()


def propagation_step(P: torch.Tensor, scores: torch.Tensor, labelled: torch.Tensor,
                     targets: torch.Tensor) -> torch.Tensor:
    """One step of eq. (10.6): ``F <- P F``, then the labelled rows clamped back to their one-hot labels.

    ``P`` (N, N) row-stochastic (sparse or dense), ``scores`` F (N, C), ``labelled`` the indices (n,) of the
    labelled rows, ``targets`` their one-hot labels Y_L (n, C). Returns the new F (N, C).
    """
    new = P @ scores                          # (N, N) @ (N, C) -> (N, C): each row, its neighbours' average
    new[labelled] = targets                   # F_L <- Y_L
    return new


def propagate_labels(P: torch.Tensor, labelled: torch.Tensor, labels: torch.Tensor, n_classes: int, *,
                     steps: int = 500, step: Callable[..., torch.Tensor] = propagation_step) -> torch.Tensor:
    """Label propagation, eq. (10.6), from the ``labels`` (n,) of the rows ``labelled`` (n,) of the graph:
    F starts at the one-hot Y_L on those rows and 0 elsewhere, and ``step`` (eq. 10.6, by default
    :func:`propagation_step`) is applied ``steps`` times. Returns F (N, C); read it with
    :func:`class_mass_normalize` (eq. 10.7) or its plain argmax. A row that no walk from a labelled image
    has reached yet keeps scores 0."""
    if len(labelled) != len(labels):
        raise ValueError(f"got {len(labelled)} labelled rows but {len(labels)} labels: one label per row.")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"expected a whole number of steps >= 0, got {steps!r}.")
    n = P.shape[0]
    targets = F.one_hot(labels.long().to(P.device), n_classes).to(P.dtype)  # Y_L (n, C)
    scores = torch.zeros(n, n_classes, device=P.device, dtype=P.dtype)      # F (N, C)
    scores[labelled] = targets
    for _ in range(steps):
        scores = step(P, scores, labelled, targets)
    return scores


def class_mass_normalize(scores: torch.Tensor, prior: torch.Tensor | None = None) -> torch.Tensor:
    """Class mass normalisation, eq. (10.7) (Zhu, Ghahramani & Lafferty 2003): each column c of the
    unlabelled rows' scores ``scores`` F_U (m, C) divided by its total mass sum_u F_uc and multiplied by
    the class's prior q_c (``prior`` (C,), uniform when None), so that the classes share the unlabelled
    images as the prior says instead of as the harmonic solution's tiny, uneven masses say. Returns the
    normalised scores (m, C); their argmax is the prediction."""
    if scores.ndim != 2:
        raise ValueError(f"expected the scores F_U of the unlabelled rows, shape (m, C), got {tuple(scores.shape)}.")
    n_classes = scores.shape[1]
    prior = torch.full((n_classes,), 1.0 / n_classes, device=scores.device) if prior is None else prior
    mass = scores.sum(0).clamp_min(torch.finfo(scores.dtype).tiny)         # (C,): sum_u F_uc
    return scores * (prior.to(scores) / mass)                              # (m, C)


# ----------------------------------------------------------------------------------------------
# Pseudo-labelling (Lee 2013), eq. (10.8), with the linear probe as the classifier
# ----------------------------------------------------------------------------------------------

def select_pseudo_labels(probs: torch.Tensor, threshold: float, per_class: int | None = None
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """The confident predictions of eq. (10.8): the rows of ``probs`` (N, C) whose largest probability is
    at least ``threshold``, and their predicted classes. With ``per_class`` at most that many rows per
    predicted class are kept, the most confident first. Returns ``(index (m,), labels (m,))``, sorted by
    index."""
    if probs.ndim != 2:
        raise ValueError(f"expected class probabilities of shape (N, C), got {tuple(probs.shape)}.")
    confidence, predicted = probs.max(dim=1)                                    # (N,), (N,)
    keep = torch.nonzero(confidence >= threshold).flatten()
    if per_class is not None:
        chosen = []
        for c in predicted[keep].unique():
            mine = keep[predicted[keep] == c]
            chosen.append(mine[confidence[mine].argsort(descending=True, stable=True)[:per_class]])
        keep = torch.cat(chosen) if chosen else keep
    keep = keep.sort().values
    return keep, predicted[keep]


def self_train(train_x: torch.Tensor, train_y: torch.Tensor, unlabelled_x: torch.Tensor, test_x: torch.Tensor,
               test_y: torch.Tensor, *, threshold: float = 0.9, per_class: int | None = None, rounds: int = 1,
               probe_iters: int = 200,
               select: Callable[..., tuple[torch.Tensor, torch.Tensor]] = select_pseudo_labels) -> float:
    """Self-training with the linear probe of eq. (10.4): fit it on the labelled features ``train_x`` (n, D),
    pseudo-label the confident rows of ``unlabelled_x`` (M, D) with ``select`` (eq. 10.8, by default
    :func:`select_pseudo_labels`), refit on the labelled and the pseudo-labelled rows together; ``rounds``
    times, each round labelling afresh with the last probe. Returns the test accuracy of the last probe."""
    accuracy, probe = metrics.linear_probe(train_x, train_y, test_x, test_y, max_iter=probe_iters, return_model=True)
    for _ in range(rounds):
        with torch.no_grad():
            probs = probe(unlabelled_x.to(probe.mean.device).float()).softmax(1)   # (M, C)
        index, pseudo = select(probs, threshold, per_class)
        index, pseudo = index.cpu(), probe.classes[pseudo.to(probe.classes.device)].cpu()
        accuracy, probe = metrics.linear_probe(torch.cat([train_x.cpu(), unlabelled_x[index].cpu()]),
                                               torch.cat([train_y.cpu(), pseudo]), test_x, test_y,
                                               max_iter=probe_iters, return_model=True)
    return accuracy


# ----------------------------------------------------------------------------------------------
# The baseline: a network trained from scratch on the labelled images alone
# ----------------------------------------------------------------------------------------------

def random_shift(x: torch.Tensor, max_shift: int = 2) -> torch.Tensor:
    """Shift every image of ``x`` (B, C, H, W) by its own random whole number of pixels, up to ``max_shift``
    in each direction (zeros come in at the border); no flip, which would turn some digits into others."""
    if x.ndim != 4:
        raise ValueError(f"expected images (B, C, H, W), got shape {tuple(x.shape)}.")
    b, _, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4)                                         # (B, C, H + 2s, W + 2s)
    dy, dx = torch.randint(0, 2 * max_shift + 1, (2, b), device=x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device))                     # (B, H)
    cols = (dx[:, None] + torch.arange(w, device=x.device))                     # (B, W)
    index = torch.arange(b, device=x.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[index, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def train_from_scratch(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, steps: int, batch_size: int = 64,
                       lr: float = 1e-3, weight_decay: float = 5e-4,
                       augment: Callable[[torch.Tensor], torch.Tensor] | None = random_shift, seed: int = 0,
                       **fit_kwargs):
    """The supervised baseline: train ``model`` (images -> logits) with cross-entropy on the n labelled
    images ``x`` (n, C, H, W) and labels ``y`` (n,), for ``steps`` AdamW steps of ``min(batch_size, n)``
    images, each batch augmented by ``augment``. With 10 labels an epoch is one step, so training is
    counted in steps, the same for every n. Returns the History of :func:`unsuplab.train.fit`."""
    if len(x) != len(y):
        raise ValueError(f"got {len(x)} images but {len(y)} labels.")
    device = next(model.parameters()).device
    batches = TensorBatches(x.to(device), y.to(device), batch_size=min(batch_size, len(x)), drop_last=True)

    def loss_fn(net, batch):
        images, labels = batch
        if augment is not None:
            images = augment(images)
        return F.cross_entropy(net(images), labels)

    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    return fit(model, loss_fn, batches, epochs=math.ceil(steps / len(batches)), max_steps=steps,
               optimizer=optimizer, seed=seed, **fit_kwargs)


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """The predicted classes (N,) of a network's logits on images ``x``, in eval mode and batches, on the CPU."""
    device = next(model.parameters()).device
    with eval_mode(model):
        return torch.cat([model(chunk.to(device)).argmax(1).cpu() for chunk in x.split(batch_size)])


# ----------------------------------------------------------------------------------------------
# The self-checks of the lab's two exercises: they judge what every correct answer shares
# ----------------------------------------------------------------------------------------------

def _call(name: str, student: Callable, *args):
    try:
        return student(*args)
    except NotImplementedError as err:
        print(_not_written(name, student, err))
        raise
    except Exception as err:
        raise CheckFailed(f"✗ {name} raised {type(err).__name__}: {err}; the traceback above shows the line.") from err


def propagation_step_problem(P: torch.Tensor, scores: torch.Tensor, labelled: torch.Tensor, targets: torch.Tensor,
                             got) -> str | None:
    """What is wrong with ``got`` as the result of :func:`propagation_step` on these inputs (a sentence naming
    the usual slip), or None when it is right (any layout of the same numbers, to 1e-5)."""
    expected = propagation_step(P, scores.clone(), labelled, targets)
    if not isinstance(got, torch.Tensor) or got.shape != expected.shape:
        shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
        return f"expected the new scores F as a tensor of shape {tuple(expected.shape)}, got {shape}."
    got = got.to_dense() if got.layout != torch.strided else got
    dense = P.to_dense() if P.layout != torch.strided else P
    if torch.allclose(got, expected, atol=1e-5):
        return None
    slips = [(dense @ scores, "reset the labelled rows to their labels after the product: F_L <- Y_L."),
             (dense.T @ scores, "P @ F averages each row's neighbours (row i of P); P.T @ F spreads each row instead."),
             (scores.clone().index_put_((labelled,), targets), "multiply by P: each row takes its neighbours' average.")]
    hint = next((text for value, text in slips if torch.allclose(got, value, atol=1e-5)),
                "compare with eq. (10.6) term by term.")
    return f"the new scores differ from eq. (10.6). Hint: {hint}"


def check_propagation_step(step: Callable, name: str = "propagation_step") -> None:
    """The self-check of the lab's first exercise: ``step(P, scores, labelled, targets)`` against
    :func:`propagation_step` on three small graphs, with P dense and sparse, and ``scores`` not changed in
    place. Prints a ✓ line or raises ``unsuplab.checks.CheckFailed`` naming the slip."""
    g = torch.Generator().manual_seed(4)
    for n, c, n_labelled, sparse in [(6, 2, 2, False), (30, 3, 5, True), (200, 10, 10, True)]:
        P = transition_matrix(knn_graph(torch.randn(n, 4, generator=g), min(5, n - 1)))
        P = P if sparse else P.to_dense()
        scores = torch.rand(n, c, generator=g)
        labelled = torch.randperm(n, generator=g)[:n_labelled]
        targets = F.one_hot(torch.randint(c, (n_labelled,), generator=g), c).float()
        before = scores.clone()
        got = _call(name, step, P, scores, labelled, targets)
        case = f"a graph of {n} nodes, {'sparse' if sparse else 'dense'} P"
        if not torch.equal(scores, before):
            raise CheckFailed(f"✗ {name} changed `scores` in place ({case}): compute the new F in a new tensor "
                              "(P @ scores is one) and change that.")
        problem = propagation_step_problem(P, before, labelled, targets, got)
        if problem:
            raise CheckFailed(f"✗ {name} on {case}: {problem}")
    print(f"✓ {name} matches eq. (10.6) on 3 graphs (dense and sparse P).")


def pseudo_label_problem(probs: torch.Tensor, threshold: float, per_class: int | None, got) -> str | None:
    """What is wrong with ``got`` as an answer of :func:`select_pseudo_labels` (a sentence), or None when it
    is one of the right answers: sorted distinct indices of confident rows with their most probable class,
    at most ``per_class`` of each class, and no confident row left out unless its class is full of rows at
    least as confident (so any choice among rows tied at the cut is right)."""
    if not (isinstance(got, tuple) and len(got) == 2 and all(isinstance(t, torch.Tensor) for t in got)
            and got[0].ndim == 1 and got[0].shape == got[1].shape):
        return "return two 1-D tensors of the same length: the chosen row indices and their classes."
    index, classes = got
    confidence, predicted = probs.max(1)
    if not torch.equal(index, index.unique()):
        return "the indices must be sorted and distinct (keep.sort().values)."
    if not bool((confidence[index] >= threshold).all()):
        return "a chosen row is not confident enough: keep only rows with probs.max(1) >= threshold."
    if not torch.equal(classes.long(), predicted[index]):
        return "a row's pseudo-label is its most probable class, probs.argmax(1), in the order of the indices."
    counts = torch.bincount(classes.long(), minlength=probs.shape[1])
    if per_class is not None and bool((counts > per_class).any()):
        return f"a class has more than per_class = {per_class} rows: keep at most per_class of each predicted class."
    chosen = torch.zeros(len(probs), dtype=torch.bool)
    chosen[index] = True
    for c in range(probs.shape[1]):
        left = (~chosen) & (confidence >= threshold) & (predicted == c)
        if not left.any():
            continue
        full = per_class is not None and counts[c] >= per_class
        if not (full and bool((confidence[left] <= confidence[chosen & (predicted == c)].min()).all())):
            return (f"a confident row of class {c} was left out while its class had room, or a less confident row "
                    "of that class was kept instead: keep the most confident ones.")
    return None


def check_select_pseudo_labels(select: Callable, name: str = "select_pseudo_labels") -> None:
    """The self-check of the lab's second exercise: ``select(probs, threshold, per_class)`` on four cases
    (one with no cap, one with rows tied at the cut) judged by :func:`pseudo_label_problem`, so that every
    correct answer passes. Prints a ✓ line or raises ``unsuplab.checks.CheckFailed`` in words."""
    g = torch.Generator().manual_seed(8)
    cases = [(torch.softmax(3 * torch.randn(500, 4, generator=g), 1), 0.8, None),
             (torch.softmax(3 * torch.randn(800, 5, generator=g), 1), 0.6, 20),
             (torch.softmax(torch.randn(300, 3, generator=g), 1), 0.99, 5),                 # few or no confident rows
             (torch.tensor([[0.9, 0.1], [0.9, 0.1], [0.9, 0.1], [0.2, 0.8]]), 0.85, 1)]   # a tie at the cut
    for number, (probs, threshold, per_class) in enumerate(cases, start=1):
        got = _call(name, select, probs.clone(), threshold, per_class)
        problem = pseudo_label_problem(probs, threshold, per_class, got)
        if problem:
            raise CheckFailed(f"✗ {name}, case {number} ({tuple(probs.shape)} probabilities, threshold {threshold}, "
                              f"per_class {per_class}): {problem}")
    print(f"✓ {name} keeps confident rows with their most probable class, at most per_class of each class and the "
          f"most confident first, on {len(cases)} cases (one with a tie at the cut).")
