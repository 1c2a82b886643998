"""Sparse coding against exact answers: the Lasso with an orthonormal dictionary, scikit-learn's Lasso,
the optimality conditions, FISTA against ISTA, unit-norm atoms, a dictionary recovered from its data."""

import math

import numpy as np
import pytest
import torch
from sklearn.linear_model import Lasso

from unsuplab.models.sparse_coding import (SparseCoding, denoise, dictionary_step_bcd, dictionary_step_pgd,
                                           fill_by_local_mean, fista, image_to_patches, inpaint, ista, ista_step,
                                           lipschitz_constant, normalize_atoms, objective, orientation_coherence,
                                           patches_to_image, psnr, soft_threshold)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These problems are tiny: one thread is faster, and immune to a busy machine's oversubscription."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def random_problem(m=20, K=40, n=30, seed=0):
    g = torch.Generator().manual_seed(seed)
    D = normalize_atoms(torch.randn(m, K, generator=g, dtype=torch.float64))
    x = torch.randn(n, m, generator=g, dtype=torch.float64)
    return x, D


def test_soft_threshold_exact_values():
    v = torch.tensor([-3.0, -0.5, 0.0, 0.2, 0.5, 2.0])
    assert soft_threshold(v, 0.5).tolist() == [-2.5, 0.0, 0.0, 0.0, 0.0, 1.5]
    assert torch.equal(soft_threshold(v, 0.0), v)


def test_objective_by_hand():
    D = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])       # m = 3, K = 2
    x = torch.tensor([[1.0, 2.0, 3.0]])
    z = torch.tensor([[1.0, -1.0]])
    # residual (0, 3, 3): 1/2 * 18 = 9; L1 = 2; lam = 0.5 -> 10
    assert objective(x, D, z, 0.5).item() == pytest.approx(10.0)
    assert objective(torch.cat([x, x]), D, torch.cat([z, 0 * z]), 0.5, reduce=False).tolist() == [10.0, 7.0]


def test_orthonormal_dictionary_gives_soft_thresholding():
    # With D^T D = I the Lasso separates: z* = S_lam(D^T x), and one step with L = 1 reaches it from 0.
    g = torch.Generator().manual_seed(1)
    D = torch.linalg.qr(torch.randn(16, 16, generator=g, dtype=torch.float64))[0]
    x = torch.randn(50, 16, generator=g, dtype=torch.float64)
    lam = 0.4
    exact = soft_threshold(x @ D, lam)
    assert lipschitz_constant(D) == pytest.approx(1.0, abs=1e-10)
    assert torch.allclose(ista_step(x, D, torch.zeros(50, 16, dtype=torch.float64), lam, 1.0), exact, atol=1e-12)
    for solve in (ista, fista):
        assert torch.allclose(solve(x, D, lam, 1), exact, atol=1e-12)
        assert torch.allclose(solve(x, D, lam, 30), exact, atol=1e-12)   # and it is a fixed point
    assert (exact == 0).any() and (exact != 0).any()                      # both regimes are exercised


def test_fista_reaches_sklearn_lasso_and_satisfies_optimality():
    x, D = random_problem()
    lam = 0.3
    z = fista(x, D, lam, 2000)
    # optimality (KKT): D^T (x - D z) = lam * sign(z) where z != 0, and |.| <= lam where z == 0
    corr = (x - z @ D.T) @ D
    active = z != 0
    assert torch.allclose(corr[active], lam * z.sign()[active], atol=1e-6)
    assert (corr[~active].abs() <= lam + 1e-6).all()
    # scikit-learn's Lasso minimises 1/(2 m) ||x - D z||^2 + alpha ||z||_1, so alpha = lam / m
    m = D.shape[0]
    for i in range(3):
        ref = Lasso(alpha=lam / m, fit_intercept=False, tol=1e-12, max_iter=100_000).fit(D.numpy(), x[i].numpy())
        ref_z = torch.as_tensor(ref.coef_)[None]
        assert objective(x[i:i + 1], D, z[i:i + 1], lam).item() <= objective(x[i:i + 1], D, ref_z, lam).item() + 1e-9
        assert torch.allclose(z[i], ref_z[0], atol=1e-5)


def test_fista_objective_never_above_ista_after_same_iterations():
    x, D = random_problem(m=30, K=90, n=40, seed=2)   # 3x overcomplete: ill-conditioned, ISTA is slow
    lam = 0.1
    trace_ista, trace_fista = [], []
    ista(x, D, lam, 300, trace=trace_ista)
    fista(x, D, lam, 300, trace=trace_fista)
    assert trace_fista[0] == pytest.approx(trace_ista[0])   # the first steps are the same
    assert all(f <= i + 1e-12 for f, i in zip(trace_fista, trace_ista))
    assert trace_fista[-1] < trace_ista[-1] - 1e-3           # and FISTA ends clearly lower
    assert all(b <= a + 1e-12 for a, b in zip(trace_ista, trace_ista[1:]))   # ISTA is monotone


def test_ista_step_is_one_iteration_of_ista():
    x, D = random_problem(seed=3)
    L = lipschitz_constant(D)
    assert L == pytest.approx(torch.linalg.matrix_norm(D, ord=2).item() ** 2, rel=1e-10)
    z = torch.zeros(len(x), D.shape[1], dtype=D.dtype)
    for _ in range(3):
        z = ista_step(x, D, z, 0.2, L)
    assert torch.allclose(z, ista(x, D, 0.2, 3), atol=1e-12)


def dictionary_surrogate(D, A, B):
    """Eq. 2.5 without the constant: 1/2 tr(D^T D A) - tr(D^T B)."""
    return 0.5 * torch.trace(D.T @ D @ A) - torch.trace(D.T @ B)


def test_dictionary_steps_keep_unit_norm_atoms():
    x, D = random_problem(m=16, K=32, n=200, seed=4)
    z = fista(x, D, 0.2, 100)
    A, B = z.T @ z / len(x), x.T @ z / len(x)
    D_bcd, unused = dictionary_step_bcd(D, A, B)
    assert torch.allclose(D_bcd.norm(dim=0), torch.ones(32, dtype=D.dtype), atol=1e-12)
    # block-coordinate descent minimises exactly over each atom on the sphere: never worse
    assert dictionary_surrogate(D_bcd, A, B) <= dictionary_surrogate(D, A, B) + 1e-12
    D_pgd, _ = dictionary_step_pgd(D, A, B)
    assert torch.allclose(D_pgd.norm(dim=0), torch.ones(32, dtype=D.dtype), atol=1e-12)
    # an atom no code uses is reported and left alone
    A2 = A.clone()
    A2[3, :] = 0
    A2[:, 3] = 0
    D2, unused = dictionary_step_bcd(D, A2, B)
    assert unused.nonzero().flatten().tolist() == [3] and torch.equal(D2[:, 3], D[:, 3])


def sparse_data(n=3000, m=16, K=24, k=3, seed=5):
    """Patches that are exactly k-sparse over a known unit-norm dictionary."""
    g = torch.Generator().manual_seed(seed)
    D_true = normalize_atoms(torch.randn(m, K, generator=g))
    z = torch.zeros(n, K)
    support = torch.rand(n, K, generator=g).argsort(1)[:, :k]
    z.scatter_(1, support, (1 + torch.rand(n, k, generator=g)) * torch.sign(torch.randn(n, k, generator=g)))
    return z @ D_true.T, D_true


def test_fit_recovers_a_dictionary_and_keeps_atoms_unit_norm():
    x, D_true = sparse_data()
    # the objective is not convex in D: from atoms about 27 degrees off the truth (cosine about 0.89), learning must walk back to it
    g = torch.Generator().manual_seed(7)
    start = normalize_atoms(D_true + 0.5 * normalize_atoms(torch.randn(16, 24, generator=g)))
    assert (start * D_true).sum(0).max() < 0.95
    model = SparseCoding(24, lam=0.2, n_epochs=4, batch_size=256, n_code_iter=50, dict_init=start).fit(x)
    assert torch.allclose(model.D_.norm(dim=0), torch.ones(24), atol=1e-5)
    assert model.history_[-1] < model.history_[0]
    assert ((model.D_ * D_true).sum(0) > 0.99).all(), (model.D_ * D_true).sum(0)
    # from random patches it still lowers the objective a lot, but may stop in a local minimum
    model = SparseCoding(24, lam=0.05, n_epochs=2, batch_size=256, n_code_iter=50, seed=0).fit(x)
    assert torch.allclose(model.D_.norm(dim=0), torch.ones(24), atol=1e-5)
    assert model.history_[-1] < model.history_[0]
    z = model.transform(x[:10])
    assert z.shape == (10, 24) and model.inverse_transform(z).shape == (10, 16)
    assert model.score(x[:500]) < objective(x[:500], model.D_, torch.zeros(500, 24), 0.05).item()
    # the same seed gives the same dictionary
    again = SparseCoding(24, lam=0.05, n_epochs=2, batch_size=256, n_code_iter=50, seed=0).fit(x)
    assert torch.equal(model.D_, again.D_)
    pgd = SparseCoding(24, lam=0.05, n_epochs=2, batch_size=256, dict_step="pgd", solver="ista", seed=0).fit(x)
    assert torch.allclose(pgd.D_.norm(dim=0), torch.ones(24), atol=1e-5)


def test_clear_errors_on_wrong_patch_shapes():
    D = normalize_atoms(torch.randn(64, 100))
    with pytest.raises(ValueError, match=r"flatten them with x.reshape\(len\(x\), -1\)"):
        fista(torch.randn(10, 8, 8), D, 0.1, 5)
    with pytest.raises(ValueError, match="one patch per row"):
        ista(torch.randn(64), D, 0.1, 5)
    with pytest.raises(ValueError, match=r"patches of 49 pixels but the dictionary's atoms have 64 \(8x8 patches\)"):
        fista(torch.randn(10, 49), D, 0.1, 5)
    with pytest.raises(ValueError, match="NaN"):
        fista(torch.full((2, 64), float("nan")), D, 0.1, 5)
    with pytest.raises(ValueError, match="lam must be >= 0"):
        fista(torch.randn(2, 64), D, -1.0, 5)
    with pytest.raises(ValueError, match="mask must have the shape"):
        fista(torch.randn(2, 64), D, 0.1, 5, mask=torch.ones(2, 63))
    with pytest.raises(ValueError, match="expected a dictionary D of shape"):
        fista(torch.randn(2, 64), torch.randn(64), 0.1, 5)
    with pytest.raises(RuntimeError, match="not fitted"):
        SparseCoding(4).transform(torch.randn(3, 64))
    with pytest.raises(ValueError, match="n_atoms must be between 1 and the number of training patches"):
        SparseCoding(50).fit(torch.randn(10, 16))
    with pytest.raises(ValueError, match="solver must be"):
        SparseCoding(4, solver="lars").fit(torch.randn(10, 16))
    model = SparseCoding(8, n_epochs=1, batch_size=16).fit(torch.randn(40, 16))
    with pytest.raises(ValueError, match="extract patches of the size the dictionary was learned on"):
        model.transform(torch.randn(3, 64))


def test_patches_round_trip_and_psnr():
    image = torch.rand(20, 28)
    for stride in (1, 2, 4):
        patches = image_to_patches(image, 4, stride)
        assert patches.shape == (((20 - 4) // stride + 1) * ((28 - 4) // stride + 1), 16)
        assert torch.allclose(patches_to_image(patches, image.shape, 4, stride), image, atol=1e-6)
    assert torch.equal(image_to_patches(image, 4)[1], image[:4, 1:5].reshape(-1))   # row-major, like image_patches
    assert psnr(torch.full((4, 4), 0.1), torch.zeros(4, 4)) == pytest.approx(20.0)
    with pytest.raises(ValueError, match="greyscale image of shape"):
        image_to_patches(torch.rand(3, 20, 20), 4)


def test_denoise_and_inpaint_exact_cases():
    g = torch.Generator().manual_seed(6)
    image = torch.rand(12, 12, generator=g)
    # a complete orthonormal dictionary with lam = 0 reconstructs every patch exactly: nothing changes
    D = torch.linalg.qr(torch.randn(16, 16, generator=g))[0]
    assert torch.allclose(denoise(image, D, 0.0, n_iter=50), image, atol=1e-4)
    # a constant image with holes: each patch's known pixels are its mean, the code is 0, holes get the constant
    flat = torch.full((12, 12), 0.3)
    observed = (torch.rand(12, 12, generator=g) > 0.5).float()
    filled = inpaint(flat * observed, observed, normalize_atoms(torch.randn(16, 32, generator=g)), 0.1, n_iter=20)
    assert torch.allclose(filled, flat, atol=1e-6)
    with pytest.raises(ValueError, match="do not cover an image"):
        denoise(torch.rand(13, 12), D, 0.1, stride=2)


def test_orientation_coherence_exact_cases():
    ramp = torch.arange(8.0)
    vertical_edge = (ramp[None, :] > 3.5).float().expand(8, 8)          # every gradient horizontal
    diagonal = torch.cos(0.7 * (ramp[:, None] + ramp[None, :]))           # a grating at 45 degrees
    bump = torch.exp(-((ramp[:, None] - 3.5) ** 2 + (ramp[None, :] - 3.5) ** 2) / 4)  # round: no direction
    c = orientation_coherence(torch.stack([vertical_edge, diagonal, bump]).reshape(3, 64))
    assert c[0].item() == pytest.approx(1.0) and c[1].item() == pytest.approx(1.0)
    assert c[2].item() < 0.05
    with pytest.raises(ValueError, match="not square"):
        orientation_coherence(torch.randn(2, 10))


def test_fill_by_local_mean():
    image = torch.arange(25.0).reshape(5, 5)
    observed = torch.ones(5, 5)
    observed[2, 2] = 0                           # neighbours of the centre average to its value
    observed[0, 0] = 0
    filled = fill_by_local_mean(image, observed)
    assert filled[2, 2].item() == pytest.approx(12.0)
    assert filled[0, 0].item() == pytest.approx((1 + 5 + 6) / 3)
    assert torch.equal(filled[observed > 0], image[observed > 0])
    lonely = torch.zeros(7, 7)
    lonely[0, 0] = 1                             # one known pixel: the window widens until it sees it
    assert torch.equal(fill_by_local_mean(torch.full((7, 7), 0.5), lonely), torch.full((7, 7), 0.5))


def test_benchmark_script_runs_and_scores_both_dictionaries_alike(tmp_path):
    # a tiny run of benchmarks/sparse_coding_vs_sklearn.py: the measured numbers come from bigger runs
    import json
    import runpy
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "sparse_coding_vs_sklearn.py"
    bench = runpy.run_path(str(script))
    out = tmp_path / "bench.json"
    bench["main"](["--n-train", "64", "--n-test", "32", "--atoms", "8", "--epochs", "1", "--batch-size", "32",
                   "--sk-batch-size", "32", "--eval-iter", "300", "--check-n", "16", "--threads", "1", "--out", str(out)])
    result = json.loads(out.read_text())
    assert result["encoder_check_max_relative_gap"] < 1e-4      # our encoder reaches sklearn's Lasso optimum
    assert result["ours_atom_norms"] == [1.0, 1.0]
    assert result["sklearn_atom_norms"][1] <= 1.0 + 1e-6
    for key in ("sklearn_fit_seconds", "ours_fit_seconds", "sklearn_objective_train", "ours_objective_test"):
        assert result[key] > 0
