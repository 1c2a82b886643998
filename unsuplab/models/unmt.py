"""Chapter 9, part 2: unsupervised machine translation of sentences, without a single parallel pair.

Papers:

* Lample, Conneau, Denoyer & Ranzato (2018), "Unsupervised machine translation using monolingual
  corpora only": one encoder and one decoder shared by two languages, trained by denoising
  auto-encoding and iterative back-translation (Sennrich, Haddow & Birch 2016), started from a
  word-by-word translation, with round-trip BLEU for model selection.
* Papineni, Roukos, Ward & Zhu (2002), BLEU; Post (2018), sacreBLEU, for comparable scores: both in
  :mod:`unsuplab.metrics` (eq. 9.12).

Part 1, words, is :mod:`unsuplab.models.word_translation`.

Equations, numbered as in ``book/09_unsupervised_translation.md``:

* (9.8) Noise model ``C(x)``: drop each word with probability ``p_wd``, then shuffle locally with the
  permutation ``sigma`` that sorts ``q_i = i + U(0, alpha)``, so that ``|sigma(i) - i| <= k`` for
  ``alpha = k + 1``.
* (9.9) Denoising: ``L_auto(l) = E_{x ~ D_l} [ -log p(x | e(C(x), l), l) ]``, decoder told language ``l``.
* (9.10) Back-translation: with the previous model ``M``, ``L_bt(l1 -> l2) = E_{y ~ D_l2}
  [ -log p(y | e(C(M(y)), l1), l2) ]``: translate ``y`` into ``l1`` (no gradient), learn to bring it back.
* (9.11) The objective of one iteration: ``L_auto(en) + L_auto(fr) + L_bt(en -> fr) + L_bt(fr -> en)``.

Use::

    wbw = WordByWord(vocab, {("en", "fr"): best_translations(pairs, counts_fr), ...})   # M^(0)
    model = Seq2Seq(vocab)                                   # shared encoder/decoder, all languages
    init_embeddings_from_dictionary(model, wbw, "en", "fr")  # a word starts where its translation does
    history = train_unmt(model, mono, wbw, iterations=3, steps=2000)   # history.epochs: one row per round

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

from ..metrics import corpus_bleu
from ..train import (History, autocast, backward_and_step, check_finite, eval_mode, grad_scaler, run_steps,
                     warmup_schedule)

__all__ = [
    "tokenize_sentence", "detokenize", "MTVocab", "pad", "monolingual_halves", "word_drop", "local_shuffle",
    "add_noise", "Seq2Seq", "WordByWord", "best_translations", "init_embeddings_from_dictionary",
    "init_embeddings_from_vectors",
    "denoising_loss", "back_translation_loss", "translate_ids", "translate_sentences", "round_trip_bleu",
    "BackTranslations", "train_unmt", "train_supervised",
]


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


def init_embeddings_from_vectors(model: Seq2Seq, vectors: dict[str, tuple[Sequence[str], torch.Tensor]],
                                 seed: int = 0) -> int:
    """Start each word's embedding at its cross-lingual word vector, as Lample et al. do.

    ``vectors[lang] = (words, V)``, the rows of ``V`` (n, d) in **one** space shared by the languages
    (e.g. ``X W^T`` for English and ``Y`` for French after word translation), ``d <= d_model``. A fixed
    random matrix ``P`` (d_model, d) with orthonormal columns puts them in the model's space: ``P v``
    keeps every cosine, so a word and its translation begin as neighbours, and every similarity the
    vectors learned is kept (a dictionary keeps only each word's best translation). Rows are scaled to
    the mean length of the model's embeddings, so the model's scale is unchanged; words without a
    vector keep their random start. Returns how many rows were set.
    """
    E = model.embed.weight                                              # (V, d_model)
    dims = {V.shape[1] for _, V in vectors.values()}
    if len(dims) != 1 or next(iter(dims)) > E.shape[1]:
        raise ValueError(f"the word vectors must share one dimension d <= d_model = {E.shape[1]}, got dimensions "
                         f"{sorted(dims)}: align them first (word translation), or build a larger model.")
    g = torch.Generator().manual_seed(seed)
    P, _ = torch.linalg.qr(torch.randn(E.shape[1], dims.pop(), generator=g))   # (d_model, d), P^T P = I
    scale = E.detach().norm(dim=1).mean()
    n = 0
    with torch.no_grad():
        for lang, (words, V) in vectors.items():
            index = model.vocab.index[lang]
            rows = [(index[w], i) for i, w in enumerate(words) if w in index]
            if not rows:
                continue
            ids, which = (torch.tensor(column) for column in zip(*rows))
            embedded = F.normalize(V[which].detach().float().cpu(), dim=1) @ P.T    # (r, d_model), unit rows
            E[ids.to(E.device)] = (scale * embedded).to(E.device, E.dtype)
            n += len(rows)
    return n


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
    previous model ``M``, or its :class:`BackTranslations` of the corpus; no gradient), add noise, and score
    ``model`` on bringing the translation back to ``y``."""
    with torch.no_grad():
        x_hat, x_len = translator.generate(y, y_len, lang_x)             # M(y): (B, T')
    noisy, noisy_len = add_noise(x_hat, x_len, p_drop, k, generator)     # C(M(y))
    return model(noisy, noisy_len, y, y_len, lang_y)


# ---------------------------------------------------------------------------------------------
# Translating whole corpora, and round-trip BLEU
# ---------------------------------------------------------------------------------------------


@torch.no_grad()
def translate_ids(translator, sentences: Sequence[Sequence[int]], tgt_lang: str, *, batch_size: int = 256,
                  device=None, max_len: int = 100) -> list[list[int]]:
    """Translate lists of ids with ``translator`` (a :class:`Seq2Seq` or :class:`WordByWord`), in batches of
    similar lengths (sorted, so little padding); the results come back in the input order."""
    device = device or getattr(translator, "device", None) or torch.device("cpu")
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


class BackTranslations:
    """The previous model's translations ``M(y)`` of a whole corpus, computed once: the ``M`` of eq. (9.10).

    Translating every sentence of a round's corpus once, in large batches of similar lengths
    (:func:`translate_ids`), is much faster than translating each training batch as it comes. ``generate``
    has the interface of :meth:`Seq2Seq.generate` and looks each sentence of a batch up by its ids, so
    that ``back_translation_loss(model, BackTranslations(M, corpus, lang_x), y, ...)`` is eq. (9.10) with
    ``M`` for any batch ``y`` drawn from ``corpus``.
    """

    def __init__(self, translator, sentences: Sequence[Sequence[int]], lang: str, *, device=None,
                 batch_size: int = 256):
        self.vocab = translator.vocab
        self.lang = lang
        translations = translate_ids(translator, sentences, lang, batch_size=batch_size, device=device)
        self.table = {tuple(s): t for s, t in zip(sentences, translations)}   # ids of y -> ids of M(y)

    def __len__(self) -> int:
        return len(self.table)

    def generate(self, y: torch.Tensor, y_len: torch.Tensor, lang: str, max_len: int | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """The stored translations of the sentences ``y`` (B, T) into ``lang``: ids (B, T') and lengths (B,).

        ``max_len`` is accepted for the interface of :meth:`Seq2Seq.generate` and ignored: the translations
        were made when these back-translations were built.
        """
        if lang != self.lang:
            raise ValueError(f"these back-translations are into {self.lang!r}, not {lang!r}: build one "
                             "BackTranslations per direction.")
        translations = []
        for i, (row, n) in enumerate(zip(y.tolist(), y_len.tolist())):
            translation = self.table.get(tuple(row[:n]))
            if translation is None:
                raise ValueError(f"sentence {i} of the batch, {row[:n]}, is not one of the {len(self.table)} "
                                 "sentences translated when these back-translations were built: draw batches "
                                 "from that corpus, or pass the translator itself to back_translation_loss.")
            translations.append(translation)
        return pad(translations, y.device)


def _batch_of(sentences: Sequence[Sequence[int]], idx: torch.Tensor, device) -> tuple[torch.Tensor, torch.Tensor]:
    return pad([sentences[i] for i in idx.tolist()], device)


def _optimizer(model: nn.Module, lr: float, warmup: int):
    # Adam with the Transformer's betas, a linear warm-up over `warmup` steps, then a constant rate
    opt = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.98), eps=1e-9)
    return opt, warmup_schedule(opt, max(warmup, 1), total=1, decay="constant")


def _train_steps(model: Seq2Seq, optimizer, scheduler, losses: Callable[[torch.Generator], dict[str, torch.Tensor]],
                 steps: int, g: torch.Generator, clip: float, desc: str, progress_bar: bool,
                 history: History) -> dict[str, float]:
    """``steps`` optimiser steps on the sum of the loss terms that ``losses(g)`` returns for fresh batches,
    in the course's step loop (:func:`unsuplab.train.run_steps` checks and logs every term). Every step's
    terms are appended to ``history.steps`` (``step`` counted on from the steps already there); returns
    the mean of each term over these steps."""
    model.train()
    scaler = grad_scaler(model.device)  # float16 (a T4) needs one; elsewhere it does nothing

    def step(_: int) -> dict[str, torch.Tensor]:
        with autocast(model.device):
            terms = losses(g)
        backward_and_step(sum(terms.values()), optimizer, scaler, model.parameters(), clip)
        scheduler.step()
        return terms

    trained = run_steps(step, steps, desc=desc, progress_bar=progress_bar)
    done = len(history.steps.get("step", []))
    history.steps.setdefault("step", []).extend(done + s for s in trained.steps.get("step", []))
    means = {}
    for name, values in trained.steps.items():
        if name != "step":
            history.steps.setdefault(name, []).extend(values)
            means[name] = sum(values) / max(steps, 1)
    return means


def train_unmt(model: Seq2Seq, mono: dict[str, Sequence[Sequence[int]]], translator, *, iterations: int = 3,
               steps: int = 2_000, batch_size: int = 64, lr: float = 5e-4, warmup: int = 500, p_drop: float = 0.1,
               k: int = 3, clip: float = 1.0, evaluate: Callable[[Seq2Seq], dict] | None = None,
               select: str | None = None, seed: int = 0, progress_bar: bool = True) -> History:
    """Unsupervised training of Lample et al. (2018), eq. (9.11), for ``iterations`` rounds.

    ``mono`` maps each of two languages to its monolingual sentences (lists of ids of ``model.vocab``);
    ``translator`` is the first model ``M^(0)``, e.g. a :class:`WordByWord`. Round ``t``:

    1. back-translate every sentence of each language with ``M^(t-1)`` (greedy, no gradient), once for
       the round (:class:`BackTranslations`);
    2. train ``steps`` steps on ``L_auto(l1) + L_auto(l2) + L_bt(l1 -> l2) + L_bt(l2 -> l1)``
       (:func:`denoising_loss`, :func:`back_translation_loss`), each term on ``batch_size`` sentences,
       the noise ``C`` drawn afresh at every step;
    3. ``M^(t)`` = the model now; ``evaluate(model)`` (optional) returns numbers to log, and with
       ``select`` naming one of them, the model of the round where it was highest is restored at the end
       (round-trip BLEU: model selection without parallel data).

    Returns a :class:`~unsuplab.train.History` whose ``epochs`` hold one row per **round** (iteration):
    ``round`` (1, 2, ...), the mean of each loss term over the round's steps (``auto_en``, ``bt_fr_en``...)
    and what ``evaluate`` returned. ``steps`` holds every step's loss terms, ``step`` counted across rounds;
    ``info["best_round"]`` the round that ``select`` chose (0 without ``select``); ``seconds`` the time
    of the rounds, back-translation and evaluation included.
    """
    langs = list(mono)
    if len(langs) != 2:
        raise ValueError(f"train_unmt needs monolingual sentences of exactly two languages, got {langs}.")
    other = {langs[0]: langs[1], langs[1]: langs[0]}
    device = model.device
    g = torch.Generator().manual_seed(seed)
    opt, sched = _optimizer(model, lr, warmup)
    history = History(info={"best_round": 0})
    best, best_state = -float("inf"), None
    started = time.perf_counter()
    for t in range(1, iterations + 1):
        # 1. M^(t-1) translates both corpora once: M(y) for every y of each language
        back = {l_y: BackTranslations(translator, mono[l_y], other[l_y], device=device) for l_y in langs}

        # 2. the four losses of (9.11)
        def losses(g: torch.Generator) -> dict[str, torch.Tensor]:
            terms = {}
            for l in langs:
                x, x_len = _batch_of(mono[l], torch.randint(len(mono[l]), (batch_size,), generator=g), device)
                terms[f"auto_{l}"] = denoising_loss(model, x, x_len, l, p_drop, k)
            for l_y in langs:                                   # L_bt(l_x -> l_y): y of l_y, M(y) of l_x
                l_x = other[l_y]
                y, y_len = _batch_of(mono[l_y], torch.randint(len(mono[l_y]), (batch_size,), generator=g), device)
                terms[f"bt_{l_x}_{l_y}"] = back_translation_loss(model, back[l_y], y, y_len, l_y, l_x, p_drop, k)
            return terms

        means = _train_steps(model, opt, sched, losses, steps, g, clip, f"round {t}", progress_bar, history)
        # 3. the new model translates in the next round; evaluate it
        model.eval()
        scores = dict(evaluate(model)) if evaluate is not None else {}
        history.log_epoch({"round": t, **means, **scores})
        history.seconds = time.perf_counter() - started
        if evaluate is not None and select is not None and history.epochs[select][-1] > best:
            best, history.info["best_round"] = history.epochs[select][-1], t
            best_state = copy.deepcopy(model.state_dict())
        translator = copy.deepcopy(model).eval()
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return history


def train_supervised(model: Seq2Seq, parallel: dict[str, Sequence[Sequence[int]]], *, steps: int = 6_000,
                     batch_size: int = 64, lr: float = 5e-4, warmup: int = 500, clip: float = 1.0,
                     seed: int = 0, progress_bar: bool = True) -> History:
    """The upper bound: the same model trained on sentence pairs, both directions at each step.

    ``parallel`` maps two languages to the two sides of a parallel corpus (line ``i`` translates line ``i``).
    Returns a :class:`~unsuplab.train.History`: ``steps`` holds each direction's loss at every step
    (``sup_en_fr``, ``sup_fr_en``), ``epochs`` one row for the **whole run** (the mean of each over the
    steps), ``seconds`` the training time.
    """
    langs = list(parallel)
    if len(langs) != 2:
        raise ValueError(f"train_supervised needs the two sides of a parallel corpus, one per language, got "
                         f"{len(langs)} languages: {langs}.")
    if len(parallel[langs[0]]) != len(parallel[langs[1]]):
        raise ValueError(f"train_supervised needs the same number of sentences in both languages, line i of one "
                         f"translating line i of the other, got {len(parallel[langs[0]])} {langs[0]} and "
                         f"{len(parallel[langs[1]])} {langs[1]} sentences: take the same lines of both files.")
    device, n = model.device, len(parallel[langs[0]])
    g = torch.Generator().manual_seed(seed)
    opt, sched = _optimizer(model, lr, warmup)
    history = History()
    started = time.perf_counter()

    def losses(g: torch.Generator) -> dict[str, torch.Tensor]:
        idx = torch.randint(n, (batch_size,), generator=g)
        terms = {}
        for l1, l2 in ((langs[0], langs[1]), (langs[1], langs[0])):
            x, x_len = _batch_of(parallel[l1], idx, device)
            y, y_len = _batch_of(parallel[l2], idx, device)
            terms[f"sup_{l1}_{l2}"] = model(x, x_len, y, y_len, l2)
        return terms

    history.log_epoch(_train_steps(model, opt, sched, losses, steps, g, clip, "supervised", progress_bar, history))
    model.eval()
    history.seconds = time.perf_counter() - started
    return history
