"""unsuplab.data: the mirror is read and never written, checksums catch damaged files, downloads are
verified before they count, and the offline error says how to provide a file.

The fetch tests use a registry entry that the test makes (a small file served by a file:// URL), so
they need no network; the loader tests read the real data mirror named by UNSUPLAB_DATA_MIRROR
(CI and `make test` set it)."""

import gzip
import hashlib
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from unsuplab import data
from unsuplab.data import store

MIRROR = os.environ.get(data.MIRROR_ENV)
needs_mirror = pytest.mark.skipif(not MIRROR, reason="UNSUPLAB_DATA_MIRROR is not set (make test sets it)")

CONTENT = b"unsupervised " * 1000


def snapshot(folder: Path) -> dict:
    """Every file under ``folder`` with its bytes' sha256 and modification time."""
    return {p.relative_to(folder).as_posix(): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """A registered file ``test/sample.bin``, served from ``upstream/``, with an empty mirror and cache."""
    upstream = tmp_path / "upstream"
    upstream.mkdir()
    (upstream / "sample.bin").write_bytes(CONTENT)
    entry = data.RemoteFile("test/sample.bin", ((upstream / "sample.bin").as_uri(),),
                            hashlib.sha256(CONTENT).hexdigest(), len(CONTENT), "a test file")
    monkeypatch.setitem(data.REGISTRY, entry.path, entry)
    mirror, cache = tmp_path / "mirror", tmp_path / "cache"
    mirror.mkdir()
    monkeypatch.setenv(data.MIRROR_ENV, str(mirror))
    monkeypatch.setenv(data.CACHE_ENV, str(cache))
    store._HASHED.clear()
    return {"entry": entry, "upstream": upstream, "mirror": mirror, "cache": cache}


def put(folder: Path, content: bytes) -> Path:
    path = folder / "test" / "sample.bin"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def test_a_good_mirror_file_is_used_in_place_and_never_written(fake):
    in_mirror = put(fake["mirror"], CONTENT)
    before = snapshot(fake["mirror"])
    assert data.fetch("test/sample.bin") == in_mirror
    assert data.fetch("./test/sample.bin") == in_mirror  # same file, however it is written
    assert snapshot(fake["mirror"]) == before
    assert not fake["cache"].exists()  # nothing was downloaded or copied


def test_a_damaged_mirror_file_is_skipped_with_a_warning_and_left_alone(fake):
    put(fake["mirror"], CONTENT[:-1] + b"X")  # right size, wrong bytes
    before = snapshot(fake["mirror"])
    with pytest.warns(data.DataIntegrityWarning, match="does not match the registry"):
        path = data.fetch("test/sample.bin")
    assert path == fake["cache"] / "test" / "sample.bin" and path.read_bytes() == CONTENT
    assert snapshot(fake["mirror"]) == before


def test_download_goes_to_the_cache_and_is_then_reused(fake):
    path = data.fetch("test/sample.bin")
    assert path == fake["cache"] / "test" / "sample.bin" and path.read_bytes() == CONTENT
    assert list(path.parent.glob("*.part")) == []
    (fake["upstream"] / "sample.bin").unlink()  # upstream gone: the verified cache copy is enough
    assert data.fetch("test/sample.bin") == path


@pytest.mark.parametrize("damage", [lambda b: b[:100], lambda b: b[:-1] + b"?"], ids=["truncated", "corrupt"])
def test_a_damaged_cache_file_is_detected_deleted_and_fetched_again(fake, damage):
    cached = put(fake["cache"], damage(CONTENT))
    with pytest.warns(data.DataIntegrityWarning, match="corrupt or truncated .*downloading again"):
        path = data.fetch("test/sample.bin")
    assert path == cached and path.read_bytes() == CONTENT


def test_a_bad_download_is_rejected_and_leaves_nothing_behind(fake):
    (fake["upstream"] / "sample.bin").write_bytes(CONTENT[:-5])  # upstream serves a truncated copy
    with pytest.raises(data.DataUnavailableError, match="downloaded 12,995 bytes"):
        data.fetch("test/sample.bin")
    folder = fake["cache"] / "test"
    assert not (folder / "sample.bin").exists() and list(folder.glob("*")) == []


def test_offline_with_nothing_cached_names_the_file_the_url_and_both_ways(fake, monkeypatch):
    monkeypatch.delenv(data.MIRROR_ENV)
    (fake["upstream"] / "sample.bin").unlink()
    with pytest.raises(data.DataUnavailableError) as err:
        data.fetch("test/sample.bin")
    message = str(err.value)
    assert "test/sample.bin" in message and fake["entry"].urls[0] in message
    assert f"set the environment variable {data.MIRROR_ENV}" in message
    assert f"save it as {fake['cache'] / 'test' / 'sample.bin'}" in message
    assert f"mirror: {data.MIRROR_ENV} is not set" in message


def test_download_false_does_not_touch_the_network(fake):
    with pytest.raises(data.DataUnavailableError, match=r"not attempted \(download=False\)"):
        data.fetch("test/sample.bin", download=False)


def test_a_cache_that_is_the_mirror_is_never_written(fake, monkeypatch):
    monkeypatch.setenv(data.CACHE_ENV, str(fake["mirror"]))
    with pytest.raises(data.DataUnavailableError, match="names the mirror folder .* never written to"):
        data.fetch("test/sample.bin")
    assert snapshot(fake["mirror"]) == {}


def test_a_corrupt_file_in_a_read_only_cache_names_the_file_the_folder_and_the_fixes(fake, monkeypatch):
    cached = put(fake["cache"], CONTENT[:100])
    unlink = Path.unlink

    def read_only(path, *args, **kwargs):  # the tests may run as root, who can delete anything
        if Path(path) == cached:
            raise PermissionError(13, "Permission denied", str(path))
        return unlink(path, *args, **kwargs)

    monkeypatch.setattr(Path, "unlink", read_only)
    with pytest.warns(data.DataIntegrityWarning), pytest.raises(data.DataUnavailableError) as err:
        data.fetch("test/sample.bin")
    message = str(err.value)
    assert f"{cached} is corrupt or truncated" in message and "cannot be deleted" in message
    assert f"folder {cached.parent}" in message and "PermissionError" in message
    assert f"set {data.CACHE_ENV} to a folder you can write" in message and data.MIRROR_ENV in message


def test_read_text_with_a_huge_max_chars_reads_what_there_is(fake, monkeypatch):
    text = "First Citizen: before we proceed any further, hear me speak.\n" * 50
    (fake["upstream"] / "tiny.txt").write_text(text)
    entry = data.RemoteFile("text/tiny.txt", ((fake["upstream"] / "tiny.txt").as_uri(),),
                            hashlib.sha256(text.encode()).hexdigest(), len(text.encode()), "a test text")
    monkeypatch.setitem(data.REGISTRY, entry.path, entry)
    assert data.read_text("tiny", max_chars=10**15) == text  # no 10**15-character buffer
    assert data.read_text("tiny", max_chars=14) == "First Citizen:"
    assert data.read_text("tiny", max_chars=0) == ""


def test_unknown_names_get_suggestions():
    with pytest.raises(data.UnknownDataFileError, match="did you mean 'mnist/t10k-images-idx3-ubyte.gz'"):
        data.fetch("t10k-images-idx3-ubyte.gz")
    with pytest.raises(KeyError):  # also catchable as a KeyError
        data.fetch("mnist/nothing-like-this")


def test_every_registered_file_has_a_source_and_a_checksum():
    for path, entry in data.REGISTRY.items():
        assert entry.path == path and len(entry.sha256) == 64 and entry.size > 0
        assert entry.urls or "Packaged by this course" in entry.note, path
        assert all(u.startswith("https://") or u.startswith("http://yann.lecun.com") for u in entry.urls)
        assert entry.note, f"{path} does not say where it comes from and under which terms"


@needs_mirror
def test_the_registry_agrees_with_the_mirror_manifest():
    rows = (Path(MIRROR) / "MANIFEST.tsv").read_text().splitlines()[1:]
    manifest = {p: (int(n), h) for p, n, h in (row.split("\t") for row in rows)}
    registry = {p: (e.size, e.sha256) for p, e in data.REGISTRY.items() if p not in data.ONLINE_ONLY}
    assert registry == manifest
    assert all(data.REGISTRY[p].urls and p not in manifest for p in data.ONLINE_ONLY)  # downloaded only


def test_every_file_is_registered_once_in_the_store():
    # The mirror's files, then the downloaded-only ones, declared in store.py: no module adds to the
    # registry later, so reading store.py tells which files exist.
    assert list(data.REGISTRY) == [path for path, _, _ in store._FILES] + list(data.ONLINE_ONLY)
    assert data.REGISTRY[data.TEXT8.path] is data.TEXT8 and data.REGISTRY[data.WIKITEXT2.path] is data.WIKITEXT2
    writes = re.compile(r"^\s*(REGISTRY\[.*\]\s*=|REGISTRY\.(update|setdefault)\(|ONLINE_ONLY\s*=)", re.M)
    for file in Path(data.__file__).parent.glob("*.py"):
        found = writes.findall(file.read_text())
        assert len(found) == (1 if file.name == "store.py" else 0), f"{file.name} writes the registry: {found}"


def test_read_idx_rejects_truncated_and_foreign_files(tmp_path):
    good = b"\x00\x00\x08\x01" + (3).to_bytes(4, "big") + bytes([1, 2, 3])
    (tmp_path / "labels.gz").write_bytes(gzip.compress(good))
    assert data.read_idx(tmp_path / "labels.gz").tolist() == [1, 2, 3]
    (tmp_path / "short").write_bytes(good[:-1])
    with pytest.raises(ValueError, match="truncated or corrupt; delete it and fetch it again"):
        data.read_idx(tmp_path / "short")
    (tmp_path / "other").write_bytes(b"PK\x03\x04rest")
    with pytest.raises(ValueError, match="magic number is 504b0304"):
        data.read_idx(tmp_path / "other")
    (tmp_path / "bad.gz").write_bytes(b"\x1f\x8b" + b"garbage")
    with pytest.raises(ValueError, match="not a valid gzip file"):
        data.read_idx(tmp_path / "bad.gz")


@needs_mirror
def test_mnist_from_the_mirror():
    x, y = data.mnist("test", n=100)
    assert x.shape == (100, 1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert 0.0 <= float(x.min()) and float(x.max()) == 1.0
    assert y[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]  # the official first test labels
    x_all, y_all = data.mnist("train")
    assert x_all.shape == (60_000, 1, 28, 28) and torch.bincount(y_all).tolist()[1] == 6742
    with pytest.raises(ValueError, match="n=70,000 is larger than the MNIST test split"):
        data.mnist("test", n=70_000)
    with pytest.raises(ValueError, match="split must be 'train'"):
        data.mnist("validation")


@needs_mirror
def test_mnist_dataset_behaves_like_torchvisions():
    from torchvision.transforms import ToTensor

    ds = data.MNIST(train=False, transform=ToTensor(), n=20)
    image, label = ds[0]
    assert len(ds) == 20 and image.shape == (1, 28, 28) and label == 7
    assert ds.data.dtype == torch.uint8 and ds.class_to_idx["7 - seven"] == 7
    x, _ = data.mnist("test", n=1)
    torch.testing.assert_close(image, x[0])


def test_digits_and_natural_images_load_offline():
    x, y = data.digits()
    assert x.shape == (1797, 64) and x.dtype == np.float32 and 0 <= x.min() and x.max() == 1.0
    assert sorted(set(y.tolist())) == list(range(10))
    images = data.natural_images(["camera", "astronaut"])
    assert [im.shape for im in images] == [(512, 512), (512, 512)] and images[1].dtype == np.float32
    with pytest.raises(ValueError, match="did you mean 'camera'"):
        data.natural_images(["camara"])


def test_image_patches_are_reproducible_and_checked():
    p = data.image_patches(8, n=500, seed=3)
    assert p.shape == (500, 64) and p.dtype == np.float32
    np.testing.assert_allclose(p.mean(1), 0, atol=1e-5)  # each patch has its mean removed
    np.testing.assert_array_equal(p, data.image_patches(8, n=500, seed=3))
    image = np.arange(100, dtype=np.float32).reshape(10, 10)
    raw = data.image_patches(3, n=50, images=[image], remove_mean=False)
    # every patch is a real 3x3 window: rows step by 10, columns by 1
    windows = raw.reshape(50, 3, 3)
    np.testing.assert_array_equal(np.diff(windows, axis=1), 10)
    np.testing.assert_array_equal(np.diff(windows, axis=2), 1)
    with pytest.raises(ValueError, match="expected a 2-D greyscale"):
        data.image_patches(8, n=5, images=[np.zeros((16, 16, 3))])
    with pytest.raises(ValueError, match="patch_size=20 does not fit"):
        data.image_patches(20, n=5, images=[image])


@needs_mirror
def test_text_sets_from_the_mirror():
    en, fr = data.multi30k("train", "en"), data.multi30k("train", "fr")
    assert len(en) == len(fr) == 29_000
    assert len(data.multi30k("test_2016_flickr", "de")) == 1_000
    with pytest.raises(ValueError, match="has no 'cs' side for split 'test_2017_flickr'"):
        data.multi30k("test_2017_flickr", "cs")
    sections = data.word_analogies()
    assert len(sections) == 14 and sum(map(len, sections.values())) == 19_544
    assert sections["capital-common-countries"][0] == ("Athens", "Greece", "Baghdad", "Iraq")
    ws = data.word_similarity("EN-WS-353-ALL")
    assert len(ws) == 353 and all(isinstance(s, float) for _, _, s in ws)
    with pytest.raises(ValueError, match="is an analogy set"):
        data.word_similarity("questions-words")
    pairs = data.bilingual_dictionary("muse.en-de.5000-6500")
    assert len(pairs) == 3_775 and len({s for s, _ in pairs}) == 1_500
    assert data.read_text("tinyshakespeare", max_chars=14) == "First Citizen:"


# ----------------------------------------------------------------------------------------------- WikiText-2

WIKITEXT_TRAIN = """ = Valkyria Chronicles III = 

 Senjō no Valkyria 3 is a tactical role @-@ playing game . It sold 1 @,@ 000 copies in 2 @.@ 5 days . 

 = = Gameplay = = 

 The game plays like its predecessors . 

 = = = Characters = = = 

 Squad 422 fights the war . 
 Another paragraph . 

 = Tower Building = 

 The Tower Building is in Little Rock . 

 = = History = = 

 It was built in 1958 . 
"""


@pytest.fixture
def wikitext_zip(tmp_path, monkeypatch):
    """A small zip laid out like WikiText-2 raw, registered under WikiText-2's path with a file:// URL."""
    import zipfile

    upstream = tmp_path / "upstream" / "wikitext-2-raw-v1.zip"
    upstream.parent.mkdir()
    with zipfile.ZipFile(upstream, "w") as archive:
        archive.writestr("wikitext-2-raw/wiki.train.raw", WIKITEXT_TRAIN)
        archive.writestr("wikitext-2-raw/wiki.valid.raw", " = Only = \n\n One line . \n")
        archive.writestr("wikitext-2-raw/wiki.test.raw", "")
    content = upstream.read_bytes()
    entry = data.RemoteFile(data.WIKITEXT2.path, (upstream.as_uri(),), hashlib.sha256(content).hexdigest(),
                            len(content), "a fake WikiText-2")
    monkeypatch.setitem(data.REGISTRY, entry.path, entry)
    monkeypatch.setattr(data.text, "WIKITEXT2", entry)   # where wikitext2 and text_corpus_source look it up
    mirror, cache = tmp_path / "mirror", tmp_path / "cache"
    mirror.mkdir()
    monkeypatch.setenv(data.MIRROR_ENV, str(mirror))
    monkeypatch.setenv(data.CACHE_ENV, str(cache))
    store._HASHED.clear()
    return {"mirror": mirror, "cache": cache}


def test_wikitext2_is_registered_as_downloaded_only():
    entry = data.REGISTRY["wikitext/wikitext-2-raw-v1.zip"]
    assert entry.size == 4_721_645 and entry.sha256.startswith("ef7edb566e3e")
    assert entry.urls[0].startswith("https://huggingface.co/") and entry.urls[1].startswith("https://s3.")
    assert "Merity" in entry.note and "CC BY-SA 3.0" in entry.note
    assert entry.path in data.ONLINE_ONLY


def test_wikitext2_keeps_articles_and_sections(wikitext_zip):
    articles = data.wikitext2("train")
    assert [title for title, _ in articles] == ["Valkyria Chronicles III", "Tower Building"]
    title, lines = articles[0]
    assert lines == [
        (None, "Senjō no Valkyria 3 is a tactical role-playing game . It sold 1,000 copies in 2.5 days ."),
        ("Gameplay", "Gameplay"),
        ("Gameplay", "The game plays like its predecessors ."),
        ("Characters", "Characters"),
        ("Characters", "Squad 422 fights the war ."),
        ("Characters", "Another paragraph ."),
    ]
    assert articles[1][1] == [(None, "The Tower Building is in Little Rock ."), ("History", "History"),
                              ("History", "It was built in 1958 .")]
    raw = data.wikitext2("train", join_at_marks=False)
    assert "role @-@ playing" in raw[0][1][0][1]
    assert data.wikitext2("valid") == [("Only", [(None, "One line .")])]
    assert data.wikitext2("test") == []
    with pytest.raises(ValueError, match="split must be one of train, valid, test"):
        data.wikitext2("validation")
    # the download went to the cache, never to the mirror
    assert (wikitext_zip["cache"] / "wikitext" / "wikitext-2-raw-v1.zip").is_file()
    assert not any(wikitext_zip["mirror"].iterdir())


def test_text_corpus_source_prefers_the_mirror_offline_and_wikitext_once_cached(wikitext_zip, monkeypatch):
    monkeypatch.setenv(data.MIRROR_ENV, str(wikitext_zip["mirror"]))
    assert data.text_corpus_source() == "wikitext-2"          # no mirror copy of enwiki-17M: download
    (wikitext_zip["mirror"] / "text").mkdir()
    (wikitext_zip["mirror"] / "text" / "enwiki-17M.txt.xz").write_bytes(b"")
    assert data.text_corpus_source() == "enwiki-17M"          # a mirror: offline, use what it has
    data.wikitext2("valid")                                   # now downloaded into the cache
    assert data.text_corpus_source("auto") == "wikitext-2"
    assert data.text_corpus_source("enwiki-17M") == "enwiki-17M"
    assert set(data.TEXT_CORPUS_DESCRIPTIONS) == {"wikitext-2", "enwiki-17M"}
    with pytest.raises(ValueError, match="source must be 'auto'"):
        data.text_corpus_source("text8")
