"""unsuplab.models.ebm: Langevin samples a known energy correctly, and contrastive training of an
exponential-family energy recovers the maximum-likelihood answer."""

import math

import pytest
import torch
from torch import nn

from unsuplab.models import ebm


class Quadratic(nn.Module):
    """E(x) = |x - m|^2 / (2 s^2): p is N(m, s^2 I), so mean and variance are known exactly."""

    def __init__(self, m, log_s):
        super().__init__()
        self.m = nn.Parameter(torch.as_tensor(m, dtype=torch.float32))
        self.log_s = nn.Parameter(torch.as_tensor(log_s, dtype=torch.float32))

    def forward(self, x):
        return ((x - self.m) ** 2).sum(1) / (2 * torch.exp(2 * self.log_s))


def test_langevin_samples_a_gaussian_energy():
    torch.manual_seed(0)
    energy = Quadratic([1.0, -2.0], math.log(0.5))
    x = ebm.langevin(energy, torch.zeros(4000, 2), steps=400, step_size=0.01)
    torch.testing.assert_close(x.mean(0), torch.tensor([1.0, -2.0]), atol=0.03, rtol=0)
    torch.testing.assert_close(x.var(0), torch.tensor([0.25, 0.25]), atol=0.03, rtol=0)
    assert energy.m.requires_grad  # sampling leaves the parameters trainable


def test_langevin_without_noise_descends_the_energy():
    energy = Quadratic([0.0, 0.0], 0.0)
    x0 = torch.full((10, 2), 3.0)
    x = ebm.langevin(energy, x0, steps=50, step_size=0.1, noise=False)
    assert (energy(x) < energy(x0)).all()
    clamped = ebm.langevin(energy, torch.full((3, 2), 10.0), steps=1, step_size=0.1, clamp=(-4, 4))
    assert clamped.max() <= 4


def test_contrastive_gradient_is_data_minus_model_term():
    # eq. (10.2) with alpha=0: grad = mean grad E(data) - mean grad E(samples)
    energy = Quadratic([0.5, 0.5], 0.0)
    x_data, x_model = torch.randn(64, 2), torch.randn(64, 2) + 1
    loss, _ = ebm.contrastive_loss(energy, x_data, x_model, alpha=0.0)
    loss.backward()
    # dE/dm = -(x - m) / s^2 with s = 1
    expected = -(x_data - energy.m.detach()).mean(0) + (x_model - energy.m.detach()).mean(0)
    torch.testing.assert_close(energy.m.grad, expected)


def test_training_a_gaussian_energy_recovers_the_data_mean_and_spread():
    # With a Gaussian energy the maximum-likelihood answer is the data's mean and standard deviation.
    torch.manual_seed(0)
    data = torch.randn(5000, 2) * 0.7 + torch.tensor([1.5, -1.0])
    energy = Quadratic([0.0, 0.0], 0.0)
    # no chains restarted from noise: their unmixed samples would bias the fit (see train_ebm)
    ebm.train_ebm(energy, data, steps=300, batch_size=512, lr=0.02, langevin_steps=10, step_size=0.05,
                  alpha=0.0, reinit=0.0, seed=0)
    torch.testing.assert_close(energy.m.detach(), data.mean(0), atol=0.05, rtol=0)
    assert abs(energy.log_s.exp().item() - data.std(0).mean().item()) < 0.05


def test_energy_mlp_checks_shapes_and_grid_is_a_density():
    torch.manual_seed(0)
    net = ebm.EnergyMLP(2, hidden=16)
    with pytest.raises(ValueError, match=r"expected points of shape \(N, D\)"):
        net(torch.zeros(2, 2, 2))
    density, axis = ebm.energy_grid(net, lim=3.0, n=50)
    assert density.shape == (50, 50) and axis.shape == (50,)
    cell = (axis[1] - axis[0]) ** 2
    assert float(density.sum() * cell) == pytest.approx(1.0, abs=1e-4)


def test_diverging_training_stops_with_a_message():
    class Broken(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(1))

        def forward(self, x):
            return self.w * x.sum(1) * float("nan")

    from unsuplab.train import TrainingDiverged

    with pytest.raises(TrainingDiverged, match="EBM loss is nan at step 1"):
        ebm.train_ebm(Broken(), torch.randn(10, 2), steps=3, batch_size=4, langevin_steps=1)


def test_langevin_step_is_eq_10_3_and_mask_holds_pixels_fixed():
    energy = Quadratic([0.0, 0.0], 0.0)                       # dE/dx = x
    x, xi = torch.tensor([[2.0, -1.0]]), torch.tensor([[0.1, 0.2]])
    torch.testing.assert_close(ebm.langevin_step(energy, x, 0.5, xi), x - 0.25 * x + xi)
    clipped = ebm.langevin_step(energy, x, 0.5, torch.zeros(1, 2), grad_clip=0.5)
    torch.testing.assert_close(clipped, x - 0.25 * torch.tensor([[0.5, -0.5]]))
    mask = torch.tensor([[1.0, 0.0]])
    moved = ebm.langevin(energy, torch.full((5, 2), 3.0), steps=20, step_size=0.1, mask=mask)
    assert (moved[:, 1] == 3.0).all() and (moved[:, 0] != 3.0).all()


def test_log_likelihood_on_the_grid_matches_a_gaussian_exactly():
    # E = |x - m|^2 / (2 s^2) is N(m, s^2 I) up to Z: the grid's log Z and log-likelihood must match
    energy = Quadratic([0.5, -0.3], math.log(0.6))
    x = torch.randn(200, 2) * 0.6 + torch.tensor([0.5, -0.3])
    exact = torch.distributions.Normal(energy.m.detach(), 0.6).log_prob(x).sum(1).mean().item()
    assert ebm.log_partition_grid(energy, lim=4.0, n=300) == pytest.approx(math.log(2 * math.pi * 0.36), abs=1e-3)
    assert ebm.log_likelihood_2d(energy, x, lim=4.0, n=300) == pytest.approx(exact, abs=1e-3)


def test_energy_cnn_scores_images_and_checks_their_shape():
    net = ebm.EnergyCNN(width=4)
    assert net(torch.zeros(3, 1, 28, 28)).shape == (3,)
    with pytest.raises(ValueError, match=r"expected images of shape \(N, 1, 28, 28\)"):
        net(torch.zeros(3, 784))


def test_interrupted_training_resumes_to_the_same_model(tmp_path):
    # 6 steps at once, and 3 + 3 with a checkpoint between: the same energy and the same buffer
    data = torch.randn(200, 2)

    def run(steps, checkpoint):
        torch.manual_seed(0)
        net = ebm.EnergyMLP(2, hidden=8)
        return net, ebm.train_ebm(net, data, steps=steps, batch_size=16, langevin_steps=2, seed=3,
                                  buffer_size=64, checkpoint=checkpoint)

    whole, (history, buffer) = run(6, tmp_path / "whole.pt")
    run(3, tmp_path / "split.pt")
    split, (history_split, buffer_split) = run(6, tmp_path / "split.pt")
    assert len(history_split.steps["loss"]) == 6 and history_split.steps["loss"] == pytest.approx(history.steps["loss"])
    for a, b in zip(whole.parameters(), split.parameters()):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(buffer.points, buffer_split.points)
