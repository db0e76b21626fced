"""What every source parser shares: the error it raises, the bounds it keeps, typed field access."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from scanner.jsonload import InputFileError, load_json, read_bounded

__all__ = [
    "Limits",
    "SourceError",
    "Where",
    "get_list",
    "get_map",
    "get_opt_str",
    "get_str",
    "get_str_list",
    "json_files",
    "load_document",
    "read_file",
]

MiB = 1 << 20


@dataclass(frozen=True, slots=True)
class Limits:
    """How much one import may cost. The defaults take the real exports: the Debian tracker's
    JSON is ~70 MB (tens of millions of values), an OSV all.zip member is a few kB, a whole
    Debian all.zip ~1 GB uncompressed, compressed ~10-20 times."""

    max_file_bytes: int = 256 * MiB
    max_member_bytes: int = 64 * MiB
    max_total_bytes: int = 4096 * MiB
    # The archive itself: zipfile reads its whole central directory into memory before we can
    # count the members, so its size is what bounds that.
    max_zip_bytes: int = 1024 * MiB
    max_members: int = 2_000_000
    # A DEFLATE member can expand ~1000 times; real JSON compresses well below 100.
    max_ratio: int = 200
    max_depth: int = 32
    max_nodes: int = 50_000_000
    max_files: int = 2_000_000
    max_string: int = 1 * MiB


DEFAULT_LIMITS = Limits()


class SourceError(ValueError):
    """An advisory file we refuse: names the file (and the member of an archive) and the field;
    never quotes the offending content, which may be anything."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}")
        self.where = where


@dataclass(frozen=True, slots=True)
class Where:
    """A position in a document for messages: the file (or `file!member`) and a field path."""

    file: str
    field: str = ""

    def at(self, key: str | int) -> Where:
        # A key comes from the file: shown escaped, like a file name.
        name = display(key) if isinstance(key, str) else ""
        step = f"[{key}]" if isinstance(key, int) else (f".{name}" if self.field else name)
        return Where(self.file, self.field + step)

    def fail(self, message: str) -> SourceError:
        return SourceError(self.file, f"{self.field or 'document'}: {message}")


def display(name: str | bytes) -> str:
    """A file or member name fit for a message: escapes made visible, length capped."""
    text = os.fsdecode(name) if isinstance(name, bytes) else name
    shown = text.encode("unicode_escape", "backslashreplace").decode("ascii")
    return shown if len(shown) <= 300 else shown[:300] + "..."


def json_files(path: str, limits: Limits) -> Iterator[str]:
    """Every regular *.json below `path`, in name order; symlinks are not followed (a link could
    point anywhere on the importing host), and the number of files is bounded."""
    seen = 0
    for top, dirs, files in os.walk(path, followlinks=False):
        dirs.sort()
        for name in sorted(files):
            if not name.endswith(".json"):
                continue
            seen += 1
            if seen > limits.max_files:
                raise SourceError(display(path), f"more than {limits.max_files} JSON files")
            full = os.path.join(top, name)
            if not os.path.islink(full):
                yield full


def read_file(path: str | os.PathLike[str], limits: Limits) -> bytes:
    """The bytes of a regular file within the size bound, or SourceError."""
    where = display(os.fspath(path))
    try:
        return read_bounded(path, what="advisory file", max_bytes=limits.max_file_bytes)
    except InputFileError as error:
        raise SourceError(where, str(error).removeprefix(os.fsdecode(path) + ": ")) from None
    except OSError as error:
        raise SourceError(where, f"cannot read: {error.strerror}") from None


def load_document(data: bytes, where: str, limits: Limits) -> object:
    """`data` as JSON, bounded in size, depth and values; a key named twice is refused (which
    of the two a reader keeps is its choice, so such a file means different things to two tools)."""
    try:
        return load_json(
            data,
            what="advisory JSON",
            max_bytes=max(limits.max_file_bytes, limits.max_member_bytes),
            max_depth=limits.max_depth,
            max_nodes=limits.max_nodes,
            unique_keys=True,
        )
    except InputFileError as error:
        raise SourceError(where, str(error).removeprefix("advisory JSON: ")) from None


def get_map(value: object, where: Where) -> Mapping[str, object]:
    if not isinstance(value, dict):
        raise where.fail(f"expected an object, found {_kind(value)}")
    return value


def get_list(value: object, where: Where) -> list[object]:
    if not isinstance(value, list):
        raise where.fail(f"expected a list, found {_kind(value)}")
    return value


def get_str(value: object, where: Where, limits: Limits = DEFAULT_LIMITS) -> str:
    if not isinstance(value, str):
        raise where.fail(f"expected a string, found {_kind(value)}")
    if len(value) > limits.max_string:
        raise where.fail(f"a string of {len(value)} characters, over {limits.max_string}")
    return value


def get_opt_str(value: object, where: Where, limits: Limits = DEFAULT_LIMITS) -> str | None:
    return None if value is None else get_str(value, where, limits)


def get_str_list(value: object, where: Where, limits: Limits = DEFAULT_LIMITS) -> list[str]:
    return [get_str(item, where.at(i), limits) for i, item in enumerate(get_list(value, where))]


def _kind(value: object) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string"}.get(
        type(value), "an object" if isinstance(value, dict) else "a list"
    )
