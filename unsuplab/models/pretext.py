"""Chapter 7, second lab: four more ways to invent a training signal from images alone.

They share :mod:`unsuplab.models.ssl`'s trunk :math:`f_\\theta`, data and evaluation, so their
frozen features can be compared with rotation prediction, SimCLR and the random network.

**Pretext tasks**

* Jigsaw puzzles (Noroozi & Favaro 2016). An image is cut into a 3 x 3 grid of tiles, the tiles are
  shuffled by one permutation :math:`\\pi_j` of a fixed set :math:`\\{\\pi_1, \\dots, \\pi_P\\}`, each
  tile goes through the same trunk, and a classifier :math:`g` on the concatenated features names j:

  .. math:: L_{jig} = -\\frac{1}{B} \\sum_{i} \\log p_{j_i}\\big(g([f_\\theta(t_{\\pi_{j_i}(1)}), \\dots,
            f_\\theta(t_{\\pi_{j_i}(9)})])\\big)   (7.9)

  The set is chosen so that its permutations are far apart in Hamming distance
  (:func:`hamming_permutations`, Noroozi & Favaro's algorithm 1): two permutations that differ in one
  swap would be a task about one tile, not about the whole object.

* Context encoders (Pathak, Krähenbühl, Donahue, Darrell & Efros 2016). The centre of the image is
  removed, the trunk encodes what is left, a decoder paints the centre :math:`\\hat x_c = G(x \\odot (1 - M))`,
  and a discriminator D judges the painted centre against real ones:

  .. math:: L = \\lambda_{rec} \\lVert M \\odot (x - G(x \\odot (1 - M))) \\rVert_2^2
            + \\lambda_{adv} \\big(-\\log D(G(x \\odot (1 - M)))\\big)   (7.10)

  with :math:`\\lambda_{rec} = 0.999`, :math:`\\lambda_{adv} = 0.001` as in the paper; D is trained
  by the usual GAN loss (chapter 6) on real and painted centres.

**Sample specificity, before contrastive learning**

* Exemplar-CNN (Dosovitskiy, Springenberg, Riedmiller & Brox 2014). N images become N classes; a
  classifier with an N-way output learns to give every random transformation :math:`T` of image i the
  label i:

  .. math:: L_{ex} = -\\frac{1}{B} \\sum_{b} \\log p_{i_b}\\big(W f_\\theta(T_b(x_{i_b}))\\big)   (7.11)

* Noise as targets, NAT (Bojanowski & Joulin 2017). N fixed targets :math:`c_1, \\dots, c_N` drawn
  uniformly on the unit sphere, one per image, and an assignment P (a permutation) of images to
  targets; the features :math:`z = h(f_\\theta(x))` on the sphere are pulled towards their targets,
  and P is re-optimised on every batch by the Hungarian algorithm:

  .. math:: \\min_\\theta \\min_{P} \\frac{1}{B} \\sum_{b} \\lVert z_b - c_{P(b)} \\rVert_2^2   (7.12)

  Because every target is used exactly once, the features cannot collapse to one point: they must
  spread over the sphere, as the images' targets do.
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from torch import nn

from ..train import History, TensorBatches, fit, warmup_schedule
from .ssl import Backbone, Classifier, _check_images, _crop, recolour_patches, simclr_augment

__all__ = ["all_permutations", "choose_far_apart", "hamming_permutations", "mean_hamming_distance", "jigsaw_tiles", "shuffle_tiles", "jigsaw_batch", "JigsawNet",
           "mask_centre", "ChannelwiseLinear", "ContextEncoder", "CentreDiscriminator", "reconstruction_loss",
           "train_context_encoder", "ExemplarCNN", "exemplar_loss", "unit_sphere_targets", "NoiseAsTargets",
           "nat_assign", "NatState", "nat_loss"]


# ----------------------------------------------------------------------------------------------
# Jigsaw puzzles (eq. 7.9)
# ----------------------------------------------------------------------------------------------

def all_permutations(n_tiles: int) -> torch.Tensor:
    """Every permutation of ``0 .. n_tiles - 1`` in lexicographic order, (n_tiles!, n_tiles) int64."""
    if not 2 <= n_tiles <= 9:
        raise ValueError(f"n_tiles must be 2 to 9 (9! = 362,880 candidates to choose from), got {n_tiles}.")
    return torch.tensor(list(itertools.permutations(range(n_tiles))), dtype=torch.long)


def choose_far_apart(candidates: torch.Tensor, n_permutations: int, first: int) -> torch.Tensor:
    """Noroozi & Favaro's algorithm 1 on the rows of ``candidates`` (M, n): start from row ``first``;
    then, again and again, add the row whose summed Hamming distance (the number of positions where
    two permutations differ) to the rows already chosen is largest (the first such row on a tie), never
    one chosen before. Returns the chosen rows in the order chosen, (n_permutations, n)."""
    if not 1 <= n_permutations <= len(candidates):
        raise ValueError(f"n_permutations must be 1 to {len(candidates)} (the number of candidates), "
                         f"got {n_permutations}.")
    chosen = [first]
    summed = (candidates != candidates[first]).sum(1)  # (M,): the summed distance to the set so far
    summed[first] = -1
    for _ in range(n_permutations - 1):
        nxt = int(summed.argmax())
        chosen.append(nxt)
        summed += (candidates != candidates[nxt]).sum(1)
        summed[chosen] = -1  # never chosen twice
    return candidates[chosen]


def hamming_permutations(n_tiles: int = 9, n_permutations: int = 64, generator: torch.Generator | None = None
                         ) -> torch.Tensor:
    """The permutation set of eq. (7.9): :func:`choose_far_apart` among all ``n_tiles``! permutations,
    from one drawn at random. (n_permutations, n_tiles) int64."""
    candidates = all_permutations(n_tiles)
    first = int(torch.randint(len(candidates), (1,), generator=generator))
    return choose_far_apart(candidates, n_permutations, first)


def mean_hamming_distance(permutations: torch.Tensor) -> tuple[float, int]:
    """The average and the smallest Hamming distance between two different permutations of a set (P, n)."""
    d = (permutations[:, None, :] != permutations[None, :, :]).sum(2).float()  # (P, P)
    off = ~torch.eye(len(permutations), dtype=torch.bool)
    return float(d[off].mean()), int(d[off].min())


def jigsaw_tiles(x: torch.Tensor, tile: int = 9, gap: int = 1, jitter: int = 1, grid: int = 3) -> torch.Tensor:
    """The grid x grid tiles of each image, in reading order, before shuffling: (B, C, H, W) ->
    (B, grid * grid, C, tile, tile). Cells are ``tile + gap`` pixels apart, the grid sits at a random
    place in the image, and each tile moves by up to ``jitter`` pixels, so that no edge runs straight
    from one tile into the next (Noroozi & Favaro cut 64-pixel tiles from 85-pixel cells)."""
    _check_images(x)
    b, c, h, w = x.shape
    span = grid * tile + (grid - 1) * gap + 2 * jitter
    if span > min(h, w):
        raise ValueError(f"a {grid} x {grid} grid of {tile}-pixel tiles with gap {gap} and jitter {jitter} needs "
                         f"{span} pixels, but the images are {h} x {w}: use smaller tiles, gap or jitter.")
    device, cell = x.device, tile + gap
    top = torch.randint(0, h - span + 1, (b,), device=device) + jitter
    left = torch.randint(0, w - span + 1, (b,), device=device) + jitter
    tiles = []
    for row in range(grid):
        for col in range(grid):
            dy = torch.randint(-jitter, jitter + 1, (b,), device=device)
            dx = torch.randint(-jitter, jitter + 1, (b,), device=device)
            tiles.append(_crop(x, top + row * cell + dy, left + col * cell + dx, tile))  # (B, C, tile, tile)
    return torch.stack(tiles, dim=1)


def shuffle_tiles(tiles: torch.Tensor, permutations: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
    """Eq. (7.9)'s input: image b's tiles put in the order of permutation ``permutations[j[b]]``, so that
    position p of the puzzle holds tile ``permutations[j[b], p]``. (B, T, C, t, t) -> same shape."""
    order = permutations[j]  # (B, T): which tile goes to each position
    return tiles[torch.arange(len(tiles), device=tiles.device)[:, None], order]


class JigsawNet(nn.Module):
    """Noroozi & Favaro's context-free network: the same trunk on every tile (nine Siamese branches),
    the tile features concatenated in puzzle order, and a two-layer classifier of the permutation."""

    def __init__(self, backbone: Backbone, n_tiles: int, n_permutations: int, hidden: int = 512):
        super().__init__()
        self.backbone = backbone
        d = backbone.feature_dim
        self.head = nn.Sequential(nn.Linear(n_tiles * d, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
                                  nn.Linear(hidden, n_permutations))

    def forward(self, puzzles: torch.Tensor) -> torch.Tensor:
        b, t = puzzles.shape[:2]
        f = self.backbone(puzzles.flatten(0, 1))  # one pass over all tiles: (B * T, C, t, t) -> (B * T, D)
        return self.head(f.view(b, -1))  # (B, T * D) -> (B, P) logits

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)


def jigsaw_batch(x: torch.Tensor, permutations: torch.Tensor, tile: int = 9, gap: int = 1, jitter: int = 1,
                 grid: int = 3, recolour: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Puzzles and labels of eq. (7.9) for a batch of images: tiles cut (:func:`jigsaw_tiles`), each
    recoloured on its own (:func:`~unsuplab.models.ssl.recolour_patches`: Noroozi & Favaro normalised
    every tile on its own so that colour and brightness could not tell neighbours), and shuffled by a
    permutation drawn at random from the set. Returns (B, T, C, t, t) and the permutation indices (B,)."""
    tiles = jigsaw_tiles(x, tile, gap, jitter, grid)
    if recolour:
        tiles = recolour_patches(tiles.flatten(0, 1)).view_as(tiles)
    j = torch.randint(len(permutations), (len(x),), device=x.device)
    return shuffle_tiles(tiles, permutations.to(x.device), j), j


# ----------------------------------------------------------------------------------------------
# Context encoders (eq. 7.10)
# ----------------------------------------------------------------------------------------------

def mask_centre(x: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """M of eq. (7.10): the central ``size`` x ``size`` square of every image, filled with the CIFAR
    mean colour (zero after the trunk's normalisation). Returns the masked images (B, C, H, W) and the
    true centres (B, C, size, size)."""
    _check_images(x)
    h, w = x.shape[2:]
    if not 0 < size < min(h, w):
        raise ValueError(f"the masked centre must be smaller than the images ({h} x {w}), got size {size}.")
    top, left = (h - size) // 2, (w - size) // 2
    centre = x[:, :, top:top + size, left:left + size]
    mean = torch.tensor((0.4914, 0.4822, 0.4465)[:x.shape[1]], device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
    masked = x.clone()
    masked[:, :, top:top + size, left:left + size] = mean
    return masked, centre.clone()


class ChannelwiseLinear(nn.Module):
    """Pathak et al.'s channel-wise fully connected layer: every channel's h x w map is mapped to a new
    h x w map by its own (hw, hw) matrix, so information crosses the whole image without the C^2 (hw)^2
    weights of a full layer. (B, C, h, w) -> (B, C, h, w)."""

    def __init__(self, channels: int, side: int):
        super().__init__()
        hw = side * side
        self.weight = nn.Parameter(torch.randn(channels, hw, hw) / math.sqrt(hw))
        self.bias = nn.Parameter(torch.zeros(channels, hw))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        b, c, s, _ = h.shape
        out = torch.einsum("bci,cij->bcj", h.flatten(2), self.weight) + self.bias  # (B, C, hw)
        return out.view(b, c, s, s)


class ContextEncoder(nn.Module):
    """G of eq. (7.10): the trunk's feature map of the masked image (encoder), a channel-wise fully
    connected layer, and transposed convolutions that paint the ``centre`` x ``centre`` centre in [0, 1].
    For CIFAR the trunks' maps are 4 x 4: 4 -> 8 -> 16 pixels paints a 16-pixel centre."""

    def __init__(self, backbone: Backbone, centre: int = 16, map_side: int = 4):
        super().__init__()
        if centre % map_side or (centre // map_side) & (centre // map_side - 1):
            raise ValueError(f"the centre ({centre} pixels) must be the feature map's side ({map_side}) times a "
                             "power of two.")
        self.backbone = backbone
        d = backbone.feature_dim
        self.bottleneck = ChannelwiseLinear(d, map_side)
        layers, c, side = [], d, map_side
        while side < centre:  # each step doubles the side and quarters the channels (a light decoder for a CPU)
            c_out = max(c // 4, 8)
            layers += [nn.ConvTranspose2d(c, c_out, 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(c_out),
                       nn.ReLU(inplace=True)]
            c, side = c_out, side * 2
        self.decoder = nn.Sequential(*layers, nn.Conv2d(c, 3, 3, padding=1), nn.Sigmoid())

    def forward(self, masked: torch.Tensor) -> torch.Tensor:
        h = self.backbone.feature_map(masked)  # (B, 3, H, W) -> (B, D, 4, 4)
        return self.decoder(self.bottleneck(h))  # (B, D, 4, 4) -> (B, 3, centre, centre)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)


class CentreDiscriminator(nn.Module):
    """D of eq. (7.10): a small DCGAN-style critic of centre patches, (B, 3, s, s) -> (B,) logits."""

    def __init__(self, width: int = 32):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True),             # s -> s/2
            nn.Conv2d(width, 2 * width, 4, stride=2, padding=1), nn.BatchNorm2d(2 * width),
            nn.LeakyReLU(0.2, inplace=True),                                                          # s/2 -> s/4
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * width, 1))

    def forward(self, patch: torch.Tensor) -> torch.Tensor:
        return self.net(patch).squeeze(1)


def reconstruction_loss(painted: torch.Tensor, centre: torch.Tensor) -> torch.Tensor:
    """The first term of eq. (7.10): the squared error of the painted centre, summed over its pixels
    and channels and averaged over the batch."""
    return (painted - centre).pow(2).flatten(1).sum(1).mean()


def train_context_encoder(model: ContextEncoder, discriminator: CentreDiscriminator | None, x: torch.Tensor, *,
                          steps: int, batch_size: int, lr: float, centre: int = 16, lambda_adv: float = 0.001,
                          augment=None, seed: int = 0, desc: str = "context encoder", progress_bar: bool = True
                          ) -> History:
    """Eq. (7.10) for ``steps`` steps of Adam on images ``x`` on the device, with a warm-up and cosine
    decay of the rate. Every step first updates D on real and painted centres (``dis_step``), then
    G = encoder + decoder on ``lambda_rec * reconstruction + lambda_adv * adversarial`` with
    ``lambda_rec = 1 - lambda_adv``. ``discriminator=None`` (or ``lambda_adv=0``) trains the reconstruction
    alone. ``augment`` (default: random crops and flips) is applied before the centre is masked.
    The history's steps hold ``loss``, ``rec`` (the squared error per image) and ``adv``."""
    from .ssl import random_crop_flip

    augment = augment or random_crop_flip
    adversarial = discriminator is not None and lambda_adv > 0
    g_params = list(model.parameters())
    optimizer = torch.optim.Adam(g_params, lr=lr, betas=(0.5, 0.999))
    d_optimizer = torch.optim.Adam(discriminator.parameters(), lr=lr, betas=(0.5, 0.999)) if adversarial else None

    def dis_step(painted: torch.Tensor, real: torch.Tensor) -> None:  # D: real centres -> 1, painted -> 0
        logits_real, logits_fake = discriminator(real), discriminator(painted.detach())
        d_loss = (F.binary_cross_entropy_with_logits(logits_real, torch.ones_like(logits_real))
                  + F.binary_cross_entropy_with_logits(logits_fake, torch.zeros_like(logits_fake)))
        d_optimizer.zero_grad(set_to_none=True)
        d_loss.backward()
        d_optimizer.step()

    def loss_fn(net: ContextEncoder, index: torch.Tensor):
        masked, real = mask_centre(augment(x[index]), centre)
        painted = net(masked)
        rec = reconstruction_loss(painted, real)
        if not adversarial:
            return rec, {"rec": rec.item()}
        dis_step(painted, real)
        logits = discriminator(painted)
        adv = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))  # -log D(G(.)), non-saturating
        return (1 - lambda_adv) * rec + lambda_adv * adv, {"rec": rec.item(), "adv": adv.item()}

    if adversarial:
        discriminator.to(x.device).train()
    batches = TensorBatches(torch.arange(len(x), device=x.device), batch_size=batch_size, drop_last=True)
    scheduler = warmup_schedule(optimizer, steps // 20, steps, decay="cosine")
    return fit(model, loss_fn, batches, epochs=math.ceil(steps / len(batches)), max_steps=steps, optimizer=optimizer,
               scheduler=scheduler, schedule_per="step", seed=seed, desc=desc, progress_bar=progress_bar)


# ----------------------------------------------------------------------------------------------
# Exemplar-CNN (eq. 7.11)
# ----------------------------------------------------------------------------------------------

class ExemplarCNN(Classifier):
    """The trunk and an N-way linear classifier, one class per exemplar image (eq. 7.11)."""


def exemplar_loss(model: nn.Module, exemplars: torch.Tensor, index: torch.Tensor, augment=None) -> torch.Tensor:
    """Eq. (7.11) on a batch of exemplar numbers ``index`` (B,): each exemplar image, randomly
    transformed (default :func:`~unsuplab.models.ssl.simclr_augment`: crops, flips, colour, grey),
    must be classified as itself."""
    augment = augment or simclr_augment
    return F.cross_entropy(model(augment(exemplars[index])), index)


# ----------------------------------------------------------------------------------------------
# Noise as targets (eq. 7.12)
# ----------------------------------------------------------------------------------------------

def unit_sphere_targets(n: int, dim: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """The N fixed targets of eq. (7.12): Gaussian vectors scaled to unit length, which are uniform on
    the sphere. (n, dim)."""
    return F.normalize(torch.randn(n, dim, generator=generator), dim=1)


class NoiseAsTargets(nn.Module):
    """The trunk and a linear map h to the targets' space, on the unit sphere: z = h(f(x)) / ||h(f(x))||.
    (The trunk's last ReLU makes its features non-negative; the targets are not, hence h.)"""

    def __init__(self, backbone: Backbone, dim: int | None = None):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(backbone.feature_dim, dim or backbone.feature_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.head(self.backbone(x)), dim=1)  # (B, 3, H, W) -> (B, d) on the sphere

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)


@torch.no_grad()
def nat_assign(z: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The inner minimum of eq. (7.12) on one batch: the permutation ``perm`` of the batch's targets
    (B, d) that minimises sum_b ||z_b - targets[perm[b]]||^2, i.e. maximises sum_b z_b . targets[perm[b]]
    for unit vectors: the Hungarian algorithm (scipy's ``linear_sum_assignment``). Returns (B,) int64."""
    from scipy.optimize import linear_sum_assignment

    score = (z.float() @ targets.float().T).cpu().numpy()  # (B, B)
    rows, cols = linear_sum_assignment(score, maximize=True)
    return torch.as_tensor(cols, device=z.device)[torch.as_tensor(rows).argsort()]


class NatState:
    """What NAT keeps between batches: the fixed targets (N, d) and the assignment ``assigned`` (N,):
    image n's target is ``targets[assigned[n]]``, a permutation of 0 .. N-1 that starts at random."""

    def __init__(self, n: int, dim: int, device, generator: torch.Generator | None = None):
        self.targets = unit_sphere_targets(n, dim, generator).to(device)
        self.assigned = torch.randperm(n, generator=generator).to(device)


def nat_loss(model: NoiseAsTargets, x: torch.Tensor, index: torch.Tensor, state: NatState, augment=None,
             assign=nat_assign) -> tuple[torch.Tensor, dict[str, float]]:
    """Eq. (7.12) on the images ``index`` (B,): re-assign the batch's own targets among its images by
    ``assign`` (the Hungarian algorithm), store the new assignment in ``state``, then the squared
    distance of each feature to its target. Also reports ``changed``, the share of images whose
    target changed (it falls as the assignment settles)."""
    augment = augment or simclr_augment
    z = model(augment(x[index]))  # (B, d) on the sphere
    mine = state.assigned[index]  # (B,) the batch's targets
    perm = assign(z.detach(), state.targets[mine])
    new = mine[perm]
    state.assigned[index] = new
    loss = (z - state.targets[new]).pow(2).sum(1).mean()
    return loss, {"changed": (new != mine).float().mean().item()}
