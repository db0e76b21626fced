"""Package-manifest readers: one module per package format, one small interface, no scanner imports."""

from __future__ import annotations

from . import apk, dpkg, rpm
from .reader import Reader
from .records import (
    DigestAlgorithm,
    InstalledFile,
    Package,
    PackageDB,
    PkgDBError,
    PkgDBProblem,
    Verify,
)
from .rootfs import RootFS

# Every package-format reader, in detection order; mypy checks each against the Reader interface.
READERS: tuple[Reader, ...] = (dpkg, rpm, apk)
# The directories the readers read files from by path (each reader's DATABASE_DIRS): an image
# unpacked for a scan keeps every file under them whole (scanner/targets/image.py).
DATABASE_DIRS: tuple[bytes, ...] = tuple(
    path for reader in READERS for path in reader.DATABASE_DIRS
)

__all__ = [
    "DATABASE_DIRS",
    "READERS",
    "DigestAlgorithm",
    "InstalledFile",
    "Package",
    "PackageDB",
    "PkgDBError",
    "PkgDBProblem",
    "Reader",
    "RootFS",
    "Verify",
]
