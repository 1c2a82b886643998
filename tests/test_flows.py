"""unsuplab.models.flows: the flows are invertible and their log-determinants are the Jacobians' (checked
by autograd), their densities integrate to 1; MADE is autoregressive (checked by gradients) and its
probabilities sum to 1 over every binary vector; the baselines' likelihoods are exact."""

import itertools
import math

import pytest
import torch

from unsuplab.models import flows, vae


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: one thread is faster, and far faster when other jobs share the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def randomised(module: torch.nn.Module, seed: int = 0, std: float = 0.3) -> torch.nn.Module:
    """The module with every parameter redrawn (a coupling starts as the identity: nothing to test)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(std * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return module


def log_abs_det_jacobian(fn, x: torch.Tensor) -> torch.Tensor:
    """log |det d fn / d x| of each row of x (B, D), by autograd: (B,)."""
    return torch.stack([torch.linalg.slogdet(torch.autograd.functional.jacobian(fn, row))[1] for row in x])


# ---------------------------------------------------------------------------------------------
# Flows
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("mask", [[1.0, 0.0], [0.0, 1.0, 1.0, 0.0, 1.0]])
def test_coupling_log_det_is_the_jacobians_and_it_inverts(mask):
    layer = randomised(flows.AffineCoupling(torch.tensor(mask), hidden=8)).double()
    x = torch.randn(5, len(mask), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    y, log_det = layer(x)
    expected = log_abs_det_jacobian(lambda v: layer(v[None])[0][0], x)
    torch.testing.assert_close(log_det, expected)
    torch.testing.assert_close(layer.inverse(y), x, atol=1e-5, rtol=0)
    kept = torch.tensor(mask).bool()
    torch.testing.assert_close(y[:, kept], x[:, kept])               # b * x passes through unchanged


def test_a_new_coupling_is_the_identity():
    layer = flows.AffineCoupling(torch.tensor([1.0, 0.0, 1.0]))
    x = torch.randn(4, 3)
    y, log_det = layer(x)
    assert torch.equal(y, x) and torch.equal(log_det, torch.zeros(4))


@pytest.mark.parametrize("options", [dict(dim=4), dict(dim=4, image_shape=(2, 2), logit_alpha=0.05, actnorm=True)])
def test_flow_log_prob_is_the_change_of_variables_and_the_flow_inverts(options):
    flow = flows.RealNVP(n_layers=3, hidden=8, **options)
    x = torch.rand(64, 4, generator=torch.Generator().manual_seed(2))
    flow(x)                                                           # ActNorm initialises on its first batch
    flow = randomised(flow, seed=3).double().eval()
    x = x[:6].double()
    z, log_det = flow(x)
    torch.testing.assert_close(log_det, log_abs_det_jacobian(lambda v: flow(v[None])[0][0], x))
    base = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(1)
    torch.testing.assert_close(flow.log_prob(x), base + log_det)
    torch.testing.assert_close(flow.inverse(z), x, atol=1e-5, rtol=0)


def test_a_2d_flow_density_integrates_to_one():
    flow = randomised(flows.RealNVP(dim=2, n_layers=4, hidden=16), seed=4, std=0.2).double()
    axis = torch.linspace(-9, 9, 601, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(axis, axis, indexing="xy"), -1).reshape(-1, 2)
    with torch.no_grad():
        mass = flow.log_prob(grid).exp().sum().item() * (axis[1] - axis[0]).item() ** 2
    assert abs(mass - 1) < 1e-3, mass


def test_logit_transform_and_actnorm_log_dets_are_the_jacobians():
    y = torch.rand(4, 3, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    logit = flows.LogitTransform(0.05)
    torch.testing.assert_close(logit(y)[1], log_abs_det_jacobian(lambda v: logit(v[None])[0][0], y))
    torch.testing.assert_close(logit.inverse(logit(y)[0]), y)
    norm = flows.ActNorm(3).double()
    x = 5 + 3 * torch.randn(500, 3, dtype=torch.float64)
    out, log_det = norm(x)                                            # initialised on this batch
    torch.testing.assert_close(out.mean(0), torch.zeros(3, dtype=torch.float64), atol=1e-10, rtol=0)
    torch.testing.assert_close(out.std(0), torch.ones(3, dtype=torch.float64))
    torch.testing.assert_close(log_det[:2], log_abs_det_jacobian(lambda v: norm(v[None])[0][0], x[:2]))
    torch.testing.assert_close(norm.inverse(out), x)


def test_dequantization_and_bits_per_dim():
    x = torch.tensor([[0.0, 1.0, 128 / 255]])
    y = flows.dequantize(x.expand(1000, 3), torch.Generator().manual_seed(6))
    assert (y >= 0).all() and (y < 1).all()
    torch.testing.assert_close(torch.floor(y * 256), torch.tensor([0.0, 255.0, 128.0]).expand(1000, 3))
    assert flows.bits_per_dim(0.0, 784) == pytest.approx(8.0)         # the uniform density: 8 bits per pixel
    # a density that puts all its mass on one bin per pixel: 256 per dimension, so 0 bits
    assert flows.bits_per_dim(784 * math.log(256), 784) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="grey levels"):
        flows.dequantize(torch.full((2, 3), 255.0))


def test_train_flow_lowers_the_loss_and_resumes(tmp_path):
    torch.manual_seed(0)
    data = torch.randn(512, 2) * torch.tensor([2.0, 0.5]) + 1
    flow = flows.RealNVP(dim=2, n_layers=2, hidden=16)
    history = flows.train_flow(flow, data, steps=60, batch_size=64, lr=1e-2, lr_final=1e-3,
                               checkpoint=tmp_path / "flow.pt")
    assert all(math.isfinite(v) for v in history.steps["nll"])
    assert sum(history.steps["nll"][-10:]) < sum(history.steps["nll"][:10])
    again = flows.train_flow(flow, data, steps=60, checkpoint=tmp_path / "flow.pt")   # finished: not repeated
    assert again.steps["nll"] == history.steps["nll"]


def test_train_flow_on_dequantized_digits_takes_a_finite_step():
    torch.manual_seed(0)
    images = torch.randint(0, 256, (32, 1, 4, 4)).float() / 255
    flow = flows.RealNVP(dim=16, n_layers=2, hidden=8, image_shape=(4, 4), logit_alpha=1e-6, actnorm=True)
    history = flows.train_flow(flow, images, steps=3, batch_size=8, dequantize_data=True)
    assert len(history.steps["nll"]) == 3 and all(math.isfinite(v) for v in history.steps["nll"])
    samples = flow.sample(5)
    assert samples.shape == (5, 16) and torch.isfinite(samples).all()


def test_flow_errors_say_what_to_do():
    with pytest.raises(ValueError, match="dim >= 2"):
        flows.RealNVP(dim=1)
    with pytest.raises(ValueError, match="pixels"):
        flows.RealNVP(dim=10, image_shape=(3, 3))
    with pytest.raises(ValueError, match="models 2 dimensions"):
        flows.RealNVP(dim=2).log_prob(torch.zeros(4, 3))
    with pytest.raises(ValueError, match="both values"):
        flows.AffineCoupling(torch.ones(3))


# ---------------------------------------------------------------------------------------------
# MADE
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("hidden, direct", [((20,), False), ((30, 25), False), ((20,), True)])
def test_made_output_d_depends_only_on_inputs_before_d(hidden, direct):
    D = 8
    made = randomised(flows.MADE(D, hidden, seed=1, direct=direct), seed=7, std=1.0)
    x = torch.rand(1, D, requires_grad=True)
    for d in range(D):
        grad, = torch.autograd.grad(made(x)[0, d], x)
        assert torch.all(grad[0, d:] == 0), f"output {d} depends on inputs {torch.nonzero(grad[0, d:]).flatten() + d}"
        if d > 0:     # and MADE uses the inputs it may: output d sees some of x_<d
            assert grad[0, :d].abs().sum() > 0, f"output {d} sees none of the inputs before it"


def test_made_masks_follow_the_degrees():
    degrees = [torch.tensor([1, 2, 3]), torch.tensor([1, 2, 2, 1])]
    hidden, output = flows.made_masks(degrees)
    assert hidden.tolist() == [[1, 0, 0], [1, 1, 0], [1, 1, 0], [1, 0, 0]]        # m(k) >= d
    assert output.tolist() == [[0, 0, 0, 0], [1, 0, 0, 1], [1, 1, 1, 1]]          # d > m(k)
    drawn = flows.made_degrees(784, (500, 500), torch.Generator().manual_seed(0))
    assert drawn[1].min() >= 1 and drawn[1].max() <= 783 and drawn[2].min() >= drawn[1].min()


@pytest.mark.parametrize("direct", [False, True])
def test_made_probabilities_sum_to_one_over_every_binary_vector(direct):
    D = 6
    made = randomised(flows.MADE(D, (12,), direct=direct), seed=8, std=1.0).double()
    states = torch.tensor(list(itertools.product([0.0, 1.0], repeat=D)), dtype=torch.float64)   # (64, 6)
    with torch.no_grad():
        total = made.log_prob(states).exp().sum()
    torch.testing.assert_close(total, torch.tensor(1.0, dtype=torch.float64))


def test_made_samples_follow_its_probabilities():
    D = 3
    made = randomised(flows.MADE(D, (10,), direct=True), seed=9, std=1.5)
    states = torch.tensor(list(itertools.product([0.0, 1.0], repeat=D)))
    with torch.no_grad():
        p = made.log_prob(states).exp()
    x = made.sample(20_000, generator=torch.Generator().manual_seed(10))
    index = (x * torch.tensor([4.0, 2.0, 1.0])).sum(1).long()                       # the state's row in states
    freq = torch.bincount(index, minlength=8).float() / len(x)
    torch.testing.assert_close(freq, p, atol=0.015, rtol=0)


def test_an_untrained_made_gives_about_one_bit_per_pixel():
    torch.manual_seed(0)
    made = flows.MADE(784, (300,), direct=True)
    x = (torch.rand(64, 1, 28, 28) < 0.13).float()                                  # as sparse as binary digits
    with torch.no_grad():
        nll = -made.log_prob(x).mean().item()
    assert abs(nll - 784 * math.log(2)) < 0.05 * 784 * math.log(2), nll


def test_made_trains_with_chapter_5s_loop():
    # the lab trains MADE and the VAE with the same function, vae.train (dynamic binarization, Adam)
    torch.manual_seed(0)
    images = torch.rand(256, 1, 28, 28) ** 3
    made = flows.MADE(784, (32,), direct=True)
    history = vae.train(made, images, epochs=2, batch_size=64, lr=5e-3, progress_bar=False)
    nll = history.epochs["nll"]
    assert all(math.isfinite(v) for v in nll) and nll[-1] < nll[0]
    with pytest.raises(ValueError, match="binary pixels"):
        made.log_prob(torch.zeros(2, 10))


# ---------------------------------------------------------------------------------------------
# Independent pixels
# ---------------------------------------------------------------------------------------------

def test_independent_bernoulli_is_exact():
    x = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0], [1.0, 0.0]])
    model = flows.IndependentBernoulli().fit(x)
    torch.testing.assert_close(model.pi, torch.tensor([0.75, 0.25], dtype=torch.float64))
    expected = math.log(0.75) + math.log(0.75)                        # x = (1, 0)
    assert model.log_prob(x[:1]).item() == pytest.approx(expected)


def test_independent_categorical_is_normalised_and_fits_frequencies():
    g = torch.Generator().manual_seed(11)
    x = torch.randint(0, 4, (1000, 1, 2, 2), generator=g).float() / 255     # levels 0 .. 3 only
    model = flows.IndependentCategorical(pseudocount=0.0).fit(x)
    torch.testing.assert_close(model.log_p.exp().sum(1), torch.ones(4, dtype=torch.float64))
    frequency = (torch.round(x.flatten(1)[:, 0] * 255) == 2).double().mean()
    assert model.log_p[0, 2].exp().item() == pytest.approx(frequency.item())
    smoothed = flows.IndependentCategorical().fit(x)
    assert torch.isfinite(smoothed.log_prob(torch.ones(1, 1, 2, 2))).all()          # an unseen level: finite


def test_independent_models_sample_their_marginals():
    g = torch.Generator().manual_seed(12)
    x = torch.randint(0, 3, (2000, 3), generator=g).float() / 255
    x[:, 0] = 0.0
    cat = flows.IndependentCategorical(pseudocount=0.0).fit(x)
    draws = cat.sample(4000, generator=g)
    assert draws.shape == (4000, 3) and (draws[:, 0] == 0).all()
    assert abs((torch.round(draws[:, 1] * 255) == 2).float().mean() - 1 / 3) < 0.03
    coins = flows.IndependentBernoulli().fit(torch.tensor([[1.0, 0.0], [1.0, 1.0]]))
    flips = coins.sample(4000, generator=g)
    assert abs(flips[:, 1].mean().item() - 0.5) < 0.03 and flips[:, 0].mean().item() > 0.99
