"""Chapter 8: word2vec's skip-gram with negative sampling (SGNS), trained on whole batches of pairs.

Mikolov, Chen, Corrado & Dean (2013), *Efficient estimation of word representations in vector space*
(skip-gram, the analogy questions), and Mikolov, Sutskever, Chen, Corrado & Dean (2013),
*Distributed representations of words and phrases and their compositionality* (negative sampling,
subsampling of frequent words, the 3/4-power noise distribution).

Every word ``w`` of the vocabulary has two vectors of dimension ``d``: an input vector ``v_w`` (row ``w``
of ``W_in``, the word vector we keep) and an output vector ``u_w`` (row ``w`` of ``W_out``). The
equations, numbered as in the book:

* (8.1) skip-gram: maximise the average log-probability of the words around each position ``t``,
  ``(1/T) sum_t sum_{0<|j|<=b_t} log p(w_{t+j} | w_t)``, with a window ``b_t`` drawn uniformly
  from ``1..window`` at every position (the *dynamic window*: near words are counted more often).
* (8.2) negative sampling: for one (center ``c``, context ``o``) pair and ``K`` noise words
  ``n_1..n_K ~ P_n``, the loss is
  ``l(c, o) = -log sigma(u_o . v_c) - sum_k log sigma(-u_{n_k} . v_c)``.
* (8.3) the noise distribution: ``P_n(w) = count(w)^(3/4) / sum_w' count(w')^(3/4)``.
* (8.4) subsampling: every occurrence of ``w`` is kept with probability
  ``P_keep(w) = min(1, sqrt(t / f(w)) + t / f(w))``, ``f(w) = count(w) / sum_w' count(w')``.
  The paper writes the discard probability as ``1 - sqrt(t / f(w))``; its released code, and
  gensim, add the ``t / f(w)`` term. We follow the code so that the comparison with gensim is
  like for like.
* (8.5) the gradients, with ``s_o = u_o . v_c`` and ``s_k = u_{n_k} . v_c``:
  ``dl/dv_c = (sigma(s_o) - 1) u_o + sum_k sigma(s_k) u_{n_k}``,
  ``dl/du_o = (sigma(s_o) - 1) v_c``, ``dl/du_{n_k} = sigma(s_k) v_c``.
* (8.6) plain SGD, ``W <- W - eta dl/dW``, with ``eta`` falling linearly from ``eta_0`` to
  ``eta_0 * 1e-4`` over training.
* (8.7) shared negatives: the ``B`` pairs of a batch share ``K'`` noise words, each weighted ``K / K'``:
  ``l(c, o) = -log sigma(u_o . v_c) - (K / K') sum_{k=1..K'} log sigma(-u_{n_k} . v_c)``.
  Its expectation over the noise is that of (8.2), but the ``B x K`` separate dot products become
  one ``(B, d) @ (d, K')`` matrix product and only ``2 B + K'`` rows are read and written
  instead of ``(2 + K) B``. Ji et al. (2016) share negatives within a window for the same reason.
  ``shared_negatives=None`` trains with the paper's per-pair noise words instead.

Written for a GPU: the corpus is one tensor of word ids; a chunk of it is subsampled (8.4) and turned
into all its (center, context) pairs (8.1) with one vectorised step per window offset; the pairs are
shuffled and consumed in batches (``train_chunk``); each batch gathers the rows it needs, applies
(8.5) by hand (no autograd, no dense gradient: only the rows of the batch are touched) and adds the
updates back with ``index_add_`` (``SkipGram.sgd_step``). On a CPU, several threads share the two
matrices without locks ("Hogwild", Recht et al. 2011, as word2vec.c and gensim do; ``run_hogwild``).
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..runtime import cpu_threads
from ..train import progress
from ..wordvectors import WordVectors

__all__ = ["Vocabulary", "keep_probabilities", "noise_distribution", "sample_noise", "subsample", "skipgram_pairs",
           "sgns_loss", "SkipGram", "Progress", "train_chunk", "run_hogwild", "train_word2vec"]


# ----------------------------------------------------------------------------------------------
# The vocabulary, subsampling (8.4) and the noise distribution (8.3)
# ----------------------------------------------------------------------------------------------


@dataclass
class Vocabulary:
    """Words sorted by decreasing count (ties alphabetically), with their counts in the corpus.

    ``words[i]`` has id ``i``, so the first 30,000 ids are the 30,000 most frequent words.
    """

    words: list[str]
    counts: torch.Tensor  # (V,) int64
    index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self):
        self.counts = torch.as_tensor(self.counts, dtype=torch.int64)
        if len(self.words) != len(self.counts):
            raise ValueError(f"{len(self.words)} words but {len(self.counts)} counts: give one count per word.")
        self.index = {w: i for i, w in enumerate(self.words)}
        if len(self.index) != len(self.words):
            raise ValueError("the vocabulary lists a word twice: words must be unique.")

    @classmethod
    def from_tokens(cls, tokens: Iterable[str], min_count: int = 5, max_size: int | None = None) -> "Vocabulary":
        """Count ``tokens`` and keep the words seen at least ``min_count`` times (at most ``max_size``)."""
        if isinstance(tokens, str):
            raise TypeError("tokens is one string: split it into words first, e.g. ul.data.tokenize(text).")
        if min_count < 1:
            raise ValueError(f"min_count must be at least 1, got {min_count}.")
        counted = sorted(((w, n) for w, n in Counter(tokens).items() if n >= min_count),
                         key=lambda item: (-item[1], item[0]))
        if max_size is not None:
            counted = counted[:max_size]
        if not counted:
            raise ValueError(f"no word occurs {min_count} times or more: give more text or a lower min_count.")
        return cls([w for w, _ in counted], torch.tensor([n for _, n in counted], dtype=torch.int64))

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, tokens: Sequence[str]) -> torch.Tensor:
        """The ids of ``tokens`` (int64, 1-D), words outside the vocabulary dropped, as word2vec.c does."""
        ids = np.fromiter(map(self.index.get, tokens, itertools.repeat(-1)), dtype=np.int64, count=len(tokens))
        return torch.from_numpy(ids[ids >= 0])


def _counts(counts) -> torch.Tensor:
    counts = torch.as_tensor(counts)
    if counts.ndim != 1 or len(counts) == 0 or (counts < 0).any():
        raise ValueError(f"counts must be a non-empty 1-D tensor of counts >= 0, got shape {tuple(counts.shape)}.")
    return counts.double()


def keep_probabilities(counts, sample: float = 1e-3) -> torch.Tensor:
    """P_keep(w) = min(1, sqrt(t/f(w)) + t/f(w)), eq. (8.4), with t = ``sample``; (V,) float32.

    ``sample=0`` keeps every word. Frequent words (f >> t) are kept with probability about
    sqrt(t/f); words with f <= t are always kept.
    """
    counts = _counts(counts)
    if sample < 0:
        raise ValueError(f"sample (the threshold t) must be >= 0, got {sample}; word2vec uses 1e-3 to 1e-5.")
    if sample == 0:
        return torch.ones(len(counts))
    ratio = sample / (counts / counts.sum())  # t / f(w); a word never seen gets inf and is kept
    return (ratio.sqrt() + ratio).clamp(max=1.0).float()


def noise_distribution(counts, power: float = 0.75) -> torch.Tensor:
    """P_n(w) = count(w)^power / sum count^power, eq. (8.3) with power 3/4; (V,) float32 summing to 1."""
    weights = _counts(counts) ** power
    return (weights / weights.sum()).float()


def sample_noise(cdf: torch.Tensor, shape, generator: torch.Generator | None = None) -> torch.Tensor:
    """Noise word ids of ``shape`` drawn from P_n given as its cumulative sum ``cdf`` (V,).

    Inverse-CDF sampling: a uniform number r falls in word w's slice [cdf[w-1], cdf[w]). word2vec.c
    does the same with a table of 10^8 ids in which word w fills a share P_n(w) of the entries.
    """
    r = torch.rand(shape, generator=generator, device=cdf.device) * cdf[-1]
    return torch.searchsorted(cdf, r, right=True).clamp_(max=len(cdf) - 1)


# ----------------------------------------------------------------------------------------------
# Pairs with dynamic windows (8.1)
# ----------------------------------------------------------------------------------------------


def subsample(ids: torch.Tensor, keep: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Keep each token of ``ids`` (N,) with probability ``keep[id]`` (eq. 8.4); the survivors, in order."""
    return ids[torch.rand(ids.shape, generator=generator, device=ids.device) < keep[ids]]


def skipgram_pairs(ids: torch.Tensor, window: int, generator: torch.Generator | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Every (center, context) pair of the sequence ``ids`` (N,) with dynamic windows, eq. (8.1).

    Position ``t`` draws ``b_t`` uniformly from ``1..window`` (the first thing drawn from
    ``generator``) and pairs with the words at ``t +- 1, ..., t +- b_t``. Returns ``centers`` and
    ``contexts``, two (P,) tensors, grouped by offset: one vectorised step per offset ``j``.
    """
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"window must be a whole number >= 1 (word2vec uses 5), got {window!r}.")
    if ids.ndim != 1:
        raise ValueError(f"ids must be a 1-D sequence of word ids, got shape {tuple(ids.shape)}.")
    b = torch.randint(1, window + 1, ids.shape, generator=generator, device=ids.device)  # b_t, (N,)
    centers, contexts = [ids[:0]], [ids[:0]]
    for j in range(1, min(window, len(ids) - 1) + 1):
        right = b[:-j] >= j                              # t sees t + j
        centers.append(ids[:-j][right])
        contexts.append(ids[j:][right])
        left = b[j:] >= j                                # t + j sees t
        centers.append(ids[j:][left])
        contexts.append(ids[:-j][left])
    return torch.cat(centers), torch.cat(contexts)       # (P,), (P,)


# ----------------------------------------------------------------------------------------------
# The loss (8.2) and the model
# ----------------------------------------------------------------------------------------------


def sgns_loss(v_c: torch.Tensor, u_o: torch.Tensor, u_neg: torch.Tensor, noise_weight: float = 1.0) -> torch.Tensor:
    """The negative-sampling loss of each pair, eq. (8.2) (and (8.7) for shared noise words); (B,).

    ``v_c`` (B, d) center input vectors, ``u_o`` (B, d) context output vectors, ``u_neg`` the output
    vectors of the noise words: (B, K, d), K of them for each pair (the paper), or (K', d) shared by
    the whole batch. Each noise term is multiplied by ``noise_weight`` (K / K' for shared noise).
    """
    if v_c.ndim != 2 or u_o.shape != v_c.shape:
        raise ValueError(f"v_c and u_o must both be (B, d), got {tuple(v_c.shape)} and {tuple(u_o.shape)}.")
    if u_neg.ndim == 3 and u_neg.shape[0] == v_c.shape[0] and u_neg.shape[2] == v_c.shape[1]:
        s_neg = torch.einsum("bkd,bd->bk", u_neg, v_c)          # (B, K)
    elif u_neg.ndim == 2 and u_neg.shape[1] == v_c.shape[1]:
        s_neg = v_c @ u_neg.T                                    # (B, K')
    else:
        raise ValueError(f"u_neg must be (B, K, d) = ({v_c.shape[0]}, K, {v_c.shape[1]}) or (K', d) = "
                         f"(K', {v_c.shape[1]}), got {tuple(u_neg.shape)}.")
    s_o = (u_o * v_c).sum(1)                                     # (B,)
    return -F.logsigmoid(s_o) - noise_weight * F.logsigmoid(-s_neg).sum(1)


class SkipGram(nn.Module):
    """Input vectors ``W_in`` (V, d) and output vectors ``W_out`` (V, d) of skip-gram.

    Initialised as in word2vec.c: ``W_in`` uniform in [-0.5/d, 0.5/d], ``W_out`` zero. ``forward``
    gives the loss (8.2) for autograd; :meth:`sgd_step` applies the update (8.5)-(8.6) by hand.
    """

    def __init__(self, vocab_size: int, dim: int = 100, generator: torch.Generator | None = None):
        super().__init__()
        if vocab_size < 1 or dim < 1:
            raise ValueError(f"vocab_size and dim must be >= 1, got {vocab_size} and {dim}.")
        self.W_in = nn.Embedding(vocab_size, dim, sparse=True)
        self.W_out = nn.Embedding(vocab_size, dim, sparse=True)
        with torch.no_grad():
            self.W_in.weight.copy_((torch.rand(vocab_size, dim, generator=generator) - 0.5) / dim)
            self.W_out.weight.zero_()

    def forward(self, centers: torch.Tensor, contexts: torch.Tensor, negatives: torch.Tensor,
                noise_weight: float = 1.0) -> torch.Tensor:
        """Per-pair loss (B,) of (8.2): ``negatives`` is (B, K) per pair or (K',) shared by the batch."""
        return sgns_loss(self.W_in(centers), self.W_out(contexts), self.W_out(negatives), noise_weight)

    @torch.no_grad()
    def sgd_step(self, centers: torch.Tensor, contexts: torch.Tensor, negatives: torch.Tensor, lr: float,
                 noise_weight: float = 1.0, return_loss: bool = False) -> float | None:
        """One SGD step on a batch, eq. (8.5)-(8.6), touching only the rows of the batch.

        ``centers`` and ``contexts`` (B,); ``negatives`` (B, K) or shared (K',). A noise word that is
        the pair's own context is skipped, as in word2vec.c. With ``return_loss`` it returns the
        batch's mean loss before the step (computed from the same scores).
        """
        W_in, W_out = self.W_in.weight, self.W_out.weight
        v = W_in.index_select(0, centers)                         # (B, d)
        if negatives.ndim == 2:                                   # per pair: K noise words each
            mask = negatives != contexts[:, None]                 # (B, K): False where a noise word is the context
            B, K = negatives.shape
            rows = torch.cat([contexts[:, None], negatives], 1).reshape(-1)          # (B (1 + K),)
            u = W_out.index_select(0, rows).view(B, K + 1, -1)   # (B, 1 + K, d): u_o, u_{n_1..K}
            s = (u * v[:, None, :]).sum(-1)                      # (B, 1 + K): s_o, s_k
            g = torch.sigmoid(s)                                 # dl/ds_k = sigma(s_k) ...
            g[:, 0] -= 1                                         # ... and dl/ds_o = sigma(s_o) - 1
            g[:, 1:] *= mask * noise_weight
            loss = self._loss(s[:, 0], s[:, 1:], mask, noise_weight) if return_loss else None
            g *= -lr                                             # the SGD step (8.6), folded into g
            grad_v = torch.bmm(g[:, None, :], u)[:, 0]           # (B, d) = sum_k g_k u_k
            W_in.index_add_(0, centers, grad_v)
            W_out.index_add_(0, rows, (g[:, :, None] * v[:, None, :]).view(len(rows), -1))
        else:                                                    # shared by the batch (8.7)
            collide = negatives[None, :] == contexts[:, None]    # (B, K'): a noise word that is the context
            u_o = W_out.index_select(0, contexts)                # (B, d)
            u_n = W_out.index_select(0, negatives)               # (K', d)
            s_o = (u_o * v).sum(1)                               # (B,)
            s_n = v @ u_n.T                                      # (B, K')
            loss = self._loss(s_o, s_n, ~collide, noise_weight) if return_loss else None
            # -lr dl/ds: -lr (sigma(s_o) - 1) = lr sigma(-s_o) for the context, -lr (K/K') sigma(s_k) for
            # the noise words (0 where one is the context); computed in place, one pass each (speed)
            g_o = torch.sigmoid(s_o.neg_()).mul_(lr)             # (B,)
            g_n = torch.sigmoid(s_n).mul_(-lr * noise_weight).masked_fill_(collide, 0.0)  # (B, K')
            W_in.index_add_(0, centers, torch.addmm(g_o[:, None] * u_o, g_n, u_n))   # (B, d)
            W_out.index_add_(0, contexts, g_o[:, None] * v)                           # (B, d)
            W_out.index_add_(0, negatives, g_n.T @ v)                                  # (K', d)
        return loss

    @staticmethod
    def _loss(s_o, s_n, mask, noise_weight) -> float:
        return (-F.logsigmoid(s_o) - noise_weight * (F.logsigmoid(-s_n) * mask).sum(1)).mean().item()


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------


def _as_ids(tokens, vocab: Vocabulary | None, min_count: int, max_vocab: int | None
            ) -> tuple[torch.Tensor, Vocabulary, int]:
    """(ids of the tokens in the vocabulary, the vocabulary, the number of raw tokens)."""
    if isinstance(tokens, str):
        raise TypeError("tokens is one string: pass a list of words, e.g. ul.data.corpus_tokens('text8').")
    if isinstance(tokens, (torch.Tensor, np.ndarray)):
        if vocab is None:
            raise ValueError("tokens are word ids: pass the Vocabulary they index as vocab=.")
        ids = torch.as_tensor(tokens, dtype=torch.int64).reshape(-1)
        if len(ids) and (ids.min() < 0 or ids.max() >= len(vocab)):
            raise ValueError(f"word ids must lie in [0, {len(vocab)}), got [{ids.min()}, {ids.max()}].")
        return ids, vocab, len(ids)
    tokens = tokens if isinstance(tokens, list) else list(tokens)
    if not tokens:
        raise ValueError("tokens is empty: give a list of words, e.g. ul.data.corpus_tokens('text8').")
    if not isinstance(tokens[0], str):
        raise TypeError(f"tokens must be words (str) or a tensor of ids, got a list of {type(tokens[0]).__name__}.")
    vocab = Vocabulary.from_tokens(tokens, min_count, max_vocab) if vocab is None else vocab
    return vocab.encode(tokens), vocab, len(tokens)


@dataclass
class Progress:
    """What the workers have done so far, shared by all of them (and updated under ``lock``).

    ``words_done`` counts the corpus words (ids in the vocabulary) of the finished chunks; the
    learning rate (8.6) reads it, so a worker's rate also falls with the chunks the others finish.
    """

    corpus_words: int                 # len(ids): words of the corpus in the vocabulary
    total_words: int                  # epochs * corpus_words: the words of the whole training
    raw_words: int = 0                # the corpus before dropping rare words (what the progress bar counts)
    bar: object | None = None         # a tqdm bar, or None
    words_done: int = 0
    pairs: int = 0
    curve: list[tuple[float, float]] = field(default_factory=list)  # (epochs done, mean loss of 4 sampled batches)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def chunk_finished(self, words: int, pairs: int, losses: list[float]) -> None:
        """Count a finished chunk of ``words`` and ``pairs``; its last (fewer than 4) losses make a point."""
        with self.lock:
            self.words_done += words
            self.pairs += pairs
            if losses:
                self.curve.append((self.words_done / self.corpus_words, sum(losses) / len(losses)))
            if self.bar is not None:
                self.bar.update(round(words * self.raw_words / self.corpus_words))


def train_chunk(model: SkipGram, chunk: torch.Tensor, tally: Progress, *, keep: torch.Tensor,
                cdf: torch.Tensor, window: int, negatives: int, shared_negatives: int | None, lr: float,
                batch_size: int, generator: torch.Generator | None = None) -> None:
    """Train ``model`` on one ``chunk`` (N,) of word ids: eqs. (8.4), (8.1), then (8.5)-(8.7) batch by batch.

    1. subsample the chunk, keeping each word with probability ``keep[w]`` (8.4);
    2. turn the survivors into all their (center, context) pairs with dynamic windows (8.1);
    3. shuffle the pairs, so that a batch mixes the whole chunk;
    4. one SGD step (8.5)-(8.6) per batch of ``batch_size`` pairs, with noise words drawn from the
       cumulative distribution ``cdf`` (8.3): ``shared_negatives`` K' shared by the batch, each weighted
       K / K' (8.7), or ``negatives`` K per pair (8.2) when ``shared_negatives`` is None. The learning rate
       falls linearly with the words done, eta = lr * max(1e-4, 1 - done / total) (8.6), where ``done``
       counts ``tally.words_done`` and the share of this chunk already consumed.

    Random numbers are drawn from ``generator`` in this order: the subsampling, the windows b_t, the
    shuffle, then each batch's noise words. One loss in 16 batches is measured and every 4 of them make
    a point of ``tally.curve``; the chunk's words and pairs are added to ``tally`` at the end.
    """
    centers, contexts = skipgram_pairs(subsample(chunk, keep, generator), window, generator)   # (P,), (P,)
    order = torch.randperm(len(centers), generator=generator, device=chunk.device)
    centers, contexts = centers[order], contexts[order]                                      # (P,), (P,)
    noise_weight = negatives / shared_negatives if shared_negatives else 1.0                # K / K' (8.7)
    losses = []
    for i, b in enumerate(range(0, len(centers), batch_size)):
        done = tally.words_done + len(chunk) * b / max(len(centers), 1)   # words, this chunk's share too
        eta = lr * max(1e-4, 1.0 - done / tally.total_words)                             # (8.6)
        c, o = centers[b:b + batch_size], contexts[b:b + batch_size]                         # (B,), (B,)
        shape = (shared_negatives,) if shared_negatives else (len(c), negatives)             # (K',) or (B, K)
        loss = model.sgd_step(c, o, sample_noise(cdf, shape, generator), eta, noise_weight,
                              return_loss=i % 16 == 0)
        if loss is not None:
            losses.append(loss)
        if len(losses) == 4:                               # a point of the loss curve every 64 batches
            tally.curve.append((done / tally.corpus_words, sum(losses) / len(losses)))
            losses = []
    tally.chunk_finished(len(chunk), len(centers), losses)


def run_hogwild(jobs: Sequence, worker: Callable[[int, Callable[[], object]], None], threads: int | None) -> None:
    """Run ``worker(w, next_job)`` for ``w`` in ``range(threads)``, each on its own thread, sharing ``jobs``.

    ``next_job()`` hands out the jobs in order, one at a time, and ``None`` once they are all taken or
    a worker has failed. The workers share the model without locks (Hogwild, Recht et al. 2011).
    Torch runs on one thread per worker meanwhile (the batches are too small for torch's own threads
    to pay, and they stall badly on a busy machine; the workers run in parallel because torch frees
    the GIL); the thread count is restored afterwards. The first exception raised by a worker stops
    the others at their next job and is raised here. ``threads=None`` runs one worker (``w = 0``)
    in the calling thread, as on a GPU, whose kernels already run in parallel.
    """
    pending = iter(jobs)
    lock = threading.Lock()
    failed = threading.Event()
    errors: list[BaseException] = []

    def next_job():
        if failed.is_set():
            return None
        with lock:
            return next(pending, None)

    def run(w: int) -> None:
        try:
            worker(w, next_job)
        except BaseException as error:  # noqa: BLE001 - raised again in the calling thread
            errors.append(error)
            failed.set()

    if threads is None:
        run(0)
    else:
        with cpu_threads(1):
            workers = [threading.Thread(target=run, args=(w,), daemon=True) for w in range(threads)]
            for thread in workers:
                thread.start()
            for thread in workers:
                thread.join()
    if errors:
        raise errors[0]


def train_word2vec(tokens, *, vocab: Vocabulary | None = None, dim: int = 100, window: int = 5,
                   negatives: int = 5, shared_negatives: int | str | None = "auto", epochs: int = 5,
                   sample: float = 1e-3, min_count: int = 5, max_vocab: int | None = None, lr: float = 0.025,
                   batch_size: int | None = None, chunk_size: int | None = None, threads: int | None = None,
                   device=None, seed: int = 0, progress_bar: bool = True) -> WordVectors:
    """Train skip-gram with negative sampling on ``tokens`` and return the word vectors ``W_in``.

    ``tokens``: a list of words in corpus order (e.g. ``ul.data.corpus_tokens("text8")``), or a 1-D
    tensor of ids with their ``vocab``. Words seen fewer than ``min_count`` times are dropped (the
    ``max_vocab`` most frequent are kept). Settings are word2vec's: ``dim`` d, ``window`` (the largest
    b_t), ``negatives`` K, ``sample`` t, ``lr`` eta_0, ``epochs`` passes. ``shared_negatives`` K' noise
    words are shared by each batch (8.7); ``"auto"`` takes ``batch_size // 16``, so that each noise
    word carries the weight of B K / K' = 16 K pairs whatever the batch size (a larger load makes
    the summed update of a noise word too big); ``None`` draws K for every pair (8.2).
    ``batch_size`` pairs per step (default 1,024 on a CPU, 16,384 on a GPU), ``chunk_size`` tokens
    turned into pairs at a time, ``threads`` CPU workers (default: all cores; always one on a GPU).

    Returns a :class:`~unsuplab.wordvectors.WordVectors` (words most frequent first, so
    ``wv.words[:30000]`` are the 30,000 most frequent) whose ``stats`` hold the training time,
    ``words_per_second`` (raw corpus words x epochs / training seconds) and the loss curve.
    """
    for name, value, low in (("dim", dim, 1), ("negatives", negatives, 1), ("epochs", epochs, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be a whole number >= {low}, got {value!r}.")
    if shared_negatives is not None and shared_negatives != "auto" and (
            isinstance(shared_negatives, bool) or not isinstance(shared_negatives, int) or shared_negatives < 1):
        raise ValueError(f"shared_negatives must be 'auto', None (K noise words per pair) or a whole number "
                         f">= 1, got {shared_negatives!r}.")
    if not lr > 0:
        raise ValueError(f"lr must be > 0 (word2vec uses 0.025 for skip-gram), got {lr}.")
    device = torch.device(device) if device is not None else torch.device("cpu")
    on_gpu = device.type != "cpu"
    batch_size = batch_size or (16_384 if on_gpu else 1_024)
    chunk_size = chunk_size or (1_000_000 if on_gpu else 100_000)
    threads = 1 if on_gpu else max(1, threads or torch.get_num_threads())
    if shared_negatives == "auto":
        shared_negatives = max(negatives, batch_size // 16)

    t_start = time.perf_counter()
    ids, vocab, n_raw = _as_ids(tokens, vocab, min_count, max_vocab)
    if len(ids) < 2:
        raise ValueError("fewer than 2 tokens are in the vocabulary: give more text or a lower min_count.")
    ids = ids.to(device)
    keep = keep_probabilities(vocab.counts, sample).to(device)                 # (V,)
    cdf = noise_distribution(vocab.counts).double().cumsum(0).float().to(device)  # (V,)
    model = SkipGram(len(vocab), dim, torch.Generator().manual_seed(seed)).to(device)

    # Jobs are (epoch, chunk start); workers take them in order and share the matrices (Hogwild).
    jobs = [(epoch, start) for epoch in range(epochs) for start in range(0, len(ids), chunk_size)]
    bar = progress(total=epochs * n_raw, unit="word", unit_scale=True, desc="word2vec") if progress_bar else None
    tally = Progress(corpus_words=len(ids), total_words=epochs * len(ids), raw_words=n_raw, bar=bar)

    def worker(w: int, next_job) -> None:  # its own random numbers: one worker is reproducible
        g = torch.Generator(device=device).manual_seed(seed * 1_000_003 + w)
        while (job := next_job()) is not None:
            _, start = job
            train_chunk(model, ids[start:start + chunk_size], tally, keep=keep, cdf=cdf, window=window,
                        negatives=negatives, shared_negatives=shared_negatives, lr=lr, batch_size=batch_size,
                        generator=g)

    t_train = time.perf_counter()
    run_hogwild(jobs, worker, threads=None if on_gpu else threads)
    if device.type == "cuda":
        torch.cuda.synchronize(device)  # the GPU may still be working through the last batches
    seconds = time.perf_counter() - t_train
    if bar is not None:
        bar.close()
    curve = sorted(tally.curve)
    weights = model.W_in.weight.detach()
    if not torch.isfinite(weights).all():
        raise FloatingPointError("the word vectors contain NaN or inf: the learning rate is too high for this "
                                 "batch size; lower lr or batch_size.")
    wv = WordVectors(vocab.words, weights, vocab.counts)
    wv.stats = {
        "train_seconds": seconds, "total_seconds": time.perf_counter() - t_start,
        "words_per_second": epochs * n_raw / seconds, "raw_words": n_raw, "epochs": epochs,
        "pairs": tally.pairs, "vocab_size": len(vocab), "threads": threads, "device": str(device),
        "loss_curve": curve,
        "settings": dict(dim=dim, window=window, negatives=negatives, shared_negatives=shared_negatives,
                         epochs=epochs, sample=sample, min_count=min_count, lr=lr, batch_size=batch_size,
                         chunk_size=chunk_size),
    }
    return wv
