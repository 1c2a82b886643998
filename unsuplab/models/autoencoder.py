"""Chapter 4's autoencoders: undercomplete, sparse, denoising, convolutional and stacked, plus the
anomaly score and its AUROC.

An autoencoder is an encoder ``f`` and a decoder ``g`` trained so that the decoder rebuilds the input
from the encoder's code (eq. 4.1),

    z = f(x) in R^k,        x_hat = g(z),        minimise  mean_i  l(x_i, x_hat_i),

with one of two reconstruction losses, both summed over the D pixels of an image:

* squared error (eq. 4.2):  l_SE(x, x_hat) = sum_d (x_d - x_hat_d)^2;
* binary cross-entropy (eq. 4.3):  l_BCE(x, x_hat) = -sum_d [x_d log x_hat_d + (1 - x_d) log(1 - x_hat_d)],
  with x_hat = sigmoid(a) and ``a`` the decoder's last pre-activation (its logits), computed from ``a``
  for numerical stability.

With a linear encoder and decoder and the squared error, the optimum spans the top-k principal
subspace (eq. 4.4; Bourlard & Kamp 1988, Baldi & Hornik 1989): an undercomplete autoencoder is PCA
made non-linear, and a deep one (Hinton & Salakhutdinov 2006) reconstructs better at the same k.

Regularised autoencoders ask the code to be more than small:

* sparse (Ranzato et al. 2007; Ng 2011): add lambda * sum_j ``|h_j|`` (L1, eq. 4.5), or, for sigmoid units,
  beta * sum_j KL(rho || rho_hat_j), with rho_hat_j = mean_i h_j(x_i) the average activation of unit j
  over the batch and KL(rho || r) = rho log(rho / r) + (1 - rho) log((1 - rho) / (1 - r)) (eq. 4.6);
* denoising (Vincent et al. 2008, 2010): rebuild the clean x from a corrupted x_tilde ~ q(x_tilde | x),
  minimising l(x, g(f(x_tilde))) (eq. 4.7), with masking noise (a fraction nu of each image's pixels,
  chosen at random, set to 0) or additive Gaussian noise x_tilde = x + sigma * eps (eq. 4.8).

The convolutional autoencoder (Masci et al. 2011) shares the same interface; a deep autoencoder can
be trained end to end or greedily, one layer pair at a time (Bengio et al. 2007), with
:func:`train_layerwise`. Trained on normal data only, the reconstruction error
s(x) = l_SE(x, g(f(x))) is an anomaly score (eq. 4.9), judged by the AUROC, the probability that an
anomaly scores higher than a normal example (ties count one half).

Every network here exposes ``encode(x) -> z``, ``decode_logits(z) -> a``, ``decode(z) -> x_hat`` and
``forward(x) -> x_hat`` (in the shape of ``x``), so the losses, the training helper and the anomaly
score work with all of them.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import check_unit_interval
from ..train import TensorBatches, eval_mode, fit

__all__ = ["Autoencoder", "ConvAutoencoder", "squared_error", "binary_cross_entropy",
           "reconstruction_loss", "l1_penalty", "kl_bernoulli", "kl_sparsity_penalty", "mask_noise",
           "gaussian_noise", "corrupt", "autoencoder_loss", "train_autoencoder", "train_layerwise",
           "encode_batched", "reconstruction_error", "auroc", "grid_2d", "principal_angles"]

LOSSES = ("bce", "se")
ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": torch.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh, "linear": lambda t: t,
}
CORRUPTIONS = ("mask", "gaussian")


def _activation(name: str | None, what: str) -> Callable[[torch.Tensor], torch.Tensor]:
    key = "linear" if name is None else str(name).lower()
    if key not in ACTIVATIONS:
        raise ValueError(f"{what} must be one of {', '.join(ACTIVATIONS)} (or None for linear), got {name!r}.")
    return ACTIVATIONS[key]


def _wide(t: torch.Tensor) -> torch.Tensor:
    """float32 for half-precision tensors (under mixed precision), others unchanged: sums stay accurate."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def _check_loss(loss: str, model: nn.Module | None = None) -> str:
    if loss not in LOSSES:
        raise ValueError(f"loss must be 'bce' (binary cross-entropy, eq. 4.3) or 'se' (squared error, "
                         f"eq. 4.2), got {loss!r}.")
    if loss == "bce" and model is not None and getattr(model, "output", "sigmoid") != "sigmoid":
        raise ValueError("loss='bce' reads the decoder's output as probabilities: build the model with "
                         "output='sigmoid', or use loss='se'.")
    return loss


# ----------------------------------------------------------------------------------------------
# The networks
# ----------------------------------------------------------------------------------------------

class Autoencoder(nn.Module):
    """A fully connected autoencoder D -> hidden... -> k -> ...hidden -> D (eq. 4.1).

    Parameters
    ----------
    input_dim : D, the number of pixels (784 for MNIST); images (B, 1, 28, 28) are flattened.
    hidden : widths of the encoder's hidden layers; the decoder mirrors them. ``()`` gives a
        single-layer autoencoder x -> h -> x_hat, whose encoder weights are the filters one plots.
    code_dim : k, the size of the code z.
    activation : non-linearity of the hidden layers (``"relu"``, ``"sigmoid"``, ``"tanh"``, ``"linear"``).
    code_activation : non-linearity of the code layer: ``None`` (linear, the default for deep
        autoencoders, as in Hinton & Salakhutdinov 2006) or ``"sigmoid"`` for the KL sparsity penalty.
    output : ``"sigmoid"`` (x_hat in (0, 1), for pixel intensities, with either loss) or ``"linear"``.

    Notes
    -----
    ``encoder[l]`` and ``decoder[L - 1 - l]`` are the two halves of layer pair ``l``, so
    :func:`train_layerwise` can train them one pair at a time.
    """

    def __init__(self, input_dim: int = 784, hidden: Sequence[int] = (256, 128), code_dim: int = 32, *,
                 activation: str | None = "relu", code_activation: str | None = None,
                 output: str | None = "sigmoid"):
        super().__init__()
        sizes = [int(input_dim), *(int(h) for h in hidden), int(code_dim)]
        if any(s < 1 for s in sizes):
            raise ValueError(f"every layer needs at least one unit, got sizes {sizes}.")
        self.sizes = sizes
        self.act = _activation(activation, "activation")
        self.code_act = _activation(code_activation, "code_activation")
        self.out_act = _activation(output, "output")
        self.activation, self.code_activation, self.output = activation, code_activation, output
        self.encoder = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.decoder = nn.ModuleList(nn.Linear(b, a) for a, b in reversed(list(zip(sizes[:-1], sizes[1:]))))

    @property
    def code_dim(self) -> int:
        return self.sizes[-1]

    def _flat(self, x: torch.Tensor) -> torch.Tensor:
        h = x.reshape(len(x), -1)
        if h.shape[1] != self.sizes[0]:
            raise ValueError(f"expected inputs with {self.sizes[0]} values each (e.g. (B, 1, 28, 28) for "
                             f"MNIST), got shape {tuple(x.shape)}: build Autoencoder(input_dim={h.shape[1]}) "
                             "or check the data.")
        return h

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """z = f(x): (B, D) or (B, 1, 28, 28) -> (B, k)."""
        h = self._flat(x)                                   # (B, D)
        last = len(self.encoder) - 1
        for l, layer in enumerate(self.encoder):
            h = layer(h)                                    # (B, sizes[l]) -> (B, sizes[l + 1])
            h = self.code_act(h) if l == last else self.act(h)
        return h                                            # (B, k)

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        """a, the decoder's output before its output non-linearity: (B, k) -> (B, D)."""
        h = z
        last = len(self.decoder) - 1
        for l, layer in enumerate(self.decoder):
            h = layer(h)
            if l < last:
                h = self.act(h)
        return h                                            # (B, D)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """x_hat = g(z): (B, k) -> (B, D)."""
        return self.out_act(self.decode_logits(z))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The reconstruction x_hat, in the shape of x."""
        return self.decode(self.encode(x)).reshape(x.shape)

    def filters(self) -> torch.Tensor:
        """The first encoder layer's weights, one row per hidden unit: (h_1, D); each row is an image."""
        return self.encoder[0].weight.detach()


class ConvAutoencoder(nn.Module):
    """A convolutional autoencoder for (B, 1, 28, 28) images (Masci et al. 2011).

    Encoder: two stride-2 3x3 convolutions (28 -> 14 -> 7 pixels, ``channels`` feature maps) and a
    linear layer to the code z in R^k. Decoder: the mirror image, a linear layer back to 7x7 maps and
    two stride-2 transposed convolutions (7 -> 14 -> 28). The weights of a convolution are shared
    across positions, so it has far fewer parameters than an MLP of the same code size.
    """

    def __init__(self, code_dim: int = 32, channels: Sequence[int] = (32, 64), *,
                 output: str | None = "sigmoid", image_channels: int = 1):
        super().__init__()
        c1, c2 = (int(c) for c in channels)
        self.image_channels = int(image_channels)
        self.code_dim_ = int(code_dim)
        self.out_act = _activation(output, "output")
        self.output = output
        self.enc_conv = nn.Sequential(
            nn.Conv2d(self.image_channels, c1, 3, stride=2, padding=1), nn.ReLU(),   # (B, 1, 28, 28) -> (B, c1, 14, 14)
            nn.Conv2d(c1, c2, 3, stride=2, padding=1), nn.ReLU(),                    # -> (B, c2, 7, 7)
        )
        self.enc_fc = nn.Linear(c2 * 7 * 7, self.code_dim_)                          # (B, c2*49) -> (B, k)
        self.dec_fc = nn.Linear(self.code_dim_, c2 * 7 * 7)                          # (B, k) -> (B, c2*49)
        self.dec_conv = nn.Sequential(
            nn.ReLU(), nn.Unflatten(1, (c2, 7, 7)),
            nn.ConvTranspose2d(c2, c1, 3, stride=2, padding=1, output_padding=1), nn.ReLU(),  # -> (B, c1, 14, 14)
            nn.ConvTranspose2d(c1, self.image_channels, 3, stride=2, padding=1, output_padding=1),  # -> (B, 1, 28, 28)
        )

    @property
    def code_dim(self) -> int:
        return self.code_dim_

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """z = f(x): (B, 1, 28, 28) (or (B, 784)) -> (B, k)."""
        if x.ndim == 2 and x.shape[1] == self.image_channels * 784:
            x = x.reshape(len(x), self.image_channels, 28, 28)
        if x.ndim != 4 or tuple(x.shape[1:]) != (self.image_channels, 28, 28):
            raise ValueError(f"expected images of shape (B, {self.image_channels}, 28, 28), got "
                             f"{tuple(x.shape)}: ConvAutoencoder is built for 28x28 images.")
        return self.enc_fc(self.enc_conv(x).flatten(1))

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        """a: (B, k) -> (B, 1, 28, 28), before the output non-linearity."""
        return self.dec_conv(self.dec_fc(z))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.out_act(self.decode_logits(z))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x)).reshape(x.shape)


# ----------------------------------------------------------------------------------------------
# Reconstruction losses (per example: summed over pixels, one number per image)
# ----------------------------------------------------------------------------------------------

def squared_error(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """l_SE(x, x_hat) = sum_d (x_d - x_hat_d)^2, eq. 4.2: (B, ...) , (B, ...) -> (B,). Summed in float32,
    also under mixed precision (a bfloat16 sum over 784 pixels keeps only two or three digits)."""
    if x_hat.shape != x.shape:
        x_hat = x_hat.reshape(x.shape)
    return (_wide(x_hat) - _wide(x)).pow(2).reshape(len(x), -1).sum(1)


def binary_cross_entropy(a: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """l_BCE(x, sigmoid(a)) = -sum_d [x_d log x_hat_d + (1 - x_d) log(1 - x_hat_d)], eq. 4.3, from the
    logits ``a`` (stable for any a): (B, ...), (B, ...) with x in [0, 1] -> (B,)."""
    if a.shape != x.shape:
        a = a.reshape(x.shape)
    return F.binary_cross_entropy_with_logits(_wide(a), _wide(x), reduction="none").reshape(len(x), -1).sum(1)


def reconstruction_loss(model: nn.Module, x: torch.Tensor, *, loss: str = "bce",
                        x_in: torch.Tensor | None = None) -> torch.Tensor:
    """The per-example loss l(x, g(f(x_in))) (eq. 4.1; x_in = x unless a corrupted copy is given,
    eq. 4.7): (B, ...) -> (B,). ``loss="bce"`` needs a sigmoid output and x in [0, 1]."""
    _check_loss(loss, model)
    if loss == "bce":
        check_unit_interval(x, "the images x", why="the binary cross-entropy, eq. 4.3, reads each pixel as a probability")
    a = model.decode_logits(model.encode(x if x_in is None else x_in))
    if loss == "bce":
        return binary_cross_entropy(a, x)
    return squared_error(model.out_act(a), x)


# ----------------------------------------------------------------------------------------------
# Sparsity penalties (eqs. 4.5 and 4.6)
# ----------------------------------------------------------------------------------------------

def l1_penalty(h: torch.Tensor) -> torch.Tensor:
    """sum_j ``|h_j|`` averaged over the batch, eq. 4.5 (without its weight lambda): (B, k) -> scalar."""
    return _wide(h).abs().sum(1).mean()


def kl_bernoulli(rho: float | torch.Tensor, rho_hat: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """KL(rho || rho_hat) between Bernoulli distributions, elementwise:
    rho log(rho / rho_hat) + (1 - rho) log((1 - rho) / (1 - rho_hat)); rho_hat is clamped to
    [eps, 1 - eps] so that a dead or saturated unit gives a large but finite penalty."""
    rho = torch.as_tensor(rho, dtype=rho_hat.dtype, device=rho_hat.device)
    r = rho_hat.clamp(eps, 1 - eps)
    return torch.xlogy(rho, rho / r) + torch.xlogy(1 - rho, (1 - rho) / (1 - r))


def kl_sparsity_penalty(h: torch.Tensor, rho: float) -> torch.Tensor:
    """sum_j KL(rho || rho_hat_j) with rho_hat_j = mean_i h_ij, eq. 4.6 (without its weight beta).

    ``h`` (B, k) are activations in [0, 1] (sigmoid units); ``rho`` the target mean activation."""
    if not 0.0 < float(rho) < 1.0:
        raise ValueError(f"rho, the target average activation, must be strictly between 0 and 1, got {rho!r}.")
    if h.ndim != 2:
        raise ValueError(f"expected activations of shape (B, k), got {tuple(h.shape)}.")
    if h.numel() and (h.min() < 0 or h.max() > 1):
        raise ValueError(f"the KL sparsity penalty reads activations as firing probabilities in [0, 1], got "
                         f"values in [{h.min().item():.3g}, {h.max().item():.3g}]: use sigmoid code units "
                         "(code_activation='sigmoid'), or the L1 penalty for other units.")
    rho_hat = _wide(h).mean(0)                              # (k,) average activation of each unit
    return kl_bernoulli(rho, rho_hat).sum()


# ----------------------------------------------------------------------------------------------
# Corruption for the denoising autoencoder (eq. 4.8)
# ----------------------------------------------------------------------------------------------

def mask_noise(x: torch.Tensor, nu: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Masking noise (Vincent et al. 2010): in each example, round(nu * D) of its D entries, chosen
    uniformly at random and independently per example, are set to 0; the others are kept. Returns a
    new tensor of the shape of ``x`` (B, ...); ``x`` is not changed."""
    if not 0.0 <= float(nu) <= 1.0:
        raise ValueError(f"nu, the fraction of pixels to mask, must be between 0 and 1, got {nu!r}.")
    flat = x.reshape(len(x), -1)                                            # (B, D)
    n_masked = round(float(nu) * flat.shape[1])
    scores = torch.rand(flat.shape, generator=generator, device="cpu" if generator is not None else x.device)
    masked = scores.to(x.device).argsort(dim=1)[:, :n_masked]              # (B, n_masked) random positions
    keep = torch.ones_like(flat).scatter_(1, masked, 0.0)                   # (B, D) 0 where masked
    return (flat * keep).reshape(x.shape)


def gaussian_noise(x: torch.Tensor, sigma: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Additive isotropic Gaussian noise x_tilde = x + sigma * eps, eps ~ N(0, I) (eq. 4.8). Not clipped:
    the encoder sees values outside [0, 1]; the target stays the clean x."""
    if not float(sigma) >= 0.0:
        raise ValueError(f"sigma, the noise standard deviation, must be >= 0, got {sigma!r}.")
    eps = torch.randn(x.shape, generator=generator, device="cpu" if generator is not None else x.device)
    return x + float(sigma) * eps.to(x.device, x.dtype)


def corrupt(x: torch.Tensor, kind: str, level: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """x_tilde ~ q(x_tilde | x): ``kind="mask"`` with ``level`` = nu, or ``"gaussian"`` with ``level`` = sigma."""
    if kind == "mask":
        return mask_noise(x, level, generator)
    if kind == "gaussian":
        return gaussian_noise(x, level, generator)
    raise ValueError(f"kind must be one of {CORRUPTIONS}, got {kind!r}.")


# ----------------------------------------------------------------------------------------------
# Training: the objective, and fit() from unsuplab.train
# ----------------------------------------------------------------------------------------------

def autoencoder_loss(model: nn.Module, x: torch.Tensor, *, loss: str = "bce",
                     corruption: tuple[str, float] | Callable | None = None,
                     sparsity: tuple[str, float] | tuple[str, float, float] | Callable | None = None):
    """The training objective of every autoencoder in the chapter, for a batch ``x``:

        mean_i l(x_i, g(f(x_tilde_i))) + penalty(f(x_tilde)),

    where ``x_tilde = x`` unless ``corruption`` is ``("mask", nu)``, ``("gaussian", sigma)`` or a function
    x -> x_tilde (eq. 4.7), and ``sparsity`` is ``None``, ``("l1", lambda)`` (eq. 4.5),
    ``("kl", beta, rho)`` (eq. 4.6) or a function h -> penalty of the codes h = f(x_tilde) (B, k).
    Returns ``(loss, {"recon": ..., "penalty": ...})`` for ``fit``. With ``loss="bce"``, x must be in [0, 1].
    """
    _check_loss(loss, model)
    if loss == "bce":
        check_unit_interval(x, "the images x", why="the binary cross-entropy, eq. 4.3, reads each pixel as a probability")
    if corruption is None:
        x_in = x
    elif callable(corruption):
        x_in = corruption(x)
    else:
        x_in = corrupt(x, *corruption)
    h = model.encode(x_in)                                  # (B, k)
    a = model.decode_logits(h)                              # (B, D) or (B, 1, 28, 28)
    recon = (binary_cross_entropy(a, x) if loss == "bce" else squared_error(model.out_act(a), x)).mean()
    if sparsity is None:
        return recon, {"recon": recon.detach()}
    spec = tuple(sparsity) if isinstance(sparsity, (tuple, list)) else None
    if callable(sparsity):
        penalty = sparsity(h)
    elif spec is not None and len(spec) == 2 and spec[0] == "l1":
        penalty = spec[1] * l1_penalty(h)
    elif spec is not None and len(spec) == 3 and spec[0] == "kl":
        penalty = spec[1] * kl_sparsity_penalty(h, spec[2])
    else:
        raise ValueError(f"sparsity must be None, ('l1', lambda), ('kl', beta, rho) or a function h -> penalty, "
                         f"got {sparsity!r}.")
    return recon + penalty, {"recon": recon.detach(), "penalty": penalty.detach()}


def train_autoencoder(model: nn.Module, x_train: torch.Tensor, *, epochs: int, batch_size: int = 128,
                      lr: float = 1e-3, loss: str = "bce", corruption=None, sparsity=None,
                      max_steps: int | None = None, seed: int = 0, device=None, **fit_kwargs):
    """Train ``model`` on the images ``x_train`` with :func:`autoencoder_loss` and
    :func:`unsuplab.train.fit` (Adam, progress bar, NaN guard, optional ``checkpoint=``); returns the
    History. ``x_train`` is moved to the model's device once and batched by :class:`unsuplab.train.TensorBatches`."""
    if device is None:
        device = next(model.parameters()).device
    x_train = x_train.to(device)
    batches = TensorBatches(x_train, batch_size=batch_size)

    def loss_fn(model, x):
        return autoencoder_loss(model, x, loss=loss, corruption=corruption, sparsity=sparsity)

    return fit(model, loss_fn, batches, epochs=epochs, lr=lr, max_steps=max_steps, seed=seed,
               device=device, **fit_kwargs)


class _LayerPair(nn.Module):
    """Layer pair l of a deep :class:`Autoencoder` as a shallow autoencoder of its own input h_{l-1}:
    h_l = act(encoder[l](h_{l-1})), then h_{l-1} is rebuilt by decoder[L-1-l]. Shares the weights."""

    def __init__(self, model: Autoencoder, l: int):
        super().__init__()
        n = len(model.encoder)
        self.enc, self.dec = model.encoder[l], model.decoder[n - 1 - l]
        self.hidden_act = model.code_act if l == n - 1 else model.act
        # the first pair rebuilds pixels (the model's output unit); inner pairs rebuild hidden activations
        self.out_act = model.out_act if l == 0 else model.act
        self.output = model.output if l == 0 else "inner"

    def encode(self, h: torch.Tensor) -> torch.Tensor:
        return self.hidden_act(self.enc(h))

    def decode_logits(self, h: torch.Tensor) -> torch.Tensor:
        return self.dec(h)


def train_layerwise(model: Autoencoder, x_train: torch.Tensor, *, steps_per_layer: int,
                    batch_size: int = 128, lr: float = 1e-3, loss: str = "bce", seed: int = 0,
                    **fit_kwargs) -> list:
    """Greedy layer-wise training of a deep autoencoder (Bengio et al. 2007; Hinton & Salakhutdinov 2006
    with RBMs): train pair 0 (x -> h_1 -> x_hat) alone, freeze it, compute h_1 for every image, train
    pair 1 on h_1 (h_1 -> h_2 -> h_1_hat, squared error), and so on up to the code. The trained halves
    stay in ``model``, which is then a stacked autoencoder (fine-tune it end to end with
    :func:`train_autoencoder`). Each pair gets ``steps_per_layer`` Adam steps. Returns the Histories.
    """
    if not isinstance(model, Autoencoder):
        raise TypeError(f"train_layerwise needs an Autoencoder (a stack of layers), got {type(model).__name__}.")
    device = next(model.parameters()).device
    h = model._flat(x_train.to(device))                    # (N, D): the input of pair 0
    histories = []
    for l in range(len(model.encoder)):
        pair = _LayerPair(model, l)
        pair_loss = loss if l == 0 else "se"

        def loss_fn(pair, batch, pair_loss=pair_loss):
            return autoencoder_loss(pair, batch, loss=pair_loss)

        batches = TensorBatches(h, batch_size=batch_size)
        epochs = math.ceil(steps_per_layer / len(batches))
        histories.append(fit(pair, loss_fn, batches, epochs=epochs, lr=lr, max_steps=steps_per_layer,
                             seed=seed + l, device=device, desc=f"layer pair {l + 1}", **fit_kwargs))
        with torch.no_grad():                               # freeze pair l: its codes feed pair l + 1
            h = torch.cat([pair.encode(chunk) for chunk in h.split(4096)])
    return histories


# ----------------------------------------------------------------------------------------------
# Using a trained autoencoder: codes, anomaly scores (eq. 4.9), AUROC, a 2-D grid of codes
# ----------------------------------------------------------------------------------------------

@torch.no_grad()
def encode_batched(model: nn.Module, x: torch.Tensor, batch_size: int = 2048) -> torch.Tensor:
    """The codes f(x) of many images, in eval mode and batches, on the model's device: (N, ...) -> (N, k)."""
    device = next(model.parameters()).device
    with eval_mode(model):
        return torch.cat([model.encode(chunk.to(device)) for chunk in x.split(batch_size)])


@torch.no_grad()
def reconstruction_error(model: nn.Module, x: torch.Tensor, batch_size: int = 2048) -> torch.Tensor:
    """The anomaly score s(x) = sum_d (x_d - x_hat_d)^2 of every image, eq. 4.9: (N, ...) -> (N,) on the CPU."""
    device = next(model.parameters()).device
    with eval_mode(model):
        return torch.cat([squared_error(model(chunk.to(device)), chunk.to(device)).cpu()
                          for chunk in x.split(batch_size)])


def auroc(scores, is_anomaly) -> float:
    """Area under the ROC curve of ``scores`` (higher = more anomalous) for binary labels
    ``is_anomaly`` (1/True = anomaly): P(s(anomaly) > s(normal)) + 1/2 P(s(anomaly) = s(normal)),
    computed from ranks (the Mann-Whitney U statistic), with tied scores given their average rank."""
    s = torch.as_tensor(scores).detach().reshape(-1).double().cpu()
    y = torch.as_tensor(is_anomaly).detach().reshape(-1).cpu()
    if len(s) != len(y):
        raise ValueError(f"got {len(s)} scores but {len(y)} labels: give one label per score.")
    if not torch.isfinite(s).all():
        raise ValueError("scores contain NaN or inf: did the model diverge?")
    if not torch.all((y == 0) | (y == 1)):
        raise ValueError("is_anomaly must hold 0/1 or False/True only (1 = anomaly).")
    y = y.bool()
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"AUROC needs both anomalies and normal examples, got {n_pos} anomalies and "
                         f"{n_neg} normal ones.")
    values, inverse, counts = torch.unique(s, return_inverse=True, return_counts=True)  # sorted values
    last_rank = counts.cumsum(0).double()                   # rank (1-based) of the last of each tie group
    mean_rank = last_rank - (counts.double() - 1) / 2       # average rank of the group
    ranks = mean_rank[inverse]                              # (N,)
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2            # Mann-Whitney U of the anomalies
    return float(u / (n_pos * n_neg))


def grid_2d(z: torch.Tensor, n: int = 15, quantile: float = 0.01) -> torch.Tensor:
    """An n x n grid of 2-D codes spanning the central range of the codes ``z`` (N, 2) (between the
    ``quantile`` and 1 - ``quantile`` quantiles of each coordinate): (n * n, 2), rows first."""
    if z.ndim != 2 or z.shape[1] != 2:
        raise ValueError(f"expected 2-D codes of shape (N, 2), got {tuple(z.shape)}: train with code_dim=2.")
    z = z.detach().float().cpu()
    lo, hi = torch.quantile(z, quantile, dim=0), torch.quantile(z, 1 - quantile, dim=0)
    u = torch.linspace(0, 1, n)
    z1 = lo[0] + (hi[0] - lo[0]) * u                        # columns: first coordinate
    z2 = hi[1] - (hi[1] - lo[1]) * u                        # rows: second coordinate, top to bottom
    return torch.stack(torch.meshgrid(z2, z1, indexing="ij")[::-1], dim=-1).reshape(n * n, 2)


def principal_angles(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Principal angles (radians, ascending) between the column spaces of ``a`` (D, k) and ``b`` (D, m):
    all zero when a linear autoencoder's decoder spans the PCA subspace (eq. 4.4)."""
    qa, qb = torch.linalg.qr(a.double())[0], torch.linalg.qr(b.double())[0]
    cosines = torch.linalg.svdvals(qa.T @ qb).clamp(-1, 1)   # descending
    return torch.arccos(cosines)                                # ascending
