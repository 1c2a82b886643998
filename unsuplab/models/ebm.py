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
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["EnergyMLP", "langevin", "contrastive_loss", "ReplayBuffer", "train_ebm", "energy_grid"]


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


def langevin(energy: nn.Module, x: torch.Tensor, steps: int, step_size: float, *,
             noise: bool = True, clamp: tuple[float, float] | None = None) -> torch.Tensor:
    """Run ``steps`` of Langevin dynamics, eq. (10.3), from ``x`` (N, D); returns the new points.

    ``step_size`` is :math:`\\epsilon`. ``noise=False`` gives plain gradient descent on the energy.
    ``clamp`` keeps the points inside a box. The energy's parameters get no gradient from sampling.
    """
    if steps < 0 or step_size <= 0:
        raise ValueError(f"expected steps >= 0 and step_size > 0, got steps={steps}, step_size={step_size}.")
    requires = [p.requires_grad for p in energy.parameters()]
    for p in energy.parameters():
        p.requires_grad_(False)
    try:
        x = x.detach().clone()
        for _ in range(steps):
            x.requires_grad_(True)
            grad, = torch.autograd.grad(energy(x).sum(), x)  # dE/dx, (N, D)
            with torch.no_grad():
                x = x - 0.5 * step_size * grad
                if noise:
                    x = x + step_size ** 0.5 * torch.randn_like(x)
                if clamp is not None:
                    x = x.clamp(*clamp)
        return x.detach()
    finally:
        for p, r in zip(energy.parameters(), requires):
            p.requires_grad_(r)


def contrastive_loss(energy: nn.Module, x_data: torch.Tensor, x_model: torch.Tensor,
                     alpha: float = 0.1) -> tuple[torch.Tensor, dict]:
    """The surrogate whose gradient is eq. (10.2): mean E(data) - mean E(samples), plus
    ``alpha * (E(data)^2 + E(samples)^2)`` to keep energies near zero. Returns (loss, parts)."""
    e_data, e_model = energy(x_data), energy(x_model.detach())
    loss = e_data.mean() - e_model.mean() + alpha * (e_data.pow(2).mean() + e_model.pow(2).mean())
    return loss, {"energy_data": e_data.mean().detach(), "energy_model": e_model.mean().detach()}


class ReplayBuffer:
    """Persistent Langevin chains: ``sample(n)`` returns ``n`` starting points, mostly from earlier
    chains and a fraction ``reinit`` fresh from uniform noise in ``box``; ``push`` stores new ends."""

    def __init__(self, dim: int, size: int = 10_000, box: tuple[float, float] = (-4.0, 4.0),
                 reinit: float = 0.05, device: torch.device | str = "cpu"):
        self.box, self.reinit = box, reinit
        self.points = torch.empty(size, dim, device=device).uniform_(*box)

    def sample(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.randint(len(self.points), (n,), device=self.points.device)
        x = self.points[index].clone()
        fresh = torch.rand(n, device=x.device) < self.reinit
        x[fresh] = torch.empty_like(x[fresh]).uniform_(*self.box)
        return x, index

    def push(self, x: torch.Tensor, index: torch.Tensor) -> None:
        self.points[index] = x.detach()


@dataclass
class EBMHistory:
    loss: list[float]
    energy_data: list[float]
    energy_model: list[float]


def train_ebm(energy: nn.Module, data: torch.Tensor, *, steps: int = 2_000, batch_size: int = 256,
              lr: float = 1e-3, langevin_steps: int = 20, step_size: float = 0.01, alpha: float = 0.1,
              box: tuple[float, float] = (-4.0, 4.0), reinit: float = 0.05, seed: int = 0) -> tuple[EBMHistory, ReplayBuffer]:
    """Fit ``energy`` to the points ``data`` (N, D) by eq. (10.2) with persistent Langevin samples.

    Each step draws a data batch, runs ``langevin_steps`` of eq. (10.3) from the replay buffer, and
    takes an Adam step on :func:`contrastive_loss`. A fraction ``reinit`` of the chains restarts from
    uniform noise each step: it lets the sampler find modes it has not visited, at the price of a bias
    (those short chains have not mixed, and the model compensates for them). Returns the history and the buffer (its points are
    the model's samples). Stops with ``unsuplab.train.TrainingDiverged`` if the loss is not finite.
    """
    from ..train import check_finite

    if data.ndim != 2:
        raise ValueError(f"expected data of shape (N, D), got {tuple(data.shape)}.")
    device = next(energy.parameters()).device
    data = data.to(device)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    buffer = ReplayBuffer(data.shape[1], box=box, reinit=reinit, device=device)
    optimizer = torch.optim.Adam(energy.parameters(), lr=lr, betas=(0.0, 0.999))
    history = EBMHistory([], [], [])
    for step in range(1, steps + 1):
        x_data = data[torch.randint(len(data), (batch_size,), generator=generator).to(device)]
        x_start, index = buffer.sample(batch_size)
        x_model = langevin(energy, x_start, langevin_steps, step_size, clamp=box)
        buffer.push(x_model, index)
        loss, parts = contrastive_loss(energy, x_data, x_model, alpha)
        check_finite(loss, step=step, what="energy loss")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        history.loss.append(loss.item())
        history.energy_data.append(parts["energy_data"].item())
        history.energy_model.append(parts["energy_model"].item())
    return history, buffer


@torch.no_grad()
def energy_grid(energy: nn.Module, lim: float = 4.0, n: int = 200) -> tuple[torch.Tensor, torch.Tensor]:
    """The normalized density :math:`e^{-E(x)} / Z` of a 2-D model on an ``n`` x ``n`` grid over
    ``[-lim, lim]^2`` (Z by summing over the grid: exact up to the grid's resolution), and the grid's
    coordinates. Returns ``(density (n, n), axis (n,))``; row i is y = axis[i]."""
    axis = torch.linspace(-lim, lim, n)
    yy, xx = torch.meshgrid(axis, axis, indexing="ij")
    points = torch.stack([xx.flatten(), yy.flatten()], 1).to(next(energy.parameters()).device)
    e = energy(points).float().cpu()
    log_density = -e - torch.logsumexp(-e, 0)  # normalize over the grid, in log space
    cell = (2 * lim / (n - 1)) ** 2
    return (log_density.exp() / cell).reshape(n, n), axis
