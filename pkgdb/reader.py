"""The interface every package-format reader module (`pkgdb.dpkg`, `pkgdb.rpm`, ...) implements."""

from __future__ import annotations

from typing import Protocol

from .records import PackageDB
from .rootfs import RootFS

__all__ = ["Reader"]


class Reader(Protocol):
    """One package format: a module, checked by mypy where `pkgdb.READERS` lists it."""

    @property
    def MANAGER(self) -> str:
        """The package manager's name ("dpkg"), as problems and the report name it."""
        ...

    @property
    def DATABASE_DIRS(self) -> tuple[bytes, ...]:
        """The directories, relative to the root, the reader reads files from by path."""
        ...

    def present(self, root: RootFS) -> bool:
        """Whether `root` has this format's database, or something unusable in its place."""
        ...

    def read(self, root: RootFS) -> PackageDB:
        """What the database says is installed (a subclass may add format-specific extras);
        a PkgDBError subclass only when the database cannot be used at all."""
        ...
