"""The course's own MNIST feature network: a small classifier that measures generated digits.

The Fréchet Inception Distance (Heusel et al. 2017) compares real and generated images through the
features of an ImageNet classifier, Inception-v3 (Szegedy et al. 2016). For 28 x 28 digits those
features are a poor fit and their weights would have to be downloaded, so the course trains its own
classifier instead, a LeNet-style network (LeCun et al. 1998)::

    x (B, 1, 28, 28) -> conv 3x3 -> pool -> (B, w, 14, 14) -> conv 3x3 -> pool -> (B, 2w, 7, 7)
      -> linear -> f(x) (B, feature_dim), ReLU  -> linear -> logits (B, 10)

and uses f(x), its penultimate layer, for the Fréchet distance (``unsuplab.metrics.frechet_distance``)
and its predicted classes to check which digits a generator covers. Labels are used only here, to
build the measuring instrument; the generative models never see them.

Numbers under this metric are comparable only when the same network measured them: train it with the
same settings and seed (``train_classifier``; a checkpoint keeps it between runs) before comparing
two models, in one chapter or across chapters.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import check_unit_interval
from ..train import eval_mode, fit

__all__ = ["MNISTClassifier", "train_classifier", "classify", "class_coverage"]


def _check_images(x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or tuple(x.shape[1:]) != (1, 28, 28):
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"expected images of shape (N, 1, 28, 28), got {shape}.")
    check_unit_interval(x, "images", tolerance=0.01)


class MNISTClassifier(nn.Module):
    """LeNet-style MNIST classifier; ``features(x)`` is the penultimate layer used for Fréchet distances."""

    def __init__(self, width: int = 32, feature_dim: int = 64):
        super().__init__()
        self.feature_dim = feature_dim
        self.body = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),            # (B, w, 14, 14)
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),    # (B, 2w, 7, 7)
            nn.Flatten(), nn.Linear(2 * width * 7 * 7, feature_dim), nn.ReLU(),       # (B, feature_dim)
        )
        self.out = nn.Linear(feature_dim, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        _check_images(x)
        return self.body(x)                      # (B, 1, 28, 28) -> (B, feature_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.features(x))        # -> (B, 10) logits


def train_classifier(x: torch.Tensor, y: torch.Tensor, *, epochs: int = 2, batch_size: int = 128,
                     lr: float = 2e-3, width: int = 32, feature_dim: int = 64, seed: int = 0,
                     device=None, checkpoint: str | Path | None = None) -> MNISTClassifier:
    """Train the feature network on labelled digits ``x`` (N, 1, 28, 28) in [0, 1] and ``y`` (N,) with
    ``unsuplab.train.fit`` (Adam, cross-entropy). With ``checkpoint`` an earlier run with the same file
    is reused (or resumed), so every notebook that names the same file measures with the same network.
    Returns the network in eval mode."""
    _check_images(x)
    if len(x) != len(y):
        raise ValueError(f"got {len(x)} images but {len(y)} labels.")
    device = torch.device(device) if device is not None else x.device
    torch.manual_seed(seed)
    model = MNISTClassifier(width, feature_dim).to(device)
    dataset = torch.utils.data.TensorDataset(x, y)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True)

    def loss_fn(net, batch):
        images, labels = batch
        logits = net(images)
        return F.cross_entropy(logits, labels), {"acc": (logits.argmax(1) == labels).float().mean()}

    fit(model, loss_fn, loader, epochs=epochs, lr=lr, device=device, checkpoint=checkpoint, seed=seed,
        desc="feature net")
    return model.eval()


@torch.no_grad()
def classify(model: MNISTClassifier, x: torch.Tensor, batch_size: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    """Features (N, feature_dim) and class probabilities (N, 10) of images ``x`` (N, 1, 28, 28) in [0, 1],
    computed ``batch_size`` at a time on the model's device; both returned on the CPU."""
    _check_images(x)
    device = next(model.parameters()).device
    features, probs = [], []
    with eval_mode(model):
        for start in range(0, len(x), batch_size):
            f = model.features(x[start:start + batch_size].to(device))
            features.append(f.float().cpu())
            probs.append(model.out(f).softmax(dim=1).float().cpu())
    return torch.cat(features), torch.cat(probs)


def class_coverage(probs: torch.Tensor, min_share: float = 0.02) -> dict:
    """Mode coverage of generated digits from the classifier's probabilities (N, 10).

    ``histogram``: the share of samples predicted as each digit (argmax); ``entropy``: the entropy of
    that histogram in nats (log 10 = 2.303 when all ten digits are equally frequent, 0 when a single
    digit is); ``covered``: the digits with a share of at least ``min_share``; ``confidence``: the
    mean probability of the predicted class (low when samples look like no digit in particular)."""
    if probs.ndim != 2 or probs.shape[1] != 10:
        raise ValueError(f"expected class probabilities of shape (N, 10), got {tuple(probs.shape)}.")
    predicted = probs.argmax(dim=1)
    histogram = torch.bincount(predicted, minlength=10).double() / len(probs)
    shares = histogram[histogram > 0]
    entropy = max(0.0, -(shares * shares.log()).sum().item())   # max: no "-0.0" for a single digit
    return {"histogram": histogram.tolist(), "entropy": entropy, "max_entropy": math.log(10),
            "covered": int((histogram >= min_share).sum()), "confidence": probs.max(dim=1).values.mean().item()}
