"""Bounded reading of untrusted JSON files: regular files only, capped in size and nesting."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

__all__ = [
    "InputFileError",
    "JSONInputError",
    "count_nodes",
    "load_json",
    "open_regular",
    "read_bounded",
]

# Deeper than any document we read needs (a task definition is ~6 deep, an image config ~5),
# far below where Python's own recursion (ours, or the json decoder's) would give out.
DEFAULT_MAX_DEPTH = 64
# What a file's bytes may make of memory: `[],[],...` is 3 bytes a list of ~80 (a 28 MiB file
# took 1.5 GB), so the size cap alone does not bound it. A million values cost at most ~100 MB;
# a baseline of 150,000 entries, or a state's 50,000 recorded verdicts, stay under it.
DEFAULT_MAX_NODES = 1_000_000


class InputFileError(ValueError):
    """An input file refused before it is read: not a regular file, or too large."""


class JSONInputError(InputFileError):
    """A file that is not a JSON document we accept; the message never quotes its content."""


def open_regular(
    path: str | os.PathLike[str], *, what: str, dir_fd: int | None = None, follow: bool = True
) -> tuple[int, os.stat_result]:
    """A read-only descriptor of `path` and its fstat, or InputFileError when it is no regular
    file (judged before it is opened: pkgdb.open_node.open_judged) or was replaced meanwhile;
    OSError (ENOENT, EACCES...) is left to the caller. `dir_fd` as os.open's; `follow` false
    refuses a symlink as the last component (ELOOP)."""
    # Imported here, not at the top: `pkgdb` loads every package reader, and the CLI imports
    # this module before its read-ahead starts (tests/test_prefetch.py).
    from pkgdb.open_node import NotRegular, Replaced, open_judged

    try:
        return open_judged(path, dir_fd=dir_fd, follow=follow)
    except NotRegular as error:
        raise InputFileError(f"{os.fsdecode(path)}: {what} is {error.strerror}") from None
    except Replaced:
        raise InputFileError(
            f"{os.fsdecode(path)}: {what} was replaced while it was opened"
        ) from None


def read_bounded(path: str | os.PathLike[str], *, what: str, max_bytes: int) -> bytes:
    """The bytes of `path`, which must be a regular file of at most `max_bytes`.

    Only a regular file is opened for reading (open_regular): a FIFO put where a file belongs
    cannot stall the scan, nor a device be opened; sized by fstat before any read, so a sparse
    2 GiB file costs nothing. OSError (ENOENT, EACCES...) is left to the caller, which knows
    how to word it.
    """
    fd, info = open_regular(path, what=what)
    try:
        if info.st_size > max_bytes:
            raise InputFileError(
                f"{os.fsdecode(path)}: {what} is {info.st_size} bytes, over the limit of "
                f"{max_bytes}"
            )
        chunks = []
        left = max_bytes + 1  # one byte more tells a file that grew since fstat
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        if left <= 0:
            raise InputFileError(f"{os.fsdecode(path)}: {what} grew past {max_bytes} bytes")
        return b"".join(chunks)
    finally:
        os.close(fd)


def count_nodes(data: bytes | str, start: int = 0, end: int | None = None) -> int:
    """An upper bound on the values `json.loads(data[start:end])` would make: every container
    opened and every separator (a `,` inside a string counts too: the bound only errs high).
    Counted in C (bytes.count), before anything is parsed or copied."""
    if end is None:
        end = len(data)
    if isinstance(data, str):
        return sum(data.count(mark, start, end) for mark in "[{,") + 1
    return sum(data.count(mark, start, end) for mark in (b"[", b"{", b",")) + 1


def _depth_within(document: object, max_depth: int) -> bool:
    """Whether no container in `document` is nested deeper than `max_depth`: iterative, and
    holding one iterator per level (not every child of a long list at once)."""
    if not isinstance(document, (dict, list)):
        return True
    stack: list[Iterator[object]] = [_children(document)]
    while stack:
        for child in stack[-1]:
            if isinstance(child, (dict, list)):
                if len(stack) >= max_depth:
                    return False
                stack.append(_children(child))
                break
        else:
            stack.pop()
    return True


def _children(container: dict[str, object] | list[object]) -> Iterator[object]:
    return iter(container.values() if isinstance(container, dict) else container)


def _unique(pairs: list[tuple[str, object]]) -> dict[str, object]:
    document = dict(pairs)
    if len(document) != len(pairs):
        raise JSONInputError("not valid JSON: an object names a key twice")
    return document


def load_json(
    data: bytes | str,
    *,
    what: str,
    max_bytes: int,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_nodes: int = DEFAULT_MAX_NODES,
    unique_keys: bool = False,
) -> object:
    """`data` parsed, or JSONInputError saying why not (size, values, UTF-8, syntax, nesting).

    The json decoder meets deep nesting with RecursionError, which it raises cleanly (it counts
    its own recursion); that and anything nested past `max_depth` is refused here, so that no
    caller walking the document can recurse without bound either. `unique_keys` refuses an
    object that names a key twice (which one counts is the parser's choice: another reader of
    the same bytes may choose the other).
    """
    if len(data) > max_bytes:
        raise JSONInputError(f"{what}: {len(data)} bytes, over the limit of {max_bytes}")
    if count_nodes(data) > max_nodes:
        raise JSONInputError(f"{what}: more than {max_nodes} JSON values")
    try:
        document = json.loads(data, object_pairs_hook=_unique if unique_keys else None)
    except JSONInputError as error:
        raise JSONInputError(f"{what}: {error}") from None
    except json.JSONDecodeError as error:
        # msg/line/column only: the offending text could be a secret.
        raise JSONInputError(
            f"{what}: not valid JSON: {error.msg} (line {error.lineno}, column {error.colno})"
        ) from None
    except UnicodeDecodeError:
        raise JSONInputError(f"{what}: not valid JSON: not UTF-8 text") from None
    except RecursionError:
        raise JSONInputError(f"{what}: nested deeper than {max_depth} levels") from None
    except ValueError:  # an integer of more digits than int() takes (sys.int_info)
        raise JSONInputError(f"{what}: not valid JSON: a number too long to read") from None
    if not _depth_within(document, max_depth):
        raise JSONInputError(f"{what}: nested deeper than {max_depth} levels")
    return document
