"""Compare a learner's value with the expected one and describe the first difference.

`difference(expected, got)` returns None when the two agree, else one sentence in the
learner's terms: where (`[2]`, `['merges'][0]`), what differs (type, shape, dtype, length,
keys, the first mismatching entry) and by how much. Arrays may be numpy arrays or torch
tensors; torch is never imported here, so checks of numpy-only lessons stay light.

Given the floating dtypes of the inputs (`input_dtypes`), a result in another floating dtype
than the expected one is not a difference when it keeps the inputs' precision: float64 where
float32 was expected, or float32 where the inputs were integers. Such a result is compared at
the coarser dtype's tolerance and earns a note instead; float16 and bfloat16 still differ.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

# (rtol, atol) by floating dtype; atol is scaled by the size of the expected values.
TOLERANCES: dict[str, tuple[float, float]] = {
    "float16": (1e-3, 1e-3),
    "bfloat16": (1e-2, 1e-2),
    "float32": (1e-5, 1e-6),
    "float64": (1e-7, 1e-10),
}


@dataclass(frozen=True)
class Tolerance:
    """Overrides the per-dtype defaults in TOLERANCES; None keeps the default."""

    rtol: float | None = None
    atol: float | None = None

    def for_dtype(self, dtype_name: str) -> tuple[float, float]:
        rtol, atol = TOLERANCES.get(dtype_name, (0.0, 0.0))
        return (rtol if self.rtol is None else self.rtol, atol if self.atol is None else self.atol)


# How much precision a floating dtype keeps, to tell a harmless dtype from one that loses some.
PRECISION = {"float16": 1, "bfloat16": 1, "float32": 2, "float64": 3}


def array_dtypes(values: Any) -> tuple[str, ...]:
    """The dtypes of the arrays and tensors in `values` (nested in tuples, lists and dicts),
    without repeats: the dtypes a check chose for a call's inputs."""
    found: dict[str, None] = {}

    def visit(x: Any, depth: int) -> None:
        if isinstance(x, np.ndarray) or is_tensor(x):
            found[_dtype_name(x)] = None
        elif depth < 4 and isinstance(x, (tuple, list)):
            for item in x[:64]:
                visit(item, depth + 1)
        elif depth < 4 and isinstance(x, dict):
            for item in list(x.values())[:64]:
                visit(item, depth + 1)

    visit(values, 0)
    return tuple(found)


def harmless_dtype(expected: str, got: str, input_dtypes: tuple[str, ...]) -> bool:
    """A floating result whose dtype differs from the reference's but keeps all the precision
    the inputs had: float64 for float32 input, float32 or float64 for integer input. Where no
    input is an array (`sinusoidal_positions(T, C)`), the dtype was the learner's to choose, as
    the exercise says, so it must match."""
    if expected not in PRECISION or got not in ("float32", "float64") or not input_dtypes:
        return False
    inputs = max((PRECISION.get(d, 0) for d in input_dtypes), default=0)
    return PRECISION[got] >= min(PRECISION[expected], inputs) if inputs else True


def is_tensor(x: Any) -> bool:
    """True for a torch.Tensor, decided without importing torch."""
    return type(x).__module__.startswith("torch") and hasattr(x, "detach")


def short_repr(x: Any, limit: int = 160) -> str:
    """repr() of learner-made values, never raising and never longer than `limit`."""
    try:
        if isinstance(x, np.ndarray) or is_tensor(x):
            body = np.array2string(_as_numpy(x), precision=4, threshold=12, edgeitems=3,
                                   separator=", ")
            text = f"{'tensor' if is_tensor(x) else 'array'}({body}, dtype={x.dtype})"
        else:
            text = repr(x)
    except Exception as exc:  # a learner's object whose repr itself fails
        text = f"<{type(x).__name__} object (repr failed: {type(exc).__name__})>"
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def kind(x: Any) -> str:
    """A learner-friendly name of x's type."""
    if isinstance(x, np.ndarray):
        return "a numpy array"
    if is_tensor(x):
        return "a torch tensor"
    if x is None:
        return "None"
    return f"a {type(x).__name__}"


def _where(path: str) -> str:
    return f"at {path}: " if path else ""


def difference(expected: Any, got: Any, tolerance: Tolerance = Tolerance(), *,
               ordered: bool = False, path: str = "", input_dtypes: tuple[str, ...] | None = None,
               notes: list[str] | None = None) -> str | None:
    """None when `got` matches `expected`, else a description of the first difference.

    ordered: dicts must also list their keys in the same order (for example merges, which
    are applied in the order learned).
    input_dtypes: the floating dtypes of the call's inputs, when a harmless dtype difference
    (see `harmless_dtype`) should pass; None: every dtype must match. A harmless difference
    adds one sentence to `notes`.
    """
    where = _where(path)
    if isinstance(expected, np.ndarray) or is_tensor(expected):
        return _array_difference(expected, got, tolerance, where, input_dtypes, notes)
    if isinstance(expected, bool) or expected is None:
        if got is expected or (isinstance(got, np.bool_) and expected is not None
                               and bool(got) == expected):
            return None
        return f"{where}expected {expected!r}, got {short_repr(got)}"
    if isinstance(expected, (int, np.integer)):
        if isinstance(got, (int, np.integer)) and not isinstance(got, bool):
            return None if int(got) == int(expected) else \
                f"{where}expected {int(expected)}, got {int(got)}"
        return f"{where}expected the integer {int(expected)}, got {kind(got)}: {short_repr(got)}"
    if isinstance(expected, (float, np.floating)):
        return _float_difference(float(expected), got, tolerance, where)
    if isinstance(expected, (str, bytes)):
        return _text_difference(expected, got, where)
    if isinstance(expected, (list, tuple)):
        return _sequence_difference(expected, got, tolerance, ordered, path, input_dtypes, notes)
    if isinstance(expected, dict):
        return _dict_difference(expected, got, tolerance, ordered, path, input_dtypes, notes)
    try:
        same = bool(expected == got)
    except Exception:
        same = False
    return None if same else f"{where}expected {short_repr(expected)}, got {short_repr(got)}"


def _float_difference(expected: float, got: Any, tolerance: Tolerance, where: str) -> str | None:
    if is_tensor(got):  # it prints like a number, but arithmetic with it makes tensors
        return (f"{where}expected a plain number (a Python float) such as {expected:.6g}, got "
                f"{kind(got)}: {short_repr(got)} (`.item()` turns a one-number tensor into a "
                f"Python float)")
    if isinstance(got, bool) or not isinstance(got, (int, float, np.integer, np.floating)):
        if isinstance(got, np.ndarray) and got.ndim == 0:
            got = float(got)
        else:
            return f"{where}expected the number {expected:.6g}, got {kind(got)}: {short_repr(got)}"
    got = float(got)
    if math.isnan(expected) and math.isnan(got):
        return None
    rtol, atol = tolerance.for_dtype("float64")
    if math.isclose(expected, got, rel_tol=rtol, abs_tol=atol * max(1.0, abs(expected))):
        return None
    shown = [f"{expected:.6g}", f"{got:.6g}"]
    if shown[0] == shown[1]:  # they differ beyond 6 digits: show all of them
        shown = [repr(expected), repr(got)]
    return f"{where}expected {shown[0]}, got {shown[1]}"


def _text_difference(expected: str | bytes, got: Any, where: str) -> str | None:
    if type(got) is not type(expected):
        return f"{where}expected {kind(expected)}, got {kind(got)}: {short_repr(got)}"
    if got == expected:
        return None
    i = next((i for i, (a, b) in enumerate(zip(expected, got)) if a != b),
             min(len(expected), len(got)))
    return (f"{where}expected {short_repr(expected)}, got {short_repr(got)} "
            f"(first difference at position {i}; lengths {len(expected)} and {len(got)})")


def _sequence_difference(expected, got, tolerance, ordered, path, input_dtypes,
                         notes) -> str | None:
    where = _where(path)
    if not isinstance(got, (list, tuple)):
        return f"{where}expected a {type(expected).__name__}, got {kind(got)}: {short_repr(got)}"
    if len(got) != len(expected):
        return (f"{where}expected {len(expected)} items, got {len(got)}: "
                f"expected {short_repr(expected)}, got {short_repr(got)}")
    for i, (e, g) in enumerate(zip(expected, got)):
        found = difference(e, g, tolerance, ordered=ordered, path=f"{path}[{i}]",
                           input_dtypes=input_dtypes, notes=notes)
        if found:
            return found
    return None


def _dict_difference(expected, got, tolerance, ordered, path, input_dtypes, notes) -> str | None:
    where = _where(path)
    if not isinstance(got, dict):
        return f"{where}expected a dict, got {kind(got)}: {short_repr(got)}"
    missing = [k for k in expected if k not in got]
    extra = [k for k in got if k not in expected]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing key{'s' * (len(missing) > 1)} {short_repr(missing[:5])}")
        if extra:
            parts.append(f"unexpected key{'s' * (len(extra) > 1)} {short_repr(extra[:5])}")
        return (f"{where}{' and '.join(parts)} "
                f"(expected {len(expected)} entries, got {len(got)})")
    for key in expected:
        found = difference(expected[key], got[key], tolerance, ordered=ordered,
                           path=f"{path}[{key!r}]", input_dtypes=input_dtypes, notes=notes)
        if found:
            return found
    if ordered and list(expected) != list(got):
        i = next(i for i, (a, b) in enumerate(zip(expected, got)) if a != b)
        return (f"{where}the right entries, in a different order: entry {i} should be "
                f"{short_repr(list(expected)[i])}, got {short_repr(list(got)[i])}")
    return None


def _as_numpy(x: Any) -> np.ndarray:
    if is_tensor(x):
        x = x.detach().cpu()
        if str(x.dtype) == "torch.bfloat16":
            x = x.float()
        return x.numpy()
    return x


def _dtype_name(x: Any) -> str:
    return str(x.dtype).replace("torch.", "")


def _entry(value: np.generic) -> str:
    value = value.item()
    return f"{value:.6g}" if isinstance(value, float) else repr(value)


def _array_difference(expected, got, tolerance: Tolerance, where: str,
                      input_dtypes: tuple[str, ...] | None = None,
                      notes: list[str] | None = None) -> str | None:
    if is_tensor(expected) != is_tensor(got) or not (isinstance(got, np.ndarray) or is_tensor(got)):
        return f"{where}expected {kind(expected)}, got {kind(got)}: {short_repr(got)}"
    if tuple(got.shape) != tuple(expected.shape):
        return (f"{where}expected shape {tuple(expected.shape)}, got shape {tuple(got.shape)}")
    dtype = _dtype_name(expected)
    if _dtype_name(got) != dtype:
        if input_dtypes is None or not harmless_dtype(dtype, _dtype_name(got), input_dtypes):
            return f"{where}expected dtype {dtype}, got dtype {_dtype_name(got)}"
        # compared at the coarser of the two dtypes' tolerances
        dtype = min(dtype, _dtype_name(got), key=PRECISION.__getitem__)
        if notes is not None:
            notes.append(f"{where}your result is {_dtype_name(got)} where the reference's is "
                         f"{_dtype_name(expected)}. That is accepted, but it is better to keep "
                         f"the input's dtype ({_dtype_name(expected)} here): a different one "
                         f"costs memory or meets a dtype error in the code that uses it.")
    e, g = _as_numpy(expected), _as_numpy(got)
    if e.dtype.kind not in "fc":
        bad = e != g
    else:
        rtol, atol = tolerance.for_dtype(dtype)
        finite = np.isfinite(e)
        scale = float(np.abs(e[finite]).max()) if finite.any() else 1.0
        close = np.isclose(g, e, rtol=rtol, atol=atol * max(1.0, scale), equal_nan=True)
        bad = ~close
    if not bad.any():
        return None
    first = tuple(int(i) for i in np.argwhere(bad)[0])
    index = first if len(first) != 1 else f"[{first[0]}]"
    index = "" if not first else f" at index {index}"
    count = int(bad.sum())
    text = (f"{where}{count} of {bad.size} entries differ; first{index}: "
            f"expected {_entry(e[first])}, got {_entry(g[first])}")
    if e.dtype.kind in "fc" and np.isnan(g).any() and not np.isnan(e).any():
        text += f" ({int(np.isnan(g).sum())} NaN in your result)"
    return text
