"""Defend > Compliance > Containers and images > Deployed on SQLite and a real PostgreSQL: the
rules and collections, every edit saved as a policy version the scanner's loader accepts (its
message shown when it refuses), who may write, escaping, and the issue's acceptance step."""

from __future__ import annotations

import html
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import httpx
import markupsafe
import pytest
import yaml
from console_fixtures import ConsoleServer
from starlette.responses import Response

import scanner
from console.accounts import create_token
from console.kinds import Scope
from console.pages import access
from console.policy_edit import MAX_SCRIPT_BYTES
from console.policy_store import current_policy, save_policy
from scanner.policy import load_policy, parse_policy

PAGE = "/defend/compliance/containers"


class Client:
    """The console over HTTP with a token; forms posted as a browser posts them."""

    def __init__(self, server: ConsoleServer, scopes: list[Scope], name: str) -> None:
        self.server = server
        self.token = create_token(server.db.engine, name, scopes)

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def page(self) -> httpx.Response:
        return httpx.get(self.server.base_url + PAGE, headers=self.headers(), timeout=30)

    def post(self, path: str, fields: dict[str, Any], *, version: int | None = None) -> Any:
        stored = current_policy(self.server.db.engine)
        base = version if version is not None else (stored.version if stored else 0)
        form = {"csrf_token": "", "version": str(base), **fields}
        return httpx.post(
            self.server.base_url + PAGE + path,
            data=form,
            headers=self.headers(),
            timeout=30,
            follow_redirects=False,
        )


@pytest.fixture
def admin(console_server: ConsoleServer) -> Client:
    return Client(console_server, [Scope.ADMIN], "admin")


@pytest.fixture
def reader(console_server: ConsoleServer) -> Client:
    return Client(console_server, [Scope.READ], "reader")


def stored_document(server: ConsoleServer) -> dict[str, Any]:
    stored = current_policy(server.db.engine)
    assert stored is not None
    parse_policy(stored.text, "policy.yaml")  # what is stored, the scanner's loader accepts
    document: dict[str, Any] = yaml.safe_load(stored.text)
    return document


def rule_rows(page: str) -> list[str]:
    return [
        html.unescape(name)
        for name in re.findall(r'<tr class="rule[^"]*" data-rule="([^"]*)"', page)
    ]


def row(page: str, attribute: str, name: str) -> str:
    start = page.index(f'{attribute}="{markupsafe.escape(name)}"')
    return page[start : page.index("</tr>", start)]


def error_of(page: str) -> str:
    found = re.search(r'<div id="error"[^>]*><p>Not saved:</p><pre>(.*?)</pre>', page, re.DOTALL)
    assert found is not None, page
    return html.unescape(found[1])


def add_collection(client: Client, name: str, hosts: str) -> None:
    answer = client.post("/collections", {"name": name, "hosts": hosts})
    assert (answer.status_code, answer.headers.get("location")) == (303, PAGE), answer.text


def add_rule(client: Client, name: str, collection: str, effect: str, checks: str) -> None:
    fields = {"name": name, "collection": collection, "effect": effect, "checks": checks}
    answer = client.post("/rules", fields)
    assert (answer.status_code, answer.headers.get("location")) == (303, PAGE), answer.text


@pytest.fixture(scope="module")
def key_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A root holding a real private key (check 425 validates keys), and a Fargate task
    definition of family `fargate-task-web`."""
    base = tmp_path_factory.mktemp("keyroot")
    root = base / "root"
    (root / "srv").mkdir(parents=True)
    key = subprocess.run(
        ["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
        check=True,
        capture_output=True,
        timeout=30,
    ).stdout
    (root / "srv" / "server.key").write_bytes(key)
    definition = {
        "family": "fargate-task-web",
        "requiresCompatibilities": ["FARGATE"],
        "containerDefinitions": [{"name": "web", "image": "example/web:1"}],
    }
    (base / "task.json").write_text(json.dumps(definition))
    return base


def test_acceptance_a_rule_on_a_new_collection_reaches_the_defender(
    admin: Client, key_root: Path, tmp_path: Path
) -> None:
    """The issue's step: a rule on a new collection `fargate-task*` that ignores 425;
    `GET /api/v1/policy` returns it, and the scanner, given what it returns, ignores the 425
    finding of a root with a private key scanned as task `fargate-task-web`."""
    add_collection(admin, "fargate-tasks", "fargate-task*")
    add_rule(admin, "ignore-keys", "fargate-tasks", "ignore", "425")
    page = admin.page()
    assert page.status_code == 200
    assert rule_rows(page.text) == ["ignore-keys"]
    assert "fargate-task*" in row(page.text, "data-collection", "fargate-tasks")
    assert "not-applied-fargate" not in row(page.text, "data-rule", "ignore-keys")

    fetched = httpx.get(
        admin.server.base_url + "/api/v1/policy",
        headers={"Authorization": f"Bearer {admin.server.token}"},  # the defender's ingest token
        timeout=30,
    )
    assert fetched.status_code == 200
    document = yaml.safe_load(fetched.text)
    assert document["collections"] == [{"name": "fargate-tasks", "hosts": ["fargate-task*"]}]
    assert document["rules"] == [
        {"name": "ignore-keys", "collections": ["fargate-tasks"], "effects": {"425": "ignore"}}
    ]
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_bytes(fetched.content)
    policy = load_policy(policy_file)

    arguments: dict[str, Any] = {
        "checks": ["425"],
        "task_definitions": [str(key_root / "task.json")],
    }
    plain = scanner.scan_root(key_root / "root", **arguments)
    assert [f.check for f in plain.findings] == ["425"]  # the key is found without the policy
    decided = scanner.scan_root(key_root / "root", policy=policy, **arguments)
    assert decided.findings == [] and decided.suppressed == 1
    assert any("ignore-keys" in notice for notice in decided.notices)


def test_a_block_effect_is_shown_as_not_applied_to_fargate(admin: Client) -> None:
    add_collection(admin, "fargate-tasks", "fargate-task*")
    add_rule(admin, "block-miners", "fargate-tasks", "block", "426")
    add_rule(admin, "ignore-keys", "fargate-tasks", "ignore", "425")
    page = admin.page().text
    blocked = row(page, "data-rule", "block-miners")
    assert '<span class="not-applied-fargate"' in blocked
    assert "not applied to Fargate tasks" in blocked
    assert "not-applied-fargate" not in row(page, "data-rule", "ignore-keys")


def test_reorder_disable_edit_delete(admin: Client) -> None:
    add_collection(admin, "web", "web-*, fargate-task")
    for name in ("first", "second", "third"):
        add_rule(admin, name, "", "alert", "448")
    assert admin.post("/rules/move", {"rule": "third", "direction": "up"}).status_code == 303
    assert rule_rows(admin.page().text) == ["first", "third", "second"]
    assert admin.post("/rules/move", {"rule": "first", "direction": "up"}).status_code == 303
    assert admin.post("/rules/move", {"rule": "first", "direction": "down"}).status_code == 303
    assert rule_rows(admin.page().text) == ["third", "first", "second"]

    assert admin.post("/rules/enabled", {"rule": "first", "enabled": "false"}).status_code == 303
    document = stored_document(admin.server)
    assert [r.get("enabled", True) for r in document["rules"]] == [True, False, True]
    assert "disabled" in row(admin.page().text, "data-rule", "first")

    fields = {"rule": "second", "name": "second-web", "collections": ["web"]}
    fields["effects"] = "425=ignore, 448=block, *=alert"
    assert admin.post("/rules/edit", fields).status_code == 303
    edited = stored_document(admin.server)["rules"][2]
    assert edited == {
        "name": "second-web",
        "collections": ["web"],
        "effects": {"425": "ignore", "448": "block", "*": "alert"},
    }
    assert admin.post("/rules/delete", {"rule": "third"}).status_code == 303
    assert rule_rows(admin.page().text) == ["first", "second-web"]
    assert current_policy(admin.server.db.engine).version == 9  # type: ignore[union-attr]


@pytest.mark.parametrize("hosts", ["*task", "fargate*task", "*", "fargate-task**", "a,,*b", ""])
def test_hosts_take_postfix_wildcards_only(admin: Client, hosts: str) -> None:
    answer = admin.post("/collections", {"name": "c", "hosts": hosts})
    assert answer.status_code == 422
    assert error_of(answer.text).startswith("hosts:")
    assert current_policy(admin.server.db.engine) is None


def test_a_change_the_loader_refuses_shows_its_message_and_is_not_stored(admin: Client) -> None:
    add_rule(admin, "keys", "", "ignore", "425")
    before = current_policy(admin.server.db.engine)
    answer = admin.post(
        "/rules", {"name": "keys", "collection": "", "effect": "alert", "checks": "999"}
    )
    assert answer.status_code == 422
    document = stored_document(admin.server)
    document["rules"].append({"name": "keys", "effects": {"999": "alert"}})
    from console.policy_edit import dump
    from scanner.policy import PolicyError

    with pytest.raises(PolicyError) as loader:
        parse_policy(dump(document), "policy.yaml")
    assert error_of(answer.text) == str(loader.value)
    assert "unknown check id '999'" in str(loader.value)
    assert "duplicate" in str(loader.value) or "rule name 'keys'" in str(loader.value)
    assert current_policy(admin.server.db.engine) == before


def test_a_stale_page_is_refused_not_merged(admin: Client) -> None:
    add_rule(admin, "one", "", "alert", "448")
    answer = admin.post("/rules", {"name": "two", "effect": "alert", "checks": "425"}, version=0)
    assert answer.status_code == 409
    assert "changed since" in error_of(answer.text)
    assert rule_rows(admin.page().text) == ["one"]


def test_custom_checks_are_stored_inline_and_shown_escaped_never_run(admin: Client) -> None:
    script = "#!/bin/sh\n# </pre><script>alert(2)</script>\ntest ! -e /usr/bin/telnet\n"
    fields = {"id": "9001", "name": "no telnet", "severity": "high"}
    fields |= {
        "description": "telnet must not be installed",
        "script": script.replace("\n", "\r\n"),
    }
    answer = admin.post("/checks", fields)
    assert answer.status_code == 303, answer.text
    (check,) = stored_document(admin.server)["custom_checks"]
    assert check["script"] == script and check["id"] == "9001"
    stored = current_policy(admin.server.db.engine)
    assert stored is not None and "script: |" in stored.text  # a literal block, as people write
    add_rule(admin, "telnet-gate", "", "block", "9001")
    page = admin.page().text
    assert "<script>alert(2)" not in page
    assert "&lt;/pre&gt;&lt;script&gt;alert(2)&lt;/script&gt;" in page
    too_big = dict(fields, id="9002", script="#!/bin/sh\n" + "x" * MAX_SCRIPT_BYTES)
    refused = admin.post("/checks", too_big)
    assert refused.status_code in (413, 422)
    assert len(stored_document(admin.server)["custom_checks"]) == 1


def test_html_in_names_is_escaped(admin: Client) -> None:
    collection = '<script>alert("c")</script>'
    rule = '"><img src=x onerror=alert(1)>'
    add_collection(admin, collection, "x*")
    add_rule(admin, rule, collection, "block", "425")
    page = admin.page().text
    assert "<script>alert" not in page and "<img src=x" not in page
    assert rule_rows(page) == [rule]
    assert "&lt;script&gt;alert(&#34;c&#34;)&lt;/script&gt;" in row(
        page, "data-collection", collection
    )


def test_who_may_look_and_who_may_write(
    console_server: ConsoleServer, reader: Client, admin: Client
) -> None:
    base = console_server.base_url
    anonymous = httpx.get(base + PAGE, timeout=30, follow_redirects=False)
    assert anonymous.status_code == 303
    assert anonymous.headers["location"] == "/login?next=%2Fdefend%2Fcompliance%2Fcontainers"
    posted = httpx.post(
        base + PAGE + "/rules", data={"name": "x"}, timeout=30, follow_redirects=False
    )
    assert posted.status_code == 303 and posted.headers["location"].startswith("/login?")
    ingest = httpx.get(base + PAGE, headers={"Authorization": f"Bearer {console_server.token}"})
    assert ingest.status_code == 403

    page = reader.page()
    assert page.status_code == 200 and 'id="rules"' in page.text
    assert "<form" not in page.text.split('<main id="content">', 1)[1]  # view only
    assert page.headers["content-security-policy"].startswith("default-src 'self'")
    refused = reader.post("/rules", {"name": "x", "effect": "ignore", "checks": "*"})
    assert refused.status_code == 403
    assert current_policy(console_server.db.engine) is None
    assert '<form id="new-rule"' in admin.page().text


def test_every_write_calls_check_csrf(admin: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every write calls `access.check_csrf`: its refusal is the answer, nothing saved (its
    own tests are in tests/test_console_web_auth.py)."""
    seen: list[Any] = []

    async def refuse(request: Any, who: Any) -> Response:
        seen.append(who)
        return Response("CSRF token missing or wrong", status_code=403)

    monkeypatch.setattr(access, "check_csrf", refuse)
    paths = ("/collections", "/rules", "/rules/edit", "/rules/move", "/rules/enabled")
    for path in (*paths, "/rules/delete", "/checks"):
        answer = admin.post(path, {"name": "x", "hosts": "x*", "effect": "alert", "checks": "1"})
        assert (answer.status_code, answer.text) == (403, "CSRF token missing or wrong")
    assert len(seen) == 7
    assert current_policy(admin.server.db.engine) is None


def test_forms_are_bounded(admin: Client) -> None:
    url = admin.server.base_url + PAGE + "/rules"
    as_json = httpx.post(url, json={"name": "x"}, headers=admin.headers(), timeout=30)
    assert as_json.status_code == 415
    huge = httpx.post(
        url,
        content=b"name=" + b"x" * (1024 * 1024),
        headers={**admin.headers(), "Content-Type": "application/x-www-form-urlencoded"},
        timeout=30,
    )
    assert huge.status_code == 413
    fields = "&".join(f"f{i}=1" for i in range(1000)).encode()
    many = httpx.post(
        url,
        content=fields,
        headers={**admin.headers(), "Content-Type": "application/x-www-form-urlencoded"},
        timeout=30,
    )
    assert many.status_code in (400, 413, 422)
    assert current_policy(admin.server.db.engine) is None


def test_a_hand_written_policy_is_shown_in_order(admin: Client) -> None:
    text = (
        "version: 1\ncollections:\n  - name: web\n    hosts: [web-*]\n    images: ['*nginx*']\n"
        "rules:\n  - name: b\n    effects: {425: block}\n  - name: a\n    collections: [web]\n"
        "    enabled: false\n    effects: {'*': ignore}\n"
    )
    save_policy(admin.server.db.engine, text, "alice", base=0)
    page = admin.page().text
    assert rule_rows(page) == ["b", "a"]
    assert "*nginx*" in row(page, "data-collection", "web")
    assert "not applied to Fargate tasks" in row(page, "data-rule", "b")
    assert admin.post("/rules/move", {"rule": "a", "direction": "up"}).status_code == 303
    assert rule_rows(admin.page().text) == ["a", "b"]
    assert "Policy version 2, saved by token #" in admin.page().text


@pytest.mark.parametrize(
    "name",
    ["yes", "null", "425", "&anchor", "*alias", "- item", "a: b", "#comment", "ünï €", "'q'"],
)
def test_names_that_look_like_yaml_round_trip(admin: Client, name: str) -> None:
    """A name is data: the dumper quotes what YAML would read as something else."""
    add_collection(admin, name, "x*")
    add_rule(admin, name, name, "ignore", "425")
    document = stored_document(admin.server)
    assert document["collections"][0]["name"] == name
    assert document["rules"][0] == {
        "name": name,
        "collections": [name],
        "effects": {"425": "ignore"},
    }
    assert rule_rows(admin.page().text) == [name]


def test_an_error_quoting_html_is_escaped(admin: Client) -> None:
    answer = admin.post(
        "/rules",
        {"name": "r", "collection": "<script>x()</script>", "effect": "ignore", "checks": "1"},
    )
    assert answer.status_code == 422
    assert "<script>x()" not in answer.text and "&lt;script&gt;x()" in answer.text
    assert error_of(answer.text) == "collection: no collection named '<script>x()</script>'"


def test_a_stored_version_is_validated_once_for_display(
    admin: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Validating a policy near the 1 MiB bound takes seconds: a view reuses the last parse."""
    from console.pages import defend

    calls: list[int] = []

    def counted(text: str) -> Any:
        calls.append(len(text))
        return validate(text)

    validate = defend.validate
    monkeypatch.setattr(defend, "validate", counted)
    defend._shown.cache_clear()
    save_policy(admin.server.db.engine, "version: 1\n", "alice", base=0)
    for _ in range(3):
        assert admin.page().status_code == 200
    assert len(calls) == 1
