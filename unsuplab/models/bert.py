"""Chapter 8 (second half): BERT, a Transformer encoder pretrained by filling in masked words.

BERT (Devlin, Chang, Lee & Toutanova 2019) reads a sentence pair with a Transformer encoder
(Vaswani et al. 2017) and is pretrained on two tasks whose labels come free with the text:
*masked language modelling* (hide 15% of the tokens, predict them from both sides) and *next-sentence
prediction* (does segment B follow segment A?). The pretrained encoder is then fine-tuned on a task
with few labels. This file builds all of it, top to bottom, in the chapter's order and names; the
Wikipedia articles, their section labels and the few-label splits come from :mod:`unsuplab.data`
(``corpus_articles``, ``section_dataset``, ``few_labels_split``), the attention heat maps are drawn
by :func:`unsuplab.viz.plot_attention`, and the lab's self-checks close the file.
Equation numbers refer to the chapter page, ``book/08_bert.md``:

(1) scaled dot-product attention  ``Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k) + M) V``, where the
    mask ``M`` is ``-inf`` at padded keys and 0 elsewhere: each output is a weighted sum of the values,
    the weights a softmax of query-key dot products;
(2) multi-head attention  ``head_h = Attention(X W_h^Q, X W_h^K, X W_h^V)``,
    ``MultiHead(X) = [head_1, ..., head_H] W^O``;
(3) an encoder block (pre-LN, Xiong et al. 2020)  ``X' = X + MultiHead(LN(X))``,
    ``X'' = X' + FFN(LN(X'))`` with ``FFN(x) = GELU(x W_1 + b_1) W_2 + b_2``;
(4) the input  ``e_i = E_tok[x_i] + E_pos[i] + E_seg[s_i]``  for token ``x_i`` at position ``i`` in
    segment ``s_i`` (0 for A, 1 for B);
(5) the masking rule: each maskable token is chosen with probability 15%; a chosen token is replaced
    by [MASK] with probability 80%, by a random token with probability 10%, and kept with probability
    10%; special tokens are never chosen;
(6) the masked-LM loss  ``L_MLM = -(1/|M|) sum_{i in M} log p(x_i | x~)``  over the chosen positions M,
    with perplexity ``exp(L_MLM)``;
(7) the next-sentence loss  ``L_NSP = -log p(y | [CLS])``, y = IsNext or NotNext (50% each);
    pretraining minimises ``L_MLM + L_NSP``.

The tokeniser is deliberately simple: lower-cased whole words and punctuation marks, the
``vocab_size`` most frequent ones kept and the rest mapped to [UNK] (BERT uses WordPiece subwords,
Wu et al. 2016; whole words keep this chapter short and its predictions readable). [UNK] is a
special token, so it is never a prediction target: accuracies are over real words.

Speed: batches are cut from one long token tensor on the device with vectorised indexing (no Python
loop over examples); the encoder uses ``torch.nn.functional.scaled_dot_product_attention`` (fused
kernels on a GPU) except when attention maps are asked for, where the hand-written :func:`attention`
runs; training uses fused AdamW and mixed precision on CUDA as ``unsuplab.train.autocast`` chooses it
(bfloat16 on compute capability 8.0 or more, float16 with a gradient scaler on a T4).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..checks import check_true
from ..train import History, TensorBatches, autocast, eval_mode, fit

__all__ = ["SPECIAL_TOKENS", "N_SPECIAL", "IGNORE_INDEX", "SENTENCE_END", "WordTokenizer", "PairCorpus",
           "mask_tokens", "attention", "BertConfig", "MultiHeadSelfAttention", "EncoderBlock", "BertEncoder",
           "BertForPretraining", "BertClassifier", "MaskedPairs", "pretrain", "make_eval_batches", "evaluate_mlm",
           "unigram_baseline", "finetune", "predict", "sentence_features", "fill_mask", "attention_maps",
           "masking_report", "check_masking"]

# ----------------------------------------------------------------------------------------------
# Tokens
# ----------------------------------------------------------------------------------------------

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
PAD_ID, UNK_ID, CLS_ID, SEP_ID, MASK_ID = range(len(SPECIAL_TOKENS))
N_SPECIAL = len(SPECIAL_TOKENS)  # ids below N_SPECIAL are special: never masked, never a target
IGNORE_INDEX = -100  # the label of a position that is not predicted (cross_entropy's ignore_index)
SENTENCE_END = (".", "!", "?")

# A word (letters, digits, underscore), or one punctuation mark; special tokens stay whole.
_TOKEN_RE = re.compile(r"\[(?:pad|unk|cls|sep|mask)\]|\w+|[^\w\s]")


class WordTokenizer:
    """Lower-cased words and punctuation marks, mapped to ids; unknown words map to [UNK].

    ``vocab`` lists the tokens by id, the five special tokens first. Build one from text with
    :meth:`fit`. ``tokenize("Paris is [MASK].") == ["paris", "is", "[MASK]", "."]``.
    """

    def __init__(self, vocab: Sequence[str]):
        vocab = list(vocab)
        if tuple(vocab[:N_SPECIAL]) != SPECIAL_TOKENS:
            raise ValueError(f"a vocabulary must start with the special tokens {SPECIAL_TOKENS}, got "
                             f"{vocab[:N_SPECIAL]}: build it with WordTokenizer.fit(lines).")
        if len(set(vocab)) != len(vocab):
            raise ValueError("the vocabulary lists a token twice: each token needs exactly one id.")
        self.vocab = vocab
        self.token_to_id = {token: i for i, token in enumerate(vocab)}
        for token in SPECIAL_TOKENS:  # the text is lower-cased before matching
            self.token_to_id[token.lower()] = self.token_to_id[token]

    @staticmethod
    def tokenize(text: str) -> list[str]:
        """Lower-case ``text`` and split it into words and punctuation marks."""
        return [t.upper() if t.startswith("[") and t.upper() in SPECIAL_TOKENS else t
                for t in _TOKEN_RE.findall(text.lower())]

    @classmethod
    def fit(cls, lines: Iterable[str], vocab_size: int = 8192, min_count: int = 2) -> "WordTokenizer":
        """The ``vocab_size - 5`` most frequent tokens of ``lines`` (seen at least ``min_count`` times),
        after the special tokens; ties broken alphabetically, so the vocabulary is reproducible."""
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, (int, np.integer)) or vocab_size <= N_SPECIAL:
            raise ValueError(f"vocab_size must be a whole number above {N_SPECIAL} (the special tokens), "
                             f"got {vocab_size!r}.")
        if isinstance(lines, str):
            raise TypeError("expected an iterable of lines (a list of str), got one str: wrap it as [text].")
        counts: Counter = Counter()
        for line in lines:
            counts.update(_TOKEN_RE.findall(line.lower()))
        for token in SPECIAL_TOKENS:
            counts.pop(token.lower(), None)
        ranked = sorted((t for t, c in counts.items() if c >= min_count), key=lambda t: (-counts[t], t))
        if not ranked:
            raise ValueError(f"no token occurs {min_count} times or more in the lines given: pass more "
                             "text (or a lower min_count).")
        return cls(list(SPECIAL_TOKENS) + ranked[: int(vocab_size) - N_SPECIAL])

    def __len__(self) -> int:
        return len(self.vocab)

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (no [CLS]/[SEP] added)."""
        get = self.token_to_id.get
        return [get(t, UNK_ID) for t in _TOKEN_RE.findall(text.lower())]

    def decode(self, ids: Iterable[int], skip_pad: bool = True) -> str:
        """The tokens of ``ids`` joined by spaces ([PAD] left out unless ``skip_pad=False``)."""
        ids = ids.tolist() if hasattr(ids, "tolist") else list(ids)
        return " ".join(self.vocab[i] for i in ids if not (skip_pad and i == PAD_ID))

    def encode_batch(self, texts: Sequence[str], seq_len: int) -> torch.Tensor:
        """``[CLS] text [SEP]`` for each text, cut and padded to ``seq_len``: a LongTensor (N, seq_len)."""
        if seq_len < 3:
            raise ValueError(f"seq_len must leave room for [CLS], one token and [SEP], got {seq_len}.")
        out = torch.full((len(texts), seq_len), PAD_ID, dtype=torch.long)
        for row, text in enumerate(texts):
            ids = [CLS_ID] + self.encode(text)[: seq_len - 2] + [SEP_ID]
            out[row, : len(ids)] = torch.tensor(ids)
        return out


# ----------------------------------------------------------------------------------------------
# Sentence pairs cut from Wikipedia articles (the articles themselves: unsuplab.data.corpus_articles)
# ----------------------------------------------------------------------------------------------

class PairCorpus:
    """One long token tensor cut into documents and sentences, from which sentence pairs are drawn.

    ``ids`` (N,) holds every document's tokens back to back; ``sent_start`` (S,) is where each sentence
    starts (after a ``.``, ``!`` or ``?`` and at each line start), ``sent_doc_end`` (S,) where its
    document ends, and ``split_at`` (P,) the sentences that are not the first of their document (segment
    B may start there, with segment A ending just before). Build it with :meth:`from_documents`.
    """

    def __init__(self, ids: torch.Tensor, sent_start: torch.Tensor, sent_doc_start: torch.Tensor,
                 sent_doc_end: torch.Tensor):
        self.ids, self.sent_start = ids, sent_start
        self.sent_doc_start, self.sent_doc_end = sent_doc_start, sent_doc_end
        self.split_at = torch.nonzero(sent_start > sent_doc_start).flatten()
        if len(self.split_at) == 0:
            raise ValueError("no document has two sentences, so no sentence pair can be cut: give longer documents.")

    @classmethod
    def from_documents(cls, tokenizer: WordTokenizer, documents: Iterable[Sequence[str]],
                       max_tokens: int | None = None) -> "PairCorpus":
        """Encode ``documents`` (each a list of lines) until ``max_tokens`` tokens (None: all)."""
        end_ids = [tokenizer.token_to_id[t] for t in SENTENCE_END if t in tokenizer.token_to_id]
        ids: list[int] = []
        line_start: list[int] = []
        doc_bounds: list[tuple[int, int]] = []
        for lines in documents:
            start = len(ids)
            for line in lines:
                encoded = tokenizer.encode(line)
                if encoded:
                    line_start.append(len(ids))
                    ids.extend(encoded)
            if len(ids) > start:
                doc_bounds.append((start, len(ids)))
            if max_tokens is not None and len(ids) >= max_tokens:
                break
        if not ids:
            raise ValueError("the documents hold no tokens: check the text you passed.")
        ids_t = torch.tensor(ids, dtype=torch.long)                     # (N,)
        starts = torch.zeros(len(ids), dtype=torch.bool)
        starts[torch.tensor(line_start)] = True
        after_end = torch.isin(ids_t[:-1], torch.tensor(end_ids, dtype=torch.long))
        starts[1:] |= after_end                                         # a token after . ! ? starts a sentence
        bounds = torch.tensor(doc_bounds, dtype=torch.long)              # (D, 2)
        sent_start = torch.nonzero(starts).flatten()                    # (S,)
        doc_of = torch.searchsorted(bounds[:, 1].contiguous(), sent_start, right=True)  # the document of each sentence
        return cls(ids_t, sent_start, bounds[doc_of, 0], bounds[doc_of, 1])

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def device(self) -> torch.device:
        return self.ids.device

    def to(self, device) -> "PairCorpus":
        out = PairCorpus.__new__(PairCorpus)
        for name in ("ids", "sent_start", "sent_doc_start", "sent_doc_end", "split_at"):
            setattr(out, name, getattr(self, name).to(device))
        return out

    def sample_pairs(self, batch_size: int, seq_len: int, generator: torch.Generator | None = None
                     ) -> dict[str, torch.Tensor]:
        """A batch of ``[CLS] A [SEP] B [SEP] [PAD]...`` sequences, as in BERT's pretraining.

        A is up to ``(seq_len - 3) // 2`` tokens ending at a sentence boundary; B fills the rest and
        is, with probability 1/2, the text that really follows (IsNext, ``is_next = 1``), else text
        from a random sentence of the corpus (NotNext). Neither crosses its document's end.
        Returns ``input_ids`` and ``segment_ids`` (B, T) and ``is_next`` (B,), all on the corpus's
        device; padding is where ``input_ids == PAD_ID``.
        """
        if seq_len < 5:
            raise ValueError(f"seq_len must be at least 5 ([CLS] a [SEP] b [SEP]), got {seq_len}.")
        device, T = self.ids.device, seq_len
        kw = {"device": device, "generator": generator}
        s = self.split_at[torch.randint(len(self.split_at), (batch_size,), **kw)]   # (B,) sentence where B starts
        split = self.sent_start[s]                                                  # (B,) token position
        a_start = torch.maximum(self.sent_doc_start[s], split - (T - 3) // 2)
        a_len = split - a_start                                                     # (B,) >= 1
        is_next = torch.rand(batch_size, **kw) < 0.5
        r = torch.randint(len(self.sent_start), (batch_size,), **kw)                # a random sentence
        b_start = torch.where(is_next, split, self.sent_start[r])
        b_end = torch.where(is_next, self.sent_doc_end[s], self.sent_doc_end[r])
        b_len = torch.minimum(b_end - b_start, T - 3 - a_len)                      # (B,) >= 1

        j = torch.arange(T, device=device)[None, :]                                 # (1, T) positions
        a_len, b_len = a_len[:, None], b_len[:, None]                               # (B, 1)
        last = len(self.ids) - 1
        a_tok = self.ids[(a_start[:, None] + j - 1).clamp(0, last)]                 # (B, T)
        b_tok = self.ids[(b_start[:, None] + j - a_len - 2).clamp(0, last)]         # (B, T)
        sep1, sep2 = a_len + 1, a_len + b_len + 2
        input_ids = torch.full_like(a_tok, PAD_ID)
        input_ids = torch.where(j < sep2, b_tok, input_ids)
        input_ids = torch.where(j == sep2, SEP_ID, input_ids)
        input_ids = torch.where(j <= sep1, torch.where(j == sep1, SEP_ID, a_tok), input_ids)
        input_ids[:, 0] = CLS_ID
        segment_ids = ((j > sep1) & (j <= sep2)).long()                             # B and its [SEP]
        return {"input_ids": input_ids, "segment_ids": segment_ids, "is_next": is_next.long()}


# ----------------------------------------------------------------------------------------------
# The masking rule, eq. (5)
# ----------------------------------------------------------------------------------------------

def mask_tokens(input_ids: torch.Tensor, vocab_size: int, mask_prob: float = 0.15,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's 80/10/10 masking rule, eq. (5): returns ``(inputs, labels)``, both shaped like ``input_ids``.

    Each token that is not special (id >= ``N_SPECIAL``) is chosen with probability ``mask_prob``;
    a chosen token becomes [MASK] with probability 0.8, a random non-special token with probability
    0.1, and stays itself with probability 0.1. ``labels`` holds the original id at chosen positions
    and ``IGNORE_INDEX`` everywhere else. ``input_ids`` is not changed.
    """
    if input_ids.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"expected integer token ids, got dtype {input_ids.dtype}: pass the output of the tokenizer.")
    if not 0.0 <= mask_prob <= 1.0:
        raise ValueError(f"mask_prob is a probability, between 0 and 1, got {mask_prob}.")
    kw = {"device": input_ids.device, "generator": generator}
    chosen = (torch.rand(input_ids.shape, **kw) < mask_prob) & (input_ids >= N_SPECIAL)
    labels = torch.where(chosen, input_ids, IGNORE_INDEX)
    u = torch.rand(input_ids.shape, **kw)                       # one draw decides [MASK] / random / keep
    random_ids = torch.randint(N_SPECIAL, vocab_size, input_ids.shape, dtype=input_ids.dtype, **kw)
    inputs = torch.where(chosen & (u < 0.8), MASK_ID, input_ids)
    inputs = torch.where(chosen & (u >= 0.8) & (u < 0.9), random_ids, inputs)
    return inputs, labels


# ----------------------------------------------------------------------------------------------
# The Transformer encoder, eqs. (1)-(4)
# ----------------------------------------------------------------------------------------------

def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pad_mask: torch.Tensor | None = None
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Scaled dot-product attention, eq. (1): ``softmax(q k^T / sqrt(d_k) + M) v``.

    ``q``, ``k``: (B, H, T, d_k); ``v``: (B, H, T, d_v); ``pad_mask``: (B, T) bool, True at padded
    keys, which get weight 0. Returns ``(out (B, H, T, d_v), weights (B, H, T, T))``; each row of
    ``weights`` sums to 1.
    """
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])        # (B, H, T, T)
    if pad_mask is not None:
        scores = scores.masked_fill(pad_mask[:, None, None, :], float("-inf"))
    weights = scores.softmax(dim=-1)                                 # normalise over the keys
    return weights @ v, weights                                      # (B, H, T, d_v)


@dataclass
class BertConfig:
    """The sizes of a BERT encoder (BERT-base: d_model 768, 12 layers, 12 heads, d_ff 3072)."""

    vocab_size: int
    max_len: int = 128
    d_model: int = 256
    n_layers: int = 4
    n_heads: int = 4
    d_ff: int = 1024
    dropout: float = 0.1
    tie_embeddings: bool = False  # BERT ties the MLM decoder to E_tok; see BertForPretraining

    def __post_init__(self):
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) must be a multiple of n_heads ({self.n_heads}): "
                             "each head gets d_model / n_heads dimensions.")
        if self.vocab_size <= N_SPECIAL:
            raise ValueError(f"vocab_size must exceed the {N_SPECIAL} special tokens, got {self.vocab_size}.")


class MultiHeadSelfAttention(nn.Module):
    """Eq. (2): H heads of attention over projections of the same X, concatenated and mixed by W^O."""

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0):
        super().__init__()
        self.n_heads, self.dropout = n_heads, dropout
        self.qkv = nn.Linear(d_model, 3 * d_model)    # W^Q, W^K, W^V of all heads in one matrix
        self.out = nn.Linear(d_model, d_model)        # W^O

    def forward(self, x: torch.Tensor, pad_mask: torch.Tensor | None = None, need_weights: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        B, T, D = x.shape
        q, k, v = self.qkv(x).split(D, dim=-1)                                     # 3 x (B, T, D)
        q, k, v = (t.view(B, T, self.n_heads, D // self.n_heads).transpose(1, 2) for t in (q, k, v))  # (B, H, T, d_k)
        if need_weights:  # the hand-written eq. (1), which also gives the attention maps
            out, weights = attention(q, k, v, pad_mask)
            if self.training and self.dropout > 0:                                  # as the fused kernel does
                out = F.dropout(weights, self.dropout) @ v
        else:             # the same computation, fused into one kernel where the device has one
            keep = None if pad_mask is None else ~pad_mask[:, None, None, :]        # (B, 1, 1, T)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=keep,
                                                 dropout_p=self.dropout if self.training else 0.0)
            weights = None
        out = out.transpose(1, 2).reshape(B, T, D)                                 # concatenate the heads
        return self.out(out), weights


class EncoderBlock(nn.Module):
    """Eq. (3), pre-LN: ``x + MultiHead(LN(x))``, then ``+ FFN(LN(.))``."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.attn = MultiHeadSelfAttention(cfg.d_model, cfg.n_heads, cfg.dropout)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.ffn = nn.Sequential(nn.Linear(cfg.d_model, cfg.d_ff), nn.GELU(), nn.Linear(cfg.d_ff, cfg.d_model))
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x, pad_mask=None, need_weights=False):
        a, weights = self.attn(self.ln1(x), pad_mask, need_weights)
        x = x + self.drop(a)                            # residual around attention
        x = x + self.drop(self.ffn(self.ln2(x)))        # residual around the feed-forward net
        return x, weights


class BertEncoder(nn.Module):
    """Token, position and segment embeddings, eq. (4), then ``n_layers`` blocks and a final LayerNorm.

    ``forward(input_ids (B, T), segment_ids (B, T) or None)`` gives the hidden states (B, T, d_model);
    padding ([PAD], id 0) is found from ``input_ids`` and masked out of every attention.
    """

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.cfg = cfg
        self.tok = nn.Embedding(cfg.vocab_size, cfg.d_model)    # E_tok
        self.pos = nn.Embedding(cfg.max_len, cfg.d_model)       # E_pos, learned as in BERT
        self.seg = nn.Embedding(2, cfg.d_model)                 # E_seg: segment A or B
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(EncoderBlock(cfg) for _ in range(cfg.n_layers))
        self.ln = nn.LayerNorm(cfg.d_model)

    def forward(self, input_ids: torch.Tensor, segment_ids: torch.Tensor | None = None,
                return_attention: bool = False):
        if input_ids.ndim != 2:
            raise ValueError(f"expected input_ids of shape (B, T), got {tuple(input_ids.shape)}: "
                             "add a batch dimension with input_ids[None].")
        B, T = input_ids.shape
        if T > self.cfg.max_len:
            raise ValueError(f"sequences of {T} tokens are longer than max_len={self.cfg.max_len}: "
                             "cut them, or build the encoder with a larger max_len.")
        if segment_ids is None:
            segment_ids = torch.zeros_like(input_ids)
        pad_mask = input_ids == PAD_ID                                                # (B, T)
        positions = torch.arange(T, device=input_ids.device)
        x = self.tok(input_ids) + self.pos(positions)[None] + self.seg(segment_ids)  # (B, T, D), eq. (4)
        x = self.drop(x)
        maps = []
        for block in self.blocks:
            x, weights = block(x, pad_mask, return_attention)
            maps.append(weights)
        x = self.ln(x)
        return (x, maps) if return_attention else x                                  # maps: L x (B, H, T, T)


def _init_weights(module: nn.Module) -> None:
    # BERT's initialisation: N(0, 0.02) weights, zero biases, LayerNorm at (1, 0).
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)


class BertForPretraining(nn.Module):
    """The encoder with BERT's two pretraining heads: masked-LM, eq. (6), and next-sentence, eq. (7).

    The MLM head is a dense layer, GELU and LayerNorm, then a decoder ``W_dec`` (V, D) and a bias;
    the NSP head reads the [CLS] state through a ``tanh`` pooler.

    BERT ties the decoder to the token embeddings (``W_dec = E_tok``, Press & Wolf 2017); the course
    does not (``cfg.tie_embeddings=False``). With a tied decoder, each step pushes the vector of every
    word that is *not* the answer a little along the same direction (minus the mean hidden state), and
    Adam turns even such tiny but consistent gradients into full-size steps: in a short run the
    embeddings of all rare words drift to one shared direction (the "representation degeneration" of
    Gao et al. 2019), and a downstream task that needs those words can no longer tell them apart.
    Untied, a word's input embedding moves only when the word is read (Chung et al. 2021 found
    untied embeddings no worse for fine-tuning).
    """

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = BertEncoder(cfg)
        self.mlm_transform = nn.Sequential(nn.Linear(cfg.d_model, cfg.d_model), nn.GELU(), nn.LayerNorm(cfg.d_model))
        self.decoder = None if cfg.tie_embeddings else nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)  # W_dec
        self.mlm_bias = nn.Parameter(torch.zeros(cfg.vocab_size))
        self.pooler = nn.Sequential(nn.Linear(cfg.d_model, cfg.d_model), nn.Tanh())
        self.nsp = nn.Linear(cfg.d_model, 2)
        self.apply(_init_weights)

    def mlm_logits(self, h: torch.Tensor) -> torch.Tensor:
        """Scores over the vocabulary for hidden states (..., D) -> (..., V): ``W_dec`` (or ``E_tok`` if tied)."""
        w_dec = self.encoder.tok.weight if self.decoder is None else self.decoder.weight     # (V, D)
        return self.mlm_transform(h) @ w_dec.T + self.mlm_bias

    def forward(self, input_ids, segment_ids=None, labels=None):
        """Hidden states (B, T, D), MLM logits at the ``labels != IGNORE_INDEX`` positions (M, V)
        (all positions when ``labels`` is None), and NSP logits (B, 2)."""
        h = self.encoder(input_ids, segment_ids)                              # (B, T, D)
        chosen = h if labels is None else h[labels != IGNORE_INDEX]           # (M, D): only where predicted
        return h, self.mlm_logits(chosen), self.nsp(self.pooler(h[:, 0]))

    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``L_MLM + L_NSP``, eqs. (6)-(7), on a masked batch (``input_ids`` already masked, ``labels``,
        ``segment_ids``, ``is_next``); also returns the parts and the masked-token accuracy."""
        labels = batch["labels"]
        _, logits, nsp_logits = self(batch["input_ids"], batch["segment_ids"], labels)
        targets = labels[labels != IGNORE_INDEX]                               # (M,)
        mlm = F.cross_entropy(logits.float(), targets)                         # eq. (6)
        nsp = F.cross_entropy(nsp_logits.float(), batch["is_next"])            # eq. (7)
        parts = {"mlm": mlm.detach(), "nsp": nsp.detach(),
                 "mlm_acc": (logits.argmax(-1) == targets).float().mean().detach(),
                 "nsp_acc": (nsp_logits.argmax(-1) == batch["is_next"]).float().mean().detach()}
        return mlm + nsp, parts


class BertClassifier(nn.Module):
    """A sequence classifier on a BERT encoder: pooler on the [CLS] state, dropout, a linear layer.

    Pass ``pretrained`` (a :class:`BertForPretraining`) to start from its encoder and pooler (copied),
    or nothing to start from a random initialisation of the same architecture. With ``pool="mean"``
    the pooler reads the mean of the final states of the non-padding tokens instead of [CLS].
    """

    pool = "cls"

    def __init__(self, cfg: BertConfig, n_classes: int, pretrained: BertForPretraining | None = None,
                 pool: str | None = None):
        super().__init__()
        if pool is not None:
            if pool not in ("cls", "mean"):
                raise ValueError(f"pool must be 'cls' (the [CLS] state, as in BERT) or 'mean', got {pool!r}.")
            self.pool = pool
        self.encoder = BertEncoder(cfg)
        self.pooler = nn.Sequential(nn.Linear(cfg.d_model, cfg.d_model), nn.Tanh())
        self.drop = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(cfg.d_model, n_classes)
        self.apply(_init_weights)
        if pretrained is not None:
            self.encoder.load_state_dict(pretrained.encoder.state_dict())
            self.pooler.load_state_dict(pretrained.pooler.state_dict())

    def forward(self, input_ids, segment_ids=None):
        h = self.encoder(input_ids, segment_ids)                              # (B, T, D)
        if self.pool == "mean":
            keep = (input_ids != PAD_ID).to(h.dtype)[..., None]               # (B, T, 1)
            summary = (h * keep).sum(1) / keep.sum(1)                         # (B, D)
        else:
            summary = h[:, 0]                                                 # the [CLS] state
        return self.head(self.drop(self.pooler(summary)))                     # (B, C)


# ----------------------------------------------------------------------------------------------
# Training and evaluation
# ----------------------------------------------------------------------------------------------

def _adamw(model: nn.Module, lr: float, weight_decay: float, device: torch.device) -> torch.optim.AdamW:
    # Weight decay on the matrices only, not on biases and LayerNorm gains (as in BERT).
    decay = [p for p in model.parameters() if p.ndim >= 2]
    other = [p for p in model.parameters() if p.ndim < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": other, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.98),
                             eps=1e-6, fused=device.type in ("cuda", "cpu"))


class MaskedPairs:
    """``n_batches`` batches of masked sentence pairs per pass, drawn afresh from ``corpus`` with torch's
    global generator (which :func:`unsuplab.train.fit` seeds per pass, so a resumed run draws the same):
    each ``corpus.sample_pairs(batch_size, seq_len)`` masked by ``mask_fn``, labels in ``"labels"``."""

    def __init__(self, corpus: PairCorpus, n_batches: int, *, batch_size: int, seq_len: int, vocab_size: int,
                 mask_fn: Callable = mask_tokens, mask_prob: float = 0.15):
        self.corpus, self.n_batches, self.batch_size, self.seq_len = corpus, n_batches, batch_size, seq_len
        self.vocab_size, self.mask_fn, self.mask_prob = vocab_size, mask_fn, mask_prob

    def __len__(self) -> int:
        return self.n_batches

    def __iter__(self):
        for _ in range(self.n_batches):
            batch = self.corpus.sample_pairs(self.batch_size, self.seq_len)
            batch["input_ids"], batch["labels"] = self.mask_fn(batch["input_ids"], self.vocab_size, self.mask_prob)
            yield batch


def pretrain(model: BertForPretraining, corpus: PairCorpus, *, steps: int, batch_size: int, seq_len: int,
             lr: float = 1e-3, warmup: int | None = None, weight_decay: float = 0.01,
             mask_fn: Callable = mask_tokens, mask_prob: float = 0.15, clip_grad_norm: float = 1.0,
             eval_fn: Callable[[nn.Module], dict] | None = None, eval_every: int | None = None, seed: int = 0,
             checkpoint=None, progress_bar: bool = True) -> History:
    """Minimise ``L_MLM + L_NSP`` on sentence pairs drawn from ``corpus``, masked by ``mask_fn``, with the
    course's loop :func:`unsuplab.train.fit` (checks, mixed precision on CUDA, ``checkpoint`` and resume).

    AdamW with a linear warm-up (``warmup`` steps, default 6% of ``steps``) and linear decay, stepped
    after every update, and gradient clipping. ``history.steps`` holds each step's loss, its two parts and
    the training masked-token accuracy (and ``"step"``); every ``eval_every`` steps (and at the end)
    ``eval_fn(model)`` goes into ``history.epochs``, with the step it was measured at under ``"step"``.
    The model is left in eval mode, ready to be measured.
    """
    device = next(model.parameters()).device
    period = min(eval_every or steps, steps)              # one pass of the data = one evaluation period
    batches = MaskedPairs(corpus.to(device), period, batch_size=batch_size, seq_len=seq_len,
                          vocab_size=model.cfg.vocab_size, mask_fn=mask_fn, mask_prob=mask_prob)
    optimizer = _adamw(model, lr, weight_decay, device)
    history = fit(model, lambda model, batch: model.loss(batch), batches, epochs=math.ceil(steps / period),
                  max_steps=steps, optimizer=optimizer, warmup=int(0.06 * steps) if warmup is None else warmup,
                  decay="linear",
                  clip_grad_norm=clip_grad_norm, eval_fn=eval_fn, seed=seed, checkpoint=checkpoint,
                  progress_bar=progress_bar, desc="pretraining")
    history.steps["step"] = list(range(1, len(history.steps["loss"]) + 1))
    history.epochs["step"] = [min(period * (i + 1), steps) for i in range(len(history.epochs["loss"]))]
    return history


def make_eval_batches(corpus: PairCorpus, vocab_size: int, *, n_batches: int, batch_size: int, seq_len: int,
                      mask_fn: Callable = mask_tokens, mask_prob: float = 0.15, seed: int = 0
                      ) -> list[dict[str, torch.Tensor]]:
    """A fixed set of masked sentence-pair batches (same ``seed``, same batches) for evaluation."""
    g = torch.Generator(device=corpus.device).manual_seed(seed)
    batches = []
    for _ in range(n_batches):
        batch = corpus.sample_pairs(batch_size, seq_len, generator=g)
        with torch.random.fork_rng(devices=[corpus.device] if corpus.device.type == "cuda" else []):
            torch.manual_seed(seed + len(batches))
            batch["input_ids"], batch["labels"] = mask_fn(batch["input_ids"], vocab_size, mask_prob)
        batches.append(batch)
    return batches


@torch.no_grad()
def evaluate_mlm(model: BertForPretraining, batches: Sequence[dict[str, torch.Tensor]]) -> dict[str, float]:
    """Held-out masked-token accuracy and perplexity ``exp(L_MLM)``, eq. (6), and NSP accuracy."""
    device = next(model.parameters()).device
    nll, correct, n, nsp_correct, n_pairs = 0.0, 0, 0, 0, 0
    with eval_mode(model):
        for batch in batches:
            batch = {k: v.to(device) for k, v in batch.items()}
            with autocast(device):
                _, logits, nsp_logits = model(batch["input_ids"], batch["segment_ids"], batch["labels"])
            targets = batch["labels"][batch["labels"] != IGNORE_INDEX]
            nll += float(F.cross_entropy(logits.float(), targets, reduction="sum"))
            correct += int((logits.argmax(-1) == targets).sum())
            n += len(targets)
            nsp_correct += int((nsp_logits.argmax(-1) == batch["is_next"]).sum())
            n_pairs += len(batch["is_next"])
    return {"mlm_acc": correct / n, "mlm_ppl": math.exp(nll / n), "nsp_acc": nsp_correct / n_pairs,
            "n_masked": n}


def unigram_baseline(train_ids: torch.Tensor, vocab_size: int, batches: Sequence[dict[str, torch.Tensor]]
                     ) -> dict[str, float]:
    """The context-free baseline on the same masked positions: always predict the most frequent
    token (accuracy; its id is ``most_frequent_id``), and score each target by its frequency in
    ``train_ids`` (perplexity, with add-one smoothing over the non-special tokens)."""
    counts = torch.bincount(train_ids.flatten().cpu(), minlength=vocab_size).double()
    counts[:N_SPECIAL] = 0.0
    counts[N_SPECIAL:] += 1.0
    log_p = (counts / counts.sum()).log()
    targets = torch.cat([b["labels"][b["labels"] != IGNORE_INDEX].cpu() for b in batches])
    return {"unigram_acc": float((targets == counts.argmax()).double().mean()),
            "unigram_ppl": math.exp(float(-log_p[targets].mean())), "most_frequent_id": int(counts.argmax())}


def _classification_loss(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    input_ids, labels = batch
    return F.cross_entropy(model(input_ids).float(), labels)


def finetune(model: BertClassifier, input_ids: torch.Tensor, labels: torch.Tensor, *, epochs: int,
             batch_size: int = 32, lr: float = 3e-4, weight_decay: float = 0.01, warmup_fraction: float = 0.1,
             seed: int = 0, progress_bar: bool = False) -> History:
    """Fine-tune every weight of ``model`` on labelled sequences with :func:`unsuplab.train.fit`:
    cross-entropy, AdamW, a linear warm-up over ``warmup_fraction`` of the steps and linear decay, gradient
    clipping at 1; ``seed`` fixes the data order. Same arguments, same budget. Returns the History (the
    mean training loss of each epoch is ``history.epochs["loss"]``); the model is left in eval mode."""
    device = next(model.parameters()).device
    batches = TensorBatches(input_ids.to(device), labels.to(device), batch_size=batch_size)
    steps = epochs * len(batches)
    optimizer = _adamw(model, lr, weight_decay, device)
    return fit(model, _classification_loss, batches, epochs=epochs, optimizer=optimizer,
               warmup=int(warmup_fraction * steps), decay="linear", clip_grad_norm=1.0, seed=seed, progress_bar=progress_bar, desc="fine-tuning")


@torch.no_grad()
def predict(model: nn.Module, input_ids: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Class predictions (N,) of a :class:`BertClassifier`, on the CPU."""
    device = next(model.parameters()).device
    out = []
    with eval_mode(model):
        for start in range(0, len(input_ids), batch_size):
            with autocast(device):
                out.append(model(input_ids[start:start + batch_size].to(device)).argmax(-1).cpu())
    return torch.cat(out)


@torch.no_grad()
def sentence_features(encoder: BertEncoder, input_ids: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Frozen features (N, D): the mean of the final hidden states over the non-padding tokens."""
    device = next(encoder.parameters()).device
    out = []
    with eval_mode(encoder):
        for start in range(0, len(input_ids), batch_size):
            ids = input_ids[start:start + batch_size].to(device)
            with autocast(device):
                h = encoder(ids).float()                                          # (B, T, D)
            keep = (ids != PAD_ID).float()[..., None]                             # (B, T, 1)
            out.append(((h * keep).sum(1) / keep.sum(1)).cpu())
    return torch.cat(out)


@torch.no_grad()
def fill_mask(model: BertForPretraining, tokenizer: WordTokenizer, text: str, k: int = 5
              ) -> list[list[tuple[str, float]]]:
    """The ``k`` most likely tokens, with their probabilities, at each [MASK] of ``text``."""
    ids = [CLS_ID] + tokenizer.encode(text)[: model.cfg.max_len - 2] + [SEP_ID]
    if MASK_ID not in ids:
        raise ValueError(f"{text!r} has no [MASK]: write [MASK] where a word should be predicted.")
    device = next(model.parameters()).device
    x = torch.tensor([ids], device=device)
    with eval_mode(model):
        h = model.encoder(x)[0]                                                   # (T, D)
        probs = model.mlm_logits(h[x[0] == MASK_ID]).float().softmax(-1)         # (n_masks, V)
    top = probs.topk(k, dim=-1)
    return [[(tokenizer.vocab[i], float(p)) for p, i in zip(ps.tolist(), ix.tolist())]
            for ps, ix in zip(top.values, top.indices)]


@torch.no_grad()
def attention_maps(encoder: BertEncoder, input_ids: torch.Tensor, segment_ids: torch.Tensor | None = None
                   ) -> torch.Tensor:
    """The attention weights of every layer and head for one sequence: (L, H, T, T), on the CPU."""
    device = next(encoder.parameters()).device
    segment_ids = None if segment_ids is None else segment_ids[None].to(device)
    with eval_mode(encoder):
        _, maps = encoder(input_ids[None].to(device), segment_ids, return_attention=True)
    return torch.stack([m[0].float().cpu() for m in maps])


# ----------------------------------------------------------------------------------------------
# Self-checks of the lab's exercises
# ----------------------------------------------------------------------------------------------

def masking_report(mask_fn: Callable, vocab_size: int = 1000, shape: tuple[int, int] = (512, 256),
                   seed: int = 0) -> dict[str, float]:
    """Run ``mask_fn(ids, vocab_size)`` on a large batch with special tokens and padding, and measure
    what an 80/10/10 rule must give: the fraction of real tokens chosen, the [MASK]/random/kept
    split of the chosen ones, and whether any special token was chosen or any unchosen one changed."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(N_SPECIAL, vocab_size, shape, generator=g)
    lengths = torch.randint(shape[1] // 4, shape[1] + 1, (shape[0],), generator=g)
    ids[torch.arange(shape[1])[None, :] >= lengths[:, None]] = PAD_ID             # padding at the end
    ids[:, 0] = CLS_ID
    ids[torch.arange(shape[0]), lengths - 1] = SEP_ID
    ids[torch.rand(shape, generator=g) < 0.03] = UNK_ID                           # a few unknown words
    ids[:, 0] = CLS_ID
    before = ids.clone()
    with torch.random.fork_rng(devices=[]):          # the same draws every time, the caller's RNG untouched
        torch.manual_seed(seed)
        out = mask_fn(ids, vocab_size)
    if not (isinstance(out, tuple) and len(out) == 2):
        raise TypeError(f"expected mask_fn to return (inputs, labels), got {type(out).__name__}.")
    inputs, labels = out
    chosen = labels != IGNORE_INDEX
    real = ids >= N_SPECIAL
    n_chosen = max(int(chosen.sum()), 1)
    return {
        "n_tokens": ids.numel(),
        "input_unchanged": bool(torch.equal(ids, before)),
        "shapes_ok": inputs.shape == ids.shape and labels.shape == ids.shape,
        "chosen_fraction": float(chosen.sum() / real.sum()),
        "mask_fraction": float((chosen & (inputs == MASK_ID)).sum()) / n_chosen,
        "random_fraction": float((chosen & (inputs != MASK_ID) & (inputs != ids)).sum()) / n_chosen,
        "kept_fraction": float((chosen & (inputs == ids)).sum()) / n_chosen,
        "special_chosen": int((chosen & ~real).sum()),
        "labels_are_originals": bool(torch.equal(labels[chosen], ids[chosen])),
        "unchosen_changed": int((~chosen & (inputs != ids)).sum()),
        "random_ids_valid": bool(((inputs >= N_SPECIAL) | (inputs == ids) | (inputs == MASK_ID)).all()
                                 and (inputs < vocab_size).all()),
    }


def check_masking(mask_fn: Callable, mask_prob: float = 0.15) -> None:
    """The self-check of the masking exercise: prints ✓ lines or raises ``CheckFailed`` in words."""
    r = masking_report(mask_fn)
    check_true("mask_tokens returns inputs and labels shaped like input_ids, and leaves input_ids alone",
               r["shapes_ok"] and r["input_unchanged"],
               "return (inputs, labels) of the same shape as input_ids, and build new tensors instead of "
               "changing input_ids in place (input_ids.clone() or torch.where).")
    check_true("special tokens ([PAD], [CLS], [SEP], [UNK]) are never chosen", r["special_chosen"] == 0,
               f"{r['special_chosen']} special tokens were chosen: only ids >= N_SPECIAL may be masked.")
    check_true("labels hold the original ids at chosen positions and IGNORE_INDEX elsewhere",
               r["labels_are_originals"] and r["unchosen_changed"] == 0,
               f"labels must be the original token where chosen, IGNORE_INDEX ({IGNORE_INDEX}) elsewhere, and "
               f"unchosen inputs must not change ({r['unchosen_changed']} did).")
    check_true(f"about {mask_prob:.0%} of the real tokens are chosen",
               abs(r["chosen_fraction"] - mask_prob) < 0.01,
               f"{r['chosen_fraction']:.1%} of the real tokens were chosen, expected {mask_prob:.0%} ± 1%.")
    check_true("of the chosen tokens, about 80% become [MASK], 10% a random token and 10% stay",
               abs(r["mask_fraction"] - 0.8) < 0.02 and abs(r["random_fraction"] - 0.1) < 0.02
               and abs(r["kept_fraction"] - 0.1) < 0.02 and r["random_ids_valid"],
               f"got {r['mask_fraction']:.1%} [MASK], {r['random_fraction']:.1%} random, {r['kept_fraction']:.1%} "
               "kept (a random token may equal the original by chance, rarely); draw the random tokens "
               "from the non-special ids N_SPECIAL .. vocab_size - 1.")
