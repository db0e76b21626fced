"""The one content pass: walk the root once, ask each check what it wants, read each file once.

Every regular file of the walk is offered to the content checks (425, 426); what they want —
digests, a search for their markers — and what check 448 wants for the same path are merged
into one request, so a file wanted by several checks is opened and read a single time. Package
files the walk did not meet (missing, replaced by a symlink, on another mount) are verified
afterwards by 448 alone.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import _native
from _native import Digest, FileKind, HashResult, HashStatus, WalkEntry
from _native.hasher_py import MAX_WINDOWS

from .checks.base import ContentCheck, Hit, ScanContext
from .checks.package_binaries import PackageBinariesCheck, VerifyPlan
from .report import Finding, Problem
from .walking import walk_root

__all__ = ["WINDOW_AFTER", "WINDOW_BEFORE", "content_pass"]

# Bytes kept around a captured hit. Generous before, so that a key store whose marker lies a few
# KiB in (a PKCS#12 key bag after its certificate safe) is captured from its first byte.
WINDOW_BEFORE = 64 * 1024
WINDOW_AFTER = 64 * 1024
WINDOW_FILE_LIMIT = 8 << 20  # files kept whole to cut windows from: at most this large


@dataclass(slots=True)
class _Pending:
    entry: WalkEntry
    flags: int
    checks: list[int]  # indices of the content checks that want this file
    verify: bool  # 448 judges this path too


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
) -> Iterator[Finding | Problem]:
    """Run the content checks (and 448, when given) over one walk and one read per file."""
    for check in checks:
        yield from check.prepare(context)
    markers = _Markers.of(checks)
    matcher = _native.Matcher(markers.patterns) if markers.patterns else None
    plan = (yield from binaries.plan(context)) if binaries is not None else VerifyPlan()
    seen: set[bytes] = set()
    batch: list[_Pending] = []
    # Bytes of captured windows the batch could bring back (see _window_bound).
    windows = 0
    for item in walk_root(context.root):
        if isinstance(item, Problem):
            yield item
            continue
        context.stats.files_walked += 1
        if not context.stats.files_walked & 1023:
            context.pace()  # the walk and the checks' wants() run here, in Python
        if item.kind is not FileKind.REGULAR or context.excluded(item.path):
            continue
        flags, wanting = 0, []
        for index, check in enumerate(checks):
            wanted = check.wants(item)
            if wanted:
                flags |= wanted
                wanting.append(index)
        verify = item.path in plan.flags
        if verify:
            flags |= plan.flags[item.path]
            seen.add(item.path)
        if wanting or verify:
            batch.append(_Pending(item, flags, wanting, verify))
            if flags & Digest.CONTENT and markers.capture:
                windows += _window_bound(item.size)
        if len(batch) >= context.options.batch_size or windows > context.options.batch_bytes:
            yield from _process(context, checks, binaries, plan, markers, matcher, batch)
            batch, windows = [], 0
    if batch:
        yield from _process(context, checks, binaries, plan, markers, matcher, batch)
    if binaries is not None:
        unseen = [path for path in plan.flags if path not in seen]
        for path, result in zip(
            unseen, _hash(context, [(p, plan.flags[p]) for p in unseen], None, markers), strict=True
        ):
            yield from binaries.judge(context, plan, path, result)


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
    matcher: object | None,
    markers: _Markers,
) -> list[HashResult]:
    if not requests:
        return []
    results: list[HashResult]
    if matcher is None or not any(flags & Digest.CONTENT for _path, flags in requests):
        results = _native.hash_files(
            context.root.fd, requests, jobs=context.options.jobs, cpu_budget=context.cpu_budget
        )
        return results
    results = _native.hash_files(
        context.root.fd,
        requests,
        jobs=context.options.jobs,
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
    matcher: object | None,
    batch: list[_Pending],
) -> Iterator[Finding | Problem]:
    results = _hash(context, [(p.entry.path, p.flags) for p in batch], matcher, markers)
    for pending, result in zip(batch, results, strict=True):
        if pending.verify and binaries is not None:
            yield from binaries.judge(context, plan, pending.entry.path, result)
        elif result.status is HashStatus.OK:  # 448's judge counts the files it verifies
            context.stats.files_hashed += 1
            context.stats.bytes_hashed += result.size
        if not pending.checks:
            continue
        if pending.flags & Digest.CONTENT and result.status is HashStatus.OK and not result.scanned:
            yield Problem(
                kind="content-skipped",
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
    context.pace()
    context.progress(f"{context.stats.files_walked} files walked")
