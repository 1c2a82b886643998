"""Our sparse coding (FISTA codes, block-coordinate dictionary steps) against scikit-learn's
MiniBatchDictionaryLearning: the same patches, atoms and lambda, timed in one run on one machine.

Both minimise the same objective (eq. 2.1 of chapter 2), per patch and averaged over patches:

    E(D) = mean_i  min_z  1/2 ||x_i - D z||^2 + lam ||z||_1,   atoms ||d_k|| = 1 (ours) or <= 1 (sklearn)

scikit-learn's ``alpha`` is exactly our ``lam`` (its batch cost is 0.5 ||X - code @ V||^2 + alpha ||code||_1
divided by the batch size). To compare the dictionaries and not the encoders, the objective of BOTH
learned dictionaries is computed the same way: codes from FISTA run to convergence (``--eval-iter``
steps) on the training patches and on held-out patches. A cross-check re-codes a subset with
scikit-learn's coordinate-descent Lasso (``sparse_encode(algorithm="lasso_cd")``) and reports the
largest relative difference of the objectives, which must be tiny for the comparison to mean anything.

Times are those of the ``fit`` calls only, wall clock and CPU (all threads of the process), with the
same number of threads for both (torch's and the BLAS pools, set by ``--threads``). On a shared
machine the wall time also counts waiting for a core; the CPU time does not. Run from the root of the
course:

    python benchmarks/sparse_coding_vs_sklearn.py                    # CPU, writes results/benchmarks/...-cpu.json
    python benchmarks/sparse_coding_vs_sklearn.py --device cuda      # ours on the GPU, sklearn on the CPU
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import unsuplab as ul  # noqa: E402
from unsuplab.models.sparse_coding import SparseCoding, fista, objective  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--patch-size", type=int, default=8)
    p.add_argument("--n-train", type=int, default=10_000, help="training patches (both methods see the same ones)")
    p.add_argument("--n-test", type=int, default=5_000, help="held-out patches (other positions, same images)")
    p.add_argument("--atoms", type=int, default=256, help="K, the number of atoms")
    p.add_argument("--lam", type=float, default=0.1, help="lambda = scikit-learn's alpha")
    p.add_argument("--sk-epochs", type=int, default=1, help="scikit-learn's max_iter (passes over the data)")
    p.add_argument("--sk-batch-size", type=int, default=256, help="scikit-learn's batch_size (its default)")
    p.add_argument("--sk-algorithm", default="lars", choices=["lars", "cd"], help="scikit-learn's fit_algorithm")
    p.add_argument("--epochs", type=float, default=3, help="our passes over the data")
    p.add_argument("--batch-size", type=int, default=1024, help="our mini-batch size")
    p.add_argument("--code-iter", type=int, default=30, help="our FISTA steps per mini-batch while learning")
    p.add_argument("--eval-iter", type=int, default=300, help="FISTA steps for the final, common evaluation")
    p.add_argument("--check-n", type=int, default=300, help="patches re-coded with sklearn's lasso_cd as a check")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="threads for torch and for BLAS")
    p.add_argument("--device", default="cpu", help="where our model runs (cpu, cuda)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="results file (default results/benchmarks/sparse_coding_vs_sklearn-<device>.json)")
    return p.parse_args(argv)


def sig(seconds: float) -> float:
    """A time with 4 significant digits: rounding to a fixed number of decimals would turn the short
    fits of a tiny run into 0.0 s."""
    return float(f"{seconds:.4g}")


def common_objective(x: np.ndarray, D: np.ndarray, lam: float, n_iter: int, device) -> float:
    """E of eq. 2.1 for dictionary D (m, K) on patches x, with codes from n_iter FISTA steps."""
    D = torch.as_tensor(D, dtype=torch.float32, device=device)
    x = torch.as_tensor(x, dtype=torch.float32, device=device)
    z = torch.cat([fista(x[s:s + 8192], D, lam, n_iter) for s in range(0, len(x), 8192)])
    return float(objective(x, D, z, lam))


def lasso_cd_objective(x: np.ndarray, D: np.ndarray, lam: float) -> float:
    """The same E with codes from scikit-learn's coordinate-descent Lasso (a check of our encoder)."""
    from sklearn.decomposition import sparse_encode

    code = sparse_encode(x.astype(np.float64), D.T.astype(np.float64), algorithm="lasso_cd", alpha=lam,
                         max_iter=10_000)
    residual = x - code @ D.T
    return float(np.mean(0.5 * (residual ** 2).sum(1) + lam * np.abs(code).sum(1)))


def main(argv=None) -> dict:
    args = parse_args(argv)
    from sklearn import __version__ as sklearn_version
    from sklearn.decomposition import MiniBatchDictionaryLearning
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    x_train = ul.data.image_patches(args.patch_size, args.n_train, seed=args.seed)       # (N, m) float32
    x_test = ul.data.image_patches(args.patch_size, args.n_test, seed=args.seed + 1)
    print(f"patches: train {x_train.shape}, test {x_test.shape}; K = {args.atoms}, lambda = {args.lam}; "
          f"{args.threads} thread(s); ours on {ul.runtime.device_name(device)}", flush=True)

    with threadpool_limits(limits=args.threads), warnings.catch_warnings():
        # LARS warns when a path stops early on tiny residuals; the objective below is what counts
        warnings.simplefilter("ignore")
        sk = MiniBatchDictionaryLearning(n_components=args.atoms, alpha=args.lam, max_iter=args.sk_epochs,
                                         batch_size=args.sk_batch_size, fit_algorithm=args.sk_algorithm,
                                         random_state=args.seed)
        t0, c0 = time.perf_counter(), time.process_time()
        sk.fit(x_train)
        sk_seconds, sk_cpu = time.perf_counter() - t0, time.process_time() - c0
    D_sk = sk.components_.T.astype(np.float32)                                          # (m, K)
    print(f"scikit-learn: {sk_seconds:.1f} s ({sk_cpu:.1f} s of CPU) for {sk.n_steps_} mini-batches", flush=True)

    ours = SparseCoding(args.atoms, lam=args.lam, n_epochs=args.epochs, batch_size=args.batch_size,
                        n_code_iter=args.code_iter, seed=args.seed, device=device)
    x_dev = torch.as_tensor(x_train, device=device)
    if device.type == "cuda":  # warm up the kernels, then time with synchronisation
        SparseCoding(args.atoms, lam=args.lam, n_epochs=0.1, batch_size=args.batch_size,
                     n_code_iter=2, seed=args.seed, device=device).fit(x_dev)
        torch.cuda.synchronize()
    t0, c0 = time.perf_counter(), time.process_time()
    ours.fit(x_dev)
    if device.type == "cuda":
        torch.cuda.synchronize()
    our_seconds, our_cpu = time.perf_counter() - t0, time.process_time() - c0
    D_ours = ours.D_.float().cpu().numpy()
    print(f"ours: {our_seconds:.1f} s ({our_cpu:.1f} s of CPU) for {args.epochs} epoch(s)", flush=True)

    results = {"sklearn": {}, "ours": {}}
    for name, D in (("sklearn", D_sk), ("ours", D_ours)):
        results[name]["objective_train"] = common_objective(x_train, D, args.lam, args.eval_iter, device)
        results[name]["objective_test"] = common_objective(x_test, D, args.lam, args.eval_iter, device)
        results[name]["atom_norm_max"] = float(np.linalg.norm(D, axis=0).max())
        results[name]["atom_norm_min"] = float(np.linalg.norm(D, axis=0).min())
    results["sklearn"]["fit_seconds"], results["ours"]["fit_seconds"] = sk_seconds, our_seconds

    # the common encoder must reach the Lasso's optimum: compare with coordinate descent on a subset
    check = []
    with threadpool_limits(limits=args.threads):
        for D in (D_sk, D_ours):
            sub = x_train[:args.check_n]
            ref = lasso_cd_objective(sub, D, args.lam)
            got = common_objective(sub, D, args.lam, args.eval_iter, device)
            check.append(abs(got - ref) / ref)
    encoder_gap = max(check)

    s, o = results["sklearn"], results["ours"]
    summary = {
        "benchmark": "sparse_coding_vs_sklearn",
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": device.type,
        "device_name": ul.runtime.device_name(device),
        "cpu_name": ul.runtime.device_name("cpu"),
        "threads": args.threads,
        "torch": torch.__version__,
        "sklearn": sklearn_version,
        "python": platform.python_version(),
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "objective": "mean over patches of 0.5 ||x - D z||^2 + lam ||z||_1 (sklearn's alpha = lam), "
                     f"codes by {args.eval_iter} FISTA steps for both dictionaries",
        "sklearn_fit_seconds": sig(s["fit_seconds"]),
        "ours_fit_seconds": sig(o["fit_seconds"]),
        "speedup": round(s["fit_seconds"] / o["fit_seconds"], 2),
        "sklearn_fit_cpu_seconds": sig(sk_cpu),
        "ours_fit_cpu_seconds": sig(our_cpu),
        "sklearn_objective_train": s["objective_train"],
        "ours_objective_train": o["objective_train"],
        "sklearn_objective_test": s["objective_test"],
        "ours_objective_test": o["objective_test"],
        "ours_lower_or_equal_objective": o["objective_train"] <= s["objective_train"]
                                         and o["objective_test"] <= s["objective_test"],
        "ours_faster": o["fit_seconds"] < s["fit_seconds"],
        "sklearn_atom_norms": [round(s["atom_norm_min"], 4), round(s["atom_norm_max"], 4)],
        "ours_atom_norms": [round(o["atom_norm_min"], 4), round(o["atom_norm_max"], 4)],
        "encoder_check_max_relative_gap": encoder_gap,
    }
    print(json.dumps(summary, indent=2))
    out = Path(args.out) if args.out else ROOT / "results" / "benchmarks" / f"sparse_coding_vs_sklearn-{device.type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"written: {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return summary


if __name__ == "__main__":
    main()
