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

Past one machine: `grade(..., shard=(K, N))` grades only shard K of N, a stable share of the
notebooks chosen by a hash of each one's path (the same notebook always falls in the same
shard, whatever else is in the folder). Shards may run at the same time into one results
folder: each notebook's record is a file of its own, written atomically, so none is lost;
shards write no gradebook (one finishing early would see the others' half done).
`merge(RESULTS_DIR)`, or the next plain `grade`, writes the gradebooks from every record.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from gptcourse.atomic import write_atomically
from gptcourse.grading.results import load_records, record_path, rows, write_results
from gptcourse.grading.steps import ERROR, Limits, Submission, file_digest, grade_submission

__all__ = ["Batch", "Limits", "Submission", "find_submissions", "grade", "merge", "in_shard",
           "parse_shard", "ERROR"]


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


def parse_shard(text: str) -> tuple[int, int]:
    """'K/N' (1 <= K <= N) → (K, N); a clear ValueError for anything else."""
    k, slash, n = text.partition("/")
    try:
        shard = (int(k), int(n)) if slash else None
    except ValueError:
        shard = None
    if shard is None or not 1 <= shard[0] <= shard[1]:
        raise ValueError(f"--shard takes K/N, shard K of N with 1 <= K <= N (for example 3/10), "
                         f"got {text!r}")
    return shard


def in_shard(submission: Submission, shard: tuple[int, int]) -> bool:
    """Whether `submission` belongs to shard (K, N): decided by its path below the
    submissions folder alone, so every machine agrees and adding notebooks moves none."""
    k, n = shard
    digest = hashlib.sha256(submission.relative.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % n == k - 1


@dataclass(frozen=True)
class Batch:
    """What a run did: notebooks graded and skipped (already graded), the records it covers
    and their gradebook rows (see `results.rows`)."""

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
          force: bool = False, progress: bool = True,
          shard: tuple[int, int] | None = None) -> Batch:
    """Grade every notebook below `submissions` into `out`; see the module's docstring.

    Re-running resumes: a notebook with a record made from the same contents under the same
    limits is skipped unless force=True (one the grader itself failed on is graded again).
    With shard=(K, N) only shard K of N is graded and no gradebook is written (`merge` does
    that once every shard is done). Returns what was done and the gradebook rows.
    """
    if not submissions.is_dir():
        raise ValueError(f"{submissions} is not a folder")
    limits = limits or Limits()
    out.mkdir(parents=True, exist_ok=True)
    todo = [s for s in find_submissions(submissions) if shard is None or in_shard(s, shard)]
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
    if shard is not None:
        return Batch(len(pending), len(todo) - len(pending), records, rows(records))
    return Batch(len(pending), len(todo) - len(pending), records, write_results(out, records))


def merge(out: Path) -> Batch:
    """Write the gradebooks, the feedback pages and the instructor's log of `out` from every
    record in it, for example once all shards of a batch have finished."""
    if not (out / "submissions").is_dir():
        raise ValueError(f"{out} holds no grading records; run gptcourse grade first")
    records = load_records(out)
    return Batch(0, 0, records, write_results(out, records))


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
