"""Generation with and without the KV cache: 256 new tokens, batch 1, on the shipped course model
(the GPTConfig defaults: 4 layers, 4 heads, 128 wide, a context of 256 tokens).

Greedy decoding from a one-token prompt, so the 256 steps fill the context exactly and every
one of them can use the cache. Without it, step t runs all t tokens again. One torch thread,
as in lesson 06: at batch 1 each step is too small to share between threads, and on a busy
machine threads waiting for each other swamp the measurement. The two ways are measured in
interleaved rounds, so that drift in the machine's load hits both alike.
"""

from __future__ import annotations

import torch
from run import Figure, median_seconds

from gptcourse import load_course_model

NEW_TOKENS = 256


def run() -> list[Figure]:
    model, tokenizer = load_course_model()
    prompt = torch.tensor([tokenizer.encode("Once")[:1]])  # (1, 1)

    def generate(use_cache: bool) -> torch.Tensor:
        return model.generate(prompt, NEW_TOKENS, temperature=0, use_cache=use_cache)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert torch.equal(generate(True), generate(False))  # the same work, done twice
        times: dict[bool, list[float]] = {True: [], False: []}
        for _ in range(3):
            for use_cache in (True, False):
                times[use_cache].append(
                    median_seconds(lambda: generate(use_cache), repeat=3, warmup=1))
    finally:
        torch.set_num_threads(threads)
    cached, uncached = min(times[True]), min(times[False])
    return [
        Figure(f"generate {NEW_TOKENS} tokens, batch 1, course model, 1 thread: KV cache",
               cached * 1e3, "ms"),
        Figure("  without the cache (the whole text again at every step)", uncached * 1e3, "ms"),
        Figure("  speed-up from the cache", uncached / cached, "x", "target >= 3"),
        Figure("  tokens/s with the cache", NEW_TOKENS / cached, "tok/s"),
    ]
