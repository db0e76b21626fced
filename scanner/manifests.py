"""Detects every package manager present in a root and reads its manifest once per scan."""

from __future__ import annotations

from dataclasses import dataclass, field

from pkgdb import READERS, InstalledFile, Package, PkgDBError, RootFS

from .report import ManagerSummary, Problem, ProblemKind

__all__ = ["Manifests", "read_manifests"]


@dataclass(slots=True)
class Manifests:
    """Every installed file each detected manager records, with what could not be read."""

    files: list[InstalledFile] = field(default_factory=list)
    packages: list[Package] = field(default_factory=list)
    summaries: list[ManagerSummary] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


def read_manifests(root: RootFS) -> Manifests:
    """Read every package database found in `root`; an unreadable one becomes a problem."""
    manifests = Manifests()
    for reader in READERS:
        if not reader.present(root):
            continue
        try:
            database = reader.read(root)
        except PkgDBError as error:
            manifests.problems.append(
                Problem(kind=ProblemKind.PACKAGE_DB, message=f"{reader.MANAGER}: {error}")
            )
            continue
        manifests.files.extend(database.files)
        manifests.packages.extend(database.packages)
        manifests.summaries.append(
            ManagerSummary(
                manager=reader.MANAGER,
                packages=len(database.packages),
                files=len(database.files),
                filtered=database.filtered,
            )
        )
        manifests.problems.extend(
            Problem(
                kind=ProblemKind.PACKAGE_DB,
                message=f"{problem.manager}: {problem.message}",
                path=problem.source,
            )
            for problem in database.problems
        )
    return manifests
