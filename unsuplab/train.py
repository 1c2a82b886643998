"""A short, explicit training loop for the chapters whose loop is not the lesson.

Where a chapter *teaches* the loop (contrastive divergence, the GAN's alternating updates), the lab
writes it out. Everywhere else :func:`fit` runs it, with what a long run on a laptop or on Colab
needs and a student should not have to rewrite each time:

* a progress bar that works in a terminal and in a notebook (``UNSUPLAB_PROGRESS=0`` turns it off);
* mixed precision on CUDA, chosen by :func:`amp_dtype` for every trainer in unsuplab: bfloat16 on
  cards of compute capability 8.0 or more (A100, H100), float16 with a gradient scaler on older ones
  (Colab's T4); :func:`autocast` and :func:`grad_scaler` give the same choice to a loop of your own;
* optional gradient clipping by global norm;
* a guard that stops at the first NaN or infinite loss with a message that says what to try;
* periodic checkpoints written atomically, and **resume**: call :func:`fit` again with the same
  ``checkpoint`` after an interruption (a Colab disconnect, a Ctrl-C) and it continues from the last
  checkpoint, at the same step, with the same data order, to the same result;
* a :class:`History` of per-step and per-epoch numbers for ``unsuplab.viz.plot_history``.

The model's loss is a function the chapter writes::

    def loss_fn(model, batch):
        x, _ = batch                      # (B, 1, 28, 28); labels unused
        x_hat = model(x)
        return F.binary_cross_entropy(x_hat, x)   # or (loss, {"bce": ..., "kl": ...})

    history = fit(model, loss_fn, loader, epochs=10, lr=1e-3, checkpoint="checkpoints/ae.pt")
    viz.plot_history(history, title="Reconstruction loss per epoch")

Loops counted in steps rather than epochs (a GAN's alternating updates, an energy-based model's
sampling and update) give one step as a function to :func:`run_steps`, which adds the same guard,
checkpoints and resume. Custom loops reuse the parts: :func:`check_finite`, :func:`save_checkpoint`,
:func:`load_checkpoint`, :func:`progress`, and :func:`autocast` with :func:`grad_scaler` for mixed precision.
"""

from __future__ import annotations

import copy
import itertools
import math
import os
import pickle
import random
import re
import signal
import threading
import time
from collections import OrderedDict
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import torch
from torch import nn

__all__ = ["fit", "History", "TrainingDiverged", "UnsafeCheckpointError", "check_finite", "save_checkpoint",
           "load_checkpoint", "to_device", "progress", "amp_dtype", "autocast", "grad_scaler", "NoScaler",
           "backward_and_step", "eval_mode", "run_steps", "TensorBatches", "warmup_schedule"]

PROGRESS_ENV = "UNSUPLAB_PROGRESS"


class TrainingDiverged(FloatingPointError):
    """The loss became NaN or infinite: training stopped instead of continuing on garbage."""


class UnsafeCheckpointError(RuntimeError):
    """A checkpoint file holds pickled Python objects, which loading would run as code: refused."""


# ----------------------------------------------------------------------------------------------
# Small parts, also used by the chapters' own loops
# ----------------------------------------------------------------------------------------------

@contextmanager
def eval_mode(model):
    """Run the block with ``model`` in eval mode (dropout off, batch norm on its running statistics),
    then put it back in training mode if it was training, even when the block raises. Works for any
    object with ``eval()`` and ``train()`` (a :class:`WordByWord` translator has no ``training``)."""
    was_training = getattr(model, "training", False)
    model.eval()
    try:
        yield model
    finally:
        if was_training:
            model.train()


def progress(iterable: Iterable | None = None, **kwargs):
    """``tqdm.auto.tqdm`` (a widget in notebooks, text in a terminal), off when ``UNSUPLAB_PROGRESS=0``."""
    from tqdm.auto import tqdm

    off = os.environ.get(PROGRESS_ENV, "1").strip().lower() in ("0", "false", "no", "off")
    disable = kwargs.pop("disable", False) or off  # pop first: `off or pop()` would skip the pop
    return tqdm(iterable, disable=disable, **kwargs)


def to_device(batch: Any, device: torch.device | str, non_blocking: bool = False) -> Any:
    """Move every tensor inside ``batch`` (a tensor, or tuples, lists and dicts of them) to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=non_blocking)
    if isinstance(batch, Mapping):
        return type(batch)({k: to_device(v, device, non_blocking) for k, v in batch.items()})
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # a namedtuple
        return type(batch)(*(to_device(v, device, non_blocking) for v in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device, non_blocking) for v in batch)
    return batch


def _checkpoint_advice(checkpoint: str | Path | None, checkpoint_step: int | None = None) -> str:
    """The sentence of a divergence message about the checkpoint on disk, which was written before."""
    if checkpoint is None or not Path(checkpoint).is_file():
        return ""
    when = f" (saved at step {checkpoint_step})" if checkpoint_step is not None else ""
    return (f" The last checkpoint, {checkpoint}{when}, was written before this and is left as it was: "
            "fix the cause, then run again to resume from it (fit applies a new learning rate when it "
            "resumes), or delete it to start afresh.")


def check_finite(loss: torch.Tensor | float, *, step: int, epoch: int | None = None,
                 last_good: float | None = None, checkpoint: str | Path | None = None,
                 what: str = "loss", checkpoint_step: int | None = None) -> float:
    """Raise :class:`TrainingDiverged` if ``loss`` is NaN or infinite, saying where and what to try
    (and, when ``checkpoint`` exists, that it was written before, at ``checkpoint_step`` if given).
    Returns the loss as a float."""
    value = float(loss.detach().float().item()) if isinstance(loss, torch.Tensor) else float(loss)
    if math.isfinite(value):
        return value
    where = f"step {step}" + (f" (epoch {epoch})" if epoch is not None else "")
    before = f"; the last finite {what} was {last_good:.6g}" if last_good is not None else ""
    raise TrainingDiverged(
        f"the {what} is {value} at {where}{before}: training diverged, so it stopped here rather than "
        "continue on NaN weights. Try a smaller learning rate, gradient clipping (clip_grad_norm=1.0), "
        "or check the data and the loss for log(0) or division by zero." + _checkpoint_advice(checkpoint, checkpoint_step)
    )


def _check_growth(value: float, first: list[float], factor: float | None, *, step: int, epoch: int,
                  checkpoint: Path | None, checkpoint_step: int | None) -> None:
    """Raise :class:`TrainingDiverged` if the loss ``value`` is more than ``factor`` times the largest
    of the ``first`` losses of the run in size: a finite loss can diverge too (Adam at lr 1e6 trains
    on with losses near 1e26, and would only reach NaN much later, if ever)."""
    reference = max((abs(v) for v in first), default=0.0)
    if factor is None or reference == 0.0 or abs(value) <= factor * reference:
        return
    raise TrainingDiverged(
        f"the loss is {value:.3g} at step {step} (epoch {epoch}), more than {factor:,.0f} times the largest of "
        f"the first {len(first)} losses ({reference:.3g}): training diverged, so it stopped here. Try a smaller "
        "learning rate or gradient clipping (clip_grad_norm=1.0); if this loss is expected to grow that much, "
        "pass divergence_factor=None (or a larger factor) to fit." + _checkpoint_advice(checkpoint, checkpoint_step)
    )


def amp_dtype(device: torch.device | str) -> torch.dtype | None:
    """The autocast dtype on ``device``, decided here for every trainer in unsuplab.

    * bfloat16 on CUDA cards of compute capability 8.0 or more (A100, the RTX 30 series and later,
      L4, H100), whose tensor cores run it natively;
    * float16 (with a gradient scaler, :func:`grad_scaler`) on older CUDA cards, such as Colab's T4
      (7.5). ``torch.cuda.is_bf16_supported()`` says True there, but only through emulation:
      matrix products run slowly and cuDNN has no bfloat16 convolutions, so it is not asked;
    * ``None`` (full float32) off CUDA, where mixed precision brings little.
    """
    device = torch.device(device)
    if device.type != "cuda":
        return None
    major, _ = torch.cuda.get_device_capability(device)
    return torch.bfloat16 if major >= 8 else torch.float16


def autocast(device: torch.device | str, enabled: bool = True):
    """``torch.autocast`` on ``device`` at :func:`amp_dtype`, or a context that changes nothing where
    that is ``None`` (the CPU, MPS) or when ``enabled`` is False::

        with autocast(device):
            loss = loss_fn(model, batch)
    """
    device = torch.device(device)
    dtype = amp_dtype(device) if enabled else None
    if dtype is None:
        return nullcontext()
    return torch.autocast(device.type, dtype=dtype)


class NoScaler:
    """A gradient scaler that does nothing, with ``torch.amp.GradScaler``'s interface: what
    :func:`grad_scaler` gives where no loss scaling is needed (float32, bfloat16), so that one
    training loop serves every device::

        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)          # before clipping the gradients
        scaler.step(optimizer)
        scaler.update()
    """

    def scale(self, loss):
        """The loss, unchanged."""
        return loss

    def unscale_(self, optimizer) -> None:
        """Nothing to undo: the gradients were never scaled."""

    def step(self, optimizer, *args, **kwargs):
        """``optimizer.step()``."""
        return optimizer.step(*args, **kwargs)

    def update(self, new_scale=None) -> None:
        """Nothing to update."""

    def is_enabled(self) -> bool:
        """False, as for a disabled GradScaler."""
        return False

    def get_scale(self) -> float:
        """1.0: the loss is not scaled."""
        return 1.0

    def state_dict(self) -> dict:
        """``{}``, as a disabled GradScaler saves."""
        return {}

    def load_state_dict(self, state_dict: dict) -> None:
        """Ignores the state: a checkpoint written with float16 on a T4 resumes on a CPU or an A100."""


def grad_scaler(device: torch.device | str, enabled: bool = True):
    """The gradient scaler for :func:`autocast` on ``device``: a real ``torch.amp.GradScaler`` where it
    autocasts to float16 (whose small range lets small gradients underflow to zero unless the loss is
    scaled up first), else a :class:`NoScaler`."""
    device = torch.device(device)
    if not enabled or amp_dtype(device) is not torch.float16:
        return NoScaler()
    try:
        return torch.amp.GradScaler(device.type)  # torch >= 2.3
    except (AttributeError, TypeError):
        return torch.cuda.amp.GradScaler()  # older torch (Colab's may lag behind)


def backward_and_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scaler: Any,
                      parameters: Iterable[torch.Tensor] | None = None,
                      clip_grad_norm: float | None = None) -> torch.Tensor | None:
    """One optimisation step through ``scaler`` (from :func:`grad_scaler`): zero the gradients, back-
    propagate the scaled loss, clip the true (unscaled) gradients of ``parameters`` to
    ``clip_grad_norm`` if given, then step and update the scaler. Returns the gradient norm before
    clipping, or ``None`` without clipping. The trainers of the models use it, so that each of them
    takes the same path through the scaler."""
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    norm = None
    if clip_grad_norm is not None:
        scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
        norm = nn.utils.clip_grad_norm_(parameters, clip_grad_norm)
    scaler.step(optimizer)
    scaler.update()
    return norm


def _capture_rng() -> tuple:
    """Every random stream as its libraries return it: cheap enough to take before every step."""
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    return random.getstate(), np.random.get_state(), torch.get_rng_state(), cuda


def _rng_state(captured: tuple | None = None) -> dict:
    """The streams of ``captured`` (default: now), as tensors and plain values only (a checkpoint must
    hold nothing else); converted only when a checkpoint is written."""
    python, (name, keys, pos, has_gauss, cached_gaussian), torch_state, cuda = captured or _capture_rng()
    state = {"python": python,  # (version, tuple of 625 ints, None)
             "numpy": {"name": str(name), "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "cached_gaussian": float(cached_gaussian)},
             "torch": torch_state}
    if cuda is not None:
        state["cuda"] = cuda
    return state


def _set_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy = state["numpy"]
    np.random.set_state((numpy["name"], numpy["keys"].cpu().numpy().astype(np.uint32), numpy["pos"],
                         numpy["has_gauss"], numpy["cached_gaussian"]))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


# What torch.load(..., weights_only=True) reads back without running any code from the file.
_PLAIN_TYPES = (type(None), bool, int, float, complex, str, bytes, torch.Tensor, torch.Size, torch.dtype, torch.device)


def _plain(value: Any, where: str) -> Any:
    """``value`` with NumPy scalars turned into Python numbers; a TypeError that names ``where`` for
    anything a safe checkpoint cannot hold (an array, a custom object, a function)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, _PLAIN_TYPES):
        return value
    if type(value) in (dict, OrderedDict):
        return type(value)((_plain(k, f"a key of {where}"), _plain(v, f"{where}[{k!r}]")) for k, v in value.items())
    if type(value) in (list, tuple, set):
        return type(value)(_plain(v, f"{where}[{i}]") for i, v in enumerate(value))
    kind = type(value)
    raise TypeError(
        f"cannot save {where} in a checkpoint: it is a {kind.__module__}.{kind.__qualname__}, and a checkpoint "
        "holds only tensors and plain values (numbers, strings, None, and lists, tuples and dicts of them), so "
        "that loading it never runs code. Store it as a tensor (torch.as_tensor(x)) or as plain values (x.tolist())."
    )


def _not_a_folder(path: str | Path) -> Path:
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder, not a checkpoint file: give a file path inside it, "
                                f"like {path / 'model.pt'}.")
    return path


def save_checkpoint(path: str | Path, **state: Any) -> Path:
    """``torch.save(state, path)`` atomically: written to a temporary file, then renamed, so an
    interruption during the write leaves the previous checkpoint intact. Modules, optimizers,
    schedulers and scalers are stored by their ``state_dict()``. Everything must be a tensor or a
    plain value (see :func:`load_checkpoint`); anything else is refused with a TypeError, before writing."""
    path = _not_a_folder(path)
    plain = {k: _plain(v.state_dict() if hasattr(v, "state_dict") and hasattr(v, "load_state_dict") else v, repr(k))
             for k, v in state.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(plain, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | Path, map_location: Any = "cpu", **objects: Any) -> dict:
    """Load a checkpoint written by :func:`save_checkpoint`. For each keyword ``name=obj`` whose
    ``obj`` has ``load_state_dict`` (a module, an optimizer...), ``obj.load_state_dict(state[name])``
    is called. Returns the whole state dict. A damaged file gives an error that says to delete it.

    Only tensors and plain values are read (``torch.load(..., weights_only=True)``): a file that holds
    any other pickled object, which plain ``torch.load`` would *run* while loading, is refused with
    :class:`UnsafeCheckpointError` and nothing in it is executed. Checkpoints are shared and
    downloaded, so a crafted one must not be able to do anything.
    """
    path = _not_a_folder(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}: train first, or check the path.")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        if "Unsupported" not in str(error):  # a damaged pickle rather than a forbidden object
            raise RuntimeError(f"the checkpoint {path} cannot be read ({error}); it is probably truncated: "
                               "delete it to train from the start.") from None
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
        raise UnsafeCheckpointError(
            f"{path} is not a safe checkpoint: besides tensors and plain values it holds a pickled Python object"
            f"{f' ({found.group(1)})' if found else ''}, and loading that would run code from the file. It was "
            "not loaded. Delete it and train again, or ask whoever shared it for a file written by "
            "unsuplab.train.save_checkpoint. (A file written by an older version of unsuplab also lands "
            "here; if you made it yourself, torch.load(path, weights_only=False) still reads it, but never "
            "do that with a file you did not make.)"
        ) from None
    except Exception as error:  # noqa: BLE001 - any unreadable file gets the same advice
        raise RuntimeError(f"the checkpoint {path} cannot be read ({type(error).__name__}: {error}); "
                           "it is probably truncated: delete it to train from the start.") from error
    for name, obj in objects.items():
        if name not in state:
            raise KeyError(f"the checkpoint {path} has no {name!r} (it has {sorted(state)}): was it written "
                           "by another model or another version of this notebook? Delete it to start afresh.")
        try:
            obj.load_state_dict(state[name])
        except (RuntimeError, ValueError, KeyError) as error:
            raise RuntimeError(f"the checkpoint {path} does not fit this {name} ({error}): it was probably "
                               "written for another architecture or settings; delete it to start afresh.") from error
    return state


def run_steps(step_fn: Callable[[int], dict], n_steps: int, *, checkpoint: str | Path | None = None,
              state: dict | None = None, generator: torch.Generator | None = None, resume: bool = True,
              checkpoint_every: int = 200, desc: str = "training", progress_bar: bool = True,
              until: Callable[[], bool] | None = None) -> History:
    """A loop of ``n_steps`` updates, each one call ``step_fn(step)`` for step = 1 .. ``n_steps`` that
    does the update and returns its losses (a dict of 0-d tensors or numbers; a key may appear at some
    steps only, e.g. an evaluation). Every loss is checked with :func:`check_finite` (a clear error, not a
    silent NaN) and logged; every ``checkpoint_every`` steps and at the end, ``state`` (nets, optimizers,
    anything with ``state_dict``, by name), the history, the step and the state of ``generator`` (the
    random stream of the batches) are saved to ``checkpoint``. With ``resume`` a checkpoint that exists is
    loaded first, so an interrupted run continues where it stopped and a finished run is not repeated.
    ``until()``, if given, is asked after every step: True stops the run there (an early stop).

    Returns the :class:`History`: ``history.steps`` holds ``"step"`` and each loss, ``history.seconds``
    the training time.
    """
    state = dict(state or {})
    history = History()
    start = 0
    checkpoint = Path(checkpoint) if checkpoint is not None else None
    if checkpoint is not None and resume and checkpoint.exists():
        saved = load_checkpoint(checkpoint, **state, history=history)
        start = saved["step"]
        if generator is not None and saved.get("rng") is not None:
            generator.set_state(saved["rng"])
        if saved.get("global_rng") is not None:
            _set_rng_state(saved["global_rng"])
        print(f"resumed from {checkpoint} at step {start} of {n_steps}"
              + (" (already finished)" if start >= n_steps else ""))

    def save(step: int) -> None:
        if checkpoint is not None:
            save_checkpoint(checkpoint, **state, step=step, history=history, global_rng=_rng_state(),
                            rng=generator.get_state() if generator is not None else None)

    started = time.perf_counter()
    for step in progress(range(start + 1, n_steps + 1), desc=desc, initial=start, total=n_steps,
                         disable=not progress_bar):
        losses = step_fn(step)
        for name, value in losses.items():
            check_finite(value, step=step, what=f"{desc} {name}", checkpoint=checkpoint)
        history.log_step({"step": step, **{name: value.detach() if isinstance(value, torch.Tensor) else value
                                           for name, value in losses.items()}})
        stop = until is not None and until()
        if step % checkpoint_every == 0 or step == n_steps or stop:
            history.seconds += time.perf_counter() - started
            started = time.perf_counter()
            save(step)
        if stop:
            break
    return history


# ----------------------------------------------------------------------------------------------
# History
# ----------------------------------------------------------------------------------------------

@dataclass
class History:
    """What a training run measured; :func:`fit`, :func:`run_steps` and every trainer of the models
    return one.

    * ``steps``: one entry per optimisation step (the loss and whatever else is logged), dicts of lists;
    * ``epochs``: one row per epoch, dicts of lists of the same length: for :func:`fit` the mean of each
      step quantity over the epoch, plus what ``eval_fn`` returned. A trainer that counts in rounds,
      iterations or evaluation points instead writes one row per round (its docstring says which);
    * ``seconds``: the training time, summed over resumed runs;
    * ``info``: what a run measured that is not a curve of numbers, by name: DeepCluster's cluster sizes
      per round, the round or step a trainer selected. Plain values only (numbers, strings, and lists
      and dicts of them), so that a checkpoint can hold them.

    ``history.epochs["loss"]`` is the mean training loss of each epoch; ``history.last("loss")``
    the last epoch's; ``plot_history(history)`` draws the epoch curves.
    """

    steps: dict[str, list[float]] = field(default_factory=dict)
    epochs: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0  # training time, summed over resumed runs
    info: dict[str, Any] = field(default_factory=dict)  # what is not a curve: sizes, a selected round

    def log_step(self, values: Mapping[str, float]) -> None:
        for key, value in values.items():
            self.steps.setdefault(key, []).append(float(value))

    def log_epoch(self, values: Mapping[str, float]) -> None:
        n = len(next(iter(self.epochs.values()), []))
        for key, value in values.items():
            column = self.epochs.setdefault(key, [None] * n)  # a key first seen late gets gaps before it
            column.append(None if value is None else float(value))
        for key, column in self.epochs.items():  # a key missing this epoch gets a gap
            if len(column) == n:
                column.append(None)

    def last(self, key: str) -> float:
        """The last epoch's value of ``key``."""
        if key not in self.epochs or not self.epochs[key]:
            raise KeyError(f"no epoch value {key!r} yet: the history has {sorted(self.epochs)}.")
        return self.epochs[key][-1]

    def state_dict(self) -> dict:
        return {"steps": self.steps, "epochs": self.epochs, "seconds": self.seconds, "info": self.info}

    def load_state_dict(self, state: Mapping) -> None:
        self.steps = {k: list(v) for k, v in state["steps"].items()}
        self.epochs = {k: list(v) for k, v in state["epochs"].items()}
        self.seconds = float(state.get("seconds", 0.0))
        self.info = copy.deepcopy(dict(state.get("info", {})))  # a checkpoint from before info has none


# ----------------------------------------------------------------------------------------------
# The loop
# ----------------------------------------------------------------------------------------------

def _split_loss(out: Any) -> tuple[torch.Tensor, dict[str, float]]:
    """``loss`` or ``(loss, {"name": value, ...})`` -> the loss tensor and the numbers to log."""
    if isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], Mapping):
        loss, extra = out
    else:
        loss, extra = out, {}
    if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
        raise TypeError(
            "loss_fn(model, batch) must return a scalar tensor, or (scalar tensor, dict of numbers); got "
            + (f"a tensor of shape {tuple(loss.shape)}: reduce it with .mean() or .sum()"
               if isinstance(loss, torch.Tensor) else type(loss).__name__) + "."
        )
    logged = {"loss": loss.detach()}
    for name, value in extra.items():
        logged[name] = value.detach() if isinstance(value, torch.Tensor) else value
    return loss, logged


@contextmanager
def _interrupts_held():
    """Hold a Ctrl-C (SIGINT) that arrives inside the block until the block is done, then deliver it:
    an optimisation step is then applied and counted whole, or not at all. Only the main thread
    receives signals; elsewhere (and where Python did not install the handler) the block runs as is."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) is None:
        yield
        return
    held: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: held.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if held:
            signal.raise_signal(signal.SIGINT)


def _hyperparameters(optimizer: torch.optim.Optimizer) -> list[dict]:
    """Each parameter group's settings (lr, betas, weight_decay...), without the parameters."""
    return [{k: v for k, v in group.items() if k != "params"} for group in optimizer.param_groups]


def _show(value: Any) -> str:
    value = value.tolist() if isinstance(value, torch.Tensor) else value
    return f"{value:g}" if isinstance(value, float) else str(value)


def _reconcile_hyperparameters(optimizer: torch.optim.Optimizer, given: list[dict], scheduled: bool,
                               checkpoint: Path) -> None:
    """After a resume, the optimizer holds the checkpoint's settings. Where they differ from those the
    caller ``given`` (a new learning rate, say), apply the caller's and say so; with a scheduler, whose
    state comes from the checkpoint too, keep the checkpoint's and say how to start afresh instead."""
    changes = []  # (group, key, given value, checkpoint's value)
    for i, (group, wanted) in enumerate(zip(optimizer.param_groups, given)):
        for key, value in wanted.items():
            if scheduled and key == "lr":  # the scheduler sets it; its start is compared as 'initial_lr'
                continue
            old = group.get(key, value)
            same = _show(old) == _show(value) if isinstance(old, torch.Tensor) or isinstance(value, torch.Tensor) \
                else old == value
            if not same:
                changes.append((i, key, value, old))
    if not changes:
        return
    where = (lambda i: f" (group {i})") if len(optimizer.param_groups) > 1 else (lambda i: "")
    if scheduled:
        listed = ", ".join(f"{'lr' if key == 'initial_lr' else key}={_show(old)}{where(i)}"
                           f"{' at the start of its schedule' if key == 'initial_lr' else ''} (you gave {_show(value)})"
                           for i, key, value, old in changes)
        print(f"  kept the checkpoint's optimizer settings, {listed}: its learning-rate schedule is part of the "
              "checkpoint and cannot switch halfway. To train with the new settings, start afresh: "
              f"fit(..., resume=False), or delete {checkpoint}.")
        return
    for i, key, value, _ in changes:
        optimizer.param_groups[i][key] = value
    listed = ", ".join(f"{key}={_show(value)}{where(i)} (the checkpoint had {_show(old)})"
                       for i, key, value, old in changes)
    print(f"  with the optimizer settings given now: {listed}.")


def _epoch_seed(seed: int, epoch: int) -> int:
    # the data order of an epoch depends only on (seed, epoch), so a resumed epoch replays it exactly
    return (seed * 1_000_003 + epoch * 7_919) % (2**63 - 1)


def warmup_schedule(optimizer: torch.optim.Optimizer, warmup: int, total: int, decay: str = "linear"
                    ) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-step learning-rate schedule: linear warm-up from ``lr / warmup`` to ``lr`` over the first
    ``warmup`` steps, then ``decay`` over the rest of the ``total`` steps: ``"linear"`` to zero (BERT),
    ``"cosine"`` to zero (SimCLR), ``"constant"`` (none). Give it to :func:`fit` with
    ``schedule_per="step"``, or call ``.step()`` after every optimiser step of a loop of your own."""
    if decay not in ("linear", "cosine", "constant"):
        raise ValueError(f"decay must be 'linear', 'cosine' or 'constant', got {decay!r}.")
    warmup, total = max(int(warmup), 0), max(int(total), 1)

    def factor(step: int) -> float:  # step = the number of optimiser steps taken so far
        if step < warmup:
            return (step + 1) / warmup
        if decay == "constant":
            return 1.0
        left = max(total - step, 0) / max(total - warmup, 1)          # 1 -> 0 over the decay
        return left if decay == "linear" else 0.5 * (1 - math.cos(math.pi * left))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class TensorBatches:
    """Mini-batches of tensors that already sit on their device (the GPU, when there is one): one pass
    gives ``len()`` batches, a fresh permutation each pass drawn from torch's global generator (which
    :func:`fit` seeds per epoch, so a resumed run sees the same batches). Much faster than a ``DataLoader``
    that indexes and stacks examples one at a time.

    ``TensorBatches(x, batch_size=128)`` yields slices of ``x``; ``TensorBatches(x, y, ...)`` yields
    ``(x_b, y_b)``. ``shuffle=False`` keeps the order; ``drop_last`` drops a last, smaller batch;
    ``weights`` (N,) draws each pass's examples with replacement in proportion to them (DeepCluster's
    balanced sampling); ``transform`` is applied to the first tensor's batch as it is drawn (e.g.
    ``torch.bernoulli``: binary digits drawn afresh each time)."""

    def __init__(self, *tensors: torch.Tensor, batch_size: int = 128, shuffle: bool = True,
                 drop_last: bool = False, weights: torch.Tensor | None = None,
                 transform: Callable[[torch.Tensor], torch.Tensor] | None = None):
        if not tensors or not all(isinstance(t, torch.Tensor) for t in tensors):
            raise TypeError("TensorBatches takes one or more tensors, e.g. TensorBatches(x, y, batch_size=64).")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a whole number >= 1, got {batch_size!r}.")
        n = len(tensors[0])
        if n == 0:
            raise ValueError("TensorBatches got an empty tensor: there is nothing to train on.")
        if any(len(t) != n for t in tensors):
            raise ValueError(f"the tensors must hold one row per example, got lengths {[len(t) for t in tensors]}.")
        if drop_last and batch_size > n:
            raise ValueError(f"batch_size {batch_size} is larger than the {n} examples and drop_last leaves no "
                             "batch: use a smaller batch.")
        self.tensors, self.batch_size, self.shuffle, self.drop_last = tensors, batch_size, shuffle, drop_last
        self.weights = None if weights is None else weights.to(tensors[0].device, torch.float)
        self.transform = transform

    def __len__(self) -> int:
        n = len(self.tensors[0])
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self):
        n, device = len(self.tensors[0]), self.tensors[0].device
        count = len(self) * self.batch_size if self.drop_last else n
        if self.weights is not None:
            order = torch.multinomial(self.weights, count, replacement=True)
        elif self.shuffle:
            order = torch.randperm(n, device=device)[:count]
        else:
            order = torch.arange(count, device=device)
        for start in range(0, count, self.batch_size):
            index = order[start:start + self.batch_size]
            batch = [t[index] for t in self.tensors]
            if self.transform is not None:
                batch[0] = self.transform(batch[0])
            yield batch[0] if len(batch) == 1 else tuple(batch)


@dataclass
class _Run:
    """Where one :func:`fit` call stands, and its four parts as methods: :meth:`resume` and :meth:`save`
    (checkpoints), :meth:`train_step` (one optimisation step), :meth:`end_epoch` (evaluation, the
    epoch's log line, the scheduler)."""

    model: nn.Module
    loss_fn: Callable
    optimizer: torch.optim.Optimizer
    scheduler: Any
    schedule_per: str
    scaler: Any
    device: torch.device
    use_amp: bool
    clip_grad_norm: float | None
    checkpoint: Path | None
    divergence_factor: float | None
    history: History = field(default_factory=History)
    epoch: int = 0                      # epochs finished
    batch_in_epoch: int = 0             # steps taken in the epoch under way
    step: int = 0                       # steps taken in all
    sums: dict = field(default_factory=dict)   # the epoch's running sums of each logged value...
    count: int = 0                      # ...over this many steps
    saved_step: int | None = None       # the step of the checkpoint on disk, once known
    last_good: float | None = None      # the last finite loss
    # An interruption inside a step (a Ctrl-C during the forward pass) must save the state as of the
    # start of that step: its dropout noise is already drawn and batch norm has already moved its
    # running statistics, and the resumed run will draw and move them again. `unfinished` holds that
    # state while a step (or the end of an epoch) is under way, and is None between them.
    unfinished: dict | None = None

    # -- checkpoints ---------------------------------------------------------------------------
    def resume(self, epochs: int, max_steps: int | None) -> dict | None:
        """Load the checkpoint into the model, optimizer, scheduler, scaler and history; returns the
        random streams to continue from (or None when there is no checkpoint)."""
        given = _hyperparameters(self.optimizer)
        state = load_checkpoint(self.checkpoint, map_location=self.device, model=self.model,
                                optimizer=self.optimizer, history=self.history)
        if self.scheduler is not None and state.get("scheduler") is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):  # empty when saved without float16: a fresh scaler starts afresh
            self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.batch_in_epoch, self.step = state["epoch"], state["batch_in_epoch"], state["step"]
        sums, count = state.get("epoch_sums") or ({}, 0)
        self.sums, self.count, self.saved_step = dict(sums), int(count), self.step
        if self.epoch >= epochs or (max_steps and self.step >= max_steps):
            done = (f"{self.epoch} of {epochs} epochs" if self.epoch <= epochs
                    else f"{self.epoch} epochs, {epochs} asked")
            print(f"{self.checkpoint} holds a run that is already finished ({done}, {self.step} steps"
                  f"{f', max_steps={max_steps}' if max_steps else ''}): nothing to train, its history is returned. "
                  "To train again, delete it or call fit(..., resume=False).")
        else:
            print(f"resumed from {self.checkpoint}: epoch {self.epoch + 1} of {epochs}, step {self.step}")
            _reconcile_hyperparameters(self.optimizer, given, self.scheduler is not None, self.checkpoint)
        return state["rng"]

    def save(self, rng: tuple | None = None) -> None:
        """Write the checkpoint as of now (or with the random streams ``rng`` of the start of a step);
        never over a good checkpoint with NaN or infinite weights."""
        if self.checkpoint is None:
            return
        finite = [torch.isfinite(p).all() for p in self.model.parameters()]
        if finite and not bool(torch.stack(finite).all()):
            raise TrainingDiverged(
                f"the weights became NaN or infinite in the update of step {self.step}, although its loss was "
                f"finite{f' ({self.last_good:.6g})' if self.last_good is not None else ''}: training diverged, so it "
                "stopped here rather than continue on NaN weights. Try a smaller learning rate or gradient clipping "
                "(clip_grad_norm=1.0)." + _checkpoint_advice(self.checkpoint, self.saved_step))
        save_checkpoint(self.checkpoint, model=self.model, optimizer=self.optimizer, history=self.history,
                        scheduler=self.scheduler, scaler=self.scaler, epoch=self.epoch,
                        batch_in_epoch=self.batch_in_epoch, step=self.step, rng=_rng_state(rng),
                        epoch_sums=(dict(self.sums), self.count) if self.batch_in_epoch else None)
        self.saved_step = self.step

    def restore_unfinished(self) -> tuple | None:
        """After an interruption: the batch-norm statistics back to the start of the step under way,
        and that step's random streams (to save), or None between steps."""
        if self.unfinished is None:
            return None
        with torch.no_grad():
            for buffer, saved in zip(self.model.buffers(), self.unfinished["buffers"]):
                buffer.copy_(saved)
        return self.unfinished["rng"]

    # -- one step --------------------------------------------------------------------------------
    def train_step(self, batch: Any) -> None:
        """Forward, check, backward, (clip), update; the update is applied and counted whole."""
        self.unfinished = {"rng": _capture_rng(), "buffers": [b.detach().clone() for b in self.model.buffers()]}
        batch = to_device(batch, self.device, non_blocking=self.device.type == "cuda")
        with autocast(self.device, enabled=self.use_amp):
            loss, logged = _split_loss(self.loss_fn(self.model, batch))
        where = dict(step=self.step + 1, epoch=self.epoch + 1, checkpoint=self.checkpoint,
                     checkpoint_step=self.saved_step)
        value = check_finite(loss, last_good=self.last_good, **where)
        _check_growth(value, self.history.steps.get("loss", [])[:10], self.divergence_factor, **where)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.clip_grad_norm is not None:
            self.scaler.unscale_(self.optimizer)
            logged["grad_norm"] = nn.utils.clip_grad_norm_(self.model.parameters(), self.clip_grad_norm)
        with _interrupts_held():  # the update is applied and counted whole, or not at all
            self.scaler.step(self.optimizer)
            self.scaler.update()
            if self.scheduler is not None and self.schedule_per == "step":
                self.scheduler.step()
            self.step += 1
            self.batch_in_epoch += 1
            self.log_step({k: float(v) for k, v in logged.items()})
            self.unfinished = None

    # -- logging ---------------------------------------------------------------------------------
    def log_step(self, values: dict[str, float]) -> None:
        self.last_good = values["loss"]
        self.history.log_step(values)
        for k, v in values.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
        self.count += 1

    # -- the end of an epoch -----------------------------------------------------------------------
    def end_epoch(self, eval_fn: Callable | None) -> None:
        """The epoch's means and ``eval_fn``'s numbers into the history; the scheduler's epoch step."""
        if self.count == 0 and self.batch_in_epoch == 0:
            raise ValueError("data yielded no batches: check the DataLoader (an empty dataset, or "
                             "drop_last=True with fewer examples than batch_size).")
        epoch_values = {k: v / max(self.count, 1) for k, v in self.sums.items()}
        self.unfinished = {"rng": _capture_rng(), "buffers": []}  # eval_fn may draw random numbers
        if eval_fn is not None:
            with eval_mode(self.model), torch.no_grad():
                evaluated = dict(eval_fn(self.model))
            for k, v in evaluated.items():
                check_finite(v, step=self.step, epoch=self.epoch + 1, checkpoint=self.checkpoint,
                             what=f"evaluation {k!r}", checkpoint_step=self.saved_step)
            epoch_values.update({k: float(v) for k, v in evaluated.items()})
        with _interrupts_held():
            self.history.log_epoch(epoch_values)
            if self.scheduler is not None and self.schedule_per == "epoch":
                self.scheduler.step()
            self.epoch += 1
            self.batch_in_epoch = 0
            self.sums, self.count = {}, 0
            self.unfinished = None


def _epoch_batches(data: Iterable, run: _Run, seed: int, resumed_rng: dict | None) -> tuple[Iterable, dict | None]:
    """The batches of the epoch ``run.epoch``: its data order is a function of (seed, epoch), so it
    can be replayed after a resume; resumed inside the epoch, the batches already trained on are
    skipped and the random streams continue where they stopped. Returns the batches and the random
    streams still to restore (None once restored)."""
    if resumed_rng is not None and run.batch_in_epoch == 0:  # resumed between two epochs
        _set_rng_state(resumed_rng)
        resumed_rng = None
    torch.manual_seed(_epoch_seed(seed, run.epoch))
    batches = iter(data)
    if run.batch_in_epoch:
        batches = itertools.islice(batches, run.batch_in_epoch, None)
    if resumed_rng is not None:  # resumed inside an epoch: randomness continues where it stopped
        next_batch = next(batches, None)  # draws the epoch's shuffle first, as the first run did
        _set_rng_state(resumed_rng)
        resumed_rng = None
        batches = itertools.chain([] if next_batch is None else [next_batch], batches)
    return batches, resumed_rng


def fit(model: nn.Module, loss_fn: Callable[[nn.Module, Any], Any], data: Iterable, *,
        epochs: int, optimizer: torch.optim.Optimizer | None = None, lr: float = 1e-3,
        scheduler: Any = None, schedule_per: str = "epoch", device: torch.device | str | None = None,
        amp: bool | None = None, clip_grad_norm: float | None = None,
        checkpoint: str | Path | None = None, checkpoint_every: int | None = None,
        resume: bool = True, eval_fn: Callable[[nn.Module], Mapping[str, float]] | None = None,
        max_steps: int | None = None, seed: int = 0, progress_bar: bool = True,
        desc: str | None = None, divergence_factor: float | None = 1e4, warmup: int | None = None,
        decay: str | None = None) -> History:
    """Train ``model`` by minimising ``loss_fn(model, batch)`` over ``epochs`` passes of ``data``.

    Parameters
    ----------
    model
        The network; moved to ``device`` (default: the device of its parameters).
    loss_fn
        ``loss_fn(model, batch) -> loss`` or ``(loss, {"name": value})``; the batch arrives on
        ``device``. Extra values are logged per step and averaged per epoch.
    data
        An iterable of batches, usually a ``DataLoader`` or :class:`TensorBatches`; iterated once per epoch.
    optimizer
        Default ``torch.optim.Adam(model.parameters(), lr=lr)``.
    scheduler, schedule_per
        A learning-rate scheduler, stepped once per epoch after ``eval_fn`` (``schedule_per="epoch"``),
        or after every optimisation step (``"step"``: a warm-up and decay such as :func:`warmup_schedule`).
    amp
        Mixed precision; default on for CUDA (see :func:`amp_dtype`: bfloat16 on compute capability
        8.0 or more, else float16 with a gradient scaler); ``False`` trains in float32.
    clip_grad_norm
        Clip the global gradient norm to this value (logged as ``grad_norm``).
    checkpoint
        A file path; the state is saved there at the end of every epoch, every ``checkpoint_every``
        steps if given, and when training is interrupted by an exception: then as of the start of
        the step under way (its random numbers and batch-norm statistics undone; a Ctrl-C during the
        weight update is held until the update is counted), so the resumed run repeats that step
        exactly. With ``resume`` (default) an existing checkpoint is loaded first and training
        continues from it; a finished run is not repeated (the saved history is returned at once).
        Optimizer settings given now that differ from the checkpoint's (a new ``lr``) are applied,
        and printed; with a ``scheduler``, whose state is in the checkpoint, the checkpoint's are
        kept and a printed line says so. A checkpoint is never overwritten by NaN or infinite weights.
    eval_fn
        ``eval_fn(model) -> {"name": value}``, called in ``eval`` mode without gradients at the end of
        every epoch; its values go into ``history.epochs``.
    max_steps
        Stop after this many optimisation steps in total (a time budget for smoke runs).
    seed
        Fixes the data order of each epoch, so a resumed run sees the same batches.
    warmup, decay
        A per-step learning-rate schedule built for you (:func:`warmup_schedule`): a linear warm-up over
        the first ``warmup`` steps, then ``decay`` (``"linear"``, ``"cosine"`` or ``"constant"``) to the
        end of training (``max_steps``, or every batch of every epoch). Either one alone is enough
        (``warmup`` defaults to 0 steps, ``decay`` to ``"constant"``); not with ``scheduler``.
    divergence_factor
        Stop when a loss is more than this many times the largest of the run's first 10 losses in size
        (a finite loss can diverge too); ``None`` stops at NaN or infinite losses only.

    Returns
    -------
    History
        Per-step and per-epoch numbers.

    Raises
    ------
    TrainingDiverged
        At the first non-finite loss, or when the weights become non-finite; the message names the
        checkpoint left on disk and the step it was saved at.
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a whole number >= 1, got {epochs!r}.")
    if max_steps is not None and (not isinstance(max_steps, int) or max_steps < 1):
        raise ValueError(f"max_steps must be a whole number >= 1 or None, got {max_steps!r}.")
    if checkpoint_every is not None and (not isinstance(checkpoint_every, int) or checkpoint_every < 1):
        raise ValueError(f"checkpoint_every must be a whole number of steps >= 1 or None, got {checkpoint_every!r}.")
    if divergence_factor is not None and not divergence_factor > 1:
        raise ValueError(f"divergence_factor must be a number > 1 (default 1e4) or None, got {divergence_factor!r}.")
    if schedule_per not in ("epoch", "step"):
        raise ValueError(f"schedule_per must be 'epoch' or 'step', got {schedule_per!r}.")
    if device is None:
        first = next(model.parameters(), None)
        device = first.device if first is not None else torch.device("cpu")
    device = torch.device(device)
    model.to(device)
    if optimizer is None:
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    try:
        n_batches = len(data)  # type: ignore[arg-type]
    except TypeError:
        n_batches = None
    total = None if n_batches is None else n_batches * epochs
    if max_steps is not None:
        total = max_steps if total is None else min(total, max_steps)
    if warmup is not None or decay is not None:
        if scheduler is not None:
            raise ValueError("give either a scheduler or warmup/decay (which build one), not both.")
        if total is None:
            raise ValueError("warmup/decay need the number of steps: give max_steps, or data with a len().")
        scheduler = warmup_schedule(optimizer, warmup or 0, total, decay or "constant")
        schedule_per = "step"
    use_amp = amp is None or bool(amp)  # autocast and grad_scaler switch it off where it does not apply
    run = _Run(model, loss_fn, optimizer, scheduler, schedule_per, grad_scaler(device, enabled=use_amp), device,
               use_amp, clip_grad_norm, _not_a_folder(checkpoint) if checkpoint is not None else None,
               divergence_factor)
    resumed_rng = None
    if run.checkpoint is not None and resume and run.checkpoint.exists():
        resumed_rng = run.resume(epochs, max_steps)

    bar = progress(total=total, initial=min(run.step, total or run.step), desc=desc or type(model).__name__,
                   disable=not progress_bar, leave=True)
    started = time.perf_counter()
    done = max_steps is not None and run.step >= max_steps
    try:
        while run.epoch < epochs and not done:
            model.train()
            batches, resumed_rng = _epoch_batches(data, run, seed, resumed_rng)
            for batch in batches:
                run.train_step(batch)
                bar.update(1)
                bar.set_postfix(epoch=run.epoch + 1, loss=f"{run.last_good:.4g}", refresh=False)
                if checkpoint_every is not None and run.step % checkpoint_every == 0:
                    run.save()
                if max_steps is not None and run.step >= max_steps:
                    done = True
                    break
            run.end_epoch(eval_fn)
            run.history.seconds += time.perf_counter() - started
            started = time.perf_counter()
            run.save()
    except TrainingDiverged:
        bar.close()
        raise
    except BaseException:  # an interruption (KeyboardInterrupt, a lost runtime) keeps what was done
        run.history.seconds += time.perf_counter() - started
        run.save(rng=run.restore_unfinished())  # as of the start of the step that was under way
        bar.close()
        if run.checkpoint is not None:
            print(f"interrupted at epoch {run.epoch + 1}, step {run.step}: the state is saved in {run.checkpoint}; "
                  "run the same cell again to resume.")
        raise
    bar.close()
    model.eval()
    return run.history
