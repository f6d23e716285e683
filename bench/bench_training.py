"""The training loop's cost, measured in one run (lesson 07):

1. training tokens per second of the reference loop (`pretraining.train`: schedule, clipping,
   progress bar, the divergence check) against a bare loop (batch, forward, backward, clip,
   AdamW step, nothing else), same model, same batches. The two alternate in short chunks,
   and each keeps its fastest chunk: on a shared machine other work only ever slows a chunk
   down, so the fastest is the closest to the loop's own cost. `train` ends each chunk with
   an evaluation (one batch per split here); its time, measured apart, is taken off;
2. what the lesson's evaluations add (every 30 steps: 2 batches per split and a 40-token
   sample), timed on their own against the time of 30 bare steps;
3. peak memory (resident set, Linux's VmHWM) of a process that loads the data and runs the
   lesson's training run for 30 steps, against a process that only imports torch and the
   course.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import time

import torch
from run import Figure, median_seconds

from gptcourse.course_model import course_data
from gptcourse.pretraining import TrainingRun, TrainSettings, estimate_loss, get_batch, train

CHUNK = 15  # steps per timed chunk
ROUNDS = 5
LESSON = TrainSettings(steps=300, batch_size=8, max_lr=2e-3, min_lr=2e-4, warmup=30,
                       eval_every=30, eval_batches=2, sample_tokens=40)


def _bare_chunk(run: TrainingRun, train_ids: torch.Tensor, steps: int) -> float:
    model, optimizer = run.model, run.optimizer
    start = time.perf_counter()
    for _ in range(steps):
        x, y = get_batch(train_ids, model.config.block_size, run.settings.batch_size,
                         run.generator)
        _, loss = model(x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), run.settings.grad_clip)
        optimizer.step()
    return time.perf_counter() - start


def _reference_chunk(run: TrainingRun, train_ids, val_ids, steps: int) -> float:
    start = time.perf_counter()
    train(run, train_ids, val_ids, until=run.step + steps)
    return time.perf_counter() - start


def _overhead(settings: TrainSettings, steps: int, tokenizer, train_ids, val_ids
              ) -> tuple[float, float]:
    """(bare tokens/s, reference tokens/s), the fastest of alternating chunks of `steps`."""
    bare = TrainingRun.start(tokenizer, settings, device="cpu")
    reference = TrainingRun.start(tokenizer, settings, device="cpu")
    evaluation = median_seconds(lambda: [
        estimate_loss(reference.model, data, settings.batch_size, settings.eval_batches)
        for data in (train_ids, val_ids)], repeat=5)
    _bare_chunk(bare, train_ids, steps)  # warm-up: allocator, threads
    # The reference's first chunk also measures the loss at step 0, which later chunks do not.
    _reference_chunk(reference, train_ids, val_ids, steps)
    bare_s, reference_s = [], []
    for _ in range(ROUNDS):
        bare_s.append(_bare_chunk(bare, train_ids, steps))
        reference_s.append(_reference_chunk(reference, train_ids, val_ids, steps) - evaluation)
    tokens = steps * settings.batch_size * bare.model.config.block_size
    return tokens / min(bare_s), tokens / min(reference_s)


_MEMORY = """
import sys, torch
import gptcourse.pretraining
from gptcourse import load_course_model
if sys.argv[1] == "train":
    from gptcourse.course_model import course_data
    from gptcourse.pretraining import TrainingRun, TrainSettings, train
    _, tokenizer = load_course_model()
    tokenizer, train_ids, val_ids = course_data(tokenizer=tokenizer)
    settings = TrainSettings(**eval(sys.argv[2]))
    run = TrainingRun.start(tokenizer, settings, device="cpu")
    train(run, train_ids, val_ids, until=30, progress=False)
# VmHWM: this process's own peak. ru_maxrss would also count the parent's peak, which Linux
# carries over through fork and exec; elsewhere (macOS: bytes) it is all there is.
try:
    status = open("/proc/self/status").read()
    print(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM")))
except FileNotFoundError:
    import resource
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""


def _peak_mib(*args: str) -> float:
    out = subprocess.run([sys.executable, "-c", _MEMORY, *args], capture_output=True,
                         text=True, check=True)
    return int(out.stdout.split()[-1]) / 1024  # kB


def run() -> list[Figure]:
    from gptcourse import load_course_model

    _, tokenizer = load_course_model()
    tokenizer, train_ids, val_ids = course_data(tokenizer=tokenizer)
    figures = []

    quiet = dataclasses.replace(LESSON, steps=10_000, eval_every=10_000, eval_batches=1,
                                sample_prompt="")
    bare, reference = _overhead(quiet, CHUNK, tokenizer, train_ids, val_ids)
    figures.append(Figure("training tokens/s, bare loop (batch 8 x 256)", bare, "tok/s"))
    figures.append(Figure("  reference loop (schedule, clipping, progress bar)", reference,
                          "tok/s"))
    figures.append(Figure("  overhead of the reference loop", 100 * (bare / reference - 1), "%",
                          "target <= 5%"))
    # One of the lesson's evaluations, timed on its own: the loss on both splits and a sample.
    lesson = TrainingRun.start(tokenizer, LESSON, device="cpu")
    evaluation = median_seconds(lambda: (
        estimate_loss(lesson.model, train_ids, LESSON.batch_size, LESSON.eval_batches),
        estimate_loss(lesson.model, val_ids, LESSON.batch_size, LESSON.eval_batches),
        lesson.sample()), repeat=5)
    steps_between = LESSON.eval_every * LESSON.batch_size * lesson.model.config.block_size / bare
    figures.append(Figure("  one of the lesson's evaluations (both splits, a sample)",
                          evaluation, "s"))
    figures.append(Figure("  its cost every 30 steps, against the steps' own time",
                          100 * evaluation / steps_between, "%", "(reported)"))

    baseline = _peak_mib("import")
    peak = _peak_mib("train", repr(LESSON.as_dict()))
    figures.append(Figure("peak memory of the lesson's training run (resident)", peak, "MiB",
                          "target < 2048 MiB"))
    figures.append(Figure("  of which importing torch and the course", baseline, "MiB"))
    return figures
