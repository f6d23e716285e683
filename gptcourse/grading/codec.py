"""Values across the trust boundary: an explicit JSON encoding, never pickle.

The grader sends cases to the learner's process and gets outcomes back. Unpickling what an
untrusted process sends is running its code, so both directions use this encoding instead:
None, bools, ints, floats (NaN and ±inf too), strings, bytes, lists, tuples, dicts (any keys
this encoding allows), sets, numpy arrays and scalars of plain numeric dtypes, torch tensors,
and the course's `GPTConfig` (rebuilt from its whole-number and yes/no fields).
Everything else the learner returns arrives as an `Unreceivable` stand-in, which no check
accepts, so such a case fails with a message naming the type.

Decoding never builds anything but these types, rejects object and structured dtypes, and is
bounded in depth and in size (see `MAX_BYTES`).
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import numpy as np

from gptcourse.exercises.compare import is_tensor
from gptcourse.exercises.contract import Case, LearnerError, Outcome

# numpy dtypes that can cross: plain numbers and bools, no objects, no structures.
_DTYPES = {"bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
           "float16", "float32", "float64", "complex64", "complex128"}
# torch dtypes; bfloat16 travels as its raw 16 bits since numpy has no such dtype.
_TORCH_DTYPES = _DTYPES | {"bfloat16"}
MAX_DEPTH = 64
MAX_BYTES = 64 << 20  # a reply larger than this is refused unread


class CodecError(ValueError):
    """Data that this encoding does not allow; the case it belongs to fails."""


class Unreceivable:
    """What a learner's value of a type that cannot cross becomes in the grader: its type
    name and a short repr made in the learner's process, nothing else."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text

    def __eq__(self, other: object) -> bool:  # equal to nothing, itself included
        return False

    __hash__ = object.__hash__


_SAFE_NAME = re.compile(r"[^A-Za-z0-9_]")


def unreceivable(type_name: str, text: str) -> Unreceivable:
    """An Unreceivable whose class carries the learner's type name, so that messages read
    "got a Generator: ..." rather than naming our stand-in class."""
    name = _SAFE_NAME.sub("_", str(type_name))[:40] or "Unknown"
    if name[0].isdigit():
        name = "_" + name
    cls = type(name, (Unreceivable,), {"__module__": "learner"})
    return cls(str(text)[:200])


# --- encoding (runs in both processes) ------------------------------------------------------

def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _encode(x: Any, depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise CodecError("nested too deeply")
    if x is None or isinstance(x, (bool, str)) or type(x) is int:
        return x
    if type(x) is float:
        return {"$float": repr(x)} if x != x or x in (float("inf"), float("-inf")) else x
    if isinstance(x, bytes):
        return {"$bytes": _b64(bytes(x))}
    if isinstance(x, np.ndarray):
        dtype = x.dtype.name
        if dtype not in _DTYPES:
            raise CodecError(f"numpy arrays of dtype {x.dtype} cannot be sent")
        return {"$ndarray": dtype, "shape": list(x.shape),
                "data": _b64(np.ascontiguousarray(x).tobytes())}
    if isinstance(x, np.generic):
        dtype = x.dtype.name
        if dtype not in _DTYPES:
            raise CodecError(f"numpy scalars of dtype {x.dtype} cannot be sent")
        return {"$npscalar": dtype, "data": _b64(np.asarray(x).tobytes())}
    if is_tensor(x):
        return _encode_tensor(x)
    if type(x) is list:
        return [_encode(v, depth + 1) for v in x]
    if type(x) is tuple:
        return {"$tuple": [_encode(v, depth + 1) for v in x]}
    if type(x) is dict:
        return {"$dict": [[_encode(k, depth + 1), _encode(v, depth + 1)] for k, v in x.items()]}
    if type(x) in (set, frozenset):
        return {"$set" if type(x) is set else "$frozenset": [_encode(v, depth + 1) for v in x]}
    if _is_gpt_config(x):
        return {"$gptconfig": {name: getattr(x, name) for name in x.__dataclass_fields__}}
    raise CodecError(f"values of type {type(x).__name__} cannot be sent")


def _is_gpt_config(x: Any) -> bool:
    # by name, so that encoding a case never imports torch for a lesson that has none
    return type(x).__name__ == "GPTConfig" and type(x).__module__ == "gptcourse.config"


def _encode_tensor(x: Any) -> dict:
    import torch

    if type(x) is not torch.Tensor and not isinstance(x, torch.nn.Parameter):
        raise CodecError(f"values of type {type(x).__name__} cannot be sent")
    dtype = str(x.dtype).replace("torch.", "")
    if dtype not in _TORCH_DTYPES:
        raise CodecError(f"tensors of dtype {x.dtype} cannot be sent")
    t = x.detach().cpu().contiguous()
    if x.layout != torch.strided:
        raise CodecError("only dense tensors can be sent")
    raw = t.view(torch.int16) if dtype == "bfloat16" else t
    return {"$tensor": dtype, "shape": list(t.shape), "data": _b64(raw.numpy().tobytes()),
            "requires_grad": bool(x.requires_grad)}


def encode_value(x: Any) -> Any:
    """The JSON-ready form of x, or of an Unreceivable stand-in for values that cannot cross."""
    try:
        return _encode(x, 0)
    except CodecError:
        from gptcourse.exercises.compare import short_repr

        return {"$unreceivable": type(x).__name__, "repr": short_repr(x, 120)}


# --- decoding (the grader's side: input is untrusted) ---------------------------------------

def _bytes(text: Any) -> bytes:
    if not isinstance(text, str):
        raise CodecError("expected base64 text")
    return base64.b64decode(text.encode("ascii"), validate=True)


def _shape(shape: Any) -> tuple[int, ...]:
    if not isinstance(shape, list) or len(shape) > 32 or \
            not all(type(n) is int and 0 <= n for n in shape):
        raise CodecError("bad shape")
    return tuple(shape)


def _array(dtype: Any, shape: Any, data: Any) -> np.ndarray:
    if dtype not in _DTYPES:
        raise CodecError(f"dtype {dtype!r} is not allowed")
    shape, raw = _shape(shape), _bytes(data)
    a = np.frombuffer(raw, dtype=np.dtype(dtype))
    if a.size != int(np.prod(shape, dtype=np.int64)):
        raise CodecError("data does not fill the shape")
    return a.reshape(shape).copy()


def _decode(x: Any, depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise CodecError("nested too deeply")
    if x is None or isinstance(x, (bool, str, int, float)):
        return x
    if isinstance(x, list):
        return [_decode(v, depth + 1) for v in x]
    if not isinstance(x, dict) or len(x) == 0:
        raise CodecError("unexpected value")
    tag = next(iter(x))
    if tag == "$float" and isinstance(x[tag], str) and x[tag] in ("nan", "inf", "-inf"):
        return float(x[tag])
    if tag == "$bytes":
        return _bytes(x[tag])
    if tag == "$tuple" and isinstance(x[tag], list):
        return tuple(_decode(v, depth + 1) for v in x[tag])
    if tag in ("$set", "$frozenset") and isinstance(x[tag], list):
        items = [_decode(v, depth + 1) for v in x[tag]]
        try:
            return set(items) if tag == "$set" else frozenset(items)
        except TypeError:
            raise CodecError("unhashable set items") from None
    if tag == "$dict" and isinstance(x[tag], list):
        out = {}
        for pair in x[tag]:
            if not isinstance(pair, list) or len(pair) != 2:
                raise CodecError("bad dict entry")
            key = _decode(pair[0], depth + 1)
            try:
                out[key] = _decode(pair[1], depth + 1)
            except TypeError:
                raise CodecError("unhashable dict key") from None
        return out
    if tag == "$ndarray":
        return _array(x[tag], x.get("shape"), x.get("data"))
    if tag == "$npscalar":
        return _array(x[tag], [], x.get("data"))[()]
    if tag == "$tensor":
        return _decode_tensor(x)
    if tag == "$unreceivable":
        return unreceivable(x[tag], x.get("repr", ""))
    if tag == "$gptconfig":
        return _decode_gpt_config(x[tag])
    raise CodecError(f"unknown tag {str(tag)[:40]!r}")


def _decode_tensor(x: dict) -> Any:
    import torch

    dtype = x["$tensor"]
    if dtype not in _TORCH_DTYPES:
        raise CodecError(f"tensor dtype {dtype!r} is not allowed")
    if dtype == "bfloat16":
        bits = torch.from_numpy(_array("int16", x.get("shape"), x.get("data")))
        t = bits.view(torch.bfloat16)
    else:
        t = torch.from_numpy(_array(dtype, x.get("shape"), x.get("data")))
    if x.get("requires_grad") is True and t.is_floating_point():
        t.requires_grad_(True)
    return t


def _decode_gpt_config(fields: Any) -> Any:
    from gptcourse.config import GPTConfig

    if not isinstance(fields, dict) or set(fields) != set(GPTConfig.__dataclass_fields__) or \
            not all(type(v) in (int, bool) for v in fields.values()):
        raise CodecError("bad GPTConfig")
    return GPTConfig(**fields)  # validates its own values


def decode_value(x: Any) -> Any:
    """The value `x` (parsed JSON) stands for; CodecError for anything this encoding does not
    allow, whatever part of the input is wrong."""
    try:
        return _decode(x, 0)
    except CodecError:
        raise
    except (ValueError, TypeError, KeyError, RecursionError, OverflowError) as exc:
        raise CodecError(f"malformed data ({type(exc).__name__})") from None


# --- cases out, outcomes back ---------------------------------------------------------------

def dumps_cases(cases: list[Case]) -> str:
    return json.dumps([{"label": c.label, "args": _encode(c.args, 0),
                        "kwargs": _encode(c.kwargs, 0), "probe": c.probe} for c in cases])


def loads_cases(text: str) -> list[Case]:
    """Used in the learner's process on what the grader sent."""
    return [Case(d["label"], decode_value(d["args"]), decode_value(d["kwargs"]), d["probe"])
            for d in json.loads(text)]


def dumps_outcomes(outcomes: list[Outcome]) -> str:
    """Used in the learner's process. A value that cannot cross becomes an Unreceivable."""
    out = []
    for o in outcomes:
        error = None if o.error is None else \
            {"type_name": o.error.type_name, "message": o.error.message, "frames": o.error.frames}
        out.append({"value": encode_value(o.value), "error": error,
                    "args_after": encode_value(o.args_after),
                    "kwargs_after": encode_value(o.kwargs_after),
                    "warnings": [str(w) for w in o.warnings]})
    return json.dumps(out)


def _text(x: Any, limit: int = 4000) -> str:
    if not isinstance(x, str):
        raise CodecError("expected text")
    return x[:limit]


def loads_outcomes(text: str | bytes) -> list[Outcome]:
    """Outcomes from the learner's process. Raises CodecError on anything malformed."""
    if len(text) > MAX_BYTES:
        raise CodecError(f"the reply is larger than {MAX_BYTES >> 20} MB")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise CodecError(f"the reply is not valid JSON ({type(exc).__name__})") from None
    if not isinstance(data, list):
        raise CodecError("the reply is not a list of outcomes")
    outcomes = []
    for d in data:
        if not isinstance(d, dict):
            raise CodecError("an outcome is not a record")
        error = d.get("error")
        if error is not None:
            if not isinstance(error, dict):
                raise CodecError("bad error record")
            error = LearnerError(_text(error.get("type_name"), 100), _text(error.get("message")),
                                 _text(error.get("frames")))
        args_after, kwargs_after = decode_value(d.get("args_after")), \
            decode_value(d.get("kwargs_after"))
        warnings = d.get("warnings", [])
        if not isinstance(warnings, list):
            raise CodecError("bad warnings")
        outcomes.append(Outcome(
            value=decode_value(d.get("value")), error=error,
            args_after=args_after if isinstance(args_after, tuple) else (),
            kwargs_after=kwargs_after if isinstance(kwargs_after, dict) else {},
            warnings=tuple(_text(w, 500) for w in warnings[:20])))
    return outcomes
