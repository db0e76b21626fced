"""The console attacked with inputs made here, on SQLite and on a real PostgreSQL: each test is a
defect found that way (a report the scanner writes refused, a scan_id overwritten in silence,
a path the views would misname...) and stays as its guard."""

from __future__ import annotations

import copy
import dataclasses
import gzip
import io
import json
import os
import socket
import sqlite3
import stat
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from console_fixtures import ConsoleDB, ConsoleServer
from console_reports import body, fresh, make_root, scan_report
from sqlalchemy import func, select, text

from console import database
from console.app import Settings
from console.cli import MAX_PASSWORD
from console.cli import main as console_main
from console.database import ConsoleDBError, engine_for
from console.models import Finding, Problem, Scan, User

# A dpkg database as a hostile root may write it: a NUL and bytes that are not UTF-8 in a name.
HOSTILE_STATUS = (
    b"Package: ev\x00il\xff\nStatus: install ok installed\nVersion: 1.0\nArchitecture: amd64\n"
    b"Maintainer: x\nDescription: y\n\n"
)


@pytest.fixture(scope="module")
def plain_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return scan_report(make_root(tmp_path_factory.mktemp("plain")))


def scans(server: ConsoleServer) -> int:
    with server.db.engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(Scan)).scalar_one())


def test_a_nul_the_scanner_writes_from_a_hostile_root_is_stored_written_out(
    console_server: ConsoleServer, tmp_path: Path
) -> None:
    """A root's dpkg status with a NUL in a package name: the scanner's report carries it (a
    problem's message); refusing the report would keep the root's miner out of the console."""
    root = make_root(tmp_path)
    (root / "var/lib/dpkg/info").mkdir(parents=True)
    (root / "var/lib/dpkg/status").write_bytes(HOSTILE_STATUS)
    report = scan_report(root)
    assert any("\x00" in problem["message"] for problem in report["problems"])  # written
    answer = console_server.post(body(report))
    assert answer.status_code == 201, answer.text
    with console_server.db.engine.connect() as connection:
        messages = connection.execute(select(Problem.message)).scalars().all()
        paths = connection.execute(select(Finding.path)).scalars().all()
    assert "/tmp/xmrig" in paths
    assert any("ev\\x00il" in message for message in messages)
    assert not any("\x00" in message for message in messages)


def test_nul_and_lone_surrogates_in_values_are_written_out(
    console_server: ConsoleServer, plain_report: dict[str, Any]
) -> None:
    document = fresh(plain_report)
    document["target"]["root"] = "a\x00b"
    document["findings"][0]["title"] = "t\udcff"
    document["notices"] = ["n\x00"]
    data = json.dumps(document).encode("utf-8", "surrogatepass")
    answer = console_server.post(data)
    assert answer.status_code == 201, answer.text
    with console_server.db.engine.connect() as connection:
        scan = connection.execute(select(Scan.root, Scan.notices)).one()
        title = connection.execute(select(Finding.title)).scalar_one()
    assert (scan.root, scan.notices, title) == ("a\\x00b", ["n\\x00"], "t\\udcff")


def test_a_scan_id_sent_again_with_another_body_is_409_and_the_first_kept(
    console_server: ConsoleServer, plain_report: dict[str, Any]
) -> None:
    first = fresh(plain_report)
    assert console_server.post(body(first)).status_code == 201
    # The same report, spaced and compressed otherwise: a replay.
    again = json.dumps(first, indent=2, sort_keys=True).encode()
    answer = console_server.post(gzip.compress(again), headers={"Content-Encoding": "gzip"})
    assert (answer.status_code, answer.json()) == (
        200,
        {"scan_id": first["scan_id"], "stored": False},
    )
    other = copy.deepcopy(first)
    other["findings"] = []  # the finding that would vanish, were the second to win
    answer = console_server.post(body(other))
    assert answer.status_code == 409, answer.text
    assert answer.json()["stored"] is False and answer.json()["field"] == "scan_id"
    with console_server.db.engine.connect() as connection:
        assert connection.execute(select(Finding.path)).scalars().all() == ["/tmp/xmrig"]
    assert scans(console_server) == 1
    assert console_server.post(body(first)).status_code == 200  # still a replay


def test_racing_different_bodies_under_one_scan_id_store_one(
    console_server: ConsoleServer, plain_report: dict[str, Any]
) -> None:
    first = fresh(plain_report)
    bodies = []
    for index in range(4):
        variant = copy.deepcopy(first)
        variant["notices"] = [f"variant {index}"]
        bodies.append(body(variant))
    start = threading.Barrier(len(bodies))
    codes: list[int] = []

    def send(data: bytes) -> None:
        start.wait(10)
        codes.append(console_server.post(data).status_code)

    threads = [threading.Thread(target=send, args=(data,)) for data in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(codes) == [201, 409, 409, 409]
    assert scans(console_server) == 1


@pytest.mark.parametrize(
    ("where", "path", "path_hex"),
    [
        ("findings", "/tmp/xmrig-\\xff", b"/etc/shadow\xff".hex()),  # other bytes
        ("findings", "/tmp/xmrig", b"/tmp/xmrig".hex()),  # UTF-8: never given a path_hex
        ("findings", None, b"/tmp/x\xff".hex()),  # no path
        ("problems", "/var/lib/dpkg/\\xfe", b"/var/lib/dpkg/\xff".hex()),
    ],
    ids=["other-bytes", "utf8", "no-path", "problem"],
)
def test_a_path_hex_that_does_not_name_the_path_is_422(
    console_server: ConsoleServer,
    plain_report: dict[str, Any],
    where: str,
    path: str | None,
    path_hex: str,
) -> None:
    document = fresh(plain_report)
    item = document[where][0]
    item.pop("path", None)
    if path is not None:
        item["path"] = path
    item["path_hex"] = path_hex
    answer = console_server.post(body(document))
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] == f"{where}[0].path_hex"
    assert scans(console_server) == 0


@pytest.mark.parametrize(
    "encode",
    [
        lambda text: text.encode("utf-16"),
        lambda text: text.encode("utf-32"),
        lambda text: b"\xef\xbb\xbf" + text.encode(),
    ],
    ids=["utf-16", "utf-32", "bom"],
)
def test_only_utf8_without_a_bom_is_json(
    console_server: ConsoleServer, plain_report: dict[str, Any], encode: Any
) -> None:
    answer = console_server.post(encode(json.dumps(fresh(plain_report))))
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] == "body"
    assert scans(console_server) == 0


def test_a_key_named_twice_is_422(
    console_server: ConsoleServer, plain_report: dict[str, Any]
) -> None:
    """Which scan_id (or severity) a duplicate means is each parser's choice: refused."""
    data = body(fresh(plain_report))
    twice = data[:-1] + b', "scan_id": "' + str(uuid.uuid4()).encode() + b'"}'
    answer = console_server.post(twice)
    assert answer.status_code == 422 and "twice" in answer.json()["error"]
    nested = data.replace(b'"severity": "critical"', b'"severity": "low", "severity": "critical"')
    assert nested != data
    assert console_server.post(nested).status_code == 422
    assert scans(console_server) == 0


@pytest.mark.parametrize("good_first", [True, False])
def test_two_authorization_headers_are_401(
    console_server: ConsoleServer, plain_report: dict[str, Any], good_first: bool
) -> None:
    values = [f"Bearer {console_server.token}", "Bearer srt_other"]
    headers = [("Content-Type", "application/json")]
    headers += [("Authorization", value) for value in (values if good_first else values[::-1])]
    answer = httpx.post(
        f"{console_server.base_url}/api/v1/scans",
        content=body(fresh(plain_report)),
        headers=headers,
        timeout=30,
    )
    assert answer.status_code == 401 and answer.json()["field"] == "Authorization"
    assert scans(console_server) == 0


def test_a_token_in_the_query_string_is_never_taken(
    console_server: ConsoleServer, plain_report: dict[str, Any]
) -> None:
    for name in ("access_token", "token", "bearer"):
        answer = httpx.post(
            f"{console_server.base_url}/api/v1/scans?{name}={console_server.token}",
            content=body(fresh(plain_report)),
            headers={"Content-Type": "application/json"},
            timeout=30,
        )
        assert answer.status_code == 401
    assert scans(console_server) == 0


def test_an_acknowledged_commit_is_on_disk(console_db: ConsoleDB) -> None:
    """A 201 tells the defender it may forget the report: the commit must survive a power cut
    (SQLite: synchronous FULL; with NORMAL, WAL commits may be lost)."""
    with console_db.engine.connect() as connection:
        if console_db.kind == "sqlite":
            assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        else:  # the server's setting (the tests' server trades it for speed), not lowered
            source = connection.exec_driver_sql(
                "SELECT source FROM pg_settings WHERE name = 'synchronous_commit'"
            ).scalar()
            assert source in {"default", "configuration file", "command line"}


def _change_settings(http: Any, **changes: Any) -> None:
    """The in-process console's settings with `changes` (its report slots made anew)."""
    http.app.state.settings = dataclasses.replace(http.app.state.settings, **changes)


def _hold_a_slot(base_url: str, token: str) -> socket.socket:
    """A request whose body is promised but never sent: it holds its slot while read."""
    port = int(base_url.rsplit(":", 1)[1])
    held = socket.create_connection(("127.0.0.1", port))
    held.sendall(
        b"POST /api/v1/scans HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer " + token.encode() + b"\r\nContent-Length: 1000\r\n\r\n{"
    )
    return held


def test_reports_beyond_the_concurrent_limit_wait_then_503(
    console_server: ConsoleServer, _console_http: Any, plain_report: dict[str, Any]
) -> None:
    """Every report in progress may hold --max-report-bytes and its parsed form: their number
    is bounded, so that concurrent large posts cannot take all memory."""
    _change_settings(_console_http, max_concurrent_reports=1, slot_wait_seconds=0.3)
    held = _hold_a_slot(console_server.base_url, console_server.token)
    try:
        deadline = time.monotonic() + 10
        while True:  # until the held request has its slot
            answer = console_server.post(body(fresh(plain_report)))
            if answer.status_code == 503 or time.monotonic() > deadline:
                break
        assert answer.status_code == 503, answer.text
        assert answer.headers["Retry-After"] == "1"
    finally:
        held.close()
    deadline = time.monotonic() + 10
    while console_server.post(body(fresh(plain_report))).status_code != 201:
        assert time.monotonic() < deadline, "the slot was never given back"
        time.sleep(0.05)


def test_a_stalled_body_is_408_and_gives_its_slot_back(
    console_server: ConsoleServer, _console_http: Any, plain_report: dict[str, Any]
) -> None:
    """A sender that promises a body and stalls would hold its slot for ever: after the idle
    limit it is answered 408, and the one slot serves the next report."""
    _change_settings(
        _console_http, max_concurrent_reports=1, slot_wait_seconds=5.0, body_idle_seconds=0.5
    )
    held = _hold_a_slot(console_server.base_url, console_server.token)
    try:
        held.settimeout(10)
        started = time.monotonic()
        answer = held.recv(65536)
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:100]
        assert b'"field":"body"' in answer.replace(b" ", b"")
        assert time.monotonic() - started < 5
    finally:
        held.close()
    assert console_server.post(body(fresh(plain_report))).status_code == 201


def test_a_body_sent_too_slowly_in_all_is_408(
    console_server: ConsoleServer, _console_http: Any
) -> None:
    """Bytes that keep coming, each within the idle limit, still end at the total limit."""
    _change_settings(_console_http, body_idle_seconds=5.0, body_seconds=1.0)
    held = _hold_a_slot(console_server.base_url, console_server.token)
    try:
        held.settimeout(0.2)
        answer = b""
        deadline = time.monotonic() + 10
        while not answer and time.monotonic() < deadline:
            try:
                held.sendall(b" ")
                answer = held.recv(65536)
            except TimeoutError:
                continue
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:100]
    finally:
        held.close()


# SQLite's single writer: PostgreSQL has no database-wide write lock to be busy on.
@pytest.mark.parametrize("console_db", ["sqlite"], indirect=True)
def test_a_busy_sqlite_database_is_503_and_loses_nothing(
    console_server: ConsoleServer,
    _console_http: Any,
    plain_report: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert console_server.db.kind == "sqlite"
    monkeypatch.setattr(database, "SQLITE_BUSY_MS", 300)
    engine = engine_for(console_server.db.url)
    _console_http.app.state.settings = Settings(engine=engine)
    path = console_server.db.url.removeprefix("sqlite:///")
    writer = sqlite3.connect(path, isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")
        report = fresh(plain_report)
        answer = console_server.post(body(report))
        assert answer.status_code == 503 and answer.headers["Retry-After"] == "1"
        writer.execute("ROLLBACK")
        assert console_server.post(body(report)).status_code == 201  # the retry
    finally:
        writer.close()
        engine.dispose()
    assert scans(console_server) == 1


def _special_files(tmp_path: Path) -> list[str]:
    fifo = tmp_path / "fifo.db"
    os.mkfifo(fifo)
    made = [str(fifo), str(tmp_path)]
    if os.geteuid() == 0:  # a /dev/null of our own: SQLite would add a journal beside it
        device = tmp_path / "null.db"
        os.mknod(device, stat.S_IFCHR | 0o600, os.makedev(1, 3))
        made.append(str(device))
    return made


def test_a_sqlite_database_must_be_a_regular_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for path in _special_files(tmp_path):
        with pytest.raises(ConsoleDBError, match="not a regular file"):
            engine_for(f"sqlite:///{path}")
        assert console_main(["token", "list", "--db", f"sqlite:///{path}"]) == 2
        assert "not a regular file" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == sorted(
        name for name in ("fifo.db", "null.db") if (tmp_path / name).exists()
    )
    link = tmp_path / "link.db"
    link.symlink_to(tmp_path / "fifo.db")
    with pytest.raises(ConsoleDBError, match="not a regular file"):
        engine_for(f"sqlite:///{link}")


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///", "sqlite:///:memory:"])
def test_a_sqlite_database_in_memory_is_refused(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A token made there would be printed, and gone with the process."""
    assert console_main(["token", "create", "lost", "--db", url]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "in a file" in err


def test_a_password_too_long_is_refused_not_cut(
    console_db: ConsoleDB, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cut to the first 4096 characters, the hash would be of another password than the one
    given: a sign-in with the whole password would fail, one with its start succeed."""
    password = "p" * (MAX_PASSWORD + 100)
    monkeypatch.setattr(sys, "stdin", io.StringIO(password + "\n"))
    assert console_main(["user", "add", "alice", "--db", console_db.url]) == 2
    assert "longer than" in capsys.readouterr().err
    monkeypatch.setattr(sys, "stdin", io.StringIO("p" * MAX_PASSWORD + "\n"))
    assert console_main(["user", "add", "alice", "--db", console_db.url]) == 0
    with console_db.engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(User)).scalar_one() == 1
        connection.execute(text("SELECT 1"))
