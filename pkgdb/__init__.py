"""Package-manifest readers: one module per package format, one small interface, no scanner imports."""

from __future__ import annotations

from . import apk, dpkg, rpm
from .records import DigestAlgorithm, InstalledFile, Package, PackageDB, PkgDBError, PkgDBProblem
from .rootfs import RootFS

# Every package-format reader, in detection order; each has MANAGER, present(root) and read(root).
READERS = (dpkg, rpm, apk)

__all__ = [
    "READERS",
    "DigestAlgorithm",
    "InstalledFile",
    "Package",
    "PackageDB",
    "PkgDBError",
    "PkgDBProblem",
    "RootFS",
]
