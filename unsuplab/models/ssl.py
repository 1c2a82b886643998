"""Chapter 7: representations learned from images without labels.

Three families, each a way to invent a training signal from the images themselves, all sharing one
convolutional trunk :math:`f_\\theta` (a small ConvNet on a CPU, a CIFAR ResNet-18 on a GPU) and one
evaluation (frozen features, a linear probe and a weighted k-NN):

**Pretext tasks** (self-supervised). A label that comes free with the data.

* Rotation prediction, RotNet (Gidaris, Singh & Komodakis 2018). Each image is rotated by
  :math:`r \\cdot 90°`, :math:`r \\in \\{0, 1, 2, 3\\}`, and a classifier :math:`g` on the trunk predicts r:

  .. math:: L_{rot} = -\\frac{1}{4B} \\sum_{i=1}^{B} \\sum_{r=0}^{3} \\log p_r\\big(g(f_\\theta(\\mathrm{rot}_r(x_i)))\\big)   (7.1)

* Relative patch position (Doersch, Gupta & Efros 2015). A centre patch :math:`p_0` and one of its 8
  neighbours :math:`p_k` in a 3 x 3 grid go through the same trunk (a Siamese network); a classifier on
  the concatenated features predicts k:

  .. math:: L_{pos} = -\\frac{1}{B} \\sum_{i} \\log p_{k_i}\\big(g([f_\\theta(p_{0,i}), f_\\theta(p_{k_i,i})])\\big)   (7.2)

  A gap between the patches and a random jitter of each patch remove the low-level shortcut of
  continuing edges and colours across the border (:func:`boundary_guess` takes that shortcut). On
  small images the same question can be asked of a 2 x 2 grid of larger patches
  (:func:`patch_pairs` with ``grid=2``): the first patch then sits in whichever cell keeps its
  neighbour inside the grid.

* Colorization (Zhang, Isola & Efros 2016). From the lightness L of the CIE Lab image, predict for
  every location a distribution :math:`\\hat Z_{hw}` over Q quantised colours (a, b); the loss is a
  cross-entropy re-weighted towards rare colours:

  .. math:: L_{col} = -\\frac{1}{HW} \\sum_{h,w} v(Z_{hw}) \\log \\hat Z_{hw, Z_{hw}}, \\qquad
            v \\propto \\big((1-\\lambda) \\tilde p + \\lambda / Q\\big)^{-1}, \\ \\mathbb{E}_{\\tilde p}[v] = 1   (7.3)

**Sample specificity**. Every image is its own class.

* Instance discrimination, NPID (Wu, Xiong, Yu & Lin 2018). Features :math:`v = f(x)` on the unit
  sphere, a memory bank :math:`V = (v_1, \\dots, v_N)` of every image's last feature, and a
  non-parametric softmax over all N images:

  .. math:: P(i \\mid v) = \\frac{\\exp(v_i^\\top v / \\tau)}{\\sum_{j=1}^{N} \\exp(v_j^\\top v / \\tau)}, \\qquad
            L_{inst} = -\\frac{1}{B}\\sum_{b} \\log P(i_b \\mid v_{(b)})   (7.4)

  After each step, :math:`v_i \\leftarrow \\mathrm{normalize}(m\\, v_i + (1-m)\\, f(x_i))`  (7.5).
  Wu et al. approximate the sum over N (1.28 M ImageNet images) with noise-contrastive estimation;
  for CIFAR's 50,000 images the exact softmax is cheap, so it is used here.

* Contrastive learning, SimCLR (Chen, Kornblith, Norouzi & Hinton 2020). Two random augmentations of
  each of N images give 2N views; a projection head turns their features into :math:`z`, and with
  :math:`s_{ik} = z_i^\\top z_k / (\\lVert z_i \\rVert \\lVert z_k \\rVert)` the NT-Xent loss is

  .. math:: \\ell_{i,j} = -\\log \\frac{\\exp(s_{ij}/\\tau)}{\\sum_{k=1}^{2N} \\mathbb{1}_{[k \\ne i]} \\exp(s_{ik}/\\tau)}, \\qquad
            L_{NT\\text{-}Xent} = \\frac{1}{2N} \\sum_{k=1}^{N} \\big[\\ell_{2k-1,2k} + \\ell_{2k,2k-1}\\big]   (7.6)

  (here the two views of image k are rows k and N + k). Under DistributedDataParallel the negatives
  come from every process (:func:`gather_with_grad`), so the loss is that of the global batch.

**Clustering**. DeepCluster (Caron, Bojanowski, Joulin & Douze 2018) alternates K-means on the
features, :math:`\\min_{C} \\sum_n \\min_{y_n} \\lVert f_\\theta(x_n) - C y_n \\rVert^2` (7.7), and training the
network to predict the cluster ids as labels, :math:`\\min_{\\theta, W} \\sum_n \\mathrm{CE}(W f_\\theta(x_n), y_n)`
(7.8). Two degenerate solutions must be prevented: empty clusters (:func:`reassign_empty_clusters`)
and one cluster that swallows the data (class-balanced sampling, :func:`balanced_weights`).

**More pretext tasks** (lab 7b)

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

**Sample specificity before contrastive learning** (lab 7b)

* Exemplar-CNN (Dosovitskiy, Springenberg, Riedmiller & Brox 2014). N images become N classes; a
  classifier with an N-way output learns to give every random transformation :math:`T` of image i the
  label i:

  .. math:: L_{ex} = -\\frac{1}{B} \\sum_{b} \\log p_{i_b}\\big(W f_\\theta(T_b(x_{i_b}))\\big)   (7.11)

* Noise as targets, NAT (Bojanowski & Joulin 2017). N fixed targets :math:`c_1, \\dots, c_N` drawn
  uniformly on the unit sphere, one per image, and an assignment P (a permutation) of images to
  targets; the features :math:`z = h(f_\\theta(x))` on the sphere are pulled towards their targets,
  and P is re-optimised batch by batch by the Hungarian algorithm (in every k-th pass over the
  images, :class:`NatState`):

  .. math:: \\min_\\theta \\min_{P} \\frac{1}{B} \\sum_{b} \\lVert z_b - c_{P(b)} \\rVert_2^2   (7.12)

  Because every target is used exactly once, the features cannot collapse to one point: they must
  spread over the sphere, as the images' targets do.

Everything here is batched tensor code that runs on the device of its inputs; the augmentations too
(:func:`simclr_augment`), so the data never leave the GPU during training.
"""

from __future__ import annotations

import itertools
import math
import time
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from .. import metrics
from ..checks import CheckFailed, _not_written
from ..train import (History, TensorBatches, autocast, backward_and_step, check_finite, eval_mode, fit,
                     grad_scaler, load_checkpoint, progress, save_checkpoint)

__all__ = ["CIFAR_MEAN", "CIFAR_STD", "Backbone", "convnet", "resnet18_cifar", "make_backbone", "to_channels_last",
           "Classifier", "extract_features", "evaluate", "random_resized_crop", "random_crop_flip",
           "grayscale", "color_jitter", "random_grayscale", "simclr_augment", "rotate_batch", "NEIGHBOUR_OFFSETS",
           "patch_pairs", "recolour_patches", "RelativePositionNet", "SIDE_NEIGHBOURS", "boundary_guess", "rgb_to_lab", "lab_to_rgb",
           "AB_RANGE", "ab_bin_centres", "quantize_ab", "rebalancing_weights", "Colorizer", "colorization_loss",
           "InstanceNet", "MemoryBank", "npid_loss", "ProjectionHead", "SimCLR", "gather_with_grad", "nt_xent",
           "train_simclr", "pca_whiten", "deepcluster_codes", "reassign_empty_clusters", "reassignment_problem",
           "check_reassignment", "kmeans_pseudo_labels", "balanced_weights", "train_deepcluster", "all_permutations", "choose_far_apart",
           "hamming_permutations", "mean_hamming_distance", "jigsaw_tiles", "shuffle_tiles", "jigsaw_batch", "JigsawNet",
           "mask_centre", "ChannelwiseLinear", "ContextEncoder", "CentreDiscriminator", "reconstruction_loss",
           "dis_step", "context_encoder_loss", "train_context_encoder", "ExemplarCNN", "exemplar_loss", "unit_sphere_targets", "NoiseAsTargets",
           "nat_assign", "NatState", "nat_loss"]

# CIFAR-10's channel means and standard deviations (of the official training set), used to normalise.
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


def _check_images(x: torch.Tensor, name: str = "x", square: bool = False) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] not in (1, 3):
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"expected {name} as a batch of images (B, C, H, W) with C = 1 or 3, got {shape}: "
                         "use x[None] for a single image.")
    if not x.is_floating_point():
        raise ValueError(f"expected float images in [0, 1], got dtype {x.dtype}: divide by 255 first.")
    if square and x.shape[2] != x.shape[3]:
        raise ValueError(f"expected square images (H = W) so that rotations keep the shape, got "
                         f"{x.shape[2]} x {x.shape[3]}: crop them to a square first.")


# ----------------------------------------------------------------------------------------------
# The trunk f_theta: a small ConvNet for a CPU, a CIFAR ResNet-18 for a GPU
# ----------------------------------------------------------------------------------------------

class Backbone(nn.Module):
    """:math:`f_\\theta`: images in [0, 1] (B, 3, H, W) -> features (B, D).

    Normalises with the CIFAR-10 channel statistics, runs ``body`` (convolutions only, so any image
    size works), and averages over space. ``feature_map`` gives the map before that average.
    """

    def __init__(self, body: nn.Module, feature_dim: int):
        super().__init__()
        self.register_buffer("mean", torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(CIFAR_STD).view(1, 3, 1, 1))
        self.body = body
        self.feature_dim = feature_dim

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.body((x - self.mean) / self.std)  # (B, 3, H, W) -> (B, D, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.feature_map(x).mean(dim=(2, 3))  # (B, D, h, w) -> (B, D)


def _conv_bn_relu(c_in: int, c_out: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True)]


def convnet(width: int = 32) -> Backbone:
    """A 4-layer ConvNet small enough to train on a laptop CPU: widths w, 2w, 4w, 8w; D = 8w.

    32 x 32 -> 16 (strided stem) -> 8 -> 4 (max-pools) -> 4: the last map is 4 x 4 for CIFAR images.
    """
    body = nn.Sequential(
        *_conv_bn_relu(3, width, stride=2),                               # (B, w, 16, 16)
        *_conv_bn_relu(width, 2 * width), nn.MaxPool2d(2),                # (B, 2w, 8, 8)
        *_conv_bn_relu(2 * width, 4 * width), nn.MaxPool2d(2),            # (B, 4w, 4, 4)
        *_conv_bn_relu(4 * width, 8 * width),                             # (B, 8w, 4, 4)
    )
    return Backbone(body, 8 * width)


def resnet18_cifar() -> Backbone:
    """ResNet-18 (He et al. 2016) in its CIFAR form: a 3 x 3 stride-1 stem and no max-pool, so a
    32 x 32 image keeps a 4 x 4 map after the last stage; D = 512."""
    import torchvision

    net = torchvision.models.resnet18(weights=None)
    net.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
    body = nn.Sequential(net.conv1, net.bn1, net.relu, net.layer1, net.layer2, net.layer3, net.layer4)
    return Backbone(body, 512)


def make_backbone(arch: str = "convnet", width: int = 32) -> Backbone:
    """``"convnet"`` (:func:`convnet` with ``width``) or ``"resnet18"`` (:func:`resnet18_cifar`)."""
    if arch == "convnet":
        return convnet(width)
    if arch == "resnet18":
        return resnet18_cifar()
    raise ValueError(f"arch must be 'convnet' (small, for a CPU) or 'resnet18' (for a GPU), got {arch!r}.")


def to_channels_last(model: nn.Module, device: torch.device | str) -> nn.Module:
    """Move a model to ``device`` in channels-last memory (N, H, W, C), which GPU tensor cores and the
    CPU's oneDNN convolutions both run faster (on Apple's MPS the default layout is kept)."""
    device = torch.device(device)
    if device.type in ("cuda", "cpu"):
        return model.to(device, memory_format=torch.channels_last)
    return model.to(device)


class Classifier(nn.Module):
    """Trunk + one linear layer: RotNet's classifier of the 4 rotations (eq. 7.1), DeepCluster's of the
    k pseudo-classes (eq. 7.8, re-initialised every round by ``reset_head`` because the cluster ids of
    one round mean nothing in the next), and the supervised baseline's of the 10 classes."""

    def __init__(self, backbone: Backbone, n_classes: int):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(backbone.feature_dim, n_classes)

    def reset_head(self) -> None:
        self.head.reset_parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))  # (B, 3, H, W) -> (B, n_classes) logits

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)


# ----------------------------------------------------------------------------------------------
# The evaluation on frozen features
# ----------------------------------------------------------------------------------------------

@torch.no_grad()
def extract_features(model: nn.Module, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """The frozen representation of images x (N, 3, H, W) in [0, 1]: ``model.features`` (or the
    model itself for a bare trunk) in eval mode, batched, as float32 (N, D) on the model's device."""
    device = next(model.parameters()).device
    represent = getattr(model, "features", model)
    out = []
    with eval_mode(model):
        for start in range(0, len(x), batch_size):
            batch = x[start:start + batch_size].to(device)
            if device.type == "cuda":
                batch = batch.contiguous(memory_format=torch.channels_last)
            with autocast(device):
                out.append(represent(batch).float())
    return torch.cat(out)


def evaluate(train_features: torch.Tensor, train_labels: torch.Tensor, test_features: torch.Tensor,
             test_labels: torch.Tensor, *, k: int = 200, probe_iters: int = 200) -> dict[str, float]:
    """The chapter's protocol on frozen features, the same for every method: the book's
    :func:`unsuplab.metrics.evaluate_features` with the settings of Wu et al. (2018): ``knn``, a k-NN
    vote weighted by exp(cos / 0.07) over the k = 200 nearest training images (k is capped at the number
    of training images), and ``linear``, the linear probe (L-BFGS for at most ``probe_iters``
    iterations; 0 skips it). Both in [0, 1]."""
    return metrics.evaluate_features(train_features, train_labels, test_features, test_labels,
                                     k=min(k, len(train_features)), metric="cosine", weighted=True,
                                     probe=probe_iters > 0, probe_iters=probe_iters)


# ----------------------------------------------------------------------------------------------
# Augmentations as batched tensor operations (one kernel per batch, on the data's device)
# ----------------------------------------------------------------------------------------------

def _uniform(n: int, low: float, high: float, device) -> torch.Tensor:
    return torch.rand(n, device=device) * (high - low) + low


def random_resized_crop(x: torch.Tensor, size: int | None = None, scale: tuple[float, float] = (0.08, 1.0),
                        ratio: tuple[float, float] = (3 / 4, 4 / 3), flip: bool = True) -> torch.Tensor:
    """Inception-style random crops (and horizontal flips), resized back to ``size``: (B, C, H, W) ->
    (B, C, size, size). Each image gets its own crop of area fraction in ``scale`` and aspect ratio in
    ``ratio`` (log-uniform), all drawn at once and applied with one ``grid_sample``."""
    _check_images(x)
    b, c, h, w = x.shape
    size = size or h
    area = _uniform(b, *scale, x.device)
    log_r = _uniform(b, math.log(ratio[0]), math.log(ratio[1]), x.device)
    crop_w = (area * log_r.exp()).sqrt().clamp(max=1.0)  # width and height as fractions of the side
    crop_h = (area / log_r.exp()).sqrt().clamp(max=1.0)
    centre_x = (2 * torch.rand(b, device=x.device) - 1) * (1 - crop_w)  # in [-1, 1] coordinates
    centre_y = (2 * torch.rand(b, device=x.device) - 1) * (1 - crop_h)
    sign = torch.where(torch.rand(b, device=x.device) < 0.5, -1.0, 1.0) if flip else torch.ones(b, device=x.device)
    theta = torch.zeros(b, 2, 3, device=x.device, dtype=x.dtype)  # output (u, v) -> input (x, y)
    theta[:, 0, 0], theta[:, 0, 2] = crop_w * sign, centre_x
    theta[:, 1, 1], theta[:, 1, 2] = crop_h, centre_y
    grid = F.affine_grid(theta, [b, c, size, size], align_corners=False)  # (B, size, size, 2)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def random_crop_flip(x: torch.Tensor, padding: int = 4) -> torch.Tensor:
    """The standard CIFAR augmentation: shift by up to ``padding`` pixels (zeros enter at the border)
    and flip horizontally with probability 1/2. Exact integer shifts, batched: (B, C, H, W) -> same."""
    _check_images(x)
    b, c, h, w = x.shape
    shift = torch.randint(-padding, padding + 1, (2, b), device=x.device).to(x.dtype)
    sign = torch.where(torch.rand(b, device=x.device) < 0.5, -1.0, 1.0).to(x.dtype)
    theta = torch.zeros(b, 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0], theta[:, 0, 2] = sign, 2 * shift[0] / w  # a shift of k pixels is 2k / W in [-1, 1]
    theta[:, 1, 1], theta[:, 1, 2] = 1.0, 2 * shift[1] / h
    grid = F.affine_grid(theta, [b, c, h, w], align_corners=False)
    return F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)


def grayscale(x: torch.Tensor) -> torch.Tensor:
    """Luma Y = 0.299 R + 0.587 G + 0.114 B (ITU-R 601, as torchvision): (B, 3, H, W) -> (B, 1, H, W)."""
    weights = torch.tensor([0.299, 0.587, 0.114], device=x.device, dtype=x.dtype)
    return torch.einsum("c,bchw->bhw", weights, x).unsqueeze(1)


_RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])


def _rotate_hue(x: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Rotate each image's chroma by ``angle`` (B,) radians in YIQ space (a linear stand-in for
    shifting the hue in HSV): (B, 3, H, W) -> same."""
    to_yiq = _RGB_TO_YIQ.to(x.device, x.dtype)
    cos, sin = angle.cos(), angle.sin()
    rotation = torch.zeros(len(x), 3, 3, device=x.device, dtype=x.dtype)
    rotation[:, 0, 0] = 1.0
    rotation[:, 1, 1], rotation[:, 1, 2], rotation[:, 2, 1], rotation[:, 2, 2] = cos, -sin, sin, cos
    matrix = torch.linalg.inv(to_yiq) @ rotation @ to_yiq  # (B, 3, 3)
    return torch.einsum("bij,bjhw->bihw", matrix, x)


def color_jitter(x: torch.Tensor, brightness: float = 0.4, contrast: float = 0.4, saturation: float = 0.4,
                 hue: float = 0.1, p: float = 0.8) -> torch.Tensor:
    """With probability ``p`` per image, scale brightness, contrast and saturation by factors drawn from
    [1 - s, 1 + s] and rotate the hue by up to ``hue`` turns, in that order (torchvision draws the
    order at random); values are clipped to [0, 1] after each step. (B, 3, H, W) -> same."""
    _check_images(x)
    b, device = len(x), x.device
    on = (torch.rand(b, device=device) < p).to(x.dtype)  # 1 where the jitter applies

    def factor(strength: float) -> torch.Tensor:  # (B, 1, 1, 1); 1 (no change) where the jitter is off
        f = _uniform(b, 1 - strength, 1 + strength, device).to(x.dtype)
        return (on * f + (1 - on)).view(b, 1, 1, 1)

    x = (x * factor(brightness)).clamp(0, 1)
    mean = grayscale(x).mean(dim=(1, 2, 3), keepdim=True)
    x = ((x - mean) * factor(contrast) + mean).clamp(0, 1)
    grey = grayscale(x)
    x = (grey + (x - grey) * factor(saturation)).clamp(0, 1)
    angle = _uniform(b, -hue, hue, device).to(x.dtype) * 2 * math.pi * on
    return _rotate_hue(x, angle).clamp(0, 1)


def random_grayscale(x: torch.Tensor, p: float = 0.2) -> torch.Tensor:
    """Replace each image by its grey version (on all 3 channels) with probability ``p``."""
    on = torch.rand(len(x), 1, 1, 1, device=x.device) < p
    return torch.where(on, grayscale(x).expand_as(x), x)


def simclr_augment(x: torch.Tensor, strength: float = 0.5, crop_scale: tuple[float, float] = (0.2, 1.0)
                   ) -> torch.Tensor:
    """SimCLR's augmentation for CIFAR (Chen et al. 2020, appendix B.9): random resized crop and flip,
    colour jitter of strength s (brightness, contrast, saturation 0.8 s, hue 0.2 s; p = 0.8), random
    grey (p = 0.2); no blur at this resolution. Crops cover 20% to 100% of the image (ImageNet's 8%
    leaves too little of a 32-pixel image). Batched on x's device: (B, 3, H, W) -> same."""
    x = random_resized_crop(x, scale=crop_scale)
    x = color_jitter(x, 0.8 * strength, 0.8 * strength, 0.8 * strength, 0.2 * strength, p=0.8)
    return random_grayscale(x, p=0.2)


# ----------------------------------------------------------------------------------------------
# Pretext task 1: rotation prediction (eq. 7.1)
# ----------------------------------------------------------------------------------------------

def rotate_batch(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The inputs and labels of eq. (7.1): every image under the four rotations.

    (B, C, H, W) with H = W -> ``x_rot`` (4B, C, H, W) and ``r`` (4B,) int64, where
    ``x_rot[r * B + i]`` is image i rotated by r * 90 degrees counter-clockwise
    (``torch.rot90(x[i], r, dims=(1, 2))``) and ``r[r * B + i] = r``.
    """
    _check_images(x, square=True)
    x_rot = torch.cat([torch.rot90(x, r, dims=(2, 3)) for r in range(4)])  # (4B, C, H, W)
    r = torch.arange(4, device=x.device).repeat_interleave(len(x))  # (4B,): 0...0 1...1 2...2 3...3
    return x_rot, r


# ----------------------------------------------------------------------------------------------
# Pretext task 2: relative patch position (eq. 7.2) and its low-level shortcut
# ----------------------------------------------------------------------------------------------

#: (row, column) offset of the neighbour for each label k = 0..7, in reading order around the centre.
NEIGHBOUR_OFFSETS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))


def _crop(x: torch.Tensor, top: torch.Tensor, left: torch.Tensor, size: int) -> torch.Tensor:
    """One size x size patch per image at (top, left): (B, C, H, W) -> (B, C, size, size)."""
    offsets = torch.arange(size, device=x.device)
    rows = (top[:, None] + offsets)[:, :, None]  # (B, size, 1)
    cols = (left[:, None] + offsets)[:, None, :]  # (B, 1, size)
    batch = torch.arange(len(x), device=x.device)[:, None, None]
    return x[batch, :, rows, cols].permute(0, 3, 1, 2)  # (B, size, size, C) -> (B, C, size, size)


def _random_grid(x: torch.Tensor, grid: int, side: int, gap: int, jitter: int, what: str
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Where a grid x grid grid of ``side``-pixel squares, ``gap`` pixels apart and each free to move by
    ``jitter``, sits in each image: the top-left corner of its first cell, (B,) rows and (B,) columns,
    drawn uniformly among the places where the whole grid fits."""
    b, _, h, w = x.shape
    span = grid * side + (grid - 1) * gap + 2 * jitter
    if span > min(h, w):
        raise ValueError(f"a {grid} x {grid} grid of {side}-pixel {what} with gap {gap} and jitter {jitter} "
                         f"needs {span} pixels, but the images are {h} x {w}: use smaller {what}, gap or jitter.")
    top = torch.randint(0, h - span + 1, (b,), device=x.device) + jitter
    left = torch.randint(0, w - span + 1, (b,), device=x.device) + jitter
    return top, left


def patch_pairs(x: torch.Tensor, patch: int = 8, gap: int = 2, jitter: int = 1, grid: int = 3
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The inputs and labels of eq. (7.2): two patches of a grid placed at random in each image, and
    the position k (0..7, see :data:`NEIGHBOUR_OFFSETS`) of the second relative to the first.

    ``grid=3`` is Doersch et al.'s layout: the first patch is the centre of a 3 x 3 grid, the second one
    of its 8 neighbours. ``grid=2`` asks the same question of a 2 x 2 grid, where patches can be half as
    large again on a small image: for each of the 8 offsets, the first patch sits in the cell from which
    the offset stays inside the grid (one of two cells when the offset is straight up, down, left or
    right). Grid cells are ``patch + gap`` pixels apart, and each patch moves by up to ``jitter`` pixels
    in each direction, so that no line or texture runs straight from one patch into the other
    (Doersch et al. 2015 used a gap of half a patch and a jitter of 7 pixels on 96-pixel patches).
    Returns the first (``centre``) and second (``neighbour``) patches, (B, C, patch, patch), and ``k``
    (B,) int64.
    """
    _check_images(x)
    if grid not in (2, 3):
        raise ValueError(f"grid must be 3 (a centre and its 8 neighbours) or 2 (a 2 x 2 grid), got {grid!r}.")
    b, device, cell = len(x), x.device, patch + gap
    top, left = _random_grid(x, grid, patch, gap, jitter, "patches")
    k = torch.randint(0, 8, (b,), device=device)
    offsets = torch.tensor(NEIGHBOUR_OFFSETS, device=device)[k]  # (B, 2): the second patch's (row, column) step

    def jittered(n: int) -> torch.Tensor:
        return torch.randint(-jitter, jitter + 1, (n,), device=device)

    if grid == 3:
        first = torch.ones_like(offsets)  # (B, 2): the centre cell
    else:  # a step of -1 starts from cell 1, +1 from cell 0, 0 from either
        either = torch.randint(0, 2, (b, 2), device=device)
        first = torch.where(offsets == 0, either, (offsets == -1).long())
    second = first + offsets
    centre = _crop(x, top + first[:, 0] * cell + jittered(b), left + first[:, 1] * cell + jittered(b), patch)
    neighbour = _crop(x, top + second[:, 0] * cell + jittered(b), left + second[:, 1] * cell + jittered(b), patch)
    return centre, neighbour, k


def recolour_patches(patches: torch.Tensor, p_grey: float = 0.5) -> torch.Tensor:
    """Relative position's guard against colour cues: each patch gets its own brightness, contrast,
    saturation and hue (:func:`color_jitter`) and loses its colour with probability ``p_grey``, so two
    patches of one image cannot be matched by their colours (Doersch et al. dropped colour channels
    against chromatic aberration). (B, C, p, p) -> (B, C, p, p)."""
    return random_grayscale(color_jitter(patches), p=p_grey)


class RelativePositionNet(nn.Module):
    """Doersch et al.'s Siamese network: the same trunk on both patches, their features concatenated,
    and a two-layer classifier of the 8 positions (eq. 7.2)."""

    def __init__(self, backbone: Backbone, hidden: int = 512):
        super().__init__()
        self.backbone = backbone
        d = backbone.feature_dim
        self.head = nn.Sequential(nn.Linear(2 * d, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
                                  nn.Linear(hidden, 8))

    def forward(self, centre: torch.Tensor, neighbour: torch.Tensor) -> torch.Tensor:
        f = self.backbone(torch.cat([centre, neighbour]))  # one pass of the shared trunk: (2B, D)
        f_centre, f_neighbour = f.chunk(2)  # (B, D) each
        return self.head(torch.cat([f_centre, f_neighbour], dim=1))  # (B, 2D) -> (B, 8) logits

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)


SIDE_NEIGHBOURS = (1, 3, 4, 6)  # the labels of the neighbours above, left, right and below the centre


def boundary_guess(centre: torch.Tensor, neighbour: torch.Tensor) -> torch.Tensor:
    """A "cheating" solver of eq. (7.2) with no parameters and no idea what is in the image: among the
    four side neighbours (labels 1, 3, 4, 6), guess the one whose touching border is most alike, e.g.
    for "above" the centre's top row against the neighbour's bottom row. It works when patches touch
    (edges and colours continue across the border) and falls to chance, 1 in 4, once a gap and a
    jitter separate them. (B, C, p, p) twice -> (B,) guesses in {1, 3, 4, 6}."""
    c, n = centre, neighbour

    def mismatch(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a - b).pow(2).flatten(1).mean(1)  # (B,)

    costs = torch.stack([
        mismatch(c[..., 0, :], n[..., -1, :]),     # 1 above: c's top row against n's bottom row
        mismatch(c[..., :, 0], n[..., :, -1]),     # 3 left: c's left column against n's right column
        mismatch(c[..., :, -1], n[..., :, 0]),     # 4 right
        mismatch(c[..., -1, :], n[..., 0, :]),     # 6 below
    ], dim=1)  # (B, 4)
    return torch.tensor(SIDE_NEIGHBOURS, device=c.device)[costs.argmin(dim=1)]


# ----------------------------------------------------------------------------------------------
# Pretext task 3: colorization (eq. 7.3)
# ----------------------------------------------------------------------------------------------

_RGB_TO_XYZ = torch.tensor([[0.412453, 0.357580, 0.180423],
                            [0.212671, 0.715160, 0.072169],
                            [0.019334, 0.119193, 0.950227]])
_WHITE_D65 = torch.tensor([0.950456, 1.0, 1.088754])
_DELTA = 6 / 29


def rgb_to_lab(x: torch.Tensor) -> torch.Tensor:
    """sRGB in [0, 1] -> CIE Lab (D65 white): (B, 3, H, W) -> (B, 3, H, W) with L in [0, 100] and
    a, b roughly in [-110, 110]; the same formulas as ``skimage.color.rgb2lab``."""
    _check_images(x)
    with torch.autocast(x.device.type, enabled=False):  # colour bins need float32, also under mixed precision
        return _rgb_to_lab(x.float() if x.dtype in (torch.float16, torch.bfloat16) else x)


def _rgb_to_lab(x: torch.Tensor) -> torch.Tensor:
    linear = torch.where(x > 0.04045, ((x + 0.055) / 1.055).pow(2.4), x / 12.92)
    xyz = torch.einsum("ij,bjhw->bihw", _RGB_TO_XYZ.to(x), linear) / _WHITE_D65.to(x).view(1, 3, 1, 1)
    f = torch.where(xyz > _DELTA**3, xyz.clamp_min(1e-12).pow(1 / 3), xyz / (3 * _DELTA**2) + 4 / 29)
    L = 116 * f[:, 1:2] - 16
    a = 500 * (f[:, 0:1] - f[:, 1:2])
    b = 200 * (f[:, 1:2] - f[:, 2:3])
    return torch.cat([L, a, b], dim=1)


def lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`rgb_to_lab`, clipped to [0, 1]: (B, 3, H, W) -> (B, 3, H, W)."""
    L, a, b = lab[:, 0:1], lab[:, 1:2], lab[:, 2:3]
    fy = (L + 16) / 116
    f = torch.cat([fy + a / 500, fy, fy - b / 200], dim=1)
    xyz = torch.where(f > _DELTA, f.pow(3), 3 * _DELTA**2 * (f - 4 / 29)) * _WHITE_D65.to(lab).view(1, 3, 1, 1)
    linear = torch.einsum("ij,bjhw->bihw", torch.linalg.inv(_RGB_TO_XYZ).to(lab), xyz).clamp(0, 1)
    return torch.where(linear > 0.0031308, 1.055 * linear.clamp_min(1e-12).pow(1 / 2.4) - 0.055, 12.92 * linear).clamp(0, 1)


AB_RANGE = 110.0  # quantise a and b in [-110, 110]


def ab_bin_centres(grid: float = 20.0) -> torch.Tensor:
    """The (a, b) centre of each of the Q = n^2 colour bins of side ``grid``: (Q, 2), bin q = i * n + j."""
    n = math.ceil(2 * AB_RANGE / grid)
    centres = -AB_RANGE + grid * (torch.arange(n) + 0.5)
    return torch.cartesian_prod(centres, centres)  # (n * n, 2): a varies slowest


def quantize_ab(ab: torch.Tensor, grid: float = 20.0) -> torch.Tensor:
    """The colour bin of every (a, b): (B, 2, h, w) -> (B, h, w) int64 in [0, Q)."""
    n = math.ceil(2 * AB_RANGE / grid)
    index = ((ab + AB_RANGE) / grid).floor().long().clamp(0, n - 1)  # (B, 2, h, w)
    return index[:, 0] * n + index[:, 1]


def rebalancing_weights(counts: torch.Tensor, lam: float = 0.5) -> torch.Tensor:
    """Eq. (7.3)'s class weights: :math:`v \\propto ((1-\\lambda)\\tilde p + \\lambda/Q)^{-1}`, normalised so
    that :math:`\\sum_q \\tilde p_q v_q = 1`. ``counts`` (Q,) are how often each bin occurs."""
    p = counts.float() / counts.sum().clamp_min(1)
    v = 1.0 / ((1 - lam) * p + lam / len(counts))
    return v / (p * v).sum()


class Colorizer(nn.Module):
    """Trunk on the lightness channel + a 1 x 1 convolution to Q colour logits at every location of the
    trunk's last feature map (eq. 7.3). The grey input is L / 100 copied to 3 channels, so the trunk
    is the same architecture as the other methods'; its features are always taken from grey images."""

    def __init__(self, backbone: Backbone, grid: float = 20.0):
        super().__init__()
        self.backbone = backbone
        self.grid = grid
        self.n_bins = math.ceil(2 * AB_RANGE / grid) ** 2
        self.head = nn.Conv2d(backbone.feature_dim, self.n_bins, 1)

    @staticmethod
    def lightness(x: torch.Tensor) -> torch.Tensor:
        """RGB (B, 3, H, W) -> its CIE lightness L / 100 in [0, 1], copied to 3 channels."""
        return (rgb_to_lab(x)[:, :1] / 100).expand(-1, 3, -1, -1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone.feature_map(self.lightness(x)))  # (B, 3, H, W) -> (B, Q, h, w)

    def targets(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """The true colour bins of x at the logits' resolution: (B, 3, H, W) -> (B, h, w)."""
        ab = F.adaptive_avg_pool2d(rgb_to_lab(x)[:, 1:], size)  # (B, 2, h, w)
        return quantize_ab(ab, self.grid)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(self.lightness(x))


def colorization_loss(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Eq. (7.3): the class-rebalanced cross-entropy, averaged over locations. ``logits`` (B, Q, h, w),
    ``targets`` (B, h, w), ``weights`` (Q,)."""
    ce = F.cross_entropy(logits, targets, reduction="none")  # (B, h, w)
    return (weights[targets] * ce).mean()


# ----------------------------------------------------------------------------------------------
# Instance discrimination with a memory bank (eqs. 7.4, 7.5)
# ----------------------------------------------------------------------------------------------

class InstanceNet(nn.Module):
    """Trunk + a linear map to a low-dimensional embedding on the unit sphere (Wu et al. use 128)."""

    def __init__(self, backbone: Backbone, dim: int = 128):
        super().__init__()
        self.backbone = backbone
        self.embed = nn.Linear(backbone.feature_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.embed(self.backbone(x)), dim=1)  # (B, 3, H, W) -> (B, dim), unit norm

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)


class MemoryBank(nn.Module):
    """:math:`V = (v_1, \\dots, v_N)`: one unit vector per training image, initialised at random (as
    Wu et al.) or by :meth:`start_from` the network's own embeddings, and updated by eq. (7.5) with
    momentum m. A buffer: it is saved with the model, never trained."""

    def __init__(self, n: int, dim: int = 128, momentum: float = 0.5):
        super().__init__()
        self.momentum = momentum
        self.register_buffer("v", F.normalize(torch.randn(n, dim), dim=1))  # (N, dim)

    @torch.no_grad()
    def start_from(self, model: nn.Module, x: torch.Tensor, batch_size: int = 1024) -> "MemoryBank":
        """Set every memory v_i to the embedding ``model(x_i)`` of its (un-augmented) image.

        With random memories, the target of image i means nothing until the first epoch has written
        it: on a short budget most steps chase noise. Started from the network's own embeddings, the
        first step already asks to recognise image i among the others. ``x`` (N, 3, H, W) are the
        training images in the order of the memories; returns the bank. The model runs as it is (in
        training mode, batch normalisation uses batch statistics, as in the loss the memories will meet)."""
        if len(x) != len(self.v):
            raise ValueError(f"the bank holds {len(self.v)} memories but {len(x)} images were given: "
                             "pass the whole training set, in the order of the image numbers.")
        v = torch.cat([model(x[i:i + batch_size]).float() for i in range(0, len(x), batch_size)])
        if v.shape != self.v.shape:
            raise ValueError(f"the model's embeddings have shape {tuple(v.shape[1:])}, the bank's "
                             f"memories {tuple(self.v.shape[1:])}: build the bank with dim={v.shape[1]}.")
        self.v = F.normalize(v, dim=1).to(self.v.device)
        return self

    @torch.no_grad()
    def update(self, index: torch.Tensor, v: torch.Tensor) -> None:
        """Eq. (7.5): v_i <- normalize(m v_i + (1 - m) f(x_i)) for the images ``index`` of the batch.
        Out of place: the loss of this step still needs the old V for its backward pass."""
        mixed = self.momentum * self.v[index] + (1 - self.momentum) * v.detach().to(self.v.dtype)
        self.v = self.v.index_copy(0, index, F.normalize(mixed, dim=1))


def npid_loss(v: torch.Tensor, index: torch.Tensor, bank: MemoryBank, temperature: float = 0.07) -> torch.Tensor:
    """Eq. (7.4): -log P(i | v) with the exact non-parametric softmax over all N memory entries.
    ``v`` (B, dim) unit vectors of the batch, ``index`` (B,) their image numbers."""
    with torch.autocast(v.device.type, enabled=False):  # a softmax over N entries at 1/tau = 14: float32
        logits = v.float() @ bank.v.float().T / temperature  # (B, dim) @ (dim, N) -> (B, N)
        return F.cross_entropy(logits, index)


# ----------------------------------------------------------------------------------------------
# Contrastive learning: SimCLR and the NT-Xent loss (eq. 7.6), on one or many processes
# ----------------------------------------------------------------------------------------------

class ProjectionHead(nn.Sequential):
    """g: the MLP between the features and the loss (Chen et al. 2020): D -> hidden -> out."""

    def __init__(self, d_in: int, hidden: int = 512, out: int = 128):
        super().__init__(nn.Linear(d_in, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
                         nn.Linear(hidden, out))


class SimCLR(nn.Module):
    """Trunk + projection head: ``forward`` gives z = g(f(x)) for the loss, ``features`` gives f(x)
    for everything downstream (the head is thrown away after training)."""

    def __init__(self, backbone: Backbone, hidden: int = 512, out: int = 128):
        super().__init__()
        self.backbone = backbone
        self.projector = ProjectionHead(backbone.feature_dim, hidden, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projector(self.backbone(x))  # (B, 3, H, W) -> (B, out)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)


def _rank_and_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward sends each process the gradient of *every* process's loss with
    respect to its own rows (an all_reduce, then its slice), so that DDP's gradient average is the
    gradient of the global-batch loss."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        rank, world = _rank_and_world()
        ctx.rank, ctx.n = rank, len(x)
        parts = [torch.empty_like(x) for _ in range(world)]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts)  # (world * n, d)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad)  # sum over processes of d(loss_p) / d(all rows)
        return grad[ctx.rank * ctx.n:(ctx.rank + 1) * ctx.n]


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Every process's rows, in rank order: (n, d) -> (world * n, d); ``x`` itself on one process.
    Gradients flow back to the rows of the process that made them (see :class:`_GatherWithGrad`)."""
    _, world = _rank_and_world()
    return x if world == 1 else _GatherWithGrad.apply(x)


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """NT-Xent, eq. (7.6), for the two views z1, z2 (n, d) of n images (row i of each is image i).

    On one process, N = n and this is eq. (7.6) exactly: the 2N anchors are z1 and z2, and each
    anchor's candidates are the other 2N - 1 views. Under ``torch.distributed`` the candidates are
    gathered from all processes (N = n x world size, 2N - 2 negatives per anchor), the anchors are
    this process's 2n views, and the mean over processes is the loss of the global batch.
    """
    if z1.shape != z2.shape or z1.ndim != 2:
        raise ValueError(f"expected two (n, d) tensors of projections, one row per image and view, got "
                         f"{tuple(z1.shape)} and {tuple(z2.shape)}: row i of z1 and of z2 must be the same image.")
    if not temperature > 0:
        raise ValueError(f"expected a temperature > 0 (SimCLR uses 0.1 to 0.5), got {temperature!r}.")
    rank, _ = _rank_and_world()
    n = len(z1)
    if z1.dtype in (torch.float16, torch.bfloat16):  # the softmax over 2N candidates wants float32
        z1, z2 = z1.float(), z2.float()
    z1, z2 = F.normalize(z1, dim=1), F.normalize(z2, dim=1)  # cosine similarity = dot product
    candidates = torch.cat([gather_with_grad(z1), gather_with_grad(z2)])  # (2N, d): all first views, then all second
    N = len(candidates) // 2
    anchors = torch.cat([z1, z2])  # (2n, d)
    logits = anchors @ candidates.T / temperature  # (2n, 2N): s_ik / tau
    mine = rank * n + torch.arange(n, device=z1.device)  # where this process's images sit among the N
    self_index = torch.cat([mine, mine + N])  # each anchor's own column: excluded, k != i
    positive = torch.cat([mine + N, mine])  # the column of its other view: the j of l_{i,j}
    logits = logits.masked_fill(F.one_hot(self_index, 2 * N).bool(), float("-inf"))
    return F.cross_entropy(logits, positive)  # mean over the 2n anchors of l_{i,j}


def _cosine_lr(base_lr: float, progress_fraction: float, warmup: float) -> float:
    """Linear warm-up for the first ``warmup`` fraction of training, then a cosine decay to 0."""
    if progress_fraction < warmup:
        return base_lr * progress_fraction / warmup
    t = (progress_fraction - warmup) / max(1e-8, 1 - warmup)
    return base_lr * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))


def train_simclr(model: nn.Module, x: torch.Tensor, *, epochs: int, batch_size: int, lr: float,
                 temperature: float = 0.5, weight_decay: float = 5e-4, warmup: float = 0.05,
                 time_budget: float | None = None, max_steps: int | None = None,
                 loss_fn: Callable[..., torch.Tensor] = nt_xent,
                 augment: Callable[[torch.Tensor], torch.Tensor] = simclr_augment, seed: int = 0,
                 checkpoint: str | Path | None = None, progress_bar: bool = True, log_every: int = 10) -> History:
    """Train SimCLR on the images ``x`` (N, 3, H, W) in [0, 1], already on the model's device.

    Every step draws a global batch of ``batch_size`` images from a permutation shared by all
    processes (seeded by ``seed`` and the epoch); each process takes its ``batch_size / world``
    slice, augments it twice on the device (:func:`simclr_augment`), and the loss gathers the
    negatives from all processes. ``model`` may be wrapped in DistributedDataParallel.

    SGD with Nesterov momentum 0.9 and ``weight_decay``; the learning rate warms up linearly for the
    first ``warmup`` fraction of training, then decays with a cosine. The fraction of training done is
    the larger of step / total steps and elapsed time / ``time_budget`` (seconds), so with a budget
    the schedule ends, and training stops, on time. Mixed precision on CUDA as ``unsuplab.train.autocast``
    chooses it (bfloat16 on compute capability 8.0 or more, float16 with a gradient scaler on a T4). Stops
    with :class:`~unsuplab.train.TrainingDiverged` at a NaN loss. With ``checkpoint`` the state is
    saved (by process 0) after every epoch and a rerun resumes from it.

    Returns a :class:`~unsuplab.train.History`: ``steps["loss"]`` every ``log_every`` steps, and per
    epoch ``loss``, ``lr`` and ``seconds`` (the training time so far).
    """
    if x.ndim != 4:
        raise ValueError(f"expected images x of shape (N, 3, H, W), got {tuple(x.shape)}.")
    rank, world = _rank_and_world()
    if batch_size % world:
        raise ValueError(f"batch_size {batch_size} must be a multiple of the number of processes ({world}).")
    local = batch_size // world
    steps_per_epoch = len(x) // batch_size
    if steps_per_epoch < 1:
        raise ValueError(f"batch_size {batch_size} is larger than the {len(x)} training images: use a smaller batch.")
    total = epochs * steps_per_epoch if max_steps is None else min(max_steps, epochs * steps_per_epoch)
    device = x.device
    scaler = grad_scaler(device)  # float16 (a T4) needs one; elsewhere it does nothing
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay)
    history, start_epoch, spent = History(), 0, 0.0
    if checkpoint is not None and Path(checkpoint).exists():
        state = load_checkpoint(checkpoint, map_location=device, model=model, optimizer=optimizer, history=history)
        if state.get("scaler"):  # saved under float16; empty otherwise
            scaler.load_state_dict(state["scaler"])
        start_epoch, spent = state["epoch"], history.seconds
        if rank == 0:
            print(f"resumed from {checkpoint} after epoch {start_epoch}")
    step = start_epoch * steps_per_epoch
    bar = progress(total=total, initial=min(step, total), desc="SimCLR", disable=not progress_bar or rank != 0)
    started = time.perf_counter() - spent
    model.train()
    done = step >= total
    for epoch in range(start_epoch, epochs):
        if done:
            break
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed * 7_919 + epoch)).to(device)
        epoch_loss = torch.zeros((), device=device)
        n_steps = 0
        for s in range(steps_per_epoch):
            elapsed = time.perf_counter() - started
            fraction = max(step / total, elapsed / time_budget if time_budget else 0.0)
            if fraction >= 1.0:
                done = True
                break
            for group in optimizer.param_groups:
                group["lr"] = _cosine_lr(lr, fraction, warmup)
            index = order[s * batch_size + rank * local: s * batch_size + (rank + 1) * local]  # (b,)
            images = x[index]  # (b, 3, H, W)
            views = torch.cat([augment(images), augment(images)])  # (2b, 3, H, W): first views, then second
            if device.type == "cuda":
                views = views.contiguous(memory_format=torch.channels_last)
            with autocast(device):
                z = model(views)  # (2b, out)
            z1, z2 = z.float().chunk(2)
            loss = loss_fn(z1, z2, temperature)
            backward_and_step(loss, optimizer, scaler)
            step += 1
            n_steps += 1
            epoch_loss += loss.detach()
            if step % log_every == 0 or step == 1:
                value = float(loss.detach())
                check_finite(value, step=step, epoch=epoch + 1, checkpoint=checkpoint)
                history.log_step({"step": step, "loss": value})
                bar.set_postfix(epoch=epoch + 1, loss=f"{value:.4f}", refresh=False)
            bar.update(1)
        if n_steps:
            mean_loss = float(epoch_loss) / n_steps
            check_finite(mean_loss, step=step, epoch=epoch + 1, checkpoint=checkpoint)
            history.seconds = time.perf_counter() - started
            history.log_epoch({"loss": mean_loss, "lr": optimizer.param_groups[0]["lr"], "seconds": history.seconds})
            if checkpoint is not None and rank == 0 and not done:
                save_checkpoint(checkpoint, model=model, optimizer=optimizer, history=history, scaler=scaler,
                                epoch=epoch + 1)
    history.seconds = time.perf_counter() - started
    bar.close()
    model.eval()
    return history


# ----------------------------------------------------------------------------------------------
# DeepCluster (eqs. 7.7, 7.8): K-means pseudo-labels, with its two degenerate solutions prevented
# ----------------------------------------------------------------------------------------------

def pca_whiten(features: torch.Tensor, dim: int) -> torch.Tensor:
    """DeepCluster's pre-processing before K-means: PCA to ``dim`` dimensions, whitening (each
    component divided by its standard deviation) and L2 normalisation. (N, D) -> (N, min(dim, D, N-1))."""
    f = features.float()
    f = f - f.mean(0)
    u, s, _ = torch.linalg.svd(f, full_matrices=False)  # f = U S V^T; the whitened PCA codes are U sqrt(N-1)
    k = min(dim, len(s), len(f) - 1)
    return F.normalize(u[:, :k], dim=1)  # the sqrt(N-1) scale disappears in the normalisation


def deepcluster_codes(features: torch.Tensor, whiten: bool = True, pca_dim: int = 64) -> torch.Tensor:
    """What K-means clusters in a DeepCluster round: :func:`pca_whiten` (the paper's), or with
    ``whiten=False`` the features L2-normalised as they are. (N, D) -> (N, D')."""
    return pca_whiten(features, pca_dim) if whiten else F.normalize(features.float(), dim=1)


def reassign_empty_clusters(features: torch.Tensor, assignments: torch.Tensor, k: int) -> torch.Tensor:
    """Give every empty cluster half of the currently largest cluster (the split of Caron et al. 2018,
    made deterministic): for each empty cluster j in increasing order, take the largest cluster c
    (the lowest id among equals), project its points on the direction from its centroid to its point
    farthest from that centroid, and move the ceil(size / 2) points with the largest projections to j
    (ties keep the points' order). ``features`` (N, D), ``assignments`` (N,) ids in [0, k) ->
    new assignments (N,); no cluster is empty afterwards when N >= k.
    """
    if assignments.ndim != 1 or len(assignments) != len(features):
        raise ValueError(f"expected one cluster id per row of features ({len(features)}), got assignments "
                         f"of shape {tuple(assignments.shape)}.")
    if len(features) < k:
        raise ValueError(f"cannot fill {k} clusters with {len(features)} points: use k <= N.")
    assignments = assignments.clone()
    sizes = torch.bincount(assignments, minlength=k)
    for j in torch.nonzero(sizes == 0).flatten().tolist():
        c = int(torch.argmax(sizes))  # the first of the largest clusters
        members = torch.nonzero(assignments == c).flatten()  # (s,)
        points = features[members].float()  # (s, D)
        centred = points - points.mean(0)
        direction = centred[centred.pow(2).sum(1).argmax()]  # centroid -> farthest point
        projection = centred @ direction  # (s,)
        moving = members[torch.argsort(projection, descending=True, stable=True)[: (len(members) + 1) // 2]]
        assignments[moving] = j
        sizes[j], sizes[c] = len(moving), len(members) - len(moving)
    return assignments


def _halves_across_a_radius(points: torch.Tensor, moved: torch.Tensor) -> bool:
    """Whether ``moved`` (bool, (s,)) marks one side of a cut of ``points`` (s, D) across the direction from
    their centroid to one of their farthest points: every moved point projects at least as far along it as
    every staying point, or every one at most as far. Near-ties (float rounding) may go either way."""
    centred = points - points.mean(0)  # (s, D)
    norms = centred.pow(2).sum(1)  # (s,)
    for far in torch.nonzero(norms >= norms.max() * (1 - 1e-5)).flatten():  # every farthest point, ties too
        projection = centred @ centred[far]  # (s,)
        slack = 1e-5 * float(projection.abs().max())
        inside, outside = projection[moved], projection[~moved]
        if inside.min() >= outside.max() - slack or inside.max() <= outside.min() + slack:
            return True
    return False


def _undo_splits(features: torch.Tensor, before: torch.Tensor, labels: torch.Tensor, filled: list[int], k: int,
                 failed: set, culprit: list[int]) -> bool:
    """Whether the splits that filled the clusters ``filled`` (in that order) can be undone, the last first,
    from ``labels`` back to ``before``: each filled cluster merges back into a cluster of the same origin
    that was then a largest, and the two were the halves of a cut across a radius. ``culprit`` collects the
    filled clusters for which no such parent exists."""
    if not filled:
        return torch.equal(labels, before)
    j = filled[-1]
    moved = torch.nonzero(labels == j).flatten()  # everything j holds came from one cluster at j's split
    origin = before[moved]
    if (origin != origin[0]).any():  # ... whose points all came from one cluster that was not empty
        culprit.append(j)
        return False
    sizes = torch.bincount(labels, minlength=k)
    sizes[j] = 0
    for c in torch.nonzero(sizes).flatten().tolist():  # the candidate parents
        members = torch.nonzero(labels == c).flatten()
        s = len(members) + len(moved)
        if (before[members] != origin[0]).any():
            continue  # c holds points of another origin: points never move between non-empty clusters
        if s < int(sizes.max()) or len(moved) not in (s // 2, s - s // 2):
            continue  # c was not a largest cluster then, or j did not take half of it
        points = features[torch.cat([moved, members])].double()  # (s, D), the moved ones first
        if not _halves_across_a_radius(points, torch.arange(s) < len(moved)):
            continue
        undone = labels.clone()
        undone[moved] = c
        key = (len(filled), undone.numpy().tobytes())
        if key not in failed:
            if _undo_splits(features, before, undone, filled[:-1], k, failed, culprit):
                return True
            failed.add(key)
    culprit.append(j)
    return False


def reassignment_problem(features: torch.Tensor, before: torch.Tensor, after, k: int) -> str | None:
    """Why ``after`` is not a correct result of re-assigning the empty clusters of ``before``, in words, or
    ``None`` when it is. Any tie-breaking is accepted: a correct result is one that the split of
    :func:`reassign_empty_clusters` gives for *some* choice among equals. That is, for every cluster j
    empty in ``before``, in increasing order, some cluster c that is then a largest is cut in two halves
    (sizes ceil(s/2) and floor(s/2)) across the direction from c's centroid to one of its farthest points
    (every point of one half projects at least as far along it as every point of the other), and one half
    moves to j. Checked: (N,) integer ids in [0, k), no empty cluster, points moved only into clusters
    that were empty, the sizes the halvings give, and a sequence of such splits that leads from
    ``before`` to ``after`` (found by undoing them, the last first). ``features`` (N, D), ``before`` (N,).
    """
    n, before = len(features), before.detach().cpu().long()
    if not isinstance(after, torch.Tensor):
        return f"expected a torch.Tensor of cluster ids, got {type(after).__name__}."
    if after.shape != before.shape or after.is_floating_point() or after.dtype == torch.bool:
        return (f"expected integer cluster ids of shape ({n},), one per point, got {after.dtype} of shape "
                f"{tuple(after.shape)}.")
    after = after.detach().cpu().long()
    if after.min() < 0 or after.max() >= k:
        return f"cluster ids must lie in 0 .. {k - 1}, got ids from {int(after.min())} to {int(after.max())}."
    sizes_before, sizes_after = torch.bincount(before, minlength=k), torch.bincount(after, minlength=k)
    still_empty = torch.nonzero(sizes_after == 0).flatten().tolist()
    if still_empty:
        return f"cluster(s) {still_empty} are still empty: every empty cluster must receive points."
    filled = torch.nonzero(sizes_before == 0).flatten().tolist()
    wrong = torch.nonzero((after != before) & (sizes_before[after] > 0)).flatten()
    if len(wrong):
        i = int(wrong[0])
        return (f"point {i} moved from cluster {int(before[i])} to cluster {int(after[i])}, which was not empty: "
                "points may only move into the clusters that were empty.")
    halved = sorted(sizes_before[sizes_before > 0].tolist(), reverse=True)  # halve the largest, j after j
    for _ in filled:
        s = halved.pop(0)
        halved = sorted(halved + [s - s // 2, s // 2], reverse=True)
    got = sorted(sizes_after.tolist(), reverse=True)
    if got != halved:
        return (f"the cluster sizes, largest first, should be {halved} after the splits, got {got}: each empty "
                "cluster takes half of the cluster that is largest at that moment (update the sizes after "
                "every split).")
    culprit: list[int] = []
    if not _undo_splits(features.detach().cpu(), before, after, filled, k, set(), culprit):
        j = min(culprit)
        return (f"the points given to the empty cluster {j} are not one half of a largest cluster cut across "
                "the direction from its centroid to its farthest point: centre that cluster's points, project "
                "them on the centred point of largest norm, and move the half with the largest projections.")
    return None


def check_reassignment(reassign: Callable, cases: list[tuple[torch.Tensor, torch.Tensor, int]],
                       name: str = "reassign_empty_clusters") -> None:
    """The self-check of the empty-cluster exercise: runs ``reassign(features, assignments, k)`` on each
    case ``(features, assignments, k)`` and judges the result by :func:`reassignment_problem`, so any
    correct tie-breaking passes. Prints a ✓ line or raises ``unsuplab.checks.CheckFailed`` in words."""
    cases = list(cases)
    for number, (features, assignments, k) in enumerate(cases, start=1):
        given_features, given = features.clone(), assignments.clone()
        case = f"test case {number} of {len(cases)}: {len(features)} points, k = {k}"
        try:
            after = reassign(given_features, given, k)
        except NotImplementedError as err:
            print(_not_written(name, reassign, err))
            raise
        except Exception as err:
            raise CheckFailed(f"✗ {name} raised {type(err).__name__}: {err} ({case}); the traceback above "
                              "shows the line.") from err
        if not (torch.equal(given, assignments) and torch.equal(given_features, features)):
            raise CheckFailed(f"✗ {name} changed its input in place ({case}): start from "
                              "assignments.clone() and change the copy.")
        problem = reassignment_problem(features, assignments, after, k)
        if problem:
            raise CheckFailed(f"✗ {name}: {problem} ({case})")
    print(f"✓ {name} leaves no cluster empty and gives each empty cluster one half of a largest cluster, "
          f"cut across the direction to its farthest point, on {len(cases)} test cases.")


def kmeans_pseudo_labels(features: torch.Tensor, k: int, *, iters: int = 20,
                         reassign: Callable | None = reassign_empty_clusters,
                         generator: torch.Generator | None = None,
                         init: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. (7.7) by Lloyd's algorithm from k random points (or from the centroids ``init``, (k, D)),
    with ``reassign(features, assignments, k)`` run after every assignment step (``None``: empty
    clusters stay empty, their centroids frozen). ``features`` (N, D) -> pseudo-labels (N,) and
    centroids (k, D)."""
    if not 1 <= k <= len(features):
        raise ValueError(f"k must be between 1 and the number of points ({len(features)}), got {k}.")
    f = features.float()
    if init is None:
        centroids = f[torch.randperm(len(f), generator=generator)[:k].to(f.device)].clone()  # (k, D)
    elif init.shape != (k, f.shape[1]):
        raise ValueError(f"init must hold k = {k} centroids of the features' {f.shape[1]} dimensions, "
                         f"got shape {tuple(init.shape)}.")
    else:
        centroids = init.float().clone()
    for _ in range(iters):
        d = (f * f).sum(1, keepdim=True) - 2 * f @ centroids.T + (centroids * centroids).sum(1)  # (N, k)
        labels = d.argmin(1)
        if reassign is not None:
            labels = reassign(f, labels, k)
        sums = torch.zeros_like(centroids).index_add_(0, labels, f)
        counts = torch.bincount(labels, minlength=k)
        centroids = torch.where(counts[:, None] > 0, sums / counts.clamp_min(1)[:, None], centroids)
    return labels, centroids


def balanced_weights(labels: torch.Tensor, k: int) -> torch.Tensor:
    """Sampling weights that make every non-empty cluster equally likely: w_n = 1 / ``|cluster(n)|``, (N,).
    Sampling by them (``torch.multinomial``) is uniform over clusters, then over their members."""
    counts = torch.bincount(labels, minlength=k).float()
    return 1.0 / counts[labels]


def train_deepcluster(model: Classifier, x: torch.Tensor, *, rounds: int, steps_per_round: int,
                      batch_size: int, lr: float, pca_dim: int = 64, kmeans_iters: int = 20,
                      reassign: Callable | None = reassign_empty_clusters, balanced: bool = True,
                      whiten: bool = True, carry_centroids: bool = False,
                      augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
                      labels: torch.Tensor | None = None, seed: int = 0, progress_bar: bool = True,
                      relabel: Callable[[int, torch.Tensor], torch.Tensor] | None = None) -> History:
    """DeepCluster's alternation (eqs. 7.7, 7.8) for ``rounds`` rounds on images ``x`` on the device.

    Each round: frozen features of all images -> :func:`deepcluster_codes` -> K-means with k = the head's
    size (:func:`kmeans_pseudo_labels`, calling ``reassign`` after every assignment step; ``None``
    leaves empty clusters empty) -> a fresh classifier head -> ``steps_per_round`` steps of
    cross-entropy on the pseudo-labels, sampling images in proportion to :func:`balanced_weights`
    (``balanced``) or uniformly. ``augment`` defaults to :func:`simclr_augment`: the network must give
    a crop with changed colours, or in grey, its image's cluster, so colour alone cannot decide the
    pseudo-labels (the role of Caron et al.'s Sobel filter, which fed it grey edges only).

    ``relabel(round, pseudo_labels)``, if given, replaces each round's pseudo-labels before they are
    logged and trained on (an experiment's handle, e.g. a first round made lopsided on purpose).

    Two of the paper's choices also keep the clusters alive, and can be switched off to see the fixes
    at work: ``whiten=False`` clusters the L2-normalised features without PCA and whitening, and
    ``carry_centroids=True`` starts each round's K-means from the last round's centroids instead of
    from random images (it needs ``whiten=False``: the PCA basis is recomputed every round, so last
    round's centroids mean nothing in the new one). A centroid that loses all its images then stays
    where the features were a round ago, and without ``reassign`` its cluster never comes back.

    Returns a :class:`~unsuplab.train.History` whose ``epochs`` hold one row per **round**: ``empty``
    (the number of empty clusters), ``largest`` (the share of the images in the largest cluster),
    ``loss`` (the mean training loss of the round) and, given the true ``labels``, ``nmi`` between
    clusters and classes (a measurement only: labels are never used for training). ``steps["loss"]``
    holds every step's loss, round after round; ``info["sizes"]`` each round's cluster sizes, largest
    first; ``seconds`` the time of the whole alternation, clustering included.
    """
    if carry_centroids and whiten:
        raise ValueError("carry_centroids=True needs whiten=False: the whitened PCA basis is recomputed every round, "
                         "so last round's centroids mean nothing in the new one.")
    k = model.head.out_features
    augment = augment or simclr_augment
    generator = torch.Generator().manual_seed(seed)
    centroids = None
    device = x.device
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    history = History(info={"sizes": []})
    started = time.perf_counter()
    for round_ in range(rounds):
        codes = deepcluster_codes(extract_features(model, x), whiten, pca_dim)  # (N, D')
        pseudo, centroids = kmeans_pseudo_labels(codes, k, iters=kmeans_iters, reassign=reassign, generator=generator,
                                                 init=centroids if carry_centroids else None)
        if relabel is not None:
            pseudo = relabel(round_, pseudo)
        sizes = torch.bincount(pseudo, minlength=k)
        clusters = {"empty": int((sizes == 0).sum()), "largest": float(sizes.max()) / len(x)}
        history.info["sizes"].append(sizes.sort(descending=True).values.tolist())
        if labels is not None:
            clusters["nmi"] = metrics.nmi(labels.cpu(), pseudo.cpu())
        model.reset_head()  # cluster ids are renumbered every round
        weights = balanced_weights(pseudo, k) if balanced else None
        batches = TensorBatches(torch.arange(len(x), device=device), batch_size=batch_size, drop_last=True,
                                weights=weights)

        def loss_fn(net: nn.Module, index: torch.Tensor) -> torch.Tensor:
            return F.cross_entropy(net(augment(x[index])), pseudo[index])  # eq. (7.8)

        trained = fit(model, loss_fn, batches, epochs=math.ceil(steps_per_round / len(batches)), optimizer=optimizer,
                      max_steps=steps_per_round, seed=seed * 1_000 + round_, progress_bar=progress_bar,
                      desc=f"DeepCluster round {round_ + 1}/{rounds}")
        losses = trained.steps["loss"]
        history.steps.setdefault("loss", []).extend(losses)
        history.log_epoch({**clusters, "loss": sum(losses) / len(losses)})
        history.seconds = time.perf_counter() - started
    return history


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
    b, device, cell = len(x), x.device, tile + gap
    top, left = _random_grid(x, grid, tile, gap, jitter, "tiles")
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
    mean = torch.tensor(CIFAR_MEAN[:x.shape[1]], device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
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


def dis_step(discriminator: CentreDiscriminator, d_optimizer: torch.optim.Optimizer, painted: torch.Tensor,
             real: torch.Tensor) -> None:
    """D's step of eq. (7.10)'s game, the GAN loss of chapter 6: real centres -> 1, painted ones -> 0."""
    logits_real, logits_fake = discriminator(real), discriminator(painted.detach())
    d_loss = (F.binary_cross_entropy_with_logits(logits_real, torch.ones_like(logits_real))
              + F.binary_cross_entropy_with_logits(logits_fake, torch.zeros_like(logits_fake)))
    d_optimizer.zero_grad(set_to_none=True)
    d_loss.backward()
    d_optimizer.step()


def context_encoder_loss(model: ContextEncoder, images: torch.Tensor, centre: int = 16,
                         discriminator: CentreDiscriminator | None = None,
                         d_optimizer: torch.optim.Optimizer | None = None, lambda_adv: float = 0.001
                         ) -> tuple[torch.Tensor, dict[str, float]]:
    """G's loss of eq. (7.10) on a batch of images: mask the centre and paint it. With a discriminator
    (and ``lambda_adv > 0``), first take D's step on the real and painted centres (:func:`dis_step`),
    then return ``(1 - lambda_adv) * reconstruction + lambda_adv * (-log D(painted))``; without one, the
    reconstruction alone. Also returns the parts: ``rec`` (the squared error per image) and ``adv``."""
    masked, real = mask_centre(images, centre)
    painted = model(masked)
    rec = reconstruction_loss(painted, real)
    if discriminator is None or lambda_adv <= 0:
        return rec, {"rec": rec.item()}
    dis_step(discriminator, d_optimizer, painted, real)
    logits = discriminator(painted)
    adv = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))  # -log D(G(.)), non-saturating
    return (1 - lambda_adv) * rec + lambda_adv * adv, {"rec": rec.item(), "adv": adv.item()}


def train_context_encoder(model: ContextEncoder, discriminator: CentreDiscriminator | None, x: torch.Tensor, *,
                          steps: int, batch_size: int, lr: float, centre: int = 16, lambda_adv: float = 0.001,
                          augment=None, seed: int = 0, desc: str = "context encoder", progress_bar: bool = True
                          ) -> History:
    """Eq. (7.10) for ``steps`` steps of Adam on images ``x`` on the device, with a warm-up and cosine
    decay of the rate: every step is :func:`context_encoder_loss` (D's step, then G's loss), and G =
    encoder + decoder is updated on that loss. ``discriminator=None`` (or ``lambda_adv=0``) trains the
    reconstruction alone. ``augment`` (default: random crops and flips) is applied before the centre is
    masked. The history's steps hold ``loss``, ``rec`` (the squared error per image) and ``adv``."""
    augment = augment or random_crop_flip
    adversarial = discriminator is not None and lambda_adv > 0
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.5, 0.999))
    d_optimizer = None
    if adversarial:
        discriminator.to(x.device).train()
        d_optimizer = torch.optim.Adam(discriminator.parameters(), lr=lr, betas=(0.5, 0.999))

    def loss_fn(net: ContextEncoder, index: torch.Tensor):
        return context_encoder_loss(net, augment(x[index]), centre, discriminator if adversarial else None,
                                    d_optimizer, lambda_adv)

    batches = TensorBatches(torch.arange(len(x), device=x.device), batch_size=batch_size, drop_last=True)
    return fit(model, loss_fn, batches, epochs=math.ceil(steps / len(batches)), max_steps=steps, optimizer=optimizer,
               warmup=steps // 20, decay="cosine", seed=seed, desc=desc, progress_bar=progress_bar)


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
    """What NAT keeps between batches: the fixed targets (N, d), the assignment ``assigned`` (N,) (image
    n's target is ``targets[assigned[n]]``, a permutation of 0 .. N-1 that starts at random), and how
    many images training has seen, which says in which pass over the N images it is. The assignment
    is re-optimised during every ``reassign_every``-th pass only (passes 0, k, 2k, ...) and kept fixed
    in between, so that the network can fit its targets before they move again."""

    def __init__(self, n: int, dim: int, device, generator: torch.Generator | None = None, reassign_every: int = 1):
        if reassign_every < 1:
            raise ValueError(f"reassign_every must be a whole number of passes >= 1, got {reassign_every!r}.")
        self.targets = unit_sphere_targets(n, dim, generator).to(device)
        self.assigned = torch.randperm(n, generator=generator).to(device)
        self.reassign_every, self.seen = reassign_every, 0

    def reassigning(self, batch: int) -> bool:
        """Whether the next batch of ``batch`` images falls in a pass that re-optimises the assignment."""
        this_pass = self.seen // len(self.assigned)
        self.seen += batch
        return this_pass % self.reassign_every == 0


def nat_loss(model: NoiseAsTargets, x: torch.Tensor, index: torch.Tensor, state: NatState, augment=None,
             assign=nat_assign) -> tuple[torch.Tensor, dict[str, float]]:
    """Eq. (7.12) on the images ``index`` (B,): in a pass that re-optimises the assignment
    (:class:`NatState`), re-assign the batch's own targets among its images by ``assign`` (the
    Hungarian algorithm) and store the new assignment in ``state``; then the squared distance of each
    feature to its target. Also reports ``changed``, the share of images whose target changed (zero in
    the passes that keep the assignment fixed)."""
    augment = augment or simclr_augment
    z = model(augment(x[index]))  # (B, d) on the sphere
    mine = state.assigned[index]  # (B,) the batch's targets
    new = mine[assign(z.detach(), state.targets[mine])] if state.reassigning(len(index)) else mine
    state.assigned[index] = new
    loss = (z - state.targets[new]).pow(2).sum(1).mean()
    return loss, {"changed": (new != mine).float().mean().item()}
