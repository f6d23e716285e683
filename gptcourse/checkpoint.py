"""Checkpoints that never lose work: a training run saved to one file and restored from it.

A checkpoint holds everything `TrainingRun` needs to continue the same curve: the model's
config and weights, the tokenizer, the settings, the step, the optimiser's state, the state of
the generator that draws the batches, the log and the time spent. It contains only tensors,
numbers, strings, lists and dicts, so `torch.load(..., weights_only=True)` reads it without
running any code from the file.

Saving is atomic: the checkpoint is written to a temporary file beside the target, flushed to
the disk, then renamed over the target in one step. A run killed while saving leaves the
previous checkpoint as it was (and at worst a stray temporary file), never half of a new one.
Loading checks the file before building anything and says what does not match.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from gptcourse.atomic import atomic_file
from gptcourse.model import GPT, GPTConfig
from gptcourse.pretraining import TrainingRun, TrainSettings, make_optimizer, pick_device
from gptcourse.tokenizer import Tokenizer

FORMAT = "gptcourse checkpoint 1"
_MODEL_KEYS = ("format", "config", "model", "tokenizer")  # enough to use the model
_KEYS = (*_MODEL_KEYS, "settings", "step", "log", "seconds")  # enough to resume its run


# --- the tokenizer as plain data -------------------------------------------------------------

def tokenizer_to_dict(tokenizer: Tokenizer) -> dict:
    return {"merges": [[a, b, c] for (a, b), c in tokenizer.merges.items()],
            "pattern": tokenizer.pattern, "special_tokens": dict(tokenizer.special_tokens),
            "byte_ids": list(tokenizer.byte_ids)}


def tokenizer_from_dict(data: dict) -> Tokenizer:
    return Tokenizer({(a, b): c for a, b, c in data["merges"]}, data["pattern"],
                     data["special_tokens"], data["byte_ids"])


# --- saving ----------------------------------------------------------------------------------

def save_checkpoint(path: str | os.PathLike, run: TrainingRun, *, with_optimizer: bool = True,
                    dtype: torch.dtype | None = None) -> Path:
    """Write `run` to `path` atomically; returns the path.

    with_optimizer=False leaves out the optimiser and generator states (a model to use, not a
    run to resume), and dtype (torch.float16, torch.bfloat16) stores the weights smaller.
    """
    path = Path(path)
    content = {
        "format": FORMAT,
        "config": dict(vars(run.model.config)),
        "model": _weights(run.model, dtype),
        "tokenizer": tokenizer_to_dict(run.tokenizer),
        "settings": run.settings.as_dict(),
        "step": run.step,
        "log": run.log,
        "seconds": run.seconds,
    }
    if with_optimizer:
        content["optimizer"] = _to_cpu(run.optimizer.state_dict())
        content["generator"] = run.generator.get_state()
    with atomic_file(path) as f:
        torch.save(content, f)
    return path


def save_model(path: str | os.PathLike, model: GPT, tokenizer: Tokenizer, *,
               dtype: torch.dtype | None = None, extra: dict | None = None) -> Path:
    """Write a model and its tokenizer to `path` atomically, without a run to resume (for a
    model trained by another loop than `TrainingRun`'s, such as PPO's): `load_model` reads it,
    `load_checkpoint` refuses it. `extra` holds more tensors or plain data under keys of its
    own (a reward model's head, say), read back with `load_extra`. Returns the path."""
    path = Path(path)
    content = {"format": FORMAT, "config": dict(vars(model.config)),
               "model": _weights(model, dtype), "tokenizer": tokenizer_to_dict(tokenizer)}
    clash = set(content) & set(extra or {})
    if clash:
        raise ValueError(f"extra may not use the checkpoint's own keys {sorted(clash)}")
    content.update(extra or {})
    with atomic_file(path) as f:
        torch.save(content, f)
    return path


def load_extra(path: str | os.PathLike, key: str):
    """What `save_model(..., extra={key: ...})` stored under `key` in the file at `path`."""
    content = torch.load(Path(path), map_location="cpu", weights_only=True)
    if key not in content:
        raise CheckpointError(f"{path}: the file holds no {key!r}")
    return content[key]


def _weights(model: GPT, dtype: torch.dtype | None) -> dict:
    weights = {name: (t.detach().to("cpu", dtype) if dtype and t.is_floating_point()
                      else t.detach().cpu())
               for name, t in model.state_dict().items()}
    weights.pop("lm_head.weight", None)  # tied to wte.weight; stored once
    return weights


def _to_cpu(obj):
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


# --- loading ---------------------------------------------------------------------------------

class CheckpointError(ValueError):
    """A file that is not a usable checkpoint; the message says what is wrong with it."""


def load_checkpoint(path: str | os.PathLike, device: str | None = "cpu") -> TrainingRun:
    """The run saved at `path`, on `device` (see `pick_device`; None picks CUDA when present).

    Raises CheckpointError naming what is wrong (missing, corrupt, another format, weights
    that do not fit the config, a tokenizer larger than the model's vocabulary, an optimiser
    state of another model) before anything is returned, so no half-loaded run ever is. A
    checkpoint saved without its optimiser loads with a fresh one: the model can be used or
    trained further, but not resumed on the same curve.
    """
    content, model, tokenizer = _read(Path(path), device, _KEYS)
    settings = TrainSettings(**content["settings"])
    optimizer = make_optimizer(model, settings.max_lr, settings.weight_decay)
    generator = torch.Generator().manual_seed(settings.seed)
    if "optimizer" in content:
        try:
            optimizer.load_state_dict(content["optimizer"])
            generator.set_state(content["generator"])
        except (ValueError, KeyError, RuntimeError) as exc:
            raise CheckpointError(f"{path}: the optimiser state does not fit the model: "
                                  f"{exc}") from None
    return TrainingRun(model, tokenizer, settings, optimizer, generator, step=content["step"],
                       log=list(content["log"]), seconds=content["seconds"])


def load_model(path: str | os.PathLike, device: str | None = "cpu") -> tuple[GPT, Tokenizer]:
    """Only the model (in eval mode) and its tokenizer from the checkpoint at `path`: quicker
    than `load_checkpoint`, which also builds the optimiser. Raises CheckpointError as it does.
    """
    _, model, tokenizer = _read(Path(path), device, _MODEL_KEYS)
    return model.eval(), tokenizer


def _read(path: Path, device: str | None, keys: tuple[str, ...]
          ) -> tuple[dict, GPT, Tokenizer]:
    """The checkpoint's content, its model with the saved weights, and its tokenizer, each
    checked before use."""
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes): it holds no checkpoint. Delete it, "
                              f"or choose the file a run saved")
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path} is not a readable checkpoint (corrupt, cut short, or "
                              f"not written by gptcourse): {str(exc) or type(exc).__name__}"
                              ) from None
    if not isinstance(content, dict) or content.get("format") != FORMAT:
        found = content.get("format") if isinstance(content, dict) else type(content).__name__
        raise CheckpointError(f"{path}: expected a {FORMAT!r} file, found {found!r}")
    missing = [k for k in keys if k not in content]
    if missing:
        model_only = all(k in content for k in _MODEL_KEYS)
        raise CheckpointError(f"{path}: the checkpoint lacks {', '.join(missing)}" +
                              ("; it holds a model without a run to resume: read it with "
                               "load_model" if model_only else ""))
    try:
        config = GPTConfig(**content["config"])
        if "settings" in keys:
            TrainSettings(**content["settings"])
        tokenizer = tokenizer_from_dict(content["tokenizer"])
    except (TypeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{path}: its config, settings or tokenizer cannot be read: "
                              f"{exc}") from None
    if tokenizer.vocab_size > config.vocab_size:
        raise CheckpointError(f"{path}: the tokenizer has {tokenizer.vocab_size} tokens but "
                              f"the model's vocab_size is {config.vocab_size}")
    weights = dict(content["model"])
    model = GPT(config)
    _check_weights(path, config, weights, model)
    weights["lm_head.weight"] = weights["wte.weight"]  # tied, stored once
    model.load_state_dict({k: v.float() if v.is_floating_point() else v
                           for k, v in weights.items()})
    return content, model.to(pick_device(device)), tokenizer


def _check_weights(path: Path, config: GPTConfig, weights: dict, model: GPT) -> None:
    """Every weight of the config's model, in its shape, and nothing else."""
    expected = {k: v.shape for k, v in model.state_dict().items() if k != "lm_head.weight"}
    missing = sorted(set(expected) - set(weights))
    extra = sorted(set(weights) - set(expected))
    if missing or extra:
        raise CheckpointError(f"{path}: the weights do not match the config {config}: "
                              f"missing {missing[:5]}, unexpected {extra[:5]}")
    for name, shape in expected.items():
        if weights[name].shape != shape:
            raise CheckpointError(f"{path}: weight {name} has shape "
                                  f"{tuple(weights[name].shape)}, but the config {config} "
                                  f"needs {tuple(shape)}")
