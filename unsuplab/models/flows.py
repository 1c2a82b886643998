"""Likelihood-based models with an exact log-likelihood: normalizing flows and autoregressive models.

Chapter 10 left the energy-based model's normaliser :math:`Z_\\theta` unknown outside two dimensions,
and chapters 3 and 5 measured their likelihoods with estimates (AIS) and bounds (the importance-weighted
bound). The two families here give :math:`\\log p_\\theta(x)` exactly, in one pass, by construction.

Papers:

* Dinh, Sohl-Dickstein & Bengio (2017), "Density estimation using Real NVP": the affine coupling
  layer, alternating masks, the logit transform of pixels.
* Kingma & Dhariwal (2018), "Glow: generative flow with invertible 1x1 convolutions": ActNorm, a
  per-dimension affine layer initialised from the data, and couplings whose last layer starts at zero,
  so that every layer starts as the identity.
* Germain, Gregor, Murray & Larochelle (2015), "MADE: masked autoencoder for distribution estimation".
* Theis, van den Oord & Bethge (2016), "A note on the evaluation of generative models": uniform
  dequantization, and why a density on it bounds the discrete likelihood.
* van den Oord, Kalchbrenner & Kavukcuoglu (2016), "Pixel recurrent neural networks": the PixelCNN,
  the same factorization (eq. 10.8) with masked convolutions instead of masked linear layers.

Equations, numbered as in ``book/10_open_problems.md`` (eqs. 10.1-10.3 are in :mod:`unsuplab.models.ebm`)
-----------------------------------------------------------------------------------------------------------
* (10.4) Change of variables: for an invertible, differentiable :math:`z = f(x)` and a base density
  :math:`p_Z`, :math:`\\log p_X(x) = \\log p_Z(f(x)) + \\log |\\det \\partial f / \\partial x|`.
  A composition :math:`f = f_K \\circ \\dots \\circ f_1` adds the layers' log-determinants.
* (10.5) Affine coupling, with a binary mask :math:`b`:
  :math:`y = b \\odot x + (1 - b) \\odot \\big(x \\odot e^{s(b \\odot x)} + t(b \\odot x)\\big)`, whose Jacobian
  is triangular, so :math:`\\log |\\det \\partial y / \\partial x| = \\sum_j (1 - b_j)\\, s_j(b \\odot x)`; its
  inverse :math:`x = b \\odot y + (1 - b) \\odot (y - t(b \\odot y)) \\odot e^{-s(b \\odot y)}` costs one pass too.
* (10.6) Dequantization: pixels with :math:`k \\in \\{0, \\dots, 255\\}` become :math:`y = (k + u) / 256`,
  :math:`u \\sim U[0, 1)^D`; for any density :math:`p` on :math:`[0, 1)^D`,
  :math:`\\log P(k) \\ge \\mathbb{E}_u[\\log p(y)] - D \\log 256`: the discrete negative log-likelihood is at
  most :math:`-\\log p(y) + D \\log 256` nats, or :math:`8 - \\log_2 p(y) / D` bits per dimension.
* (10.7) Logit transform: :math:`x = \\mathrm{logit}(\\alpha + (1 - 2\\alpha) y)` maps the unit cube onto
  :math:`\\mathbb{R}^D`, with :math:`\\log |\\det| = \\sum_d \\log \\frac{1 - 2\\alpha}{v_d (1 - v_d)}`,
  :math:`v_d = \\alpha + (1 - 2\\alpha) y_d`.
* (10.8) Autoregressive factorization: :math:`\\log p(x) = \\sum_{d=1}^{D} \\log p(x_d \\mid x_{<d})`; for binary
  pixels each factor is a Bernoulli with logit :math:`a_d(x_{<d})`.
* (10.9) MADE's masks: input :math:`d` has degree :math:`m^0(d) = d`, hidden unit :math:`k` of layer
  :math:`l` a degree :math:`m^l(k) \\in \\{\\min m^{l-1}, \\dots, D - 1\\}`; a weight from unit :math:`j` to
  hidden unit :math:`k` is kept when :math:`m^l(k) \\ge m^{l-1}(j)`, a weight from hidden unit :math:`k`
  to output :math:`d` when :math:`d > m^L(k)`. Then output :math:`d` depends on :math:`x_{<d}` only.

The file reads in the order of the chapter: the flow's layers (the coupling, the logit transform,
ActNorm, the masks), the flow that chains them, dequantized pixels and bits per dimension, the flow's
training loop; then the autoregressive model (degrees and masks, MADE with its exact likelihood and its
pixel-by-pixel sampler); then the simplest exact baselines, independent pixels. MADE here may add a
direct masked connection from the inputs to the outputs (strictly lower triangular): on its own, the
logistic autoregressive model; with it, the hidden layer only has to learn a correction.

Use::

    flow = RealNVP(dim=2, n_layers=8, hidden=64)
    history = train_flow(flow, x_points, steps=2_000)
    log_px = flow.log_prob(x_test)                       # (N,) nats, exact

    made = MADE(dim=784, hidden=(300,), direct=True)
    vae.train(made, x_train, epochs=3)                   # chapter 5's loop: it only needs made.loss
    log_px = made.log_prob(binary_digits)                # (N,) nats, exact: eq. (10.8)
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import check_unit_interval
from ..train import History, eval_mode, run_steps

__all__ = ["AffineCoupling", "LogitTransform", "ActNorm", "RealNVP", "checkerboard_masks", "train_flow",
           "dequantize", "bits_per_dim", "MaskedLinear", "made_degrees", "made_masks", "MADE",
           "IndependentBernoulli", "IndependentCategorical"]

LOG_2PI = math.log(2.0 * math.pi)


# ----------------------------------------------------------------------------------------------
# 1. Normalizing flows: one coupling layer, eq. (10.5)
# ----------------------------------------------------------------------------------------------

class AffineCoupling(nn.Module):
    """One affine coupling layer of RealNVP, eq. (10.5).

    ``mask`` (D,) holds 1 where ``x`` passes through unchanged and conditions the rest, 0 where ``x`` is
    scaled by :math:`e^{s}` and shifted by :math:`t`. ``s`` and ``t`` come from one MLP of ``layers``
    hidden layers of width ``hidden`` applied to :math:`b \\odot x`. The scale is bounded,
    :math:`s = \\sigma\\,\\tanh(\\cdot)` with a learned :math:`\\sigma` per dimension (starting at 1), so that no early
    step can stretch a coordinate by more than :math:`e^{\\sigma}`; the MLP's last layer starts at zero, so the
    layer starts as the identity (Kingma & Dhariwal 2018).
    """

    def __init__(self, mask: torch.Tensor, hidden: int = 64, layers: int = 2):
        super().__init__()
        mask = torch.as_tensor(mask, dtype=torch.float32)
        if mask.ndim != 1 or not torch.all((mask == 0) | (mask == 1)) or int(mask.sum()) in (0, len(mask)):
            raise ValueError(f"expected a 1-D mask of 0s and 1s with both values present, got "
                             f"{tuple(mask.shape)} with values {mask.unique().tolist()[:4]}.")
        D = len(mask)
        self.register_buffer("mask", mask)                                   # b: (D,)
        blocks, width = [], D
        for _ in range(layers):
            blocks += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        self.net = nn.Sequential(*blocks, nn.Linear(width, 2 * D))           # (B, D) -> (B, 2D)
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)
        self.scale = nn.Parameter(torch.ones(D))                             # sigma of s = sigma * tanh(.)

    def scale_and_shift(self, x_kept: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:math:`s(b \\odot x)` and :math:`t(b \\odot x)`, each (B, D), from the kept coordinates ``x_kept``."""
        s, t = self.net(x_kept).chunk(2, dim=1)                              # (B, 2D) -> 2 x (B, D)
        return self.scale * torch.tanh(s), t

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, D) -> y (B, D) and :math:`\\log|\\det \\partial y/\\partial x|` (B,), eq. (10.5)."""
        b = self.mask                                                         # (D,)
        s, t = self.scale_and_shift(b * x)                                    # (B, D) each
        y = b * x + (1 - b) * (x * torch.exp(s) + t)
        return y, ((1 - b) * s).sum(dim=1)                                    # the diagonal of a triangular J

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        """y (B, D) -> x (B, D): the kept coordinates are y's own, so s and t are computed from them exactly."""
        b = self.mask
        s, t = self.scale_and_shift(b * y)
        return b * y + (1 - b) * (y - t) * torch.exp(-s)


class LogitTransform(nn.Module):
    """eq. (10.7): pixels y in [0, 1) -> :math:`x = \\mathrm{logit}(\\alpha + (1 - 2\\alpha) y)` in R, with its exact
    log-determinant. No parameters: the first layer of a flow on images (Dinh et al. 2017, alpha = 0.05)."""

    def __init__(self, alpha: float = 0.05):
        super().__init__()
        if not 0 < alpha < 0.5:
            raise ValueError(f"alpha keeps the logit away from 0 and 1 and must lie in (0, 0.5), got {alpha!r}.")
        self.alpha = float(alpha)

    def forward(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        v = self.alpha + (1 - 2 * self.alpha) * y                              # (B, D) in (alpha, 1 - alpha)
        x = torch.log(v) - torch.log1p(-v)                                     # logit(v)
        log_det = (math.log(1 - 2 * self.alpha) - torch.log(v) - torch.log1p(-v)).sum(dim=1)   # (B,)
        return x, log_det

    def inverse(self, x: torch.Tensor) -> torch.Tensor:
        return (torch.sigmoid(x) - self.alpha) / (1 - 2 * self.alpha)


class ActNorm(nn.Module):
    """Glow's activation normalisation (Kingma & Dhariwal 2018): :math:`y = (x - m) e^{-\\log\\sigma}` per
    dimension, :math:`\\log|\\det| = -\\sum_d \\log\\sigma_d`. Initialised from the data: the first batch it
    sees in training mode gets zero mean and unit variance in every dimension; then m and log sigma learn."""

    def __init__(self, dim: int):
        super().__init__()
        self.shift = nn.Parameter(torch.zeros(dim))                                # m: (D,)
        self.log_scale = nn.Parameter(torch.zeros(dim))                            # log sigma: (D,)
        self.register_buffer("initialised", torch.tensor(False))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.training and not bool(self.initialised):
            with torch.no_grad():
                self.shift.copy_(x.mean(0))
                self.log_scale.copy_(x.std(0).clamp_min(1e-6).log())
                self.initialised.fill_(True)
        y = (x - self.shift) * torch.exp(-self.log_scale)
        return y, (-self.log_scale.sum()).expand(len(x))

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return y * torch.exp(self.log_scale) + self.shift


def checkerboard_masks(shape: Sequence[int], n: int) -> list[torch.Tensor]:
    """``n`` flat masks (D,) for images of ``shape`` (H, W): a checkerboard and its complement in turn,
    so that every pixel is transformed by every second layer, conditioned on its four neighbours."""
    h, w = shape
    board = ((torch.arange(h)[:, None] + torch.arange(w)[None, :]) % 2).flatten().float()   # (H*W,)
    return [board if i % 2 == 0 else 1 - board for i in range(n)]


# ----------------------------------------------------------------------------------------------
# 2. The flow: couplings chained, eq. (10.4), with a standard normal base
# ----------------------------------------------------------------------------------------------

class RealNVP(nn.Module):
    """A RealNVP flow :math:`z = f(x)` of ``n_layers`` affine couplings (:class:`AffineCoupling`) on
    ``dim``-dimensional data, with base density :math:`p_Z = \\mathcal{N}(0, I)`.

    Masks alternate so that each coordinate is transformed by every second layer: for points, the first
    half of the coordinates and then the second; for images (``image_shape=(H, W)``), a checkerboard and
    its complement. With ``logit_alpha`` the flow starts with :class:`LogitTransform`, for pixels in
    [0, 1), and with ``actnorm`` an :class:`ActNorm` comes before the couplings. ``log_prob`` is eq. (10.4);
    ``sample`` runs the layers backwards from the base.
    """

    def __init__(self, dim: int = 2, n_layers: int = 8, hidden: int = 64, layers: int = 2,
                 image_shape: Sequence[int] | None = None, logit_alpha: float | None = None,
                 actnorm: bool = False):
        super().__init__()
        if dim < 2 or n_layers < 1:
            raise ValueError(f"a coupling needs dim >= 2 (one half conditions the other) and n_layers >= 1, "
                             f"got dim={dim}, n_layers={n_layers}.")
        if image_shape is not None:
            if math.prod(image_shape) != dim:
                raise ValueError(f"image_shape {tuple(image_shape)} has {math.prod(image_shape)} pixels, "
                                 f"but dim={dim}.")
            masks = checkerboard_masks(image_shape, n_layers)
        else:
            half = (torch.arange(dim) < dim // 2).float()                        # (D,) 1 on the first half
            masks = [half if i % 2 == 0 else 1 - half for i in range(n_layers)]
        self.dim = dim
        self.logit = LogitTransform(logit_alpha) if logit_alpha is not None else None
        self.actnorm = ActNorm(dim) if actnorm else None
        self.couplings = nn.ModuleList(AffineCoupling(m, hidden, layers) for m in masks)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, ...) -> z = f(x) (B, D) and :math:`\\log|\\det \\partial f/\\partial x|` (B,), the layers' sum."""
        x = x.reshape(len(x), -1)
        if x.shape[1] != self.dim:
            raise ValueError(f"this flow models {self.dim} dimensions, got points of shape {tuple(x.shape)}.")
        log_det = torch.zeros(len(x), device=x.device, dtype=x.dtype)
        if self.logit is not None:
            x, ld = self.logit(x)
            log_det = log_det + ld
        if self.actnorm is not None:
            x, ld = self.actnorm(x)
            log_det = log_det + ld
        for coupling in self.couplings:
            x, ld = coupling(x)                                                # (B, D), (B,)
            log_det = log_det + ld
        return x, log_det

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, D) -> x = f^{-1}(z) (B, D): the couplings' inverses in reverse order."""
        for coupling in reversed(self.couplings):
            z = coupling.inverse(z)
        if self.actnorm is not None:
            z = self.actnorm.inverse(z)
        return self.logit.inverse(z) if self.logit is not None else z

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Exact :math:`\\log p_X(x)` in nats, eq. (10.4): :math:`\\log \\mathcal{N}(f(x); 0, I)` plus the
        log-determinant. (B, ...) -> (B,)."""
        z, log_det = self(x)
        log_pz = -0.5 * (z.pow(2).sum(dim=1) + self.dim * LOG_2PI)               # (B,)
        return log_pz + log_det

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` samples (n, D): z ~ N(0, I) on the model's device, then :meth:`inverse`."""
        device = next(self.parameters()).device
        return self.inverse(torch.randn(n, self.dim, generator=generator).to(device))


def dequantize(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """eq. (10.6): grey levels x = k / 255 in [0, 1] (as ``ul.data.mnist`` gives them) -> y = (k + u) / 256,
    u ~ U[0, 1), drawn afresh at each call. The result lies in [0, 1) and has x's shape."""
    check_unit_interval(x, "grey levels", why="dequantization reads them as k / 255")
    k = torch.round(x * 255)                                                   # the 256 levels, 0 .. 255
    u = torch.rand(x.shape, generator=generator).to(x.device)
    return (k + u) / 256


def bits_per_dim(log_p_y: torch.Tensor | float, dim: int) -> torch.Tensor | float:
    """eq. (10.6): the bits per dimension of the discrete pixels bounded by a density's
    :math:`\\log p(y)` in nats on the dequantized unit cube: :math:`(-\\log p(y) + D \\log 256) / (D \\log 2)`."""
    return (-log_p_y + dim * math.log(256)) / (dim * math.log(2))


def train_flow(flow: nn.Module, data: torch.Tensor, *, steps: int = 2_000, batch_size: int = 256,
               lr: float = 1e-3, lr_final: float | None = None, dequantize_data: bool = False, seed: int = 0,
               checkpoint: str | Path | None = None, resume: bool = True, desc: str = "flow") -> History:
    """Fit ``flow`` to the examples ``data`` (N, ...) by maximum likelihood: each of ``steps`` Adam steps
    minimises the mean of :math:`-\\log p(x)`, eq. (10.4), on a batch drawn at random (with
    ``dequantize_data``, grey levels dequantized afresh by :func:`dequantize`, eq. 10.6). The learning
    rate follows a cosine from ``lr`` to ``lr_final`` when it is given. ``seed`` seeds the batches and
    the dequantization noise; with ``checkpoint`` the run saves itself every 200 steps and resumes after
    an interruption (:func:`unsuplab.train.run_steps`). Returns the :class:`unsuplab.train.History`
    (``steps["nll"]``: the training loss in nats at every step).
    """
    if data.ndim < 2:
        raise ValueError(f"expected data of shape (N, D) or (N, C, H, W), got {tuple(data.shape)}.")
    device = next(flow.parameters()).device
    data = data.to(device)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    optimizer = torch.optim.Adam(flow.parameters(), lr=lr)
    scheduler = (torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps, eta_min=lr_final)
                 if lr_final is not None else None)

    def step(_: int) -> dict:
        x = data[torch.randint(len(data), (batch_size,), generator=generator).to(device)]
        if dequantize_data:
            x = dequantize(x, generator)
        loss = -flow.log_prob(x).mean()                                        # nats per example
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        return {"nll": loss.detach()}

    state = {"flow": flow, "optimizer": optimizer, **({"scheduler": scheduler} if scheduler is not None else {})}
    return run_steps(step, steps, checkpoint=checkpoint, generator=generator, resume=resume, desc=desc, state=state)


# ----------------------------------------------------------------------------------------------
# 3. Autoregressive models: MADE's masks, eq. (10.9), and its exact likelihood, eq. (10.8)
# ----------------------------------------------------------------------------------------------

class MaskedLinear(nn.Linear):
    """A linear layer whose weight is multiplied by a fixed 0/1 ``mask`` (out, in) at every call, so a
    masked connection never carries a signal, nor a gradient."""

    def __init__(self, in_features: int, out_features: int, mask: torch.Tensor):
        super().__init__(in_features, out_features)
        if tuple(mask.shape) != (out_features, in_features):
            raise ValueError(f"expected a mask of shape (out, in) = ({out_features}, {in_features}), "
                             f"got {tuple(mask.shape)}.")
        self.register_buffer("mask", mask.float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


def made_degrees(dim: int, hidden: Sequence[int], generator: torch.Generator | None = None) -> list[torch.Tensor]:
    """The degrees of eq. (10.9): inputs 1 .. D in order, then each hidden layer's units drawn uniformly
    from {min of the previous layer's degrees, ..., D - 1}. Returns a list of integer tensors, one per layer."""
    degrees = [torch.arange(1, dim + 1)]                                       # m^0(d) = d
    for width in hidden:
        low = int(degrees[-1].min())
        degrees.append(torch.randint(low, dim, (width,), generator=generator))   # values low .. D - 1
    return degrees


def made_masks(degrees: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """The masks of eq. (10.9) from the degrees of :func:`made_degrees`: one (out, in) mask per hidden layer,
    :math:`m^l(k) \\ge m^{l-1}(j)`, then the output's, :math:`d > m^L(k)` (strict: output d never sees x_d)."""
    masks = [(later[:, None] >= earlier[None, :]).float() for earlier, later in zip(degrees[:-1], degrees[1:])]
    outputs = degrees[0]                                                        # output d has degree d
    masks.append((outputs[:, None] > degrees[-1][None, :]).float())             # (D, H_L)
    return masks


class MADE(nn.Module):
    """MADE (Germain et al. 2015) for binary vectors: an MLP with masked weights, eq. (10.9), whose
    output ``d`` is the logit :math:`a_d(x_{<d})` of :math:`p(x_d = 1 \\mid x_{<d})`, in raster order.

    ``dim`` D (784 for MNIST), ``hidden`` the hidden layers' widths (ReLU), ``seed`` the draw of the
    hidden degrees; ``direct`` adds a masked linear map from the inputs to the outputs, whose mask
    :math:`[d > j]` is strictly lower triangular (the logistic autoregressive model). ``log_prob`` is
    eq. (10.8), exact; ``loss`` is its negative mean, the interface that
    :func:`unsuplab.models.vae.train` trains (``loss(x) -> (loss, logs)``); ``sample`` draws pixel by
    pixel, D passes of the network.
    """

    def __init__(self, dim: int = 784, hidden: Sequence[int] = (500,), seed: int = 0, direct: bool = False):
        super().__init__()
        if dim < 2 or not hidden:
            raise ValueError(f"expected dim >= 2 and at least one hidden layer, got dim={dim}, hidden={hidden!r}.")
        self.dim = dim
        degrees = made_degrees(dim, hidden, torch.Generator().manual_seed(seed))
        masks = made_masks(degrees)
        sizes = [dim, *hidden, dim]
        blocks = []
        for i, mask in enumerate(masks):
            blocks.append(MaskedLinear(sizes[i], sizes[i + 1], mask))
            if i < len(masks) - 1:
                blocks.append(nn.ReLU())
        self.net = nn.Sequential(*blocks)
        order = degrees[0]                                                       # m^0(d) = d
        self.direct = MaskedLinear(dim, dim, (order[:, None] > order[None, :]).float()) if direct else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The logits :math:`a_d(x_{<d})` (B, D) of binary x (B, ...)."""
        x = x.reshape(len(x), -1)
        return self.net(x) + (self.direct(x) if self.direct is not None else 0)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Exact :math:`\\log p(x) = \\sum_d \\log p(x_d \\mid x_{<d})` in nats, eq. (10.8): (B, ...) -> (B,)."""
        x = x.reshape(len(x), -1)
        if x.shape[1] != self.dim:
            raise ValueError(f"this MADE models {self.dim} binary pixels, got x of shape {tuple(x.shape)}.")
        return -F.binary_cross_entropy_with_logits(self(x), x, reduction="none").sum(dim=1)

    def loss(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The mean negative log-likelihood (nats per image) and the same number to log, as ``nll``."""
        check_unit_interval(x, "pixels", why="MADE's Bernoulli factors read each pixel as 0 or 1")
        nll = -self.log_prob(x).mean()
        return nll, {"nll": nll.detach()}

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` binary vectors (n, D) drawn pixel by pixel: pass d fills in x_d from :math:`p(x_d \\mid x_{<d})`,
        which depends only on the pixels already drawn. ``generator`` (on the CPU) makes it repeatable."""
        device = next(self.parameters()).device
        x = torch.zeros(n, self.dim, device=device)
        with eval_mode(self):
            for d in range(self.dim):
                p = torch.sigmoid(self(x)[:, d])                                # (n,) p(x_d = 1 | x_<d)
                x[:, d] = (torch.rand(n, generator=generator).to(device) < p).float()
        return x


# ----------------------------------------------------------------------------------------------
# 4. The simplest exact baselines: independent pixels
# ----------------------------------------------------------------------------------------------

class IndependentBernoulli:
    """Every binary pixel its own coin: :math:`p(x) = \\prod_d \\pi_d^{x_d} (1 - \\pi_d)^{1 - x_d}` with
    :math:`\\pi_d` the training mean of pixel d (the maximum-likelihood fit), kept inside
    ``[eps, 1 - eps]``. ``fit(x)`` on grey levels or binary images, ``log_prob(x)`` exact, in nats."""

    def __init__(self, eps: float = 1e-3):
        self.eps = eps
        self.pi: torch.Tensor | None = None

    def fit(self, x: torch.Tensor) -> "IndependentBernoulli":
        check_unit_interval(x, "pixels", why="each pixel's mean is its probability of a 1")
        self.pi = x.reshape(len(x), -1).double().mean(0).clamp(self.eps, 1 - self.eps)   # (D,)
        return self

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        if self.pi is None:
            raise RuntimeError("call fit(x_train) before log_prob.")
        x = x.reshape(len(x), -1).double().cpu()
        return (x * self.pi.log() + (1 - x) * (-self.pi).log1p()).sum(1)         # (B,)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` binary vectors (n, D), every pixel drawn on its own."""
        if self.pi is None:
            raise RuntimeError("call fit(x_train) before sample.")
        return torch.bernoulli(self.pi.float().expand(n, -1), generator=generator)


class IndependentCategorical:
    """Every 8-bit pixel its own 256-sided die, :math:`P(k) = \\prod_d P_d(k_d)`, with the training
    frequencies plus ``pseudocount`` (add-one smoothing by default). Exact discrete log-likelihood in
    nats (``log_prob``), comparable in bits per dimension with a flow's bound of eq. (10.6)."""

    def __init__(self, pseudocount: float = 1.0):
        self.pseudocount = pseudocount
        self.log_p: torch.Tensor | None = None

    def fit(self, x: torch.Tensor) -> "IndependentCategorical":
        check_unit_interval(x, "grey levels", why="they are read as k / 255")
        k = torch.round(x.reshape(len(x), -1) * 255).long()                        # (N, D)
        counts = torch.zeros(k.shape[1], 256, dtype=torch.float64)
        counts.scatter_add_(1, k.T.contiguous(), torch.ones(k.T.shape, dtype=torch.float64))   # (D, 256)
        counts += self.pseudocount
        self.log_p = (counts / counts.sum(1, keepdim=True)).log()                 # (D, 256)
        return self

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        if self.log_p is None:
            raise RuntimeError("call fit(x_train) before log_prob.")
        k = torch.round(x.reshape(len(x), -1).cpu() * 255).long()                  # (B, D)
        return self.log_p.gather(1, k.T).sum(0)                                    # (B,)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` images as grey levels k / 255 (n, D), every pixel's level drawn on its own."""
        if self.log_p is None:
            raise RuntimeError("call fit(x_train) before sample.")
        k = torch.multinomial(self.log_p.exp(), n, replacement=True, generator=generator)   # (D, n)
        return k.T.float() / 255
