"""A bounded reader for SSH wire encoding (uint32, string, mpint): OpenSSH, PuTTY, SSH2."""

from __future__ import annotations

__all__ = ["WireReader"]


class WireReader:
    """Reads big-endian fields off a byte string; every read returns None past the end."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data = data
        self.pos = pos

    def remaining(self) -> int:
        return len(self.data) - self.pos

    def u32(self) -> int | None:
        if self.remaining() < 4:
            return None
        value = int.from_bytes(self.data[self.pos : self.pos + 4], "big")
        self.pos += 4
        return value

    def take(self, size: int) -> bytes | None:
        if size < 0 or self.remaining() < size:
            return None
        value = self.data[self.pos : self.pos + size]
        self.pos += size
        return value

    def string(self) -> bytes | None:
        """An SSH `string`: uint32 length then that many bytes (the length is checked first)."""
        size = self.u32()
        return None if size is None else self.take(size)

    def name(self, limit: int = 128) -> str | None:
        """A `string` that must be a short printable ASCII name (algorithm, cipher, KDF)."""
        raw = self.string()
        if raw is None or not 0 < len(raw) <= limit or not all(0x21 <= b < 0x7F for b in raw):
            return None
        return raw.decode("ascii")

    def mpint_bits(self) -> int | None:
        """Bit length of an SSH `mpint` (two's complement, so a leading zero byte is normal)."""
        raw = self.string()
        if raw is None or len(raw) > 2049:
            return None
        return int.from_bytes(raw, "big").bit_length()
