"""The tokenizer's speed, as ratios measured in one run (lesson 01):

1. training a 4,096-token vocabulary on the 10 MB corpus: our reference (pure Python) against
   Hugging Face `tokenizers` (Rust), both with GPT-2's pre-splitting;
2. our reference trainer against the lesson's recount-everything `train_bpe`, 1,024 tokens
   on 1 MB; and the incremental algorithm alone on the same unsplit bytes, where it learns
   exactly the same merges as `train_bpe`;
3. encoding 1 MB with GPT-4's cl100k_base: our encode against tiktoken's.

Needs the `bench` extra for figure 1 (pip install -e ".[bench]"); without it, figure 1 is
skipped with a note and the others still run.
"""

from __future__ import annotations

import sys
import time

from run import Figure, median_seconds

from gptcourse import tokenizer
from gptcourse.data import generate_corpus


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _hugging_face_seconds(text: str, vocab_size: int) -> float | None:
    try:
        from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    except ImportError:
        print("  (Hugging Face `tokenizers` is not installed, so figure 1 is skipped: "
              "pip install -e '.[bench]')", file=sys.stderr)
        return None
    hf = Tokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)  # GPT-2's regex
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=0, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=[tokenizer.ENDOFTEXT])
    documents = text.split("\n\n")  # one story per document, as HF is usually fed
    seconds = _seconds(lambda: hf.train_from_iterator(documents, trainer=trainer))
    if hf.get_vocab_size() != vocab_size:
        print(f"  (note: HF learned {hf.get_vocab_size()} tokens)", file=sys.stderr)
    return seconds


def run() -> list[Figure]:
    figures = []

    # 1. 4,096 tokens on 10 MB, against Hugging Face
    ten = generate_corpus(10_000_000)
    ours = _seconds(lambda: tokenizer.Tokenizer.train(ten, 4096, pattern=tokenizer.GPT2_PATTERN))
    hf = _hugging_face_seconds(ten, 4096)
    figures.append(Figure("train 4,096 tokens on 10 MB: ours (pure Python)", ours, "s"))
    if hf is not None:
        figures.append(Figure("  Hugging Face tokenizers (Rust, all cores)", hf, "s"))
        figures.append(Figure("  ratio ours / Hugging Face", ours / hf, "x", "target < 10x"))

    # 2. the lesson's recount-everything train_bpe against the reference, 1,024 tokens on 1 MB:
    #    the reference as the course uses it (Tokenizer.train: GPT-4 pre-splitting, each
    #    distinct piece counted once, counts updated after each merge), and the incremental
    #    algorithm alone on the same unsplit bytes, where it must learn exactly the same merges
    one = generate_corpus(1_000_000)
    merges = {}
    slow = _seconds(lambda: merges.update(slow=tokenizer.train_bpe(one, 1024)))
    reference = _seconds(lambda: tokenizer.Tokenizer.train(one, 1024))
    fast = _seconds(lambda: merges.update(fast=tokenizer.train_merges(
        {one.encode("utf-8"): 1}, 1024 - 256)))
    if list(merges["fast"].items()) != list(merges["slow"].items()):
        raise AssertionError("the incremental trainer learned other merges than train_bpe")
    figures.append(Figure("train 1,024 tokens on 1 MB: the lesson's recount train_bpe", slow,
                          "s"))
    figures.append(Figure("  reference Tokenizer.train (pre-split, incremental)", reference,
                          "s"))
    figures.append(Figure("  speed-up of the reference", slow / reference, "x",
                          "target >= 50x"))
    figures.append(Figure("  incremental alone, unsplit bytes (same merges as train_bpe)", fast,
                          "s"))
    figures.append(Figure("  speed-up of the incremental algorithm alone", slow / fast, "x"))

    # 3. encoding with cl100k_base: ours against tiktoken, same text
    enc = tokenizer.offline_tiktoken("cl100k_base")
    gpt4 = tokenizer.Tokenizer.from_tiktoken("cl100k_base")
    if gpt4.encode(one) != enc.encode(one):
        raise AssertionError("our cl100k ids differ from tiktoken's")

    def cold() -> None:  # our per-piece cache starts empty, as in a fresh process
        gpt4._cache.clear()
        gpt4.encode(one)

    ours_cold = median_seconds(cold, repeat=3, warmup=1)
    ours_warm = median_seconds(lambda: gpt4.encode(one), repeat=3, warmup=1)
    theirs = median_seconds(lambda: enc.encode(one), repeat=5, warmup=1)
    mb = len(one.encode("utf-8")) / 1e6
    figures.append(Figure("encode 1 MB with cl100k_base: tiktoken", mb / theirs, "MB/s"))
    figures.append(Figure("  ours, empty cache", mb / ours_cold, "MB/s"))
    figures.append(Figure("  ours, cache of pieces already seen", mb / ours_warm, "MB/s"))
    figures.append(Figure("  ratio ours (empty cache) / tiktoken, time", ours_cold / theirs, "x"))
    return figures
