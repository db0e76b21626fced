"""Signing in to the web views on SQLite and a real PostgreSQL: sessions (cookie flags, the
token's hash only in the store, logout, expiry, fixation), the rate limit, redirects after
sign-in kept on this site, CSRF on the login form and on a signed-in user's forms, and who
may see each page and the read API."""

from __future__ import annotations

import asyncio
import hashlib
import html
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from console_fixtures import ConsoleServer
from sqlalchemy import Table, func, select, update
from starlette.routing import Route

from console.accounts import add_user, create_token
from console.app import Settings, create_app
from console.kinds import Scope
from console.models import LoginFailure, WebSession
from console.pages import routes as page_routes
from console.pages.login import HOME
from console.policy_store import current_policy
from console.web_sessions import SESSION_COOKIE

DEFEND = "/defend/compliance/containers"
PASSWORD = "correct horse battery staple"


def _table(model: Any) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table


class Browser:
    """A browser: keeps its cookies, never follows a redirect by itself."""

    def __init__(self, server: ConsoleServer) -> None:
        self.server = server
        self.client = httpx.Client(base_url=server.base_url, follow_redirects=False, timeout=30)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.client.get(path, **kwargs)

    def login_csrf(self, next_path: str | None = None) -> str:
        params = {"next": next_path} if next_path is not None else {}
        page = self.client.get("/login", params=params)
        assert page.status_code == 200
        return hidden(page.text, "csrf_token")

    def login(
        self, name: str, password: str, *, next_path: str | None = None, csrf: str | None = None
    ) -> httpx.Response:
        token = self.login_csrf() if csrf is None else csrf
        form = {"username": name, "password": password, "csrf_token": token}
        if next_path is not None:
            form["next"] = next_path
        return self.client.post("/login", data=form)

    def session(self) -> str | None:
        return self.client.cookies.get(SESSION_COOKIE)

    def page_csrf(self) -> str:
        page = self.client.get(DEFEND)
        assert page.status_code == 200, page.text
        return hidden(page.text.split('id="logout"', 1)[1], "csrf_token")


def hidden(page: str, name: str) -> str:
    match = re.search(rf'<input type="hidden" name="{name}" value="([^"]*)"', page)
    assert match is not None, f"no hidden {name} in the page"
    return html.unescape(match[1])


def login_error(page: str) -> str:
    match = re.search(r'<p id="login-error"[^>]*>([^<]*)</p>', page)
    assert match is not None, "no p#login-error"
    return html.unescape(match[1])


@pytest.fixture
def alice(console_server: ConsoleServer) -> Iterator[Browser]:
    add_user(console_server.db.engine, "alice", PASSWORD)
    browser = Browser(console_server)
    try:
        yield browser
    finally:
        browser.client.close()


def signed_in(browser: Browser) -> Browser:
    answer = browser.login("alice", PASSWORD)
    assert answer.status_code == 303, answer.text
    return browser


def test_login_sets_an_httponly_samesite_cookie_holding_a_token_never_stored(
    alice: Browser,
) -> None:
    form = alice.get("/login")
    assert form.status_code == 200
    for hook in ('<form id="login"', 'name="username"', 'name="password"', 'type="submit"'):
        assert hook in form.text
    assert alice.get(DEFEND).status_code == 303
    answer = alice.login("alice", PASSWORD)
    assert (answer.status_code, answer.headers["location"]) == (303, HOME)
    cookie = next(
        value
        for value in answer.headers.get_list("set-cookie")
        if value.startswith(f"{SESSION_COOKIE}=")
    )
    flags = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "samesite=lax", "path=/"} <= flags
    assert "secure" not in flags  # plain HTTP here: see the HTTPS test
    token = alice.session()
    assert token is not None and len(token) >= 40
    with alice.server.db.engine.connect() as connection:
        rows = connection.execute(select(_table(WebSession))).mappings().all()
    assert len(rows) == 1
    assert rows[0]["token_hash"] == hashlib.sha256(token.encode()).hexdigest()
    assert token not in {str(value) for value in rows[0].values()}
    page = alice.get(DEFEND)
    assert page.status_code == 200
    assert re.search(r'<span id="signed-in-as">[^<]*<strong>alice</strong>', page.text)
    assert '<form id="logout" method="post" action="/logout"' in page.text
    assert hidden(page.text.split('id="logout"', 1)[1], "csrf_token") == rows[0]["csrf_token"]


def test_the_cookie_is_secure_over_https(console_server: ConsoleServer) -> None:
    add_user(console_server.db.engine, "bob", PASSWORD)
    app = create_app(Settings(engine=console_server.db.engine))

    async def sign_in() -> tuple[httpx.Response, httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="https://console.example"
        ) as client:
            form = await client.get("/login")
            token = hidden(form.text, "csrf_token")
            fields = {"username": "bob", "password": PASSWORD, "csrf_token": token}
            return form, await client.post("/login", data=fields)

    form, answer = asyncio.run(sign_in())
    assert "secure" in form.headers["set-cookie"].lower()
    assert answer.status_code == 303
    cookie = next(
        value
        for value in answer.headers.get_list("set-cookie")
        if value.startswith(f"{SESSION_COOKIE}=")
    )
    flags = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert {"secure", "httponly", "samesite=lax"} <= flags


def test_a_wrong_password_and_an_unknown_user_get_the_same_answer(alice: Browser) -> None:
    wrong = alice.login("alice", "not it")
    unknown = alice.login("mallory", PASSWORD)
    empty = alice.login("", "")
    for answer in (wrong, unknown, empty):
        assert answer.status_code == 401
        assert login_error(answer.text) == "Wrong user name or password"
        assert SESSION_COOKIE not in answer.headers.get("set-cookie", "")
    assert alice.session() is None
    assert alice.get(DEFEND).status_code == 303


def test_failed_sign_ins_are_rate_limited_per_user_name(alice: Browser) -> None:
    for _ in range(5):
        assert alice.login("alice", "guess").status_code == 401
    limited = alice.login("alice", PASSWORD)  # even the right password: not tried at all
    assert limited.status_code == 429
    wait = int(limited.headers["retry-after"])
    assert 800 < wait <= 901
    assert "Too many failed sign-ins" in login_error(limited.text)
    assert alice.session() is None
    # Another name from the same address may still try (the address allows more).
    add_user(alice.server.db.engine, "carol", PASSWORD)
    assert alice.login("carol", PASSWORD).status_code == 303
    # The window passes: alice may sign in again, and her failures are forgotten.
    failures = _table(LoginFailure)
    with alice.server.db.engine.begin() as connection:
        connection.execute(
            update(failures).values(failed_at=datetime.now(UTC) - timedelta(minutes=16))
        )
    assert alice.login("alice", PASSWORD).status_code == 303
    with alice.server.db.engine.connect() as connection:
        left = connection.execute(
            select(func.count()).select_from(failures).where(failures.c.user_name == "alice")
        ).scalar_one()
    assert left == 0


def test_failed_sign_ins_are_rate_limited_per_address(alice: Browser) -> None:
    for number in range(20):
        assert alice.login(f"nobody-{number}", "guess").status_code == 401
    limited = alice.login("alice", PASSWORD)
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) > 0


def test_logout_ends_the_session_in_the_store(alice: Browser) -> None:
    signed_in(alice)
    old = alice.session()
    assert old is not None
    csrf = alice.page_csrf()
    refused = alice.client.post("/logout", data={"csrf_token": "wrong"})
    assert refused.status_code == 403
    assert alice.get(DEFEND).status_code == 200  # a forged logout ends nothing
    answer = alice.client.post("/logout", data={"csrf_token": csrf})
    assert (answer.status_code, answer.headers["location"]) == (303, "/login")
    assert alice.session() is None
    with alice.server.db.engine.connect() as connection:
        count = connection.execute(
            select(func.count()).select_from(_table(WebSession))
        ).scalar_one()
    assert count == 0
    # The old cookie, kept (or stolen), signs no one in.
    again = httpx.get(
        alice.server.base_url + DEFEND, cookies={SESSION_COOKIE: old}, follow_redirects=False
    )
    assert again.status_code == 303 and again.headers["location"].startswith("/login?next=")


@pytest.mark.parametrize("column", ["expires_at", "last_seen_at"])
def test_an_expired_or_idle_session_is_refused(alice: Browser, column: str) -> None:
    signed_in(alice)
    assert alice.get(DEFEND).status_code == 200
    sessions = _table(WebSession)
    past = datetime.now(UTC) - timedelta(hours=2)  # past the idle timeout (1 h) too
    with alice.server.db.engine.begin() as connection:
        connection.execute(update(sessions).values({column: past}))
    answer = alice.get(DEFEND)
    assert answer.status_code == 303 and answer.headers["location"].startswith("/login")
    assert alice.get("/api/v1/images").status_code == 401


def test_last_seen_slides_at_most_once_a_minute(alice: Browser) -> None:
    signed_in(alice)
    sessions = _table(WebSession)
    engine = alice.server.db.engine

    def last_seen() -> datetime:
        with engine.connect() as connection:
            moment: datetime = connection.execute(select(sessions.c.last_seen_at)).scalar_one()
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment

    recent = datetime.now(UTC) - timedelta(seconds=20)
    with engine.begin() as connection:
        connection.execute(update(sessions).values(last_seen_at=recent))
    assert alice.get(DEFEND).status_code == 200
    assert abs((last_seen() - recent).total_seconds()) < 1  # not written
    older = datetime.now(UTC) - timedelta(minutes=50)
    with engine.begin() as connection:
        connection.execute(update(sessions).values(last_seen_at=older))
    assert alice.get(DEFEND).status_code == 200
    assert (datetime.now(UTC) - last_seen()).total_seconds() < 30  # slid
    # 50 minutes unused, then used: the idle timeout counts from the last use.
    assert alice.get(DEFEND).status_code == 200


def test_a_session_cookie_set_in_advance_is_never_adopted(alice: Browser) -> None:
    fixed = "attacker-chosen-value-0123456789abcdefghijklmnop"
    alice.client.cookies.set(SESSION_COOKIE, fixed)
    assert alice.get(DEFEND).status_code == 303
    answer = alice.login("alice", PASSWORD)
    assert answer.status_code == 303
    issued = answer.cookies.get(SESSION_COOKIE)
    assert issued is not None and issued != fixed
    planted = httpx.get(
        alice.server.base_url + DEFEND, cookies={SESSION_COOKIE: fixed}, follow_redirects=False
    )
    assert planted.status_code == 303


@pytest.mark.parametrize(
    "target",
    [
        "//evil.example",
        "https://evil.example",
        "/\\evil.example",
        "%2F%2Fevil",
        "javascript:alert(1)",
        "/\t/evil.example",
        "/\n/evil.example",
        "",
        "evil.example",
    ],
)
def test_next_never_leads_off_the_site(alice: Browser, target: str) -> None:
    answer = alice.login("alice", PASSWORD, next_path=target)
    assert (answer.status_code, answer.headers["location"]) == (303, HOME)
    shown = alice.client.get("/login", params={"next": target})
    assert hidden(shown.text, "next") == HOME


def test_next_leads_back_to_the_page_asked_for(alice: Browser) -> None:
    asked = alice.get(DEFEND, params={"tab": "rules"})
    assert asked.status_code == 303
    assert (
        asked.headers["location"] == "/login?next=%2Fdefend%2Fcompliance%2Fcontainers%3Ftab%3Drules"
    )
    shown = alice.get(asked.headers["location"])
    assert hidden(shown.text, "next") == f"{DEFEND}?tab=rules"
    answer = alice.login("alice", PASSWORD, next_path=f"{DEFEND}?tab=rules")
    assert answer.headers["location"] == f"{DEFEND}?tab=rules"


def test_the_login_form_is_csrf_protected(alice: Browser) -> None:
    # Another site's form: the browser sends no login CSRF cookie (SameSite=Strict) and the
    # attacker cannot know this browser's.
    forged = httpx.post(
        alice.server.base_url + "/login",
        data={"username": "alice", "password": PASSWORD, "csrf_token": "x" * 43},
        follow_redirects=False,
    )
    assert forged.status_code == 403 and SESSION_COOKIE not in forged.headers.get("set-cookie", "")
    alice.login_csrf()
    wrong = alice.login("alice", PASSWORD, csrf="y" * 43)
    assert wrong.status_code == 403 and alice.session() is None
    missing = alice.client.post("/login", data={"username": "alice", "password": PASSWORD})
    assert missing.status_code == 403 and alice.session() is None


def test_a_signed_in_users_forms_need_the_sessions_csrf_token(alice: Browser) -> None:
    signed_in(alice)
    csrf = alice.page_csrf()
    rule = {"version": "0", "name": "quiet", "effect": "ignore", "checks": "*", "collection": ""}
    url = f"{DEFEND}/rules"
    assert alice.client.post(url, data=rule).status_code == 403
    assert alice.client.post(url, data={**rule, "csrf_token": ""}).status_code == 403
    # One character changed (never to itself: a token may end in "A").
    changed = csrf[:-1] + ("B" if csrf.endswith("A") else "A")
    wrong = alice.client.post(url, data={**rule, "csrf_token": changed})
    assert wrong.status_code == 403 and 'id="refused"' in wrong.text
    assert current_policy(alice.server.db.engine) is None
    # Another session's token is no good either.
    other = Browser(alice.server)
    with other.client:
        signed_in(other)
        others = other.page_csrf()
    assert alice.client.post(url, data={**rule, "csrf_token": others}).status_code == 403
    assert current_policy(alice.server.db.engine) is None
    saved = alice.client.post(url, data={**rule, "csrf_token": csrf})
    assert (saved.status_code, saved.headers["location"]) == (303, DEFEND)
    stored = current_policy(alice.server.db.engine)
    assert stored is not None and stored.saved_by == "alice" and "quiet" in stored.text


def _page_paths() -> list[tuple[str, str]]:
    """Every page route's (method, path) but the login's own, path parameters filled in."""
    found = []
    for route in page_routes:
        if not isinstance(route, Route) or route.path in ("/login", "/logout", "/"):
            continue
        path = re.sub(r"\{[^}]*\}", "1", route.path)
        for method in sorted(route.methods or ()):
            if method != "HEAD":
                found.append((method, path))
    return found


@pytest.mark.parametrize(("method", "path"), _page_paths())
def test_every_page_needs_a_session_or_a_read_token(
    console_server: ConsoleServer, method: str, path: str
) -> None:
    url = console_server.base_url + path
    data = {"csrf_token": "x"} if method == "POST" else None
    nobody = httpx.request(method, url, data=data, follow_redirects=False)
    assert nobody.status_code == 303
    assert nobody.headers["location"].startswith("/login?next=%2F")
    ingest = {"Authorization": f"Bearer {console_server.token}"}
    assert httpx.request(method, url, data=data, headers=ingest).status_code == 403
    unknown = {"Authorization": "Bearer srt_unknown"}
    assert httpx.request(method, url, data=data, headers=unknown).status_code == 401
    admin = create_token(console_server.db.engine, "admin", [Scope.ADMIN])
    in_url = httpx.request(method, url, params={"token": admin}, data=data, follow_redirects=False)
    assert in_url.status_code == 303  # a token in the URL is never taken


def test_root_goes_to_the_deployed_images(console_server: ConsoleServer) -> None:
    answer = httpx.get(console_server.base_url + "/", follow_redirects=False)
    assert (answer.status_code, answer.headers["location"]) == (303, HOME)


def test_the_read_api_takes_a_signed_in_users_session(alice: Browser) -> None:
    assert alice.get("/api/v1/images").status_code == 401
    signed_in(alice)
    for path in ("/api/v1/images", "/api/v1/hosts", "/api/v1/tasks"):
        answer = alice.get(path)
        assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
    assert alice.get("/api/v1/images/1").status_code == 404
    # With an Authorization header, the token alone decides.
    bad = alice.get("/api/v1/images", headers={"Authorization": "Bearer srt_unknown"})
    assert bad.status_code == 401
    admin = create_token(alice.server.db.engine, "admin", [Scope.ADMIN])
    in_url = httpx.get(alice.server.base_url + "/api/v1/images", params={"token": admin})
    assert in_url.status_code == 401
