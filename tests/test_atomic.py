"""One atomic write for the whole package: a reader, or a crash, sees the old file or the new
one, never half of one; the data reaches the disk before the rename; writers never collide."""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path

import pytest

from gptcourse.atomic import FILE_MODE, atomic_file, write_atomically

PACKAGE = Path(__file__).resolve().parents[1] / "gptcourse"


def test_text_is_written_as_utf8_with_its_newlines_and_bytes_as_they_are(tmp_path):
    path = write_atomically(tmp_path / "new" / "folder" / "a.txt", "Grüße\r\nline 2\n")
    assert path == tmp_path / "new" / "folder" / "a.txt"
    assert path.read_bytes() == "Grüße\r\nline 2\n".encode("utf-8")
    write_atomically(path, b"\x00\xff")
    assert path.read_bytes() == b"\x00\xff"


@pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")
def test_the_file_is_readable_by_others_like_any_written_file(tmp_path):
    path = write_atomically(tmp_path / "a.txt", "x")
    assert path.stat().st_mode & 0o777 == FILE_MODE


def test_an_interrupted_rename_leaves_the_old_file_whole_and_no_temporary_file(tmp_path,
                                                                             monkeypatch):
    path = write_atomically(tmp_path / "gradebook.csv", "old\n")

    def crash(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        write_atomically(path, "new\n" * 1000)
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["gradebook.csv"]


def test_a_writer_that_fails_halfway_changes_nothing(tmp_path):
    path = write_atomically(tmp_path / "model.pt", b"the good checkpoint")
    with pytest.raises(OSError, match="disk full"):
        with atomic_file(path) as f:
            f.write(b"half of a new one")
            raise OSError("disk full")
    assert path.read_bytes() == b"the good checkpoint"
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]


def test_the_data_is_synced_to_the_disk_before_the_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace",
                        lambda a, b: (events.append("replace"), real_replace(a, b))[1])
    write_atomically(tmp_path / "a.json", "{}")
    assert events[:2] == ["fsync", "replace"]


def test_many_writers_at_once_each_leave_a_whole_file(tmp_path):
    versions = {i: f"writer {i}\n" * 20_000 for i in range(8)}
    shared = tmp_path / "shared.txt"

    def write(i: int) -> None:
        write_atomically(tmp_path / f"own{i}.txt", versions[i])
        write_atomically(shared, versions[i])

    threads = [threading.Thread(target=write, args=(i,)) for i in versions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all((tmp_path / f"own{i}.txt").read_text() == versions[i] for i in versions)
    assert shared.read_text() in versions.values()
    assert sorted(p.name for p in tmp_path.iterdir()) == \
        sorted([f"own{i}.txt" for i in versions] + ["shared.txt"])


def test_no_other_module_writes_files_with_a_rename_of_its_own():
    """The package's atomic writes all go through gptcourse.atomic (one helper, not four)."""
    own = [path.relative_to(PACKAGE).as_posix() for path in PACKAGE.rglob("*.py")
           if path.name != "atomic.py"
           and re.search(r"os\.replace|\.replace\(path\)|mkstemp", path.read_text("utf-8"))]
    assert own == []
