"""A compressed image archive (`.tar.gz`, `.tar.bz2`, `.tar.xz`) as its tar bytes, bomb-bounded.

`tarfile`'s own `r:gz`/`r:bz2`/`r:xz` inflate without any limit: a 16 GiB gzip of zeros was
inflated whole, and a bzip2 bomb of 1 TiB ran for hours. Here the decoder sits behind a seekable
file whose every read and forward seek is checked against `ImageLimits`: past `ratio_floor`
bytes, more than `max_archive_ratio` decompressed bytes per compressed byte read so far is a
bomb, and no archive inflates past `max_total_bytes` (the budget for everything extracted from
it), in one pass or in all the passes that reading members out of order takes. Either way an
ImageError, after at most about `ratio_floor` bytes of a bomb's zeros (a second or two).
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import zlib
from typing import IO, Any

from ._layers import ImageError, ImageLimits

__all__ = ["inflated"]

_CHUNK = 1 << 20
_ZSTD = b"\x28\xb5\x2f\xfd"


class _Inflated:
    """The decompressed bytes of `raw` as a read/seek/tell file for `tarfile` (mode "r:").

    A backward seek restarts the decoder from the start of `raw` (as GzipFile's own does); a
    forward one decodes and drops, through the same checks as a read.
    """

    def __init__(
        self,
        raw: IO[bytes],
        decoder: Any,
        kind: str,
        path: str,
        limits: ImageLimits,
        errors: tuple[type[BaseException], ...],
    ) -> None:
        self.raw = raw
        self.decoder = decoder
        self.kind = kind
        self.path = path
        self.limits = limits
        self.errors = errors
        self.position = 0
        # Every byte inflated, rewinds included: members read out of their order (a layer
        # before the last, then the first) inflate the archive again from its start, so the
        # work is bounded as a whole too, not only a pass's position.
        self.inflated = 0

    def tell(self) -> int:
        return self.position

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1, /) -> bytes:
        if size is None or size < 0:
            parts = []
            while chunk := self.read(_CHUNK):
                parts.append(chunk)
            return b"".join(parts)
        try:
            data: bytes = self.decoder.read(size)
        except self.errors as error:
            raise ImageError(
                f"{self.path}: corrupt or truncated {self.kind} archive: {error}"
            ) from error
        self.position += len(data)
        self.inflated += len(data)
        self._check()
        return data

    def seek(self, offset: int, whence: int = 0, /) -> int:
        if whence == 1:
            offset += self.position
        elif whence != 0:
            raise OSError(f"{self.path}: seeking from the end of a {self.kind} archive")
        if offset < self.position:
            try:
                self.decoder.seek(0)  # a rewind: the decoder starts over from byte 0
            except self.errors as error:
                raise ImageError(
                    f"{self.path}: corrupt or truncated {self.kind} archive: {error}"
                ) from error
            self.position = 0
        while self.position < offset:
            if not self.read(min(_CHUNK, offset - self.position)):
                break  # past the end: tarfile sees a short read, as with a real file
        return self.position

    def _check(self) -> None:
        limits = self.limits
        count = self.position
        if count > limits.max_total_bytes:
            raise ImageError(
                f"{self.path}: the {self.kind} archive inflates to more than "
                f"{limits.max_total_bytes} bytes (limit)"
            )
        if self.inflated > limits.max_total_bytes:
            raise ImageError(
                f"{self.path}: the {self.kind} archive was inflated to more than "
                f"{limits.max_total_bytes} bytes in all (limit): its members are read out of "
                "their order, each read starting over"
            )
        if count > limits.ratio_floor:
            compressed = max(self.raw.tell(), 1)
            if count > limits.max_archive_ratio * compressed:
                raise ImageError(
                    f"{self.path}: decompression bomb: {count} bytes from {compressed} "
                    f"compressed (limit {limits.max_archive_ratio}:1)"
                )

    def close(self) -> None:
        self.decoder.close()


def inflated(raw: IO[bytes], path: str, limits: ImageLimits) -> _Inflated:
    """The tar bytes of the compressed archive `raw` (positioned at 0), by its magic bytes."""
    head = raw.read(6)
    raw.seek(0)
    errors: tuple[type[BaseException], ...] = (EOFError, OSError, zlib.error, lzma.LZMAError)
    decoder: Any
    if head.startswith(b"\x1f\x8b"):
        kind, decoder = "gzip", gzip.GzipFile(fileobj=raw, mode="rb")
    elif head.startswith(b"BZh"):
        kind, decoder = "bzip2", bz2.BZ2File(raw)
    elif head.startswith(b"\xfd7zXZ\x00"):
        kind, decoder = "xz", lzma.LZMAFile(raw)  # noqa: SIM115 - returned
    elif head.startswith(_ZSTD):
        raise ImageError(
            f"{path}: a zstd-compressed archive is not supported: decompress it first "
            "(zstd -d); zstd layers inside an archive are"
        )
    else:
        raise ImageError(f"{path}: not a tar archive, nor a gzip, bzip2 or xz one")
    return _Inflated(raw, decoder, kind, path, limits, errors)
