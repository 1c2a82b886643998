"""Energy-based models: one principle behind many chapters (LeCun et al. 2006).

An energy-based model gives every configuration ``x`` a scalar energy :math:`E_\\theta(x)` and defines

.. math::  p_\\theta(x) = \\frac{e^{-E_\\theta(x)}}{Z_\\theta}, \\qquad Z_\\theta = \\int e^{-E_\\theta(x)}\\,dx .   (eq. 10.1)

The gradient of the negative log-likelihood of a data point has two terms, and :math:`Z` drops out of
both:

.. math::  \\nabla_\\theta\\,[-\\log p_\\theta(x)] = \\nabla_\\theta E_\\theta(x)
           - \\mathbb{E}_{x' \\sim p_\\theta}\\big[\\nabla_\\theta E_\\theta(x')\\big] .   (eq. 10.2)

Push the energy down on the data, up on the model's own samples. An RBM (chapter 3) is the special
case whose energy is the free energy :math:`F(v)`, sampled by Gibbs sampling; here the energy is any
network and the samples come from Langevin dynamics (Welling & Teh 2011):

.. math::  x_{t+1} = x_t - \\frac{\\epsilon}{2} \\nabla_x E_\\theta(x_t) + \\sqrt{\\epsilon}\\, \\xi_t,
           \\qquad \\xi_t \\sim \\mathcal{N}(0, I) .   (eq. 10.3)

Training follows Du & Mordatch (2019): short Langevin chains started from a replay buffer of earlier
samples (persistent, as PCD in chapter 3), with a few restarted from noise, and a small penalty
:math:`\\alpha\\,(E(x)^2 + E(x')^2)` that keeps the energies bounded.

On images, the noise of eq. (10.3) is taken far smaller than :math:`\\sqrt{\\epsilon}` and each step's
gradient is clipped, as in Du & Mordatch (2019) and Nijkamp et al. (2019): the chains then sample a
colder, sharper version of :math:`p_\\theta` (a temperature below 1), which short chains can reach. The
file reads in the order of the chapter's lab: the energy networks, one Langevin step and the sampler,
the contrastive loss, the replay buffer and the training loop, then what a trained energy is used for
(a 2-D density normalised on a grid, inpainting).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from ..train import History, run_steps

__all__ = ["EnergyMLP", "EnergyCNN", "langevin_step", "langevin", "contrastive_loss", "ReplayBuffer", "ebm_step",
           "train_ebm", "log_partition_grid", "energy_grid", "log_likelihood_2d"]


# ----------------------------------------------------------------------------------------------
# 1. Energy networks: any network with one scalar output per example
# ----------------------------------------------------------------------------------------------

class EnergyMLP(nn.Module):
    """:math:`E_\\theta(x)`: an MLP from ``dim`` inputs to one scalar per example (Swish activations,
    so the energy is smooth and Langevin's gradient is informative everywhere)."""

    def __init__(self, dim: int = 2, hidden: int = 128, layers: int = 3):
        super().__init__()
        blocks, width = [], dim
        for _ in range(layers):
            blocks += [nn.Linear(width, hidden), nn.SiLU()]
            width = hidden
        blocks.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 2:
            raise ValueError(f"expected points of shape (N, D), got {tuple(x.shape)}: flatten images first.")
        return self.net(x).squeeze(1)  # (N, D) -> (N,)


class EnergyCNN(nn.Module):
    """:math:`E_\\theta(x)` for 28 x 28 greyscale images scaled to [-1, 1]: four stride-2 convolutions
    with Swish activations, then two linear layers to one scalar. No batch normalisation: the energy of
    an image must not depend on the other images of its batch (the data and the samples are scored
    in separate batches)."""

    def __init__(self, width: int = 16):
        super().__init__()
        c = width
        self.net = nn.Sequential(
            nn.Conv2d(1, c, 5, stride=2, padding=4), nn.SiLU(),          # (N, c, 16, 16)
            nn.Conv2d(c, 2 * c, 3, stride=2, padding=1), nn.SiLU(),      # (N, 2c, 8, 8)
            nn.Conv2d(2 * c, 4 * c, 3, stride=2, padding=1), nn.SiLU(),  # (N, 4c, 4, 4)
            nn.Conv2d(4 * c, 4 * c, 3, stride=2, padding=1), nn.SiLU(),  # (N, 4c, 2, 2)
            nn.Flatten(), nn.Linear(16 * c, 4 * c), nn.SiLU(), nn.Linear(4 * c, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or tuple(x.shape[1:]) != (1, 28, 28):
            raise ValueError(f"expected images of shape (N, 1, 28, 28), got {tuple(x.shape)}.")
        return self.net(x).squeeze(1)  # (N, 1, 28, 28) -> (N,)


# ----------------------------------------------------------------------------------------------
# 2. Sampling: Langevin dynamics, eq. (10.3)
# ----------------------------------------------------------------------------------------------

def langevin_step(energy: nn.Module, x: torch.Tensor, step_size: float, noise: torch.Tensor, *,
                  grad_clip: float | None = None) -> torch.Tensor:
    """One step of eq. (10.3) with its noise term given: ``x - step_size / 2 * dE/dx + noise``.

    Plain Langevin passes ``noise = sqrt(step_size) * N(0, I)``. ``grad_clip`` clips each entry of the
    gradient to ``[-grad_clip, grad_clip]`` (for images: a few pixels with a huge gradient would
    otherwise jump out of range). Returns the new points, detached."""
    x = x.detach().requires_grad_(True)
    grad, = torch.autograd.grad(energy(x).sum(), x)   # dE/dx, same shape as x
    if grad_clip is not None:
        grad = grad.clamp(-grad_clip, grad_clip)
    return (x - 0.5 * step_size * grad + noise).detach()


def langevin(energy: nn.Module, x: torch.Tensor, steps: int, step_size: float, *, noise: bool = True,
             noise_std: float | None = None, grad_clip: float | None = None,
             clamp: tuple[float, float] | None = None, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Run ``steps`` of Langevin dynamics, eq. (10.3), from ``x`` (N, ...); returns the new points.

    ``step_size`` is :math:`\\epsilon`; the noise has standard deviation ``noise_std``, by default
    :math:`\\sqrt{\\epsilon}` (eq. 10.3 exactly; a smaller one samples a colder distribution).
    ``noise=False`` gives plain gradient descent on the energy. ``clamp`` keeps the points inside a box.
    ``mask`` (broadcastable to ``x``, 1 where the chain may move, 0 where ``x`` is kept) samples only
    part of each example: the rest is held fixed, as in inpainting. The energy's parameters get no
    gradient from sampling.
    """
    if steps < 0 or step_size <= 0:
        raise ValueError(f"expected steps >= 0 and step_size > 0, got steps={steps}, step_size={step_size}.")
    sigma = (step_size ** 0.5 if noise_std is None else noise_std) if noise else 0.0
    requires = [p.requires_grad for p in energy.parameters()]
    for p in energy.parameters():      # gradients w.r.t. x only: faster, and nothing leaks into .grad
        p.requires_grad_(False)
    try:
        x = x.detach().clone()
        keep = None if mask is None else x.clone()
        for _ in range(steps):
            x = langevin_step(energy, x, step_size, sigma * torch.randn_like(x), grad_clip=grad_clip)
            if clamp is not None:
                x = x.clamp(*clamp)
            if mask is not None:
                x = torch.where(mask.bool(), x, keep)
        return x
    finally:
        for p, r in zip(energy.parameters(), requires):
            p.requires_grad_(r)


# ----------------------------------------------------------------------------------------------
# 3. Learning: eq. (10.2) as a loss, persistent chains, one update, the loop
# ----------------------------------------------------------------------------------------------

def contrastive_loss(energy: nn.Module, x_data: torch.Tensor, x_model: torch.Tensor,
                     alpha: float = 0.1) -> tuple[torch.Tensor, dict]:
    """The surrogate whose gradient is eq. (10.2): mean E(data) - mean E(samples), plus
    ``alpha * (E(data)^2 + E(samples)^2)`` to keep energies near zero. Returns (loss, parts)."""
    e_data, e_model = energy(x_data), energy(x_model.detach())
    loss = e_data.mean() - e_model.mean() + alpha * (e_data.pow(2).mean() + e_model.pow(2).mean())
    return loss, {"energy_data": e_data.mean().detach(), "energy_model": e_model.mean().detach()}


class ReplayBuffer:
    """Persistent Langevin chains: ``sample(n)`` returns ``n`` starting points, mostly from earlier
    chains and a fraction ``reinit`` fresh from uniform noise in ``box``; ``push`` stores new ends.
    ``shape`` is one example's shape (an int for points). It checkpoints like a module
    (``state_dict``/``load_state_dict``), so an interrupted run resumes with its chains."""

    def __init__(self, shape: int | tuple[int, ...], size: int = 10_000, box: tuple[float, float] = (-4.0, 4.0),
                 reinit: float = 0.05, device: torch.device | str = "cpu"):
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        self.box, self.reinit = box, reinit
        self.points = torch.empty(size, *shape, device=device).uniform_(*box)

    def sample(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.randint(len(self.points), (n,), device=self.points.device)
        x = self.points[index].clone()
        fresh = torch.rand(n, device=x.device) < self.reinit
        x[fresh] = torch.empty_like(x[fresh]).uniform_(*self.box)
        return x, index

    def push(self, x: torch.Tensor, index: torch.Tensor) -> None:
        self.points[index] = x.detach()

    def state_dict(self) -> dict:
        return {"points": self.points}

    def load_state_dict(self, state: dict) -> None:
        if state["points"].shape != self.points.shape:
            raise ValueError(f"the saved buffer holds {tuple(state['points'].shape)} points, this one "
                             f"{tuple(self.points.shape)}: another model's checkpoint?")
        self.points.copy_(state["points"])


def ebm_step(energy: nn.Module, optimizer: torch.optim.Optimizer, buffer: ReplayBuffer, x_data: torch.Tensor, *,
             langevin_steps: int, step_size: float, noise_std: float | None = None,
             grad_clip: float | None = None, alpha: float = 0.1) -> dict:
    """One update of eq. (10.2): draw chain starts from ``buffer``, run ``langevin_steps`` of eq. (10.3)
    (kept inside the buffer's box), store the ends back, then one optimizer step on
    :func:`contrastive_loss` of ``x_data`` against them. Returns the loss and mean energies (0-d tensors)."""
    x_start, index = buffer.sample(len(x_data))
    x_model = langevin(energy, x_start, langevin_steps, step_size, noise_std=noise_std, grad_clip=grad_clip,
                       clamp=buffer.box)
    buffer.push(x_model, index)
    loss, parts = contrastive_loss(energy, x_data, x_model, alpha)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return {"loss": loss.detach(), **parts}


def train_ebm(energy: nn.Module, data: torch.Tensor, *, steps: int = 2_000, batch_size: int = 256,
              lr: float = 1e-3, langevin_steps: int = 20, step_size: float = 0.01, noise_std: float | None = None,
              grad_clip: float | None = None, alpha: float = 0.1, box: tuple[float, float] = (-4.0, 4.0),
              reinit: float = 0.05, buffer_size: int = 10_000, data_noise: float = 0.0, seed: int = 0,
              checkpoint: str | Path | None = None, resume: bool = True,
              desc: str = "EBM") -> tuple[History, ReplayBuffer]:
    """Fit ``energy`` to the examples ``data`` (N, ...) by eq. (10.2) with persistent Langevin samples.

    Each step draws a data batch (plus Gaussian noise of standard deviation ``data_noise``, which
    smooths the data distribution a little so that its energy surface is not a set of spikes), and
    takes :func:`ebm_step`. A fraction ``reinit`` of the chains restarts from uniform noise each step:
    it lets the sampler find modes it has not visited, at the price of a bias (those short chains have
    not mixed, and the model compensates for them). ``seed`` seeds the data batches' generator and also
    torch's global generator, which draws the buffer's first points and the chains' noise: a run is
    reproducible, and the caller's global stream continues from that seed. With ``checkpoint`` the run
    saves itself every 200 steps and resumes after an interruption (:func:`unsuplab.train.run_steps`).
    Returns the :class:`unsuplab.train.History` (``steps``: ``loss``, ``energy_data``, ``energy_model`` per
    update) and the buffer (its points are the model's samples). Stops with ``unsuplab.train.TrainingDiverged`` if
    the loss is not finite.
    """
    if data.ndim < 2:
        raise ValueError(f"expected data of shape (N, D) or (N, C, H, W), got {tuple(data.shape)}.")
    device = next(energy.parameters()).device
    data = data.to(device)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    torch.manual_seed(seed)  # the buffer's initial noise and the chains' noise
    buffer = ReplayBuffer(tuple(data.shape[1:]), size=buffer_size, box=box, reinit=reinit, device=device)
    optimizer = torch.optim.Adam(energy.parameters(), lr=lr, betas=(0.0, 0.999))

    def step(_: int) -> dict:
        x_data = data[torch.randint(len(data), (batch_size,), generator=generator).to(device)]
        if data_noise > 0:
            x_data = (x_data + data_noise * torch.randn_like(x_data)).clamp(*box)
        return ebm_step(energy, optimizer, buffer, x_data, langevin_steps=langevin_steps, step_size=step_size,
                        noise_std=noise_std, grad_clip=grad_clip, alpha=alpha)

    history = run_steps(step, steps, checkpoint=checkpoint, generator=generator, resume=resume, desc=desc,
                        state={"energy": energy, "optimizer": optimizer, "buffer": buffer})
    return history, buffer


# ----------------------------------------------------------------------------------------------
# 4. Using a trained energy: a 2-D density normalised on a grid
# ----------------------------------------------------------------------------------------------

def _grid(lim: float, n: int) -> tuple[torch.Tensor, torch.Tensor, float]:
    axis = torch.linspace(-lim, lim, n)
    yy, xx = torch.meshgrid(axis, axis, indexing="ij")
    return torch.stack([xx.flatten(), yy.flatten()], 1), axis, (2 * lim / (n - 1)) ** 2


@torch.no_grad()
def log_partition_grid(energy: nn.Module, lim: float = 4.0, n: int = 200) -> float:
    """:math:`\\log Z = \\log \\int e^{-E(x)} dx` of a 2-D model, by summing over an ``n`` x ``n`` grid on
    ``[-lim, lim]^2``: :math:`\\log \\sum_j e^{-E(x_j)} + \\log(\\text{cell area})`, exact up to the grid's
    resolution (and the mass outside the square). In two dimensions this is easy; in 784 it is AIS's job."""
    points, _, cell = _grid(lim, n)
    e = energy(points.to(next(energy.parameters()).device)).double().cpu()
    return (torch.logsumexp(-e, 0) + math.log(cell)).item()


@torch.no_grad()
def log_likelihood_2d(energy: nn.Module, x: torch.Tensor, lim: float = 4.0, n: int = 200) -> float:
    """Mean log-likelihood :math:`-E(x) - \\log Z` of points ``x`` (N, 2) in nats, with ``Z`` from
    :func:`log_partition_grid` (points outside the grid's square are not expected)."""
    e = energy(x.to(next(energy.parameters()).device)).double().cpu()
    return (-e.mean()).item() - log_partition_grid(energy, lim, n)


@torch.no_grad()
def energy_grid(energy: nn.Module, lim: float = 4.0, n: int = 200) -> tuple[torch.Tensor, torch.Tensor]:
    """The normalized density :math:`e^{-E(x)} / Z` of a 2-D model on an ``n`` x ``n`` grid over
    ``[-lim, lim]^2`` (Z by summing over the grid: exact up to the grid's resolution), and the grid's
    coordinates. Returns ``(density (n, n), axis (n,))``; row i is y = axis[i]."""
    points, axis, cell = _grid(lim, n)
    e = energy(points.to(next(energy.parameters()).device)).float().cpu()
    log_density = -e - torch.logsumexp(-e, 0)  # normalize over the grid, in log space
    return (log_density.exp() / cell).reshape(n, n), axis
