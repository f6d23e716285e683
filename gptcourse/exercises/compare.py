"""Compare a learner's value with the expected one and describe the first difference.

`difference(expected, got)` returns None when the two agree, else one sentence in the
learner's terms: where (`[2]`, `['merges'][0]`), what differs (type, shape, dtype, length,
keys, the first mismatching entry) and by how much. Arrays may be numpy arrays or torch
tensors; torch is never imported here, so checks of numpy-only lessons stay light.
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
               ordered: bool = False, path: str = "") -> str | None:
    """None when `got` matches `expected`, else a description of the first difference.

    ordered: dicts must also list their keys in the same order (for example merges, which
    are applied in the order learned).
    """
    where = _where(path)
    if isinstance(expected, np.ndarray) or is_tensor(expected):
        return _array_difference(expected, got, tolerance, where)
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
        return _sequence_difference(expected, got, tolerance, ordered, path)
    if isinstance(expected, dict):
        return _dict_difference(expected, got, tolerance, ordered, path)
    try:
        same = bool(expected == got)
    except Exception:
        same = False
    return None if same else f"{where}expected {short_repr(expected)}, got {short_repr(got)}"


def _float_difference(expected: float, got: Any, tolerance: Tolerance, where: str) -> str | None:
    if isinstance(got, bool) or not isinstance(got, (int, float, np.integer, np.floating)):
        if (isinstance(got, np.ndarray) or is_tensor(got)) and getattr(got, "ndim", 1) == 0:
            got = float(got)
        else:
            return f"{where}expected the number {expected:.6g}, got {kind(got)}: {short_repr(got)}"
    got = float(got)
    if math.isnan(expected) and math.isnan(got):
        return None
    rtol, atol = tolerance.for_dtype("float64")
    if math.isclose(expected, got, rel_tol=rtol, abs_tol=atol * max(1.0, abs(expected))):
        return None
    return f"{where}expected {expected:.6g}, got {got:.6g}"


def _text_difference(expected: str | bytes, got: Any, where: str) -> str | None:
    if type(got) is not type(expected):
        return f"{where}expected {kind(expected)}, got {kind(got)}: {short_repr(got)}"
    if got == expected:
        return None
    i = next((i for i, (a, b) in enumerate(zip(expected, got)) if a != b),
             min(len(expected), len(got)))
    return (f"{where}expected {short_repr(expected)}, got {short_repr(got)} "
            f"(first difference at position {i}; lengths {len(expected)} and {len(got)})")


def _sequence_difference(expected, got, tolerance, ordered, path) -> str | None:
    where = _where(path)
    if not isinstance(got, (list, tuple)):
        return f"{where}expected a {type(expected).__name__}, got {kind(got)}: {short_repr(got)}"
    if len(got) != len(expected):
        return (f"{where}expected {len(expected)} items, got {len(got)}: "
                f"expected {short_repr(expected)}, got {short_repr(got)}")
    for i, (e, g) in enumerate(zip(expected, got)):
        found = difference(e, g, tolerance, ordered=ordered, path=f"{path}[{i}]")
        if found:
            return found
    return None


def _dict_difference(expected, got, tolerance, ordered, path) -> str | None:
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
                           path=f"{path}[{key!r}]")
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


def _array_difference(expected, got, tolerance: Tolerance, where: str) -> str | None:
    if is_tensor(expected) != is_tensor(got) or not (isinstance(got, np.ndarray) or is_tensor(got)):
        return f"{where}expected {kind(expected)}, got {kind(got)}: {short_repr(got)}"
    if tuple(got.shape) != tuple(expected.shape):
        return (f"{where}expected shape {tuple(expected.shape)}, got shape {tuple(got.shape)}")
    if _dtype_name(got) != _dtype_name(expected):
        return f"{where}expected dtype {_dtype_name(expected)}, got dtype {_dtype_name(got)}"
    e, g = _as_numpy(expected), _as_numpy(got)
    if e.dtype.kind not in "fc":
        bad = e != g
    else:
        rtol, atol = tolerance.for_dtype(_dtype_name(expected))
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
