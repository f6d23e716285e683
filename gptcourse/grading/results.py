"""What a batch leaves in RESULTS_DIR, every file written atomically (`gptcourse.atomic`):

  submissions/<key>.json   one record per graded notebook (the resume point)
  gradebook.csv            learner, lesson, exercise, status, points, max points
  gradebook.json           the same rows
  gradebook_learners.csv   one row per learner: learner, a column per exercise, total (points;
                           blank where the learner submitted no notebook of that lesson), the
                           layout Moodle's grade import ("CSV file") reads
  feedback/<learner>.html  the verdicts the learner saw in the notebook, as the grader found them
  instructor_log.txt       what the instructor should know and the learner need not see: notes
                           on how notebooks ran (cells that used a switched-off reference) and
                           notebooks the grader could not grade
"""

from __future__ import annotations

import csv
import hashlib
import html
import io
import json
import re
from pathlib import Path

from gptcourse.atomic import write_atomically
from gptcourse.exercises.result import STATUSES, CheckResult
from gptcourse.grading.steps import ERROR

COLUMNS = ("learner", "lesson", "exercise", "status", "points", "max points")
LEARNER, TOTAL = "learner", "total"  # gradebook_learners.csv's first and last columns


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(text: str) -> str:
    """A file name for learner-chosen text: readable, and distinct for distinct texts."""
    plain = _UNSAFE.sub("_", text).strip("._")[:80] or "learner"
    if plain == text:
        return plain
    return f"{plain}-{hashlib.sha256(text.encode('utf-8')).hexdigest()[:8]}"


def record_path(out: Path, relative: str) -> Path:
    return out / "submissions" / f"{safe_name(relative)}.json"


def load_records(out: Path) -> list[dict]:
    """Every readable record; a record that cannot be read is skipped (it will be regraded)."""
    records = []
    for path in sorted((out / "submissions").glob("*.json")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(record, dict) and isinstance(record.get("results"), list):
            records.append(record)
    return records


def rows(records: list[dict]) -> list[dict]:
    """Gradebook rows, one per learner and exercise, in learner then exercise order."""
    out = []
    for record in sorted(records, key=lambda r: (r["learner"], r["notebook"])):
        for result in record["results"]:
            exercise = result.get("exercise", "")
            out.append({"learner": record["learner"],
                        "lesson": exercise.split(".", 1)[0] if exercise else "",
                        "exercise": exercise, "status": result["status"],
                        "points": result.get("score", 0), "max points": result.get("points", 0)})
    return out


def write_results(out: Path, records: list[dict]) -> list[dict]:
    """Every file of RESULTS_DIR that is made from the records (all but the records
    themselves); returns the gradebook rows."""
    table = write_gradebook(out, records)
    write_learners_gradebook(out, table)
    write_feedback(out, records)
    write_instructor_log(out, records)
    return table


def _csv(fieldnames, table: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fieldnames, lineterminator="\n")
    writer.writeheader()
    for row in table:
        writer.writerow({k: _no_formula(v) for k, v in row.items()})
    return buffer.getvalue()


def write_gradebook(out: Path, records: list[dict]) -> list[dict]:
    table = rows(records)
    write_atomically(out / "gradebook.csv", _csv(COLUMNS, table))
    write_atomically(out / "gradebook.json", json.dumps(table, indent=1, ensure_ascii=False))
    return table


def learners_table(table: list[dict]) -> tuple[list[str], list[dict]]:
    """(columns, rows) of the per-learner gradebook: the learner, the points of every exercise
    graded for anyone (in the registry's order; the best, if a learner handed in a lesson
    twice), and the learner's total. An exercise of a lesson the learner submitted no notebook
    for is blank, not 0: not handed in is not the same as handed in and wrong, and Moodle's
    import reads a blank cell as no grade."""
    from gptcourse.exercises import registry

    order = {exercise_id: i for i, exercise_id in enumerate(registry)}
    exercises = sorted({r["exercise"] for r in table if r["exercise"]},
                       key=lambda e: (order.get(e, len(order)), e))
    learners: dict[str, dict] = {}
    for row in table:
        entry = learners.setdefault(row["learner"], {LEARNER: row["learner"]})
        if row["exercise"]:
            entry[row["exercise"]] = max(entry.get(row["exercise"], 0), row["points"])
    for entry in learners.values():
        entry[TOTAL] = sum(entry.get(e, 0) for e in exercises)
    return [LEARNER, *exercises, TOTAL], [learners[name] for name in sorted(learners)]


def write_learners_gradebook(out: Path, table: list[dict]) -> Path:
    columns, learners = learners_table(table)
    path = out / "gradebook_learners.csv"
    write_atomically(path, _csv(columns, learners))
    return path


def instructor_notes(record: dict) -> list[str]:
    """The lines the instructor's log holds for one record: its notes for the instructor,
    and every exercise that could not be graded, with why."""
    notes = list(record.get("instructor_notes", []))
    notes += [f"{r.get('exercise') or 'the notebook'} not graded: {r.get('message', '')}"
              for r in record["results"] if r.get("status") == ERROR]
    return [" ".join(note.split()) for note in notes]  # one line each, whatever it quotes


def write_instructor_log(out: Path, records: list[dict]) -> Path:
    """One line per note, `notebook: note`, in notebook order; a header says when there are
    none, so an empty log is never mistaken for a missing one."""
    lines = [f"{' '.join(record['notebook'].split())}: {note}"
             for record in sorted(records, key=lambda r: r["notebook"])
             for note in instructor_notes(record)]
    path = out / "instructor_log.txt"
    write_atomically(path, "# gptcourse grade: notes for the instructor, one per line\n"
                           + ("\n".join(lines) if lines else "(none)") + "\n")
    return path


def _no_formula(value):
    """A learner's folder name like '=HYPERLINK(...)' must not become a spreadsheet formula."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


_ERROR_LOOK = ('<div style="border-left:5px solid #9a6700;background:#fff8c5;padding:6px 10px;'
               'margin:4px 0;font-family:sans-serif;color:#1f2328">')


def _result_html(result: dict) -> str:
    if result.get("status") in STATUSES:
        return CheckResult.from_dict(result)._repr_html_()
    e = html.escape
    return (f'{_ERROR_LOOK}<b style="color:#9a6700">! not graded</b> &nbsp;'
            f'<code>{e(result.get("exercise", ""))}</code> — {e(result.get("title", ""))} '
            f'<span style="float:right">0/{int(result.get("points", 0))}</span>'
            f'<div style="margin-top:4px;white-space:pre-wrap">{e(result.get("message", ""))}'
            f'</div></div>')


def feedback_html(learner: str, records: list[dict]) -> str:
    """One page per learner: each notebook's verdicts, rendered as the notebook renders them.
    Every learner-controlled text goes through html.escape (CheckResult's rendering does too)."""
    e = html.escape
    score = sum(r.get("score", 0) for rec in records for r in rec["results"])
    total = sum(r.get("points", 0) for rec in records for r in rec["results"])
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>Feedback for {e(learner)}</title></head>",
             '<body style="font-family:sans-serif;max-width:60em;margin:2em auto;color:#1f2328">',
             f"<h1>Feedback for {e(learner)}</h1>", f"<p><b>{score}/{total}</b> points</p>"]
    for record in records:
        parts.append(f"<h2><code>{e(record['notebook'])}</code></h2>")
        if record.get("error"):
            parts.append(f"<p><b>This notebook could not be graded:</b> {e(record['error'])}</p>")
        for note in record.get("notes", []):
            parts.append(f"<p>{e(note)}</p>")
        for result in record["results"]:
            parts.append(_result_html(result))
        if record.get("cell_errors"):
            items = "".join(f"<li><code>{e(c)}</code></li>" for c in record["cell_errors"])
            parts.append(f"<details><summary>Cells that raised an error while the notebook "
                         f"ran</summary><ul>{items}</ul></details>")
        parts.append(f'<p style="color:#57606a;font-size:small">graded {e(str(record.get("graded_at", "")))}'
                     f"; random cases from seed {e(str(record.get('seed')))}; time limit "
                     f"{e(str(record.get('timeout_s')))} s; memory limit "
                     f"{e(str(record.get('memory_limit')))}</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_feedback(out: Path, records: list[dict]) -> None:
    by_learner: dict[str, list[dict]] = {}
    for record in sorted(records, key=lambda r: r["notebook"]):
        by_learner.setdefault(record["learner"], []).append(record)
    for learner, own in by_learner.items():
        write_atomically(out / "feedback" / f"{safe_name(learner)}.html",
                         feedback_html(learner, own))
