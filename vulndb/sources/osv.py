"""OSV records (https://ossf.github.io/osv-schema/): one .json, a directory of them, an all.zip."""

from __future__ import annotations

import lzma
import os
import stat
import zipfile
import zlib
from collections.abc import Iterator, Mapping

from ..records import Advisory, Affected, Distro, Ecosystem, Range, Severity, SourceKind
from . import _severity
from ._common import (
    DEFAULT_LIMITS,
    Limits,
    SourceError,
    Where,
    display,
    get_list,
    get_map,
    get_opt_str,
    get_str,
    get_str_list,
    json_files,
    load_document,
    read_file,
)

__all__ = ["parse_ecosystem", "parse_record", "read", "read_directory", "read_zip"]

# OSV ecosystem names (the part before the first ":") of the distributions we match.
_DISTROS = {
    "Debian": Distro.DEBIAN,
    "Ubuntu": Distro.UBUNTU,
    "Alpine": Distro.ALPINE,
    "Rocky Linux": Distro.ROCKY,
    "AlmaLinux": Distro.ALMA,
    "Red Hat": Distro.RHEL,
    "openSUSE": Distro.OPENSUSE,
    "SUSE": Distro.SUSE,
    "Mariner": Distro.AZURE_LINUX,
    "Azure Linux": Distro.AZURE_LINUX,
}
# Range types whose events are versions of the package (GIT ranges are commits).
_VERSION_RANGES = {"ECOSYSTEM", "SEMVER"}
_CVSS_PREFERENCE = ("CVSS_V3", "CVSS_V4", "CVSS_V2")


def parse_ecosystem(name: str) -> Ecosystem:
    """`Debian:12` -> (DEBIAN, "12"), `Alpine:v3.20` -> (ALPINE, "v3.20"), `Ubuntu:22.04:LTS`
    -> (UBUNTU, "22.04"); an ecosystem of no distro -> (OTHER, name)."""
    distro_name, _, release = name.partition(":")
    distro = _DISTROS.get(distro_name)
    if distro is None:
        return Ecosystem(Distro.OTHER, name)
    if distro is Distro.UBUNTU:
        # Ubuntu's ecosystems end with ":LTS" on long-term releases: the same release.
        release = release.removesuffix(":LTS")
    return Ecosystem(distro, release)


def parse_record(
    document: object, where: Where, limits: Limits = DEFAULT_LIMITS
) -> Advisory | None:
    """One OSV record, or None when it is withdrawn. Ranges of GIT type are skipped (commits
    are no installed versions); `upstream` ids (Debian's, Ubuntu's) join the aliases."""
    record = get_map(document, where)
    if record.get("withdrawn") not in (None, ""):
        get_str(record["withdrawn"], where.at("withdrawn"), limits)
        return None
    ident = get_str(record.get("id"), where.at("id"), limits)
    if not ident:
        raise where.at("id").fail("empty")
    aliases: list[str] = []
    for key in ("aliases", "upstream"):
        if record.get(key) is not None:
            for alias in get_str_list(record[key], where.at(key), limits):
                if alias != ident and alias not in aliases:
                    aliases.append(alias)
    summary = get_opt_str(record.get("summary"), where.at("summary"), limits) or ""
    if not summary:
        details = get_opt_str(record.get("details"), where.at("details"), limits) or ""
        summary = details.strip().split("\n", 1)[0]
    vector, score = _cvss(record, where, limits)
    if score is not None:
        severity = _severity.from_score(score)
    else:
        severity = _word_severity(record, where, limits)
    affected = tuple(
        _affected(item, where.at("affected").at(i), limits)
        for i, item in enumerate(get_list(record.get("affected", []), where.at("affected")))
    )
    return Advisory(
        id=ident,
        aliases=tuple(aliases),
        summary=summary,
        severity=severity,
        cvss_vector=vector,
        cvss_score=score,
        published=get_opt_str(record.get("published"), where.at("published"), limits),
        modified=get_opt_str(record.get("modified"), where.at("modified"), limits),
        source=SourceKind.OSV,
        affected=affected,
    )


def _cvss(
    record: Mapping[str, object], where: Where, limits: Limits
) -> tuple[str | None, float | None]:
    """The preferred CVSS vector of the record (v3, then v4, then v2) with its computed score;
    an affected entry's own `severity` counts when the record has none."""
    found: dict[str, str] = {}
    lists: list[tuple[object, Where]] = [(record.get("severity"), where.at("severity"))]
    for i, item in enumerate(get_list(record.get("affected", []), where.at("affected"))):
        entry = get_map(item, where.at("affected").at(i))
        lists.append((entry.get("severity"), where.at("affected").at(i).at("severity")))
    for value, at in lists:
        if value is None:
            continue
        for j, item in enumerate(get_list(value, at)):
            entry = get_map(item, at.at(j))
            kind = get_str(entry.get("type"), at.at(j).at("type"), limits)
            found.setdefault(kind, get_str(entry.get("score"), at.at(j).at("score"), limits))
    for kind in _CVSS_PREFERENCE:
        if kind in found:
            score = _severity.score_vector(kind, found[kind])
            if score is not None:
                return found[kind], score
    return None, None


def _word_severity(record: Mapping[str, object], where: Where, limits: Limits) -> Severity:
    """Ubuntu's `severity` entry of type "Ubuntu" (a word: "medium"), else
    `database_specific.severity` (GitHub's MODERATE...), else UNKNOWN."""
    for i, item in enumerate(get_list(record.get("severity") or [], where.at("severity"))):
        entry = get_map(item, where.at("severity").at(i))
        if entry.get("type") == "Ubuntu":
            word = get_str(entry.get("score"), where.at("severity").at(i).at("score"), limits)
            return _severity.from_word(word)
    specific = record.get("database_specific")
    if specific is None:
        return Severity.UNKNOWN
    given = get_map(specific, where.at("database_specific")).get("severity")
    # database_specific is free-form: a severity that is no word is no severity, not an error.
    return _severity.from_word(given) if isinstance(given, str) else Severity.UNKNOWN


def _affected(item: object, where: Where, limits: Limits) -> Affected:
    entry = get_map(item, where)
    package = get_map(entry.get("package"), where.at("package"))
    ecosystem = get_str(package.get("ecosystem"), where.at("package").at("ecosystem"), limits)
    name = get_str(package.get("name"), where.at("package").at("name"), limits)
    ranges: list[Range] = []
    for i, value in enumerate(get_list(entry.get("ranges", []), where.at("ranges"))):
        ranges.extend(_ranges(value, where.at("ranges").at(i), limits))
    versions = tuple(get_str_list(entry.get("versions", []), where.at("versions"), limits))
    return Affected(parse_ecosystem(ecosystem), name, tuple(ranges), versions)


def _ranges(value: object, where: Where, limits: Limits) -> list[Range]:
    """One OSV range's events as intervals: each `introduced` opens one, the next `fixed` or
    `last_affected` closes it; `limit` bounds them all. A close with no opening starts at "0"."""
    entry = get_map(value, where)
    kind = get_str(entry.get("type"), where.at("type"), limits)
    events = get_list(entry.get("events"), where.at("events"))
    if kind not in _VERSION_RANGES:
        return []
    parsed: list[tuple[str, str]] = []
    limit: str | None = None
    for i, item in enumerate(events):
        event = get_map(item, where.at("events").at(i))
        if len(event) != 1:
            raise (
                where.at("events")
                .at(i)
                .fail("an event names exactly one of introduced, fixed, last_affected, limit")
            )
        ((key, raw),) = event.items()
        version = get_str(raw, where.at("events").at(i).at(key), limits)
        if key == "limit":
            limit = version
        elif key in ("introduced", "fixed", "last_affected"):
            parsed.append((key, version))
        else:
            raise where.at("events").at(i).fail(f"unknown event {display(key)}")
    out: list[Range] = []
    opened: str | None = None
    for key, version in parsed:
        if key == "introduced":
            if opened is not None:
                out.append(Range(opened, limit=limit))
            opened = version
        else:
            start = opened if opened is not None else "0"
            if key == "fixed":
                out.append(Range(start, fixed=version, limit=limit))
            else:
                out.append(Range(start, last_affected=version, limit=limit))
            opened = None
    if opened is not None:
        out.append(Range(opened, limit=limit))
    return out


def read(path: str | os.PathLike[str], limits: Limits = DEFAULT_LIMITS) -> Iterator[Advisory]:
    """Every live record of one .json file, of a directory of them, or of an all.zip."""
    name = os.fspath(path)
    try:
        info = os.stat(name)
    except OSError as error:
        raise SourceError(display(name), f"cannot read: {error.strerror}") from None
    if stat.S_ISDIR(info.st_mode):
        yield from read_directory(name, limits)
    elif zipfile.is_zipfile(name):
        yield from read_zip(name, limits)
    else:
        yield from read_json(name, limits)


def read_json(path: str | os.PathLike[str], limits: Limits = DEFAULT_LIMITS) -> Iterator[Advisory]:
    """The record of one file (a single OSV object)."""
    where = display(os.fspath(path))
    document = load_document(read_file(path, limits), where, limits)
    advisory = parse_record(document, Where(where), limits)
    if advisory is not None:
        yield advisory


def read_directory(path: str, limits: Limits = DEFAULT_LIMITS) -> Iterator[Advisory]:
    """Every OSV record below `path` (`_common.json_files`: bounded, symlinks not followed)."""
    for full in json_files(path, limits):
        yield from read_json(full, limits)


def read_zip(path: str, limits: Limits = DEFAULT_LIMITS) -> Iterator[Advisory]:
    """Every *.json member of an OSV export (all.zip). Members are read in memory, never
    extracted: their names are only shown in messages. Each member and the total are bounded in
    declared and actual size, and in compression ratio (a zip bomb is refused before inflating)."""
    where = display(path)
    try:
        size = os.stat(path).st_size
    except OSError as error:
        raise SourceError(where, f"cannot read: {error.strerror}") from None
    if size > limits.max_zip_bytes:
        raise SourceError(where, f"{size} bytes, over the limit of {limits.max_zip_bytes}")
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as error:
        raise SourceError(where, f"not a readable zip archive ({type(error).__name__})") from None
    with archive:
        members = archive.infolist()
        if len(members) > limits.max_members:
            raise SourceError(where, f"more than {limits.max_members} members")
        total = 0
        for member in members:
            if member.is_dir() or not member.filename.endswith(".json"):
                continue
            at = f"{where}!{display(member.filename)}"
            if member.file_size > limits.max_member_bytes:
                raise SourceError(at, f"{member.file_size} bytes, over {limits.max_member_bytes}")
            if member.file_size > limits.max_ratio * max(member.compress_size, 1):
                raise SourceError(at, f"compressed more than {limits.max_ratio} times")
            total += member.file_size
            if total > limits.max_total_bytes:
                raise SourceError(where, f"more than {limits.max_total_bytes} bytes uncompressed")
            data = _read_member(archive, member, at, limits)
            advisory = parse_record(load_document(data, at, limits), Where(at), limits)
            if advisory is not None:
                yield advisory


def _read_member(
    archive: zipfile.ZipFile, member: zipfile.ZipInfo, at: str, limits: Limits
) -> bytes:
    """The member's bytes, read no further than its declared size allows: a header that lies
    about the size stops at the bound instead of inflating on."""
    cap = min(member.file_size, limits.max_member_bytes)
    try:
        with archive.open(member) as stream:
            data = stream.read(cap + 1)
    except (
        zipfile.BadZipFile,
        zlib.error,
        lzma.LZMAError,
        OSError,
        ValueError,
        NotImplementedError,
        EOFError,
    ) as error:
        raise SourceError(at, f"cannot inflate ({type(error).__name__})") from None
    if len(data) > cap:
        raise SourceError(at, "inflates past its declared size")
    return data
