"""The CPUs this process may use: its affinity mask and its cgroup's CPU quota (v2 or v1)."""

from __future__ import annotations

import math
import os

__all__ = ["CGROUP_ROOT", "PROC_CGROUP", "cpu_limit", "cpu_quota", "usable_cpus"]

CGROUP_ROOT = "/sys/fs/cgroup"
PROC_CGROUP = "/proc/self/cgroup"
# v1 mounts the cpu controller alone or co-mounted with cpuacct, under either name.
_V1_DIRECTORIES = ("cpu", "cpu,cpuacct", "cpuacct,cpu")


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii") as handle:
            return handle.read().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _v2_quota(directory: str) -> float | None:
    """cpu.max "QUOTA PERIOD" (or "max PERIOD": none) as a number of CPUs."""
    text = _read(os.path.join(directory, "cpu.max"))
    if text is None:
        return None
    parts = text.split()
    if len(parts) != 2 or parts[0] == "max":
        return None
    return _ratio(parts[0], parts[1])


def _v1_quota(directory: str) -> float | None:
    """cpu.cfs_quota_us / cpu.cfs_period_us (quota -1: none) as a number of CPUs."""
    quota = _read(os.path.join(directory, "cpu.cfs_quota_us"))
    period = _read(os.path.join(directory, "cpu.cfs_period_us"))
    if quota is None or period is None:
        return None
    return _ratio(quota, period)


def _ratio(quota: str, period: str) -> float | None:
    """quota/period, or None when either is not a positive integer (malformed: no limit known)."""
    try:
        numerator, denominator = int(quota), int(period)
    except ValueError:
        return None
    if numerator <= 0 or denominator <= 0:
        return None
    return numerator / denominator


def _lineage(path: str) -> list[str]:
    """The cgroup's path and each ancestor's, up to "/": a quota anywhere above applies too."""
    parts = [part for part in path.split("/") if part and part not in (".", "..")]
    return ["/".join(parts[:length]) for length in range(len(parts), -1, -1)]


def cpu_quota(base: str | None = None, proc_cgroup: str | None = None) -> float | None:
    """The CPU quota of this process's cgroup in CPUs (0.25 = a quarter of one), None if none.

    `base` is where cgroupfs is mounted and `proc_cgroup` the membership file (default
    CGROUP_ROOT and PROC_CGROUP; parameters so that tests can pass a directory of fake files). cgroup v2 (`0::/path`) reads `cpu.max`; v1
    (`N:cpu,cpuacct:/path`) reads `cpu.cfs_quota_us` / `cpu.cfs_period_us` under the cpu
    controller's mount. The effective limit is the smallest along the path to the root, so every
    ancestor is read too. A path the mount does not show (a container that sees its own cgroup
    as the mount's root, as Docker on v1 without a cgroup namespace does) simply falls back to
    the ancestors that exist, the mount's root last. Unreadable or malformed files mean "no
    quota known": the caller then uses the affinity mask alone.
    """
    base = CGROUP_ROOT if base is None else base
    text = _read(PROC_CGROUP if proc_cgroup is None else proc_cgroup)
    if text is None:
        return None
    found: list[float] = []
    for line in text.splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if not path.startswith("/"):
            continue
        if hierarchy == "0" and controllers == "":
            directories = [os.path.join(base, part) for part in _lineage(path)]
            found.extend(q for q in map(_v2_quota, directories) if q is not None)
        elif "cpu" in controllers.split(","):
            for mount in (controllers, *_V1_DIRECTORIES):
                mounted = os.path.join(base, mount)
                if os.path.isdir(mounted):
                    directories = [os.path.join(mounted, part) for part in _lineage(path)]
                    found.extend(q for q in map(_v1_quota, directories) if q is not None)
                    break
    return min(found) if found else None


def usable_cpus() -> int:
    """CPUs in this process's affinity mask (what the scheduler will run its threads on)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def cpu_limit(base: str | None = None, proc_cgroup: str | None = None) -> int | None:
    """max(1, min(affinity CPUs, ceil(quota))) when a CPU quota applies, else None."""
    quota = cpu_quota(base, proc_cgroup)
    if quota is None:
        return None
    return max(1, min(usable_cpus(), math.ceil(quota - 1e-9)))
