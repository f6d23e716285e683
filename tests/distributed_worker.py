"""A few steps of training on a tiny GPT, run by tests/test_distributed.py either alone or as
each of torchrun's processes.

    python tests/distributed_worker.py OUT STEPS UNTIL [--resume]

Trains a run of STEPS steps up to step UNTIL with `pretraining.train`, which saves
OUT/checkpoint.pt through its `save` callback (--resume: continues that checkpoint); then every
process writes what the test compares to OUT/rank<R>[-resumed].pt: its weights, the training
inputs its model saw at each step, the steps at which its `save` was called, and its log.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

from gptcourse.checkpoint import load_checkpoint, save_checkpoint
from gptcourse.data import generate_corpus
from gptcourse.model import GPTConfig
from gptcourse.pretraining import TrainingRun, TrainSettings, encode_text, train
from gptcourse.tokenizer import Tokenizer

TINY = dict(block_size=16, n_layer=2, n_head=2, n_embd=32)
# 4 rows: 2 for each of two processes; an evaluation (and a save) every 2 steps
SETTINGS = dict(batch_size=4, warmup=1, eval_every=2, eval_batches=1, sample_tokens=4)


def main(out: Path, steps: int, until: int, resume: bool) -> None:
    torch.set_num_threads(1)  # the same arithmetic alone as under torchrun, which sets 1
    text = generate_corpus(20_000, seed=5)
    tokenizer = Tokenizer.train(text, 300)
    data = encode_text(tokenizer, text)
    train_ids, val_ids = data[: len(data) * 9 // 10], data[len(data) * 9 // 10:]
    checkpoint = out / "checkpoint.pt"
    if resume:
        run = load_checkpoint(checkpoint)
    else:
        run = TrainingRun.start(tokenizer, TrainSettings(steps=steps, **SETTINGS),
                                GPTConfig(vocab_size=tokenizer.vocab_size, **TINY))
    saved_at, inputs = [], []
    # the rows of x that reach the model in each training step (evaluation runs in eval mode)
    run.model.register_forward_pre_hook(
        lambda module, args: inputs.append(args[0].clone()) if module.training else None)

    def save(run: TrainingRun) -> None:
        saved_at.append(run.step)
        save_checkpoint(checkpoint, run)

    train(run, train_ids, val_ids, until=until, progress=False, save=save)
    rank = os.environ.get("RANK", "0")
    torch.save({"weights": run.model.state_dict(), "inputs": inputs, "saved_at": saved_at,
                "log": run.log},
               out / f"rank{rank}{'-resumed' * resume}.pt")


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), "--resume" in sys.argv[4:])
