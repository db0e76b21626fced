"""Matching: which stored advisories apply to a root's installed packages, by exact versions."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from pkgdb import Package

from .managers import manager_of
from .records import Ecosystem, Range
from .release import RootRelease
from .store import Asked, StoredAdvisory, StoreError, VulnDB
from .versions import InvalidVersion, Manager, apk, compare, sort_key

__all__ = ["Gap", "GapKind", "Match", "MatchResult", "installed_version", "match_packages"]


class GapKind(enum.Enum):
    """Why some packages could not be judged: each is a problem in the report, never a pass."""

    NO_RELEASE = "no-release"  # the root names no distribution release
    NO_DATA = "no-data"  # the database holds nothing for the root's release
    BAD_VERSION = "bad-version"  # an installed or advisory version its manager would refuse


@dataclass(frozen=True, slots=True)
class Gap:
    kind: GapKind
    message: str
    package: Package | None = None


@dataclass(frozen=True, slots=True)
class Match:
    """One advisory that applies to one installed package. `fixed` is the version that fixes
    it (None: no fix released, or only a `last_affected` bound is known)."""

    advisory: StoredAdvisory
    package: Package
    source_name: str
    fixed: str | None
    # Every id the same flaw goes by (the advisory's own and its aliases, merged across
    # sources): a CVE that two databases both name is one match, not two.
    aliases: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class MatchResult:
    release: RootRelease | None
    ecosystem: Ecosystem | None  # the release spelling the database held
    matches: tuple[Match, ...]
    gaps: tuple[Gap, ...]
    packages_judged: int


def installed_version(package: Package, manager: Manager) -> str:
    """The version string advisories compare against: rpm's `[epoch:]version-release`; dpkg's
    and apk's full version as recorded."""
    if manager is Manager.RPM:
        epoch = "" if package.epoch is None else f"{package.epoch}:"
        release = "" if package.release is None else f"-{package.release}"
        return f"{epoch}{package.version}{release}"
    return package.version


def match_packages(
    db: VulnDB, release: RootRelease | None, packages: Sequence[Package]
) -> MatchResult:
    """Every advisory of `db` that applies to `packages` of a root of `release`. The root's
    packages of another manager than its distro's (a pip-installed tree, an rpm DB in a Debian
    root) are not matched here; every package that could not be judged is a Gap."""
    if release is None:
        gap = Gap(
            GapKind.NO_RELEASE,
            "the root names no distribution release (no etc/os-release): "
            f"{len(packages)} packages not checked for vulnerabilities",
        )
        return MatchResult(None, None, (), (gap,) if packages else (), 0)
    ecosystem = next((e for e in release.candidates if db.has(e)), None)
    if ecosystem is None:
        gap = Gap(
            GapKind.NO_DATA,
            f"no advisory data for {release.name}: {len(packages)} packages not checked for "
            "vulnerabilities (import a source covering it: docs/vulnerabilities.md)",
        )
        return MatchResult(release, None, (), (gap,) if packages else (), 0)
    manager = manager_of(ecosystem.distro)
    if manager is None:  # a release no distro matcher reads: detect_release never makes one
        raise ValueError(f"no package manager for {ecosystem}")
    ours = [p for p in packages if p.manager == manager.value]
    gaps: list[Gap] = []
    if len(ours) < len(packages):
        others = sorted({p.manager for p in packages} - {manager.value})
        gaps.append(
            Gap(
                GapKind.NO_DATA,
                f"no advisory data for the {', '.join(others)} packages of a {release.name} "
                f"root: {len(packages) - len(ours)} packages not checked for vulnerabilities",
            )
        )
    keys: dict[str, bytes | None] = {}  # binaries of one source share its version's key
    asked = [
        Asked(name, index, _installed_key(manager, package, keys))
        for index, package in enumerate(ours)
        for name in sorted(_advisory_names(package, manager))
    ]
    # SQLite compares the ranges' sort keys: most advisories of a root's packages are fixed in
    # what it runs, and are never read. What keys cannot decide (apk, exact version lists, a
    # version its manager refuses) comes back undecided, for compare().
    decided: dict[tuple[int, int], str | None] = {}
    undecided: set[tuple[int, int]] = set()
    for hit in db.hits(ecosystem, asked):
        pair = (hit.unit, hit.index)
        if hit.decided:
            decided.setdefault(pair, hit.fixed)
        else:
            undecided.add(pair)
    undecided -= decided.keys()
    units = sorted({unit for unit, _ in decided} | {unit for unit, _ in undecided})
    advisories = {advisory.unit: advisory for advisory in db.advisories(ecosystem, units)}
    found: dict[tuple[str, str | None, str], list[Match]] = {}
    bad: set[tuple[str, str | None]] = set()
    candidates = [(pair, True, fixed) for pair, fixed in decided.items()]
    candidates += [(pair, False, None) for pair in sorted(undecided)]
    for (unit, package_id), affected, fixed in candidates:
        if unit not in advisories:
            # a span of a unit whose source row is gone: a database someone else edited
            raise StoreError(f"{db.path}: unit {unit} has no stored source")
        advisory, package = advisories[unit], ours[package_id]
        version = installed_version(package, manager)
        if not affected:
            try:
                affected, fixed = _affected(manager, package.source_version or version, advisory)
            except InvalidVersion as error:
                if (package.name, package.arch) not in bad:
                    bad.add((package.name, package.arch))
                    gaps.append(
                        Gap(
                            GapKind.BAD_VERSION,
                            f"{package.name} {version[:80]!r}: {error}: not checked against "
                            f"{advisory.id[:80]}",  # an id is the advisory file's: bounded
                            package,
                        )
                    )
                continue
            if not affected:
                continue
        match = Match(advisory, package, advisory.package, fixed, (advisory.id, *advisory.aliases))
        found.setdefault((package.name, package.arch, version), []).append(match)
    matches = [m for group in found.values() for m in _merge_aliases(group)]
    matches.sort(key=lambda m: (-int(m.advisory.severity), m.package.name, m.advisory.id))
    return MatchResult(release, ecosystem, tuple(matches), tuple(gaps), len(ours))


def _installed_key(
    manager: Manager, package: Package, known: dict[str, bytes | None]
) -> bytes | None:
    """The sort key of the version advisories compare `package` by (its source's, for a
    binNMU); None when there is none (apk) or its manager refuses it (compare() will say)."""
    version = package.source_version or installed_version(package, manager)
    if version not in known:
        try:
            known[version] = sort_key(manager, version)
        except InvalidVersion:
            known[version] = None
    return known[version]


def _advisory_names(package: Package, manager: Manager) -> set[str]:
    """The names advisories may use for `package`: Debian's and Alpine's name source packages
    (dpkg Source:, apk origin); rpm errata name binary packages, OSV's rpm ecosystems source
    ones, so both are asked."""
    source = package.source or package.name
    if manager is Manager.RPM:
        return {package.name, source}
    return {source}


def _affected(manager: Manager, version: str, advisory: StoredAdvisory) -> tuple[bool, str | None]:
    """Whether `version` is affected by `advisory`, and the version fixing it (None: none
    known). InvalidVersion when a version cannot be compared."""
    if manager is Manager.APK:
        # apk orders any string, valid or not; a version apk would refuse in a package (or an
        # advisory naming one) is judged by no rule, so it is said rather than guessed.
        for text in (version, *(v for r in advisory.ranges for v in _bounds(r))):
            if not apk.is_valid(text):
                raise InvalidVersion(f"{text[:80]!r} is not a version apk accepts")
    if version in advisory.versions:
        return True, _fix_of(manager, version, advisory.ranges)
    for span in advisory.ranges:
        if _within(manager, version, span):
            return True, span.fixed
    return False, None


def _bounds(span: Range) -> Iterator[str]:
    if span.introduced != "0":
        yield span.introduced
    for bound in (span.fixed, span.last_affected, span.limit):
        if bound is not None:
            yield bound


def _fix_of(manager: Manager, version: str, ranges: Iterable[Range]) -> str | None:
    for span in ranges:
        if span.fixed is not None and compare(manager, version, span.fixed) < 0:
            return span.fixed
    return None


def _within(manager: Manager, version: str, span: Range) -> bool:
    if span.introduced != "0" and compare(manager, version, span.introduced) < 0:
        return False
    if span.limit is not None and compare(manager, version, span.limit) >= 0:
        return False
    if span.fixed is not None:
        return compare(manager, version, span.fixed) < 0
    if span.last_affected is not None:
        return compare(manager, version, span.last_affected) <= 0
    return True  # no fix released


def _merge_aliases(group: list[Match]) -> list[Match]:
    """One entry per flaw of one package: matches sharing an id (DSA-5514-1 aliasing
    CVE-2023-4911, which the tracker names itself) become the first one, with every id and
    the latest fix any of them names."""
    merged: list[Match] = []
    # id -> the first kept entry naming it: a lookup, not a scan of every kept entry (20,000
    # advisories on one package took 37 s quadratic)
    owner: dict[str, int] = {}
    for match in sorted(group, key=_preference):
        shared = [owner[a] for a in match.aliases if a in owner]
        if shared:
            index = min(shared)
            kept = merged[index]
            aliases = tuple(dict.fromkeys((*kept.aliases, *match.aliases)))
            merged[index] = Match(
                _known(kept.advisory, match.advisory),
                kept.package,
                kept.source_name,
                kept.fixed or match.fixed,
                aliases,
            )
        else:
            index = len(merged)
            merged.append(match)
        for alias in match.aliases:
            owner[alias] = min(owner.get(alias, index), index)
    return merged


def _known(kept: StoredAdvisory, other: StoredAdvisory) -> StoredAdvisory:
    """`kept` with what only `other` knows of the same flaw: a score, a summary, and the
    higher severity (a tracker's urgency may be blank where the DSA's vector is not)."""
    return dataclasses.replace(
        kept,
        severity=max(kept.severity, other.severity),
        cvss_vector=kept.cvss_vector or other.cvss_vector,
        cvss_score=kept.cvss_score if kept.cvss_score is not None else other.cvss_score,
        summary=kept.summary or other.summary,
    )


def _preference(match: Match) -> tuple[int, int, str]:
    """Which of several records of one flaw speaks for it: a CVE id first (what people search
    for), then the one knowing the most (a severity, a score)."""
    is_cve = 0 if match.advisory.id.startswith("CVE-") else 1
    return (is_cve, -int(match.advisory.severity), match.advisory.id)
