"""Word vectors and how to measure them: cosine neighbours, analogies, similarity rankings.

Any embedding fits: word2vec's (chapter 8), gensim's, or the aligned vectors of chapter 9.

* :class:`WordVectors`: words (most frequent first) and a (V, d) matrix, with ``most_similar`` and
  ``analogy``; :func:`cosine_similarity` and :func:`nearest_neighbours` work on bare matrices.
* :func:`analogy_accuracy`: Mikolov et al. (2013)'s questions "a is to b as c is to d", answered by
  the word closest to ``b - a + c`` (unit vectors, "3CosAdd"; Levy & Goldberg 2014), the three question
  words excluded, searched among the ``restrict_vocab`` most frequent words (30,000 by convention,
  as gensim and the original ``compute-accuracy`` do); semantic and syntactic sections separately.
* :func:`similarity_spearman`: Spearman's rank correlation between cosine similarities and human
  scores on a word-similarity set (WordSim-353, Finkelstein et al. 2002; SimLex-999, Hill et al. 2015;
  MEN, Bruni et al. 2014).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .data import word_analogies, word_similarity
from .train import load_checkpoint, save_checkpoint

__all__ = ["WordVectors", "cosine_similarity", "nearest_neighbours", "is_semantic", "analogy_accuracy", "spearman",
           "similarity_spearman", "SIMILARITY_SETS", "evaluate", "plot_pairs"]


class WordVectors:
    """``words`` (V,) and their ``vectors`` (V, d), optionally ``counts`` (V,); words most frequent first.

    ``wv["king"]`` is a vector, ``"king" in wv`` a test, ``wv.most_similar("king")`` the neighbours,
    ``wv.analogy("man", "king", "woman")`` the answer to man : king :: woman : ?.
    """

    def __init__(self, words: Sequence[str], vectors, counts=None):
        vectors = torch.as_tensor(vectors)
        if vectors.ndim != 2 or len(words) != len(vectors):
            raise ValueError(f"expected one vector per word: {len(words)} words and vectors of shape "
                             f"{tuple(vectors.shape)}; vectors must be (V, d).")
        self.words = list(words)
        self.vectors = vectors.float()
        self.counts = None if counts is None else torch.as_tensor(counts)
        self.index = {w: i for i, w in enumerate(self.words)}
        if len(self.index) != len(self.words):
            raise ValueError("a word appears twice in words: each word must have exactly one vector.")
        self.stats: dict = {}

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: str) -> bool:
        return word in self.index

    def __getitem__(self, word: str) -> torch.Tensor:
        return self.vectors[self.id(word)]

    def __repr__(self) -> str:
        return f"WordVectors({len(self)} words, dim {self.dim}, {self.vectors.device})"

    @property
    def dim(self) -> int:
        return self.vectors.shape[1]

    def id(self, word: str) -> int:
        """The row of ``word``, or a KeyError that says the word is not in the vocabulary."""
        try:
            return self.index[word]
        except KeyError:
            raise KeyError(f"{word!r} is not in the vocabulary of {len(self)} words (too rare, or spelled "
                           "differently: the vocabulary is lower-case)") from None

    def unit(self) -> torch.Tensor:
        """The vectors scaled to length 1 (V, d), so that a dot product is a cosine."""
        return F.normalize(self.vectors, dim=1)

    def to(self, device) -> "WordVectors":
        moved = WordVectors(self.words, self.vectors.to(device), self.counts)
        moved.stats = self.stats
        return moved

    def most_similar(self, query, k: int = 10, restrict: int | None = None,
                     exclude: Iterable[str] = ()) -> list[tuple[str, float]]:
        """The ``k`` words with the highest cosine to ``query`` (a word, excluded itself, or a vector),
        among the ``restrict`` most frequent words (all by default)."""
        exclude = set(exclude)
        if isinstance(query, str):
            exclude.add(query)
            query = self[query]
        unit = self.unit()[:restrict]
        scores = unit @ F.normalize(torch.as_tensor(query, dtype=unit.dtype, device=unit.device), dim=0)
        for word in exclude:
            if word in self.index and self.index[word] < len(unit):
                scores[self.index[word]] = -float("inf")
        top = scores.topk(min(k, len(unit)))
        return [(self.words[i], float(s)) for s, i in zip(top.values.tolist(), top.indices.tolist())]

    def analogy(self, a: str, b: str, c: str, k: int = 1, restrict: int | None = None) -> list[tuple[str, float]]:
        """``a : b :: c : ?``, answered by the words closest to ``b - a + c`` (unit vectors), a, b, c
        excluded: ``analogy("man", "king", "woman")`` asks for king - man + woman."""
        unit = self.unit()
        target = unit[self.id(b)] - unit[self.id(a)] + unit[self.id(c)]
        return self.most_similar(target, k, restrict, exclude=(a, b, c))

    def save(self, path: str | Path) -> Path:
        """Save words, vectors and counts to one file (tensors and plain values only, written by
        :func:`unsuplab.train.save_checkpoint`); read it back with :meth:`load`."""
        return save_checkpoint(path, words=list(self.words), vectors=self.vectors.cpu(), counts=self.counts,
                               stats={k: v for k, v in self.stats.items() if k != "loss_curve"})

    @classmethod
    def load(cls, path: str | Path, device=None) -> "WordVectors":
        """Read a file written by :meth:`save`. Like every checkpoint of the course it is read with
        ``weights_only=True``: a file that holds pickled objects (which would run code) is refused."""
        state = load_checkpoint(path, map_location=device or "cpu")
        wv = cls(state["words"], state["vectors"], state["counts"])
        wv.stats = state.get("stats", {})
        return wv


# ----------------------------------------------------------------------------------------------
# Cosine neighbours on bare matrices
# ----------------------------------------------------------------------------------------------


def cosine_similarity(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """All cosines between the rows of ``a`` (n, d) and of ``b`` (m, d): (n, m)."""
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"expected (n, d) and (m, d) matrices, got {tuple(a.shape)} and {tuple(b.shape)}.")
    return F.normalize(a.float(), dim=1) @ F.normalize(b.float(), dim=1).T


def nearest_neighbours(queries: torch.Tensor, keys: torch.Tensor, k: int = 10, batch_size: int = 4096
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` rows of ``keys`` (m, d) with the highest cosine to each row of ``queries`` (n, d).

    Returns ``(cosines, indices)``, both (n, k), best first; computed ``batch_size`` queries at a
    time, so that 30,000 x 200,000 never needs to fit in memory.
    """
    if k < 1 or k > len(keys):
        raise ValueError(f"k must be between 1 and the number of keys ({len(keys)}), got {k}.")
    keys_unit = F.normalize(keys.float(), dim=1)
    values, indices = [], []
    for start in range(0, len(queries), batch_size):
        scores = F.normalize(queries[start:start + batch_size].float(), dim=1) @ keys_unit.T
        top = scores.topk(k, dim=1)
        values.append(top.values)
        indices.append(top.indices)
    if not values:
        return keys.new_zeros((0, k)), torch.zeros((0, k), dtype=torch.int64, device=keys.device)
    return torch.cat(values), torch.cat(indices)


# ----------------------------------------------------------------------------------------------
# Analogies and similarity rankings
# ----------------------------------------------------------------------------------------------


def is_semantic(section: str) -> bool:
    """Mikolov et al.'s split: the ``gram*`` sections are syntactic, the other five are semantic."""
    return not section.startswith("gram")


def analogy_accuracy(wv: WordVectors, questions: Mapping[str, Sequence[tuple[str, str, str, str]]] | None = None,
                     restrict_vocab: int = 30_000, lower: bool = True, batch_size: int = 1024,
                     details: bool = False) -> dict:
    """Accuracy on analogy questions ``a : b :: c : d`` (default: questions-words, 19,544 questions).

    A question counts only if its four words are among the ``restrict_vocab`` most frequent words
    (the first rows of ``wv``); it is right when ``d`` is the word closest to ``b - a + c`` among those
    words, ``a``, ``b``, ``c`` excluded. Words are lower-cased first (``lower``). Returns accuracy
    over the covered questions (``accuracy``, ``semantic``, ``syntactic``), ``coverage`` (covered /
    all), the counts, and ``sections``: {name: (correct, covered)}. With ``details`` it also returns
    ``answers``: (section, (a, b, c, d), the model's answer) for every covered question.
    """
    if questions is None:
        questions = word_analogies("questions-words")
    n = min(restrict_vocab, len(wv))
    unit = wv.unit()[:n]                                                   # (n, d)
    index = {w: i for i, w in enumerate(wv.words[:n])}
    sections, rows, kinds = {}, [], []
    total = 0
    for name, items in questions.items():
        covered = []
        for question in items:
            words = [w.lower() for w in question] if lower else list(question)
            if all(w in index for w in words):
                covered.append([index[w] for w in words])
        total += len(items)
        sections[name] = [0, len(covered)]
        rows += covered
        kinds += [name] * len(covered)
    correct_by = torch.zeros(len(rows), dtype=torch.bool)
    predicted = torch.zeros(len(rows), dtype=torch.int64)
    if rows:
        q = torch.tensor(rows, device=unit.device)                          # (Q, 4): a, b, c, d
        for start in range(0, len(q), batch_size):
            qq = q[start:start + batch_size]
            target = unit[qq[:, 1]] - unit[qq[:, 0]] + unit[qq[:, 2]]       # b - a + c, (q, d)
            scores = target @ unit.T                                        # (q, n)
            scores.scatter_(1, qq[:, :3], -float("inf"))                    # the question words are no answer
            predicted[start:start + batch_size] = scores.argmax(1).cpu()
        correct_by = predicted == q[:, 3].cpu()
    for name, ok in zip(kinds, correct_by.tolist()):
        sections[name][0] += ok
    def rate(pick) -> float:
        right = sum(c for s, (c, n_) in sections.items() if pick(s))
        asked = sum(n_ for s, (c, n_) in sections.items() if pick(s))
        return right / asked if asked else 0.0
    result = {
        "accuracy": rate(lambda s: True), "semantic": rate(is_semantic),
        "syntactic": rate(lambda s: not is_semantic(s)),
        "coverage": len(rows) / total if total else 0.0, "n_covered": len(rows), "n_questions": total,
        "sections": {s: tuple(v) for s, v in sections.items()}, "restrict_vocab": n,
    }
    if details:
        words = wv.words
        result["answers"] = [(name, tuple(words[i] for i in row), words[guess])
                             for name, row, guess in zip(kinds, rows, predicted.tolist())]
    return result


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n, tied values sharing the mean of their ranks: [10, 20, 20, 5] -> [2, 3.5, 3.5, 1]."""
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(1, len(values) + 1)
    _, groups, sizes = np.unique(values, return_inverse=True, return_counts=True)
    sums = np.bincount(groups, weights=ranks)
    return (sums / sizes)[groups]


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation: the Pearson correlation of the (tie-averaged) ranks of x and y."""
    rx, ry = _average_ranks(np.asarray(x, dtype=float)), _average_ranks(np.asarray(y, dtype=float))
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denominator = np.sqrt((rx ** 2).sum() * (ry ** 2).sum())
    return float((rx * ry).sum() / denominator) if denominator > 0 else float("nan")


def similarity_spearman(wv: WordVectors, pairs: Sequence[tuple[str, str, float]], lower: bool = True) -> dict:
    """Spearman's rho between cosine similarities and the human scores of ``pairs`` (word, word, score).

    Pairs with a word outside the vocabulary are left out (``coverage`` says how many were scored).
    """
    model, human = [], []
    unit = wv.unit()
    for first, second, score in pairs:
        if lower:
            first, second = first.lower(), second.lower()
        if first in wv.index and second in wv.index:
            model.append(float(unit[wv.index[first]] @ unit[wv.index[second]]))
            human.append(float(score))
    rho = spearman(model, human) if len(model) >= 3 else float("nan")
    return {"spearman": rho, "n_covered": len(model), "n_pairs": len(pairs),
            "coverage": len(model) / len(pairs) if len(pairs) else 0.0}


SIMILARITY_SETS = {"WordSim-353": "EN-WS-353-ALL", "SimLex-999": "EN-SIMLEX-999", "MEN": "EN-MEN-TR-3k"}


def evaluate(wv: WordVectors, restrict_vocab: int = 30_000) -> dict:
    """The chapter's benchmark numbers: analogy accuracy (total, semantic, syntactic, coverage) and the
    Spearman correlation on WordSim-353, SimLex-999 and MEN (with their coverage), as one flat dict."""
    analogy = analogy_accuracy(wv, restrict_vocab=restrict_vocab)
    out = {"analogy_acc": analogy["accuracy"], "analogy_semantic_acc": analogy["semantic"],
           "analogy_syntactic_acc": analogy["syntactic"], "analogy_coverage": analogy["coverage"]}
    for short, name in SIMILARITY_SETS.items():
        result = similarity_spearman(wv, word_similarity(name))
        key = short.lower().replace("-", "")
        out[f"{key}_spearman"] = result["spearman"]
        out[f"{key}_coverage"] = result["coverage"]
    return out


# ----------------------------------------------------------------------------------------------
# A picture: word pairs projected to 2-D
# ----------------------------------------------------------------------------------------------


def plot_pairs(wv: WordVectors, pairs: Sequence[tuple[str, str]], *, title: str | None = None, ax=None,
               color: str = "tab:blue"):
    """Project the words of ``pairs`` to 2-D with PCA (fitted on those words only) and draw an arrow
    from the first word of each pair to the second: parallel arrows mean a shared offset in the
    vectors (country -> capital, male -> female). Pairs with an unknown word are skipped."""
    import matplotlib.pyplot as plt

    pairs = [(a, b) for a, b in pairs if a in wv and b in wv]
    if len(pairs) < 2:
        raise ValueError("fewer than two pairs have both words in the vocabulary: choose commoner words.")
    words = [w for pair in pairs for w in pair]
    v = wv.unit()[[wv.index[w] for w in words]].cpu().double()      # (2P, D)
    v = v - v.mean(0)                                                # PCA, chapter 1: centre, then the top
    z = (v @ torch.linalg.svd(v, full_matrices=False).Vh[:2].T).numpy()   # two right singular vectors: (2P, 2)
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 5))
    for i, (a, b) in enumerate(pairs):
        (x0, y0), (x1, y1) = z[2 * i], z[2 * i + 1]
        ax.annotate("", xy=(x1, y1), xytext=(x0, y0),
                    arrowprops=dict(arrowstyle="->", color=color, alpha=0.6, lw=1.2))
        ax.scatter([x0, x1], [y0, y1], s=12, color=["0.3", color])
        ax.text(x0, y0, a, fontsize=9, ha="right", va="bottom", color="0.2")
        ax.text(x1, y1, b, fontsize=9, ha="left", va="bottom", color=color)
    ax.set_xlabel("principal component 1")
    ax.set_ylabel("principal component 2")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title)
    return ax
