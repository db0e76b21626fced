"""Typed, frozen records every package-manifest reader yields, and the error hierarchy."""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = [
    "DigestAlgorithm",
    "InstalledFile",
    "Package",
    "PackageDB",
    "PkgDBError",
    "PkgDBProblem",
    "Verify",
]


class DigestAlgorithm(enum.Enum):
    """Which hash the manifest's digest is; values are hashlib names but for `sha256-160`."""

    MD5 = "md5"
    SHA1 = "sha1"
    SHA256 = "sha256"
    SHA256_160 = "sha256-160"  # the first 20 bytes of SHA-256 (apk packages with `f:S`)


class Verify(enum.IntFlag):
    """Which attributes of an installed file its manager asks to verify (rpm `%verify`).

    rpm keeps them per file (FILEVERIFYFLAGS, `%verify(not md5 size mtime)`) and `rpm -V` checks
    nothing else; dpkg and apk records verify everything they record (ALL).
    """

    NONE = 0
    DIGEST = 1
    SIZE = 2
    LINK_TARGET = 4
    PERMISSIONS = 8  # the 12 permission bits
    FILE_TYPE = 16  # regular file / symlink / other (rpm's MODE covers both, but for %ghost)
    ALL = 31


@dataclass(frozen=True, slots=True)
class Package:
    """One installed package as its manager records it."""

    manager: str  # "dpkg", "rpm", "apk"
    name: str
    version: str  # the manager's full version string (dpkg: with epoch, e.g. "1:2.3-4")
    arch: str | None = None
    epoch: int | None = None
    release: str | None = None
    file_count: int = 0
    # The source package advisories name it by: dpkg's `Source:` (the binary's own name when
    # absent), apk's origin `o:`, rpm's SOURCERPM name. None when the manager records none.
    source: str | None = None
    # dpkg's `Source: name (version)`: a binary rebuilt with its own version (binNMU) still
    # carries its source's; None means the package's own version is the source's.
    source_version: str | None = None


@dataclass(frozen=True, slots=True)
class InstalledFile:
    """One file a package installed, with the digest its manager recorded.

    `path` is bytes relative to the root with no leading slash, exactly as the manifest spells it
    (it may pass through symlinked directories such as `bin -> usr/bin`). `digest` is raw bytes,
    or None when the manifest records none (dpkg `newconffile`, a package without md5sums).
    `mode` is the full st_mode *including the file-type bits* (S_IFREG, S_IFLNK) where the
    manager records it, else None. For a symlink (mode S_IFLNK), `link_target` is the recorded
    target where the manager stores it (rpm), and `digest`, if any, is a digest of the target
    string (apk's `Z:` on a symlink), never of the file it points to. `verify` says which
    differences count (rpm's per-file `%verify`); `missing_ok` that an absent file is no finding.
    """

    path: bytes
    package: str
    version: str
    manager: str
    digest: bytes | None
    algorithm: DigestAlgorithm | None
    is_config: bool = False
    mode: int | None = None  # None: this manager records no mode (dpkg)
    size: int | None = None  # None: this manager records no size (dpkg, apk)
    link_target: bytes | None = None  # a symlink's recorded target (rpm FILELINKTOS)
    verify: Verify = Verify.ALL  # what may be reported of it but "missing" (rpm %verify)
    missing_ok: bool = False  # its absence is no finding (rpm %config(missingok), %ghost)


@dataclass(frozen=True, slots=True)
class PkgDBProblem:
    """Something in a package database that could not be read; the reader goes on."""

    manager: str
    source: bytes  # the DB file concerned, relative to the root
    message: str


class PkgDBError(Exception):
    """A package database exists but cannot be read at all."""


@dataclass(frozen=True, slots=True)
class PackageDB:
    """What one package manager's database says is installed, and what could not be read.

    Every reader module (`pkgdb.dpkg`, ...) implements `pkgdb.reader.Reader`: `MANAGER`,
    `present(root) -> bool` and `read(root) -> PackageDB` (or a subclass with format-specific
    extras).
    """

    packages: tuple[Package, ...]
    files: tuple[InstalledFile, ...]
    problems: tuple[PkgDBProblem, ...]
    filtered: int = 0  # entries the image deliberately dropped (dpkg path-exclude), counted
