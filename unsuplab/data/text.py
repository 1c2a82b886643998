"""Text sets: Multi30k, word analogies and similarity, bilingual dictionaries, corpora, Wikipedia.

For the word-embedding, BERT and translation chapters: parallel captions (:func:`multi30k`), the
sets that evaluate word vectors (:func:`word_analogies`, :func:`word_similarity`) and word
translations (:func:`bilingual_dictionary`), corpora and their words (:func:`read_text`,
:func:`tokenize`, :func:`corpus_tokens`), WikiText-2 (:func:`wikitext2`), and Wikipedia articles
cut into sections, whose headings label paragraphs for a few-label task (:func:`section_dataset`,
:func:`few_labels_split`). Every file is one of the registry's, found by
:func:`~unsuplab.data.store.fetch` (mirror, cache or download); each loader says where its text
comes from and its licence.
"""

from __future__ import annotations

import difflib
import gzip
import lzma
import re
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .store import (REGISTRY, TEXT8, WIKITEXT2, DataIntegrityWarning, DataUnavailableError, _check, cache_dir,
                    fetch, mirror_dir)

__all__ = ["MULTI30K_SPLITS", "MULTI30K_LANGS", "multi30k", "word_analogies", "word_similarity",
           "bilingual_dictionary", "text_file", "read_text", "CORPORA", "tokenize", "corpus_tokens",
           "english_corpus", "WIKITEXT2_SPLITS", "wikitext2", "text_corpus_source", "TEXT_CORPUS_DESCRIPTIONS",
           "Article", "wiki_articles", "split_articles", "SECTION_CLASSES", "section_dataset",
           "frequent_sections", "corpus_articles", "few_labels_split"]


# ----------------------------------------------------------------------------------------------
# Text sets for the word-embedding and translation chapters
# ----------------------------------------------------------------------------------------------

MULTI30K_SPLITS = ("train", "val", "test_2016_flickr", "test_2017_flickr", "test_2017_mscoco",
                   "test_2018_flickr")
MULTI30K_LANGS = ("en", "de", "fr", "cs")


def _lines(text: str) -> list[str]:
    """Split on newlines only (not on the rarer Unicode separators), dropping a final empty line and CRs."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.rstrip("\r") for line in lines]


def _named(name: str, folder: str, extensions: tuple[str, ...], what: str) -> str:
    """The registry path for a short name like 'EN-WS-353-ALL' (extension and folder optional)."""
    name = str(name).replace("\\", "/")
    base = name.rsplit("/", 1)[-1]
    for candidate in [base, *(base + ext for ext in extensions)]:
        if f"{folder}/{candidate}" in REGISTRY:
            return f"{folder}/{candidate}"
    known = [p[len(folder) + 1:] for p in REGISTRY if p.startswith(folder + "/")]
    known = sorted({k for k in known if k.endswith(extensions)} or set(known))
    stems = [_strip(k, extensions) for k in known]
    close = difflib.get_close_matches(_strip(base, extensions), stems, n=3)
    raise ValueError(
        f"{name!r} is not a known {what}"
        + (f" (did you mean {', '.join(map(repr, close))}?)" if close else "")
        + f"; choose from {', '.join(stems)}."
    )


def _strip(name: str, extensions: tuple[str, ...]) -> str:
    for ext in extensions:
        if name.endswith(ext):
            return name[: -len(ext)]
    return name


def multi30k(split: str, lang: str, *, download: bool = True) -> list[str]:
    """One side of Multi30k task 1: a list of captions, one per image, in file order.

    ``split`` is one of :data:`MULTI30K_SPLITS` (train 29,000, val 1,014, test_2016_flickr 1,000, ...);
    ``lang`` is ``"en"``, ``"de"``, ``"fr"`` or ``"cs"`` (not every split has every language: Czech has
    no 2017 tests). Line ``i`` of two languages of the same split translate each other.
    Source: github.com/multi30k/dataset (Elliott et al. 2016), raw text; Flickr30K terms
    (research and education use).
    """
    if split not in MULTI30K_SPLITS:
        raise ValueError(f"split must be one of {', '.join(MULTI30K_SPLITS)}, got {split!r}.")
    if lang not in MULTI30K_LANGS:
        raise ValueError(f"lang must be one of {', '.join(MULTI30K_LANGS)}, got {lang!r}.")
    path = f"multi30k/{split}.{lang}.gz"
    if path not in REGISTRY:
        have = [p.split(".")[-2] for p in REGISTRY if p.startswith(f"multi30k/{split}.")]
        raise ValueError(
            f"Multi30k has no {lang!r} side for split {split!r}: that split exists in "
            f"{', '.join(have)}; pick one of those languages or another split."
        )
    with gzip.open(fetch(path, download=download), "rt", encoding="utf-8") as f:
        return _lines(f.read())


def word_analogies(name: str = "questions-words", *, download: bool = True
                   ) -> dict[str, list[tuple[str, str, str, str]]]:
    """Analogy questions ``a : b :: c : d`` grouped by section, sections in file order.

    ``name`` is ``"questions-words"`` (19,544 questions in 14 sections, e.g. ``capital-common-countries``,
    ``gram3-comparative``) or ``"questions-phrases"``. Keys are the section names without the file's
    leading ``": "``; values are lists of 4-tuples of words, case as in the file.
    Source: Mikolov et al. (2013), the word2vec repository; Apache-2.0.
    """
    path = _named(name, "word-eval", (".txt",), "analogy set")
    if not path.rsplit("/", 1)[-1].startswith("questions-"):
        raise ValueError(f"{name!r} is a word-similarity set: use word_similarity({name!r}) for it, "
                         "or 'questions-words' / 'questions-phrases' here.")
    sections: dict[str, list[tuple[str, str, str, str]]] = {}
    current = None
    for number, line in enumerate(_lines(fetch(path, download=download).read_text("utf-8")), 1):
        if not line.strip():
            continue
        if line.startswith(":"):
            current = sections.setdefault(line[1:].strip(), [])
            continue
        words = line.split()
        if len(words) != 4 or current is None:
            raise ValueError(f"{path} line {number} is not a question of 4 words under a ': section' "
                             f"line: {line!r}; the file may be damaged, delete it and fetch it again.")
        current.append(tuple(words))
    return sections


def word_similarity(name: str = "EN-WS-353-ALL", *, download: bool = True) -> list[tuple[str, str, float]]:
    """A word-similarity set as ``(word1, word2, human score)`` triples in file order.

    ``name`` is a file of ``word-eval/`` without ``.txt``: EN-WS-353-ALL/-REL/-SIM, EN-SIMLEX-999,
    EN-MEN-TR-3k, EN-RW-STANFORD, EN-SimVerb-3500, EN-MC-30, EN-RG-65, EN-MTurk-287/-771, EN-VERB-143,
    EN-YP-130. Scales differ between sets (0-10, 0-4, 0-50 ...): compare rankings (Spearman), not values.
    Source: the collection of eval-word-vectors (Faruqui & Dyer 2014); cite each set's authors.
    """
    path = _named(name, "word-eval", (".txt",), "word-similarity set")
    if path.rsplit("/", 1)[-1].startswith("questions-"):
        raise ValueError(f"{name!r} is an analogy set: use word_analogies({name!r}) for it, "
                         "or a similarity set such as 'EN-WS-353-ALL' here.")
    triples = []
    for number, line in enumerate(_lines(fetch(path, download=download).read_text("utf-8")), 1):
        fields = line.split()
        if not fields:
            continue
        try:
            first, second, score = fields
            triples.append((first, second, float(score)))
        except ValueError:
            raise ValueError(f"{path} line {number} is not 'word word score': {line!r}; "
                             "the file may be damaged, delete it and fetch it again.") from None
    return triples


def bilingual_dictionary(name: str, *, download: bool = True) -> list[tuple[str, str]]:
    """A bilingual dictionary as ``(source word, target word)`` pairs in file order (a word may repeat).

    ``name`` is a file of ``dictionaries/`` without extension: the MUSE dictionaries
    ``muse.en-fr.full``, ``muse.en-de.full`` and the official test split ``muse.en-de.5000-6500``
    (Conneau et al. 2018, CC BY-NC 4.0; "src tgt" per line), or the xling-eval lexicons
    ``yacle.train.freq.{500,1k,3k,5k}.{en-de,en-fr}``, ``yacle.train.freq.5k.fr-en``,
    ``yacle.test.freq.2k.{en-de,en-fr,fr-en}`` (Glavaš et al. 2019; tab-separated).
    """
    path = _named(name, "dictionaries", (".txt", ".tsv"), "bilingual dictionary")
    separator = re.compile(r"\t") if path.endswith(".tsv") else re.compile(r"[ \t]+")
    pairs = []
    for number, line in enumerate(_lines(fetch(path, download=download).read_text("utf-8")), 1):
        if not line.strip():
            continue
        fields = separator.split(line.strip(" \t"))
        if len(fields) != 2:
            raise ValueError(f"{path} line {number} is not a 'source target' pair: {line!r}; "
                             "the file may be damaged, delete it and fetch it again.")
        pairs.append((fields[0], fields[1]))
    return pairs


def text_file(name: str, *, download: bool = True) -> Path:
    """The local path of a text corpus of ``text/``: tinyshakespeare, enwiki-17M, eltec-en/-fr/-de.

    ``.xz`` files are returned compressed (open them with ``lzma.open(path, "rt")`` or use
    :func:`read_text`). Sources and licences: see ``REGISTRY[path].note`` (tinyshakespeare: char-rnn,
    MIT; enwiki-17M: Wikipedia, CC BY-SA 3.0, a stand-in for text8; ELTeC novels: public domain).
    """
    return fetch(_named(name, "text", (".txt", ".txt.xz"), "text corpus"), download=download)


def read_text(name: str, max_chars: int | None = None, *, download: bool = True) -> str:
    """The text of a corpus of ``text/`` (see :func:`text_file`), decompressing ``.xz`` as it streams.

    ``max_chars`` stops after that many characters, so the start of a big corpus is cheap to read.
    """
    if max_chars is not None and (isinstance(max_chars, bool) or not isinstance(max_chars, (int, np.integer))
                                  or max_chars < 0):
        raise ValueError(f"max_chars must be a whole number >= 0 or None (everything), got {max_chars!r}.")
    path = text_file(name, download=download)
    opener = lzma.open if path.suffix == ".xz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        if max_chars is None:
            return f.read()
        parts, left = [], int(max_chars)
        while left > 0:  # in pieces: f.read(n) would set aside n characters first, however short the file
            part = f.read(min(left, 1 << 22))
            if not part:
                break
            parts.append(part)
            left -= len(part)
        return "".join(parts)


# ----------------------------------------------------------------------------------------------
# Corpora for word vectors (chapters 8 and 9): text8 online, the mirror's corpora offline, tokens
# ----------------------------------------------------------------------------------------------

# text8's zip is registered with the other files in store.py (TEXT8), as a file that is only downloaded.

#: Corpora that :func:`corpus_tokens` reads: text8 (online) and the text corpora of the mirror.
CORPORA = ("text8", "enwiki-17M", "eltec-en", "eltec-fr", "eltec-de", "tinyshakespeare")

# A word is a run of letters in any script (\w without digits and underscore): "l'été" gives l, été.
_WORD = re.compile(r"[^\W\d_]+")
_TRAILING_LETTERS = re.compile(r"[^\W\d_]*\Z")


def tokenize(text: str, lower: bool = True) -> list[str]:
    """Split text into words the way text8 was made: runs of letters, lower-cased, the rest dropped.

    Letters of every script count (``"Ça déjà"`` gives ``['ça', 'déjà']``), so the same function
    serves the English, French and German corpora; digits and punctuation separate words and are
    dropped (``"Don't panic, 42!"`` gives ``['don', 't', 'panic']``, as text8 has it).
    """
    if not isinstance(text, str):
        raise TypeError(f"tokenize expects a str, got {type(text).__name__}: decode bytes with .decode('utf-8') first.")
    return _WORD.findall(text.lower() if lower else text)


def _stream_tokens(read, max_words: int | None, lower: bool) -> list[str]:
    """Tokens from a text stream, read in growing blocks (64 K to 4 M characters) until ``max_words``.

    A word cut by a block boundary is carried over to the next block, so the result is exactly
    ``tokenize(whole text)[:max_words]``.
    """
    tokens: list[str] = []
    carry = ""
    block = 1 << 16
    while max_words is None or len(tokens) < max_words:
        piece = read(block)
        block = min(2 * block, 1 << 22)
        if not piece:
            tokens += tokenize(carry, lower)
            break
        piece = carry + piece
        cut = _TRAILING_LETTERS.search(piece).start()  # the last word may continue in the next block
        tokens += tokenize(piece[:cut], lower)
        carry = piece[cut:]
    return tokens if max_words is None else tokens[:max_words]


def corpus_tokens(name: str, max_words: int | None = None, *, lower: bool = True,
                  download: bool = True) -> list[str]:
    """The words of a corpus, in order, tokenised with :func:`tokenize` (the first ``max_words`` only).

    ``name`` is one of :data:`CORPORA`: ``"text8"`` (downloaded with its checksum when online; already
    lower-case letters, so tokenising it changes nothing), ``"enwiki-17M"`` (the mirror's English
    Wikipedia, an offline stand-in for text8, 17.0 M words), ``"eltec-en"``, ``"eltec-fr"``,
    ``"eltec-de"`` (novels, 1840-1920) or ``"tinyshakespeare"``. ``max_words`` stops reading early,
    so the start of a big corpus is cheap. Tokenising the whole of enwiki-17M takes about a minute.
    """
    if max_words is not None and (isinstance(max_words, bool) or not isinstance(max_words, (int, np.integer))
                                  or max_words < 1):
        raise ValueError(f"max_words must be a whole number >= 1 or None (everything), got {max_words!r}.")
    if name == "text8":
        import io
        import zipfile

        with zipfile.ZipFile(fetch(TEXT8.path, download=download, progress_bar=True)) as archive, \
                io.TextIOWrapper(archive.open("text8"), encoding="ascii") as f:
            return _stream_tokens(f.read, max_words, lower)
    if name not in CORPORA:
        close = difflib.get_close_matches(str(name), CORPORA, n=3)
        raise ValueError(f"{name!r} is not a corpus" + (f" (did you mean {', '.join(map(repr, close))}?)" if close else "")
                         + f"; choose from {', '.join(CORPORA)}.")
    path = text_file(name, download=download)
    opener = lzma.open if path.suffix == ".xz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        return _stream_tokens(f.read, max_words, lower)


def _at_hand(path: str) -> bool:
    """Whether a registered file is in the mirror or the cache already (nothing is downloaded)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DataIntegrityWarning)
            fetch(path, download=False)
        return True
    except DataUnavailableError:
        return False


def english_corpus(*, download: bool = True) -> str:
    """The English corpus to train word vectors on: ``"text8"`` when possible, else ``"enwiki-17M"``.

    In order: text8 if it is already in the mirror or the cache; enwiki-17M if it is in the mirror or
    the cache (the offline stand-in: say so next to every result, a result on it is not a text8
    result); otherwise text8, downloaded (about 31 MB, checked against its sha256).
    """
    if _at_hand(TEXT8.path):
        return "text8"
    if _at_hand("text/enwiki-17M.txt.xz"):
        return "enwiki-17M"
    fetch(TEXT8.path, download=download, progress_bar=True)  # raises DataUnavailableError with the ways out
    return "text8"


# ----------------------------------------------------------------------------------------------
# WikiText-2 (chapter 8, BERT): Wikipedia articles with their titles and section headings
# ----------------------------------------------------------------------------------------------

# WikiText-2's zip is registered with the other files in store.py (WIKITEXT2), as a file that is only
# downloaded.

WIKITEXT2_SPLITS = ("train", "valid", "test")
# " = Title = " starts an article; " = = Heading = = " (or deeper, " = = = ... = = = ") a section.
_WIKITEXT_HEADING = re.compile(r"^(=(?: =)*) (.+?) (=(?: =)*)$")
# WikiText writes a hyphen, comma or point inside a word or number as " @-@ ", " @,@ ", " @.@ ".
_WIKITEXT_AT = re.compile(r" @([-,.])@ ")


def wikitext2(split: str = "train", *, join_at_marks: bool = True, download: bool = True
              ) -> list[tuple[str, list[tuple[str | None, str]]]]:
    """The articles of one split of WikiText-2 (raw), their titles and sections kept.

    Returns a list of ``(title, lines)``, one per article in file order; ``lines`` holds
    ``(heading, text)`` for each paragraph and each section heading, in order, where ``heading`` is
    the nearest section heading above (None before the first) and a heading line itself appears with
    ``text == heading``. In the file, ``" = Title = "`` starts an article and ``" = = Heading = = "``
    (``" = = = Sub = = = "`` for a subsection) a section; empty lines are dropped. Sentence-pair
    tasks need this structure: a next sentence must come from the same article.

    ``split`` is ``"train"`` (600 articles), ``"valid"`` or ``"test"`` (60 each). With
    ``join_at_marks`` (the default), WikiText's marks ``" @-@ "``, ``" @,@ "``, ``" @.@ "`` are joined
    back (``"1 @,@ 000"`` becomes ``"1,000"``); the text is otherwise as in the file (tokens separated
    by spaces). Source: Merity et al. (2017); Wikipedia text, CC BY-SA 3.0. The zip is not in the
    course's data mirror: it is downloaded (4.7 MB) when online, and :class:`DataUnavailableError`
    says so when it cannot be.
    """
    import zipfile

    if split not in WIKITEXT2_SPLITS:
        raise ValueError(f"split must be one of {', '.join(WIKITEXT2_SPLITS)}, got {split!r}.")
    member = f"wikitext-2-raw/wiki.{split}.raw"
    with zipfile.ZipFile(fetch(WIKITEXT2.path, download=download)) as archive:
        try:
            text = archive.read(member).decode("utf-8")
        except KeyError:
            raise ValueError(f"{WIKITEXT2.path} has no member {member!r} (it has "
                             f"{', '.join(archive.namelist()[:5])}): the file may be damaged, delete it "
                             "and fetch it again.") from None
    articles: list[tuple[str, list[tuple[str | None, str]]]] = []
    heading: str | None = None
    for line in _lines(text):
        line = line.strip()
        if not line:
            continue
        if join_at_marks:
            line = _WIKITEXT_AT.sub(r"\1", line)
        match = _WIKITEXT_HEADING.match(line)
        if match and match.group(1) == match.group(3):
            level, name = match.group(1).count("="), match.group(2).strip()
            if level == 1:
                articles.append((name, []))
                heading = None
                continue
            heading = name
        if not articles:  # text before the first title belongs to no article
            continue
        articles[-1][1].append((heading, line if match is None else name))
    return articles


def text_corpus_source(source: str = "auto") -> str:
    """Which Wikipedia corpus a chapter pretrains on: ``"wikitext-2"`` or ``"enwiki-17M"``.

    ``"auto"`` picks, without touching the network: WikiText-2 if it is already in the cache; else
    enwiki-17M if the data mirror (``$UNSUPLAB_DATA_MIRROR``, which means an offline machine) holds
    it; else WikiText-2, which :func:`wikitext2` then downloads. enwiki-17M is packaged by the course
    (no upstream file) and stands in for WikiText-2 offline: a result on it is not a result on
    WikiText-2. ``TEXT_CORPUS_DESCRIPTIONS[source]`` says in words what the chosen corpus is.
    """
    source = str(source).strip()
    if source in TEXT_CORPUS_DESCRIPTIONS:
        return source
    if source != "auto":
        raise ValueError(f"source must be 'auto', 'wikitext-2' (downloaded) or 'enwiki-17M' (the data "
                         f"mirror's Wikipedia text), got {source!r}.")
    cached = cache_dir() / WIKITEXT2.path
    if cached.is_file() and _check(cached, WIKITEXT2) is None:
        return "wikitext-2"
    mirror = mirror_dir()
    if mirror is not None and (mirror / "text/enwiki-17M.txt.xz").is_file():
        return "enwiki-17M"
    return "wikitext-2"


#: What each corpus of :func:`text_corpus_source` is, in words: print it next to every result.
TEXT_CORPUS_DESCRIPTIONS = {
    "wikitext-2": "WikiText-2 (raw; Merity et al. 2017): 720 Good and Featured Wikipedia articles",
    "enwiki-17M": ("enwiki-17M (the course mirror's 17 M words of 2015 English Wikipedia; an offline "
                   "stand-in, not WikiText-2)"),
}


# ----------------------------------------------------------------------------------------------
# Wikipedia articles and their sections (chapter 8, BERT's pretraining text and downstream task)
# ----------------------------------------------------------------------------------------------

@dataclass
class Article:
    """One Wikipedia article: its ``title`` and its ``lines`` as ``(section heading or None, text)``;
    a heading line itself appears with ``text == heading``."""

    title: str
    lines: list[tuple[str | None, str]]


def _is_heading(line: str) -> bool:
    # WikiExtractor writes a section heading as a short line ending in its only full stop: "Climate."
    return line.endswith(".") and line.count(".") == 1 and 0 < line.count(" ") + 1 <= 6


def wiki_articles(text: str) -> list[Article]:
    """Split WikiExtractor output (one paragraph a line, as in ``enwiki-17M``) into articles.

    A title is a short line (at most 10 words) without a final full stop whose next line, a long
    paragraph, starts with the title's first word (``"Anarchism"`` then ``"Anarchism is a ..."``); a
    section heading is a line of at most 6 words ending in its only full stop (``"Early life."``).
    Lines before the first title are dropped. The rule is a heuristic: a missed title merges two
    articles, which only makes a held-out unit bigger.
    """
    lines = text.split("\n")
    articles: list[Article] = []
    heading: str | None = None
    for i, line in enumerate(lines):
        line = line.strip()
        if not line:
            continue
        following = lines[i + 1] if i + 1 < len(lines) else ""
        first = line.split(" ", 1)[0].lower()
        if (not line.endswith(".") and line.count(" ") < 10 and following.count(" ") >= 8
                and following[: len(first)].lower() == first):
            articles.append(Article(line, []))
            heading = None
        elif not articles:
            continue
        elif _is_heading(line):
            heading = line
            articles[-1].lines.append((heading, line))
        else:
            articles[-1].lines.append((heading, line))
    return [a for a in articles if a.lines]


def split_articles(articles: Sequence[Article], holdout_every: int = 4) -> tuple[list[Article], list[Article]]:
    """(pretraining, held-out) articles: every ``holdout_every``-th article is held out, so the
    held-out text is spread over the whole corpus and never seen in pretraining."""
    if holdout_every < 2:
        raise ValueError(f"holdout_every must be at least 2 (hold out one article in that many), got {holdout_every}.")
    held = [a for i, a in enumerate(articles) if i % holdout_every == holdout_every - 1]
    kept = [a for i, a in enumerate(articles) if i % holdout_every != holdout_every - 1]
    return kept, held


# The downstream task: which section of an article does a paragraph come from? Heading -> class.
SECTION_CLASSES = {
    "early life": ("Early life.", "Early life and education.", "Early years."),
    "etymology": ("Etymology.",),
    "economy": ("Economy.",),
    "climate": ("Climate.",),
    "religion": ("Religion.",),
    "sports": ("Sports.", "Sport."),
}


def section_dataset(articles: Sequence[Article], classes: dict[str, Sequence[str]] | None = None,
                    min_words: int = 20) -> tuple[list[str], torch.Tensor, list[str]]:
    """Paragraphs labelled by the section they come from: ``(texts, labels (N,), class names)``.

    A paragraph of at least ``min_words`` words whose nearest heading above it is one of a class's
    headings (``SECTION_CLASSES`` by default: early life, etymology, economy, climate, religion,
    sports) gets that class; the heading itself is not part of the text. The labels were written by
    Wikipedia's editors when they organised the articles, not by us.
    """
    classes = SECTION_CLASSES if classes is None else classes
    names = list(classes)
    # "Climate." (WikiExtractor) and "Climate" (WikiText) are the same heading
    by_heading = {h.rstrip("."): c for c, name in enumerate(names) for h in classes[name]}
    texts, labels = [], []
    for article in articles:
        for heading, line in article.lines:
            c = None if heading is None else by_heading.get(heading.rstrip("."))
            if c is not None and line != heading and line.count(" ") + 1 >= min_words:
                texts.append(line)
                labels.append(c)
    return texts, torch.tensor(labels, dtype=torch.long), names


def frequent_sections(articles: Sequence[Article], n_classes: int = 6, min_count: int = 50,
                      min_words: int = 20) -> dict[str, tuple[str]]:
    """The ``n_classes`` section headings with the most paragraphs (of at least ``min_words`` words)
    in ``articles``, each with at least ``min_count``: classes for :func:`section_dataset` on a corpus
    whose headings nobody picked by hand (WikiText-2's Good articles have "Reception", "Plot", ...)."""
    counts: Counter = Counter(heading.rstrip(".") for article in articles for heading, line in article.lines
                              if heading is not None and line != heading and line.count(" ") + 1 >= min_words)
    top = [(h, n) for h, n in sorted(counts.items(), key=lambda hn: (-hn[1], hn[0])) if n >= min_count][:n_classes]
    if len(top) < 2:
        raise ValueError(f"fewer than 2 section headings have {min_count} paragraphs or more (the most frequent: "
                         f"{counts.most_common(3)}): hold out more articles or ask for fewer labels.")
    return {h.lower(): (h,) for h, _ in top}


def corpus_articles(corpus: str, max_chars: int | None = None) -> list[Article]:
    """The articles of a Wikipedia corpus of :func:`text_corpus_source`, in file order.

    ``"enwiki-17M"``: the mirror's text cut into articles by :func:`wiki_articles` (its first
    ``max_chars`` characters; None: all). ``"wikitext-2"``: the train, valid and test articles of
    WikiText-2 (:func:`wikitext2`, downloaded when online), ``max_chars`` ignored.
    """
    corpus = text_corpus_source(corpus)
    if corpus == "wikitext-2":
        return [Article(title, lines) for split in WIKITEXT2_SPLITS for title, lines in wikitext2(split) if lines]
    return wiki_articles(read_text(corpus, max_chars=max_chars))


def few_labels_split(labels: torch.Tensor, n_train_per_class: int, n_test_per_class: int | None = None,
                     seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (train, test): ``n_train_per_class`` random examples of each class for training and,
    of the rest, up to ``n_test_per_class`` per class (all when None, a balanced test when set)."""
    g = torch.Generator().manual_seed(seed)
    train, test = [], []
    for c in labels.unique().tolist():
        index = torch.nonzero(labels == c).flatten()
        index = index[torch.randperm(len(index), generator=g)]
        if len(index) <= n_train_per_class:
            raise ValueError(f"class {c} has only {len(index)} examples, not enough for {n_train_per_class} "
                             "training labels and a test set: read more of the corpus or ask for fewer labels.")
        train.append(index[:n_train_per_class])
        rest = index[n_train_per_class:]
        test.append(rest if n_test_per_class is None else rest[:n_test_per_class])
    return torch.cat(train).sort().values, torch.cat(test).sort().values
