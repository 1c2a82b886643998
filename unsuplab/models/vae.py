"""Chapter 5's variational autoencoders: the ELBO term by term, an honest likelihood, beta-VAE, VQ-VAE.

Papers
------
* Kingma & Welling (2014), "Auto-encoding variational Bayes"; Rezende, Mohamed & Wierstra (2014),
  "Stochastic backpropagation and approximate inference in deep generative models": the VAE.
* Burda, Grosse & Salakhutdinov (2016), "Importance weighted autoencoders": the K-sample bound used
  here to estimate the test log-likelihood, and the "active units" count.
* Higgins et al. (2017), "beta-VAE: learning basic visual concepts with a constrained variational
  framework": the KL term weighted by beta.
* van den Oord, Vinyals & Kavukcuoglu (2017), "Neural discrete representation learning": VQ-VAE.

Equations, numbered as in ``book/05_vae.md``
--------------------------------------------
A latent variable ``z`` with prior ``p(z) = N(0, I)``, a decoder ``p_theta(x | z)`` and an encoder
``q_phi(z | x) = N(mu(x), diag(exp(logvar(x))))``:

* (5.1) Bernoulli decoder: ``log p(x|z) = sum_d x_d log pi_d + (1 - x_d) log(1 - pi_d)`` with
  ``pi = sigmoid(logits(z))``.
* (5.2) ``log p(x) = ELBO(x) + KL(q(z|x) || p(z|x))``, so ``ELBO(x) <= log p(x)``.
* (5.3) ``ELBO(x) = E_q[log p(x|z)] - KL(q(z|x) || p(z))``: reconstruction minus KL.
* (5.4) Reparameterisation: ``z = mu + sigma * eps``, ``sigma = exp(logvar / 2)``, ``eps ~ N(0, I)``.
* (5.5) Closed-form KL: ``KL(N(mu, sigma^2) || N(0, I)) = 1/2 sum_j (mu_j^2 + sigma_j^2 - log sigma_j^2 - 1)``.
* (5.6) Importance-weighted bound: ``L_K(x) = E[log (1/K) sum_k w_k]`` with
  ``w_k = p(x|z_k) p(z_k) / q(z_k|x)``, ``z_k ~ q(z|x)``; ``L_1 = ELBO <= L_K <= log p(x)``, and
  ``L_K -> log p(x)`` as K grows.
* (5.7) beta-VAE objective: ``-E_q[log p(x|z)] + beta * KL``; beta = 1 is the VAE.
* (5.8) The mutual information gap (MIG), in ``unsuplab.metrics.mig``.
* (5.9) Vector quantisation: ``k* = argmin_k ||z_e - e_k||``, ``z_q = e_{k*}``; the straight-through
  gradient copies ``dL/dz_q`` to ``z_e``.
* (5.10) VQ-VAE loss: ``-log p(x|z_q) + ||sg[z_e] - e||^2 + beta_c ||z_e - sg[e]||^2``.
* (5.11) Codebook perplexity: ``exp(-sum_k p_k log p_k)`` with ``p_k`` the frequency of code k.

Use
---
::

    vae = VAE()                                       # MNIST: image_shape (1, 28, 28), z_dim 32
    history = train(vae, x_train, epochs=10, x_val=binarize(x_test[:2000]), device=rt.device)
    images = vae.sample(64)                           # (64, 1, 28, 28) Bernoulli means in [0, 1]
    log_px = log_likelihood(vae, binarize(x_test[:500]), n_samples=1000)   # (500,) nats

Everything is device-agnostic: tensors follow the module's parameters.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import check_unit_interval
from ..train import History, TensorBatches, eval_mode, fit

__all__ = ["binarize", "reparameterize", "gaussian_kl", "bernoulli_log_likelihood", "gaussian_log_density",
           "VAE", "LinearGaussian", "log_importance_weights", "iwae_bound", "log_likelihood", "active_units",
           "VectorQuantizer", "VQVAE", "codebook_perplexity", "train", "evaluate"]

LOG_2PI = math.log(2.0 * math.pi)


# ----------------------------------------------------------------------------------------------
# The terms of the ELBO
# ----------------------------------------------------------------------------------------------

def binarize(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Dynamic binarisation: pixel d becomes 1 with probability x_d (its grey level), else 0.

    Drawn afresh every time it is called, so a model trained on ``binarize(batch)`` sees a new binary
    version of each digit at every epoch (the standard "dynamically binarised MNIST" of Burda et al.
    2016). ``x`` must hold probabilities in [0, 1]; the result has the same shape, dtype and device.
    """
    check_unit_interval(x, "grey levels", why="each is the probability of a 1")
    return torch.bernoulli(x, generator=generator)


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """A sample z ~ N(mu, exp(logvar)) written as z = mu + sigma * eps (eq. 5.4), so that the gradient
    reaches ``mu`` and ``logvar``. Shapes: (..., Z) -> (..., Z)."""
    eps = torch.randn_like(mu)
    return mu + torch.exp(0.5 * logvar) * eps


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, diag(exp(logvar))) || N(0, I)) in closed form (eq. 5.5), summed over the last
    dimension: (..., Z) -> (...)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1.0).sum(-1)


def bernoulli_log_likelihood(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """log p(x | z) of a Bernoulli decoder (eq. 5.1), summed over the last dimension (the pixels).

    ``logits`` (..., D) are the decoder's outputs before the sigmoid; ``x`` (..., D) holds 0s and 1s
    (grey levels also work: it is then the negative binary cross-entropy) and is broadcast against
    ``logits``, so ``x`` (B, D) and ``logits`` (K, B, D) give (K, B). Computed from the logits with
    ``binary_cross_entropy_with_logits``, which never takes log(0).
    """
    x = x.expand_as(logits)
    return -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)


def gaussian_log_density(z: torch.Tensor, mu: torch.Tensor | None = None,
                         logvar: torch.Tensor | None = None) -> torch.Tensor:
    """log N(z; mu, diag(exp(logvar))) summed over the last dimension (defaults: the prior N(0, I)).
    Broadcasts, so z (K, B, Z) against mu (B, Z) gives (K, B)."""
    if mu is None:
        return -0.5 * (LOG_2PI + z.pow(2)).sum(-1)
    return -0.5 * (LOG_2PI + logvar + (z - mu).pow(2) * torch.exp(-logvar)).sum(-1)


# ----------------------------------------------------------------------------------------------
# The VAE
# ----------------------------------------------------------------------------------------------

def _mlp(sizes: Sequence[int]) -> nn.Sequential:
    """Linear layers of the given sizes, each followed by a ReLU."""
    layers: list[nn.Module] = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(n_in, n_out), nn.ReLU()]
    return nn.Sequential(*layers)


def _device_of(model: nn.Module) -> torch.device:
    """The device of a module's first parameter, else of its first buffer, else the CPU."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def _check_images(x: torch.Tensor, image_shape: tuple[int, ...], what: str = "x") -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"expected {what} to be a torch.Tensor of images, got {type(x).__name__}: "
                        "use torch.as_tensor(x) first.")
    d = math.prod(image_shape)
    flat_ok = x.ndim == 2 and x.shape[1] == d
    if not (flat_ok or tuple(x.shape[1:]) == tuple(image_shape)):
        raise ValueError(f"expected {what} of shape (N, {', '.join(map(str, image_shape))}) or (N, {d}), "
                         f"got {tuple(x.shape)}: this model was built for image_shape={tuple(image_shape)}"
                         + (" (did you forget the channel dimension? use x.unsqueeze(1))"
                            if tuple(x.shape[1:]) == tuple(image_shape[1:]) else "") + ".")
    check_unit_interval(x, what, why="the Bernoulli decoder, eq. 5.1, reads each pixel as a probability")


class VAE(nn.Module):
    """A variational autoencoder with an MLP Gaussian encoder and an MLP Bernoulli decoder.

    ``image_shape`` (C, H, W) of the data (MNIST: (1, 28, 28)); ``hidden`` the widths of the
    encoder's hidden layers (the decoder mirrors them); ``z_dim`` the size of z; ``beta`` the weight
    of the KL term in :meth:`loss` (eq. 5.7; 1 is the plain VAE, larger values a beta-VAE).

    ``encode`` gives (mu, logvar) of q(z|x), ``decode`` the logits of p(x|z), ``elbo`` the two terms
    of eq. 5.3 per example, ``loss`` the mean negative (beta-)ELBO that training minimises, ``sample``
    new images from the prior.
    """

    def __init__(self, image_shape: Sequence[int] = (1, 28, 28), hidden: Sequence[int] = (512, 256),
                 z_dim: int = 32, beta: float = 1.0):
        super().__init__()
        if isinstance(z_dim, bool) or not isinstance(z_dim, int) or z_dim < 1:
            raise ValueError(f"z_dim must be a positive whole number of latent dimensions, got {z_dim!r}.")
        if not beta >= 0:
            raise ValueError(f"beta weights the KL term and must be >= 0 (1 for a plain VAE), got {beta!r}.")
        self.image_shape = tuple(int(s) for s in image_shape)
        self.z_dim = z_dim
        self.beta = float(beta)
        d = math.prod(self.image_shape)
        hidden = [int(h) for h in hidden]
        self.encoder = _mlp([d, *hidden])                        # (B, D) -> (B, H)
        self.to_stats = nn.Linear(hidden[-1] if hidden else d, 2 * z_dim)   # (B, H) -> (B, 2Z)
        self.decoder = nn.Sequential(_mlp([z_dim, *reversed(hidden)]),     # (..., Z) -> (..., H)
                                     nn.Linear(hidden[0] if hidden else z_dim, d))  # -> (..., D) logits

    @property
    def device(self) -> torch.device:
        return _device_of(self)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The Gaussian q(z|x): ``mu`` and ``logvar``, each (B, Z), for images x (B, C, H, W) or (B, D)."""
        _check_images(x, self.image_shape)
        h = self.encoder(x.reshape(len(x), -1))        # (B, D) -> (B, H)
        mu, logvar = self.to_stats(h).chunk(2, dim=-1)  # (B, 2Z) -> 2 x (B, Z)
        return mu, logvar

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """The logits of the Bernoulli p(x|z), flat: z (..., Z) -> (..., D)."""
        return self.decoder(z)

    def log_px_given_z(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x|z) (eq. 5.1) for x (B, ...) and z (B, Z) or (K, B, Z): (B,) or (K, B)."""
        return bernoulli_log_likelihood(self.decode(z), x.reshape(len(x), -1))

    def elbo(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The terms of eq. 5.3 for each example, with one reparameterised sample (eq. 5.4):
        ``reconstruction`` = log p(x|z) (B,), ``kl`` = KL(q(z|x) || p(z)) (B,), ``elbo`` their difference."""
        mu, logvar = self.encode(x)                     # (B, Z) each
        z = reparameterize(mu, logvar)                  # (B, Z)
        reconstruction = self.log_px_given_z(x, z)      # (B,)
        kl = gaussian_kl(mu, logvar)                    # (B,)
        return {"reconstruction": reconstruction, "kl": kl, "elbo": reconstruction - kl}

    def loss(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The batch mean of -reconstruction + beta * KL (eq. 5.7), and the numbers to log (nats per
        image): ``neg_elbo`` (the beta = 1 value, comparable across beta), ``reconstruction``, ``kl``."""
        terms = self.elbo(x)
        loss = (-terms["reconstruction"] + self.beta * terms["kl"]).mean()
        return loss, {"neg_elbo": -terms["elbo"].mean(), "reconstruction": -terms["reconstruction"].mean(),
                      "kl": terms["kl"].mean()}

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` new images: z ~ N(0, I), then the Bernoulli means sigmoid(logits): (n, C, H, W) in [0, 1].

        ``generator`` (optional, on the model's device) makes the draw repeatable."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive whole number of images, got {n!r}.")
        z = torch.randn(n, self.z_dim, device=self.device, generator=generator)  # (n, Z)
        return torch.sigmoid(self.decode(z)).reshape(n, *self.image_shape)       # (n, D) -> (n, C, H, W)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Bernoulli means of the decoder at the posterior mean z = mu(x): (B, C, H, W) in [0, 1]."""
        mu, _ = self.encode(x)
        return torch.sigmoid(self.decode(mu)).reshape(len(x), *self.image_shape)

    @torch.no_grad()
    def decode_images(self, z: torch.Tensor) -> torch.Tensor:
        """Bernoulli means for given codes z (N, Z): (N, C, H, W) in [0, 1] (interpolations, traversals)."""
        return torch.sigmoid(self.decode(z.to(self.device))).reshape(len(z), *self.image_shape)


class LinearGaussian(nn.Module):
    """A latent-variable model whose log-likelihood is known exactly, to test estimators of it.

    Probabilistic PCA (Tipping & Bishop 1999): ``p(z) = N(0, I_Z)``, ``p(x|z) = N(W z + b, s^2 I_D)``,
    hence ``p(x) = N(b, W W^T + s^2 I)`` in closed form (:meth:`exact_log_likelihood`). Its true
    posterior is Gaussian too: ``p(z|x) = N(M^-1 W^T (x - b), s^2 M^-1)`` with ``M = W^T W + s^2 I``.
    :meth:`encode` returns that posterior, or, with ``posterior_noise > 0``, a deliberately wrong one
    (mean shifted, variance scaled), so that the ELBO is strictly below log p(x) and the
    importance-weighted bound (eq. 5.6) has a gap to close. It has the interface that
    :func:`log_importance_weights` uses: ``encode(x)`` and ``log_px_given_z(x, z)``.
    """

    def __init__(self, W: torch.Tensor, b: torch.Tensor, s: float, posterior_noise: float = 0.0):
        super().__init__()
        self.register_buffer("W", W)        # (D, Z)
        self.register_buffer("b", b)        # (D,)
        self.s = float(s)
        self.posterior_noise = float(posterior_noise)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        Z = self.W.shape[1]
        M = self.W.T @ self.W + self.s ** 2 * torch.eye(Z, dtype=self.W.dtype, device=self.W.device)  # (Z, Z)
        mu = torch.linalg.solve(M, self.W.T @ (x - self.b).T).T             # (B, Z)
        # s^2 M^-1 is diagonal when the columns of W are orthogonal (then q is the exact posterior);
        # otherwise q keeps the exact mean and the marginal variances, a diagonal approximation.
        var = self.s ** 2 * torch.linalg.inv(M).diagonal()                  # (Z,)
        logvar = var.log().expand_as(mu)
        if self.posterior_noise:
            mu = mu + self.posterior_noise                                 # a biased mean
            logvar = logvar + math.log(1.0 + self.posterior_noise)         # a too-wide variance
        return mu, logvar

    def log_px_given_z(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        mean = z @ self.W.T + self.b                                        # (..., B, D)
        logvar = torch.full_like(mean, 2.0 * math.log(self.s))
        return gaussian_log_density(x, mean, logvar)                        # (..., B)

    def exact_log_likelihood(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) = log N(x; b, W W^T + s^2 I) for each row of x (B, D): (B,)."""
        D = self.W.shape[0]
        cov = self.W @ self.W.T + self.s ** 2 * torch.eye(D, dtype=self.W.dtype, device=self.W.device)
        return torch.distributions.MultivariateNormal(self.b, covariance_matrix=cov).log_prob(x)


# ----------------------------------------------------------------------------------------------
# An honest likelihood: the importance-weighted bound (Burda et al. 2016)
# ----------------------------------------------------------------------------------------------

@torch.no_grad()
def log_importance_weights(model: nn.Module, x: torch.Tensor, n_samples: int, *,
                           chunk_size: int = 250) -> torch.Tensor:
    """log w_k = log p(x|z_k) + log p(z_k) - log q(z_k|x) for K = ``n_samples`` draws z_k ~ q(z|x):
    (B, K). ``model`` needs ``encode(x) -> (mu, logvar)`` and ``log_px_given_z(x, z)``; the prior is
    N(0, I). Samples are drawn ``chunk_size`` at a time, so memory holds (chunk_size, B, D) logits."""
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
        raise ValueError(f"n_samples must be a positive whole number of importance samples, got {n_samples!r}.")
    mu, logvar = model.encode(x)                                   # (B, Z) each
    chunks = []
    for start in range(0, n_samples, chunk_size):
        k = min(chunk_size, n_samples - start)
        eps = torch.randn((k, *mu.shape), dtype=mu.dtype, device=mu.device)  # (k, B, Z)
        z = mu + torch.exp(0.5 * logvar) * eps                               # (k, B, Z)
        log_w = (model.log_px_given_z(x, z) + gaussian_log_density(z)
                 - gaussian_log_density(z, mu, logvar))                      # (k, B)
        chunks.append(log_w)
    return torch.cat(chunks, dim=0).T                                         # (B, K)


def iwae_bound(log_w: torch.Tensor, k: int | None = None) -> torch.Tensor:
    """The k-sample bound of eq. 5.6 for each example, from log-weights (B, K): (B,).

    With ``k`` = K (default) it is log (1/K) sum_k w_k, the best estimate of log p(x) these samples
    give. With a smaller ``k`` the K samples are split into K // k groups of k, and the k-sample bound
    is averaged over the groups: ``k = 1`` is then a K-sample Monte Carlo estimate of the ELBO.
    """
    if log_w.ndim != 2:
        raise ValueError(f"expected log-weights of shape (B, K), got {tuple(log_w.shape)}.")
    B, K = log_w.shape
    k = K if k is None else k
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= K:
        raise ValueError(f"k must be a whole number between 1 and the {K} samples given, got {k!r}.")
    groups = K // k
    grouped = log_w[:, :groups * k].reshape(B, groups, k)        # (B, K//k, k)
    return (torch.logsumexp(grouped, dim=-1) - math.log(k)).mean(-1)   # (B,)


@torch.no_grad()
def log_likelihood(model: nn.Module, x: torch.Tensor, n_samples: int = 1000, *, batch_size: int = 100,
                   chunk_size: int = 250) -> torch.Tensor:
    """Importance-weighted estimate of log p(x) in nats for each example of x (N, ...): (N,), on CPU.

    The K-sample bound (eq. 5.6) with K = ``n_samples``: a lower bound in expectation that tightens as K
    grows (Burda et al. 2016 use K = 5000). Binarise test images once, with a fixed seed, before
    calling it, so that every model is scored on the same binary digits. The model is measured in eval
    mode and left in the mode it was in."""
    device = _device_of(model)
    out = []
    with eval_mode(model):          # the model's mode is restored after, even if it was training
        for start in range(0, len(x), batch_size):
            xb = x[start:start + batch_size].to(device)
            out.append(iwae_bound(log_importance_weights(model, xb, n_samples, chunk_size=chunk_size)).cpu())
    return torch.cat(out)


@torch.no_grad()
def active_units(mu: torch.Tensor, threshold: float = 1e-2) -> int:
    """How many latent dimensions the encoder uses: A_j = Var_x(E_q[z_j]) > threshold, from the
    posterior means ``mu`` (N, Z) of many inputs (Burda et al. 2016, section 5.2). A unit whose mean
    never moves with x carries no information: its q(z_j|x) collapsed onto the prior."""
    if mu.ndim != 2 or len(mu) < 2:
        raise ValueError(f"expected posterior means of shape (N, Z) with N >= 2, got {tuple(mu.shape)}.")
    return int((mu.float().var(dim=0) > threshold).sum())


# ----------------------------------------------------------------------------------------------
# VQ-VAE (van den Oord et al. 2017)
# ----------------------------------------------------------------------------------------------

class VectorQuantizer(nn.Module):
    """A codebook of ``n_codes`` vectors e_k of size ``code_dim``, and the quantisation of eq. 5.9.

    ``forward(z_e)`` takes encoder outputs (B, D, H, W) and returns ``z_q`` (B, D, H, W), the nearest
    codes with a straight-through gradient (their value is e_{k*}, their gradient flows to z_e as if
    quantisation were the identity), the code indices (B, H, W), and the two extra terms of eq. 5.10
    per image (B,): the codebook loss ||sg[z_e] - e||^2 (moves the codes) and the commitment loss
    ||z_e - sg[e]||^2 (keeps the encoder near its codes; weighted by ``commitment`` in
    :meth:`VQVAE.loss`). Both are summed over the code vector and the H x W positions.

    The codebook starts empty: the first call in training mode fills it with encoder outputs drawn
    from that batch (a data-dependent start, which keeps codes from being born dead; Łańcucki et al.
    2020 start from k-means). Until then it holds small uniform values, as in the paper.

    A code can still die later: once no encoder output is nearest to it, no loss moves it. With
    ``restart_after`` = n, a code that no position of the last n training batches chose is moved onto
    an encoder output of the current batch, drawn at random (the random restarts of Dhariwal et al.
    2020); ``None`` never restarts, as in the paper.
    """

    def __init__(self, n_codes: int = 128, code_dim: int = 16, restart_after: int | None = None):
        super().__init__()
        if restart_after is not None and (isinstance(restart_after, bool) or not isinstance(restart_after, int)
                                          or restart_after < 1):
            raise ValueError(f"restart_after must be a whole number of batches >= 1, or None; got {restart_after!r}.")
        self.codebook = nn.Parameter(torch.empty(n_codes, code_dim).uniform_(-1.0 / n_codes, 1.0 / n_codes))
        self.register_buffer("initialised", torch.tensor(False))
        self.restart_after = restart_after
        self.register_buffer("idle", torch.zeros(n_codes, dtype=torch.long), persistent=False)  # batches unchosen
        self.restarts = 0  # codes restarted so far

    @property
    def n_codes(self) -> int:
        return self.codebook.shape[0]

    def nearest(self, flat: torch.Tensor) -> torch.Tensor:
        """The index of the nearest code (eq. 5.9) for each row of flat (M, D): (M,)."""
        e = self.codebook                                                   # (K, D)
        d2 = flat.pow(2).sum(1, keepdim=True) - 2.0 * flat @ e.T + e.pow(2).sum(1)   # (M, K)
        return d2.argmin(dim=1)

    def forward(self, z_e: torch.Tensor):
        B, D, H, W = z_e.shape
        flat = z_e.permute(0, 2, 3, 1).reshape(-1, D)                       # (B, D, H, W) -> (BHW, D)
        if self.training and not bool(self.initialised):
            with torch.no_grad():
                pick = torch.randint(len(flat), (self.n_codes,), device=flat.device)
                self.codebook.copy_(flat[pick])
                self.initialised.fill_(True)
        if self.training and self.restart_after is not None:
            self._restart_dead_codes(flat.detach())
        codes = self.nearest(flat.detach())                                 # (BHW,)
        if self.training and self.restart_after is not None:
            chosen = torch.bincount(codes, minlength=self.n_codes) > 0
            self.idle = torch.where(chosen, torch.zeros_like(self.idle), self.idle + 1)
        e = self.codebook[codes].reshape(B, H, W, D).permute(0, 3, 1, 2)    # (B, D, H, W)
        codebook_loss = (z_e.detach() - e).pow(2).flatten(1).sum(1)         # (B,) ||sg[z_e] - e||^2
        commitment_loss = (z_e - e.detach()).pow(2).flatten(1).sum(1)       # (B,) ||z_e - sg[e]||^2
        z_q = z_e + (e - z_e).detach()                                      # value e, gradient to z_e
        return z_q, codes.reshape(B, H, W), codebook_loss, commitment_loss

    @torch.no_grad()
    def _restart_dead_codes(self, flat: torch.Tensor) -> None:
        """Move every code idle for ``restart_after`` batches onto a random row of flat (M, D)."""
        dead = self.idle >= self.restart_after
        n_dead = int(dead.sum())
        if n_dead:
            pick = torch.randint(len(flat), (n_dead,), device=flat.device)
            self.codebook[dead] = flat[pick].to(self.codebook.dtype)
            self.idle[dead] = 0
            self.restarts += n_dead


def codebook_perplexity(codes: torch.Tensor, n_codes: int) -> torch.Tensor:
    """exp(entropy) of the code frequencies (eq. 5.11): 1 when one code is used for everything,
    ``n_codes`` when all are used equally often. ``codes``: integer indices of any shape."""
    p = torch.bincount(codes.reshape(-1), minlength=n_codes).float()
    p = p / p.sum()
    return torch.exp(-(p * torch.log(p.clamp_min(1e-12))).sum())


class VQVAE(nn.Module):
    """A small convolutional VQ-VAE for 28 x 28 (or any multiple of 4) images with a Bernoulli decoder.

    Encoder: two stride-2 convolutions and a 1 x 1 projection, (B, C, H, W) -> z_e (B, D, H/4, W/4);
    quantiser: :class:`VectorQuantizer` with ``n_codes`` codes of size D = ``code_dim`` (and its dead-code
    ``restart_after``); decoder: a
    convolution and two transposed convolutions back to logits (B, C, H, W). For MNIST each image
    becomes a 7 x 7 grid of code indices: 49 discrete symbols instead of 32 Gaussian numbers.
    """

    def __init__(self, image_shape: Sequence[int] = (1, 28, 28), channels: int = 64, code_dim: int = 16,
                 n_codes: int = 128, commitment: float = 0.25, restart_after: int | None = None):
        super().__init__()
        self.image_shape = tuple(int(s) for s in image_shape)
        c, h, w = self.image_shape
        if h % 4 or w % 4:
            raise ValueError(f"VQVAE halves the image twice, so H and W must be multiples of 4; "
                             f"got image_shape={self.image_shape}: pad or crop the images.")
        self.commitment = float(commitment)
        half = max(channels // 2, 1)
        self.encoder = nn.Sequential(
            nn.Conv2d(c, half, 4, stride=2, padding=1), nn.ReLU(),          # (B, C, H, W) -> (B, c/2, H/2, W/2)
            nn.Conv2d(half, channels, 4, stride=2, padding=1), nn.ReLU(),   # -> (B, c, H/4, W/4)
            nn.Conv2d(channels, code_dim, 1),                               # -> (B, D, H/4, W/4)
        )
        self.quantizer = VectorQuantizer(n_codes, code_dim, restart_after=restart_after)
        self.decoder = nn.Sequential(
            nn.Conv2d(code_dim, channels, 3, padding=1), nn.ReLU(),                 # (B, D, H/4, W/4) -> (B, c, ..)
            nn.ConvTranspose2d(channels, half, 4, stride=2, padding=1), nn.ReLU(),  # -> (B, c/2, H/2, W/2)
            nn.ConvTranspose2d(half, c, 4, stride=2, padding=1),                    # -> (B, C, H, W) logits
        )

    def forward(self, x: torch.Tensor):
        """Logits (B, C, H, W), codes (B, H/4, W/4), codebook and commitment losses (B,)."""
        _check_images(x, self.image_shape)
        x = x.reshape(len(x), *self.image_shape)
        z_e = self.encoder(x)                                               # (B, D, h, w)
        z_q, codes, codebook_loss, commitment_loss = self.quantizer(z_e)
        return self.decoder(z_q), codes, codebook_loss, commitment_loss

    def loss(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The batch mean of eq. 5.10, and the numbers to log: ``reconstruction`` (-log p(x|z_q), nats per
        image), ``codebook``, ``commitment`` and the batch's code ``perplexity``."""
        logits, codes, codebook_loss, commitment_loss = self(x)
        reconstruction = -bernoulli_log_likelihood(logits.flatten(1), x.reshape(len(x), -1))   # (B,)
        loss = (reconstruction + codebook_loss + self.commitment * commitment_loss).mean()
        return loss, {"reconstruction": reconstruction.mean(), "codebook": codebook_loss.mean(),
                      "commitment": commitment_loss.mean(),
                      "perplexity": codebook_perplexity(codes, self.quantizer.n_codes)}

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The code indices of each image: (B, H/4, W/4) integers in [0, n_codes)."""
        return self(x)[1]

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Bernoulli means of the decoder from the quantised codes: (B, C, H, W) in [0, 1]."""
        return torch.sigmoid(self(x)[0])

    @torch.no_grad()
    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """Images (Bernoulli means) from a grid of code indices (B, h, w): (B, C, H, W)."""
        e = self.quantizer.codebook[codes].permute(0, 3, 1, 2)             # (B, h, w, D) -> (B, D, h, w)
        return torch.sigmoid(self.decoder(e))


# ----------------------------------------------------------------------------------------------
# Training in one call
# ----------------------------------------------------------------------------------------------

@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, *, batch_size: int = 1000, seed: int = 0) -> dict[str, float]:
    """The mean of what ``model.loss`` logs over ``x`` (already binarised, if the model wants binary
    data), with the model's random draws seeded, so that two calls give the same numbers. The model is
    measured in eval mode and left in the mode it was in."""
    device = _device_of(model)
    sums: dict[str, float] = {}
    with eval_mode(model), torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        for start in range(0, len(x), batch_size):
            xb = x[start:start + batch_size].to(device)
            _, logged = model.loss(xb)
            for key, value in logged.items():
                sums[key] = sums.get(key, 0.0) + float(value) * len(xb)
    return {key: value / len(x) for key, value in sums.items()}


def train(model: nn.Module, x: torch.Tensor, *, epochs: int, batch_size: int = 128, lr: float = 1e-3,
          lr_final: float | None = None, binarize_data: bool = True, x_val: torch.Tensor | None = None,
          device: torch.device | str | None = None, checkpoint: str | Path | None = None,
          max_steps: int | None = None, seed: int = 0, progress_bar: bool = True,
          desc: str | None = None) -> History:
    """Train a :class:`VAE` or :class:`VQVAE` (anything with ``loss(x) -> (loss, logs)``) on images x.

    The images (N, C, H, W) in [0, 1] are moved to ``device`` once (default: the model's), and each
    mini-batch of ``batch_size`` is binarised afresh when ``binarize_data`` (dynamic binarisation;
    turn it off for data that are already binary). Adam at ``lr``, annealed per epoch along a cosine
    to ``lr_final`` when it is given. At the end of each epoch, if ``x_val`` (already binarised) is
    given, :func:`evaluate` adds ``val_<name>`` for every logged number. Training runs in float32
    (likelihoods in nats are the point here), through :func:`unsuplab.train.fit`, so ``checkpoint``
    gives resume-after-interruption and a NaN stops training with advice. Returns the History.
    """
    if not isinstance(x, torch.Tensor) or x.ndim < 2 or len(x) == 0:
        raise ValueError(f"expected a non-empty tensor of images (N, C, H, W), got "
                         f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}.")
    check_unit_interval(x, "grey levels", why="the Bernoulli decoder reads each pixel as a probability; "
                        "ul.data.mnist gives [0, 1]")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.to(device)
    data = TensorBatches(x.to(device), batch_size=batch_size, transform=torch.bernoulli if binarize_data else None)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    scheduler = (torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs, eta_min=lr_final)
                 if lr_final is not None else None)
    eval_fn = None
    if x_val is not None:
        x_val = x_val.to(device)

        def eval_fn(m: nn.Module) -> dict[str, float]:
            return {f"val_{k}": v for k, v in evaluate(m, x_val, seed=seed).items()}

    return fit(model, lambda m, batch: m.loss(batch), data, epochs=epochs, optimizer=optimizer,
               scheduler=scheduler, device=device, amp=False, checkpoint=checkpoint, eval_fn=eval_fn,
               max_steps=max_steps, seed=seed, progress_bar=progress_bar, desc=desc or type(model).__name__)
