"""The read API (GET /api/v1/images, /images/{id}, /hosts, /tasks) on SQLite and a real
PostgreSQL: the issue's acceptance scenario end to end, scopes, hostile parameters."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import hashlib
import json
import random
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import ecs_scenario
import httpx
import pytest
from alembic import command
from console_fixtures import ConsoleDB, ConsoleServer
from ecs_scenario import Scenario
from sqlalchemy import event, func, insert, select, text

from console.accounts import create_token, revoke_token
from console.app import Settings, create_app
from console.database import _config, engine_for, upgrade
from console.filters import MAX_TERMS, parse
from console.kinds import Scope
from console.models import Image, Task
from console.params import MAX_PAGE, MAX_PER_PAGE
from console.reads import MAX_DETAIL_ROWS, MAX_LISTED_TAGS, ImageQuery, image_page
from console.report_schema import ContainerRecord, ImageRecord, TaskRecord, parse_report
from console.store import store_report

needs_shared = pytest.mark.skipif(
    not ecs_scenario.DEFINITION.is_file(),
    reason=f"../shared is absent ({ecs_scenario.DEFINITION} not found)",
)


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    if not ecs_scenario.DEFINITION.is_file():
        pytest.skip("../shared is absent")
    return ecs_scenario.run_scenario(tmp_path_factory.mktemp("ecs"))


class Reader:
    """The console over HTTP, read with a token of the read scope."""

    def __init__(self, server: ConsoleServer) -> None:
        self.server = server
        self.token = create_token(server.db.engine, "reader", [Scope.READ])

    def get(
        self, path: str, params: Any = None, *, token: str | None = None, auth: bool = True
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token or self.token}"} if auth else {}
        return httpx.get(
            f"{self.server.base_url}{path}", params=params, headers=headers, timeout=30
        )

    def ok(self, path: str, params: Any = None) -> Any:
        answer = self.get(path, params)
        assert answer.status_code == 200, answer.text
        return answer.json()

    def images(self, **params: str) -> list[dict[str, Any]]:
        listing = self.ok("/api/v1/images", params)
        assert listing["total"] == len(listing["images"])  # all on one page here
        return list(listing["images"])


def ingest(server: ConsoleServer, report: dict[str, Any]) -> None:
    answer = server.post(json.dumps(report).encode())
    assert answer.status_code == 201, answer.text


@pytest.fixture
def reader(console_server: ConsoleServer) -> Reader:
    return Reader(console_server)


@pytest.fixture
def scenario_reader(console_server: ConsoleServer, scenario: Scenario) -> Reader:
    """The scenario's four reports ingested through the real endpoint."""
    for report in scenario.reports:
        ingest(console_server, report)
    return Reader(console_server)


def by_name(images: list[dict[str, Any]], scenario: Scenario) -> dict[str, dict[str, Any]]:
    names = {name: label for label, (name, _) in scenario.images.items()}
    return {names[image["name"]]: image for image in images if image["name"] in names}


# --- the acceptance scenario --------------------------------------------------------------


@needs_shared
def test_fargate_lists_p_and_not_q(scenario_reader: Reader, scenario: Scenario) -> None:
    everything = by_name(scenario_reader.images(), scenario)
    assert set(everything) == {"P", "Q"}
    fargate = by_name(scenario_reader.images(fargate="true"), scenario)
    assert set(fargate) == {"P"}
    assert set(by_name(scenario_reader.images(fargate="true", deployed="true"), scenario)) == {"P"}


@needs_shared
def test_p_runs_on_three_hosts_two_of_them_fargate_tasks(
    scenario_reader: Reader, scenario: Scenario
) -> None:
    images = by_name(scenario_reader.images(deployed="true"), scenario)
    p, q = images["P"], images["Q"]
    assert (p["hosts"], p["fargate_tasks"]) == (3, 2)
    assert (q["hosts"], q["fargate_tasks"]) == (1, 0)
    assert set(p) == {
        "id",
        "name",
        "tags",
        "digest",
        "hosts",
        "fargate_tasks",
        "compliance",
        "checks",
        "vulnerabilities",
        "last_scanned",
    }
    assert p["vulnerabilities"] is None  # scanned without an advisory database: unknown
    assert p["compliance"]["critical"] + p["compliance"]["high"] >= 1  # the 426 finding
    assert q["compliance"] == {"critical": 0, "high": 0, "medium": 0, "low": 0}
    assert "426" in p["checks"] and datetime.fromisoformat(p["last_scanned"]).tzinfo is not None


@needs_shared
def test_search_fargate_task_selects_p(scenario_reader: Reader, scenario: Scenario) -> None:
    found = by_name(scenario_reader.images(search="fargate-task OR fargate-task*"), scenario)
    assert set(found) == {"P"}
    assert set(by_name(scenario_reader.images(search="FARGATE-TASK-W*"), scenario)) == {"P"}
    assert set(by_name(scenario_reader.images(search="billing-api"), scenario)) == {"Q"}
    assert scenario_reader.images(search="fargate-tas") == []  # exact, not a prefix


@needs_shared
def test_hosts_t1_selects_p(scenario_reader: Reader, scenario: Scenario) -> None:
    t1 = scenario.tasks["T1"].task_id
    assert set(by_name(scenario_reader.images(hosts=t1), scenario)) == {"P"}
    assert set(by_name(scenario_reader.images(hosts=t1.upper()), scenario)) == {"P"}
    # An EC2 task is found by its task id too, and the instance by its name.
    t4 = scenario.tasks["T4"].task_id
    assert set(by_name(scenario_reader.images(hosts=t4), scenario)) == {"Q"}
    both = by_name(scenario_reader.images(hosts=scenario.instance), scenario)
    assert set(both) == {"P", "Q"}


@needs_shared
def test_p_details_show_the_426_finding_and_its_fargate_tasks(
    scenario_reader: Reader, scenario: Scenario
) -> None:
    p = by_name(scenario_reader.images(), scenario)["P"]
    details = scenario_reader.ok(f"/api/v1/images/{p['id']}")
    assert details["image"]["id"] == p["id"] and details["image"]["deployed"] is True
    assert [f["path"] for f in details["findings"]["426"]] == [scenario.miner]
    assert details["findings_truncated"] is False
    tasks = {task["task_id"]: task for task in details["fargate_tasks"]}
    t1, t2 = scenario.tasks["T1"], scenario.tasks["T2"]
    assert set(tasks) == {t1.task_id, t2.task_id}
    assert tasks[t1.task_id]["family_revision"] == f"{t1.family}:{t1.revision}"
    assert tasks[t2.task_id]["family_revision"] == "fargate-task-web:7"
    assert tasks[t1.task_id]["cluster"] == t1.cluster
    assert tasks[t1.task_id]["container"] == t1.container
    assert tasks[t1.task_id]["last_seen"] and tasks[t1.task_id]["deployed"] is True
    hosts = {(host["name"], host["kind"]) for host in details["hosts"]}
    assert hosts == {
        (t1.task_id, "fargate-task"),
        (t2.task_id, "fargate-task"),
        (scenario.instance, "host"),
    }


@needs_shared
def test_hosts_and_tasks_listings(scenario_reader: Reader, scenario: Scenario) -> None:
    tasks = scenario_reader.ok("/api/v1/tasks", {"fargate": "true"})
    assert {task["task_id"] for task in tasks["tasks"]} == {
        scenario.tasks["T1"].task_id,
        scenario.tasks["T2"].task_id,
    }
    everything = scenario_reader.ok("/api/v1/tasks")
    assert everything["total"] == 4
    t3 = next(t for t in everything["tasks"] if t["task_id"] == scenario.tasks["T3"].task_id)
    assert t3["host"]["name"] == scenario.instance and t3["launch_type"] == "EC2"
    assert [c["name"] for c in t3["containers"]] == [scenario.tasks["T3"].container]
    family = scenario_reader.ok("/api/v1/tasks", {"search": "fargate-task*"})
    assert family["total"] == 2
    hosts = scenario_reader.ok("/api/v1/hosts")
    assert hosts["total"] == 3
    instance = next(h for h in hosts["hosts"] if h["name"] == scenario.instance)
    assert (instance["kind"], instance["containers"], instance["images"]) == ("host", 2, 2)
    fargate = scenario_reader.ok("/api/v1/hosts", {"fargate": "true"})
    assert {h["name"] for h in fargate["hosts"]} == {
        scenario.tasks["T1"].task_id,
        scenario.tasks["T2"].task_id,
    }
    one = scenario_reader.ok("/api/v1/hosts", {"hosts": scenario.tasks["T3"].task_id})
    assert [h["name"] for h in one["hosts"]] == [scenario.instance]  # an EC2 task's host


@needs_shared
def test_deployed_means_reported_within_the_window(
    console_server: ConsoleServer, scenario: Scenario
) -> None:
    """Q, last reported two days ago, is no longer deployed; P, reported now, is."""
    engine = console_server.db.engine
    long_ago = datetime.now(UTC) - timedelta(days=2)
    for label in scenario.tasks:
        when = long_ago if label == "T4" else None
        store_report(engine, parse_report(scenario.report(label)), token_id=None, now=when)
    reader = Reader(console_server)
    assert set(by_name(reader.images(deployed="true"), scenario)) == {"P"}
    q = by_name(reader.images(), scenario)["Q"]
    assert q["hosts"] == 0  # no current container runs it
    assert q["compliance"] is not None  # still its latest scan's
    assert reader.images(deployed="true", hosts=scenario.tasks["T4"].task_id) == []
    details = reader.ok(f"/api/v1/images/{q['id']}")
    assert details["image"]["deployed"] is False
    assert [h["deployed"] for h in details["hosts"]] == [False]


# --- filters: case folding, metacharacters ------------------------------------------------


@needs_shared
def test_filters_fold_unicode_case_on_both_engines(
    console_server: ConsoleServer, scenario: Scenario
) -> None:
    report = copy.deepcopy(scenario.report("T1"))
    report["scan_id"] = str(uuid.uuid4())
    report["target"]["task"]["family"] = "Straße-Ölpipeline"
    ingest(console_server, report)
    reader = Reader(console_server)
    for term in (
        "STRASSE-ÖLPIPELINE",
        "strasse*",
        "straße-öl*",
        "\uff33\uff34\uff32\uff21\uff33\uff33\uff25*",
    ):
        assert set(by_name(reader.images(search=term), scenario)) == {"P"}, term
    with console_server.db.engine.connect() as connection:
        stored = connection.execute(select(Task.__table__.c.family_folded)).scalar_one()
    assert stored == "strasse-ölpipeline"


@needs_shared
@pytest.mark.parametrize(
    "expression",
    [
        "%",
        "_*",
        "fargate%*",
        "fargate_task",
        "\\*",
        "');DROP-TABLE-images;--",
        "' OR images.id>0 OR '",
        "' OR '1'='1",
        '" OR ""="',
        "fargate-task\\*",
    ],
)
def test_sql_and_like_metacharacters_match_literally(
    scenario_reader: Reader, scenario: Scenario, expression: str
) -> None:
    for name in ("search", "hosts"):
        listing = scenario_reader.ok("/api/v1/images", {name: expression})
        assert listing == {"images": [], "total": 0}, (name, expression)
    with scenario_reader.server.db.engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(Image)).scalar_one() == 2


# --- scopes -------------------------------------------------------------------------------


READ_PATHS = ["/api/v1/images", "/api/v1/images/1", "/api/v1/hosts", "/api/v1/tasks"]


@pytest.mark.parametrize("path", READ_PATHS)
def test_reading_needs_the_read_or_admin_scope(reader: Reader, path: str) -> None:
    engine = reader.server.db.engine
    assert reader.get(path, auth=False).status_code == 401
    assert reader.get(path, token="srt_" + "x" * 43).status_code == 401
    ingest_only = reader.get(path, token=reader.server.token)
    assert ingest_only.status_code == 403 and "read" in ingest_only.json()["error"]
    expected = 404 if path.endswith("/1") else 200  # an empty store: no image 1
    assert reader.get(path).status_code == expected
    admin = create_token(engine, "admin", [Scope.ADMIN])
    assert reader.get(path, token=admin).status_code == expected
    revoke_token(engine, "reader")
    assert reader.get(path).status_code == 401


def test_a_read_token_cannot_ingest(reader: Reader) -> None:
    answer = reader.server.post(b"{}", token=reader.token)
    assert answer.status_code == 403


# --- hostile parameters -------------------------------------------------------------------


BAD_IMAGE_PARAMS = [
    ("sort", [("sort", "bogus")]),
    ("sort", [("sort", "--name")]),
    ("sort", [("sort", "name; DROP TABLE images")]),
    ("sort", [("sort", "")]),
    ("page", [("page", "0")]),
    ("page", [("page", "-1")]),
    ("page", [("page", str(MAX_PAGE + 1))]),
    ("page", [("page", "9" * 40)]),
    ("page", [("page", "1e3")]),
    ("page", [("page", "\u0661")]),  # an Arabic-Indic digit: isdigit(), not a page number
    ("page", [("page", " 1")]),
    ("per_page", [("per_page", str(MAX_PER_PAGE + 1))]),
    ("per_page", [("per_page", "0")]),
    ("deployed", [("deployed", "yes")]),
    ("fargate", [("fargate", "TRUE")]),
    ("deployed", [("deployed", "true"), ("deployed", "true")]),
    ("page", [("page", "1"), ("page", "2")]),
    ("search", [("search", "a"), ("search", "b")]),
    ("farget", [("farget", "true")]),
    ("search", [("search", "a b")]),
    ("search", [("search", "OR a")]),
    ("search", [("search", "*a")]),
    ("search", [("search", "a\x00b")]),
    ("hosts", [("hosts", " OR ".join(f"t{n}" for n in range(MAX_TERMS + 1)))]),
    ("search", [("search", "x" * 600)]),
]


@pytest.mark.parametrize(("field", "query"), BAD_IMAGE_PARAMS)
def test_bad_parameters_are_422_naming_them(
    reader: Reader, field: str, query: list[tuple[str, str]]
) -> None:
    answer = reader.get("/api/v1/images", query)
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] == field
    assert "DROP" not in answer.text and "x" * 60 not in answer.text  # never echoed whole


async def asgi_get(app: Any, path: str, query: str, token: str) -> tuple[int, Any]:
    """GET straight to the ASGI app, with a query string of any length (clients cap URLs)."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(b"authorization", f"Bearer {token}".encode()), (b"host", b"console")],
        "client": ("127.0.0.1", 1),
        "server": ("console", 80),
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], json.loads(body)


def test_ten_thousand_terms_are_refused(reader: Reader) -> None:
    """A URL the server takes (16 KiB of header) cannot hold 10,000 terms; straight
    to the application, the filter module's cap refuses them (422), unread."""

    expression = " OR ".join(f"t{n}" for n in range(10_000))
    over_http = reader.get("/api/v1/images", {"search": "a OR " * 4000 + "a"})
    assert 400 <= over_http.status_code < 500
    app = create_app(Settings(engine=reader.server.db.engine))

    for name in ("search", "hosts"):
        status, answer = asyncio.run(
            asgi_get(app, "/api/v1/images", urlencode({name: expression}), reader.token)
        )
        assert status == 422 and answer["field"] == name
        assert "than" in answer["error"]  # the expression's length cap, checked first


@pytest.mark.parametrize("path", ["/api/v1/hosts", "/api/v1/tasks"])
def test_hosts_and_tasks_refuse_bad_parameters(reader: Reader, path: str) -> None:
    for query in (
        {"sort": "critical"},
        {"page": "-3"},
        {"hosts": "a b"},
        {"per_page": "100000"},
    ):
        answer = reader.get(path, query)
        assert answer.status_code == 422, (path, query, answer.text)
    assert reader.get("/api/v1/hosts", {"search": "x"}).status_code == 422  # hosts: `hosts=`


@pytest.mark.parametrize(
    ("text", "status"),
    [
        ("abc", 422),
        ("-1", 422),
        ("1.0", 422),
        ("99999999999", 422),
        ("0", 404),
        ("2147483648", 404),
        ("2147483647", 404),
        ("%27%20OR%201=1", 422),
    ],
)
def test_image_ids_out_of_range_are_refused(reader: Reader, text: str, status: int) -> None:
    answer = reader.get(f"/api/v1/images/{text}")
    assert answer.status_code == status, answer.text
    assert reader.get("/api/v1/images/1", {"x": "1"}).status_code == 422


@needs_shared
def test_the_last_allowed_page_is_empty_not_an_error(scenario_reader: Reader) -> None:
    listing = scenario_reader.ok(
        "/api/v1/images", {"page": str(MAX_PAGE), "per_page": str(MAX_PER_PAGE)}
    )
    assert listing == {"images": [], "total": 2}
    for path in ("/api/v1/hosts", "/api/v1/tasks"):
        assert scenario_reader.ok(path, {"page": str(MAX_PAGE)})[path.rsplit("/", 1)[1]] == []


@needs_shared
@pytest.mark.parametrize(
    "sort",
    [
        "name",
        "-name",
        "last_scanned",
        "hosts",
        "-hosts",
        "fargate_tasks",
        "-critical",
        "high",
        "medium",
        "-low",
    ],
)
def test_pages_cover_every_image_once_in_any_order(scenario_reader: Reader, sort: str) -> None:
    pages = [
        scenario_reader.ok("/api/v1/images", {"sort": sort, "per_page": "1", "page": str(n)})
        for n in (1, 2, 3)
    ]
    ids = [image["id"] for page in pages for image in page["images"]]
    assert len(ids) == 2 and len(set(ids)) == 2 and pages[2]["images"] == []
    assert all(page["total"] == 2 for page in pages)
    if sort.lstrip("-") == "hosts":
        counts = [scenario_reader.ok(f"/api/v1/images/{i}")["image"]["hosts"] for i in ids]
        assert counts == sorted(counts, reverse=sort.startswith("-"))


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_migrated_filter_columns_are_refolded(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Revision 0003 renames the filter columns and refills existing rows with fold()ed
    values (0001 wrote str.lower()'s); downgrading gives lower() back."""
    if kind == "postgresql":
        cluster = request.getfixturevalue("postgres_cluster")
        url = cluster.url(cluster.new_database())
    else:
        url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = engine_for(url)
    try:
        command.upgrade(_config(engine), "0001")
        now = datetime.now(UTC)
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO hosts (id, name, name_lower, kind, first_seen, last_seen) "
                    "VALUES (1, :name, :lower, 'host', :now, :now)"
                ),
                {"name": "STRASSE-\uff37eb", "lower": "strasse-\uff57eb", "now": now},
            )
            connection.execute(
                text(
                    "INSERT INTO tasks (id, arn, task_id, task_id_lower, family, family_lower, "
                    "host_id, first_seen, last_seen) VALUES (1, 'arn', 'ABC', 'abc', 'Straße', "
                    "'straße', 1, :now, :now)"
                ),
                {"now": now},
            )
        upgrade(engine)
        with engine.connect() as connection:
            assert connection.execute(text("SELECT name_folded FROM hosts")).scalar_one() == (
                "strasse-web"
            )
            row = connection.execute(text("SELECT task_id_folded, family_folded FROM tasks"))
            assert tuple(row.one()) == ("abc", "strasse")
        command.downgrade(_config(engine), "0001")
        with engine.connect() as connection:
            row = connection.execute(text("SELECT family_lower FROM tasks"))
            assert row.scalar_one() == "straße"
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ("search=%00", 422),
        ("hosts=a%1Bb", 422),
        ("search=%FF%FE", 200),  # not UTF-8: read as U+FFFD, a character no name holds
        ("search=%ED%A0%80*", 200),  # a surrogate's bytes: U+FFFD too
        ("%FF=1", 422),
        ("deployed=", 422),
        ("deployed", 422),
        ("page=%EF%BC%91", 422),  # a full-width 1
        ("sort=-%FF", 422),
        ("search=", 200),
        ("search=+++", 200),
        ("per_page=200&page=100000&sort=-hosts", 200),
    ],
)
def test_raw_query_strings(reader: Reader, query: str, status: int) -> None:
    answer = httpx.get(
        f"{reader.server.base_url}/api/v1/images?{query}",
        headers={"Authorization": f"Bearer {reader.token}"},
        timeout=30,
    )
    assert answer.status_code == status, answer.text
    if status == 200:
        assert answer.json() == {"images": [], "total": 0}


def test_other_methods_are_refused_in_json(reader: Reader) -> None:
    for method in ("POST", "PUT", "DELETE"):
        answer = httpx.request(
            method,
            f"{reader.server.base_url}/api/v1/images",
            headers={"Authorization": f"Bearer {reader.token}"},
        )
        assert answer.status_code == 405 and "error" in answer.json()


# --- the listing against a model of what it must select -----------------------------------


IMAGE_NAMES = [
    "registry.example/web:1",
    "registry.example/Web-API:2",
    "registry.example/straße:3",
    "registry.example/worker:4",
    "sidecar/envoy:1.29",
]
FAMILIES = ["fargate-task", "fargate-task-web", "Billing", "ÉCOLE-batch", "worker"]
INSTANCES = ["ip-10-0-0-1", "IP-10-0-0-2"]
MODEL_QUERIES = [
    {},
    {"deployed": "true"},
    {"fargate": "true"},
    {"deployed": "true", "fargate": "true"},
    {"search": "fargate-task OR fargate-task*"},
    {"search": "registry.example/web*"},
    {"search": "REGISTRY.EXAMPLE/STRASSE:3"},
    {"search": "école*"},
    {"search": "*", "deployed": "true"},
    {"hosts": "ip-10-0-0-2"},
    {"hosts": "ip-*", "fargate": "true"},
    {"hosts": "t0* OR t1*"},
    {"hosts": "ip-10-0-0-1 OR t2*", "search": "billing OR worker*"},
]


def _container(task_id: str, name: str, image: str) -> ContainerRecord:
    digest = "sha256:" + hashlib.sha256(image.encode()).hexdigest()
    return ContainerRecord(name, f"{task_id}-{name}", image, digest)


def _model_reports(template: dict[str, Any], seed: int) -> list[tuple[datetime, Any]]:
    """Forty reports of random tasks, images and ages (0 to 72 h), oldest first."""
    chance = random.Random(seed)
    base = parse_report(template)
    now = datetime.now(UTC)
    made = []
    for number in range(40):
        task_no = chance.randrange(8)
        fargate = task_no % 3 != 0
        family = FAMILIES[task_no % len(FAMILIES)]
        task_id = f"t{task_no}{'a' * 31}"
        image = IMAGE_NAMES[chance.randrange(len(IMAGE_NAMES) - 1)]

        scanned = _container(task_id, "app", image)
        members = (scanned, _container(task_id, "envoy", IMAGE_NAMES[-1]))
        task = TaskRecord(
            arn=f"arn:aws:ecs:us-east-1:1:task/c/{task_id}",
            task_id=task_id,
            family=family,
            revision=str(task_no),
            cluster="arn:aws:ecs:us-east-1:1:cluster/c",
            launch_type="FARGATE" if fargate else "EC2",
            availability_zone=None,
            containers=members,
        )
        report = dataclasses.replace(
            base,
            scan_id=uuid.uuid4(),
            host=task_id if fargate else INSTANCES[task_no % 2],
            launch_type=task.launch_type,
            task=task,
            container=scanned,
            image=None,
            findings=base.findings[: chance.randrange(len(base.findings) + 1)],
        )
        made.append((now - timedelta(hours=chance.uniform(0, 72), seconds=number), report))
    return sorted(made, key=lambda item: item[0])


def _expected(
    reports: list[tuple[datetime, Any]], query: dict[str, str], since: datetime
) -> dict[str, tuple[int, int, int | None]]:
    """By image name: (hosts, fargate tasks, critical+high+medium+low of its latest scan),
    for the images `query` selects, computed from the reports alone."""
    seen: dict[tuple[str, str], tuple[datetime, str, Any]] = {}  # (host, key): when, image, task
    latest: dict[str, int] = {}
    for when, report in reports:
        for member in report.task.containers:
            seen[(report.host, member.key)] = (when, member.image, report)
        latest[report.container.image] = len(report.findings)
    search, hosts = parse(query.get("search", "")), parse(query.get("hosts", ""))
    selected = {}
    for image in IMAGE_NAMES:
        current = [
            (host, report)
            for (host, _), (when, name, report) in seen.items()
            if name == image and when >= since
        ]
        if not any(name == image for _, name, _ in seen.values()):
            continue
        fargate = {host for host, report in current if report.fargate}
        if query.get("deployed") == "true" and not current:
            continue
        if query.get("fargate") == "true" and not fargate:
            continue
        values = [image] + [v for _, r in current for v in (r.task.family, r.task.task_id)]
        if not search.matches(values):
            continue
        if not hosts.matches([v for h, r in current for v in (h, r.task.task_id)]):
            continue
        selected[image] = (len({host for host, _ in current}), len(fargate), latest.get(image))
    return selected


@needs_shared
@pytest.mark.parametrize("seed", [1, 2])
def test_listings_select_what_the_model_says(
    console_server: ConsoleServer, scenario: Scenario, seed: int
) -> None:
    reports = _model_reports(scenario.report("T1"), seed)
    for when, report in reports:
        store_report(console_server.db.engine, report, token_id=None, now=when)
    reader = Reader(console_server)
    for query in MODEL_QUERIES:
        since = datetime.now(UTC) - timedelta(hours=24)
        expected = _expected(reports, query, since)
        got = {
            image["name"]: (
                image["hosts"],
                image["fargate_tasks"],
                sum(image["compliance"].values()) if image["compliance"] else None,
            )
            for image in reader.images(**query)
        }
        assert got == expected, query


@needs_shared
def test_an_image_seen_under_many_tags_lists_a_bounded_number(
    console_server: ConsoleServer, scenario: Scenario
) -> None:
    base = parse_report(scenario.report("T1"))
    image = ImageRecord("registry.example/many", (), None, "sha256:" + "ef" * 32)
    for batch in range(3):  # 3 x 250 tags: more than either bound
        tags = tuple(f"v{batch:01d}{n:03d}" for n in range(250))
        report = dataclasses.replace(
            base, scan_id=uuid.uuid4(), image=dataclasses.replace(image, tags=tags)
        )
        store_report(console_server.db.engine, report, token_id=None)
    reader = Reader(console_server)
    [listed] = [i for i in reader.images() if i["name"] == "registry.example/many"]
    assert listed["tags"] == sorted(listed["tags"]) and len(listed["tags"]) == MAX_LISTED_TAGS
    details = reader.ok(f"/api/v1/images/{listed['id']}")["image"]
    assert len(details["tags"]) == MAX_DETAIL_ROWS and details["names"] == [listed["name"]]


@needs_shared
def test_a_name_that_folds_longer_than_its_column_is_stored_and_found(
    console_server: ConsoleServer, scenario: Scenario
) -> None:
    """`ß` folds to `ss`: 512 of them fold to 1,024 characters, cut to the column's 512. A
    term that long once folded is refused (the cut value cannot answer it exactly)."""
    report = copy.deepcopy(scenario.report("T1"))
    report["scan_id"] = str(uuid.uuid4())
    report["target"]["task"]["family"] = "ß" * 512
    ingest(console_server, report)
    reader = Reader(console_server)
    for term in ("ß" * 255 + "*", "SS" * 255 + "*", "s" * 511 + "*"):
        assert set(by_name(reader.images(search=term), scenario)) == {"P"}
    assert by_name(reader.images(search="ß" * 255), scenario) == {}  # exact: 510 of 1,024
    for term in ("ß" * 256, "ß" * 511 + "x", "s" * 512, "ß" * 300 + "*"):
        answer = reader.get("/api/v1/images", {"search": term})
        assert answer.status_code == 422 and "prefix" in answer.json()["error"]


def test_a_page_and_its_total_see_one_snapshot(console_db: ConsoleDB) -> None:
    """An image stored between the page's query and its total's is in neither."""
    engine = console_db.engine
    now = datetime.now(UTC)
    images = Image.__table__
    row = {"first_seen": now, "last_seen": now}
    with engine.begin() as connection:
        connection.execute(insert(images), [{"key": f"name:i{n}", **row} for n in range(3)])
    fired: list[bool] = []

    def meanwhile(*_: Any) -> None:
        if not fired:
            fired.append(True)
            with engine.begin() as other:
                other.execute(insert(images).values(key="name:late", **row))

    event.listen(engine, "after_execute", meanwhile)
    try:
        answer = image_page(engine, ImageQuery(), now - timedelta(hours=24))
    finally:
        event.remove(engine, "after_execute", meanwhile)
    assert fired and len(answer["images"]) == answer["total"] == 3
