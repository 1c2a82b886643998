"""Chapter 3: restricted Boltzmann machines and deep belief networks, in PyTorch.

A Bernoulli RBM (Smolensky 1986; Hinton 2002) has D binary visible units v and H binary hidden
units h, weights W (D, H), visible biases b (D,) and hidden biases c (H,). The book's equations:

* energy (eq. 3.1):          E(v, h) = -b^T v - c^T h - v^T W h
* joint (eq. 3.2):           p(v, h) = exp(-E(v, h)) / Z,   Z = sum_{v, h} exp(-E(v, h))
* free energy (eq. 3.3):     F(v) = -b^T v - sum_j log(1 + exp(c_j + v^T W_{:j})),   p(v) = exp(-F(v)) / Z
* conditionals (eq. 3.4):    p(h_j = 1 | v) = sigmoid(c_j + v^T W_{:j}),   p(v_i = 1 | h) = sigmoid(b_i + W_{i:} h)
* gradient (eq. 3.5):        d log p(v) / dW = v p(h=1|v)^T - E_model[v h^T]  (likewise for b and c)
* CD-k (eq. 3.6, Hinton 2002): the model expectation is replaced by the statistics of v^(k), the end
  of k steps of block Gibbs sampling started at the data:
  dW = <v^(0) p(h=1|v^(0))^T> - <v^(k) p(h=1|v^(k))^T>
* persistent CD (Tieleman 2008): the chains that give v^(k) are not restarted at the data but
  continue from one parameter update to the next.

Annealed importance sampling (Neal 2001), as Salakhutdinov & Murray (2008) use it for RBMs, estimates
log Z. It moves from a base-rate model A (no weights, visible biases b_A, so Z_A is known) to the RBM
through the intermediate distributions (eq. 3.7)

    p*_beta(v) = exp((1 - beta) b_A^T v + beta b^T v) prod_j (1 + exp(beta (c_j + v^T W_{:j}))),

0 = beta_0 < beta_1 < ... < beta_K = 1, with one Gibbs step that leaves p_beta invariant between
them. The importance weight of a run (eq. 3.8) is w = prod_k p*_{beta_k}(v_k) / p*_{beta_{k-1}}(v_k),
and Z / Z_A is estimated by the mean of w over independent runs.

A deep belief network (Hinton, Osindero & Teh 2006) stacks RBMs: each is trained, greedily, on the
hidden probabilities of the one below; the stack then initialises a sigmoid network that is
fine-tuned as a classifier by backpropagation (Hinton & Salakhutdinov 2006).

Everything is batched: one row per example or per chain, on the device of the model.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import check_unit_interval
from ..train import History, check_finite, eval_mode, progress

__all__ = ["static_binarize", "RBM", "cd_gradient", "train_rbm", "LeanCD", "ais_betas", "base_rate_bias", "AISResult",
           "ais_log_z", "average_log_prob", "DBN", "sigmoid_mlp", "relu_mlp", "classification_error"]


# ----------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------

def static_binarize(x: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Static binarisation: binary images from grey ones, each pixel 1 with probability equal to its intensity,
    drawn once (``unsuplab.models.vae.binarize`` draws afresh at every call).

    (N, 1, 28, 28) or (N, D) in [0, 1] -> (N, D) in {0, 1}, float32. The draw is fixed by ``seed``, so
    the binarised data set is the same every time (Salakhutdinov & Murray 2008 binarise MNIST this way).
    """
    x = torch.as_tensor(x)
    flat = x.reshape(len(x), -1).float()  # (N, ...) -> (N, D)
    check_unit_interval(flat, "intensities", why="each is the probability of a 1")
    g = torch.Generator().manual_seed(seed)
    return torch.bernoulli(flat.cpu(), generator=g).to(x.device)


def _visible(v: torch.Tensor, n_visible: int, name: str = "v") -> torch.Tensor:
    """Check and flatten a batch of visible vectors: (N, D) or (N, 1, H, W) with H*W = D."""
    if not isinstance(v, torch.Tensor):
        raise TypeError(f"expected {name} to be a torch.Tensor of shape (N, {n_visible}), got {type(v).__name__}.")
    if v.ndim < 2 or math.prod(v.shape[1:]) != n_visible:
        raise ValueError(f"expected {name} of shape (N, {n_visible}) (one visible vector per row), got shape "
                         f"{tuple(v.shape)}: flatten images with v.reshape(len(v), -1), use v[None] for a "
                         "single vector, and check the RBM's n_visible.")
    v = v.reshape(len(v), n_visible)
    if not v.is_floating_point():  # 0/1 integers are binary data as they are
        v = v.float()
    check_unit_interval(v, name, why="binary units, or their probabilities")
    return v


# ----------------------------------------------------------------------------------------------
# The model
# ----------------------------------------------------------------------------------------------

class RBM(nn.Module):
    """A Bernoulli-Bernoulli restricted Boltzmann machine, eqs. 3.1-3.4.

    Parameters: ``W`` (D, H), ``b`` (D,) visible biases, ``c`` (H,) hidden biases. ``W`` starts as
    small Gaussian noise (std ``init_std``), the biases at zero (see :meth:`init_visible_bias`).
    """

    def __init__(self, n_visible: int, n_hidden: int, *, init_std: float = 0.01):
        super().__init__()
        if n_visible < 1 or n_hidden < 1:
            raise ValueError(f"an RBM needs at least one visible and one hidden unit, got "
                             f"n_visible={n_visible}, n_hidden={n_hidden}.")
        self.n_visible, self.n_hidden = int(n_visible), int(n_hidden)
        self.W = nn.Parameter(init_std * torch.randn(n_visible, n_hidden))  # (D, H)
        self.b = nn.Parameter(torch.zeros(n_visible))                       # (D,)
        self.c = nn.Parameter(torch.zeros(n_hidden))                        # (H,)

    def extra_repr(self) -> str:
        return f"n_visible={self.n_visible}, n_hidden={self.n_hidden}"

    @torch.no_grad()
    def init_visible_bias(self, x: torch.Tensor) -> "RBM":
        """b_i = log(p_i / (1 - p_i)) with p_i the (smoothed) fraction of examples where v_i = 1: with
        W = 0 this is the best model of independent pixels (Hinton 2010, section 8)."""
        self.b.copy_(base_rate_bias(_visible(x, self.n_visible, "x")).to(self.b))
        return self

    # -- eq. 3.1 and 3.3 ------------------------------------------------------------------------
    def energy(self, v: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """E(v, h) = -b^T v - c^T h - v^T W h, eq. 3.1: (N, D), (N, H) -> (N,)."""
        v = _visible(v, self.n_visible)
        if h.shape != (len(v), self.n_hidden):
            raise ValueError(f"expected h of shape ({len(v)}, {self.n_hidden}), one hidden vector per visible "
                             f"vector, got {tuple(h.shape)}.")
        return -(v @ self.b) - (h @ self.c) - ((v @ self.W) * h).sum(1)

    def free_energy(self, v: torch.Tensor) -> torch.Tensor:
        """F(v) = -b^T v - sum_j softplus(c_j + v^T W_{:j}), eq. 3.3: (N, D) -> (N,).
        exp(-F(v)) = sum_h exp(-E(v, h)): the hidden units are summed out in closed form."""
        v = _visible(v, self.n_visible)
        return -(v @ self.b) - F.softplus(v @ self.W + self.c).sum(1)

    # -- eq. 3.4 --------------------------------------------------------------------------------
    def p_h_given_v(self, v: torch.Tensor) -> torch.Tensor:
        """p(h_j = 1 | v) = sigmoid(c_j + v^T W_{:j}): (N, D) -> (N, H)."""
        return torch.sigmoid(v @ self.W + self.c)

    def p_v_given_h(self, h: torch.Tensor) -> torch.Tensor:
        """p(v_i = 1 | h) = sigmoid(b_i + W_{i:} h): (N, H) -> (N, D)."""
        return torch.sigmoid(h @ self.W.T + self.b)

    def sample_h(self, v: torch.Tensor) -> torch.Tensor:
        return torch.bernoulli(self.p_h_given_v(v))

    def sample_v(self, h: torch.Tensor) -> torch.Tensor:
        return torch.bernoulli(self.p_v_given_h(h))

    @torch.no_grad()
    def gibbs(self, v: torch.Tensor, k: int = 1, *, return_probs: bool = False):
        """k steps of block Gibbs sampling v -> h ~ p(h|v) -> v ~ p(v|h), one chain per row.

        Returns the last v (N, D); with ``return_probs`` also p(v = 1 | h) of the last step, the
        smoother picture that papers show as "samples".
        """
        if k < 1:
            raise ValueError(f"k, the number of Gibbs steps, must be >= 1, got {k}.")
        return self._gibbs(_visible(v, self.n_visible), k, return_probs)

    def _gibbs(self, v: torch.Tensor, k: int, return_probs: bool = False):
        """:meth:`gibbs` without the input checks (they synchronise a GPU), for the training loop."""
        for _ in range(k):
            h = self.sample_h(v)       # (N, D) -> (N, H)
            p_v = self.p_v_given_h(h)  # (N, H) -> (N, D)
            v = torch.bernoulli(p_v)
        return (v, p_v) if return_probs else v

    # -- exact answers for small models ---------------------------------------------------------
    @torch.no_grad()
    def log_z_exact(self, max_units: int = 24, chunk: int = 4096) -> float:
        """log Z by enumerating all states of the smaller layer (eq. 3.2), in float64.

        Summing out the other layer in closed form, Z = sum_v exp(-F(v)) = sum_h exp(c^T h +
        sum_i softplus(b_i + W_{i:} h)). Feasible for min(D, H) <= ``max_units`` (2^24 states).
        """
        n = min(self.n_visible, self.n_hidden)
        if n > max_units:
            raise ValueError(f"exact log Z enumerates 2^{n} states: too many (limit 2^{max_units}); use "
                             "ais_log_z(rbm) for an estimate, or an RBM with fewer hidden units.")
        W, b, c = self.W.double(), self.b.double(), self.c.double()
        terms = []
        for start in range(0, 2**n, chunk):
            s = _binary_states(n, start, min(start + chunk, 2**n), W.device)  # (S, n)
            if n == self.n_hidden:   # enumerate h, sum out v
                terms.append(s @ c + F.softplus(s @ W.T + b).sum(1))
            else:                    # enumerate v, sum out h
                terms.append(s @ b + F.softplus(s @ W + c).sum(1))
        return float(torch.logsumexp(torch.cat(terms), 0))

    @torch.no_grad()
    def log_prob(self, v: torch.Tensor, log_z: float) -> torch.Tensor:
        """log p(v) = -F(v) - log Z in nats: (N, D) -> (N,). Needs log Z (exact or from AIS)."""
        return -self.free_energy(v) - log_z


def _binary_states(n: int, start: int, stop: int, device=None) -> torch.Tensor:
    """Rows start..stop-1 of the 2^n binary vectors of length n, as float64: (stop - start, n)."""
    codes = torch.arange(start, stop, device=device)
    return ((codes[:, None] >> torch.arange(n, device=device)) & 1).double()


# ----------------------------------------------------------------------------------------------
# Training: contrastive divergence and persistent CD
# ----------------------------------------------------------------------------------------------

@torch.no_grad()
def cd_gradient(rbm: RBM, v0: torch.Tensor, vk: torch.Tensor):
    """The CD estimate of the log-likelihood gradient, eq. 3.6: positive minus negative statistics.

    ``v0`` (B, D) is the data (positive phase), ``vk`` (M, D) the samples of the negative phase (the
    end of CD-k's chains, or PCD's persistent chains). Hidden units enter through their probabilities
    p(h = 1 | v), which lowers the variance. Returns ``(dW, db, dc)`` of shapes (D, H), (D,), (H,):
    an ascent direction for the average log-likelihood. (:func:`train_rbm` computes the same
    statistics with fewer, fused operations: see :class:`LeanCD`.)
    """
    ph0 = rbm.p_h_given_v(v0)                                    # (B, H) positive phase
    phk = rbm.p_h_given_v(vk)                                    # (M, H) negative phase
    dW = v0.T @ ph0 / len(v0) - vk.T @ phk / len(vk)             # (D, H)
    db = v0.mean(0) - vk.mean(0)                                 # (D,)
    dc = ph0.mean(0) - phk.mean(0)                               # (H,)
    return dW, db, dc


def train_rbm(rbm: RBM, x: torch.Tensor, *, epochs: int, batch_size: int = 100, lr: float = 0.01, k: int = 1,
              persistent: bool = False, momentum: float = 0.5, weight_decay: float = 1e-4,
              lr_decay: bool = True, init_visible_bias: bool = True,
              eval_fn: Callable[[RBM], dict] | None = None, progress_bar: bool = True,
              desc: str | None = None) -> History:
    """Train ``rbm`` on ``x`` (N, D) in [0, 1] by CD-k, or by persistent CD (PCD-k) with ``persistent``.

    Each update: take a mini-batch v0 (the positive phase), run k Gibbs steps from v0 (CD) or from the
    persistent chains (PCD, one chain per batch row, started at random training examples), and
    ascend :func:`cd_gradient` by SGD with ``momentum`` (L2 ``weight_decay`` on W only, not on the
    biases). With ``lr_decay`` the learning rate falls linearly to 0 over training, which lets PCD's
    chains keep up with the model (Tieleman 2008). The data order is drawn from torch's global
    generator (seeded by ``ul.setup``). The updates are made by :class:`LeanCD`: the same gradient as
    :func:`cd_gradient`, in a few fused operations.

    Returns a :class:`unsuplab.train.History`: per epoch the mean squared reconstruction error of
    v0 by p(v | h ~ p(h | v0)) ("recon_error", cheap but not the likelihood), the learning rate,
    the seconds, and whatever ``eval_fn(rbm)`` returns. PCD's chains are left in
    ``rbm.fantasy_particles`` (B, D), a look at what the model believes.
    """
    x = _visible(x, rbm.n_visible, "x").to(rbm.W)
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a whole number >= 1, got {epochs!r}.")
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k, the number of Gibbs steps per update, must be a whole number >= 1, got {k!r}.")
    batch_size = min(int(batch_size), len(x))
    if init_visible_bias:
        rbm.init_visible_bias(x)
    n_batches = len(x) // batch_size
    total = epochs * n_batches
    lean = LeanCD(rbm, batch_size, k=k, persistent=persistent, momentum=momentum, weight_decay=weight_decay)
    if persistent:
        lean.chains.copy_(x[torch.randint(len(x), (batch_size,), device=x.device)].bernoulli())
    noise = lean.uniforms(total)
    history = History()
    bar = progress(total=total, desc=desc or f"{'PCD' if persistent else 'CD'}-{k}", disable=not progress_bar)
    step = 0
    for epoch in range(epochs):
        started = time.perf_counter()
        lean.sq_error.zero_()
        batches = x[torch.randperm(len(x), device=x.device)].split(batch_size)  # views of one shuffled copy
        with torch.no_grad():
            for i in range(n_batches):
                rate = lr * (1 - step / total if lr_decay else 1.0)
                lean.update(batches[i], next(noise), rate)
                step += 1
                bar.update(1)
        record = {"recon_error": lean.sq_error.sum().item() / (n_batches * batch_size), "lr": rate,
                  "seconds": time.perf_counter() - started}
        check_finite(record["recon_error"], step=step, epoch=epoch + 1, what="reconstruction error")
        if eval_fn is not None:
            record.update(eval_fn(rbm))
        history.log_epoch(record)
        history.seconds += record["seconds"]
        bar.set_postfix(epoch=epoch + 1, recon=f"{record['recon_error']:.2f}", refresh=False)
    bar.close()
    rbm.fantasy_particles = lean.chains.clone() if persistent else None
    return history


class LeanCD:
    """One CD-k or PCD-k update of ``rbm`` in as few tensor operations as possible: the engine of
    :func:`train_rbm`. It computes the gradient of :func:`cd_gradient`, with the same sampling, but at
    a mini-batch of 10 each torch operation costs more in overhead (microseconds) than in arithmetic,
    so the number of operations sets the speed. Five ideas keep it small:

    * the data v0 and the negative samples vk share one block V = [v0; vk] (2B, D), and their hidden
      probabilities one block P = [p(h|v0); -p(h|vk)] (2B, H), the negative rows with a minus sign.
      Then V^T P = B dW, V^T s = B db (s = +1 for data rows, -1 for chain rows) and P^T 1 = B dc:
      the positive-minus-negative statistics of eq. 3.6 are one matrix product per parameter;
    * PCD's chains take their first Gibbs step in the same matrix products as the data's
      reconstruction (v0 -> h0 -> p(v|h0)); CD's chains start at v0, so that reconstruction is
      their first step;
    * SGD with momentum is fused into those products: ``addmm_(beta=momentum, alpha=rate / B)``
      computes momentum * velocity + rate * gradient in one call;
    * every tensor is allocated once and written in place (``out=``, ``sigmoid_``); no autograd;
    * a binary sample with probabilities p is ``u < p`` for uniforms u drawn in advance, for many
      updates at a time (:meth:`uniforms`): the law of ``torch.bernoulli(p)``, in one cheap comparison.

    :meth:`update` makes one update; ``chains`` (B, D) hold the negative-phase samples (PCD's
    persistent chains) and ``sq_error`` (B, D) sums the squared reconstruction errors of the data.
    """

    def __init__(self, rbm: RBM, batch_size: int, *, k: int = 1, persistent: bool = True, momentum: float = 0.0,
                 weight_decay: float = 0.0):
        B, D, H = batch_size, rbm.n_visible, rbm.n_hidden
        self.B, self.k, self.persistent, self.weight_decay = B, k, persistent, float(weight_decay)
        new = dict(device=rbm.W.device, dtype=rbm.W.dtype)
        self.params = tuple(p.detach() for p in (rbm.W, rbm.b, rbm.c))     # views of the parameters' storage
        self.W, self.b, self.c = self.params
        self.W_T = self.W.T                                                 # a view: follows W's updates
        self.V, self.P = torch.zeros(2 * B, D, **new), torch.zeros(2 * B, H, **new)  # [v0; vk], [ph0; -phk]
        self.V_T, self.P_T = self.V.T, self.P.T
        self.v0, self.chains = self.V[:B], self.V[B:]                       # views of the halves
        self.ph0, self.phk = self.P[:B], self.P[B:]
        # the first half step: PCD moves the data (for the reconstruction) and the chains together
        self.first = self.V if persistent else self.v0
        n = len(self.first)
        self.p_first = self.P[:n]                                          # [p(h|v0); p(h|chains)]
        self.h = torch.empty(n, H, **new)                                  # [h0; h of the chains]
        self.pv = torch.empty(n, D, **new)                                 # [p(v|h0); p(v|h of the chains)]
        self.h_chains, self.recon, self.pv_chains = self.h[-B:], self.pv[:B], self.pv[-B:]
        self.ones = torch.ones(2 * B, **new)
        self.sign = torch.cat([self.ones[:B], -self.ones[B:]])              # s: data +1, chains -1
        self.sq_error = torch.zeros(B, D, **new)
        # plain SGD (no momentum, no weight decay) adds its step straight to the parameters (beta = 1
        # keeps them); otherwise the step goes into velocities (beta = momentum), added afterwards
        self.plain = momentum == 0 and weight_decay == 0
        self.steps = self.params if self.plain else tuple(torch.zeros_like(p) for p in self.params)
        self.beta = 1.0 if self.plain else float(momentum)

    def uniforms(self, n_steps: int, max_numbers: int = 1 << 20):
        """Yield, for each of ``n_steps`` updates, its uniforms: one block per half step of Gibbs
        sampling, (2B, H) for the first hidden samples (h0 of the data, then PCD's chains; (B, H) for
        CD) and (B, D) for the first visible ones, then (B, H) and (B, D) for each further step. They
        are drawn for many updates at once (at most ``max_numbers`` numbers, 4 MB in float32): one
        call of the generator per block and chunk of updates instead of one per block and update."""
        B, D, H = self.B, self.V.shape[1], self.P.shape[1]
        shapes = [(len(self.first), H), (B, D)] + [(B, H), (B, D)] * (self.k - 1)
        chunk = max(1, min(n_steps, max_numbers // sum(math.prod(s) for s in shapes)))
        new = dict(device=self.V.device, dtype=self.V.dtype)
        for start in range(0, n_steps, chunk):
            n = min(chunk, n_steps - start)
            yield from zip(*(torch.rand(n, *s, **new).unbind(0) for s in shapes))

    # the conditionals of eq. 3.4 written into a buffer, and sampling by comparison with uniforms
    def _p_h(self, v, out):
        return torch.addmm(self.c, v, self.W, out=out).sigmoid_()          # p(h = 1 | v)

    def _p_v(self, h, out):
        return torch.addmm(self.b, h, self.W_T, out=out).sigmoid_()        # p(v = 1 | h)

    @staticmethod
    def _sample(p, u, out):
        return torch.lt(u, p, out=out)                                     # 1 with probability p

    def update(self, v0: torch.Tensor, u: tuple[torch.Tensor, ...], rate: float) -> None:
        """One update from the batch ``v0`` (B, D), with one update's uniforms ``u`` (from
        :meth:`uniforms`) and learning rate ``rate``. PCD's chains continue from ``chains``; CD's
        start at v0. Call it under ``torch.no_grad()`` if ``v0`` requires gradients."""
        self.v0.copy_(v0)
        # the first Gibbs step, v -> h ~ p(h|v) -> v ~ p(v|h), of the data (PCD: and of the chains)
        p = self._p_h(self.first, out=self.p_first)                        # ph0 is the positive phase
        self._p_v(self._sample(p, u[0], out=self.h), out=self.pv)          # recon = p(v | h0)
        self._sample(self.pv_chains, u[1], out=self.chains)                # vk ~ p(v | h) (CD: h = h0)
        self.sq_error.addcmul_(self.recon.sub_(self.v0), self.recon)       # += (p(v | h0) - v0)^2, in place:
                                                                           # after the line above has read it
        for i in range(1, self.k):                                         # the other k - 1 Gibbs steps
            h = self._sample(self._p_h(self.chains, out=self.phk), u[2 * i], out=self.h_chains)
            self._sample(self._p_v(h, out=self.chains), u[2 * i + 1], out=self.chains)
        self._p_h(self.chains, out=self.phk).neg_()                        # negative phase, signed
        # step <- beta * step + rate * gradient (eq. 3.6, as in cd_gradient), then parameter += step
        dW, db, dc = self.steps
        alpha = rate / self.B
        dW.addmm_(self.V_T, self.P, beta=self.beta, alpha=alpha)           # V^T P / B = dW
        db.addmv_(self.V_T, self.sign, beta=self.beta, alpha=alpha)        # V^T s / B = db
        dc.addmv_(self.P_T, self.ones, beta=self.beta, alpha=alpha)        # P^T 1 / B = dc
        if not self.plain:
            if self.weight_decay:
                dW.add_(self.W, alpha=-rate * self.weight_decay)          # L2 on W only
            for p, step in zip(self.params, self.steps):
                p.add_(step)


# ----------------------------------------------------------------------------------------------
# Annealed importance sampling: log Z, and the test log-probability in nats
# ----------------------------------------------------------------------------------------------

def ais_betas(n_betas: int = 14_500) -> torch.Tensor:
    """Inverse temperatures 0 = beta_0 < ... < beta_K = 1 spaced as in Salakhutdinov & Murray (2008):
    their 14,500 are 500 evenly in [0, 0.5), 4,000 in [0.5, 0.9) and 10,000 in [0.9, 1]; a smaller
    ``n_betas`` keeps the same proportions. Returns (n_betas + 1,) float64."""
    if n_betas < 3:
        raise ValueError(f"expected at least 3 intermediate distributions, got n_betas={n_betas}.")
    n1, n2 = max(1, round(n_betas * 500 / 14_500)), max(1, round(n_betas * 4_000 / 14_500))
    n3 = n_betas - n1 - n2
    return torch.cat([torch.linspace(0.0, 0.5, n1 + 1, dtype=torch.float64)[:-1],
                      torch.linspace(0.5, 0.9, n2 + 1, dtype=torch.float64)[:-1],
                      torch.linspace(0.9, 1.0, n3 + 1, dtype=torch.float64)])


def base_rate_bias(x: torch.Tensor) -> torch.Tensor:
    """Visible biases of the base-rate model: b_A,i = log(p_i / (1 - p_i)), p_i the fraction of rows of
    ``x`` (N, D) with v_i = 1, smoothed as (count + 1) / (N + 2) so that no bias is infinite. (D,)"""
    x = torch.as_tensor(x).reshape(len(x), -1).float()
    p = (x.sum(0) + 1) / (len(x) + 2)
    return torch.log(p) - torch.log1p(-p)


@dataclass
class AISResult:
    """What :func:`ais_log_z` found. ``log_z`` pools all runs; ``log_z_runs`` (R,) are the estimates of
    R independent repeats (their spread is the honest error bar); ``log_z_low`` and ``log_z_high`` are
    Salakhutdinov & Murray's bracket log(mean w -/+ 3 std(w) / sqrt(M)) for the pooled runs (the
    lower end is -inf when 3 standard errors exceed the mean). ``log_w`` (R, M) are the log weights."""

    log_z: float
    log_z_runs: torch.Tensor
    log_z_low: float
    log_z_high: float
    log_z_base: float
    log_w: torch.Tensor
    n_betas: int

    @property
    def spread(self) -> float:
        """Standard deviation of log Z over the independent repeats (0 with one repeat)."""
        return float(self.log_z_runs.std()) if len(self.log_z_runs) > 1 else 0.0


def _log_mean_exp(a: torch.Tensor, dim: int = -1) -> torch.Tensor:
    return torch.logsumexp(a, dim) - math.log(a.shape[dim])


@torch.no_grad()
def ais_log_z(rbm: RBM, *, n_chains: int = 100, n_repeats: int = 1, n_betas: int = 14_500,
              betas: torch.Tensor | None = None, base_bias: torch.Tensor | None = None) -> AISResult:
    """Estimate log Z of ``rbm`` by annealed importance sampling (Neal 2001; Salakhutdinov & Murray 2008).

    ``n_repeats`` independent estimates, each from ``n_chains`` runs, are computed in one batch of
    n_repeats * n_chains chains. The base model A has W = 0, visible biases ``base_bias`` (default 0;
    :func:`base_rate_bias` of the training data is much better) and no hidden units of its own, so
    log Z_A = sum_i softplus(b_A,i) + H log 2 (the RBM's hidden units are free at beta = 0). Runs
    through ``betas`` (default :func:`ais_betas` of ``n_betas``), eqs. 3.7-3.8.

    Every run starts with an exact sample of p_0 and, at each beta_k, adds to its log weight
    log p*_{beta_k}(v) - log p*_{beta_{k-1}}(v) and then moves v by one Gibbs step that leaves
    p_{beta_k} invariant: h ~ sigmoid(beta (c + v^T W)), v ~ sigmoid((1 - beta) b_A + beta (b + W h)).
    Log weights are accumulated in float64.
    """
    W, b, c = rbm.W, rbm.b, rbm.c
    device = W.device
    b_A = torch.zeros_like(b) if base_bias is None else torch.as_tensor(base_bias).to(b).reshape(-1)
    if b_A.shape != b.shape:
        raise ValueError(f"expected base_bias of shape ({rbm.n_visible},), got {tuple(b_A.shape)}.")
    betas = ais_betas(n_betas) if betas is None else torch.as_tensor(betas, dtype=torch.float64)
    if betas.ndim != 1 or len(betas) < 2 or betas[0] != 0 or betas[-1] != 1 or (betas.diff() <= 0).any():
        raise ValueError("expected betas to increase strictly from 0 to 1, e.g. ais_betas(1000).")
    M = n_chains * n_repeats
    log_z_base = float(F.softplus(b_A.double()).sum() + rbm.n_hidden * math.log(2))

    v = torch.bernoulli(torch.sigmoid(b_A).expand(M, -1).contiguous())   # (M, D) exact samples of p_0
    log_w = torch.zeros(M, dtype=torch.float64, device=device)
    db = (b - b_A).double()
    betas_list = betas.tolist()
    for k in range(1, len(betas_list)):
        beta_prev, beta = betas_list[k - 1], betas_list[k]
        x = v @ W + c                                                      # (M, H)
        x64 = x.double()
        # log p*_beta(v) - log p*_beta_prev(v), eq. 3.7 (the b_A^T v terms cancel except their beta part)
        log_w += (beta - beta_prev) * (v.double() @ db) \
            + (F.softplus(beta * x64) - F.softplus(beta_prev * x64)).sum(1)
        if k < len(betas_list) - 1:  # the last transition would not change the weights
            h = torch.bernoulli(torch.sigmoid(beta * x))                   # (M, H)
            v = torch.bernoulli(torch.sigmoid((1 - beta) * b_A + beta * (h @ W.T + b)))  # (M, D)
    log_w = log_w.reshape(n_repeats, n_chains).cpu()
    runs = _log_mean_exp(log_w, 1) + log_z_base                            # (R,)
    pooled = log_w.flatten()
    top = pooled.max()
    w = (pooled - top).exp()
    mean, stderr = w.mean(), w.std() / math.sqrt(len(w)) if len(w) > 1 else torch.tensor(0.0)
    low = float(torch.log(mean - 3 * stderr) + top + log_z_base) if mean > 3 * stderr else -math.inf
    high = float(torch.log(mean + 3 * stderr) + top + log_z_base)
    check_finite(float(runs.mean()), step=len(betas_list), what="AIS estimate of log Z")
    return AISResult(log_z=float(_log_mean_exp(pooled, 0) + log_z_base), log_z_runs=runs, log_z_low=low,
                     log_z_high=high, log_z_base=log_z_base, log_w=log_w, n_betas=len(betas_list) - 1)


@torch.no_grad()
def average_log_prob(rbm: RBM, x: torch.Tensor, log_z: float, batch_size: int = 10_000) -> float:
    """Mean of log p(v) = -F(v) - log Z over the rows of ``x`` (N, D), in nats per example."""
    x = _visible(x, rbm.n_visible, "x")
    total = sum(float(-rbm.free_energy(x[s:s + batch_size].to(rbm.W.device)).double().sum())
                for s in range(0, len(x), batch_size))
    return total / len(x) - log_z


# ----------------------------------------------------------------------------------------------
# Deep belief networks: greedy layer-wise pretraining, then fine-tuning as a classifier
# ----------------------------------------------------------------------------------------------

class DBN(nn.Module):
    """A stack of RBMs with layer sizes ``sizes`` = (D, H_1, ..., H_L) (Hinton, Osindero & Teh 2006).

    :meth:`pretrain` trains the RBMs greedily, bottom up, each on the hidden probabilities
    p(h = 1 | v) of the one below; :meth:`to_classifier` turns the stack into a sigmoid network
    D -> H_1 -> ... -> H_L -> classes whose hidden layers are the RBMs' p(h = 1 | v), ready for
    fine-tuning by backpropagation; :meth:`sample` draws from the generative model.
    """

    def __init__(self, sizes: tuple[int, ...] | list[int], *, init_std: float = 0.01):
        super().__init__()
        if len(sizes) < 2 or any(int(n) < 1 for n in sizes):
            raise ValueError(f"expected layer sizes (D, H_1, ..., H_L) with at least two positive entries, got {sizes}.")
        self.sizes = tuple(int(n) for n in sizes)
        self.rbms = nn.ModuleList(RBM(n_in, n_out, init_std=init_std) for n_in, n_out in zip(self.sizes, self.sizes[1:]))

    @torch.no_grad()
    def up(self, x: torch.Tensor, n_layers: int | None = None, batch_size: int = 10_000) -> torch.Tensor:
        """Hidden probabilities of layer ``n_layers`` (default: the top): (N, D) -> (N, H_l)."""
        out = []
        for s in range(0, len(x), batch_size):
            h = x[s:s + batch_size].reshape(len(x[s:s + batch_size]), -1).float()
            for rbm in self.rbms[:n_layers]:
                h = rbm.p_h_given_v(h)
            out.append(h)
        return torch.cat(out)

    def pretrain(self, x: torch.Tensor, *, epochs: int | list[int], **train_kwargs) -> list[History]:
        """Greedy layer-wise pretraining: RBM 1 on x, RBM l on p(h = 1 | ...) of RBM l-1. ``epochs`` (one
        number, or one per layer) and ``train_kwargs`` go to :func:`train_rbm`. Returns their histories."""
        epochs = list(epochs) if isinstance(epochs, (list, tuple)) else [epochs] * len(self.rbms)
        if len(epochs) != len(self.rbms):
            raise ValueError(f"expected one number of epochs per RBM ({len(self.rbms)}), got {epochs}.")
        data = _visible(x, self.sizes[0], "x").to(self.rbms[0].W.device)
        histories = []
        for layer, (rbm, n_epochs) in enumerate(zip(self.rbms, epochs), start=1):
            histories.append(train_rbm(rbm, data, epochs=n_epochs, desc=f"RBM {layer} ({rbm.n_visible}->{rbm.n_hidden})",
                                       **train_kwargs))
            data = _layer_up(rbm, data)  # (N, H_{l-1}) -> (N, H_l): the data of the next RBM
        return histories

    def to_classifier(self, n_classes: int) -> nn.Sequential:
        """The sigmoid network D -> H_1 -> ... -> H_L -> n_classes whose l-th hidden layer computes
        RBM l's p(h = 1 | v) (weights W^T, biases c, copied); the output layer starts random."""
        net = sigmoid_mlp(self.sizes, n_classes)
        linears = [m for m in net if isinstance(m, nn.Linear)]
        with torch.no_grad():
            for linear, rbm in zip(linears, self.rbms):
                linear.weight.copy_(rbm.W.T)   # (H, D)
                linear.bias.copy_(rbm.c)
        return net.to(self.rbms[0].W.device)

    @torch.no_grad()
    def sample(self, n: int, n_gibbs: int = 1_000) -> torch.Tensor:
        """Samples of the DBN's generative model: ``n_gibbs`` Gibbs steps in the top RBM (from random
        states), then one top-down pass of probabilities p(h_{l-1} = 1 | h_l) to the pixels. (n, D)"""
        top = self.rbms[-1]
        v = torch.bernoulli(torch.full((n, top.n_visible), 0.5, device=top.W.device))
        v, p = top.gibbs(v, n_gibbs, return_probs=True)
        for rbm in reversed(self.rbms[:-1]):
            p = rbm.p_v_given_h(torch.bernoulli(p))
        return p


@torch.no_grad()
def _layer_up(rbm: RBM, x: torch.Tensor, batch_size: int = 10_000) -> torch.Tensor:
    return torch.cat([rbm.p_h_given_v(x[s:s + batch_size]) for s in range(0, len(x), batch_size)])


def sigmoid_mlp(sizes: tuple[int, ...] | list[int], n_classes: int) -> nn.Sequential:
    """The DBN's architecture as a classifier, with PyTorch's default random initialisation:
    Linear(D, H_1), Sigmoid, ..., Linear(H_L, n_classes). The baseline for pretraining."""
    layers: list[nn.Module] = []
    for n_in, n_out in zip(sizes, sizes[1:]):
        layers += [nn.Linear(n_in, n_out), nn.Sigmoid()]
    return nn.Sequential(*layers, nn.Linear(sizes[-1], n_classes))


def relu_mlp(sizes: tuple[int, ...] | list[int], n_classes: int) -> nn.Sequential:
    """The same architecture as a modern network would build it: ReLU instead of the sigmoid, weights
    drawn with He initialisation (variance 2 / fan-in, He et al. 2015, so the signal keeps its scale
    through the layers) and zero biases. Trained with Adam from these random weights, it is the
    baseline that tells what pretraining still buys today (Glorot & Bengio 2010 traced the sigmoid
    network's plateau to its saturating units and to the initialisation)."""
    layers: list[nn.Module] = []
    for n_in, n_out in zip(sizes, sizes[1:]):
        layers += [nn.Linear(n_in, n_out), nn.ReLU()]
    net = nn.Sequential(*layers, nn.Linear(sizes[-1], n_classes))
    for m in net:
        if isinstance(m, nn.Linear):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            nn.init.zeros_(m.bias)
    return net


@torch.no_grad()
def classification_error(net: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 10_000) -> float:
    """Fraction of rows of ``x`` (N, D) whose arg-max logit differs from ``y`` (N,)."""
    device = next(net.parameters()).device
    with eval_mode(net):
        wrong = sum(int((net(x[s:s + batch_size].to(device).reshape(len(x[s:s + batch_size]), -1)).argmax(1)
                         != y[s:s + batch_size].to(device)).sum()) for s in range(0, len(x), batch_size))
    return wrong / len(x)
