"""Pictures a reader would rather look at than read: image grids, training curves, 2-D embeddings,
named curves, and sliders that still show a picture in the static book.

Every function draws with matplotlib and returns the ``Figure`` (so a notebook can save it and a
test can inspect it); pass ``ax`` to draw into an existing axes, and ``title`` to say what to notice.

    >>> from unsuplab import viz                                            # doctest: +SKIP
    >>> viz.show_images(x[:32], nrow=8, labels=y[:32], title="32 training digits")  # doctest: +SKIP
    >>> viz.plot_history(history, title="The loss falls fast, then slowly")  # doctest: +SKIP
    >>> viz.plot_embedding(z2, y, title="t-SNE of the codes: an island per digit")  # doctest: +SKIP
"""

from __future__ import annotations

import base64
import functools
import io
import math
import warnings
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from typing import Any, Callable

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

__all__ = ["show_images", "plot_history", "plot_embedding", "plot_curves", "plot_attention", "interactive"]


def _numpy(x: Any) -> np.ndarray:
    """A NumPy copy of an array, list or torch tensor (detached, on the CPU)."""
    if hasattr(x, "detach"):  # a torch tensor, without importing torch here
        x = x.detach().cpu()
        if x.is_floating_point() and x.dtype.itemsize < 4:  # bfloat16 has no NumPy type
            x = x.float()
        return x.numpy()
    return np.asarray(x)


def _figure_and_axes(ax, figsize: tuple[float, float]):
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize, layout="constrained")
        return fig, ax
    return ax.figure, ax


# ---------------------------------------------------------------------------------------------
# Image grids
# ---------------------------------------------------------------------------------------------

def _as_nchw(images: Any, image_shape: Sequence[int] | None) -> np.ndarray:
    """Interpret ``images`` as a float (N, C, H, W) array with C in {1, 3}."""
    a = _numpy(images)
    expected = ("expected images of shape (N, C, H, W), (N, H, W) or (N, D) with image_shape, "
                f"got {a.shape}")
    if a.ndim < 2 or a.ndim > 4:
        raise ValueError(f"{expected}: for a single image use x[None].")
    if a.shape[0] == 0:
        raise ValueError(f"{expected}: there are no images to show.")
    n = a.shape[0]
    if image_shape is not None:
        image_shape = tuple(int(s) for s in image_shape)
        per_image = int(np.prod(a.shape[1:]))
        if len(image_shape) not in (2, 3) or math.prod(image_shape) != per_image:
            raise ValueError(f"{expected} and image_shape={image_shape}: image_shape must be (H, W) "
                             f"or (C, H, W) with H*W*C = {per_image} values per image.")
        a = a.reshape((n,) + image_shape)
    elif a.ndim == 2:
        side = math.isqrt(a.shape[1])
        if side * side != a.shape[1]:
            raise ValueError(f"{expected}: D = {a.shape[1]} is not a perfect square, so pass "
                             "image_shape=(H, W) or (C, H, W).")
        a = a.reshape(n, side, side)
    if a.ndim == 3:
        a = a[:, None]  # (N, H, W) -> (N, 1, H, W)
    if a.shape[1] not in (1, 3):
        if a.shape[3] in (1, 3):
            a = a.transpose(0, 3, 1, 2)  # channels last (N, H, W, C) -> (N, C, H, W)
        else:
            raise ValueError(f"{expected}: C must be 1 (grey) or 3 (RGB).")
    if a.dtype == bool:
        a = a.astype(np.float32)
    if not np.issubdtype(a.dtype, np.number):
        raise ValueError(f"expected numeric images, got dtype {a.dtype}.")
    integer = np.issubdtype(a.dtype, np.integer)
    a = a.astype(np.float32)
    if integer and a.shape[1] == 3 and a.max() > 1:
        a = a / 255.0  # 8-bit RGB
    return a


def show_images(images: Any, *, nrow: int | None = None, title: str | None = None,
                labels: Sequence | None = None, cmap: Any = "gray",
                image_shape: Sequence[int] | None = None, ax=None, vmin: float | None = None,
                vmax: float | None = None, normalize: bool = False, padding: int = 2) -> Figure:
    """Show images as one grid, ``nrow`` images per row (default: a near-square grid).

    ``images`` is an array or tensor of shape (N, C, H, W) with C = 1 or 3, (N, H, W), or (N, D)
    with ``image_shape=(H, W)`` or ``(C, H, W)`` (D a perfect square, such as 784 = 28 x 28, needs
    none). Channels-last (N, H, W, C) is accepted too. The grid is one image of
    ``rows * H + (rows + 1) * padding`` by ``nrow * W + (nrow + 1) * padding`` pixels; the padding
    is transparent, so the tiles are separated by the background colour.

    Grey images share one colour scale (``vmin``/``vmax``, default: the range of all images) and
    ``cmap``. RGB images are shown as they are, clipped to [0, 1] (8-bit integers are divided by
    255; with ``vmin``/``vmax`` they are first rescaled from that range). ``normalize=True``
    rescales *each* image to [0, 1], for eigen-images and filters that take negative values.
    ``labels``, one per image, are written as small captions in the tiles' corners.
    """
    a = _as_nchw(images, image_shape)
    n, c, h, w = a.shape
    if labels is not None and len(labels) != n:
        raise ValueError(f"expected one label per image ({n}), got {len(labels)} labels.")
    if nrow is None:
        nrow = math.ceil(math.sqrt(n))
    if isinstance(nrow, bool) or not isinstance(nrow, (int, np.integer)) or nrow < 1:
        raise ValueError(f"expected nrow, the number of images per row, to be a positive integer, "
                         f"got {nrow!r}.")
    if padding < 0:
        raise ValueError(f"expected padding >= 0 pixels, got {padding}.")
    cols = min(int(nrow), n)
    rows = math.ceil(n / cols)

    if normalize:
        low = a.min(axis=(1, 2, 3), keepdims=True)
        span = a.max(axis=(1, 2, 3), keepdims=True) - low
        a = np.where(span > 0, (a - low) / np.where(span > 0, span, 1.0), 0.5)
        vmin = 0.0 if vmin is None else vmin
        vmax = 1.0 if vmax is None else vmax

    step_y, step_x = h + padding, w + padding
    grid = np.full((rows * step_y + padding, cols * step_x + padding, c), np.nan, dtype=np.float32)
    corners = []
    for i in range(n):
        y0 = padding + (i // cols) * step_y
        x0 = padding + (i % cols) * step_x
        grid[y0:y0 + h, x0:x0 + w] = a[i].transpose(1, 2, 0)  # (C, H, W) -> (H, W, C)
        corners.append((x0, y0))

    width = min(10.0, max(2.5, 0.9 * cols))
    height = min(12.0, max(1.5, width * grid.shape[0] / grid.shape[1] + (0.3 if title else 0.0)))
    fig, ax = _figure_and_axes(ax, (width, height))
    if c == 1:
        colormap = matplotlib.colormaps[cmap] if isinstance(cmap, str) else cmap
        colormap = colormap.with_extremes(bad=(0.0, 0.0, 0.0, 0.0))  # padding: transparent
        ax.imshow(np.ma.masked_invalid(grid[..., 0]), cmap=colormap, vmin=vmin, vmax=vmax,
                  interpolation="nearest")
    else:
        if vmin is not None or vmax is not None:
            low = np.nanmin(grid) if vmin is None else vmin
            high = np.nanmax(grid) if vmax is None else vmax
            grid = (grid - low) / max(high - low, 1e-12)
        alpha = np.isfinite(grid).all(axis=2, keepdims=True).astype(np.float32)
        rgba = np.concatenate([np.nan_to_num(np.clip(grid, 0.0, 1.0)), alpha], axis=2)
        ax.imshow(rgba, interpolation="nearest")
    if labels is not None:
        for (x0, y0), label in zip(corners, labels):
            label = label.item() if hasattr(label, "item") else label
            ax.text(x0 + 0.5, y0 + 0.5, str(label), fontsize=7, color="white", ha="left",
                    va="top", bbox=dict(facecolor="black", alpha=0.6, pad=1.0, linewidth=0))
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return fig


# ---------------------------------------------------------------------------------------------
# Curves
# ---------------------------------------------------------------------------------------------

def _values(sequence: Any) -> np.ndarray:
    """Floats from a list of numbers, 0-d tensors or None (None becomes NaN: a gap in the curve)."""
    return np.array([np.nan if v is None else float(v) for v in sequence], dtype=float)


def _is_series(value: Any) -> bool:
    if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, np.ndarray)):
        return False
    try:
        return len(value) > 0 and np.isfinite(_values(value)).any()
    except (TypeError, ValueError):
        return False


def plot_history(history: Any, keys: Sequence[str] | str | None = None, *, title: str | None = None,
                 ax=None, logy: bool = False, xlabel: str = "epoch", smooth: int = 1) -> Figure:
    """Training curves: one line per key, against the epoch (1, 2, ...).

    ``history`` is a dict of lists (``{"loss": [...], "val_loss": [...]}``) or an object with an
    ``.epochs`` dict of lists, such as ``unsuplab.train``'s History; with ``xlabel="step"`` its
    ``.steps`` dict is plotted instead. ``keys`` picks the curves (default: every key holding
    numbers). If the dict holds a list named like ``xlabel`` (e.g. ``"epoch"``) of the same length,
    it gives the x values. ``None`` entries leave gaps. ``logy`` puts the y axis on a log scale.
    ``smooth`` = w > 1 draws the mean of each w consecutive values instead (noisy per-step losses),
    at the x of the last of them.
    """
    if isinstance(smooth, bool) or not isinstance(smooth, int) or smooth < 1:
        raise ValueError(f"smooth must be a whole number of points >= 1 (1: no smoothing), got {smooth!r}.")
    if isinstance(history, Mapping):
        data = history
    else:
        attribute = "steps" if xlabel == "step" and hasattr(history, "steps") else "epochs"
        data = getattr(history, attribute, None)
        if not isinstance(data, Mapping):
            raise TypeError(f"expected a dict of lists or an object with an .epochs dict (like "
                            f"unsuplab.train's History), got {type(history).__name__}.")
    if isinstance(keys, str):
        keys = [keys]
    if keys is None:
        keys = [key for key, value in data.items() if key != xlabel and _is_series(value)]
        if not keys:
            raise ValueError("expected a history with at least one list of numbers, such as "
                             f"{{'loss': [0.9, 0.5]}}, got keys {list(data)} with nothing to plot.")
    missing = [key for key in keys if key not in data]
    if missing:
        raise ValueError(f"history has no {missing}: it has {list(data)}.")

    fig, ax = _figure_and_axes(ax, (6.0, 4.0))
    for key in keys:
        y = _values(data[key])
        x = np.arange(1, len(y) + 1)
        if xlabel in data and key != xlabel and len(data[xlabel]) == len(y):
            x = _values(data[xlabel])
        if smooth > 1 and len(y) >= smooth:
            y = np.convolve(y, np.ones(smooth) / smooth, mode="valid")      # the mean of each window
            x = x[smooth - 1:]
        ax.plot(x, y, label=str(key), marker="o" if len(y) <= 30 else None, markersize=3)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs and steps are whole numbers
    return _label_axes(fig, ax, xlabel, str(keys[0]) if len(keys) == 1 else "value", title, logy=logy)


def _label_axes(fig: Figure, ax, xlabel: str, ylabel: str, title: str | None, *, logx: bool = False,
                logy: bool = False) -> Figure:
    """The finish of every curve plot: axis labels and scales, a light grid, the legend, the title."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title)
    return fig


def plot_curves(x: Any, ys: Mapping[str, Any], *, xlabel: str, ylabel: str, title: str | None = None,
                ax=None, logx: bool = False, logy: bool = False, marker: str | None = "o") -> Figure:
    """Several named curves against the same ``x`` on one axes, with a legend: for instance
    ``plot_curves(ks, {"PCA": err_pca, "autoencoder": err_ae}, xlabel="code size k",
    ylabel="reconstruction MSE")``. Every curve needs one value per x."""
    x = _values(_numpy(x))
    if not isinstance(ys, Mapping) or not ys:
        raise ValueError("expected ys to be a non-empty dict {name: values}, got "
                         f"{type(ys).__name__}{'' if ys else ' (empty)'}.")
    fig, ax = _figure_and_axes(ax, (6.0, 4.0))
    for name, y in ys.items():
        y = _values(_numpy(y))
        if len(y) != len(x):
            raise ValueError(f"curve {name!r} has {len(y)} values but x has {len(x)}: give one "
                             "value per x.")
        ax.plot(x, y, label=str(name), marker=marker, markersize=4)
    return _label_axes(fig, ax, xlabel, ylabel, title, logx=logx, logy=logy)


# ---------------------------------------------------------------------------------------------
# Embeddings
# ---------------------------------------------------------------------------------------------

def plot_attention(weights: Any, tokens: Sequence[str], *, title: str | None = None, ncols: int = 4) -> Figure:
    """Heat maps of attention weights (H, T, T), one panel per head: row = query token, column = key
    (chapter 8: ``plot_attention(B.attention_maps(encoder, ids)[-1], tokens)``)."""
    weights = _numpy(weights).astype(np.float32)
    if weights.ndim != 3 or weights.shape[1] != weights.shape[2] or weights.shape[1] != len(tokens):
        raise ValueError(f"expected weights of shape (H, T, T) with T = {len(tokens)} tokens, got "
                         f"{tuple(weights.shape)}.")
    n = weights.shape[0]
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    size = 0.22 * len(tokens) + 1.2
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows), squeeze=False)
    for h, ax in enumerate(axes.flat):
        if h >= n:
            ax.axis("off")
            continue
        ax.imshow(weights[h], cmap="viridis", vmin=0.0, vmax=1.0)
        ax.set_xticks(range(len(tokens)), tokens, rotation=90, fontsize=7)
        ax.set_yticks(range(len(tokens)), tokens if h % ncols == 0 else [], fontsize=7)
        ax.set_title(f"head {h + 1}", fontsize=9)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def _class_colours(n: int) -> np.ndarray:
    if n <= 10:
        return matplotlib.colormaps["tab10"](np.arange(n))
    if n <= 20:
        return matplotlib.colormaps["tab20"](np.arange(n))
    return matplotlib.colormaps["turbo"](np.linspace(0.0, 1.0, n))


def plot_embedding(z: Any, labels: Any = None, *, title: str | None = None, ax=None, s: float = 4,
                   class_names: Sequence[str] | Mapping | None = None, legend: bool = True) -> Figure:
    """A 2-D embedding (t-SNE, PCA, a 2-D code) as a scatter plot, coloured by class.

    ``z`` has shape (N, 2); ``labels`` (N,) colour the points (tab10 for up to 10 classes, tab20
    for up to 20, a continuous map beyond) and give one legend entry per class. ``class_names``
    renames classes: a list indexed by integer label (``["T-shirt", "Trouser", ...]``) or a dict
    {label: name}. All points are one scatter, drawn in the data's order, so no class hides
    another.
    """
    points = _numpy(z)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"expected a 2-D embedding of shape (N, 2), got {points.shape}: reduce it "
                         "to two dimensions first (PCA, t-SNE), or pick two columns.")
    points = points.astype(float)
    if not np.isfinite(points).all():
        raise ValueError(f"expected finite coordinates, got {int((~np.isfinite(points)).sum())} "
                         "NaN or inf values: did the embedding (or the encoder) diverge?")
    fig, ax = _figure_and_axes(ax, (5.5, 5.0))
    if labels is None:
        ax.scatter(points[:, 0], points[:, 1], s=s, color="tab:blue", linewidths=0)
    else:
        labels = _numpy(labels)
        if labels.ndim != 1 or len(labels) != len(points):
            raise ValueError(f"expected labels of shape ({len(points)},), one per point, got "
                             f"{labels.shape}.")
        classes, index = np.unique(labels, return_inverse=True)
        colours = _class_colours(len(classes))
        ax.scatter(points[:, 0], points[:, 1], s=s, c=colours[index.ravel()], linewidths=0)
        if legend:
            handles = [Line2D([], [], linestyle="", marker="o", markersize=6, color=colours[i],
                              label=_class_name(label, class_names))
                       for i, label in enumerate(classes)]
            outside = len(classes) > 10
            ax.legend(handles=handles, title="class", fontsize="small",
                      loc="upper left" if outside else "best",
                      bbox_to_anchor=(1.02, 1.0) if outside else None)
    ax.set_xlabel("dimension 1")
    ax.set_ylabel("dimension 2")
    if title:
        ax.set_title(title)
    return fig


def _class_name(label: Any, class_names: Sequence[str] | Mapping | None) -> str:
    label = label.item() if hasattr(label, "item") else label
    if class_names is None:
        return str(label)
    if isinstance(class_names, Mapping):
        return str(class_names.get(label, label))
    if isinstance(label, (int, np.integer)) and 0 <= label < len(class_names):
        return str(class_names[label])
    raise ValueError(f"class_names is a list of {len(class_names)} names, indexed by integer "
                     f"label, but there is a label {label!r}: pass a dict {{label: name}} instead.")


# ---------------------------------------------------------------------------------------------
# Widgets with a static fallback
# ---------------------------------------------------------------------------------------------

def _in_ipython() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    return get_ipython() is not None


def _widget_values(controls) -> dict:
    return {control._kwarg: control.get_interact_value() for control in controls}


def _widget_bundle(w) -> dict:
    """The MIME bundle that shows the live view of widget ``w``, on ipywidgets 8 and 7.

    ipywidgets 8 returns it from ``w._repr_mimebundle_()``. ipywidgets 7 (Colab ships 7.7) has no
    such method: a widget displays itself in ``_ipython_display_``, sending a plain-text repr and a
    widget-view reference built as below, so that bundle is built here the same way."""
    import ipywidgets

    try:
        major = int(str(ipywidgets.__version__).split(".")[0])
    except ValueError:
        major = 8
    mimebundle = getattr(w, "_repr_mimebundle_", None)
    if major >= 8 and callable(mimebundle):
        return dict(mimebundle() or {})
    plaintext = repr(w)
    if len(plaintext) > 110:
        plaintext = plaintext[:110] + "…"
    bundle = {"text/plain": plaintext}
    if getattr(w, "_view_name", None) is not None:
        bundle["application/vnd.jupyter.widget-view+json"] = {"version_major": 2, "version_minor": 0,
                                                              "model_id": w.model_id}
    return bundle


def _png_of_call(fn: Callable, values: dict) -> bytes | None:
    """Call ``fn(**values)`` without showing anything; return its figure as PNG bytes, and close
    every figure the call opened."""
    before = set(plt.get_fignums())
    try:
        from IPython.utils.capture import capture_output
        capture = capture_output(stdout=True, stderr=False, display=True)
    except ImportError:
        capture = nullcontext()
    with capture as captured:
        result = fn(**values)
    opened = [number for number in plt.get_fignums() if number not in before]
    png = None
    figure = result if isinstance(result, Figure) else (plt.figure(opened[-1]) if opened else None)
    if figure is not None:
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
        png = buffer.getvalue()
    elif captured is not None:  # fn called plt.show(): the inline backend displayed and closed it
        for output in reversed(captured.outputs):
            data = output.data.get("image/png")
            if data is not None:
                png = data if isinstance(data, bytes) else base64.b64decode(data)
                break
    for number in opened:
        plt.close(number)
    if isinstance(result, Figure):
        plt.close(result)
    return png


def interactive(fn: Callable, *, fallback: Mapping | None = None, **widgets):
    """Sliders in Jupyter and Colab, a picture in the static book.

    ``fn(**values)`` draws a matplotlib figure (or returns one); ``widgets`` are ipywidgets
    controls or the abbreviations of ``ipywidgets.interactive`` (``k=(1, 50, 1)`` is an integer
    slider, ``kind=["pca", "ae"]`` a drop-down, ``ipywidgets.fixed(x)`` a constant).

    In IPython it builds ``w = ipywidgets.interactive(fn, **widgets)`` (which draws ``fn`` once,
    at the initial values, for the live widget) and displays ONE output holding both the widget's
    view (``application/vnd.jupyter.widget-view+json`` and ``text/plain``, the same on ipywidgets 7,
    as on Colab, and 8) and an ``image/png`` of ``fn`` drawn at the ``fallback`` values (a dict,
    default: the widgets' initial values; keys it does not name keep their initial value). A live notebook renders the widget; a static page
    (the book prefers image/png over widget views) shows the picture. The fallback figure is
    closed, so it is not shown a second time. Returns ``w``: end the line with ``;`` or assign
    the result, otherwise Jupyter displays ``w`` again. ``fn`` therefore runs twice.

    Outside IPython (a plain Python script) it calls ``fn`` once at the fallback values and
    returns None.
    """
    import ipywidgets

    @functools.wraps(fn)  # keeps fn's signature, which ipywidgets reads for defaults
    def draw(**values):
        result = fn(**values)
        if isinstance(result, Figure):  # show a returned figure once, inside the widget
            import IPython.display

            IPython.display.display(result)
            plt.close(result)
        return result

    live = _in_ipython()
    if live:
        w = ipywidgets.interactive(draw, **widgets)
    else:  # only read the initial values: manual mode builds the controls without calling fn
        w = ipywidgets.interactive(functools.wraps(fn)(lambda **values: None), {"manual": True},
                                   **widgets)
    values = _widget_values(w.kwargs_widgets)
    unknown = sorted(set(fallback or {}) - set(values))
    if unknown:
        raise ValueError(f"fallback names {unknown}, which are not arguments of the widget: "
                         f"expected some of {sorted(values)}.")
    values.update(fallback or {})
    if not live:
        w.close()
        fn(**values)
        return None

    png = _png_of_call(fn, values)
    bundle = _widget_bundle(w)
    if png is None:
        warnings.warn("fn drew no matplotlib figure at the fallback values, so the static book "
                      "will show no picture for this widget.", stacklevel=2)
    else:
        bundle["image/png"] = base64.b64encode(png).decode("ascii")
    import IPython.display

    IPython.display.display(bundle, raw=True)
    displayed = getattr(w, "_handle_displayed", None)
    if callable(displayed):  # ipywidgets 7 runs a widget's on-display callbacks after showing it
        displayed()
    return w
