"""Chapter 7's engineering choices, each measured against its alternative, everything else as in lab 7.

Lab 7 (cpu profile) trains every method once. This script measures what the lab's choices buy, on the
same data, trunk, optimiser and evaluation (linear probe and weighted 200-NN on frozen features of the
whole CIFAR-10 test set), next to the randomly initialised trunk:

- **NPID's memory bank**: started at random, as Wu et al. (2018), or at the network's own embeddings
  (``MemoryBank.start_from``), which the lab uses;
- **DeepCluster's augmentation**: random crops and flips, or SimCLR's crops, colour jitter and grey,
  which the lab uses;
- **DeepCluster's two fixes from a lopsided start**: the first round's clusters are forced uneven (half
  of them merged into one), then the loop runs on with or without empty-cluster re-assignment and
  class-balanced sampling; the log says whether the next K-means undoes the damage;
- **DeepCluster over more rounds**: ``--dc-long-rounds`` shorter rounds (same k), with and without
  the two fixes, to see whether either version drifts towards a giant cluster when the loop runs longer;
- **relative position on the paper's 3 x 3 grid** (8-pixel patches on 32-pixel images): its margin
  over random weights as training gets longer, and with three changes tried against its low-level cues
  (colour jitter and grey on each patch separately, grey patches, patches cut from the image enlarged
  twice); and the lab's layout beside them: a 2 x 2 grid of 14-pixel patches, each recoloured, with a
  warm-up and cosine decay of the rate.

    PYTHONPATH=. UNSUPLAB_DATA_MIRROR=... python benchmarks/ssl_ablations.py \\
        --out results/benchmarks/ssl_ablations-cpu.json

It takes about 10 to 15 minutes on an idle 2-core CPU. Results are only worth writing on an idle machine: if
the load average exceeds the number of cores when it starts, the script stops without writing
(``--allow-busy`` writes anyway, and the file says so).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import unsuplab as ul  # noqa: E402
from unsuplab.models import ssl  # noqa: E402
from unsuplab.runtime import device_name  # noqa: E402


class Experiment:
    """Lab 7's cpu-profile setting: the data on the device, one trunk, Adam, one evaluation."""

    def __init__(self, args):
        self.args = args
        source = ul.data.cifar10_source("auto")
        self.x, self.y = ul.data.cifar10("train", n=args.n_train, source=source)
        self.x_test, self.y_test = ul.data.cifar10("test", n=args.n_test, source=source)
        self.data = ul.data.CIFAR10_DESCRIPTIONS[source]

    def trunk(self):
        torch.manual_seed(self.args.seed)
        return ssl.make_backbone("convnet", self.args.width)

    def fit(self, model, loss_fn, steps, cosine: bool = False):
        """Adam at lr, as the lab's ``train``; ``cosine``: a warm-up over 5% of the steps, then a cosine decay."""
        batches = ul.train.TensorBatches(torch.arange(len(self.x)), batch_size=self.args.batch_size, drop_last=True)
        schedule = {"warmup": steps // 20, "decay": "cosine"} if cosine else {}
        ul.train.fit(model, loss_fn, batches, epochs=math.ceil(steps / len(batches)), max_steps=steps, lr=self.args.lr,
                     seed=self.args.seed, progress_bar=False, **schedule)

    def evaluate(self, model) -> dict:
        scores = ssl.evaluate(ssl.extract_features(model, self.x), self.y, ssl.extract_features(model, self.x_test),
                              self.y_test, k=200, probe_iters=200)
        return {"linear": scores["linear"], "knn": scores["knn"]}


def timed(fn) -> dict:
    started = time.perf_counter()
    out = fn()
    return {**out, "seconds": round(time.perf_counter() - started, 1)}


def npid(e: Experiment, start_from_network: bool) -> dict:
    model = ssl.to_channels_last(ssl.InstanceNet(e.trunk()), "cpu")
    bank = ssl.MemoryBank(len(e.x), momentum=0.5)
    if start_from_network:
        bank.start_from(model, e.x)

    def loss(net, index):
        v = net(ssl.simclr_augment(e.x[index]))
        out = ssl.npid_loss(v, index, bank, 0.07)
        bank.update(index, v)
        return out

    e.fit(model, loss, e.args.npid_steps)
    return e.evaluate(model)


def deepcluster(e: Experiment, augment=ssl.simclr_augment, *, fixes: bool = True, lopsided_start: bool = False,
                rounds: int | None = None, steps: int | None = None, k: int | None = None,
                lr: float | None = None, reassign: bool | None = None, balanced: bool | None = None,
                whiten: bool = True, carry_centroids: bool = False) -> dict:
    """The lab's DeepCluster; with ``lopsided_start`` its first clustering is made uneven: clusters
    0..k/2-1 merged into one. ``fixes``: empty-cluster re-assignment and class-balanced sampling
    (``reassign`` or ``balanced``, if given, sets that fix alone). ``rounds``, ``steps`` (per round),
    ``k`` and ``lr`` default to the lab's; ``whiten`` and ``carry_centroids`` as in
    :func:`~unsuplab.models.ssl.train_deepcluster`."""
    k = k or e.args.dc_k
    reassign = fixes if reassign is None else reassign
    balanced = fixes if balanced is None else balanced

    def lopsided(round_, pseudo):
        return torch.where(pseudo < k // 2, torch.zeros_like(pseudo), pseudo) if round_ == 0 else pseudo

    model = ssl.to_channels_last(ssl.Classifier(e.trunk(), k), "cpu")
    history = ssl.train_deepcluster(model, e.x, rounds=rounds or e.args.dc_rounds, steps_per_round=steps or e.args.dc_steps,
                                    batch_size=e.args.batch_size, lr=lr or e.args.lr, augment=augment, labels=e.y,
                                    reassign=ssl.reassign_empty_clusters if reassign else None, balanced=balanced,
                                    whiten=whiten, carry_centroids=carry_centroids,
                                    relabel=lopsided if lopsided_start else None, seed=e.args.seed, progress_bar=False)
    empty = [int(n) for n in history.epochs["empty"]]  # counts: a History holds floats
    return {**e.evaluate(model), "largest": history.epochs["largest"], "empty": empty,
            "clusters_used": [k - n for n in empty], "nmi": history.epochs["nmi"]}


def relative_position(e: Experiment, steps: int, variant: str = "3 x 3 grid") -> dict:
    model = ssl.to_channels_last(ssl.RelativePositionNet(e.trunk()), "cpu")
    patch, gap, jitter, scale = (16, 4, 2, 2) if variant == "image enlarged 2x" else (8, 2, 1, 1)

    def loss(net, index):
        x = ssl.random_crop_flip(e.x[index], padding=0)
        if scale > 1:
            x = F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)
        centre, neighbour, k = ssl.patch_pairs(x, patch, gap, jitter)
        if variant == "colour jitter per patch":
            centre, neighbour = (ssl.random_grayscale(ssl.color_jitter(p, 0.4, 0.4, 0.4, 0.1)) for p in (centre, neighbour))
        elif variant == "grey patches":
            centre, neighbour = (ssl.grayscale(p).expand(-1, 3, -1, -1) for p in (centre, neighbour))
        return F.cross_entropy(net(centre, neighbour), k)

    e.fit(model, loss, steps)
    return e.evaluate(model)


def lab_relative_position(e: Experiment) -> dict:
    """The lab's relative position: a 2 x 2 grid of 14-pixel patches, each recoloured, cosine schedule."""
    model = ssl.to_channels_last(ssl.RelativePositionNet(e.trunk()), "cpu")

    def loss(net, index):
        first, second, k = ssl.patch_pairs(e.x[index], 14, 2, 1, grid=2)
        return F.cross_entropy(net(ssl.recolour_patches(first), ssl.recolour_patches(second)), k)

    e.fit(model, loss, e.args.steps, cosine=True)
    return e.evaluate(model)


def experiment_parser(description: str) -> argparse.ArgumentParser:
    """The command line of lab 7's cpu setting (data, trunk, Adam, DeepCluster, seed) and of the output,
    shared by this script and ``deepcluster_collapse.py``; each adds its own flags."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--n-train", type=int, default=20_000)
    parser.add_argument("--n-test", type=int, default=10_000)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--dc-k", type=int, default=50)
    parser.add_argument("--dc-rounds", type=int, default=3)
    parser.add_argument("--dc-steps", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="write the results here (JSON)")
    parser.add_argument("--allow-busy", action="store_true", help="write even if the machine was busy")
    return parser


def load_if_idle(args) -> list[float] | None:
    """The load average now; ``None`` (and a printed reason) when results are to be written and other
    work is running, since the benchmark would measure it too (``--allow-busy`` writes anyway)."""
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    if args.out and load_at_start[0] > os.cpu_count() and not args.allow_busy:
        print(f"the load average is {load_at_start[0]} on {os.cpu_count()} cores: other work is running, and this "
              "benchmark would measure it too. Nothing is written; wait for an idle machine (or pass --allow-busy).")
        return None
    return load_at_start


def start(args) -> tuple[Experiment, list[float]] | None:
    """The experiment in lab 7's cpu setting and the load average at its start; ``None`` when the
    machine is busy and results are to be written (:func:`load_if_idle`)."""
    load_at_start = load_if_idle(args)
    if load_at_start is None:
        return None
    ul.setup("cpu", seed=args.seed)
    return Experiment(args), load_at_start


def write_summary(benchmark: str, e: Experiment, args, load_at_start: list[float], results: dict, **extra) -> None:
    """Print and, with ``--out``, write the results with the settings, the machine, the commit and the load."""
    commit, dirty = ul.bench.git_state(ROOT)
    cores = os.cpu_count()
    summary = {
        "benchmark": benchmark, "data": e.data, "settings": vars(args) | {"out": None}, **extra,
        "machine": device_name(torch.device("cpu")), "platform": platform.platform(), "cores": cores,
        "torch": torch.__version__, "git_commit": commit, "git_dirty": dirty,
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "load_average_at_start": load_at_start, "machine_was_busy": load_at_start[0] > cores,
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()], "results": results,
    }
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(summary, indent=2) + "\n")
        print(f"wrote {args.out}")


def main(argv=None) -> int:
    parser = experiment_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=1_000, help="Adam steps of relative position's variants")
    parser.add_argument("--npid-steps", type=int, default=400)
    parser.add_argument("--dc-long-rounds", type=int, default=10, help="rounds of the longer DeepCluster pair")
    parser.add_argument("--dc-long-steps", type=int, default=100, help="steps per round of the longer pair")
    parser.add_argument("--relpos-steps", type=int, nargs="+", default=[500, 1_000, 2_000])
    args = parser.parse_args(argv)

    started = start(args)
    if started is None:
        return 1
    e, load_at_start = started
    results = {}

    def run(name, fn):
        results[name] = timed(fn)
        r = results[name]
        print(f"{name:58s} linear {r['linear']:6.1%}  k-NN {r['knn']:6.1%}  ({r['seconds']:.0f} s)", flush=True)

    run("random weights", lambda: e.evaluate(ssl.to_channels_last(e.trunk(), "cpu")))
    run("NPID, memory bank started at random", lambda: npid(e, False))
    run("NPID, memory bank started at the network's embeddings", lambda: npid(e, True))
    run("DeepCluster, crops and flips", lambda: deepcluster(e, ssl.random_crop_flip))
    run("DeepCluster, SimCLR's augmentation", lambda: deepcluster(e, ssl.simclr_augment))
    run("DeepCluster from a lopsided start, no fixes", lambda: deepcluster(e, fixes=False, lopsided_start=True))
    run("DeepCluster from a lopsided start, both fixes", lambda: deepcluster(e, fixes=True, lopsided_start=True))
    for fixes in (False, True):
        run(f"DeepCluster, {args.dc_long_rounds} rounds of {args.dc_long_steps} steps, "
            + ("both fixes" if fixes else "no fixes"),
            lambda: deepcluster(e, fixes=fixes, rounds=args.dc_long_rounds, steps=args.dc_long_steps))
    for steps in args.relpos_steps:
        run(f"relative position, {steps} steps", lambda: relative_position(e, steps))
    for variant in ("colour jitter per patch", "grey patches", "image enlarged 2x"):
        run(f"relative position, {args.steps} steps, {variant}", lambda: relative_position(e, args.steps, variant))
    run(f"the lab's 2 x 2 grid of relative position, {args.steps} steps", lambda: lab_relative_position(e))

    random = results["random weights"]
    for r in results.values():
        r["linear_over_random"] = r["linear"] - random["linear"]
        r["knn_over_random"] = r["knn"] - random["knn"]
    write_summary("ssl_ablations", e, args, load_at_start, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
