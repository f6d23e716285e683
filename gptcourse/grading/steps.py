"""Grading one submission, as a chain of small named steps.

Each step takes the `Grading` record of one submission and fills in part of it; a step that
finds the submission unusable sets `error`, and the steps after it that need what is missing
do nothing. The chain (see `STEPS` and `grade_submission`):

  copy_to_workdir      a fresh temporary copy of the learner's folder (or of the file alone)
  read_notebook        parse and validate the .ipynb
  find_exercises       which lesson(s) and exercises to grade
  execute_notebook     run every code cell in a kernel of its own, in grading mode
  choose_seed          an unpredictable seed for this submission's random cases
  evaluate_functions   send cases to the kernel, get the learner's outputs back (encoded)
  judge_outcomes       compare with the reference, here in the grader's process
  stop_kernel          kill the kernel's process group, remove the copy

Only evaluate_functions talks to the learner's process, and only to send inputs and receive
values (see `codec`); judge_outcomes is the contract's `Exercise.judge`, the same code that
gave the learner their verdicts in the notebook.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gptcourse.exercises.result import FAILED, NOT_ATTEMPTED, CheckResult

ERROR = "error"  # a gradebook status beside CheckResult's: the grader could not grade it
MAX_COPY_BYTES = 200 << 20
OUTPUT_KEPT = 20  # cell errors kept for the feedback
SYNTAX_ERRORS = ("SyntaxError", "IndentationError", "TabError")  # the cell never ran at all
_WHERE = re.compile(r"\s*\([^()]*, line (\d+)\)$")  # IPython's "(3209358.py, line 3)"


@dataclass
class Limits:
    timeout: float = 300.0  # seconds for running the notebook and its functions (lessons: <= 180)
    memory_mb: int = 2048  # address space of the kernel, where the OS enforces it
    startup_timeout: float = 60.0


@dataclass(frozen=True)
class Submission:
    """One notebook to grade. `folder` is the learner's own folder (copied whole), or None
    when learners are single files side by side (only the file is copied)."""

    learner: str
    notebook: Path
    relative: str  # the notebook's path below the submissions folder, with '/'
    folder: Path | None


@dataclass
class Grading:
    """What the steps learn about one submission; `record()` is what is written to disk."""

    submission: Submission
    limits: Limits
    workdir: Path | None = None
    notebook_path: Path | None = None
    nb: Any = None
    lessons: list[str] = field(default_factory=list)
    exercises: list[Any] = field(default_factory=list)  # Exercise objects
    client: Any = None
    seed: int | None = None
    replies: dict[str, Any] = field(default_factory=dict)
    results: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # for the learner's feedback page
    instructor_notes: list[str] = field(default_factory=list)  # for the instructor's log only
    cell_errors: list[str] = field(default_factory=list)
    error: str = ""
    kernel_lost: str = ""  # why the kernel is gone (timeout, died), once it is
    phase: str = "starting the notebook's kernel"  # what the kernel was doing, for messages
    started: float = field(default_factory=time.time)
    sha256: str = ""

    def record(self) -> dict:
        return {
            "learner": self.submission.learner,
            "notebook": self.submission.relative,
            "sha256": self.sha256,
            "seed": self.seed,
            "lessons": self.lessons,
            "error": self.error,
            "notes": self.notes,
            "instructor_notes": self.instructor_notes,
            "cell_errors": self.cell_errors,
            "results": self.results,
            "seconds": round(time.time() - self.started, 3),
            "graded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "memory_limit": (f"{self.limits.memory_mb} MiB" if _memory_enforced()
                             else "not enforced on this OS"),
            "timeout_s": self.limits.timeout,
            "memory_mb": self.limits.memory_mb,
            # the grader's fault, not the notebook's: a re-run grades it again
            "retry": self.error.startswith("the grader failed") or
            self.kernel_lost.startswith("the notebook's kernel stopped while starting"),
        }


def _memory_enforced() -> bool:
    from gptcourse.grading.kernel import memory_limit_supported

    return memory_limit_supported()


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# --- the steps ------------------------------------------------------------------------------

def copy_to_workdir(g: Grading) -> None:
    """A fresh temporary copy to run in: the learner's folder, or the notebook alone when
    learners' files sit side by side (so no one's kernel sees another's notebook). Links are
    not followed; a folder over MAX_COPY_BYTES is refused."""
    g.sha256 = file_digest(g.submission.notebook)
    g.workdir = Path(tempfile.mkdtemp(prefix="gptcourse-grade-"))
    source = g.submission.folder
    if source is None:
        g.notebook_path = g.workdir / g.submission.notebook.name
        shutil.copyfile(g.submission.notebook, g.notebook_path)
        return
    total = 0
    for path in sorted(source.rglob("*")):
        if path.is_symlink() or not (path.is_file() or path.is_dir()):
            continue
        target = g.workdir / path.relative_to(source)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        total += path.stat().st_size
        if total > MAX_COPY_BYTES:
            g.error = f"the learner's folder is larger than {MAX_COPY_BYTES >> 20} MB"
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    g.notebook_path = g.workdir / g.submission.notebook.relative_to(source)


def read_notebook(g: Grading) -> None:
    from gptcourse.authoring import read_notebook as read

    if g.error:
        return
    try:
        g.nb = read(g.notebook_path)
    except ValueError as exc:
        g.error = str(exc).replace(str(g.notebook_path), g.submission.relative)
        return
    for cell in g.nb.cells:  # stale outputs (a "passed" typed in by hand) mean nothing here
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None


def find_exercises(g: Grading) -> None:
    """The lesson comes from the file name (NN_name.ipynb) when it names one; otherwise from
    the exercises its cells are tagged with or check. Every registered exercise of that lesson
    is graded, so one never defined shows as not attempted rather than missing."""
    from gptcourse.authoring import CHECK_CALL
    from gptcourse.course import LESSONS, lesson_of_notebook
    from gptcourse.exercises import registry

    names = {lesson.name for lesson in LESSONS}
    by_name = lesson_of_notebook(g.submission.notebook.name)
    claimed: list[str] = []
    for cell in (g.nb.cells if g.nb is not None else []):
        tag = cell.get("metadata", {}).get("gptcourse", {})
        ids = [tag.get("exercise")] if isinstance(tag, dict) else []
        if cell.get("cell_type") == "code":
            ids += CHECK_CALL.findall(cell.get("source", ""))
        for exercise_id in ids:
            lesson = str(exercise_id).split(".", 1)[0]
            if lesson in names and lesson not in claimed:
                claimed.append(lesson)
    if by_name is not None:
        g.lessons = [by_name.name]
        others = [lesson for lesson in claimed if lesson != by_name.name]
        if others and by_name.name not in claimed:
            g.notes.append(f"This notebook's cells are from lesson {', '.join(others)}, but its "
                           f"file name says lesson {by_name.name}: it was graded as "
                           f"{by_name.name}.")
    else:
        g.lessons = claimed
    g.exercises = [e for lesson in g.lessons for e in registry.of_lesson(lesson)]
    if not g.error and not g.exercises:
        g.error = ("no exercise to grade: the file name is not NN_lesson.ipynb and no cell "
                   "carries or checks an exercise of a lesson")


def kernel_spec_dir(root: Path) -> Path:
    """A kernelspec (in a folder of the grader's) whose kernel is `gptcourse.grading.kernel`."""
    spec = root / "kernels" / "gptcourse-grading"
    spec.mkdir(parents=True, exist_ok=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "gptcourse.grading.kernel", "-f", "{connection_file}"],
        "display_name": "gptcourse grading", "language": "python",
        "metadata": {"debugger": False}}), encoding="utf-8")
    return root / "kernels"


def kernel_env(g: Grading, home: Path) -> dict[str, str]:
    """The kernel's environment: only what Python needs, none of the grader's variables."""
    keep = ("PATH", "SYSTEMROOT", "WINDIR", "COMSPEC", "PATHEXT", "LANG", "LC_ALL", "LC_CTYPE",
            "VIRTUAL_ENV", "CONDA_PREFIX", "PYTHONPATH")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env.update({
        "HOME": str(home), "USERPROFILE": str(home), "TMPDIR": str(home), "TEMP": str(home),
        "TMP": str(home), "MPLBACKEND": "Agg", "MPLCONFIGDIR": str(home / ".mpl"),
        "JUPYTER_RUNTIME_DIR": str(home / ".runtime"), "IPYTHONDIR": str(home / ".ipython"),
        "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
        "GPTCOURSE_GRADING_LESSONS": ",".join(g.lessons),
        "GPTCOURSE_GRADING_MEMORY_MB": str(g.limits.memory_mb),
    })
    return env


def _client_class():
    from nbclient import NotebookClient

    from gptcourse.grading.sandbox import REPLY_MIME

    class GradingClient(NotebookClient):
        """nbclient that keeps no cell output: it counts the bytes, keeps the first few cell
        errors for the feedback and the grader's replies, and drops everything else."""

        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.output_bytes, self.replies, self.errors = 0, [], []

        def output(self, outs, msg, display_id, cell_index):
            content, kind = msg.get("content", {}), msg.get("msg_type")
            data = content.get("data") if isinstance(content.get("data"), dict) else {}
            if kind in ("display_data", "execute_result") and REPLY_MIME in data:
                if len(self.replies) < 4:
                    self.replies.append(data[REPLY_MIME])
                return None
            if kind == "error" and len(self.errors) < OUTPUT_KEPT:
                self.errors.append((cell_index, str(content.get("ename", ""))[:100],
                                    str(content.get("evalue", ""))[:300]))
            self.output_bytes += len(str(content.get("text", ""))) + \
                sum(len(str(v)) for v in data.values())
            return None

    return GradingClient


async def execute_notebook(g: Grading, spec_root: Path) -> None:
    """Start a kernel of its own (cwd: the copy) and run every code cell, errors allowed."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager

    if g.error:
        return
    home = g.workdir.parent / (g.workdir.name + "-home")
    home.mkdir()
    km = AsyncKernelManager(kernel_name="gptcourse-grading",
                            kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(spec_root)]))
    km.connection_file = str(home / ".runtime" / f"kernel-{secrets.token_hex(8)}.json")
    (home / ".runtime").mkdir()
    g.client = _client_class()(g.nb, km=km, timeout=None, allow_errors=True,
                               startup_timeout=int(g.limits.startup_timeout),
                               record_timing=False, shutdown_kernel="immediate",
                               extra_arguments=["--IPKernelApp.log_level=ERROR",
                                                "--HistoryManager.enabled=False"])
    # The kernel's own stdout and stderr (not its cells' output, which travels as messages)
    # go nowhere: a notebook writing to file descriptor 1 must not flood the grader's terminal.
    await g.client.async_start_new_kernel(cwd=str(g.notebook_path.parent),
                                          env=kernel_env(g, home), stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL)
    await g.client.async_start_new_kernel_client()
    for index, cell in enumerate(g.nb.cells):
        if cell.cell_type == "code":
            g.phase = f"running the notebook's cell {index}"
            await g.client.async_execute_cell(cell, index)


def choose_seed(g: Grading) -> None:
    """From the OS's randomness, after the notebook ran: nothing in it could know it."""
    g.seed = int.from_bytes(os.urandom(4), "little")


async def evaluate_functions(g: Grading) -> None:
    """For each exercise, the cases go to the kernel and the encoded outcomes come back."""
    import nbformat

    from gptcourse.grading.codec import dumps_cases

    if g.error or g.kernel_lost:
        return
    for exercise in g.exercises:
        nonce = secrets.token_hex(8)
        cases = exercise.cases(g.seed)
        g.phase = f"running `{exercise.name}` on the grader's cases"
        code = (f"__import__('gptcourse.grading.sandbox', fromlist=['evaluate'])"
                f".evaluate({exercise.name!r}, {dumps_cases(cases)!r}, {nonce!r})")
        g.client.replies.clear()
        g.nb.cells.append(nbformat.v4.new_code_cell(code))  # nbclient files cells by index
        await g.client.async_execute_cell(g.nb.cells[-1], len(g.nb.cells) - 1,
                                          store_history=False)
        g.replies[exercise.id] = (cases, _reply(g.client.replies, nonce))


def _reply(replies: list, nonce: str) -> Any:
    for text in replies:
        try:
            reply = json.loads(text) if isinstance(text, str) and len(text) < (80 << 20) else None
        except ValueError:
            continue
        if isinstance(reply, dict) and reply.get("nonce") == nonce:
            return reply
    return None


def judge_outcomes(g: Grading) -> None:
    """One result per exercise, decided here: the learner's process only sent values."""
    for exercise in g.exercises:
        if g.error:
            g.results.append(_error_result(exercise, g.error))
        elif exercise.id not in g.replies:
            g.results.append(_error_result(exercise, g.kernel_lost or "not evaluated"))
        else:
            cases, reply = g.replies[exercise.id]
            unparsed = (_syntax_error_result(g, exercise)
                        if isinstance(reply, dict) and reply.get("missing") else None)
            g.results.append(unparsed or _judge(exercise, cases, reply).to_dict())
    if g.error and not g.exercises:
        g.results.append({"exercise": "", "title": "", "status": ERROR, "points": 0,
                          "message": g.error, "hint": "", "details": "", "score": 0,
                          "passed": False})


def _syntax_error_result(g: Grading, exercise) -> dict | None:
    """An error result when the exercise's function is missing because the cell meant to
    define it (tagged as its solution, or holding `def name`) is not valid Python: the learner
    wrote something, so it is not "not attempted"; Python ran none of that cell."""
    defines = re.compile(rf"^\s*(?:async\s+def|def|class)\s+{re.escape(exercise.name)}\b",
                         re.MULTILINE)
    for index, name, value in (g.client.errors if g.client is not None else []):
        if name not in SYNTAX_ERRORS or not 0 <= index < len(g.nb.cells):
            continue
        cell = g.nb.cells[index]
        tag = cell.get("metadata", {}).get("gptcourse", {})
        tagged = isinstance(tag, dict) and tag.get("exercise") == exercise.id and \
            tag.get("role") == "solution"
        if not (tagged or defines.search(cell.get("source", ""))):
            continue
        where = _WHERE.search(value)
        problem = value[:where.start()] if where else value
        line = f" at line {where.group(1)} of that cell" if where else ""
        return _error_result(exercise, f"`{exercise.name}` could not be graded: the cell that "
                                       f"defines it (cell {index}) has a {name}{line}: "
                                       f"{problem}. Python ran none of that cell, so "
                                       f"`{exercise.name}` was never defined. Run the cell to "
                                       f"see the line marked, fix it, and submit again.")
    return None


def _error_result(exercise, message: str) -> dict:
    return {"exercise": exercise.id, "title": exercise.title, "status": ERROR,
            "points": exercise.points, "message": message, "hint": "", "details": "",
            "score": 0, "passed": False}


def _judge(exercise, cases, reply) -> CheckResult:
    from gptcourse.grading.codec import CodecError, loads_outcomes

    def result(status: str, message: str, hint: str = "") -> CheckResult:
        return CheckResult(exercise=exercise.id, title=exercise.title, status=status,
                           points=exercise.points, message=message, hint=hint)

    if reply is None:
        return result(FAILED, f"The notebook's kernel sent no result for `{exercise.name}`: "
                              f"something in the notebook stopped the grader's request.")
    if reply.get("missing"):
        return result(NOT_ATTEMPTED, f"Not attempted: the notebook defines no function "
                                     f"`{exercise.name}` (it should be `{exercise.signature}`).")
    if reply.get("not_callable"):
        return result(FAILED, f"`{exercise.name}` is a {str(reply['not_callable'])[:60]} in "
                              f"this notebook, not a function.")
    try:
        outcomes = loads_outcomes(reply.get("outcomes", ""))
    except (CodecError, TypeError) as exc:
        return result(FAILED, f"The grader could not read what `{exercise.name}` returned: "
                              f"{exc}.")
    called = [str(name)[:80] for name in reply.get("reference_called", []) or []][:3]
    if called or any(o.error is not None and o.error.type_name == "ReferenceUnavailable"
                     for o in outcomes):
        names = ", ".join(called) or f"gptcourse.{exercise.lesson}"
        return result(FAILED, f"`{exercise.name}` calls the course's reference implementation "
                              f"({names}), which is not available while grading: this "
                              f"exercise counts only your own code.",
                      hint="Write the computation yourself; the reference is there to use in "
                           "later lessons, not in the exercise that builds it.")
    try:
        return exercise.judge(cases, outcomes)
    except Exception as exc:  # a value the contract could not handle: the case fails
        return result(FAILED, f"The grader could not judge `{exercise.name}`'s results "
                              f"({type(exc).__name__}: {str(exc)[:200]}).")


async def stop_kernel(g: Grading) -> None:
    """Kill the kernel's process group (whatever state it is in) and remove the copy."""
    from jupyter_core.utils import ensure_async

    client = g.client
    if client is not None:
        km = client.km
        try:
            if client.kc is not None:
                client.kc.stop_channels()
        except Exception:
            pass
        await _kill(g)
        try:
            if km is not None:
                await ensure_async(km.cleanup_resources())
        except Exception:
            pass
        g.output_bytes = client.output_bytes
        g.cell_errors = [f"cell {i} raised {name}: {value}" for i, name, value in client.errors
                         if name != "ReferenceUnavailable"]
        switched_off = [str(i) for i, name, _ in client.errors if name == "ReferenceUnavailable"]
        if switched_off:
            cells = f"Cell{'s' * (len(switched_off) > 1)} {', '.join(switched_off)}"
            g.instructor_notes.append(f"{cells} used the lesson's reference implementation, "
                                      f"which is switched off while grading; that costs no "
                                      f"points (only the exercises count).")
        if client.output_bytes > 1 << 20:
            g.notes.append(f"The notebook printed {client.output_bytes / 1e6:.1f} MB; the "
                           f"grader keeps none of a notebook's output.")
    if g.workdir is not None:
        shutil.rmtree(g.workdir, ignore_errors=True)
        shutil.rmtree(g.workdir.parent / (g.workdir.name + "-home"), ignore_errors=True)


async def grade_submission(submission: Submission, limits: Limits, spec_root: Path) -> dict:
    """Run the chain on one submission; never raises for what the notebook does."""
    g = Grading(submission, limits)
    try:
        copy_to_workdir(g)
        read_notebook(g)
        find_exercises(g)
        if not g.error:
            await _run_with_limits(g, spec_root)
        judge_outcomes(g)
    except Exception as exc:  # a bug of ours, or a file gone mid-batch: record it, go on
        g.error = g.error or f"the grader failed on this notebook: {type(exc).__name__}: {exc}"
        g.results = []
        judge_outcomes(g)
    finally:
        await stop_kernel(g)
    if g.kernel_lost:
        g.notes.append(g.kernel_lost[0].upper() + g.kernel_lost[1:] + ".")
    return g.record()


async def _run_with_limits(g: Grading, spec_root: Path) -> None:
    """The kernel's part under the wall-clock limit. On timeout the kernel's process group is
    killed first, so nothing of the notebook outlives its time, then the task is cancelled."""
    from nbclient.exceptions import DeadKernelError

    task = asyncio.ensure_future(_run(g, spec_root))
    done, _ = await asyncio.wait({task}, timeout=g.limits.timeout)
    if not done:
        g.kernel_lost = (f"timed out while {g.phase}: the notebook and its functions did not "
                         f"finish within {g.limits.timeout:g} s, so its kernel was stopped")
        await _kill(g)
        task.cancel()
        try:
            await task
        except (asyncio.CancelledError, Exception):  # what nbclient says of the killed kernel
            pass
        return
    try:
        task.result()
    except DeadKernelError:
        g.kernel_lost = (f"the notebook's kernel died while {g.phase} (it exited, was killed, "
                         f"or ran out of memory)")
    except RuntimeError as exc:  # nbclient: the kernel failed to start or went away
        g.kernel_lost = f"the notebook's kernel stopped while {g.phase}: {str(exc)[:200]}"
        if g.phase.startswith("starting"):
            g.kernel_lost += (" (if every notebook shows this, the grader's limits are too "
                              "tight for Python itself: raise --memory)")


async def _kill(g: Grading) -> None:
    km = g.client.km if g.client is not None else None
    try:
        if km is not None and km.has_kernel:
            await km.shutdown_kernel(now=True)  # SIGKILL to the kernel's process group
    except Exception:
        pass


async def _run(g: Grading, spec_root: Path) -> None:
    await execute_notebook(g, spec_root)
    choose_seed(g)
    await evaluate_functions(g)
