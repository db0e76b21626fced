"""Detection rules for check 426 (crypto-mining binaries): names, digest lists, content markers.

Pure rules: nothing here walks a root or opens a scanned file. The check feeds in what the single
read already produced (path, lstat mode, SHA-256, the ids of the `MARKERS` found) and gets back
`MinerSignals`. The only I/O is reading digest-list files (`load_digests`, `default_digests`).

Three signals, each named in a finding:
  * "name"    — `name_signal`: the basename is a known miner's (case-insensitive, version and
                platform suffixes allowed); counted only for files `in_scope`.
  * "digest"  — the SHA-256 is in a digest list (`scanner/data/miner-digests.txt`, extended with
                `--miner-digests FILE`); counted for any regular file the check hashed, since a
                known miner's bytes are a miner wherever they sit.
  * "content" — `marker_signal`: literal markers from at least two different `MarkerGroup`s, so
                one stray string (a comment naming "cryptonight", a URL scheme table listing
                "stratum+tcp://") is never a finding on its own; counted only for files `in_scope`.
"""

from __future__ import annotations

import enum
import functools
import re
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from os import PathLike, fsdecode

from .errors import ScannerError
from .jsonload import InputFileError, read_bounded

__all__ = [
    "DEFAULT_DIGESTS",
    "MARKERS",
    "MARKER_GROUPS",
    "MAX_DIGESTS_BYTES",
    "DigestLineProblem",
    "DigestList",
    "MarkerGroup",
    "MinerDigestsError",
    "MinerSignals",
    "classify",
    "default_digests",
    "in_scope",
    "load_digests",
    "marker_signal",
    "name_signal",
    "parse_digests",
    "read_digests",
]

# A digest list is a line of ~100 bytes a binary: this is some 160,000 of them.
MAX_DIGESTS_BYTES = 16 * 1024 * 1024


class MinerDigestsError(ScannerError):
    """A digest-list file could not be read at all (a malformed line is a problem, not this)."""


# --------------------------------------------------------------------------------------------
# Signal (a): the file name.

# Lower-case basename stem -> canonical miner name. Only names that are a miner's own binary
# name and collide with nothing a distribution ships (tests sweep Debian roots and this host).
# Deliberately absent: "miner" (GMiner's Linux binary, but far too generic), "excavator",
# "trex" (without the dash), "libcryptonight" (a hashing library, not a miner).
_NAMES: Mapping[str, str] = {
    "xmrig": "xmrig",
    "xmrig-notls": "xmrig",
    "xmrig-mo": "xmrig",  # MoneroOcean's fork
    "xmrig-cuda": "xmrig",
    "libxmrig-cuda": "xmrig",  # xmrig's CUDA plugin, loaded by the miner
    "xmrig-amd": "xmrig",
    "xmrig-nvidia": "xmrig",
    "xmrig-proxy": "xmrig-proxy",
    "xmr-node-proxy": "xmr-node-proxy",
    "xmr-stak": "xmr-stak",
    "xmr-stak-rx": "xmr-stak",
    "xmr-stak-cpu": "xmr-stak",
    "minerd": "minerd",
    "cpuminer": "cpuminer",
    "cpuminer-multi": "cpuminer",
    "cpuminer-opt": "cpuminer",
    "cpuminer-gr": "cpuminer",
    "cgminer": "cgminer",
    "bfgminer": "bfgminer",
    "sgminer": "sgminer",
    "ethminer": "ethminer",
    "ethdcrminer64": "claymore",
    "ccminer": "ccminer",
    "nheqminer": "nheqminer",
    "kdevtmpfsi": "kdevtmpfsi",
    "kinsing": "kinsing",
    "t-rex": "t-rex",
    "nbminer": "nbminer",
    "lolminer": "lolminer",
    "phoenixminer": "phoenixminer",
    "nanominer": "nanominer",
    "gminer": "gminer",
    "teamredminer": "teamredminer",
    "srbminer": "srbminer",
    "srbminer-multi": "srbminer",
    "wildrig": "wildrig",
    "wildrig-multi": "wildrig",
    "bminer": "bminer",
}

# Suffix tokens after the name: a version (`6.21.0`, `v2`, `2`) or a platform/build word, as in
# release file names (`xmrig-6.21.0-linux-static-x64`, `cpuminer-avx2`, `ccminer-cuda11`).
_WORDS = (
    "linux|static|dynamic|musl|glibc|gcc|msvc|clang|notls|tls|x64|x86|x86_64|amd64|i386|i686|"
    "arm|arm64|armv7|armv8|aarch64|riscv64|win32|win64|windows|bionic|focal|jammy|noble|xenial|"
    "cuda\\d*|opencl|avx|avx2|avx512|sse2|sse42|aes|sha|zen\\d*|native|generic|cpu|gpu|"
    "mo|multi|new|old|bin|release|debug"
)
_TOKEN = rf"(?:v?\d+[a-z0-9]*|(?:{_WORDS}))"
# An executable or packed-binary extension may end the name; `.conf`, `.json`, `.txt`, `.sh`
# and friends do not match (a config or a launcher script is not the miner binary).
_EXTENSIONS = r"(?:\.(?:exe|bin|elf|out|so|x|run|upx))?"
_NAME_RE = re.compile(
    "^(?P<name>"
    + "|".join(re.escape(n) for n in sorted(_NAMES, key=len, reverse=True))
    + rf")(?:[-_.]?{_TOKEN})*{_EXTENSIONS}$"
)


def name_signal(path: bytes) -> str | None:
    """The canonical miner name when the basename of `path` is a known miner's, else None.

    Case-insensitive; leading dots (hidden droppers: `.kinsing`), version and platform suffixes
    (`xmrig-6.21.0`, `xmrig-6.21.0-linux-static-x64`, `cpuminer-avx2`) and an executable
    extension (`XMRig.exe`: Linux images do carry Windows droppers, and a miner is a miner) are
    allowed. A name only counts for a file that is `in_scope`.
    """
    base = path.rstrip(b"/").rsplit(b"/", 1)[-1].lstrip(b".")
    if not base:
        return None
    try:
        text = base.decode("ascii").lower()
    except UnicodeDecodeError:
        return None  # every known name is ASCII
    match = _NAME_RE.match(text)
    return _NAMES[match.group("name")] if match else None


# Where a file is executable by location even without an execute bit: the directories on a
# default PATH and the libexec trees, as for check 448 (a miner with its x bit stripped in
# /usr/local/bin is still a miner waiting for `chmod`). Temporary directories are NOT in the list:
# a non-executable `/tmp/kdevtmpfsi` is the well-known Kinsing "vaccine" (an inert placeholder
# that stops the dropper from writing there); an executable one is in scope by its x bit.
_EXEC_DIRS = frozenset(
    {
        b"bin",
        b"sbin",
        b"usr/bin",
        b"usr/sbin",
        b"usr/local/bin",
        b"usr/local/sbin",
        b"usr/games",
        b"usr/local/games",
        b"opt/bin",
        b"root/bin",
        b"root/.local/bin",
    }
)
_EXEC_TREES = (b"usr/libexec/", b"usr/local/libexec/")
_EXEC_DIR_RE = re.compile(rb"^(?:opt/[^/]+/s?bin|home/[^/]+/(?:bin|\.local/bin))$")


def in_scope(path: bytes, mode: int) -> bool:
    """True when the name and content signals apply to this file.

    `path` is root-relative (a leading `/` is ignored) and `mode` the lstat `st_mode`; a mode
    without file-type bits (a tar header's) counts as a regular file. In scope: a regular file
    that has any execute bit, wherever it is; or any regular file in an executable location —
    `bin/ sbin/ usr/bin/ usr/sbin/ usr/local/bin/ usr/local/sbin/ usr/games/ usr/local/games/
    opt/bin/ opt/*/bin/ opt/*/sbin/ root/bin/ root/.local/bin/ home/*/bin/ home/*/.local/bin/`
    (directly inside) and anywhere under `usr/libexec/`, `usr/local/libexec/`. Symlinks,
    directories and device nodes never are: the walker does not follow links, and the target
    is judged on its own.
    """
    if stat.S_IFMT(mode) not in (0, stat.S_IFREG):
        return False
    if mode & 0o111:
        return True
    rel = path.lstrip(b"/")
    parent = rel.rsplit(b"/", 1)[0] if b"/" in rel else b""
    return (
        parent in _EXEC_DIRS
        or rel.startswith(_EXEC_TREES)
        or _EXEC_DIR_RE.match(parent) is not None
    )


# --------------------------------------------------------------------------------------------
# Signal (b): digest lists.


@dataclass(frozen=True, slots=True)
class DigestLineProblem:
    """A line of a digest list that was skipped, and why."""

    source: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: {self.reason}"


@dataclass(frozen=True, slots=True)
class DigestList:
    """Known-miner SHA-256 digests (raw 32 bytes -> label) and the lines that were skipped."""

    digests: Mapping[bytes, str] = field(default_factory=dict)
    problems: tuple[DigestLineProblem, ...] = ()

    def lookup(self, sha256: bytes | None) -> str | None:
        """The label of a raw SHA-256 digest, or None."""
        return None if sha256 is None else self.digests.get(sha256)

    def merged(self, other: DigestList) -> DigestList:
        """Both lists; for a digest in both, the label already here wins."""
        return DigestList({**other.digests, **self.digests}, self.problems + other.problems)

    def __len__(self) -> int:
        return len(self.digests)


_HEX64 = re.compile(rb"^[0-9a-fA-F]{64}$")
# A trailing comment (`  # source`) is how the shipped list cites each entry's origin.
_TRAILING_COMMENT = re.compile(rb"\s+#.*$")


def parse_digests(data: bytes, source: str) -> DigestList:
    """Parse a digest list: one `<sha256 hex>  <label>` per line.

    Blank lines and lines starting with `#` are ignored, as is a trailing `  # comment`. The
    label is optional (default: `listed in <source>`); a leading `*` on it (sha256sum's binary
    mark) is dropped, so a release's `SHA256SUMS` can be used as it is. A malformed line is
    skipped and reported as a `DigestLineProblem`, never raised. For a digest listed twice, the
    first label wins.
    """
    digests: dict[bytes, str] = {}
    problems: list[DigestLineProblem] = []
    for number, raw in enumerate(data.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith(b"#"):
            continue
        parts = line.split(None, 1)
        hex_digest = parts[0]
        if not _HEX64.match(hex_digest):
            reason = (
                "SHA-256 digest has non-hex characters"
                if len(hex_digest) == 64
                else f"expected a 64-digit SHA-256 hex digest, got {len(hex_digest)} characters"
            )
            problems.append(DigestLineProblem(source, number, reason))
            continue
        rest = parts[1] if len(parts) > 1 else b""
        label_raw = _TRAILING_COMMENT.sub(b"", b" " + rest).lstrip().lstrip(b"*").strip()
        label = label_raw.decode("utf-8", "backslashreplace") or f"listed in {source}"
        digests.setdefault(bytes.fromhex(hex_digest.decode("ascii")), label)
    return DigestList(digests, tuple(problems))


def load_digests(*paths: str | bytes | PathLike[str] | PathLike[bytes]) -> DigestList:
    """Read and merge digest-list files, in order (an earlier file's label wins).

    Raises `MinerDigestsError` when a file cannot be read; malformed lines are only problems.
    """
    result = DigestList()
    for path in paths:
        source = fsdecode(path)
        try:
            data = read_digests(source)
        except OSError as error:
            raise MinerDigestsError(
                f"{source}: cannot read miner digest list: {error.strerror}"
            ) from error
        except InputFileError as error:  # a FIFO, a device, a sparse giant: never read
            raise MinerDigestsError(str(error)) from error
        result = result.merged(parse_digests(data, source))
    return result


def read_digests(path: str | PathLike[str]) -> bytes:
    """A `--miner-digests` file's bytes: a regular file within MAX_DIGESTS_BYTES
    (jsonload.read_bounded: InputFileError, or OSError)."""
    return read_bounded(path, what="miner digest list", max_bytes=MAX_DIGESTS_BYTES)


@functools.cache
def default_digests() -> DigestList:
    """The digest list shipped in `scanner/data/miner-digests.txt`, read once on first use."""
    # Imported here: importlib.resources costs ~8 ms of start-up that scans without 426 skip.
    import importlib.resources

    resource = importlib.resources.files("scanner").joinpath("data", "miner-digests.txt")
    try:
        data = resource.read_bytes()
    except OSError as error:
        raise MinerDigestsError(f"shipped miner digest list unreadable: {error}") from error
    return parse_digests(data, "scanner/data/miner-digests.txt")


DEFAULT_DIGESTS: DigestList  # bound lazily by the module __getattr__ below, never at import


def __getattr__(name: str) -> DigestList:
    # `DEFAULT_DIGESTS` is lazy: importing the module (e.g. for --help) reads no data file.
    if name == "DEFAULT_DIGESTS":
        return default_digests()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# --------------------------------------------------------------------------------------------
# Signal (c): content markers.


class MarkerGroup(enum.Enum):
    """What a marker is evidence of; the rule needs two different groups."""

    POOL = "pool"  # talks to a mining pool: stratum URLs, pool and donation hosts
    ALGORITHM = "algorithm"  # implements a proof-of-work algorithm by its mining name
    MINER = "miner"  # a miner's own options, banner and identity strings


# (literal, group). The content engine matches case-sensitively, so each casing needed is
# listed. Literals as compiled into the miners, from their sources: XMRig's usage text (options),
# DonateStrategy (donation hosts) and Pools::print (the start-up banner's format string
# "POOL #%-7zu", older releases "POOL #%-7d": the " * POOL #1" seen in a log is assembled at run
# time, with colour codes between " * " and "POOL", so it never occurs in the binary);
# cpuminer / ccminer usage texts. Nothing is decisive on its own: "ethash" occurs in Node.js
# (this host's /usr/bin/node), "stratum+tcp://" in URL tables, which is why one group never
# suffices.
_MARKER_TABLE: tuple[tuple[bytes, MarkerGroup], ...] = (
    (b"stratum+tcp://", MarkerGroup.POOL),
    (b"stratum+ssl://", MarkerGroup.POOL),
    (b"stratum+tls://", MarkerGroup.POOL),
    (b"stratum2+tcp://", MarkerGroup.POOL),
    (b"stratum1+tcp://", MarkerGroup.POOL),
    (b"donate.v2.xmrig.com", MarkerGroup.POOL),
    (b"donate.ssl.xmrig.com", MarkerGroup.POOL),
    (b"nicehash", MarkerGroup.POOL),
    (b"pool.minexmr.com", MarkerGroup.POOL),
    (b"pool.supportxmr.com", MarkerGroup.POOL),
    (b"moneroocean.stream", MarkerGroup.POOL),
    (b"xmrpool.eu", MarkerGroup.POOL),
    (b"nanopool.org", MarkerGroup.POOL),
    (b"cryptonight", MarkerGroup.ALGORITHM),
    (b"CryptoNight", MarkerGroup.ALGORITHM),
    (b"randomx", MarkerGroup.ALGORITHM),
    (b"RandomX", MarkerGroup.ALGORITHM),
    (b"kawpow", MarkerGroup.ALGORITHM),
    (b"KawPow", MarkerGroup.ALGORITHM),
    (b"ethash", MarkerGroup.ALGORITHM),
    (b"Ethash", MarkerGroup.ALGORITHM),
    (b"argon2/chukwa", MarkerGroup.ALGORITHM),
    (b"ghostrider", MarkerGroup.ALGORITHM),
    (b"--donate-level", MarkerGroup.MINER),
    (b"--cpu-priority", MarkerGroup.MINER),
    (b"--randomx-1gb-pages", MarkerGroup.MINER),
    (b"--cpu-max-threads-hint", MarkerGroup.MINER),
    (b"--nicehash", MarkerGroup.MINER),
    (b"xmrig", MarkerGroup.MINER),
    (b"XMRig", MarkerGroup.MINER),
    (b"xmr-stak", MarkerGroup.MINER),
    (b"cpuminer-multi", MarkerGroup.MINER),
    (b"cpuminer-opt", MarkerGroup.MINER),
    (b"ccminer", MarkerGroup.MINER),
    (b"POOL #%-7", MarkerGroup.MINER),  # XMRig's start-up banner format string
)

MARKERS: tuple[bytes, ...] = tuple(text for text, _ in _MARKER_TABLE)
"""Literals for the content engine; a found marker is reported by its index in this tuple."""
MARKER_GROUPS: tuple[MarkerGroup, ...] = tuple(group for _, group in _MARKER_TABLE)
# Markers that occur inside another marker ("xmrig" in "donate.v2.xmrig.com", "randomx" in
# "--randomx-1gb-pages"): one occurrence of the longer reports both, so when both are found the
# shorter is not counted as evidence of its own. Conservative: a second, separate occurrence of
# the shorter one is then not counted either (the engine reports presence, not positions).
_INSIDE: tuple[frozenset[int], ...] = tuple(
    frozenset(j for j, other in enumerate(MARKERS) if j != i and text in other)
    for i, text in enumerate(MARKERS)
)


def marker_signal(found: Iterable[int]) -> tuple[str, ...] | None:
    """The markers to report when the found ones come from at least two groups, else None.

    `found` holds indexes into `MARKERS`; an index outside it is a caller bug (ValueError).
    A marker found only as part of a longer found marker does not count. The result lists the
    counted markers, in `MARKERS` order, as text.
    """
    present = set(found)
    if present and (min(present) < 0 or max(present) >= len(MARKERS)):
        raise ValueError(f"marker id out of range 0..{len(MARKERS) - 1}: {sorted(present)}")
    ids = sorted(i for i in present if not _INSIDE[i] & present)
    if len({MARKER_GROUPS[i] for i in ids}) < 2:
        return None
    return tuple(MARKERS[i].decode("ascii") for i in ids)


# --------------------------------------------------------------------------------------------
# Combining the signals.


@dataclass(frozen=True, slots=True)
class MinerSignals:
    """What each signal said about one file; `None`/empty means that signal did not fire."""

    name: str | None = None  # canonical miner name matched by the basename
    digest: str | None = None  # label of the digest-list entry the SHA-256 matched
    markers: tuple[str, ...] = ()  # content markers, set only when the two-group rule held

    @property
    def signals(self) -> tuple[str, ...]:
        """The names of the signals that fired, in a fixed order: name, digest, content."""
        fired = (("name", self.name), ("digest", self.digest), ("content", self.markers))
        return tuple(signal for signal, value in fired if value)

    @property
    def flagged(self) -> bool:
        """True when the file is a 426 finding: any one signal suffices."""
        return bool(self.name or self.digest or self.markers)


def classify(
    path: bytes,
    mode: int,
    sha256: bytes | None = None,
    found: Iterable[int] = (),
    digests: DigestList | None = None,
) -> MinerSignals:
    """All three signals for one file, applying each signal's scope.

    Name and content count only for a file `in_scope`; the digest counts for any file hashed.
    `digests` defaults to the shipped list.
    """
    scoped = in_scope(path, mode)
    table = default_digests() if digests is None else digests
    return MinerSignals(
        name=name_signal(path) if scoped else None,
        digest=table.lookup(sha256),
        markers=(marker_signal(found) or ()) if scoped else (),
    )
