"""Tests for unsuplab.viz: every function returns a Figure whose content we can check exactly."""

import matplotlib

matplotlib.use("Agg")

import base64  # noqa: E402

import IPython.display  # noqa: E402
import ipywidgets  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from unsuplab import viz  # noqa: E402

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def grid_array(fig):
    (ax,) = fig.axes
    (image,) = ax.images
    return image.get_array()


# ------------------------------------------------------------------------------- show_images

def test_show_images_grid_size_placement_and_captions():
    x = torch.rand(10, 1, 28, 28)
    fig = viz.show_images(x, nrow=5, labels=list(range(10)), title="ten digits")
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    grid = grid_array(fig)
    assert grid.shape == (2 * 28 + 3 * 2, 5 * 28 + 6 * 2)  # rows*H + (rows+1)*pad, same for W
    # Image 0 sits after the first padding; image 6 is row 1, column 1.
    np.testing.assert_array_equal(grid[2:30, 2:30], x[0, 0].numpy())
    np.testing.assert_array_equal(grid[32:60, 32:60], x[6, 0].numpy())
    assert grid.mask[0].all() and grid.mask[:, 30:32].all()  # padding is masked (transparent)
    assert not grid.mask[32:60, 32:60].any()
    # Unused slots: none here (10 = 2 x 5); captions are one text per image.
    assert [t.get_text() for t in fig.axes[0].texts] == [str(i) for i in range(10)]
    assert fig.axes[0].get_title() == "ten digits"


def test_show_images_accepts_flat_square_3d_channels_last_and_image_shape():
    rng = np.random.default_rng(0)
    flat = rng.random((9, 784))
    assert grid_array(viz.show_images(flat)).shape == (3 * 28 + 4 * 2, 3 * 28 + 4 * 2)
    assert grid_array(viz.show_images(flat.reshape(9, 28, 28), nrow=9, padding=0)).shape == (28, 9 * 28)
    # Non-square D needs image_shape: 4 images of 12 x 8, default 2 per row.
    grid = grid_array(viz.show_images(rng.random((4, 96)), image_shape=(12, 8)))
    assert grid.shape == (2 * 12 + 3 * 2, 2 * 8 + 3 * 2)
    # RGB, channels first or last, gives an RGBA grid whose padding has alpha 0.
    rgb = rng.random((3, 3, 5, 5))
    first = grid_array(viz.show_images(rgb, nrow=3))
    last = grid_array(viz.show_images(rgb.transpose(0, 2, 3, 1), nrow=3))
    assert first.shape == (5 + 2 * 2, 3 * 5 + 4 * 2, 4)
    np.testing.assert_allclose(first, last)
    np.testing.assert_allclose(first[2:7, 2:7, :3], rgb[0].transpose(1, 2, 0), rtol=1e-6)
    assert first[0, :, 3].max() == 0 and first[2:7, 2:7, 3].min() == 1
    # nrow larger than N: one row of N images.
    assert grid_array(viz.show_images(rng.random((2, 4, 4)), nrow=8)).shape == (8, 2 * 4 + 3 * 2)


def test_show_images_normalize_rescales_each_image():
    x = np.stack([np.linspace(-5, 5, 16).reshape(4, 4), np.linspace(0.1, 0.2, 16).reshape(4, 4)])
    grid = grid_array(viz.show_images(x, nrow=2, normalize=True))
    tiles = [np.asarray(grid[2:6, 2:6]), np.asarray(grid[2:6, 8:12])]
    for tile in tiles:
        assert tile.min() == pytest.approx(0.0) and tile.max() == pytest.approx(1.0)
    assert viz.show_images(x, normalize=True).axes[0].images[0].get_clim() == (0.0, 1.0)


def test_show_images_draws_into_a_given_axes():
    fig, (left, right) = plt.subplots(1, 2)
    assert viz.show_images(np.zeros((4, 8, 8)), ax=right, title="zeros") is fig
    assert len(right.images) == 1 and len(left.images) == 0 and right.get_title() == "zeros"


def test_show_images_bad_shapes_explain_themselves():
    with pytest.raises(ValueError, match=r"expected images of shape \(N, C, H, W\), \(N, H, W\) or "
                                         r"\(N, D\) with image_shape, got \(10, 5, 28, 28\)"):
        viz.show_images(np.zeros((10, 5, 28, 28)))
    with pytest.raises(ValueError, match=r"got \(10, 783\): D = 783 is not a perfect square.*"
                                         r"image_shape"):
        viz.show_images(np.zeros((10, 783)))
    with pytest.raises(ValueError, match=r"got \(784,\)"):
        viz.show_images(np.zeros(784))
    with pytest.raises(ValueError, match=r"image_shape=\(20, 20\).*784 values per image"):
        viz.show_images(np.zeros((2, 784)), image_shape=(20, 20))
    with pytest.raises(ValueError, match=r"one label per image \(3\), got 2 labels"):
        viz.show_images(np.zeros((3, 4, 4)), labels=[0, 1])
    with pytest.raises(ValueError, match=r"nrow.*positive integer, got 0"):
        viz.show_images(np.zeros((3, 4, 4)), nrow=0)


# ------------------------------------------------------------------------------ plot_history

class FakeHistory:
    """Like unsuplab.train's History: per-epoch and per-step dicts of lists."""

    def __init__(self):
        self.epochs = {"loss": [1.0, 0.5, 0.25], "val_loss": [1.1, 0.7, 0.5], "lr": [0.1, 0.1, 0.01]}
        self.steps = {"loss": [2.0, 1.5, 1.0, 0.8, 0.6]}


def test_plot_history_from_a_dict_and_from_a_history_object():
    fig = viz.plot_history({"loss": [3, 2, 1], "val_loss": [3.5, 2.5, None]}, title="curves")
    (ax,) = fig.axes
    assert len(ax.lines) == 2
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["loss", "val_loss"]
    np.testing.assert_array_equal(ax.lines[0].get_xdata(), [1, 2, 3])
    assert np.isnan(ax.lines[1].get_ydata()[2])  # None leaves a gap
    assert ax.get_xlabel() == "epoch" and ax.get_title() == "curves"

    ax = viz.plot_history(FakeHistory(), ["loss", "val_loss"], logy=True).axes[0]
    assert [line.get_label() for line in ax.lines] == ["loss", "val_loss"]
    assert ax.get_yscale() == "log"
    ax = viz.plot_history(FakeHistory(), "loss", xlabel="step").axes[0]
    np.testing.assert_array_equal(ax.lines[0].get_ydata(), [2.0, 1.5, 1.0, 0.8, 0.6])
    assert ax.get_ylabel() == "loss" and ax.get_xlabel() == "step"


def test_plot_history_uses_an_epoch_column_as_x():
    ax = viz.plot_history({"epoch": [0, 5, 10], "loss": [3, 2, 1]}).axes[0]
    assert len(ax.lines) == 1  # "epoch" is the x axis, not a curve
    np.testing.assert_array_equal(ax.lines[0].get_xdata(), [0, 5, 10])


def test_plot_history_bad_inputs():
    with pytest.raises(ValueError, match=r"no \['acc'\]: it has \['loss'\]"):
        viz.plot_history({"loss": [1, 2]}, keys=["acc"])
    with pytest.raises(ValueError, match=r"at least one list of numbers"):
        viz.plot_history({"name": "run-1", "loss": []})
    with pytest.raises(TypeError, match=r"dict of lists or an object with an .epochs dict"):
        viz.plot_history([1, 2, 3])


# ---------------------------------------------------------------------------- plot_embedding

def test_plot_embedding_points_colours_and_legend():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(50, 2))
    labels = rng.integers(0, 3, size=50)
    fig = viz.plot_embedding(torch.from_numpy(z), labels, title="codes",
                             class_names=["zero", "one", "two"])
    (ax,) = fig.axes
    (scatter,) = ax.collections
    np.testing.assert_allclose(scatter.get_offsets(), z)
    colours = scatter.get_facecolors()
    tab10 = matplotlib.colormaps["tab10"]
    for label in range(3):
        mine = labels == label
        np.testing.assert_allclose(colours[mine], np.tile(tab10(label), (mine.sum(), 1)))
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["zero", "one", "two"]
    assert ax.get_title() == "codes"
    # Without labels: one colour, no legend; a dict renames some classes.
    ax = viz.plot_embedding(z).axes[0]
    assert ax.get_legend() is None and len(ax.collections[0].get_offsets()) == 50
    ax = viz.plot_embedding(z, labels + 10, class_names={10: "ten"}).axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["ten", "11", "12"]


def test_plot_embedding_bad_inputs():
    with pytest.raises(ValueError, match=r"shape \(N, 2\), got \(10, 3\).*two dimensions"):
        viz.plot_embedding(np.zeros((10, 3)))
    with pytest.raises(ValueError, match=r"labels of shape \(10,\), one per point, got \(9,\)"):
        viz.plot_embedding(np.zeros((10, 2)), np.zeros(9))
    with pytest.raises(ValueError, match=r"finite coordinates, got 1 NaN"):
        viz.plot_embedding(np.array([[0.0, np.nan], [1.0, 1.0]]))


# ------------------------------------------------------------------------------- plot_attention

def test_plot_attention_one_panel_per_head_and_shape_errors():
    weights = torch.softmax(torch.randn(3, 5, 5), -1)
    fig = viz.plot_attention(weights, ["[CLS]", "a", "cat", ".", "[SEP]"], title="t", ncols=2)
    shown = [ax for ax in fig.axes if ax.images]
    assert len(shown) == 3 and [ax.get_title() for ax in shown] == ["head 1", "head 2", "head 3"]
    np.testing.assert_allclose(shown[1].images[0].get_array(), weights[1].numpy(), rtol=1e-6)
    assert len(fig.axes) == 4 and not fig.axes[3].axison                   # the unused fourth panel is off
    plt.close(fig)
    with pytest.raises(ValueError, match=r"\(H, T, T\) with T = 4 tokens, got \(3, 5, 5\)"):
        viz.plot_attention(weights, ["a", "b", "c", "d"])


# ------------------------------------------------------------------------------- plot_curves

def test_plot_curves_named_lines_on_one_axes():
    fig = viz.plot_curves([1, 2, 4, 8], {"PCA": [4, 3, 2, 1], "autoencoder": [3, 2, 1, 0.5]},
                          xlabel="code size k", ylabel="reconstruction MSE", logx=True,
                          title="The autoencoder wins at every k")
    (ax,) = fig.axes
    assert [line.get_label() for line in ax.lines] == ["PCA", "autoencoder"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["PCA", "autoencoder"]
    np.testing.assert_array_equal(ax.lines[1].get_ydata(), [3, 2, 1, 0.5])
    assert ax.get_xlabel() == "code size k" and ax.get_ylabel() == "reconstruction MSE"
    assert ax.get_xscale() == "log"
    with pytest.raises(ValueError, match=r"curve 'PCA' has 3 values but x has 4"):
        viz.plot_curves([1, 2, 3, 4], {"PCA": [1, 2, 3]}, xlabel="k", ylabel="err")


# ------------------------------------------------------------------------------- interactive

@pytest.fixture
def displayed(monkeypatch):
    """Pretend to be in IPython and record every IPython.display.display call."""
    calls = []
    monkeypatch.setattr(viz, "_in_ipython", lambda: True)
    monkeypatch.setattr(IPython.display, "display", lambda *args, **kwargs: calls.append((args, kwargs)))
    return calls


def test_interactive_displays_one_bundle_with_widget_and_png(displayed):
    drawn = []

    def draw(k=4, scale=2.0):
        drawn.append(k)
        fig, ax = plt.subplots()
        ax.plot(np.arange(k) * scale)

    w = viz.interactive(draw, k=(1, 9, 1), scale=ipywidgets.fixed(2.0))
    assert isinstance(w, ipywidgets.interactive)
    raw = [args[0] for args, kwargs in displayed if kwargs.get("raw")]
    assert len(raw) == 1 and len(displayed) == 1  # one output, nothing else displayed
    bundle = raw[0]
    assert {WIDGET_VIEW, "text/plain", "image/png"} <= set(bundle)
    assert bundle[WIDGET_VIEW]["model_id"] == w.model_id
    assert base64.b64decode(bundle["image/png"]).startswith(b"\x89PNG\r\n\x1a\n")
    # Drawn once for the live widget and once for the picture, both at the initial value
    # (the default of draw, which ipywidgets uses as the slider's start).
    assert drawn == [4, 4]
    assert len(plt.get_fignums()) == 1  # the fallback figure was closed; the live one is Agg's


def test_interactive_fallback_values_and_returned_figures(displayed):
    drawn = []

    def draw(k=3):
        drawn.append(k)
        fig, ax = plt.subplots()
        ax.plot(range(k))
        return fig

    viz.interactive(draw, fallback={"k": 8}, k=(1, 10, 1))
    assert drawn == [3, 8]
    assert plt.get_fignums() == []  # returned figures are shown (live) or rendered, then closed
    shown = [args[0] for args, kwargs in displayed if not kwargs.get("raw")]
    assert len(shown) == 1 and isinstance(shown[0], Figure)  # the live widget's one figure
    with pytest.raises(ValueError, match=r"fallback names \['n'\].*expected some of \['k'\]"):
        viz.interactive(draw, fallback={"n": 2}, k=(1, 10, 1))


class Interactive7(ipywidgets.interactive):
    """ipywidgets 7.x's interactive, as far as viz.interactive can tell: no ``_repr_mimebundle_`` (a 7.x
    widget displays itself in ``_ipython_display_``, then runs its on-display callbacks)."""

    @property
    def _repr_mimebundle_(self):
        raise AttributeError("'interactive' object has no attribute '_repr_mimebundle_' (ipywidgets 7.x)")

    def _handle_displayed(self, **kwargs):
        self.displayed = getattr(self, "displayed", 0) + 1


def draw_line(k=4):
    fig, ax = plt.subplots()
    ax.plot(range(k))


@pytest.mark.parametrize("version", ["7.7.1", "8.1.9"])
def test_interactive_on_ipywidgets_7_displays_the_bundle_its_widgets_display_themselves(displayed, monkeypatch,
                                                                                      version):
    # Colab ships 7.7, whose widgets have no _repr_mimebundle_; the same widget under an 8.x version
    # string takes the same path, since it has nothing else to offer
    monkeypatch.setattr(ipywidgets, "__version__", version)
    monkeypatch.setattr(ipywidgets, "interactive", Interactive7)
    w = viz.interactive(draw_line, k=(1, 9, 1))
    assert isinstance(w, Interactive7)
    (args, kwargs), = displayed
    bundle = args[0]
    assert kwargs.get("raw") and {WIDGET_VIEW, "text/plain", "image/png"} <= set(bundle)
    assert bundle[WIDGET_VIEW] == {"version_major": 2, "version_minor": 0, "model_id": w.model_id}
    assert len(bundle["text/plain"]) <= 111
    assert base64.b64decode(bundle["image/png"]).startswith(b"\x89PNG\r\n\x1a\n")
    assert w.displayed == 1  # what 7.x's own display does after sending the view: its on-display callbacks


def test_interactive_on_ipywidgets_8_displays_what_repr_mimebundle_gives(displayed, monkeypatch):
    asked = []
    real = ipywidgets.interactive._repr_mimebundle_

    def spy(self, **kwargs):
        asked.append(self)
        return real(self, **kwargs)

    monkeypatch.setattr(ipywidgets, "__version__", "8.1.9")
    monkeypatch.setattr(ipywidgets.interactive, "_repr_mimebundle_", spy)
    w = viz.interactive(draw_line, k=(1, 9, 1))
    assert asked == [w]
    (args, kwargs), = displayed
    assert args[0][WIDGET_VIEW]["model_id"] == w.model_id and "image/png" in args[0]


def test_interactive_without_ipython_just_draws_at_the_fallback(monkeypatch):
    calls = []
    monkeypatch.setattr(IPython.display, "display", lambda *args, **kwargs: calls.append(args))
    drawn = []
    assert viz.interactive(lambda k=2, kind="a": drawn.append((k, kind)), k=(0, 4, 2),
                           kind=["a", "b"], fallback={"kind": "b"}) is None
    assert drawn == [(2, "b")] and calls == []
    # With no default, the initial value is the widget's own: the middle of the slider.
    assert viz.interactive(lambda k: drawn.append(k), k=(1, 9, 1)) is None
    assert drawn[-1] == 5
