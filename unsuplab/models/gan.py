"""Chapter 6's generative adversarial networks: the minimax game, DCGAN, a conditional GAN, InfoGAN
and CycleGAN.

The game (Goodfellow et al. 2014). A generator G maps noise z ~ p(z) to an image G(z); a
discriminator D maps an image x to D(x) in (0, 1), the probability that x is real. They play::

    min_G max_D V(D, G),   V(D, G) = E_{x ~ p_data}[log D(x)] + E_{z ~ p(z)}[log(1 - D(G(z)))]   (6.1)

For a fixed G the best discriminator is D*(x) = p_data(x) / (p_data(x) + p_g(x))               (6.2)
and there V(D*, G) = -log 4 + 2 JS(p_data || p_g)                                              (6.3)
so G minimises a Jensen-Shannon divergence, whose minimum -log 4 is reached at p_g = p_data.

Everything here works with the discriminator's *logit* l = logit D(x) (D(x) = sigmoid(l)), because
log D = log sigmoid(l) = -softplus(-l) and log(1 - D) = -softplus(l) never take the log of 0::

    discriminator loss  L_D = -V = E softplus(-l_real) + E softplus(l_fake)                     (6.4)
    saturating (minimax) generator loss      L_G = E log(1 - D(G(z))) = -E softplus(l_fake)     (6.5)
    non-saturating generator loss            L_G = -E log D(G(z))     =  E softplus(-l_fake)    (6.6)

Both generator losses have the same fixed points, but (6.5) has a vanishing gradient exactly when D
rejects the samples confidently (early in training); (6.6) does not. One alternating step
(Algorithm 1 of Goodfellow et al. with k = 1): a gradient step on D for (6.4), then one on G for (6.6).

DCGAN (Radford, Metz & Chintala 2016): strided (transposed) convolutions instead of pooling,
batch norm in both nets (not on D's input nor G's output), ReLU in G with tanh at the output,
LeakyReLU(0.2) in D, Adam with lr 2e-4 and beta1 = 0.5, weights initialised from N(0, 0.02).

A conditional GAN (Mirza & Osindero 2014) gives both players the label y of each image: G(z, y) draws
an image of class y, D(x, y) judges the pair (image, label). The game is (6.1) with y added::

    min_G max_D V(D, G) = E_{(x, y) ~ p_data}[log D(x, y)] + E_{z ~ p(z), y ~ p(y)}[log(1 - D(G(z, y), y))]  (6.10)

G reads y as a one-hot vector concatenated with the noise, [z, onehot(y)]: through G's first (linear)
layer that is W_z z + W_y onehot(y), a learned vector per class added to what the noise makes. D reads it
by projection (Miyato & Koyama 2018): an embedding of y, dotted with D's features h = phi(x), is added
to the unconditional logit psi(h)::

    logit D(x, y) = psi(phi(x)) + embed(y)^T phi(x)                                                (6.11)

D must then reject a real image shown with the wrong label as well as a fake one, and G can only fool it
with an image of the class it was asked for.

InfoGAN (Chen et al. 2016) feeds G a categorical code c next to the noise and asks an auxiliary head
Q, sharing D's body, to recover c from G(z, c). Maximising the variational lower bound of the mutual
information, L_I = E[log Q(c | G(z, c))] + H(c) <= I(c; G(z, c)), is a cross-entropy term added to
both players' losses with weight lambda, eq. (6.7)::

    L_D^info = L_D + lambda CE(Q(G(z, c)), c),   L_G^info = L_G + lambda CE(Q(G(z, c)), c).

G's input [z, onehot(c)] is the conditional generator's [z, onehot(y)]; what differs is who gives the
code its meaning: in a conditional GAN the data's labels, through D(x, y); in InfoGAN nothing but the
requirement that Q can read c back from the image, so c means whatever is easiest to recover.

CycleGAN (Zhu et al. 2017) learns two maps G_AB: A -> B and G_BA: B -> A from *unpaired* images of
two domains: each is a GAN generator against its domain's discriminator, and the cycle-consistency
loss ties them together::

    L_cyc = E_a |G_BA(G_AB(a)) - a|_1 + E_b |G_AB(G_BA(b)) - b|_1,                                (6.8)
    L_G = L_G(D_B, G_AB) + L_G(D_A, G_BA) + lambda_cyc L_cyc.

Images: the GANs here work in [-1, 1] (G ends in tanh, as in DCGAN); ``to_unit`` maps them back to
[0, 1] and ``to_signed`` maps MNIST's [0, 1] to [-1, 1].
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import CheckFailed, check_function, check_true
from ..train import eval_mode, run_steps  # run_steps: the labs call it as gan.run_steps

__all__ = ["value_function", "optimal_discriminator", "discriminator_loss", "generator_loss", "gan_step",
           "ring_modes", "ring_of_gaussians", "mode_coverage", "MLPGenerator", "MLPDiscriminator",
           "dcgan_init_", "DCGANGenerator", "DCGANDiscriminator", "to_unit", "to_signed",
           "one_hot_codes", "generator_input", "ProjectionDiscriminator", "conditional_gan_step",
           "check_projection_logit", "infogan_step", "thicken", "Translator", "PatchDiscriminator",
           "cyclegan_step", "generate", "run_steps", "check_gan_step"]


# ----------------------------------------------------------------------------------------------
# 1. The game, from the discriminator's logits
# ----------------------------------------------------------------------------------------------

def _logits(value: torch.Tensor, name: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor) or not value.is_floating_point():
        raise TypeError(f"expected {name} to be a float tensor of discriminator logits (any shape), got "
                        f"{type(value).__name__ if not isinstance(value, torch.Tensor) else value.dtype}.")
    if value.numel() == 0:
        raise ValueError(f"{name} is empty: the discriminator was given no images.")
    return value


def value_function(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """V(D, G) of eq. (6.1), estimated on a batch: mean log D(x) + mean log(1 - D(G(z))).

    ``real_logits`` = logit D(x) on real images, ``fake_logits`` = logit D(G(z)); any shapes (a patch
    discriminator gives (B, 1, h, w)). log D = -softplus(-l) and log(1 - D) = -softplus(l)."""
    real_logits, fake_logits = _logits(real_logits, "real_logits"), _logits(fake_logits, "fake_logits")
    return -F.softplus(-real_logits).mean() - F.softplus(fake_logits).mean()


def optimal_discriminator(p_data: torch.Tensor, p_g: torch.Tensor) -> torch.Tensor:
    """D*(x) = p_data(x) / (p_data(x) + p_g(x)), eq. (6.2), from the two densities at the same points."""
    if p_data.shape != p_g.shape:
        raise ValueError(f"p_data and p_g must be the densities at the same points, got shapes "
                         f"{tuple(p_data.shape)} and {tuple(p_g.shape)}.")
    if (p_data < 0).any() or (p_g < 0).any() or ((p_data + p_g) <= 0).any():
        raise ValueError("densities must be >= 0 with p_data + p_g > 0 at every point.")
    return p_data / (p_data + p_g)


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """L_D = -V(D, G), eq. (6.4): mean softplus(-l_real) + mean softplus(l_fake).

    The same number as ``F.binary_cross_entropy_with_logits`` with target 1 for real and 0 for fake
    (each averaged over its own batch, then summed)."""
    real_logits, fake_logits = _logits(real_logits, "real_logits"), _logits(fake_logits, "fake_logits")
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def generator_loss(fake_logits: torch.Tensor, saturating: bool = False) -> torch.Tensor:
    """The generator's loss on l = logit D(G(z)): non-saturating -mean log D(G(z)) = mean softplus(-l),
    eq. (6.6), or with ``saturating=True`` the minimax mean log(1 - D(G(z))) = -mean softplus(l), eq. (6.5)."""
    fake_logits = _logits(fake_logits, "fake_logits")
    if saturating:
        return -F.softplus(fake_logits).mean()
    return F.softplus(-fake_logits).mean()


def gan_step(G: nn.Module, D: nn.Module, opt_G: torch.optim.Optimizer, opt_D: torch.optim.Optimizer,
             x_real: torch.Tensor, z: torch.Tensor, saturating: bool = False) -> dict[str, torch.Tensor]:
    """One alternating update (Algorithm 1 of Goodfellow et al. 2014, k = 1).

    1. fake = G(z) (one forward pass, reused by both players);
    2. discriminator: L_D = discriminator_loss(D(x_real), D(fake.detach())), eq. (6.4), with real and
       fake in separate calls (separate batch-norm statistics, as in DCGAN); one step of ``opt_D``;
    3. generator: L_G = generator_loss(D(fake), saturating), eq. (6.6) or (6.5), through the *updated* D;
       one step of ``opt_G`` (D's gradients from this pass are cleared by the next ``opt_D.zero_grad``).

    Returns the two losses (detached): ``{"loss_D": L_D, "loss_G": L_G}``.
    """
    fake = G(z)                                                   # (B, ...) like x_real
    loss_D = discriminator_loss(D(x_real), D(fake.detach()))      # detach: this step must not move G
    opt_D.zero_grad(set_to_none=True)
    loss_D.backward()
    opt_D.step()

    loss_G = generator_loss(D(fake), saturating=saturating)       # D(fake) through the new D
    opt_G.zero_grad(set_to_none=True)
    loss_G.backward()
    opt_G.step()
    return {"loss_D": loss_D.detach(), "loss_G": loss_G.detach()}


# ----------------------------------------------------------------------------------------------
# 2. A 2-D toy: a ring of Gaussians (Metz et al. 2017)
# ----------------------------------------------------------------------------------------------

def ring_modes(n_modes: int = 8, radius: float = 2.0) -> torch.Tensor:
    """The centres of the mixture: ``n_modes`` points evenly spaced on a circle, (n_modes, 2)."""
    if n_modes < 1:
        raise ValueError(f"n_modes must be >= 1, got {n_modes}.")
    angle = 2 * math.pi * torch.arange(n_modes, dtype=torch.float32) / n_modes
    return radius * torch.stack([angle.cos(), angle.sin()], dim=1)


def ring_of_gaussians(n: int, n_modes: int = 8, radius: float = 2.0, std: float = 0.02, *,
                      generator: torch.Generator | None = None, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` samples of an equal mixture of ``n_modes`` isotropic Gaussians (standard deviation ``std``)
    centred on a circle of ``radius``: points (n, 2) and the mode each came from (n,)."""
    modes = ring_modes(n_modes, radius)
    which = torch.randint(n_modes, (n,), generator=generator)
    x = modes[which] + std * torch.randn(n, 2, generator=generator)
    return x.to(device), which.to(device)


def mode_coverage(x: torch.Tensor, n_modes: int = 8, radius: float = 2.0, std: float = 0.02,
                  min_fraction: float = 0.01) -> dict:
    """How many modes of the ring a set of samples ``x`` (N, 2) covers, as in Metz et al. (2017) and
    Srivastava et al. (2017): a sample is *high quality* when it lies within 3 ``std`` of its nearest
    mode; a mode is *covered* when at least ``min_fraction`` of all samples are high-quality samples
    of it. Returns ``{"covered": int, "high_quality": fraction, "counts": per-mode counts}``."""
    x = x.detach().float().cpu()
    if x.ndim != 2 or x.shape[1] != 2 or len(x) == 0:
        raise ValueError(f"expected samples of shape (N, 2), got {tuple(x.shape)}.")
    distances = torch.cdist(x, ring_modes(n_modes, radius))   # (N, n_modes)
    nearest, which = distances.min(dim=1)
    good = nearest <= 3 * std
    counts = torch.bincount(which[good], minlength=n_modes)
    return {"covered": int((counts >= min_fraction * len(x)).sum()), "high_quality": float(good.float().mean()),
            "counts": counts.tolist()}


class MLPGenerator(nn.Module):
    """G for the toy: z (B, z_dim) -> x (B, 2) through two ReLU layers of ``hidden`` units."""

    def __init__(self, z_dim: int = 16, hidden: int = 128, out_dim: int = 2):
        super().__init__()
        self.z_dim = z_dim
        self.net = nn.Sequential(nn.Linear(z_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, out_dim))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)  # (B, z_dim) -> (B, 2)


class MLPDiscriminator(nn.Module):
    """D for the toy: x (B, 2) -> logit (B,) through two ReLU layers of ``hidden`` units."""

    def __init__(self, in_dim: int = 2, hidden: int = 128):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(1)  # (B, 2) -> (B,)


# ----------------------------------------------------------------------------------------------
# 3. DCGAN for 28 x 28 images
# ----------------------------------------------------------------------------------------------

def to_signed(x: torch.Tensor) -> torch.Tensor:
    """Images in [0, 1] -> [-1, 1], the range of G's tanh output."""
    return 2.0 * x - 1.0


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """G's output in [-1, 1] -> images in [0, 1] (for pictures and the feature net)."""
    return (x + 1.0) / 2.0


def dcgan_init_(module: nn.Module) -> nn.Module:
    """DCGAN's initialisation, in place: conv and linear weights ~ N(0, 0.02), batch-norm scales
    ~ N(1, 0.02), all biases 0. Returns the module."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
    return module


class DCGANGenerator(nn.Module):
    """DCGAN's generator for 28 x 28 images: no pooling, no upsampling layer, only learned
    transposed convolutions of stride 2; batch norm and ReLU inside, tanh at the output.

    z (B, z_dim) -> linear -> (B, 2w, 7, 7) -> convT -> (B, w, 14, 14) -> convT -> (B, 1, 28, 28),
    with w = ``width``. For InfoGAN, z is the noise and the one-hot code concatenated, and ``hidden`` > 0
    first maps z to ``hidden`` units (linear, batch norm, ReLU), as in Chen et al. (2016).
    """

    def __init__(self, z_dim: int = 64, width: int = 64, channels: int = 1, hidden: int = 0):
        super().__init__()
        self.z_dim, self.width, self.hidden = z_dim, width, hidden
        if hidden:   # InfoGAN's generator (Chen et al. 2016): a fully connected layer of ``hidden`` units first
            self.project = nn.Sequential(nn.Linear(z_dim, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(),
                                         nn.Linear(hidden, 2 * width * 7 * 7, bias=False))
        else:
            self.project = nn.Sequential(nn.Linear(z_dim, 2 * width * 7 * 7, bias=False))
        self.net = nn.Sequential(
            nn.BatchNorm2d(2 * width), nn.ReLU(),
            nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1, bias=False),   # 7 -> 14
            nn.BatchNorm2d(width), nn.ReLU(),
            nn.ConvTranspose2d(width, channels, 4, stride=2, padding=1),                  # 14 -> 28
            nn.Tanh(),
        )
        dcgan_init_(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"expected z of shape (B, {self.z_dim}), got {tuple(z.shape)}: draw it with "
                             f"torch.randn(B, {self.z_dim}).")
        h = self.project(z).view(len(z), 2 * self.width, 7, 7)   # (B, z_dim) -> (B, 2w, 7, 7)
        return self.net(h)                                        # -> (B, 1, 28, 28) in [-1, 1]


class DCGANDiscriminator(nn.Module):
    """DCGAN's discriminator for 28 x 28 images: strided convolutions (no pooling), LeakyReLU(0.2),
    batch norm on every layer but the first; one logit per image.

    x (B, 1, 28, 28) -> conv -> (B, w, 14, 14) -> conv -> (B, 2w, 7, 7) -> linear -> logit (B,).

    With ``n_codes`` > 0 it also has InfoGAN's head Q: ``q_logits(h)`` gives the logits of
    Q(c | x) over the ``n_codes`` values of the categorical code, from the same body features h.
    ``hidden`` > 0 adds InfoGAN's shared fully connected layer (linear, batch norm, LeakyReLU) to the
    body, so that D and Q share it (Chen et al. 2016); without it the code settles on styles, not digits.
    """

    def __init__(self, width: int = 64, channels: int = 1, n_codes: int = 0, hidden: int = 0):
        super().__init__()
        self.width, self.n_codes, self.hidden = width, n_codes, hidden
        self.body = nn.Sequential(
            nn.Conv2d(channels, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2),           # 28 -> 14
            nn.Conv2d(width, 2 * width, 4, stride=2, padding=1, bias=False),                  # 14 -> 7
            nn.BatchNorm2d(2 * width), nn.LeakyReLU(0.2),
            nn.Flatten(),                                                                      # (B, 2w*49)
        )
        if hidden:   # InfoGAN's discriminator (Chen et al. 2016): a shared fully connected layer after the convs
            self.body.extend([nn.Linear(2 * width * 7 * 7, hidden, bias=False), nn.BatchNorm1d(hidden),
                              nn.LeakyReLU(0.2)])
        features = hidden or 2 * width * 7 * 7
        self.head = nn.Linear(features, 1)
        if n_codes:
            self.q_head = nn.Sequential(nn.Linear(features, 128, bias=False), nn.BatchNorm1d(128),
                                        nn.LeakyReLU(0.2), nn.Linear(128, n_codes))
        dcgan_init_(self)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[-2:] != (28, 28):
            raise ValueError(f"expected images of shape (B, C, 28, 28), got {tuple(x.shape)}.")
        return self.body(x)                                       # (B, 1, 28, 28) -> (B, 2w*49)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)).squeeze(1)             # -> (B,) logits

    def q_logits(self, h: torch.Tensor) -> torch.Tensor:
        """InfoGAN's Q(c | x) as logits (B, n_codes), from body features h = ``features(x)``."""
        if not self.n_codes:
            raise RuntimeError("this discriminator has no Q head: build it with n_codes=10 for InfoGAN.")
        return self.q_head(h)


# ----------------------------------------------------------------------------------------------
# 4. A conditional GAN: the label given to both players
# ----------------------------------------------------------------------------------------------

def one_hot_codes(codes: torch.Tensor, n_codes: int) -> torch.Tensor:
    """Integer labels or codes (B,) -> one-hot float vectors (B, n_codes), to concatenate with the noise."""
    return F.one_hot(codes, n_codes).float()


def generator_input(noise: torch.Tensor, labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """The input of a conditional generator G(z, y), and of InfoGAN's G(z, c): [z, onehot(y)].

    ``noise`` (B, z_dim), ``labels`` (B,) integers in 0..n_classes-1 -> (B, z_dim + n_classes), for a
    :class:`DCGANGenerator` built with ``z_dim + n_classes`` inputs."""
    if labels.ndim != 1 or len(labels) != len(noise) or labels.is_floating_point():
        raise ValueError(f"expected one integer label per noise vector, shape ({len(noise)},), got "
                         f"{tuple(labels.shape)} of {labels.dtype}: draw them with torch.randint({n_classes}, (B,)).")
    return torch.cat([noise, one_hot_codes(labels, n_classes)], dim=1)     # (B, z_dim + n_classes)


class ProjectionDiscriminator(DCGANDiscriminator):
    """D(x, y) of a conditional GAN: DCGAN's discriminator with the label projected onto its features
    (Miyato & Koyama 2018), eq. (6.11)::

        logit D(x, y) = psi(h) + embed(y)^T h,   h = phi(x) = features(x)

    phi is DCGAN's body, psi its linear head (the unconditional logit, as in :class:`DCGANDiscriminator`),
    ``embed`` an ``nn.Embedding(n_classes, features)``: one vector per class, dotted with the features.
    ``D(x, y)``: images (B, C, 28, 28) and labels (B,) -> logits (B,).
    """

    def __init__(self, width: int = 64, n_classes: int = 10, channels: int = 1, hidden: int = 0):
        super().__init__(width, channels, hidden=hidden)
        self.n_classes = n_classes
        self.embed = nn.Embedding(n_classes, self.head.in_features)
        nn.init.normal_(self.embed.weight, 0.0, 0.02)             # DCGAN's N(0, 0.02), like every other weight

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if y is None or y.shape != (len(x),) or y.is_floating_point():
            raise ValueError(f"a conditional discriminator judges pairs: call D(x, y) with one integer label per "
                             f"image, shape ({len(x)},), got {None if y is None else tuple(y.shape)}.")
        h = self.features(x)                                      # (B, 1, 28, 28) -> (B, F)
        return self.head(h).squeeze(1) + (self.embed(y) * h).sum(1)   # psi(h) + embed(y)^T h: (B,)


def conditional_gan_step(G: nn.Module, D: ProjectionDiscriminator, opt_G: torch.optim.Optimizer,
                         opt_D: torch.optim.Optimizer, x_real: torch.Tensor, y_real: torch.Tensor,
                         noise: torch.Tensor, y_fake: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """One alternating update of a conditional GAN, eq. (6.10): :func:`gan_step` with the label given to
    both players. Real pairs (``x_real``, ``y_real``); fakes G([z, onehot(y_fake)]) judged with their
    asked label ``y_fake`` (default: ``y_real``, the batch's labels, a draw from the data's p(y)).
    ``noise`` (B, z_dim); G has z_dim + D.n_classes inputs. Returns ``{"loss_D": ..., "loss_G": ...}``."""
    y_fake = y_real if y_fake is None else y_fake
    fake = G(generator_input(noise, y_fake, D.n_classes))             # G(z, y): (B, 1, 28, 28)
    loss_D = discriminator_loss(D(x_real, y_real), D(fake.detach(), y_fake))   # eq. (6.4) on pairs
    opt_D.zero_grad(set_to_none=True)
    loss_D.backward()
    opt_D.step()

    loss_G = generator_loss(D(fake, y_fake))                          # eq. (6.6): the updated D, same labels
    opt_G.zero_grad(set_to_none=True)
    loss_G.backward()
    opt_G.step()
    return {"loss_D": loss_D.detach(), "loss_G": loss_G.detach()}


# ----------------------------------------------------------------------------------------------
# 5. InfoGAN: a categorical code that the generator must make recoverable
# ----------------------------------------------------------------------------------------------


def infogan_step(G: nn.Module, D: DCGANDiscriminator, opt_G: torch.optim.Optimizer, opt_D: torch.optim.Optimizer,
                 x_real: torch.Tensor, noise: torch.Tensor, codes: torch.Tensor,
                 lambda_info: float = 1.0) -> dict[str, torch.Tensor]:
    """One alternating InfoGAN update, eq. (6.7): :func:`gan_step` with the information term
    lambda CE(Q(G(z, c)), c) added to both losses. ``noise`` (B, z_dim), ``codes`` (B,) integers;
    G gets their concatenation. ``opt_D`` must hold D's Q head too (it is part of D)."""
    z = generator_input(noise, codes, D.n_codes)                      # [z, onehot(c)]: (B, z_dim + n_codes)
    fake = G(z)
    h_fake = D.features(fake.detach())
    info_D = F.cross_entropy(D.q_logits(h_fake), codes)              # -E log Q(c | G(z, c))
    loss_D = discriminator_loss(D(x_real), D.head(h_fake).squeeze(1)) + lambda_info * info_D
    opt_D.zero_grad(set_to_none=True)
    loss_D.backward()
    opt_D.step()

    h_fake = D.features(fake)
    info_G = F.cross_entropy(D.q_logits(h_fake), codes)
    loss_G = generator_loss(D.head(h_fake).squeeze(1)) + lambda_info * info_G
    opt_G.zero_grad(set_to_none=True)
    loss_G.backward()
    opt_G.step()
    return {"loss_D": loss_D.detach(), "loss_G": loss_G.detach(), "info": info_G.detach()}


# ----------------------------------------------------------------------------------------------
# 6. CycleGAN at small scale: two unpaired domains of digits
# ----------------------------------------------------------------------------------------------

def thicken(x: torch.Tensor, size: int = 3) -> torch.Tensor:
    """A restyled MNIST: bold strokes by grey-level dilation (the maximum over a ``size`` x ``size``
    window). Images (B, C, H, W) in any range -> the same shape and range."""
    if x.ndim != 4:
        raise ValueError(f"expected images of shape (B, C, H, W), got {tuple(x.shape)}.")
    if size < 1 or size % 2 == 0:
        raise ValueError(f"size must be an odd window width >= 1, got {size}.")
    return F.max_pool2d(x, size, stride=1, padding=size // 2)


class _Residual(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.block = nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.InstanceNorm2d(width), nn.ReLU(),
                                   nn.Conv2d(width, width, 3, padding=1), nn.InstanceNorm2d(width))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.block(h)


class Translator(nn.Module):
    """CycleGAN's generator at MNIST scale: down once, ``n_blocks`` residual blocks, up once
    (instance norm, as in Zhu et al. 2017). (B, 1, 28, 28) in [-1, 1] -> the same shape, tanh."""

    def __init__(self, width: int = 32, n_blocks: int = 2, channels: int = 1):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1), nn.InstanceNorm2d(width), nn.ReLU(),         # 28 x 28
            nn.Conv2d(width, 2 * width, 4, stride=2, padding=1), nn.InstanceNorm2d(2 * width), nn.ReLU(),  # 14
            *[_Residual(2 * width) for _ in range(n_blocks)],
            nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1), nn.InstanceNorm2d(width), nn.ReLU(),  # 28
            nn.Conv2d(width, channels, 3, padding=1), nn.Tanh(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # (B, 1, 28, 28) -> (B, 1, 28, 28)


class PatchDiscriminator(nn.Module):
    """A PatchGAN discriminator (Isola et al. 2017): one logit per overlapping patch, (B, 1, 28, 28) ->
    (B, 1, 7, 7), so it judges local texture (stroke width) rather than the whole digit."""

    def __init__(self, width: int = 32, channels: int = 1):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2),                     # 14
            nn.Conv2d(width, 2 * width, 4, stride=2, padding=1), nn.InstanceNorm2d(2 * width), nn.LeakyReLU(0.2),  # 7
            nn.Conv2d(2 * width, 1, 3, padding=1),                                                     # 7 x 7 logits
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def cyclegan_step(G_ab: nn.Module, G_ba: nn.Module, D_a: nn.Module, D_b: nn.Module,
                  opt_G: torch.optim.Optimizer, opt_D: torch.optim.Optimizer, a: torch.Tensor, b: torch.Tensor,
                  lambda_cyc: float = 10.0) -> dict[str, torch.Tensor]:
    """One alternating CycleGAN update, eq. (6.8), on unpaired batches ``a`` (domain A) and ``b`` (B).

    ``opt_D`` holds both discriminators, ``opt_G`` both generators. Discriminators first (on detached
    translations, as in :func:`gan_step`), then the generators: non-saturating GAN losses both ways
    plus ``lambda_cyc`` times the L1 cycle-consistency loss."""
    fake_b, fake_a = G_ab(a), G_ba(b)                             # translations A -> B and B -> A
    loss_D = discriminator_loss(D_b(b), D_b(fake_b.detach())) + discriminator_loss(D_a(a), D_a(fake_a.detach()))
    opt_D.zero_grad(set_to_none=True)
    loss_D.backward()
    opt_D.step()

    loss_gan = generator_loss(D_b(fake_b)) + generator_loss(D_a(fake_a))
    loss_cyc = (G_ba(fake_b) - a).abs().mean() + (G_ab(fake_a) - b).abs().mean()   # eq. (6.8)
    loss_G = loss_gan + lambda_cyc * loss_cyc
    opt_G.zero_grad(set_to_none=True)
    loss_G.backward()
    opt_G.step()
    return {"loss_D": loss_D.detach(), "loss_G": loss_gan.detach(), "cycle": loss_cyc.detach()}


# ----------------------------------------------------------------------------------------------
# 7. Sampling, and the training loop packaged for the variants
# ----------------------------------------------------------------------------------------------

@torch.no_grad()
def generate(G: nn.Module, z: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Images G(z) in [0, 1] on the CPU, ``batch_size`` at a time, with G in eval mode (batch norm
    uses its running statistics, so a sample does not depend on the rest of its batch)."""
    device = next(G.parameters()).device
    with eval_mode(G):
        return torch.cat([to_unit(G(z[i:i + batch_size].to(device))).float().cpu()
                          for i in range(0, len(z), batch_size)])


# ----------------------------------------------------------------------------------------------
# 8. The labs' self-checks
# ----------------------------------------------------------------------------------------------

def _toy_players(seed: int, lr: float = 1e-3):
    torch.manual_seed(seed)
    G, D = MLPGenerator(z_dim=4, hidden=16), MLPDiscriminator(hidden=16)
    opt_G = torch.optim.Adam(G.parameters(), lr=lr, betas=(0.5, 0.999))
    opt_D = torch.optim.Adam(D.parameters(), lr=lr, betas=(0.5, 0.999))
    g = torch.Generator().manual_seed(seed + 100)
    x_real = ring_of_gaussians(32, generator=g)[0]
    z = torch.randn(32, 4, generator=g)
    return G, D, opt_G, opt_D, x_real, z


def _number(value) -> float:
    return float(value.detach()) if isinstance(value, torch.Tensor) else float(value)


def _max_gap(a: nn.Module, b: nn.Module) -> float:
    return max((p - q).abs().max().item() for p, q in zip(a.parameters(), b.parameters()))


def check_gan_step(step_fn, seeds=(0, 1, 2)) -> None:
    """Self-check for the lab's ``gan_step(G, D, opt_G, opt_D, x_real, z, saturating=False)``: runs it
    and the reference :func:`gan_step` from identical small players (with the non-saturating and the
    saturating loss) and compares the returned losses and the weights of D and of G after the step.
    Prints a ✓ line, or raises ``unsuplab.checks.CheckFailed`` saying which part differs."""
    for seed in seeds:
        for saturating in (False, True):
            G, D, opt_G, opt_D, x_real, z = _toy_players(seed)
            G_ref, D_ref = copy.deepcopy(G), copy.deepcopy(D)
            opt_G_ref = torch.optim.Adam(G_ref.parameters(), lr=1e-3, betas=(0.5, 0.999))
            opt_D_ref = torch.optim.Adam(D_ref.parameters(), lr=1e-3, betas=(0.5, 0.999))
            case = f"(seed {seed}, saturating={saturating})"
            try:
                out = step_fn(G, D, opt_G, opt_D, x_real, z, saturating=saturating)
            except NotImplementedError:
                raise
            except Exception as err:
                raise CheckFailed(f"✗ gan_step raised {type(err).__name__}: {err} {case}. If the message says a "
                                  "variable 'has been modified by an inplace operation', the generator's loss "
                                  "used D's output from before D's update: call D(fake) again after "
                                  "opt_D.step().") from err
            expected = gan_step(G_ref, D_ref, opt_G_ref, opt_D_ref, x_real, z, saturating=saturating)
            if not isinstance(out, dict) or not {"loss_D", "loss_G"} <= set(out):
                raise CheckFailed("✗ gan_step must return a dict with the two losses, "
                                  f"{{'loss_D': ..., 'loss_G': ...}}, got {type(out).__name__}.")
            # in the order the step makes them: D's loss, D's update, G's loss, G's update
            comparisons = [
                (abs(_number(out["loss_D"]) - float(expected["loss_D"])),
                 f"the discriminator loss is {_number(out['loss_D']):.5f}, expected {float(expected['loss_D']):.5f}",
                 "compute it on D(x_real) and D(fake.detach()) before any update."),
                (_max_gap(D, D_ref), "D's weights after the step differ from the reference",
                 "zero opt_D's gradients, back-propagate L_D, then opt_D.step() — before the generator's turn."),
                (abs(_number(out["loss_G"]) - float(expected["loss_G"])),
                 f"the generator loss is {_number(out['loss_G']):.5f}, expected {float(expected['loss_G']):.5f}",
                 "compute it as generator_loss(D(fake), saturating) with the *updated* D."),
                (_max_gap(G, G_ref), "G's weights after the step differ from the reference",
                 "zero opt_G's gradients (the discriminator's step may have left some), back-propagate L_G, "
                 "then opt_G.step()."),
            ]
            for gap, what, advice in comparisons:
                if gap > 1e-5:
                    raise CheckFailed(f"✗ {what} {case}: {advice}")
    print(f"✓ gan_step matches the reference: same losses and same weights of D and G after one step, "
          f"on {2 * len(seeds)} test cases.")


def _projection_reference(D: ProjectionDiscriminator, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return D(x, y)


def check_projection_logit(logit_fn, seeds=(0, 1)) -> None:
    """Self-check for the lab's ``projection_logit(D, x, y)``, eq. (6.11): psi(h) + embed(y)^T h with
    h = ``D.features(x)``, psi = ``D.head``, embed = ``D.embed``. Compares it with
    :class:`ProjectionDiscriminator`'s own logit on small discriminators (with and without InfoGAN's hidden
    layer, class vectors drawn large enough that each term matters) and random labels, then checks that
    gradients flow through it. Prints ✓ lines, or raises ``unsuplab.checks.CheckFailed`` naming the
    likely mistake."""
    g = torch.Generator().manual_seed(17)
    cases = []
    with torch.random.fork_rng(devices=[]):                  # the networks' initial weights, then restored
        for seed in seeds:
            for hidden in (0, 16):
                torch.manual_seed(seed)
                D = ProjectionDiscriminator(width=4, n_classes=5, hidden=hidden)
                with torch.no_grad():
                    D.embed.weight.normal_(0.0, 0.5, generator=g)
                    D.head.bias.fill_(0.3)
                cases.append((D, torch.rand(6, 1, 28, 28, generator=g) * 2 - 1, torch.randint(5, (6,), generator=g)))
    try:
        check_function(logit_fn, _projection_reference, cases, name="projection_logit", atol=1e-4)
    except CheckFailed as failure:
        D, x, y = cases[0]
        with torch.no_grad():
            h = D.features(x)                                     # (B, F)
            psi, e = D.head(h), D.embed(y)                        # (B, 1), (B, F)
            mistakes = [
                (psi.squeeze(1), "add the projection term embed(y)^T h, (D.embed(y) * h).sum(1): without it D "
                                 "ignores the label."),
                ((e * h).sum(1), "add the unconditional term psi(h) = D.head(h).squeeze(1): the projection only "
                                 "adds the label's part of the logit."),
                (psi.squeeze(1) + (e * h).mean(1), "embed(y)^T h is a dot product: sum over the features, "
                                                   ".sum(1), not .mean(1)."),
                (psi.squeeze(1) - (e * h).sum(1), "the sign: the projection is added, psi(h) + embed(y)^T h."),
            ]
            got = None
            try:
                got = torch.as_tensor(logit_fn(copy.deepcopy(D), x.clone(), y.clone())).detach()
            except Exception:                                    # noqa: BLE001 - the message above says what was raised
                pass
        hint = "psi(h) + embed(y)^T h: h = D.features(x), D.head(h).squeeze(1) + (D.embed(y) * h).sum(1)."
        if got is not None and got.shape == (len(x), 1):
            hint = "return one logit per image, shape (B,): squeeze D.head(h) to (B,) and sum the product over dim 1."
        elif got is not None and got.shape == (len(x), len(x)):
            hint = ("embed(y) @ h.T pairs every label with every image: take each image's own class vector, "
                    "(D.embed(y) * h).sum(1).")
        elif got is not None and got.shape == (len(x),):
            hint = next((text for value, text in mistakes if torch.allclose(got.float(), value, atol=1e-4)), hint)
        raise CheckFailed(f"{failure}\n  hint: {hint}") from None
    D, x, y = cases[1]
    out = logit_fn(D, x, y)
    check_true("projection_logit keeps the gradient", torch.is_tensor(out) and out.requires_grad,
               "return a tensor that carries gradients (no .item(), .detach() or torch.no_grad()): both players "
               "are trained through this logit.")
