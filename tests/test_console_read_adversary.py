"""The read API attacked, on SQLite and a real PostgreSQL: parameters abused, ids at and past
their bounds, tokens of the wrong scope or none, hostile stored data; every answer bounded in
time and size, refusals named by field, nothing leaked (no SQL, paths, traces or tokens)."""

from __future__ import annotations

import copy
import json
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from console_fixtures import ConsoleServer
from console_reports import make_root, scan_report

from console.accounts import create_token, revoke_token
from console.kinds import Scope
from console.params import MAX_PAGE, MAX_PER_PAGE

LISTINGS = ("/api/v1/images", "/api/v1/hosts", "/api/v1/tasks")
LEAKS = ("Traceback", "sqlalchemy", "SELECT", "psycopg", "sqlite3", "/work/", "site-packages")


@pytest.fixture(scope="module")
def base_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return scan_report(make_root(tmp_path_factory.mktemp("root"), miner=True))


def get(
    server: ConsoleServer, path: str, token: str | None, params: Any = None, **headers: str
) -> httpx.Response:
    sent = dict(headers)
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    return httpx.get(server.base_url + path, params=params, headers=sent, timeout=30)


def reader(server: ConsoleServer) -> str:
    return create_token(server.db.engine, f"reader-{uuid.uuid4().hex[:8]}", [Scope.READ])


def assert_refusal(answer: httpx.Response, status: int, *secrets: str) -> None:
    assert answer.status_code == status, (answer.status_code, answer.text[:500])
    body = answer.text
    for leak in (*LEAKS, *(secret for secret in secrets if secret)):
        assert leak not in body, (leak, body[:500])
    assert answer.headers.get("x-content-type-options") == "nosniff"
    assert len(answer.content) < 4096


def raw_get(server: ConsoleServer, target: str, token: str) -> httpx.Response:
    """A request whose target is sent byte for byte (httpx would normalise it)."""
    url = httpx.URL(server.base_url)
    request = httpx.Request("GET", url, headers={"Authorization": f"Bearer {token}"})
    request.url = url.copy_with(raw_path=target.encode("latin-1"))
    with httpx.Client(timeout=30) as client:
        return client.send(request)


@pytest.mark.parametrize("path", LISTINGS)
@pytest.mark.parametrize(
    "query",
    [
        "page=0",
        "page=-1",
        f"page={MAX_PAGE + 1}",
        f"page={2**63}",
        f"page={2**64 + 1}",
        "page=1.5",
        "page=1e3",
        "page=%2B1",  # +1
        "page=%EF%BC%91",  # fullwidth 1
        "page=1%00",
        "page=%FF%FE",  # not UTF-8
        "page=" + "9" * 5000,
        f"per_page={MAX_PER_PAGE + 1}",
        "per_page=0",
        "page=1&page=2",
        "sort=name;DROP%20TABLE%20images",
        "sort=-",
        "sort=" + "x" * 10_000,
        "colour=red",
        "deployed=maybe",
        "fargate=TRUE%00",
    ],
)
def test_abused_parameters_are_refused_by_name(
    console_server: ConsoleServer, path: str, query: str
) -> None:
    token = reader(console_server)
    started = time.monotonic()
    answer = raw_get(console_server, f"{path}?{query}", token)
    assert time.monotonic() - started < 5
    assert_refusal(answer, 422, token)
    assert answer.json()["field"] == query.split("=", 1)[0]


@pytest.mark.parametrize(
    "segment",
    [
        "0",
        "-1",
        str(2**31),
        str(2**63),
        str(2**64),
        "1e3",
        "%2e%2e",
        "..",
        "1%2F2",
        "%00",
        "%D9%A1",
    ],
)
def test_image_ids_at_and_past_their_bounds(console_server: ConsoleServer, segment: str) -> None:
    token = reader(console_server)
    answer = raw_get(console_server, f"/api/v1/images/{segment}", token)
    assert answer.status_code in (404, 422), (segment, answer.status_code, answer.text[:300])
    assert_refusal(answer, answer.status_code, token)


def test_wrong_scopes_and_broken_tokens_read_nothing(
    console_server: ConsoleServer, base_report: dict[str, Any]
) -> None:
    ingest = create_token(console_server.db.engine, "ingest-only", [Scope.INGEST])
    revoked = create_token(console_server.db.engine, "revoked", [Scope.READ])
    revoke_token(console_server.db.engine, "revoked")
    for path in (*LISTINGS, "/api/v1/images/1"):
        assert_refusal(get(console_server, path, ingest), 403, ingest)
        assert_refusal(get(console_server, path, revoked), 401, revoked)
        assert_refusal(get(console_server, path, None), 401)
        for header in ("Bearer", "Basic YTpi", "Bearer a b", "Bearer " + "A" * 10_000, "bearer"):
            answer = httpx.get(
                console_server.base_url + path, headers={"Authorization": header}, timeout=30
            )
            assert answer.status_code in (400, 401), (header[:20], answer.status_code)
            assert_refusal(answer, answer.status_code, header[7:] if len(header) > 7 else "")


def test_hostile_stored_names_come_back_as_data(
    console_server: ConsoleServer, base_report: dict[str, Any]
) -> None:
    hostile = [
        '<script>alert("x")</script>',
        "name\u0000with\u0007control\u001b[31m",
        "\u202eevil.exe",
        "x" * 512,
        "' OR 1=1 --",
        "%_\\",
    ]
    for name in hostile:
        document = copy.deepcopy(base_report)
        document["scan_id"] = str(uuid.uuid4())
        document["target"]["container"] = {
            "name": "c",
            "docker_id": uuid.uuid4().hex,
            "image": name,
        }
        answer = console_server.post(json.dumps(document).encode())
        if answer.status_code != 201:
            # Refused whole (a NUL, or past a bound), never stored cut or mangled.
            assert_refusal(answer, 422)
    token = reader(console_server)
    listing = get(console_server, "/api/v1/images", token, {"per_page": str(MAX_PER_PAGE)}).json()
    names = {image["name"] for image in listing["images"]}
    for name in hostile:
        if "\u0000" not in name:
            assert name in names, name
    # LIKE's wildcards are matched as themselves.
    found = get(console_server, "/api/v1/images", token, {"search": "%_\\"}).json()
    assert {image["name"] for image in found["images"]} == {"%_\\"}


def test_a_page_stays_bounded_whatever_is_stored(
    console_server: ConsoleServer, base_report: dict[str, Any]
) -> None:
    # One image seen under 1,000 tags (the most a report may carry) in many reports.
    document = copy.deepcopy(base_report)
    document["target"]["kind"] = "image"
    document["target"]["image"] = {
        "name": "registry.example/many:1",
        "tags": [f"registry.example/many:{'t' * 200}{n}" for n in range(1000)],
        "digest": "sha256:" + "a" * 64,
    }
    for _ in range(3):
        document["scan_id"] = str(uuid.uuid4())
        assert console_server.post(json.dumps(document).encode()).status_code == 201
    token = reader(console_server)
    started = time.monotonic()
    answer = get(console_server, "/api/v1/images", token, {"per_page": str(MAX_PER_PAGE)})
    took = time.monotonic() - started
    assert answer.status_code == 200 and took < 5
    [many] = [
        image for image in answer.json()["images"] if image["name"] == "registry.example/many:1"
    ]
    assert len(many["tags"]) <= 100  # a listing shows the first tags only
    assert len(answer.content) < 2 * 1024 * 1024
    details = get(console_server, f"/api/v1/images/{many['id']}", token)
    assert details.status_code == 200 and len(details.json()["image"]["tags"]) <= 500


@pytest.mark.parametrize(
    "params",
    [
        {"search": " OR ".join(f"name{n}*" for n in range(1500))},
        {"hosts": " OR ".join(f"h{n}" for n in range(1500))},
        {"search": "(" * 3000 + "a" + ")" * 3000},
        {"search": "a" * 30_000},
    ],
)
def test_hostile_filters_answer_within_bounds(
    console_server: ConsoleServer, params: dict[str, str]
) -> None:
    token = reader(console_server)
    started = time.monotonic()
    answer = get(console_server, "/api/v1/images", token, params)
    assert time.monotonic() - started < 5
    assert answer.status_code in (200, 414, 422, 431), answer.status_code
    if answer.status_code != 200:
        assert_refusal(answer, answer.status_code, token)


def test_the_read_api_takes_only_get(console_server: ConsoleServer) -> None:
    token = reader(console_server)
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        answer = httpx.request(
            method,
            console_server.base_url + "/api/v1/images",
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        assert_refusal(answer, 405, token)


def test_documented(tmp_path: Path) -> None:
    # The bounds these tests hold the API to are the ones docs/console.md gives.
    text = (Path(__file__).resolve().parent.parent / "docs" / "console.md").read_text()
    assert str(MAX_PER_PAGE) in text
