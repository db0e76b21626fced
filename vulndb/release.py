"""Which distribution release a root is, read from its etc/os-release, as advisories name it."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from pkgdb.rootfs import RootFS

from .records import Distro, Ecosystem
from .sources.debian import CODENAMES

__all__ = ["DISPLAY_NAMES", "RootRelease", "detect_release"]

MAX_RELEASE_FILE = 64 << 10  # os-release is a few hundred bytes
_OS_RELEASE = (b"etc/os-release", b"usr/lib/os-release")
_LINE = re.compile(r"([A-Z][A-Z0-9_]*)=(.*)")

# os-release ID -> the distro advisories name.
_IDS = {
    "debian": Distro.DEBIAN,
    "ubuntu": Distro.UBUNTU,
    "alpine": Distro.ALPINE,
    "rocky": Distro.ROCKY,
    "almalinux": Distro.ALMA,
    "rhel": Distro.RHEL,
    "opensuse-leap": Distro.OPENSUSE,
    "opensuse-tumbleweed": Distro.OPENSUSE,
    "sles": Distro.SUSE,
    "sle-micro": Distro.SUSE,
    "azurelinux": Distro.AZURE_LINUX,
    "mariner": Distro.AZURE_LINUX,
}
DISPLAY_NAMES = {
    Distro.DEBIAN: "Debian",
    Distro.UBUNTU: "Ubuntu",
    Distro.ALPINE: "Alpine",
    Distro.ROCKY: "Rocky Linux",
    Distro.ALMA: "AlmaLinux",
    Distro.RHEL: "Red Hat Enterprise Linux",
    Distro.OPENSUSE: "openSUSE",
    Distro.SUSE: "SUSE Linux Enterprise",
    Distro.AZURE_LINUX: "Azure Linux",
    Distro.OTHER: "",
}


@dataclass(frozen=True, slots=True)
class RootRelease:
    """What the root says it is: `candidates` are the ecosystem spellings advisories may use
    for it, most specific first (none when the distro is one no source covers); `name` is
    shown to people ("Alpine v3.19", "Amazon Linux 2023")."""

    name: str
    candidates: tuple[Ecosystem, ...]


def detect_release(root: RootFS) -> RootRelease | None:
    """The root's release, or None when it says nothing (no os-release, alpine-release or
    debian_version: a scratch image). Unreadable or hostile files read as absent fields."""
    fields = _os_release(root)
    os_id = fields.get("ID", "").lower()
    version = fields.get("VERSION_ID", "")
    if not os_id:
        if (alpine := _first_line(root, b"etc/alpine-release")) is not None:
            os_id, version = "alpine", alpine
        elif _first_line(root, b"etc/debian_version") is not None:
            os_id = "debian"
    distro = _IDS.get(os_id)
    if distro is None:
        if not os_id:
            return None
        shown = fields.get("PRETTY_NAME") or f"{os_id} {version}".strip()
        return RootRelease(_printable(shown), ())
    releases = _releases(distro, version, fields, root)
    name = f"{DISPLAY_NAMES[distro]} {releases[0] if releases else version}".strip()
    return RootRelease(_printable(name), tuple(Ecosystem(distro, r) for r in releases))


def _releases(distro: Distro, version: str, fields: dict[str, str], root: RootFS) -> list[str]:
    major, _, rest = version.partition(".")
    minor = rest.partition(".")[0]
    if distro is Distro.ALPINE:
        # secdb and OSV name branches: v3.19 (edge's VERSION_ID is a _alpha snapshot)
        return [f"v{major}.{minor}"] if _number(major) and _number(minor) else []
    if distro is Distro.DEBIAN:
        if _number(major):
            return [major]
        codename = fields.get("VERSION_CODENAME", "")
        if codename in CODENAMES:
            return [CODENAMES[codename]]
        debian_version = _first_line(root, b"etc/debian_version") or ""
        head = debian_version.partition(".")[0]
        if _number(head):
            return [head]
        return ["sid"] if debian_version.endswith("/sid") else []
    if distro is Distro.UBUNTU:
        return [version] if version else []
    if distro in (Distro.ROCKY, Distro.ALMA, Distro.RHEL):
        return [major] if _number(major) else []
    if distro is Distro.OPENSUSE:
        if fields.get("ID") == "opensuse-tumbleweed":
            return ["Tumbleweed"]
        return [f"Leap {version}"] if version else []
    if distro is Distro.SUSE:
        sp = f" SP{minor}" if _number(minor) and minor != "0" else ""
        return [f"Linux Enterprise Server {major}{sp}", f"Linux Enterprise Server {major}"]
    # Azure Linux / Mariner: OSV has spelt both "3.0" and "3"
    return [version, major] if version and version != major else [version] if version else []


def _os_release(root: RootFS) -> dict[str, str]:
    for path in _OS_RELEASE:
        text = _read(root, path)
        if text is not None:
            return _parse(text)
    return {}


def _parse(text: str) -> dict[str, str]:
    """os-release(5): KEY=value lines, values shell-quoted; anything else ignored."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        match = _LINE.fullmatch(line.strip())
        if match is None:
            continue
        try:
            words = shlex.split(match[2], comments=False, posix=True)
        except ValueError:
            continue  # an unbalanced quote: the field is unusable, not guessed
        out.setdefault(match[1], " ".join(words))
    return out


def _read(root: RootFS, path: bytes) -> str | None:
    try:
        data = root.read_bytes(root.resolve_followed(path), MAX_RELEASE_FILE)
    except OSError:
        return None  # absent, not a regular file, outside reach: the next source is asked
    return data.decode("utf-8", "replace")


def _first_line(root: RootFS, path: bytes) -> str | None:
    text = _read(root, path)
    if text is None:
        return None
    return text.strip().partition("\n")[0].strip()


def _number(text: str) -> bool:
    """ASCII digits only: str.isdigit() takes "٣" and "²", which name no release."""
    return text.isascii() and text.isdigit()


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in text)[:80]
