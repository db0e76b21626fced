"""Waiting for a console process started by a test or a bench until it answers on loopback."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable

import httpx

__all__ = ["wait_until_answering"]


def wait_until_answering(
    process: subprocess.Popen[bytes], base_url: str, timeout: float, output: Callable[[], str]
) -> None:
    """Poll `base_url` until the console answers; RuntimeError quoting `output()` (what the
    process printed) when it exits first or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            httpx.get(f"{base_url}/", timeout=1)
            return
        except httpx.TransportError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the console did not start: {output()}") from None
            time.sleep(0.05)
