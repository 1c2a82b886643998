"""Chapter 8: word2vec's skip-gram and CBOW, trained with negative sampling or a hierarchical softmax,
on whole batches of examples.

Mikolov, Chen, Corrado & Dean (2013), *Efficient estimation of word representations in vector space*
(skip-gram, CBOW, the hierarchical softmax over a Huffman tree, the analogy questions), and Mikolov,
Sutskever, Chen, Corrado & Dean (2013), *Distributed representations of words and phrases and their
compositionality* (negative sampling, subsampling of frequent words, the 3/4-power noise distribution).
The hierarchical softmax is Morin & Bengio (2005)'s, with Mnih & Hinton (2009)'s idea of a tree built
from the data; word2vec builds it by Huffman's (1952) rule.

Every word ``w`` of the vocabulary has an input vector ``v_w`` of dimension ``d`` (row ``w`` of ``W_in``,
the word vector we keep). Negative sampling gives every word an output vector ``u_w`` too (row ``w``
of ``W_out``); the hierarchical softmax gives one to each of the ``V - 1`` inner nodes of a binary tree
whose leaves are the words (row ``n`` of ``W_node``). The equations, numbered as in the book and lab:

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
* (8.9) CBOW, the continuous bag of words: the mean of the context vectors,
  ``h_t = (1 / |C_t|) sum_{j in C_t} v_{w_{t+j}}`` over the ``|C_t|`` words of the dynamic window
  ``C_t = {j : 0 < |j| <= b_t}``, predicts the centre word ``w_t``; with negative sampling,
  ``l(C_t, w_t) = -log sigma(u_{w_t} . h_t) - sum_k log sigma(-u_{n_k} . h_t)``, which is (8.2) with
  ``v_c`` replaced by ``h_t`` (and (8.7) with shared noise words). Skip-gram makes ``|C_t|`` examples
  of position ``t``, CBOW one.
* (8.10) CBOW's update: every context word moves by the whole step of ``h_t``,
  ``v_{w_{t+j}} <- v_{w_{t+j}} - eta dl/dh_t`` for each ``j`` in ``C_t``, as word2vec.c and gensim
  (``cbow_mean=1``) do: ``|C_t|`` times the gradient ``dl/dv_{w_{t+j}} = (1 / |C_t|) dl/dh_t``.
  The output vectors take their plain gradient (8.5), with ``h_t`` in place of ``v_c``.
* (8.11) the hierarchical softmax: the path from the root to word ``w`` passes ``L(w)`` inner nodes
  ``n(w, 1..L(w))`` and turns left or right at each, the bits ``d_j(w)`` of the word's code; with
  ``s_j = u_{n(w,j)} . h`` (``h = v_c`` for skip-gram, ``h_t`` for CBOW),
  ``log p(w | h) = sum_{j=1..L(w)} log sigma((1 - 2 d_j(w)) s_j)``. The two branches of a node have
  probabilities ``sigma(s)`` and ``sigma(-s)``, which add up to 1, so ``p(. | h)`` sums to 1 over the
  vocabulary. With the Huffman tree of the word counts, frequent words have short codes: a pair costs
  ``L(w)`` dot products, ``log2 V`` or fewer on average, where (8.2) costs ``K + 1``.
* (8.12) its gradients, for the loss ``l = -log p(w | h)``: ``dl/ds_j = sigma(s_j) - (1 - d_j)``,
  ``dl/dh = sum_j (sigma(s_j) - 1 + d_j) u_{n(w,j)}``, ``dl/du_{n(w,j)} = (sigma(s_j) - 1 + d_j) h``:
  (8.5)'s form, with the label ``1 - d_j`` in place of 1 (context) or 0 (noise).
* (8.13) the load of a row: a batch adds up the steps of all its examples that touch a row, where
  sequential SGD takes them one after the other, each seeing the previous. The root of the tree is on
  every path and a frequent word is in many CBOW windows of a batch, so their summed step can
  overshoot (training diverged, at CBOW's learning rate, with batches of 1,024). A row that ``m``
  examples of the batch update takes ``min(1, max_load / m)`` times the summed step (``max_load`` 64, the
  order of the 16 K = 80 examples a shared noise word carries in (8.7)): the same direction, at most
  ``max_load`` examples' length. Skip-gram's input and output vectors are not capped.

Written for a GPU: the corpus is one tensor of word ids; a chunk of it is subsampled (8.4), every
position draws its window (8.1), and the chunk becomes skip-gram's (center, context) pairs, or CBOW's
(context window, centre) examples, with one vectorised step per window offset. The examples are shuffled and consumed in batches (``train_chunk``);
each batch gathers the rows it needs, applies (8.5), (8.10) or (8.12) by hand (no autograd, no dense
gradient: only the rows of the batch are touched) and adds the updates back with ``index_add_``
(``SkipGram.sgd_step``, ``CBOW.sgd_step``). On a CPU, several threads share the matrices without locks
("Hogwild", Recht et al. 2011, as word2vec.c and gensim do; ``run_hogwild``).
"""

from __future__ import annotations

import heapq
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

from ..checks import CheckFailed
from ..runtime import cpu_threads
from ..train import progress
from ..wordvectors import WordVectors

__all__ = ["Vocabulary", "keep_probabilities", "noise_distribution", "sample_noise", "subsample", "dynamic_windows",
           "skipgram_pairs", "context_windows", "cbow_examples", "HuffmanTree", "sgns_loss", "context_mean", "hs_loss",
           "Word2Vec", "SkipGram", "CBOW", "Progress", "train_chunk", "run_hogwild", "ARCHITECTURES", "OBJECTIVES",
           "train_word2vec", "check_hs_log_prob"]


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
# Dynamic windows (8.1): skip-gram's pairs and CBOW's examples
# ----------------------------------------------------------------------------------------------


def subsample(ids: torch.Tensor, keep: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Keep each token of ``ids`` (N,) with probability ``keep[id]`` (eq. 8.4); the survivors, in order."""
    return ids[torch.rand(ids.shape, generator=generator, device=ids.device) < keep[ids]]


def dynamic_windows(ids: torch.Tensor, window: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """The window ``b_t`` of every position of the sequence ``ids`` (N,), eq. (8.1); (N,).

    Drawn uniformly from ``1..window``: position ``t`` sees the words at ``t +- 1, ..., t +- b_t``, so a
    word at distance ``j`` is seen with probability ``(window - j + 1) / window``.
    """
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"window must be a whole number >= 1 (word2vec uses 5), got {window!r}.")
    if ids.ndim != 1:
        raise ValueError(f"ids must be a 1-D sequence of word ids, got shape {tuple(ids.shape)}.")
    return torch.randint(1, window + 1, ids.shape, generator=generator, device=ids.device)


def skipgram_pairs(ids: torch.Tensor, window: int, generator: torch.Generator | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Every (center, context) pair of the sequence ``ids`` (N,) with dynamic windows, eq. (8.1).

    Position ``t`` draws ``b_t`` (:func:`dynamic_windows`, the first thing drawn from ``generator``) and
    pairs with the words at ``t +- 1, ..., t +- b_t``. Returns ``centers`` and ``contexts``, two (P,)
    tensors, grouped by offset: one vectorised step per offset ``j``.
    """
    b = dynamic_windows(ids, window, generator)          # b_t, (N,)
    centers, contexts = [ids[:0]], [ids[:0]]
    for j in range(1, min(window, len(ids) - 1) + 1):
        right = b[:-j] >= j                              # t sees t + j
        centers.append(ids[:-j][right])
        contexts.append(ids[j:][right])
        left = b[j:] >= j                                # t + j sees t
        centers.append(ids[j:][left])
        contexts.append(ids[:-j][left])
    return torch.cat(centers), torch.cat(contexts)       # (P,), (P,)


def context_windows(ids: torch.Tensor, window: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """The words around every position of the sequence ``ids`` (N,) with dynamic windows, eq. (8.1).

    The windows ``b_t`` are drawn as :func:`skipgram_pairs` draws them, and a row holds the words that
    position ``t`` would be paired with: ``contexts`` (N, 2 window), column ``window - j`` holding
    ``ids[t - j]`` and column ``window + j - 1`` holding ``ids[t + j]``, or -1 where ``j > b_t`` or the
    sequence ends; one vectorised step per offset ``j``.
    """
    b = dynamic_windows(ids, window, generator)          # b_t, (N,)
    slots = ids.new_full((2 * window, len(ids)), -1)     # (2 window, N): one contiguous row per offset
    for j in range(1, min(window, len(ids) - 1) + 1):
        slots[window + j - 1, :-j] = torch.where(b[:-j] >= j, ids[j:], -1)          # t sees t + j
        slots[window - j, j:] = torch.where(b[j:] >= j, ids[:-j], -1)               # t sees t - j
    return slots.T                                                                  # (N, 2 window)


def cbow_examples(ids: torch.Tensor, window: int, generator: torch.Generator | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """CBOW's examples of the sequence ``ids`` (N,): (the words of each window, its centre word), eq. (8.9).

    Returns ``contexts`` (P, 2 window), the rows of :func:`context_windows` (-1 where no word), and
    ``centers`` (P,), one example per position that sees at least one word (all of them when N >= 2).
    """
    contexts = context_windows(ids, window, generator)                  # (N, 2 window)
    has_context = (contexts >= 0).any(1)
    return contexts[has_context], ids[has_context]                      # (P, 2 window), (P,)


# ----------------------------------------------------------------------------------------------
# The Huffman tree of the hierarchical softmax (8.11)
# ----------------------------------------------------------------------------------------------


class HuffmanTree(nn.Module):
    """The binary tree of the hierarchical softmax: the ``V`` words are its leaves, ``V - 1`` inner nodes.

    Word ``w``'s path from the root passes the inner nodes ``points[w, :L(w)]`` (ids ``0..V-2``, the
    root is ``V - 2``) and takes the branches ``codes[w, :L(w)]`` (bits ``d_j(w)``: 0 is the branch of
    probability ``sigma(s_j)``, 1 the other), ``L(w) = lengths[w]``. ``codes`` and ``points`` are
    (V, L_max) int64, padded with 0; the tensors are buffers, so the tree follows its model's device.

    The ``shared_nodes`` inner nodes of highest id (:meth:`from_counts` numbers them by weight, so these
    are the heaviest, the top of the tree) lie on the paths of most words: a batch scores them all with
    one matrix product, as it does shared noise words (8.7). ``top_codes`` (V, shared_nodes) holds each
    word's bit at each of them (-1 off its path) and ``below_top`` (V, L_max) marks the rest of its path.
    """

    def __init__(self, codes: torch.Tensor, points: torch.Tensor, lengths: torch.Tensor, shared_nodes: int = 63):
        super().__init__()
        V = len(lengths)
        self.register_buffer("codes", codes)        # (V, L_max): d_j(w), root first
        self.register_buffer("points", points)      # (V, L_max): n(w, j), root first
        self.register_buffer("lengths", lengths)    # (V,): L(w)
        self.shared_nodes = T = min(shared_nodes, V - 1)
        on_path = torch.arange(codes.shape[1], device=codes.device) < lengths[:, None]     # (V, L_max)
        shared = on_path & (points >= V - 1 - T)                                           # on a shared node
        top_codes = torch.full((V, T), -1, dtype=torch.int8, device=codes.device)
        top_codes[shared.nonzero(as_tuple=True)[0], points[shared] - (V - 1 - T)] = codes[shared].to(torch.int8)
        self.register_buffer("top_codes", top_codes)          # (V, T): d_j(w) at shared node j, -1 off the path
        self.register_buffer("below_top", on_path & ~shared)  # (V, L_max): the rest of each path

    def __len__(self) -> int:
        return len(self.lengths)

    @classmethod
    def from_counts(cls, counts, shared_nodes: int = 63) -> "HuffmanTree":
        """Huffman's (1952) tree of the word ``counts`` (V,), as word2vec builds it.

        Start with one node per word, weighted by its count; merge the two lightest nodes into a new
        inner node, whose weight is their sum, until one node is left (the root). The lighter of the two
        gets bit 0, the heavier bit 1. Inner node ``i`` is the ``i``-th merge, so the ids grow with the
        weights and the root is ``V - 2``. A word's depth is about ``log2(1 / f(w))``: the code length
        averaged over the tokens lies between the entropy ``H`` of the word frequencies and ``H + 1``, and
        ``H <= log2 V``.
        """
        counts = _counts(counts)
        V = len(counts)
        if V < 2:
            raise ValueError(f"a Huffman tree needs at least 2 words, got {V}: give more text or a lower min_count.")
        parent, bit = [0] * (2 * V - 1), [0] * (2 * V - 1)   # node ids: words 0..V-1, inner nodes V..2V-2
        heap = [(float(c), node) for node, c in enumerate(counts.tolist())]   # (weight, node): ties by id
        heapq.heapify(heap)
        for inner in range(V, 2 * V - 1):
            (w0, a), (w1, b) = heapq.heappop(heap), heapq.heappop(heap)         # the two lightest
            parent[a] = parent[b] = inner
            bit[b] = 1
            heapq.heappush(heap, (w0 + w1, inner))
        parent, bit = torch.tensor(parent), torch.tensor(bit)
        # Walk up from every leaf at once, one level per step: the bits and inner nodes, leaf first.
        root, node = 2 * V - 2, torch.arange(V)
        depth = torch.zeros(V, dtype=torch.int64)                              # L(w), counted on the way up
        up_codes, up_points = [], []
        while (below := node != root).any():
            up_codes.append(torch.where(below, bit[node], 0))
            up_points.append(torch.where(below, parent[node] - V, 0))          # inner node ids 0..V-2
            depth += below
            node = torch.where(below, parent[node], node)
        up_codes, up_points = torch.stack(up_codes, 1), torch.stack(up_points, 1)    # (V, L_max), leaf first
        # root first: step j of word w is step L(w) - 1 - j of its upward walk
        j = torch.arange(up_codes.shape[1])
        step = (depth[:, None] - 1 - j).clamp(min=0)                                   # (V, L_max)
        on_path = j < depth[:, None]
        codes = torch.where(on_path, up_codes.gather(1, step), 0)
        points = torch.where(on_path, up_points.gather(1, step), 0)
        return cls(codes, points, depth, shared_nodes)

    def path_below_top(self, words: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The paths of ``words`` (B,) below the shared nodes, flattened: ``rows`` (N,) the position of
        the word in ``words``, ``nodes`` (N,) the inner nodes ``n(w, j)`` and ``bits`` (N,) the code bits
        ``d_j(w)``: a batch touches only the nodes on its words' paths."""
        below = self.below_top[words]                                                   # (B, L_max)
        return below.nonzero(as_tuple=True)[0], self.points[words][below], self.codes[words][below]

    def padded(self, words: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``points`` (B, L), ``codes`` (B, L) and the mask (B, L) of the paths of ``words`` (B,),
        ``L`` the longest of them: the form :func:`hs_loss` takes."""
        L = int(self.lengths[words].max()) if len(words) else 0
        mask = torch.arange(L, device=words.device) < self.lengths[words][:, None]
        return self.points[words, :L], self.codes[words, :L], mask


# ----------------------------------------------------------------------------------------------
# The losses (8.2), (8.9), (8.11)
# ----------------------------------------------------------------------------------------------


def sgns_loss(v_c: torch.Tensor, u_o: torch.Tensor, u_neg: torch.Tensor, noise_weight: float = 1.0) -> torch.Tensor:
    """The negative-sampling loss of each pair, eq. (8.2) (and (8.7) for shared noise words); (B,).

    ``v_c`` (B, d) center input vectors, ``u_o`` (B, d) context output vectors, ``u_neg`` the output
    vectors of the noise words: (B, K, d), K of them for each pair (the paper), or (K', d) shared by
    the whole batch. Each noise term is multiplied by ``noise_weight`` (K / K' for shared noise).
    For CBOW, ``v_c`` is the context mean ``h_t`` and ``u_o`` the centre word's output vector (8.9).
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


def context_mean(v_context: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """CBOW's hidden vector, eq. (8.9): ``h_t = (1/|C_t|) sum_{j in C_t} v_{w_{t+j}}``; (B, d).

    ``v_context`` (B, 2 window, d) the input vectors of the window's slots, ``mask`` (B, 2 window)
    True where a slot holds a word of ``C_t`` (the other slots are ignored, whatever they hold).
    """
    if v_context.ndim != 3 or mask.shape != v_context.shape[:2]:
        raise ValueError(f"v_context must be (B, 2 window, d) and mask (B, 2 window), got {tuple(v_context.shape)} "
                         f"and {tuple(mask.shape)}.")
    mask = mask.to(v_context.dtype)[:, :, None]                                      # (B, 2 window, 1)
    return (v_context * mask).sum(1) / mask.sum(1).clamp(min=1)                     # (B, d)


def hs_loss(h: torch.Tensor, u_path: torch.Tensor, codes: torch.Tensor, mask: torch.Tensor | None = None
            ) -> torch.Tensor:
    """``-log p(w | h)`` of the hierarchical softmax, eq. (8.11), for each example; (B,).

    ``h`` (B, d) the hidden vectors (``v_c`` for skip-gram, ``h_t`` for CBOW), ``u_path`` (B, L, d) the
    vectors of the inner nodes on the path to each target word ``w``, root first, ``codes`` (B, L) its
    bits ``d_j(w)``, ``mask`` (B, L) True on the path (paths shorter than L are padded).
    """
    if h.ndim != 2 or u_path.ndim != 3 or u_path.shape[0] != h.shape[0] or u_path.shape[2] != h.shape[1] \
            or codes.shape != u_path.shape[:2]:
        raise ValueError(f"expected h (B, d), u_path (B, L, d) and codes (B, L), got {tuple(h.shape)}, "
                         f"{tuple(u_path.shape)} and {tuple(codes.shape)}.")
    s = torch.einsum("bld,bd->bl", u_path, h)                   # (B, L): s_j = u_{n(w,j)} . h
    log_branch = F.logsigmoid((1 - 2 * codes).to(s.dtype) * s)  # (B, L): log sigma(+-s_j)
    if mask is not None:
        log_branch = log_branch * mask
    return -log_branch.sum(1)


# ----------------------------------------------------------------------------------------------
# The models: skip-gram and CBOW, each with negative sampling or the hierarchical softmax
# ----------------------------------------------------------------------------------------------


class Word2Vec(nn.Module):
    """What skip-gram and CBOW share: the input vectors ``W_in`` (V, d) and the output layer.

    The output layer predicts a target word from a hidden vector ``h``: with negative sampling (the
    default) it is the output vectors ``W_out`` (V, d) (8.2); given a :class:`HuffmanTree` ``tree`` it
    is the hierarchical softmax, the inner nodes' vectors ``W_node`` (V - 1, d) (8.11). Initialised as
    in word2vec.c: ``W_in`` uniform in [-0.5/d, 0.5/d], the output vectors zero. A subclass says how
    the input makes ``h`` (skip-gram: ``v_c``; CBOW: the context mean) and where ``h``'s step goes.
    ``max_load`` caps the examples whose steps a row of the hierarchical softmax, or a CBOW context
    word, adds up in one batch (8.13).
    """

    def __init__(self, vocab_size: int, dim: int = 100, generator: torch.Generator | None = None,
                 tree: HuffmanTree | None = None, max_load: int = 64):
        super().__init__()
        self.max_load = max_load                                      # (8.13)
        if vocab_size < 1 or dim < 1:
            raise ValueError(f"vocab_size and dim must be >= 1, got {vocab_size} and {dim}.")
        if tree is not None and len(tree) != vocab_size:
            raise ValueError(f"the Huffman tree has {len(tree)} words but the vocabulary {vocab_size}: build it "
                             "from the same counts, HuffmanTree.from_counts(vocab.counts).")
        self.W_in = nn.Embedding(vocab_size, dim, sparse=True)
        self.tree = tree
        if tree is None:
            self.W_out = nn.Embedding(vocab_size, dim, sparse=True)
        else:
            self.W_node = nn.Embedding(vocab_size - 1, dim, sparse=True)
        with torch.no_grad():
            self.W_in.weight.copy_((torch.rand(vocab_size, dim, generator=generator) - 0.5) / dim)
            (self.W_out if tree is None else self.W_node).weight.zero_()

    @property
    def objective(self) -> str:
        return "negative_sampling" if self.tree is None else "hierarchical_softmax"

    def loss(self, h: torch.Tensor, targets: torch.Tensor, negatives: torch.Tensor | None = None,
             noise_weight: float = 1.0) -> torch.Tensor:
        """The loss (B,) of predicting ``targets`` (B,) from ``h`` (B, d), for autograd: (8.2)/(8.7) with
        ``negatives`` (B, K) or shared (K',), or (8.11) with the tree (``negatives`` unused)."""
        if self.tree is None:
            if negatives is None:
                raise ValueError("negative sampling needs noise words: pass negatives, (B, K) or (K',).")
            return sgns_loss(h, self.W_out(targets), self.W_out(negatives), noise_weight)
        points, codes, mask = self.tree.padded(targets)
        return hs_loss(h, self.W_node(points), codes, mask)

    @torch.no_grad()
    def output_step(self, h: torch.Tensor, targets: torch.Tensor, negatives: torch.Tensor | None, lr: float,
                    noise_weight: float = 1.0, return_loss: bool = False) -> tuple[torch.Tensor, float | None]:
        """The SGD step (8.6) of the output layer for predicting ``targets`` (B,) from ``h`` (B, d).

        Updates the output rows of the batch in place and returns ``-lr dl/dh`` (B, d), the step of
        ``h`` for the input side to apply, and, with ``return_loss``, the batch's mean loss before the
        step. Negative sampling (8.5), (8.7): ``negatives`` (B, K) or shared (K',), a noise word that is
        the example's target skipped, as in word2vec.c. Hierarchical softmax (8.12), each node's step
        capped at ``max_load`` examples (8.13): ``negatives`` is None.
        """
        if self.tree is not None:
            return self._hierarchical_softmax_step(h, targets, lr, return_loss)
        W_out = self.W_out.weight
        if negatives.ndim == 2:                                   # per pair: K noise words each
            mask = negatives != targets[:, None]                  # (B, K): False where a noise word is the target
            B, K = negatives.shape
            rows = torch.cat([targets[:, None], negatives], 1).reshape(-1)           # (B (1 + K),)
            u = W_out.index_select(0, rows).view(B, K + 1, -1)   # (B, 1 + K, d): u_o, u_{n_1..K}
            s = (u * h[:, None, :]).sum(-1)                      # (B, 1 + K): s_o, s_k
            g = torch.sigmoid(s)                                 # dl/ds_k = sigma(s_k) ...
            g[:, 0] -= 1                                         # ... and dl/ds_o = sigma(s_o) - 1
            g[:, 1:] *= mask * noise_weight
            loss = self._ns_loss(s[:, 0], s[:, 1:], mask, noise_weight) if return_loss else None
            g *= -lr                                             # the SGD step (8.6), folded into g
            step_h = torch.bmm(g[:, None, :], u)[:, 0]           # (B, d) = -lr sum_k g_k u_k
            W_out.index_add_(0, rows, (g[:, :, None] * h[:, None, :]).view(len(rows), -1))
        else:                                                    # shared by the batch (8.7)
            collide = negatives[None, :] == targets[:, None]     # (B, K'): a noise word that is the target
            u_o = W_out.index_select(0, targets)                 # (B, d)
            u_n = W_out.index_select(0, negatives)               # (K', d)
            s_o = (u_o * h).sum(1)                               # (B,)
            s_n = h @ u_n.T                                      # (B, K')
            loss = self._ns_loss(s_o, s_n, ~collide, noise_weight) if return_loss else None
            # -lr dl/ds: -lr (sigma(s_o) - 1) = lr sigma(-s_o) for the target, -lr (K/K') sigma(s_k) for
            # the noise words (0 where one is the target); computed in place, one pass each (speed)
            g_o = torch.sigmoid(s_o.neg_()).mul_(lr)             # (B,)
            g_n = torch.sigmoid(s_n).mul_(-lr * noise_weight).masked_fill_(collide, 0.0)  # (B, K')
            step_h = torch.addmm(g_o[:, None] * u_o, g_n, u_n)   # (B, d)
            W_out.index_add_(0, targets, g_o[:, None] * h)       # (B, d)
            W_out.index_add_(0, negatives, g_n.T @ h)            # (K', d)
        return step_h, loss

    def _hierarchical_softmax_step(self, h, targets, lr, return_loss):
        """(8.12) on the nodes of the targets' paths only, in two parts: the tree's shared top, which lies on
        the paths of most examples, with matrix products (as (8.7) does its shared noise words), then the
        rest of each path node by node."""
        tree, W_node = self.tree, self.W_node.weight
        # the top: every example against the T shared nodes, kept where a node is on the example's path
        W_top = W_node[len(W_node) - tree.shared_nodes:]            # (T, d), a view of W_node's last rows
        top_bits = tree.top_codes[targets]                          # (B, T): d_j, -1 off the path
        on_path = top_bits >= 0
        s_top = h @ W_top.T                                         # (B, T): s_j = u_n . h
        label_top = 1 - top_bits.to(h.dtype)                        # 1 - d_j: the branch to take has label 1
        # the rest of each path, one row per (example, node)
        rows, nodes, bits = tree.path_below_top(targets)            # (N,) each: example, inner node n(w, j), d_j(w)
        u = W_node.index_select(0, nodes)                           # (N, d)
        h_rows = h.index_select(0, rows)                            # (N, d)
        s = (u * h_rows).sum(1)                                     # (N,): s_j = u_{n(w,j)} . h
        label = 1 - bits.to(h.dtype)
        loss = None
        if return_loss:                                             # -log p(w | h), (8.11)
            per_example = -(F.logsigmoid((2 * label_top - 1) * s_top) * on_path).sum(1)
            per_example.index_add_(0, rows, -F.logsigmoid((2 * label - 1) * s))
            loss = per_example.mean().item()
        # -lr dl/ds_j = -lr (sigma(s_j) - 1 + d_j), 0 off the path
        g_top = torch.sigmoid(s_top).sub_(label_top).mul_(on_path).mul_(-lr)   # (B, T)
        g = torch.sigmoid(s).sub_(label).mul_(-lr)                             # (N,)
        step_h = torch.addmm(torch.zeros_like(h).index_add_(0, rows, g[:, None] * u), g_top, W_top)   # (B, d)
        # the nodes' steps, each node's capped at max_load examples (8.13): the root is on every path
        W_top.add_((g_top.T @ h).mul_(self._load_factor(on_path.sum(0))[:, None]))            # (T, d)
        g *= self._load_factor(torch.bincount(nodes, minlength=len(W_node)))[nodes]
        W_node.index_add_(0, nodes, g[:, None] * h_rows)                                       # (N, d)
        return step_h, loss

    def _load_factor(self, load: torch.Tensor) -> torch.Tensor:
        """min(1, max_load / m) for rows that m examples of the batch update, eq. (8.13)."""
        return (self.max_load / load.clamp(min=1)).clamp_(max=1.0)

    @staticmethod
    def _ns_loss(s_o, s_n, mask, noise_weight) -> float:
        return (-F.logsigmoid(s_o) - noise_weight * (F.logsigmoid(-s_n) * mask).sum(1)).mean().item()


class SkipGram(Word2Vec):
    """Skip-gram (8.1): each word ``c`` predicts each word ``o`` of its window, from ``h = v_c``.

    Its examples are (center, context) pairs (:func:`skipgram_pairs`). ``forward`` gives the loss for
    autograd; :meth:`sgd_step` applies the update (8.5)-(8.7) or (8.12) by hand.
    """

    examples = staticmethod(skipgram_pairs)

    def forward(self, centers: torch.Tensor, contexts: torch.Tensor, negatives: torch.Tensor | None = None,
                noise_weight: float = 1.0) -> torch.Tensor:
        """Per-pair loss (B,) of (8.2) (``negatives`` (B, K) per pair or (K',) shared) or (8.11)."""
        return self.loss(self.W_in(centers), contexts, negatives, noise_weight)

    @torch.no_grad()
    def sgd_step(self, centers: torch.Tensor, contexts: torch.Tensor, negatives: torch.Tensor | None, lr: float,
                 noise_weight: float = 1.0, return_loss: bool = False) -> float | None:
        """One SGD step on a batch of pairs, ``centers`` and ``contexts`` (B,), touching only their rows.

        ``negatives`` (B, K) or shared (K',) for negative sampling, None for the hierarchical softmax
        (:meth:`Word2Vec.output_step`). With ``return_loss`` it returns the batch's mean loss before the
        step (computed from the same scores).
        """
        W_in = self.W_in.weight
        v = W_in.index_select(0, centers)                                                 # (B, d): h = v_c
        step_v, loss = self.output_step(v, contexts, negatives, lr, noise_weight, return_loss)
        W_in.index_add_(0, centers, step_v)
        return loss


class CBOW(Word2Vec):
    """CBOW (8.9): the mean ``h_t`` of the vectors of a window's words predicts its centre word ``w_t``.

    Its examples are (context window, centre) pairs (:func:`cbow_examples`): ``contexts`` (B, 2 window)
    with -1 in the empty slots. ``forward`` gives the loss for autograd; :meth:`sgd_step` applies the
    output layer's update and gives each context word the whole step of ``h_t`` (8.10).
    """

    examples = staticmethod(cbow_examples)

    def forward(self, contexts: torch.Tensor, centers: torch.Tensor, negatives: torch.Tensor | None = None,
                noise_weight: float = 1.0) -> torch.Tensor:
        """Per-example loss (B,) of (8.9) with negative sampling, or (8.11) with the tree."""
        h = context_mean(self.W_in(contexts.clamp(min=0)), contexts >= 0)                # (B, d)
        return self.loss(h, centers, negatives, noise_weight)

    @torch.no_grad()
    def sgd_step(self, contexts: torch.Tensor, centers: torch.Tensor, negatives: torch.Tensor | None, lr: float,
                 noise_weight: float = 1.0, return_loss: bool = False) -> float | None:
        """One SGD step on a batch of windows, ``contexts`` (B, 2 window) and ``centers`` (B,).

        The context words are gathered once, flattened (only the filled slots): ``h_t`` (8.9), the output
        layer's step (:meth:`Word2Vec.output_step`), then ``-lr dl/dh_t`` added to every context word's
        row (8.10), capped at ``max_load`` windows of the batch per word (8.13). ``negatives`` and
        ``return_loss`` as in :meth:`SkipGram.sgd_step`.
        """
        W_in = self.W_in.weight
        filled = contexts >= 0                                                            # (B, 2 window)
        rows, words = filled.nonzero(as_tuple=True)[0], contexts[filled]                 # (M,), (M,)
        size = filled.sum(1, keepdim=True).to(W_in.dtype)                                 # (B, 1): |C_t|
        h = torch.zeros(len(centers), W_in.shape[1], dtype=W_in.dtype, device=W_in.device)
        h.index_add_(0, rows, W_in.index_select(0, words)).div_(size)                    # (B, d): h_t (8.9)
        step_h, loss = self.output_step(h, centers, negatives, lr, noise_weight, return_loss)
        load = self._load_factor(torch.bincount(words, minlength=len(W_in)))[words]       # (M,): (8.13)
        W_in.index_add_(0, words, step_h.index_select(0, rows).mul_(load[:, None]))       # (8.10)
        return loss


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
    pairs: int = 0                    # training examples: (center, context) pairs, or CBOW's windows
    curve: list[tuple[float, float]] = field(default_factory=list)  # (epochs done, mean loss of 4 sampled batches)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def chunk_finished(self, words: int, pairs: int, losses: list[float]) -> None:
        """Count a finished chunk of ``words`` and ``pairs`` (examples); its last (fewer than 4) losses make a point."""
        with self.lock:
            self.words_done += words
            self.pairs += pairs
            if losses:
                self.curve.append((self.words_done / self.corpus_words, sum(losses) / len(losses)))
            if self.bar is not None:
                self.bar.update(round(words * self.raw_words / self.corpus_words))


def train_chunk(model: Word2Vec, chunk: torch.Tensor, tally: Progress, *, keep: torch.Tensor,
                cdf: torch.Tensor | None, window: int, negatives: int, shared_negatives: int | None, lr: float,
                batch_size: int, generator: torch.Generator | None = None) -> None:
    """Train ``model`` on one ``chunk`` (N,) of word ids: eqs. (8.4), (8.1), then its SGD steps batch by batch.

    1. subsample the chunk, keeping each word with probability ``keep[w]`` (8.4);
    2. turn the survivors into the model's examples with dynamic windows (8.1): (center, context) pairs
       for :class:`SkipGram`, (context window, centre) for :class:`CBOW` (``model.examples``);
    3. shuffle the examples, so that a batch mixes the whole chunk;
    4. one SGD step per batch of ``batch_size`` examples (``model.sgd_step``). With negative sampling,
       noise words are drawn from the cumulative distribution ``cdf`` (8.3): ``shared_negatives`` K'
       shared by the batch, each weighted K / K' (8.7), or ``negatives`` K per example (8.2) when
       ``shared_negatives`` is None; the hierarchical softmax (``cdf=None``) draws none. The learning
       rate falls linearly with the words done, eta = lr * max(1e-4, 1 - done / total) (8.6), where
       ``done`` counts ``tally.words_done`` and the share of this chunk already consumed.

    Random numbers are drawn from ``generator`` in this order: the subsampling, the windows b_t, the
    shuffle, then each batch's noise words. One loss in 16 batches is measured and every 4 of them make
    a point of ``tally.curve``; the chunk's words and examples are added to ``tally`` at the end.
    """
    inputs, targets = model.examples(subsample(chunk, keep, generator), window, generator)  # (P,) or (P, 2 window); (P,)
    order = torch.randperm(len(targets), generator=generator, device=chunk.device)
    inputs, targets = inputs[order], targets[order]
    noise_weight = negatives / shared_negatives if shared_negatives else 1.0                # K / K' (8.7)
    losses = []
    for i, b in enumerate(range(0, len(targets), batch_size)):
        done = tally.words_done + len(chunk) * b / max(len(targets), 1)   # words, this chunk's share too
        eta = lr * max(1e-4, 1.0 - done / tally.total_words)                             # (8.6)
        x, y = inputs[b:b + batch_size], targets[b:b + batch_size]                           # (B, ...), (B,)
        shape = (shared_negatives,) if shared_negatives else (len(y), negatives)             # (K',) or (B, K)
        noise = None if cdf is None else sample_noise(cdf, shape, generator)
        loss = model.sgd_step(x, y, noise, eta, noise_weight, return_loss=i % 16 == 0)
        if loss is not None:
            losses.append(loss)
        if len(losses) == 4:                               # a point of the loss curve every 64 batches
            tally.curve.append((done / tally.corpus_words, sum(losses) / len(losses)))
            losses = []
    tally.chunk_finished(len(chunk), len(targets), losses)


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


ARCHITECTURES = {"skipgram": SkipGram, "cbow": CBOW}
OBJECTIVES = ("negative_sampling", "hierarchical_softmax")


def train_word2vec(tokens, *, vocab: Vocabulary | None = None, architecture: str = "skipgram",
                   objective: str = "negative_sampling", dim: int = 100, window: int = 5, negatives: int = 5,
                   shared_negatives: int | str | None = "auto", epochs: int = 5, sample: float = 1e-3,
                   min_count: int = 5, max_vocab: int | None = None, lr: float | None = None,
                   batch_size: int | None = None, chunk_size: int | None = None, threads: int | None = None,
                   device=None, seed: int = 0, progress_bar: bool = True) -> WordVectors:
    """Train word2vec on ``tokens`` and return the word vectors ``W_in``.

    ``architecture``: ``"skipgram"`` (8.1, a word predicts each word around it) or ``"cbow"`` (8.9, the
    mean of the words around predicts the word). ``objective``: ``"negative_sampling"`` (8.2, 8.7) or
    ``"hierarchical_softmax"`` (8.11, over the Huffman tree of the word counts).
    ``tokens``: a list of words in corpus order (e.g. ``ul.data.corpus_tokens("text8")``), or a 1-D
    tensor of ids with their ``vocab``. Words seen fewer than ``min_count`` times are dropped (the
    ``max_vocab`` most frequent are kept). Settings are word2vec's: ``dim`` d, ``window`` (the largest
    b_t), ``negatives`` K, ``sample`` t, ``lr`` eta_0 (default word2vec.c's: 0.025 for skip-gram, 0.05
    for CBOW), ``epochs`` passes. ``shared_negatives`` K' noise words are shared by each batch (8.7);
    ``"auto"`` takes ``batch_size // 16``, so that each noise word carries the weight of B K / K' = 16 K
    examples whatever the batch size (a larger load makes the summed update of a noise word too big);
    ``None`` draws K for every example (8.2). The hierarchical softmax draws no noise words.
    ``batch_size`` examples per step (default 1,024 on a CPU, 16,384 on a GPU), ``chunk_size`` tokens
    turned into examples at a time, ``threads`` CPU workers (default: all cores; always one on a GPU).

    Returns a :class:`~unsuplab.wordvectors.WordVectors` (words most frequent first, so
    ``wv.words[:30000]`` are the 30,000 most frequent) whose ``stats`` hold the training time,
    ``words_per_second`` (raw corpus words x epochs / training seconds), the examples trained on
    (``pairs``) and the loss curve.
    """
    if architecture not in ARCHITECTURES:
        raise ValueError(f"architecture must be one of {', '.join(map(repr, ARCHITECTURES))}, got {architecture!r}.")
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {', '.join(map(repr, OBJECTIVES))}, got {objective!r}.")
    for name, value, low in (("dim", dim, 1), ("negatives", negatives, 1), ("epochs", epochs, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be a whole number >= {low}, got {value!r}.")
    if shared_negatives is not None and shared_negatives != "auto" and (
            isinstance(shared_negatives, bool) or not isinstance(shared_negatives, int) or shared_negatives < 1):
        raise ValueError(f"shared_negatives must be 'auto', None (K noise words per pair) or a whole number "
                         f">= 1, got {shared_negatives!r}.")
    lr = lr if lr is not None else (0.05 if architecture == "cbow" else 0.025)
    if not lr > 0:
        raise ValueError(f"lr must be > 0 (word2vec uses 0.025 for skip-gram, 0.05 for CBOW), got {lr}.")
    device = torch.device(device) if device is not None else torch.device("cpu")
    on_gpu = device.type != "cpu"
    batch_size = batch_size or (16_384 if on_gpu else 1_024)
    chunk_size = chunk_size or (1_000_000 if on_gpu else 100_000)
    threads = 1 if on_gpu else max(1, threads or torch.get_num_threads())
    hierarchical = objective == "hierarchical_softmax"
    if hierarchical:
        negatives, shared_negatives = 0, None
    elif shared_negatives == "auto":
        shared_negatives = max(negatives, batch_size // 16)

    t_start = time.perf_counter()
    ids, vocab, n_raw = _as_ids(tokens, vocab, min_count, max_vocab)
    if len(ids) < 2:
        raise ValueError("fewer than 2 tokens are in the vocabulary: give more text or a lower min_count.")
    ids = ids.to(device)
    keep = keep_probabilities(vocab.counts, sample).to(device)                 # (V,)
    if hierarchical:
        tree, cdf = HuffmanTree.from_counts(vocab.counts), None
    else:
        tree, cdf = None, noise_distribution(vocab.counts).double().cumsum(0).float().to(device)  # (V,)
    model = ARCHITECTURES[architecture](len(vocab), dim, torch.Generator().manual_seed(seed), tree=tree).to(device)

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
        "settings": dict(architecture=architecture, objective=objective, dim=dim, window=window,
                         negatives=negatives, shared_negatives=shared_negatives, epochs=epochs, sample=sample,
                         min_count=min_count, lr=lr, batch_size=batch_size, chunk_size=chunk_size),
    }
    return wv


# ----------------------------------------------------------------------------------------------
# The lab's self-check
# ----------------------------------------------------------------------------------------------


def check_hs_log_prob(hs_log_prob: Callable, seed: int = 0) -> None:
    """Self-check for the lab's ``hs_log_prob(h, W_node, points, codes)``: ``log p(w | h)`` of one word by
    (8.11), from ``h`` (d,), the inner nodes' vectors ``W_node`` (V - 1, d) and the word's path, ``points``
    (L,) and ``codes`` (L,), root first.

    On three small Huffman trees and random vectors (float64), first the property any correct answer has:
    ``exp(hs_log_prob)`` sums to 1 over the vocabulary; then the values, against :func:`hs_loss`'s (whose
    convention, word2vec.c's, gives bit 0 the branch of probability ``sigma(s_j)``). Prints a ✓ line, or
    raises ``unsuplab.checks.CheckFailed`` naming the likely mistake.
    """
    g = torch.Generator().manual_seed(seed)
    trees = [HuffmanTree.from_counts(c) for c in
             ([5, 3], [10, 6, 3, 2, 1, 1], torch.randint(1, 200, (40,), generator=g))]

    def reference(h, W_node, points, codes):
        return -hs_loss(h[None], W_node[points][None], codes[None])[0]

    mistakes = [  # (a likely wrong answer, what to say)
        (lambda h, W, p, c: -reference(h, W, p, c),
         "your values are -log p(w | h), the loss: return the log-probability itself (it is at most 0)."),
        (lambda h, W, p, c: reference(h, W, p, c).exp(),
         "you returned the probability p(w | h): return its logarithm."),
        (lambda h, W, p, c: F.logsigmoid(W[p] @ h).sum(),
         "every branch is scored log sigma(s_j): the branch of bit d_j has probability sigma((1 - 2 d_j) s_j), so "
         "that the two branches of a node add up to 1."),
        (lambda h, W, p, c: reference(h, W, p, 1 - c),
         "your probabilities sum to 1, but with the other convention: bit 0 takes the branch of probability "
         "sigma(s_j) = sigma(u_n . h), bit 1 that of sigma(-s_j), as word2vec.c and hs_loss do."),
    ]

    def call(fn, h, W_node, w, tree):
        L = int(tree.lengths[w])
        return fn(h.clone(), W_node.clone(), tree.points[w, :L].clone(), tree.codes[w, :L].clone())

    def diagnose(words_of) -> str:
        for wrong, hint in mistakes:
            try:
                if all(abs(float(mine) - float(wrong_value)) < 1e-6 for mine, wrong_value in words_of(wrong)):
                    return hint
            except Exception:  # noqa: BLE001 - a mistake that does not even fit is simply not this one
                continue
        return ("log p(w | h) = sum over the path of log sigma((1 - 2 d_j) s_j), with s_j = W_node[points[j]] . h "
                "and d_j = codes[j]; use F.logsigmoid.")

    checked = 0
    for tree in trees:
        V = len(tree)
        for scale in (0.5, 3.0):
            h = torch.randn(5, generator=g, dtype=torch.float64) * scale
            W_node = torch.randn(V - 1, 5, generator=g, dtype=torch.float64)
            values = []
            for w in range(V):
                try:
                    out = call(hs_log_prob, h, W_node, w, tree)
                except NotImplementedError:
                    raise
                except Exception as err:
                    raise CheckFailed(f"✗ hs_log_prob raised {type(err).__name__}: {err} (word {w} of a {V}-word tree, "
                                      f"path of {int(tree.lengths[w])} nodes).") from err
                out = torch.as_tensor(out)
                if out.numel() != 1:
                    raise CheckFailed(f"✗ hs_log_prob must return one number, log p(w | h) of the word, got shape "
                                      f"{tuple(out.shape)}: sum over the path.")
                values.append(float(out))

            def words_of(fn):
                return [(values[w], float(call(fn, h, W_node, w, tree))) for w in range(V)]

            total = math.fsum(math.exp(v) for v in values)
            if not abs(total - 1) < 1e-6:
                raise CheckFailed(f"✗ exp(hs_log_prob) sums to {total:.6g} over the {V} words of a Huffman tree, not 1. "
                                  + diagnose(words_of))
            expected = [float(call(reference, h, W_node, w, tree)) for w in range(V)]
            for w, (mine, right) in enumerate(zip(values, expected)):
                if not abs(mine - right) < 1e-6:
                    raise CheckFailed(f"✗ hs_log_prob of word {w} (code {tree.codes[w, :int(tree.lengths[w])].tolist()}) "
                                      f"of a {V}-word tree is {mine:.6f}, expected {right:.6f}. " + diagnose(words_of))
            checked += V
    print(f"✓ hs_log_prob gives eq. (8.11) on {checked} words of {len(trees)} Huffman trees, and its probabilities "
          "sum to 1 over each vocabulary (to within 1e-6).")
