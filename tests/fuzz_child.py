"""The fuzz suite's child: runs scan-root's command line in-process on each case of a batch.

Reads a JSON list of argv lists from the file named by argv[1]; for each case prints one JSON
line `{"case", "code", "seconds", "peak_rss_kb"}` (flushed, so that the parent knows which case a
hang or a crash stopped at). One process for the whole batch: a Python start per mutation would
cost more than the scans, and the peak RSS of the batch bounds the peak of every case in it.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import time

from child import peak_rss_kib

from scanner.cli import main


def run(cases: list[list[str]]) -> None:
    for index, argv in enumerate(cases):
        started = time.monotonic()
        # A text stream with a .buffer, as the real stdout has (a writer may use either).
        sink = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="backslashreplace")
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            code = main(argv)
        sink.flush()
        if code == 5:
            # The traceback is what the parent shows: the internal error to fix.
            text = sink.buffer.getvalue()[-4000:].decode("utf-8", "backslashreplace")
            print(f"case {index}: {text}", file=sys.stderr, flush=True)
        seconds = time.monotonic() - started
        peak = peak_rss_kib()
        line = {"case": index, "code": code, "seconds": seconds, "peak_rss_kb": peak}
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    with open(sys.argv[1], encoding="utf-8") as handle:
        run(json.load(handle))
