"""Apply image layers (tar streams) into a private directory, refusing anything that escapes it.

Each member is created through the merged tree's directory fds (`_tree.MergedTree`: opened with
O_NOFOLLOW from the root down, so never *through* a symlink, whatever a lower layer put in its
path). Symlink members themselves are created as they are (they are data inside the root; the
scanner never follows one out of it). Whiteouts follow the OCI image spec, layer.md "Whiteouts":
https://github.com/opencontainers/image-spec/blob/main/layer.md#whiteouts

Tar members come from `_tar` (a strict reader; no `tarfile`: its per-member stream objects cost
~10x a scan of the same root); the blob is decoded by `_blobs`. An uncompressed layer that is an
extent of a file is read in place: file data moves with sendfile, and its digest is computed
over the same page-cached bytes by a second thread. Handing files to a second thread was tried
twice and dropped: every file, +0.1 CPU-s; only the ~480 big ones (the sendfile bulk), +0.07
CPU-s; no wall-clock gain measurable on 2 shared cores that the scan keeps busy anyway.
"""

from __future__ import annotations

import hashlib
import os
import stat
from typing import Any

from . import _tar
from ._blobs import (
    CHUNK,
    COMPRESSED,
    Ahead,
    Counting,
    Extent,
    ExtentHasher,
    ExtentReader,
    Reader,
    decompress,
)
from ._limits import ImageError, ImageLimits, ScratchFull
from ._tree import Dir, Layer, MergedTree, parts_of

__all__ = ["Extent", "ImageError", "ImageLimits", "LayerApplier", "ScratchFull"]

_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_WHITEOUT = ".wh."
_OPAQUE = ".wh..wh..opq"
# What a scratch filesystem holds per entry beyond its data: on tmpfs, an inode and a dentry
# (~1 KiB of kernel memory each) and data in whole pages.
_ENTRY_BYTES = 1024
_PAGE = 4096


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
        self._tree = MergedTree(root)
        # (euid, egid) when we may give files the image's owners (root); else None.
        self._owner = (os.geteuid(), os.getegid()) if os.geteuid() == 0 else None
        self._umask = _umask()

    def close(self) -> None:
        self._tree.close()

    def finish(self) -> None:
        """Set directory modes, owners and times, once every layer is applied (MergedTree.finish)."""
        self._tree.finish(self._metadata)

    # -- one layer ---------------------------------------------------------------------------

    def apply(self, blob: Reader | Extent, label: str, digest: str | None = None) -> None:
        """Apply one layer blob (plain tar, gzip, zstd, xz or bzip2), checking `digest` if given.

        An `Extent` of an uncompressed layer is the fast path: headers come from a read-ahead
        buffer and file data moves with sendfile; its digest is computed by a second thread over
        the same (page-cached) bytes, since sendfile never shows them to Python.
        """
        layer: Layer = set()
        hasher = hashlib.new(digest.partition(":")[0]) if digest is not None else None
        if isinstance(blob, Extent) and os.pread(blob.fd, 6, blob.start).startswith(COMPRESSED):
            blob = ExtentReader(blob)  # a compressed layer in a file: decode it as a stream
        worker = None
        counting = stream = None
        blocks: _tar.ExtentBlocks | _tar.StreamBlocks
        if isinstance(blob, Extent):
            blocks = _tar.ExtentBlocks(blob.fd, blob.start, blob.length)
            if hasher is not None:
                worker = ExtentHasher(blob, hasher)
        else:
            counting = Counting(blob, hasher)
            stream = Ahead(decompress(counting, label, self.limits), counting)
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
                while stream.read(CHUNK):
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

    # -- one member --------------------------------------------------------------------------

    def _member(
        self,
        blocks: _tar.Blocks,
        member: _tar.Member,
        label: str,
        layer: Layer,
    ) -> int:
        self.entries += 1
        self._tree.trim()  # here, while no borrowed fd is held
        if self.entries > self.limits.max_entries:
            raise ImageError(f"{label}: more than {self.limits.max_entries} entries (limit)")
        parts, absolute = parts_of(member.name, label, "member")
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
        parent = self._tree.lookup(
            parts[:-1], create=True, label=label, name=member.name, layer=layer
        )
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
        parent: Dir,
        parts: tuple[str, ...],
        label: str,
    ) -> None:
        name = parts[-1]
        fd = self._tree.fd(parent, label, member.name)
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
                self._tree.remove(parent, fd, name)
                existing = None
            if existing is None:
                os.mkdir(name, 0o700, dir_fd=fd)
            node = parent.children.get(name)
            if node is None:
                node = parent.children[name] = Dir(name, parent)
            node.member = member
            self._memo = (parts, node)  # in tar order, the next members' parent
            return
        if existing is not None:
            self._tree.remove(parent, fd, name)  # the member replaces it, even if not created
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
        self, parent: Dir, fd: int, name: str, create: Any, *args: Any, **kw: Any
    ) -> Any:
        """create(*args) at `name` in `parent` (open as `fd`); whatever a lower layer (or a
        duplicate) left there goes."""
        try:
            return create(*args, **kw)
        except FileExistsError:
            self._tree.remove(parent, fd, name)
            return create(*args, **kw)

    def _file(
        self,
        blocks: _tar.Blocks,
        member: _tar.Member,
        parent: Dir,
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
        self, member: _tar.Member, parent: Dir, fd: int, parts: tuple[str, ...], label: str
    ) -> None:
        target, _ = parts_of(member.linkname, label, f"hard link {member.name!r} ->")
        if not target:
            raise ImageError(f"{label}: hard link {member.name!r} points at the root")
        source = self._tree.lookup(target[:-1], create=False, label=label, name=member.linkname)
        if source is None or target[: len(parts)] == parts:
            # (The second: replacing parts[-1] would remove the target first.)
            raise ImageError(
                f"{label}: hard link {member.name!r} -> {member.linkname!r}: target not extracted"
            )
        source_fd = self._tree.fd(source, label, member.linkname)
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

    def _whiteout(self, parts: tuple[str, ...], raw: str, label: str, layer: Layer) -> None:
        parent = self._tree.lookup(parts[:-1], create=False, label=label, name=raw)
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
            self._tree.remove(parent, self._tree.fd(parent, label, raw), target)
        except FileNotFoundError:
            # The OCI image spec allows a whiteout for a name no lower layer has: it hides
            # nothing, so there is nothing to remove and nothing to report.
            return

    def _clear(self, top: Dir, label: str, layer: Layer) -> None:
        """Opaque directory: remove what lower layers put under it, keep this layer's entries
        (a walk down this layer's directories, without recursion: trees may be deep)."""
        pending = [top]
        while pending:
            self._tree.trim()  # no fd is borrowed between two directories
            node = pending.pop()
            fd = self._tree.fd(node, label, "")
            with os.scandir(fd) as entries:
                names = [(entry.name, entry.is_dir(follow_symlinks=False)) for entry in entries]
            for name, is_dir in names:
                if (node, name) not in layer:
                    self._tree.remove(node, fd, name)
                elif is_dir and name in node.children:
                    pending.append(node.children[name])
