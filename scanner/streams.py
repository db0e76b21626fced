"""The command line's standard streams: a closed or broken one never changes what its exit says."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO, cast

__all__ = ["discard", "standard_streams"]


def discard(fd: int) -> None:
    """Point `fd` at /dev/null: what is still buffered for it (and the interpreter's flush at
    exit, which turns a failure on stdout into exit 120) then goes nowhere, without an error."""
    null = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
    try:
        if null != fd:
            os.dup2(null, fd, inheritable=False)
    finally:
        if null != fd:
            os.close(null)


class _Diagnostics:
    """sys.stderr while the command runs: a message that cannot be written (its reader gone, the
    terminal hung up) is dropped, instead of raising where an exit code is being decided (a
    usage error's message meeting a closed pipe was Python's exit 1, "findings"). What print,
    traceback, argparse and tqdm use of a text stream."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except OSError:
            self._lost()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError:
            self._lost()

    def _lost(self) -> None:
        # Nobody reads these messages any more: the descriptor is pointed at /dev/null, so the
        # next message and what stays buffered fail no more (each would cost a system call).
        try:
            fd = self._stream.fileno()
        except (OSError, ValueError):  # no descriptor (a test's capture): nothing to move
            return
        discard(fd)

    def isatty(self) -> bool:
        return self._stream.isatty()

    def fileno(self) -> int:
        return self._stream.fileno()

    def writable(self) -> bool:
        return True

    @property
    def encoding(self) -> str:
        return self._stream.encoding

    @property
    def errors(self) -> str | None:
        return self._stream.errors


def _hold_descriptors() -> None:
    """Descriptors 0-2 open, on /dev/null where the caller closed them: otherwise the first
    file the scan opens takes the number, and what is meant for stderr lands in it."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)  # the lowest free number: `fd` itself
            if null != fd:
                os.dup2(null, fd)
                os.close(null)


@contextmanager
def standard_streams() -> Iterator[None]:
    """For the command's run: descriptors 0-2 held open, and sys.stderr a stream whose failures
    cost only the message. sys.stdout stays None when it was closed (the report's writer says
    so); sys.stderr is put back afterwards."""
    _hold_descriptors()
    saved = sys.stderr
    stream = saved
    if stream is None:  # closed when Python started: now /dev/null (held above)
        stream = open(2, "w", encoding="utf-8", errors="backslashreplace", closefd=False)  # noqa: SIM115
    sys.stderr = cast(TextIO, _Diagnostics(stream))
    try:
        yield
    finally:
        sys.stderr = saved
        if stream is not saved:
            stream.close()  # flushed into /dev/null; descriptor 2 itself stays open
