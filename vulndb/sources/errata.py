"""rpm distributions' errata, updateinfo-style, as Rocky Linux and AlmaLinux publish them (the
JSON of aquasecurity/vuln-list `rocky/`: id, severity, cveids, collections[].packages[])."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping

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
    ident = get_str(top.get("id"), where.at("id"), limits)
    distro = _PREFIXES.get(ident.partition("-")[0])
    if distro is None:
        raise where.at("id").fail("not a Rocky (RL?A-) or Alma (AL?A-) erratum id")
    word = get_opt_str(top.get("severity"), where.at("severity"), limits) or ""
    cves = get_str_list(top.get("cveids", []), where.at("cveids"), limits)
    affected: list[Affected] = []
    for i, item in enumerate(get_list(top.get("collections", []), where.at("collections"))):
        at = where.at("collections").at(i)
        packages = get_map(item, at).get("packages", [])
        for j, pkg in enumerate(get_list(packages, at.at("packages"))):
            found = _package(
                get_map(pkg, at.at("packages").at(j)),
                at.at("packages").at(j),
                distro,
                release,
                limits,
            )
            if found not in affected:
                affected.append(found)
    issued = top.get("issued")
    updated = top.get("updated")
    return Advisory(
        id=ident,
        aliases=tuple(cves),
        summary=get_opt_str(top.get("title"), where.at("title"), limits) or "",
        severity=_severity.from_word(word),
        cvss_vector=None,
        cvss_score=None,
        published=_date(issued, where.at("issued"), limits),
        modified=_date(updated, where.at("updated"), limits),
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


def _date(value: object, where: Where, limits: Limits) -> str | None:
    if value is None:
        return None
    return get_opt_str(get_map(value, where).get("date"), where.at("date"), limits)


def read(path: str | os.PathLike[str], limits: Limits = DEFAULT_LIMITS) -> Iterator[Advisory]:
    where = display(os.fspath(path))
    yield parse(load_document(read_file(path, limits), where, limits), Where(where), limits)
