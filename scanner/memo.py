"""What one process keeps between rescans of a root: its manifests, 448's plan, the state file.

A defender rescans the same root periodically from one long-lived process. Parsing the package
databases, resolving every manifest path and decoding the state cost more than a `--rescan stat`
of an unchanged root does otherwise, and give the same result while their inputs are unchanged:

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
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

from pkgdb import RootFS
from pkgdb.rootfs import Identity, Journal, Seen, identity

from .checks.base import ScanContext
from .checks.package_binaries import PackageBinariesCheck, VerifyPlan
from .jsonload import InputFileError, open_regular
from .manifests import Manifests, read_manifests
from .report import Problem

__all__ = ["forget", "keep_fingerprint", "kept_manifests", "kept_plan", "kept_state"]

RACY_NS = 1_000_000_000  # scanner/state.py's: a timestamp tick is at most this long

Decoded = tuple[dict[str, Any], dict[bytes, Any]]


@dataclass(slots=True)
class _Root:
    key: tuple[bytes, int, int]  # the root's path, st_dev, st_ino
    journal: Journal
    manifests: Manifests
    components: dict[bytes, Seen] | None = None
    excludes: tuple[str, ...] = ()
    plan: VerifyPlan | None = None
    problems: list[Problem] = field(default_factory=list)
    fingerprint: str | None = None


_root: _Root | None = None
_state: tuple[str, Identity, Decoded] | None = None


def forget(*, states: bool = True) -> None:
    """Drop what is kept of the root (its manifests and plan) and, unless `states` is false, the
    decoded state file (tests, benchmarks; a caller that wants the memory back)."""
    global _root, _state
    _root = None
    if states:
        _state = None


def _settled(seen: Seen, read_ns: int) -> bool:
    """True when a change after `read_ns` must show in the identity (its ctime is old enough)."""
    return isinstance(seen, int) or seen[4] < read_ns - RACY_NS


def _root_key(rootfs: RootFS) -> tuple[bytes, int, int]:
    st = os.fstat(rootfs.fd)
    return rootfs.path, st.st_dev, st.st_ino


def kept_manifests(rootfs: RootFS, trusted: bool) -> Manifests:
    """The root's manifests: the kept ones when `trusted` and their sources are unchanged,
    else read now (and kept when settled)."""
    global _root
    key = _root_key(rootfs)
    kept = _root
    if trusted and kept is not None and kept.key == key and rootfs.unchanged(kept.journal):
        return kept.manifests
    read_ns = time.time_ns()
    rootfs.start_journal()
    try:
        manifests = read_manifests(rootfs)
    finally:
        journal = rootfs.stop_journal()
    settled = all(_settled(seen, read_ns) for seen in journal.values())
    _root = _Root(key, journal, manifests) if settled else None
    return manifests


def kept_plan(
    context: ScanContext, binaries: PackageBinariesCheck, trusted: bool
) -> Generator[Problem, None, tuple[VerifyPlan, str | None]]:
    """448's plan and its problems: the kept ones when `trusted`, for the same manifests and
    excludes, and every directory it resolved resolves alike; else made now (and kept). Also
    the plan's fingerprint when kept, or None."""
    kept = _root
    if kept is None or kept.manifests is not context.manifests:
        return (yield from binaries.plan(context)), None
    if (
        trusted
        and kept.plan is not None
        and kept.components is not None
        and kept.excludes == context.options.excludes
        and context.root.same_components(kept.components)
    ):
        yield from kept.problems
        return kept.plan, kept.fingerprint
    problems: list[Problem] = []
    read_ns = time.time_ns()
    generator = binaries.plan(context)
    try:
        while True:
            problem = next(generator)
            problems.append(problem)
            yield problem
    except StopIteration as stop:
        plan: VerifyPlan = stop.value
    kept.plan, kept.problems, kept.fingerprint = plan, problems, None
    components = context.root.components()
    settled = all(_settled(seen, read_ns) for seen in components.values())
    kept.components = components if settled else None
    kept.excludes = context.options.excludes
    return plan, None


def keep_fingerprint(plan: VerifyPlan, fingerprint: str | None) -> None:
    """Remember the fingerprint computed for a kept plan."""
    kept = _root
    if kept is not None and kept.plan is plan:
        kept.fingerprint = fingerprint


# A state records ~130 bytes a file: this is about two million files.
MAX_STATE_BYTES = 256 * 1024 * 1024


def kept_state(
    name: str,
    decode: Callable[[bytes], Decoded],
    state_error: Callable[[str], Exception],
    *,
    directory_fd: int | None = None,
) -> Decoded:
    """The decoded state file `name`: kept when its identity is the same, else
    read and decoded (and kept when settled). OSError when it cannot be read, decode's error
    when it is not a valid state, `state_error(why)` when it is no regular file of a sane size.
    With `directory_fd`, the file is `name`'s last component in that directory, and a symlink
    there is not followed (a state kept inside the root)."""
    global _state
    read_ns = time.time_ns()
    # Judged before it is opened for reading (open_regular): a state file in the root can be
    # swapped for a FIFO (which would stall every later scan), a device or a sparse giant.
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
        kept = _state
        if kept is not None and kept[0] == name and kept[1] == seen:
            return kept[2]
        data = handle.read(MAX_STATE_BYTES + 1)
    if len(data) > MAX_STATE_BYTES:
        raise state_error(f"grew past the limit of {MAX_STATE_BYTES} bytes")
    decoded = decode(data)
    _state = (name, seen, decoded) if _settled(seen, read_ns) else None
    return decoded
