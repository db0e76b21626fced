"""Baselines: accepted findings keyed by (check, path, package), read, matched and written.

A baseline file is versioned JSON, sorted so that it diffs well under version control:

    {"schema": 1, "scanner": {"name": "scan-root", "version": "0.1.0"},
     "entries": [{"check": "448", "path": "/usr/bin/tool", "package": "tool"}, ...]}

`path` is the path as seen in the container; a path that is not valid UTF-8 also carries
`path_hex`, and the hex is what matches (two raw names can share one display form). A finding
that is not about a file (424's environment) has `path: null` and is keyed by its `source` and
the `variables` it flagged, by name only: never a value.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from .atomic import write_atomically
from .errors import UsageError
from .jsonload import InputFileError, load_json, read_bounded
from .report import Finding, Report, display_path
from .version import __version__

# A baseline is accepted findings, ~100 bytes each: this is some 300,000 of them.
MAX_BASELINE_BYTES = 32 * 1024 * 1024

__all__ = [
    "BASELINE_SCHEMA",
    "Baseline",
    "BaselineError",
    "Entry",
    "check_location",
    "prepare",
    "settle",
]

BASELINE_SCHEMA = 1


class BaselineError(UsageError):
    """The baseline file cannot be used: unreadable, corrupt, foreign or of an unknown version."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One accepted finding's identity."""

    check: str
    path: str | None  # as seen in the container; None when the finding is not about a file
    package: str | None
    path_hex: str | None = None  # the raw path, when it is not valid UTF-8
    source: str | None = None  # 424: the environment source
    variables: tuple[str, ...] = ()  # 424: the flagged variable names

    @property
    def key(self) -> tuple[str, str | None, str | None, str | None]:
        return (self.check, self.path_hex or self.path, self.package, self.source)

    @classmethod
    def of(cls, finding: Finding) -> Entry:
        path = path_hex = None
        if finding.path:
            path = display_path(finding.path)
            try:
                finding.path.decode("utf-8")
            except UnicodeDecodeError:
                path_hex = finding.path.hex()
        source = finding.extra.get("source")
        variables = finding.extra.get("variables", ())
        return cls(
            check=finding.check,
            path=path,
            package=finding.package.name if finding.package is not None else None,
            path_hex=path_hex,
            source=source if isinstance(source, str) else None,
            variables=tuple(sorted({str(v["name"]) for v in variables if isinstance(v, Mapping)})),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"check": self.check, "path": self.path, "package": self.package}
        if self.path_hex is not None:
            out["path_hex"] = self.path_hex
        if self.source is not None:
            out["source"] = self.source
        if self.variables:
            out["variables"] = list(self.variables)
        return out


class Baseline:
    """The accepted findings of one baseline file."""

    def __init__(self, entries: Iterable[Entry]) -> None:
        self.entries = sorted(set(entries), key=lambda e: json.dumps(e.to_dict(), sort_keys=True))
        # Entries sharing a key pool their variables: a finding is accepted when every variable
        # it flags was accepted (a newly flagged variable in a known source is a new finding).
        self._accepted: dict[tuple[str, str | None, str | None, str | None], set[str]] = {}
        for entry in self.entries:
            self._accepted.setdefault(entry.key, set()).update(entry.variables)

    def accepts(self, finding: Finding) -> bool:
        entry = Entry.of(finding)
        accepted = self._accepted.get(entry.key)
        return accepted is not None and set(entry.variables) <= accepted

    def to_json(self) -> str:
        document = {
            "schema": BASELINE_SCHEMA,
            "scanner": {"name": "scan-root", "version": __version__},
            "entries": [entry.to_dict() for entry in self.entries],
        }
        return json.dumps(document, indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def from_findings(cls, findings: Iterable[Finding]) -> Baseline:
        return cls(Entry.of(finding) for finding in findings)

    @classmethod
    def read(cls, path: str) -> Baseline:
        try:
            data = read_bounded(path, what="baseline", max_bytes=MAX_BASELINE_BYTES)
            document = load_json(data, what=f"baseline {path}", max_bytes=MAX_BASELINE_BYTES)
        except OSError as error:
            raise BaselineError(f"cannot read baseline {path}: {error.strerror}") from error
        except InputFileError as error:
            raise BaselineError(str(error)) from error
        return cls(_entries(document, path))


def _entries(document: object, path: str) -> list[Entry]:
    """The entries of a parsed baseline document; BaselineError naming what is wrong."""
    if not isinstance(document, dict):
        raise BaselineError(f"baseline {path}: not a scan-root baseline (not a JSON object)")
    scanner = document.get("scanner")
    if not isinstance(scanner, dict) or scanner.get("name") != "scan-root":
        raise BaselineError(f"baseline {path}: not a scan-root baseline (no scanner.name)")
    if document.get("schema") != BASELINE_SCHEMA:
        raise BaselineError(
            f"baseline {path}: schema {document.get('schema')!r} is not supported "
            f"(this scan-root reads schema {BASELINE_SCHEMA})"
        )
    raw_entries = document.get("entries")
    if not isinstance(raw_entries, list):
        raise BaselineError(f"baseline {path}: `entries` must be a list")
    return [_entry(raw, path, index) for index, raw in enumerate(raw_entries)]


def _entry(raw: object, path: str, index: int) -> Entry:
    where = f"baseline {path}: entries[{index}]"
    if not isinstance(raw, dict):
        raise BaselineError(f"{where}: not an object")
    unknown = sorted(set(raw) - {"check", "path", "package", "path_hex", "source", "variables"})
    if unknown:
        raise BaselineError(f"{where}: unknown field(s) {', '.join(unknown)}")
    check = raw.get("check")
    if not isinstance(check, str) or not check:
        raise BaselineError(f"{where}: `check` must be a non-empty string")
    for name in ("path", "package", "path_hex", "source"):
        if raw.get(name) is not None and not isinstance(raw[name], str):
            raise BaselineError(f"{where}: `{name}` must be a string or null")
    path_hex = raw.get("path_hex")
    if path_hex is not None:
        try:
            bytes.fromhex(path_hex)
        except ValueError as error:
            raise BaselineError(f"{where}: `path_hex` is not hex") from error
    variables = raw.get("variables", [])
    if not isinstance(variables, list) or not all(isinstance(v, str) for v in variables):
        raise BaselineError(f"{where}: `variables` must be a list of names")
    return Entry(
        check=check,
        path=raw.get("path"),
        package=raw.get("package"),
        path_hex=path_hex.lower() if path_hex is not None else None,
        source=raw.get("source"),
        variables=tuple(sorted(set(variables))),
    )


def check_location(path: str, target: str) -> None:
    """Refuse a baseline inside the scanned target (scan-root never writes into what it scans),
    a directory, or one in a directory that does not exist.

    The live root `/` is the exception: everything is inside it, and scanning from inside a task
    must still be able to keep a baseline (as it keeps `--output`).
    """
    real_target = os.path.realpath(target)
    if real_target == "/":
        return
    directory, name = os.path.split(os.path.abspath(path))
    real = os.path.join(os.path.realpath(directory), name)
    # Spelled through the target counts too: a symlink in a hostile root could lead it out.
    lexical, lexical_target = os.path.normpath(os.path.abspath(path)), os.path.abspath(target)
    if any(
        here == top or here.startswith(top.rstrip("/") + "/")
        for here, top in ((real, real_target), (lexical, os.path.normpath(lexical_target)))
    ):
        raise BaselineError(f"baseline {path} is inside the scanned target {target}: refused")
    if os.path.isdir(real):
        raise BaselineError(f"baseline {path} is a directory")
    if not os.path.isdir(directory):  # said now, not after a long scan
        raise BaselineError(f"cannot write baseline {path}: no directory {directory}")


def prepare(path: str, target: str, *, update: bool = False) -> Baseline | None:
    """Before the scan: the accepted findings, or None when this scan is to write the file
    (it does not exist, or `update`). BaselineError for a bad location or a bad file."""
    check_location(path, target)
    if update or not os.path.lexists(path):
        return None
    return Baseline.read(path)


def settle(report: Report, path: str, accepted: Baseline | None) -> None:
    """Mark the findings `accepted` knows; with no baseline (`None`), write one from this report.

    Either way the report gets a notice saying what the baseline did. Writing errors raise
    BaselineError.
    """
    if accepted is None:
        written = Baseline.from_findings(report.findings)
        try:
            # 0644: a baseline is meant to be committed beside the pipeline that uses it.
            write_atomically(path, written.to_json().encode("utf-8"), 0o644)
        except OSError as error:
            raise BaselineError(f"cannot write baseline {path}: {error.strerror}") from error
        report.findings = [replace(finding, baselined=True) for finding in report.findings]
        report.notices.append(
            f"baseline written to {path}: {len(written.entries)} entries; "
            f"{len(report.findings)} finding(s) of this scan accepted"
        )
        return
    marked = [replace(f, baselined=True) if accepted.accepts(f) else f for f in report.findings]
    report.findings = marked
    known = sum(1 for finding in marked if finding.baselined)
    notice = f"baseline {path}: {known} of {len(marked)} finding(s) accepted"
    seen = {Entry.of(finding).key for finding in marked}
    stale = sum(1 for entry in accepted.entries if entry.key not in seen)
    if stale:
        notice += f"; {stale} entries match nothing any more (--update-baseline drops them)"
    report.notices.append(notice)
