"""The kernel that runs one submitted notebook: `python -m gptcourse.grading.kernel -f FILE`.

Before IPython starts it sets the process's limits, installs grading mode (`sandbox.install`)
and, once the kernel has read its connection file, deletes it, so that code in this kernel
cannot find the keys of other kernels' files through its own path. Settings come from the
environment the grader gives the kernel:

  GPTCOURSE_GRADING_LESSONS    comma-separated lessons whose references are blocked
  GPTCOURSE_GRADING_MEMORY_MB  address-space limit in MiB (POSIX only; see `limit_memory`)
"""

from __future__ import annotations

import os
import sys

MEMORY_ENV, LESSONS_ENV = "GPTCOURSE_GRADING_MEMORY_MB", "GPTCOURSE_GRADING_LESSONS"


def memory_limit_supported() -> bool:
    """Whether this OS enforces an address-space limit: Linux does; macOS accepts the call
    but does not enforce it; Windows has no `resource` module."""
    return sys.platform.startswith("linux")


def limit_memory(megabytes: int) -> bool:
    """Cap this process's address space (children inherit it); True where it is enforced."""
    if not memory_limit_supported() or megabytes <= 0:
        return False
    import resource

    limit = megabytes << 20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a crash writes no core file
    return True


def main() -> None:
    limit_memory(int(os.environ.get(MEMORY_ENV, "0") or 0))
    from gptcourse.grading import sandbox

    sandbox.install([name for name in os.environ.get(LESSONS_ENV, "").split(",") if name])
    from ipykernel.kernelapp import IPKernelApp

    app = IPKernelApp.instance()
    app.initialize(sys.argv[1:])
    try:
        os.remove(app.abs_connection_file)
    except OSError:
        pass
    app.start()


if __name__ == "__main__":
    main()
