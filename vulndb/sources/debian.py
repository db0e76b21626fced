"""The Debian security tracker's JSON (security-tracker.debian.org/tracker/data/json)."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping

from ..records import Advisory, Affected, Distro, Ecosystem, Range, Severity, SourceKind
from . import _severity
from ._common import (
    DEFAULT_LIMITS,
    Limits,
    Where,
    display,
    get_map,
    get_opt_str,
    get_str,
    load_document,
    read_file,
)

__all__ = ["CODENAMES", "parse", "read"]

# Codename -> the release number OSV's `Debian:N` uses, so both sources key alike. A codename
# not listed (sid, experimental, a future one) keeps its name.
CODENAMES = {
    "jessie": "8",
    "stretch": "9",
    "buster": "10",
    "bullseye": "11",
    "bookworm": "12",
    "trixie": "13",
    "forky": "14",
    "duke": "15",
}
# The tracker's statuses: "resolved" with a version is fixed there; "open" and "undetermined"
# are affected with no fix yet; "not-affected" (and "resolved" at version "0": the vulnerable
# code was never in that release) yield nothing.
_AFFECTED = {"open", "undetermined"}
_KNOWN = _AFFECTED | {"resolved", "not-affected"}


def parse(document: object, where: Where, limits: Limits = DEFAULT_LIMITS) -> Iterator[Advisory]:
    """One advisory per (source package, CVE) with one Affected per release that is affected."""
    for source, cves in get_map(document, where).items():
        at_source = where.at(source)
        get_str(source, at_source, limits)
        for cve, entry in get_map(cves, at_source).items():
            advisory = _entry(
                source, cve, get_map(entry, at_source.at(cve)), at_source.at(cve), limits
            )
            if advisory is not None:
                yield advisory


def _entry(
    source: str, cve: str, entry: Mapping[str, object], where: Where, limits: Limits
) -> Advisory | None:
    summary = get_opt_str(entry.get("description"), where.at("description"), limits) or ""
    affected: list[Affected] = []
    worst = Severity.UNKNOWN
    releases = get_map(entry.get("releases", {}), where.at("releases"))
    for codename, value in releases.items():
        at = where.at("releases").at(codename)
        release = get_map(value, at)
        status = get_str(release.get("status"), at.at("status"), limits)
        if status not in _KNOWN:
            raise at.at("status").fail(f"unknown status {display(status)}")
        fixed = get_opt_str(release.get("fixed_version"), at.at("fixed_version"), limits)
        urgency = get_opt_str(release.get("urgency"), at.at("urgency"), limits)
        # An empty fixed_version is as good as none: no version to compare against.
        if status == "not-affected" or (status == "resolved" and fixed in (None, "", "0")):
            continue
        rng = Range("0", fixed=fixed) if status == "resolved" else Range("0")
        ecosystem = Ecosystem(Distro.DEBIAN, CODENAMES.get(codename, codename))
        affected.append(Affected(ecosystem, source, (rng,)))
        if urgency is not None:
            worst = max(worst, _severity.from_word(urgency))
    if not affected:
        return None
    return Advisory(
        id=cve,
        aliases=(),
        summary=summary,
        severity=worst,
        cvss_vector=None,
        cvss_score=None,
        published=None,
        modified=None,
        source=SourceKind.DEBIAN_TRACKER,
        affected=tuple(affected),
    )


def read(path: str | os.PathLike[str], limits: Limits = DEFAULT_LIMITS) -> Iterator[Advisory]:
    where = display(os.fspath(path))
    yield from parse(load_document(read_file(path, limits), where, limits), Where(where), limits)
