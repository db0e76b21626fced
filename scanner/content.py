"""The one content pass: walk the root once, ask each check what it wants, read each file once.

Every regular file of the walk is offered to the content checks (425, 426); what they want —
digests, a search for their markers — and what check 448 wants for the same path are merged
into one request, so a file wanted by several checks is opened and read a single time. Package
files the walk did not meet (missing, replaced by a symlink, on another mount, or a mount point
themselves) are verified afterwards by 448 alone.

With a state (`--state`, scanner/state.py) a file whose clean verdict still holds is not read
(`stat`) or is read for its xxh3-128 alone (`content`); every other file goes through the same
read and judges as in a full scan, and its outcome is recorded for the next scan.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import _native
from _native import ContentMatcher, Digest, FileKind, HashResult, HashStatus, WalkEntry
from _native.hasher_py import MAX_WINDOWS

from .checks.base import ContentCheck, Hit, ScanContext
from .checks.package_binaries import PackageBinariesCheck, VerifyPlan
from .memo import keep_fingerprint, kept_plan
from .progress import Phase
from .report import Finding, Problem, ProblemKind
from .state import NO_KEY, Rescan, StateSession
from .walking import walk_root

__all__ = ["WINDOW_AFTER", "WINDOW_BEFORE", "content_pass"]

# Bytes kept around a captured hit. Generous before, so that a key store whose marker lies a few
# KiB in (a PKCS#12 key bag after its certificate safe) is captured from its first byte.
WINDOW_BEFORE = 64 * 1024
WINDOW_AFTER = 64 * 1024
_XXH3 = int(Digest.XXH3)  # a plain int: enum arithmetic costs microseconds per file
_CONTENT = int(Digest.CONTENT)
WINDOW_FILE_LIMIT = 8 << 20  # files kept whole to cut windows from: at most this large


@dataclass(slots=True)
class _Pending:
    entry: WalkEntry
    flags: int
    checks: list[int]  # indices of the content checks that want this file
    verify: bool  # 448 judges this path too
    key: bytes = NO_KEY  # the manifest key the verdict is recorded under (state only)
    probe: bool = False  # content rescan: read for xxh3 only first


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


def content_pass(
    context: ScanContext,
    checks: Sequence[ContentCheck],
    binaries: PackageBinariesCheck | None,
    state: StateSession | None = None,
) -> Iterator[Finding | Problem]:
    """Run the content checks (and 448, when given) over one walk and one read per file."""
    for check in checks:
        yield from check.prepare(context)
    markers = _Markers.of(checks)
    matcher = _native.Matcher(markers.patterns) if markers.patterns else None
    fingerprint = None
    if binaries is None:
        plan = VerifyPlan()
    elif state is None:
        plan = yield from binaries.plan(context)
    else:  # a rescan reuses the plan this process made, if it still holds (scanner/memo.py)
        trusted = state.level is not Rescan.FULL
        plan, fingerprint = yield from kept_plan(context, binaries, trusted)
    if state is not None:
        state.use_plan(plan.records, complete=binaries is not None, fingerprint=fingerprint)
        keep_fingerprint(plan, state.header["plan"])
    context.progress.update(Phase.WALK)  # the phase shows from its start, also on a small root
    seen: set[bytes] = set()
    batch: list[_Pending] = []
    # Bytes of captured windows the batch could bring back (see _window_bound).
    windows = 0
    # The stat rescan's fast path: under the same plan, the manifest key of every recorded
    # path still holds, and a recorded path was regular and not excluded under the same options
    # (state.py's options fingerprint): a clean, settled entry whose identity is the one the
    # walk sees is reused with no more questions. ~10k of them in an unchanged root: the walker
    # itself sets them aside (walk(unchanged=...)), with no entry object and no Python per file.
    clean = state.clean_entries() if state is not None and state.fast_stat() else None
    reused: list[bytes] = []  # the walk's matches, counted after it (_reused_all), in bulk
    stats = context.stats
    for item in walk_root(context.root, clean, reused):
        if isinstance(item, Problem):
            yield item
            continue
        stats.files_walked += 1
        if not stats.files_walked & 1023:
            context.pace()  # the walk and the checks' wants() run here, in Python
        if item.kind is not FileKind.REGULAR or item.mount_point or context.excluded(item.path):
            continue  # a file mounted in the root is not its content (448 judges it below)
        if state is not None and state.skip is not None and _is_state_file(item.path, state.skip):
            continue  # the state file itself (allowed inside the root): changes every scan
        verify = item.path in plan.flags
        if verify:
            seen.add(item.path)
        key = NO_KEY
        if state is not None:
            key = state.key(item.path, plan.records[item.path] if verify else None)
            # Before wants(): what the checks want depends on the path, mode and size alone,
            # which an unchanged identity keeps.
            replay = state.reuse_stat(item, key) if state.level is Rescan.STAT else None
            if replay is not None:
                _reused(context, plan, item.path, verify)
                yield from replay
                continue
        if (
            state is not None
            and state.level is Rescan.CONTENT
            and state.content_candidate(item, key)
        ):
            # What the checks want is asked only if its xxh3 says the file changed (_probe).
            batch.append(_Pending(item, 0, [], verify, key, probe=True))
            if markers.capture:  # it may yet be searched, windows and all
                windows += _window_bound(item.size)
        else:
            flags, wanting = _wanted(checks, plan, item, verify)
            if not (wanting or verify):
                continue
            if state is None:
                batch.append(_Pending(item, flags, wanting, verify))
            else:
                flags = _recorded(flags, item.size, context.options.content_limit)
                batch.append(_Pending(item, flags, wanting, verify, key))
            if flags & Digest.CONTENT and markers.capture:
                windows += _window_bound(item.size)
        if len(batch) >= context.options.batch_size or windows > context.options.batch_bytes:
            yield from _process(context, checks, binaries, plan, markers, matcher, batch, state)
            batch, windows = [], 0
    if batch:
        yield from _process(context, checks, binaries, plan, markers, matcher, batch, state)
    if state is not None and reused:
        state.carry(reused)
    stats.files_walked += len(reused)
    _reused_all(context, plan, reused, seen)
    if binaries is not None:
        unseen = [path for path in plan.flags if path not in seen]
        for path, result in zip(
            unseen, _hash(context, [(p, plan.flags[p]) for p in unseen], None, markers), strict=True
        ):
            yield from binaries.judge(context, plan, path, result)


def _wanted(
    checks: Sequence[ContentCheck], plan: VerifyPlan, entry: WalkEntry, verify: bool
) -> tuple[int, list[int]]:
    """(Digest flags, indices of the content checks that want it) for one file of the walk."""
    flags, wanting = 0, []
    for index, check in enumerate(checks):
        wanted = check.wants(entry)
        if wanted:
            flags |= wanted
            wanting.append(index)
    if verify:
        flags |= plan.flags[entry.path]
    return flags, wanting


def _recorded(flags: int, size: int, content_limit: int) -> int:
    """The request of a file whose verdict the state records: with its xxh3 — but for a file
    wanted only to be searched and over the content limit, which is then not read at all (the
    hasher's rule): nothing recorded, it is skipped again, still unread, by the next scan."""
    if flags == _CONTENT and size > content_limit:
        return flags
    return flags | _XXH3


def _is_state_file(path: bytes, state_path: bytes) -> bool:
    """The state file or one of its temporary files (StateSession.save's naming)."""
    if path == state_path:
        return True
    parent, _, name = state_path.rpartition(b"/")
    prefix = (parent + b"/." if parent else b".") + name + b"."
    return path.startswith(prefix) and path.endswith(b".tmp")


def _reused(context: ScanContext, plan: VerifyPlan, path: bytes, verify: bool) -> None:
    """Count a file whose recorded clean verdict stands, as 448's judge would have."""
    context.stats.files_reused += 1
    if verify:
        context.stats.files_checked += len(plan.records[path])


def _reused_all(
    context: ScanContext, plan: VerifyPlan, paths: list[bytes], seen: set[bytes]
) -> None:
    """_reused for every file of the stat fast path at once (C loops, not one call per file)."""
    if not paths:
        return
    verified = [path for path in paths if path in plan.records]
    seen.update(verified)
    context.stats.files_reused += len(paths)
    context.stats.files_checked += sum(map(len, map(plan.records.__getitem__, verified)))


def _probe(
    context: ScanContext,
    checks: Sequence[ContentCheck],
    plan: VerifyPlan,
    batch: list[_Pending],
    state: StateSession,
) -> dict[int, list[Finding | Problem]]:
    """Content rescan: read the candidates for xxh3 only; {id(pending): its stored verdict}
    for those unchanged (and [] for a changed file no check wants any more). The others are
    read in full with the rest of the batch, with what the checks want of them now."""
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
        items = state.same_content(pending.entry.path, result, pending.key)
        if items is not None:
            _reused(context, plan, pending.entry.path, pending.verify)
            replays[id(pending)] = items
            continue
        flags, pending.checks = _wanted(checks, plan, pending.entry, pending.verify)
        pending.flags = _recorded(flags, pending.entry.size, context.options.content_limit)
        pending.probe = False
        if not (pending.checks or pending.verify):
            replays[id(pending)] = []  # e.g. emptied since: nothing to judge, nothing to record
    return replays


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
    context: ScanContext,
    checks: Sequence[ContentCheck],
    binaries: PackageBinariesCheck | None,
    plan: VerifyPlan,
    markers: _Markers,
    matcher: ContentMatcher | None,
    batch: list[_Pending],
    state: StateSession | None = None,
) -> Iterator[Finding | Problem]:
    replays = _probe(context, checks, plan, batch, state) if state is not None else {}
    todo = [pending for pending in batch if id(pending) not in replays]
    results = dict(
        zip(
            map(id, todo), _hash(context, [(p.entry.path, p.flags) for p in todo], matcher, markers)
        )
    )
    for pending in batch:  # in walk order, replayed or judged, as a full scan yields them
        if id(pending) in replays:
            yield from replays[id(pending)]
            continue
        result = results[id(pending)]
        if state is None:
            yield from _judge(context, checks, binaries, plan, markers, pending, result)
            continue
        verdicts = list(_judge(context, checks, binaries, plan, markers, pending, result))
        state.record(pending.entry.path, result, pending.key, verdicts)
        yield from verdicts
    context.pace()
    context.progress.update(Phase.WALK, context.stats.files_walked)


def _judge(
    context: ScanContext,
    checks: Sequence[ContentCheck],
    binaries: PackageBinariesCheck | None,
    plan: VerifyPlan,
    markers: _Markers,
    pending: _Pending,
    result: HashResult,
) -> Iterator[Finding | Problem]:
    """Every check's verdicts on one file from its one read."""
    if pending.verify and binaries is not None:
        yield from binaries.judge(context, plan, pending.entry.path, result)
    elif result.status is HashStatus.OK:  # 448's judge counts the files it verifies
        context.stats.files_hashed += 1
        context.stats.bytes_hashed += result.size
    if pending.checks:
        if pending.flags & Digest.CONTENT and result.status is HashStatus.OK and not result.scanned:
            yield Problem(
                kind=ProblemKind.CONTENT_SKIPPED,
                message=(
                    f"not searched: {result.size} bytes is over the content limit of "
                    f"{context.options.content_limit} bytes"
                ),
                path=pending.entry.path,
            )
        per_check: dict[int, list[Hit]] = {index: [] for index in pending.checks}
        for pattern, start in result.hits:
            check_index, local = markers.owner[pattern]
            if check_index in per_check:
                per_check[check_index].append((local, start))
        for index in pending.checks:
            yield from checks[index].judge(context, pending.entry, result, per_check[index])
