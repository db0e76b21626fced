"""scan-root: compliance and integrity checks for container root filesystems."""

from __future__ import annotations

from .errors import ScannerError, TargetError, UsageError
from .report import Finding, ManagerSummary, PackageRef, Problem, Report, Severity, Stats
from .scan import iter_scan, scan_root
from .version import __version__

__all__ = [
    "Finding",
    "ManagerSummary",
    "PackageRef",
    "Problem",
    "Report",
    "ScannerError",
    "Severity",
    "Stats",
    "TargetError",
    "UsageError",
    "__version__",
    "iter_scan",
    "scan_root",
]
