"""The workshop view: exercises × learners from a results folder, as a table and a heatmap."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gptcourse.grading.results import load_records, rows
from gptcourse.grading.steps import ERROR
from gptcourse.exercises.result import FAILED, NOT_ATTEMPTED, PASSED

# Status → (table mark, heatmap level); the levels order the colour scale.
MARKS = {PASSED: ("✓", 3), FAILED: ("✗", 1), NOT_ATTEMPTED: ("·", 0), ERROR: ("!", 2)}
MISSING = ("", -1)


@dataclass(frozen=True)
class Progress:
    learners: list[str]
    exercises: list[str]
    status: dict[tuple[str, str], str]  # (learner, exercise) → status

    def passed_share(self, exercise: str) -> float:
        done = sum(self.status.get((l, exercise)) == PASSED for l in self.learners)
        return done / max(1, len(self.learners))


def load_progress(results: Path) -> Progress:
    from gptcourse.exercises import registry

    table = [r for r in rows(load_records(results)) if r["exercise"]]
    learners = sorted({r["learner"] for r in load_records(results)})
    known = list(registry)
    order = {e: i for i, e in enumerate(known)}
    exercises = sorted({r["exercise"] for r in table}, key=lambda e: (order.get(e, len(order)), e))
    status = {(r["learner"], r["exercise"]): r["status"] for r in table}
    return Progress(learners, exercises, status)


def text_table(p: Progress) -> str:
    """Exercises down, learners across (names shortened to fit), a share passed per row."""
    names = [l if len(l) <= 10 else l[:9] + "…" for l in p.learners]
    width = max([len("exercise")] + [len(e) for e in p.exercises])
    col = max([3] + [len(n) for n in names])
    lines = [f"{'exercise':<{width}}  " + " ".join(f"{n:>{col}}" for n in names) + "  passed"]
    for exercise in p.exercises:
        marks = [MARKS.get(p.status.get((l, exercise)), MISSING)[0] for l in p.learners]
        lines.append(f"{exercise:<{width}}  " + " ".join(f"{m:>{col}}" for m in marks)
                     + f"  {p.passed_share(exercise):>5.0%}")
    lines.append("✓ passed  ✗ failed  · not attempted  ! not graded (error)  blank: no notebook")
    return "\n".join(lines)


def heatmap(p: Progress, path: Path) -> Path:
    """A PNG of the same grid: a row per exercise, a column per learner."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    grid = np.array([[MARKS.get(p.status.get((l, e)), MISSING)[1] for l in p.learners]
                     for e in p.exercises], dtype=float).reshape(len(p.exercises), len(p.learners))
    colours = ["#ffffff", "#d0d7de", "#cf222e", "#bf8700", "#2da44e"]  # missing … passed
    cmap = ListedColormap(colours)
    width = min(40.0, 3.5 + 0.32 * max(1, len(p.learners)))
    height = 2.2 + 0.42 * max(1, len(p.exercises))
    fig, ax = plt.subplots(figsize=(width, height), dpi=110)
    ax.imshow(grid + 1, cmap=cmap, vmin=-0.5, vmax=4.5, aspect="auto", interpolation="nearest")
    ax.set_xticks(range(len(p.learners)))
    ax.set_xticklabels([l if len(l) <= 14 else l[:13] + "…" for l in p.learners],
                       rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(p.exercises)))
    ax.set_yticklabels([f"{e}  ({p.passed_share(e):.0%})" for e in p.exercises], fontsize=9)
    ax.set_xticks(np.arange(-0.5, len(p.learners)), minor=True)
    ax.set_yticks(np.arange(-0.5, len(p.exercises)), minor=True)
    ax.grid(which="minor", color="white", linewidth=1.5)
    ax.tick_params(which="minor", length=0)
    ax.set_title(f"Where the room is: {len(p.learners)} learners, {len(p.exercises)} exercises "
                 f"(share passed beside each)", fontsize=10)
    legend = [Patch(color=colours[4], label="passed"), Patch(color=colours[2], label="failed"),
              Patch(color=colours[1], label="not attempted"),
              Patch(color=colours[3], label="not graded (error)"),
              Patch(facecolor=colours[0], edgecolor="#d0d7de", label="no notebook")]
    ax.legend(handles=legend, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8,
              frameon=False)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)
    return path
