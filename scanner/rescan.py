"""How the content pass treats each file under a state: judge it, replay its verdict, or probe it.

One strategy per scan, chosen once (`strategy`): a scan without a state (Plain) judges every
file and records nothing; with a state, every file judged is recorded for the next scan
(Recording: `--rescan full`), and a file whose verdict still holds is replayed on its identity
(StatRescan, `--rescan stat`) or on its xxh3-128 (ContentRescan, `--rescan content`). The pass
asks the same questions of each, so its hot loop has no `if state` in it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import _native
from _native import Digest, HashResult, WalkEntry
from pkgdb import InstalledFile

from .checks.base import ScanContext
from .checks.package_binaries import PackageBinariesCheck, VerifyPlan
from .memo import Memo
from .report import Finding, Problem
from .state import NO_KEY, Entry, Rescan, StateSession

__all__ = [
    "JUDGE",
    "PROBE",
    "REPLAY",
    "SKIP",
    "ContentRescan",
    "Pending",
    "Plain",
    "Recording",
    "StatRescan",
    "strategy",
]

Item = Finding | Problem
# What admit() decides for a file of the walk (plain ints: this runs once per file).
JUDGE: Final = 0  # read it for what the checks want, and judge it
REPLAY: Final = 1  # its recorded verdict stands: the items given
PROBE: Final = 2  # read its xxh3 first (probe()); judged only if it changed
SKIP: Final = 3  # not the target's: the state file itself
_XXH3 = int(Digest.XXH3)  # a plain int: enum arithmetic costs microseconds per file
_CONTENT = int(Digest.CONTENT)
Admitted = tuple[int, bytes, list[Item] | None]
_JUDGE_UNKEYED: Admitted = (JUDGE, NO_KEY, None)
Wanted = Callable[[WalkEntry], tuple[int, list[int]]]


@dataclass(slots=True)
class Pending:
    """A file of the walk waiting in the content pass's batch to be read and judged."""

    entry: WalkEntry
    flags: int  # what the hasher is asked for
    checks: list[int]  # indices of the checks that want this file
    key: bytes = NO_KEY  # the manifest key the verdict is recorded under (state only)
    probe: bool = False  # content rescan: read for xxh3 only first


class Plain:
    """No state: every file is judged, nothing recorded, nothing reused."""

    def clean_entries(self) -> dict[bytes, Entry] | None:
        """What the walker may set aside as unchanged (the stat fast path): nothing."""
        return None

    def admit(self, entry: WalkEntry) -> Admitted:
        """(JUDGE, REPLAY, PROBE or SKIP; the manifest key; the replayed items) for one regular
        file of the walk, before the checks are asked what they want of it."""
        return _JUDGE_UNKEYED

    def request(self, flags: int, size: int) -> int:
        """The hasher request for a file judged with `flags` wanted."""
        return flags

    def probe(
        self, context: ScanContext, batch: Sequence[Pending], wanted: Wanted
    ) -> dict[int, list[Item]]:
        """{id(pending): its replayed verdict} for the batch's PROBE files found unchanged."""
        return {}

    def judged(self, pending: Pending, result: HashResult, items: Iterator[Item]) -> Iterable[Item]:
        """The verdicts on a file just read, as they go to the report."""
        return items

    def carry(self, context: ScanContext, reused: list[bytes]) -> None:
        """After the walk: the files the walker set aside as unchanged."""


class Recording(Plain):
    """A state to write (`--rescan full`, or no usable state yet): every file is judged, and
    recorded with its xxh3 for the next scan; 448's records key each verdict."""

    def __init__(
        self,
        context: ScanContext,
        state: StateSession,
        records: Mapping[bytes, Sequence[InstalledFile]],
    ) -> None:
        self.context = context
        self.state = state
        self.records = records
        self.skip = state.skip

    def _key(self, path: bytes) -> bytes:
        return self.state.key(path, self.records.get(path))

    def _skipped(self, path: bytes) -> bool:
        return self.skip is not None and _is_state_file(path, self.skip)

    def admit(self, entry: WalkEntry) -> Admitted:
        if self._skipped(entry.path):
            return SKIP, NO_KEY, None
        return JUDGE, self._key(entry.path), None

    def request(self, flags: int, size: int) -> int:
        """With its xxh3 — but for a file wanted only to be searched and over the content
        limit, which is then not read at all (the hasher's rule): nothing recorded, it is
        skipped again, still unread, by the next scan."""
        if flags == _CONTENT and size > self.context.options.content_limit:
            return flags
        return flags | _XXH3

    def judged(self, pending: Pending, result: HashResult, items: Iterator[Item]) -> list[Item]:
        verdicts = list(items)
        self.state.record(pending.entry.path, result, pending.key, verdicts)
        return verdicts

    def _reused(self, path: bytes) -> None:
        """Count a file whose recorded verdict stands, as 448's judge would have."""
        stats = self.context.stats
        stats.files_reused += 1
        records = self.records.get(path)
        if records is not None:
            stats.files_checked += len(records)


class StatRescan(Recording):
    """`--rescan stat`: a file whose identity is the recorded one keeps its verdict unread."""

    def clean_entries(self) -> dict[bytes, Entry] | None:
        # The fast path: under the same plan, the manifest key of every recorded path still
        # holds, and a recorded path was regular and not excluded under the same options
        # (state.py's options fingerprint): a clean, settled entry whose identity is the one
        # the walk sees is reused with no more questions. ~10k of them in an unchanged root:
        # the walker itself sets them aside (walk(unchanged=...)), with no entry object and no
        # Python per file.
        if not self.state.fast_stat():
            return None
        memo = _session_memo(self.context)
        if memo is None:
            return self.state.clean_entries()
        return memo.clean_entries(self.state.previous, self.state.clean_entries)

    def admit(self, entry: WalkEntry) -> Admitted:
        if self._skipped(entry.path):
            return SKIP, NO_KEY, None
        key = self._key(entry.path)
        # Before wants(): what the checks want depends on the path, mode and size alone, which
        # an unchanged identity keeps.
        replay = self.state.reuse_stat(entry, key)
        if replay is None:
            return JUDGE, key, None
        self._reused(entry.path)
        return REPLAY, key, replay

    def carry(self, context: ScanContext, reused: list[bytes]) -> None:
        """_reused for every file of the fast path at once (C loops, not one call per file)."""
        if not reused:
            return
        self.state.carry(reused)
        context.stats.files_reused += len(reused)
        records = self.records
        verified = [path for path in reused if path in records]
        context.stats.files_checked += sum(map(len, map(records.__getitem__, verified)))


class ContentRescan(Recording):
    """`--rescan content`: a file with a recorded verdict for its path, mode and key is read
    for its xxh3 alone first; the verdict stands if the xxh3 is the recorded one."""

    def admit(self, entry: WalkEntry) -> Admitted:
        if self._skipped(entry.path):
            return SKIP, NO_KEY, None
        key = self._key(entry.path)
        # What the checks want is asked only if its xxh3 says the file changed (probe).
        return (PROBE if self.state.content_candidate(entry, key) else JUDGE), key, None

    def probe(
        self, context: ScanContext, batch: Sequence[Pending], wanted: Wanted
    ) -> dict[int, list[Item]]:
        """The others are read in full with the rest of the batch, with what the checks want of
        them now (and [] for a changed file no check wants any more)."""
        probes = [pending for pending in batch if pending.probe]
        if not probes:
            return {}
        results = _native.hash_files(
            context.root.fd,
            [(pending.entry.path, _XXH3) for pending in probes],
            jobs=context.options.jobs,
            extents=context.options.extents,
        )
        replays = {}
        for pending, result in zip(probes, results, strict=True):
            items = self.state.same_content(pending.entry.path, result, pending.key)
            if items is not None:
                self._reused(pending.entry.path)
                replays[id(pending)] = items
                continue
            flags, pending.checks = wanted(pending.entry)
            pending.flags = self.request(flags, pending.entry.size)
            pending.probe = False
            if not pending.checks:
                replays[id(pending)] = []  # e.g. emptied since: nothing to judge or record
        return replays


def strategy(
    context: ScanContext, state: StateSession | None, binaries: PackageBinariesCheck | None
) -> Plain:
    """The strategy for this scan: its state's level (Plain without a state). The state keys
    each file's verdict by the records 448 (`binaries`, prepared) verifies it against: without
    448, verdicts that name a package are judged again (StateSession.use_plan)."""
    if state is None:
        return Plain()
    plan = binaries.verify_plan if binaries is not None else VerifyPlan()
    state.use_plan(
        plan.records,
        complete=binaries is not None,
        fingerprint=binaries.fingerprint if binaries is not None else None,
    )
    memo = _session_memo(context)
    if binaries is not None and memo is not None:
        memo.keep_fingerprint(plan, state.header["plan"])
    chosen = {Rescan.STAT: StatRescan, Rescan.CONTENT: ContentRescan}.get(state.level, Recording)
    return chosen(context, state, plan.records)


def _is_state_file(path: bytes, state_path: bytes) -> bool:
    """The state file or one of its temporary files (StateSession.save's naming)."""
    if path == state_path:
        return True
    parent, _, name = state_path.rpartition(b"/")
    prefix = (parent + b"/." if parent else b".") + name + b"."
    return path.startswith(prefix) and path.endswith(b".tmp")


def _session_memo(context: ScanContext) -> Memo | None:
    """The session's Memo, when the scan has one: the checks see only the part 448 asks for
    (package_binaries.PlanMemo), the rescan strategies keep more in it."""
    return context.memo if isinstance(context.memo, Memo) else None
