"""The read API: `GET /api/v1/images`, `/api/v1/images/{id}`, `/api/v1/hosts`, `/api/v1/tasks`.

A token with the `read` (or `admin`) scope, or a signed-in user's session, reads; an `ingest`
token gets 403. Parameters are checked before any query (console/params.py): a bad one is a
422 naming it, never a 500.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from . import params, reads
from .kinds import Scope
from .web import authorize, error
from .web_sessions import SESSION_COOKIE, session_user

__all__ = ["routes"]

READERS = frozenset({Scope.READ, Scope.ADMIN})
MAX_ID = 2**31 - 1  # the ids are 32-bit integers on both engines
PAGING = ("sort", "page", "per_page")


def _image_query(given: dict[str, str]) -> reads.ImageQuery:
    key, descending = params.sort(given, reads.ImageSort, "-last_scanned")
    return reads.ImageQuery(
        deployed=params.boolean(given, "deployed"),
        fargate=params.boolean(given, "fargate"),
        hosts=params.expression(given, "hosts"),
        search=params.expression(given, "search"),
        sort=key,
        descending=descending,
        page=params.page(given),
    )


def _host_query(given: dict[str, str]) -> reads.HostQuery:
    key, descending = params.sort(given, reads.HostSort, "-last_seen")
    return reads.HostQuery(
        deployed=params.boolean(given, "deployed"),
        fargate=params.boolean(given, "fargate"),
        hosts=params.expression(given, "hosts"),
        sort=key,
        descending=descending,
        page=params.page(given),
    )


def _task_query(given: dict[str, str]) -> reads.TaskQuery:
    key, descending = params.sort(given, reads.TaskSort, "-last_seen")
    return reads.TaskQuery(
        deployed=params.boolean(given, "deployed"),
        fargate=params.boolean(given, "fargate"),
        hosts=params.expression(given, "hosts"),
        search=params.expression(given, "search"),
        sort=key,
        descending=descending,
        page=params.page(given),
    )


async def _reader(request: Request) -> Response | None:
    """None when a read token or a signed-in user's session asks; else the 401/403 to answer.
    A request with an Authorization header is judged by its token alone."""
    settings = request.app.state.settings
    if "authorization" not in request.headers:
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie:
            user = await run_in_threadpool(session_user, settings.engine, cookie, settings.limits())
            if user is not None:
                return None
    allowed = await authorize(request, settings.engine, READERS, "read")
    return allowed if isinstance(allowed, Response) else None


def _since(request: Request) -> datetime:
    """The start of the deployed window: a container seen since then is current."""
    window = request.app.state.settings.deployed_window
    result: datetime = datetime.now(UTC) - window
    return result


def _listing(
    allowed: tuple[str, ...],
    make: Callable[[dict[str, str]], Any],
    run: Callable[[Any, Any, datetime], dict[str, Any]],
) -> Callable[[Request], Any]:
    async def endpoint(request: Request) -> Response:
        engine = request.app.state.settings.engine
        denied = await _reader(request)
        if denied is not None:
            return denied
        try:
            query = make(params.single(request.query_params.multi_items(), allowed + PAGING))
        except params.ParamError as refused:
            return error(422, refused.message, refused.field)
        answer = await run_in_threadpool(run, engine, query, _since(request))
        return JSONResponse(answer)

    return endpoint


async def image(request: Request) -> Response:
    engine = request.app.state.settings.engine
    denied = await _reader(request)
    if denied is not None:
        return denied
    try:
        params.single(request.query_params.multi_items(), ())
    except params.ParamError as refused:
        return error(422, refused.message, refused.field)
    text = request.path_params["image_id"]
    if not text.isascii() or not text.isdigit() or len(text) > 10:
        return error(422, "id: must be an image's id (a whole number)", "id")
    image_id = int(text)
    answer = None
    if 1 <= image_id <= MAX_ID:
        answer = await run_in_threadpool(reads.image_details, engine, image_id, _since(request))
    if answer is None:
        return error(404, "no image with this id", "id")
    return JSONResponse(answer)


routes = [
    Route(
        "/api/v1/images",
        _listing(("deployed", "fargate", "hosts", "search"), _image_query, reads.image_page),
        methods=["GET"],
    ),
    Route("/api/v1/images/{image_id}", image, methods=["GET"]),
    Route(
        "/api/v1/hosts",
        _listing(("deployed", "fargate", "hosts"), _host_query, reads.host_page),
        methods=["GET"],
    ),
    Route(
        "/api/v1/tasks",
        _listing(("deployed", "fargate", "hosts", "search"), _task_query, reads.task_page),
        methods=["GET"],
    ),
]
