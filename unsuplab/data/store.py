"""The data files: a registry of checksummed files, a read-only local mirror, a download cache.

Every file the course reads is declared here, once, in :data:`REGISTRY`, with its size, its sha256 and
the upstream URL(s) it comes from: the files of the course's data mirror, and the few that are only
downloaded (:data:`ONLINE_ONLY`: text8 and WikiText-2). :func:`fetch` finds a file in this order:

1. the **mirror**: the folder named by the environment variable ``UNSUPLAB_DATA_MIRROR`` (a read-only
   copy of the files, laid out as ``<mirror>/mnist/t10k-images-idx3-ubyte.gz`` and so on). A mirror
   file is used in place, after its checksum is verified; nothing is ever written there.
2. the **cache**: ``$UNSUPLAB_DATA`` if set, else ``~/.cache/unsuplab``, same layout.
3. a **download** from each upstream URL in turn, into a ``.part`` file that is checked and only then
   renamed into the cache (so an interrupted download never looks finished).

If all three fail, :class:`DataUnavailableError` says what was tried and how to provide the file.
The loaders that read these files are in :mod:`unsuplab.data.images` and :mod:`unsuplab.data.text`.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import tempfile
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path

__all__ = ["MIRROR_ENV", "CACHE_ENV", "DataUnavailableError", "UnknownDataFileError", "DataIntegrityWarning",
           "RemoteFile", "TEXT8", "TEXT8_MEMBER_SHA256", "WIKITEXT2", "ONLINE_ONLY", "REGISTRY", "mirror_dir",
           "cache_dir", "fetch"]

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


# Files that are only downloaded: the corpora of chapters 8 and 9 that the data mirror does not hold.

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

#: Registered files that the course's offline data mirror does not hold (they are downloaded).
ONLINE_ONLY = (TEXT8.path, WIKITEXT2.path)

#: Every registered file, by its path: the mirror's files (``_FILES``), then the ones in :data:`ONLINE_ONLY`.
REGISTRY: dict[str, RemoteFile] = {
    **{path: RemoteFile(path, _upstream_urls(path), sha256, size, _provenance(path)) for path, size, sha256 in _FILES},
    TEXT8.path: TEXT8,
    WIKITEXT2.path: WIKITEXT2,
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


def fetch(path: str, *, download: bool = True, progress_bar: bool = False) -> Path:
    """Return a local, verified copy of a registered file: from the mirror, the cache, or upstream.

    ``path`` is a key of :data:`REGISTRY` such as ``"mnist/t10k-images-idx3-ubyte.gz"``.

    1. If ``$UNSUPLAB_DATA_MIRROR/<path>`` exists and its sha256 is right, it is returned as it is
       (never copied, never written to). A mirror file that fails its check is skipped with a
       :class:`DataIntegrityWarning`.
    2. If ``<cache>/<path>`` (see :func:`cache_dir`) is good, it is returned; a corrupt or truncated one
       is deleted with a warning and downloaded again.
    3. Otherwise (and only if ``download``) each URL of the entry is tried in turn: the bytes go to a
       ``.part`` file in the cache folder, are checked, and are then renamed into place atomically.

    ``progress_bar`` shows a progress bar while downloading. Checksums of files already verified in this
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
                _download(url, target, entry, progress_bar)
                return target
            except Exception as error:  # noqa: BLE001 - every failure is reported, the next URL tried
                tried.append(f"{url}: {type(error).__name__}: {error}")

    raise DataUnavailableError(_unavailable_message(entry, target, tried))


def _download(url: str, target: Path, entry: RemoteFile, progress_bar: bool) -> None:
    """Download ``url`` into a ``.part`` file next to ``target``, verify it, then rename it into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, part_name = tempfile.mkstemp(dir=target.parent, prefix=target.name + ".", suffix=".part")
    part = Path(part_name)
    try:
        digest = hashlib.sha256()
        request = urllib.request.Request(url, headers={"User-Agent": "unsuplab"})
        with os.fdopen(handle, "wb") as out, urllib.request.urlopen(request, timeout=60) as response:
            bar = None
            if progress_bar:
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
