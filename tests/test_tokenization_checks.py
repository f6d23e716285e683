"""Lesson 01's checks reject plausible wrong tokenizer code, each with a hint that names the
mistake, and accept differently written correct code."""

import random
from collections import Counter, defaultdict


from catalogue import catalogue_tests

from gptcourse import check

# --- tokenization.get_pair_counts ------------------------------------------------------------


def pairs_skipping_after_a_match(ids):  # thinks a pair, once counted, uses up its ids
    counts, i = {}, 0
    while i < len(ids) - 1:
        pair = (ids[i], ids[i + 1])
        counts[pair] = counts.get(pair, 0) + 1
        i += 2 if ids[i] == ids[i + 1] else 1
    return counts


def pairs_stepping_by_two(ids):
    counts = {}
    for i in range(0, len(ids) - 1, 2):
        counts[(ids[i], ids[i + 1])] = counts.get((ids[i], ids[i + 1]), 0) + 1
    return counts


def pairs_as_a_set(ids):
    return {pair: 1 for pair in set(zip(ids, ids[1:]))}


def pairs_wrapping_around(ids):
    return dict(Counter(zip(ids, ids[1:] + ids[:1])))


def pairs_missing_the_last(ids):
    counts = {}
    for i in range(len(ids) - 2):
        counts[(ids[i], ids[i + 1])] = counts.get((ids[i], ids[i + 1]), 0) + 1
    return counts


def pairs_by_counter(ids):
    return Counter(zip(ids, ids[1:]))


def pairs_by_index_loop(ids):
    counts = defaultdict(int)
    for i in range(len(ids) - 1):
        counts[ids[i], ids[i + 1]] += 1
    return dict(counts)


# --- tokenization.merge_pair -----------------------------------------------------------------

def merge_dropping_the_last(ids, pair, new_id):
    out, i = [], 0
    while i < len(ids) - 1:
        if (ids[i], ids[i + 1]) == pair:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def merge_overlapping(ids, pair, new_id):  # forgets to skip the second id after a match
    out, skip = [], False
    for i in range(len(ids)):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
            out.append(new_id)
            skip = True
        elif skip:
            skip = False
        else:
            out.append(ids[i])
    return out


def merge_first_only(ids, pair, new_id):
    for i in range(len(ids) - 1):
        if (ids[i], ids[i + 1]) == pair:
            return ids[:i] + [new_id] + ids[i + 2:]
    return list(ids)


def merge_in_place(ids, pair, new_id):
    i = 0
    while i < len(ids) - 1:
        if (ids[i], ids[i + 1]) == pair:
            ids[i:i + 2] = [new_id]
        i += 1
    return ids


def merge_by_while_loop(ids, pair, new_id):
    out, i = [], 0
    while i < len(ids):
        if ids[i:i + 2] == list(pair):
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def merge_by_iterator(ids, pair, new_id):
    out = []
    for x in ids:
        if out and out[-1] == pair[0] and x == pair[1]:  # a just-made new_id never matches
            out[-1] = new_id
        else:
            out.append(x)
    return out


def merge_by_copy_then_scan(ids, pair, new_id):
    out = list(ids)
    i = 0
    while i < len(out) - 1:
        if out[i] == pair[0] and out[i + 1] == pair[1]:
            out[i:i + 2] = [new_id]
        i += 1
    return out


# --- tokenization.train_bpe ------------------------------------------------------------------

def _pair_counts(ids):
    return dict(Counter(zip(ids, ids[1:])))


def _merge(ids, pair, new_id):
    return merge_by_while_loop(ids, pair, new_id)


def _train(text, vocab_size, pick, start=256, n=None, of=lambda t: list(t.encode("utf-8"))):
    ids, merges = of(text), {}
    for new_id in range(start, start + (vocab_size - 256 if n is None else n)):
        counts = _pair_counts(ids)
        if not counts:
            break
        pair = pick(counts)
        ids = _merge(ids, pair, new_id)
        merges[pair] = new_id
    return merges


def train_max_first_in_dict(text, vocab_size):  # ties go to whichever pair appeared first
    return _train(text, vocab_size, lambda c: max(c, key=c.get))


def train_random_ties(text, vocab_size):
    def pick(counts):
        top = max(counts.values())
        return random.choice([p for p, c in counts.items() if c == top])
    return _train(text, vocab_size, pick)


def train_largest_pair_on_ties(text, vocab_size):
    return _train(text, vocab_size, lambda c: max(c, key=lambda p: (c[p], p)))


def train_one_merge_too_many(text, vocab_size):
    return _train(text, vocab_size, lambda c: min(c, key=lambda p: (-c[p], p)),
                  n=vocab_size - 255)


def train_ids_from_255(text, vocab_size):
    return _train(text, vocab_size, lambda c: min(c, key=lambda p: (-c[p], p)), start=255)


def train_on_characters(text, vocab_size):
    return _train(text, vocab_size, lambda c: min(c, key=lambda p: (-c[p], p)),
                  of=lambda t: [ord(ch) for ch in t])


def train_counting_once(text, vocab_size):
    counts = _pair_counts(list(text.encode("utf-8")))
    ranked = sorted(counts, key=lambda p: (-counts[p], p))[:vocab_size - 256]
    return {pair: 256 + k for k, pair in enumerate(ranked)}


def train_without_keeping_the_merge(text, vocab_size):
    ids, merges = list(text.encode("utf-8")), {}
    for new_id in range(256, vocab_size):
        counts = _pair_counts(ids)
        if not counts:
            break
        pair = min(counts, key=lambda p: (-counts[p], p))
        _merge(ids, pair, new_id)  # the merged list is thrown away
        merges[pair] = new_id
    return merges


def train_sorted_at_the_end(text, vocab_size):
    merges = _train(text, vocab_size, lambda c: min(c, key=lambda p: (-c[p], p)))
    return dict(sorted(merges.items()))


def train_with_min(text, vocab_size):
    return _train(text, vocab_size, lambda c: min(c, key=lambda p: (-c[p], p)))


def train_by_sorting_items(text, vocab_size):
    return _train(text, vocab_size,
                  lambda c: sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))[0][0])


def train_with_pair_order_then_max(text, vocab_size):
    # visiting pairs in sorted order makes max() keep the smallest among ties
    return _train(text, vocab_size, lambda c: max(sorted(c), key=c.get))


# --- tokenization.encode ---------------------------------------------------------------------

def _encode_choosing(choose):
    def encode(text, merges):
        ids = list(text.encode("utf-8"))
        while True:
            present = [p for p in dict.fromkeys(zip(ids, ids[1:])) if p in merges]
            if not present:
                return ids
            pair = choose(present, ids, merges)
            ids = _merge(ids, pair, merges[pair])
    return encode


def _named(fn, name):
    fn.__name__ = name
    return fn


encode_by_frequency = _named(_encode_choosing(
    lambda present, ids, merges: max(present, key=lambda p: (_pair_counts(ids)[p], -merges[p]))),
    "encode_by_frequency")
encode_leftmost_pair_first = _named(_encode_choosing(
    lambda present, ids, merges: present[0]), "encode_leftmost_pair_first")
encode_latest_merge_first = _named(_encode_choosing(
    lambda present, ids, merges: max(present, key=merges.get)), "encode_latest_merge_first")
encode_by_min_rank = _named(_encode_choosing(
    lambda present, ids, merges: min(present, key=merges.get)), "encode_by_min_rank")


def encode_without_merging(text, merges):
    return list(text.encode("utf-8"))


def encode_characters(text, merges):
    ids = [ord(c) for c in text]
    for pair, new_id in merges.items():
        ids = _merge(ids, pair, new_id)
    return ids


def encode_one_pass_in_learned_order(text, merges):
    ids = list(text.encode("utf-8"))
    for pair, new_id in merges.items():  # merges are in learned order
        ids = _merge(ids, pair, new_id)
    return ids


# --- tokenization.decode ---------------------------------------------------------------------

def _vocab(merges):
    vocab = {i: bytes([i]) for i in range(256)}
    for (a, b), new_id in merges.items():
        vocab[new_id] = vocab[a] + vocab[b]
    return vocab


def decode_each_token_replacing(ids, merges):
    vocab = _vocab(merges)
    return "".join(vocab[i].decode("utf-8", errors="replace") for i in ids)


def decode_each_token_strictly(ids, merges):
    vocab = _vocab(merges)
    return "".join(vocab[i].decode("utf-8") for i in ids)


def decode_raising_on_bad_utf8(ids, merges):
    vocab = _vocab(merges)
    return b"".join(vocab[i] for i in ids).decode("utf-8")


def decode_ignoring_bad_utf8(ids, merges):
    vocab = _vocab(merges)
    return b"".join(vocab[i] for i in ids).decode("utf-8", errors="ignore")


def decode_as_latin1(ids, merges):
    vocab = _vocab(merges)
    return b"".join(vocab[i] for i in ids).decode("latin-1")


def decode_by_joining(ids, merges):
    return b"".join(_vocab(merges)[i] for i in ids).decode("utf-8", errors="replace")


def decode_by_unmerging(ids, merges):  # undo merges, newest first, down to bytes
    parts = {new_id: pair for pair, new_id in merges.items()}
    ids = list(ids)
    for new_id in sorted(parts, reverse=True):
        out = []
        for i in ids:
            out.extend(parts[new_id] if i == new_id else [i])
        ids = out
    return bytes(ids).decode("utf-8", errors="replace")


# exercise -> {wrong implementation: words its hint must contain}
WRONG = {
    "tokenization.get_pair_counts": {
        pairs_skipping_after_a_match: ["Pairs overlap", "(a, a) occurs twice"],
        pairs_stepping_by_two: ["every second pair"],
        pairs_as_a_set: ["Every count is 1"],
        pairs_wrapping_around: ["wrap around"],
        pairs_missing_the_last: ["last pair is missing"],
    },
    "tokenization.merge_pair": {
        merge_dropping_the_last: ["last element went missing"],
        merge_overlapping: ["must not overlap", "two new tokens, not three"],
        merge_first_only: ["Only the first occurrence"],
        merge_in_place: ["changed its argument", "Build a new list", "`ids.append(...)`"],
    },
    "tokenization.train_bpe": {
        train_max_first_in_dict: ["equally frequent", "smallest"],
        train_random_ties: ["equally frequent", "deterministic"],
        train_largest_pair_on_ties: ["equally frequent"],
        train_one_merge_too_many: ["vocab_size - 256 merges"],
        train_ids_from_255: ["first merge gets id 256"],
        train_on_characters: ["UTF-8 bytes", "not from characters"],
        train_counting_once: ["Count the pairs again after each merge"],
        train_sorted_at_the_end: ["order they were learned"],
        train_without_keeping_the_merge: ["same pair again", "`ids` never changed"],
    },
    "tokenization.encode": {
        encode_by_frequency: ["most frequent in this text", "order they were learned"],
        encode_leftmost_pair_first: ["leftmost", "order they were learned"],
        encode_latest_merge_first: ["most recently learned"],
        encode_without_merging: ["never applied"],
        encode_characters: ["UTF-8 bytes"],
    },
    "tokenization.decode": {
        decode_each_token_replacing: ["all the bytes together", "split across two tokens"],
        decode_each_token_strictly: ["all the bytes together", "split across two tokens"],
        decode_raising_on_bad_utf8: ["errors='replace'", "as tiktoken does"],
        decode_ignoring_bad_utf8: ["errors='ignore'", "errors='replace'"],
        decode_as_latin1: ["UTF-8"],
    },
}

CORRECT = {
    "tokenization.get_pair_counts": [pairs_by_counter, pairs_by_index_loop],
    "tokenization.merge_pair": [merge_by_while_loop, merge_by_iterator, merge_by_copy_then_scan],
    "tokenization.train_bpe": [train_with_min, train_by_sorting_items,
                               train_with_pair_order_then_max],
    "tokenization.encode": [encode_by_min_rank, encode_one_pass_in_learned_order],
    "tokenization.decode": [decode_by_joining, decode_by_unmerging],
}


(test_wrong_implementation_is_rejected_with_feedback_naming_the_mistake,
 test_correct_variants_pass, test_the_stub_is_not_attempted) = catalogue_tests(
    WRONG, CORRECT, feedback=lambda result: result.hint + result.message)


def test_random_tie_breaking_is_caught_on_every_seed():
    """Whatever the random choices, a non-deterministic trainer never passes."""
    for seed in range(5):
        random.seed(seed)
        assert check("tokenization.train_bpe", train_random_ties, seed=seed).status == "failed"


def test_the_hints_of_wrong_trainers_agree_across_seeds():
    for seed in (1, 2):
        result = check("tokenization.train_bpe", train_max_first_in_dict, seed=seed)
        assert result.status == "failed" and "equally frequent" in result.hint, str(result)
