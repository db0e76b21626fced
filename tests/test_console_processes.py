"""The console as separate processes: `scan-root console serve` itself, two servers racing
with one report, and a server killed with SIGKILL in the middle of an ingest."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from child import SUPPORT, child_env
from console_fixtures import ConsoleDB
from console_process import wait_until_answering
from console_reports import make_root, scan_report
from sqlalchemy import func, select, text

from console.accounts import create_token
from console.models import Container, Finding, Host, Image, Problem, Scan, Task

START_TIMEOUT = 30


@pytest.fixture(scope="module")
def big_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A scanner's report, grown to 3,000 findings: an ingest long enough to be cut."""
    report = scan_report(make_root(tmp_path_factory.mktemp("big")))
    finding = report["findings"][0]
    report["findings"] = [{**finding, "path": f"/tmp/xmrig-{index}"} for index in range(3000)]
    return report


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def counts(db: ConsoleDB) -> dict[str, int]:
    with db.engine.connect() as connection:
        return {
            model.__tablename__: connection.execute(
                select(func.count()).select_from(model)
            ).scalar_one()
            for model in (Scan, Finding, Problem, Host, Task, Container, Image)
        }


def _environment(db: ConsoleDB, **extra: str) -> dict[str, str]:
    environment = child_env()  # the console this session imports (the venv's in CI)
    environment["SCAN_ROOT_CONSOLE_DB"] = db.url
    environment.update(extra)
    return environment


@contextmanager
def serving(
    command: list[str], environment: dict[str, str], port: int
) -> Iterator[subprocess.Popen[bytes]]:
    """A console process on 127.0.0.1:`port`, up and answering; killed (by its pid) at the end."""
    process = subprocess.Popen(
        command,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    try:
        wait_until_answering(
            process,
            f"http://127.0.0.1:{port}",
            START_TIMEOUT,
            lambda: process.stderr.read().decode() if process.stderr else "",
        )
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)
        if process.stderr:
            process.stderr.close()


def serve_command(port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "console.entry",
        "console",
        "serve",
        "--listen",
        f"127.0.0.1:{port}",
    ]


def paused_command(port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "console_faults:app",
        # uvicorn puts --app-dir (default: the working directory, a checkout) first on
        # sys.path: a checkout without an in-place build would shadow the installed core.
        "--app-dir",
        str(SUPPORT),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "critical",
    ]


def post(port: int, report: dict[str, Any], token: str, timeout: float = 30) -> httpx.Response:
    return httpx.post(
        f"http://127.0.0.1:{port}/api/v1/scans",
        content=json.dumps(report).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        timeout=timeout,
    )


def wait_for(predicate: Any, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def test_serve_takes_a_report_and_refuses_100_mb(
    console_db: ConsoleDB, big_report: dict[str, Any]
) -> None:
    """The real `scan-root console serve`: a report is stored; 100 MB of JSON, sent chunked
    (no Content-Length to refuse it by), is a 413 once past the default 64 MiB."""
    token = create_token(console_db.engine, "defender", [])
    port = free_port()
    with serving(serve_command(port), _environment(console_db), port):
        report = {**big_report, "scan_id": str(uuid.uuid4())}
        assert post(port, report, token).status_code == 201

        def hundred_mb() -> Iterator[bytes]:
            yield b'{"schema": 1, "padding": "'
            for _ in range(100):
                yield b"x" * (1 << 20)
            yield b'"}'

        answer = httpx.post(
            f"http://127.0.0.1:{port}/api/v1/scans",
            content=hundred_mb(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            timeout=60,
        )
        assert answer.status_code == 413
        assert answer.json()["field"] == "body"
    assert counts(console_db)["scans"] == 1


def test_an_oversized_header_is_refused_and_the_server_lives_on(console_db: ConsoleDB) -> None:
    port = free_port()
    with serving(serve_command(port), _environment(console_db), port) as process:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
            connection.sendall(
                b"POST /api/v1/scans HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n"
            )
            answer = b""
            try:
                while chunk := connection.recv(65536):
                    answer += chunk
            except ConnectionResetError:
                pass  # closed while we still sent: also a refusal
        assert answer == b"" or answer.split(b" ", 2)[1].startswith(b"4"), answer[:100]
        assert process.poll() is None
        # A big Authorization within the parser's limit is a plain 401.
        answer = httpx.post(
            f"http://127.0.0.1:{port}/api/v1/scans",
            content=b"{}",
            headers={"Authorization": "Bearer " + "t" * 8000, "Content-Type": "application/json"},
            timeout=10,
        )
        assert answer.status_code == 401


def _answer(connection: socket.socket) -> bytes:
    answer = b""
    try:
        while chunk := connection.recv(65536):
            answer += chunk
    except ConnectionResetError:
        pass  # closed while we still sent
    return answer


def test_a_head_sent_in_pieces_is_refused_once_past_the_limit(console_db: ConsoleDB) -> None:
    """httptools keeps an unfinished head in memory: the console counts it across reads and
    answers 431 once it passes 16 KiB, however it is cut up; the server lives on."""
    port = free_port()
    with serving(serve_command(port), _environment(console_db), port) as process:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
            connection.sendall(b"POST /api/v1/scans HTTP/1.1\r\nHost: x\r\nX-Long: ")
            try:
                for _ in range(40):  # 40 KiB, a KiB at a time, never ending the header
                    connection.sendall(b"a" * 1024)
                    time.sleep(0.005)
            except (BrokenPipeError, ConnectionResetError):
                pass  # refused before all of it was sent
            answer = _answer(connection)
        assert answer.startswith(b"HTTP/1.1 431 "), answer[:100]
        assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["field"] == "headers"
        # A long URL is part of the head too.
        with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
            connection.sendall(b"GET /api/v1/images?search=" + b"a" * 20_000 + b" HTTP/1.1\r\n")
            answer = _answer(connection)
        assert answer.startswith(b"HTTP/1.1 431 "), answer[:100]
        assert process.poll() is None


def test_heads_near_the_limit_with_their_bodies_in_one_read_are_taken(
    console_db: ConsoleDB, big_report: dict[str, Any]
) -> None:
    """The head is judged once parsed: two requests sent at once on one connection, each a
    15 KiB head and a 300 KB body (the second head begins in the read that ends the first
    body), are requests like any other."""
    token = create_token(console_db.engine, "defender", [])

    def request(last: bool) -> bytes:
        body = json.dumps({**big_report, "scan_id": str(uuid.uuid4())}).encode()
        assert len(body) > 300_000
        return (
            f"POST /api/v1/scans HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nX-Pad: {'p' * 15_000}\r\n"
            f"Content-Length: {len(body)}\r\n{'Connection: close' if last else 'X-A: b'}"
            "\r\n\r\n"
        ).encode() + body

    port = free_port()
    with serving(serve_command(port), _environment(console_db), port):
        with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
            connection.sendall(request(False) + request(True))
            answer = _answer(connection)
    assert answer.count(b"HTTP/1.1 201 ") == 2, answer[:300]
    assert counts(console_db)["scans"] == 2


def test_serve_refuses_a_bad_listen_address(console_db: ConsoleDB) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "console.entry", "console", "serve", "--listen", "nowhere"],
        env=_environment(console_db),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "--listen" in result.stderr


class Hold:
    """Ingests held just before they write into `table`, to race or kill them there.

    SQLite: the console_faults app stops before its statement that inserts into the table, and
    says so with a file. PostgreSQL, where one call of the store function writes a report: the
    test holds an EXCLUSIVE lock on the table (it lets reads by), which that call waits for.
    """

    def __init__(self, db: ConsoleDB, table: str, folder: Path) -> None:
        self.db, self.table, self.folder = db, table, folder
        self.postgresql = db.kind == "postgresql"
        self._holder: Any = None

    def __enter__(self) -> Hold:
        if self.postgresql:
            self._holder = self.db.engine.connect()
            self._holder.execute(text(f"LOCK TABLE {self.table} IN EXCLUSIVE MODE"))
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def environment(self) -> dict[str, str]:
        if self.postgresql:
            return _environment(self.db)
        return _environment(
            self.db,
            SCANROOT_PAUSE_AT=f"INSERT INTO {self.table}",
            SCANROOT_PAUSE_DIR=str(self.folder),
        )

    def command(self, port: int) -> list[str]:
        return serve_command(port) if self.postgresql else paused_command(port)

    def waiting(self) -> list[int]:
        """The ingests held (PostgreSQL: their server processes' pids)."""
        if not self.postgresql:
            return [int(path.stem) for path in self.folder.glob("*.reached")]
        with self.db.engine.connect() as connection:
            return list(
                connection.execute(
                    text(
                        "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                        "AND query LIKE '%scan_root_store_report%'"
                    )
                ).scalars()
            )

    def release(self) -> None:
        if self._holder is not None:
            self._holder.rollback()
            self._holder.close()
            self._holder = None
        (self.folder / "release").touch()


def test_two_servers_racing_store_one_copy(
    console_db: ConsoleDB, big_report: dict[str, Any], tmp_path: Path
) -> None:
    """Two console processes get the same report at once; both are held after their replay
    check (neither has stored it), then let go together: one stores it (201), the other finds
    it (200), and the rows are those of one report."""
    token = create_token(console_db.engine, "defender", [])
    report = {**big_report, "scan_id": str(uuid.uuid4())}
    ports = [free_port(), free_port()]
    answers: list[int] = []
    # SQLite: held before the host; PostgreSQL: before the scan row (past the replay check).
    with Hold(
        console_db, "scans" if console_db.kind == "postgresql" else "hosts", tmp_path
    ) as hold:
        with serving(hold.command(ports[0]), hold.environment(), ports[0]):
            with serving(hold.command(ports[1]), hold.environment(), ports[1]):
                senders = [
                    threading.Thread(
                        target=lambda p=port: answers.append(post(p, report, token).status_code)
                    )
                    for port in ports
                ]
                for sender in senders:
                    sender.start()
                # PostgreSQL: both are held (one by the lock, one by the first's rows).
                # SQLite: writers queue at BEGIN IMMEDIATE, so the second arrives only once
                # the first has committed.
                expected = 2 if console_db.kind == "postgresql" else 1
                assert wait_for(lambda: len(hold.waiting()) >= expected, 20)
                time.sleep(0.2)
                hold.release()
                for sender in senders:
                    sender.join(60)
    assert sorted(answers) == [200, 201]
    rows = counts(console_db)
    assert rows["scans"] == 1 and rows["findings"] == 3000 and rows["hosts"] == 1


def test_sigkill_mid_ingest_leaves_no_partial_rows(
    console_db: ConsoleDB, big_report: dict[str, Any], tmp_path: Path
) -> None:
    """Killed after its scan row and before its findings are written: nothing of the report is
    left (not the host either); sent again to a new server, it is stored once, whole.

    On PostgreSQL the call runs in the server: the console's death alone would not stop it, so
    its server process is killed too (as a crash of either ends it)."""
    token = create_token(console_db.engine, "defender", [])
    report = {**big_report, "scan_id": str(uuid.uuid4())}
    port = free_port()
    errors: list[BaseException] = []

    def send() -> None:
        try:
            post(port, report, token)
        except httpx.TransportError as error:
            errors.append(error)

    with Hold(console_db, "findings", tmp_path) as hold:
        with serving(hold.command(port), hold.environment(), port) as process:
            sender = threading.Thread(target=send)
            sender.start()
            assert wait_for(lambda: bool(hold.waiting()), 20)
            held = hold.waiting()
            os.kill(process.pid, signal.SIGKILL)
            process.wait(10)
            sender.join(30)
        if console_db.kind == "postgresql":
            with console_db.engine.connect() as connection:
                for pid in held:
                    connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            assert wait_for(lambda: not hold.waiting(), 20)
    assert errors, "the client saw the connection die"
    assert counts(console_db) == dict.fromkeys(counts(console_db), 0)

    port = free_port()
    with serving(serve_command(port), _environment(console_db), port):
        assert post(port, report, token).status_code == 201
        assert post(port, report, token).status_code == 200
    rows = counts(console_db)
    assert rows["scans"] == 1 and rows["findings"] == 3000
