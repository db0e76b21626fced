"""rpm distributions' errata, updateinfo-style, as Rocky Linux and AlmaLinux publish them: the JSON
of aquasecurity/vuln-list `rocky/` (id, severity, cveids, collections[].packages[]) and `alma/`
(updateinfo_id, severity, references[type=cve], pkglist.packages[], dates in ms since 1970)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime

from ..records import Advisory, Affected, Distro, Ecosystem, Range, SourceKind
from . import _severity
from ._common import (
    DEFAULT_LIMITS,
    Limits,
    Where,
    display,
    get_list,
    get_map,
    get_opt_str,
    get_str,
    get_str_list,
    load_document,
    read_file,
)

__all__ = ["parse", "read"]

# The advisory id's prefix says whose errata these are.
_PREFIXES = {
    "RLSA": Distro.ROCKY,
    "RLBA": Distro.ROCKY,
    "RLEA": Distro.ROCKY,
    "ALSA": Distro.ALMA,
    "ALBA": Distro.ALMA,
    "ALEA": Distro.ALMA,
}
# The major release an rpm release tag was built for: "1.el10_0" -> "10", "3.el9_4.1" -> "9".
_EL = re.compile(r"\.el(\d+)")


def parse(
    document: object,
    where: Where,
    limits: Limits = DEFAULT_LIMITS,
    *,
    release: str | None = None,
) -> Advisory:
    """One erratum. Its distro comes from the id's prefix; its release, unless given, from the
    fixed packages' `.elN` release tag (the errata JSON itself names no release)."""
    top = get_map(document, where)
    id_key = "updateinfo_id" if "updateinfo_id" in top else "id"
    ident = get_str(top.get(id_key), where.at(id_key), limits)
    distro = _PREFIXES.get(ident.partition("-")[0])
    if distro is None:
        raise where.at(id_key).fail("not a Rocky (RL?A-) or Alma (AL?A-) erratum id")
    word = get_opt_str(top.get("severity"), where.at("severity"), limits) or ""
    cves = _cves(top, where, limits)
    groups: list[tuple[object, Where]] = []
    if "pkglist" in top:
        at = where.at("pkglist")
        groups.append((get_map(top["pkglist"], at).get("packages", []), at.at("packages")))
    for i, item in enumerate(get_list(top.get("collections", []), where.at("collections"))):
        at = where.at("collections").at(i)
        groups.append((get_map(item, at).get("packages", []), at.at("packages")))
    affected: list[Affected] = []
    for packages, at in groups:
        for j, pkg in enumerate(get_list(packages, at)):
            found = _package(
                get_map(pkg, at.at(j)),
                at.at(j),
                distro,
                release,
                limits,
            )
            if found not in affected:
                affected.append(found)
    return Advisory(
        id=ident,
        aliases=tuple(cves),
        summary=get_opt_str(top.get("title"), where.at("title"), limits) or "",
        severity=_severity.from_word(word),
        cvss_vector=None,
        cvss_score=None,
        published=_date(top, "issued", where, limits),
        modified=_date(top, "updated", where, limits),
        source=SourceKind.RPM_ERRATA,
        affected=tuple(affected),
    )


def _package(
    pkg: Mapping[str, object], where: Where, distro: Distro, release: str | None, limits: Limits
) -> Affected:
    name = get_str(pkg.get("name"), where.at("name"), limits)
    epoch = get_opt_str(pkg.get("epoch"), where.at("epoch"), limits) or "0"
    version = get_str(pkg.get("version"), where.at("version"), limits)
    rpm_release = get_str(pkg.get("release"), where.at("release"), limits)
    arch = get_opt_str(pkg.get("arch"), where.at("arch"), limits)
    if not epoch.isdigit():
        raise where.at("epoch").fail("not a number")
    if not (name and version and rpm_release):
        raise where.fail("a package without name, version or release")
    if release is None:
        match = _EL.search(rpm_release)
        if match is None:
            raise where.at("release").fail("no .elN tag to tell the distribution release")
        release = match.group(1)
    # The fix as one EVR string, the spelling vulndb.versions.rpm.compare takes.
    fixed = f"{epoch}:{version}-{rpm_release}"
    return Affected(Ecosystem(distro, release), name, (Range("0", fixed=fixed),), arch=arch)


def _cves(top: Mapping[str, object], where: Where, limits: Limits) -> list[str]:
    """Rocky's `cveids`, else the `cve` references (Alma's only list of them)."""
    if "cveids" in top:
        return get_str_list(top["cveids"], where.at("cveids"), limits)
    found: list[str] = []
    for i, item in enumerate(get_list(top.get("references", []), where.at("references"))):
        at = where.at("references").at(i)
        ref = get_map(item, at)
        if ref.get("type") == "cve":
            ident = get_str(ref.get("id"), at.at("id"), limits)
            if ident not in found:
                found.append(ident)
    return found


def _date(top: Mapping[str, object], key: str, where: Where, limits: Limits) -> str | None:
    """Rocky's `issued: {"date": "2025-10-03 19:56:45"}` as written; Alma's
    `issued_date: {"$date": MS}` as ISO 8601 UTC."""
    if top.get(key) is not None:
        at = where.at(key)
        return get_opt_str(get_map(top[key], at).get("date"), at.at("date"), limits)
    if top.get(key + "_date") is not None:
        at = where.at(key + "_date")
        ms = get_map(top[key + "_date"], at).get("$date")
        if isinstance(ms, bool) or not isinstance(ms, int) or not 0 <= ms < 10**14:
            raise at.at("$date").fail("expected milliseconds since 1970")
        return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return None


def read(path: str | os.PathLike[str], limits: Limits = DEFAULT_LIMITS) -> Iterator[Advisory]:
    where = display(os.fspath(path))
    yield parse(load_document(read_file(path, limits), where, limits), Where(where), limits)
