"""Chapter 9: unsupervised machine translation, from words to sentences, without a single parallel pair.

Papers:

* Conneau, Lample, Ranzato, Denoyer & Jégou (2018), "Word translation without parallel data": an
  orthogonal map learned against a discriminator, refined by Procrustes on the dictionary it induces,
  and the CSLS retrieval score. Schönemann (1966) for the Procrustes solution; Xing et al. (2015) for
  unit-length vectors and an orthogonal map; Søgaard, Ruder & Vulić (2018) for when it fails.
* Lample, Conneau, Denoyer & Ranzato (2018), "Unsupervised machine translation using monolingual
  corpora only": one encoder and one decoder shared by two languages, trained by denoising
  auto-encoding and iterative back-translation (Sennrich, Haddow & Birch 2016), started from a
  word-by-word translation, with round-trip BLEU for model selection.
* Papineni, Roukos, Ward & Zhu (2002), BLEU; Post (2018), sacreBLEU, for comparable scores.

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
* (9.8) Noise model ``C(x)``: drop each word with probability ``p_wd``, then shuffle locally with the
  permutation ``sigma`` that sorts ``q_i = i + U(0, alpha)``, so that ``|sigma(i) - i| <= k`` for
  ``alpha = k + 1``.
* (9.9) Denoising: ``L_auto(l) = E_{x ~ D_l} [ -log p(x | e(C(x), l), l) ]``, decoder told language ``l``.
* (9.10) Back-translation: with the previous model ``M``, ``L_bt(l1 -> l2) = E_{y ~ D_l2}
  [ -log p(y | e(C(M(y)), l1), l2) ]``: translate ``y`` into ``l1`` (no gradient), learn to bring it back.
* (9.11) The objective of one iteration: ``L_auto(en) + L_auto(fr) + L_bt(en -> fr) + L_bt(fr -> en)``.
* (9.12) BLEU: ``BP exp(sum_{n=1}^{4} 1/4 log p_n)``, ``p_n`` the clipped n-gram precision of the corpus,
  ``BP = min(1, exp(1 - r / c))`` for reference length ``r`` and candidate length ``c``.

Use::

    X, Y = normalize_embeddings(wv_en.vectors), normalize_embeddings(wv_fr.vectors)
    W, log = adversarial_alignment(X, Y)                     # (d, d), no dictionary used
    W, _ = procrustes_refinement(X, Y, W)                    # refine on its own induced dictionary
    p = translation_precision(X @ W.T, Y, test_ids, method="csls")     # {'P@1': ..., 'P@5': ..., 'n': ...}

    wbw = WordByWord(vocab, {("en", "fr"): best_translations(pairs, counts_fr), ...})   # M^(0)
    model = Seq2Seq(vocab)                                   # shared encoder/decoder, all languages
    init_embeddings_from_dictionary(model, wbw, "en", "fr")  # a word starts where its translation does
    log = train_unmt(model, mono, wbw, iterations=3, steps=2000)

Everything is device-agnostic: tensors follow the inputs or the module's parameters.
"""

from __future__ import annotations

import copy
import math
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..train import autocast, backward_and_step, grad_scaler

__all__ = [
    # word translation
    "normalize_embeddings", "procrustes", "is_orthogonal", "orthogonalize_step", "csls",
    "neighbourhood_density", "translate", "translation_precision", "dictionary_ids", "split_dictionary",
    "Discriminator", "adversarial_alignment", "induce_dictionary", "unsupervised_criterion",
    "procrustes_refinement", "supervised_procrustes",
    # sentences
    "tokenize_sentence", "detokenize", "MTVocab", "word_drop", "local_shuffle", "add_noise",
    "Seq2Seq", "WordByWord", "best_translations", "init_embeddings_from_dictionary", "translate_ids",
    "translate_sentences", "denoising_loss", "back_translation_loss",
    "train_unmt", "train_supervised", "bleu", "corpus_bleu", "round_trip_bleu", "monolingual_halves", "pad",
]


# ==============================================================================================
# Part 1. Word translation without parallel data (Conneau et al. 2018)
# ==============================================================================================


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
                          progress: bool = True) -> tuple[torch.Tensor, dict]:
    """Learn an orthogonal ``W`` (d, d) with ``X W^T`` indistinguishable from ``Y``, without a dictionary.

    The game of Conneau et al. (2018): a :class:`Discriminator` learns to tell mapped source vectors from
    target vectors (9.2), ``dis_steps`` times per step of ``W`` on the inverted loss (9.3); after each step
    ``W`` is pulled back to the orthogonal matrices (9.4). Only the ``most_frequent`` words of each
    side are drawn (rare words have poor vectors); labels are smoothed by ``smooth``. SGD with ``lr``,
    multiplied by ``lr_decay`` every ``eval_every`` steps, when the criterion (9.7) is also computed and
    the best ``W`` so far kept. Returns ``(W, log)`` with ``log`` holding the step, the criterion,
    the discriminator's accuracy and loss at each evaluation, and the best step.
    """
    X, Y = _matrix("X", X), _matrix("Y", Y, X.shape[1])
    if X.device.type == "cpu":              # thousands of tiny steps: on a CPU, more threads only add waiting
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return _adversarial_alignment(X, Y, steps, batch_size, dis_steps, lr, lr_decay, beta, smooth,
                                          most_frequent, hidden, eval_every, criterion_words, seed, progress)
        finally:
            torch.set_num_threads(threads)
    return _adversarial_alignment(X, Y, steps, batch_size, dis_steps, lr, lr_decay, beta, smooth, most_frequent,
                                  hidden, eval_every, criterion_words, seed, progress)


def _adversarial_alignment(X, Y, steps, batch_size, dis_steps, lr, lr_decay, beta, smooth, most_frequent, hidden,
                           eval_every, criterion_words, seed, progress) -> tuple[torch.Tensor, dict]:
    d, device = X.shape[1], X.device
    g = torch.Generator(device="cpu").manual_seed(seed)
    torch.manual_seed(seed)
    W = torch.eye(d, device=device)                                    # start from the identity
    W_param = nn.Parameter(W.clone())
    dis = Discriminator(d, hidden).to(device)
    opt_w = torch.optim.SGD([W_param], lr=lr)
    opt_d = torch.optim.SGD(dis.parameters(), lr=lr)
    n_x, n_y = min(most_frequent, len(X)), min(most_frequent, len(Y))
    # label of "source": 1 - smooth for the discriminator, so it never becomes overconfident
    y_dis = torch.cat([torch.full((batch_size,), 1 - smooth), torch.full((batch_size,), smooth)]).to(device)
    log = {"step": [], "criterion": [], "dis_accuracy": [], "dis_loss": [], "best_step": 0}
    best, best_W = -float("inf"), W_param.detach().clone()
    from ..train import progress as progress_bar

    bar = progress_bar(range(1, steps + 1), desc="adversarial", disable=not progress)
    correct, seen, dis_loss_sum, dis_loss_n = 0, 0, 0.0, 0
    for step in bar:
        dis.train()
        for _ in range(dis_steps):                                     # (9.2): train the discriminator
            ix = torch.randint(n_x, (batch_size,), generator=g).to(device)
            iy = torch.randint(n_y, (batch_size,), generator=g).to(device)
            with torch.no_grad():
                v = torch.cat([X[ix] @ W_param.T, Y[iy]])              # (2B, d): mapped source, target
            logits = dis(v)
            loss_d = F.binary_cross_entropy_with_logits(logits, y_dis)
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
            correct += ((logits > 0) == (y_dis > 0.5)).sum().item()
            seen += len(logits)
            dis_loss_sum, dis_loss_n = dis_loss_sum + loss_d.item(), dis_loss_n + 1
        dis.eval()                                                     # (9.3): W tries to fool it
        ix = torch.randint(n_x, (batch_size,), generator=g).to(device)
        iy = torch.randint(n_y, (batch_size,), generator=g).to(device)
        logits = dis(torch.cat([X[ix] @ W_param.T, Y[iy]]))
        loss_w = F.binary_cross_entropy_with_logits(logits, 1 - y_dis)  # flipped labels
        opt_w.zero_grad(set_to_none=True)
        loss_w.backward()
        opt_w.step()
        orthogonalize_step(W_param.data, beta)                         # (9.4)
        if step % eval_every == 0 or step == steps:
            crit = unsupervised_criterion(F.normalize(X @ W_param.detach().T, dim=1), Y, criterion_words)
            log["step"].append(step)
            log["criterion"].append(crit)
            log["dis_accuracy"].append(correct / max(seen, 1))
            log["dis_loss"].append(dis_loss_sum / max(dis_loss_n, 1))
            correct, seen, dis_loss_sum, dis_loss_n = 0, 0, 0.0, 0
            if crit > best:
                best, best_W, log["best_step"] = crit, W_param.detach().clone(), step
            for group in (*opt_w.param_groups, *opt_d.param_groups):
                group["lr"] *= lr_decay
    return best_W, log


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


# ==============================================================================================
# Part 2. Unsupervised neural machine translation (Lample et al. 2018)
# ==============================================================================================

# ---------------------------------------------------------------------------------------------
# Words and sentences
# ---------------------------------------------------------------------------------------------

_TOKEN = re.compile(r"\w+(?:-\w+)*'?|[^\w\s]")


def tokenize_sentence(sentence: str) -> list[str]:
    """Lower-cased words and punctuation marks: ``"L'homme court."`` gives ``["l'", 'homme', 'court', '.']``.

    Unlike :func:`unsuplab.data.tokenize` (words only, for word vectors), punctuation is kept, because
    a translation must produce it; hyphenated words stay whole, an elided article keeps its apostrophe.
    """
    if not isinstance(sentence, str):
        raise TypeError(f"tokenize_sentence expects one sentence (a str), got {type(sentence).__name__}.")
    return _TOKEN.findall(sentence.lower().replace("\u2019", "'"))


def detokenize(tokens: Sequence[str]) -> str:
    """Tokens back to text: ``['l'', 'homme', '.']`` gives ``"l'homme."``; ``<unk>`` is dropped."""
    text = " ".join(t for t in tokens if t != MTVocab.UNK)
    text = re.sub(r"(\w') (?=\w)", r"\1", text)                       # l' homme -> l'homme
    return re.sub(r" ([.,!?;:)])", r"\1", text).replace("( ", "(")


@dataclass
class MTVocab:
    """The words of every language, each language in its own block of ids, after a few special tokens.

    Ids ``0..3`` are ``<pad>``, ``<unk>``, ``<eos>`` and ``<s>``; then one *language tag* per language
    (the decoder's first input, which tells it what language to write); then the words of the first
    language, then those of the second... A word spelled alike in two languages ("jeans") gets one id
    in each. ``lang_mask(l)`` says which ids may be written in language ``l`` (its words and ``<eos>``).
    """

    PAD, UNK, EOS, BOS = "<pad>", "<unk>", "<eos>", "<s>"
    langs: tuple[str, ...]
    words: dict[str, list[str]]                       # language -> its words, most frequent first
    itos: list[str] = field(init=False, repr=False)
    offset: dict[str, int] = field(init=False, repr=False)
    index: dict[str, dict[str, int]] = field(init=False, repr=False)

    def __post_init__(self):
        self.langs = tuple(self.langs)
        if len(set(self.langs)) != len(self.langs) or not self.langs:
            raise ValueError(f"langs must be distinct language codes such as ('en', 'fr'), got {self.langs}.")
        self.itos = [self.PAD, self.UNK, self.EOS, self.BOS] + [f"<{l}>" for l in self.langs]
        self.offset, self.index = {}, {}
        for l in self.langs:
            self.offset[l] = len(self.itos)
            self.index[l] = {w: self.offset[l] + i for i, w in enumerate(self.words[l])}
            self.itos += list(self.words[l])

    pad_id, unk_id, eos_id, bos_id = 0, 1, 2, 3

    @classmethod
    def build(cls, corpora: dict[str, Sequence[Sequence[str]]], min_count: int = 2,
              max_size: int | None = None) -> "MTVocab":
        """Count the tokenised sentences of each language and keep words seen ``min_count`` times or more."""
        words = {}
        for lang, sentences in corpora.items():
            counts = Counter(t for s in sentences for t in s)
            kept = sorted((w for w, n in counts.items() if n >= min_count), key=lambda w: (-counts[w], w))
            words[lang] = kept[:max_size]
        return cls(tuple(corpora), words)

    def __len__(self) -> int:
        return len(self.itos)

    def lang_id(self, lang: str) -> int:
        """The id of the language tag ``<lang>``."""
        if lang not in self.offset:
            raise ValueError(f"unknown language {lang!r}: this vocabulary has {', '.join(self.langs)}.")
        return 4 + self.langs.index(lang)

    def lang_range(self, lang: str) -> tuple[int, int]:
        """The ids ``[start, stop)`` of the words of ``lang``."""
        self.lang_id(lang)
        return self.offset[lang], self.offset[lang] + len(self.words[lang])

    def lang_mask(self, lang: str, device=None) -> torch.Tensor:
        """(V,) bool: the ids that a sentence in ``lang`` may contain (its words and ``<eos>``)."""
        mask = torch.zeros(len(self), dtype=torch.bool, device=device)
        start, stop = self.lang_range(lang)
        mask[start:stop] = True
        mask[self.eos_id] = True
        return mask

    def encode(self, tokens: Sequence[str], lang: str) -> list[int]:
        """Ids of ``tokens`` of language ``lang`` (``<unk>`` for unknown words), no ``<eos>``."""
        index = self.index[lang] if lang in self.index else self.lang_id(lang)
        return [index.get(t, self.unk_id) for t in tokens]

    def decode(self, ids: Sequence[int]) -> list[str]:
        """Tokens of ``ids``, stopping at the first ``<eos>``, padding and tags left out."""
        out = []
        for i in ids:
            i = int(i)
            if i == self.eos_id:
                break
            if i >= 4 + len(self.langs) or i == self.unk_id:
                out.append(self.itos[i])
        return out

    def batch(self, sentences: Sequence[Sequence[str]], lang: str, device=None,
              max_len: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded ids (B, T) and lengths (B,) of tokenised sentences (longer ones cut at ``max_len``)."""
        return pad([self.encode(s[:max_len], lang) for s in sentences], device)


def pad(sequences: Sequence[Sequence[int]], device=None, value: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Lists of ids to a padded (B, T) tensor and its (B,) lengths."""
    lengths = torch.tensor([len(s) for s in sequences], dtype=torch.long)
    x = torch.full((len(sequences), max(int(lengths.max()), 1) if len(sequences) else 1), value, dtype=torch.long)
    for i, s in enumerate(sequences):
        x[i, : len(s)] = torch.as_tensor(s, dtype=torch.long)
    return x.to(device), lengths.to(device)


def monolingual_halves(n_pairs: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Split the indices ``0..n_pairs-1`` of a parallel corpus into two disjoint random halves.

    Lample et al.'s protocol: the first language keeps only the sentences of the first half, the
    second language only those of the second half, so no sentence is ever seen with its translation.
    """
    order = torch.randperm(n_pairs, generator=torch.Generator().manual_seed(seed))
    return order[: n_pairs // 2].sort().values, order[n_pairs // 2:].sort().values


# ---------------------------------------------------------------------------------------------
# The noise model C(x) (9.8)
# ---------------------------------------------------------------------------------------------


def _check_batch(x: torch.Tensor, lengths: torch.Tensor) -> None:
    if x.ndim != 2 or lengths.ndim != 1 or len(lengths) != len(x):
        raise ValueError(f"expected padded ids x (B, T) and lengths (B,), got {tuple(x.shape)} and "
                         f"{tuple(lengths.shape)}.")
    if len(lengths) and int(lengths.max()) > x.shape[1]:
        raise ValueError(f"a length ({int(lengths.max())}) exceeds the padded width T = {x.shape[1]}.")


def word_drop(x: torch.Tensor, lengths: torch.Tensor, p: float = 0.1,
              generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Drop each word of each sentence with probability ``p`` (the first part of 9.8); keeps word order.

    ``x`` (B, T) padded ids with ``lengths`` (B,). Returns the shortened sentences, padded with 0, and
    their lengths. A sentence never loses all its words: if every word was drawn for dropping, its
    first word is kept.
    """
    _check_batch(x, lengths)
    if not 0 <= p < 1:
        raise ValueError(f"p (the probability of dropping a word) must be in [0, 1), got {p}; Lample et al. use 0.1.")
    valid = torch.arange(x.shape[1], device=x.device)[None, :] < lengths[:, None]        # (B, T)
    keep = (torch.rand(x.shape, generator=generator, device=x.device) >= p) & valid
    keep[:, 0] |= (keep.sum(1) == 0) & (lengths > 0)                                     # never empty
    order = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)                   # kept words first
    new_lengths = keep.sum(1)
    out = x.gather(1, order)
    out[torch.arange(x.shape[1], device=x.device)[None, :] >= new_lengths[:, None]] = 0
    return out, new_lengths


def local_shuffle(x: torch.Tensor, lengths: torch.Tensor, k: int = 3,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Shuffle each sentence so that no word moves more than ``k`` places (the second part of 9.8).

    Word ``i`` gets the key ``q_i = i + U(0, k + 1)``; sorting the keys gives the new order, in which
    ``|sigma(i) - i| <= k``. Padding stays at the end. ``x`` (B, T), ``lengths`` (B,) -> (B, T).
    """
    _check_batch(x, lengths)
    if isinstance(k, bool) or not isinstance(k, int) or k < 0:
        raise ValueError(f"k (how far a word may move) must be a whole number >= 0, got {k!r}; Lample et al. use 3.")
    positions = torch.arange(x.shape[1], device=x.device, dtype=torch.float32)[None, :]   # (1, T)
    q = positions + (k + 1) * torch.rand(x.shape, generator=generator, device=x.device)  # q_i = i + U(0, k+1)
    q = q.masked_fill(positions >= lengths[:, None], float("inf"))                       # padding last
    return x.gather(1, q.argsort(dim=1))


def add_noise(x: torch.Tensor, lengths: torch.Tensor, p_drop: float = 0.1, k: int = 3,
              generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The noise model ``C(x)`` of eq. (9.8): :func:`word_drop`, then :func:`local_shuffle`."""
    x, lengths = word_drop(x, lengths, p_drop, generator)
    return local_shuffle(x, lengths, k, generator), lengths


# ---------------------------------------------------------------------------------------------
# One encoder and one decoder for all languages
# ---------------------------------------------------------------------------------------------


def _with_eos(x: torch.Tensor, lengths: torch.Tensor, eos: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Append ``<eos>`` to each sentence of a padded batch: (B, T) -> (B, T + 1)."""
    x = torch.cat([x, torch.zeros_like(x[:, :1])], 1)
    x[torch.arange(len(x), device=x.device), lengths] = eos
    return x, lengths + 1


def _sinusoids(max_len: int, dim: int) -> torch.Tensor:
    position = torch.arange(max_len, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10_000.0) / dim))
    pe = torch.zeros(max_len, dim)
    pe[:, 0::2] = torch.sin(position * freq)
    pe[:, 1::2] = torch.cos(position * freq[: dim // 2])
    return pe                                                          # (max_len, dim)


class Seq2Seq(nn.Module):
    """A Transformer encoder-decoder (Vaswani et al. 2017) shared by every language.

    The encoder reads a sentence of any language; the decoder writes one, told which language by its
    first input, the language tag ``<l>``. One embedding table serves the encoder's input, the
    decoder's input and the decoder's output (tied weights); each language has its own block of rows
    (:class:`MTVocab`), which may be initialised with cross-lingual word vectors.
    """

    def __init__(self, vocab: MTVocab, d_model: int = 256, nhead: int = 4, layers: int = 3, ff: int = 1024,
                 dropout: float = 0.1, max_len: int = 128):
        super().__init__()
        self.vocab = vocab
        self.d_model = d_model
        self.embed = nn.Embedding(len(vocab), d_model, padding_idx=vocab.pad_id)
        nn.init.normal_(self.embed.weight, std=d_model ** -0.5)
        self.register_buffer("pe", _sinusoids(max_len, d_model), persistent=False)
        self.encoder = nn.TransformerEncoder(
            nn.TransformerEncoderLayer(d_model, nhead, ff, dropout, batch_first=True, norm_first=True),
            layers, norm=nn.LayerNorm(d_model), enable_nested_tensor=False)
        self.decoder = nn.TransformerDecoder(
            nn.TransformerDecoderLayer(d_model, nhead, ff, dropout, batch_first=True, norm_first=True),
            layers, norm=nn.LayerNorm(d_model))
        self.drop = nn.Dropout(dropout)

    @property
    def device(self) -> torch.device:
        return self.embed.weight.device

    def _embed(self, ids: torch.Tensor) -> torch.Tensor:
        if ids.shape[1] > len(self.pe):
            raise ValueError(f"a sentence of {ids.shape[1]} tokens is longer than max_len = {len(self.pe)}.")
        return self.drop(self.embed(ids) * math.sqrt(self.d_model) + self.pe[: ids.shape[1]])

    def encode(self, src: torch.Tensor, src_len: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``src`` (B, S) ids with lengths (B,) -> memory (B, S + 1, d) and its padding mask (B, S + 1).

        ``<eos>`` is appended to every sentence first, so that the encoder sees where it ends.
        """
        src, src_len = _with_eos(src, src_len, self.vocab.eos_id)      # (B, S + 1)
        pad_mask = torch.arange(src.shape[1], device=src.device)[None, :] >= src_len[:, None]
        return self.encoder(self._embed(src), src_key_padding_mask=pad_mask), pad_mask

    def output_ids(self, lang: str) -> torch.Tensor:
        """The ids the decoder may write in ``lang``: ``<eos>``, ``<unk>``, then the words of ``lang``; (V_l,)."""
        start, stop = self.vocab.lang_range(lang)
        special = torch.tensor([self.vocab.eos_id, self.vocab.unk_id], device=self.device)
        return torch.cat([special, torch.arange(start, stop, device=self.device)])

    def decode(self, memory: torch.Tensor, memory_pad: torch.Tensor, tgt_in: torch.Tensor, lang: str,
               last_only: bool = False) -> torch.Tensor:
        """Logits (B, T, V_l) of the next token after each prefix of ``tgt_in`` (B, T), over the ids that
        language ``lang`` may write (:meth:`output_ids`: a softmax over one language's words, not all);
        with ``last_only``, those after the whole prefix only, (B, V_l) (all that greedy decoding needs)."""
        T_ = tgt_in.shape[1]
        causal = torch.triu(torch.ones(T_, T_, dtype=torch.bool, device=tgt_in.device), 1)
        h = self.decoder(self._embed(tgt_in), memory, tgt_mask=causal, tgt_is_causal=True,
                         tgt_key_padding_mask=tgt_in == self.vocab.pad_id, memory_key_padding_mask=memory_pad)
        if last_only:
            h = h[:, -1]                                                # (B, d)
        return h @ self.embed.weight[self.output_ids(lang)].T           # (B, T, d) -> (B, T, V_l), tied weights

    def forward(self, src, src_len, tgt, tgt_len, tgt_lang: str) -> torch.Tensor:
        """Mean cross-entropy per target token of writing ``tgt`` (B, T) in ``tgt_lang`` from ``src`` (B, S):
        ``-log p(y | e(src), l)``, the decoder fed ``<l> y_1 .. y_T`` and trained to output ``y_1 .. y_T <eos>``."""
        _check_batch(tgt, tgt_len)
        memory, memory_pad = self.encode(src, src_len)
        B = len(tgt)
        tag = torch.full((B, 1), self.vocab.lang_id(tgt_lang), dtype=torch.long, device=tgt.device)
        tgt_in = torch.cat([tag, tgt], 1)                               # (B, T + 1)
        # targets as positions in output_ids: <eos> 0, <unk> 1, word w of the block at w - start + 2
        start, stop = self.vocab.lang_range(tgt_lang)
        valid = torch.arange(tgt.shape[1], device=tgt.device)[None, :] < tgt_len[:, None]
        if bool((valid & (tgt != self.vocab.unk_id) & ((tgt < start) | (tgt >= stop))).any()):
            raise ValueError(f"the target sentences hold ids that are not words of {tgt_lang!r}: encode them "
                             f"with vocab.encode(tokens, {tgt_lang!r}).")
        target = torch.where(tgt == self.vocab.unk_id, 1, tgt - start + 2).masked_fill(~valid, -100)
        target = torch.cat([target, torch.full_like(tag, -100)], 1)     # (B, T + 1)
        target[torch.arange(B, device=tgt.device), tgt_len] = 0         # <eos> after the last word
        logits = self.decode(memory, memory_pad, tgt_in, tgt_lang)      # (B, T + 1, V_l)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), target.reshape(-1), ignore_index=-100)

    @torch.no_grad()
    def generate(self, src: torch.Tensor, src_len: torch.Tensor, tgt_lang: str, max_len: int | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """Greedy translation of ``src`` (B, S) into ``tgt_lang``: ids (B, T) and lengths (B,), no ``<eos>``.

        Only words of ``tgt_lang`` (and ``<eos>``) can be written. Stops when every sentence has ended,
        or after ``max_len`` tokens (default ``1.5 S + 5``).
        """
        memory, memory_pad = self.encode(src, src_len)
        B = len(src)
        max_len = max_len or int(1.5 * src.shape[1] + 5)
        max_len = min(max_len, len(self.pe) - 1)
        ids = self.output_ids(tgt_lang)                                 # (V_l,) column -> id
        out = torch.full((B, 1), self.vocab.lang_id(tgt_lang), dtype=torch.long, device=src.device)
        done = torch.zeros(B, dtype=torch.bool, device=src.device)
        lengths = torch.full((B,), max_len, dtype=torch.long, device=src.device)
        for t in range(max_len):
            logits = self.decode(memory, memory_pad, out, tgt_lang, last_only=True).float()   # (B, V_l)
            logits[:, 1] = -float("inf")                                 # never write <unk>
            if t == 0:                                                   # no empty translation
                logits[:, 0] = -float("inf")
            nxt = ids[logits.argmax(-1)]                                 # (B,)
            ended = (nxt == self.vocab.eos_id) & ~done
            lengths[ended] = t
            done |= ended
            out = torch.cat([out, nxt.masked_fill(done, self.vocab.pad_id)[:, None]], 1)
            if bool(done.all()):
                break
        out = out[:, 1:]
        out[torch.arange(out.shape[1], device=out.device)[None, :] >= lengths[:, None]] = self.vocab.pad_id
        return out[:, : int(lengths.max()) if len(lengths) else 0], lengths


def best_translations(pairs: Sequence[tuple[str, str]], target_counts: dict[str, int] | None = None
                      ) -> dict[str, str]:
    """One translation per source word from a dictionary that lists several (``"the"``: le, la, les...).

    With ``target_counts`` (word counts of the target language's *monolingual* corpus) the candidate
    seen most often there wins, and candidates never seen are skipped; without, the first listed.
    """
    best: dict[str, str] = {}
    for a, b in pairs:
        if target_counts is None:
            best.setdefault(a, b)
        elif target_counts.get(b, 0) > 0 and target_counts.get(b, 0) > target_counts.get(best.get(a), 0):
            best[a] = b
    return best


class WordByWord:
    """Translation word by word with a bilingual dictionary: the first model, ``M^(0)``, of Lample et al.

    ``table[l1][l2]`` (V,) gives for every id of language ``l1`` an id of language ``l2``: its
    translation when the dictionary has one, else the same spelling when ``l2`` has that word (names,
    "jeans"), else ``<unk>``. Same interface as :meth:`Seq2Seq.generate`.
    """

    def __init__(self, vocab: MTVocab, dictionaries: dict[tuple[str, str], dict[str, str]]):
        self.vocab = vocab
        self.tables = {}
        for (l1, l2), dictionary in dictionaries.items():
            table = torch.full((len(vocab),), vocab.unk_id, dtype=torch.long)
            for word, i in vocab.index[l1].items():
                target = dictionary.get(word, word)
                table[i] = vocab.index[l2].get(target, vocab.unk_id)
            self.tables[(l1, l2)] = table

    def source_lang(self, src: torch.Tensor) -> str:
        ids = src[(src >= 4 + len(self.vocab.langs))]
        if len(ids) == 0:
            return self.vocab.langs[0]
        votes = [((ids >= a) & (ids < b)).sum().item() for a, b in map(self.vocab.lang_range, self.vocab.langs)]
        return self.vocab.langs[int(np.argmax(votes))]

    def generate(self, src: torch.Tensor, src_len: torch.Tensor, tgt_lang: str, max_len: int | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        table = self.tables[(self.source_lang(src), tgt_lang)].to(src.device)
        out = table[src]
        out[torch.arange(src.shape[1], device=src.device)[None, :] >= src_len[:, None]] = self.vocab.pad_id
        return out, src_len.clone()

    def eval(self) -> "WordByWord":
        return self


@torch.no_grad()
def init_embeddings_from_dictionary(model: Seq2Seq, translator: WordByWord, src: str, tgt: str) -> int:
    """Start each word of ``tgt`` where its dictionary translation in ``src`` starts: ``E[f] = E[e]``.

    Lample et al. initialise the shared embeddings with cross-lingual word vectors, so that a word and
    its translation begin as neighbours; the denoising auto-encoder, which learns to copy, then writes
    the translation of a word it reads in the other language from the first step. The dictionary of
    ``translator`` (``tgt`` -> ``src``) plays the cross-lingual vectors here. Returns how many rows were set.
    """
    table = translator.tables[(tgt, src)].to(model.device)      # ids of tgt -> ids of src
    start, stop = model.vocab.lang_range(tgt)
    ids = torch.arange(start, stop, device=model.device)
    found = table[ids] != model.vocab.unk_id
    model.embed.weight[ids[found]] = model.embed.weight[table[ids[found]]]
    return int(found.sum())


# ---------------------------------------------------------------------------------------------
# The two losses (9.9), (9.10)
# ---------------------------------------------------------------------------------------------


def denoising_loss(model: Seq2Seq, x: torch.Tensor, x_len: torch.Tensor, lang: str, p_drop: float = 0.1,
                   k: int = 3, generator: torch.Generator | None = None) -> torch.Tensor:
    """Eq. (9.9): rebuild the sentences ``x`` (B, T) of language ``lang`` from their noisy copy ``C(x)``."""
    noisy, noisy_len = add_noise(x, x_len, p_drop, k, generator)        # C(x)
    return model(noisy, noisy_len, x, x_len, lang)


def back_translation_loss(model: Seq2Seq, translator, y: torch.Tensor, y_len: torch.Tensor, lang_y: str,
                          lang_x: str, p_drop: float = 0.1, k: int = 3,
                          generator: torch.Generator | None = None) -> torch.Tensor:
    """Eq. (9.10), one batch: translate ``y`` (B, T) of ``lang_y`` into ``lang_x`` with ``translator`` (the
    previous model, no gradient), add noise, and score ``model`` on bringing the translation back to ``y``."""
    with torch.no_grad():
        x_hat, x_len = translator.generate(y, y_len, lang_x)             # M(y): (B, T')
    noisy, noisy_len = add_noise(x_hat, x_len, p_drop, k, generator)     # C(M(y))
    return model(noisy, noisy_len, y, y_len, lang_y)


# ---------------------------------------------------------------------------------------------
# Translating whole corpora, and BLEU (9.12)
# ---------------------------------------------------------------------------------------------


@torch.no_grad()
def translate_ids(translator, sentences: Sequence[Sequence[int]], tgt_lang: str, *, batch_size: int = 256,
                  device=None, max_len: int = 100) -> list[list[int]]:
    """Translate lists of ids with ``translator`` (a :class:`Seq2Seq` or :class:`WordByWord`), in batches of
    similar lengths (sorted, so little padding); the results come back in the input order."""
    device = device or getattr(translator, "device", None) or torch.device("cpu")
    from ..train import eval_mode

    order = sorted(range(len(sentences)), key=lambda i: len(sentences[i]))
    out: list[list[int]] = [[] for _ in sentences]
    with eval_mode(translator):
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            src, src_len = pad([list(sentences[i])[:max_len] or [translator.vocab.unk_id] for i in chunk], device)
            with autocast(device):
                ids, lengths = translator.generate(src, src_len, tgt_lang)
            for row, i in enumerate(chunk):
                out[i] = ids[row, : int(lengths[row])].tolist()
    return out


def translate_sentences(translator, sentences: Sequence[str], src_lang: str, tgt_lang: str, *,
                        batch_size: int = 256, device=None) -> list[str]:
    """Translate raw sentences (str) from ``src_lang`` into ``tgt_lang``; returns detokenised text."""
    vocab = translator.vocab
    ids = [vocab.encode(tokenize_sentence(s), src_lang) for s in sentences]
    return [detokenize(vocab.decode(t)) for t in translate_ids(translator, ids, tgt_lang, batch_size=batch_size,
                                                                 device=device)]


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


def round_trip_bleu(model, sentences: Sequence[str], lang: str, via: str, *, batch_size: int = 256) -> float:
    """Translate ``sentences`` of ``lang`` into ``via`` and back, and score the result against the originals.

    Needs no translation of anything: Lample et al. select models (and stop training) by it.
    """
    there = translate_sentences(model, sentences, lang, via, batch_size=batch_size)
    back = translate_sentences(model, there, via, lang, batch_size=batch_size)
    return corpus_bleu(back, sentences)


# ---------------------------------------------------------------------------------------------
# Training: iterative back-translation (9.11), and the supervised upper bound
# ---------------------------------------------------------------------------------------------


def _batch_of(sentences: Sequence[Sequence[int]], idx: torch.Tensor, device) -> tuple[torch.Tensor, torch.Tensor]:
    return pad([sentences[i] for i in idx.tolist()], device)


def _optimizer(model: nn.Module, lr: float, warmup: int):
    opt = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.98), eps=1e-9)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: min(1.0, (step + 1) / max(warmup, 1)))
    return opt, sched


def _steps(model, opt, sched, losses: Callable[[torch.Generator], dict[str, torch.Tensor]], steps: int,
           g: torch.Generator, clip: float, desc: str, progress: bool, history: dict) -> None:
    """Run ``steps`` optimiser steps on the sum of the losses that ``losses`` returns for a fresh batch."""
    from ..train import check_finite, progress as progress_bar

    model.train()
    scaler = grad_scaler(model.device)  # float16 (a T4) needs one; elsewhere it does nothing
    sums: dict[str, float] = {}
    bar = progress_bar(range(steps), desc=desc, disable=not progress)
    for step in bar:
        with autocast(model.device):
            terms = losses(g)
        loss = sum(terms.values())
        check_finite(loss, step=step)
        backward_and_step(loss, opt, scaler, model.parameters(), clip)
        sched.step()
        for name, value in terms.items():
            sums[name] = sums.get(name, 0.0) + value.item()
    for name, total in sums.items():
        history.setdefault(name, []).append(total / max(steps, 1))


def train_unmt(model: Seq2Seq, mono: dict[str, Sequence[Sequence[int]]], translator, *, iterations: int = 3,
               steps: int = 2_000, batch_size: int = 64, lr: float = 5e-4, warmup: int = 500, p_drop: float = 0.1,
               k: int = 3, clip: float = 1.0, evaluate: Callable[[Seq2Seq], dict] | None = None,
               select: str | None = None, seed: int = 0, progress: bool = True) -> dict:
    """Unsupervised training of Lample et al. (2018), eq. (9.11), for ``iterations`` rounds.

    ``mono`` maps each of two languages to its monolingual sentences (lists of ids of ``model.vocab``);
    ``translator`` is the first model ``M^(0)``, e.g. a :class:`WordByWord`. Round ``t``:

    1. back-translate every sentence of each language with ``M^(t-1)`` (greedy, no gradient), which
       gives pairs ``(M(y), y)`` for each direction;
    2. train ``steps`` steps on ``L_auto(l1) + L_auto(l2) + L_bt(l1 -> l2) + L_bt(l2 -> l1)``, each term on
       ``batch_size`` sentences, the noise ``C`` drawn afresh at every step;
    3. ``M^(t)`` = the model now; ``evaluate(model)`` (optional) returns numbers to log, and with
       ``select`` naming one of them, the model of the round where it was highest is restored at the end
       (round-trip BLEU: model selection without parallel data).

    Returns the log: per round the mean of each loss term, the evaluation, the seconds, ``best_round``.
    """
    langs = list(mono)
    if len(langs) != 2:
        raise ValueError(f"train_unmt needs monolingual sentences of exactly two languages, got {langs}.")
    device = model.device
    g = torch.Generator().manual_seed(seed)
    opt, sched = _optimizer(model, lr, warmup)
    log: dict = {"round": [], "seconds": [], "best_round": 0}
    best, best_state = -float("inf"), None
    started = time.perf_counter()
    for t in range(1, iterations + 1):
        # 1. back-translation of both corpora with the previous model M^(t-1)
        pairs = {}
        for l2 in langs:
            l1 = langs[1 - langs.index(l2)]
            pairs[(l1, l2)] = (translate_ids(translator, mono[l2], l1, device=device), mono[l2])

        # 2. the four losses of (9.11)
        def losses(g: torch.Generator) -> dict[str, torch.Tensor]:
            terms = {}
            for l in langs:
                x, x_len = _batch_of(mono[l], torch.randint(len(mono[l]), (batch_size,), generator=g), device)
                terms[f"auto_{l}"] = denoising_loss(model, x, x_len, l, p_drop, k)
            for (l1, l2), (src, tgt) in pairs.items():
                idx = torch.randint(len(tgt), (batch_size,), generator=g)
                x_hat, x_len = _batch_of(src, idx, device)
                y, y_len = _batch_of(tgt, idx, device)
                noisy, noisy_len = add_noise(x_hat, x_len, p_drop, k)   # C(M(y))
                terms[f"bt_{l1}_{l2}"] = model(noisy, noisy_len, y, y_len, l2)
            return terms

        _steps(model, opt, sched, losses, steps, g, clip, f"round {t}", progress, log)
        # 3. the new model translates in the next round; evaluate it
        model.eval()
        log["round"].append(t)
        log["seconds"].append(time.perf_counter() - started)
        if evaluate is not None:
            for name, value in evaluate(model).items():
                log.setdefault(name, []).append(value)
            if select is not None and log[select][-1] > best:
                best, log["best_round"] = log[select][-1], t
                best_state = copy.deepcopy(model.state_dict())
        translator = copy.deepcopy(model).eval()
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return log


def train_supervised(model: Seq2Seq, parallel: dict[str, Sequence[Sequence[int]]], *, steps: int = 6_000,
                     batch_size: int = 64, lr: float = 5e-4, warmup: int = 500, clip: float = 1.0,
                     seed: int = 0, progress: bool = True) -> dict:
    """The upper bound: the same model trained on sentence pairs, both directions at each step.

    ``parallel`` maps two languages to the two sides of a parallel corpus (line ``i`` translates line ``i``).
    """
    langs = list(parallel)
    if len(langs) != 2 or len(parallel[langs[0]]) != len(parallel[langs[1]]):
        raise ValueError("train_supervised needs two languages with the same number of sentences, line i of one "
                         "translating line i of the other.")
    device, n = model.device, len(parallel[langs[0]])
    g = torch.Generator().manual_seed(seed)
    opt, sched = _optimizer(model, lr, warmup)
    log: dict = {}
    started = time.perf_counter()

    def losses(g: torch.Generator) -> dict[str, torch.Tensor]:
        idx = torch.randint(n, (batch_size,), generator=g)
        terms = {}
        for l1, l2 in ((langs[0], langs[1]), (langs[1], langs[0])):
            x, x_len = _batch_of(parallel[l1], idx, device)
            y, y_len = _batch_of(parallel[l2], idx, device)
            terms[f"sup_{l1}_{l2}"] = model(x, x_len, y, y_len, l2)
        return terms

    _steps(model, opt, sched, losses, steps, g, clip, "supervised", progress, log)
    model.eval()
    log["seconds"] = time.perf_counter() - started
    return log
