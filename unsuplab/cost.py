"""How long a lab will take, said before it runs: a cost model from counted work.

A lab's time is mostly the steps of a few training loops. For each loop, :mod:`unsuplab.workloads`
builds the lab's real models at the profile's sizes and runs one step at two small batch sizes under
:class:`WorkCounter`, which counts three things per step:

* **FLOPs**, with ``torch.utils.flop_counter.FlopCounterMode`` (matrix products, convolutions,
  attention: the arithmetic a GPU's tensor cores or a CPU's vector units do);
* **bytes** written by every operation that makes a new tensor (element-wise work, which memory
  bandwidth bounds);
* **operations** launched (each one a kernel launch on a GPU, and a fixed framework overhead anywhere).

FLOPs and bytes grow linearly with the batch, so two small batches give the cost at the real one
exactly; the number of operations does not grow with it. A loop's work is its per-step work times its
planned steps. Turned into seconds on a machine::

    seconds = FLOPs / (peak FLOP/s x efficiency) + bytes / bandwidth + operations x overhead

For this CPU the three rates are measured (:func:`measure_cpu`: training steps of a wide and of a
tiny MLP, and a large copy); for a GPU they are its public peak numbers with a stated efficiency
(:data:`GPUS`). The model leaves out what it does not count (data loading, scikit-learn, Python
between steps), so it is checked against the measured ``cpu`` wall times of every lab in the results
page, where the ratio says how far to trust it.

The counts of every lab and profile are stored in ``unsuplab/cost_table.json`` (written by
``python -m unsuplab.cost --write`` from the solutions; a test fails when a lab's settings change and
the table was not rewritten), so that a lab on Colab can print its estimate at once::

    >>> rt = ul.setup("auto", seed=0, lab="07_self_supervised")     # doctest: +SKIP
    profile=cpu device=cuda (Tesla T4) ...
    estimated time: about 4 minutes on this Tesla T4 (profile cpu; full would take about 41 minutes)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["TABLE", "AUTO_LIMIT_MINUTES", "WorkCounter", "Work", "count", "count_at", "Phase", "Hardware", "GPUS",
           "gpu_hardware", "optimiser_step", "measure_cpu", "this_machine", "settings_digest", "count_lab",
           "phase_seconds", "load_table", "estimate_seconds", "describe", "choose_auto_profile", "announce",
           "lab_settings", "write_table", "check_against_cpu", "main"]

TABLE = Path(__file__).with_name("cost_table.json")
AUTO_LIMIT_MINUTES = 15.0   # auto on a GPU: the full profile only where its estimate is at most this


# ------------------------------------------------------------------------------------------------
# Counting the work of one step
# ------------------------------------------------------------------------------------------------

_NO_KERNEL = (torch.ops.aten._unsafe_view.default, torch.ops.aten.detach.default)   # views by another name


class WorkCounter(TorchDispatchMode):
    """Counts the operations a block of torch code launches and the bytes their new tensors take.
    Views (reshape, transpose, slicing) launch nothing and are not counted."""

    def __init__(self):
        super().__init__()
        self.ops, self.bytes = 0, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if not (func.is_view or func in _NO_KERNEL):
            self.ops += 1
            self.bytes += sum(t.numel() * t.element_size() for t in tree_flatten(out)[0]
                              if isinstance(t, torch.Tensor))
        return out


@dataclass(frozen=True)
class Work:
    """What one step costs: FLOPs, bytes written, operations launched."""

    flops: float = 0.0
    bytes: float = 0.0
    ops: float = 0.0

    def __add__(self, other: Work) -> Work:
        return Work(self.flops + other.flops, self.bytes + other.bytes, self.ops + other.ops)

    def __mul__(self, times: float) -> Work:
        return Work(self.flops * times, self.bytes * times, self.ops * times)


def count(fn: Callable[[], object]) -> Work:
    """The work of calling ``fn()`` once, counted."""
    with FlopCounterMode(display=False) as flops, WorkCounter() as work:
        fn()
    return Work(float(flops.get_total_flops()), float(work.bytes), float(work.ops))


def count_at(make: Callable[[int], Callable[[], object]], size: int, small: tuple[int, int] = (2, 4)) -> Work:
    """The work of one step at ``size`` (a batch, or whatever the cost grows with), from two counted
    steps at the ``small`` sizes: FLOPs and bytes grow linearly in it, operations stay as they are.
    ``make(n)`` returns a function that does one step at size ``n``. Each step is counted after one
    uncounted warm-up call (lazy state, first-call allocations)."""
    a, b = small
    if size <= b:
        fn = make(size)
        fn()
        return count(fn)
    fa, fb = make(a), make(b)
    fa(), fb()
    wa, wb = count(fa), count(fb)
    slope = lambda x, y: (y - x) / (b - a)     # noqa: E731
    return Work(max(wa.flops + slope(wa.flops, wb.flops) * (size - a), 0.0),
                max(wa.bytes + slope(wa.bytes, wb.bytes) * (size - a), 0.0), wb.ops)


@dataclass
class Phase:
    """One loop of a lab: ``steps`` repeats of a step whose cost grows with ``size``.
    ``mixed``: on a GPU the step runs under autocast (tensor cores). ``on_cpu``: the lab runs it on
    the CPU whatever its device (priced at the host CPU's rates on a GPU machine)."""

    name: str
    steps: float
    size: int
    make: Callable[[int], Callable[[], object]]
    mixed: bool = False
    small: tuple[int, int] = (2, 4)
    on_cpu: bool = False
    budget: float | None = None      # seconds after which the lab ends this loop, whatever its steps

    def work(self) -> Work:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            return count_at(self.make, self.size, self.small) * self.steps


# ------------------------------------------------------------------------------------------------
# Machines
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Hardware:
    """A machine's rates: peak FLOP/s in float32 and at the labs' mixed precision, the share of that
    peak the labs' matrix products reach, memory bandwidth (bytes/s) and the time of one operation's
    launch and framework overhead (seconds)."""

    name: str
    fp32: float
    mixed: float
    efficiency: float
    bandwidth: float
    overhead: float

    def seconds(self, fp32: Work, mixed: Work = Work()) -> float:
        """Estimated seconds for work done in float32 and under autocast (the same rate on a CPU)."""
        return (fp32.flops / (self.fp32 * self.efficiency) + mixed.flops / (self.mixed * self.efficiency)
                + (fp32.bytes + mixed.bytes) / self.bandwidth + (fp32.ops + mixed.ops) * self.overhead)


# Public peak numbers (dense, no sparsity): float32, and bfloat16/float16 on tensor cores (T4: float16,
# which is what unsuplab.train.amp_dtype picks there). The labs' models are small, so their matrix products
# reach a small share of peak: 30% is stated, not measured (no GPU has run a lab yet). Overhead: about 10
# microseconds per operation for a kernel launch plus PyTorch's dispatch, less on faster hosts.
GPUS = {
    "T4": Hardware("NVIDIA T4", 8.1e12, 65e12, 0.3, 320e9, 10e-6),
    "A100": Hardware("NVIDIA A100", 19.5e12, 312e12, 0.3, 1.6e12, 8e-6),
    "H100": Hardware("NVIDIA H100", 67e12, 989e12, 0.3, 3.35e12, 6e-6),
}


def gpu_hardware(name: str, multiprocessors: int = 0, major: int = 0) -> Hardware:
    """The rates of a CUDA card by its name (T4, A100, H100 and H200 known; others estimated from their
    multiprocessor count at 128 float32 lanes x 2 FLOPs x 1.5 GHz, tensor cores 8x that from compute
    capability 7.0)."""
    upper = name.upper()
    for key in ("H100", "H200", "A100", "T4"):
        if key in upper:
            return GPUS["H100" if key == "H200" else key]
    fp32 = max(multiprocessors, 1) * 128 * 2 * 1.5e9
    return Hardware(name, fp32, fp32 * (8 if major >= 7 else 1), 0.3, 500e9, 10e-6)


def optimiser_step(model: nn.Module, loss_fn: Callable[[], torch.Tensor], optimizer=None) -> Callable[[], None]:
    """One training step (forward, backward, update) of ``model`` on the loss ``loss_fn()``: what the
    cost model counts for a training loop, and what :func:`measure_cpu` times."""
    optimizer = optimizer or torch.optim.Adam(model.parameters(), lr=1e-3)

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss_fn().backward()
        optimizer.step()
    return step


_MEASURED: dict = {}   # (seconds, threads) -> (when, Hardware): one measurement serves one lab's start


def measure_cpu(seconds: float = 0.3) -> Hardware:
    """This CPU's rates, measured with every torch thread on training steps like the labs' (forward,
    backward and an Adam update, counted with :func:`count`): FLOP/s from an MLP 784-1024-1024-10 on
    batches of 256 (efficiency 1: the rate is already an achieved one), the overhead of one operation
    from a tiny MLP 64-16-10 on one example, where the arithmetic is negligible, and the bandwidth from
    a 64 MB copy. A second call within a minute (``auto`` on a GPU prices the host, then the lab's
    announcement does again) returns the first measurement."""
    key = (seconds, torch.get_num_threads())
    if key in _MEASURED and time.monotonic() - _MEASURED[key][0] < 60:
        return _MEASURED[key][1]

    def per_call(fn):      # the fastest of five rounds, as timeit does: a shared machine only ever slows a call
        fn()
        best = math.inf
        for _ in range(5):
            n, started = 0, time.perf_counter()
            while time.perf_counter() - started < seconds / 15 or n < 2:
                fn()
                n += 1
            best = min(best, (time.perf_counter() - started) / n)
        return best

    def mlp_step(widths, batch):
        layers = [m for a, b in zip(widths[:-1], widths[1:]) for m in (nn.Linear(a, b), nn.ReLU())][:-1]
        net, x, y = nn.Sequential(*layers), torch.rand(batch, widths[0]), torch.arange(batch) % widths[-1]
        return optimiser_step(net, lambda: nn.functional.cross_entropy(net(x), y))

    with torch.random.fork_rng(devices=[]):
        big, tiny = mlp_step((784, 1024, 1024, 10), 256), mlp_step((64, 16, 10), 1)
        flops = count(big).flops / per_call(big)
        overhead = per_call(tiny) / count(tiny).ops
    src, dst = torch.randn(16 * 2 ** 20), torch.empty(16 * 2 ** 20)
    bandwidth = 2 * src.numel() * 4 / per_call(lambda: dst.copy_(src))       # read + write
    _MEASURED[key] = (time.monotonic(), Hardware("this CPU", flops, flops, 1.0, bandwidth, overhead))
    return _MEASURED[key][1]


def this_machine(device: torch.device | str) -> Hardware:
    """The rates of ``device``: a CUDA card's public numbers, or this CPU measured."""
    device = torch.device(device)
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        return gpu_hardware(p.name, p.multi_processor_count, p.major)
    return measure_cpu()


# ------------------------------------------------------------------------------------------------
# The table of counted work, and the estimate a lab prints
# ------------------------------------------------------------------------------------------------

def settings_digest(settings: dict) -> str:
    """A short fingerprint of a lab's settings under one profile: the table is stale when it changes."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=repr).encode()).hexdigest()[:12]


def count_lab(lab: str, profile: str, settings: dict) -> dict:
    """Each phase's counted work for one lab and profile, as a table entry."""
    from . import workloads

    phases = workloads.phases(lab, settings)
    rows = []
    for phase in phases:
        w = phase.work()
        rows.append(dict(name=phase.name, steps=phase.steps, mixed=phase.mixed, on_cpu=phase.on_cpu,
                         budget=phase.budget, flops=w.flops, bytes=w.bytes, ops=w.ops))
    return dict(settings=settings_digest(settings), phases=rows)


def phase_seconds(row: dict, hardware: Hardware, host: Hardware | None = None) -> float:
    """Estimated seconds of one phase of a table entry: on ``hardware`` (under autocast if the phase
    is mixed), or on ``host`` if it stays on the CPU, and at most its time budget."""
    w = Work(row["flops"], row["bytes"], row["ops"])
    if row.get("on_cpu"):
        seconds = (host or hardware).seconds(w)
    else:
        seconds = hardware.seconds(Work(), w) if row["mixed"] else hardware.seconds(w)
    return min(seconds, row["budget"]) if row.get("budget") else seconds


def load_table(path: Path = TABLE) -> dict:
    """The stored table of counted work (empty when there is none)."""
    if not path.exists():
        return {}
    return json.loads(path.read_text())


def estimate_seconds(lab: str, profile: str, hardware: Hardware, table: dict | None = None,
                     host: Hardware | None = None) -> float | None:
    """Estimated seconds of ``lab`` under ``profile`` on ``hardware``, or None if the table lacks it;
    the phases that stay on the CPU are priced at ``host``'s rates (None: ``hardware``, a CPU itself)."""
    entry = (table if table is not None else load_table()).get(lab, {}).get(profile)
    if entry is None:
        return None
    return sum(phase_seconds(row, hardware, host) for row in entry["phases"])


def describe(seconds: float) -> str:
    """'about 40 seconds', 'about 7 minutes', 'about 3.5 hours'."""
    if seconds < 90:
        return f"about {max(5, 5 * round(seconds / 5)):.0f} seconds"
    if seconds < 90 * 60:
        return f"about {max(2, round(seconds / 60)):.0f} minutes"
    return f"about {seconds / 3600:.1f} hours"


def choose_auto_profile(lab: str, device: torch.device, table: dict | None = None) -> tuple[str, str]:
    """What ``auto`` runs ``lab`` with on ``device``, and why: ``cpu`` off CUDA; on a CUDA card ``full``
    when its estimate there is at most :data:`AUTO_LIMIT_MINUTES`, else ``cpu`` (e.g. on a T4)."""
    if device.type != "cuda":
        return "cpu", "no CUDA GPU"
    hw = this_machine(device)
    seconds = estimate_seconds(lab, "full", hw, table, host=measure_cpu())
    if seconds is None or seconds <= AUTO_LIMIT_MINUTES * 60:
        return "full", f"full is estimated at {describe(seconds) if seconds else 'an unknown time'} on this {hw.name}"
    return "cpu", (f"full would take {describe(seconds)} on this {hw.name}, over {AUTO_LIMIT_MINUTES:.0f}; "
                   f"ask for profile='full' to run it anyway")


def announce(lab: str, profile: str, device: torch.device | str, table: dict | None = None) -> str | None:
    """The line a lab prints before it trains: its estimated time on this machine, or None when the
    table has no entry (or the profile is smoke, which takes seconds)."""
    table = table if table is not None else load_table()
    if profile == "smoke" or lab not in table or profile not in table[lab]:
        return None
    device = torch.device(device)
    hw = this_machine(device)
    host = measure_cpu() if device.type != "cpu" else None
    line = (f"estimated time: {describe(estimate_seconds(lab, profile, hw, table, host))} on {hw.name} "
            f"(profile {profile}")
    measured = table[lab][profile].get("measured_cpu_seconds")
    if device.type == "cpu" and measured:
        line += f"; the course measured {describe(measured)} on the course's 2-core reference CPU"
    return line + ")"


# ------------------------------------------------------------------------------------------------
# Writing the table (from the solutions) and checking the model against this CPU
# ------------------------------------------------------------------------------------------------

def _solutions() -> Path:
    return Path(__file__).resolve().parents[1] / "solutions"


def lab_settings(lab: str, profile: str) -> dict:
    """A lab's settings under ``profile``, read from its solution (``unsuplab.labs.profile_settings``)."""
    from .labs import profile_settings
    return profile_settings(_solutions() / f"{lab}.ipynb", profile)


def write_table(labs: list[str] | None = None, path: Path = TABLE, results: Path | None = None) -> dict:
    """Count every lab and profile (a few seconds each) and write the table; with ``results`` (the
    results folder) each cpu entry also keeps the measured wall time of its committed run."""
    from . import workloads

    table = load_table(path)
    with torch.inference_mode(False):
        for lab in labs or workloads.LABS:
            table[lab] = {profile: count_lab(lab, profile, lab_settings(lab, profile))
                          for profile in ("smoke", "cpu", "full")}
            if results is not None and (results / f"{lab}-cpu.json").exists():
                run = json.loads((results / f"{lab}-cpu.json").read_text())
                table[lab]["cpu"]["measured_cpu_seconds"] = run.get("wall_seconds")
    path.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n")
    return table


def check_against_cpu(results: Path, table: dict | None = None, hardware: Hardware | None = None) -> dict:
    """Predicted against measured ``cpu`` wall time of every lab with a committed run, and the
    estimates of every profile on a T4, an A100 and an H100."""
    table = table if table is not None else load_table()
    hw = hardware or measure_cpu(1.0)
    rows = {}
    for lab, entry in sorted(table.items()):
        run_file = results / f"{lab}-cpu.json"
        run = json.loads(run_file.read_text()) if run_file.exists() else {}
        predicted = estimate_seconds(lab, "cpu", hw, table)
        measured = run.get("wall_seconds")
        rows[lab] = dict(
            predicted_cpu_seconds=predicted, measured_cpu_seconds=measured,
            measured_load=run.get("load_average_start"),
            ratio=(predicted / measured) if measured else None,
            gpu_minutes={name: {p: estimate_seconds(lab, p, gpu, table, host=hw) / 60 for p in ("cpu", "full")}
                         for name, gpu in GPUS.items()},
            flops={p: sum(r["flops"] for r in entry[p]["phases"]) for p in ("cpu", "full")},
        )
    return dict(cpu=dict(flops_per_second=hw.fp32, bandwidth=hw.bandwidth, seconds_per_op=hw.overhead),
                gpus={k: vars(v) for k, v in GPUS.items()}, labs=rows,
                auto_limit_minutes=AUTO_LIMIT_MINUTES)


def main(argv: list[str] | None = None) -> None:
    """``python -m unsuplab.cost --write`` rewrites the table; ``--check OUT`` compares it with this CPU."""
    parser = argparse.ArgumentParser(prog="python -m unsuplab.cost", description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help="count every lab and rewrite the table")
    parser.add_argument("--labs", nargs="*", help="only these labs (with --write)")
    parser.add_argument("--check", type=Path, metavar="OUT",
                        help="predict every lab's cpu time on this CPU and write it beside the measured one")
    args = parser.parse_args(argv)
    results = Path(__file__).resolve().parents[1] / "results"
    if args.write:
        write_table(args.labs, results=results)
    if args.check:
        report = check_against_cpu(results)
        args.check.write_text(json.dumps(report, indent=1) + "\n")
        for lab, row in report["labs"].items():
            measured = row["measured_cpu_seconds"]
            print(f"{lab:32s} predicted {row['predicted_cpu_seconds']:7.0f} s  measured "
                  f"{measured if measured is not None else float('nan'):7.0f} s  "
                  f"T4 full {row['gpu_minutes']['T4']['full']:6.1f} min")


if __name__ == "__main__":
    main()
