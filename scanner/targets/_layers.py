"""Apply image layers (tar streams) into a private directory, refusing anything that escapes it.

Every write goes through directory file descriptors opened with O_NOFOLLOW from the root down,
so a member can never be written *through* a symlink, whatever a lower layer put in its path.
Symlink members themselves are created as they are (they are data inside the root; the scanner
never follows one out of it). Whiteouts follow the OCI image spec, layer.md "Whiteouts":
https://github.com/opencontainers/image-spec/blob/main/layer.md#whiteouts

Tar members come from `_tar` (a strict reader; no `tarfile`: its per-member stream objects cost
~10x a scan of the same root). The merged tree's directories are kept as nodes (`_Dir`), so a
member's parent is found without the disk, and in tar order in one comparison: work stays linear
in the archive however deep the tree (5,000 nested directories took 600 s when each member's
path was walked again). Directory fds opened for one member are kept for the next ones (tar
order groups siblings), at most _DIR_CACHE of them, and dropped with their directory when
something is removed, the only way a directory can be replaced. Nothing recurses by depth. An
uncompressed layer that is an extent of a file is read in place: file data
moves with sendfile, and its digest is computed over the same page-cached bytes by a second
thread. Handing files to a second thread was tried twice and dropped: every file, +0.1 CPU-s;
only the ~480 big ones (the sendfile bulk), +0.07 CPU-s; no wall-clock gain measurable on 2
shared cores that the scan keeps busy anyway.
"""

from __future__ import annotations

import bz2
import hashlib
import lzma
import os
import queue
import stat
import threading
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Protocol, cast

from _native import remove_py

from ..errors import ScannerError
from . import _tar

__all__ = ["Extent", "ImageError", "ImageLimits", "LayerApplier", "ScratchFull"]

GiB = 1 << 30
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_WHITEOUT = ".wh."
_OPAQUE = ".wh..wh..opq"
_CHUNK = 1 << 20
_COMPRESSED = (b"\x1f\x8b", b"\x28\xb5\x2f\xfd", b"\xfd7zXZ\x00", b"BZh")
_DIR_CACHE = 256  # open directory fds kept between members (tar order groups siblings)
_CHAIN_KEEP = 32  # of a long way down from an open ancestor, the fds kept (the deepest)
_AHEAD_CHUNKS = 8  # decoded chunks (of _CHUNK) waiting for the extraction: 8 MiB at most
# What a scratch filesystem holds per entry beyond its data: on tmpfs, an inode and a dentry
# (~1 KiB of kernel memory each) and data in whole pages.
_ENTRY_BYTES = 1024
_PAGE = 4096


class ImageError(ScannerError):
    """The image cannot be read, or it is hostile (traversal, bomb, corrupt or truncated layer)."""


class ScratchFull(ImageError):
    """The layers need more than the scratch directory's budget (LayerApplier's `budget`)."""


@dataclass(frozen=True, slots=True)
class ImageLimits:
    """Decompression-bomb limits; exceeding any of them is an ImageError."""

    max_total_bytes: int = 64 * GiB  # sum of the sizes of all regular files extracted
    max_entries: int = 2_000_000  # tar members over all layers (whiteouts included)
    max_member_bytes: int = 16 * GiB  # one regular file
    max_ratio: int = 1000  # decompressed:compressed, checked once past ratio_floor bytes
    ratio_floor: int = 1 * GiB
    # The same for a compressed image archive as a whole (.tar.gz, .tar.bz2, .tar.xz): images
    # pack 2-5:1, and gzip cannot pass ~1030:1, so its bombs stay under the layers' ratio.
    max_archive_ratio: int = 100


class _Reader(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


@dataclass(frozen=True, slots=True)
class Extent:
    """A layer blob stored as `length` bytes at `start` of the open file `fd` (not owned)."""

    fd: int
    start: int
    length: int


class _ExtentReader:
    """An Extent read forward as a stream (for compressed layers)."""

    def __init__(self, extent: Extent) -> None:
        self.extent = extent
        self.position = 0

    def read(self, size: int = -1, /) -> bytes:
        left = self.extent.length - self.position
        size = left if size < 0 else min(size, left)
        data = os.pread(self.extent.fd, size, self.extent.start + self.position) if size else b""
        self.position += len(data)
        return data


class _ExtentHasher(threading.Thread):
    """Hashes an Extent while the main thread extracts it (hashlib and pread drop the GIL)."""

    def __init__(self, extent: Extent, hasher: Any) -> None:
        super().__init__(name="scan-root-layer-digest", daemon=True)
        self.extent = extent
        self.hasher = hasher
        self.error: OSError | None = None
        self.start()

    def run(self) -> None:
        reader = _ExtentReader(self.extent)
        try:
            while chunk := reader.read(_CHUNK):
                self.hasher.update(chunk)
        except OSError as error:  # carried back as data, raised by the extracting thread
            self.error = error


def _stamp(
    fd: int, member: _tar.Member, owner: tuple[int, int] | None, created: int | None = None
) -> None:
    """Owner, mode and mtime as the member says. `owner`: this process's (euid, egid) when it
    may chown; `created`: the mode the file already has (None: unknown). Only what differs is
    set: on a typical image, of fchown, fchmod and utime only utime is left."""
    # Owner first: chown clears setuid/setgid. Modes are kept as in the image (448 compares
    # them); the root directory is 0700, so nobody else can reach a setuid file in it.
    chowned = owner is not None and (member.uid, member.gid) != owner
    if chowned:
        os.fchown(fd, member.uid, member.gid)
    if chowned or created != member.mode & 0o7777:
        os.fchmod(fd, member.mode & 0o7777)
    os.utime(fd, (member.mtime, member.mtime))


def _umask() -> int | None:
    """This process's umask, from /proc (reading it with os.umask would briefly change it for
    every thread); None when it cannot be known."""
    try:
        with open("/proc/self/status", "rb") as status:
            for line in status:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        return None
    return None


class _Counting:
    """Counts (and hashes) the compressed bytes a layer is read from."""

    def __init__(self, raw: _Reader, hasher: Any) -> None:
        self.raw = raw
        self.hasher = hasher
        self.count = 0

    def read(self, size: int = -1, /) -> bytes:
        data = self.raw.read(size)
        self.count += len(data)
        if self.hasher is not None:
            self.hasher.update(data)
        return data

    def readinto(self, buffer: Any, /) -> int:
        """read() into `buffer` (ISA-L's GzipFile reads its input this way)."""
        data = self.read(len(buffer))
        memoryview(buffer).cast("B")[: len(data)] = data
        return len(data)


class _Decompressed:
    """The tar stream of one layer; decoder errors become ImageError naming the layer."""

    def __init__(
        self,
        stream: _Reader,
        compressed: _Counting,
        kind: str,
        label: str,
        limits: ImageLimits,
        errors: tuple[type[BaseException], ...],
    ) -> None:
        self.stream = stream
        self.compressed = compressed
        self.kind = kind
        self.label = label
        self.limits = limits
        self.errors = errors
        self.count = 0

    def read(self, size: int = -1, /) -> bytes:
        try:
            data = self.stream.read(size)
        except self.errors as error:
            raise ImageError(
                f"{self.label}: corrupt or truncated {self.kind} data: {error}"
            ) from error
        self.count += len(data)
        limits = self.limits
        if (
            self.kind != "tar"
            and self.count > limits.ratio_floor
            and self.count > limits.max_ratio * max(self.compressed.count, 1)
        ):
            raise ImageError(
                f"{self.label}: decompression bomb: {self.count} bytes from "
                f"{self.compressed.count} compressed (limit {limits.max_ratio}:1)"
            )
        return data


class _Ahead:
    """A layer's tar stream decoded ahead by a second thread (zlib, zstd, lzma and bz2 release
    the GIL while they decode), so that decoding and extracting overlap: a gzip layer's inflate
    was as long as its extraction, one after the other. At most _AHEAD_CHUNKS chunks wait.

    At the decoder's end the thread also reads the compressed tail, so the layer's digest covers
    every byte. Its errors (a corrupt stream, a bomb) are raised by the reader, in order; close()
    stops it and waits for it."""

    def __init__(self, stream: _Decompressed, compressed: _Counting) -> None:
        self._chunks: queue.Queue[bytes | BaseException] = queue.Queue(_AHEAD_CHUNKS)
        self._stop = threading.Event()
        self._buffer = memoryview(b"")
        self._done = False
        self._thread = threading.Thread(
            target=self._decode, args=(stream, compressed), name="scan-root-layer-decode",
            daemon=True,
        )  # fmt: skip
        self._thread.start()

    def _decode(self, stream: _Decompressed, compressed: _Counting) -> None:
        item: bytes | BaseException
        try:
            while not self._stop.is_set():
                item = stream.read(_CHUNK)
                if not item:
                    while compressed.read(_CHUNK):  # the tail after the decoder's end
                        pass
                    break
                self._put(item)
            item = b""
        except BaseException as error:  # noqa: BLE001 - handed to the reading thread, raised there
            item = error
        self._put(item)

    def _put(self, item: bytes | BaseException) -> None:
        while not self._stop.is_set():
            try:
                self._chunks.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def read(self, size: int = -1, /) -> bytes:
        parts = []
        while (size < 0 or size > 0) and not (self._done and not self._buffer):
            if not self._buffer:
                item = self._chunks.get()
                if isinstance(item, BaseException):
                    self._done = True
                    raise item
                if not item:
                    self._done = True
                    break
                self._buffer = memoryview(item)
            take = len(self._buffer) if size < 0 else min(size, len(self._buffer))
            parts.append(self._buffer[:take])
            self._buffer = self._buffer[take:]
            if size > 0:
                size -= take
        return b"".join(parts)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


def _gzip_reader(raw: _Counting) -> tuple[_Reader, tuple[type[BaseException], ...]]:
    """A gzip decoder over `raw` and the errors it raises: ISA-L's (the optional `isal` package,
    ~2x zlib's inflate: bookworm-apps' 308 MB layer in 0.73 s against 1.63 s) when installed and
    not turned off (SCANNER_NO_ISAL=1), else the standard library's."""
    isal = None if os.environ.get("SCANNER_NO_ISAL") == "1" else _isal()
    if isal is not None:
        igzip, isal_zlib = isal
        return igzip.IGzipFile(fileobj=cast(Any, raw), mode="rb"), (isal_zlib.error,)
    import gzip

    return gzip.GzipFile(fileobj=cast(Any, raw), mode="rb"), ()


def _isal() -> tuple[Any, Any] | None:
    """(isal.igzip, isal.isal_zlib), or None when the package is not installed."""
    try:
        from isal import igzip, isal_zlib  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None  # the standard library's zlib serves: the same results, slower
    return igzip, isal_zlib


def _decompress(raw: _Counting, label: str, limits: ImageLimits) -> _Decompressed:
    """Pick the decoder by magic bytes (never by name or media type)."""
    head = _peek(raw)
    errors: tuple[type[BaseException], ...] = (EOFError, OSError, zlib.error)
    stream: _Reader
    if head.startswith(b"\x1f\x8b"):
        kind, stream, decode_errors = "gzip", *_gzip_reader(raw)
        errors += decode_errors
    elif head.startswith(b"\x28\xb5\x2f\xfd"):
        try:
            import zstandard
        except ImportError:
            raise ImageError(
                f"{label}: zstd layer: install zstandard (pip install zstandard)"
            ) from None
        kind = "zstd"
        stream = zstandard.ZstdDecompressor().stream_reader(cast(Any, raw), read_across_frames=True)
        errors += (zstandard.ZstdError,)
    elif head.startswith(b"\xfd7zXZ\x00"):
        kind, stream = "xz", lzma.LZMAFile(cast(Any, raw))  # noqa: SIM115 - read to its end
        errors += (lzma.LZMAError,)
    elif head.startswith(b"BZh"):
        kind, stream = "bzip2", bz2.BZ2File(cast(Any, raw))
    else:
        kind, stream = "tar", raw
    return _Decompressed(stream, raw, kind, label, limits, errors)


def _peek(raw: _Counting) -> bytes:
    """Read the first bytes and push them back in front of the stream."""
    head = raw.raw.read(6)
    rest = raw.raw

    class _Prefixed:
        def __init__(self) -> None:
            self.head = head

        def read(self, size: int = -1, /) -> bytes:
            if self.head:
                if size < 0:
                    data, self.head = self.head + rest.read(), b""
                    return data
                data, self.head = self.head[:size], self.head[size:]
                return data
            return rest.read(size)

    raw.raw = _Prefixed()
    return head


def _parts(name: str, label: str, what: str) -> tuple[tuple[str, ...], bool]:
    """Split a member name into path components; any `..` is refused. Returns (parts, absolute)."""
    # Substring tests first: a name is one string search, not a comparison per component (a
    # member 5,000 directories deep has a 10,000-character name).
    stripped = name.strip("/")  # (a directory's name ends in "/")
    split = stripped.split("/")
    if "//" in stripped or "./" in stripped or stripped.endswith(".") or not stripped:
        split = [part for part in split if part not in ("", ".")]  # the rarer names
    parts = tuple(split)
    if ".." in stripped and ".." in parts:
        raise ImageError(f"{label}: {what} {name!r} has a '..' component (path traversal); refused")
    return parts, name.startswith("/")


class _Dir:
    """A directory of the merged tree. Each one there was made by the applier, so these nodes
    are its directories (files are not kept): a path is found without touching the disk."""

    __slots__ = ("children", "fd", "member", "name", "parent")

    def __init__(self, name: str, parent: _Dir | None) -> None:
        self.name = name
        self.parent = parent
        self.children: dict[str, _Dir] = {}
        self.fd = -1  # a cached O_NOFOLLOW fd (LayerApplier._open), or -1
        self.member: _tar.Member | None = None  # its metadata, set once all layers are applied


# What one layer made: (parent directory, name). Whiteouts hide lower layers only.
_Layer = set[tuple[_Dir, str]]


class LayerApplier:
    """Applies layers in order into `root`, which must be an empty private directory.

    With `place_over`, a regular file larger than that, read from an uncompressed layer in a
    file (an Extent), is not copied: it is created sparse, at its size, and `placed` maps its
    inode to (fd, offset, length) of its bytes in the layer, for the hasher to read them there
    (_native.Extents). Files under `keep_whole` (directories as "a/b", the package databases
    that readers open by path) are always copied. An inode freed by a removal and given to a
    new file cannot be mistaken: a new copied file over `place_over` drops its inode's entry,
    and a smaller one never matches a placed length.

    With `budget`, the bytes the extracted tree may take where it is written (a memory
    filesystem: RAM) are counted as they are written, data in whole pages plus _ENTRY_BYTES an
    entry, and ScratchFull is raised before the write that would pass it.
    """

    def __init__(
        self,
        root: str,
        limits: ImageLimits,
        place_over: int | None = None,
        keep_whole: tuple[str, ...] = (),
        budget: int | None = None,
    ) -> None:
        self.limits = limits
        self.budget = budget
        self.written = 0  # bytes charged against `budget`
        self.problems: list[str] = []
        # Members the merged root lacks though they may hold data (unknown tar types): not
        # verified, so each makes the report incomplete.
        self.unextracted: list[str] = []
        self.entries = 0
        self.total = 0
        self.place_over = place_over
        self._keep_whole = tuple(directory.rstrip("/") + "/" for directory in keep_whole)
        self._keep_first = frozenset(directory.split("/")[0] for directory in keep_whole)
        self.placed: dict[int, tuple[int, int, int]] = {}
        self._root_fd = os.open(root, _DIR_FLAGS)
        # (euid, egid) when we may give files the image's owners (root); else None.
        self._owner = (os.geteuid(), os.getegid()) if os.geteuid() == 0 else None
        self._umask = _umask()
        # Every directory of the merged tree, as nodes: this applier made each one.
        self._top = _Dir("", None)
        self._top.fd = self._root_fd
        # Directory fds opened (O_NOFOLLOW, component by component) for earlier members, least
        # recently used first. Valid until _trim or a removal of their directory.
        self._open: OrderedDict[_Dir, None] = OrderedDict()
        # The last directory looked up or made, by path: the next member's parent, in tar order.
        self._memo: tuple[tuple[str, ...], _Dir] | None = None

    def close(self) -> None:
        self._forget()
        if self._root_fd >= 0:
            os.close(self._root_fd)
            self._root_fd = -1
            self._top.fd = -1

    def _forget(self) -> None:
        while self._open:
            node, _ = self._open.popitem()
            os.close(node.fd)
            node.fd = -1

    def _trim(self) -> None:
        """Close the least recently used fds past _DIR_CACHE; only where no borrowed fd is held."""
        while len(self._open) > _DIR_CACHE:
            node, _ = self._open.popitem(last=False)
            os.close(node.fd)
            node.fd = -1

    # -- one layer ---------------------------------------------------------------------------

    def apply(self, blob: _Reader | Extent, label: str, digest: str | None = None) -> None:
        """Apply one layer blob (plain tar, gzip, zstd, xz or bzip2), checking `digest` if given.

        An `Extent` of an uncompressed layer is the fast path: headers come from a read-ahead
        buffer and file data moves with sendfile; its digest is computed by a second thread over
        the same (page-cached) bytes, since sendfile never shows them to Python.
        """
        layer: _Layer = set()
        hasher = hashlib.new(digest.partition(":")[0]) if digest is not None else None
        if isinstance(blob, Extent) and os.pread(blob.fd, 6, blob.start).startswith(_COMPRESSED):
            blob = _ExtentReader(blob)  # a compressed layer in a file: decode it as a stream
        worker = None
        counting = stream = None
        blocks: _tar.ExtentBlocks | _tar.StreamBlocks
        if isinstance(blob, Extent):
            blocks = _tar.ExtentBlocks(blob.fd, blob.start, blob.length)
            if hasher is not None:
                worker = _ExtentHasher(blob, hasher)
        else:
            counting = _Counting(blob, hasher)
            stream = _Ahead(_decompress(counting, label, self.limits), counting)
            blocks = _tar.StreamBlocks(stream)
        absolute = 0
        try:
            for member in _tar.members(blocks):
                data_end = blocks.offset + member.size
                absolute += self._member(blocks, member, label, layer)
                if blocks.offset != data_end:  # data nobody extracted (whiteout, sparse, ...)
                    blocks.skip(data_end - blocks.offset)
            if stream is not None:
                # The decoder's end (a truncated tail), then the compressed tail (the whole hash).
                while stream.read(_CHUNK):
                    pass
        except _tar.TarFormatError as error:
            raise ImageError(f"{label}: not a valid tar stream: {error}") from error
        finally:
            if worker is not None:
                worker.join()
            if stream is not None:
                stream.close()
        if absolute:
            self.problems.append(
                f"{label}: {absolute} member name(s) were absolute; extracted relative to the root"
            )
        if worker is not None and worker.error is not None:
            raise ImageError(f"{label}: cannot read the layer: {worker.error}") from worker.error
        if (
            hasher is not None
            and digest is not None
            and f"{digest.partition(':')[0]}:{hasher.hexdigest()}" != digest
        ):
            raise ImageError(f"{label}: digest mismatch: content is not {digest}")

    def finish(self) -> None:
        """Set directory modes, owners and times, children before parents (late, so writes
        below succeed), in one walk of the tree: linear in its directories whatever the depth,
        with at most _DIR_CACHE fds open. A parent whose fd was closed to keep to that is
        opened again as its child's "..", before the child's mode can shut us out of it (every
        directory here was made by this applier, in a private tree: ".." is its parent)."""
        self._forget()
        top = self._top
        frames: list[list[Any]] = [[top, self._root_fd, iter(list(top.children.values()))]]
        while frames:
            frame = frames[-1]
            node, fd, children = frame
            child = next(children, None)
            if child is not None:
                frames.append(
                    [child, self._open_dir(fd, child), iter(list(child.children.values()))]
                )
                if len(frames) > _DIR_CACHE + 1:
                    far = frames[-_DIR_CACHE - 1]
                    if far[1] >= 0:
                        os.close(far[1])
                        far[1] = -1
                continue
            frames.pop()
            if node is top:
                break
            above = frames[-1]
            if above[1] < 0:
                above[1] = os.open("..", _DIR_FLAGS, dir_fd=fd)
            try:
                if node.member is not None:
                    self._metadata(fd, node.member)
                    node.member = None
            finally:
                os.close(fd)

    # -- one member --------------------------------------------------------------------------

    def _member(
        self,
        blocks: _tar.Blocks,
        member: _tar.Member,
        label: str,
        layer: _Layer,
    ) -> int:
        self.entries += 1
        self._trim()  # here, while no borrowed fd is held
        if self.entries > self.limits.max_entries:
            raise ImageError(f"{label}: more than {self.limits.max_entries} entries (limit)")
        parts, absolute = _parts(member.name, label, "member")
        if not parts:
            if not member.isdir():
                # A file named "" or "." would be the root itself: its data is not extracted.
                self.unextracted.append(
                    f"{label}: a member named {member.name!r} that is not a directory: "
                    "not extracted"
                )
            return 0  # the root itself: it stays 0700, as private as the temp dir must be
        base = parts[-1]
        if base.startswith(_WHITEOUT):
            if not member.isreg() or member.size or member.sparse:
                # Runtimes write whiteouts as empty files and apply only the name: data or a
                # link here was put there by someone, and would be dropped unseen.
                self.unextracted.append(
                    f"{label}: whiteout {member.name!r} carries data or a link: not extracted"
                )
            self._whiteout(parts, member.name, label, layer)
            return int(absolute)
        self._charge(_ENTRY_BYTES + len(member.linkname))
        parent = self._lookup(parts[:-1], create=True, label=label, name=member.name, layer=layer)
        assert parent is not None
        if (parent, base) in layer:
            self.problems.append(f"{label}: duplicate entry {member.name!r}; the last one wins")
        self._create(blocks, member, parent, parts, label)
        layer.add((parent, base))
        return int(absolute)

    def _create(
        self,
        blocks: _tar.Blocks,
        member: _tar.Member,
        parent: _Dir,
        parts: tuple[str, ...],
        label: str,
    ) -> None:
        name = parts[-1]
        fd = self._fd(parent, label, member.name)
        if member.isreg() or member.sparse is not None:
            self._file(blocks, member, parent, fd, parts, label)
            return
        if member.issym():
            if not member.linkname:  # symlink(2) refuses an empty target (ENOENT): no such link
                self.unextracted.append(f"{label}: symlink {member.name!r} has no target")
                return
            self._replacing(parent, fd, name, os.symlink, member.linkname, name, dir_fd=fd)
            if self._owner is not None and (member.uid, member.gid) != self._owner:
                os.chown(name, member.uid, member.gid, dir_fd=fd, follow_symlinks=False)
            return
        if member.islnk():
            self._hardlink(member, parent, fd, parts, label)
            return
        try:
            existing = os.lstat(name, dir_fd=fd)
        except FileNotFoundError:
            existing = None
        if member.isdir():
            if existing is not None and not stat.S_ISDIR(existing.st_mode):
                self._remove(parent, fd, name)
                existing = None
            if existing is None:
                os.mkdir(name, 0o700, dir_fd=fd)
            node = parent.children.get(name)
            if node is None:
                node = parent.children[name] = _Dir(name, parent)
            node.member = member
            self._memo = (parts, node)  # in tar order, the next members' parent
            return
        if existing is not None:
            self._remove(parent, fd, name)  # the member replaces it, even if not created
        if member.isfifo():
            # As a runtime makes it; never opened here (an open would wait for a writer).
            os.mkfifo(name, 0o600, dir_fd=fd)
            if self._owner is not None and (member.uid, member.gid) != self._owner:
                os.chown(name, member.uid, member.gid, dir_fd=fd, follow_symlinks=False)
            os.chmod(name, member.mode & 0o7777, dir_fd=fd)  # just made: not a symlink
            os.utime(name, (member.mtime, member.mtime), dir_fd=fd, follow_symlinks=False)
        elif member.ischr() or member.isblk():
            # Never made: a device node in the scratch tree would open the host's device. No
            # check is left open by its absence (a device has no content; a runtime mounts its
            # own /dev over the image's), so this is not an unverified item.
            self.problems.append(f"{label}: {member.name!r}: device node not created")
        else:
            # Docker and containerd refuse a layer with such a member; GNU tar makes a regular
            # file of it. Neither is sure, so its content is not verified.
            self.unextracted.append(
                f"{label}: {member.name!r}: unsupported tar type {member.type!r}; not extracted"
            )

    def _replacing(
        self, parent: _Dir, fd: int, name: str, create: Any, *args: Any, **kw: Any
    ) -> Any:
        """create(*args) at `name` in `parent` (open as `fd`); whatever a lower layer (or a
        duplicate) left there goes."""
        try:
            return create(*args, **kw)
        except FileExistsError:
            self._remove(parent, fd, name)
            return create(*args, **kw)

    def _file(
        self,
        blocks: _tar.Blocks,
        member: _tar.Member,
        parent: _Dir,
        parent_fd: int,
        parts: tuple[str, ...],
        label: str,
    ) -> None:
        limits = self.limits
        size = member.size if member.sparse is None else member.realsize  # what will be read
        if size > limits.max_member_bytes:
            raise ImageError(
                f"{label}: {member.name!r} is {size} bytes (limit {limits.max_member_bytes})"
            )
        if (
            member.sparse is not None
            and size > limits.ratio_floor
            and size > limits.max_ratio * max(member.size, _tar.BLOCK)
        ):
            # Holes cost nothing to store and all of their size to read: a bomb, as for a layer.
            raise ImageError(
                f"{label}: {member.name!r}: decompression bomb: a sparse file of {size} bytes "
                f"from {member.size} stored (limit {limits.max_ratio}:1)"
            )
        self.total += size
        if self.total > limits.max_total_bytes:
            raise ImageError(
                f"{label}: the image extracts to more than {limits.max_total_bytes} bytes (limit)"
            )
        # Created with its final permission bits where the umask lets them through, which saves
        # the fchmod; setuid/setgid/sticky bits are always set afterwards (_stamp).
        umask = self._umask
        mode = 0o600 if umask is None else member.mode & 0o777
        fd = self._replacing(
            parent, parent_fd, parts[-1], os.open, parts[-1], _CREATE_FLAGS, mode, dir_fd=parent_fd
        )
        try:
            if member.sparse is not None:
                self._sparse(blocks, member, fd)
            elif member.size:
                self._content(blocks, member, fd, parts)
            _stamp(fd, member, self._owner, None if umask is None else mode & ~umask)
        finally:
            os.close(fd)

    def _content(
        self, blocks: _tar.Blocks, member: _tar.Member, fd: int, parts: tuple[str, ...]
    ) -> None:
        """Copy a member's data into `fd`, or leave the file sparse and note where it lies."""
        over = self.place_over
        if over is None or member.size <= over:
            self._charge(-(-member.size // _PAGE) * _PAGE)
            blocks.copy(fd, member.size)
            return
        if isinstance(blocks, _tar.ExtentBlocks) and not (
            parts[0] in self._keep_first and "/".join(parts).startswith(self._keep_whole)
        ):
            offset = blocks.place(member.size)
            os.ftruncate(fd, member.size)
            self.placed[os.fstat(fd).st_ino] = (blocks.fd, offset, member.size)
            return
        self._charge(-(-member.size // _PAGE) * _PAGE)
        blocks.copy(fd, member.size)
        if self.placed:
            self.placed.pop(os.fstat(fd).st_ino, None)  # a freed inode given to this new file

    def _sparse(self, blocks: _tar.Blocks, member: _tar.Member, fd: int) -> None:
        """A sparse member's data regions written where its map puts them, holes left as
        holes (as GNU tar extracts it): never placed, since its bytes are not one extent."""
        assert member.sparse is not None
        for start, length in member.sparse:
            if length:
                self._charge(-(-length // _PAGE) * _PAGE)
                os.lseek(fd, start, os.SEEK_SET)
                blocks.copy(fd, length)
        os.ftruncate(fd, member.realsize)
        if self.placed:
            self.placed.pop(os.fstat(fd).st_ino, None)  # a freed inode given to this new file

    def _charge(self, size: int) -> None:
        """Count `size` bytes about to be written; ScratchFull before passing the budget."""
        self.written += size
        if self.budget is not None and self.written > self.budget:
            raise ScratchFull(f"the image takes more than {self.budget} bytes to extract")

    def _metadata(self, fd: int, member: _tar.Member) -> None:
        _stamp(fd, member, self._owner)

    def _hardlink(
        self, member: _tar.Member, parent: _Dir, fd: int, parts: tuple[str, ...], label: str
    ) -> None:
        target, _ = _parts(member.linkname, label, f"hard link {member.name!r} ->")
        if not target:
            raise ImageError(f"{label}: hard link {member.name!r} points at the root")
        source = self._lookup(target[:-1], create=False, label=label, name=member.linkname)
        if source is None or target[: len(parts)] == parts:
            # (The second: replacing parts[-1] would remove the target first.)
            raise ImageError(
                f"{label}: hard link {member.name!r} -> {member.linkname!r}: target not extracted"
            )
        source_fd = self._fd(source, label, member.linkname)
        try:
            self._replacing(
                parent,
                fd,
                parts[-1],
                os.link,
                target[-1],
                parts[-1],
                src_dir_fd=source_fd,
                dst_dir_fd=fd,
                follow_symlinks=False,
            )
        except FileNotFoundError:
            raise ImageError(
                f"{label}: hard link {member.name!r} -> {member.linkname!r}: target not extracted"
            ) from None
        except OSError as error:
            raise ImageError(
                f"{label}: hard link {member.name!r} -> {member.linkname!r}: {error.strerror}"
            ) from error

    # -- whiteouts ---------------------------------------------------------------------------

    def _whiteout(self, parts: tuple[str, ...], raw: str, label: str, layer: _Layer) -> None:
        parent = self._lookup(parts[:-1], create=False, label=label, name=raw)
        if parent is None:
            return  # nothing below to hide
        if parts[-1] == _OPAQUE:
            self._clear(parent, label, layer)
            return
        target = parts[-1][len(_WHITEOUT) :]
        if target in ("", ".", ".."):
            raise ImageError(f"{label}: invalid whiteout {raw!r}")
        if (parent, target) in layer:
            return  # whiteouts hide lower layers only; this layer's own entry stays
        try:
            self._remove(parent, self._fd(parent, label, raw), target)
        except FileNotFoundError:
            # The OCI image spec allows a whiteout for a name no lower layer has: it hides
            # nothing, so there is nothing to remove and nothing to report.
            return

    def _clear(self, top: _Dir, label: str, layer: _Layer) -> None:
        """Opaque directory: remove what lower layers put under it, keep this layer's entries
        (a walk down this layer's directories, without recursion: trees may be deep)."""
        pending = [top]
        while pending:
            self._trim()  # no fd is borrowed between two directories
            node = pending.pop()
            fd = self._fd(node, label, "")
            with os.scandir(fd) as entries:
                names = [(entry.name, entry.is_dir(follow_symlinks=False)) for entry in entries]
            for name, is_dir in names:
                if (node, name) not in layer:
                    self._remove(node, fd, name)
                elif is_dir and name in node.children:
                    pending.append(node.children[name])

    def _remove(self, parent: _Dir, fd: int, name: str) -> None:
        """Remove `name` of `parent` (open as `fd`), a whole tree if a directory: its nodes and
        their cached fds go (never `fd` or its ancestors', which the caller may hold)."""
        if not stat.S_ISDIR(os.lstat(name, dir_fd=fd).st_mode):
            os.unlink(name, dir_fd=fd)
            return
        node = parent.children.pop(name, None)
        self._memo = None
        pending = [node] if node is not None else []
        while pending:
            below = pending.pop()
            if below.fd >= 0:
                del self._open[below]
                os.close(below.fd)
                below.fd = -1
            pending.extend(below.children.values())
            below.children.clear()
        remove_py.remove_at(fd, name)  # fd-based and without recursion: trees may be deep

    # -- walking -----------------------------------------------------------------------------

    def _lookup(
        self,
        parts: tuple[str, ...],
        *,
        create: bool,
        label: str,
        name: str,
        layer: _Layer | None = None,
    ) -> _Dir | None:
        """The directory root/parts (made, with its missing parents, when `create`), or None.

        Only a component the tree's nodes do not know is looked at on disk: one that is a
        symlink or a non-directory is refused, since writing through it could land outside the
        root (`a -> /etc` then `a/passwd`). The path is matched against the last directory
        looked up or made first (in tar order, most members' parent): one comparison, not a
        walk from the root, so that extracting a deep tree stays linear.
        """
        memo = self._memo
        if memo is not None and memo[0] == parts:
            return memo[1]
        node = self._top
        owned = -1  # an fd on `node` of this walk, once below a directory it made
        try:
            for index, part in enumerate(parts):
                child = node.children.get(part)
                if child is None:
                    fd = owned if owned >= 0 else self._fd(node, label, name)
                    child = self._discover(node, fd, parts, index, create, label, name, layer)
                    if child is None:
                        return None
                    # Below a new directory all is new: go on with one fd of this walk at a
                    # time (a member 100,000 directories deep must not cache 100,000 fds).
                    below = self._open_dir(fd, child)
                    if owned >= 0:
                        os.close(owned)
                    owned = below
                node = child
            if owned >= 0:
                node.fd, owned = owned, -1  # the caller's next want: cached
                self._open[node] = None
        finally:
            if owned >= 0:
                os.close(owned)
        self._memo = (parts, node)
        return node

    def _discover(
        self,
        node: _Dir,
        fd: int,
        parts: tuple[str, ...],
        index: int,
        create: bool,
        label: str,
        name: str,
        layer: _Layer | None,
    ) -> _Dir | None:
        """parts[index] below `node` (open as `fd`), not yet a node: made when `create`, else
        None if absent."""
        part = parts[index]
        try:
            try:
                mode: int | None = os.lstat(part, dir_fd=fd).st_mode
            except FileNotFoundError:
                mode = None
            if mode is None:
                if not create:
                    return None
                os.mkdir(part, 0o755, dir_fd=fd)
                if layer is not None:
                    layer.add((node, part))
        except OSError as error:
            where = "/".join(parts[: index + 1])
            raise ImageError(
                f"{label}: {name!r}: cannot open {where!r}: {error.strerror}"
            ) from error
        if mode is not None and not stat.S_ISDIR(mode):
            what = "a symlink" if stat.S_ISLNK(mode) else "not a directory"
            where = "/".join(parts[: index + 1])
            raise ImageError(
                f"{label}: {name!r}: parent {where!r} is {what} in the merged root; "
                "refusing to extract through it"
            )
        child = node.children[part] = _Dir(part, node)
        return child

    def _fd(self, node: _Dir, label: str, name: str) -> int:
        """A borrowed fd on `node` (do not close it), valid until the next _trim or the removal
        of its directory: opened from its nearest open ancestor down, each component with
        O_NOFOLLOW. Of a long way down only the last _CHAIN_KEEP fds are kept."""
        if node.fd >= 0:
            if node is not self._top:
                self._open.move_to_end(node)
            return node.fd
        chain = []
        while node.fd < 0:
            chain.append(node)
            assert node.parent is not None  # the top's fd is always open
            node = node.parent
        fd = node.fd
        chain.reverse()
        keep_from = len(chain) - _CHAIN_KEEP
        for index, child in enumerate(chain):
            try:
                opened = self._open_dir(fd, child)
            except ImageError as error:
                raise ImageError(f"{label}: {name!r}: {error}") from error
            finally:
                if 0 < index <= keep_from:
                    os.close(fd)  # this walk's fd of chain[index - 1], not kept: not borrowed
            if index >= keep_from:
                child.fd = opened
                self._open[child] = None
            fd = opened
        return fd

    def _open_dir(self, fd: int, node: _Dir) -> int:
        try:
            return os.open(node.name, _DIR_FLAGS, dir_fd=fd)
        except OSError as error:
            raise ImageError(f"cannot open directory {node.name!r}: {error.strerror}") from error
