"""Looking for DeepCluster's collapse in the run that trains the features (chapter 7, issue 14).

Without its two fixes (empty-cluster re-assignment, class-balanced sampling), DeepCluster is said to
drift towards a few giant clusters: a network rewarded for predicting the clusters is best off when
almost every image falls into one. Lab 7 and ``ssl_ablations.py`` found no such drift in the lab's
setting. This script pushes the loop harder in the directions that should favour a collapse, each run
with and without the fixes from the same start, on the lab's data, trunk and evaluation:

- a learning rate 5 times the lab's, with longer rounds (the network can fit each round's clusters);
- the paper's crops and flips instead of SimCLR's augmentation (colour is left as an easy cue);
- 4 times as many clusters (smaller clusters, easier to empty).

None of these collapses (the committed results). Two more of the paper's choices guard the clusters
besides the fixes: K-means restarts from random images every round, and it clusters PCA-whitened
features. The second part of the script takes both away (L2-normalised features without whitening,
K-means started from the last round's centroids), with 10 times the lab's clusters at the high learning
rate, and runs it without the fixes, with each fix alone and with both; one more run without the fixes
restarts K-means every round, to tell which guard matters.

Each row records, round by round, the largest cluster's share of the images, the number of clusters in
use, NMI with the classes, and the frozen features' linear probe and k-NN at the end.

    PYTHONPATH=. UNSUPLAB_DATA_MIRROR=... python benchmarks/deepcluster_collapse.py \\
        --out results/benchmarks/deepcluster_collapse-cpu.json

About 10 minutes on an idle 2-core CPU; like ``ssl_ablations.py`` it writes nothing when the machine is busy.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from ssl_ablations import deepcluster, experiment_parser, start, timed, write_summary  # noqa: E402
from unsuplab.models import ssl  # noqa: E402


def settings(args) -> dict[str, dict]:
    """Each run's keyword arguments of ``deepcluster()``; the rest as in lab 7 (k = 50, lr = 2e-3, SimCLR's views)."""
    return {
        f"learning rate {args.high_lr:g}, {args.rounds} rounds of {args.long_steps} steps":
            {"lr": args.high_lr, "rounds": args.rounds, "steps": args.long_steps},
        f"crops and flips, {args.rounds} rounds of {args.steps} steps":
            {"augment": ssl.random_crop_flip, "rounds": args.rounds, "steps": args.steps},
        f"{args.many_k} clusters, {args.rounds} rounds of {args.steps} steps":
            {"k": args.many_k, "rounds": args.rounds, "steps": args.steps},
    }


def guards_down(args) -> dict[str, dict]:
    """Each run's keyword arguments of ``deepcluster()`` with the paper's other guards taken away: no
    whitening, and (but for the first run) K-means carried over from the last round's centroids."""
    setting = (f"{args.guard_k} clusters, learning rate {args.high_lr:g}, {args.guard_rounds} rounds of "
               f"{args.guard_steps} steps, no whitening")
    base = {"k": args.guard_k, "lr": args.high_lr, "rounds": args.guard_rounds, "steps": args.guard_steps,
            "whiten": False, "fixes": False}
    carried = {**base, "carry_centroids": True}
    return {
        f"{setting}, K-means restarted, no fixes": base,
        f"{setting}, centroids carried over, no fixes": carried,
        f"{setting}, centroids carried over, re-assignment only": {**carried, "reassign": True},
        f"{setting}, centroids carried over, balanced sampling only": {**carried, "balanced": True},
        f"{setting}, centroids carried over, both fixes": {**carried, "fixes": True},
    }


def main(argv=None) -> int:
    parser = experiment_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=4, help="rounds of every run")
    parser.add_argument("--steps", type=int, default=300, help="steps per round")
    parser.add_argument("--long-steps", type=int, default=500, help="steps per round at the high learning rate")
    parser.add_argument("--high-lr", type=float, default=1e-2, help="5 times the lab's")
    parser.add_argument("--many-k", type=int, default=200, help="4 times the lab's clusters")
    parser.add_argument("--guard-k", type=int, default=500, help="clusters with the other guards down")
    parser.add_argument("--guard-rounds", type=int, default=8, help="rounds with the other guards down")
    parser.add_argument("--guard-steps", type=int, default=150, help="steps per round with the other guards down")
    args = parser.parse_args(argv)

    started = start(args)
    if started is None:
        return 1
    e, load_at_start = started
    results = {"random weights": timed(lambda: e.evaluate(ssl.to_channels_last(e.trunk(), "cpu")))}
    runs, guarded = settings(args), guards_down(args)
    rows = {f"{name}, " + ("both fixes" if fixes else "no fixes"): {**kwargs, "fixes": fixes}
            for name, kwargs in runs.items() for fixes in (False, True)}
    for row, kwargs in (rows | guarded).items():
        results[row] = r = timed(lambda: deepcluster(e, **kwargs))
        print(f"{row:55s} largest {[round(s, 3) for s in r['largest']]}  used {r['clusters_used']}  "
              f"linear {r['linear']:.1%}  k-NN {r['knn']:.1%}  ({r['seconds']:.0f} s)", flush=True)
    write_summary("deepcluster_collapse", e, args, load_at_start, results,
                  runs={name: {k: (v.__name__ if callable(v) else v) for k, v in kw.items()} for name, kw in runs.items()},
                  guards_down=guarded)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
