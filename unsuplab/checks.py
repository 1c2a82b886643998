"""Self-checks for the exercises: compare a student's function with the reference and say, in
words, what is wrong.

A lab's self-check cell looks like::

    from unsuplab.checks import check_function
    check_function(pca_fit, reference.pca_fit, [(torch.randn(20, 5), 2), (torch.randn(8, 3), 3)])

and prints ``✓ pca_fit matches the reference on 2 test cases.`` or stops with a
:class:`CheckFailed` whose message names the problem: a missing ``return``, a transposed result,
a wrong dimension, NaN values, an input changed in place, or the largest difference and where.

:func:`check_unit_interval` is the one check of a model's *input* that the models share: where a loss
reads pixels as probabilities (a binary cross-entropy, a Bernoulli likelihood, an RBM's binary
units), images in [0, 255] or of dtype uint8 are refused with what to do, instead of training on
garbage.
"""

from __future__ import annotations

import copy
import inspect
import math
from typing import Any, Callable, Sequence

import numpy as np
import torch

__all__ = ["CheckFailed", "check_function", "check_close", "check_true", "check_unit_interval", "finite_floats"]


class CheckFailed(AssertionError):
    """An exercise's answer does not match the reference; the message says how."""


# --------------------------------------------------------------------------- describing values

def _type_name(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return "torch.Tensor"
    kind = type(value)
    module = kind.__module__
    return kind.__qualname__ if module == "builtins" else f"{module.split('.')[0]}.{kind.__qualname__}"


def _describe(value: Any) -> str:
    """A short description of an input for error messages: a shape for arrays, the value otherwise."""
    if isinstance(value, torch.Tensor):
        return f"tensor of shape {tuple(value.shape)}"
    if isinstance(value, np.ndarray):
        return f"array of shape {value.shape}"
    if isinstance(value, (list, tuple)) and len(value) > 4:
        return f"{type(value).__name__} of length {len(value)}"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _shape(shape: Sequence[int]) -> str:
    return str(tuple(int(n) for n in shape))


def _numpy(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        if value.is_floating_point() and value.dtype not in (torch.float32, torch.float64):
            value = value.double()  # bfloat16 and float16 have no exact numpy twin everywhere
        return value.numpy()
    return np.asarray(value)


def _kind(dtype: np.dtype) -> str:
    if dtype == np.bool_:
        return "bool"
    if np.issubdtype(dtype, np.integer):
        return "integer"
    if np.issubdtype(dtype, np.floating) or np.issubdtype(dtype, np.complexfloating):
        return "float"
    return "other"


# --------------------------------------------------------------------------- comparing values

def _compare_arrays(expected: np.ndarray, got: np.ndarray, what: str, atol: float, rtol: float,
                    dtype_text: str) -> str | None:
    """Why ``got`` does not match ``expected`` (same container type already), or ``None``."""
    if _kind(expected.dtype) != _kind(got.dtype):
        hints = {"integer": " — integer division (//) or .long()/.int() somewhere?",
                 "bool": " — a comparison where a number was meant?",
                 "float": ""}
        return (f"{what}: expected {_kind(expected.dtype)} values, got {_kind(got.dtype)} "
                f"({dtype_text}){hints.get(_kind(got.dtype), '')}")
    if expected.shape != got.shape:
        message = f"{what}: expected shape {_shape(expected.shape)}, got {_shape(got.shape)}"
        if expected.ndim >= 2 and got.shape == expected.shape[::-1]:
            return message + " — did you transpose?"
        if [n for n in expected.shape if n != 1] == [n for n in got.shape if n != 1]:
            return message + " — check which dimension you sum/average over (and keepdim)"
        return message + " — check which dimension you sum/average over"
    if _kind(expected.dtype) == "other":
        if not np.array_equal(expected, got):
            return f"{what}: expected {expected!r}, got {got!r}"
        return None
    if _kind(expected.dtype) in ("bool", "integer"):
        wrong = expected != got
        if wrong.any():
            index = tuple(int(i) for i in np.argwhere(wrong)[0])
            at = f" at index {index}" if index else ""
            return (f"{what}: {int(wrong.sum())} of {expected.size} values differ; the first{at}: "
                    f"expected {expected[index]!r}, got {got[index]!r}")
        return None

    expected = expected.astype(np.complex128 if np.iscomplexobj(expected) else np.float64)
    got = got.astype(np.complex128 if np.iscomplexobj(got) else np.float64)
    bad_got = ~np.isfinite(got) & np.isfinite(expected)
    if bad_got.any():
        nans = int((np.isnan(got) & np.isfinite(expected)).sum())
        infs = int(bad_got.sum()) - nans
        found = " and ".join(t for t in (f"{nans} NaN" if nans else "", f"{infs} infinite" if infs else "") if t)
        return (f"{what}: contains {found} value(s) out of {got.size} — a log of 0, a division by zero "
                "or the square root of a negative number?")
    with np.errstate(invalid="ignore"):  # inf - inf where both are infinite: handled by `same`
        same = (got == expected) | (np.isnan(expected) & np.isnan(got))
        diff = np.where(np.isfinite(expected), np.abs(got - expected), np.where(same, 0.0, np.inf))
    wrong = diff > atol + rtol * np.abs(np.where(np.isfinite(expected), expected, 0.0))
    if not wrong.any():
        return None
    flat = int(np.argmax(np.where(wrong, diff, -1.0)))
    index = tuple(int(i) for i in np.unravel_index(flat, expected.shape)) if expected.ndim else ()
    e, g = expected[index], got[index]
    at = f" at index {index}" if index else ""
    message = f"{what}: values differ: largest difference {diff[index]:.3g}{at}: expected {e:.4f}, got {g:.4f}"
    others = expected.size - 1
    if others:
        n_wrong = int(wrong.sum()) - 1
        message += (f"; the other {others} values match" if n_wrong == 0 else
                    f"; the other {others} values differ too" if n_wrong == others else
                    f"; of the other {others} values, {n_wrong} {'differs' if n_wrong == 1 else 'differ'} too "
                    f"and {others - n_wrong} match")
        scale = _constant_factor(expected, got)
        if scale is not None:
            message += (" — every value has the wrong sign" if np.isclose(scale, -1.0) else
                        f" — every value is off by the same factor {scale:.4g} (mean instead of sum? "
                        "a missing constant?)")
    return message + f" (tolerance: atol={atol:g}, rtol={rtol:g})"


def _constant_factor(expected: np.ndarray, got: np.ndarray) -> float | None:
    """``c`` when ``got`` is ``c * expected`` for one constant ``c`` (not 1), else ``None``."""
    if np.iscomplexobj(expected) or np.iscomplexobj(got):
        return None
    mask = np.isfinite(expected) & (np.abs(expected) > 1e-12)
    if mask.sum() < 2:
        return None
    ratios = got[mask] / expected[mask]
    scale = float(np.median(ratios))
    if np.isclose(scale, 1.0) or not np.allclose(got, scale * expected, rtol=1e-4, atol=1e-8):
        return None
    return scale


def _compare(expected: Any, got: Any, what: str, atol: float, rtol: float) -> str | None:
    """Why ``got`` does not match ``expected``, in words, or ``None`` when it does."""
    if got is None and expected is not None:
        return f"{what} is None — did you forget `return`?"
    if isinstance(expected, (tuple, list)):
        if not isinstance(got, (tuple, list)):
            return (f"{what}: expected a {type(expected).__name__} of {len(expected)} values, "
                    f"got {_type_name(got)}")
        if len(got) != len(expected):
            return f"{what}: expected {len(expected)} values, got {len(got)}"
        for i, (e, g) in enumerate(zip(expected, got)):
            problem = _compare(e, g, f"element {i} of {what}", atol, rtol)
            if problem:
                return problem
        return None
    if isinstance(expected, torch.Tensor):
        if not isinstance(got, torch.Tensor):
            hint = (" — keep the computation in torch (torch.as_tensor converts an array)"
                    if isinstance(got, np.ndarray) else
                    " — return the tensor itself, not .item() or a list" if isinstance(got, (float, int, list)) else "")
            return f"{what}: expected a torch.Tensor, got {_type_name(got)}{hint}"
        return _compare_arrays(_numpy(expected), _numpy(got), what, atol, rtol, f"dtype {got.dtype}")
    if isinstance(expected, np.ndarray):
        if not isinstance(got, np.ndarray):
            hint = " — convert with .detach().cpu().numpy()" if isinstance(got, torch.Tensor) else ""
            return f"{what}: expected a numpy.ndarray, got {_type_name(got)}{hint}"
        return _compare_arrays(expected, got, what, atol, rtol, f"dtype {got.dtype}")
    if isinstance(expected, (bool, np.bool_, int, float, np.integer, np.floating)):
        if isinstance(got, (torch.Tensor, np.ndarray)):
            return (f"{what}: expected a Python number, got {_type_name(got)} of shape "
                    f"{_shape(got.shape)} — use .item() to get the number")
        if not isinstance(got, (bool, np.bool_, int, float, np.integer, np.floating)):
            return f"{what}: expected a number, got {_type_name(got)}"
        e, g = np.asarray(expected), np.asarray(got)
        if _kind(e.dtype) == "float" and _kind(g.dtype) == "integer":
            g = g.astype(np.float64)  # 3 for 3.0 is fine for a plain number
        return _compare_arrays(e, g, what, atol, rtol, _type_name(got))
    if got != expected:
        return f"{what}: expected {_describe(expected)}, got {_describe(got)}"
    return None


# --------------------------------------------------------------------------- running the cases

def _copy(value: Any) -> Any:
    """An independent copy of an input, so that changes made in place can be seen."""
    if isinstance(value, torch.Tensor):
        copied = value.detach().clone()
        return copied.requires_grad_(value.requires_grad) if value.is_leaf else copied
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, tuple):
        return tuple(_copy(v) for v in value)
    if isinstance(value, list):
        return [_copy(v) for v in value]
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    try:
        return copy.deepcopy(value)
    except Exception:  # noqa: BLE001 - an object that cannot be copied is passed as it is
        return value


def _changed(before: Any, after: Any) -> bool:
    """Whether an array input's values changed (NaN equal to NaN)."""
    if isinstance(before, (torch.Tensor, np.ndarray)):
        a, b = _numpy(before), _numpy(after)
        if a.shape != b.shape:
            return True
        return not np.array_equal(a, b, equal_nan=a.dtype.kind in "fc")
    if isinstance(before, (tuple, list)) and isinstance(after, (tuple, list)) and len(before) == len(after):
        return any(_changed(x, y) for x, y in zip(before, after))
    return False


def _split(case: Any) -> tuple[tuple, dict]:
    if isinstance(case, dict):
        return (), dict(case)
    if isinstance(case, (tuple, list)):
        return tuple(case), {}
    return (case,), {}  # a single argument given on its own


def _named(reference: Callable, args: tuple, kwargs: dict) -> dict[str, Any]:
    """The case's arguments by parameter name (``argument 1`` ... when the signature is unknown)."""
    try:
        return dict(inspect.signature(reference).bind_partial(*args, **kwargs).arguments)
    except (TypeError, ValueError):
        named = {f"argument {i + 1}": a for i, a in enumerate(args)}
        named.update(kwargs)
        return named


def _not_written(name: str, student: Callable, err: NotImplementedError) -> str:
    """The explanation for a stub: names the function whose ``raise NotImplementedError`` was hit."""
    tb = err.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    raiser = tb.tb_frame.f_code.co_name if tb is not None else name
    is_stub = str(err).startswith("TODO")  # the labs' stubs say "TODO: ..."
    if is_stub and raiser not in (name, getattr(student, "__name__", name)) and not raiser.startswith("<"):
        return (f"✗ {raiser} is not written yet ({name} calls it): replace the `raise NotImplementedError` "
                f"line in its cell with your code, run that cell, then this one.")
    return (f"✗ {name} is not written yet: replace the `raise NotImplementedError` line in its cell "
            f"with your code, run that cell, then this one.")


def _call_seeded(func: Callable, args: tuple, kwargs: dict, seed: int | None) -> Any:
    if seed is None:
        return func(*args, **kwargs)
    np_state = np.random.get_state()
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            np.random.seed(seed)
            return func(*args, **kwargs)
    finally:
        np.random.set_state(np_state)


def check_function(student: Callable, reference: Callable, cases: Sequence[Any], *, name: str | None = None,
                   atol: float = 1e-5, rtol: float = 1e-4, seed: int | None = None) -> None:
    """Call ``student`` and ``reference`` on every case and compare what they return.

    ``cases`` is a list of argument tuples (or dicts of keyword arguments); inputs are copied for
    each call, so a student function that changes its input in place is caught. ``seed`` (optional)
    seeds torch and NumPy before each call, for functions that draw random numbers. Prints
    ``✓ <name> matches the reference on N test cases.`` or raises :class:`CheckFailed` saying what
    differs. A ``NotImplementedError`` (an exercise not written yet) is explained and re-raised.
    """
    name = name or getattr(student, "__name__", "your function")
    cases = list(cases)
    if not cases:
        raise ValueError("check_function needs at least one test case.")
    for number, case in enumerate(cases, start=1):
        args, kwargs = _split(case)
        ref_args, ref_kwargs = _copy(args), _copy(kwargs)
        expected = _call_seeded(reference, ref_args, ref_kwargs, seed)
        stu_args, stu_kwargs = _copy(args), _copy(kwargs)
        inputs = _named(reference, args, kwargs)
        case_text = ", ".join(f"{k}: {_describe(v)}" for k, v in inputs.items())
        try:
            got = _call_seeded(student, stu_args, stu_kwargs, seed)
        except NotImplementedError as err:
            print(_not_written(name, student, err))
            raise
        except Exception as err:
            raise CheckFailed(f"✗ {name}: raised {type(err).__name__}: {err}\n  on test case {number} "
                              f"({case_text}); the traceback above shows the line.") from err
        after = _named(reference, stu_args, stu_kwargs)
        ref_after = _named(reference, ref_args, ref_kwargs)  # a reference that changes inputs excuses it
        for arg, before in inputs.items():
            if _changed(before, after.get(arg)) and not _changed(before, ref_after.get(arg)):
                raise CheckFailed(
                    f"✗ {name}: your function changed its input {arg} in place (test case {number}) — an "
                    f"operation like `{arg} -= ...` or `{arg}.sub_(...)` modifies the caller's data; "
                    f"work on a new tensor instead (`{arg} = {arg} - ...`)."
                )
        problem = _compare(expected, got, "the result", atol, rtol)
        if problem:
            raise CheckFailed(f"✗ {name}: {problem}\n  (test case {number} of {len(cases)}: {case_text})")
    print(f"✓ {name} matches the reference on {len(cases)} test case{'s' if len(cases) != 1 else ''}.")


def check_close(name: str, value: Any, expected: Any, *, atol: float, rtol: float = 0.0, hint: str = "") -> None:
    """Check one number (or array) against an expected value: print a ✓ line or raise :class:`CheckFailed`
    with both numbers and ``hint`` (what to look at when it fails)."""
    v, e = _numpy(value).astype(np.float64), _numpy(expected).astype(np.float64)
    if v.shape != e.shape and v.size == e.size == 1:
        v, e = v.reshape(()), e.reshape(())
    suffix = f" {hint}" if hint else ""
    if v.shape != e.shape:
        raise CheckFailed(f"✗ {name}: expected shape {_shape(e.shape)}, got {_shape(v.shape)}.{suffix}")
    if not np.isfinite(v).all():
        raise CheckFailed(f"✗ {name}: got a NaN or infinite value ({v if v.ndim == 0 else 'in the array'}).{suffix}")
    diff = np.abs(v - e)
    tolerance = atol + rtol * np.abs(e)
    if v.ndim == 0:
        if diff > tolerance:
            raise CheckFailed(f"✗ {name} = {float(v):.4g}, expected {float(e):.4g} (± {float(tolerance):.2g}).{suffix}")
        shown = _below_tolerance(float(v), float(tolerance))
        print(f"✓ {name} = {shown:.4g} (expected {float(e):.4g} ± {float(tolerance):.2g})")
        return
    if (diff > tolerance).any():
        index = tuple(int(i) for i in np.unravel_index(int(np.argmax(diff - tolerance)), v.shape))
        raise CheckFailed(f"✗ {name}: {int((diff > tolerance).sum())} of {v.size} values are off; the worst at "
                          f"index {index}: expected {e[index]:.4g}, got {v[index]:.4g} (± {tolerance[index]:.2g}).{suffix}")
    shown = _below_tolerance(float(diff.max()), float(tolerance.min()))
    print(f"✓ {name} matches the expected values (largest difference {shown:.2g})")


def _below_tolerance(x: float, tolerance: float) -> float:
    """``x`` rounded to the decade a tenth of ``tolerance``: a passing check prints no digits the check ignores,
    so rounding noise that differs between CPUs (1.8e-07 here, 2.4e-07 there) cannot change a stored output."""
    if tolerance <= 0:
        return x
    quantum = 10.0 ** math.floor(math.log10(tolerance / 10))
    return round(x / quantum) * quantum + 0.0  # + 0.0 turns -0.0 into 0


def check_true(name: str, condition: Any, message: str) -> None:
    """Print ``✓ <name>`` when ``condition`` holds, else raise :class:`CheckFailed` with ``message``."""
    if isinstance(condition, (torch.Tensor, np.ndarray)):
        condition = bool(condition.all())
    if not condition:
        raise CheckFailed(f"✗ {name}: {message}")
    print(f"✓ {name}")


# --------------------------------------------------------------------------- a model's inputs

def check_unit_interval(x: torch.Tensor, what: str = "x", *, why: str = "", tolerance: float = 1e-3) -> None:
    """Raise a ValueError that says what to do unless ``x`` holds floats in [0, 1] (up to ``tolerance``).

    For the models whose loss reads pixels as probabilities: ``what`` names the input in the message,
    ``why`` (optional) says which loss needs the range. The message guesses the usual cause from what
    arrived: uint8 pixels or values up to 255 (a forgotten ``/ 255``), values in [-1, 1] (a tanh
    output, ``Normalize(0.5, 0.5)``), or standardised images.
    """
    because = f" ({why})" if why else ""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"expected {what} as a torch.Tensor of floats in [0, 1]{because}, got {_type_name(x)}: "
                        "use torch.as_tensor(x) first.")
    if not x.is_floating_point():
        hint = ("divide uint8 images by 255 first: x.float() / 255 (torchvision's ToTensor() does it)."
                if x.dtype == torch.uint8 else "convert them with x.float(), scaled to [0, 1].")
        raise ValueError(f"expected {what} as floats in [0, 1]{because}, got dtype {x.dtype}: {hint}")
    if x.numel() == 0:
        return
    low, high = (float(v) for v in torch.stack(torch.aminmax(x.detach().float())).tolist())
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(f"expected {what} in [0, 1]{because}, but it contains NaN or infinite values.")
    if low >= -tolerance and high <= 1 + tolerance:
        return
    if low >= -tolerance and high <= 255 + tolerance:
        hint = ("did you forget to divide 8-bit images by 255 (x / 255, or torchvision's ToTensor())?")
    elif low >= -1 - tolerance and high <= 1 + tolerance:
        hint = ("values in [-1, 1] come from a tanh output or Normalize(0.5, 0.5): map them to [0, 1] with "
                "(x + 1) / 2 (unsuplab.models.gan.to_unit).")
    else:
        hint = "were the images standardised with a mean and std (transforms.Normalize)? Pass the raw [0, 1] images."
    raise ValueError(f"expected {what} in [0, 1]{because}, got values in [{low:.3g}, {high:.3g}]: {hint}")


def finite_floats(t: torch.Tensor, name: str = "x", *, device=None, advice: str = "clean the data before fitting"
                  ) -> torch.Tensor:
    """``t`` as floating point on ``device`` (if given); a ValueError naming ``name`` and giving ``advice``
    if it holds NaN or infinite values. The last step of every estimator's input check."""
    if not t.is_floating_point():
        t = t.float()
    if device is not None:
        t = t.to(device)
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} contains NaN or inf values: {advice}.")
    return t
