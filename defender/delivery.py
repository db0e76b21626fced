"""Sending spooled reports to the console: POST /api/v1/scans, with backoff while it is away.

urllib, not an HTTP library: the defender's image carries only the scanner's dependencies, and
one authenticated POST and GET per report is all it needs (docs/defender.md).
"""

from __future__ import annotations

import enum
import gzip
import http.client
import json
import logging
import random
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from scanner.version import __version__

from .spool import Spool

__all__ = ["Backoff", "ConsoleClient", "Outcome", "Reply", "flush"]

log = logging.getLogger(__name__)

SCANS = "/api/v1/scans"
TIMEOUT = 30.0
# A console's answers are small JSON objects; a larger one is not read whole.
MAX_ANSWER = 64 * 1024
USER_AGENT = f"scan-root-defender/{__version__}"


class Outcome(enum.Enum):
    DELIVERED = "delivered"  # stored now, or already (a retry of a report it has)
    RETRY = "retry"  # away, busy, failing: try the same report again later
    REFUSED = "refused"  # it will never take this report (4xx on the report itself)


@dataclass(frozen=True, slots=True)
class Reply:
    outcome: Outcome
    status: int | None  # the HTTP status, None when nothing answered
    reason: str  # for the log and, when refused, the next report
    retry_after: float | None = None


class ConsoleClient:
    """The console at `url` (http or https), authenticated with a bearer token."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        ca_file: str | None = None,
        timeout: float = TIMEOUT,
    ) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError("the console URL must be http:// or https:// with a host")
        if parsed.username or parsed.password or parsed.query or parsed.fragment:
            raise ValueError("the console URL takes no credentials, query or fragment")
        if not token or any(ord(c) < 0x21 or ord(c) > 0x7E for c in token):
            raise ValueError("the token is empty or not printable ASCII")
        self.base = url.rstrip("/")
        self._token = token
        self.timeout = timeout
        context = ssl.create_default_context(cafile=ca_file) if ca_file else None
        handlers: list[urllib.request.BaseHandler] = [_NoRedirect()]
        if context is not None:
            handlers.append(urllib.request.HTTPSHandler(context=context))
        # No proxy from the environment: a token goes to the console named, or nowhere.
        handlers.append(urllib.request.ProxyHandler({}))
        self._opener = urllib.request.build_opener(*handlers)

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        max_bytes: int = MAX_ANSWER,
    ) -> tuple[int, Mapping[str, str], bytes]:
        """(status, headers, body); raises OSError when nothing answers, or when the body is
        longer than `max_bytes` (no answer of the console's is)."""
        request = urllib.request.Request(self.base + path, data=body, method=method)
        request.add_header("Authorization", f"Bearer {self._token}")
        request.add_header("User-Agent", USER_AGENT)
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with self._opener.open(request, timeout=self.timeout) as answer:
                status, answer_headers = answer.status, dict(answer.headers.items())
                data = _read_bounded(answer, max_bytes + 1, self.timeout)
        except urllib.error.HTTPError as error:
            with error:
                status, answer_headers = error.code, dict(error.headers.items())
                data = _read_bounded(error, max_bytes + 1, self.timeout)
        except (http.client.HTTPException, ValueError) as error:
            raise OSError(f"{type(error).__name__}: {error}") from error
        if len(data) > max_bytes:
            raise OSError(f"the answer to {method} {path} is larger than {max_bytes} bytes")
        return status, answer_headers, data

    def send(self, report: bytes) -> Reply:
        """POST one report (gzip-compressed)."""
        try:
            status, headers, data = self.request(
                "POST",
                SCANS,
                gzip.compress(report, compresslevel=6),
                {"Content-Type": "application/json", "Content-Encoding": "gzip"},
            )
        except OSError as error:
            return Reply(Outcome.RETRY, None, f"console unreachable: {_why(error)}")
        return classify(status, headers, data)


class _Answer(Protocol):
    def read1(self, size: int = ..., /) -> bytes: ...


def _read_bounded(answer: _Answer, limit: int, timeout: float) -> bytes:
    """At most `limit` bytes of the body, in at most about 2 x `timeout` seconds.

    The socket timeout bounds each recv only: a console trickling a byte just inside it
    would hold the defender for hours (tests/test_defender_adversary.py). The clock is
    looked at between small reads instead.
    """
    deadline = time.monotonic() + timeout
    chunks: list[bytes] = []
    got = 0
    while got < limit:
        chunk = answer.read1(min(64 * 1024, limit - got))
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
        if time.monotonic() > deadline:
            raise OSError(f"the answer took longer than {timeout:.0f} s to arrive")
    return b"".join(chunks)


def _why(error: OSError) -> str:
    if isinstance(error, urllib.error.URLError):
        return str(error.reason)
    return error.strerror or str(error)


def classify(status: int, headers: Mapping[str, str], data: bytes) -> Reply:
    """What a console's answer means for the report sent."""
    said = _error_text(data)
    retry_after = _retry_after(headers)
    if status in (200, 201):
        return Reply(Outcome.DELIVERED, status, "stored" if status == 201 else "already stored")
    if status in (401, 403):
        # The token: rotated, revoked or mistyped. Never the report's fault, so it is kept and
        # retried (an operator fixes the secret; nothing is dropped meanwhile).
        return Reply(Outcome.RETRY, status, f"console refused the token ({status}): {said}")
    if status in (408, 429) or status >= 500:
        return Reply(Outcome.RETRY, status, f"console answered {status}: {said}", retry_after)
    if status in (409, 413, 415, 422, 400):
        # The report itself: a conflicting scan id, too large, malformed. Sending it again
        # would get the same answer.
        return Reply(Outcome.REFUSED, status, f"console refused the report ({status}): {said}")
    return Reply(Outcome.RETRY, status, f"console answered {status}: {said}", retry_after)


def _error_text(data: bytes) -> str:
    try:
        document = json.loads(data)
    except ValueError:
        return "(no JSON answer)"
    if isinstance(document, dict) and isinstance(document.get("error"), str):
        # The console's own words, shortened and kept printable for the log and a report.
        text: str = document["error"][:200]
        return "".join(c if c.isprintable() else "?" for c in text)
    return "(no error given)"


def _retry_after(headers: Mapping[str, str]) -> float | None:
    for name, value in headers.items():
        if name.lower() == "retry-after":
            try:
                return min(max(float(value), 0.0), 3600.0)
            except ValueError:
                return None
    return None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is answered as it is: following one would carry the token elsewhere."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


class Backoff:
    """Exponential backoff with full jitter (AWS's "Exponential Backoff And Jitter")."""

    def __init__(
        self,
        base: float = 2.0,
        cap: float = 300.0,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.base = base
        self.cap = cap
        self.failures = 0
        self._rng = rng

    def failed(self, retry_after: float | None = None) -> float:
        """The delay before the next attempt."""
        self.failures += 1
        ceiling = min(self.cap, self.base * 2 ** min(self.failures - 1, 30))
        delay: float = self._rng() * ceiling
        return max(delay, retry_after or 0.0)

    def succeeded(self) -> None:
        self.failures = 0


def flush(
    spool: Spool,
    client: ConsoleClient,
    *,
    deadline: float | None = None,
) -> Reply | None:
    """Send the spooled reports oldest first until one must wait; that reply (None: all sent).

    Delivered reports leave the spool; refused ones are set aside and said in the next report;
    a report that must wait stops the flush (the console is away: the rest would wait too).
    """
    for entry in spool.pending():
        if deadline is not None and time.monotonic() >= deadline:
            return Reply(Outcome.RETRY, None, "stopped: out of time")
        data = spool.read(entry)
        if data is None:
            continue
        reply = client.send(data)
        if reply.outcome is Outcome.DELIVERED:
            spool.remove(entry)
            log.info("delivered report %s (%s)", entry.scan_id, reply.reason)
        elif reply.outcome is Outcome.REFUSED:
            log.error("report %s: %s", entry.scan_id, reply.reason)
            spool.refused(entry, reply.reason)
        else:
            log.warning("report %s waits: %s", entry.scan_id, reply.reason)
            return reply
    return None
