"""The workshop view: exercises × learners from a results folder, as a table and a heatmap."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gptcourse.atomic import atomic_file
from gptcourse.grading.results import load_records, rows
from gptcourse.grading.steps import ERROR
from gptcourse.exercises.result import FAILED, NOT_ATTEMPTED, PASSED

# Status → (table mark, heatmap level); the levels order the colour scale.
MARKS = {PASSED: ("✓", 3), FAILED: ("✗", 1), NOT_ATTEMPTED: ("○", 0), ERROR: ("!", 2)}
# The row for notebooks that could not be graded at all (not a notebook, no lesson found).
UNREADABLE = "(notebook not graded)"
MISSING = ("", -1)


@dataclass(frozen=True)
class Progress:
    learners: list[str]
    exercises: list[str]
    status: dict[tuple[str, str], str]  # (learner, exercise) → status

    def submitted(self, exercise: str) -> int:
        """How many learners handed in a notebook that was graded for `exercise`."""
        return sum((l, exercise) in self.status for l in self.learners)

    def passed_share(self, exercise: str) -> float:
        """The share of those who handed it in (not of the whole room) who passed it."""
        done = sum(self.status.get((l, exercise)) == PASSED for l in self.learners)
        return done / max(1, self.submitted(exercise))

    def passed_label(self, exercise: str) -> str:
        """'67% of 3': the share passed and how many it is a share of."""
        return f"{self.passed_share(exercise):.0%} of {self.submitted(exercise)}"


def load_progress(results: Path) -> Progress:
    from gptcourse.exercises import registry

    records = load_records(results)
    table = [{**r, "exercise": r["exercise"] or UNREADABLE} for r in rows(records)]
    learners = sorted({r["learner"] for r in records})
    known = list(registry)
    order = {e: i for i, e in enumerate(known)}
    exercises = sorted({r["exercise"] for r in table}, key=lambda e: (order.get(e, len(order)), e))
    status = {(r["learner"], r["exercise"]): r["status"] for r in table}
    return Progress(learners, exercises, status)


def text_table(p: Progress) -> str:
    """Exercises down, learners across (names shortened to fit), and per row the share passed
    of the learners who handed in that lesson, with their number."""
    names = [l if len(l) <= 10 else l[:9] + "…" for l in p.learners]
    width = max([len("exercise")] + [len(e) for e in p.exercises])
    col = max([3] + [len(n) for n in names])
    lines = [f"{'exercise':<{width}}  " + " ".join(f"{n:>{col}}" for n in names)
             + "  passed, of those who handed it in"]
    for exercise in p.exercises:
        marks = [MARKS.get(p.status.get((l, exercise)), MISSING)[0] for l in p.learners]
        lines.append(f"{exercise:<{width}}  " + " ".join(f"{m:>{col}}" for m in marks)
                     + f"  {p.passed_label(exercise)}")
    lines.append("✓ passed  ✗ failed  ○ not attempted  ! not graded (error)  blank: no notebook")
    return "\n".join(lines)


def heatmap(p: Progress, path: Path) -> Path:
    """A PNG of the same grid: a row per exercise, a column per learner."""
    import numpy as np
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    grid = np.array([[MARKS.get(p.status.get((l, e)), MISSING)[1] for l in p.learners]
                     for e in p.exercises], dtype=float).reshape(len(p.exercises), len(p.learners))
    colours = ["#ffffff", "#d0d7de", "#cf222e", "#bf8700", "#2da44e"]  # missing … passed
    learners = [l if len(l) <= 16 else l[:15] + "…" for l in p.learners]
    rows = [e if e == UNREADABLE else f"{e}  {p.passed_label(e)}" for e in p.exercises]
    # Sizes in inches, from the labels' lengths, so that nothing is cut off at any size.
    cell = 0.38
    left = 0.3 + 0.075 * max([len(r) for r in rows] + [8])
    bottom = 0.45 + 0.06 * max([len(l) for l in learners] + [4])
    legend, top = 1.9, 0.6
    grid_w = max(2.5, cell * len(p.learners))
    grid_h = max(1.0, cell * len(p.exercises))
    # A Figure of its own, not pyplot's: drawing it neither switches matplotlib's backend nor
    # joins the figures a notebook shows, so the notebook's own inline plots keep working.
    fig = Figure(figsize=(left + grid_w + legend, bottom + grid_h + top), dpi=110)
    width, height = fig.get_size_inches()
    ax = fig.add_axes((left / width, bottom / height, grid_w / width, grid_h / height))
    ax.imshow(grid + 1, cmap=ListedColormap(colours), vmin=-0.5, vmax=4.5, aspect="auto",
              interpolation="nearest")
    if len(p.learners) <= 60:  # marks as well as colours, for readers who cannot tell them
        for (i, j), level in np.ndenumerate(grid):
            mark = next((m for m, lv in MARKS.values() if lv == level), "")
            ax.text(j, i, mark, ha="center", va="center", fontsize=9,
                    color="white" if level in (1, 3) else "#1f2328")
    ax.set_xticks(range(len(p.learners)))
    ax.set_xticklabels(learners, rotation=60, ha="right", rotation_mode="anchor", fontsize=9)
    ax.set_yticks(range(len(p.exercises)))
    ax.set_yticklabels(rows, fontsize=9)
    ax.set_xticks(np.arange(-0.5, len(p.learners)), minor=True)
    ax.set_yticks(np.arange(-0.5, len(p.exercises)), minor=True)
    ax.grid(which="minor", color="white", linewidth=1.5)
    ax.tick_params(which="both", length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    plural = lambda n, word: f"{n} {word}{'s' * (n != 1)}"  # noqa: E731
    fig.suptitle(f"{plural(len(p.learners), 'learner')} × "
                 f"{plural(len([e for e in p.exercises if e != UNREADABLE]), 'exercise')} "
                 f"(after each exercise: share passed, of how many handed it in)", fontsize=10,
                 x=left / width, ha="left", y=1 - 0.15 / height, va="top")
    handles = [Patch(color=colours[4], label="✓ passed"), Patch(color=colours[2], label="✗ failed"),
               Patch(color=colours[1], label="○ not attempted"),
               Patch(color=colours[3], label="! not graded (error)"),
               Patch(facecolor=colours[0], edgecolor="#d0d7de", label="no notebook")]
    fig.legend(handles=handles, loc="upper left", fontsize=8, frameon=False,
               bbox_to_anchor=((left + grid_w + 0.15) / width, 1 - top / height))
    with atomic_file(path) as f:
        fig.savefig(f, format="png")
    return path
