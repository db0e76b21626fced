"""`GET /api/v1/policy`: the current policy's YAML for defenders, with a strong ETag (304 when
the defender's copy is current); 404 when no policy was ever saved (the defender then runs
without one, as it would without `--policy`)."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .kinds import Scope
from .policy_store import current_policy
from .web import authorize, error

__all__ = ["YAML_TYPE", "matches", "routes"]

# Defenders fetch it with their ingest token; scripts and people with a read or admin one.
FETCHERS = frozenset({Scope.INGEST, Scope.READ, Scope.ADMIN})
YAML_TYPE = "application/yaml"  # RFC 9512
MAX_TAGS = 64  # an If-None-Match longer than this is not a cache's, and is not matched


def matches(if_none_match: str, etag: str) -> bool:
    """Whether an If-None-Match value names `etag` (RFC 9110 section 13.1.2: `*`, or a list
    compared weakly, so `W/"x"` matches `"x"`)."""
    if if_none_match.strip() == "*":
        return True
    for count, candidate in enumerate(if_none_match.split(",")):
        if count >= MAX_TAGS:
            return False
        tag = candidate.strip()
        tag = tag.removeprefix("W/")
        if tag == etag:
            return True
    return False


async def policy(request: Request) -> Response:
    engine = request.app.state.settings.engine
    authorized = await authorize(request, engine, FETCHERS, "ingest or read")
    if isinstance(authorized, Response):
        return authorized
    if request.query_params:
        return error(422, "the policy takes no parameters", next(iter(request.query_params)))
    stored = await run_in_threadpool(current_policy, engine)
    if stored is None:
        return error(404, "no policy saved yet: defenders scan without one")
    # no-cache: a cache may keep it, but must ask again (with If-None-Match) before using it.
    headers = {"ETag": stored.etag, "Cache-Control": "no-cache"}
    given = request.headers.get("if-none-match")
    if given is not None and matches(given, stored.etag):
        return Response(status_code=304, headers=headers)
    return Response(
        stored.text.encode("utf-8"), media_type=f"{YAML_TYPE}; charset=utf-8", headers=headers
    )


routes = [Route("/api/v1/policy", policy, methods=["GET"])]
