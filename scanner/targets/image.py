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
import json
import os
import posixpath
import re
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

from ._archive import inflated
from ._layers import Extent, ImageError, ImageLimits, LayerApplier

__all__ = ["Image", "ImageError", "ImageLimits", "open_image"]

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
    limits: ImageLimits = DEFAULT_LIMITS,
    workdir: str | None = None,
    place: bool = True,
) -> Iterator[Image]:
    """Merge the image at `path` into a temp dir and yield it.

    With `place` (the default), files over PLACE_OVER bytes of uncompressed layers are left
    sparse and read in place by the scan's hasher (Image.extents), outside the package databases;
    without, every file is copied whole: what a program reading the tree itself (a custom check)
    needs.

    The temp dir is made under `workdir`, else $TMPDIR when set, else a memory filesystem
    (/dev/shm) when it has room for the layers, else the system temp dir (`_scratch_dirs`).
    It is removed on exit, also when the body or the extraction raises.
    Raises ImageError for an unreadable, invalid or hostile image.
    """
    source = _open_source(os.fspath(path), limits)
    try:
        plan = _plan(source)
        candidates = [workdir] if workdir is not None else _scratch_dirs(source, plan, place)
        for number, directory in enumerate(candidates, 1):
            root = tempfile.mkdtemp(prefix="scan-root-image-", dir=directory)
            try:
                try:
                    image = _extract(source, plan, root, limits, place)
                except (OSError, ImageError) as error:
                    if number < len(candidates) and _no_space(error):
                        continue  # the memory filesystem filled up: start over on disk
                    raise
                yield dataclasses.replace(image, changed=_watch(source))
                return
            finally:
                _remove_tree(root)
    finally:
        source.close()


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
_COMPRESSION_GUESS = 5  # decompressed:compressed size assumed when choosing where to extract
# Of an uncompressed layer whose files are placed, the share the scratch tree takes: inodes,
# directories, the package databases (bookworm-apps: 627 MB of layer, ~10 MB of tmpfs).
_PLACED_SHARE = 1 / 16


def _scratch_dirs(source: _Source, plan: _Plan, place: bool) -> list[str | None]:
    """Where to extract, best first. A memory filesystem when it has room: this VM's ext4 spent
    7-9 s of system time creating the 12,600 files of bookworm-apps (ext4's inode allocator scans
    for recently deleted inodes after the previous scan's removal), tmpfs ~0.3 s (README,
    Performance). It takes RAM for the scan's duration, so only when what the layers will take
    (a compressed one x5, a placed one 1/16) fits in a third of both the free tmpfs space and the
    memory available to us. An explicit $TMPDIR always wins. None means the system temp dir."""
    if os.environ.get("TMPDIR"):
        return [None]
    need = 0.0
    for name, _ in plan.layers:
        size = source.size(name)
        if source.compressed or source.layer_compressed(name):
            need += size * _COMPRESSION_GUESS
        else:
            need += size * _PLACED_SHARE if place else size
    try:
        info = os.statvfs(_MEMORY_DIR)
    except OSError:
        return [None]
    room = min(info.f_bavail * info.f_frsize, _memory_available())
    if not os.access(_MEMORY_DIR, os.W_OK) or need > room // 3:
        return [None]
    return [_MEMORY_DIR, None]


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
        with self.open(name) as stream:
            raw = stream.read(_JSON_LIMIT + 1)
        if len(raw) > _JSON_LIMIT:
            raise ImageError(f"{self.path}: {name}: larger than {_JSON_LIMIT} bytes")
        if digest is not None:
            algorithm, _, expected = digest.partition(":")
            if hashlib.new(algorithm, raw).hexdigest() != expected:
                raise ImageError(f"{self.path}: {name}: digest mismatch: content is not {digest}")
        try:
            return json.loads(raw), raw
        except (ValueError, UnicodeDecodeError) as error:
            raise ImageError(f"{self.path}: {name}: invalid JSON: {error}") from error


def _clean(name: str) -> str:
    return "/".join(part for part in name.split("/") if part not in ("", "."))


class _DirSource(_Source):
    def __init__(self, path: str) -> None:
        super().__init__(path)
        self._blobs: list[IO[bytes]] = []

    def _join(self, name: str) -> str:
        clean = _clean(name)
        if not clean or ".." in clean.split("/"):
            raise ImageError(f"{self.path}: invalid blob path {name!r}")
        return os.path.join(self.path, clean)

    def has(self, name: str) -> bool:
        return os.path.isfile(self._join(name))

    def size(self, name: str) -> int:
        try:
            return os.stat(self._join(name)).st_size
        except OSError:
            return 0

    def open(self, name: str) -> IO[bytes]:
        try:
            return open(self._join(name), "rb")
        except FileNotFoundError:
            raise ImageError(f"{self.path}: {name} is missing") from None
        except OSError as error:
            raise ImageError(f"{self.path}: {name}: {error.strerror}") from error

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
        # ValueError/OverflowError: a member's size past any file offset (base-256, 2**70),
        # which tarfile's seek to the next header cannot take.
        except (tarfile.TarError, EOFError, OSError, ValueError, OverflowError) as error:
            self.file.close()
            raise ImageError(f"{path}: not a readable image archive: {error}") from error
        except ImageError:
            self.file.close()
            raise

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
    config: dict[str, Any]
    image_id: str
    layers: list[tuple[str, str | None]]  # (name inside the source, expected digest)
    name: str | None = None
    tags: tuple[str, ...] = ()
    digest: str | None = None
    problems: list[str] = field(default_factory=list)


def _plan(source: _Source) -> _Plan:
    if source.has("manifest.json"):
        return _docker_plan(source)
    if source.has("index.json"):
        return _oci_plan(source)
    raise ImageError(
        f"{source.path}: not an image: neither an OCI layout (index.json) nor a docker save "
        "archive (manifest.json)"
    )


def _extract(source: _Source, plan: _Plan, root: str, limits: ImageLimits, place: bool) -> Image:
    keep_whole = tuple(os.fsdecode(directory) for directory in DATABASE_DIRS)
    applier = LayerApplier(root, limits, PLACE_OVER if place else None, keep_whole)
    try:
        for number, (name, digest) in enumerate(plan.layers, 1):
            label = f"layer {number} ({name})"
            with source.layer(name) as blob:
                applier.apply(blob, label, digest)
        applier.finish()
    finally:
        applier.close()
    extents = Extents(os.stat(root).st_dev, applier.placed) if applier.placed else None
    image = _image(root, plan, applier.problems, extents)
    return dataclasses.replace(image, unextracted=tuple(applier.unextracted))


def _image(root: str, plan: _Plan, extraction: list[str], extents: Extents | None) -> Image:
    config = plan.config
    runtime = config.get("config") or {}
    if not isinstance(runtime, dict):
        raise ImageError("image config: 'config' is not an object")
    env = []
    for entry in runtime.get("Env") or ():
        if isinstance(entry, str):
            name, _, value = entry.partition("=")
            env.append((name, value))
    labels = runtime.get("Labels") or {}
    diff_ids = (config.get("rootfs") or {}).get("diff_ids")
    problems = list(plan.problems)
    if isinstance(diff_ids, list) and len(diff_ids) != len(plan.layers):
        problems.append(f"config lists {len(diff_ids)} diff_ids for {len(plan.layers)} layers")
    platform = None
    if isinstance(config.get("os"), str) and isinstance(config.get("architecture"), str):
        platform = f"{config['os']}/{config['architecture']}"
    return Image(
        root=root,
        name=plan.name,
        tags=plan.tags,
        image_id=plan.image_id,
        digest=plan.digest,
        env=tuple(env),
        user=runtime.get("User") or None,
        labels=MappingProxyType({str(k): str(v) for k, v in dict(labels).items()}),
        problems=tuple(problems + extraction),
        platform=platform,
        extents=extents,
    )


def _config(source: _Source, name: str, digest: str | None) -> tuple[dict[str, Any], str]:
    config, raw = source.read_json(name, digest)
    if not isinstance(config, dict):
        raise ImageError(f"{source.path}: image config {name} is not a JSON object")
    return config, "sha256:" + hashlib.sha256(raw).hexdigest()


def _docker_plan(source: _Source) -> _Plan:
    """`docker save`: manifest.json = [{"Config": ..., "RepoTags": [...], "Layers": [...]}]."""
    manifest, _ = source.read_json("manifest.json")
    if not isinstance(manifest, list) or not manifest or not isinstance(manifest[0], dict):
        raise ImageError(f"{source.path}: manifest.json is not a non-empty list of images")
    entry = manifest[0]
    problems = []
    if len(manifest) > 1:
        problems.append(f"the archive holds {len(manifest)} images; scanned the first")
    config_name, layers = entry.get("Config"), entry.get("Layers")
    if not isinstance(config_name, str) or not isinstance(layers, list):
        raise ImageError(f"{source.path}: manifest.json: missing 'Config' or 'Layers'")
    config, image_id = _config(source, config_name, _blob_digest(config_name))
    tags = tuple(tag for tag in entry.get("RepoTags") or () if isinstance(tag, str))
    return _Plan(
        config=config,
        image_id=image_id,
        layers=[(str(layer), _blob_digest(str(layer))) for layer in layers],
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


def _oci_plan(source: _Source) -> _Plan:
    """OCI layout: index.json -> (image index ->) manifest -> config + layers."""
    if not source.has("oci-layout"):
        raise ImageError(f"{source.path}: index.json without oci-layout: not an OCI image layout")
    index, _ = source.read_json("index.json")
    problems: list[str] = []
    top = _pick(source, index, "index.json", problems)
    annotations = top.get("annotations") or {}
    descriptor = top
    for _depth in range(4):  # nested image indexes, bounded
        if descriptor.get("mediaType") not in _INDEX_TYPES:
            break
        name, digest = _blob(source, descriptor, "image index")
        nested, _ = source.read_json(name, digest)
        descriptor = _pick(source, nested, name, problems)
    name, digest = _blob(source, descriptor, "manifest")
    manifest, _ = source.read_json(name, digest)
    if not isinstance(manifest, dict) or not isinstance(manifest.get("layers"), list):
        raise ImageError(
            f"{source.path}: manifest {digest}: no 'layers' list (an index nested too deep?)"
        )
    config_name, config_digest = _blob(source, manifest.get("config"), f"manifest {digest} config")
    config, image_id = _config(source, config_name, config_digest)
    layers = [_blob(source, layer, f"manifest {digest} layer") for layer in manifest["layers"]]
    ref = annotations.get(_REF_NAME)
    full = annotations.get(_CONTAINERD_NAME)
    tags = tuple(dict.fromkeys(value for value in (full, ref) if isinstance(value, str)))
    return _Plan(
        config=config,
        image_id=image_id,
        layers=[(name, digest) for name, digest in layers],
        name=tags[0] if tags else None,
        tags=tags,
        digest=digest,
        problems=problems,
    )


def _pick(source: _Source, index: Any, where: str, problems: list[str]) -> dict[str, Any]:
    """The one manifest of an index, or linux/amd64 among several (attestations ignored)."""
    manifests = index.get("manifests") if isinstance(index, dict) else None
    if not isinstance(manifests, list) or not manifests:
        raise ImageError(f"{source.path}: {where}: no 'manifests' list")
    candidates = [
        entry
        for entry in manifests
        if isinstance(entry, dict)
        and (entry.get("annotations") or {}).get("vnd.docker.reference.type")
        != "attestation-manifest"
    ]
    if len(candidates) == 1:
        return candidates[0]

    def platform(entry: dict[str, Any]) -> str:
        info = entry.get("platform") or {}
        return f"{info.get('os', '?')}/{info.get('architecture', '?')}"

    wanted = "/".join(_WANTED_PLATFORM)
    for entry in candidates:
        if platform(entry) == wanted:
            problems.append(
                f"{where} lists {len(candidates)} manifests; scanned {wanted} ({entry.get('digest')})"
            )
            return entry
    found = ", ".join(platform(entry) for entry in candidates) or "none"
    raise ImageError(
        f"{source.path}: {where}: {len(candidates)} manifests and none is {wanted} ({found})"
    )
