"""Deep embedded clustering, DEC (Xie, Girshick & Farhadi 2016): a network trained by a clustering loss.

K-means on an autoencoder's codes (chapter 4) clusters in a space that was learned for reconstruction,
not for clustering. DEC keeps the encoder :math:`z = f_\\theta(x)` and the K-means centroids
:math:`\\mu_1, \\dots, \\mu_K` as a starting point and refines both with one loss, built in three steps.

A **soft assignment** of each code to each centroid, with Student's t kernel (one degree of freedom, as
in t-SNE, whose heavy tails keep far points from dominating):

.. math::  q_{ij} = \\frac{(1 + \\lVert z_i - \\mu_j \\rVert^2)^{-1}}{\\sum_{j'} (1 + \\lVert z_i - \\mu_{j'} \\rVert^2)^{-1}} .   (eq. 4.10)

A **target** that sharpens it, squaring each assignment (confident assignments count more) and dividing
by the cluster's total soft frequency :math:`f_j = \\sum_i q_{ij}` (so that a large cluster cannot grow by
absorbing the rest: the trap DeepCluster avoids by balanced sampling):

.. math::  p_{ij} = \\frac{q_{ij}^2 / f_j}{\\sum_{j'} q_{ij'}^2 / f_{j'}} .   (eq. 4.11)

The **loss** moves Q towards P, with P held fixed (computed on the whole data set every few hundred
steps, like DeepCluster's pseudo-labels in chapter 7):

.. math::  L = \\mathrm{KL}(P \\,\\|\\, Q) = \\sum_i \\sum_j p_{ij} \\log \\frac{p_{ij}}{q_{ij}} .   (eq. 4.12)

It is self-training: the network learns from its own most confident assignments. No label is used, and the
model never imports K-means: the lab passes in the centroids (chapter 1's K-means on the codes).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..train import History, eval_mode, run_steps

__all__ = ["soft_assignment", "target_distribution", "DEC", "train_dec"]


def soft_assignment(z: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Q of eq. (4.10): codes ``z`` (N, k) and centroids (K, k) -> soft assignments (N, K), rows summing to 1."""
    kernel = 1.0 / (1.0 + torch.cdist(z, centroids).pow(2))     # (N, K) Student's t, one degree of freedom
    return kernel / kernel.sum(1, keepdim=True)


def target_distribution(q: torch.Tensor) -> torch.Tensor:
    """P of eq. (4.11) from Q (N, K): square each assignment, divide by its cluster's frequency, renormalise."""
    weight = q.pow(2) / q.sum(0)                                  # (N, K): q_ij^2 / f_j
    return weight / weight.sum(1, keepdim=True)


class DEC(nn.Module):
    """The encoder (any module; one with an ``encode`` method, like ``autoencoder.Autoencoder``, is used
    through it) and the centroids (K, k) as parameters; ``forward(x)`` gives Q (N, K)."""

    def __init__(self, encoder: nn.Module, centroids: torch.Tensor):
        super().__init__()
        self.encoder = encoder
        self.centroids = nn.Parameter(torch.as_tensor(centroids, dtype=torch.float32).clone())

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The codes z = f(x) of a batch: (B, ...) -> (B, k)."""
        return self.encoder.encode(x) if hasattr(self.encoder, "encode") else self.encoder(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Q of a batch, eq. (4.10): (B, ...) -> (B, K)."""
        return soft_assignment(self.encode(x), self.centroids)

    @torch.no_grad()
    def assign(self, x: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
        """Q of many examples, in eval mode and batches, on the model's device: (N, ...) -> (N, K)."""
        device = self.centroids.device
        with eval_mode(self):
            return torch.cat([self(chunk.to(device)) for chunk in x.split(batch_size)])


def train_dec(model: DEC, x: torch.Tensor, *, steps: int = 2_000, batch_size: int = 256, lr: float = 0.01,
              update_interval: int = 140, tol: float = 0.001, seed: int = 0, eval_fn=None,
              desc: str = "DEC", progress_bar: bool = True) -> History:
    """Refine ``model`` (encoder and centroids) on the examples ``x`` by eq. (4.12), with SGD (momentum 0.9)
    as in Xie et al., in the course's step loop (:func:`unsuplab.train.run_steps`). Every ``update_interval``
    steps the target P is recomputed on all of ``x`` (eq. 4.11); training stops early when fewer than
    ``tol`` of the examples changed cluster since the last update. ``eval_fn(model)``, if given, is called
    before training and at every target update that does not stop it.

    Returns the :class:`unsuplab.train.History`; its ``steps`` hold ``loss`` (KL(P || Q)) at every step,
    ``changed`` (the share of examples whose cluster changed) at every target update after the first, and
    ``eval_step`` with ``eval_fn``'s numbers at each evaluation."""
    if steps < 1 or update_interval < 1:
        raise ValueError(f"expected steps >= 1 and update_interval >= 1, got {steps} and {update_interval}.")
    device = model.centroids.device
    x = x.to(device)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=lr, momentum=0.9)
    target = labels = None
    stopped = False

    def evaluate(step: int) -> dict:
        return {} if eval_fn is None else {"eval_step": step, **eval_fn(model)}

    def update_target() -> dict:
        """P from Q on all of x, eq. (4.11), and the share of examples that changed cluster."""
        nonlocal target, labels, stopped
        q_all = model.assign(x)
        new_labels = q_all.argmax(1)
        logged = {} if labels is None else {"changed": (new_labels != labels).float().mean().item()}
        stopped = bool(logged) and logged["changed"] < tol
        target, labels = target_distribution(q_all), new_labels
        return logged

    update_target()
    first = evaluate(0)

    def step(s: int) -> dict:
        index = torch.randint(len(x), (batch_size,), generator=generator).to(device)
        q = model(x[index])
        loss = F.kl_div(q.log(), target[index], reduction="batchmean")     # KL(P || Q), eq. (4.12)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        logged = {"loss": loss.detach(), **(first if s == 1 else {})}
        if s % update_interval == 0 and s < steps:
            logged.update(update_target())
            if not stopped:
                logged.update(evaluate(s))
        return logged

    return run_steps(step, steps, desc=desc, progress_bar=progress_bar, until=lambda: stopped)
