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
from collections.abc import Callable
from dataclasses import fields
from itertools import repeat
from types import MemberDescriptorType

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

_S_IFMT = 0o170000  # stat.S_IFMT() as a mask, so the hot loop makes no call per file
_S_IFREG = stat.S_IFREG
_S_IFLNK = stat.S_IFLNK
_S_IFDIR = stat.S_IFDIR

# PGPHASHALGO values (rpmpgp.h) that our records can name; others (SHA-384 = 9, SHA-512 = 10,
# SHA-224 = 11, ...) give digest None and a problem.
_ALGORITHMS = {1: DigestAlgorithm.MD5, 2: DigestAlgorithm.SHA1, 8: DigestAlgorithm.SHA256}
_DIGEST_BYTES = {DigestAlgorithm.MD5: 16, DigestAlgorithm.SHA1: 20, DigestAlgorithm.SHA256: 32}


# Plain slotted classes, not dataclasses: each dataclass costs about a millisecond of import time
# at every start of the scanner, and these never leave pkgdb.rpm.
class Skipped:
    """Files a header lists that give no InstalledFile, by reason (rpm -V skips them too)."""

    __slots__ = ("directory", "ghost", "not_normal_state", "other_type")

    def __init__(self) -> None:
        self.ghost = 0
        self.not_normal_state = 0  # FILESTATES replaced / not installed / net-shared / wrong color
        self.directory = 0
        self.other_type = 0  # devices, fifos, sockets: no content to digest


class ConvertedHeader:
    __slots__ = ("files", "package", "problems")

    def __init__(self, package: Package, files: list[InstalledFile], problems: list[str]) -> None:
        self.package = package
        self.files = files
        self.problems = problems


def _file_maker() -> Callable[..., InstalledFile]:
    """A constructor taking InstalledFile's fields positionally, in declaration order.

    A frozen dataclass's __init__ sets each field through object.__setattr__ (about 1 us per
    record here); setting the slots through their descriptors is half that, and an rpmdb
    lists tens of thousands of files. It relies on what the generated __init__ would do being
    nothing more than storing the fields: if InstalledFile ever gains a __post_init__, loses
    its slots, or its fields change, this returns the class itself.
    """
    names = (
        "path", "package", "version", "manager", "digest", "algorithm", "is_config", "mode",
        "size", "link_target",
    )  # fmt: skip
    slots = [InstalledFile.__dict__.get(name) for name in names]
    if (
        tuple(f.name for f in fields(InstalledFile)) != names
        or hasattr(InstalledFile, "__post_init__")
        or not all(isinstance(slot, MemberDescriptorType) for slot in slots)
    ):
        return InstalledFile
    (path_, package_, version_, manager_, digest_, algorithm_, is_config_, mode_, size_,
     link_target_) = (slot.__set__ for slot in slots)  # type: ignore[union-attr]  # fmt: skip
    new = object.__new__

    def make(
        path: bytes, package: str, version: str, manager: str, digest: bytes | None,
        algorithm: DigestAlgorithm | None, is_config: bool, mode: int | None,
        size: int | None, link_target: bytes | None,
    ) -> InstalledFile:  # fmt: skip
        record = new(InstalledFile)
        path_(record, path)
        package_(record, package)
        version_(record, version)
        manager_(record, manager)
        digest_(record, digest)
        algorithm_(record, algorithm)
        is_config_(record, is_config)
        mode_(record, mode)
        size_(record, size)
        link_target_(record, link_target)
        return record

    return make


_new_file = _file_maker()


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
    # (dirname + basename).lstrip("/"), with the strip done once per directory: the same
    # unless a directory is only slashes (as "/" is) and a basename starts with "/", whose
    # slashes would go too; rpm never writes such a basename, so that header takes the slow way.
    stripped = [dirname.lstrip(b"/") for dirname in dirnames]
    if not all(stripped):
        joined = b"\0".join(basenames)  # a basename holds no NUL: it was split on them
        if joined.startswith(b"/") or b"\0/" in joined:
            return [(dirnames[i] + base).lstrip(b"/") for i, base in zip(indexes, basenames)]
    return [stripped[i] + base for i, base in zip(indexes, basenames)]


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
    # A regular file's digest is decoded only if there is an algorithm to name it by.
    hex_size = 2 * digest_size if algorithm is not None else -1
    ghost = not_normal = directories = others = bad_digests = 0
    files: list[InstalledFile] = []
    append = files.append
    new_file = _new_file
    unhex = binascii.a2b_hex
    manager = MANAGER
    # One pass, no per-file calls but the record's: an absent tag reads as its default value
    # (no flags, state normal, no size, no digest, no link target).
    for path, mode, flag, state, size, hexdigest, link in zip(
        paths,
        modes,
        repeat(0) if flags is None else flags,
        repeat(RPMFILE_STATE_NORMAL) if states is None else states,
        repeat(None) if sizes is None else sizes,
        repeat(b"") if digests is None else digests,
        repeat(None) if links is None else links,
    ):
        if flag & RPMFILE_GHOST:
            ghost += 1
            continue
        if state != RPMFILE_STATE_NORMAL:
            not_normal += 1
            continue
        kind = mode & _S_IFMT
        digest = link_target = None
        if kind == _S_IFREG:
            if hexdigest and hex_size > 0:
                if len(hexdigest) == hex_size:
                    try:
                        digest = unhex(hexdigest)
                    except binascii.Error:
                        bad_digests += 1
                else:
                    bad_digests += 1
        elif kind == _S_IFLNK:
            link_target = link
        elif kind == _S_IFDIR:
            directories += 1
            continue
        else:
            others += 1
            continue
        append(
            new_file(
                path,
                name,
                evr,
                manager,
                digest,
                None if digest is None else algorithm,
                (flag & RPMFILE_CONFIG) != 0,
                mode,
                size,
                link_target,
            )
        )
    skipped.ghost += ghost
    skipped.not_normal_state += not_normal
    skipped.directory += directories
    skipped.other_type += others
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
