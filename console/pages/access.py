"""Who is looking at a page: a read-scope Bearer token (scripts, monitoring) or a signed-in
user (the session cookie); anyone else is sent to the login page (or, with a token, answered
401). And the CSRF check every signed-in user's form passes."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from ..kinds import Scope
from ..web import authorize
from ..web_sessions import SESSION_COOKIE, SessionUser, session_user
from .render import render

__all__ = ["Viewer", "check_csrf", "login_redirect", "signed_in", "viewer"]

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


async def signed_in(request: Request) -> SessionUser | None:
    """The user of the request's session cookie, if it names a live session."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    settings = request.app.state.settings
    user: SessionUser | None = await run_in_threadpool(
        session_user, settings.engine, token, settings.limits()
    )
    return user


async def viewer(request: Request) -> Viewer | Response:
    """The viewer of a page, or the answer to give instead (a token's 401/403 JSON, or a
    redirect to the login page). A token is never taken from the URL."""
    if "authorization" in request.headers:
        engine = request.app.state.settings.engine
        authorized = await authorize(request, engine, READERS, "read")
        if isinstance(authorized, Response):
            return authorized
        return Viewer(name="token", token_id=authorized.token_id)
    user = await signed_in(request)
    if user is None:
        return login_redirect(request)
    return Viewer(name=user.name, user_id=user.user_id, csrf_token=user.csrf_token)


async def check_csrf(request: Request, who: Viewer) -> Response | None:
    """None when the POSTed form may be acted on; else the 403 page to answer.

    A signed-in user's browser sends the session cookie with any form, whichever site made it;
    only our pages know the session's CSRF token, so a form without it was not made by them.
    A Bearer token is no ambient credential a forged form could carry: it needs none. The form
    is read here (Starlette keeps it: a caller that read it already, bounded, is not read
    twice)."""
    if who.user_id is None:
        return None
    form = await request.form()
    sent = form.get("csrf_token")
    expected = who.csrf_token or ""
    if (
        isinstance(sent, str)
        and expected
        and hmac.compare_digest(sent.encode("utf-8", "surrogateescape"), expected.encode())
    ):
        return None
    return render(
        request,
        "refused.html",
        {
            "viewer": who,
            "message": "This form did not come from this console's pages (or it is too old): "
            "nothing was changed. Reload the page and try again.",
        },
        status=403,
    )
