"""What a scan session keeps between rescans of a root: its manifests, 448's plan, the state file.

A defender rescans the same root periodically from one long-lived process: each scan session
(scanner.Scanner) owns a Memo, and the one-shot `scanner.scan_root` uses DEFAULT. Parsing the
package databases, resolving every manifest path and decoding the state cost more than a
`--rescan stat` of an unchanged root does otherwise, and give the same result while their inputs
are unchanged:

* the manifests are reused when every path the readers read (files opened or lstat'd,
  directories listed, lookups that failed) is seen with the same identity — (st_dev, st_ino,
  size, mtime_ns, ctime_ns, mode), or the same errno — through directory symlinks resolved
  afresh (pkgdb.RootFS journal);
* 448's plan (and its fingerprint) is reused for the same manifests and excludes when every
  path component its directory resolutions looked at is seen alike now: the same file type,
  and for a symlink the same identity (RootFS.components);
* the decoded state file is reused when the file's identity is the one it had when read.

Like a rescan's verdicts (scanner/state.py), nothing is kept whose ctime lay within RACY_NS of
the moment it was read: a change in the same timestamp tick could otherwise go unseen. Only
the last root is kept, so memory stays that of one scan; `--rescan full` neither uses nor
trusts any of it.

A Memo may serve scans on several threads at once: what it keeps is replaced whole, under a
lock, and read as one snapshot, so a scan never pairs one root's plan with another's excludes
or fingerprint. Scans of different roots through one Memo only evict each other's: a caller
scanning several roots concurrently owns one session per root.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from pkgdb import RootFS
from pkgdb.rootfs import Identity, Journal, Seen, identity

from .jsonload import InputFileError, open_regular
from .manifests import Manifests, read_manifests
from .report import Problem

if TYPE_CHECKING:
    from .checks.base import ScanContext
    from .checks.package_binaries import VerifyPlan

__all__ = ["DEFAULT", "MAX_STATE_BYTES", "Memo", "forget", "kept_state"]

RACY_NS = 1_000_000_000  # scanner/state.py's: a timestamp tick is at most this long

Decoded = tuple[dict[str, Any], dict[bytes, Any]]
MakePlan = Callable[["ScanContext"], Generator[Problem, None, "VerifyPlan"]]


@dataclass(frozen=True, slots=True)
class _Root:
    key: tuple[bytes, int, int]  # the root's path, st_dev, st_ino
    journal: Journal
    manifests: Manifests


@dataclass(frozen=True, slots=True)
class _Plan:
    manifests: Manifests  # the kept manifests it was made from (a plan outlives no root)
    plan: VerifyPlan
    problems: tuple[Problem, ...]
    excludes: tuple[str, ...]
    components: dict[bytes, Seen] | None  # None: not settled, never reused
    fingerprint: str | None = None


@dataclass(frozen=True, slots=True)
class _State:
    name: str
    seen: Identity
    decoded: Decoded
    clean: dict[bytes, Any] | None = None  # its entries of a clean verdict, once asked for


def _settled(seen: Seen, read_ns: int) -> bool:
    """True when a change after `read_ns` must show in the identity (its ctime is old enough)."""
    return isinstance(seen, int) or seen[4] < read_ns - RACY_NS


def _root_key(rootfs: RootFS) -> tuple[bytes, int, int]:
    st = os.fstat(rootfs.fd)
    return rootfs.path, st.st_dev, st.st_ino


# A state records ~130 bytes a file: this is about two million files.
MAX_STATE_BYTES = 256 * 1024 * 1024


class Memo:
    """What one scan session keeps of its last root and state file (see the module docstring)."""

    def __init__(self) -> None:
        # Held only to swap a snapshot (never across I/O): readers take one reference and check
        # everything on it.
        self._lock = threading.Lock()
        self._root: _Root | None = None
        self._plan: _Plan | None = None
        self._state: _State | None = None

    def forget(self, *, states: bool = True) -> None:
        """Drop what is kept of the root (its manifests and plan) and, unless `states` is false,
        the decoded state file (tests, benchmarks; a caller that wants the memory back)."""
        with self._lock:
            self._root, self._plan = None, None
            if states:
                self._state = None

    def manifests(self, rootfs: RootFS, trusted: bool) -> Manifests:
        """The root's manifests: the kept ones when `trusted` and their sources are unchanged,
        else read now (and kept when settled)."""
        key = _root_key(rootfs)
        kept = self._root
        if trusted and kept is not None and kept.key == key and rootfs.unchanged(kept.journal):
            return kept.manifests
        read_ns = time.time_ns()
        rootfs.start_journal()
        try:
            manifests = read_manifests(rootfs)
        finally:
            journal = rootfs.stop_journal()
        settled = all(_settled(seen, read_ns) for seen in journal.values())
        with self._lock:
            self._root = _Root(key, journal, manifests) if settled else None
            self._plan = None  # made from the manifests replaced
        return manifests

    def plan(
        self, context: ScanContext, make: MakePlan, trusted: bool
    ) -> Generator[Problem, None, tuple[VerifyPlan, str | None]]:
        """448's plan (`make`'s) and its problems: the kept ones when `trusted`, for the same
        manifests and excludes, and every directory it resolved resolves alike; else made now
        (and kept, when the manifests are this Memo's). Also the plan's fingerprint when kept,
        or None."""
        root = self._root
        if root is None or root.manifests is not context.manifests:
            return (yield from make(context)), None
        kept = self._plan
        if (
            trusted
            and kept is not None
            and kept.manifests is context.manifests
            and kept.components is not None
            and kept.excludes == context.options.excludes
            and context.root.same_components(kept.components)
        ):
            yield from kept.problems
            return kept.plan, kept.fingerprint
        problems: list[Problem] = []
        read_ns = time.time_ns()
        generator = make(context)
        try:
            while True:
                problem = next(generator)
                problems.append(problem)
                yield problem
        except StopIteration as stop:
            plan: VerifyPlan = stop.value
        components = context.root.components()
        settled = all(_settled(seen, read_ns) for seen in components.values())
        made = _Plan(
            context.manifests,
            plan,
            tuple(problems),
            context.options.excludes,
            components if settled else None,
        )
        with self._lock:
            if self._root is root:  # not if another scan replaced the root meanwhile
                self._plan = made
        return plan, None

    def keep_fingerprint(self, plan: VerifyPlan, fingerprint: str | None) -> None:
        """Remember the fingerprint computed for a kept plan."""
        with self._lock:
            kept = self._plan
            if kept is not None and kept.plan is plan:
                self._plan = replace(kept, fingerprint=fingerprint)

    def state(
        self,
        name: str,
        decode: Callable[[bytes], Decoded],
        state_error: Callable[[str], Exception],
        *,
        directory_fd: int | None = None,
    ) -> Decoded:
        """The decoded state file `name`: kept when its identity is the same, else
        read and decoded (and kept when settled). OSError when it cannot be read, decode's error
        when it is not a valid state, `state_error(why)` when it is no regular file of a sane
        size. With `directory_fd`, the file is `name`'s last component in that directory, and a
        symlink there is not followed (a state kept inside the root)."""
        read_ns = time.time_ns()
        # Judged before it is opened for reading (open_regular): a state file in the root can
        # be swapped for a FIFO (which would stall every later scan), a device or a sparse giant.
        try:
            fd, info = (
                open_regular(name, what="state")
                if directory_fd is None
                else open_regular(
                    os.path.basename(name), what="state", dir_fd=directory_fd, follow=False
                )
            )
        except InputFileError:
            raise state_error("not a regular file") from None
        with open(fd, "rb") as handle:
            if info.st_size > MAX_STATE_BYTES:
                raise state_error(f"{info.st_size} bytes, over the limit of {MAX_STATE_BYTES}")
            seen = identity(info)
            kept = self._state
            if kept is not None and kept.name == name and kept.seen == seen:
                return kept.decoded
            data = handle.read(MAX_STATE_BYTES + 1)
        if len(data) > MAX_STATE_BYTES:
            raise state_error(f"grew past the limit of {MAX_STATE_BYTES} bytes")
        decoded = decode(data)
        with self._lock:
            self._state = _State(name, seen, decoded) if _settled(seen, read_ns) else None
        return decoded

    def clean_entries(
        self, entries: dict[bytes, Any], make: Callable[[], dict[bytes, Any]]
    ) -> dict[bytes, Any]:
        """`make()`: the stat fast path's clean entries of a state's `entries` — kept with the
        decoded state they belong to, so an unchanged root's rescans do not sift it each time
        (the walker only reads it)."""
        kept = self._state
        if kept is None or kept.decoded[1] is not entries:
            return make()
        if kept.clean is not None:
            return kept.clean
        clean = make()
        with self._lock:
            if self._state is kept:
                self._state = replace(kept, clean=clean)
        return clean


# The default session's memo: `scanner.scan_root` and friends keep rescans cheap across calls,
# as a defender's loop of one-shot calls did before sessions.
DEFAULT = Memo()


def forget(*, states: bool = True) -> None:
    """DEFAULT.forget: what the one-shot calls keep."""
    DEFAULT.forget(states=states)


def kept_state(
    name: str,
    decode: Callable[[bytes], Decoded],
    state_error: Callable[[str], Exception],
    *,
    directory_fd: int | None = None,
) -> Decoded:
    """DEFAULT.state: the decoded state file `name`, kept by the default session."""
    return DEFAULT.state(name, decode, state_error, directory_fd=directory_fd)
