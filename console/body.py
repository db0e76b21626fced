"""A request body read within its limits: size counted as it arrives, gzip inflated only as far
as the limit (a bomb is refused after `max_bytes`, never inflated whole)."""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator

__all__ = ["BodyError", "Inflater", "read_body"]

# gzip's own framing: a member of incompressible data is a little larger than the data.
GZIP_SLACK = 64 * 1024


class BodyError(Exception):
    """The body cannot be taken: `status` is the HTTP answer (400, 413, 415)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Inflater:
    """Inflates a gzip stream (several members too, as `cat a.gz b.gz` makes) fed piece by
    piece, and refuses it as soon as its output would pass `max_bytes`."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.produced = 0
        self._inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._started = False

    def feed(self, data: bytes) -> list[bytes]:
        pieces = []
        while data:
            self._started = True
            try:
                # Never more than one byte past the limit, whatever the ratio of the input.
                piece = self._inflater.decompress(data, self.max_bytes - self.produced + 1)
            except zlib.error:
                raise BodyError(400, "body: not a valid gzip stream") from None
            self.produced += len(piece)
            if self.produced > self.max_bytes:
                raise BodyError(
                    413, f"body: inflates to more than the limit of {self.max_bytes} bytes"
                )
            pieces.append(piece)
            if self._inflater.eof:
                data = self._inflater.unused_data
                if data:
                    self._inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            else:
                data = self._inflater.unconsumed_tail
        return pieces

    def finish(self) -> None:
        if not self._started:
            raise BodyError(400, "body: empty, not a gzip stream")
        if not self._inflater.eof:
            raise BodyError(400, "body: truncated gzip stream")


async def read_body(
    chunks: AsyncIterator[bytes],
    *,
    encoding: str | None,
    declared_length: str | None,
    max_bytes: int,
) -> bytes:
    """The body's bytes, decoded; BodyError when it is over `max_bytes` (decoded or as sent),
    its coding is not gzip or identity, or its gzip stream is broken."""
    coding = (encoding or "identity").strip().lower()
    if coding not in {"identity", "gzip"}:
        raise BodyError(415, "Content-Encoding: only gzip (or none) is accepted")
    wire_limit = max_bytes + GZIP_SLACK if coding == "gzip" else max_bytes
    if declared_length is not None:
        if not declared_length.isdigit():
            raise BodyError(400, "Content-Length: not a number")
        if int(declared_length) > wire_limit:
            raise BodyError(413, f"body: over the limit of {max_bytes} bytes")
    inflater = Inflater(max_bytes) if coding == "gzip" else None
    pieces: list[bytes] = []
    received = 0
    async for chunk in chunks:
        received += len(chunk)
        if received > wire_limit:
            raise BodyError(413, f"body: over the limit of {max_bytes} bytes")
        if inflater is not None:
            pieces += inflater.feed(chunk)
        else:
            pieces.append(chunk)
    if inflater is not None:
        inflater.finish()
    return b"".join(pieces)
