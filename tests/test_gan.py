"""GAN losses, the alternating step, the toy, DCGAN/conditional GAN/InfoGAN/CycleGAN parts, the feature net
and the Fréchet distance: exact answers on tiny cases, and clear errors on bad input."""

import copy
import math

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F
from torch import nn

from unsuplab import metrics
from unsuplab.checks import CheckFailed
from unsuplab.models import gan
from unsuplab.models.mnist_classifier import MNISTClassifier, class_coverage, classify, train_classifier
from unsuplab.train import TrainingDiverged


# ----------------------------------------------------------------------------------- the game

def test_losses_are_the_value_function_and_binary_cross_entropy():
    g = torch.Generator().manual_seed(0)
    real, fake = torch.randn(7, generator=g) * 3, torch.randn(5, generator=g) * 3
    bce = (F.binary_cross_entropy_with_logits(real, torch.ones_like(real))
           + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake)))
    assert torch.allclose(gan.discriminator_loss(real, fake), bce, atol=1e-6)
    assert torch.allclose(gan.value_function(real, fake), -bce, atol=1e-6)
    # V from probabilities, eq. (6.1)
    v = torch.log(torch.sigmoid(real)).mean() + torch.log(1 - torch.sigmoid(fake)).mean()
    assert torch.allclose(gan.value_function(real, fake), v, atol=1e-5)


def test_generator_losses_exact_values_and_gradients():
    zero = torch.zeros(4)
    assert gan.generator_loss(zero).item() == pytest.approx(math.log(2), abs=1e-6)            # -log 1/2
    assert gan.generator_loss(zero, saturating=True).item() == pytest.approx(-math.log(2), abs=1e-6)
    # where D rejects the samples (logit -5), the saturating gradient is sigma(l), the other 1 - sigma(l)
    logit = torch.tensor([-5.0], requires_grad=True)
    (sat,) = torch.autograd.grad(gan.generator_loss(logit, saturating=True), logit)
    (ns,) = torch.autograd.grad(gan.generator_loss(logit), logit)
    assert sat.item() == pytest.approx(-torch.sigmoid(torch.tensor(-5.0)).item(), rel=1e-5)
    assert ns.item() == pytest.approx(-(1 - torch.sigmoid(torch.tensor(-5.0))).item(), rel=1e-5)
    assert abs(ns.item()) > 100 * abs(sat.item())


def test_losses_are_finite_for_confident_discriminators_and_any_shape():
    big = torch.tensor([-100.0, 100.0])
    for loss in (gan.discriminator_loss(big, big), gan.generator_loss(big), gan.generator_loss(big, True)):
        assert torch.isfinite(loss)
    assert gan.discriminator_loss(torch.full((2, 1, 7, 7), 50.0), torch.full((3, 1, 7, 7), -50.0)).item() < 1e-20


def test_value_at_the_optimal_discriminator_is_minus_log4_plus_2_jsd():
    # p_data = (3/4, 1/4) and p_g = (1/4, 3/4) on two points a, b, as equal-weight samples
    p, q = torch.tensor([0.75, 0.25]), torch.tensor([0.25, 0.75])
    d_star = gan.optimal_discriminator(p, q)                                    # eq. (6.2)
    assert torch.allclose(d_star, torch.tensor([0.75, 0.25]))
    logit = torch.log(d_star / (1 - d_star))
    real_points, fake_points = torch.tensor([0, 0, 0, 1]), torch.tensor([0, 1, 1, 1])
    value = gan.value_function(logit[real_points], logit[fake_points])
    m = (p + q) / 2
    jsd = 0.5 * (p * (p / m).log()).sum() + 0.5 * (q * (q / m).log()).sum()
    assert value.item() == pytest.approx(-math.log(4) + 2 * jsd.item(), abs=1e-6)  # eq. (6.3)
    # and p_g = p_data gives D* = 1/2 everywhere and V = -log 4
    assert torch.allclose(gan.optimal_discriminator(p, p), torch.full((2,), 0.5))


def test_loss_errors_speak_to_the_student():
    with pytest.raises(ValueError, match="same points"):
        gan.optimal_discriminator(torch.ones(3), torch.ones(2))
    with pytest.raises(ValueError, match=">= 0"):
        gan.optimal_discriminator(torch.tensor([-1.0]), torch.tensor([1.0]))
    with pytest.raises(TypeError, match="float tensor of discriminator logits"):
        gan.discriminator_loss(torch.ones(3, dtype=torch.long), torch.ones(3))
    with pytest.raises(ValueError, match="empty"):
        gan.generator_loss(torch.ones(0))


# --------------------------------------------------------------------------- the alternating step

def players(seed=0, lr=1e-2):
    torch.manual_seed(seed)
    G, D = gan.MLPGenerator(z_dim=3, hidden=8), gan.MLPDiscriminator(hidden=8)
    return (G, D, torch.optim.SGD(G.parameters(), lr=lr), torch.optim.SGD(D.parameters(), lr=lr),
            torch.randn(6, 2), torch.randn(6, 3))


def test_gan_step_updates_d_then_g_by_hand():
    G, D, opt_G, opt_D, x, z = players()
    G0, D0 = [p.clone() for p in G.parameters()], [p.clone() for p in D.parameters()]
    out = gan.gan_step(G, D, opt_G, opt_D, x, z)
    # D's step by hand: SGD on L_D at the old G and D
    d_params = list(D.parameters())
    with torch.no_grad():
        for p, p0 in zip(d_params, D0):
            p.copy_(p0)
    fake = G0_forward(G0, z)
    loss_D = gan.discriminator_loss(D(x), D(fake))
    grads = torch.autograd.grad(loss_D, d_params)
    D1 = [p0 - 1e-2 * gr for p0, gr in zip(D0, grads)]
    assert out["loss_D"].item() == pytest.approx(loss_D.item(), abs=1e-6)
    with torch.no_grad():
        for p, p1 in zip(d_params, D1):
            p.copy_(p1)
    # G's step by hand: SGD on the non-saturating loss through the updated D
    g_params = [p0.clone().requires_grad_(True) for p0 in G0]
    loss_G = gan.generator_loss(D(G0_forward(g_params, z)))
    grads = torch.autograd.grad(loss_G, g_params)
    assert out["loss_G"].item() == pytest.approx(loss_G.item(), abs=1e-6)
    for p, p0, gr in zip(G.parameters(), G0, grads):
        assert torch.allclose(p, p0 - 1e-2 * gr, atol=1e-6)


def G0_forward(params, z):
    """The toy generator's forward pass with explicit parameters (Linear, ReLU, Linear, ReLU, Linear)."""
    w1, b1, w2, b2, w3, b3 = params
    h = torch.relu(z @ w1.T + b1)
    h = torch.relu(h @ w2.T + b2)
    return h @ w3.T + b3


def test_check_gan_step_accepts_the_reference_and_catches_mistakes(capsys):
    gan.check_gan_step(gan.gan_step)
    assert "✓ gan_step matches" in capsys.readouterr().out

    def generator_first(G, D, opt_G, opt_D, x_real, z, saturating=False):
        fake = G(z)
        loss_G = gan.generator_loss(D(fake), saturating)
        opt_G.zero_grad(); loss_G.backward(); opt_G.step()
        loss_D = gan.discriminator_loss(D(x_real), D(G(z).detach()))
        opt_D.zero_grad(); loss_D.backward(); opt_D.step()
        return {"loss_D": loss_D, "loss_G": loss_G}

    with pytest.raises(CheckFailed, match="discriminator loss"):
        gan.check_gan_step(generator_first)

    def always_non_saturating(G, D, opt_G, opt_D, x_real, z, saturating=False):
        return gan.gan_step(G, D, opt_G, opt_D, x_real, z, saturating=False)

    with pytest.raises(CheckFailed, match="generator loss"):
        gan.check_gan_step(always_non_saturating)

    def stale_logits(G, D, opt_G, opt_D, x_real, z, saturating=False):
        fake = G(z)
        fake_logits = D(fake)
        loss_D = gan.discriminator_loss(D(x_real), fake_logits)   # no detach, and reused below
        opt_D.zero_grad(); loss_D.backward(retain_graph=True); opt_D.step()
        loss_G = gan.generator_loss(fake_logits, saturating)
        opt_G.zero_grad(); loss_G.backward(); opt_G.step()
        return {"loss_D": loss_D, "loss_G": loss_G}

    with pytest.raises(CheckFailed, match="inplace|updated D|weights"):
        gan.check_gan_step(stale_logits)


# ------------------------------------------------------------------------------------- the toy

def test_ring_of_gaussians_and_mode_coverage():
    modes = gan.ring_modes(8, 2.0)
    assert modes.shape == (8, 2) and torch.allclose(modes.norm(dim=1), torch.full((8,), 2.0))
    x, which = gan.ring_of_gaussians(4000, generator=torch.Generator().manual_seed(0))
    assert x.shape == (4000, 2) and which.shape == (4000,)
    assert ((x - modes[which]).std(0) - 0.02).abs().max() < 0.003
    full = gan.mode_coverage(x)
    assert full["covered"] == 8 and full["high_quality"] > 0.98 and sum(full["counts"]) <= 4000
    collapsed = gan.mode_coverage(modes[3].repeat(100, 1))
    assert collapsed["covered"] == 1 and collapsed["counts"][3] == 100 and collapsed["high_quality"] == 1.0
    assert gan.mode_coverage(torch.zeros(50, 2))["covered"] == 0  # the centre is no mode
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        gan.mode_coverage(torch.zeros(5, 3))


# ------------------------------------------------------------------------ DCGAN, InfoGAN, CycleGAN

def test_dcgan_shapes_range_and_initialisation():
    torch.manual_seed(0)
    G, D = gan.DCGANGenerator(z_dim=8, width=8), gan.DCGANDiscriminator(width=8, n_codes=10)
    x = G(torch.randn(5, 8))
    assert x.shape == (5, 1, 28, 28) and x.min() >= -1 and x.max() <= 1
    assert D(x).shape == (5,)
    assert D.q_logits(D.features(x)).shape == (5, 10)
    big = gan.DCGANDiscriminator(width=64)
    assert big.body[2].weight.std().item() == pytest.approx(0.02, rel=0.05)   # N(0, 0.02)
    assert not any(isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)) for m in list(G.modules()) + list(D.modules()))
    with pytest.raises(ValueError, match=r"\(B, 8\)"):
        G(torch.randn(5, 9))
    with pytest.raises(ValueError, match=r"\(B, C, 28, 28\)"):
        D(torch.randn(5, 1, 32, 32))
    with pytest.raises(RuntimeError, match="n_codes=10"):
        gan.DCGANDiscriminator(width=8).q_logits(torch.randn(5, 8))


def test_generate_is_in_unit_range_and_keeps_the_mode():
    G = gan.DCGANGenerator(z_dim=8, width=8).train()
    images = gan.generate(G, torch.randn(7, 8), batch_size=3)
    assert images.shape == (7, 1, 28, 28) and images.min() >= 0 and images.max() <= 1 and G.training
    assert torch.allclose(gan.to_unit(gan.to_signed(images)), images)


def conditional_players(seed=0, width=4, n_classes=5, z_dim=3):
    torch.manual_seed(seed)
    return gan.DCGANGenerator(z_dim + n_classes, width), gan.ProjectionDiscriminator(width, n_classes)


def test_conditional_gan_shapes_and_the_label_changes_both_players():
    G, D = conditional_players()
    noise, y = torch.randn(6, 3), torch.tensor([0, 1, 2, 3, 4, 0])
    z = gan.generator_input(noise, y, 5)
    assert z.shape == (6, 3 + 5) and torch.equal(z[:, :3], noise) and torch.equal(z[:, 3:], F.one_hot(y, 5).float())
    x = G(z)
    assert x.shape == (6, 1, 28, 28) and D(x, y).shape == (6,)
    # the label changes G's image for the same noise, and D's verdict on the same image
    same_noise = noise[:1].repeat(5, 1)
    images = gan.generate(G, gan.generator_input(same_noise, torch.arange(5), 5))
    assert all((images[i] - images[0]).abs().max() > 1e-4 for i in range(1, 5))
    with torch.no_grad():
        verdicts = torch.stack([D(x, torch.full((6,), c)) for c in range(5)])    # (5 labels, 6 images)
        h = D.features(x)
        # eq. (6.11) by hand: psi(h) + embed(y)^T h, and a label-free part equal to DCGAN's head
        assert torch.allclose(D(x, y), D.head(h).squeeze(1) + (D.embed.weight[y] * h).sum(1), atol=1e-6)
        assert torch.allclose(verdicts - verdicts[0], (D.embed.weight - D.embed.weight[0]) @ h.T, atol=1e-5)
    assert (verdicts - verdicts[0]).abs()[1:].min() > 0
    with pytest.raises(ValueError, match="judges pairs"):
        D(x)
    with pytest.raises(ValueError, match="one integer label per noise vector"):
        gan.generator_input(noise, y.float(), 5)


def test_conditional_gan_step_is_gan_step_with_the_label_given_to_both_players():
    G, D = conditional_players(seed=1)
    G_ref, D_ref = copy.deepcopy(G), copy.deepcopy(D)
    x, y, noise = torch.rand(6, 1, 28, 28) * 2 - 1, torch.tensor([4, 3, 2, 1, 0, 2]), torch.randn(6, 3)
    sgd = lambda m: torch.optim.SGD(m.parameters(), lr=0.05)                     # noqa: E731
    out = gan.conditional_gan_step(G, D, sgd(G), sgd(D), x, y, noise)

    class Given(nn.Module):          # the players of gan_step, each told the batch's labels
        def __init__(self, net, fn):
            super().__init__()
            self.net, self.fn = net, fn

        def forward(self, v):
            return self.fn(self.net, v)

    G_y = Given(G_ref, lambda net, z: net(gan.generator_input(z, y, 5)))
    D_y = Given(D_ref, lambda net, images: net(images, y))
    expected = gan.gan_step(G_y, D_y, sgd(G_ref), sgd(D_ref), x, noise)
    assert set(out) == {"loss_D", "loss_G"} and all(torch.isfinite(v) for v in out.values())
    for key in out:
        assert out[key].item() == pytest.approx(expected[key].item(), abs=1e-6)
    for mine, ref in ((G, G_ref), (D, D_ref)):
        assert all(torch.allclose(p, q, atol=1e-6) for p, q in zip(mine.parameters(), ref.parameters()))


def test_conditional_gan_step_lowers_the_discriminator_loss_it_steps_on():
    G, D = conditional_players(seed=2)
    G_before = copy.deepcopy(G)
    x, y, noise = torch.rand(8, 1, 28, 28) * 2 - 1, torch.arange(8) % 5, torch.randn(8, 3)
    y_fake = torch.tensor([1, 1, 2, 2, 3, 3, 4, 4])
    opt_D = torch.optim.SGD(D.parameters(), lr=1e-2)
    out = gan.conditional_gan_step(G, D, torch.optim.SGD(G.parameters(), lr=1e-2), opt_D, x, y, noise, y_fake)
    with torch.no_grad():
        fake = G_before(gan.generator_input(noise, y_fake, 5))          # the fakes D's step was taken on
        after = gan.discriminator_loss(D(x, y), D(fake, y_fake))
    assert torch.isfinite(out["loss_D"]) and after < out["loss_D"]
    assert any(not torch.equal(p, q) for p, q in zip(G.parameters(), G_before.parameters()))


def test_check_projection_logit_accepts_the_reference_and_names_mistakes(capsys):
    def mine(D, x, y):
        h = D.features(x)
        return D.head(h).squeeze(1) + (D.embed(y) * h).sum(1)

    gan.check_projection_logit(mine)
    assert "✓ projection_logit matches the reference" in capsys.readouterr().out
    with pytest.raises(CheckFailed, match=r"embed\(y\)\^T h"):
        gan.check_projection_logit(lambda D, x, y: D.head(D.features(x)).squeeze(1))
    with pytest.raises(CheckFailed, match=r"shape \(B,\)"):
        gan.check_projection_logit(lambda D, x, y: D.head(D.features(x)) + (D.embed(y) * D.features(x)).sum(1, True))
    with pytest.raises(CheckFailed, match="own class vector"):
        gan.check_projection_logit(lambda D, x, y: D.head(D.features(x)).squeeze(1) + D.embed(y) @ D.features(x).T)
    with pytest.raises(CheckFailed, match="carries gradients"):
        gan.check_projection_logit(lambda D, x, y: mine(D, x, y).detach())


def test_infogan_step_trains_q_to_recover_the_code():
    torch.manual_seed(0)
    G, D = gan.DCGANGenerator(z_dim=4 + 3, width=4), gan.DCGANDiscriminator(width=4, n_codes=3)
    opt_G, opt_D = torch.optim.Adam(G.parameters(), 1e-2), torch.optim.Adam(D.parameters(), 1e-2)
    q_before = [p.clone() for p in D.q_head.parameters()]
    codes = torch.tensor([0, 1, 2, 0, 1, 2])
    out = gan.infogan_step(G, D, opt_G, opt_D, torch.rand(6, 1, 28, 28) * 2 - 1, torch.randn(6, 4), codes)
    assert set(out) == {"loss_D", "loss_G", "info"} and all(torch.isfinite(v) for v in out.values())
    assert any(not torch.equal(a, b) for a, b in zip(q_before, D.q_head.parameters()))
    assert torch.equal(gan.one_hot_codes(codes, 3)[:3], torch.eye(3))


def test_thicken_is_a_dilation():
    x = torch.zeros(1, 1, 7, 7)
    x[0, 0, 3, 3] = 1.0
    y = gan.thicken(x)
    assert y.sum().item() == 9 and y[0, 0, 2:5, 2:5].eq(1).all()
    assert torch.equal(gan.thicken(torch.full((2, 1, 5, 5), -1.0)), torch.full((2, 1, 5, 5), -1.0))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        gan.thicken(torch.zeros(7, 7))
    with pytest.raises(ValueError, match="odd"):
        gan.thicken(x, size=2)


class Scale(nn.Module):
    def __init__(self, value):
        super().__init__()
        self.s = nn.Parameter(torch.tensor(float(value)))

    def forward(self, x):
        return self.s * x


def test_cyclegan_step_cycle_loss_and_shapes():
    assert gan.Translator(width=4, n_blocks=1)(torch.zeros(2, 1, 28, 28)).shape == (2, 1, 28, 28)
    assert gan.PatchDiscriminator(width=4)(torch.zeros(2, 1, 28, 28)).shape == (2, 1, 7, 7)
    # G_ab = 2x and G_ba = x/2 are exact inverses: the cycle loss is 0; with 2x and 2x it is mean|3a| + mean|3b|
    a, b = torch.randn(3, 1, 28, 28), torch.randn(3, 1, 28, 28)
    for s_ba, expected in ((0.5, 0.0), (2.0, (3 * a).abs().mean().item() + (3 * b).abs().mean().item())):
        G_ab, G_ba = Scale(2.0), Scale(s_ba)
        D_a, D_b = gan.PatchDiscriminator(width=4), gan.PatchDiscriminator(width=4)
        opt_G = torch.optim.SGD(list(G_ab.parameters()) + list(G_ba.parameters()), lr=0.0)
        opt_D = torch.optim.SGD(list(D_a.parameters()) + list(D_b.parameters()), lr=0.0)
        out = gan.cyclegan_step(G_ab, G_ba, D_a, D_b, opt_G, opt_D, a, b)
        assert out["cycle"].item() == pytest.approx(expected, abs=1e-5)


# --------------------------------------------------------------------------- the packaged loop

def test_run_steps_resumes_to_the_same_weights_and_stops_on_nan(tmp_path):
    def make():
        torch.manual_seed(0)
        G, D = gan.MLPGenerator(z_dim=2, hidden=8), gan.MLPDiscriminator(hidden=8)
        return G, D, torch.optim.Adam(G.parameters(), 1e-2), torch.optim.Adam(D.parameters(), 1e-2)

    def stepper(G, D, opt_G, opt_D, g):
        def step(_):
            x = gan.ring_of_gaussians(8, generator=g)[0]
            return gan.gan_step(G, D, opt_G, opt_D, x, torch.randn(8, 2, generator=g))
        return step

    G1, D1, oG, oD = make()
    g = torch.Generator().manual_seed(1)
    log = gan.run_steps(stepper(G1, D1, oG, oD, g), 6, generator=g)
    assert log.steps["step"] == [1, 2, 3, 4, 5, 6] and len(log.steps["loss_D"]) == 6

    G2, D2, oG, oD = make()
    g = torch.Generator().manual_seed(1)
    ckpt = tmp_path / "toy.pt"
    state = {"G": G2, "D": D2, "opt_G": oG, "opt_D": oD}
    gan.run_steps(stepper(G2, D2, oG, oD, g), 3, checkpoint=ckpt, state=state, generator=g, checkpoint_every=3)
    G3, D3, oG, oD = make()                               # a fresh session: new objects, the same file
    g = torch.Generator().manual_seed(123)                # the saved random stream replaces this one
    state = {"G": G3, "D": D3, "opt_G": oG, "opt_D": oD}
    log = gan.run_steps(stepper(G3, D3, oG, oD, g), 6, checkpoint=ckpt, state=state, generator=g)
    assert log.steps["step"] == [1, 2, 3, 4, 5, 6] and log.seconds > 0     # the history came back with the state
    for p, q in zip(list(G1.parameters()) + list(D1.parameters()), list(G3.parameters()) + list(D3.parameters())):
        assert torch.allclose(p, q, atol=1e-6)

    with pytest.raises(TrainingDiverged, match="loss_D is nan at step 1"):
        gan.run_steps(lambda step: {"loss_D": torch.tensor(float("nan"))}, 3, desc="toy")
    stopped = gan.run_steps(lambda step: {"loss": step}, 10, until=lambda: True)    # an early stop
    assert stopped.steps == {"step": [1], "loss": [1.0]}


# ------------------------------------------------------------------ the feature net and Fréchet

def test_frechet_distance_closed_forms():
    # 1-D: (mu1 - mu2)^2 + (s1 - s2)^2
    assert metrics.gaussian_frechet_distance([1.0], [[4.0]], [3.0], [[9.0]]) == pytest.approx(4 + 1)
    # diagonal covariances commute: ||mu1 - mu2||^2 + sum (sqrt(a_i) - sqrt(b_i))^2
    a, b = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    expected = 3.0 + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    assert metrics.gaussian_frechet_distance(np.zeros(3), np.diag(a), np.array([1.0, 1.0, 1.0]), np.diag(b)) \
        == pytest.approx(expected)
    # general covariances: pytorch-fid's formula with scipy's matrix square root
    rng = np.random.default_rng(0)
    m1, m2 = rng.normal(size=(5, 5)), rng.normal(size=(5, 5))
    s1, s2, mu1, mu2 = m1 @ m1.T, m2 @ m2.T, rng.normal(size=5), rng.normal(size=5)
    ref = ((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * scipy.linalg.sqrtm(s1 @ s2).real)
    assert metrics.gaussian_frechet_distance(mu1, s1, mu2, s2) == pytest.approx(ref, rel=1e-6)


def test_frechet_distance_of_samples():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(500, 4))
    assert metrics.frechet_distance(x, x) == pytest.approx(0.0, abs=1e-8)
    # samples of N(0, I) and N(1, 4 I) in 2-D: 2 * 1 + 2 * (2 - 1)^2 = 4
    a, b = rng.normal(size=(40_000, 2)), 1 + 2 * rng.normal(size=(40_000, 2))
    assert metrics.frechet_distance(torch.from_numpy(a), torch.from_numpy(b)) == pytest.approx(4.0, rel=0.02)
    with pytest.raises(ValueError, match="same feature network"):
        metrics.frechet_distance(a[:, :1], b)
    with pytest.raises(ValueError, match="at least 2 rows"):
        metrics.frechet_distance(a[:1], b[:1])
    with pytest.raises(ValueError, match="NaN or inf"):
        metrics.frechet_distance(np.full((3, 2), np.nan), b)
    with pytest.raises(ValueError, match="symmetric"):
        metrics.gaussian_frechet_distance([0.0, 0.0], [[1.0, 0.5], [0.0, 1.0]], [0.0, 0.0], np.eye(2))


def test_feature_net_shapes_coverage_and_errors(tmp_path):
    net = MNISTClassifier(width=4, feature_dim=6)
    f, p = classify(net, torch.rand(5, 1, 28, 28), batch_size=2)
    assert f.shape == (5, 6) and p.shape == (5, 10) and torch.allclose(p.sum(1), torch.ones(5))
    with pytest.raises(ValueError, match=r"\(x \+ 1\) / 2"):
        classify(net, torch.rand(5, 1, 28, 28) * 2 - 1)
    with pytest.raises(ValueError, match=r"\(N, 1, 28, 28\)"):
        net(torch.rand(5, 28, 28))
    one_digit = F.one_hot(torch.full((10,), 3), 10).float()
    cov = class_coverage(one_digit)
    assert cov["covered"] == 1 and cov["entropy"] == 0.0 and cov["confidence"] == 1.0
    uniform = class_coverage(F.one_hot(torch.arange(10).repeat(3), 10).float())
    assert uniform["covered"] == 10 and uniform["entropy"] == pytest.approx(math.log(10))
    x, y = torch.rand(32, 1, 28, 28), torch.arange(32) % 10
    ckpt = tmp_path / "net.pt"
    first = train_classifier(x, y, epochs=1, batch_size=16, width=4, feature_dim=6, checkpoint=ckpt)
    again = train_classifier(x, y, epochs=1, batch_size=16, width=4, feature_dim=6, checkpoint=ckpt)
    assert all(torch.equal(a, b) for a, b in zip(first.parameters(), again.parameters()))
    with pytest.raises(ValueError, match="labels"):
        train_classifier(x, y[:3], epochs=1)


def test_the_infogan_ablation_script_runs_and_appends_its_curve(tmp_path):
    # a tiny run of benchmarks/infogan_ablation.py: the committed lines come from runs of 800 to 1,600 steps
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "infogan_ablation.py"
    out = tmp_path / "ablation.jsonl"
    subprocess.run([sys.executable, str(script), "--arch", "new", "--gfc", "32", "--dfc", "32", "--steps", "2",
                    "--evals", "2", "--threads", "1", "--out", str(out), "--checkpoints", str(tmp_path)],
                   check=True, capture_output=True, text=True, timeout=600)
    line = json.loads(out.read_text().splitlines()[-1])
    assert line["args"]["gfc"] == 32 and [point["step"] for point in line["curve"]] == [2]
    assert 0 <= line["curve"][0]["acc"] <= 1 and line["steps_per_s"] > 0
