"""scan-root: compliance and integrity checks for container root filesystems."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from .errors import ScannerError, TargetError, UsageError
from .version import __version__

if TYPE_CHECKING:
    from .inventory import Inventory, list_packages
    from .kinds import Effect, FindingKind, ProblemKind
    from .report import Finding, ManagerSummary, PackageRef, Problem, Report, Severity, Stats
    from .scan import iter_scan, scan_image, scan_root
    from .session import Scanner

__all__ = [
    "Effect",
    "Finding",
    "FindingKind",
    "Inventory",
    "ManagerSummary",
    "PackageRef",
    "Problem",
    "ProblemKind",
    "Report",
    "Scanner",
    "ScannerError",
    "Severity",
    "Stats",
    "TargetError",
    "UsageError",
    "__version__",
    "iter_scan",
    "list_packages",
    "scan_image",
    "scan_root",
]

# Loaded on first use (PEP 562): `scan-root` imports scanner.cli, which starts the early
# read-ahead (_native/_prefetch.pyx) before the scan's ~0.1 s of imports, so those must not
# run when the package itself is imported.
_LAZY = {
    "Effect": ".kinds",
    "FindingKind": ".kinds",
    "ProblemKind": ".kinds",
    "Finding": ".report",
    "ManagerSummary": ".report",
    "PackageRef": ".report",
    "Problem": ".report",
    "Report": ".report",
    "Severity": ".report",
    "Stats": ".report",
    "Inventory": ".inventory",
    "Scanner": ".session",
    "iter_scan": ".scan",
    "list_packages": ".inventory",
    "scan_image": ".scan",
    "scan_root": ".scan",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
