"""A time and a memory limit on one call of learner code, on Linux, macOS and Windows alike.

`within_limits(call, seconds, memory_bytes)` runs `call()` in the calling thread while a
watchdog thread watches the clock and the process's memory. When either runs out, the
watchdog raises `TimeLimitReached` or `MemoryLimitReached` inside the calling thread with
CPython's `PyThreadState_SetAsyncExc`. That needs no signal (`signal.alarm` exists on POSIX
only, and only in the main thread), so it works the same in Jupyter's kernel, in the grader's
kernel and in a plain script, on every OS.

Both exceptions derive from BaseException, so a learner's `except Exception:` does not swallow
them, and the watchdog raises again every REPEAT seconds until the call has ended, so a loop
that absorbs one (`try: work() except: pass` inside it) meets the next outside its `try`.

What this cannot do: a bare `except:` (or `except BaseException:`) wrapped round the very loop
that never ends absorbs every stop, as it absorbs Ctrl-C; the check then does not return
(the grader's wall-clock limit still ends its kernel). And the exception is delivered when
the thread next runs Python bytecode, so one long call into C (a huge matrix product,
`time.sleep(600)`, a regular expression that backtracks for minutes) is stopped only once it
returns. Memory is read from the OS every
CHECK_EVERY seconds (the resident size on Linux and Windows; the peak resident size elsewhere,
which only grows), so what is stopped is memory that keeps growing, not one allocation larger
than the limit: that one fails at once with MemoryError, or meets the OS's own limits (the
grader's address-space limit).
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
import time
from typing import Callable, TypeVar

T = TypeVar("T")

CHECK_EVERY = 0.05  # seconds between two looks at the clock and at memory
REPEAT = 0.5  # seconds between two raises while the call has not ended


class LimitReached(BaseException):
    """Raised into learner code by the watchdog; `except Exception` does not catch it."""


class TimeLimitReached(LimitReached):
    pass


class MemoryLimitReached(LimitReached):
    pass


def _raise_in(thread_id: int, exception: type[BaseException] | None) -> None:
    """Have `exception` raised in the thread at its next bytecode; None withdraws one that is
    still pending (ctypes passes None as a NULL pointer)."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread_id), ctypes.py_object(exception) if exception else None)


def resident_bytes() -> int | None:
    """This process's memory in bytes as the OS counts it, or None where it cannot be read."""
    try:
        if sys.platform.startswith("linux"):
            with open("/proc/self/statm", "rb") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        if sys.platform == "win32":
            return _windows_working_set()
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, else KiB
    except Exception:  # an OS we do not know: the time limit still holds
        return None


def _windows_working_set() -> int:
    from ctypes import wintypes

    class Counters(ctypes.Structure):  # PROCESS_MEMORY_COUNTERS
        _fields_ = [("cb", wintypes.DWORD), ("PageFaultCount", wintypes.DWORD)] + \
                   [(name, ctypes.c_size_t) for name in (
                       "PeakWorkingSetSize", "WorkingSetSize", "QuotaPeakPagedPoolUsage",
                       "QuotaPagedPoolUsage", "QuotaPeakNonPagedPoolUsage",
                       "QuotaNonPagedPoolUsage", "PagefileUsage", "PeakPagefileUsage")]

    counters = Counters(cb=ctypes.sizeof(Counters))
    kernel32 = ctypes.windll.kernel32
    kernel32.GetCurrentProcess.restype = wintypes.HANDLE
    if not kernel32.K32GetProcessMemoryInfo(kernel32.GetCurrentProcess(),
                                            ctypes.byref(counters), counters.cb):
        raise OSError("K32GetProcessMemoryInfo failed")
    return counters.WorkingSetSize


class _Watchdog(threading.Thread):
    def __init__(self, thread_id: int, seconds: float, memory_bytes: int | None) -> None:
        super().__init__(name="gptcourse-watchdog", daemon=True)
        self.thread_id = thread_id
        self.deadline = time.monotonic() + seconds
        start = resident_bytes() if memory_bytes else None
        self.memory_ceiling = None if start is None else start + memory_bytes
        self.lock = threading.Lock()
        self.armed = True
        self.ended = threading.Event()
        self.reached: type[LimitReached] | None = None
        self.last_raise = 0.0

    def _limit_reached(self) -> type[LimitReached] | None:
        if self.reached is not None:
            return self.reached
        if time.monotonic() >= self.deadline:
            return TimeLimitReached
        if self.memory_ceiling is not None:
            now = resident_bytes()
            if now is not None and now > self.memory_ceiling:
                return MemoryLimitReached
        return None

    def run(self) -> None:
        while not self.ended.wait(CHECK_EVERY):
            reached = self._limit_reached()
            if reached is None or time.monotonic() - self.last_raise < REPEAT:
                continue
            with self.lock:  # never raise once the call has ended (see `disarm`)
                if not self.armed:
                    return
                self.reached, self.last_raise = reached, time.monotonic()
                _raise_in(self.thread_id, reached)

    def disarm(self) -> None:
        """After this returns, nothing more is raised into the calling thread. Safe to call
        more than once, and retried when a raise lands while it runs."""
        while True:
            try:
                with self.lock:
                    self.armed = False
                    _raise_in(self.thread_id, None)  # one sent but not yet delivered
                self.ended.set()
                return
            except LimitReached:
                continue


def within_limits(call: Callable[[], T], seconds: float, memory_bytes: int | None = None) -> T:
    """call() in this thread, stopped with TimeLimitReached after `seconds`, or with
    MemoryLimitReached once this process holds `memory_bytes` more than when it started
    (None: no memory limit)."""
    watchdog = _Watchdog(threading.get_ident(), seconds, memory_bytes)
    watchdog.start()
    try:
        try:
            return call()
        finally:
            watchdog.disarm()
    except LimitReached:
        watchdog.disarm()  # in case the raise landed before the `finally` could disarm
        raise
