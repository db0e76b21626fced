"""What every endpoint shares: JSON errors and the Bearer token, checked for a scope."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from .accounts import token_scopes
from .headers import ERROR_HEADERS
from .kinds import Scope

__all__ = ["Authorized", "authorize", "bearer", "error"]


def error(
    status: int,
    message: str,
    field: str | None = None,
    *,
    retry_after: bool = False,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, str] = {"error": message}
    if field is not None:
        body["field"] = field
    sent = {**ERROR_HEADERS, **(headers or {})}
    if status == 401:
        sent["WWW-Authenticate"] = "Bearer"
    if retry_after:
        sent["Retry-After"] = "1"
    return JSONResponse(body, status_code=status, headers=sent)


def bearer(request: Request) -> str | None:
    values = request.headers.getlist("authorization")
    if len(values) != 1:
        # Two Authorization headers: a proxy in front may check one and we the other.
        return None
    scheme, _, token = values[0].partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


class Authorized:
    """A live token holding one of the scopes asked for: its id."""

    __slots__ = ("token_id",)

    def __init__(self, token_id: int) -> None:
        self.token_id = token_id


async def authorize(
    request: Request, engine: Engine, scopes: frozenset[Scope], what: str
) -> Authorized | JSONResponse:
    """The token's id when it holds any of `scopes`; else the 401 or 403 to answer."""
    token = bearer(request)
    if token is None:
        return error(401, "Authorization: a Bearer token is required", "Authorization")
    found = await run_in_threadpool(token_scopes, engine, token)
    if found is None:
        return error(401, "Authorization: unknown or revoked token", "Authorization")
    token_id, held = found
    if not held & scopes:
        return error(403, f"Authorization: the token lacks the {what} scope", "Authorization")
    return Authorized(token_id)
