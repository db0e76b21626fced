"""Which process of the shared pid namespace belongs to which container of the task."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

__all__ = ["ContainerProcess", "Discovery", "find_processes", "process_start", "same_process"]

PROC = "/proc"
# A cgroup file lists one line per hierarchy (v1) or one (v2); a few KiB at most. A process
# whose file is larger is not read further: a container cannot make it so.
MAX_CGROUP_BYTES = 64 * 1024
MAX_ENVIRON_BYTES = 8 << 20
METADATA_VARIABLE = b"ECS_CONTAINER_METADATA_URI_V4="
# /proc/<pid>/stat: "pid (comm) state ppid ..."; comm may hold spaces and parentheses, so the
# fields are counted from the last ")".
_STAT_TAIL = re.compile(rb"\)\s+(\S+)\s+(-?\d+)")


@dataclass(frozen=True, slots=True)
class ContainerProcess:
    """The process through which a container is scanned: its root and environment."""

    pid: int
    start: int  # clock ticks since boot (stat field 22): a reused pid has another
    how: str  # "cgroup" or "metadata-uri": which evidence tied it to the container


@dataclass(frozen=True, slots=True)
class Discovery:
    found: dict[str, ContainerProcess]  # DockerId -> its first process
    problems: list[str]


def _read(path: str, limit: int) -> bytes | None:
    try:
        with open(path, "rb") as handle:
            return handle.read(limit)
    except OSError:
        return None  # the process exited, or is not ours to read: it is simply not a candidate


def _stat(pid: int, proc: str) -> tuple[int, int] | None:
    """(parent pid, start time) of `pid`, or None when it is gone."""
    data = _read(f"{proc}/{pid}/stat", 4096)
    if data is None:
        return None
    tail = data[data.rfind(b")") :]
    match = _STAT_TAIL.match(tail)
    fields = tail[1:].split()
    if match is None or len(fields) < 20:
        return None
    # fields[0] is the state (field 3); the start time is field 22, i.e. fields[19].
    return int(match.group(2)), int(fields[19])


def process_start(pid: int, proc: str = PROC) -> int | None:
    stat = _stat(pid, proc)
    return None if stat is None else stat[1]


def same_process(process: ContainerProcess, proc: str = PROC) -> bool:
    """Whether `process` still runs (its pid not reused by another since it was found)."""
    return process_start(process.pid, proc) == process.start


def cgroup_names(data: bytes) -> set[str]:
    """Every path component of every hierarchy's line (`ID:controllers:/path`)."""
    names: set[str] = set()
    for line in data.splitlines():
        path = line.split(b":", 2)[-1]
        for part in path.split(b"/"):
            if part:
                names.add(part.decode("utf-8", "replace"))
    return names


def _matches(names: set[str], docker_id: str) -> bool:
    # Fargate (containerd): /ecs/<task id>/<DockerId>; Docker's cgroupfs driver:
    # /docker/<id>; its systemd driver: docker-<id>.scope, containerd's cri-containerd-<id>.scope.
    scoped = f"-{docker_id}.scope"
    return docker_id in names or any(name.endswith(scoped) for name in names)


def _pids(proc: str) -> list[int]:
    try:
        return sorted(int(name) for name in os.listdir(proc) if name.isdigit())
    except OSError:
        return []


def _metadata_uri(pid: int, proc: str) -> str | None:
    data = _read(f"{proc}/{pid}/environ", MAX_ENVIRON_BYTES)
    if data is None:
        return None
    for entry in data.split(b"\0"):
        if entry.startswith(METADATA_VARIABLE):
            # Only the URI is kept: the other variables' values never leave this function.
            return entry[len(METADATA_VARIABLE) :].decode("utf-8", "replace")
    return None


def find_processes(
    docker_ids: Iterable[str],
    *,
    own_pid: int | None = None,
    resolve_uri: Callable[[str], str | None] | None = None,
    proc: str = PROC,
) -> Discovery:
    """The first process of each container, by its cgroup, else by its metadata URI.

    A container's processes are those whose cgroup path has the container's DockerId as a
    component (see docs/defender.md for the layouts). Of those, the one whose parent is not
    in the container is its init (a tie: the lowest pid). When no cgroup names a container
    (a cgroup namespace that hides the path, a layout we do not know), the processes' own
    `ECS_CONTAINER_METADATA_URI_V4` is asked which container it belongs to (`resolve_uri`:
    URI -> DockerId). A container with neither is a problem: it exited, or the task has no
    shared pid namespace (`pidMode: "task"`).
    """
    wanted = list(dict.fromkeys(docker_ids))
    own = os.getpid() if own_pid is None else own_pid
    members: dict[str, list[int]] = {docker_id: [] for docker_id in wanted}
    stats: dict[int, tuple[int, int]] = {}
    unmatched: list[int] = []
    for pid in _pids(proc):
        if pid == own:
            continue
        data = _read(f"{proc}/{pid}/cgroup", MAX_CGROUP_BYTES)
        stat = _stat(pid, proc)
        if data is None or stat is None:
            continue
        stats[pid] = stat
        names = cgroup_names(data)
        owners = [docker_id for docker_id in wanted if _matches(names, docker_id)]
        if len(owners) == 1:
            members[owners[0]].append(pid)
        elif not owners:
            unmatched.append(pid)
    found = {
        docker_id: ContainerProcess(pid, stats[pid][1], "cgroup")
        for docker_id, pids in members.items()
        if pids
        for pid in [_init(pids, stats)]
    }
    missing = [docker_id for docker_id in wanted if docker_id not in found]
    if missing and resolve_uri is not None:
        found.update(_by_metadata_uri(missing, unmatched, stats, resolve_uri, proc))
    problems = [
        f"container {docker_id}: no process found (it exited, or the task does not share its "
        'pid namespace: pidMode "task")'
        for docker_id in wanted
        if docker_id not in found
    ]
    return Discovery(found, problems)


def _init(pids: list[int], stats: Mapping[int, tuple[int, int]]) -> int:
    inside = set(pids)
    roots = [pid for pid in pids if stats[pid][0] not in inside]
    return min(roots or pids)


def _by_metadata_uri(
    missing: list[str],
    candidates: list[int],
    stats: Mapping[int, tuple[int, int]],
    resolve_uri: Callable[[str], str | None],
    proc: str,
) -> dict[str, ContainerProcess]:
    resolved: dict[str, str | None] = {}
    members: dict[str, list[int]] = {docker_id: [] for docker_id in missing}
    for pid in candidates:
        uri = _metadata_uri(pid, proc)
        if uri is None:
            continue
        if uri not in resolved:
            resolved[uri] = resolve_uri(uri)
        owner = resolved[uri]
        if owner in members:
            members[owner].append(pid)
    return {
        docker_id: ContainerProcess(pid, stats[pid][1], "metadata-uri")
        for docker_id, pids in members.items()
        if pids
        for pid in [_init(pids, stats)]
    }
