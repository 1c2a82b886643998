"""Run a notebook under a profile and keep what it measured, with the hardware it ran on.

Inside a notebook, a lab records its headline numbers::

    from unsuplab import bench
    bench.record_runtime(rt)                      # device, GPU/CPU name, torch version
    bench.record(probe_acc=acc, recon_mse=mse)    # shows "recorded: probe_acc = 0.912, ..."

From a shell, the runner executes the notebook with papermill and writes
``results/<notebook stem>-<profile>.json``::

    python -m unsuplab.bench run solutions/05_vae.ipynb --profile full
    python -m unsuplab.bench table                 # the Markdown table of all results
    python -m unsuplab.bench claims                # each lab's claims against the results (see claims.py)

A book page shows the same table with ``bench.results_markdown()``.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import json
import math
import numbers
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

__all__ = ["METRICS_MIME", "PROFILE_ORDER", "RUNTIME_KEYS", "PERCENT_WORDS", "record", "recorded", "record_runtime",
           "results_path", "collect_metrics", "git_state", "run", "copy_outputs_into", "load_results", "best_result",
           "lab_times", "format_metric", "results_table", "metrics_table", "results_markdown", "main"]

METRICS_MIME = "application/vnd.unsuplab.metrics+json"
PROFILE_ORDER = ("smoke", "cpu", "full")
# Keys that record_runtime() writes and the runner moves to the top level of the results file.
RUNTIME_KEYS = {"_device": "device", "_device_name": "device_name", "_torch": "torch"}
PERCENT_WORDS = ("acc", "accuracy")  # NMI stays a number in [0, 1], as papers print it

# Everything recorded in this process (a notebook's kernel), so a lab can check its claims at the end.
_RECORDED: dict = {}


# --------------------------------------------------------------------------- notebook side

def _plain(name: str, value: Any) -> Any:
    """``value`` as plain Python (bool, int, float, str or a list of numbers), or a ValueError."""
    if hasattr(value, "detach"):  # a torch tensor; no torch import needed
        value = value.detach().cpu().tolist()
    elif hasattr(value, "tolist") and hasattr(value, "dtype"):  # numpy array or scalar
        value = value.tolist()
    if isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"metric {name!r} is {value}: a NaN or infinite result usually means the "
                             "training diverged; look at the loss curve before recording it.")
        return value
    if isinstance(value, (list, tuple)):
        items = []
        for i, item in enumerate(value):
            if isinstance(item, (str, list, tuple)) or not isinstance(item, numbers.Real):
                raise ValueError(f"metric {name!r}: item {i} is {type(item).__name__}; a list metric "
                                 "must hold numbers only.")
            items.append(_plain(f"{name}[{i}]", item))
        return items
    raise ValueError(f"metric {name!r} has type {type(value).__name__}: record numbers, strings, "
                     "booleans or lists of numbers (use .item() on a one-element tensor).")


def _show(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list):
        shown = ", ".join(_show(v) for v in value[:6])
        return f"[{shown}{', …' if len(value) > 6 else ''}]"
    return str(value)


def _publish(metrics: dict, text: str) -> None:
    """Display the metrics bundle in IPython (the runner reads it from the outputs), else print."""
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:
        get_ipython = None
    if get_ipython is not None and get_ipython() is not None:
        display({METRICS_MIME: metrics, "text/plain": text}, raw=True)
    else:
        print(text)


def record(**metrics: Any) -> dict:
    """Record a lab's numbers: ``record(probe_acc=0.91, epochs=20)``; returns them as plain Python.

    Values may be numbers (also numpy or one-element torch values), strings, booleans or lists of
    numbers; NaN, infinities and other types raise a ValueError. In a notebook the student sees
    ``recorded: probe_acc = 0.91, epochs = 20`` and ``python -m unsuplab.bench run`` collects them.
    """
    if not metrics:
        raise ValueError("record() needs at least one metric, e.g. record(test_acc=acc).")
    plain = {}
    for name, value in metrics.items():
        if name.startswith("_"):
            raise ValueError(f"metric {name!r}: names starting with '_' are reserved; rename it.")
        plain[name] = _plain(name, value)
    _RECORDED.update(plain)
    _publish(plain, "recorded: " + ", ".join(f"{k} = {_show(v)}" for k, v in plain.items()))
    return plain


def recorded() -> dict:
    """A copy of every metric recorded so far in this process (later values of a name win)."""
    return dict(_RECORDED)


def record_runtime(rt: Any) -> dict:
    """Record the device, the hardware's name and the torch version of a :class:`~unsuplab.runtime.Runtime`,
    so the results file says what the notebook really ran on."""
    import torch

    info = {"_device": rt.device.type, "_device_name": rt.device_name, "_torch": torch.__version__}
    _publish(info, f"recorded runtime: device = {info['_device']} ({info['_device_name']}), "
                   f"torch = {info['_torch']}")
    return info


# --------------------------------------------------------------------------- runner side

def results_path(notebook: str | Path, profile: str, results_dir: str | Path = "results") -> Path:
    """Where :func:`run` writes the results of ``notebook`` under ``profile``."""
    return Path(results_dir) / f"{Path(notebook).stem}-{profile}.json"


def collect_metrics(nb: Any) -> dict:
    """Every metrics bundle in an executed notebook's outputs, merged in order (later names win)."""
    merged: dict = {}
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {}) if output.get("output_type") in ("display_data", "execute_result") else {}
            if METRICS_MIME in data:
                bundle = data[METRICS_MIME]
                merged.update(json.loads(bundle) if isinstance(bundle, str) else dict(bundle))
    return merged


def _git(folder: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=folder, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_state(folder: str | Path) -> tuple[str | None, bool]:
    """The short commit of the git tree holding ``folder`` (None outside one) and whether its tracked
    files have uncommitted changes: what every results file records about the code it measured."""
    commit = _git(Path(folder), "rev-parse", "--short", "HEAD")
    return commit, bool(_git(Path(folder), "status", "--porcelain", "--untracked-files=no")) if commit else False


@contextlib.contextmanager
def _environ(**values: str | None):
    """Set (or, for ``None``, remove) environment variables for the duration of a block."""
    old = {k: os.environ.get(k) for k in values}
    for key, value in values.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    try:
        yield
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _display_path(path: Path) -> str:
    """``path`` relative to the current folder when it lies below it, in POSIX form."""
    if path.is_absolute():
        try:
            path = path.relative_to(Path.cwd())
        except ValueError:
            pass
    return path.as_posix()


def run(notebook: str | Path, profile: str, *, results_dir: str | Path = "results",
        output_notebook: str | Path | None = None, parameters: dict | None = None,
        timeout: float | None = None, save_outputs: bool = False, allow_dirty: bool = False) -> dict:
    """Execute ``notebook`` with papermill under ``profile`` and write ``results/<stem>-<profile>.json``.

    With ``save_outputs`` the executed outputs are also written back into ``notebook`` itself (see
    :func:`copy_outputs_into`), so that a committed solution shows the outputs of a measured run.

    The kernel is the notebook's kernelspec, the working folder is the notebook's folder, and the
    parameters are ``profile`` plus ``parameters``; ``timeout`` limits each cell (seconds). Returns
    the results (lab, profile, device, hardware, versions, git commit, wall seconds, the load average
    at the start and the end, metrics). If a cell fails, prints which one and why, writes no results
    file and re-raises papermill's error.

    A result must be reproducible from a commit: from a git checkout with uncommitted changes to
    tracked files the run is refused, unless ``allow_dirty`` (then ``git_dirty: true`` is recorded and
    a warning printed). A load average above the number of cores is recorded and warned about: times
    measured on a busy machine mislead.
    """
    import nbformat
    import papermill

    if profile not in PROFILE_ORDER:
        raise ValueError(f"profile must be one of {', '.join(PROFILE_ORDER)}, got {profile!r}: a "
                         "results file must say which one it measured, so 'auto' is not allowed here.")
    if "profile" in (parameters or {}) and parameters["profile"] != profile:
        raise ValueError(f"the parameters say profile = {parameters['profile']!r} but the run is for profile "
                         f"{profile!r}: the results file is named after the profile that runs, so give it "
                         "once, with --profile.")
    notebook = Path(notebook)
    if not notebook.is_file():
        raise FileNotFoundError(f"no notebook at {notebook}: give the path of a .ipynb file.")
    folder = notebook.parent.resolve()
    commit, dirty = git_state(folder)
    if dirty and not allow_dirty:
        raise RuntimeError(f"the git tree of {notebook} has uncommitted changes: a result must come from a "
                           "commit, so commit (or stash) them and run again, or pass --allow-dirty to "
                           "record a run marked git_dirty: true.")
    if dirty:
        print("warning: uncommitted changes; the results file will say git_dirty: true.", file=sys.stderr)
    load_start = _load_average()
    _warn_if_busy(load_start)
    stem = notebook.stem
    kernelspec = nbformat.read(notebook, as_version=4).metadata.get("kernelspec") or {}
    if not kernelspec.get("name"):
        raise ValueError(f"{notebook} has no metadata.kernelspec: choose a kernel in Jupyter and save it.")
    output = Path(output_notebook) if output_notebook else Path("_build") / "bench" / f"{stem}-{profile}.ipynb"
    output.parent.mkdir(parents=True, exist_ok=True)

    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    try:
        # MPLBACKEND=Agg (set by some shells and CI) would stop the kernel from showing figures. The lab's
        # checkpoints go to a fresh folder: a measured run that resumed from an earlier run's checkpoints
        # would time only what was left (a rerun of lab 6 took 44 s instead of 128 s that way).
        with tempfile.TemporaryDirectory(prefix="unsuplab-bench-checkpoints-") as fresh, \
                _environ(UNSUPLAB_PROGRESS="0", UNSUPLAB_PROFILE=profile, MPLBACKEND=None, UNSUPLAB_CHECKPOINTS=fresh):
            executed = papermill.execute_notebook(
                str(notebook), str(output), parameters={"profile": profile, **(parameters or {})},
                kernel_name=kernelspec["name"], cwd=str(notebook.parent.resolve()),
                progress_bar=False, execution_timeout=timeout,
            )
    except Exception as err:
        cell = getattr(err, "cell_index", None)
        where = f" in cell {cell} (execution count {getattr(err, 'exec_count', '?')})" if cell is not None else ""
        print(f"{notebook} failed{where} after {time.perf_counter() - t0:.1f} s under profile {profile}:\n"
              f"{err}\nthe executed notebook, with the error, is {output}; no results file was written.",
              file=sys.stderr)
        raise
    wall = time.perf_counter() - t0
    load_end = _load_average()  # includes the run's own threads: only the start says whether others ran

    # the returned notebook keeps each bundle's key order (the file on disk has its keys sorted)
    metrics = collect_metrics(executed)
    runtime = {top: metrics.pop(key) for key, top in RUNTIME_KEYS.items() if key in metrics}
    if len(runtime) < len(RUNTIME_KEYS):  # the notebook did not call record_runtime: say what we have
        import torch

        from .runtime import device_name, get_device

        device = get_device()
        runtime.setdefault("device", device.type)
        runtime.setdefault("device_name", device_name(device))
        runtime.setdefault("torch", torch.__version__)

    try:
        from . import __version__ as version
    except ImportError:
        version = "unknown"
    results = {
        "lab": stem,
        "notebook": _display_path(notebook),
        "profile": profile,
        **runtime,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "unsuplab": version,
        "git_commit": commit or "unknown",
        "git_dirty": dirty,
        "started": started,
        "wall_seconds": round(wall, 1),
        "cpu_count": os.cpu_count(),
        "load_average_start": load_start,
        "load_average_end": load_end,
        "metrics": metrics,
    }
    path = results_path(notebook, profile, results_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    results = dict(sorted(results.items()))  # top-level keys sorted; metrics stay in recording order
    path.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    if save_outputs:
        copy_outputs_into(notebook, executed, results)
    return results


def _load_average() -> float | None:
    """The 1-minute load average of the machine, or None where the system does not report it."""
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None


def _warn_if_busy(load: float | None) -> None:
    cores = os.cpu_count() or 1
    if load is not None and load > cores:
        print(f"warning: the load average at the start of the run is {load} on {cores} cores: the machine "
              "is busy (or a previous run has just ended), so the wall time may overstate what the lab takes "
              "(the load is recorded next to it).", file=sys.stderr)


def copy_outputs_into(notebook: str | Path, executed: Any, results: dict | None = None) -> None:
    """Copy the outputs of an executed copy into ``notebook`` (cells matched by id).

    Only outputs and execution counts move: sources, cell metadata and papermill's injected
    parameters cell stay out, so the notebook remains the clean single source of its lab. The
    notebook's metadata notes which run the outputs come from.
    """
    import nbformat

    notebook = Path(notebook)
    source = nbformat.read(notebook, as_version=4)
    by_id = {cell.get("id"): cell for cell in executed.cells}
    for cell in source.cells:
        if cell.cell_type != "code":
            continue
        run_cell = by_id.get(cell.get("id"))
        if run_cell is None or run_cell.source != cell.source:
            raise ValueError(f"{notebook} changed while it ran (cell {cell.get('id')}): run it again.")
        cell.outputs = run_cell.outputs
        cell.execution_count = run_cell.execution_count
    if results is not None:
        source.metadata.setdefault("unsuplab", {})["outputs_from"] = {
            key: results.get(key) for key in ("profile", "device_name", "torch", "started", "wall_seconds")}
    nbformat.write(source, notebook)


# --------------------------------------------------------------------------- reading results

def _profile_rank(profile: str) -> int:
    return PROFILE_ORDER.index(profile) if profile in PROFILE_ORDER else len(PROFILE_ORDER)


def load_results(results_dir: str | Path = "results") -> list[dict]:
    """All results files in ``results_dir``, sorted by lab, then profile (smoke, cpu, full)."""
    results = []
    for path in sorted(Path(results_dir).glob("*.json")):
        try:
            result = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is not valid JSON ({err}): rerun the benchmark or delete it.") from None
        if not isinstance(result, dict) or "lab" not in result or "profile" not in result:
            raise ValueError(f"{path} is not a results file (no 'lab' or 'profile'): "
                             "only `python -m unsuplab.bench run` should write into this folder.")
        results.append(result)
    return sorted(results, key=lambda r: (r["lab"], _profile_rank(r["profile"]), r["profile"]))


def best_result(lab: str, results_dir: str | Path = "results",
                prefer: Iterable[str] = ("full", "cpu", "smoke")) -> dict | None:
    """The results of ``lab`` for the first profile in ``prefer`` that has some, else ``None``."""
    by_profile = {r["profile"]: r for r in load_results(results_dir) if r["lab"] == lab}
    for profile in prefer:
        if profile in by_profile:
            return by_profile[profile]
    return None


def lab_times(labs: Iterable[str], results_dir: str | Path = "results") -> str:
    """A Markdown table of how long each lab's solution took to run, per profile, from the results
    files: one row per lab in ``labs`` (stems such as ``"01_baselines"``), with the ``cpu`` and
    ``full`` wall times (mm:ss) and the hardware they were measured on; "not measured yet" where a
    results file is missing. The landing page of the book shows it."""
    by_key = {(r["lab"], r["profile"]): r for r in load_results(results_dir)}
    lines = ["| lab | `cpu` profile | `full` profile |", "|---|---|---|"]
    for lab in labs:
        cells = []
        for profile in ("cpu", "full"):
            r = by_key.get((lab, profile))
            cells.append("not measured yet" if r is None else
                         f"{_mmss(r['wall_seconds'])} on {_cell(r.get('device_name', '?'))}")
        lines.append(f"| {lab} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines) + "\n"


def format_metric(name: str, value: Any) -> str:
    """One metric for a table: accuracies and NMI in [0, 1] as percentages, other floats to 4 digits."""
    if isinstance(value, bool) or isinstance(value, str):
        return str(value)
    if isinstance(value, float):
        lower = name.lower()
        if 0.0 <= value <= 1.0 and any(word in lower for word in PERCENT_WORDS):
            return f"{100 * value:.1f}%"
        return f"{value:.4g}"
    if isinstance(value, list):
        return "[" + ", ".join(format_metric(name, v) for v in value) + "]"
    return str(value)


def _mmss(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes:02d}:{secs:02d}"


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def results_table(results_dir: str | Path = "results", profiles: Iterable[str] = ("full", "cpu"),
                  reference: dict | None = None) -> str:
    """A Markdown table of the results: one row per lab and profile (in ``profiles`` order; missing
    ones left out) with the hardware, torch version, wall time (mm:ss) and metrics. ``reference``
    maps a lab to Markdown text (e.g. the paper's numbers) shown in an extra column."""
    profiles = tuple(profiles)
    rows = [r for r in load_results(results_dir) if r["profile"] in profiles]
    rows.sort(key=lambda r: (r["lab"], profiles.index(r["profile"])))
    if not rows:
        return (f"_No results for profiles {', '.join(profiles)} in {Path(results_dir).as_posix()}/ yet: "
                "run `python -m unsuplab.bench run NOTEBOOK --profile PROFILE`._")
    header = ["lab", "profile", "hardware", "torch", "wall time", "metrics"]
    if reference is not None:
        header.append("reference")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        metrics = ", ".join(f"{k} = {format_metric(k, v)}" for k, v in r.get("metrics", {}).items())
        cells = [r["lab"], r["profile"], r.get("device_name", "?"), r.get("torch", "?"),
                 _mmss(r["wall_seconds"]) if "wall_seconds" in r else "?", metrics]
        if reference is not None:
            cells.append(reference.get(r["lab"], ""))
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def metrics_table(lab: str, results_dir: str | Path = "results", profiles: Iterable[str] = ("cpu", "full")) -> str:
    """A Markdown table of one lab's runs, one row per recorded metric and one column per profile,
    headed by what each run was measured on (hardware, torch, commit, wall time and machine load)."""
    profiles = tuple(profiles)
    runs = {r["profile"]: r for r in load_results(results_dir) if r["lab"] == lab and r["profile"] in profiles}
    profiles = tuple(p for p in profiles if p in runs)
    if not profiles:
        return f"_{lab} has not been measured yet: run `python -m unsuplab.bench run solutions/{lab}.ipynb --profile cpu`._\n"

    def load(r: dict) -> str:
        start, end = r.get("load_average_start"), r.get("load_average_end")
        if start is None and end is None:
            return "not recorded"
        return f"{start} → {end} on {r.get('cpu_count', '?')} cores"

    about = [("hardware", lambda r: r.get("device_name", "?")), ("torch", lambda r: r.get("torch", "?")),
             ("commit", lambda r: r.get("git_commit", "?") + (" (uncommitted changes)" if r.get("git_dirty") else "")),
             ("started", lambda r: r.get("started", "?")),
             ("wall time", lambda r: _mmss(r["wall_seconds"]) if "wall_seconds" in r else "?"),
             ("load average (start → end)", load)]
    lines = ["| | " + " | ".join(f"`{p}` profile" for p in profiles) + " |", "|---|" + "---|" * len(profiles)]
    lines += [f"| _{name}_ | " + " | ".join(_cell(get(runs[p])) for p in profiles) + " |" for name, get in about]
    names = list(dict.fromkeys(name for p in profiles for name in runs[p].get("metrics", {})))
    for name in names:
        cells = [format_metric(name, runs[p]["metrics"][name]) if name in runs[p].get("metrics", {}) else ""
                 for p in profiles]
        lines.append(f"| `{name}` | " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def results_markdown(results_dir: str | Path = "results", profiles: Iterable[str] = ("full", "cpu"),
                     reference: dict | None = None):
    """:func:`results_table` as an ``IPython.display.Markdown`` object, for a book page."""
    from IPython.display import Markdown

    return Markdown(results_table(results_dir, profiles, reference))


# --------------------------------------------------------------------------- command line

def _literal(text: str) -> Any:
    """A ``-p NAME VALUE`` value: a Python literal when it reads as one (3, 0.1, True), else the text."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m unsuplab.bench run NOTEBOOK --profile P`` or ``... table``."""
    parser = argparse.ArgumentParser(prog="python -m unsuplab.bench",
                                     description="Run a notebook under a profile and record its results.")
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="execute a notebook and write results/<lab>-<profile>.json")
    run_parser.add_argument("notebook")
    run_parser.add_argument("--profile", required=True, choices=PROFILE_ORDER)
    run_parser.add_argument("--results-dir", default="results")
    run_parser.add_argument("--output-notebook", default=None)
    run_parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[],
                            metavar=("NAME", "VALUE"), help="an extra papermill parameter")
    run_parser.add_argument("--timeout", type=float, default=None, help="seconds allowed per cell")
    run_parser.add_argument("--save-outputs", action="store_true",
                            help="also write the executed outputs back into the notebook (for solutions)")
    run_parser.add_argument("--allow-dirty", action="store_true",
                            help="run from a tree with uncommitted changes (recorded as git_dirty: true)")
    table_parser = commands.add_parser("table", help="print the Markdown table of the results")
    table_parser.add_argument("--results-dir", default="results")
    table_parser.add_argument("--profiles", nargs="+", default=["full", "cpu"], choices=PROFILE_ORDER)
    claims_parser = commands.add_parser("claims", help="check every lab's claims against the results files")
    claims_parser.add_argument("--results-dir", default="results")
    claims_parser.add_argument("--lab", action="append", default=None, help="only this lab (repeatable)")
    args = parser.parse_args(argv)

    if args.command == "claims":
        return _claims_command(args.results_dir, args.lab)
    if args.command == "table":
        print(results_table(args.results_dir, args.profiles), end="")
        return 0
    try:
        results = run(args.notebook, args.profile, results_dir=args.results_dir,
                      output_notebook=args.output_notebook,
                      parameters={name: _literal(value) for name, value in args.parameter},
                      timeout=args.timeout, save_outputs=args.save_outputs, allow_dirty=args.allow_dirty)
    except Exception as err:  # noqa: BLE001 - run() already printed the details
        if not hasattr(err, "cell_index"):
            print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"results: {results_path(args.notebook, args.profile, args.results_dir).as_posix()}")
    print(f"wall time: {_mmss(results['wall_seconds'])} ({results['wall_seconds']} s) on "
          f"{results['device_name']} ({results['device']}), torch {results['torch']}")
    for name, value in results["metrics"].items():
        print(f"  {name} = {format_metric(name, value)}")
    return 0


def _claims_command(results_dir: str, labs: list[str] | None) -> int:
    """Print the claims table; exit status 1 when a claim fails unexpectedly or holds unexpectedly."""
    from . import claims

    verdicts = claims.check(results_dir, labs)
    print(claims.table(verdicts), end="")
    counts = {state: sum(v.state == state for v in verdicts) for state in claims.MARKS}
    print("\n" + ", ".join(f"{n} {state}" for state, n in counts.items()))
    broken = [v for v in verdicts if v.broken]
    for v in broken:
        what = ("fails" if v.state == claims.FAILS else "holds although it is marked expected_to_fail")
        print(f"error: {v.lab} / {v.claim.id} on {v.profile} {what}: {v.value}", file=sys.stderr)
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
