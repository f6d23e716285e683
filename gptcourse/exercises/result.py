"""CheckResult: one verdict on one exercise, shown the same way in a notebook, a terminal and
a gradebook."""

from __future__ import annotations

import html
import re
from dataclasses import asdict, dataclass
from typing import Any

PASSED, FAILED, NOT_ATTEMPTED = "passed", "failed", "not_attempted"
STATUSES = (PASSED, FAILED, NOT_ATTEMPTED)

# The MIME type under which a result travels in notebook outputs; `gptcourse check` reads it.
MIME_TYPE = "application/vnd.gptcourse.check+json"

# (mark, verdict, ink). The ink follows JupyterLab's theme (light or dark) where it runs and
# falls back to colours that read on white and on black alike elsewhere.
_LOOK = {
    PASSED: ("✓", "passed", "var(--jp-success-color1, #2e8540)"),
    FAILED: ("✗", "not yet right", "var(--jp-error-color1, #d32f2f)"),
    NOT_ATTEMPTED: ("○", "not attempted yet", "var(--jp-ui-font-color2, #808080)"),
}
# Tints over whatever the page's background is, so the box reads in light and dark themes.
_TINT = {PASSED: "rgba(46, 133, 64, 0.14)", FAILED: "rgba(211, 47, 47, 0.12)",
         NOT_ATTEMPTED: "rgba(128, 128, 128, 0.12)"}
_CODE_STYLE = ("background:rgba(128, 128, 128, 0.2);color:inherit;padding:0 3px;"
               "border-radius:3px;font-family:var(--jp-code-font-family, monospace)")
_BACKTICKS = re.compile(r"`([^`\n]+)`")


def _html_text(text: str) -> str:
    """Text as HTML: escaped first (learner text stays text), then `code` shown as code."""
    return _BACKTICKS.sub(rf'<code style="{_CODE_STYLE}">\1</code>', html.escape(text))


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
        mark, verdict, _ = _LOOK[self.status]
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
        mark, verdict, ink = _LOOK[self.status]
        e = html.escape
        parts = [
            f'<div style="border-left:5px solid {ink};background:{_TINT[self.status]};'
            f'padding:6px 10px;margin:4px 0;font-family:var(--jp-ui-font-family, sans-serif);'
            f'color:var(--jp-content-font-color1, inherit)">',
            f'<b style="color:{ink}">{mark} {e(verdict)}</b> &nbsp;'
            f'<code style="{_CODE_STYLE}">{e(self.exercise)}</code> — {e(self.title)} '
            f'<span style="float:right">{self.score}/{self.points}</span>',
        ]
        if self.message:
            parts.append(f'<div style="margin-top:4px;white-space:pre-wrap">'
                         f'{_html_text(self.message)}</div>')
        if self.details:
            parts.append(f'<pre style="margin:4px 0;padding:4px 6px;color:inherit;'
                         f'background:rgba(128, 128, 128, 0.14);border:none;white-space:pre-wrap">'
                         f'{e(self.details)}</pre>')
        if self.hint:
            parts.append(f'<div style="margin-top:4px"><b>Hint:</b> '
                         f'<span style="white-space:pre-wrap">{_html_text(self.hint)}</span></div>')
        parts.append("</div>")
        return "".join(parts)

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict[str, Any]:
        return {"text/plain": str(self), "text/html": self._repr_html_(),
                MIME_TYPE: self.to_dict()}
