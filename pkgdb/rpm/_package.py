"""Turns one parsed rpm header into a Package and the InstalledFile records rpm -V would verify.

Which files give records, and what of them is verified, as rpm 4.18's `rpmfilesVerify` and
`verifyHeader` (lib/verify.c) decide it:
  * FILEVERIFYFLAGS (`%verify(not md5 size mtime)`; absent: everything) become the record's
    `verify`: digest, size, link target, and MODE as permissions and file type;
  * `%ghost` files (RPMFILE_GHOST): rpm never installed their content, so only their
    permissions are verified (not even their type), and their absence is no finding;
  * `%config(missingok)` (RPMFILE_MISSINGOK): verified as any file, but absence is no finding;
  * FILESTATES: 0 "normal" and 255 = -1 "missing" (a header never installed; rpm verifies it
    nevertheless) are verified; 1 "replaced" (another package's copy won) only for existence;
    4 "wrong color" (the other multilib arch's copy won; only a file with a FILECOLORS colour
    can have it) without digest and size; 2 "not installed" and 3 "net-shared" are skipped. A
    missing FILESTATES tag means all normal;
  * directories, devices, fifos and sockets have no content digest and are skipped.
The path is DIRNAMES[DIRINDEXES[i]] + BASENAMES[i] (OLDFILENAMES in pre-4.0 headers), bytes,
without the leading "/". Digests are FILEDIGESTS hex turned into raw bytes, with the algorithm of
FILEDIGESTALGO (absent: MD5, as rpm < 4.6 wrote). A regular file with an empty digest, or a
digest of the wrong length, gets digest None (and a problem for the wrong length).

Values rpm never writes — a file type no `stat` has, FILEFLAGS bits no rpm defines, a FILESTATES
value outside those above, file tags without BASENAMES — are damage: the files concerned are
not verified and a problem says so (never a package that silently lists fewer files).
"""

from __future__ import annotations

import binascii
import stat
from collections.abc import Callable
from dataclasses import fields
from itertools import repeat
from types import MemberDescriptorType

from ..records import DigestAlgorithm, InstalledFile, Package, Verify
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
    SOURCERPM = 1044
    FILEVERIFYFLAGS = 1045
    FILECOLORS = 1140
    DIRINDEXES = 1116
    BASENAMES = 1117
    DIRNAMES = 1118
    LONGFILESIZES = 5008
    FILEDIGESTALGO = 5011


RPMFILE_CONFIG = 1 << 0
RPMFILE_MISSINGOK = 1 << 3
RPMFILE_GHOST = 1 << 6
# Every FILEFLAGS bit rpm has defined (rpmfiles.h rpmfileAttrs_e, CONFIG .. ARTIFACT = 1 << 12,
# including the retired EXCLUDE, UNPATCHED and POLICY bits old headers may carry).
RPMFILE_KNOWN = (1 << 13) - 1

# FILESTATES (rpmfiles.h rpmfileState_e); a CHAR, so -1 "missing" reads as 255.
RPMFILE_STATE_NORMAL = 0
RPMFILE_STATE_REPLACED = 1
RPMFILE_STATE_NOTINSTALLED = 2
RPMFILE_STATE_NETSHARED = 3
RPMFILE_STATE_WRONGCOLOR = 4
RPMFILE_STATE_MISSING = 255

# FILEVERIFYFLAGS bits (rpmvf.h rpmVerifyAttrs_e) that 448 can check; the others (user, group,
# mtime, rdev, capabilities) it does not verify at all.
RPMVERIFY_FILEDIGEST = 1 << 0
RPMVERIFY_FILESIZE = 1 << 1
RPMVERIFY_LINKTO = 1 << 2
RPMVERIFY_MODE = 1 << 6

_S_IFMT = 0o170000  # stat.S_IFMT() as a mask, so the hot loop makes no call per file
_S_IFREG = stat.S_IFREG
_S_IFLNK = stat.S_IFLNK
_S_IFDIR = stat.S_IFDIR
# The file types a `stat` can give; FILEMODES with any other type bits is damage.
_FILE_TYPES = frozenset(
    (stat.S_IFREG, stat.S_IFLNK, stat.S_IFDIR, stat.S_IFCHR, stat.S_IFBLK, stat.S_IFIFO,
     stat.S_IFSOCK)
)  # fmt: skip
_STATES = frozenset(
    (RPMFILE_STATE_NORMAL, RPMFILE_STATE_REPLACED, RPMFILE_STATE_NOTINSTALLED,
     RPMFILE_STATE_NETSHARED, RPMFILE_STATE_WRONGCOLOR, RPMFILE_STATE_MISSING)
)  # fmt: skip
# Tags that only a header listing files has: one of them without BASENAMES/OLDFILENAMES means
# the name list was lost (a renamed or dropped tag), not a package without files.
_FILE_TAGS = (
    1028, 1029, 1030, 1035, 1036, 1037, 1045, 1116, 1118, 5008,
)  # FILESIZES .. FILEVERIFYFLAGS, DIRINDEXES, DIRNAMES, LONGFILESIZES  # fmt: skip

# PGPHASHALGO values (rpmpgp.h) that our records can name; others (SHA-384 = 9, SHA-512 = 10,
# SHA-224 = 11, ...) give digest None and a problem.
_ALGORITHMS = {1: DigestAlgorithm.MD5, 2: DigestAlgorithm.SHA1, 8: DigestAlgorithm.SHA256}
_DIGEST_BYTES = {DigestAlgorithm.MD5: 16, DigestAlgorithm.SHA1: 20, DigestAlgorithm.SHA256: 32}


# Plain slotted classes, not dataclasses: each dataclass costs about a millisecond of import time
# at every start of the scanner, and these never leave pkgdb.rpm.
class Skipped:
    """Files a header lists whose content is not verified, by reason (rpm -V skips it too)."""

    __slots__ = ("directory", "ghost", "not_normal_state", "other_type")

    def __init__(self) -> None:
        self.ghost = 0  # %ghost: a record without digest (only permissions are verified)
        self.not_normal_state = 0  # FILESTATES not installed / net-shared: no record
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
        "size", "link_target", "verify", "missing_ok",
    )  # fmt: skip
    slots = [InstalledFile.__dict__.get(name) for name in names]
    if (
        tuple(f.name for f in fields(InstalledFile)) != names
        or hasattr(InstalledFile, "__post_init__")
        or not all(isinstance(slot, MemberDescriptorType) for slot in slots)
    ):
        return InstalledFile
    (path_, package_, version_, manager_, digest_, algorithm_, is_config_, mode_, size_,
     link_target_, verify_, missing_ok_) = (
        slot.__set__ for slot in slots  # type: ignore[union-attr]
    )  # fmt: skip
    new = object.__new__

    def make(
        path: bytes, package: str, version: str, manager: str, digest: bytes | None,
        algorithm: DigestAlgorithm | None, is_config: bool, mode: int | None,
        size: int | None, link_target: bytes | None, verify: Verify, missing_ok: bool,
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
        verify_(record, verify)
        missing_ok_(record, missing_ok)
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
        source=_source_name(header.string(Tag.SOURCERPM)),
    )
    return ConvertedHeader(package, files, problems)


def _source_name(sourcerpm: bytes | None) -> str | None:
    """`openssl` of SOURCERPM `openssl-3.0.7-27.el9.src.rpm`: the name is what precedes the
    last two dashes (version and release contain none); None when absent or not that shape."""
    if sourcerpm is None or not sourcerpm.endswith((b".src.rpm", b".nosrc.rpm")):
        return None
    parts = sourcerpm.rsplit(b"-", 2)
    if len(parts) != 3 or not parts[0]:
        return None
    return _text(parts[0])


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
    if paths is None:
        present = [tag for tag in _FILE_TAGS if tag in header]
        if present:
            raise HeaderError(f"file tags {present} but no BASENAMES or OLDFILENAMES")
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
    verify_flags = header.ints(Tag.FILEVERIFYFLAGS)
    colors = header.ints(Tag.FILECOLORS)
    for tag, values in (
        ("FILEMODES", modes), ("FILESIZES", sizes), ("FILEDIGESTS", digests),
        ("FILELINKTOS", links), ("FILEFLAGS", flags), ("FILESTATES", states),
        ("FILEVERIFYFLAGS", verify_flags), ("FILECOLORS", colors),
    ):  # fmt: skip
        if values is not None and len(values) != count:
            raise HeaderError(f"{tag} has {len(values)} entries for {count} files")
    algorithm, digest_size = _algorithm(header, problems)
    # A regular file's digest is decoded only if there is an algorithm to name it by.
    hex_size = 2 * digest_size if algorithm is not None else -1
    ghost = not_normal = directories = others = bad_digests = 0
    bad_modes = bad_flags = bad_states = 0
    files: list[InstalledFile] = []
    append = files.append
    new_file = _new_file
    unhex = binascii.a2b_hex
    manager = MANAGER
    verify_of = _VERIFY_CACHE.get
    # One pass, no per-file calls but the record's: an absent tag reads as its default value
    # (no flags, state normal, verify everything, no size, no digest, no link target).
    for path, mode, flag, state, color, vflag, size, hexdigest, link in zip(
        paths,
        modes,
        repeat(0) if flags is None else flags,
        repeat(RPMFILE_STATE_NORMAL) if states is None else states,
        repeat(0) if colors is None else colors,
        repeat(_RPMVERIFY_ALL) if verify_flags is None else verify_flags,
        repeat(None) if sizes is None else sizes,
        repeat(b"") if digests is None else digests,
        repeat(None) if links is None else links,
    ):
        if flag & ~RPMFILE_KNOWN:
            bad_flags += 1
            continue
        if state in (RPMFILE_STATE_NOTINSTALLED, RPMFILE_STATE_NETSHARED):
            not_normal += 1
            continue
        kind = mode & _S_IFMT
        if kind == _S_IFDIR:
            directories += 1
            continue
        if kind != _S_IFREG and kind != _S_IFLNK:
            if kind in _FILE_TYPES:
                others += 1
            else:
                bad_modes += 1
            continue
        key = (vflag, flag & RPMFILE_GHOST, state)
        verify = verify_of(key)
        if state == RPMFILE_STATE_WRONGCOLOR and not color:
            # rpm gives this state only to a file of a colour (ELF32/ELF64) another arch's
            # package also installs; FILESTATES is outside the header digest, so check that
            bad_states += 1
            continue
        if verify is None:
            if state not in _STATES:
                bad_states += 1
                continue
            if len(_VERIFY_CACHE) >= _VERIFY_CACHE_SIZE:
                _VERIFY_CACHE.clear()  # hostile headers may hold a distinct value per file
            verify = _VERIFY_CACHE[key] = _verify(*key)
        digest = link_target = None
        if flag & RPMFILE_GHOST:
            ghost += 1  # rpm never wrote its content: there is no digest to compare
        elif kind == _S_IFREG:
            if hexdigest and hex_size > 0:
                if len(hexdigest) == hex_size:
                    try:
                        digest = unhex(hexdigest)
                    except binascii.Error:
                        bad_digests += 1
                else:
                    bad_digests += 1
        else:
            link_target = link
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
                verify,
                (flag & (RPMFILE_MISSINGOK | RPMFILE_GHOST)) != 0,
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
    for number, what in (
        (bad_modes, "FILEMODES with a file type no file system has"),
        (bad_flags, f"FILEFLAGS bits no rpm defines (above {RPMFILE_KNOWN:#x})"),
        (bad_states, 'FILESTATES values no rpm writes (or "wrong color" without a colour)'),
    ):
        if number:
            problems.append(f"{number} files have {what}: not verified (damaged header)")
    return files


_RPMVERIFY_ALL = 0xFFFFFFFF  # an absent FILEVERIFYFLAGS: rpm verifies everything
# (FILEVERIFYFLAGS value, ghost bit, state) -> Verify: a header has a handful of distinct keys.
_VERIFY_CACHE: dict[tuple[int, int, int], Verify] = {}
_VERIFY_CACHE_SIZE = 1024


def _verify(vflags: int, ghost: int, state: int) -> Verify:
    """What rpm -V checks of one file (rpmfilesVerify), in the terms 448 can check."""
    verify = Verify.NONE
    if vflags & RPMVERIFY_FILEDIGEST:
        verify |= Verify.DIGEST
    if vflags & RPMVERIFY_FILESIZE:
        verify |= Verify.SIZE
    if vflags & RPMVERIFY_LINKTO:
        verify |= Verify.LINK_TARGET
    if vflags & RPMVERIFY_MODE:
        verify |= Verify.PERMISSIONS | Verify.FILE_TYPE
    if ghost:
        # "Content checks of %ghost files are meaningless"; of MODE only the permissions count.
        verify &= Verify.PERMISSIONS
    if state == RPMFILE_STATE_REPLACED:
        verify = Verify.NONE  # "For replaced files we can only verify if it exists at all"
    elif state == RPMFILE_STATE_WRONGCOLOR:
        verify &= ~(Verify.DIGEST | Verify.SIZE)  # the other arch's copy is the one installed
    return verify


def _algorithm(header: Header, problems: list[str]) -> tuple[DigestAlgorithm | None, int]:
    value = header.integer(Tag.FILEDIGESTALGO)
    if value is None:
        return DigestAlgorithm.MD5, 16
    algorithm = _ALGORITHMS.get(value)
    if algorithm is None:
        problems.append(f"FILEDIGESTALGO {value} is not supported: files have no digest")
        return None, 0
    return algorithm, _DIGEST_BYTES[algorithm]
