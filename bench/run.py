"""The course's benchmarks: `python bench/run.py [NAME ...]` (or `make bench`).

Each `bench/bench_<name>.py` defines `run() -> list[Figure]`. Figures are measured in one run,
as ratios against a reference measured in the same run where a ratio makes sense, so that
numbers taken on different machines stay comparable. Nothing here is a test: targets are
printed beside the figures, not asserted.
"""

from __future__ import annotations

import importlib
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Figure:
    name: str
    value: float
    unit: str
    target: str = ""

    def __str__(self) -> str:
        return f"{self.name:<58} {self.value:>10.4g} {self.unit:<8} {self.target}"


def median_seconds(fn: Callable[[], object], repeat: int, warmup: int = 2) -> float:
    """Median wall-clock seconds of `fn()` over `repeat` calls, after `warmup` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(names: list[str]) -> int:
    sys.path.insert(0, str(HERE))
    available = sorted(p.stem[len("bench_"):] for p in HERE.glob("bench_*.py"))
    unknown = [n for n in names if n not in available]
    if unknown:
        print(f"unknown benchmark(s) {unknown}; available: {available}", file=sys.stderr)
        return 2
    for name in names or available:
        print(f"## {name}", flush=True)
        for figure in importlib.import_module(f"bench_{name}").run():
            print(figure, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
