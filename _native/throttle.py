"""--max-cpu: keep this process's CPU time at or under a fraction of the wall time since a start."""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass

__all__ = ["CpuBudget"]


def _cpu_ns() -> int:
    # The whole process, every thread: what a cgroup quota or a `top` user sees.
    return time.clock_gettime_ns(time.CLOCK_PROCESS_CPUTIME_ID)


def _checked(fraction: object) -> float:
    if (
        not isinstance(fraction, (int, float))
        or isinstance(fraction, bool)
        or not math.isfinite(fraction)
        or fraction <= 0
    ):
        raise ValueError(f"max_cpu must be a number > 0, not {fraction!r}")
    return float(fraction)


@dataclass(frozen=True, slots=True)
class CpuBudget:
    """CPU time / wall time since `wall_start_ns` (CLOCK_MONOTONIC) may not exceed `fraction`.

    CPU is counted from `cpu_start_ns` (CLOCK_PROCESS_CPUTIME_ID, all threads), so a long-lived
    caller's earlier work is not charged to the scan. Whoever is ahead of the budget sleeps until
    the wall clock catches up: used / fraction - elapsed. The hashers (both implementations)
    pace themselves in their read loops with the same arithmetic; the scan paces its Python
    phases with `pace()`. Sleeping threads use no CPU, so every worker may sleep at once.
    """

    fraction: float
    wall_start_ns: int
    cpu_start_ns: int

    @classmethod
    def start(cls, fraction: float) -> CpuBudget:
        """A budget of `fraction` CPUs (0.25 = a quarter of one core) starting now."""
        return cls(_checked(fraction), time.monotonic_ns(), _cpu_ns())

    @classmethod
    def since_process_start(cls, fraction: float) -> CpuBudget:
        """A budget counting from this process's start: interpreter start-up and imports too.

        For a command-line run, where the whole process is what a quota or an operator sees.
        The start comes from /proc/self/stat (clock ticks since boot, CLOCK_BOOTTIME's origin),
        translated to the monotonic clock; without /proc it is now, as `start`.
        """
        checked = _checked(fraction)
        try:
            with open("/proc/self/stat", "rb") as handle:
                # Field 22; the command name (field 2) may hold spaces, so split after its ")".
                ticks = int(handle.read().rpartition(b")")[2].split()[19])
        except (OSError, ValueError, IndexError):
            return cls(checked, time.monotonic_ns(), _cpu_ns())
        age = time.clock_gettime_ns(time.CLOCK_BOOTTIME) - ticks * 10**9 // os.sysconf("SC_CLK_TCK")
        return cls(checked, time.monotonic_ns() - max(0, age), 0)

    def ahead_ns(self) -> int:
        """Nanoseconds to sleep for the process to be back within budget (0 when it is)."""
        used = _cpu_ns() - self.cpu_start_ns
        elapsed = time.monotonic_ns() - self.wall_start_ns
        return max(0, int(used / self.fraction) - elapsed)

    def pace(self) -> float:
        """Sleep until within budget; the seconds slept."""
        ahead = self.ahead_ns()
        if ahead:
            time.sleep(ahead / 1e9)
        return ahead / 1e9
