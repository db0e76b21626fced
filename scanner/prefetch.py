"""Starts the early read-ahead of dpkg-listed files when the command line asks for check 448."""

from __future__ import annotations

import os
from collections.abc import Sequence

import _native
from _native import Prefetching

__all__ = ["DPKG_INFO_DIR", "DPKG_MANIFEST_SUFFIX", "EARLY_BUDGET", "start_early_prefetch"]

# pkgdb.dpkg's INFO_DIR and md5sums naming, restated so that this module imports no pkgdb
# (importing it is part of the start-up this read-ahead runs beside); a test keeps them equal.
DPKG_INFO_DIR = b"var/lib/dpkg/info"
DPKG_MANIFEST_SUFFIX = b".md5sums"
# Enough for the disk to stay busy until the hasher's own read-ahead starts (~0.15 s at the
# ~0.8 GB/s measured here), small enough that the pages are still cached when they are read.
EARLY_BUDGET = 128 << 20


def start_early_prefetch(root: str, checks: Sequence[str] | None) -> Prefetching | None:
    """Start advising the files dpkg's md5sums list under `root`; None when 448 will not run.

    The caller calls `.stop()` on the result when the scan is over. Rpm's sqlite/BDB and apk's
    databases need their parsers, so only dpkg's line-based manifests are read this early.
    """
    if checks is not None and "448" not in [check.strip() for check in checks]:
        return None
    return _native.start_prefetch(
        os.fsencode(root), DPKG_INFO_DIR, DPKG_MANIFEST_SUFFIX, budget=EARLY_BUDGET
    )
