"""How long `import gptcourse` takes in a fresh interpreter, against `import numpy`."""

from __future__ import annotations

import statistics
import subprocess
import sys

from run import Figure

PROBE = "import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"


def _import_seconds(module: str, repeat: int = 7) -> float:
    return statistics.median(
        float(subprocess.run([sys.executable, "-c", PROBE.format(module=module)],
                             capture_output=True, text=True, check=True).stdout)
        for _ in range(repeat))


def run() -> list[Figure]:
    ours, numpy = _import_seconds("gptcourse"), _import_seconds("numpy")
    return [
        Figure("import gptcourse, fresh interpreter: median", ours * 1e3, "ms"),
        Figure("  ratio to import numpy alone", ours / numpy, "x",
               "torch and matplotlib load only when a lesson needs them"),
    ]
