"""The command line's progress display on a terminal: the scan's phases as tqdm bars on stderr."""

from __future__ import annotations

import os
from typing import TextIO

# tqdm, not rich: one pure-Python package with no dependencies of its own (rich brings pygments
# and markdown-it), and its bar already shows count, percentage and rate, or count and rate
# when the total is unknown. Imported only here, and this module only when stderr is a
# terminal: a scan in a pipe or with --quiet never pays its ~0.1 s import.
from tqdm.std import tqdm

from .output.escape import terminal_safe
from .progress import Phase

__all__ = ["TerminalProgress"]

# What a phase counts; None: the phase is shown by name alone (reading the package databases
# is one step of unknown length).
# The space: tqdm writes the unit right after the number ("12 files", "3.4 files/s").
UNITS = {
    Phase.LAYERS: " layers",
    Phase.PACKAGES: None,
    Phase.WALK: " files",
    Phase.HASH: " files",
    Phase.CUSTOM: " checks",
}


# Columns a bar keeps for its percentage, bar, count, times and rate; a phase's detail (a custom
# check's id and title) gets what is left of the line, cut, and at least DETAIL_MIN.
METER_WIDTH = 40
DETAIL_MIN = 8


class _Bar(tqdm):  # type: ignore[type-arg]  # the stubs' tqdm is generic over iterables
    # No monitor thread per process: bars here are advanced often, by the scan's own thread.
    monitor_interval = 0


class TerminalProgress:
    """A Progress (scanner/progress.py) drawn on `stream`, one transient bar per phase.

    Drawing is throttled by tqdm (at most ~5 redraws a second); `close` clears the last bar, so
    that the report or an error message starts on a clean line.
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._bar: _Bar | None = None
        self._key: tuple[Phase, int | None] | None = None

    def update(
        self, phase: Phase, done: int = 0, total: int | None = None, detail: str = ""
    ) -> None:
        bar = self._bar
        # A new phase, or this one started over (an image extraction moved on to disk).
        if bar is None or self._key != (phase, total) or done < bar.n:
            self._bar = self._start(phase, total, done, detail)
            self._key = (phase, total)
            return
        if detail:
            description = self._description(phase, detail, bar.ncols or 80)
            bar.set_description_str(description, refresh=False)
        if done > bar.n:
            bar.update(done - bar.n)  # throttled: draws at most every mininterval

    def close(self) -> None:
        """Clear the bar shown, if any."""
        if self._bar is not None:
            self._bar.close()
        self._bar = None
        self._key = None

    def _start(self, phase: Phase, total: int | None, done: int, detail: str) -> _Bar:
        self.close()
        unit = UNITS[phase]
        columns, lines = self._size()
        return _Bar(
            total=total,
            initial=done,  # its first drawing says how far the phase already is
            desc=self._description(phase, detail, columns),
            unit=unit or "it",
            # Without a unit only the phase's name: "0it [00:00, ?it/s]" says nothing.
            bar_format="{desc}" if unit is None else None,
            file=self._stream,
            leave=False,  # transient: cleared when the phase ends
            ncols=columns,
            nrows=lines,
            mininterval=0.2,
            ascii=None,
        )

    def _size(self) -> tuple[int, int]:
        """The terminal's columns and lines when a bar starts; 80x24 where it says 0 (a
        pseudo-terminal nobody sized, on which tqdm would draw nothing at all)."""
        try:
            size = os.get_terminal_size(self._stream.fileno())
        except (OSError, ValueError):  # not a terminal after all (io.UnsupportedOperation)
            return 80, 24
        return size.columns or 80, size.lines or 24

    @staticmethod
    def _description(phase: Phase, detail: str, columns: int) -> str:
        text = f"scan-root: {phase.value}"
        if not detail:
            return text
        # Cut, so that the count and the rate still fit the line; made safe, since a custom
        # check's title comes from the policy (cut first: an escape is never cut in half).
        width = max(DETAIL_MIN, columns - METER_WIDTH - len(text) - 3)
        if len(detail) > width:
            detail = detail[: width - 1] + "…"
        return f"{text} ({terminal_safe(detail)})"
