"""Autoencoders (chapter 4) against exact answers on tiny cases: the linear autoencoder finds the PCA
subspace, the penalties equal their closed forms, masking noise masks the stated fraction, the AUROC
agrees with scikit-learn, and layer-wise training freezes what it has trained."""

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score

from unsuplab.models.autoencoder import (Autoencoder, ConvAutoencoder, _LayerPair, auroc,
                                         autoencoder_loss, binary_cross_entropy, encode_batched, gaussian_noise,
                                         grid_2d, kl_bernoulli, kl_sparsity_penalty, l1_penalty, mask_noise,
                                         principal_angles, reconstruction_error, reconstruction_loss,
                                         squared_error, train_autoencoder, train_layerwise)
from unsuplab.models.baselines import PCA
from unsuplab.train import TensorBatches, fit


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    monkeypatch.setenv("UNSUPLAB_PROGRESS", "0")
    torch.manual_seed(0)


# ------------------------------------------------------------------ shapes and input checks

def test_shapes_of_the_mlp_and_the_conv_autoencoder():
    x = torch.rand(5, 1, 28, 28)
    ae = Autoencoder(784, (64, 32), 8)
    assert ae.encode(x).shape == (5, 8)
    assert ae.decode(ae.encode(x)).shape == (5, 784)
    assert ae(x).shape == x.shape and ae(x.reshape(5, -1)).shape == (5, 784)
    assert 0 < ae(x).min() and ae(x).max() < 1  # sigmoid output
    conv = ConvAutoencoder(code_dim=8, channels=(4, 8))
    assert conv.encode(x).shape == (5, 8)
    assert conv.decode_logits(conv.encode(x)).shape == x.shape
    assert conv(x.reshape(5, -1)).shape == (5, 784)
    # single-layer autoencoder: the filters are the rows of the only encoder layer
    shallow = Autoencoder(784, (), 16, code_activation="sigmoid")
    assert shallow.filters().shape == (16, 784) and len(shallow.encoder) == len(shallow.decoder) == 1


def test_clear_errors_on_bad_input():
    with pytest.raises(ValueError, match="expected inputs with 784 values"):
        Autoencoder(784, (8,), 2).encode(torch.rand(3, 1, 14, 14))
    with pytest.raises(ValueError, match=r"\(B, 1, 28, 28\)"):
        ConvAutoencoder(4, (2, 2)).encode(torch.rand(3, 1, 32, 32))
    with pytest.raises(ValueError, match="activation must be one of"):
        Autoencoder(10, (4,), 2, activation="swishy")
    with pytest.raises(ValueError, match="at least one unit"):
        Autoencoder(10, (4,), 0)
    with pytest.raises(ValueError, match="output='sigmoid'"):
        reconstruction_loss(Autoencoder(10, (4,), 2, output="linear"), torch.rand(3, 10), loss="bce")
    with pytest.raises(ValueError, match="'bce'.*'se'"):
        autoencoder_loss(Autoencoder(10, (4,), 2), torch.rand(3, 10), loss="mse")
    with pytest.raises(ValueError, match="sparsity must be"):
        autoencoder_loss(Autoencoder(10, (4,), 2), torch.rand(3, 10), sparsity=("kl", 1.0))


# ------------------------------------------------------------------ losses (eqs. 4.2, 4.3)

def test_losses_equal_their_formulas():
    g = torch.Generator().manual_seed(1)
    x, a = torch.rand(4, 6, generator=g), 3 * torch.randn(4, 6, generator=g)
    x_hat = torch.sigmoid(a)
    assert torch.allclose(squared_error(x_hat, x), ((x - x_hat) ** 2).sum(1))
    by_hand = -(x * torch.log(x_hat) + (1 - x) * torch.log(1 - x_hat)).sum(1)
    assert torch.allclose(binary_cross_entropy(a, x), by_hand, atol=1e-5)
    # computed from the logits, it stays finite where sigmoid(a) rounds to exactly 0 or 1
    extreme = binary_cross_entropy(torch.tensor([[200.0, -200.0]]), torch.tensor([[0.0, 1.0]]))
    assert torch.isfinite(extreme).all() and extreme.item() == pytest.approx(400.0)
    # the model-level loss is the same number
    ae = Autoencoder(6, (5,), 3)
    assert torch.allclose(reconstruction_loss(ae, x, loss="bce"),
                          binary_cross_entropy(ae.decode_logits(ae.encode(x)), x))
    assert torch.allclose(reconstruction_loss(ae, x, loss="se"), squared_error(ae(x), x))


def test_losses_and_penalties_sum_half_precision_in_float32():
    # under mixed precision (bfloat16 on a GPU) a sum over 784 pixels must not be done in bfloat16
    x, x_hat = torch.rand(4, 784), torch.rand(4, 784)
    assert squared_error(x_hat.bfloat16(), x.bfloat16()).dtype == torch.float32
    assert binary_cross_entropy(x_hat.bfloat16(), x.bfloat16()).dtype == torch.float32
    assert kl_sparsity_penalty(x_hat.bfloat16(), 0.1).dtype == torch.float32
    assert squared_error(x_hat.double(), x.double()).dtype == torch.float64  # wider types are kept


# ------------------------------------------------------------------ linear autoencoder = PCA (eq. 4.4)

def test_linear_autoencoder_with_squared_error_recovers_the_pca_subspace():
    g = torch.Generator().manual_seed(2)
    n, d, k = 512, 6, 2
    basis = torch.linalg.qr(torch.randn(d, d, generator=g))[0]
    scales = torch.tensor([3.0, 2.0, 0.5, 0.4, 0.3, 0.2])           # a clear gap after the 2nd direction
    x = (torch.randn(n, d, generator=g) * scales) @ basis.T + 1.0
    ae = Autoencoder(d, (), k, activation=None, code_activation=None, output="linear")
    train_autoencoder(ae, x, epochs=200, batch_size=n, lr=0.05, loss="se", progress_bar=False)  # full batch
    pca = PCA(k).fit(x)
    angles = principal_angles(ae.decoder[0].weight.detach(), pca.components_.T)
    assert angles.max().item() < 0.01, f"principal angles {angles.tolist()}"
    # and the reconstruction error reaches PCA's: the sum of the discarded eigenvalues
    err_ae = squared_error(ae(x).detach(), x).mean().item()
    err_pca = squared_error(pca.inverse_transform(pca.transform(x)), x).mean().item()
    assert err_ae == pytest.approx(err_pca, rel=2e-3)
    assert err_pca == pytest.approx(PCA().fit(x).explained_variance_[k:].sum().item() * (n - 1) / n, rel=1e-4)


def test_principal_angles_of_known_subspaces():
    e = torch.eye(4)
    assert torch.allclose(principal_angles(e[:, :2], e[:, :2] @ torch.tensor([[2.0, 1.0], [0.0, 3.0]])),
                          torch.zeros(2, dtype=torch.float64), atol=1e-6)
    assert torch.allclose(principal_angles(e[:, :2], e[:, 2:]), torch.full((2,), math.pi / 2, dtype=torch.float64))


# ------------------------------------------------------------------ sparsity penalties (eqs. 4.5, 4.6)

def test_kl_sparsity_penalty_equals_its_closed_form():
    h = torch.tensor([[0.1, 0.5, 0.05], [0.3, 0.5, 0.05]])          # rho_hat = (0.2, 0.5, 0.05)
    rho = 0.05

    def kl(p, q):
        return p * math.log(p / q) + (1 - p) * math.log((1 - p) / (1 - q))

    expected = kl(rho, 0.2) + kl(rho, 0.5) + kl(rho, 0.05)
    assert kl_sparsity_penalty(h, rho).item() == pytest.approx(expected, rel=1e-5)
    assert kl_bernoulli(0.3, torch.tensor([0.3])).item() == pytest.approx(0.0, abs=1e-7)
    # a dead unit (rho_hat = 0) gives a large but finite penalty
    assert torch.isfinite(kl_sparsity_penalty(torch.zeros(4, 2), rho))
    # the gradient pushes each rho_hat toward rho
    h = torch.tensor([[0.4, 0.01], [0.2, 0.03]], requires_grad=True)
    kl_sparsity_penalty(h, 0.1).backward()
    assert (h.grad[:, 0] > 0).all() and (h.grad[:, 1] < 0).all()


def test_sparsity_penalty_errors_and_l1():
    with pytest.raises(ValueError, match="sigmoid code units"):
        kl_sparsity_penalty(torch.tensor([[1.5, 0.2]]), 0.05)
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        kl_sparsity_penalty(torch.rand(3, 2), 1.0)
    assert l1_penalty(torch.tensor([[1.0, -2.0], [0.0, 3.0]])).item() == pytest.approx(3.0)
    ae = Autoencoder(10, (), 4, code_activation="sigmoid")
    x = torch.rand(8, 10)
    loss, parts = autoencoder_loss(ae, x, loss="bce", sparsity=("kl", 3.0, 0.05))
    h = ae.encode(x)
    assert parts["penalty"].item() == pytest.approx(3.0 * kl_sparsity_penalty(h, 0.05).item(), rel=1e-5)
    assert loss.item() == pytest.approx(parts["recon"].item() + parts["penalty"].item(), rel=1e-6)


# ------------------------------------------------------------------ corruption (eq. 4.8)

def test_masking_noise_zeros_the_stated_fraction_in_every_example():
    g = torch.Generator().manual_seed(3)
    x = 0.5 + 0.5 * torch.rand(64, 1, 28, 28, generator=g)          # no zeros to begin with
    before = x.clone()
    for nu in (0.0, 0.1, 0.25, 0.5, 0.9, 1.0):
        x_tilde = mask_noise(x, nu, generator=torch.Generator().manual_seed(4))
        assert x_tilde.shape == x.shape
        zeros = (x_tilde.reshape(64, -1) == 0).sum(1)
        assert (zeros == round(nu * 784)).all(), f"nu = {nu}: zeros per image {zeros.unique().tolist()}"
        kept = x_tilde != 0
        assert torch.equal(x_tilde[kept], x[kept])                   # the other pixels are untouched
    assert torch.equal(x, before)                                    # the input is not changed
    masks = mask_noise(torch.ones(64, 784), 0.5, generator=g) == 0
    assert len({tuple(m.nonzero().flatten().tolist()) for m in masks}) == 64  # a new mask per example
    same = [mask_noise(x, 0.3, generator=torch.Generator().manual_seed(5)) for _ in range(2)]
    assert torch.equal(*same)
    with pytest.raises(ValueError, match="between 0 and 1"):
        mask_noise(x, 1.5)


def test_gaussian_noise_has_the_stated_standard_deviation():
    x = torch.rand(200, 784, generator=torch.Generator().manual_seed(6))
    noise = gaussian_noise(x, 0.3, generator=torch.Generator().manual_seed(7)) - x
    assert noise.std().item() == pytest.approx(0.3, rel=0.01)
    assert abs(noise.mean().item()) < 0.003
    assert torch.equal(gaussian_noise(x, 0.0), x)
    with pytest.raises(ValueError, match=">= 0"):
        gaussian_noise(x, -0.1)


# ------------------------------------------------------------------ anomaly detection (eq. 4.9)

def test_auroc_matches_sklearn_with_and_without_ties():
    g = torch.Generator().manual_seed(8)
    for scores in (torch.randn(300, generator=g), torch.randint(0, 5, (300,), generator=g).float()):
        labels = torch.randint(0, 2, (300,), generator=g)
        assert auroc(scores, labels) == pytest.approx(roc_auc_score(labels.numpy(), scores.numpy()), abs=1e-12)
    assert auroc([0.1, 0.2, 0.9, 0.8], [0, 0, 1, 1]) == 1.0
    assert auroc([0.9, 0.8, 0.1, 0.2], [0, 0, 1, 1]) == 0.0
    assert auroc(np.ones(6), [0, 1, 0, 1, 0, 1]) == 0.5
    with pytest.raises(ValueError, match="both anomalies and normal"):
        auroc([0.1, 0.2], [0, 0])
    with pytest.raises(ValueError, match="one label per score"):
        auroc([0.1, 0.2, 0.3], [0, 1])
    with pytest.raises(ValueError, match="0/1"):
        auroc([0.1, 0.2], [0, 2])


def test_reconstruction_error_and_codes_are_batched_correctly():
    ae = Autoencoder(784, (16,), 4)
    x = torch.rand(10, 1, 28, 28)
    assert torch.allclose(reconstruction_error(ae, x, batch_size=3), squared_error(ae(x), x).detach(), atol=1e-5)
    assert torch.allclose(encode_batched(ae, x, batch_size=4), ae.encode(x).detach(), atol=1e-6)
    assert ae.training  # restored


def test_grid_2d_spans_the_codes():
    z = torch.stack([torch.linspace(-3, 3, 101), torch.linspace(0, 10, 101)], 1)
    grid = grid_2d(z, n=5, quantile=0.0)
    assert grid.shape == (25, 2)
    assert torch.allclose(grid[0], torch.tensor([-3.0, 10.0])) and torch.allclose(grid[-1], torch.tensor([3.0, 0.0]))
    assert torch.allclose(grid[:5, 1], torch.full((5,), 10.0))      # first row: top of the second coordinate
    with pytest.raises(ValueError, match="code_dim=2"):
        grid_2d(torch.rand(5, 3))


# ------------------------------------------------------------------ training

def test_denoising_and_sparse_training_lower_the_loss():
    # four binary prototypes of 20 pixels: redundant enough to be rebuilt from 75% of their pixels
    g = torch.Generator().manual_seed(9)
    prototypes = (torch.rand(4, 20, generator=g) > 0.5).float()
    x = prototypes[torch.randint(0, 4, (256,), generator=g)]
    ae = Autoencoder(20, (), 8, code_activation="sigmoid")
    start = autoencoder_loss(ae, x, corruption=("mask", 0.25))[1]["recon"].item()
    history = train_autoencoder(ae, x, epochs=30, batch_size=64, lr=2e-2, corruption=("mask", 0.25),
                                sparsity=("kl", 0.1, 0.2), progress_bar=False)
    assert history.epochs["recon"][-1] < 0.5 * start
    assert "penalty" in history.epochs


def test_layerwise_training_freezes_each_trained_pair():
    x = torch.rand(128, 30, generator=torch.Generator().manual_seed(10))
    model = Autoencoder(30, (12,), 4)
    twin = copy.deepcopy(model)
    before = reconstruction_error(model, x).mean().item()
    histories = train_layerwise(model, x, steps_per_layer=30, batch_size=32, lr=1e-2, progress_bar=False)
    assert len(histories) == 2 and all(len(h.steps["loss"]) == 30 for h in histories)
    assert reconstruction_error(model, x).mean().item() < before
    # pair 0 of the stacked model is exactly pair 0 trained alone: training pair 1 did not move it
    pair = _LayerPair(twin, 0)
    fit(pair, lambda p, b: autoencoder_loss(p, b, loss="bce"), TensorBatches(x, batch_size=32), epochs=8, lr=1e-2,
        max_steps=30, seed=0, progress_bar=False)
    assert torch.equal(model.encoder[0].weight, twin.encoder[0].weight)
    assert torch.equal(model.decoder[1].weight, twin.decoder[1].weight)
    assert not torch.equal(model.encoder[1].weight, twin.encoder[1].weight)  # pair 1 was trained too
    with pytest.raises(TypeError, match="needs an Autoencoder"):
        train_layerwise(ConvAutoencoder(4, (2, 2)), torch.rand(4, 1, 28, 28), steps_per_layer=1)


def test_bce_training_uses_the_logits():
    # a one-step check that the gradient of the loss is the textbook one: dL/da = (sigmoid(a) - x) / B
    ae = Autoencoder(5, (), 3)
    x = torch.rand(4, 5)
    a = ae.decode_logits(ae.encode(x)).detach().requires_grad_(True)
    binary_cross_entropy(a, x).mean().backward()
    assert torch.allclose(a.grad, (torch.sigmoid(a) - x).detach() / 4, atol=1e-6)
    assert F.binary_cross_entropy_with_logits(a, x, reduction="sum").item() == pytest.approx(
        binary_cross_entropy(a, x).sum().item(), rel=1e-6)
