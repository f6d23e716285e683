"""CheckResult: one verdict on one exercise, shown the same way in a notebook, a terminal and
a gradebook."""

from __future__ import annotations

import html
from dataclasses import asdict, dataclass
from typing import Any

PASSED, FAILED, NOT_ATTEMPTED = "passed", "failed", "not_attempted"
STATUSES = (PASSED, FAILED, NOT_ATTEMPTED)

# The MIME type under which a result travels in notebook outputs; `gptcourse check` reads it.
MIME_TYPE = "application/vnd.gptcourse.check+json"

_LOOK = {
    PASSED: ("✓", "passed", "#1a7f37", "#dafbe1"),
    FAILED: ("✗", "not yet right", "#cf222e", "#ffebe9"),
    NOT_ATTEMPTED: ("○", "not attempted yet", "#57606a", "#f6f8fa"),
}


@dataclass(frozen=True)
class CheckResult:
    """The verdict of `check(exercise_id, fn)`.

    status is one of "passed", "failed", "not_attempted"; message says what happened in the
    learner's terms; hint aims at the likely misconception; details holds the learner's own
    traceback frames when their code raised.
    """

    exercise: str
    title: str
    status: str
    points: int
    message: str
    hint: str = ""
    details: str = ""

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")

    @property
    def passed(self) -> bool:
        return self.status == PASSED

    @property
    def score(self) -> int:
        """All or nothing: a function that is right on some inputs only is not yet right."""
        return self.points if self.passed else 0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed, "score": self.score}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "CheckResult":
        fields = ("exercise", "title", "status", "points", "message", "hint", "details")
        return cls(**{k: data[k] for k in fields if k in data})

    def __str__(self) -> str:
        mark, verdict, _, _ = _LOOK[self.status]
        lines = [f"{mark} {self.exercise} ({self.title}): {verdict} — "
                 f"{self.score}/{self.points} point{'s' * (self.points != 1)}"]
        if self.message:
            lines.append("  " + self.message.replace("\n", "\n  "))
        if self.details:
            lines.append("  " + self.details.rstrip().replace("\n", "\n  "))
        if self.hint:
            lines.append("  Hint: " + self.hint.replace("\n", "\n  "))
        return "\n".join(lines)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        mark, verdict, ink, paper = _LOOK[self.status]
        e = html.escape
        parts = [
            f'<div style="border-left:5px solid {ink};background:{paper};padding:6px 10px;'
            f'margin:4px 0;font-family:sans-serif;color:#1f2328">',
            f'<b style="color:{ink}">{mark} {e(verdict)}</b> &nbsp;'
            f'<code>{e(self.exercise)}</code> — {e(self.title)} '
            f'<span style="float:right">{self.score}/{self.points}</span>',
        ]
        if self.message:
            parts.append(f'<div style="margin-top:4px;white-space:pre-wrap">{e(self.message)}</div>')
        if self.details:
            parts.append(f'<pre style="margin:4px 0;padding:4px;background:#ffffff80">'
                         f'{e(self.details)}</pre>')
        if self.hint:
            parts.append(f'<div style="margin-top:4px"><b>Hint:</b> '
                         f'<span style="white-space:pre-wrap">{e(self.hint)}</span></div>')
        parts.append("</div>")
        return "".join(parts)

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict[str, Any]:
        return {"text/plain": str(self), "text/html": self._repr_html_(),
                MIME_TYPE: self.to_dict()}
