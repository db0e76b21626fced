"""How a scan says where it is (phase, count, total) without knowing how it is shown."""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Protocol, runtime_checkable

__all__ = ["Phase", "Progress", "Silent", "progress_from"]


class Phase(enum.Enum):
    """The long parts of a scan, in the order they run; the value is what a person reads."""

    LAYERS = "extracting layers"
    PACKAGES = "reading package databases"
    WALK = "walking"
    HASH = "hashing"
    CUSTOM = "custom checks"


@runtime_checkable
class Progress(Protocol):
    """What the scan calls as it goes; the command line shows it, a library caller may too.

    `done` of `total` items of `phase` are finished (`total` None: not known in advance, as for
    the walk); `detail` names the item at hand (a layer, a custom check). Called from the
    thread running the scan, often: an implementation keeps it cheap and throttles drawing.
    """

    def update(
        self, phase: Phase, done: int = 0, total: int | None = None, detail: str = ""
    ) -> None: ...


class Silent:
    """No progress: the default."""

    def update(
        self, phase: Phase, done: int = 0, total: int | None = None, detail: str = ""
    ) -> None:
        return None


class Lines:
    """A `progress=` callback taking one line of text (the library's older form) as a Progress.

    The lines of the phases it was called for before are kept word for word.
    """

    def __init__(self, show: Callable[[str], None]) -> None:
        self._show = show

    def update(
        self, phase: Phase, done: int = 0, total: int | None = None, detail: str = ""
    ) -> None:
        if phase is Phase.WALK:
            self._show(f"{done} files walked")
        elif phase is Phase.HASH:
            self._show(f"448: {done} package files checked")
        elif phase is Phase.CUSTOM:
            self._show(f"custom check {detail}")
        else:
            count = "" if total is None else f" {done}/{total}"
            self._show(f"{phase.value}{count}" + (f": {detail}" if detail else ""))


def progress_from(given: Progress | Callable[[str], None] | None) -> Progress:
    """The Progress a scan reports to, from what its caller passed as `progress=`."""
    if given is None:
        return Silent()
    if isinstance(given, Progress):
        return given
    return Lines(given)
