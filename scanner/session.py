"""A scan session (Scanner): the scan calls, with what rescans reuse kept by the caller's object."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Unpack

from .memo import Memo
from .report import Finding, Problem, Report
from .scan import ScanArguments, _iter_scan, _scan_image, _scan_root

__all__ = ["Scanner"]


class Scanner:
    """A scan session: `scan_root`, `iter_scan` and `scan_image` as the module's functions take
    them, with what a rescan may reuse (a root's manifests and 448's plan, a decoded state file:
    scanner/memo.py) kept by this object from one call to the next, instead of by the process.

    A defender scanning several roots keeps one session per root (or per root and state file):
    each keeps its last root, so sessions on different threads neither share nor evict what the
    other kept. One session may also be used from several threads (what it keeps is swapped
    whole, under a lock); scans of different roots through it then only make each other's
    rescans slower. The one-shot functions `scanner.scan_root` and friends use one default
    session (scanner.memo.DEFAULT), so a loop of one-shot calls still rescans cheaply.

    What stays process-wide: `nice=True` lowers the whole process's priority, and `max_cpu`
    budgets count the CPU time of every thread of the process (so two sessions' budgets share
    it). The native hasher's module-level setters (`_native._hasher._use_simd`, `_md5_kernel`,
    `_lane_buffer_size`, `_use_readahead`, `_readahead_*`, `_use_openat2`) are test and benchmark
    hooks, never called by a scan; the openat2 flag they share is the kernel's answer, the same
    for every session.
    """

    def __init__(self) -> None:
        self.memo = Memo()

    def scan_root(
        self, root: str | os.PathLike[str] = "/", **arguments: Unpack[ScanArguments]
    ) -> Report:
        """scanner.scan_root in this session."""
        return _scan_root(root, arguments, self.memo)

    def iter_scan(
        self,
        root: str | os.PathLike[str],
        *,
        report: Report | None = None,
        **arguments: Unpack[ScanArguments],
    ) -> Iterator[Finding | Problem]:
        """scanner.iter_scan in this session."""
        return _iter_scan(root, report, arguments, self.memo)

    def scan_image(
        self,
        path: str | os.PathLike[str],
        *,
        tag: str | None = None,
        **arguments: Unpack[ScanArguments],
    ) -> Report:
        """scanner.scan_image in this session (a state is keyed to the image id)."""
        return _scan_image(path, tag, arguments, self.memo)

    def forget(self, *, states: bool = True) -> None:
        """Drop what this session keeps (see Memo.forget)."""
        self.memo.forget(states=states)
