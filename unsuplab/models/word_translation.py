"""Chapter 9, part 1: word translation without a single parallel pair.

Papers:

* Conneau, Lample, Ranzato, Denoyer & Jégou (2018), "Word translation without parallel data": an
  orthogonal map learned against a discriminator, refined by Procrustes on the dictionary it induces,
  and the CSLS retrieval score. Schönemann (1966) for the Procrustes solution; Xing et al. (2015) for
  unit-length vectors and an orthogonal map; Søgaard, Ruder & Vulić (2018) for when it fails.

Part 2, sentences, is :mod:`unsuplab.models.unmt`.

Equations, numbered as in ``book/09_unsupervised_translation.md``:

Word vectors are rows: ``X`` (n, d) source, ``Y`` (m, d) target, unit length; the map is ``W`` (d, d)
and the mapped source vectors are ``X W^T`` (row i is ``W x_i``).

* (9.1) Procrustes: ``W* = argmin_{W orthogonal} sum_i ||W x_i - y_i||^2 = U V^T`` where
  ``U S V^T = SVD(Y_D^T X_D)`` for the rows ``X_D, Y_D`` of a dictionary's pairs.
* (9.2) Discriminator loss: ``L_D = -1/n sum_i log P(source | W x_i) - 1/m sum_j log P(target | y_j)``.
* (9.3) Mapping loss (fool it): ``L_W = -1/n sum_i log P(target | W x_i) - 1/m sum_j log P(source | y_j)``.
* (9.4) Staying orthogonal: after each step on ``L_W``, ``W <- (1 + beta) W - beta (W W^T) W``.
* (9.5) Neighbourhood density: ``r_T(Wx) = 1/K sum_{y in N_T(Wx)} cos(Wx, y)`` (mean cosine of ``Wx``
  to its K nearest target words), ``r_S(y) = 1/K sum_{x in N_S(y)} cos(y, Wx)``.
* (9.6) CSLS: ``CSLS(Wx, y) = 2 cos(Wx, y) - r_T(Wx) - r_S(y)``.
* (9.7) Unsupervised validation criterion: mean cosine between the most frequent source words and
  their CSLS translations.

The adversarial game names its steps as MUSE's trainer does: :func:`discriminator_step` is one update
on (9.2), :func:`mapping_step` one update on (9.3) followed by (9.4), and :func:`adversarial_alignment`
alternates them.

Use::

    X, Y = normalize_embeddings(wv_en.vectors), normalize_embeddings(wv_fr.vectors)
    W, history = adversarial_alignment(X, Y)                 # (d, d), no dictionary used
    W, _ = procrustes_refinement(X, Y, W)                    # refine on its own induced dictionary
    p = translation_precision(X @ W.T, Y, test_ids, method="csls")     # {'P@1': ..., 'P@5': ..., 'n': ...}

Everything is device-agnostic: tensors follow the inputs or the module's parameters.
"""

from __future__ import annotations

import time
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..runtime import cpu_threads
from ..train import History, progress

__all__ = [
    "normalize_embeddings", "procrustes", "is_orthogonal", "orthogonalize_step", "csls",
    "neighbourhood_density", "translate", "translation_precision", "dictionary_ids", "split_dictionary",
    "Discriminator", "discriminator_step", "mapping_step", "single_thread_on_cpu", "adversarial_alignment",
    "induce_dictionary", "unsupervised_criterion", "procrustes_refinement", "supervised_procrustes",
    "similarity_signatures", "similarity_seed", "identical_strings_seed", "self_learning",
    "eigenvector_similarity", "relational_similarity",
]


def _matrix(name: str, value, dim: int | None = None) -> torch.Tensor:
    value = torch.as_tensor(value)
    if value.ndim != 2 or (dim is not None and value.shape[1] != dim):
        want = f"(n, {dim})" if dim is not None else "(n, d)"
        raise ValueError(f"{name} must be a matrix of word vectors {want}, one row per word, got shape "
                         f"{tuple(value.shape)}.")
    if not value.is_floating_point():
        raise ValueError(f"{name} must hold floating-point vectors, got {value.dtype}.")
    return value


def normalize_embeddings(X: torch.Tensor, center: bool = True) -> torch.Tensor:
    """Rows scaled to unit length, then (``center``) mean-centred and scaled to unit length again; (n, d).

    Unit length makes a dot product a cosine and an orthogonal map an isometry (Xing et al. 2015);
    removing the mean direction, which every word shares, makes neighbours more informative.
    """
    X = F.normalize(_matrix("X", X).float(), dim=1)
    if center:
        X = F.normalize(X - X.mean(0, keepdim=True), dim=1)
    return X


def procrustes(X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """The orthogonal ``W`` (d, d) that best maps the rows of ``X`` onto those of ``Y`` (both (n, d)), eq. (9.1).

    ``argmin_{W W^T = I} ||X W^T - Y||_F = U V^T`` with ``U S V^T = SVD(Y^T X)`` (Schönemann 1966).
    Row ``i`` of ``X`` and of ``Y`` are a word and its translation.
    """
    X, Y = _matrix("X", X), _matrix("Y", Y)
    if X.shape != Y.shape:
        raise ValueError(f"X and Y must pair row by row (a word and its translation), got {tuple(X.shape)} "
                         f"and {tuple(Y.shape)}.")
    U, _, Vh = torch.linalg.svd(Y.T.double() @ X.double())          # (d, d) each
    return (U @ Vh).to(X.dtype)


def is_orthogonal(W: torch.Tensor, atol: float = 1e-4) -> bool:
    """Whether ``W W^T = I`` to within ``atol`` (an orthogonal map keeps lengths and angles)."""
    if W.ndim != 2 or W.shape[0] != W.shape[1]:
        return False
    eye = torch.eye(W.shape[0], dtype=W.dtype, device=W.device)
    return bool(torch.allclose(W @ W.T, eye, atol=atol))


@torch.no_grad()
def orthogonalize_step(W: torch.Tensor, beta: float = 0.001) -> torch.Tensor:
    """One step of ``W <- (1 + beta) W - beta (W W^T) W`` (eq. 9.4), in place; pulls ``W`` towards the
    orthogonal matrices (it is a gradient step on ``||W W^T - I||^2``, Cisse et al. 2017)."""
    W.copy_((1 + beta) * W - beta * (W @ W.T) @ W)
    return W


def neighbourhood_density(queries: torch.Tensor, keys: torch.Tensor, k: int = 10,
                          batch_size: int = 4096) -> torch.Tensor:
    """Mean cosine of each query to its ``k`` nearest keys, eq. (9.5); (n,). Rows must be unit length.

    ``neighbourhood_density(X W^T, Y)`` is ``r_T(Wx)`` for every source word,
    ``neighbourhood_density(Y, X W^T)`` is ``r_S(y)`` for every target word.
    """
    if not 1 <= k <= len(keys):
        raise ValueError(f"k must be between 1 and the number of keys ({len(keys)}), got {k}.")
    out = []
    for start in range(0, len(queries), batch_size):
        cos = queries[start:start + batch_size] @ keys.T             # (b, m)
        out.append(cos.topk(k, dim=1).values.mean(1))                  # (b,)
    return torch.cat(out) if out else queries.new_zeros(0)


def csls(WX: torch.Tensor, Y: torch.Tensor, k: int = 10) -> torch.Tensor:
    """The CSLS score of every (source, target) pair, eq. (9.6): (n, m) for unit rows ``WX`` (n, d), ``Y`` (m, d).

    ``2 cos(Wx, y) - r_T(Wx) - r_S(y)``: a target word ``y`` that is close to many source words (a *hub*)
    has a large ``r_S(y)`` and is penalised; a source word in a dense region is treated likewise.
    Computes the whole (n, m) matrix: for large vocabularies use :func:`translate`, which goes in batches.
    """
    cos = WX @ Y.T                                                     # (n, m)
    r_T = cos.topk(min(k, cos.shape[1]), dim=1).values.mean(1)         # (n,) density around each Wx
    r_S = cos.topk(min(k, cos.shape[0]), dim=0).values.mean(0)         # (m,) density around each y
    return 2 * cos - r_T[:, None] - r_S[None, :]


def translate(WX: torch.Tensor, Y: torch.Tensor, queries=None, *, method: str = "csls", k: int = 10,
              topn: int = 1, batch_size: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``topn`` target words for each source word, by nearest neighbour (``"nn"``, cosine) or CSLS.

    ``WX`` (n, d) mapped source vectors and ``Y`` (m, d) target vectors, unit rows; ``queries`` the
    source rows to translate (default all). ``r_S`` is computed over all ``n`` source words, as in
    the paper, whatever the queries. Returns ``(scores, indices)``, both (q, topn), best first.
    """
    if method not in ("nn", "csls"):
        raise ValueError(f"method must be 'nn' (cosine) or 'csls', got {method!r}.")
    queries = torch.arange(len(WX), device=WX.device) if queries is None else torch.as_tensor(queries, device=WX.device)
    if method == "csls":
        r_S = neighbourhood_density(Y, WX, k, batch_size)              # (m,)
    scores, indices = [], []
    for start in range(0, len(queries), batch_size):
        q = WX[queries[start:start + batch_size]]                      # (b, d)
        s = q @ Y.T                                                    # (b, m) cosines
        if method == "csls":
            r_T = s.topk(k, dim=1).values.mean(1)                      # (b,)
            s = 2 * s - r_T[:, None] - r_S[None, :]
        top = s.topk(topn, dim=1)
        scores.append(top.values)
        indices.append(top.indices)
    if not scores:
        return WX.new_zeros(0, topn), torch.zeros(0, topn, dtype=torch.long, device=WX.device)
    return torch.cat(scores), torch.cat(indices)


def dictionary_ids(pairs: Sequence[tuple[str, str]], src_words: Sequence[str] | dict, tgt_words: Sequence[str] | dict
                   ) -> torch.Tensor:
    """The (src id, tgt id) rows (p, 2) of the dictionary pairs whose two words are both in the vocabularies."""
    src = src_words if isinstance(src_words, dict) else {w: i for i, w in enumerate(src_words)}
    tgt = tgt_words if isinstance(tgt_words, dict) else {w: i for i, w in enumerate(tgt_words)}
    rows = [(src[a], tgt[b]) for a, b in pairs if a in src and b in tgt]
    return torch.tensor(rows, dtype=torch.long).reshape(-1, 2)


def split_dictionary(pairs: Sequence[tuple[str, str]], test_fraction: float = 0.3, seed: int = 0
                     ) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Split a dictionary into train and test by *source word*, so no test word is seen in training."""
    sources = sorted({a for a, _ in pairs})
    order = torch.randperm(len(sources), generator=torch.Generator().manual_seed(seed)).tolist()
    test_words = {sources[i] for i in order[: round(test_fraction * len(sources))]}
    return [p for p in pairs if p[0] not in test_words], [p for p in pairs if p[0] in test_words]


def translation_precision(WX: torch.Tensor, Y: torch.Tensor, pairs: torch.Tensor, *, method: str = "csls",
                          ks: Sequence[int] = (1, 5), k_csls: int = 10) -> dict[str, float]:
    """Precision@k of word translation (the MUSE protocol): for each distinct source word of ``pairs``
    (p, 2) of ids, is one of its reference translations among the top k retrieved target words?

    Retrieval is over the whole target vocabulary ``Y``. Returns ``{"P@1": ..., "P@5": ..., "n": words}``.
    """
    pairs = torch.as_tensor(pairs).reshape(-1, 2)
    if len(pairs) == 0:
        raise ValueError("no dictionary pair has both words in the vocabularies: nothing to score. Use a "
                         "larger vocabulary or another dictionary.")
    sources = pairs[:, 0].unique()                                    # (q,)
    gold = torch.zeros(len(sources), len(Y), dtype=torch.bool)        # (q, m) reference translations
    gold[torch.searchsorted(sources, pairs[:, 0].contiguous()), pairs[:, 1]] = True
    _, top = translate(WX, Y, sources.to(WX.device), method=method, k=k_csls, topn=max(ks))
    hit = gold.gather(1, top.cpu())                                    # (q, max k)
    out = {f"P@{k}": hit[:, :k].any(1).float().mean().item() for k in ks}
    out["n"] = len(sources)
    return out


# ---------------------------------------------------------------------------------------------
# The adversarial game (9.2)-(9.4)
# ---------------------------------------------------------------------------------------------


class Discriminator(nn.Module):
    """Tells a mapped source vector ``Wx`` from a target vector ``y``: a logit, positive for "source".

    As in Conneau et al.: an MLP with two hidden layers of ``hidden`` units and leaky ReLUs, dropout on
    its input (0.1), so that it cannot memorise single words.
    """

    def __init__(self, dim: int, hidden: int = 2048, dropout: float = 0.1):
        super().__init__()
        self.net = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(dim, hidden), nn.LeakyReLU(0.2),
            nn.Linear(hidden, hidden), nn.LeakyReLU(0.2),
            nn.Linear(hidden, 1),
        )

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        return self.net(v).squeeze(-1)                                 # (B, d) -> (B,)


def _sample_words(X: torch.Tensor, Y: torch.Tensor, batch_size: int, n_x: int, n_y: int,
                  generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``batch_size`` rows of each side, drawn with replacement among its ``n_x`` (``n_y``) most frequent words."""
    ix = torch.randint(n_x, (batch_size,), generator=generator).to(X.device)
    iy = torch.randint(n_y, (batch_size,), generator=generator).to(Y.device)
    return X[ix], Y[iy]                                                # (B, d), (B, d)


def _source_labels(n_source: int, n_target: int, smooth: float, device) -> torch.Tensor:
    """The discriminator's targets: ``1 - smooth`` for "source" (first ``n_source``), ``smooth`` for "target"."""
    return torch.cat([torch.full((n_source,), 1 - smooth), torch.full((n_target,), smooth)]).to(device)


def discriminator_step(dis: Discriminator, optimizer: torch.optim.Optimizer, W: torch.Tensor, x: torch.Tensor,
                       y: torch.Tensor, smooth: float = 0.1) -> tuple[float, float]:
    """One update of the discriminator on eq. (9.2): tell the mapped source words ``W x`` from the target words ``y``.

    ``x`` (B, d) source vectors, ``y`` (B', d) target vectors, ``W`` (d, d) the current map (held fixed here).
    Labels are smoothed: ``1 - smooth`` for "source", ``smooth`` for "target", so that the discriminator never
    becomes overconfident. Returns ``(loss, accuracy)`` on this batch, as numbers.
    """
    dis.train()
    with torch.no_grad():
        v = torch.cat([x @ W.T, y])                                    # (B + B', d): mapped source, then target
    labels = _source_labels(len(x), len(y), smooth, v.device)
    logits = dis(v)                                                    # (B + B',)
    loss = F.binary_cross_entropy_with_logits(logits, labels)          # L_D
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    accuracy = ((logits > 0) == (labels > 0.5)).float().mean()
    return loss.item(), accuracy.item()


def mapping_step(dis: Discriminator, optimizer: torch.optim.Optimizer, W: torch.Tensor, x: torch.Tensor,
                 y: torch.Tensor, smooth: float = 0.1, beta: float = 0.001) -> float:
    """One update of the map ``W`` on eq. (9.3), then the orthogonalisation (9.4); returns the loss.

    ``W`` (d, d) is the parameter that ``optimizer`` steps; the discriminator, in eval mode, is not
    updated. The labels are those of :func:`discriminator_step` flipped: ``W`` is rewarded when its mapped
    source words are taken for target words (and the target words for source words).
    """
    dis.eval()
    logits = dis(torch.cat([x @ W.T, y]))                              # (B + B',)
    loss = F.binary_cross_entropy_with_logits(logits, 1 - _source_labels(len(x), len(y), smooth, logits.device))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    orthogonalize_step(W.data, beta)                                   # (9.4)
    return loss.item()


def single_thread_on_cpu(device):
    """One torch thread for the body on a CPU: the game takes thousands of tiny steps, for which more
    threads only add waiting."""
    return cpu_threads(1, device)


@torch.no_grad()
def unsupervised_criterion(WX: torch.Tensor, Y: torch.Tensor, n: int = 10_000, k: int = 10) -> float:
    """Mean cosine between the ``n`` most frequent source words and their CSLS translations, eq. (9.7).

    Needs no dictionary; Conneau et al. found it correlates with P@1, so it selects models and stops
    training without any parallel data.
    """
    n = min(n, len(WX))
    _, top = translate(WX, Y, torch.arange(n, device=WX.device), method="csls", k=min(k, len(Y), len(WX)))
    return (WX[:n] * Y[top[:, 0]]).sum(1).mean().item()


def adversarial_alignment(X: torch.Tensor, Y: torch.Tensor, *, steps: int = 20_000, batch_size: int = 32,
                          dis_steps: int = 5, lr: float = 0.1, lr_decay: float = 0.98, beta: float = 0.001,
                          smooth: float = 0.1, most_frequent: int = 50_000, hidden: int = 2048,
                          eval_every: int = 1_000, criterion_words: int = 10_000, seed: int = 0,
                          progress_bar: bool = True) -> tuple[torch.Tensor, History]:
    """Learn an orthogonal ``W`` (d, d) with ``X W^T`` indistinguishable from ``Y``, without a dictionary.

    The game of Conneau et al. (2018): a :class:`Discriminator` learns to tell mapped source vectors from
    target vectors, ``dis_steps`` times (:func:`discriminator_step`, 9.2) per step of ``W`` on the inverted
    loss (:func:`mapping_step`, 9.3), after which ``W`` is pulled back to the orthogonal matrices (9.4). Only
    the ``most_frequent`` words of each side are drawn (rare words have poor vectors); labels are smoothed by
    ``smooth``. SGD with ``lr``, multiplied by ``lr_decay`` every ``eval_every`` steps, when the criterion
    (9.7) is also computed and the best ``W`` so far kept.

    Returns ``(W, history)``, ``W`` the best map and ``history`` a :class:`~unsuplab.train.History` whose
    ``epochs`` hold one row per **evaluation** (every ``eval_every`` steps, and at the last step): ``step``,
    ``criterion`` (9.7), and the discriminator's mean ``dis_accuracy`` and ``dis_loss`` since the previous
    evaluation. ``steps`` holds, at every step of ``W``, ``step``, its ``map_loss`` (9.3) and the mean
    ``dis_loss`` and ``dis_accuracy`` of the ``dis_steps`` updates before it; ``info["best_step"]`` the
    step of the ``W`` returned; ``seconds`` the time of the game.
    """
    X, Y = _matrix("X", X), _matrix("Y", Y, X.shape[1])
    d, device = X.shape[1], X.device
    history = History(info={"best_step": 0})
    started = time.perf_counter()
    threads = torch.get_num_threads()                                  # the caller's, for the criterion
    with single_thread_on_cpu(device):
        g = torch.Generator(device="cpu").manual_seed(seed)
        torch.manual_seed(seed)
        W = nn.Parameter(torch.eye(d, device=device))                  # the map, started at the identity
        dis = Discriminator(d, hidden).to(device)
        opt_w = torch.optim.SGD([W], lr=lr)
        opt_d = torch.optim.SGD(dis.parameters(), lr=lr)
        n_x, n_y = min(most_frequent, len(X)), min(most_frequent, len(Y))
        best, best_W = -float("inf"), W.detach().clone()
        dis_losses, dis_accuracies = [], []                            # since the last evaluation
        for step in progress(range(1, steps + 1), desc="adversarial", disable=not progress_bar):
            step_losses, step_accuracies = [], []                      # this step's discriminator updates
            for _ in range(dis_steps):
                x, y = _sample_words(X, Y, batch_size, n_x, n_y, g)
                loss_d, accuracy = discriminator_step(dis, opt_d, W, x, y, smooth)       # (9.2)
                step_losses.append(loss_d)
                step_accuracies.append(accuracy)
            dis_losses += step_losses
            dis_accuracies += step_accuracies
            x, y = _sample_words(X, Y, batch_size, n_x, n_y, g)
            loss_w = mapping_step(dis, opt_w, W, x, y, smooth, beta)                    # (9.3), (9.4)
            history.log_step({"step": step, "map_loss": loss_w,
                              "dis_loss": sum(step_losses) / max(len(step_losses), 1),
                              "dis_accuracy": sum(step_accuracies) / max(len(step_accuracies), 1)})
            if step % eval_every == 0 or step == steps:
                with cpu_threads(threads, device):                       # (9.7): one big product, every core
                    criterion = unsupervised_criterion(F.normalize(X @ W.detach().T, dim=1), Y, criterion_words)
                history.log_epoch({"step": step, "criterion": criterion,
                                   "dis_accuracy": sum(dis_accuracies) / max(len(dis_accuracies), 1),
                                   "dis_loss": sum(dis_losses) / max(len(dis_losses), 1)})
                dis_losses, dis_accuracies = [], []
                if criterion > best:
                    best, best_W, history.info["best_step"] = criterion, W.detach().clone(), step
                for group in (*opt_w.param_groups, *opt_d.param_groups):
                    group["lr"] *= lr_decay
    history.seconds = time.perf_counter() - started
    return best_W, history


# ---------------------------------------------------------------------------------------------
# Refinement: Procrustes on the dictionary the map induces (9.1)
# ---------------------------------------------------------------------------------------------


def induce_dictionary(WX: torch.Tensor, Y: torch.Tensor, *, max_rank: int = 15_000, k: int = 10,
                      method: str = "csls") -> torch.Tensor:
    """A dictionary read off the aligned spaces: the pairs (i, j) (p, 2) that are each other's best
    translation (source to target and back), among the ``max_rank`` most frequent words of each side.

    Words are assumed sorted by frequency (as :class:`~unsuplab.wordvectors.WordVectors` are).
    """
    WX, Y = WX[:max_rank], Y[:max_rank]
    _, s2t = translate(WX, Y, method=method, k=min(k, len(Y), len(WX)))        # (n, 1)
    _, t2s = translate(Y, WX, method=method, k=min(k, len(Y), len(WX)))        # (m, 1)
    s2t, t2s = s2t[:, 0], t2s[:, 0]
    i = torch.arange(len(WX), device=WX.device)
    mutual = t2s[s2t] == i                                             # i -> j -> i
    return torch.stack([i[mutual], s2t[mutual]], 1)


def procrustes_refinement(X: torch.Tensor, Y: torch.Tensor, W: torch.Tensor, *, iterations: int = 5,
                          max_rank: int = 15_000, k: int = 10, criterion_words: int = 10_000
                          ) -> tuple[torch.Tensor, dict]:
    """Refine ``W`` by alternating: induce a dictionary from the current map (mutual CSLS neighbours,
    :func:`induce_dictionary`), solve Procrustes (9.1) on it. Keeps the ``W`` with the best criterion
    (9.7). Returns ``(W, log)``, ``log`` holding the criterion and dictionary size of each iteration."""
    log = {"criterion": [unsupervised_criterion(X @ W.T, Y, criterion_words)], "pairs": [0]}
    best, best_W = log["criterion"][0], W
    for _ in range(iterations):
        pairs = induce_dictionary(X @ W.T, Y, max_rank=max_rank, k=k)   # (p, 2)
        W = procrustes(X[pairs[:, 0]], Y[pairs[:, 1]])
        crit = unsupervised_criterion(X @ W.T, Y, criterion_words)
        log["criterion"].append(crit)
        log["pairs"].append(len(pairs))
        if crit > best:
            best, best_W = crit, W
    return best_W, log


def supervised_procrustes(X: torch.Tensor, Y: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
    """The upper bound of this chapter: Procrustes (9.1) on a given training dictionary ``pairs`` (p, 2)."""
    pairs = torch.as_tensor(pairs).reshape(-1, 2)
    if len(pairs) < X.shape[1] // 10:
        raise ValueError(f"only {len(pairs)} training pairs for {X.shape[1]}-dimensional vectors: Procrustes "
                         "needs a few hundred at least; use a larger dictionary or vocabulary.")
    return procrustes(X[pairs[:, 0]], Y[pairs[:, 1]])


# ---------------------------------------------------------------------------------------------
# A robust unsupervised start: similarity distributions and self-learning (Artetxe et al. 2018)
# ---------------------------------------------------------------------------------------------


def similarity_signatures(X: torch.Tensor, n: int = 4_000) -> torch.Tensor:
    """Each of the ``n`` most frequent words described by how similar it is to the others, eq. (9.13).

    ``M = sqrt(X_n X_n^T)``: with ``X_n = U S V^T`` this is ``U S U^T``, the similarity matrix with its
    spectrum flattened (Artetxe, Labaka & Agirre 2018). Each row is then **sorted**, which forgets which
    word is which and keeps only the distribution of similarities, and normalised. An orthogonal map
    leaves ``X X^T`` unchanged, so in two isometric spaces a word and its translation get the same
    signature whatever the rotation: no dictionary, no starting map, no game. Returns (n, n).
    """
    X = _matrix("X", X)[:n]
    U, S, _ = torch.linalg.svd(X.double(), full_matrices=False)        # X_n = U S V^T
    M = (U * S) @ U.T                                                  # (n, n): sqrt(X_n X_n^T)
    return normalize_embeddings(M.sort(dim=1).values.float())


def similarity_seed(X: torch.Tensor, Y: torch.Tensor, *, n: int = 4_000, k: int = 10) -> torch.Tensor:
    """A dictionary (p, 2) without any bilingual resource: pairs among the ``n`` most frequent words of
    each side whose similarity signatures (9.13) are each other's CSLS neighbours. Both sides use the same
    ``n`` (at most the smaller vocabulary), so that their signatures have the same length."""
    n = min(n, len(X), len(Y))
    return induce_dictionary(similarity_signatures(X, n), similarity_signatures(Y, n), max_rank=n, k=k)


def identical_strings_seed(src_words: Sequence[str], tgt_words: Sequence[str]) -> torch.Tensor:
    """The cheapest unsupervised seed (Artetxe et al. 2017; Søgaard et al. 2018): every word spelled the
    same in both vocabularies (names, numbers, borrowed words) is taken as its own translation. (p, 2)."""
    return dictionary_ids([(w, w) for w in src_words], src_words, tgt_words)


def self_learning(X: torch.Tensor, Y: torch.Tensor, seed_pairs: torch.Tensor, *, iterations: int = 15,
                  max_rank: int = 6_000, k: int = 10, keep: float = 0.1, criterion_words: int = 1_000,
                  seed: int = 0) -> tuple[torch.Tensor, dict]:
    """Self-learning from a (possibly poor) seed dictionary, after Artetxe, Labaka & Agirre (2018).

    Each iteration solves Procrustes (9.1) on the current dictionary, then reads a new one off the
    mapped spaces: every one of the ``max_rank`` most frequent source words paired with its best CSLS
    target word (9.6), and every target word with its best source word (both directions, so a wrong
    seed cannot shrink the dictionary to its own mistakes). **Stochastic dictionary induction**: each
    CSLS score is kept with probability ``keep`` and the rest ignored, so early dictionaries are
    partly random and the loop can leave a poor start; ``keep`` grows geometrically to 1 over the
    iterations. The ``W`` with the best unsupervised criterion (9.7) is returned, with the log of the
    criterion and dictionary size per iteration.
    """
    X, Y = _matrix("X", X), _matrix("Y", Y, X.shape[1])
    pairs = torch.as_tensor(seed_pairs).reshape(-1, 2).to(X.device)
    if len(pairs) == 0:
        raise ValueError("self_learning needs a seed dictionary with at least one pair, got none: use "
                         "similarity_seed (no shared words needed) instead of identical strings here.")
    if not 0 < keep <= 1:
        raise ValueError(f"keep is a probability in (0, 1], got {keep}.")
    g = torch.Generator(device="cpu").manual_seed(seed)
    growth = (1 / keep) ** (1 / max(iterations - 1, 1))                # keep reaches 1 at the last iteration
    Xr, Yr = X[:max_rank], Y[:max_rank]
    i, j = torch.arange(len(Xr), device=X.device), torch.arange(len(Yr), device=X.device)
    log = {"criterion": [], "pairs": [], "keep": []}
    best, best_W = -float("inf"), None
    for _ in range(iterations):
        W = procrustes(X[pairs[:, 0]], Y[pairs[:, 1]])                 # (9.1)
        crit = unsupervised_criterion(Xr @ W.T, Yr, criterion_words, k)     # (9.7)
        log["criterion"].append(crit)
        log["pairs"].append(len(pairs))
        log["keep"].append(keep)
        if crit > best:
            best, best_W = crit, W
        scores = csls(Xr @ W.T, Yr, k)                                 # (n, m), eq. (9.6)
        if keep < 1:
            dropped = torch.rand(scores.shape, generator=g).to(X.device) > keep
            scores = scores.masked_fill(dropped, -float("inf"))
        pairs = torch.cat([torch.stack([i, scores.argmax(1)], 1),      # source -> target
                           torch.stack([scores.argmax(0), j], 1)])     # target -> source
        keep = min(1.0, keep * growth)
    return best_W, log


# ---------------------------------------------------------------------------------------------
# How isomorphic are two spaces? (Søgaard, Ruder & Vulić 2018)
# ---------------------------------------------------------------------------------------------


def _laplacian_spectrum(A: torch.Tensor, k: int) -> torch.Tensor:
    """Eigenvalues, largest first, of the Laplacian of the symmetric k-nearest-neighbour graph of rows A."""
    cos = A @ A.T
    cos.fill_diagonal_(-float("inf"))                                  # a word is not its own neighbour
    adjacency = torch.zeros_like(cos).scatter_(1, cos.topk(k, dim=1).indices, 1.0)
    adjacency = ((adjacency + adjacency.T) > 0).to(A.dtype)            # (n, n), symmetric
    laplacian = torch.diag(adjacency.sum(1)) - adjacency
    return torch.linalg.eigvalsh(laplacian.double()).flip(0)


def eigenvector_similarity(X: torch.Tensor, Y: torch.Tensor, pairs: torch.Tensor, *, k: int = 10,
                           energy: float = 0.9) -> float:
    """Søgaard et al.'s (2018) eigenvector similarity of two spaces, eq. (9.14): 0 for isomorphic spaces,
    larger the less their neighbourhood graphs agree.

    The words of the ``pairs`` (p, 2) (a word and its translation) give one k-nearest-neighbour graph
    in each space; the spectra ``lambda`` of their Laplacians are compared over the first ``h``
    eigenvalues, ``h`` the smallest number that holds ``energy`` of either spectrum's sum:
    ``Delta = sum_{i <= h} (lambda1_i - lambda2_i)^2``. Eigenvalues ignore the order of the words, so
    the pairs only choose *which* words take part; no map between the spaces is needed.
    """
    pairs = torch.as_tensor(pairs).reshape(-1, 2)
    if len(pairs) <= k:
        raise ValueError(f"eigenvector_similarity needs more than k = {k} word pairs, got {len(pairs)}.")
    a, b = _laplacian_spectrum(X[pairs[:, 0]], k), _laplacian_spectrum(Y[pairs[:, 1]], k)
    h = min(int((a.cumsum(0) / a.sum() < energy).sum()) + 1, int((b.cumsum(0) / b.sum() < energy).sum()) + 1)
    return float(((a[:h] - b[:h]) ** 2).sum())


def relational_similarity(X: torch.Tensor, Y: torch.Tensor, pairs: torch.Tensor) -> float:
    """Vulić et al.'s (2020) relational similarity: the correlation between the cosines of every two
    words of ``pairs`` (p, 2) in the source space and the cosines of their translations in the target
    space. 1 for isometric spaces (a rotation keeps every cosine); near 0 when the shapes are unrelated."""
    pairs = torch.as_tensor(pairs).reshape(-1, 2)
    if len(pairs) < 3:
        raise ValueError(f"relational_similarity needs at least 3 word pairs, got {len(pairs)}.")
    A, B = X[pairs[:, 0]], Y[pairs[:, 1]]
    upper = torch.triu_indices(len(pairs), len(pairs), 1)
    a, b = (A @ A.T)[upper[0], upper[1]], (B @ B.T)[upper[0], upper[1]]
    return float(torch.corrcoef(torch.stack([a, b]).double())[0, 1])
