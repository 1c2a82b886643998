"""Chapter 2: sparse coding — codes by ISTA and FISTA, a dictionary of unit-norm atoms, in PyTorch.

Olshausen & Field (1996) asked for a dictionary in which every natural-image patch is a combination
of *few* atoms, and found that the atoms come out as localised, oriented edges, like the receptive
fields of simple cells in V1. With patches :math:`x_i \\in \\mathbb{R}^m` (flattened ``p x p`` pixels,
their own mean removed), a dictionary :math:`D = [d_1, \\dots, d_K] \\in \\mathbb{R}^{m \\times K}` and codes
:math:`z_i \\in \\mathbb{R}^K`, the objective is (eq. 2.1)

.. math::

    E(D, Z) = \\frac{1}{N} \\sum_{i=1}^N \\Big[ \\tfrac12 \\lVert x_i - D z_i \\rVert_2^2
              + \\lambda \\lVert z_i \\rVert_1 \\Big], \\qquad \\lVert d_k \\rVert_2 = 1 \\ \\text{for all } k,

the same per-patch objective as scikit-learn's ``MiniBatchDictionaryLearning`` with ``alpha = lambda``.
It is minimised by alternating two convex problems:

**Codes** (``D`` fixed): one Lasso (Tibshirani 1996) per patch, solved for a whole batch at once by
proximal gradient steps. The soft threshold (eq. 2.2) :math:`S_\\tau(v) = \\mathrm{sign}(v)\\max(|v| - \\tau, 0)`
is the proximal operator of :math:`\\tau \\lVert \\cdot \\rVert_1`; ISTA (Daubechies, Defrise & De Mol 2004)
repeats (eq. 2.3)

.. math::  z \\leftarrow S_{\\lambda / L}\\big(z - \\tfrac1L D^\\top (D z - x)\\big), \\qquad L = \\lVert D \\rVert_2^2 = \\lambda_{\\max}(D^\\top D),

and FISTA (Beck & Teboulle 2009) takes the same step from an extrapolated point (eq. 2.4):
:math:`z_k = S_{\\lambda/L}(y_k - \\frac1L D^\\top(D y_k - x))`, :math:`t_{k+1} = (1 + \\sqrt{1 + 4 t_k^2})/2`,
:math:`y_{k+1} = z_k + \\frac{t_k - 1}{t_{k+1}} (z_k - z_{k-1})`; its objective gap falls as
:math:`O(1/k^2)` instead of ISTA's :math:`O(1/k)`.

**Dictionary** (codes fixed): with the statistics :math:`A = \\sum_i z_i z_i^\\top` (K x K) and
:math:`B = \\sum_i x_i z_i^\\top` (m x K), the reconstruction term is
:math:`\\frac12 \\mathrm{tr}(D^\\top D A) - \\mathrm{tr}(D^\\top B) + \\text{const}` (eq. 2.5). Block-coordinate
descent (Mairal, Bach, Ponce & Sapiro 2009) minimises it exactly over one atom at a time (eq. 2.6):

.. math::  u_k = d_k + \\frac{b_k - D a_k}{A_{kk}}, \\qquad d_k \\leftarrow \\frac{u_k}{\\lVert u_k \\rVert_2}.

The projected-gradient alternative updates all atoms at once,
:math:`D \\leftarrow \\Pi(D - \\frac{1}{\\lVert A \\rVert_2}(D A - B))`, with :math:`\\Pi` rescaling every
column to unit norm (eq. 2.7). :class:`SparseCoding` runs the online (mini-batch) version of
Mairal et al. (2010): code a batch, fold it into ``A`` and ``B`` with a forgetting factor, update ``D``.

Shapes: patches are rows, ``x`` (N, m); codes are rows, ``z`` (N, K); atoms are the columns of
``D`` (m, K). So :math:`D z_i` for every row is ``z @ D.T`` and :math:`D^\\top x_i` is ``x @ D``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ..checks import finite_floats

__all__ = ["as_patches", "soft_threshold", "objective", "lipschitz_constant", "ista_step", "ista", "fista",
           "normalize_atoms", "dictionary_step_bcd", "dictionary_step_pgd", "SparseCoding", "orientation_coherence",
           "psnr", "image_to_patches", "patches_to_image", "fill_by_local_mean", "denoise", "inpaint"]


# ----------------------------------------------------------------------------------------------
# Checking what arrives
# ----------------------------------------------------------------------------------------------


def as_patches(x, m: int | None = None, name: str = "x", device=None) -> torch.Tensor:
    """(N, m) array or tensor of flattened patches -> float tensor; errors that say what to do."""
    t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    if t.ndim != 2:
        hint = (f" — these look like {t.shape[-2]}x{t.shape[-1]} patches: flatten them with "
                f"{name}.reshape(len({name}), -1)" if t.ndim == 3 else
                " — put one patch per row (use x[None] for a single patch)" if t.ndim == 1 else "")
        raise ValueError(f"expected {name} of shape (N, m): one flattened patch of m pixels per row, "
                         f"got shape {tuple(t.shape)}{hint}.")
    if m is not None and t.shape[1] != m:
        p = math.isqrt(m)
        size = f" ({p}x{p} patches)" if p * p == m else ""
        raise ValueError(f"{name} has patches of {t.shape[1]} pixels but the dictionary's atoms have {m}"
                         f"{size}: extract patches of the size the dictionary was learned on.")
    return finite_floats(t, name, device=device, advice="clean the patches before coding them")


def _check_dictionary(D: torch.Tensor) -> None:
    if not isinstance(D, torch.Tensor) or D.ndim != 2:
        shape = tuple(D.shape) if hasattr(D, "shape") else type(D).__name__
        raise ValueError(f"expected a dictionary D of shape (m, K), atoms as columns, got {shape}.")


# ----------------------------------------------------------------------------------------------
# The objective and the code step (one Lasso per patch, a whole batch at once)
# ----------------------------------------------------------------------------------------------


def soft_threshold(v: torch.Tensor, tau) -> torch.Tensor:
    """Eq. 2.2: ``S_tau(v) = sign(v) * max(|v| - tau, 0)``, elementwise (the prox of ``tau * ||.||_1``)."""
    return v.sign() * (v.abs() - tau).clamp_min(0)


def objective(x: torch.Tensor, D: torch.Tensor, z: torch.Tensor, lam: float, *,
              reduce: bool = True) -> torch.Tensor:
    """Eq. 2.1: 1/2 ||x_i - D z_i||^2 + lam ||z_i||_1, averaged over the rows (or per row: reduce=False)."""
    residual = x - z @ D.T                                        # (N, m)
    per_patch = 0.5 * (residual ** 2).sum(1) + lam * z.abs().sum(1)  # (N,)
    return per_patch.mean() if reduce else per_patch


def lipschitz_constant(D: torch.Tensor) -> float:
    """L = ||D||_2^2, the largest eigenvalue of D^T D: the gradient of 1/2||x - Dz||^2 is L-Lipschitz."""
    G = (D.T @ D).cpu().double()          # (K, K); tiny, and eigvalsh is robust in float64 on the CPU
    return float(torch.linalg.eigvalsh(G)[-1])


def ista_step(x: torch.Tensor, D: torch.Tensor, z: torch.Tensor, lam: float, L: float) -> torch.Tensor:
    """Eq. 2.3, one ISTA step for every row: z <- S_{lam/L}(z - D^T (D z - x) / L)."""
    gradient = (z @ D.T - x) @ D              # D^T (D z - x) for every row: (N, m) @ (m, K) -> (N, K)
    return soft_threshold(z - gradient / L, lam / L)


def _code_setup(x, D, lam, n_iter, z0, mask):
    _check_dictionary(D)
    x = as_patches(x, D.shape[0], device=D.device).to(D.dtype)
    if lam < 0:
        raise ValueError(f"lam must be >= 0 (it weighs the L1 penalty), got {lam}.")
    if isinstance(n_iter, bool) or not isinstance(n_iter, (int, np.integer)) or n_iter < 0:
        raise ValueError(f"n_iter must be a whole number >= 0, got {n_iter!r}.")
    K = D.shape[1]
    z = torch.zeros(len(x), K, dtype=D.dtype, device=D.device) if z0 is None else z0.to(D)
    if z.shape != (len(x), K):
        raise ValueError(f"z0 must have shape (N, K) = {(len(x), K)}, got {tuple(z.shape)}.")
    if mask is not None:
        mask = torch.as_tensor(mask, device=D.device).to(D.dtype)
        if mask.shape != x.shape:
            raise ValueError(f"mask must have the shape of the patches {tuple(x.shape)} (1 = observed pixel), "
                             f"got {tuple(mask.shape)}.")
        x = x * mask
    G = D.T @ D                                   # (K, K)
    Dtx = x @ D                                   # D^T x for every row: (N, K)
    L = lipschitz_constant(D)                     # a mask only lowers the curvature: 1/L stays a safe step

    def gradient(v: torch.Tensor) -> torch.Tensor:
        """D^T (D v - x) for every row, or D^T (M * (D v - x)) with a mask M of observed pixels."""
        if mask is None:
            return v @ G - Dtx                    # (N, K) @ (K, K) -> (N, K): same as (v @ D.T - x) @ D
        return ((v @ D.T) * mask) @ D - Dtx       # (N, K) -> (N, m) -> (N, K)

    return x, z, L, gradient


def ista(x, D: torch.Tensor, lam: float, n_iter: int = 100, *, z0: torch.Tensor | None = None,
         mask=None, trace: list | None = None) -> torch.Tensor:
    """Codes (N, K) of patches x (N, m) by ``n_iter`` ISTA steps (eq. 2.3) from ``z0`` (default 0).

    ``mask`` (N, m) of 0/1 codes only the observed pixels (inpainting): the reconstruction term becomes
    1/2 ||M (x - D z)||^2. ``trace``, a list, receives the objective after every step.
    """
    x, z, L, gradient = _code_setup(x, D, lam, n_iter, z0, mask)
    for _ in range(n_iter):
        z = soft_threshold(z - gradient(z) / L, lam / L)
        if trace is not None:
            trace.append(float(_masked_objective(x, D, z, lam, mask)))
    return z


def fista(x, D: torch.Tensor, lam: float, n_iter: int = 100, *, z0: torch.Tensor | None = None,
          mask=None, trace: list | None = None) -> torch.Tensor:
    """Codes (N, K) of patches x (N, m) by ``n_iter`` FISTA steps (eq. 2.4) from ``z0`` (default 0).

    Same arguments as :func:`ista`; the first step is ISTA's, later ones start from the extrapolated
    point y (Beck & Teboulle 2009, with their t_1 = 1).
    """
    x, z, L, gradient = _code_setup(x, D, lam, n_iter, z0, mask)
    y, t = z, 1.0
    for _ in range(n_iter):
        z_next = soft_threshold(y - gradient(y) / L, lam / L)       # a proximal step from y
        t_next = (1 + math.sqrt(1 + 4 * t * t)) / 2
        y = z_next + ((t - 1) / t_next) * (z_next - z)               # momentum: extrapolate
        z, t = z_next, t_next
        if trace is not None:
            trace.append(float(_masked_objective(x, D, z, lam, mask)))
    return z


def _masked_objective(x, D, z, lam, mask):
    if mask is None:
        return objective(x, D, z, lam)
    residual = (x - z @ D.T) * mask
    return (0.5 * (residual ** 2).sum(1) + lam * z.abs().sum(1)).mean()


# ----------------------------------------------------------------------------------------------
# The dictionary step: unit-norm atoms
# ----------------------------------------------------------------------------------------------


def normalize_atoms(D: torch.Tensor) -> torch.Tensor:
    """Every column d_k scaled to unit norm (a zero column is left at zero)."""
    return D / D.norm(dim=0, keepdim=True).clamp_min(1e-12)


def dictionary_step_bcd(D: torch.Tensor, A: torch.Tensor, B: torch.Tensor, *,
                        min_usage: float = 1e-8) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 2.6: one sweep of block-coordinate descent over the atoms (Mairal et al. 2009, Algorithm 2).

    ``A`` (K, K) and ``B`` (m, K) are the code statistics of eq. 2.5. Each atom in turn becomes the
    exact minimiser on the unit sphere, d_k = u_k / ||u_k||, so the objective never increases. Atoms
    that no code uses (A_kk <= ``min_usage``) are left as they are. Returns the new D (a copy) and a
    boolean (K,) mask of the unused atoms, for the caller to re-seed.
    """
    D = D.clone()
    diag = A.diagonal()
    unused = diag <= min_usage
    skip = unused.tolist()                         # one transfer, not one per atom, when D is on a GPU
    for k in range(D.shape[1]):                    # sequential: atom k sees the atoms already updated
        if skip[k]:
            continue
        u = D[:, k] + (B[:, k] - D @ A[:, k]) / diag[k]   # (m,)
        D[:, k] = u / u.norm().clamp_min(1e-12)
    return D, unused


def dictionary_step_pgd(D: torch.Tensor, A: torch.Tensor, B: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 2.7: a projected-gradient step on all atoms at once, D <- Pi(D - (D A - B) / ||A||_2).

    The gradient of eq. 2.5 with respect to D is D A - B (m, K); Pi rescales each column to unit norm.
    Fully vectorised (no loop over atoms), but not an exact minimisation. Same returns as the BCD step.
    """
    step = 1.0 / max(float(torch.linalg.eigvalsh(A.cpu().double())[-1]), 1e-12)
    unused = A.diagonal() <= 1e-8
    D_new = normalize_atoms(D - step * (D @ A - B))
    return torch.where(unused[None, :], D, D_new), unused


# ----------------------------------------------------------------------------------------------
# The model: online dictionary learning with an estimator's interface
# ----------------------------------------------------------------------------------------------


class SparseCoding:
    """Sparse coding of patches (eq. 2.1) by online dictionary learning (Mairal et al. 2009, 2010).

    Parameters
    ----------
    n_atoms : int
        K, the number of atoms (columns of D); K > m makes the dictionary overcomplete.
    lam : float
        lambda, the weight of the L1 penalty (the same number as scikit-learn's ``alpha``).
    n_epochs : float
        Passes over the training patches (a fraction such as 0.5 stops half-way through).
    batch_size : int
        Patches per mini-batch.
    n_code_iter : int
        FISTA (or ISTA) steps per batch when learning; codes start from zero.
    solver : ``"fista"`` or ``"ista"``
        The code step.
    dict_step : ``"bcd"`` or ``"pgd"``
        Block-coordinate descent (eq. 2.6) or projected gradient (eq. 2.7) for the dictionary.
    forget : float
        rho of the forgetting factor beta_t = (1 - 1/t)^rho applied to A and B before batch t is
        added (in the spirit of Mairal et al. 2010): 0 keeps every batch with equal weight, larger values
        forget the codes computed with early, poor dictionaries faster.
    seed : int
        Seed of the initial atoms (random training patches) and of the batch order.
    dict_init : (m, K) array or tensor, optional
        Start from these atoms (scaled to unit norm) instead of random training patches.
    device : str or torch.device, optional
        Where to compute (default: where the data are).

    Attributes after ``fit``: ``D_`` (m, K) with unit-norm columns, ``history_`` (the mean objective of
    the batches of each epoch, with the codes computed during learning), ``n_resampled_`` (atoms
    re-seeded because no code used them).
    """

    def __init__(self, n_atoms: int = 256, *, lam: float = 0.1, n_epochs: float = 1, batch_size: int = 1024,
                 n_code_iter: int = 50, solver: str = "fista", dict_step: str = "bcd", forget: float = 2.0,
                 seed: int = 0, dict_init=None, device=None):
        self.n_atoms, self.lam, self.n_epochs, self.batch_size = n_atoms, lam, n_epochs, batch_size
        self.n_code_iter, self.solver, self.dict_step, self.forget = n_code_iter, solver, dict_step, forget
        self.seed, self.dict_init, self.device = seed, dict_init, device

    def _check_params(self, n: int) -> None:
        if self.solver not in ("fista", "ista"):
            raise ValueError(f"solver must be 'fista' or 'ista', got {self.solver!r}.")
        if self.dict_step not in ("bcd", "pgd"):
            raise ValueError(f"dict_step must be 'bcd' (block-coordinate) or 'pgd' (projected gradient), "
                             f"got {self.dict_step!r}.")
        if not 1 <= int(self.n_atoms) <= n:
            raise ValueError(f"n_atoms must be between 1 and the number of training patches ({n}), "
                             f"got {self.n_atoms}: the atoms are seeded from training patches.")
        if self.lam < 0 or self.n_epochs <= 0 or self.batch_size < 1:
            raise ValueError(f"need lam >= 0, n_epochs > 0 and batch_size >= 1, got lam={self.lam}, "
                             f"n_epochs={self.n_epochs}, batch_size={self.batch_size}.")

    def _codes(self, x, D, lam, n_iter, mask=None):
        return (fista if self.solver == "fista" else ista)(x, D, lam, n_iter, mask=mask)

    def fit(self, x) -> "SparseCoding":
        """Learn D from patches x (N, m): code a batch, update A and B (eq. 2.5), update D, repeat."""
        x = as_patches(x, device=self.device)
        n, m = x.shape
        self._check_params(n)
        K = int(self.n_atoms)
        g = torch.Generator().manual_seed(self.seed)
        # initial atoms: K distinct random training patches, scaled to unit norm (plus a little noise,
        # so that a flat patch does not give a zero atom)
        D = x[torch.randperm(n, generator=g)[:K]].T.clone()                         # (m, K)
        D = normalize_atoms(D + 1e-3 * torch.randn(m, K, generator=g).to(D))
        if self.dict_init is not None:
            D = normalize_atoms(torch.as_tensor(self.dict_init).to(D))
            if D.shape != (m, K):
                raise ValueError(f"dict_init must have shape (m, K) = {(m, K)}, atoms as columns, got {tuple(D.shape)}.")
        A = torch.zeros(K, K, dtype=x.dtype, device=x.device)
        B = torch.zeros(m, K, dtype=x.dtype, device=x.device)
        step_dictionary = dictionary_step_bcd if self.dict_step == "bcd" else dictionary_step_pgd
        n_steps = max(1, math.ceil(self.n_epochs * n / self.batch_size))
        steps_per_epoch = math.ceil(n / self.batch_size)
        self.history_, self.n_resampled_, epoch_costs = [], 0, []
        order = torch.randperm(n, generator=g)
        for t in range(1, n_steps + 1):
            start = ((t - 1) % steps_per_epoch) * self.batch_size
            if start == 0 and t > 1:
                order = torch.randperm(n, generator=g)
            x_b = x[order[start:start + self.batch_size].to(x.device)]              # (b, m)
            z_b = self._codes(x_b, D, self.lam, self.n_code_iter)                   # (b, K)
            epoch_costs.append(float(objective(x_b, D, z_b, self.lam)))
            beta = (1 - 1 / t) ** self.forget
            A = beta * A + z_b.T @ z_b / len(x_b)                                   # (K, K)
            B = beta * B + x_b.T @ z_b / len(x_b)                                   # (m, K)
            D, unused = step_dictionary(D, A, B)
            if unused.any():  # re-seed atoms no code uses with random patches of this batch
                pick = torch.randint(len(x_b), (int(unused.sum()),), generator=g).to(x.device)
                D[:, unused] = normalize_atoms(x_b[pick].T + 1e-3 * torch.randn(m, len(pick), generator=g).to(D))
                self.n_resampled_ += int(unused.sum())
            if t % steps_per_epoch == 0 or t == n_steps:
                self.history_.append(sum(epoch_costs) / len(epoch_costs))
                epoch_costs = []
        self.D_ = D
        return self

    def _check_fitted(self):
        if not hasattr(self, "D_"):
            raise RuntimeError("this SparseCoding is not fitted yet: call model.fit(patches) first.")

    def transform(self, x, *, lam: float | None = None, n_iter: int = 200, mask=None) -> torch.Tensor:
        """Sparse codes (N, K) of patches x (N, m): FISTA with ``n_iter`` steps (``lam`` defaults to the model's)."""
        self._check_fitted()
        x = as_patches(x, self.D_.shape[0], device=self.D_.device)
        return fista(x, self.D_, self.lam if lam is None else lam, n_iter, mask=mask)

    def inverse_transform(self, z) -> torch.Tensor:
        """Reconstructions D z_i for every row: (N, K) -> (N, m)."""
        self._check_fitted()
        z = torch.as_tensor(z, dtype=self.D_.dtype, device=self.D_.device)
        return z @ self.D_.T

    def score(self, x, *, n_iter: int = 200) -> float:
        """The objective E (eq. 2.1) on patches x, with codes from :meth:`transform` (lower is better)."""
        self._check_fitted()
        x = as_patches(x, self.D_.shape[0], device=self.D_.device)
        return float(objective(x, self.D_, self.transform(x, n_iter=n_iter), self.lam))

    @property
    def atoms(self) -> torch.Tensor:
        """The atoms as rows (K, m), ready for ``ul.viz.show_images`` after a reshape to (K, 1, p, p)."""
        self._check_fitted()
        return self.D_.T

    def to(self, device) -> "SparseCoding":
        self._check_fitted()
        self.D_ = self.D_.to(device)
        return self


def orientation_coherence(atoms: torch.Tensor) -> torch.Tensor:
    """How oriented each square atom is, in [0, 1]: (K, m) -> (K,), float32 on the CPU.

    From the structure tensor J = sum over pixels of g g^T, with g the gradient of each 2 x 2 block, the
    coherence is (mu_1 - mu_2) / (mu_1 + mu_2) for J's eigenvalues mu_1 >= mu_2: 1 when every gradient
    points the same way (an edge, a bar, a grating), near 0 for a pattern with no preferred direction.
    """
    K, m = atoms.shape
    p = math.isqrt(m)
    if p * p != m:
        raise ValueError(f"atoms of {m} pixels are not square patches: expected m = p * p.")
    a = atoms.detach().cpu().double().reshape(K, p, p)    # float64 on the CPU (MPS has no float64)
    # gradients at the centres of 2 x 2 blocks, so that gx and gy of white noise are uncorrelated
    dx, dy = a.diff(dim=2), a.diff(dim=1)             # (K, p, p-1), (K, p-1, p)
    gx = (dx[:, 1:, :] + dx[:, :-1, :]) / 2           # (K, p-1, p-1)
    gy = (dy[:, :, 1:] + dy[:, :, :-1]) / 2           # (K, p-1, p-1)
    jxx, jyy, jxy = (gx * gx).sum((1, 2)), (gy * gy).sum((1, 2)), (gx * gy).sum((1, 2))
    return (((jxx - jyy) ** 2 + 4 * jxy ** 2).sqrt() / (jxx + jyy).clamp_min(1e-12)).float()


# ----------------------------------------------------------------------------------------------
# Uses: denoising and inpainting whole images, patch by patch
# ----------------------------------------------------------------------------------------------


def psnr(image, reference, peak: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB: 10 log10(peak^2 / MSE) (higher is better)."""
    image, reference = torch.as_tensor(image, dtype=torch.float64), torch.as_tensor(reference, dtype=torch.float64)
    if image.shape != reference.shape:
        raise ValueError(f"images differ in shape: {tuple(image.shape)} vs {tuple(reference.shape)}.")
    mse = ((image - reference) ** 2).mean().item()
    return float("inf") if mse == 0 else 10 * math.log10(peak ** 2 / mse)


def image_to_patches(image: torch.Tensor, p: int, stride: int = 1) -> torch.Tensor:
    """All p x p patches of an (H, W) image on a grid with ``stride``, flattened: (N, p*p), row-major."""
    image = torch.as_tensor(image)
    if image.ndim != 2:
        raise ValueError(f"expected a greyscale image of shape (H, W), got {tuple(image.shape)}: "
                         "convert colour images with skimage.color.rgb2gray.")
    if min(image.shape) < p:
        raise ValueError(f"patch size {p} does not fit in an image of shape {tuple(image.shape)}.")
    cols = F.unfold(image[None, None].float(), p, stride=stride)   # (1, p*p, N)
    return cols[0].T.contiguous()                                   # (N, p*p)


def patches_to_image(patches: torch.Tensor, shape: tuple[int, int], p: int, stride: int = 1) -> torch.Tensor:
    """Put patches from :func:`image_to_patches` back, averaging where they overlap: (N, p*p) -> (H, W)."""
    H, W = shape
    total = F.fold(patches.T[None], (H, W), p, stride=stride)                      # (1, 1, H, W)
    count = F.fold(torch.ones_like(patches).T[None], (H, W), p, stride=stride)
    return (total / count.clamp_min(1))[0, 0]


def fill_by_local_mean(image, observed, size: int = 3) -> torch.Tensor:
    """A baseline for inpainting: each missing pixel becomes the mean of the observed pixels in the
    ``size`` x ``size`` window around it (widened until it holds one); observed pixels are kept."""
    image = torch.as_tensor(image, dtype=torch.float32)
    observed = torch.as_tensor(observed).to(image.dtype)
    filled = image * observed
    known = observed.clone()
    while size <= max(image.shape) * 2 + 1:
        box = torch.ones(1, 1, size, size, dtype=image.dtype)
        total = F.conv2d((image * observed)[None, None], box, padding=size // 2)[0, 0]
        count = F.conv2d(observed[None, None], box, padding=size // 2)[0, 0]
        take = (known == 0) & (count > 0)
        filled = torch.where(take, total / count.clamp_min(1), filled)
        known = torch.where(take, torch.ones_like(known), known)
        if bool((known > 0).all()):
            break
        size += 2
    return filled


def _grid_stride(H: int, W: int, p: int, stride: int) -> None:
    if (H - p) % stride or (W - p) % stride:
        raise ValueError(f"with stride {stride}, {p}x{p} patches do not cover an image of shape {(H, W)} "
                         f"exactly: crop it so that (H - {p}) and (W - {p}) are multiples of {stride}, or use stride 1.")


def denoise(image, D: torch.Tensor, lam: float, *, stride: int = 1, n_iter: int = 100,
            batch_size: int = 16384) -> torch.Tensor:
    """Denoise a greyscale (H, W) image: code each patch (its mean removed) with FISTA, rebuild it as
    D z + mean, and average the overlapping patches (Elad & Aharon 2006, with the Lasso as the coder)."""
    _check_dictionary(D)
    image = torch.as_tensor(image, dtype=D.dtype, device=D.device)
    p = math.isqrt(D.shape[0])
    _grid_stride(*image.shape, p, stride)
    y = image_to_patches(image, p, stride).to(D)           # (N, p*p)
    mean = y.mean(1, keepdim=True)
    clean = torch.cat([fista(y[s:s + batch_size] - mean[s:s + batch_size], D, lam, n_iter) @ D.T
                       for s in range(0, len(y), batch_size)]) + mean
    return patches_to_image(clean, image.shape, p, stride)


def inpaint(image, observed, D: torch.Tensor, lam: float, *, stride: int = 1, n_iter: int = 100,
            batch_size: int = 16384) -> torch.Tensor:
    """Fill the missing pixels of an (H, W) image (``observed`` is 1 where a pixel is known, 0 where it is
    missing): code each patch from its observed pixels only (FISTA with a mask), predict every pixel as
    D z + mean, average the overlapping predictions, and keep the observed pixels as they are."""
    _check_dictionary(D)
    image = torch.as_tensor(image, dtype=D.dtype, device=D.device)
    observed = torch.as_tensor(observed, device=D.device).to(D.dtype)
    if observed.shape != image.shape:
        raise ValueError(f"observed must have the image's shape {tuple(image.shape)}, got {tuple(observed.shape)}.")
    p = math.isqrt(D.shape[0])
    _grid_stride(*image.shape, p, stride)
    y = image_to_patches(image * observed, p, stride).to(D)   # (N, p*p), missing pixels are 0
    mask = image_to_patches(observed, p, stride).to(D)        # (N, p*p)
    mean = (y * mask).sum(1, keepdim=True) / mask.sum(1, keepdim=True).clamp_min(1)  # mean of the known pixels
    pieces = []
    for s in range(0, len(y), batch_size):
        sl = slice(s, s + batch_size)
        z = fista((y[sl] - mean[sl]) * mask[sl], D, lam, n_iter, mask=mask[sl])
        pieces.append(z @ D.T + mean[sl])
    filled = patches_to_image(torch.cat(pieces), image.shape, p, stride)
    return torch.where(observed > 0, image, filled)
