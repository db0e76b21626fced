"""Reads header blobs from rpm's Berkeley DB hash `Packages` file, without any DB library.

Format (libdb `dbinc/db_page.h`, `dbinc/hash.h`; the read-only walk follows rpm's own
`lib/backend/bdb_ro.c`, the reader rpm >= 4.16 uses on old databases):
  * page 0 is the hash metadata page: magic 0x061561 at offset 12 (its byte order is the file's
    byte order: both are read), version (8 and 9 are libdb 4.x/5.x; 10 is libdb 6; 7 and older
    are rejected, as rpm does), page size, last page number, max bucket, and the 32 `spares`
    that map a bucket number to its first page;
  * each bucket is a chain of hash pages (type 13, or 2 in very old files) linked by
    `next_pgno`; each page holds `nentries` item offsets, alternately key and value;
  * a key is the 4-byte header number (H_KEYDATA, type 1; number 0 is rpm's instance counter,
    not a header); a value is H_OFFPAGE (type 3: first overflow page, total length), or, for a
    small item, H_KEYDATA inline;
  * an overflow item is a chain of overflow pages (type 7) whose `hf_offset` field is the number
    of bytes used on that page.
Damage checks: the number of key/value pairs found must be the metadata's key count (`nelem`,
offset 88, which libdb keeps with every put and delete; it counts rpm's key 0 too), and the file
must be whole pages; a page that says it is another page, or has the wrong type, is refused.
Hostile-input bounds: every page number is checked against the last page and the file size,
every chain (bucket or overflow) keeps a visited set so a loop ends it, an item is at most the
file's size and rpm's header ceiling, and a page whose own page number disagrees is refused.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from typing import Final, overload

from ._header import MAX_DATA_BYTES, MAX_INDEX_ENTRIES
from ._source import BlobProblem, HeaderBlob, StorageError

__all__ = ["FILENAME", "NAME", "blobs"]

NAME: Final = "bdb"
FILENAME: Final = b"Packages"

_HASH_MAGIC = 0x061561
_BTREE_MAGIC = 0x053162
_VERSIONS = range(8, 11)
_PAGE_SIZES = frozenset(1 << n for n in range(9, 17))  # 512 .. 65536, as libdb allows
_META_SIZE = 512
_PAGE_HEADER = 26

_P_HASH_UNSORTED = 2
_P_OVERFLOW = 7
_P_HASHMETA = 8
_P_HASH = 13
_H_KEYDATA = 1
_H_OFFPAGE = 3

# The largest blob rpm itself would accept (8-byte preamble, index, data store).
_MAX_ITEM = 8 + 16 * MAX_INDEX_ENTRIES + MAX_DATA_BYTES


def blobs(fd: int) -> Iterator[HeaderBlob | BlobProblem]:
    """Check the metadata page of the `Packages` file open at `fd`, then walk every bucket."""
    reader = _Pages.open(fd)
    return reader.walk()


class _Pages:
    """Page access to one Berkeley DB hash file in its own byte order."""

    def __init__(
        self,
        fd: int,
        order: str,
        page_size: int,
        last_page: int,
        max_bucket: int,
        spares: tuple[int, ...],
        file_pages: int,
        records: int,
        size: int,
    ) -> None:
        self.fd = fd
        self.order = order
        self.page_size = page_size
        self.last_page = last_page
        self.max_bucket = max_bucket
        self.spares = spares
        self.file_pages = file_pages
        self.records = records  # the metadata's key count (hash `nelem`), rpm's counter included
        self.size = size
        self.pairs = 0  # key/value pairs the bucket pages hold
        self.counters: list[bytes] = []  # values of key 0 (rpm's instance counter: one, 4 bytes)
        self.highest = 0  # the highest header number seen
        # after the 8-byte LSN: pgno, prev, next, entries, hf_offset, level, type
        self.header = struct.Struct(order + "8xIIIHHBB")
        self.u16 = struct.Struct(order + "H")
        self.offpage = struct.Struct(order + "II")  # overflow page number, total length
        # Overflow pages already used by an item: two items sharing one is damage, and
        # refusing it keeps the total work linear in the file size.
        self.used_overflow: set[int] = set()

    @classmethod
    def open(cls, fd: int) -> _Pages:
        meta = os.pread(fd, _META_SIZE, 0)
        if len(meta) < _META_SIZE:
            raise StorageError(f"{len(meta)} bytes: too short for a Berkeley DB metadata page")
        order = ""
        for candidate in ("<", ">"):
            magic = struct.unpack_from(candidate + "I", meta, 12)[0]
            if magic == _HASH_MAGIC:
                order = candidate
            elif magic == _BTREE_MAGIC:
                raise StorageError("a Berkeley DB btree, not a hash: not an rpm 4 Packages file")
        if not order:
            raise StorageError("no Berkeley DB hash magic: not a Packages database")
        version, page_size = struct.unpack_from(order + "II", meta, 16)
        if version not in _VERSIONS:
            raise StorageError(
                f"unsupported Berkeley DB hash version {version} (rpm reads 8 to 10)"
            )
        if page_size not in _PAGE_SIZES:
            raise StorageError(f"invalid page size {page_size}")
        if meta[24] != 0:
            raise StorageError(f"encrypted database (algorithm {meta[24]}) cannot be read")
        if meta[25] != _P_HASHMETA:
            raise StorageError(f"page 0 has type {meta[25]}, not a hash metadata page")
        last_page = struct.unpack_from(order + "I", meta, 32)[0]
        max_bucket, _, _, _, records = struct.unpack_from(order + "5I", meta, 72)
        spares = struct.unpack_from(order + "32I", meta, 96)
        size = os.fstat(fd).st_size
        if max_bucket > last_page:
            raise StorageError(f"max bucket {max_bucket} but only {last_page + 1} pages")
        return cls(
            fd, order, page_size, last_page, max_bucket, spares, size // page_size, records, size
        )

    def walk(self) -> Iterator[HeaderBlob | BlobProblem]:
        yield from self.walk_buckets()
        # Damage that leaves every page readable (a wrong page size, a page overwritten with
        # zeros, a chain cut short) loses records silently: count them against the metadata.
        if self.pairs != self.records:
            yield BlobProblem(
                None,
                f"the hash metadata counts {self.records} records, the bucket pages hold "
                f"{self.pairs}: records are lost or the file is damaged",
            )
        # rpm keeps, under key 0, the last header number it gave out (4 bytes): a second
        # key 0, or another value, is a header whose key was damaged (read as the counter).
        if len(self.counters) > 1 or any(
            len(value) != 5 or value[0] != _H_KEYDATA for value in self.counters
        ):
            yield BlobProblem(
                None, "key 0 is not rpm's one 4-byte counter: a header key is damaged"
            )
        elif self.counters:
            counter = struct.unpack_from(self.order + "I", self.counters[0], 1)[0]
            if self.highest > counter:
                yield BlobProblem(
                    None, f"header {self.highest} is above rpm's counter {counter}: damaged key"
                )

    def walk_buckets(self) -> Iterator[HeaderBlob | BlobProblem]:
        if self.file_pages <= self.last_page:
            yield BlobProblem(
                None,
                f"truncated: the metadata says {self.last_page + 1} pages of {self.page_size} "
                f"bytes, the file holds {self.file_pages}; headers on missing pages are lost",
            )
        elif self.size % self.page_size:
            yield BlobProblem(
                None,
                f"{self.size} bytes is not a whole number of {self.page_size}-byte pages "
                "(misaligned)",
            )
        visited: set[int] = set()  # hash pages: a bucket chain that comes back ends there
        # A bucket's first page is at least its own number, so buckets from `file_pages` on lie
        # beyond the end of the file: one problem for them all, not one loop turn each (a
        # damaged max bucket may claim four billion).
        buckets = min(self.max_bucket + 1, self.file_pages)
        if buckets <= self.max_bucket:
            yield BlobProblem(
                None, f"buckets {buckets}..{self.max_bucket} lie beyond the end of the file"
            )
        for bucket in range(buckets):
            pgno = self.bucket_page(bucket)
            if not pgno:
                # page 0 is the metadata: every bucket has a page of its own (libdb)
                yield BlobProblem(None, f"bucket {bucket} maps to page 0: damaged metadata")
                continue
            while pgno:
                if pgno in visited:
                    yield BlobProblem(None, f"bucket {bucket}: page {pgno} reached twice (loop)")
                    break
                visited.add(pgno)
                try:
                    page = self.page(pgno, (_P_HASH, _P_HASH_UNSORTED), empty_ok=True)
                except ValueError as error:
                    yield BlobProblem(None, f"bucket {bucket}: {error}")
                    break
                if page is None:
                    break  # a bucket page libdb allocated but never wrote: an empty bucket
                yield from self.items(page, pgno)
                pgno = self.header.unpack_from(page)[2]

    def bucket_page(self, bucket: int) -> int:
        # libdb BUCKET_TO_PAGE: the bucket plus the spare pages of its doubling (bit length)
        return bucket + self.spares[bucket.bit_length()]

    @overload
    def page(self, pgno: int, types: tuple[int, ...]) -> bytes: ...
    @overload
    def page(self, pgno: int, types: tuple[int, ...], empty_ok: bool) -> bytes | None: ...

    def page(self, pgno: int, types: tuple[int, ...], empty_ok: bool = False) -> bytes | None:
        """Read page `pgno`, checking its number and type; ValueError says what is wrong.

        With `empty_ok`, an all-zero page header (page number 0, type 0 "invalid") gives None:
        libdb's own reader takes such a bucket page as empty (it allocates bucket pages before
        writing them). rpm 4.18's bdb_ro instead fails the whole database on it.
        """
        if pgno == 0 or pgno > self.last_page:
            raise ValueError(f"page number {pgno} outside 1..{self.last_page}")
        page = os.pread(self.fd, self.page_size, pgno * self.page_size)
        if len(page) < self.page_size:
            raise ValueError(f"page {pgno} lies beyond the end of the file (truncated)")
        own, *_, type_ = self.header.unpack_from(page)
        if empty_ok and own == 0 and type_ == 0 and not any(page[:_PAGE_HEADER]):
            return None
        if own != pgno:
            raise ValueError(f"page {pgno} says it is page {own}")
        if type_ not in types:
            raise ValueError(f"page {pgno} has type {type_}, expected {types}")
        return page

    def items(self, page: bytes, pgno: int) -> Iterator[HeaderBlob | BlobProblem]:
        entries = self.header.unpack_from(page)[3]
        limit = (self.page_size - _PAGE_HEADER) // 2
        if entries % 2 or entries > limit:
            yield BlobProblem(None, f"page {pgno}: {entries} entries is not a key/value count")
            return
        offsets = struct.unpack_from(f"{self.order}{entries}H", page, _PAGE_HEADER)
        minimum = _PAGE_HEADER + 2 * entries
        self.pairs += entries // 2
        for index in range(0, entries, 2):
            key_off, value_off = offsets[index], offsets[index + 1]
            # items fill the page from its end: an item ends where the previous one starts
            key_end = self.page_size if index == 0 else offsets[index - 1]
            if not minimum <= value_off < key_off < key_end <= self.page_size:
                yield BlobProblem(None, f"page {pgno}: item offsets out of order or range")
                return
            key = page[key_off:key_end]
            if key[0] != _H_KEYDATA or len(key) != 5:
                yield BlobProblem(None, f"page {pgno}: key {index // 2} is not a header number")
                continue
            number = struct.unpack_from(self.order + "I", key, 1)[0]
            value = page[value_off:key_off]
            if number == 0:
                self.counters.append(value)  # rpm's header-number counter, not a header
                continue
            self.highest = max(self.highest, number)
            try:
                data = self.value(value)
            except ValueError as error:
                yield BlobProblem(number, str(error))
                continue
            yield HeaderBlob(number, data)

    def value(self, item: bytes) -> bytes:
        if item[0] == _H_KEYDATA:
            return item[1:]
        if item[0] != _H_OFFPAGE or len(item) < 12:
            raise ValueError(f"value item of type {item[0]} is neither inline nor off-page")
        pgno, length = self.offpage.unpack_from(item, 4)
        if length == 0 or length > min(_MAX_ITEM, self.file_pages * self.page_size):
            raise ValueError(f"off-page item length {length} is impossible in this file")
        chunks: list[bytes] = []
        remaining = length
        visited: set[int] = set()
        while remaining:
            if pgno in visited:
                raise ValueError(f"overflow chain reaches page {pgno} twice (loop)")
            if pgno in self.used_overflow:
                raise ValueError(f"overflow page {pgno} already belongs to another item")
            visited.add(pgno)
            page = self.page(pgno, (_P_OVERFLOW,))
            _, _, next_pgno, _, used, _, _ = self.header.unpack_from(page)
            if used > self.page_size - _PAGE_HEADER or used > remaining or used == 0:
                raise ValueError(f"overflow page {pgno} claims {used} bytes of {remaining} left")
            chunks.append(page[_PAGE_HEADER : _PAGE_HEADER + used])
            remaining -= used
            if remaining and not next_pgno:
                raise ValueError(f"overflow chain ends with {remaining} of {length} bytes missing")
            pgno = next_pgno
        self.used_overflow |= visited
        return b"".join(chunks)
