"""A cgroup v2 child of the scanner's own cgroup that bounds one custom check's memory and pids."""

from __future__ import annotations

import os
import re
import secrets
import time
from dataclasses import dataclass

__all__ = ["CGROUP_PREFIX", "Cgroup", "CgroupUnavailable", "find_parent"]

CGROUP_PREFIX = "scan-root-check-"
CONTROLLERS = ("memory", "pids")
_ESCAPE = re.compile(r"\\([0-7]{3})")
_EMPTY_WAIT = 5.0  # seconds for the killed processes to leave before the cgroup is removed


class CgroupUnavailable(Exception):
    """No cgroup v2 with memory and pids here: the sandbox falls back to rlimits; says why."""


def _read(path: str) -> str:
    # Paths are bytes to the kernel: a mount point or cgroup named in another encoding (a volume
    # a hostile image declared) must not stop the read; surrogates carry them back to os.* calls.
    with open(path, encoding="utf-8", errors="surrogateescape") as handle:
        return handle.read()


def _write(path: str, value: str) -> None:
    with open(path, "w") as handle:
        handle.write(value)


def own_cgroup(proc_cgroup: str, mountinfo: str) -> str:
    """This process's cgroup v2 directory, from the text of /proc/self/cgroup and mountinfo."""
    relative = next((line[3:] for line in proc_cgroup.splitlines() if line.startswith("0::")), None)
    if relative is None:
        raise CgroupUnavailable("the scanner is in no cgroup v2")
    for line in mountinfo.splitlines():
        fields = line.split()
        separator = fields.index("-") if "-" in fields else -1
        if separator < 0 or fields[separator + 1 : separator + 2] != ["cgroup2"]:
            continue
        # Fields 4 and 5: the mount's root within the hierarchy, and where it is mounted.
        root, point = fields[3], fields[4]
        if root == "/" or relative == root or relative.startswith(root + "/"):
            inside = relative[len(root) :] if root != "/" else relative
            # mountinfo escapes space, tab, newline and backslash as octal; nothing else.
            point = _ESCAPE.sub(lambda found: chr(int(found[1], 8)), point)
            return os.path.normpath(point + "/" + inside.lstrip("/"))
    raise CgroupUnavailable("no cgroup2 file system is mounted")


def find_parent() -> str:
    """The scanner's own cgroup, when it can hold a child with memory and pids limits."""
    try:
        own = own_cgroup(_read("/proc/self/cgroup"), _read("/proc/self/mountinfo"))
        available = _read(os.path.join(own, "cgroup.controllers")).split()
        missing = [name for name in CONTROLLERS if name not in available]
        if missing:
            raise CgroupUnavailable(
                f"cgroup v2 has no {' or '.join(missing)} controller here"
                " (bound to a cgroup v1 hierarchy, or not delegated)"
            )
        enabled = _read(os.path.join(own, "cgroup.subtree_control")).split()
        wanted = [name for name in CONTROLLERS if name not in enabled]
        if wanted:
            # The kernel refuses (EBUSY) unless this cgroup is the root or holds no process: then
            # the scanner's cgroup must be delegated with them enabled (systemd: Delegate=yes).
            _write(os.path.join(own, "cgroup.subtree_control"), " ".join(f"+{n}" for n in wanted))
    except OSError as error:
        raise CgroupUnavailable(f"cgroup v2: {error.strerror or error}") from None
    return own


@dataclass
class Cgroup:
    """One check's cgroup: made with its limits, joined by the script, then killed and removed."""

    path: str

    @classmethod
    def create(cls, parent: str, memory: int, processes: int) -> Cgroup:
        path = os.path.join(parent, CGROUP_PREFIX + secrets.token_hex(6))
        try:
            os.mkdir(path, 0o755)
        except OSError as error:
            raise CgroupUnavailable(f"cannot make a cgroup: {error.strerror}") from None
        cgroup = cls(path)
        try:
            _write(cgroup.file("memory.max"), str(memory))
            if os.path.exists(cgroup.file("memory.swap.max")):  # no swap accounting: no file
                _write(cgroup.file("memory.swap.max"), "0")  # the limit is not evaded to swap
            _write(cgroup.file("pids.max"), str(processes))
        except OSError as error:
            problem = cgroup.remove()
            raise CgroupUnavailable(
                f"cannot set the cgroup's limits: {error.strerror}"
                + (f"; {problem}" if problem else "")
            ) from None
        return cgroup

    def file(self, name: str) -> str:
        return os.path.join(self.path, name)

    def open_procs(self) -> int:
        """`cgroup.procs` for the sandbox to join (inheritable: passed to it)."""
        return os.open(self.file("cgroup.procs"), os.O_WRONLY)

    def events(self) -> tuple[int, int]:
        """(processes killed for want of memory, forks refused at pids.max) so far."""
        counters = {}
        for name, key in (("memory.events", "oom_kill"), ("pids.events", "max")):
            for line in _read(self.file(name)).splitlines():
                word, _, number = line.partition(" ")
                if word == key:
                    counters[name] = int(number)
        return counters.get("memory.events", 0), counters.get("pids.events", 0)

    def remove(self) -> str | None:
        """Kill what is left in it and remove it; a description of what failed, or None."""
        deadline = time.monotonic() + _EMPTY_WAIT
        try:
            if os.path.exists(self.file("cgroup.kill")):  # Linux 5.14
                _write(self.file("cgroup.kill"), "1")
            # Dying processes leave a moment after the kill (and after their pid namespace's end).
            while "populated 1" in _read(self.file("cgroup.events")).splitlines():
                if time.monotonic() > deadline:
                    return f"its cgroup {self.path} still has processes after {_EMPTY_WAIT:g} s"
                time.sleep(0.01)
            os.rmdir(self.path)
        except OSError as error:
            return f"cannot remove its cgroup {self.path}: {error.strerror or error}"
        return None
