"""Loading text for training: the generated corpus or the learner's own file, and the
train/validation split.

Every loader takes `path=None`: with a path it reads that UTF-8 text file instead of
generating stories, so a learner can train everything in the course on their own text.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from gptcourse.data.stories import generate_corpus

DEFAULT_BYTES = 1_000_000   # the lessons' default corpus: trains in seconds on 2 CPU cores
MIN_BYTES = 1_000           # below this, nothing in the course can learn anything useful


@dataclass(frozen=True)
class Corpus:
    """Text split for training: `train` to learn from, `val` (the end of the text, never
    trained on) to measure how well what was learned carries over to new text."""

    train: str
    val: str
    source: str  # "generated stories (seed 0)" or the file's path


def read_text_file(path: str | os.PathLike, *, min_bytes: int = MIN_BYTES) -> str:
    """The text of a UTF-8 file, or a ValueError that says what was expected.

    A leading byte-order mark is dropped; line ends are kept as they are.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file (expected a UTF-8 text file)")
    data = path.read_bytes()
    if not data.strip():
        raise ValueError(f"{path} is empty: expected at least {min_bytes:,} bytes of UTF-8 text")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"{path} is not UTF-8 text: byte {exc.start} is {data[exc.start:exc.start + 1]!r}. "
            f"Save the file as UTF-8 (most editors offer it under 'Save as' / 'Encoding'), "
            f"or convert it, e.g. `iconv -f latin1 -t utf-8 in.txt > out.txt`.") from None
    if len(data) < min_bytes:
        raise ValueError(f"{path} has only {len(data):,} bytes: expected at least "
                         f"{min_bytes:,} bytes of UTF-8 text to learn from")
    return text


def load_text(path: str | os.PathLike | None = None, *, n_bytes: int = DEFAULT_BYTES,
              seed: int = 0) -> str:
    """The course corpus (`n_bytes` of generated stories for `seed`), or the text of the
    UTF-8 file at `path` when one is given (n_bytes and seed are then ignored)."""
    if path is not None:
        return read_text_file(path)
    return generate_corpus(n_bytes, seed)


def train_val_split(text: str, val_fraction: float = 0.1) -> tuple[str, str]:
    """(train, val): the last `val_fraction` of the text is held out for validation.

    The cut moves forward to the next blank line (a story boundary in the corpus), or else the
    next line end, when there is one close by, so that no story is split between the two
    parts; the blank line itself belongs to neither.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be between 0 and 1, got {val_fraction!r}")
    if len(text) < 2:
        raise ValueError(f"need at least 2 characters of text to split, got {len(text)}")
    cut = min(max(1, int(len(text) * (1.0 - val_fraction))), len(text) - 1)
    window = max(1, len(text) // 50)  # look this far for a natural boundary
    for boundary in ("\n\n", "\n"):
        at = text.find(boundary, cut, cut + window)
        if at != -1 and at + len(boundary) < len(text):
            return text[:at], text[at + len(boundary):]
    return text[:cut], text[cut:]


def load_corpus(path: str | os.PathLike | None = None, *, n_bytes: int = DEFAULT_BYTES,
                seed: int = 0, val_fraction: float = 0.1) -> Corpus:
    """`load_text` split into train and validation parts (`train_val_split`)."""
    text = load_text(path, n_bytes=n_bytes, seed=seed)
    train, val = train_val_split(text, val_fraction)
    source = str(path) if path is not None else f"generated stories (seed {seed})"
    return Corpus(train, val, source)
