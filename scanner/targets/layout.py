"""Whether a path given as a root filesystem is a container image (a layout, a save, a tarball)."""

from __future__ import annotations

import contextlib
import os
import stat

from ..jsonload import JSONInputError, load_json

__all__ = ["image_format"]

_COMPRESSED = (b"\x1f\x8b", b"\x28\xb5\x2f\xfd", b"\xfd7zXZ\x00", b"BZh")
_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_MANIFEST_LIMIT = 1 << 20  # a docker save manifest.json lists a few images


def _regular(directory: int, name: str) -> int | None:
    """An fd on `name` in `directory` if it is a regular file (never through a symlink)."""
    try:
        fd = os.open(name, _FLAGS, dir_fd=directory)
    except OSError:
        return None
    if stat.S_ISREG(os.fstat(fd).st_mode):
        return fd
    os.close(fd)
    return None


def _docker_manifest(fd: int) -> bool:
    """Whether the file is a `docker save` manifest.json: a list of {"Config", "Layers"}. An
    application's own /manifest.json (a web app manifest) is an object."""
    with os.fdopen(fd, "rb") as stream:
        raw = stream.read(_MANIFEST_LIMIT + 1)
    try:
        document = load_json(raw, what="manifest.json", max_bytes=_MANIFEST_LIMIT)
    except JSONInputError:
        return False
    return (
        isinstance(document, list)
        and bool(document)
        and all(isinstance(entry, dict) and "Layers" in entry for entry in document)
    )


def image_format(path: str | os.PathLike[str]) -> str | None:
    """What image `path` is ("an OCI image layout", "a `docker save` directory", "a tar
    archive"), or None when it is not one (a root filesystem, or nothing readable)."""
    try:
        top = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        mode = os.fstat(top).st_mode
        if stat.S_ISREG(mode):
            head = os.pread(top, 512, 0)
            if head.startswith(_COMPRESSED) or head[257:262] == b"ustar":
                return "a tar archive"
            return None
        if not stat.S_ISDIR(mode):
            return None
        for name in ("oci-layout", "index.json"):
            fd = _regular(top, name)
            if fd is None:
                break
            os.close(fd)
        else:
            return "an OCI image layout"
        fd = _regular(top, "manifest.json")
        if fd is not None and _docker_manifest(fd):
            return "a `docker save` directory"
        return None
    except OSError:
        return None
    finally:
        with contextlib.suppress(OSError):
            os.close(top)
