"""Records shared by the native walker/hasher and their pure-Python twins."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "Digest",
    "Extents",
    "FileKind",
    "HashResult",
    "HashStatus",
    "Prefetching",
    "TarFormatError",
    "WalkEntry",
    "WalkError",
]


class Digest(enum.IntFlag):
    """What the hasher computes for a file; a request ORs the ones it needs (the file is read once).

    CONTENT is a request flag, not a digest: run the content matcher (hash_files(matcher=...))
    over the file's bytes in the same read that computes its digests.
    """

    NONE = 0
    MD5 = 1
    SHA1 = 2
    SHA256 = 4
    CONTENT = 8
    XXH3 = 16  # xxh3-128 (canonical, big-endian bytes): the rescans' cheap content identity


class FileKind(enum.IntEnum):
    """File type from lstat, never following a symlink."""

    REGULAR = 1
    DIRECTORY = 2
    SYMLINK = 3
    FIFO = 4
    SOCKET = 5
    CHAR_DEVICE = 6
    BLOCK_DEVICE = 7
    OTHER = 8


@dataclass(frozen=True, slots=True)
class WalkEntry:
    """One directory entry found by the walker; `path` is relative to the root, no leading slash."""

    path: bytes
    kind: FileKind
    mode: int
    size: int
    dev: int
    ino: int
    nlink: int
    mtime_ns: int
    ctime_ns: int
    # A mount point below the root (a file system or a bind mount, of a directory or a single
    # file): its fields are what is mounted there. The walk does not enter it (one_file_system)
    # and the scan reads no file that is one: it is not the root's content.
    mount_point: bool = False


@dataclass(frozen=True, slots=True)
class WalkError:
    """A directory the walker could not list or an entry it could not stat; the walk goes on."""

    path: bytes
    errno: int
    message: str


class HashStatus(enum.IntEnum):
    """Outcome of hashing one path."""

    OK = 0  # regular file, digests computed
    MISSING = 1  # ENOENT / ENOTDIR on the path
    SYMLINK = 2  # the final component is a symlink (never followed); `link_target` is set
    NOT_REGULAR = 3  # directory, FIFO, socket or device node: never opened for reading
    ERROR = 4  # could not open/read (EACCES, EIO, vanished mid-read, ...): `errno` says why


@dataclass(frozen=True, slots=True)
class HashResult:
    """Digests (or the reason there are none) for one requested path."""

    path: bytes
    status: HashStatus
    errno: int = 0
    kind: FileKind | None = None
    mode: int = 0
    size: int = 0
    dev: int = 0
    ino: int = 0
    mtime_ns: int = 0
    ctime_ns: int = 0
    md5: bytes | None = None
    sha1: bytes | None = None
    sha256: bytes | None = None
    link_target: bytes | None = None
    head: bytes | None = None  # the first bytes read (up to 4: enough for the ELF magic)
    # Digest.CONTENT only. scanned: the matcher ran over the whole file (False when the file was
    # larger than content_limit, or unreadable). hits: (pattern index, start offset) in (end
    # offset, pattern index) order, at most max_hits; hit_total counts them all. windows: (file
    # offset, bytes) around the stored hits of captured patterns, merged, at most 8, by offset.
    scanned: bool = False
    hits: tuple[tuple[int, int], ...] = ()
    hit_total: int = 0
    windows: tuple[tuple[int, bytes], ...] = ()
    xxh3: bytes | None = None  # Digest.XXH3: 16 bytes, as xxhash.xxh3_128(data).digest()


@dataclass(frozen=True, slots=True)
class Extents:
    """Regular files of a root whose bytes lie in another file (hash_files(extents=...)).

    An image unpacked for a scan leaves its big files sparse and has them read in place from
    the layer archive (scanner/targets): no copy into the scratch directory, none to free. A file
    is read from its extent only when its lstat shows `dev`, a recorded inode and the recorded
    length; any other file is read from its path as usual. The fds belong to the caller and
    stay open for the call.
    """

    dev: int
    by_inode: Mapping[int, tuple[int, int, int]]  # st_ino -> (fd holding the bytes, offset, length)


class TarFormatError(ValueError):
    """A tar header or pax record is malformed; the message says where (byte offset) and why."""


class Prefetching(Protocol):
    """A running early read-ahead (`_native.start_prefetch`): stop or wait, then (files, bytes)."""

    def stop(self) -> tuple[int, int]: ...

    def wait(self) -> tuple[int, int]: ...
