"""The scale benchmark's generated roots: 1,000,000 small files, and a few 4 GiB files.

Built once and cached beside the debootstrap roots (`/var/cache/scan-root-tests/scale-1m`, with
a `.complete` marker written last, so an interrupted build is started over, never reused).
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import roots

SMALL = "scale-1m"
BIG = "scale-4g"
DIRECTORIES = 100_000
FILES_PER_DIRECTORY = 10
BIG_FILES = 3
BIG_SIZE = 4 << 30
_POOL = 1 << 20  # random bytes that small files are cut from
_BLOCK = 64 << 20  # a big file is written in blocks of this many bytes


def _complete(name: str) -> Path | None:
    path = roots.CACHE / name
    return path if (roots.CACHE / f"{name}.complete").exists() else None


def small_root(directories: int = DIRECTORIES, files: int = FILES_PER_DIRECTORY) -> Path:
    """`scale-1m`: `directories` directories (100 top-level x the rest below) of `files` files.

    Contents are 32..2,079 bytes cut from one random pool at random offsets (no two files alike
    in practice, none empty, so check 425 reads every one); one file in 97 is executable, so
    426 also hashes and searches some. Written with os.open/os.write from one Python process:
    about 1 min for the million files on this VM's ext4.
    """
    name = (
        SMALL
        if (directories, files) == (DIRECTORIES, FILES_PER_DIRECTORY)
        else (f"{SMALL}-{directories}x{files}")
    )
    found = _complete(name)
    if found is not None:
        return found
    root = roots.CACHE / name
    shutil.rmtree(root, ignore_errors=True)
    rng = random.Random(1)
    pool = rng.randbytes(_POOL + 4096)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    top = max(1, min(100, directories))
    per_top = -(-directories // top)
    made = 0
    serial = 0
    root_fd = None
    os.makedirs(root)
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for upper in range(top):
            upper_name = b"d%03d" % upper
            os.mkdir(upper_name, dir_fd=root_fd)
            upper_fd = os.open(upper_name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=root_fd)
            try:
                for lower in range(per_top):
                    if made == directories:
                        break
                    lower_name = b"s%04d" % lower
                    os.mkdir(lower_name, dir_fd=upper_fd)
                    lower_fd = os.open(lower_name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=upper_fd)
                    try:
                        for index in range(files):
                            serial += 1
                            mode = 0o755 if serial % 97 == 0 else 0o644
                            fd = os.open(b"f%02d.dat" % index, flags, mode, dir_fd=lower_fd)
                            start = rng.randrange(_POOL)
                            os.write(fd, pool[start : start + 32 + (serial * 7919) % 2048])
                            os.close(fd)
                    finally:
                        os.close(lower_fd)
                    made += 1
            finally:
                os.close(upper_fd)
    finally:
        os.close(root_fd)
    (roots.CACHE / f"{name}.complete").write_text(f"{made} directories x {files} files\n")
    return root


def big_root(count: int = BIG_FILES, size: int = BIG_SIZE) -> Path:
    """`scale-4g`: `count` files of `size` bytes of real (non-sparse, incompressible) data.

    Real data, not sparse files: a hole reads as zeros straight from the kernel without touching
    the disk or the page cache's LRU, which would flatter the hasher. Each 64 MiB block is one
    random block with its index written into its first bytes, so no two blocks are alike. The
    files are executables under usr/bin, which check 426 hashes (SHA-256) and searches.
    Not cached across runs by default (12 GiB): bench/scale.py removes it unless --keep.
    """
    found = _complete(BIG)
    if found is not None:
        return found
    root = roots.CACHE / BIG
    shutil.rmtree(root, ignore_errors=True)
    (root / "usr" / "bin").mkdir(parents=True)
    block = bytearray(random.Random(2).randbytes(_BLOCK))
    for number in range(count):
        path = root / "usr" / "bin" / f"big{number}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o755)
        try:
            written = 0
            while written < size:
                block[:16] = b"%08d%08d" % (number, written // _BLOCK)
                piece = memoryview(block)[: min(_BLOCK, size - written)]
                while piece:
                    piece = piece[os.write(fd, piece) :]
                written += min(_BLOCK, size - written)
        finally:
            os.close(fd)
    (roots.CACHE / f"{BIG}.complete").write_text(f"{count} files x {size} bytes\n")
    return root


def remove_big() -> None:
    """Delete the 4 GiB files (and their marker first, so a half-deleted root is never reused)."""
    (roots.CACHE / f"{BIG}.complete").unlink(missing_ok=True)
    shutil.rmtree(roots.CACHE / BIG, ignore_errors=True)


if __name__ == "__main__":
    import sys
    import time

    started = time.perf_counter()
    print(small_root() if sys.argv[1:] != ["big"] else big_root(), time.perf_counter() - started)
