"""Rollouts with and without the KV cache: 8 answers of at most 200 tokens to one request,
sampled as one batch from the shipped SFT model (lesson 09's `rollouts.sample_answers`).

The figure is answer tokens written per second: each row's tokens up to its end marker, as
RLHF gets them. Rows end at different steps, and the batch runs until the longest is done,
so the seeded workload is the same for both ways, which give the same tokens (asserted).
Without the cache, step t runs the prompt and all t tokens so far again. One torch thread,
as in lesson 06; the two ways are measured in interleaved rounds, so that drift in the
machine's load hits both alike.
"""

from __future__ import annotations

import time

import torch
from run import Figure

from gptcourse import load_course_model
from gptcourse.data.tasks import constraint_stories
from gptcourse.rollouts import sample_answers

ANSWERS = 8
NEW_TOKENS = 200
ROUNDS = 3


def run() -> list[Figure]:
    model, tokenizer = load_course_model("sft")
    chat = constraint_stories(1, "heldout")[0].messages[:1]

    def sample(use_cache: bool):
        return sample_answers(model, tokenizer, chat, ANSWERS, NEW_TOKENS, use_cache=use_cache,
                              generator=torch.Generator().manual_seed(0))

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cached, recomputed = sample(True), sample(False)
        assert torch.equal(cached.ids, recomputed.ids)  # the same work, done twice
        times: dict[bool, list[float]] = {True: [], False: []}
        for _ in range(ROUNDS):
            for use_cache in (True, False):
                start = time.perf_counter()
                sample(use_cache)
                times[use_cache].append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)
    fast, slow = min(times[True]), min(times[False])
    tokens = int(cached.mask.sum())
    return [
        Figure(f"rollouts: {ANSWERS} answers of <= {NEW_TOKENS} tokens, SFT model, 1 thread: "
               f"KV cache", tokens / fast, "tok/s"),
        Figure("  without the cache (the whole text again at every step)", tokens / slow,
               "tok/s"),
        Figure("  speed-up from the cache", slow / fast, "x", "target >= 3"),
        Figure("  answer tokens per row (the mean; the batch runs as long as its longest)",
               tokens / ANSWERS, "tokens", f"longest {int(cached.mask.sum(1).max())}"),
    ]
