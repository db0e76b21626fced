"""The typed records every advisory source is parsed into (frozen: a record never changes)."""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["Advisory", "Affected", "Distro", "Ecosystem", "Range", "Severity", "SourceKind"]


class Distro(enum.Enum):
    """Whose packages an advisory names. OTHER is every ecosystem no distro matcher reads
    (PyPI, Go, npm...): such records parse, and their ecosystem name is kept as the release."""

    DEBIAN = "debian"
    UBUNTU = "ubuntu"
    ALPINE = "alpine"
    ROCKY = "rocky"
    ALMA = "alma"
    RHEL = "rhel"
    OPENSUSE = "opensuse"
    SUSE = "suse"
    # Mariner was renamed Azure Linux at 3.0; one distro, as its own OSV export says.
    AZURE_LINUX = "azurelinux"
    OTHER = "other"


class Severity(enum.IntEnum):
    """Ordered, so that `--fail-on` can compare; UNKNOWN sorts lowest, never guessed upward."""

    UNKNOWN = 0
    NEGLIGIBLE = 1
    LOW = 2
    MEDIUM = 3
    HIGH = 4
    CRITICAL = 5


class SourceKind(enum.Enum):
    """Which database format a record came from."""

    OSV = "osv"
    ALPINE_SECDB = "alpine-secdb"
    DEBIAN_TRACKER = "debian-tracker"
    RPM_ERRATA = "rpm-errata"


@dataclass(frozen=True, slots=True)
class Ecosystem:
    """A distribution release as advisories name it: (ALPINE, "v3.20"), (DEBIAN, "12"),
    (ROCKY, "9"). The release is the distro's own spelling, compared as a string."""

    distro: Distro
    release: str


@dataclass(frozen=True, slots=True)
class Range:
    """One OSV-style affected interval: from `introduced` (inclusive; "0" = the beginning) up to
    `fixed` (exclusive) or `last_affected` (inclusive), or without end when both are None.
    `limit` is OSV's upper bound on the whole range (exclusive), rarely set."""

    introduced: str
    fixed: str | None = None
    last_affected: str | None = None
    limit: str | None = None


@dataclass(frozen=True, slots=True)
class Affected:
    """One package of one ecosystem an advisory touches: affected within any of `ranges`, or
    at any of the exact `versions`. `arch` is set only where the source says (rpm errata list
    one fixed build per architecture); None means every architecture."""

    ecosystem: Ecosystem
    package: str
    ranges: tuple[Range, ...]
    versions: tuple[str, ...] = ()
    arch: str | None = None


@dataclass(frozen=True, slots=True)
class Advisory:
    """One advisory as its source states it. `cvss_score` is computed from `cvss_vector` by the
    `cvss` library, never copied from a file; both None when the source gives no vector.
    `published`/`modified` are the source's own strings (ISO 8601 in OSV), None when absent."""

    id: str
    aliases: tuple[str, ...]
    summary: str
    severity: Severity
    cvss_vector: str | None
    cvss_score: float | None
    published: str | None
    modified: str | None
    source: SourceKind
    affected: tuple[Affected, ...]
