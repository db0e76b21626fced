"""Seeded mutators for the fuzz suite, and the runner that scans a batch of cases in one child.

Byte mutations (flip, overwrite with boundary values, insert, delete, truncate, repeat a chunk),
tar-header mutations that keep the header's checksum right (so that the parser's later checks
are reached, not only the checksum test), and JSON/YAML mutations of the parsed value (a node
replaced by another type, a huge number, a long string, deep nesting, an alias bomb). Every
mutation is a function of `random.Random(seed)`: a failing case is replayed from its seed.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from child import child_env

BLOCK = 512
# Values that sit on boundaries parsers get wrong: sign bits, all ones, NUL, octal/space
# confusions in tar's numeric fields, base-256 markers.
_BOUNDARY_BYTES = (0x00, 0x01, 0x7F, 0x80, 0xFF, 0x20, 0x30, 0x37, 0x38, 0x39, 0x2F, 0x0A)

# (name, offset, length) of ustar header fields (POSIX.1-1988 and GNU's extensions).
TAR_FIELDS = (
    ("name", 0, 100),
    ("mode", 100, 8),
    ("uid", 108, 8),
    ("gid", 116, 8),
    ("size", 124, 12),
    ("mtime", 136, 12),
    ("typeflag", 156, 1),
    ("linkname", 157, 100),
    ("magic", 257, 8),
    ("devmajor", 329, 8),
    ("devminor", 337, 8),
    ("prefix", 345, 155),
)
_TYPEFLAGS = b"0123456789xgLKSDMNVA\0 ZX"
_NUMERIC_VALUES = (
    b"77777777777\0",
    b"\x80" + b"\0" * 10 + b"\x01",  # base-256, small
    b"\xff" * 12,  # base-256, negative
    b"\x80" + b"\xff" * 11,  # base-256, huge
    b"-1\0",
    b"99999999999\0",
    b"\0" * 12,
    b"0000000001\0",
)


def mutate_bytes(data: bytes, rng: random.Random, count: int = 0) -> bytes:
    """`count` (default 1-4) byte-level mutations of `data`."""
    out = bytearray(data)
    for _ in range(count or rng.randint(1, 4)):
        if not out:
            out += bytes([rng.choice(_BOUNDARY_BYTES)])
            continue
        at = rng.randrange(len(out))
        kind = rng.randrange(7)
        if kind == 0:
            out[at] ^= 1 << rng.randrange(8)
        elif kind == 1:
            out[at] = rng.choice(_BOUNDARY_BYTES)
        elif kind == 2:
            out[at:at] = bytes(rng.choice(_BOUNDARY_BYTES) for _ in range(rng.randint(1, 16)))
        elif kind == 3:
            del out[at : at + rng.randint(1, 64)]
        elif kind == 4:
            del out[at:]
        elif kind == 5:
            chunk = out[at : at + rng.randint(1, 256)]
            out[at:at] = chunk * rng.randint(1, 8)
        else:
            out[at : at + 8] = rng.randbytes(8)
    return bytes(out)


def tar_headers(archive: bytes) -> list[int]:
    """Offsets of the header blocks of an uncompressed tar, walking its size fields."""
    offsets: list[int] = []
    at = 0
    while at + BLOCK <= len(archive):
        block = archive[at : at + BLOCK]
        if block == b"\0" * BLOCK:
            break
        offsets.append(at)
        size_field = block[124:136].rstrip(b"\0 ").decode("ascii", "replace") or "0"
        try:
            size = int(size_field, 8)
        except ValueError:
            break
        at += BLOCK + (size + BLOCK - 1) // BLOCK * BLOCK
    return offsets


def fix_checksum(archive: bytearray, at: int) -> None:
    """Recompute the checksum of the header at `at`, as a writer would have."""
    archive[at + 148 : at + 156] = b" " * 8
    total = sum(archive[at : at + BLOCK])
    archive[at + 148 : at + 156] = b"%06o\0 " % total


def mutate_tar_header(archive: bytes, rng: random.Random) -> bytes:
    """One field of one header changed, its checksum made right again."""
    out = bytearray(archive)
    headers = tar_headers(archive)
    if not headers:
        return mutate_bytes(archive, rng)
    at = rng.choice(headers)
    name, offset, length = rng.choice(TAR_FIELDS)
    start = at + offset
    if name == "typeflag":
        out[start] = rng.choice(_TYPEFLAGS)
    elif name in ("name", "linkname", "prefix"):
        value = rng.choice(
            (
                b"../" * 30,
                b"/etc/passwd",
                b"a" * length,
                b"x/" * 50,
                b".wh..wh..opq",
                b"srv/.wh.app",
                b"\x1b]8;;http://x\x07",
                b"",
            )
        )
        out[start : start + length] = value[:length].ljust(length, b"\0")
    elif name == "magic":
        out[start : start + length] = rng.choice((b"ustar\x0000", b"ustar  \0", b"\0" * 8))
    else:
        value = rng.choice(_NUMERIC_VALUES)
        out[start : start + length] = value[:length].ljust(length, b"\0")
    fix_checksum(out, at)
    return bytes(out)


def _json_nodes(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    nodes = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            nodes += _json_nodes(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            nodes += _json_nodes(item, (*path, index))
    return nodes


def _replacement(rng: random.Random) -> Any:
    choice = rng.randrange(12)
    if choice == 0:
        return None
    if choice == 1:
        return rng.choice((True, False))
    if choice == 2:
        return rng.choice((0, -1, 2**63, -(2**63) - 1, 10**400, 1e308, 0.5))
    if choice == 3:
        return "A" * rng.choice((0, 1, 4097, 1 << 20))
    if choice == 4:
        return []
    if choice == 5:
        return {}
    if choice == 6:
        return ["x"] * rng.randint(1, 3)
    if choice == 7:
        return {"x": 1}
    if choice == 8:
        return "\x1b[2J\x00\u202e../../etc/passwd"
    if choice == 9:
        return [[[[[[[[[[]]]]]]]]]]
    if choice == 10:
        return "sha256:" + "0" * 64
    return rng.randint(-5, 5)


def _deep(depth: int) -> str:
    return "[" * depth + "]" * depth


def mutate_json(text: str, rng: random.Random) -> str:
    """A structural mutation of a JSON document: one node deleted or replaced by another type, a
    huge number, a long string; now and then deep nesting, or its bytes mutated."""
    roll = rng.randrange(16)
    if roll < 2:
        return mutate_bytes(text.encode(), rng).decode("utf-8", "surrogateescape")
    if roll == 2:
        return _deep(rng.choice((1000, 100_000)))
    value = json.loads(text)
    path = rng.choice(_json_nodes(value))
    replacement = _replacement(rng)
    if not path:
        return json.dumps(replacement)
    parent = value
    for key in path[:-1]:
        parent = parent[key]
    if roll < 6 and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = replacement
    rendered = json.dumps(value)
    if roll == 6:
        # The mutated node wrapped deep: a document valid but for its nesting.
        marker = json.dumps(replacement)
        rendered = rendered.replace(marker, "[" * 50_000 + marker + "]" * 50_000, 1)
    return rendered


def mutate_yaml(text: str, rng: random.Random) -> str:
    """A mutation of a YAML policy: its bytes, deep nesting, an alias bomb, odd scalars."""
    roll = rng.randrange(6)
    if roll == 0:
        return mutate_bytes(text.encode(), rng).decode("utf-8", "surrogateescape")
    if roll == 1:
        return "a: " + "[" * 50_000 + "]" * 50_000 + "\n"
    if roll == 2:
        lines = ['a0: &a0 ["x","x","x","x","x","x","x","x","x"]']
        for level in range(1, 12):
            previous = f"*a{level - 1}"
            lines.append(f"a{level}: &a{level} [{', '.join([previous] * 9)}]")
        return "\n".join(lines) + "\n" + text
    if roll == 3:
        scalar = rng.choice(("1e300", "-1", "99999" * 1000, ".nan", ".inf", "null", "[]", "{}"))
        lines = text.splitlines()
        index = rng.randrange(len(lines))
        head, colon, _ = lines[index].partition(":")
        if colon:
            lines[index] = f"{head}: {scalar}"
        return "\n".join(lines) + "\n"
    if roll == 4:
        return text.replace("\n", "\n" + " " * rng.randint(1, 3), 1)
    return text + rng.choice(("\n---\n" + text, "\n!!python/object:os.system {}\n", "\0"))


@dataclass(frozen=True)
class Outcome:
    """What the child said of one case."""

    case: int
    code: int
    seconds: float
    peak_rss_kb: int


@dataclass(frozen=True)
class Batch:
    """A batch's outcomes, and how it ended: `stopped` names a case that hung or killed it."""

    outcomes: list[Outcome]
    stopped: str | None
    stderr: str


def run_batch(cases: Sequence[Sequence[str]], budget: float) -> Batch:
    """Every case's argv through scan-root's main(), in one child Python; at most `budget`
    seconds in all, past which the child is killed and the case it was in is named."""
    here = Path(__file__).resolve().parent
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump([list(case) for case in cases], handle)
    try:
        process = subprocess.Popen(
            [sys.executable, str(here / "fuzz_child.py"), handle.name],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=child_env(here),  # the child imports tests/child.py too
        )
        try:
            stdout, stderr = process.communicate(timeout=budget)
            stopped = None if process.returncode == 0 else f"exit {process.returncode}"
        except subprocess.TimeoutExpired:
            process.kill()
            stdout, stderr = process.communicate()
            stopped = f"over the batch budget of {budget:.0f} s"
    finally:
        os.unlink(handle.name)
    outcomes = [Outcome(**json.loads(line)) for line in stdout.splitlines() if line.startswith("{")]
    if stopped is not None:
        stopped += f" in case {len(outcomes)}: {list(cases[len(outcomes)])}"
    return Batch(outcomes, stopped, stderr)
