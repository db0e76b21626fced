"""Finding, Problem and Report records, and the versioned JSON form of a report."""

from __future__ import annotations

import enum
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .kinds import Effect, FindingKind, ProblemKind, leaves_incomplete

__all__ = [
    "SCHEMA_VERSION",
    "CheckInfo",
    "Effect",
    "Finding",
    "FindingKind",
    "ManagerSummary",
    "PackageRef",
    "Problem",
    "ProblemKind",
    "Report",
    "Severity",
    "Stats",
    "Vulnerability",
    "display_path",
    "new_scan_id",
]

SCHEMA_VERSION = 1


class Severity(enum.IntEnum):
    """Ordered so that `--fail-on` can compare; the JSON form is the lower-case name."""

    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    def __str__(self) -> str:
        return self.name.lower()


def new_scan_id() -> str:
    """A fresh random UUID4, canonical form: one per scan, so that a replayed report is known."""
    return str(uuid.uuid4())


def display_path(physical: bytes) -> str:
    """`/usr/bin/ls` for a root-relative byte path; undecodable bytes shown as `\\xe9`."""
    return "/" + physical.lstrip(b"/").decode("utf-8", "backslashreplace")


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class PackageRef:
    """The package a finding is about, as its manager names it."""

    name: str
    version: str
    manager: str


@dataclass(frozen=True, slots=True)
class Finding:
    """One compliance finding. `path` is the raw root-relative path; JSON shows it as `/usr/bin/ls`."""

    check: str
    title: str
    severity: Severity
    kind: FindingKind
    path: bytes
    package: PackageRef | None = None
    expected: str | None = None
    actual: str | None = None
    algorithm: str | None = None
    detail: str | None = None
    config: bool = False  # the file is a conffile: it may change legitimately
    # Check-specific facts (425: key_type, encrypted, line, fingerprint, vendored; 426: signals;
    # 424: variables, source). JSON-ready values only; never secret material.
    extra: Mapping[str, Any] = field(default_factory=dict)
    # Set when a policy decided this finding: the rule's name and its effect (alert or block).
    rule: str | None = None
    effect: Effect | None = None
    baselined: bool = False  # accepted by `--baseline`: reported, but does not fail the scan

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "check": self.check,
            "title": self.title,
            "severity": str(self.severity),
            "kind": self.kind,
        }
        if self.path:  # an empty path: the finding is not about a file (424's environment)
            out["path"] = display_path(self.path)
        if not _is_utf8(self.path):
            out["path_hex"] = self.path.hex()
        if self.package is not None:
            out["package"] = {
                "name": self.package.name,
                "version": self.package.version,
                "manager": self.package.manager,
            }
        for key in ("expected", "actual", "algorithm", "detail"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.config:
            out["config"] = True
        if self.rule is not None:
            out["rule"] = self.rule
        if self.effect is not None:
            out["effect"] = self.effect
        if self.baselined:
            out["baselined"] = True
        out.update(self.extra)
        return out


@dataclass(frozen=True, slots=True)
class Problem:
    """Something the scan could not do: a file it could not verify, a DB it could not read.

    For a compliance tool "could not verify" is itself a result; a Problem is never a pass.
    """

    kind: ProblemKind  # whether it leaves the report incomplete is the kind's to say
    message: str
    path: bytes | None = None
    check: str | None = None
    package: PackageRef | None = None
    errno: int | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "message": self.message}
        if self.path is not None:
            out["path"] = display_path(self.path)
            if not _is_utf8(self.path):
                out["path_hex"] = self.path.hex()
        if self.check is not None:
            out["check"] = self.check
        if self.package is not None:
            out["package"] = {
                "name": self.package.name,
                "version": self.package.version,
                "manager": self.package.manager,
            }
        if self.errno is not None:
            out["errno"] = self.errno
        return out

    @property
    def unverified(self) -> bool:
        """True when this problem leaves a check's verdict on some item open (its kind decides;
        a kind string no ProblemKind names counts as unverified)."""
        return leaves_incomplete(self.kind)


@dataclass(frozen=True, slots=True)
class Vulnerability:
    """One advisory that applies to one installed package (docs/report.md, `vulnerabilities`).
    `severity` is None when the advisory gives none: shown as "unknown", never guessed."""

    id: str
    aliases: tuple[str, ...]
    package: PackageRef
    source_name: str
    fixed_version: str | None
    severity: Severity | None
    cvss: float | None
    summary: str
    source: str  # which database: its kind and the name it was imported under
    source_date: str | None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "aliases": list(self.aliases),
            "package": {
                "name": self.package.name,
                "version": self.package.version,
                "manager": self.package.manager,
                "source_name": self.source_name,
            },
            "fixed_version": self.fixed_version,
            "severity": "unknown" if self.severity is None else str(self.severity),
            "summary": self.summary,
            "source": {"name": self.source, "date": self.source_date},
        }
        if self.cvss is not None:
            out["cvss"] = self.cvss
        return out


@dataclass(frozen=True, slots=True)
class ManagerSummary:
    """A package manager found in the root and how much it recorded."""

    manager: str
    packages: int
    files: int
    filtered: int = 0  # files the image deliberately dropped (dpkg path-exclude)


@dataclass(slots=True)
class Stats:
    """Work done by one scan."""

    files_walked: int = 0
    files_checked: int = 0
    files_hashed: int = 0
    bytes_hashed: int = 0
    files_reused: int = 0  # rescans: files whose recorded clean verdict stood (scanner/state.py)
    seconds: float = 0.0
    implementation: str = ""
    jobs: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "files_walked": self.files_walked,
            "files_checked": self.files_checked,
            "files_hashed": self.files_hashed,
            "bytes_hashed": self.bytes_hashed,
            "files_reused": self.files_reused,
            "seconds": round(self.seconds, 6),
            "implementation": self.implementation,
            "jobs": self.jobs,
        }


@dataclass(frozen=True, slots=True)
class CheckInfo:
    """What the writers say about a check that ran (SARIF's rules), so that they need no checks."""

    id: str
    title: str
    worst: Severity | None = None  # its most severe finding; None: what it found says


@dataclass(slots=True)
class Report:
    """Everything one scan found, could not do, and measured."""

    root: str
    scanner_version: str
    implementation: str
    checks: tuple[str, ...]
    findings: list[Finding] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    managers: list[ManagerSummary] = field(default_factory=list)
    stats: Stats = field(default_factory=Stats)
    target_kind: str = "rootfs"  # "rootfs", "image" or "task"
    # host (in a Fargate task: the task id), task, container, image — what the target is.
    target_details: dict[str, Any] = field(default_factory=dict)
    # Things the user should know that are neither findings nor problems (a block effect not
    # applied to a Fargate task, a baseline written).
    notices: list[str] = field(default_factory=list)
    suppressed: int = 0  # findings a policy rule ignored (dropped from `findings`)
    # The checks that ran, described for the writers (not in the JSON, which lists `checks`).
    check_info: tuple[CheckInfo, ...] = ()
    # Names this scan among all others: a console stores a report sent twice (a retry) once.
    scan_id: str = field(default_factory=new_scan_id)
    # The advisories matched against the root's packages (`--vulndb`); None when no database
    # was asked for, which the JSON says by leaving the field out ("unknown", never "none").
    vulnerabilities: list[Vulnerability] | None = None

    @property
    def complete(self) -> bool:
        """False when some item could not be verified (the scan's verdict is partial)."""
        return not any(problem.unverified for problem in self.problems)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA_VERSION,
            "scan_id": self.scan_id,
            "scanner": {
                "name": "scan-root",
                "version": self.scanner_version,
                "implementation": self.implementation,
            },
            "target": {"kind": self.target_kind, "root": self.root, **self.target_details},
            "checks": list(self.checks),
            "managers": [
                {
                    "manager": summary.manager,
                    "packages": summary.packages,
                    "files": summary.files,
                    "filtered": summary.filtered,
                }
                for summary in self.managers
            ],
            "findings": [finding.to_dict() for finding in self.findings],
            "suppressed": self.suppressed,
            "problems": [problem.to_dict() for problem in self.problems],
            "notices": list(self.notices),
            "complete": self.complete,
            "stats": self.stats.to_dict(),
        } | (
            {}
            if self.vulnerabilities is None
            else {"vulnerabilities": [entry.to_dict() for entry in self.vulnerabilities]}
        )

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)
