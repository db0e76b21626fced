"""Errors the scanner raises; per-file trouble is never raised but reported as a Problem."""

from __future__ import annotations

__all__ = ["ScannerError", "TargetError", "UsageError"]


class ScannerError(Exception):
    """Base of every error scan-root raises on purpose (package-DB errors are pkgdb.PkgDBError)."""


class TargetError(ScannerError):
    """The scan target cannot be scanned at all (missing, not a directory, unreadable)."""


class UsageError(ScannerError):
    """The caller asked for something that does not exist (an unknown check id, a bad option)."""
