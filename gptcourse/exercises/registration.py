"""The registry of exercises: every exercise of every lesson, by id.

Each lesson's checks live in `gptcourse.exercises.<lesson>`, which registers them when it is
imported. The registry imports a lesson's module the first time one of its exercises is asked
for, so checking lesson 00 does not import torch.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Iterator, Mapping

from gptcourse.course import LESSONS
from gptcourse.exercises.contract import Exercise


class UnknownExercise(KeyError):
    """An exercise id that no lesson registers; its message lists the valid ids."""

    def __str__(self) -> str:
        return str(self.args[0])


class Registry(Mapping[str, Exercise]):
    def __init__(self) -> None:
        self._exercises: dict[str, Exercise] = {}
        self._loaded: set[str] = set()

    def register(self, exercise: Exercise) -> Exercise:
        if exercise.id in self._exercises:
            raise ValueError(f"exercise {exercise.id!r} is registered twice")
        if exercise.lesson not in {lesson.name for lesson in LESSONS}:
            raise ValueError(f"exercise {exercise.id!r} names no lesson of gptcourse.course")
        self._exercises[exercise.id] = exercise
        return exercise

    def _load(self, lesson: str) -> None:
        if lesson not in self._loaded:
            self._loaded.add(lesson)
            module = f"gptcourse.exercises.{lesson}"
            if importlib.util.find_spec(module) is not None:  # a lesson may have no exercises
                importlib.import_module(module)

    def _load_all(self) -> None:
        for lesson in LESSONS:
            self._load(lesson.name)

    def __getitem__(self, exercise_id: str) -> Exercise:
        if not isinstance(exercise_id, str):
            raise TypeError(f"an exercise id is a string like 'welcome.softmax', "
                            f"got {type(exercise_id).__name__}")
        lesson = exercise_id.split(".", 1)[0]
        if lesson in {lesson.name for lesson in LESSONS}:
            self._load(lesson)
        if exercise_id not in self._exercises:
            self._load_all()
            raise UnknownExercise(f"there is no exercise {exercise_id!r}. The exercises are: "
                           f"{', '.join(self)}")
        return self._exercises[exercise_id]

    def __iter__(self) -> Iterator[str]:
        self._load_all()
        return iter(sorted(self._exercises, key=self._order))

    def __len__(self) -> int:
        self._load_all()
        return len(self._exercises)

    def of_lesson(self, lesson: str) -> list[Exercise]:
        """The exercises of one lesson, in the order they were registered (the lesson's)."""
        self._load(lesson)
        return [e for e in self._exercises.values() if e.lesson == lesson]

    def _order(self, exercise_id: str) -> tuple[int, int]:
        names = [lesson.name for lesson in LESSONS]
        return names.index(self._exercises[exercise_id].lesson), \
            list(self._exercises).index(exercise_id)


registry = Registry()
register = registry.register
