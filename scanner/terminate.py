"""SIGTERM and SIGINT as an exception, so that every `finally` runs (the image's scratch tree)."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

__all__ = ["Terminated", "terminating"]

# SIGTERM: what ECS, `timeout`, CI runners and `docker stop` send; its default action ends the
# process at once, leaving an image's scratch tree (gigabytes, maybe in /dev/shm) behind.
_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Terminated(BaseException):
    """Raised in the main thread by the first SIGTERM or SIGINT inside `terminating()`. A
    BaseException, as KeyboardInterrupt is: `except Exception` handlers let it through."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextlib.contextmanager
def terminating() -> Iterator[None]:
    """Within: the first SIGTERM or SIGINT raises Terminated; later ones are ignored, so the
    clean-up the first one started is not cut short (SIGKILL still ends it). A signal this
    process was started ignoring (`nohup`, a background job's SIGINT) stays ignored. Handlers
    are restored on exit. Outside the main thread, which alone runs Python's handlers, nothing
    is changed."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def handler(signum: int, _frame: FrameType | None) -> None:
        if not received:
            received.append(signum)
            raise Terminated(signum)

    previous = {}
    for number in _SIGNALS:
        if signal.getsignal(number) is not signal.SIG_IGN:
            previous[number] = signal.signal(number, handler)
    try:
        yield
    finally:
        for number, old in previous.items():
            # None: a handler set outside Python; the default is the closest we can restore.
            signal.signal(number, signal.SIG_DFL if old is None else old)
