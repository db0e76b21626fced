"""Sending spooled reports to the console: POST /api/v1/scans, with backoff while it is away.

http.client, not an HTTP library: the defender's image carries only the scanner's dependencies,
and one authenticated POST and GET per report is all it needs (docs/defender.md). It follows no
redirect and reads no proxy from the environment: the token goes to the console named, or
nowhere.
"""

from __future__ import annotations

import enum
import gzip
import http.client
import json
import logging
import random
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import IO

from scanner.version import __version__

from .spool import Spool

__all__ = ["Backoff", "ConsoleClient", "Outcome", "Reply", "flush"]

log = logging.getLogger(__name__)

SCANS = "/api/v1/scans"
TIMEOUT = 30.0
# A console's answers are small JSON objects; a larger one is not read whole.
MAX_ANSWER = 64 * 1024
CHUNK = 1 << 20  # a body written to a file goes in pieces of this size
USER_AGENT = f"scan-root-defender/{__version__}"
# The whole exchange (connect, send, status, headers, body) may take this many socket timeouts.
WHOLE_REQUEST = 2


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
        self._url = parsed
        self._context = ssl.create_default_context(cafile=ca_file) if ca_file else None

    def _connection(self) -> http.client.HTTPConnection:
        host, port = self._url.hostname or "", self._url.port
        if self._url.scheme == "https":
            context = self._context or ssl.create_default_context()
            return http.client.HTTPSConnection(host, port, timeout=self.timeout, context=context)
        return http.client.HTTPConnection(host, port, timeout=self.timeout)

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        max_bytes: int = MAX_ANSWER,
        into: IO[bytes] | None = None,
        whole_seconds: float | None = None,
    ) -> tuple[int, Mapping[str, str], bytes]:
        """(status, headers, body); raises OSError when nothing answers in time, or when the
        body is longer than `max_bytes` (no answer of the console's is).

        The socket timeout bounds each read only: a console trickling its status line, header
        lines or body a byte at a time just inside it would hold the defender for hours. A
        watchdog closes the socket once the whole exchange passes WHOLE_REQUEST x timeout."""
        sent = {"Authorization": f"Bearer {self._token}", "User-Agent": USER_AGENT}
        sent.update(headers or {})
        connection = self._connection()
        expired = threading.Event()
        opened: list[socket.socket] = []

        def cut() -> None:
            expired.set()
            # The socket as connected: http.client hands it to the response and forgets it.
            for sock in opened:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    continue  # already closed: the reader has its answer or its error

        answer: http.client.HTTPResponse | None = None
        deadline = whole_seconds if whole_seconds is not None else self.timeout * WHOLE_REQUEST
        watchdog = threading.Timer(deadline, cut)
        watchdog.daemon = True
        watchdog.start()
        try:
            connection.connect()  # bounded by the socket timeout
            if connection.sock is not None:
                opened.append(connection.sock)
            if expired.is_set():  # the name took the whole deadline to resolve
                raise OSError("no connection within the deadline")
            connection.request(method, self._url.path.rstrip("/") + path, body, sent)
            answer = connection.getresponse()
            status, answer_headers = answer.status, dict(answer.headers.items())
            data, longer = b"", False
            if into is not None and status == 200:
                written = 0
                while chunk := answer.read(CHUNK):
                    written += len(chunk)
                    if written > max_bytes:
                        longer = True
                        break
                    into.write(chunk)
            else:
                data = answer.read(max_bytes + 1)
                longer = len(data) > max_bytes
        except (http.client.HTTPException, ValueError) as error:
            raise OSError(f"{type(error).__name__}: {error}") from error
        except OSError as error:
            if expired.is_set():
                raise OSError(f"no whole answer within {deadline:.0f} s") from error
            raise
        finally:
            watchdog.cancel()
            if answer is not None:
                answer.close()  # the socket http.client handed to the response
            connection.close()
        if expired.is_set():
            raise OSError(f"no whole answer within {deadline:.0f} s")
        if longer:
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


def _why(error: OSError) -> str:
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
