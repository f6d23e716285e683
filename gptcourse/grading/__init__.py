"""Batch grading of submitted notebooks: `grade(SUBMISSIONS_DIR, RESULTS_DIR)`.

A submitted notebook is untrusted code. Each one runs in a kernel of its own (a fresh copy of
its folder as the working folder, a wall-clock limit, a memory limit where the OS enforces
one, no output kept), in grading mode: the lesson's reference implementations and checks
cannot be reached from it. The grader only asks that kernel for the learner's functions'
outputs on inputs it chooses after the notebook has run, from a seed the notebook cannot know;
decoding those outputs never runs code (`codec`), and the comparison with the reference, the
score and the feedback happen in the grader's own process (`steps`).

Layout: every `.ipynb` below SUBMISSIONS_DIR. One directly inside it is one learner (named by
the file); one in a sub-folder belongs to the learner named by that top-level sub-folder,
whose whole folder is copied for its run.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from gptcourse.grading.results import (load_records, record_path, write_atomically,
                                       write_feedback, write_gradebook)
from gptcourse.grading.steps import ERROR, Limits, Submission, file_digest, grade_submission

__all__ = ["Batch", "Limits", "Submission", "find_submissions", "grade", "ERROR"]


def find_submissions(folder: Path) -> list[Submission]:
    """Every notebook below `folder`, skipping hidden folders and .ipynb_checkpoints."""
    folder = folder.resolve()
    found = []
    for path in sorted(folder.rglob("*.ipynb")):
        relative = path.relative_to(folder)
        if any(part.startswith(".") or part == ".ipynb_checkpoints" for part in relative.parts):
            continue
        if path.is_symlink() or not path.is_file():
            continue
        if len(relative.parts) == 1:
            found.append(Submission(path.stem, path, relative.as_posix(), None))
        else:
            learner = relative.parts[0]
            found.append(Submission(learner, path, relative.as_posix(), folder / learner))
    return found


@dataclass(frozen=True)
class Batch:
    graded: int
    skipped: int
    records: list[dict]
    rows: list[dict]


def _already_graded(out: Path, submission: Submission, limits: Limits) -> bool:
    """A record exists for this notebook, made from the same file contents under the same
    limits, and the grader did not fail on it."""
    import json

    path = record_path(out, submission.relative)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        return (record.get("sha256") == file_digest(submission.notebook)
                and record.get("timeout_s") == limits.timeout
                and record.get("memory_mb") == limits.memory_mb and not record.get("retry"))
    except (OSError, ValueError, AttributeError):
        return False


def grade(submissions: Path, out: Path, *, jobs: int = 1, limits: Limits | None = None,
          force: bool = False, progress: bool = True) -> Batch:
    """Grade every notebook below `submissions` into `out`; see the module's docstring.

    Re-running resumes: a notebook with a record made from the same contents under the same
    limits is skipped unless force=True (one the grader itself failed on is graded again). Returns what was done and the gradebook rows.
    """
    if not submissions.is_dir():
        raise ValueError(f"{submissions} is not a folder")
    limits = limits or Limits()
    out.mkdir(parents=True, exist_ok=True)
    todo = find_submissions(submissions)
    pending = [s for s in todo if force or not _already_graded(out, s, limits)]
    spec_root = Path(tempfile.mkdtemp(prefix="gptcourse-kernelspec-"))
    try:
        from gptcourse.grading.steps import kernel_spec_dir

        asyncio.run(_grade_all(pending, out, max(1, jobs), limits, kernel_spec_dir(spec_root),
                               progress, skipped=len(todo) - len(pending)))
    finally:
        shutil.rmtree(spec_root, ignore_errors=True)
    graded = {s.relative for s in todo}
    records = [r for r in load_records(out) if r.get("notebook") in graded]
    table = write_gradebook(out, records)
    write_feedback(out, records)
    return Batch(len(pending), len(todo) - len(pending), records, table)


async def _grade_all(pending: list[Submission], out: Path, jobs: int, limits: Limits,
                     spec_root: Path, progress: bool, skipped: int) -> None:
    import json

    from tqdm import tqdm

    bar = tqdm(total=len(pending) + skipped, initial=skipped, unit="notebook",
               desc="grading", disable=not progress, dynamic_ncols=True)
    slots = asyncio.Semaphore(jobs)

    async def one(submission: Submission) -> None:
        async with slots:
            record = await grade_submission(submission, limits, spec_root)
            write_atomically(record_path(out, submission.relative),
                             json.dumps(record, indent=1, ensure_ascii=False))
            bar.update(1)

    try:
        await asyncio.gather(*(one(s) for s in pending))
    finally:
        bar.close()
