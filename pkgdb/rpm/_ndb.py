"""Reads header blobs from SUSE's ndb `Packages.db` (rpm's "new database"), without librpm.

Format (rpm `lib/backend/ndb/rpmpkg.c`; all integers little-endian, blocks of 16 bytes):
  * a 32-byte header: magic `RpmP`, version 0, generation, number of 4 KiB slot pages,
    next package index;
  * the slot pages, right after it (the header takes the first two 16-byte slots of page 0):
    each slot is magic `Slot`, package index, block offset (0 = free slot), block count;
  * each used slot points at a blob: head (`BlbS`, package index, generation, blob length),
    the header blob, zero padding, tail (adler32, blob length, `BlbE`), the whole rounded up to
    whole blocks.
Checks are rpm's own (`rpmpkgReadSlots`, `rpmpkgReadBlob`): a slot must lie after the slot
area and inside the file, its blob's head must name the same package and its block count must
match the blob length, and the tail must repeat the length. rpm verifies the adler32 only in
`--verifydb`; we check it too (it is cheap) and report a mismatch, but still use the blob as rpm
would. rpm zeroes every blob it deletes or moves, so a blob head outside every slot's blob is a
package whose slot was damaged: a problem. Memory: one slot page and one blob at a time; a blob
is at most the file's size.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Generator, Iterator
from typing import Final

from ._source import BlobProblem, HeaderBlob, StorageError

__all__ = ["FILENAME", "NAME", "blobs"]

NAME: Final = "ndb"
FILENAME: Final = b"Packages.db"

_MAGIC = b"RpmP"
_SLOT_MAGIC = b"Slot"
_HEAD_MAGIC = b"BlbS"
_TAIL_MAGIC = b"BlbE"
_PAGE = 4096
_BLOCK = 16
_SLOT = struct.Struct("<4sIII")  # magic, package index, block offset, block count
_HEAD = struct.Struct("<4sIII")  # magic, package index, generation, blob length
_TAIL = struct.Struct("<II4s")  # adler32, blob length, magic
_HEADER_SLOTS = 2  # the 32-byte file header occupies slots 0 and 1 of page 0


def blobs(fd: int) -> Iterator[HeaderBlob | BlobProblem]:
    """Check the ndb file header of the file open at `fd`, then read every used slot's blob."""
    header = os.pread(fd, 32, 0)
    if len(header) < 32 or header[:4] != _MAGIC:
        raise StorageError("no `RpmP` magic: not an ndb Packages.db")
    version, _generation, slot_pages = struct.unpack_from("<III", header, 4)
    if version != 0:
        raise StorageError(f"unsupported ndb version {version}")
    size = os.fstat(fd).st_size
    if slot_pages == 0 or slot_pages * _PAGE > size:
        raise StorageError(
            f"{slot_pages} slot pages of 4 KiB do not fit in a {size}-byte file (truncated?)"
        )
    return _walk(fd, slot_pages, size // _BLOCK)


def _walk(fd: int, slot_pages: int, file_blocks: int) -> Iterator[HeaderBlob | BlobProblem]:
    slots: list[tuple[int, int, int]] = []  # (block offset, block count, package index)
    bad_page = yield from _read_slots(fd, slot_pages, file_blocks, slots)
    # Blobs must not overlap (rpm's rpmpkgFindEmptyOffset calls that "eek"); refusing overlaps
    # also keeps the total bytes read within the file size, however many slots point at one blob.
    end = 0
    covered: list[tuple[int, int]] = []  # (first block, end block) of every blob read
    for offset, count, index in sorted(slots):
        if offset < end:
            yield BlobProblem(index, f"blob at block {offset} overlaps the previous blob")
            continue
        end = offset + count
        covered.append((offset, end))
        try:
            blob, checksum_ok = _blob(fd, index, offset, count)
        except ValueError as error:
            yield BlobProblem(index, str(error))
            continue
        if not checksum_ok:
            yield BlobProblem(index, "blob adler32 mismatch: the stored header is damaged")
        yield HeaderBlob(index, blob)
    if bad_page is not None:
        yield BlobProblem(None, bad_page)
        return
    orphans, unchecked = _orphans(fd, covered, slot_pages * (_PAGE // _BLOCK), file_blocks)
    if orphans:
        yield BlobProblem(
            None,
            f"{len(orphans)} blobs no slot points to (package index {orphans[:5]}): "
            "a damaged slot lost them",
        )
    if unchecked:
        yield BlobProblem(
            None,
            f"{unchecked} bytes of free space beyond the first {MAX_FREE_SCAN} not searched "
            "for blobs a damaged slot lost",
        )


# Free space searched for lost blobs; a real Packages.db holds little (rpm truncates it), and
# holes of a sparse file cost nothing (skipped with SEEK_DATA).
MAX_FREE_SCAN: Final = 64 << 20


def _orphans(
    fd: int, covered: list[tuple[int, int]], first: int, file_blocks: int
) -> tuple[list[int], int]:
    """Package indexes of blob heads lying outside every slot's blob, and the bytes of free
    space left unsearched (beyond MAX_FREE_SCAN).

    rpm zeroes a blob it deletes or moves (rpmpkgDelBlob, and rpmpkgPutInternal writes only
    over zeros), so outside the slots' blobs a healthy file holds only zeros: a blob head there
    is a package whose slot was damaged (set free, or pointed elsewhere).
    """
    found: list[int] = []
    budget = MAX_FREE_SCAN
    unchecked = 0
    for start, end in _gaps(covered, first, file_blocks):
        position, stop = start * _BLOCK, end * _BLOCK
        while position < stop:
            try:
                position = os.lseek(fd, position, os.SEEK_DATA)
            except OSError:
                break  # ENXIO: only a hole up to the end of the file
            if position >= stop:
                break
            size = min(stop - position, 1 << 20)
            if budget < size:
                unchecked += stop - position
                break
            budget -= size
            # `position` is 16-aligned (a block, or a file system block from SEEK_DATA) and so
            # is `size`: a 16-byte blob head never straddles two chunks.
            chunk = os.pread(fd, size, position)
            at = chunk.find(_HEAD_MAGIC)
            while at >= 0:
                if at % _BLOCK == 0 and at + _HEAD.size <= len(chunk):
                    index = _HEAD.unpack_from(chunk, at)[1]
                    if index:
                        found.append(index)
                at = chunk.find(_HEAD_MAGIC, at + 1)
            if len(chunk) < size:
                break  # the file shrank under us: nothing more to search
            position += size
    return found, unchecked


def _gaps(
    covered: list[tuple[int, int]], first: int, file_blocks: int
) -> Iterator[tuple[int, int]]:
    """The block ranges of [first, file_blocks) outside the sorted, disjoint `covered`."""
    position = first
    for begin, end in covered:
        if begin > position:
            yield position, begin
        position = max(position, end)
    if position < file_blocks:
        yield position, file_blocks


def _read_slots(
    fd: int, slot_pages: int, file_blocks: int, slots: list[tuple[int, int, int]]
) -> Generator[BlobProblem, None, str | None]:
    """Collect the used slots; returns why the slot area ended early (None if it did not)."""
    first_blob_block = slot_pages * (_PAGE // _BLOCK)
    for page_number in range(slot_pages):
        page = os.pread(fd, _PAGE, page_number * _PAGE)
        if len(page) < _PAGE:
            return f"slot page {page_number} is cut short (truncated)"
        first = _HEADER_SLOTS if page_number == 0 else 0
        for magic, index, offset, count in _SLOT.iter_unpack(page[first * _SLOT.size :]):
            if magic != _SLOT_MAGIC:
                # rpm refuses the whole database here; we keep the slots read so far
                return f"slot page {page_number}: bad slot magic {magic!r}"
            if offset == 0:
                continue  # a free slot
            if index == 0 or count == 0 or offset < first_blob_block:
                yield BlobProblem(index or None, f"bad slot: blocks {offset}+{count}")
            elif offset + count > file_blocks:
                yield BlobProblem(index, f"blob at block {offset}+{count} beyond the end of file")
            else:
                slots.append((offset, count, index))
    return None


def _blob(fd: int, index: int, offset: int, count: int) -> tuple[bytes, bool]:
    # the slot was checked against the file size, so this read is bounded by it
    block = os.pread(fd, count * _BLOCK, offset * _BLOCK)
    if len(block) < count * _BLOCK:
        raise ValueError("blob cut short (truncated)")
    magic, owner, _generation, length = _HEAD.unpack_from(block)
    if magic != _HEAD_MAGIC:
        raise ValueError(f"no blob head magic at block {offset}")
    if owner != index:
        raise ValueError(f"the blob at block {offset} belongs to package index {owner}")
    if count != (_HEAD.size + length + _TAIL.size + _BLOCK - 1) // _BLOCK:
        raise ValueError(f"blob length {length} does not fill the slot's {count} blocks")
    checksum, tail_length, tail_magic = _TAIL.unpack_from(block, len(block) - _TAIL.size)
    if tail_magic != _TAIL_MAGIC or tail_length != length:
        raise ValueError("blob tail missing or disagreeing with its head")
    # the adler32 covers the head, the blob and the padding: everything before the tail
    checksum_ok = zlib.adler32(memoryview(block)[: len(block) - _TAIL.size]) == checksum
    return block[_HEAD.size : _HEAD.size + length], checksum_ok
