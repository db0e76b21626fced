"""Alpine secdb (secdb.alpinelinux.org/vX.Y/main.json) and its per-package records (vuln-list)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping

from ..records import Advisory, Affected, Distro, Ecosystem, Range, Severity, SourceKind
from ._common import (
    DEFAULT_LIMITS,
    Limits,
    Where,
    display,
    get_list,
    get_map,
    get_str,
    get_str_list,
    load_document,
    read_file,
)

__all__ = ["NEVER_AFFECTED", "parse", "read"]

# A secfixes version of "0": the CVE never affected the package in this release (secdb's own
# convention, https://wiki.alpinelinux.org/wiki/Development_using_git:Security_fixes); such
# entries yield no advisory, so that no matcher can report them.
NEVER_AFFECTED = "0"
_RELEASE = re.compile(r"v\d+\.\d+|edge")


def parse(document: object, where: Where, limits: Limits = DEFAULT_LIMITS) -> Iterator[Advisory]:
    """The secdb document (`packages` of `{"pkg": {...}}`) or one per-package record (`name`,
    `secfixes` at the top, as aquasecurity/vuln-list stores them): one advisory per (package,
    id, fixed version)."""
    top = get_map(document, where)
    release = get_str(top.get("distroversion"), where.at("distroversion"), limits)
    if not _RELEASE.fullmatch(release):
        raise where.at("distroversion").fail("not an Alpine release such as v3.20")
    ecosystem = Ecosystem(Distro.ALPINE, release)
    if "packages" in top:
        for i, item in enumerate(get_list(top["packages"], where.at("packages"))):
            at = where.at("packages").at(i)
            pkg = get_map(get_map(item, at).get("pkg"), at.at("pkg"))
            yield from _package(pkg, at.at("pkg"), ecosystem, limits)
    else:
        yield from _package(top, where, ecosystem, limits)


def _package(
    pkg: Mapping[str, object], where: Where, ecosystem: Ecosystem, limits: Limits
) -> Iterator[Advisory]:
    name = get_str(pkg.get("name"), where.at("name"), limits)
    if not name:
        raise where.at("name").fail("empty")
    secfixes = pkg.get("secfixes")
    if secfixes is None:  # a package listed with no fixes yet
        return
    for version, ids in get_map(secfixes, where.at("secfixes")).items():
        at = where.at("secfixes").at(version)
        get_str(version, at, limits)
        entries = [] if ids is None else get_str_list(ids, at, limits)
        if version == NEVER_AFFECTED:
            continue
        for entry in entries:
            # An entry may name several ids of one flaw: "CVE-2022-28391 ALPINE-13661".
            names = entry.split()
            if not names:
                continue
            yield Advisory(
                id=names[0],
                aliases=tuple(names[1:]),
                summary="",
                severity=Severity.UNKNOWN,
                cvss_vector=None,
                cvss_score=None,
                published=None,
                modified=None,
                source=SourceKind.ALPINE_SECDB,
                affected=(Affected(ecosystem, name, (Range("0", fixed=version),)),),
            )


def read(path: str | os.PathLike[str], limits: Limits = DEFAULT_LIMITS) -> Iterator[Advisory]:
    where = display(os.fspath(path))
    yield from parse(load_document(read_file(path, limits), where, limits), Where(where), limits)
