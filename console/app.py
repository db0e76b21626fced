"""The console's ASGI application (Starlette): the ingest endpoint, the read API's routes
(console/read_api.py) and JSON errors.

Every answer to bad input is a 4xx with `{"error": ..., "field": ...}`; a 500 would be a bug.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.exc import DataError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from scanner.jsonload import JSONInputError, load_json

from .body import BodyError, read_body
from .database import DB_ENV, default_url, engine_for
from .kinds import Scope
from .pages import routes as page_routes
from .policy_api import routes as policy_routes
from .read_api import routes as read_routes
from .report_schema import ReportError, ReportRecord, parse_report
from .store import Stored, store_report
from .vulndb_api import routes as vulndb_routes
from .web import authorize
from .web import error as _error
from .web_sessions import Limits

__all__ = ["Settings", "app_from_environment", "create_app", "parse_duration"]

log = logging.getLogger("console")

DEFAULT_MAX_REPORT_BYTES = 64 * 1024 * 1024
# A report's values: ~15 a finding, so 2,000,000 is over 100,000 findings. Bounds what a body
# can make of memory (jsonload.count_nodes, counted before parsing).
MAX_REPORT_VALUES = 2_000_000
MAX_REPORT_DEPTH = 64
MAX_BYTES_ENV = "SCAN_ROOT_CONSOLE_MAX_REPORT_BYTES"
CONCURRENT_ENV = "SCAN_ROOT_CONSOLE_MAX_CONCURRENT_REPORTS"
DEFAULT_CONCURRENT_REPORTS = 4
WINDOW_ENV = "SCAN_ROOT_CONSOLE_DEPLOYED_WINDOW"
VULNDB_ENV = "SCAN_ROOT_CONSOLE_VULNDB"
DEFAULT_DEPLOYED_WINDOW = timedelta(hours=24)
_DURATION = re.compile(r"([1-9][0-9]{0,6})([smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_duration(text: str) -> timedelta:
    """`90s`, `30m`, `24h`, `7d`: a positive whole number and its unit; ValueError otherwise."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"not a duration like 24h, 30m or 7d: {text!r}")
    return timedelta(**{_UNITS[match[2]]: int(match[1])})


@dataclass(frozen=True, slots=True)
class Settings:
    engine: Engine
    max_report_bytes: int = DEFAULT_MAX_REPORT_BYTES
    # An image is deployed while a container running it was reported within this long.
    deployed_window: timedelta = DEFAULT_DEPLOYED_WINDOW
    # Reports read, parsed and stored at once by this process: each may hold up to
    # max_report_bytes and ~10 times that parsed, so this is what bounds memory. Parsing holds
    # the GIL: more at once would not go faster. A report waits for a slot this long, then 503.
    max_concurrent_reports: int = DEFAULT_CONCURRENT_REPORTS
    slot_wait_seconds: float = 10.0
    # A body holds a slot while it arrives: a sender that stalls this long between two reads,
    # or takes this long in all, is answered 408 and its slot given back (a slow sender could
    # otherwise hold every slot). 64 MiB in 300 s is 220 KB/s.
    body_idle_seconds: float = 30.0
    body_seconds: float = 300.0
    # Web sign-in: a session ends this long after sign-in whatever happens, or after this long
    # unused; a user name may fail this many sign-ins, a client address this many (more: an
    # office behind one address), within the window, before it must wait (429).
    session_lifetime: timedelta = timedelta(hours=12)
    session_idle: timedelta = timedelta(hours=1)
    login_failures_per_user: int = 5
    login_failures_per_address: int = 20
    login_failure_window: timedelta = timedelta(minutes=15)
    # The advisory database defenders fetch (`GET /api/v1/vulndb`); None: the console serves none.
    vulndb: Path | None = None

    def limits(self) -> Limits:
        return Limits(
            lifetime=self.session_lifetime,
            idle=self.session_idle,
            failures_per_user=self.login_failures_per_user,
            failures_per_address=self.login_failures_per_address,
            failure_window=self.login_failure_window,
        )


def _is_json(content_type: str | None) -> bool:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media == "application/json"


def _parse(data: bytes) -> ReportRecord:
    # UTF-8 only, without a BOM (RFC 8259): json.loads would take UTF-16 and UTF-32 too, and a
    # filter in front of the console that reads UTF-8 would not see what the console stores.
    if data.startswith(b"\xef\xbb\xbf"):
        raise JSONInputError("body: not valid JSON: starts with a byte order mark")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise JSONInputError("body: not valid JSON: not UTF-8 text") from None
    document = load_json(
        text,
        what="body",
        max_bytes=len(data),  # the size was bounded while reading
        max_depth=MAX_REPORT_DEPTH,
        max_nodes=MAX_REPORT_VALUES,
        unique_keys=True,
    )
    return parse_report(document)


def _parse_and_store(data: bytes, engine: Engine, token_id: int) -> Stored:
    return store_report(engine, _parse(data), token_id=token_id)


async def ingest(request: Request) -> Response:
    settings: Settings = request.app.state.settings
    authorized = await authorize(request, settings.engine, frozenset({Scope.INGEST}), "ingest")
    if isinstance(authorized, Response):
        return authorized
    token_id = authorized.token_id
    if not _is_json(request.headers.get("content-type")):
        return _error(415, "Content-Type: must be application/json", "Content-Type")
    slots = _slots(request.app, settings)
    try:
        async with asyncio.timeout(settings.slot_wait_seconds):
            await slots.acquire()
    except TimeoutError:
        return _error(503, "busy: too many reports in progress; retry later", retry_after=True)
    try:
        return await _take(request, settings, token_id)
    finally:
        slots.release()


def _slots(app: Starlette, settings: Settings) -> asyncio.Semaphore:
    """The semaphore bounding this process's reports in progress (made anew when the
    settings change, as the tests change them)."""
    current = getattr(app.state, "slots", None)
    if current is None or current[0] is not settings:
        current = (settings, asyncio.Semaphore(settings.max_concurrent_reports))
        app.state.slots = current
    semaphore: asyncio.Semaphore = current[1]
    return semaphore


async def _within(chunks: AsyncIterator[bytes], idle_seconds: float) -> AsyncIterator[bytes]:
    """`chunks`, each of which must arrive within `idle_seconds` (else TimeoutError)."""
    iterator = aiter(chunks)
    while True:
        try:
            async with asyncio.timeout(idle_seconds):
                chunk = await anext(iterator)
        except StopAsyncIteration:
            return
        yield chunk


async def _take(request: Request, settings: Settings, token_id: int) -> Response:
    """The report read, checked and stored (within a slot)."""
    try:
        async with asyncio.timeout(settings.body_seconds):
            data = await read_body(
                _within(request.stream(), settings.body_idle_seconds),
                encoding=request.headers.get("content-encoding"),
                declared_length=request.headers.get("content-length"),
                max_bytes=settings.max_report_bytes,
            )
    except TimeoutError:
        return _error(
            408, "body: not received in time; the connection was too slow or stalled", "body"
        )
    except BodyError as error:
        field = "Content-Encoding" if error.status == 415 else "body"
        return _error(error.status, error.message, field)
    try:
        # One trip to a worker thread for both: each costs a switch and a wait for the GIL.
        stored = await run_in_threadpool(_parse_and_store, data, settings.engine, token_id)
    except JSONInputError as error:
        return _error(422, str(error), "body")
    except ReportError as error:
        return _error(422, str(error), error.field)
    except DataError:
        # Validation keeps every value within what the columns hold; this is the net under it.
        log.exception("a value the database refused")
        return _error(422, "body: a value the database refuses", "body")
    if stored.conflict:
        # Not a replay: another report claims this scan_id. The first stays, whole; this one
        # is not merged into it nor stored beside it, and the sender is told so.
        return JSONResponse(
            {
                "scan_id": str(stored.scan_id),
                "stored": False,
                "error": "scan_id: a different report is stored under this scan_id; "
                "the first one is kept",
                "field": "scan_id",
            },
            status_code=409,
        )
    answer = {"scan_id": str(stored.scan_id), "stored": stored.created}
    return JSONResponse(answer, status_code=201 if stored.created else 200)


async def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    # Starlette's own headers kept: a 405's Allow names the methods the path takes.
    return _error(error.status_code, str(error.detail), headers=error.headers)


async def _unavailable(request: Request, error: Exception) -> Response:
    log.error("database unavailable: %s", type(error).__name__)
    return _error(503, "the database is unavailable; retry later", retry_after=True)


def create_app(settings: Settings) -> Starlette:
    app = Starlette(
        routes=[
            Route("/api/v1/scans", ingest, methods=["POST"]),
            *read_routes,
            *policy_routes,
            *vulndb_routes,
            *page_routes,
        ],
        exception_handlers={
            HTTPException: _http_error,
            # The database down or locked too long, or every pooled connection busy: overload,
            # not a bug; the defender retries.
            OperationalError: _unavailable,
            PoolTimeout: _unavailable,
        },
    )
    app.state.settings = settings
    app.state.vulndb_snapshots = {}  # the advisory database's copies (console/vulndb_api.py)
    return app


def app_from_environment() -> Starlette:
    """The app as `serve` (and each of its worker processes) configures it: from the
    environment, since uvicorn's workers import the app anew."""
    url = os.environ.get(DB_ENV) or default_url()
    max_bytes = int(os.environ.get(MAX_BYTES_ENV, DEFAULT_MAX_REPORT_BYTES))
    concurrent = int(os.environ.get(CONCURRENT_ENV, DEFAULT_CONCURRENT_REPORTS))
    window = os.environ.get(WINDOW_ENV)
    vulndb = os.environ.get(VULNDB_ENV)
    return create_app(
        Settings(
            engine=engine_for(url),
            max_report_bytes=max_bytes,
            max_concurrent_reports=concurrent,
            deployed_window=parse_duration(window) if window else DEFAULT_DEPLOYED_WINDOW,
            vulndb=Path(vulndb) if vulndb else None,
        )
    )
