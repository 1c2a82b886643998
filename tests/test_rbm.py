"""RBMs, AIS and DBNs against exact answers on models small enough to enumerate."""

import itertools
import math

import numpy as np
import pytest
import torch

from unsuplab.models.rbm import (DBN, RBM, LeanCD, ais_betas, ais_log_z, average_log_prob, base_rate_bias,
                                 static_binarize, cd_gradient, classification_error, relu_mlp, sigmoid_mlp,
                                 train_rbm)


def random_rbm(n_visible, n_hidden, scale=1.0, seed=0):
    """An RBM with large random weights and biases (a harder, more peaked distribution than at init)."""
    torch.manual_seed(seed)
    rbm = RBM(n_visible, n_hidden).double()
    with torch.no_grad():
        rbm.W.normal_(0, scale)
        rbm.b.normal_(0, scale)
        rbm.c.normal_(0, scale)
    return rbm


def all_states(n):
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=n)), dtype=torch.float64)  # (2^n, n)


def brute_force_log_z(rbm):
    """log sum_{v, h} exp(-E(v, h)) over every pair of states, straight from eq. 3.1."""
    vs, hs = all_states(rbm.n_visible), all_states(rbm.n_hidden)
    v = vs.repeat_interleave(len(hs), 0)
    h = hs.repeat(len(vs), 1)
    return torch.logsumexp(-rbm.energy(v, h), 0).item()


def test_free_energy_is_the_energy_summed_over_h():
    rbm = random_rbm(6, 5)
    v = all_states(6)
    hs = all_states(5)
    # log sum_h exp(-E(v, h)) for each v, by brute force: (2^D, 2^H) energies
    energies = torch.stack([rbm.energy(v, h.expand(len(v), -1)) for h in hs], 1)
    with torch.no_grad():
        assert torch.allclose(-rbm.free_energy(v), torch.logsumexp(-energies, 1), atol=1e-10)


def test_conditionals_match_enumeration():
    rbm = random_rbm(5, 4, seed=1)
    vs, hs = all_states(5), all_states(4)
    with torch.no_grad():
        for v in vs[[0, 7, 19, 31]]:
            # p(h | v) ∝ exp(-E(v, h)) over all h; p(h_j = 1 | v) is the mass of the states with h_j = 1
            w = torch.softmax(-rbm.energy(v.expand(len(hs), -1), hs), 0)      # (2^H,)
            assert torch.allclose(rbm.p_h_given_v(v[None])[0], w @ hs, atol=1e-10)
        for h in hs[[0, 5, 10, 15]]:
            w = torch.softmax(-rbm.energy(vs, h.expand(len(vs), -1)), 0)      # (2^D,)
            assert torch.allclose(rbm.p_v_given_h(h[None])[0], w @ vs, atol=1e-10)


@pytest.mark.parametrize("n_visible, n_hidden", [(6, 4), (4, 7)])
def test_exact_log_z_and_normalised_probabilities(n_visible, n_hidden):
    rbm = random_rbm(n_visible, n_hidden, seed=2)
    log_z = rbm.log_z_exact()  # enumerates the smaller layer, sums out the other
    assert log_z == pytest.approx(brute_force_log_z(rbm), abs=1e-9)
    total = rbm.log_prob(all_states(n_visible), log_z).exp().sum().item()
    assert total == pytest.approx(1.0, abs=1e-9)
    assert average_log_prob(rbm, all_states(n_visible)[:3], log_z) == pytest.approx(
        rbm.log_prob(all_states(n_visible)[:3], log_z).mean().item(), abs=1e-9)


def test_exact_log_z_in_chunks_matches_one_pass():
    rbm = random_rbm(9, 12, scale=0.5, seed=3)
    assert rbm.log_z_exact(chunk=37) == pytest.approx(rbm.log_z_exact(), abs=1e-9)


@pytest.mark.parametrize("n_visible, n_hidden, seed", [(16, 10, 1), (8, 14, 2)])
def test_ais_agrees_with_exact_log_z(n_visible, n_hidden, seed):
    rbm = random_rbm(n_visible, n_hidden, scale=0.7, seed=seed).float()
    exact = rbm.log_z_exact()
    torch.manual_seed(seed)
    data = torch.bernoulli(torch.full((200, n_visible), 0.3))
    result = ais_log_z(rbm, n_chains=100, n_repeats=4, n_betas=500, base_bias=base_rate_bias(data))
    assert result.log_z == pytest.approx(exact, abs=0.05)
    assert result.log_z_low <= exact <= result.log_z_high
    assert result.log_z_runs.shape == (4,) and result.log_w.shape == (4, 100)
    assert 0 < result.spread < 0.1
    assert result.n_betas == 500


def test_ais_is_exact_when_the_rbm_is_the_base_model():
    # W = 0 and b = b_A: every importance weight is 1, so AIS returns log Z_A, which is exact.
    rbm = RBM(7, 5, init_std=0.0)
    with torch.no_grad():
        rbm.b.copy_(torch.linspace(-2, 2, 7))
    result = ais_log_z(rbm, n_chains=10, n_betas=50, base_bias=rbm.b.detach())
    assert torch.all(result.log_w == 0)
    assert result.log_z == pytest.approx(rbm.log_z_exact(), abs=1e-5)


def test_ais_betas_follow_salakhutdinov_and_murray():
    betas = ais_betas(14_500)
    assert len(betas) == 14_501 and betas[0] == 0 and betas[-1] == 1 and (betas.diff() > 0).all()
    assert (betas < 0.5).sum() == 500 and ((betas >= 0.5) & (betas < 0.9)).sum() == 4_000
    assert len(ais_betas(100)) == 101


def test_cd_gradient_is_the_gradient_of_the_free_energy_difference():
    # d/dtheta [mean F(v_k) - mean F(v_0)] is exactly the positive minus the negative statistics (eq. 3.6)
    rbm = random_rbm(7, 5, seed=4)
    torch.manual_seed(0)
    v0, vk = torch.bernoulli(torch.full((11, 7), 0.5)).double(), torch.bernoulli(torch.full((6, 7), 0.5)).double()
    dW, db, dc = cd_gradient(rbm, v0, vk)
    surrogate = rbm.free_energy(vk).mean() - rbm.free_energy(v0).mean()
    gW, gb, gc = torch.autograd.grad(surrogate, [rbm.W, rbm.b, rbm.c])
    assert torch.allclose(dW, gW) and torch.allclose(db, gb) and torch.allclose(dc, gc)


def test_cd_gradient_with_model_samples_approaches_the_exact_gradient():
    # With the negative phase drawn from the model itself, the estimate is unbiased for the true gradient.
    rbm = random_rbm(6, 4, scale=0.8, seed=5)
    states = all_states(6)
    torch.manual_seed(1)
    data = states[torch.randint(len(states), (30,))]
    log_z = torch.logsumexp(-rbm.free_energy(states), 0)
    loss = rbm.free_energy(data).mean() + log_z               # -mean log p(v), exact
    (gW,) = torch.autograd.grad(loss, [rbm.W])
    model_samples = rbm.gibbs(torch.bernoulli(torch.full((20_000, 6), 0.5, dtype=torch.float64)), 20)
    dW, _, _ = cd_gradient(rbm, data, model_samples)
    assert torch.allclose(dW, -gW, atol=0.03), (dW + gW).abs().max()


def test_long_gibbs_chains_sample_the_model_distribution():
    rbm = random_rbm(4, 3, scale=1.0, seed=6).float()
    states = all_states(4).float()
    p_exact = torch.softmax(-rbm.free_energy(states).detach(), 0)          # (16,)
    torch.manual_seed(2)
    v = rbm.gibbs(torch.bernoulli(torch.full((20_000, 4), 0.5)), 20)
    codes = (v * 2 ** torch.arange(3, -1, -1)).sum(1).long()
    p_chain = torch.bincount(codes, minlength=16).float() / len(v)
    assert 0.5 * (p_chain - p_exact).abs().sum() < 0.02   # total variation distance


@pytest.mark.parametrize("persistent, k, momentum, weight_decay",
                         [(True, 1, 0.0, 0.0), (False, 1, 0.0, 0.0), (True, 3, 0.5, 1e-2), (False, 2, 0.9, 1e-2)])
def test_lean_updates_are_the_updates_of_cd_gradient(persistent, k, momentum, weight_decay):
    # train_rbm's fused updates (LeanCD) against the readable path: Gibbs sampling with the model's
    # conditionals, cd_gradient, SGD with momentum written out, fed the same uniform random numbers
    rbm = random_rbm(7, 5, scale=0.5, seed=7)                        # float64: equal up to rounding
    ref = random_rbm(7, 5, scale=0.5, seed=7)
    B, rate = 4, 0.3
    torch.manual_seed(8)
    batches = torch.bernoulli(torch.full((3, B, 7), 0.4, dtype=torch.float64))
    lean = LeanCD(rbm, B, k=k, persistent=persistent, momentum=momentum, weight_decay=weight_decay)
    chains = torch.bernoulli(torch.full((B, 7), 0.5, dtype=torch.float64))
    lean.chains.copy_(chains)
    velocity = [torch.zeros_like(p) for p in (ref.W, ref.b, ref.c)]
    sq_error = 0.0

    def sample(p, u):                                                  # 1 with probability p
        return (u < p).double()

    with torch.no_grad():
        for v0, u in zip(batches, lean.uniforms(len(batches))):
            lean.update(v0, u, rate)
            # the reference: u[0] holds the uniforms of h0 ~ p(h | v0) (first B rows) and, for PCD, of
            # the chains' first hidden sample (last B rows); then one block per half step
            h0 = sample(ref.p_h_given_v(v0), u[0][:B])
            sq_error += ((v0 - ref.p_v_given_h(h0)) ** 2).sum()
            start = chains if persistent else v0
            h = sample(ref.p_h_given_v(start), u[0][-B:])
            vk = sample(ref.p_v_given_h(h), u[1])
            for i in range(1, k):
                h = sample(ref.p_h_given_v(vk), u[2 * i])
                vk = sample(ref.p_v_given_h(h), u[2 * i + 1])
            dW, db, dc = cd_gradient(ref, v0, vk)
            for p, v, grad in zip((ref.W, ref.b, ref.c), velocity, (dW - weight_decay * ref.W, db, dc)):
                v.mul_(momentum).add_(grad, alpha=rate)
                p.add_(v)
            chains = vk
            assert torch.equal(lean.chains, vk)
            for p, q in zip((rbm.W, rbm.b, rbm.c), (ref.W, ref.b, ref.c)):
                assert torch.allclose(p, q, rtol=0, atol=1e-12), (p - q).abs().max()
    assert lean.sq_error.sum().item() == pytest.approx(sq_error.item(), rel=1e-12)


def test_train_rbm_records_per_epoch_and_keeps_the_chains():
    torch.manual_seed(9)
    x = torch.bernoulli(torch.full((43, 6), 0.3))
    rbm = RBM(6, 3)
    history = train_rbm(rbm, x, epochs=3, batch_size=10, lr=0.1, k=2, persistent=True, progress_bar=False,
                        eval_fn=lambda rbm: {"mean_W": rbm.W.mean().item()})
    assert len(history.epochs["recon_error"]) == 3 and len(history.epochs["mean_W"]) == 3
    assert history.epochs["lr"][-1] == pytest.approx(0.1 * (1 - 11 / 12))  # linear decay, 4 updates an epoch
    particles = rbm.fantasy_particles
    assert particles.shape == (10, 6) and set(particles.unique().tolist()) <= {0.0, 1.0}
    assert not particles.requires_grad and rbm.W.requires_grad
    (rbm.free_energy(x).mean()).backward()                           # the parameters still train by autograd
    assert rbm.W.grad is not None


def exact_mean_log_prob(rbm, data):
    return rbm.log_prob(data, rbm.log_z_exact()).mean().item()


@pytest.mark.parametrize("persistent", [False, True])
def test_training_raises_the_exact_log_likelihood(persistent):
    torch.manual_seed(3)
    prototypes = torch.tensor([[1, 1, 1, 1, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 1, 1, 1, 1]], dtype=torch.float32)
    data = prototypes[torch.randint(2, (500,))]
    data = torch.where(torch.rand(data.shape) < 0.05, 1 - data, data)          # 5% flipped bits
    rbm = RBM(10, 4)
    before = exact_mean_log_prob(rbm, data)
    history = train_rbm(rbm, data, epochs=8, batch_size=50, lr=0.5, k=1, persistent=persistent, progress_bar=False)
    after = exact_mean_log_prob(rbm, data)
    # from about -6.9 nats to near the data entropy, 2.68 nats (two prototypes with 5% flipped bits)
    assert after > before + 2.5 and after > -3.8, (before, after)
    assert len(history.epochs["recon_error"]) == 8 and history.epochs["recon_error"][-1] < history.epochs["recon_error"][0]
    assert (rbm.fantasy_particles is not None) == persistent


def test_static_binarize_is_fixed_by_its_seed():
    x = torch.rand(50, 1, 4, 4)
    a, b = static_binarize(x, seed=3), static_binarize(x, seed=3)
    assert a.shape == (50, 16) and torch.equal(a, b) and set(a.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(static_binarize(torch.ones(2, 3)), torch.ones(2, 3))
    with pytest.raises(ValueError, match="divide 8-bit images by 255"):
        static_binarize(torch.full((2, 3), 255.0))


def test_errors_speak_to_a_student():
    rbm = RBM(784, 10)
    with pytest.raises(ValueError, match=r"expected v of shape \(N, 784\)"):
        rbm.free_energy(torch.rand(5, 27, 28))
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        rbm.free_energy(torch.full((2, 784), 255.0))
    with pytest.raises(ValueError, match="Gibbs steps"):
        rbm.gibbs(torch.rand(2, 784), 0)
    with pytest.raises(ValueError, match="use ais_log_z"):
        RBM(30, 30).log_z_exact()
    with pytest.raises(ValueError, match="increase strictly from 0 to 1"):
        ais_log_z(rbm, betas=torch.tensor([0.0, 0.5]))
    with pytest.raises(ValueError, match="one number of epochs per RBM"):
        DBN((8, 4, 2)).pretrain(torch.rand(10, 8), epochs=[1, 1, 1])
    with pytest.raises(ValueError, match="must be a whole number >= 1"):
        train_rbm(RBM(8, 2), torch.rand(10, 8), epochs=1, k=0)
    # images of the right size are flattened, not refused
    assert rbm.free_energy(torch.rand(3, 1, 28, 28)).shape == (3,)


def test_dbn_pretraining_stacks_rbms_and_initialises_the_classifier():
    torch.manual_seed(4)
    x = torch.bernoulli(torch.full((64, 12), 0.4))
    dbn = DBN((12, 8, 6))
    histories = dbn.pretrain(x, epochs=2, batch_size=16, lr=0.05, progress_bar=False)
    assert len(histories) == 2 and all(len(h.epochs["recon_error"]) == 2 for h in histories)
    net = dbn.to_classifier(3)
    hidden = net[:-1](x)                                    # everything but the output layer
    assert torch.allclose(hidden, dbn.up(x), atol=1e-6)     # the network's hidden layers are the RBMs' p(h|v)
    assert net(x).shape == (64, 3)
    baseline = sigmoid_mlp((12, 8, 6), 3)
    assert [p.shape for p in baseline.parameters()] == [p.shape for p in net.parameters()]
    samples = dbn.sample(5, n_gibbs=3)
    assert samples.shape == (5, 12) and samples.min() >= 0 and samples.max() <= 1


def test_the_modern_baseline_is_the_same_shape_with_relu_and_he_initialisation():
    torch.manual_seed(0)
    net = relu_mlp((400, 300, 200), 10)
    assert [p.shape for p in net.parameters()] == [p.shape for p in sigmoid_mlp((400, 300, 200), 10).parameters()]
    assert sum(isinstance(m, torch.nn.ReLU) for m in net) == 2 and not any(isinstance(m, torch.nn.Sigmoid) for m in net)
    linears = [m for m in net if isinstance(m, torch.nn.Linear)]
    assert all(torch.count_nonzero(m.bias) == 0 for m in linears)
    for m in linears:  # He: std sqrt(2 / fan_in), not PyTorch's default (about 1 / sqrt(3 fan_in))
        assert m.weight.std().item() == pytest.approx((2 / m.in_features) ** 0.5, rel=0.05)
    # the signal keeps its scale through the ReLU layers: the mean square stays within a factor 2
    x = torch.randn(2000, 400)
    h = x
    for m in net[:-1]:
        h = m(h)
    assert 0.5 < h.pow(2).mean().item() / x.pow(2).mean().item() < 2.5


def test_classification_error_and_batches():
    net = torch.nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        net.weight.copy_(torch.eye(2))
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    assert classification_error(net, x, torch.tensor([0, 1, 1, 1]), batch_size=3) == pytest.approx(0.25)


def test_base_rate_bias_is_the_smoothed_log_odds():
    x = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 1.0]])
    p = torch.tensor([4 / 5, 2 / 5])
    assert torch.allclose(base_rate_bias(x), torch.log(p / (1 - p)))
    assert math.isfinite(base_rate_bias(torch.ones(3, 2)).sum().item())


def test_digits_nudged_are_the_digits_and_their_one_pixel_shifts():
    from unsuplab.data import digits, digits_nudged

    x, y = digits_nudged()
    x0, y0 = digits()
    n = len(x0)
    assert x.shape == (5 * n, 64) and y.shape == (5 * n,) and x.dtype == np.float32
    assert x.min() >= 0 and x.max() < 1 and (y[:n] == y0).all() and (y[n:2 * n] == y0).all()
    # the first block is the digits themselves, rescaled; each other block is a one-pixel shift of them
    on = (x0 > 0).reshape(-1, 8, 8)
    shifts = [(x[b * n:(b + 1) * n] > 0).reshape(-1, 8, 8) for b in range(5)]
    assert (shifts[0] == on).all()
    moved = {(dy, dx) for b in range(1, 5) for dy, dx in [(-1, 0), (1, 0), (0, -1), (0, 1)]
             if (np.roll(on, (dy, dx), axis=(1, 2))[:, 1:-1, 1:-1] == shifts[b][:, 1:-1, 1:-1]).all()}
    assert len(moved) == 4
