"""Chapter 5: the ELBO's terms against closed forms, the importance-weighted estimator against a model
whose likelihood is exact, VQ-VAE's straight-through gradient, the sprite generator and MIG."""

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import mutual_info_score

from unsuplab import data, metrics
from unsuplab.models.vae import (VAE, VQVAE, LinearGaussian, VectorQuantizer, active_units,
                                 bernoulli_log_likelihood, binarize, codebook_perplexity, evaluate,
                                 gaussian_kl, gaussian_log_density, iwae_bound, log_importance_weights,
                                 log_likelihood, reparameterize, train)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These tensors are tiny: one thread is faster than two, and far faster when other jobs share
    the cores (two OpenMP threads then wait on each other for most of each step)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---------------------------------------------------------------------------------------------
# The terms of the ELBO
# ---------------------------------------------------------------------------------------------

def test_gaussian_kl_matches_torch_distributions_and_is_zero_only_at_the_prior():
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(6, 4, generator=g, dtype=torch.float64)
    logvar = torch.randn(6, 4, generator=g, dtype=torch.float64)
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    expected = torch.distributions.kl_divergence(q, p).sum(-1)
    torch.testing.assert_close(gaussian_kl(mu, logvar), expected)
    assert gaussian_kl(mu, logvar).shape == (6,)
    assert gaussian_kl(torch.zeros(3, 5), torch.zeros(3, 5)).abs().max() == 0
    # a hand-computed case: mu = 1, sigma^2 = e: 1/2 (1 + e - 1 - 1) = (e - 1) / 2
    one = torch.tensor([1.0])
    assert gaussian_kl(one, one).item() == pytest.approx((math.e - 1) / 2, rel=1e-6)


def test_gaussian_kl_matches_its_monte_carlo_estimate():
    # KL = E_q[log q(z) - log p(z)], estimated with 200,000 draws, within 4 standard errors
    torch.manual_seed(1)
    mu = torch.tensor([[0.7, -1.2, 0.1]], dtype=torch.float64)
    logvar = torch.tensor([[-0.5, 0.4, -1.5]], dtype=torch.float64)
    z = reparameterize(mu.expand(200_000, 3), logvar.expand(200_000, 3))
    terms = gaussian_log_density(z, mu, logvar) - gaussian_log_density(z)
    standard_error = terms.std().item() / math.sqrt(len(terms))
    assert abs(terms.mean().item() - gaussian_kl(mu, logvar).item()) < 4 * standard_error


def test_reparameterize_has_the_right_distribution_and_gradients():
    torch.manual_seed(2)
    mu = torch.tensor([1.0, -2.0]).repeat(100_000, 1)
    logvar = torch.tensor([0.0, math.log(0.25)]).repeat(100_000, 1)
    z = reparameterize(mu, logvar)
    torch.testing.assert_close(z.mean(0), torch.tensor([1.0, -2.0]), atol=0.02, rtol=0)
    torch.testing.assert_close(z.std(0), torch.tensor([1.0, 0.5]), atol=0.01, rtol=0)
    # dz/dmu = 1 and dz/dlogvar = sigma * eps / 2 = (z - mu) / 2
    mu1 = torch.randn(5, 3, requires_grad=True)
    logvar1 = torch.randn(5, 3, requires_grad=True)
    z1 = reparameterize(mu1, logvar1)
    z1.sum().backward()
    torch.testing.assert_close(mu1.grad, torch.ones(5, 3))
    torch.testing.assert_close(logvar1.grad, (z1 - mu1).detach() / 2)


def test_bernoulli_and_gaussian_log_densities_match_torch_distributions():
    g = torch.Generator().manual_seed(3)
    logits = 4 * torch.randn(2, 7, 10, generator=g)
    x = torch.bernoulli(torch.full((7, 10), 0.3), generator=g)
    expected = torch.distributions.Bernoulli(logits=logits).log_prob(x.expand_as(logits)).sum(-1)
    torch.testing.assert_close(bernoulli_log_likelihood(logits, x), expected)
    assert bernoulli_log_likelihood(logits, x).shape == (2, 7)
    # saturated logits stay finite (no log(0)): log p(x=1 | logit=-100) = -100
    saturated = bernoulli_log_likelihood(torch.tensor([[-100.0]]), torch.tensor([[1.0]]))
    assert saturated.item() == pytest.approx(-100.0)
    z, mu, logvar = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)
    normal = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    torch.testing.assert_close(gaussian_log_density(z, mu, logvar), normal.log_prob(z).sum(-1))
    torch.testing.assert_close(gaussian_log_density(z), torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1))


def test_binarize_draws_pixels_with_their_grey_level_and_rejects_bad_ranges():
    g = torch.Generator().manual_seed(4)
    x = torch.tensor([0.0, 0.25, 1.0]).repeat(40_000, 1)
    b = binarize(x, generator=g)
    assert set(b.unique().tolist()) <= {0.0, 1.0}
    torch.testing.assert_close(b.mean(0), torch.tensor([0.0, 0.25, 1.0]), atol=0.01, rtol=0)
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        binarize(torch.full((2, 2), 255.0))
    with pytest.raises(ValueError, match="divide uint8 images by 255"):
        binarize(torch.zeros(2, 2, dtype=torch.uint8))


# ---------------------------------------------------------------------------------------------
# The VAE
# ---------------------------------------------------------------------------------------------

def small_vae(**kwargs):
    torch.manual_seed(0)
    return VAE(image_shape=(1, 8, 8), hidden=(32,), z_dim=3, **kwargs)


def test_vae_elbo_is_assembled_from_its_terms():
    vae = small_vae(beta=3.0)
    x = binarize(torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(5)))
    torch.manual_seed(6)
    terms = vae.elbo(x)
    torch.manual_seed(6)   # the same eps: rebuild eq. 5.3 by hand
    mu, logvar = vae.encode(x)
    z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
    reconstruction = torch.distributions.Bernoulli(logits=vae.decode(z)).log_prob(x.reshape(5, 64)).sum(-1)
    torch.testing.assert_close(terms["reconstruction"], reconstruction)
    torch.testing.assert_close(terms["kl"], gaussian_kl(mu, logvar))
    torch.testing.assert_close(terms["elbo"], reconstruction - gaussian_kl(mu, logvar))
    torch.manual_seed(6)
    loss, logged = vae.loss(x)
    torch.testing.assert_close(loss, (-reconstruction + 3.0 * gaussian_kl(mu, logvar)).mean())
    torch.testing.assert_close(logged["neg_elbo"], -terms["elbo"].mean())


def test_vae_shapes_sampling_and_messages():
    vae = small_vae()
    x = torch.rand(4, 1, 8, 8)
    mu, logvar = vae.encode(x)
    assert mu.shape == logvar.shape == (4, 3)
    assert vae.encode(x.reshape(4, 64))[0].shape == (4, 3)      # flat images work too
    samples = vae.sample(6)
    assert samples.shape == (6, 1, 8, 8) and samples.min() >= 0 and samples.max() <= 1
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    assert torch.equal(vae.sample(3, generator=g1), vae.sample(3, generator=g2))
    assert vae.reconstruct(x).shape == (4, 1, 8, 8)
    assert vae.decode_images(torch.zeros(2, 3)).shape == (2, 1, 8, 8)
    with pytest.raises(ValueError, match="unsqueeze"):
        vae.encode(torch.rand(4, 8, 8))
    with pytest.raises(ValueError, match=r"image_shape=\(1, 8, 8\)"):
        vae.encode(torch.rand(4, 1, 28, 28))
    with pytest.raises(ValueError, match="positive whole number of images"):
        vae.sample(0)
    with pytest.raises(ValueError, match="beta"):
        VAE(beta=-1.0)
    with pytest.raises(ValueError, match="z_dim"):
        VAE(z_dim=0)


def test_active_units_counts_dimensions_whose_mean_moves():
    g = torch.Generator().manual_seed(8)
    mu = torch.cat([torch.randn(500, 2, generator=g), 1e-3 * torch.randn(500, 3, generator=g)], dim=1)
    assert active_units(mu) == 2
    with pytest.raises(ValueError, match=r"\(N, Z\)"):
        active_units(torch.zeros(5))


def test_training_lowers_the_loss_is_repeatable_and_evaluates():
    # two binary prototypes with noise: a VAE learns them within a few dozen steps
    g = torch.Generator().manual_seed(9)
    prototypes = (torch.rand(2, 1, 8, 8, generator=g) > 0.5).float()
    x = prototypes[torch.arange(256) % 2] * 0.9 + 0.05
    histories = []
    for _ in range(2):
        vae = small_vae()
        histories.append(train(vae, x, epochs=4, batch_size=32, lr=3e-3, lr_final=1e-3, x_val=binarize(x[:64], g),
                               progress_bar=False, seed=1))
    h = histories[0]
    assert h.epochs["loss"][-1] < h.epochs["loss"][0] - 5
    assert h.epochs["loss"] == histories[1].epochs["loss"]            # same seed, same run
    assert {"val_neg_elbo", "val_kl", "val_reconstruction"} <= set(h.epochs)
    vae.eval()
    first = evaluate(vae, binarize(x[:64], torch.Generator().manual_seed(0)))
    assert first == evaluate(vae, binarize(x[:64], torch.Generator().manual_seed(0)))
    with pytest.raises(ValueError, match=r"grey levels in \[0, 1\]"):
        train(small_vae(), 255 * x, epochs=1, progress_bar=False)


# ---------------------------------------------------------------------------------------------
# The importance-weighted estimate of log p(x), on a model whose log p(x) is exact
# ---------------------------------------------------------------------------------------------

def linear_gaussian(posterior_noise=0.0):
    # orthogonal columns make the exact posterior diagonal, i.e. inside the encoder's family
    g = torch.Generator().manual_seed(10)
    Q = torch.linalg.qr(torch.randn(6, 2, generator=g, dtype=torch.float64))[0]
    W = Q * torch.tensor([2.0, 0.8], dtype=torch.float64)
    b = torch.randn(6, generator=g, dtype=torch.float64)
    x = 2 * torch.randn(5, 6, generator=g, dtype=torch.float64)
    return LinearGaussian(W, b, s=0.5, posterior_noise=posterior_noise), x


def analytic_elbo(model, x):
    """E_q[log p(x|z)] + E_q[log p(z)] - E_q[log q(z|x)] for the linear-Gaussian model, in closed form."""
    mu, logvar = model.encode(x)
    var = logvar.exp()
    mean = mu @ model.W.T + model.b
    D = model.W.shape[0]
    # E_q ||x - W z - b||^2 = ||x - W mu - b||^2 + sum_j var_j ||W_:j||^2
    sq = (x - mean).pow(2).sum(-1) + (var * model.W.pow(2).sum(0)).sum(-1)
    expected_log_lik = -0.5 * (D * math.log(2 * math.pi * model.s ** 2) + sq / model.s ** 2)
    return expected_log_lik - gaussian_kl(mu, logvar)


def test_importance_weights_are_exact_with_the_true_posterior():
    model, x = linear_gaussian()
    torch.manual_seed(11)
    log_w = log_importance_weights(model, x, 50)
    assert log_w.shape == (5, 50)
    exact = model.exact_log_likelihood(x)
    # q = p(z|x): every weight equals p(x), so even K = 1 is exact
    torch.testing.assert_close(log_w, exact[:, None].expand(5, 50), atol=1e-9, rtol=0)
    torch.testing.assert_close(iwae_bound(log_w, k=1), exact, atol=1e-9, rtol=0)
    torch.testing.assert_close(analytic_elbo(model, x), exact, atol=1e-9, rtol=0)


def test_iwae_bound_climbs_from_the_elbo_to_the_exact_log_likelihood():
    model, x = linear_gaussian(posterior_noise=0.3)
    exact = model.exact_log_likelihood(x)
    elbo = analytic_elbo(model, x)
    assert (elbo < exact - 0.1).all()                       # a wrong posterior leaves a gap
    torch.manual_seed(12)
    log_w = log_importance_weights(model, x, 20_000, chunk_size=5_000)
    bounds = {k: iwae_bound(log_w, k) for k in (1, 10, 100, 20_000)}
    torch.testing.assert_close(bounds[1], elbo, atol=0.03, rtol=0)          # K = 1 is the ELBO
    assert (bounds[1] < bounds[10]).all() and (bounds[10] < bounds[100]).all()
    torch.testing.assert_close(bounds[20_000], exact, atol=0.03, rtol=0)    # large K: log p(x)
    # the same through log_likelihood, batched
    torch.manual_seed(12)
    torch.testing.assert_close(log_likelihood(model, x, 20_000, batch_size=2, chunk_size=5_000).double(),
                               exact, atol=0.03, rtol=0)


def test_iwae_bound_groups_samples_and_checks_k():
    log_w = torch.log(torch.tensor([[1.0, 3.0, 2.0, 6.0]]))
    assert iwae_bound(log_w).item() == pytest.approx(math.log(3.0))                    # log mean of all 4
    assert iwae_bound(log_w, 1).item() == pytest.approx(np.log([1, 3, 2, 6]).mean())   # mean of logs
    assert iwae_bound(log_w, 2).item() == pytest.approx((math.log(2.0) + math.log(4.0)) / 2)
    with pytest.raises(ValueError, match="between 1 and the 4 samples"):
        iwae_bound(log_w, 5)
    with pytest.raises(ValueError, match=r"\(B, K\)"):
        iwae_bound(log_w[0])


def test_vae_log_likelihood_is_above_its_elbo():
    vae = small_vae()
    x = binarize(torch.rand(8, 1, 8, 8, generator=torch.Generator().manual_seed(13)))
    torch.manual_seed(14)
    log_w = log_importance_weights(vae, x, 2_000)
    assert (iwae_bound(log_w) > iwae_bound(log_w, 1)).all()
    assert log_likelihood(vae, x, 20).shape == (8,)
    with pytest.raises(ValueError, match="n_samples"):
        log_importance_weights(vae, x, 0)


# ---------------------------------------------------------------------------------------------
# VQ-VAE
# ---------------------------------------------------------------------------------------------

def quantizer_and_input():
    torch.manual_seed(15)
    vq = VectorQuantizer(n_codes=5, code_dim=3)
    with torch.no_grad():
        vq.codebook.copy_(torch.randn(5, 3))
    vq.initialised.fill_(True)
    return vq, torch.randn(2, 3, 4, 4, requires_grad=True)


def test_quantizer_picks_the_nearest_code():
    vq, z_e = quantizer_and_input()
    z_q, codes, _, _ = vq(z_e)
    flat = z_e.detach().permute(0, 2, 3, 1).reshape(-1, 3)
    expected = torch.cdist(flat, vq.codebook.detach()).argmin(1)
    assert torch.equal(codes.reshape(-1), expected)
    torch.testing.assert_close(z_q.detach().permute(0, 2, 3, 1).reshape(-1, 3), vq.codebook.detach()[expected])


def test_straight_through_gradient_and_the_two_vq_losses():
    vq, z_e = quantizer_and_input()
    z_q, codes, codebook_loss, commitment_loss = vq(z_e)
    e = vq.codebook.detach()[codes].permute(0, 3, 1, 2)            # (B, D, H, W)
    weights = torch.randn_like(z_q)
    # the decoder's gradient reaches z_e unchanged, and none of it reaches the codebook
    (weights * z_q).sum().backward()
    torch.testing.assert_close(z_e.grad, weights)
    assert vq.codebook.grad is None or vq.codebook.grad.abs().max() == 0
    # codebook loss: gradient 2 (e - z_e) to the codebook only
    z_e.grad = None
    vq.codebook.grad = None
    z_q, codes, codebook_loss, commitment_loss = vq(z_e)
    codebook_loss.sum().backward()
    assert z_e.grad is None or z_e.grad.abs().max() == 0
    per_position = 2 * (e - z_e.detach()).permute(0, 2, 3, 1).reshape(-1, 3)
    expected = torch.zeros(5, 3).index_add_(0, codes.reshape(-1), per_position)
    torch.testing.assert_close(vq.codebook.grad, expected)
    # commitment loss: gradient 2 (z_e - e) to the encoder only
    vq.codebook.grad = None
    z_q, codes, codebook_loss, commitment_loss = vq(z_e)
    commitment_loss.sum().backward()
    torch.testing.assert_close(z_e.grad, 2 * (z_e.detach() - e))
    assert vq.codebook.grad is None or vq.codebook.grad.abs().max() == 0
    torch.testing.assert_close(commitment_loss.detach(), (z_e.detach() - e).pow(2).flatten(1).sum(1))


def test_codebook_is_filled_from_the_first_training_batch():
    torch.manual_seed(16)
    vq = VectorQuantizer(n_codes=4, code_dim=2)
    z_e = torch.randn(3, 2, 2, 2)
    vq.eval()
    vq(z_e)
    assert not bool(vq.initialised)
    vq.train()
    vq(z_e)
    flat = z_e.permute(0, 2, 3, 1).reshape(-1, 2)
    assert bool(vq.initialised)
    assert all((flat == code).all(1).any() for code in vq.codebook.detach())   # every code is an input vector


def test_a_code_unchosen_for_restart_after_batches_moves_onto_an_encoder_output():
    torch.manual_seed(18)
    vq = VectorQuantizer(n_codes=3, code_dim=2, restart_after=2)
    with torch.no_grad():
        vq.codebook.copy_(torch.tensor([[0.0, 0.0], [0.1, 0.0], [100.0, 100.0]]))  # code 2 is far from every input
    vq.initialised.fill_(True)
    z_e = torch.randn(2, 2, 2, 2) * 0.1
    flat = z_e.permute(0, 2, 3, 1).reshape(-1, 2)
    vq.eval()
    for _ in range(3):
        vq(z_e)
    assert vq.restarts == 0 and vq.idle.tolist() == [0, 0, 0]  # evaluation neither counts nor restarts
    vq.train()
    vq(z_e)
    vq(z_e)
    assert vq.idle[2] == 2 and vq.restarts == 0 and vq.codebook[2, 0] == 100.0  # dead for 2 batches: not yet moved
    vq(z_e)                                                                      # the next batch restarts it
    assert vq.restarts == 1 and (flat == vq.codebook.detach()[2]).all(1).any()  # now an input vector
    assert "idle" not in vq.state_dict()  # checkpoints keep their keys
    never = VectorQuantizer(n_codes=3, code_dim=2)
    never.train()
    for _ in range(5):
        never(z_e)
    assert never.restarts == 0  # restart_after=None: the paper's quantiser
    with pytest.raises(ValueError, match="restart_after"):
        VectorQuantizer(n_codes=3, code_dim=2, restart_after=0)


def test_codebook_perplexity_is_the_number_of_equally_used_codes():
    assert codebook_perplexity(torch.arange(8).repeat(5), 16).item() == pytest.approx(8.0)
    assert codebook_perplexity(torch.zeros(10, dtype=torch.long), 16).item() == pytest.approx(1.0)


def test_vqvae_shapes_and_loss():
    torch.manual_seed(17)
    model = VQVAE(channels=8, code_dim=4, n_codes=16)
    x = binarize(torch.rand(3, 1, 28, 28))
    loss, logged = model.loss(x)
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert 1 <= logged["perplexity"] <= 16
    assert model.encode(x).shape == (3, 7, 7)
    assert model.reconstruct(x).shape == (3, 1, 28, 28)
    assert model.decode_codes(model.encode(x)).shape == (3, 1, 28, 28)
    with pytest.raises(ValueError, match="multiples of 4"):
        VQVAE(image_shape=(1, 30, 30))


# ---------------------------------------------------------------------------------------------
# The sprite generator (unsuplab.data) and MIG (unsuplab.metrics)
# ---------------------------------------------------------------------------------------------

def test_sprites_are_binary_repeatable_and_inside_the_image():
    x, factors = data.sprites(300, size=32, seed=3)
    assert x.shape == (300, 1, 32, 32) and x.dtype == torch.float32
    assert factors.shape == (300, 5) and factors.dtype == torch.int64
    assert set(x.unique().tolist()) == {0.0, 1.0}
    assert (factors.min(0).values >= 0).all()
    assert (factors.max(0).values < torch.tensor(data.SPRITE_FACTOR_SIZES)).all()
    x2, factors2 = data.sprites(300, size=32, seed=3)
    assert torch.equal(x, x2) and torch.equal(factors, factors2)
    assert not torch.equal(data.sprites(300, size=32, seed=4)[1], factors)
    border = x[:, 0, 0].sum() + x[:, 0, -1].sum() + x[:, 0, :, 0].sum() + x[:, 0, :, -1].sum()
    assert border == 0
    assert (x.flatten(1).sum(1) > 0).all()                    # no empty image
    assert torch.equal(data.render_sprites(factors[:10], 32), x[:10])


def test_sprite_factors_do_what_they_say():
    base = torch.tensor([2, 3, 0, 10, 10])

    def render(**changes):
        rows = []
        for i, value in enumerate(changes[next(iter(changes))]):
            row = base.clone()
            row[data.SPRITE_FACTORS.index(next(iter(changes)))] = value
            rows.append(row)
        return data.render_sprites(torch.stack(rows), 64)[:, 0]

    for shape in range(3):
        base[0] = shape
        areas = render(scale=range(6)).sum((1, 2))
        assert (areas[1:] > areas[:-1]).all(), f"{data.SPRITE_SHAPES[shape]}: area must grow with scale"
        columns = torch.arange(64.0)
        images = render(x=[0, 10, 20, 31])
        cx = (images.sum(1) * columns).sum(1) / images.sum((1, 2))
        assert (cx[1:] > cx[:-1]).all(), "the x factor moves the shape right"
        images = render(y=[0, 10, 20, 31])
        cy = (images.sum(2) * columns).sum(1) / images.sum((1, 2))
        assert (cy[1:] > cy[:-1]).all(), "the y factor moves the shape down"
    base[0] = 1   # an ellipse turned by a quarter turn is its own transpose (about its centre)
    flat, turned = render(orientation=[0, 10])
    assert (flat.sum(0) > 0).sum() > (flat.sum(1) > 0).sum()     # wider than tall
    assert (turned.sum(1) > 0).sum() > (turned.sum(0) > 0).sum()  # taller than wide


def test_sprites_reject_bad_arguments():
    with pytest.raises(ValueError, match="positive whole number of images"):
        data.sprites(0)
    with pytest.raises(ValueError, match="size must be"):
        data.sprites(5, size=4)
    with pytest.raises(ValueError, match=r"shape \(N, 5\)"):
        data.render_sprites(torch.zeros(3, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="'scale' takes indices 0 .. 5"):
        data.render_sprites(torch.tensor([[0, 6, 0, 0, 0]]))


def test_mutual_information_matches_sklearn_and_discretize_bins_evenly():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 5, 2000)
    b = (a + rng.integers(0, 3, 2000)) % 7
    assert metrics.discrete_mutual_information(a, b) == pytest.approx(mutual_info_score(a, b), abs=1e-10)
    assert metrics.discrete_mutual_information(a, a) == pytest.approx(mutual_info_score(a, a), abs=1e-10)
    bins = metrics.discretize(torch.tensor([[0.0, 5.0], [0.5, 5.0], [1.0, 5.0]]), n_bins=4)
    assert bins.tolist() == [[0, 0], [2, 0], [3, 0]]          # max goes in the last bin; constant -> 0


def test_mig_on_exact_cases():
    # every combination of three factors once: factors are exactly independent in the sample
    grid = torch.cartesian_prod(torch.arange(3), torch.arange(4), torch.arange(5))     # (60, 3)
    assert metrics.mig(grid.float(), grid) == pytest.approx(1.0)
    # an affine change of each code (and a useless extra dimension) changes nothing
    codes = torch.cat([3 * grid.float() - 7, torch.zeros(60, 1)], dim=1)
    assert metrics.mig(codes, grid, per_factor=True) == pytest.approx([1.0, 1.0, 1.0])
    # two copies of the first factor: its gap is 0; the others keep theirs
    copies = torch.cat([grid[:, :1], grid], dim=1).float()
    assert metrics.mig(copies, grid, per_factor=True) == pytest.approx([0.0, 1.0, 1.0])
    assert metrics.mig(copies, grid) == pytest.approx(2 / 3)
    # one code holding two factors at once (a 12-valued mix) still scores 1 for both: MIG asks that
    # each factor live in one dimension, not that each dimension hold one factor
    mixed = torch.stack([grid[:, 0] * 4 + grid[:, 1], grid[:, 2]], dim=1).float()
    gaps = metrics.mig(mixed, grid, n_bins=12, per_factor=True)
    assert gaps[2] == pytest.approx(1.0) and gaps[0] == pytest.approx(1.0) and gaps[1] == pytest.approx(1.0)
    assert metrics.mutual_information_matrix(mixed, grid, n_bins=12).shape == (2, 3)


def test_mig_errors_speak_to_the_student():
    grid = torch.cartesian_prod(torch.arange(3), torch.arange(4))
    with pytest.raises(ValueError, match="single value"):
        metrics.mig(grid.float(), torch.cat([grid, torch.zeros(12, 1, dtype=torch.long)], 1))
    with pytest.raises(ValueError, match="at least two code dimensions"):
        metrics.mig(grid[:, :1].float(), grid)
    with pytest.raises(ValueError, match="one row per code"):
        metrics.mig(grid.float(), grid[:5])
    with pytest.raises(ValueError, match="n_bins"):
        metrics.discretize(grid.float(), n_bins=1)


def test_measuring_a_model_leaves_it_in_the_mode_it_was_in():
    # a VQ-VAE restarts dead codes only while training: measuring it mid-training must not switch that off
    from unsuplab.models import vae

    torch.manual_seed(0)
    model = VAE(image_shape=(1, 8, 8), hidden=(16,), z_dim=3)
    x = torch.rand(20, 1, 8, 8).bernoulli()
    for training in (True, False):
        model.train(training)
        vae.evaluate(model, x)
        vae.log_likelihood(model, x, n_samples=4)
        assert model.training is training
