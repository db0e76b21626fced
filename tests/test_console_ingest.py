"""POST /api/v1/scans on SQLite and on a real PostgreSQL: reports the scanner wrote, stored
whole and once; every kind of bad input answered with a clear 4xx, never a 500."""

from __future__ import annotations

import functools
import gzip
import json
import time
import uuid
import zlib
from pathlib import Path
from typing import Any

import pytest
from console_fixtures import ConsoleServer
from console_reports import (
    body,
    container_document,
    ecs_task,
    fresh,
    make_root,
    scan_report,
    task_document,
)
from sqlalchemy import Engine, func, select, text

from console.accounts import create_token, revoke_token
from console.body import BodyError, Inflater
from console.models import Container, Finding, Host, Image, ImageRef, Problem, Scan, Task

APP_IMAGE = "111122223333.dkr.ecr.us-west-2.amazonaws.com/app:1.2"
APP_IMAGE_ID = "sha256:" + "d6" * 32
TASK_ID = "8f03e41243824aea923aca126495f665"
LIMIT = 4 * 1024 * 1024  # the test server's --max-report-bytes


def count(engine: Engine, model: Any) -> int:
    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(model)).scalar_one())


def rows_everywhere(engine: Engine) -> dict[str, int]:
    return {
        model.__tablename__: count(engine, model)
        for model in (Scan, Finding, Problem, Host, Task, Container, Image, ImageRef)
    }


@pytest.fixture(scope="module")
def plain_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A root scan outside any task: one 426 finding at /tmp/xmrig, one problem (no package DB)."""
    return scan_report(make_root(tmp_path_factory.mktemp("plain")))


@functools.cache
def _task_report(launch_type: str) -> dict[str, Any]:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        return _scan_in_task(Path(folder), launch_type)


def fargate_report(tmp_path: Path, launch_type: str = "FARGATE") -> dict[str, Any]:
    """The report of a scan inside a task (made once per launch type), with a new scan_id."""
    return fresh(_task_report(launch_type))


def _scan_in_task(tmp_path: Path, launch_type: str) -> dict[str, Any]:
    app = container_document(TASK_ID, "app", APP_IMAGE, APP_IMAGE_ID)
    sidecar = container_document(TASK_ID, "scanner", "scan-root:latest", "sha256:" + "ab" * 32)
    task = task_document(
        TASK_ID, family="fargate-task", launch_type=launch_type, containers=[app, sidecar]
    )
    with ecs_task(task, app):
        return scan_report(make_root(tmp_path))


def test_a_scanner_report_is_stored(
    console_server: ConsoleServer, plain_report: dict[str, Any]
) -> None:
    report = fresh(plain_report)
    answer = console_server.post(body(report))
    assert answer.status_code == 201, answer.text
    assert answer.json() == {"scan_id": report["scan_id"], "stored": True}
    engine = console_server.db.engine
    with engine.connect() as connection:
        scan = connection.execute(select(Scan)).one()
        finding = connection.execute(select(Finding)).one()
        host = connection.execute(select(Host)).one()
    assert str(scan.scan_id) == report["scan_id"]
    assert (scan.critical, scan.high, scan.problem_count) == (1, 0, len(report["problems"]))
    assert scan.host_id == host.id and host.name == report["target"]["host"]
    assert (finding.check, finding.path, finding.severity) == ("426", "/tmp/xmrig", "critical")
    assert count(engine, Problem) == len(report["problems"]) >= 1


def test_a_fargate_task_is_a_host_named_by_its_task_id(
    console_server: ConsoleServer, tmp_path: Path
) -> None:
    report = fargate_report(tmp_path)
    assert report["target"]["task"]["launch_type"] == "FARGATE"
    assert console_server.post(body(report)).status_code == 201
    engine = console_server.db.engine
    with engine.connect() as connection:
        host = connection.execute(select(Host)).one()
        task = connection.execute(select(Task)).one()
        containers = connection.execute(select(Container).order_by(Container.name)).all()
        scan = connection.execute(select(Scan)).one()
        image = connection.execute(select(Image).where(Image.id == scan.image_id)).one()
        refs = connection.execute(select(ImageRef.ref).where(ImageRef.image_id == image.id)).all()
    assert (host.name, host.kind) == (TASK_ID, "fargate-task")
    assert (task.task_id, task.family, task.launch_type, task.host_id) == (
        TASK_ID,
        "fargate-task",
        "FARGATE",
        host.id,
    )
    assert [c.name for c in containers] == ["app", "scanner"]  # the task's every container
    assert scan.container_id == containers[0].id and scan.task_id == task.id
    assert (image.key, image.name) == (f"id:{APP_IMAGE_ID}", APP_IMAGE)
    assert refs == [(APP_IMAGE,)]
    assert image.latest_scan_id == scan.id and containers[0].latest_scan_id == scan.id
    assert containers[0].image_id == image.id


def test_an_ec2_task_runs_on_its_host(console_server: ConsoleServer, tmp_path: Path) -> None:
    report = fargate_report(tmp_path, launch_type="EC2")
    report["target"]["host"] = "ip-10-0-0-7.ec2.internal"  # the instance, not the task
    assert console_server.post(body(report)).status_code == 201
    with console_server.db.engine.connect() as connection:
        host = connection.execute(select(Host)).one()
        task = connection.execute(select(Task)).one()
    assert (host.name, host.kind) == ("ip-10-0-0-7.ec2.internal", "host")
    assert task.host_id == host.id and task.launch_type == "EC2"


def test_a_replay_is_stored_once(
    console_server: ConsoleServer, plain_report: dict[str, Any]
) -> None:
    report = fresh(plain_report)
    assert console_server.post(body(report)).status_code == 201
    before = rows_everywhere(console_server.db.engine)
    for _ in range(3):
        again = console_server.post(
            gzip.compress(body(report)), headers={"Content-Encoding": "gzip"}
        )
        assert again.status_code == 200, again.text
        assert again.json() == {"scan_id": report["scan_id"], "stored": False}
    assert rows_everywhere(console_server.db.engine) == before
    assert before["scans"] == 1


def test_a_second_scan_of_a_container_becomes_its_latest(
    console_server: ConsoleServer, tmp_path: Path
) -> None:
    first = fargate_report(tmp_path)
    second = fresh(first)
    assert console_server.post(body(first)).status_code == 201
    assert console_server.post(body(second)).status_code == 201
    with console_server.db.engine.connect() as connection:
        latest = connection.execute(
            select(Scan.scan_id).join(Container, Container.latest_scan_id == Scan.id)
        ).all()
        assert count(console_server.db.engine, Container) == 2
    assert latest == [(uuid.UUID(second["scan_id"]),)]


def test_gzip_multi_member_body(
    console_server: ConsoleServer, plain_report: dict[str, Any]
) -> None:
    data = body(fresh(plain_report))
    split = gzip.compress(data[:100]) + gzip.compress(data[100:])  # as `cat a.gz b.gz` makes
    answer = console_server.post(split, headers={"Content-Encoding": "gzip"})
    assert answer.status_code == 201, answer.text


@pytest.mark.parametrize("token", ["", "srt_wrong", "x" * 10_000])
def test_a_wrong_token_is_401(
    console_server: ConsoleServer, plain_report: dict[str, Any], token: str
) -> None:
    headers = {} if token else {"Authorization": "Bearer"}
    answer = console_server.post(body(fresh(plain_report)), token=token, headers=headers)
    assert answer.status_code == 401
    assert answer.json()["field"] == "Authorization"
    assert answer.headers["www-authenticate"] == "Bearer"
    assert count(console_server.db.engine, Scan) == 0


def test_no_bearer_scheme_is_401(
    console_server: ConsoleServer, plain_report: dict[str, Any]
) -> None:
    answer = console_server.post(
        body(fresh(plain_report)), headers={"Authorization": f"Basic {console_server.token}"}
    )
    assert answer.status_code == 401


def test_a_revoked_token_is_401(
    console_server: ConsoleServer, plain_report: dict[str, Any]
) -> None:
    engine = console_server.db.engine
    token = create_token(engine, "soon-revoked", [])
    assert console_server.post(body(fresh(plain_report)), token=token).status_code == 201
    revoke_token(engine, "soon-revoked")
    answer = console_server.post(body(fresh(plain_report)), token=token)
    assert answer.status_code == 401 and "revoked" in answer.json()["error"]
    assert count(engine, Scan) == 1


def test_a_read_only_token_cannot_ingest(
    console_server: ConsoleServer, plain_report: dict[str, Any]
) -> None:
    from console.kinds import Scope

    token = create_token(console_server.db.engine, "reader", [Scope.READ])
    assert console_server.post(body(fresh(plain_report)), token=token).status_code == 403


@pytest.mark.parametrize(
    ("headers", "field"),
    [
        ({"Content-Type": "text/plain"}, "Content-Type"),
        ({"Content-Type": "application/x-www-form-urlencoded"}, "Content-Type"),
        ({"Content-Encoding": "br"}, "Content-Encoding"),
        ({"Content-Encoding": "gzip, gzip"}, "Content-Encoding"),
    ],
)
def test_unsupported_media_is_415(
    console_server: ConsoleServer, plain_report: dict[str, Any], headers: dict[str, str], field: str
) -> None:
    answer = console_server.post(body(fresh(plain_report)), headers=headers)
    assert answer.status_code == 415
    assert answer.json()["field"] == field


def test_charset_parameter_is_accepted(
    console_server: ConsoleServer, plain_report: dict[str, Any]
) -> None:
    headers = {"Content-Type": "application/json; charset=utf-8"}
    assert console_server.post(body(fresh(plain_report)), headers=headers).status_code == 201


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data[: len(data) // 2],  # truncated
        lambda data: data[:-4],  # the trailer's size field cut
        lambda data: b"not gzip at all",
        lambda data: data[:20] + bytes(b ^ 0xFF for b in data[20:40]) + data[40:],  # corrupt
        lambda data: data + b"trailing garbage",
        lambda data: b"",
    ],
    ids=["half", "no-size", "not-gzip", "corrupt", "trailing", "empty"],
)
def test_broken_gzip_is_400(
    console_server: ConsoleServer, plain_report: dict[str, Any], damage: Any
) -> None:
    data = damage(gzip.compress(body(fresh(plain_report))))
    answer = console_server.post(data, headers={"Content-Encoding": "gzip"})
    assert answer.status_code == 400, answer.text
    assert answer.json()["field"] == "body"
    assert count(console_server.db.engine, Scan) == 0


@functools.cache
def bomb(inflated: int) -> bytes:
    """`inflated` bytes of zeros (JSON whitespace would do as well), gzipped: ~1,000:1."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = bytes(1 << 20)
    parts = [compressor.compress(block) for _ in range(inflated >> 20)]
    return b"".join(parts) + compressor.flush()


def test_a_gzip_bomb_is_413(console_server: ConsoleServer) -> None:
    data = bomb(256 << 20)  # 256 MiB inflated, 64 times the server's limit
    assert len(data) < LIMIT
    answer = console_server.post(data, headers={"Content-Encoding": "gzip"})
    assert answer.status_code == 413, answer.text
    assert answer.json()["field"] == "body"


def test_the_inflater_stops_at_the_limit() -> None:
    """A 256 MiB bomb: the inflater hands out at most limit + 1 bytes before refusing."""
    data = bomb(256 << 20)
    inflater = Inflater(max_bytes=1 << 20)
    produced = 0
    started = time.monotonic()
    with pytest.raises(BodyError) as refused:
        for offset in range(0, len(data), 65536):
            produced += sum(map(len, inflater.feed(data[offset : offset + 65536])))
    assert refused.value.status == 413
    assert produced <= (1 << 20) + 1 and inflater.produced <= (1 << 20) + 1
    assert time.monotonic() - started < 1


def test_a_body_over_the_limit_is_413(console_server: ConsoleServer) -> None:
    oversized = b" " * (LIMIT + 1)
    answer = console_server.post(oversized)
    assert answer.status_code == 413 and answer.json()["field"] == "body"


def test_a_chunked_body_over_the_limit_is_413(console_server: ConsoleServer) -> None:
    """No Content-Length: the size is counted as the chunks come."""

    def chunks() -> Any:
        for _ in range(LIMIT // 65536 + 2):
            yield b" " * 65536

    import httpx

    answer = httpx.post(
        f"{console_server.base_url}/api/v1/scans",
        content=chunks(),
        headers={
            "Authorization": f"Bearer {console_server.token}",
            "Content-Type": "application/json",
        },
        timeout=30,
    )
    assert answer.status_code == 413


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "body"),  # deeper than any recursion
        (b'{"a":' * 70 + b"1" + b"}" * 70, "body"),  # past the depth limit of 64
        (b"not json", "body"),
        (b'{"schema": 1, "x": "\xff\xfe"}', "body"),  # not UTF-8
        (b"", "body"),
        (b"[]", "body"),
        (b"[" + b"0," * 2_000_001 + b"0]", "body"),  # more values than the limit
    ],
    ids=["deep", "depth-65", "not-json", "not-utf8", "empty", "array", "too-many-values"],
)
def test_bodies_that_are_no_report_are_422(
    console_server: ConsoleServer, data: bytes, field: str
) -> None:
    answer = console_server.post(data)
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] == field


def edit(report: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """`report` with the value at `path` (`findings.0.severity`) set, or deleted for ...."""
    document = fresh(report)
    *parents, last = path.split(".")
    target: Any = document
    for step in parents:
        target = target[int(step)] if step.isdigit() else target[step]
    key: Any = int(last) if last.isdigit() else last
    if value is ...:
        del target[key]
    else:
        target[key] = value
    return document


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        ("schema", 2, "schema"),
        ("schema", True, "schema"),
        ("schema", ..., "schema"),
        ("scan_id", ..., "scan_id"),
        ("scan_id", "not-a-uuid", "scan_id"),
        ("scan_id", str(uuid.uuid1()), "scan_id"),  # a UUID, but not version 4
        ("scan_id", 42, "scan_id"),
        ("scanner.name", "other", "scanner.name"),
        ("target.kind", "vm", "target.kind"),
        ("target.host", ..., "target.host"),
        ("target.host", "h" * 513, "target.host"),
        ("findings.0.severity", "severe", "findings[0].severity"),
        ("findings.0.check", None, "findings[0].check"),
        ("findings.0.path", 7, "findings[0].path"),
        ("findings.0.path_hex", "zz", "findings[0].path_hex"),
        ("findings.0.effect", "explode", "findings[0].effect"),
        ("findings.0.baselined", "yes", "findings[0].baselined"),
        ("findings.0", "a string", "findings[0]"),
        ("findings", {}, "findings"),
        ("problems.0.errno", -1, "problems[0].errno"),
        ("problems.0.errno", 2**40, "problems[0].errno"),
        ("suppressed", 1.5, "suppressed"),
        ("stats", [], "stats"),
        ("stats.seconds", float("nan"), "stats.seconds"),
        ("stats.bytes_hashed", 2**70, "stats.bytes_hashed"),
        ("notices", ["ok", 3], "notices[1]"),
        # A NUL or lone surrogate in a value is written out (test_console_adversary); in a key
        # (the scanner's own words) it is refused.
        ("stats.a\x00b", 1, "stats.<key>"),
        ("stats.\ud800", 1, "stats.<key>"),
        ("complete", "true", "complete"),
    ],
)
def test_a_bad_field_is_422_and_named(
    console_server: ConsoleServer, plain_report: dict[str, Any], path: str, value: Any, field: str
) -> None:
    document = edit(plain_report, path, value)
    data = json.dumps(document, allow_nan=True).encode("utf-8", "surrogatepass")
    answer = console_server.post(data)
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] == field
    assert count(console_server.db.engine, Scan) == 0


def test_too_many_containers_or_tags_are_422(console_server: ConsoleServer, tmp_path: Path) -> None:
    report = fargate_report(tmp_path)
    container = report["target"]["task"]["containers"][0]
    report["target"]["task"]["containers"] = [
        {**container, "docker_id": f"c{index}"} for index in range(101)
    ]
    answer = console_server.post(body(report))
    assert answer.status_code == 422 and answer.json()["field"] == "target.task.containers"
    report = fresh(report)
    report["target"]["task"]["containers"] = report["target"]["task"]["containers"][:100]
    report["target"]["image"] = {"name": "app", "tags": [f"t{index}" for index in range(1001)]}
    answer = console_server.post(body(report))
    assert answer.status_code == 422 and answer.json()["field"] == "target.image.tags"
    report["target"]["image"]["tags"] = ["1.0", "latest"]
    assert console_server.post(body(report)).status_code == 201
    assert count(console_server.db.engine, Container) == 101  # and the scanned one


def test_a_refusal_never_quotes_the_value(
    console_server: ConsoleServer, plain_report: dict[str, Any]
) -> None:
    document = edit(plain_report, "findings.0.severity", "s3cr3t-value")
    document["weird\x00key"] = "\x00"
    answer = console_server.post(body(document))
    assert answer.status_code == 422
    assert "s3cr3t" not in answer.text and "weird" not in answer.text


def test_a_non_utf8_path_keeps_its_hex(console_server: ConsoleServer, tmp_path: Path) -> None:
    raw = b"xmrig-\xff\xfe"
    miner = b"\x7fELF xmrig --donate-level 1 stratum+tcp://pool.example\n"
    root = make_root(tmp_path, miner=False, extra={b"tmp/" + raw: miner})
    report = scan_report(root)
    assert any(finding.get("path_hex") for finding in report["findings"])
    assert console_server.post(body(report)).status_code == 201
    with console_server.db.engine.connect() as connection:
        stored = connection.execute(select(Finding.path, Finding.path_hex)).all()
    assert (r"/tmp/xmrig-\xff\xfe", (b"tmp/" + raw).hex()) in stored


METACHARACTERS = "'; DROP TABLE scans; -- \" ` \\ %_ */ /* $1 ? :name \u2028 \U0001f600"
# Values the schema checks against a fixed set: changed, they would be a 422, not a probe.
FIXED = {"schema", "scan_id", "severity", "effect", "kind", "name", "path_hex", "implementation"}
FIXED |= {"version", "revision", "launch_type", "availability_zone", "manager", "check", "checks"}


def salted(value: Any, key: str = "") -> Any:
    """Every free string of a report with SQL metacharacters around it."""
    if isinstance(value, dict):
        return {k: salted(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [salted(v, key) for v in value]
    if isinstance(value, str) and key not in FIXED:
        return f"{METACHARACTERS}{value}{METACHARACTERS}"[:500]
    return value


def test_sql_metacharacters_in_every_string_are_data(
    console_server: ConsoleServer, tmp_path: Path
) -> None:
    report = salted(fargate_report(tmp_path))
    report["target"]["container"]["name"] = METACHARACTERS  # a name, in the kinds above
    report["target"]["task"]["containers"][0]["name"] = METACHARACTERS
    report["findings"][0]["package"] = {"name": METACHARACTERS, "version": "1'", "manager": "d'"}
    report["findings"][0]["rule"] = METACHARACTERS
    answer = console_server.post(body(report))
    assert answer.status_code == 201, answer.text
    engine = console_server.db.engine
    with engine.connect() as connection:
        finding = connection.execute(select(Finding)).one()
        host = connection.execute(select(Host)).one()
        task = connection.execute(select(Task)).one()
        scan = connection.execute(select(Scan)).one()
        names = {row.name for row in connection.execute(select(Container.name))}
    assert finding.title == report["findings"][0]["title"]
    assert finding.path == report["findings"][0]["path"]
    assert (finding.package_name, finding.rule) == (METACHARACTERS, METACHARACTERS)
    assert (
        host.name == report["target"]["task"]["id"]
        and task.family == report["target"]["task"]["family"]
    )
    assert scan.root == report["target"]["root"] and scan.notices == report["notices"]
    assert METACHARACTERS in names
    assert rows_everywhere(engine)["scans"] == 1  # the table is still there


def test_only_the_documented_finding_fields_are_kept(
    console_server: ConsoleServer, plain_report: dict[str, Any]
) -> None:
    """A report never carries a secret; a finding's extras (where one could hide) are dropped."""
    report = fresh(plain_report)
    report["findings"][0]["value"] = "AKIA-NOT-KEPT-EVER"
    report["findings"][0]["markers"] = ["AKIA-NOT-KEPT-EVER"]
    assert console_server.post(body(report)).status_code == 201
    with console_server.db.engine.connect() as connection:
        for table in ("findings", "scans", "problems"):
            rows = connection.execute(text(f"SELECT * FROM {table}")).all()
            assert "AKIA" not in repr(rows)


def test_the_token_is_stored_only_as_its_hash(console_server: ConsoleServer) -> None:
    with console_server.db.engine.connect() as connection:
        rows = connection.execute(text("SELECT * FROM tokens")).all()
    assert console_server.token not in repr(rows)
    secret = console_server.token.removeprefix("srt_")
    assert secret not in repr(rows)


def test_not_found_and_wrong_method_are_json(console_server: ConsoleServer) -> None:
    import httpx

    assert httpx.get(f"{console_server.base_url}/api/v1/scans").status_code == 405
    missing = httpx.get(f"{console_server.base_url}/nowhere")
    assert missing.status_code == 404 and missing.json()["error"]


def test_concurrent_ingests_sharing_images_and_hosts(
    console_server: ConsoleServer, tmp_path: Path
) -> None:
    """Eight senders at once, reports that share images, hosts and tasks in different
    combinations, each report sent twice: every report stored once, no error, no deadlock."""
    from concurrent.futures import ThreadPoolExecutor

    base = fargate_report(tmp_path)
    reports = []
    for index in range(24):
        report = fresh(base)
        task = report["target"]["task"]
        if index % 2:  # half in another task, its containers listed in the other order
            task["arn"] = task["arn"].replace(TASK_ID, f"{index:032x}")
            task["id"] = report["target"]["host"] = f"{index % 4:032x}"
            task["containers"] = list(reversed(task["containers"]))
        reports.append(report)
    with ThreadPoolExecutor(8) as pool:
        statuses = list(
            pool.map(lambda report: console_server.post(body(report)).status_code, reports * 2)
        )
    assert sorted(statuses) == [200] * 24 + [201] * 24
    rows = rows_everywhere(console_server.db.engine)
    assert rows["scans"] == 24 and rows["findings"] == 24 * len(base["findings"])
