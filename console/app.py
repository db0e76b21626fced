"""The console's ASGI application (Starlette): the ingest endpoint and JSON errors.

Every answer to bad input is a 4xx with `{"error": ..., "field": ...}`; a 500 would be a bug.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from datetime import timedelta

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

from .accounts import token_scopes
from .body import BodyError, read_body
from .database import DB_ENV, default_url, engine_for
from .kinds import Scope
from .report_schema import ReportError, ReportRecord, parse_report
from .store import store_report

__all__ = ["Settings", "app_from_environment", "create_app", "parse_duration"]

log = logging.getLogger("console")

DEFAULT_MAX_REPORT_BYTES = 64 * 1024 * 1024
# A report's values: ~15 a finding, so 2,000,000 is over 100,000 findings. Bounds what a body
# can make of memory (jsonload.count_nodes, counted before parsing).
MAX_REPORT_VALUES = 2_000_000
MAX_REPORT_DEPTH = 64
MAX_BYTES_ENV = "SCAN_ROOT_CONSOLE_MAX_REPORT_BYTES"
WINDOW_ENV = "SCAN_ROOT_CONSOLE_DEPLOYED_WINDOW"
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


def _error(status: int, message: str, field: str | None = None) -> JSONResponse:
    body: dict[str, str] = {"error": message}
    if field is not None:
        body["field"] = field
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, headers=headers)


def _bearer(request: Request) -> str | None:
    value = request.headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _is_json(content_type: str | None) -> bool:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media == "application/json"


def _parse(data: bytes) -> ReportRecord:
    document = load_json(
        data,
        what="body",
        max_bytes=len(data),  # the size was bounded while reading
        max_depth=MAX_REPORT_DEPTH,
        max_nodes=MAX_REPORT_VALUES,
    )
    return parse_report(document)


async def ingest(request: Request) -> Response:
    settings: Settings = request.app.state.settings
    token = _bearer(request)
    if token is None:
        return _error(401, "Authorization: a Bearer token is required", "Authorization")
    found = await run_in_threadpool(token_scopes, settings.engine, token)
    if found is None:
        return _error(401, "Authorization: unknown or revoked token", "Authorization")
    token_id, scopes = found
    if Scope.INGEST not in scopes:
        return _error(403, "Authorization: the token lacks the ingest scope", "Authorization")
    if not _is_json(request.headers.get("content-type")):
        return _error(415, "Content-Type: must be application/json", "Content-Type")
    try:
        data = await read_body(
            request.stream(),
            encoding=request.headers.get("content-encoding"),
            declared_length=request.headers.get("content-length"),
            max_bytes=settings.max_report_bytes,
        )
    except BodyError as error:
        field = "Content-Encoding" if error.status == 415 else "body"
        return _error(error.status, error.message, field)
    try:
        report = await run_in_threadpool(_parse, data)
    except JSONInputError as error:
        return _error(422, str(error), "body")
    except ReportError as error:
        return _error(422, str(error), error.field)
    try:
        stored = await run_in_threadpool(store_report, settings.engine, report, token_id=token_id)
    except DataError:
        # Validation keeps every value within what the columns hold; this is the net under it.
        log.exception("a value the database refused")
        return _error(422, "body: a value the database refuses", "body")
    answer = {"scan_id": str(stored.scan_id), "stored": stored.created}
    return JSONResponse(answer, status_code=201 if stored.created else 200)


async def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    return _error(error.status_code, str(error.detail))


async def _unavailable(request: Request, error: Exception) -> Response:
    log.error("database unavailable: %s", type(error).__name__)
    return _error(503, "the database is unavailable; retry later")


def create_app(settings: Settings) -> Starlette:
    app = Starlette(
        routes=[Route("/api/v1/scans", ingest, methods=["POST"])],
        exception_handlers={
            HTTPException: _http_error,
            # The database down or locked too long, or every pooled connection busy: overload,
            # not a bug; the defender retries.
            OperationalError: _unavailable,
            PoolTimeout: _unavailable,
        },
    )
    app.state.settings = settings
    return app


def app_from_environment() -> Starlette:
    """The app as `serve` (and each of its worker processes) configures it: from the
    environment, since uvicorn's workers import the app anew."""
    url = os.environ.get(DB_ENV) or default_url()
    max_bytes = int(os.environ.get(MAX_BYTES_ENV, DEFAULT_MAX_REPORT_BYTES))
    window = os.environ.get(WINDOW_ENV)
    return create_app(
        Settings(
            engine=engine_for(url),
            max_report_bytes=max_bytes,
            deployed_window=parse_duration(window) if window else DEFAULT_DEPLOYED_WINDOW,
        )
    )
