"""Test trees and guards shared by the test modules: odd trees, an unprivileged child, no hangs."""

from __future__ import annotations

import codecs
import hashlib
import os
import pickle
import signal
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def no_block() -> Iterator[None]:
    """Fail instead of hanging if anything opens a FIFO or device node."""

    def expire(signum: int, frame: object) -> None:
        raise TimeoutError("walk blocked (opened a FIFO or device?)")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def make_tree(root: Path) -> Path:
    """Nested dirs, a non-UTF-8 name, special files, hard links and every kind of symlink."""
    base = bytes(root)
    os.makedirs(base + b"/a/b/c")
    os.makedirs(base + b"/caf\xe9/d")
    os.makedirs(base + b"/skipme/inner")
    (root / "a/b/c/deep.txt").write_bytes(b"deep\n")
    (root / "a/file").write_bytes(b"x" * 5000)
    (root / "a/empty").write_bytes(b"")
    (root / "skipme/inner/hidden").write_bytes(b"hidden")
    with open(base + b"/caf\xe9/na\xefve \n name", "wb") as handle:
        handle.write(b"latin-1 name")
    os.link(root / "a/file", root / "a/file.hardlink")
    os.mkfifo(root / "fifo")
    os.mknod(root / "null", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    os.symlink("loop2", root / "loop1")
    os.symlink("loop1", root / "loop2")
    os.symlink("does/not/exist", root / "dangling")
    os.symlink("/etc", root / "outside")
    os.symlink("../../a", root / "a/b/up")
    return root


def as_nobody(work: Callable[[], object]) -> object:
    """work() in a forked child running as uid/gid 65534: root is never denied, nobody is."""
    # Codecs are imported on first use, and nobody may not read the interpreter's library (a
    # pyenv under /root, mode 0700): the child gets the ones the scan uses already imported.
    for codec in ("ascii", "latin-1"):
        codecs.lookup(codec)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            data = pickle.dumps(("ok", work()))
        except BaseException as error:  # noqa: BLE001 - carried back to the parent
            data = pickle.dumps(("error", repr(error)))
        with os.fdopen(write_end, "wb") as pipe:
            pipe.write(data)
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        outcome, value = pickle.loads(pipe.read())
    os.waitpid(pid, 0)
    assert outcome == "ok", value
    return value


def make_dpkg_root(
    root: Path, files: dict[bytes, bytes], *, package: str = "tool", md5sums: bytes | None = None
) -> Path:
    """A dpkg root whose one package owns `files` (root-relative path -> content, 0755), with
    the right md5sums or the `md5sums` given."""
    (root / "var/lib/dpkg/info").mkdir(parents=True)
    for path, content in files.items():
        full = bytes(root) + b"/" + path
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "wb") as handle:
            handle.write(content)
        os.chmod(full, 0o755)
    (root / "var/lib/dpkg/status").write_text(
        f"Package: {package}\nStatus: install ok installed\nVersion: 1.0\nArchitecture: amd64\n\n"
    )
    if md5sums is None:
        md5sums = b"".join(
            hashlib.md5(c).hexdigest().encode() + b"  " + p + b"\n" for p, c in files.items()
        )
    (root / f"var/lib/dpkg/info/{package}.md5sums").write_bytes(md5sums)
    return root
