"""Container images as scan targets: OCI layout (directory or tarball) and `docker save` tarballs.

Layers are *extracted* into a private temporary directory (0700, always removed) rather than
streamed from the tar members. Why: every check reads a normal root — the walker opens real
directories, pkgdb opens rpm's sqlite/BDB files by path and 448 re-reads files by path — and a
whiteout in layer N hides files of layers < N, so a single streaming pass would have to index
every layer first and then serve reads out of compressed, non-seekable blobs.

But file data is not copied when a layer is an uncompressed extent of a file (`docker save`, an
uncompressed OCI blob): each file is created sparse at its size, and the hasher reads its bytes
in place from the layer (`Image.extents`, _native.Extents). Only the package databases, which
their readers open by path, and every file when a custom check will read the tree itself, are
copied. Compressed layers are decoded by a second thread as they are extracted (gzip with ISA-L
when the `isal` package is installed), and copied.

Measured (bench/image_input.py, bookworm-apps: 12,616 members, 627 MB, one uncompressed layer in
a `docker save` tarball, 2 vCPUs): what costs is creating the files, not reading the tar.
Extracting to this VM's ext4 /tmp took 7-9 s of system time for GNU tar and for us alike (ext4's
inode allocator scanning for recently deleted inodes, `recently_deleted` in perf, after the
previous scan's removal), against ~0.3 s on tmpfs. So the scratch dir is /dev/shm when it has
room (`_scratch_dirs`), with a fall back to disk if it fills. Copying the data (sendfile) took
0.54 s and its removal 0.17 s; with the files placed, 0.25 s and 0.04 s (the native remover,
two threads), and the whole image scan 1.27x the unpacked root's time (from 1.86x).

Specs: OCI image layout https://github.com/opencontainers/image-spec/blob/main/image-layout.md,
image index (platform selection) .../image-index.md, docker save: moby image/tarexport.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import os
import posixpath
import re
import secrets
import tarfile
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import IO, Any, cast

import _native
from _native import Extents
from pkgdb import DATABASE_DIRS
from pkgdb.rootfs import Identity, identity

from ..jsonload import JSONInputError, load_json
from ..progress import Phase, Progress, Silent
from . import _fields
from ._archive import inflated
from ._beneath import Escape, open_beneath
from ._layers import Extent, ImageError, ImageLimits, LayerApplier, ScratchFull

__all__ = ["Image", "ImageError", "ImageLimits", "open_image", "split_reference"]

_JSON_LIMIT = 16 << 20  # manifests and configs are kilobytes; refuse anything absurd
_LINK_HOPS = 40  # in-archive links followed to reach a member: the kernel's MAXSYMLINKS
_DIGEST = re.compile(r"^(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})$")
_INDEX_TYPES = {
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
}
_REF_NAME = "org.opencontainers.image.ref.name"
_CONTAINERD_NAME = "io.containerd.image.name"
_WANTED_PLATFORM = ("linux", "amd64")
_COMPRESSED = (b"\x1f\x8b", b"\x28\xb5\x2f\xfd", b"\xfd7zXZ\x00", b"BZh")
DEFAULT_LIMITS = ImageLimits()
# Files over this size are read in place from an uncompressed layer (open_image's `place`). 0:
# every file with data. Measured on bookworm-apps (bench/image_input.py): placing only files over
# 64 KiB (849 files, 85% of the bytes) gave 1.43x the unpacked root, placing all 1.33x: a small
# file's write costs more than its extent's entry (~200 bytes of memory a file).
PLACE_OVER = 0


@dataclass(frozen=True, slots=True)
class Image:
    """An image merged into `root`, a private temp dir that exists only inside `open_image`."""

    root: str
    name: str | None
    tags: tuple[str, ...]
    image_id: str  # the config digest, sha256:...
    digest: str | None  # the manifest digest, when the format records it (OCI)
    env: tuple[tuple[str, str], ...] = field(repr=False)  # values may be secrets (424)
    user: str | None
    labels: Mapping[str, str]
    problems: tuple[str, ...]
    platform: str | None = None  # "linux/amd64" when the config says
    # Big files left sparse in `root`, their bytes read in place from the layers (open_image's
    # `place`); None when every file was copied. Valid inside `open_image` only.
    extents: Extents | None = None
    # Called after a scan: why what was scanned may not be this image any more (a file the
    # layers are read from in place changed since its digest was checked), or None.
    changed: Callable[[], str | None] = field(default=lambda: None, repr=False)
    # Members the merged root lacks though they may hold data (unknown tar types): unverified.
    unextracted: tuple[str, ...] = ()


@contextlib.contextmanager
def open_image(
    path: str | os.PathLike[str],
    *,
    tag: str | None = None,
    limits: ImageLimits = DEFAULT_LIMITS,
    workdir: str | None = None,
    place: bool = True,
    progress: Progress | None = None,
) -> Iterator[Image]:
    """Merge the image at `path` into a temp dir and yield it.

    `tag` picks one image of a layout or archive that holds several (an OCI layout's
    `org.opencontainers.image.ref.name`, a `docker save`'s RepoTags); `PATH:TAG` says the same
    when PATH exists and PATH:TAG does not (split_reference).

    With `place` (the default), files over PLACE_OVER bytes of uncompressed layers are left
    sparse and read in place by the scan's hasher (Image.extents), outside the package databases;
    without, every file is copied whole: what a program reading the tree itself (a custom check)
    needs.

    The temp dir is made under `workdir`, else $TMPDIR when set, else a memory filesystem
    (/dev/shm) when it has room for the layers, else the system temp dir (`_scratch_dirs`). On
    a memory filesystem (that one, or a tmpfs $TMPDIR) what is written is budgeted
    (`_budget`): past it, the extraction starts over on disk, or fails when there is no disk
    to go to. The temp dir is removed on exit, also when the body or the extraction raises
    (KeyboardInterrupt or the CLI's SIGTERM included).
    Raises ImageError for an unreadable, invalid or hostile image.
    """
    path, named = split_reference(os.fspath(path))
    if tag is not None and named is not None:
        raise ImageError(f"{path}: a tag given twice ({named!r} in the path and {tag!r})")
    source = _open_source(path, limits)
    try:
        plan = _plan(source, tag if tag is not None else named)
        candidates = [workdir] if workdir is not None else _scratch_dirs(source, plan, place)
        for number, directory in enumerate(candidates, 1):
            budget = _budget(directory)
            root = os.path.join(
                directory or tempfile.gettempdir(), f"scan-root-image-{secrets.token_hex(8)}"
            )
            foreign = False
            try:
                # Made inside the try: an exception raised right after mkdir (a signal's) still
                # finds the finally below.
                try:
                    os.mkdir(root, 0o700)
                except FileExistsError:
                    foreign = True  # not ours (a 64-bit random name taken): never removed
                    raise
                try:
                    image = _extract(source, plan, root, limits, place, budget, progress)
                except (OSError, ImageError) as error:
                    if number < len(candidates) and (
                        _no_space(error) or isinstance(error, ScratchFull)
                    ):
                        continue  # the memory filesystem is full or its budget spent: on disk
                    if isinstance(error, ScratchFull):
                        raise ScratchFull(
                            f"{path}: {error} in {os.path.dirname(root)}, a memory "
                            f"filesystem (budget: a third of its room and of the memory "
                            "available); point $TMPDIR at a directory on disk"
                        ) from None
                    raise
                yield dataclasses.replace(image, changed=_watch(source))
                return
            finally:
                if not foreign:
                    with contextlib.suppress(FileNotFoundError):  # a signal before mkdir
                        _remove_tree(root)
    finally:
        source.close()


def split_reference(path: str) -> tuple[str, str | None]:
    """(path, tag) of `PATH:TAG` when PATH exists and the whole does not; else (path, None).
    Each `:` from the left is tried: `image.tar:alpine:3.20` names the tag `alpine:3.20`."""
    if os.path.lexists(path):
        return path, None
    at = path.find(":")
    while at > 0:
        if at + 1 < len(path) and os.path.lexists(path[:at]):
            return path[:at], path[at + 1 :]
        at = path.find(":", at + 1)
    return path, None


def _watch(source: _Source) -> Callable[[], str | None]:
    """What Image.changed calls: the identities of the files the layers were read from, now
    against those seen once the layers were applied (and their digests checked)."""
    before = source.identities()

    def changed() -> str | None:
        try:
            now = source.identities()
        except OSError as error:
            return f"{source.path}: cannot stat it again ({error.strerror})"
        if now != before:
            return (
                f"{source.path} changed while it was scanned: the files read in place may not "
                "be the bytes whose digests were checked"
            )
        return None

    return changed


_MEMORY_DIR = "/dev/shm"
_MEMORY_FILESYSTEMS = frozenset({b"tmpfs", b"ramfs"})
_MEMORY_SHARE = 3  # a memory filesystem takes at most 1/3 of its room and of our memory
_COMPRESSION_GUESS = 5  # decompressed:compressed size assumed when choosing where to extract
# Of an uncompressed layer whose files are placed, the share the scratch tree takes: inodes,
# directories, the package databases (bookworm-apps: 627 MB of layer, ~10 MB of tmpfs).
_PLACED_SHARE = 1 / 16


def _scratch_dirs(source: _Source, plan: _Plan, place: bool) -> list[str | None]:
    """Where to extract, best first. A memory filesystem when it has room: this VM's ext4 spent
    7-9 s of system time creating the 12,600 files of bookworm-apps (ext4's inode allocator scans
    for recently deleted inodes after the previous scan's removal), tmpfs ~0.3 s (see
    docs/performance.md). It takes RAM for the scan's duration, so only when what layers will take
    (a compressed one x5, a placed one 1/16) fits in a third of both the free tmpfs space and the
    memory available to us. That is a guess (a bomb inflates far more): the writes themselves
    are held to the same third (`_budget`). An explicit $TMPDIR always wins. None means the
    system temp dir."""
    if os.environ.get("TMPDIR"):
        return [None]
    need = 0.0
    for name, _ in plan.layers:
        size = source.size(name)
        if source.compressed or source.layer_compressed(name):
            need += size * _COMPRESSION_GUESS
        else:
            need += size * _PLACED_SHARE if place else size
    room = _room(_MEMORY_DIR)
    if room is None or not os.access(_MEMORY_DIR, os.W_OK) or need > room // _MEMORY_SHARE:
        return [None]
    return [_MEMORY_DIR, None]


def _room(directory: str) -> int | None:
    """What a memory filesystem can still take: its free space (ramfs: unlimited) and the
    memory available to us, the smaller; None when it cannot be known."""
    try:
        info = os.statvfs(directory)
    except OSError:
        return None
    memory = _memory_available()
    free = info.f_bavail * info.f_frsize if info.f_blocks else memory
    return min(free, memory) if memory > 0 else free


def _budget(directory: str | None) -> int | None:
    """The bytes the extracted tree may take in `directory` (None: the system temp dir) when it
    is on a memory filesystem: a third of its room (the share `_scratch_dirs` chose it for),
    counted as written (LayerApplier's `budget`). None on disk: the image limits only."""
    path = directory if directory is not None else tempfile.gettempdir()
    if directory != _MEMORY_DIR and not _memory_backed(path):
        return None
    room = _room(path)
    return None if room is None else room // _MEMORY_SHARE


def _memory_backed(path: str) -> bool:
    """Whether `path` is on tmpfs or ramfs (/proc/self/mountinfo: the mount of its device)."""
    try:
        device = os.stat(path).st_dev
        with open("/proc/self/mountinfo", "rb") as mounts:
            table = mounts.read()
    except OSError:
        return False
    wanted = f"{os.major(device)}:{os.minor(device)}".encode()
    for line in table.splitlines():
        fields = line.split()
        # ID PARENT MAJOR:MINOR ROOT POINT OPTIONS [OPTIONAL...] - TYPE SOURCE SUPER-OPTIONS
        if len(fields) > 2 and fields[2] == wanted and b"-" in fields[6:]:
            kind = fields[fields.index(b"-", 6) + 1 :][:1]
            return kind[0] in _MEMORY_FILESYSTEMS if kind else False
    return False


def _memory_available() -> int:
    """MemAvailable, lowered to what our cgroup (v2) may still use: tmpfs pages count there."""
    available = 0
    with contextlib.suppress(OSError, ValueError), open("/proc/meminfo", "rb") as meminfo:
        for line in meminfo:
            if line.startswith(b"MemAvailable:"):
                available = int(line.split()[1]) * 1024
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/cgroup", "rb") as cgroup:
            group = cgroup.read().split(b"::", 1)[1].strip().decode()
        base = os.path.join("/sys/fs/cgroup", group.lstrip("/"))
        with open(os.path.join(base, "memory.max"), "rb") as limit_file:
            limit = limit_file.read().strip()
        if limit != b"max":
            with open(os.path.join(base, "memory.current"), "rb") as current:
                available = min(available, int(limit) - int(current.read()))
    return available


def _no_space(error: BaseException) -> bool:
    while error is not None:
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        error = error.__cause__  # type: ignore[assignment]
    return False


def _remove_tree(root: str) -> None:
    # Native: two threads unlinking side by side (~0.08 s for bookworm-apps' 12,600 files with
    # shutil.rmtree, a quarter of the scan it follows).
    _native.remove_tree(root)


# -- sources: a directory or a tarball, read by member name -----------------------------------


class _Source:
    compressed = False  # the whole archive is compressed (layer sizes are compressed sizes)

    def __init__(self, path: str) -> None:
        self.path = path

    def size(self, name: str) -> int:
        """The stored size of a blob (0 if unknown), to choose where to extract."""
        raise NotImplementedError

    def layer_compressed(self, name: str) -> bool:
        with contextlib.suppress(ImageError, OSError), self.open(name) as stream:
            return stream.read(6).startswith(_COMPRESSED)
        return False

    def open(self, name: str) -> IO[bytes]:
        raise NotImplementedError

    def has(self, name: str) -> bool:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def identities(self) -> list[Identity]:
        """The identity (pkgdb.rootfs.identity) of each open file layers are read from."""
        return [identity(os.fstat(fd)) for fd in self._open_fds()]

    def _open_fds(self) -> list[int]:
        return []

    @contextlib.contextmanager
    def layer(self, name: str) -> Iterator[IO[bytes] | Extent]:
        """A layer blob: an Extent of a file when it is stored uncompressed-in-place, else a stream."""
        with self.open(name) as stream:
            yield stream

    def read_json(self, name: str, digest: str | None = None) -> tuple[Any, bytes]:
        """(document, bytes) of a JSON blob, its size and nesting capped (scanner.jsonload)."""
        with self.open(name) as stream:
            raw = stream.read(_JSON_LIMIT + 1)
        if len(raw) > _JSON_LIMIT:
            raise ImageError(f"{self.path}: {name}: larger than {_JSON_LIMIT} bytes")
        if digest is not None:
            algorithm, _, expected = digest.partition(":")
            if hashlib.new(algorithm, raw).hexdigest() != expected:
                raise ImageError(f"{self.path}: {name}: digest mismatch: content is not {digest}")
        try:
            return load_json(raw, what=name, max_bytes=_JSON_LIMIT), raw
        except JSONInputError as error:
            raise ImageError(f"{self.path}: {error}") from None


def _clean(name: str) -> str:
    return "/".join(part for part in name.split("/") if part not in ("", "."))


class _Missing(ImageError):
    """A file of the image directory does not exist."""


class _DirSource(_Source):
    """A layout or `docker save` tree on disk. Every file is opened beneath it (_beneath): a
    blob that is a symlink to a host file, or a name with `..`, would scan the host's file."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self._blobs: list[IO[bytes]] = []
        try:
            self._top = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as error:
            raise ImageError(f"{path}: cannot open the directory: {error.strerror}") from error

    def _fd(self, name: str) -> int:
        clean = _clean(name)
        if not clean or ".." in clean.split("/"):
            raise ImageError(f"{self.path}: invalid blob path {name!r}")
        try:
            return open_beneath(self._top, clean)
        except FileNotFoundError:
            raise _Missing(f"{self.path}: {name} is missing") from None
        except Escape as error:
            raise ImageError(f"{self.path}: {error}") from None
        except OSError as error:
            raise ImageError(f"{self.path}: {name}: {error.strerror}") from error

    def has(self, name: str) -> bool:
        """Whether `name` exists; one that exists but cannot be opened beneath the directory is
        there too, for open() to say why."""
        try:
            os.close(self._fd(name))
        except _Missing:
            return False
        except ImageError:
            return True
        return True

    def size(self, name: str) -> int:
        try:
            fd = self._fd(name)
        except ImageError:
            return 0
        try:
            return os.fstat(fd).st_size
        finally:
            os.close(fd)

    def open(self, name: str) -> IO[bytes]:
        return os.fdopen(self._fd(name), "rb")

    @contextlib.contextmanager
    def layer(self, name: str) -> Iterator[IO[bytes] | Extent]:
        # Kept open until close(): files placed in the blob are read from it by the scan.
        stream = self.open(name)
        self._blobs.append(stream)
        yield Extent(stream.fileno(), 0, os.fstat(stream.fileno()).st_size)

    def close(self) -> None:
        for stream in self._blobs:
            stream.close()
        self._blobs.clear()
        if self._top >= 0:
            os.close(self._top)
            self._top = -1

    def _open_fds(self) -> list[int]:
        return [stream.fileno() for stream in self._blobs]


class _TarSource(_Source):
    """An archive read in place: members are looked up by name, never extracted to disk."""

    def __init__(self, path: str, limits: ImageLimits) -> None:
        super().__init__(path)
        try:
            self.file = open(path, "rb")  # noqa: SIM115 - closed by close()
        except OSError as error:
            raise ImageError(f"{path}: not a readable image archive: {error}") from error
        try:
            # A plain archive's members are extents of this file (sendfile from it).
            self.plain = not self.file.read(6).startswith(_COMPRESSED)
            self.file.seek(0)
            self.compressed = not self.plain
            # A compressed archive through our bounded decoder: tarfile's own has no bomb limit.
            stream = self.file if self.plain else inflated(self.file, path, limits)
            self.archive = tarfile.open(fileobj=cast(IO[bytes], stream), mode="r:")  # noqa: SIM115
            self.members: dict[str, tarfile.TarInfo] = {}
            for count, member in enumerate(self.archive, 1):
                if count > limits.max_entries:
                    raise ImageError(f"{path}: more than {limits.max_entries} entries (limit)")
                self.members[_clean(member.name)] = member
        except ImageError:
            self.file.close()
            raise
        # ValueError/OverflowError: tarfile itself fails so on numbers past 64 bits (a size or
        # a pax offset in base-256); the archive is malformed either way.
        except (tarfile.TarError, EOFError, OSError, ValueError, OverflowError) as error:
            self.file.close()
            raise ImageError(f"{path}: not a readable image archive: {error}") from error

    def has(self, name: str) -> bool:
        return _clean(name) in self.members

    def size(self, name: str) -> int:
        member = self.members.get(_clean(name))
        return member.size if member is not None else 0

    def _resolve(self, name: str) -> tarfile.TarInfo:
        """The member `name` names, through in-archive links (docker save links identical layers),
        at most _LINK_HOPS of them: tarfile's own resolution recurses without end on a loop."""
        key = _clean(name)
        for _hop in range(_LINK_HOPS + 1):
            member = self.members.get(key)
            if member is None:
                raise ImageError(f"{self.path}: {name} is missing from the archive")
            if member.issym():
                directory = posixpath.dirname(member.name)
                target = posixpath.normpath(posixpath.join(directory, member.linkname))
            elif member.islnk():
                target = posixpath.normpath(member.linkname)
            else:
                return member
            key = _clean(target)
            if key == ".." or key.startswith("../"):
                raise ImageError(f"{self.path}: {name}: a link out of the archive")
        raise ImageError(f"{self.path}: {name}: more than {_LINK_HOPS} links (a link loop)")

    def open(self, name: str) -> IO[bytes]:
        member = self._resolve(name)
        try:
            stream = self.archive.extractfile(member)
        except (tarfile.TarError, KeyError) as error:
            raise ImageError(f"{self.path}: {name}: {error}") from error
        if stream is None:
            raise ImageError(f"{self.path}: {name} is not a regular file in the archive")
        return stream

    @contextlib.contextmanager
    def layer(self, name: str) -> Iterator[IO[bytes] | Extent]:
        member = self._resolve(name)
        if self.plain and member.isreg() and not member.issparse():
            yield Extent(self.file.fileno(), member.offset_data, member.size)
        else:
            with self.open(name) as stream:
                yield stream

    def close(self) -> None:
        self.archive.close()
        self.file.close()

    def _open_fds(self) -> list[int]:
        return [self.file.fileno()]


def _open_source(path: str, limits: ImageLimits) -> _Source:
    if os.path.isdir(path):
        return _DirSource(path)
    if not os.path.exists(path):
        raise ImageError(f"{path}: no such file or directory")
    return _TarSource(path, limits)


# -- formats ---------------------------------------------------------------------------------


@dataclass(slots=True)
class _Plan:
    config: _fields.Config
    image_id: str
    layers: list[tuple[str, str | None]]  # (name inside the source, expected digest)
    name: str | None = None
    tags: tuple[str, ...] = ()
    digest: str | None = None
    problems: list[str] = field(default_factory=list)


def _plan(source: _Source, tag: str | None = None) -> _Plan:
    if source.has("manifest.json"):
        plan = _docker_plan(source, tag)
    elif source.has("index.json"):
        plan = _oci_plan(source, tag)
    else:
        raise ImageError(
            f"{source.path}: not an image: neither an OCI layout (index.json) nor a docker save "
            "archive (manifest.json)"
        )
    # One diff_id per layer, in order, is what the image id (the config's digest) vouches for:
    # with fewer layers listed, files the image has would be missed, with more, files it lacks
    # scanned. docker load ("layers length mismatch") and containerd refuse such an image; so
    # do we: an error, not a problem next to a report that would read complete.
    diff_ids = plan.config.diff_ids or 0
    if diff_ids != len(plan.layers):
        raise ImageError(
            f"{source.path}: the manifest lists {len(plan.layers)} layers, the image config "
            f"{diff_ids} diff_ids (rootfs): not a valid image"
        )
    return plan


def _extract(
    source: _Source,
    plan: _Plan,
    root: str,
    limits: ImageLimits,
    place: bool,
    budget: int | None = None,
    progress: Progress | None = None,
) -> Image:
    keep_whole = tuple(os.fsdecode(directory) for directory in DATABASE_DIRS)
    applier = LayerApplier(root, limits, PLACE_OVER if place else None, keep_whole, budget)
    try:
        shown = progress or Silent()
        count = len(plan.layers)
        for number, (name, digest) in enumerate(plan.layers, 1):
            label = f"layer {number} ({name})"
            shown.update(Phase.LAYERS, number - 1, count)
            with source.layer(name) as blob:
                applier.apply(blob, label, digest)
            shown.update(Phase.LAYERS, number, count)
        applier.finish()
    finally:
        applier.close()
    extents = Extents(os.stat(root).st_dev, applier.placed) if applier.placed else None
    image = _image(root, plan, applier.problems, extents)
    return dataclasses.replace(image, unextracted=tuple(applier.unextracted))


def _image(root: str, plan: _Plan, extraction: list[str], extents: Extents | None) -> Image:
    config = plan.config
    problems = list(plan.problems)
    return Image(
        root=root,
        name=plan.name,
        tags=plan.tags,
        image_id=plan.image_id,
        digest=plan.digest,
        env=config.env,
        user=config.user,
        labels=MappingProxyType(dict(config.labels)),
        problems=tuple(problems + extraction),
        platform=config.platform,
        extents=extents,
    )


def _config(source: _Source, name: str, digest: str | None) -> tuple[_fields.Config, str]:
    document, raw = source.read_json(name, digest)
    parsed = _fields.config(document, f"{source.path}: image config {name}")
    return parsed, "sha256:" + hashlib.sha256(raw).hexdigest()


def _matches(name: str, wanted: str) -> bool:
    """Whether the image named `name` is the one `wanted` asks for: the same name, its tag
    (`1.0` for `example/app:1.0`), or its name without the registry (`app:1.0`)."""
    if name == wanted:
        return True
    if "/" not in wanted and ":" not in wanted:
        _, colon, tag = name.rpartition(":")
        return bool(colon) and "/" not in tag and tag == wanted
    return name.endswith("/" + wanted)


def _listed(names: list[str]) -> str:
    """Names from the image for a message: quoted (escaping control characters), ten at most."""
    shown = ", ".join(repr(name) for name in names[:10])
    return shown + (f" and {len(names) - 10} more" if len(names) > 10 else "") or "none"


_CHOOSE = "choose one: IMAGE:TAG or --tag TAG"


def _docker_plan(source: _Source, tag: str | None) -> _Plan:
    """`docker save`: manifest.json = [{"Config": ..., "RepoTags": [...], "Layers": [...]}]."""
    manifest, _ = source.read_json("manifest.json")
    where = f"{source.path}: manifest.json"
    if not isinstance(manifest, list) or not manifest:
        raise ImageError(f"{where} is not a non-empty list of images")
    entries = []
    for number, entry in enumerate(manifest):
        entry = _fields.obj(entry, f"{where}[{number}]")
        tags = tuple(_fields.strings(entry, "RepoTags", f"{where}[{number}]") or ())
        entries.append((number, entry, tags))
    problems = []
    every = [name for _, _, tags in entries for name in tags]
    if tag is not None:
        chosen = [item for item in entries if any(_matches(name, tag) for name in item[2])]
        if len(chosen) != 1:
            what = "no image" if not chosen else f"{len(chosen)} images"
            raise ImageError(f"{where}: {what} tagged {tag!r} (tags: {_listed(every)})")
        number, entry, tags = chosen[0]
    else:
        number, entry, tags = entries[0]
        if len(entries) > 1:
            problems.append(
                f"the archive holds {len(entries)} images; scanned the first ({_CHOOSE}; tags: "
                f"{_listed(every)})"
            )
    at = f"{where}[{number}]"
    config_name = _fields.member(entry, "Config", str, at)
    layers = _fields.strings(entry, "Layers", at)
    if config_name is None or layers is None:
        raise ImageError(f"{at}: missing 'Config' or 'Layers'")
    config, image_id = _config(source, config_name, _blob_digest(config_name))
    return _Plan(
        config=config,
        image_id=image_id,
        layers=[(layer, _blob_digest(layer)) for layer in layers],
        name=tags[0] if tags else None,
        tags=tags,
        problems=problems,
    )


def _blob_digest(name: str) -> str | None:
    """The digest a `blobs/ALG/HEX` name promises (newer docker save), to verify it."""
    parts = _clean(name).split("/")
    if len(parts) == 3 and parts[0] == "blobs" and _DIGEST.match(f"{parts[1]}:{parts[2]}"):
        return f"{parts[1]}:{parts[2]}"
    return None


def _blob(source: _Source, descriptor: Any, what: str) -> tuple[str, str]:
    """(name inside the layout, digest) of a descriptor, refusing malformed digests."""
    digest = descriptor.get("digest") if isinstance(descriptor, dict) else None
    if not isinstance(digest, str) or not _DIGEST.match(digest):
        raise ImageError(f"{source.path}: {what}: invalid or missing digest {digest!r}")
    algorithm, _, hexdigest = digest.partition(":")
    return f"blobs/{algorithm}/{hexdigest}", digest


def _oci_plan(source: _Source, tag: str | None) -> _Plan:
    """OCI layout: index.json -> (image index ->) manifest -> config + layers."""
    if not source.has("oci-layout"):
        raise ImageError(f"{source.path}: index.json without oci-layout: not an OCI image layout")
    index, _ = source.read_json("index.json")
    problems: list[str] = []
    top = _pick(source, index, "index.json", problems, tag, top=True)
    descriptor = top
    for _depth in range(4):  # nested image indexes, bounded
        if descriptor.get("mediaType") not in _INDEX_TYPES:  # a string: checked by _pick
            break
        name, digest = _blob(source, descriptor, "image index")
        nested, _ = source.read_json(name, digest)
        descriptor = _pick(source, nested, name, problems)
    name, digest = _blob(source, descriptor, "manifest")
    manifest, _ = source.read_json(name, digest)
    where = f"{source.path}: manifest {digest}"
    manifest = _fields.obj(manifest, where)
    if _fields.member(manifest, "layers", list, where) is None:
        raise ImageError(f"{where}: no 'layers' list (an index nested too deep?)")
    config_name, config_digest = _blob(source, manifest.get("config"), f"manifest {digest} config")
    config, image_id = _config(source, config_name, config_digest)
    layers = [_blob(source, layer, f"manifest {digest} layer") for layer in manifest["layers"]]
    tags = _names(top)
    return _Plan(
        config=config,
        image_id=image_id,
        layers=[(name, digest) for name, digest in layers],
        name=tags[0] if tags else None,
        tags=tags,
        digest=digest,
        problems=problems,
    )


def _names(entry: dict[str, Any]) -> tuple[str, ...]:
    """An index entry's names: containerd's full one first, then the OCI ref name (a tag)."""
    annotations = entry.get("annotations") or {}  # checked by _pick: strings
    names = (annotations.get(_CONTAINERD_NAME), annotations.get(_REF_NAME))
    return tuple(dict.fromkeys(name for name in names if name is not None))


def _platform(entry: dict[str, Any]) -> str:
    info = entry.get("platform") or {}  # checked by _pick: an object of strings
    return f"{info.get('os', '?')}/{info.get('architecture', '?')}"


def _pick(
    source: _Source,
    index: Any,
    where: str,
    problems: list[str],
    tag: str | None = None,
    *,
    top: bool = False,
) -> dict[str, Any]:
    """The manifest of an index that `tag` names (index.json), or its one manifest, or
    linux/amd64 among several (attestations ignored). At the top, entries of several names and
    no tag are an error: which to scan is the caller's choice."""
    at = f"{source.path}: {where}"
    manifests = _fields.member(_fields.obj(index, at), "manifests", list, at)
    if not manifests:
        raise ImageError(f"{at}: no 'manifests' list")
    candidates = []
    for number, entry in enumerate(manifests):
        entry_at = f"{at}: manifests[{number}]"
        entry = _fields.obj(entry, entry_at)
        _fields.member(entry, "mediaType", str, entry_at)
        annotations = _fields.mapping(entry, "annotations", entry_at)
        platform = _fields.member(entry, "platform", dict, entry_at)
        if platform is not None:
            for key in ("os", "architecture"):
                _fields.member(platform, key, str, f"{entry_at}: platform")
        if annotations.get("vnd.docker.reference.type") != "attestation-manifest":
            candidates.append(entry)
    every = list(dict.fromkeys(name for entry in candidates for name in _names(entry)))
    if tag is not None:
        candidates = [e for e in candidates if any(_matches(name, tag) for name in _names(e))]
        if not candidates:
            raise ImageError(f"{at}: no image tagged {tag!r} (tags: {_listed(every)})")
    elif top and len({_names(entry) for entry in candidates if _names(entry)}) > 1:
        raise ImageError(f"{at}: several images, tagged {_listed(every)}: {_CHOOSE}")
    if len(candidates) == 1:
        return candidates[0]
    wanted = "/".join(_WANTED_PLATFORM)
    for entry in candidates:
        if _platform(entry) == wanted:
            problems.append(
                f"{where} lists {len(candidates)} manifests; scanned {wanted} ({entry.get('digest')})"
            )
            return entry
    found = ", ".join(_platform(entry) for entry in candidates) or "none"
    raise ImageError(f"{at}: {len(candidates)} manifests and none is {wanted} ({found})")
