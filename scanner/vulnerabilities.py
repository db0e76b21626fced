"""The seam to vulndb: a root's packages matched against an advisory database, as report entries.

The only scanner module that imports vulndb, and only when a scan asks (`vulndb=PATH`):
vulndb itself imports no scanner module but the bounded JSON loader (tests/test_package_walls.py).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence

from pkgdb import Package
from pkgdb.rootfs import RootFS

from .kinds import ProblemKind
from .report import PackageRef, Problem, Severity, Vulnerability

__all__ = ["check_database", "match_root"]

# vulndb's severities as the report's: Debian's "unimportant" (NEGLIGIBLE) is the report's low.
_SEVERITIES = {
    0: None,
    1: Severity.LOW,
    2: Severity.LOW,
    3: Severity.MEDIUM,
    4: Severity.HIGH,
    5: Severity.CRITICAL,
}
# What the console accepts of one entry (console/report_schema.py): advisory files are not
# ours, and one overlong alias must not cost the console the whole report.
MAX_ALIASES = 32
MAX_ID = 128
MAX_VERSION = 256
MAX_SUMMARY = 4096
MAX_SOURCE = 64


def check_database(path: str | os.PathLike[str]) -> str | None:
    """Why the database at `path` cannot be used (None: it can): said before a scan starts."""
    from vulndb.store import StoreError, VulnDB

    try:
        VulnDB.open_read(path).close()
    except StoreError as error:
        return str(error)
    return None


def match_root(
    root: RootFS, packages: Sequence[Package], database: str | os.PathLike[str]
) -> tuple[list[Vulnerability], list[Problem]]:
    """The vulnerabilities of `packages` installed in `root`, and what could not be judged."""
    from vulndb.match import match_packages
    from vulndb.release import detect_release
    from vulndb.store import StoreError, VulnDB

    try:
        with VulnDB.open_read(database) as db:
            result = match_packages(db, detect_release(root), packages)
    except (StoreError, sqlite3.Error) as error:
        # sqlite3.Error: a foreign file with our table names but not our columns passes the
        # pre-check and fails at the first query; it is an unusable database, not a bug.
        message = f"advisory database: {error}: {len(packages)} packages not checked"
        return [], [Problem(kind=ProblemKind.VULNERABILITIES, message=message)]
    entries = [
        Vulnerability(
            id=match.advisory.id[:MAX_ID],
            aliases=tuple(a for a in match.aliases if a != match.advisory.id and len(a) <= MAX_ID)[
                :MAX_ALIASES
            ],
            package=PackageRef(
                match.package.name, _shown_version(match.package), match.package.manager
            ),
            source_name=match.source_name,
            fixed_version=None if match.fixed is None else match.fixed[:MAX_VERSION],
            severity=_SEVERITIES.get(int(match.advisory.severity)),
            cvss=match.advisory.cvss_score,
            summary=match.advisory.summary[:MAX_SUMMARY],
            source=f"{match.advisory.kind.value}:{match.advisory.source_label}"[:MAX_SOURCE],
            source_date=None
            if match.advisory.source_date is None
            else match.advisory.source_date[:64],
        )
        for match in result.matches
    ]
    problems = [
        Problem(
            kind=ProblemKind.VULNERABILITIES,
            message=gap.message,
            package=None
            if gap.package is None
            else PackageRef(gap.package.name, _shown_version(gap.package), gap.package.manager),
        )
        for gap in result.gaps
    ]
    return entries, problems


def _shown_version(package: Package) -> str:
    """The version as its manager shows it: rpm's `[epoch:]version-release`."""
    if package.manager == "rpm" and package.release is not None:
        epoch = "" if package.epoch is None else f"{package.epoch}:"
        return f"{epoch}{package.version}-{package.release}"
    return package.version
