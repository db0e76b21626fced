"""Which advisory format a file or directory is, judged by its content, never by its name."""

from __future__ import annotations

import enum
import os
import stat
import zipfile
from collections.abc import Iterator, Mapping

from ..records import Advisory
from . import alpine, debian, errata, osv
from ._common import (
    DEFAULT_LIMITS,
    Limits,
    SourceError,
    Where,
    display,
    json_files,
    load_document,
    read_file,
)

__all__ = ["Format", "detect", "read"]


class Format(enum.Enum):
    OSV = "osv"
    # A directory: each *.json below it is detected on its own (an OSV tree, vuln-list's
    # alpine/3.20/main/ or rocky/ trees alike).
    DIRECTORY = "directory"
    OSV_ZIP = "osv-zip"
    ALPINE_SECDB = "alpine-secdb"
    DEBIAN_TRACKER = "debian-tracker"
    RPM_ERRATA = "rpm-errata"


def detect(path: str | os.PathLike[str], limits: Limits = DEFAULT_LIMITS) -> Format:
    """The format of `path`, or SourceError saying it is none we read."""
    return _detect(os.fspath(path), limits)[0]


def read(path: str | os.PathLike[str], limits: Limits = DEFAULT_LIMITS) -> Iterator[Advisory]:
    """Every advisory of `path`, whatever its (detected) format; a file is read once."""
    name = os.fspath(path)
    kind, document = _detect(name, limits)
    where = Where(display(name))
    if kind is Format.DIRECTORY:
        for full in json_files(name, limits):
            yield from read(full, limits)
        return
    if kind is Format.OSV_ZIP:
        yield from osv.read_zip(name, limits)
    elif kind is Format.OSV:
        advisory = osv.parse_record(document, where, limits)
        if advisory is not None:
            yield advisory
    elif kind is Format.ALPINE_SECDB:
        yield from alpine.parse(document, where, limits)
    elif kind is Format.DEBIAN_TRACKER:
        yield from debian.parse(document, where, limits)
    else:
        yield errata.parse(document, where, limits)


def _detect(name: str, limits: Limits) -> tuple[Format, object]:
    shown = display(name)
    try:
        info = os.stat(name)
    except OSError as error:
        raise SourceError(shown, f"cannot read: {error.strerror}") from None
    if stat.S_ISDIR(info.st_mode):
        return Format.DIRECTORY, None
    head = b""
    if stat.S_ISREG(info.st_mode):  # anything else (a FIFO could block) is read_file's to refuse
        try:
            with open(name, "rb") as stream:
                head = stream.read(4)
        except OSError as error:
            raise SourceError(shown, f"cannot read: {error.strerror}") from None
    if head.startswith(b"PK\x03\x04") and zipfile.is_zipfile(name):
        return Format.OSV_ZIP, None
    document = load_document(read_file(name, limits), shown, limits)
    return _judge(document, shown), document


def _judge(document: object, shown: str) -> Format:
    """The shape that tells each format: OSV has `id` and `modified` or `affected`; secdb has
    `distroversion` and `packages` or `secfixes`; an erratum has `id` and `cveids` or
    `collections`; the tracker maps source names to CVE ids to entries with `releases`."""
    if not isinstance(document, dict):
        raise SourceError(shown, "not an advisory document we read: the top is not an object")
    keys = document.keys()
    if "distroversion" in keys and ("packages" in keys or "secfixes" in keys):
        return Format.ALPINE_SECDB
    if "updateinfo_id" in keys or ("id" in keys and ("cveids" in keys or "collections" in keys)):
        return Format.RPM_ERRATA
    if "id" in keys and ("modified" in keys or "affected" in keys or "schema_version" in keys):
        return Format.OSV
    if document and _tracker_like(document):
        return Format.DEBIAN_TRACKER
    raise SourceError(
        shown,
        "not an advisory document we read (OSV record, Alpine secdb, Debian security tracker "
        "JSON, Rocky/Alma errata)",
    )


def _tracker_like(document: Mapping[str, object]) -> bool:
    """The first source's first CVE entry has `releases`: enough to tell, cheap on 70 MB."""
    first = next(iter(document.values()))
    if not isinstance(first, dict) or not first:
        return False
    entry = next(iter(first.values()))
    return isinstance(entry, dict) and "releases" in entry
