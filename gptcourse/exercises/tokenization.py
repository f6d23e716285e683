"""Checks for lesson 01, tokenization."""

from __future__ import annotations

import random

from gptcourse import tokenizer
from gptcourse.data.samples import CHINESE_SAMPLE
from gptcourse.data.stories import generate_corpus
from gptcourse.exercises.contract import Case, Exercise, Mistake, Outcome
from gptcourse.exercises.registration import register

Pair = tuple[int, int]


def _utf8(text: str) -> list[int]:
    return list(text.encode("utf-8"))


def _story(seed: int, n: int) -> str:
    """n characters of the course's stories: realistic English with repeated words."""
    return generate_corpus(n, seed)[:n]


def _raised(*names: str):
    def symptom(case: Case, outcome: Outcome) -> bool:
        return outcome.error is not None and outcome.error.type_name in names
    return symptom


# --- get_pair_counts -------------------------------------------------------------------------

def _pair_counts_cases(seed: int) -> list[Case]:
    rng = random.Random(seed)
    return [
        Case("a short list", ([1, 2, 1, 2, 3],)),
        Case("three equal ids in a row (pairs overlap)", (_utf8("aaa"),)),
        Case("the bytes of 'hello world'", (_utf8("hello world"),)),
        Case("a run of five equal ids", ([7, 7, 7, 7, 7, 3],)),
        Case("the bytes of '你好' (two Chinese characters, 6 bytes)", (_utf8("你好"),)),
        Case("an empty list", ([],)),
        Case("a single id", ([42],)),
        Case("random ids", ([rng.randrange(6) for _ in range(40)],)),
        Case("the bytes of a story", (_utf8(_story(seed, 300)),)),
    ]


def _pairs_without_overlap(ids):
    counts: dict[Pair, int] = {}
    i = 0
    while i + 1 < len(ids):
        pair = (ids[i], ids[i + 1])
        counts[pair] = counts.get(pair, 0) + 1
        i += 2 if ids[i] == ids[i + 1] else 1
    return counts


def _pairs_stepping_by_two(ids):
    counts: dict[Pair, int] = {}
    for i in range(0, len(ids) - 1, 2):
        counts[(ids[i], ids[i + 1])] = counts.get((ids[i], ids[i + 1]), 0) + 1
    return counts


def _all_ones(case: Case, outcome: Outcome) -> bool:
    got = outcome.value
    expected = tokenizer.get_pair_counts(*case.args)
    return isinstance(got, dict) and set(got) == set(expected) and \
        all(v == 1 for v in got.values()) and any(v > 1 for v in expected.values())


def _wrapped_around(ids):
    counts = tokenizer.get_pair_counts(ids)
    if len(ids) >= 2:
        pair = (ids[-1], ids[0])
        counts[pair] = counts.get(pair, 0) + 1
    return counts


register(Exercise(
    id="tokenization.get_pair_counts",
    title="counting adjacent pairs",
    points=1,
    reference=tokenizer.get_pair_counts,
    make_cases=_pair_counts_cases,
    mistakes=(
        Mistake("Pairs overlap: in [a, a, a] the pair (a, a) occurs twice, at positions 0-1 and "
                "1-2. Count the pair starting at every position i from 0 to len(ids) - 2, "
                "without skipping ahead after a match: zip(ids, ids[1:]) gives them all.",
                wrong=_pairs_without_overlap),
        Mistake("You counted every second pair only (the step of 2 skips the pairs that start "
                "at odd positions). Pairs overlap: each position i up to len(ids) - 2 starts "
                "one, so zip(ids, ids[1:]) lists them all.", wrong=_pairs_stepping_by_two),
        Mistake("The last id and the first are not neighbours: the text does not wrap around. "
                "Only ids[i] and ids[i + 1] form a pair.", wrong=_wrapped_around),
        Mistake("The last pair is missing: the pairs start at positions 0 to len(ids) - 2 "
                "inclusive, so loop over range(len(ids) - 1).",
                wrong=lambda ids: tokenizer.get_pair_counts(ids[:-1])),
        Mistake("Every count is 1: the dict says which pairs occur but not how often. Add 1 "
                "to a pair's count each time it occurs: counts[pair] = counts.get(pair, 0) + 1.",
                symptom=_all_ones),
    ),
    hint="Go through the adjacent pairs (ids[i], ids[i + 1]) — zip(ids, ids[1:]) — and count "
         "each one in a dict {pair: count}; a pair is a tuple of two ids.",
))


# --- merge_pair ------------------------------------------------------------------------------

def _merge_pair_cases(seed: int) -> list[Case]:
    rng = random.Random(seed)
    random_ids = [rng.randrange(4) for _ in range(40)]
    story = _utf8(_story(seed + 1, 200))
    return [
        Case("a pair in the middle, then one more id", ([1, 2, 3, 1, 2, 5], (1, 2), 99)),
        Case("the pair at the very end", ([5, 6, 7, 8], (7, 8), 256)),
        Case("an unmatched id after the last pair", ([1, 2, 3], (1, 2), 300)),
        Case("[a, a, a, a] with the pair (a, a)", (_utf8("aaaa"), (97, 97), 256)),
        Case("[a, a, a] with the pair (a, a)", (_utf8("aaa"), (97, 97), 256)),
        Case("a pair that does not occur", ([1, 2, 3], (3, 1), 256)),
        Case("an empty list", ([], (1, 2), 256)),
        Case("a single id", ([1], (1, 2), 256)),
        Case("random ids", (random_ids, (random_ids[3], random_ids[4]), 260)),
        Case("the bytes of a story, pair (' ', 't')", (story, (32, 116), 256)),
    ]


def _merge_dropping_last(ids, pair, new_id):
    out, i = [], 0
    while i < len(ids) - 1:
        if (ids[i], ids[i + 1]) == tuple(pair):
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def _merge_overlapping(ids, pair, new_id):
    out = []
    for i in range(len(ids)):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == tuple(pair):
            out.append(new_id)
        elif not (i > 0 and (ids[i - 1], ids[i]) == tuple(pair)):
            out.append(ids[i])
    return out


def _merge_first_only(ids, pair, new_id):
    for i in range(len(ids) - 1):
        if (ids[i], ids[i + 1]) == tuple(pair):
            return list(ids[:i]) + [new_id] + list(ids[i + 2:])
    return list(ids)


def _merge_without_removing(ids, pair, new_id):
    out = []
    for i, x in enumerate(ids):
        out.append(new_id if i + 1 < len(ids) and (x, ids[i + 1]) == tuple(pair) else x)
    return out


register(Exercise(
    id="tokenization.merge_pair",
    title="merging one pair",
    points=1,
    reference=tokenizer.merge_pair,
    make_cases=_merge_pair_cases,
    mistakes=(
        Mistake("The last element went missing: when the loop stops at len(ids) - 1 (so that "
                "ids[i + 1] exists), the final id is never appended. Loop while i < len(ids) and "
                "check i + 1 < len(ids) before looking at the pair.", wrong=_merge_dropping_last),
        Mistake("Merges must not overlap: after merging the pair at i and i + 1, continue at "
                "i + 2 (skip both ids). [a, a, a, a] with (a, a) becomes two new tokens, not "
                "three.", wrong=_merge_overlapping),
        Mistake("Only the first occurrence was merged: replace every occurrence of the pair, "
                "scanning the whole list from left to right.", wrong=_merge_first_only),
        Mistake("The new id replaced the pair's first id but its second id stayed: a merge "
                "turns two ids into one, so skip the second (i += 2).",
                wrong=_merge_without_removing),
    ),
    hint="Build a new list: walk i from 0; if ids[i], ids[i + 1] is the pair, append new_id and "
         "move on by 2, else append ids[i] and move on by 1.",
))


# --- train_bpe -------------------------------------------------------------------------------

def _train_cases(seed: int) -> list[Case]:
    rng = random.Random(seed)
    ties = "".join(rng.choice("ab c") for _ in range(80))  # few symbols: many equal counts
    story = _story(seed + 2, 500)
    return [
        Case("'aaabdaaabac', 3 merges (two pairs tie for the second)", ("aaabdaaabac", 259)),
        Case("vocab_size 256: no merges", ("hello", 256)),
        Case("'aaaa' runs out of pairs after 2 merges", ("aaaa", 260)),
        Case("a story, 40 merges", (story, 296)),
        Case("Chinese text, 20 merges", (CHINESE_SAMPLE, 276)),
        Case("random letters with many ties, 20 merges", (ties, 276)),
        Case("the same letters again: training must give the same merges", (ties, 276)),
    ]


def _first_difference(expected: dict, got: dict) -> int | None:
    exp, got_items = list(expected.items()), list(got.items())
    for k, (e, g) in enumerate(zip(exp, got_items)):
        if e != g:
            return k
    return None


def _tie_broken_differently(case: Case, outcome: Outcome) -> bool:
    """At the first merge that differs, the learner's pair was as frequent as the right one."""
    got = outcome.value
    if not isinstance(got, dict):
        return False
    expected = tokenizer.train_bpe(*case.args)
    k = _first_difference(expected, got)
    if k is None:
        return False
    pair, learner_pair = list(expected)[k], list(got)[k]
    if not (isinstance(learner_pair, tuple) and len(learner_pair) == 2):
        return False
    ids = _utf8(case.args[0])
    for p, new_id in list(expected.items())[:k]:
        ids = tokenizer.merge_pair(ids, p, new_id)
    counts = tokenizer.get_pair_counts(ids)
    return learner_pair != pair and counts.get(learner_pair) == counts[pair]


def _count_off(case: Case, outcome: Outcome) -> bool:
    """Right merges, but a few too many or too few."""
    got = outcome.value
    if not isinstance(got, dict) or not got:
        return False
    text, vocab_size = case.args
    longer = tokenizer.train_bpe(text, vocab_size + 2)
    items, want = list(got.items()), list(longer.items())
    n = vocab_size - 256
    return len(items) != min(n, len(want)) and items == want[:len(items)] \
        and abs(len(items) - n) <= 2


def _renumbered(case: Case, outcome: Outcome) -> bool:
    """The right pairs, once the learner's new ids are renamed to the right ones."""
    got = outcome.value
    expected = tokenizer.train_bpe(*case.args)
    if not isinstance(got, dict) or len(got) != len(expected) or \
            list(got.values()) == list(expected.values()):
        return False
    rename = dict(zip(got.values(), expected.values()))
    try:
        renamed = [(rename.get(a, a), rename.get(b, b)) for a, b in got]
    except (TypeError, ValueError):
        return False
    return renamed == list(expected)


def _reordered(case: Case, outcome: Outcome) -> bool:
    got = outcome.value
    expected = tokenizer.train_bpe(*case.args)
    return isinstance(got, dict) and got == expected and list(got) != list(expected)


def _train_on_characters(text, vocab_size):
    ids = [ord(c) for c in text]
    merges = {}
    for new_id in range(256, vocab_size):
        counts = tokenizer.get_pair_counts(ids)
        if not counts:
            break
        pair = tokenizer.best_pair(counts)
        ids = tokenizer.merge_pair(ids, pair, new_id)
        merges[pair] = new_id
    return merges


def _train_without_keeping_the_merge(text, vocab_size):
    """merge_pair's result thrown away: the ids, and so the counts and the best pair, never
    change, and every new id overwrites the same entry."""
    counts = tokenizer.get_pair_counts(_utf8(text))
    return {tokenizer.best_pair(counts): vocab_size - 1} if counts and vocab_size > 256 else {}


def _train_counting_once(text, vocab_size):
    ids = _utf8(text)
    counts = tokenizer.get_pair_counts(ids)
    merges = {}
    for new_id, pair in zip(range(256, vocab_size), sorted(counts, key=lambda p: (-counts[p], p))):
        merges[pair] = new_id
    return merges


register(Exercise(
    id="tokenization.train_bpe",
    title="training BPE",
    points=2,
    reference=tokenizer.train_bpe,
    make_cases=_train_cases,
    ordered=True,
    mistakes=(
        Mistake("Every merge picked the same pair again, because `ids` never changed: "
                "merge_pair returns a new list and leaves the one it was given as it was. "
                "Keep its result as the new `ids`, so that the next count sees the merged "
                "tokens.", wrong=_train_without_keeping_the_merge),
        Mistake("Two pairs were equally frequent and you merged a different one than the rule "
                "says. Ties go to the smallest pair (compare first ids, then second ids): "
                "best = min(counts, key=lambda p: (-counts[p], p)). max(counts, key=counts.get) "
                "takes whichever tied pair the dict happens to list first, and a random choice "
                "gives different merges on every run; training must be deterministic.",
                symptom=_tie_broken_differently),
        Mistake("Start from the UTF-8 bytes, list(text.encode('utf-8')), not from characters: "
                "ord('你') is 20320, which is not a byte, and would clash with the new ids.",
                wrong=_train_on_characters),
        Mistake("Count the pairs again after each merge: merging creates new ids, so new pairs "
                "appear and old ones disappear. Taking the top pairs of the first count merges "
                "pairs that may no longer exist.", wrong=_train_counting_once),
        Mistake("Right merges, but not the right number of them: vocab_size counts the 256 byte "
                "tokens too, so learn vocab_size - 256 merges, with new ids 256, 257, ..., "
                "vocab_size - 1 (range(256, vocab_size)).", symptom=_count_off),
        Mistake("Right pairs, wrong new ids: ids 0-255 are the bytes, so the first merge gets "
                "id 256, the next 257, one more for each merge.", symptom=_renumbered),
        Mistake("Right merges, in the wrong order: the dict must list merges in the order they "
                "were learned (add each one as you go; do not sort it), because encode applies "
                "them in that order.", symptom=_reordered),
    ),
    hint="ids = list(text.encode('utf-8')); for new_id in range(256, vocab_size): count the "
         "pairs (stop if there are none), pick best = min(counts, key=lambda p: (-counts[p], p)), "
         "merge it into the ids, record merges[best] = new_id.",
))


# --- encode ----------------------------------------------------------------------------------

def _encode_cases(seed: int) -> list[Case]:
    training = _story(seed + 3, 600)
    english = tokenizer.train_bpe(training, 320)
    chinese = tokenizer.train_bpe(CHINESE_SAMPLE, 290)
    unseen = _story(seed + 40, 300)
    return [
        Case("merges learned in another order than the pairs appear here",
             ("baacaa", {(99, 97): 256, (97, 97): 257, (98, 97): 258})),
        Case("a later merge's pair comes first in the text: learned order matters",
             ("abc", {(98, 99): 256, (97, 98): 257})),
        Case("'aaaa' with merges that build on each other",
             ("aaaa", {(97, 97): 256, (256, 256): 257})),
        Case("the text the merges were learned from", (training, english)),
        Case("a new story, the same merges", (unseen, english)),
        Case("Chinese text with merges learned on Chinese", (CHINESE_SAMPLE, chinese)),
        Case("Chinese text with merges learned on English (nothing to merge)",
             ("你好，世界", english)),
        Case("an empty text", ("", english)),
        Case("no merges at all", ("hi there", {})),
    ]


def _encode_by(choose):
    def wrong(text, merges):
        ids = _utf8(text)
        while True:
            present = [p for p in dict.fromkeys(zip(ids, ids[1:])) if p in merges]
            if not present:
                return ids
            pair = choose(present, ids, merges)
            ids = tokenizer.merge_pair(ids, pair, merges[pair])
    return wrong


_encode_by_frequency = _encode_by(
    lambda present, ids, merges: tokenizer.best_pair(
        {p: c for p, c in tokenizer.get_pair_counts(ids).items() if p in merges}))
_encode_leftmost_first = _encode_by(lambda present, ids, merges: present[0])
_encode_latest_first = _encode_by(lambda present, ids, merges: max(present, key=merges.get))


def _encode_characters(text, merges):
    ids = [ord(c) for c in text]
    while len(ids) >= 2:
        pair = min(zip(ids, ids[1:]), key=lambda p: merges.get(p, float("inf")))
        if pair not in merges:
            break
        ids = tokenizer.merge_pair(ids, pair, merges[pair])
    return ids


register(Exercise(
    id="tokenization.encode",
    title="encoding text",
    points=1,
    reference=tokenizer.encode,
    make_cases=_encode_cases,
    mistakes=(
        Mistake("You merged the pair that is most frequent in this text. Apply merges in the "
                "order they were learned instead (the smallest new id first): a later merge may "
                "build on an earlier one, and frequencies in a new text are not the ones "
                "training saw.", wrong=_encode_by_frequency),
        Mistake("You merged the leftmost mergeable pair first. Apply merges in the order they "
                "were learned: among the pairs present, merge the one with the smallest new id "
                "(min(pairs, key=lambda p: merges.get(p, float('inf')))).",
                wrong=_encode_leftmost_first),
        Mistake("You applied the most recently learned merge first. Learned order means the "
                "earliest merge (smallest new id) first.", wrong=_encode_latest_first),
        Mistake("Start from the UTF-8 bytes, list(text.encode('utf-8')), not from characters "
                "(ord): a Chinese character is 3 bytes.", wrong=_encode_characters),
        Mistake("These are just the text's bytes: the merges were never applied. Repeatedly "
                "merge the learned pair with the smallest new id until none is left.",
                wrong=lambda text, merges: _utf8(text)),
    ),
    hint="ids = list(text.encode('utf-8')); while there are at least 2 ids: among the adjacent "
         "pairs pick the one with the smallest merges.get(pair, inf); stop if it is not in "
         "merges, else merge it with merge_pair.",
))


# --- decode ----------------------------------------------------------------------------------

def _decode_cases(seed: int) -> list[Case]:
    english_text = _story(seed + 5, 400)
    english = tokenizer.train_bpe(english_text, 300)
    chinese = tokenizer.train_bpe(CHINESE_SAMPLE, 300)
    tokens_of = tokenizer.encode
    return [
        Case("plain bytes, no merges", (_utf8("hello"), {})),
        Case("English with merged tokens", (tokens_of(english_text[:120], english), english)),
        Case("merges built on merges", ([257, 97], {(97, 97): 256, (256, 256): 257})),
        Case("Chinese characters split across tokens",
             (tokens_of(CHINESE_SAMPLE, chinese), chinese)),
        Case("no ids", ([], english)),
        Case("bytes that are not valid UTF-8 (a model can generate them)",
             ([104, 105, 0xFF, 33], {})),
        Case("half a Chinese character at the end", (_utf8("好")[:2] + [32], {})),
    ]


def _vocab(merges):
    return tokenizer.vocab_of(merges)


def _decode_each_token(ids, merges):
    vocab = _vocab(merges)
    return "".join(vocab[i].decode("utf-8", errors="replace") for i in ids)


def _decode_ignoring_errors(ids, merges):
    vocab = _vocab(merges)
    return b"".join(vocab[i] for i in ids).decode("utf-8", errors="ignore")


def _decode_latin1(ids, merges):
    vocab = _vocab(merges)
    return b"".join(vocab[i] for i in ids).decode("latin-1")


def _joined_bytes_are_utf8(case: Case) -> bool:
    """Whether the case's bytes, joined, are valid UTF-8 (so only token-by-token fails)."""
    ids, merges = case.args
    try:
        b"".join(_vocab(merges)[i] for i in ids).decode("utf-8")
        return True
    except (UnicodeDecodeError, KeyError):
        return False


register(Exercise(
    id="tokenization.decode",
    title="decoding ids",
    points=1,
    reference=tokenizer.decode,
    make_cases=_decode_cases,
    mistakes=(
        Mistake("Decode all the bytes together, once: one Chinese character is 3 bytes and may "
                "be split across two tokens, so a single token's bytes need not be valid UTF-8. "
                "Join the tokens' bytes with b''.join(...), then .decode('utf-8', "
                "errors='replace').", wrong=_decode_each_token),
        Mistake("Decode all the bytes together, once: one Chinese character is 3 bytes and may "
                "be split across two tokens, so decoding token by token fails on its pieces. "
                "Join the tokens' bytes with b''.join(...), then decode.",
                symptom=lambda case, outcome: _raised("UnicodeDecodeError")(case, outcome)
                and _joined_bytes_are_utf8(case)),
        Mistake("These bytes are not valid UTF-8, and a model can generate such ids. Replace "
                "what cannot be decoded instead of raising, as tiktoken does: "
                ".decode('utf-8', errors='replace') turns each bad piece into '�'.",
                symptom=_raised("UnicodeDecodeError")),
        Mistake("errors='ignore' silently drops the bytes that are not valid UTF-8. Use "
                "errors='replace', as tiktoken does: each bad piece becomes '�', so the reader "
                "can see that something was there.", wrong=_decode_ignoring_errors),
        Mistake("Text in the course is UTF-8: decode the bytes with 'utf-8' (latin-1 turns "
                "each byte of '你' into a character of its own).", wrong=_decode_latin1),
    ),
    hint="Build vocab = {i: bytes([i]) for i in range(256)}, then for each merge in order "
         "vocab[new_id] = vocab[a] + vocab[b]; join the ids' bytes and decode them once as "
         "UTF-8 with errors='replace'.",
))
