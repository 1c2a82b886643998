"""SimCLR on CIFAR-10 from the command line, on one process or on many with DistributedDataParallel.

The same file runs unchanged in both ways::

    python -m unsuplab.scripts.simclr --profile cpu                      # one process
    torchrun --standalone --nproc_per_node=8 -m unsuplab.scripts.simclr --profile full   # 8 GPUs

Under ``torchrun`` (which sets RANK, WORLD_SIZE and LOCAL_RANK) every process holds the training
images on its device, takes its slice of each global batch, and the NT-Xent loss gathers the
negatives of all processes (``unsuplab.models.ssl.nt_xent``), so the loss is that of the global
batch whatever the number of processes. Backend: NCCL on GPUs (with synchronised batch norm, as in
Chen et al. 2020), gloo on CPUs (each process then normalises with its own batch statistics,
because PyTorch's SyncBatchNorm needs a GPU).

At the end, process 0 evaluates the frozen features with the chapter's protocol (weighted k-NN,
k = 200, and a linear probe), prints the numbers and, with ``--out``, writes them to a JSON file
together with the data they were measured on.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
import torch.distributed as dist

import unsuplab as ul
from unsuplab.models import ssl

# Per profile: what `--profile` sets unless a flag overrides it. `full` is chosen to reach k-NN >= 85%
# on CIFAR-10 within 10 minutes of training on one H100 (not yet measured).
PROFILES = {
    "smoke": dict(arch="convnet", width=8, n_train=256, n_test=128, epochs=1, batch_size=64, lr=0.1,
                  temperature=0.5, hidden=64, out_dim=32, time_budget=None),
    "cpu": dict(arch="convnet", width=32, n_train=10_000, n_test=2_000, epochs=3, batch_size=256, lr=0.3,
                temperature=0.2, hidden=512, out_dim=128, time_budget=None),
    "full": dict(arch="resnet18", width=0, n_train=50_000, n_test=10_000, epochs=200, batch_size=512, lr=0.6,
                 temperature=0.2, hidden=2048, out_dim=128, time_budget=570.0),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m unsuplab.scripts.simclr", description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="auto", help="smoke | cpu | full | auto (full on a GPU, else cpu)")
    parser.add_argument("--arch", choices=["convnet", "resnet18"], help="the trunk")
    parser.add_argument("--width", type=int, help="width of the convnet trunk")
    parser.add_argument("--n-train", type=int, help="training images (unlabelled)")
    parser.add_argument("--n-test", type=int, help="test images for the evaluation")
    parser.add_argument("--epochs", type=int, help="passes over the training images (at most)")
    parser.add_argument("--batch-size", type=int, help="global batch: the sum over processes")
    parser.add_argument("--lr", type=float, help="peak learning rate of SGD")
    parser.add_argument("--temperature", type=float, help="tau of NT-Xent")
    parser.add_argument("--hidden", type=int, help="hidden width of the projection head")
    parser.add_argument("--out-dim", type=int, help="output width of the projection head")
    parser.add_argument("--time-budget", type=float, help="seconds of training; the schedule ends on time")
    parser.add_argument("--max-steps", type=int, help="stop after this many steps")
    parser.add_argument("--source", default="auto", help="CIFAR-10 copy: auto | official | jpeg")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--compile", action="store_true", help="torch.compile the model (GPU)")
    parser.add_argument("--checkpoint", help="save after every epoch and resume from this file")
    parser.add_argument("--no-eval", action="store_true", help="skip the k-NN and linear-probe evaluation")
    parser.add_argument("--out", help="write the results as JSON to this file (process 0)")
    args = parser.parse_args(argv)
    args.profile = ul.resolve_profile(args.profile)
    for key, value in PROFILES[args.profile].items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    return args


def main(argv: list[str] | None = None) -> dict | None:
    args = parse_args(argv)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    distributed = world > 1
    if distributed:
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        rank, local_rank = dist.get_rank(), int(os.environ.get("LOCAL_RANK", "0"))
        if torch.cuda.is_available():
            torch.cuda.set_device(local_rank)
            device = f"cuda:{local_rank}"
        else:
            device = "cpu"
    else:
        rank, device = 0, None
    # the same seed everywhere for the model's initial weights; each process its own augmentations
    rt = ul.setup(args.profile, seed=args.seed, device=device, verbose=rank == 0)
    source = ul.data.cifar10_source(args.source)
    data_name = ul.data.CIFAR10_DESCRIPTIONS[source]
    x_train, y_train = ul.data.cifar10("train", n=args.n_train, source=source)
    x_train = x_train.to(rt.device)

    width = args.width or 32
    model = ssl.SimCLR(ssl.make_backbone(args.arch, width), hidden=args.hidden, out=args.out_dim)
    model = ssl.to_channels_last(model, rt.device)
    if distributed:
        if rt.device.type == "cuda":
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[rt.device.index] if rt.device.type == "cuda" else None)
    trained = torch.compile(model) if args.compile else model
    torch.manual_seed(args.seed * 1_000 + rank + 1)  # augmentations differ between processes
    if rank == 0:
        print(f"SimCLR on {len(x_train):,} images of {data_name}: {world} process(es), global batch "
              f"{args.batch_size} ({args.batch_size // world} per process), {2 * args.batch_size - 2} "
              f"negatives per anchor, {args.arch}, up to {args.epochs} epochs"
              + (f" or {args.time_budget:.0f} s" if args.time_budget else ""))
    history = ssl.train_simclr(trained, x_train, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                               temperature=args.temperature, time_budget=args.time_budget,
                               max_steps=args.max_steps, seed=args.seed, checkpoint=args.checkpoint,
                               progress_bar=rank == 0, log_every=1 if args.profile == "smoke" else 10)
    core = model.module if distributed else model

    # every process must end with the same weights: DDP averaged the same gradients everywhere
    with torch.no_grad():
        checksum = torch.tensor([sum(float(p.double().sum()) for p in core.parameters())])
    checksums = [torch.zeros_like(checksum) for _ in range(world)]
    if distributed:
        dist.all_gather(checksums, checksum)
    else:
        checksums = [checksum]

    results = None
    if rank == 0:
        results = {
            "data": data_name, "data_source": source, "n_train": len(x_train), "arch": args.arch,
            "world_size": world, "global_batch": args.batch_size, "negatives_per_anchor": 2 * args.batch_size - 2,
            "steps": int(history.steps["step"][-1]) if history.steps.get("step") else 0,
            "first_loss": history.steps["loss"][0] if history.steps.get("loss") else None,
            "epoch_loss": history.epochs.get("loss", []), "train_seconds": round(history.seconds, 2),
            "param_checksums": [float(c) for c in checksums], "device": rt.device_name,
            "temperature": args.temperature, "profile": args.profile,
        }
        if not args.no_eval:
            started = time.perf_counter()
            x_test, y_test = ul.data.cifar10("test", n=args.n_test, source=source)
            f_train = ssl.extract_features(core, x_train)
            f_test = ssl.extract_features(core, x_test)
            scores = ssl.evaluate(f_train, y_train, f_test, y_test)
            results.update(knn_acc=scores["knn"], linear_acc=scores["linear"], n_test=len(x_test),
                           eval_seconds=round(time.perf_counter() - started, 2))
            print(f"frozen features on {data_name}: k-NN {scores['knn']:.2%}, linear probe {scores['linear']:.2%} "
                  f"after {history.seconds:.0f} s of training")
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    if distributed:
        dist.barrier()
        dist.destroy_process_group()
    return results


if __name__ == "__main__":
    main()
