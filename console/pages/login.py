"""Signing in and out of the web views: the login form (CSRF-protected), sessions made and
ended, `/` sent to the first view."""

from __future__ import annotations

import hmac
import re
import secrets

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from ..web_sessions import (
    SESSION_COOKIE,
    check_password,
    clear_failures,
    end_session,
    record_failure,
    retry_after,
    start_session,
)
from .access import check_csrf, viewer
from .render import render

__all__ = ["HOME", "LOGIN_CSRF_COOKIE", "local_next", "routes"]

HOME = "/monitor/compliance/images/deployed"
# The login form's CSRF token (double submit): the form's hidden field must equal this
# cookie, which another site can neither read nor set (SameSite=Strict, HttpOnly).
LOGIN_CSRF_COOKIE = "scan_root_login_csrf"
TEMPLATE = "login.html"
FORM_TYPE = "application/x-www-form-urlencoded"
MAX_FORM_BYTES = 16 * 1024
MAX_FORM_FIELDS = 8
WRONG = "Wrong user name or password"
_TOKEN = re.compile(r"[A-Za-z0-9_-]{32,64}")


class FormRefused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def local_next(text: str) -> str:
    """`text` when it is a path on this site (one leading `/`, no scheme or host, no
    backslash a browser would read as `/`, nothing unprintable a browser would drop); else
    the first view. Keeps the login page from sending anyone elsewhere."""
    if (
        text.startswith("/")
        and not text.startswith("//")
        and "\\" not in text
        and text.isprintable()
        and len(text) <= 2048
    ):
        return text
    return HOME


async def _form(request: Request) -> FormData:
    """The POSTed form, bounded before it is read."""
    media = (request.headers.get("content-type") or "").split(";", 1)[0].strip().lower()
    if media != FORM_TYPE:
        raise FormRefused(415, f"Content-Type: must be {FORM_TYPE}")
    length = request.headers.get("content-length")
    if length is None or not length.isascii() or not length.isdigit() or len(length) > 12:
        raise FormRefused(411, "Content-Length: required")
    if int(length) > MAX_FORM_BYTES:
        raise FormRefused(413, "the form is too large")
    return await request.form(max_files=0, max_fields=MAX_FORM_FIELDS)


def _field(form: FormData, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def _login_page(
    request: Request, next_path: str, *, error: str | None = None, status: int = 200
) -> Response:
    """The form, with this browser's login CSRF token (kept if it has one: two tabs both
    work)."""
    token = request.cookies.get(LOGIN_CSRF_COOKIE) or ""
    if _TOKEN.fullmatch(token) is None:
        token = secrets.token_urlsafe(32)
    response = render(
        request,
        TEMPLATE,
        {"csrf_token": token, "next": next_path, "error": error},
        status=status,
    )
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        path="/login",
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )
    return response


async def login_form(request: Request) -> Response:
    return _login_page(request, local_next(request.query_params.get("next", "")))


def _address(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"


async def login(request: Request) -> Response:
    settings = request.app.state.settings
    engine, limits = settings.engine, settings.limits()
    try:
        form = await _form(request)
    except FormRefused as refused:
        return _login_page(request, HOME, error=refused.message, status=refused.status)
    next_path = local_next(_field(form, "next"))
    sent, kept = _field(form, "csrf_token"), request.cookies.get(LOGIN_CSRF_COOKIE) or ""
    if not kept or not hmac.compare_digest(sent.encode(), kept.encode()):
        # A form another site posted (login CSRF: signing the victim in as the attacker), or
        # one from before the cookie was cleared.
        error = "The sign-in form expired; sign in again."
        return _login_page(request, next_path, error=error, status=403)
    name, password = _field(form, "username"), _field(form, "password")
    address = _address(request)
    wait = await run_in_threadpool(retry_after, engine, name, address, limits)
    if wait is not None:
        minutes = (wait + 59) // 60
        error = f"Too many failed sign-ins: try again in {minutes} minute(s)."
        response = _login_page(request, next_path, error=error, status=429)
        response.headers["Retry-After"] = str(wait)
        return response
    user_id = await run_in_threadpool(check_password, engine, name, password)
    if user_id is None:
        await run_in_threadpool(record_failure, engine, name, address, limits)
        return _login_page(request, next_path, error=WRONG, status=401)
    await run_in_threadpool(clear_failures, engine, name)
    token = await run_in_threadpool(start_session, engine, user_id, limits)
    response = RedirectResponse(next_path, status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(limits.lifetime.total_seconds()),
        path="/",
        httponly=True,
        samesite="lax",
        secure=_secure(request),
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


async def logout(request: Request) -> Response:
    who = await viewer(request)
    if isinstance(who, Response):
        return who
    if who.user_id is None:
        return RedirectResponse("/login", status_code=303)  # a token has no session to end
    try:
        await _form(request)
    except FormRefused as refused:
        return Response(refused.message, status_code=refused.status)
    refused_csrf = await check_csrf(request, who)
    if refused_csrf is not None:
        return refused_csrf
    engine = request.app.state.settings.engine
    await run_in_threadpool(end_session, engine, request.cookies.get(SESSION_COOKIE) or "")
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax")
    return response


async def home(request: Request) -> Response:
    return RedirectResponse(HOME, status_code=303)


routes = [
    Route("/", home, methods=["GET"]),
    Route("/login", login_form, methods=["GET"]),
    Route("/login", login, methods=["POST"]),
    Route("/logout", logout, methods=["POST"]),
]
