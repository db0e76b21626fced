"""Who is looking at a page: a read-scope Bearer token (scripts, monitoring) or a signed-in
user; anyone else is sent to the login page (or, with a token, answered 401)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from ..kinds import Scope
from ..web import authorize

__all__ = ["Viewer", "login_redirect", "viewer"]

READERS = frozenset({Scope.READ, Scope.ADMIN})


@dataclass(frozen=True, slots=True)
class Viewer:
    """A token (`token_id`) or a signed-in user (`user_id`, and the session's CSRF token that
    every form of the page must send back)."""

    name: str
    token_id: int | None = None
    user_id: int | None = None
    csrf_token: str | None = None


def login_redirect(request: Request) -> RedirectResponse:
    """To the login page, which brings the user back here (a path on this site only)."""
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(here, safe='')}", status_code=303)


async def viewer(request: Request) -> Viewer | Response:
    """The viewer of a page, or the answer to give instead (a token's 401/403 JSON, or a
    redirect to the login page). A token is never taken from the URL."""
    if "authorization" in request.headers:
        engine = request.app.state.settings.engine
        authorized = await authorize(request, engine, READERS, "read")
        if isinstance(authorized, Response):
            return authorized
        return Viewer(name="token", token_id=authorized.token_id)
    return login_redirect(request)
