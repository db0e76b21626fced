"""Turns one parsed rpm header into a Package and the InstalledFile records rpm -V would verify.

Which files are kept, in this order of tests (each skip is counted in `Skipped`):
  * `%ghost` files (RPMFILE_GHOST): rpm never installed their content, `rpm -V` skips them;
  * files whose FILESTATES entry is not 0 "normal": 1 replaced (another package's copy won),
    2 not installed (`--excludedocs`, `%_netsharedpath`, `--excludepath`, a language not
    installed), 3 net-shared, 4 wrong color (the other multilib arch's copy won), 255 = -1
    "missing" (a header that was never installed). A missing FILESTATES tag means all normal;
  * anything but a regular file or a symlink (directories, devices, fifos): no content digest.
The path is DIRNAMES[DIRINDEXES[i]] + BASENAMES[i] (OLDFILENAMES in pre-4.0 headers), bytes,
without the leading "/". Digests are FILEDIGESTS hex turned into raw bytes, with the algorithm of
FILEDIGESTALGO (absent: MD5, as rpm < 4.6 wrote). A regular file with an empty digest, or a
digest of the wrong length, gets digest None (and a problem for the wrong length).
"""

from __future__ import annotations

import binascii
import stat
from dataclasses import dataclass, field

from ..records import DigestAlgorithm, InstalledFile, Package
from ._header import Header, HeaderError

__all__ = ["ConvertedHeader", "Skipped", "Tag", "convert"]

MANAGER = "rpm"


class Tag:
    """The rpm tags we read (rpmtag.h)."""

    NAME = 1000
    VERSION = 1001
    RELEASE = 1002
    EPOCH = 1003
    ARCH = 1022
    OLDFILENAMES = 1027
    FILESIZES = 1028
    FILESTATES = 1029
    FILEMODES = 1030
    FILEDIGESTS = 1035  # FILEMD5S before rpm 4.6
    FILELINKTOS = 1036
    FILEFLAGS = 1037
    DIRINDEXES = 1116
    BASENAMES = 1117
    DIRNAMES = 1118
    LONGFILESIZES = 5008
    FILEDIGESTALGO = 5011


RPMFILE_CONFIG = 1 << 0
RPMFILE_GHOST = 1 << 6
RPMFILE_STATE_NORMAL = 0

# PGPHASHALGO values (rpmpgp.h) that our records can name; others (SHA-384 = 9, SHA-512 = 10,
# SHA-224 = 11, ...) give digest None and a problem.
_ALGORITHMS = {1: DigestAlgorithm.MD5, 2: DigestAlgorithm.SHA1, 8: DigestAlgorithm.SHA256}
_DIGEST_BYTES = {DigestAlgorithm.MD5: 16, DigestAlgorithm.SHA1: 20, DigestAlgorithm.SHA256: 32}


@dataclass(slots=True)
class Skipped:
    """Files a header lists that give no InstalledFile, by reason (rpm -V skips them too)."""

    ghost: int = 0
    not_normal_state: int = 0  # FILESTATES replaced / not installed / net-shared / wrong color
    directory: int = 0
    other_type: int = 0  # devices, fifos, sockets: no content to digest


@dataclass(slots=True)
class ConvertedHeader:
    package: Package
    files: list[InstalledFile]
    problems: list[str] = field(default_factory=list)


def _text(value: bytes) -> str:
    return value.decode("utf-8", "surrogateescape")


def convert(header: Header, skipped: Skipped) -> ConvertedHeader:
    """Package and files of one header; HeaderError if it names no package (or is malformed)."""
    name, version, release = (header.string(t) for t in (Tag.NAME, Tag.VERSION, Tag.RELEASE))
    if name is None or version is None or release is None:
        raise HeaderError("no NAME, VERSION or RELEASE: not a package header")
    epoch = header.integer(Tag.EPOCH)
    arch = header.string(Tag.ARCH)
    evr = f"{'' if epoch is None else f'{epoch}:'}{_text(version)}-{_text(release)}"
    problems: list[str] = []
    try:
        files = _files(header, _text(name), evr, skipped, problems)
    except HeaderError as error:
        # the package is still listed; only its file list is unusable
        problems.append(f"file list unreadable, no files verified: {error}")
        files = []
    package = Package(
        manager=MANAGER,
        name=_text(name),
        version=_text(version),
        release=_text(release),
        epoch=epoch,
        arch=None if arch is None else _text(arch),
        file_count=len(files),
    )
    return ConvertedHeader(package, files, problems)


def _paths(header: Header) -> list[bytes] | None:
    basenames = header.strings(Tag.BASENAMES)
    if basenames is None:
        old = header.strings(Tag.OLDFILENAMES)
        return None if old is None else [path.lstrip(b"/") for path in old]
    dirnames = header.strings(Tag.DIRNAMES) or ()
    indexes = header.ints(Tag.DIRINDEXES) or ()
    if len(indexes) != len(basenames):
        raise HeaderError(f"{len(indexes)} DIRINDEXES for {len(basenames)} BASENAMES")
    if indexes and max(indexes) >= len(dirnames):
        raise HeaderError(f"a DIRINDEXES entry points past the {len(dirnames)} DIRNAMES")
    return [(dirnames[i] + base).lstrip(b"/") for i, base in zip(indexes, basenames)]


def _files(
    header: Header, name: str, evr: str, skipped: Skipped, problems: list[str]
) -> list[InstalledFile]:
    paths = _paths(header)
    if not paths:
        return []
    count = len(paths)
    modes = header.ints(Tag.FILEMODES)
    if modes is None:
        raise HeaderError(f"{count} files but no FILEMODES")
    sizes = header.ints(Tag.LONGFILESIZES) or header.ints(Tag.FILESIZES)
    digests = header.strings(Tag.FILEDIGESTS)
    links = header.strings(Tag.FILELINKTOS)
    flags = header.ints(Tag.FILEFLAGS)
    states = header.ints(Tag.FILESTATES)
    for tag, values in (
        ("FILEMODES", modes), ("FILESIZES", sizes), ("FILEDIGESTS", digests),
        ("FILELINKTOS", links), ("FILEFLAGS", flags), ("FILESTATES", states),
    ):  # fmt: skip
        if values is not None and len(values) != count:
            raise HeaderError(f"{tag} has {len(values)} entries for {count} files")
    algorithm, digest_size = _algorithm(header, problems)
    bad_digests = 0
    files: list[InstalledFile] = []
    unhex = binascii.a2b_hex
    for i, path in enumerate(paths):
        if flags is not None and flags[i] & RPMFILE_GHOST:
            skipped.ghost += 1
            continue
        if states is not None and states[i] != RPMFILE_STATE_NORMAL:
            skipped.not_normal_state += 1
            continue
        mode = modes[i]
        link_target = None
        digest = None
        if stat.S_ISLNK(mode):
            link_target = links[i] if links is not None else None
        elif stat.S_ISREG(mode):
            hexdigest = digests[i] if digests is not None else b""
            if hexdigest and algorithm is not None:
                if len(hexdigest) == 2 * digest_size:
                    try:
                        digest = unhex(hexdigest)
                    except binascii.Error:
                        bad_digests += 1
                else:
                    bad_digests += 1
        elif stat.S_ISDIR(mode):
            skipped.directory += 1
            continue
        else:
            skipped.other_type += 1
            continue
        files.append(
            InstalledFile(
                path=path,
                package=name,
                version=evr,
                manager=MANAGER,
                digest=digest,
                algorithm=algorithm if digest is not None else None,
                is_config=bool(flags is not None and flags[i] & RPMFILE_CONFIG),
                mode=mode,
                size=None if sizes is None else sizes[i],
                link_target=link_target,
            )
        )
    if bad_digests:
        problems.append(
            f"{bad_digests} FILEDIGESTS entries are not {digest_size}-byte hex digests: "
            "those files have no digest"
        )
    return files


def _algorithm(header: Header, problems: list[str]) -> tuple[DigestAlgorithm | None, int]:
    value = header.integer(Tag.FILEDIGESTALGO)
    if value is None:
        return DigestAlgorithm.MD5, 16
    algorithm = _ALGORITHMS.get(value)
    if algorithm is None:
        problems.append(f"FILEDIGESTALGO {value} is not supported: files have no digest")
        return None, 0
    return algorithm, _DIGEST_BYTES[algorithm]
