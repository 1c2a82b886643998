"""Profiles, device and seeds: the one place where a lab decides how big to run and where.

Every lab and chapter takes one ``profile`` parameter:

``smoke``
    seconds on a CPU; proves the code runs (tests and CI force it).
``cpu``
    a few minutes on a laptop; results a student can learn from.
``full``
    a GPU; results close to the papers'.
``auto``
    ``full`` on a CUDA GPU where the lab's estimated time (:mod:`unsuplab.cost`) is at most 15
    minutes, else ``cpu`` (so a T4 runs the labs whose ``full`` profile would take longer with ``cpu``).

The profile is resolved in this order: the notebook's own parameter (when it is not ``auto``),
then the environment variable ``UNSUPLAB_PROFILE``, then the hardware.

:func:`checkpoint_dir` says where a lab's checkpoints go, and whether they survive a recycled Colab VM.

    >>> rt = setup("smoke", seed=0)            # doctest: +SKIP
    >>> n_train = rt.pick(smoke=2_000, cpu=20_000, full=60_000)  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
import os
import platform
import random
import sys
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["PROFILES", "PROFILE_ENV", "CHECKPOINTS_ENV", "COLAB_DRIVE", "SlowProfileWarning", "resolve_profile",
           "get_device", "device_name", "cpu_threads", "seed_everything", "Runtime", "setup", "checkpoint_dir"]

PROFILES = ("smoke", "cpu", "full")
PROFILE_ENV = "UNSUPLAB_PROFILE"
CHECKPOINTS_ENV = "UNSUPLAB_CHECKPOINTS"
COLAB_DRIVE = Path("/content/drive")  # where Colab mounts Google Drive; MyDrive is the student's own folder


class SlowProfileWarning(UserWarning):
    """The ``full`` profile, sized for a GPU, was chosen on a machine that has none."""


def resolve_profile(profile: str | None = "auto", lab: str | None = None) -> str:
    """Return ``smoke``, ``cpu`` or ``full`` for a requested profile (``auto`` or ``None`` allowed).
    ``auto`` on a CUDA GPU asks the cost model about ``lab`` (``full`` if it is estimated at 15 minutes
    or less there); without a lab it means ``full`` on any CUDA GPU."""
    requested = "auto" if profile is None else str(profile).strip().lower()
    if requested in PROFILES:
        return requested
    if requested != "auto":
        raise ValueError(
            f"profile must be one of 'smoke', 'cpu', 'full' or 'auto', got {profile!r}: "
            "use 'smoke' for a seconds-long check, 'cpu' for a laptop, 'full' for a GPU."
        )
    from_env = os.environ.get(PROFILE_ENV, "").strip().lower()
    if from_env:
        if from_env not in PROFILES + ("auto",):
            raise ValueError(
                f"environment variable {PROFILE_ENV}={from_env!r} is not a profile: "
                "set it to 'smoke', 'cpu', 'full' or 'auto', or unset it."
            )
        if from_env != "auto":
            return from_env
    if not torch.cuda.is_available():
        return "cpu"
    if lab is None:
        return "full"
    from .cost import choose_auto_profile
    chosen, why = choose_auto_profile(lab, torch.device("cuda"))
    print(f"profile auto -> {chosen}: {why}")
    return chosen


def get_device(prefer: str | None = None) -> torch.device:
    """Pick the device once: CUDA, then Apple MPS, then CPU (``prefer`` forces one, e.g. ``"cpu"``)."""
    if prefer is not None:
        return torch.device(prefer)
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def device_name(device: torch.device | str | None = None) -> str:
    """A human-readable name of the hardware, for results files: the GPU model or the CPU."""
    device = torch.device(device) if device is not None else get_device()
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return f"Apple MPS ({platform.machine()})"
    cpu = platform.processor() or platform.machine()
    try:  # Linux gives the model name here; other systems keep platform's answer
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"CPU: {cpu} ({os.cpu_count()} cores)"


@contextmanager
def cpu_threads(n: int, device="cpu"):
    """Run the body with ``n`` torch threads when ``device`` is a CPU, and restore the thread count after
    (after an error too). Elsewhere (a GPU) it changes nothing."""
    if torch.device(device).type != "cpu":
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def seed_everything(seed: int = 0, deterministic: bool = False) -> None:
    """Seed Python, NumPy and torch (all devices); ``deterministic`` also asks torch for
    deterministic kernels (slower; errors on ops that have none)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # seeds CUDA and MPS generators too
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=False)
        torch.backends.cudnn.benchmark = False
    else:
        torch.use_deterministic_algorithms(False)


@dataclass(frozen=True)
class Runtime:
    """What a lab runs with: the resolved profile, the device and the seed."""

    profile: str
    device: torch.device
    seed: int = 0
    deterministic: bool = False

    def pick(self, *, smoke: Any, cpu: Any, full: Any) -> Any:
        """The value for this profile: ``rt.pick(smoke=1, cpu=5, full=50)``."""
        return {"smoke": smoke, "cpu": cpu, "full": full}[self.profile]

    @property
    def device_name(self) -> str:
        return device_name(self.device)

    def __str__(self) -> str:
        return (
            f"profile={self.profile} device={self.device.type} ({self.device_name}) "
            f"seed={self.seed} torch={torch.__version__}"
        )


def setup(profile: str | None = "auto", seed: int = 0, deterministic: bool = False,
          device: str | None = None, verbose: bool = True, lab: str | None = None) -> Runtime:
    """Resolve the profile, pick the device, seed everything; print one line saying so and, for a
    ``lab`` (e.g. ``"07_self_supervised"``), a second with its estimated time on this machine
    (:func:`unsuplab.cost.announce`; none for ``smoke``). ``full`` on a CPU is allowed, with a
    :class:`SlowProfileWarning` that says how long it may take."""
    rt = Runtime(resolve_profile(profile, lab), get_device(device), seed, deterministic)
    if rt.profile == "full" and rt.device.type == "cpu":
        warnings.warn(
            f"profile='full' on a CPU ({rt.device_name}, no CUDA GPU): the full profile is a paper-scale run "
            "sized for a GPU, and a CPU is typically 10 to 100 times slower, so expect many hours where the "
            "lab's time estimate says minutes on a GPU (its CPU estimate is for profile='cpu'). Use "
            "profile='cpu' for results in minutes, or run on a GPU (on Colab: Runtime > Change runtime type).",
            SlowProfileWarning, stacklevel=2)
    seed_everything(seed, deterministic)
    if verbose:
        print(rt)
        if lab is not None:
            from .cost import announce
            line = announce(lab, rt.profile, rt.device)
            if line:
                print(line)
    return rt


def checkpoint_dir(path: str | os.PathLike | None = None, *, drive: bool = False, verbose: bool = True) -> Path:
    """The folder where a lab's checkpoints go (created if needed); prints where it is and whether it
    survives a recycled Colab VM.

    In this order: ``path`` when given; with ``drive=True`` (Colab only), Google Drive, mounted if it is
    not yet (``MyDrive/unsuplab/checkpoints``, or ``MyDrive/unsuplab/<path>``); then the environment variable
    ``UNSUPLAB_CHECKPOINTS``; else ``checkpoints/`` in the current folder.

    On Colab, ``/content`` is the VM's own disk: it outlives a short disconnect, but a recycled VM (after
    a long idle, or at the session's time limit) starts empty, and the checkpoints are gone. Only a folder
    on the mounted Drive survives that; a path into an unmounted Drive is refused, since writing there
    would only fill the VM's disk.
    """
    colab = "google.colab" in sys.modules or any(key.startswith("COLAB_") for key in os.environ)
    my_drive = COLAB_DRIVE / "MyDrive"
    if drive:
        if not colab:
            raise ValueError("checkpoint_dir(drive=True) works only on Colab, where Google Drive can be mounted "
                             "at /content/drive; here, leave drive=False (checkpoints stay on this machine's disk) "
                             "or pass the folder you want as path.")
        if not my_drive.is_dir():
            importlib.import_module("google.colab").drive.mount(str(COLAB_DRIVE))  # asks the student to allow it
        folder = my_drive / "unsuplab" / (path if path is not None else "checkpoints")
    elif path is not None:
        folder = Path(path)
    else:
        folder = Path(os.environ.get(CHECKPOINTS_ENV, "").strip() or "checkpoints")
    folder = folder.expanduser().resolve()
    on_drive = colab and folder.is_relative_to(my_drive.resolve())
    if colab and folder.is_relative_to(COLAB_DRIVE.resolve()) and not my_drive.is_dir():
        raise ValueError(
            f"checkpoints should go to {folder}, on Google Drive, but Drive is not mounted (no {my_drive}): "
            "mount it first (from google.colab import drive; drive.mount('/content/drive')), or call "
            "ul.runtime.checkpoint_dir(drive=True), which mounts it for you.")
    folder.mkdir(parents=True, exist_ok=True)
    if verbose:
        if on_drive:
            where = "on your Google Drive: it survives a recycled Colab VM, so a new session resumes from it"
        elif colab:
            where = ("on this Colab VM's own disk: it survives a short disconnect but does NOT survive a recycled VM "
                     "(after a long idle or at the session's time limit). To keep checkpoints, put them on Google "
                     "Drive: ul.runtime.checkpoint_dir(drive=True) mounts it and uses MyDrive/unsuplab/checkpoints "
                     f"(or mount it yourself and set {CHECKPOINTS_ENV}=/content/drive/MyDrive/unsuplab)")
        else:
            where = "on this machine's disk: it stays until you delete it"
        print(f"checkpoints go to {folder}, {where}.")
    return folder
