"""Atomic writes: a reader, or a crash, sees the old file or the new one, never half of one.

Every file the package writes that someone relies on (a lesson, a checkpoint, a gradebook, a
grading record, a heatmap) goes through here. The content is written to a temporary file in
the target's own folder (so that the rename below never crosses file systems), flushed to the
disk with fsync, and then renamed over the target with `os.replace`, the one step that swaps
old for new. A write that fails or is interrupted midway removes its temporary file and leaves
the target as it was. Temporary names are unique, so several processes (grading shards) may
write into one folder at the same time.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator

FILE_MODE = 0o644  # mkstemp's private 0o600 would make a shipped or shared file unreadable


@contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """`with atomic_file(path) as f:` gives a binary file to write; when the block ends
    without an exception, what was written replaces `path` in one step. Creates the folder.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _sync_folder(path.parent)


def write_atomically(path: str | os.PathLike, content: str | bytes) -> Path:
    """Write `content` (text as UTF-8, with its newlines as they are) to `path` atomically;
    returns the path."""
    data = content.encode("utf-8") if isinstance(content, str) else content
    with atomic_file(path) as f:
        f.write(data)
    return Path(path)


def _sync_folder(folder: Path) -> None:
    """Make the rename itself durable where the OS allows syncing a folder (POSIX)."""
    if os.name != "posix":
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse to sync a folder; the rename still happened
        pass
    finally:
        os.close(fd)
