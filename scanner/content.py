"""The one content pass: walk the root once, ask each check what it wants, read each file once.

Every regular file of the walk is offered to every check of the pass (448, 425, 426) through
one interface (checks.base.ContentCheck); what they want — digests, a search for their markers
— is merged into one request, so a file wanted by several checks is opened and read a single
time. A ListingCheck (448) also judges a list of its own: the listed paths the walk did not meet
(missing, replaced by a symlink, on another mount, or a mount point themselves) are read after
the walk, for it alone.

With a state (`--state`, scanner/state.py) a file whose clean verdict still holds is not read
(`stat`) or is read for its xxh3-128 alone (`content`); every other file goes through the same
read and judges as in a full scan, and its outcome is recorded for the next scan. Which of these
a file gets is the rescan strategy's answer (scanner/rescan.py), asked the same way whatever the
level, or without a state.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import _native
from _native import ContentMatcher, Digest, FileKind, HashResult, HashStatus, WalkEntry
from _native.hasher_py import MAX_WINDOWS

from .checks.base import LSTAT, ContentCheck, Hit, ListingCheck, ScanContext
from .checks.package_binaries import PackageBinariesCheck
from .progress import Phase
from .report import Finding, Problem, ProblemKind
from .rescan import PROBE, SKIP, Pending, Plain, strategy
from .state import StateSession
from .walking import walk_root

__all__ = ["WINDOW_AFTER", "WINDOW_BEFORE", "content_pass"]

# Bytes kept around a captured hit. Generous before, so that a key store whose marker lies a few
# KiB in (a PKCS#12 key bag after its certificate safe) is captured from its first byte.
WINDOW_BEFORE = 64 * 1024
WINDOW_AFTER = 64 * 1024
_CONTENT = int(Digest.CONTENT)  # a plain int: enum arithmetic costs microseconds per file
_READ = ~LSTAT  # what of a want the hasher is asked for
WINDOW_FILE_LIMIT = 8 << 20  # files kept whole to cut windows from: at most this large


@dataclass(slots=True)
class _Markers:
    """All checks' markers in one matcher, and the way back from a global index to a check's."""

    patterns: list[bytes] = field(default_factory=list)
    owner: list[tuple[int, int]] = field(default_factory=list)  # global -> (check, local index)
    capture: set[int] = field(default_factory=set)

    @classmethod
    def of(cls, checks: Sequence[ContentCheck]) -> _Markers:
        markers = cls()
        for check_index, check in enumerate(checks):
            for local, pattern in enumerate(check.markers):
                if local in check.capture:
                    markers.capture.add(len(markers.patterns))
                markers.patterns.append(pattern)
                markers.owner.append((check_index, local))
        return markers


@dataclass(slots=True)
class _Pass:
    """What the pass knows once its checks are prepared."""

    checks: Sequence[ContentCheck]
    markers: _Markers
    matcher: ContentMatcher | None
    # Every ListingCheck's listed paths and flags, merged (448's own mapping when it is alone).
    listed: Mapping[bytes, int]
    rescan: Plain
    met: set[bytes] = field(default_factory=set)  # (at least) the listed paths the walk met

    def wanted(self, entry: WalkEntry) -> tuple[int, list[int]]:
        """(hasher flags, indices of the checks that want it) for one file of the walk."""
        flags, wanting = 0, []
        for index, check in enumerate(self.checks):
            wanted = check.wants(entry)
            if wanted:
                flags |= wanted
                wanting.append(index)
        return flags & _READ, wanting


def _listers(checks: Sequence[ContentCheck]) -> list[ListingCheck]:
    return [check for check in checks if isinstance(check, ListingCheck)]


def _merged(listers: Sequence[ListingCheck]) -> Mapping[bytes, int]:
    if len(listers) == 1:
        return listers[0].listed
    merged: dict[bytes, int] = {}
    for lister in listers:
        for path, flags in lister.listed.items():
            merged[path] = merged.get(path, 0) | flags
    return merged


def content_pass(
    context: ScanContext,
    checks: Sequence[ContentCheck],
    state: StateSession | None = None,
) -> Iterator[Finding | Problem]:
    """Run the checks over one walk and one read per file, under `state`'s rescan level."""
    listers = _listers(checks)
    # Listing checks prepare last: a bad data file of another check (426's --miner-digests)
    # fails the scan before 448's plan is made, and their problems come first, as before 448
    # joined the pass.
    for check in sorted(checks, key=lambda check: check in listers):
        yield from check.prepare(context)
    markers = _Markers.of(checks)
    binaries = next((c for c in checks if isinstance(c, PackageBinariesCheck)), None)
    work = _Pass(
        checks,
        markers,
        _native.Matcher(markers.patterns) if markers.patterns else None,
        _merged(listers),
        strategy(context, state, binaries),
    )
    yield from _walk(context, work)
    for lister in listers:
        unmet = [path for path in lister.listed if path not in work.met]
        requests = [(path, lister.listed[path]) for path in unmet]
        for path, result in zip(unmet, _hash(context, requests, None, markers), strict=True):
            yield from lister.judge_unmet(context, path, result)


def _walk(context: ScanContext, work: _Pass) -> Iterator[Finding | Problem]:
    """The walk, its files batched and read, in walk order."""
    rescan, listed, met = work.rescan, work.listed, work.met
    capture = bool(work.markers.capture)
    batch: list[Pending] = []
    context.progress.update(Phase.WALK)  # the phase shows from its start, also on a small root
    # Bytes of captured windows the batch could bring back (see _window_bound).
    windows = 0
    reused: list[bytes] = []  # what the walker set aside as unchanged, counted after it in bulk
    stats = context.stats
    for item in walk_root(context.root, rescan.clean_entries(), reused):
        if isinstance(item, Problem):
            yield item
            continue
        stats.files_walked += 1
        if not stats.files_walked & 1023:
            context.pace()  # the walk and the checks' wants() run here, in Python
        if item.kind is not FileKind.REGULAR or item.mount_point or context.excluded(item.path):
            continue  # a file mounted in the root is not its content (448 judges it below)
        action, key, replay = rescan.admit(item)
        if action == SKIP:
            continue
        if item.path in listed:
            met.add(item.path)
        if replay is not None:  # REPLAY: the recorded verdict stands
            yield from replay
            continue
        if action == PROBE:
            batch.append(Pending(item, 0, [], key, probe=True))
            if capture:  # it may yet be searched, windows and all
                windows += _window_bound(item.size)
        else:
            flags, wanting = work.wanted(item)
            if not wanting:
                continue
            flags = rescan.request(flags, item.size)
            batch.append(Pending(item, flags, wanting, key))
            if flags & _CONTENT and capture:
                windows += _window_bound(item.size)
        if len(batch) >= context.options.batch_size or windows > context.options.batch_bytes:
            yield from _process(context, work, batch)
            batch, windows = [], 0
    if batch:
        yield from _process(context, work, batch)
    rescan.carry(context, reused)
    stats.files_walked += len(reused)
    met.update(reused)  # listed or not: a superset of the listed paths met, in one C loop


def _window_bound(size: int) -> int:
    """The most window bytes one searched file can return: windows are cut from the file itself
    (so no more than its size), only when it is at most the hasher's window_file_limit (8 MiB),
    and at most MAX_WINDOWS of them. A root of many small files full of key markers must not
    make one batch hold gigabytes of windows until its results are judged."""
    if size > WINDOW_FILE_LIMIT:
        return 0
    return min(size, MAX_WINDOWS * (WINDOW_BEFORE + WINDOW_AFTER))


def _hash(
    context: ScanContext,
    requests: list[tuple[bytes, int]],
    matcher: ContentMatcher | None,
    markers: _Markers,
) -> list[HashResult]:
    if not requests:
        return []
    results: list[HashResult]
    if matcher is None or not any(flags & Digest.CONTENT for _path, flags in requests):
        results = _native.hash_files(
            context.root.fd,
            requests,
            jobs=context.options.jobs,
            extents=context.options.extents,
            cpu_budget=context.cpu_budget,
        )
        return results
    results = _native.hash_files(
        context.root.fd,
        requests,
        jobs=context.options.jobs,
        extents=context.options.extents,
        matcher=matcher,
        capture=frozenset(markers.capture),
        window_before=WINDOW_BEFORE,
        window_after=WINDOW_AFTER,
        window_file_limit=WINDOW_FILE_LIMIT,
        content_limit=context.options.content_limit,
        cpu_budget=context.cpu_budget,
    )
    return results


def _process(
    context: ScanContext, work: _Pass, batch: list[Pending]
) -> Iterator[Finding | Problem]:
    replays = work.rescan.probe(context, batch, work.wanted)
    todo = [pending for pending in batch if id(pending) not in replays]
    requests = [(p.entry.path, p.flags) for p in todo]
    results = dict(zip(map(id, todo), _hash(context, requests, work.matcher, work.markers)))
    for pending in batch:  # in walk order, replayed or judged, as a full scan yields them
        if id(pending) in replays:
            yield from replays[id(pending)]
            continue
        result = results[id(pending)]
        yield from work.rescan.judged(pending, result, _judge(context, work, pending, result))
    context.pace()
    context.progress.update(Phase.WALK, context.stats.files_walked)


def _judge(
    context: ScanContext, work: _Pass, pending: Pending, result: HashResult
) -> Iterator[Finding | Problem]:
    """Every check's verdicts on one file from its one read, in check order."""
    path = pending.entry.path
    # A read is counted once, here — but for a listed path wanted with no digest (448: records
    # of none), which its check does not count as hashed either.
    if result.status is HashStatus.OK and work.listed.get(path, _CONTENT):
        context.stats.files_hashed += 1
        context.stats.bytes_hashed += result.size
    searched = pending.flags & _CONTENT and result.status is HashStatus.OK
    per_check: dict[int, list[Hit]] = {index: [] for index in pending.checks}
    for pattern, start in result.hits:
        check_index, local = work.markers.owner[pattern]
        if check_index in per_check:
            per_check[check_index].append((local, start))
    for index in pending.checks:
        check = work.checks[index]
        if searched and not result.scanned and check.markers:
            searched = False  # said once, before the first check that searches
            yield Problem(
                kind=ProblemKind.CONTENT_SKIPPED,
                message=(
                    f"not searched: {result.size} bytes is over the content limit of "
                    f"{context.options.content_limit} bytes"
                ),
                path=path,
            )
        yield from check.judge(context, pending.entry, result, per_check[index])
