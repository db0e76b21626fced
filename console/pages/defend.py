"""Defend > Compliance > Containers and images > Deployed: the policy's rules in evaluation
order, its collections and custom checks; each change saves a new policy version."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from scanner.policy import Policy

from .. import policy_edit
from ..kinds import Scope
from ..policy_edit import EditError
from ..policy_store import (
    PolicyConflict,
    PolicyRefused,
    StoredPolicy,
    current_policy,
    save_policy,
    validate,
)
from ..web import authorize
from . import access
from .access import Viewer, viewer
from .render import render

__all__ = ["PAGE", "routes"]

PAGE = "/defend/compliance/containers"
TEMPLATE = "defend/containers.html"
WRITERS = frozenset({Scope.ADMIN})
FORM_TYPE = "application/x-www-form-urlencoded"
# The largest form: a custom check's script (policy_edit.MAX_SCRIPT_BYTES), percent-encoded
# (up to three bytes a byte), and its other fields.
MAX_FORM_BYTES = 3 * policy_edit.MAX_SCRIPT_BYTES + 16 * 1024
MAX_FORM_FIELDS = 64
SEVERITIES = ("low", "medium", "high", "critical")
# Past this many collections a rule's edit form lists only its own (and takes one more by
# name): listing all in every rule made the page rules x collections long.
SELECT_LIMIT = 50

Edit = Callable[[dict[str, Any], FormData], None]


class Refusal(Exception):
    """A write refused with a message for the page, and its status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@functools.lru_cache(maxsize=4)
def _shown(text: str) -> Policy:
    """A stored version as the scanner reads it, for display: parsed once, not on every view
    (a policy near the 1 MiB bound takes seconds to validate)."""
    return validate(text)


async def page(request: Request) -> Response:
    who = await viewer(request)
    if isinstance(who, Response):
        return who
    return await _page(request, who)


async def _page(
    request: Request, who: Viewer, *, error: str | None = None, status: int = 200
) -> Response:
    engine = request.app.state.settings.engine
    stored = await run_in_threadpool(current_policy, engine)
    policy = await run_in_threadpool(_shown, stored.text) if stored is not None else None
    context = {
        "viewer": who,
        "stored": stored,
        "policy": policy,
        "version": stored.version if stored is not None else 0,
        "can_write": await _can_write(request, who),
        "error": error,
        "effects": policy_edit.EFFECTS,
        "severities": SEVERITIES,
        "select_limit": SELECT_LIMIT,
    }
    return render(request, TEMPLATE, context, status=status)


async def _can_write(request: Request, who: Viewer) -> bool:
    """A signed-in user, or a token with the admin scope (a read token may only look)."""
    if who.user_id is not None:
        return True
    engine = request.app.state.settings.engine
    return not isinstance(await authorize(request, engine, WRITERS, "admin"), Response)


async def _form(request: Request) -> FormData:
    """The POSTed form, bounded before it is read (the server holds the body to its length)."""
    media = (request.headers.get("content-type") or "").split(";", 1)[0].strip().lower()
    if media != FORM_TYPE:
        raise Refusal(415, f"Content-Type: must be {FORM_TYPE}")
    length = request.headers.get("content-length")
    if length is None or not length.isascii() or not length.isdigit() or len(length) > 12:
        raise Refusal(411, "Content-Length: required")
    if int(length) > MAX_FORM_BYTES:
        raise Refusal(413, f"the form is larger than {MAX_FORM_BYTES} bytes")
    return await request.form(max_files=0, max_fields=MAX_FORM_FIELDS)


def _field(form: FormData, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


def _saved_by(who: Viewer) -> str:
    return who.name if who.user_id is not None else f"token #{who.token_id}"


def _apply(engine: Any, edit: Edit, form: FormData, base: int, who: str) -> StoredPolicy:
    stored = current_policy(engine)
    document = policy_edit.load_document(stored.text if stored is not None else None)
    edit(document, form)
    text = policy_edit.dump(document)
    if stored is not None and stored.version == base and stored.text == text:
        return stored  # nothing changed (a top rule moved up): no new version to fetch
    return save_policy(engine, text, who, base=base)


def _writer(edit: Edit) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        who = await viewer(request)
        if isinstance(who, Response):
            return who
        engine = request.app.state.settings.engine
        if who.user_id is None:
            allowed = await authorize(request, engine, WRITERS, "admin")
            if isinstance(allowed, Response):
                return allowed
        try:
            form = await _form(request)
        except Refusal as refused:
            return await _page(request, who, error=refused.message, status=refused.status)
        refused_csrf = await access.check_csrf(request, who)
        if refused_csrf is not None:
            return refused_csrf
        base = _field(form, "version")
        if not base.isascii() or not base.isdigit() or len(base) > 9:
            return await _page(request, who, error="version: missing (reload the page)", status=422)
        try:
            await run_in_threadpool(_apply, engine, edit, form, int(base), _saved_by(who))
        except (EditError, PolicyRefused) as refused:
            return await _page(request, who, error=str(refused), status=422)
        except PolicyConflict as conflict:
            return await _page(request, who, error=str(conflict), status=409)
        return RedirectResponse(PAGE, status_code=303)

    return endpoint


def _new_collection(document: dict[str, Any], form: FormData) -> None:
    policy_edit.add_collection(document, _field(form, "name"), _field(form, "hosts"))


def _new_rule(document: dict[str, Any], form: FormData) -> None:
    policy_edit.add_rule(
        document,
        _field(form, "name"),
        _field(form, "collection"),
        _field(form, "effect"),
        _field(form, "checks"),
    )


def _edit_rule(document: dict[str, Any], form: FormData) -> None:
    collections = [value for value in form.getlist("collections") if isinstance(value, str)]
    policy_edit.edit_rule(
        document,
        _field(form, "rule"),
        _field(form, "name"),
        [name for name in collections if name],
        _field(form, "effects"),
    )


def _move_rule(document: dict[str, Any], form: FormData) -> None:
    policy_edit.move_rule(document, _field(form, "rule"), _field(form, "direction"))


def _enable_rule(document: dict[str, Any], form: FormData) -> None:
    enabled = _field(form, "enabled")
    if enabled not in ("true", "false"):
        raise EditError("enabled: true or false")
    policy_edit.set_enabled(document, _field(form, "rule"), enabled == "true")


def _delete_rule(document: dict[str, Any], form: FormData) -> None:
    policy_edit.delete_rule(document, _field(form, "rule"))


def _new_check(document: dict[str, Any], form: FormData) -> None:
    policy_edit.add_custom_check(
        document,
        _field(form, "id"),
        _field(form, "name"),
        _field(form, "severity"),
        _field(form, "description"),
        _field(form, "script"),
    )


routes = [
    Route(PAGE, page, methods=["GET"]),
    Route(f"{PAGE}/collections", _writer(_new_collection), methods=["POST"]),
    Route(f"{PAGE}/rules", _writer(_new_rule), methods=["POST"]),
    Route(f"{PAGE}/rules/edit", _writer(_edit_rule), methods=["POST"]),
    Route(f"{PAGE}/rules/move", _writer(_move_rule), methods=["POST"]),
    Route(f"{PAGE}/rules/enabled", _writer(_enable_rule), methods=["POST"]),
    Route(f"{PAGE}/rules/delete", _writer(_delete_rule), methods=["POST"]),
    Route(f"{PAGE}/checks", _writer(_new_check), methods=["POST"]),
]
