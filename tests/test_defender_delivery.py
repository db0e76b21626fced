"""`scan-root defend` delivering to a real `scan-root console serve`, and to consoles that fail:
away for a cycle, answering 500, 401, 413 or 503, a corrupt spool, a policy from the console."""

from __future__ import annotations

import contextlib
import json
import signal
import sqlite3
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from browser import ConsoleProcess, console_process
from child import child_env
from debroot import debootstrap_root

from console.database import engine_for
from console.policy_store import save_policy
from defender.cli import HEARTBEAT, healthcheck


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A small root: a file, and a private key for 425 to find."""
    directory = tmp_path / "root"
    (directory / "etc").mkdir(parents=True)
    (directory / "etc" / "hostname").write_text("app\n")
    (directory / "home").mkdir()
    key = directory / "home" / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return directory


@contextlib.contextmanager
def serving(db: Path, *options: str) -> Iterator[ConsoleProcess]:
    work = db.parent / f"serve-{time.monotonic_ns()}"
    work.mkdir()
    with console_process(f"sqlite:///{db}", work, *options) as served:
        yield served


def defend(work: Path, root: Path, url: str, token: str, *extra: str, wait: bool = True) -> Any:
    env = child_env()
    env.pop("ECS_CONTAINER_METADATA_URI_V4", None)
    env["SCAN_ROOT_TOKEN"] = token
    argv = [
        sys.executable,
        "-m",
        "console.entry",
        "defend",
        "--console",
        url,
        "--host-root",
        str(root),
        "--spool",
        str(work / "spool"),
        "--state-dir",
        str(work / "state"),
        "--policy-cache",
        str(work / "policy"),
        *extra,
    ]
    if not wait:
        return subprocess.Popen(argv, env=env, stderr=subprocess.PIPE, text=True)
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)


def spooled(work: Path) -> list[Path]:
    return sorted((work / "spool").glob("*-*.json"))


def rows(db: Path, query: str) -> list[sqlite3.Row]:
    with sqlite3.connect(db) as connection:
        connection.row_factory = sqlite3.Row
        return connection.execute(query).fetchall()


def scan_ids(db: Path) -> list[str]:
    return [str(row["scan_id"]).replace("-", "") for row in rows(db, "SELECT scan_id FROM scans")]


def test_a_cycle_while_the_console_is_away_is_delivered_once_when_it_is_back(
    tmp_path: Path, root: Path
) -> None:
    db = tmp_path / "console.db"
    with serving(db) as console:
        token, away = console.shared_token("ingest"), console.base_url
    done = defend(tmp_path, root, away, token, "--once")
    assert done.returncode == 0, done.stderr
    waiting = spooled(tmp_path)
    assert len(waiting) == 1, done.stderr
    first = json.loads(waiting[0].read_bytes())["scan_id"]
    # A crash between the console's answer and the spool's unlink: the same report is sent
    # again. A copy of it goes back into the spool after the next delivery.
    copy = waiting[0].read_bytes()
    with serving(db) as console:
        done = defend(tmp_path, root, console.base_url, token, "--once")
        assert done.returncode == 0, done.stderr
        assert spooled(tmp_path) == []
        stored = scan_ids(db)
        assert len(stored) == 2 and first.replace("-", "") in stored
        waiting[0].write_bytes(copy)
        done = defend(tmp_path, root, console.base_url, token, "--once")
        assert done.returncode == 0, done.stderr
        assert "already stored" in done.stderr
        assert spooled(tmp_path) == []
        assert sorted(scan_ids(db)) == sorted({*stored, *scan_ids(db)})
        assert len(scan_ids(db)) == 3  # the replay added nothing; the third cycle did


class Failing:
    """A console that answers every request with `status` (and counts them)."""

    def __init__(self, status: int, headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.headers = headers or {}
        self.requests: list[str] = []


@contextlib.contextmanager
def failing_console(
    status: int, headers: dict[str, str] | None = None, tls: ssl.SSLContext | None = None
) -> Iterator[tuple[str, Failing]]:
    state = Failing(status, headers)

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            state.requests.append(f"{self.command} {self.path}")
            body = json.dumps({"error": f"status {state.status} <b>for you</b>\x07"}).encode()
            self.send_response(state.status)
            for name, value in state.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer

        def log_message(self, format: str, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    scheme = "http"
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"{scheme}://localhost:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    ("status", "headers"),
    [(500, {}), (401, {}), (403, {}), (503, {"Retry-After": "1"}), (429, {"Retry-After": "0"})],
)
def test_a_failing_console_keeps_the_report_in_the_spool(
    tmp_path: Path, root: Path, status: int, headers: dict[str, str]
) -> None:
    with failing_console(status, headers) as (url, state):
        done = defend(tmp_path, root, url, "a-token", "--once")
    assert done.returncode == 0, done.stderr
    posts = [request for request in state.requests if request.startswith("POST")]
    assert len(posts) == 3  # --once: three tries, then it waits for the next run
    assert len(spooled(tmp_path)) == 1
    assert "for you" in done.stderr  # the console's words are logged ...
    assert "\x07" not in done.stderr  # ... as printable text


def test_a_report_the_console_refuses_is_set_aside_and_said_in_the_next(
    tmp_path: Path, root: Path
) -> None:
    with failing_console(413) as (url, state):
        done = defend(tmp_path, root, url, "a-token", "--once")
    assert done.returncode == 0, done.stderr
    assert [r for r in state.requests if r.startswith("POST")] == ["POST /api/v1/scans"]
    assert spooled(tmp_path) == []
    assert len(list((tmp_path / "spool" / "corrupt").iterdir())) == 1  # kept to look at
    db = tmp_path / "console.db"
    with serving(db) as console:
        done = defend(tmp_path, root, console.base_url, console.shared_token("ingest"), "--once")
        assert done.returncode == 0, done.stderr
    said = [
        row["message"]
        for row in rows(db, "SELECT kind, message FROM problems")
        if row["kind"] == "delivery"
    ]
    assert len(said) == 1 and "413" in said[0], said


def test_corrupt_spool_files_are_set_aside_and_said(tmp_path: Path, root: Path) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_text('{"scan_id": "x"}')
    name = "00000000000000000001-0a0a0a0a-0a0a-4a0a-8a0a-0a0a0a0a0a0a.json"
    (spool / name).write_bytes(b'{"scan_id": "truncat')
    (spool / "00000000000000000002-0b0b0b0b-0b0b-4b0b-8b0b-0b0b0b0b0b0b.json").symlink_to(elsewhere)
    (spool / "not-a-report.txt").write_text("hello")
    (spool / "00000000000000000003-0c0c0c0c-0c0c-4c0c-8c0c-0c0c0c0c0c0c.json").mkdir()
    db = tmp_path / "console.db"
    with serving(db) as console:
        done = defend(tmp_path, root, console.base_url, console.shared_token("ingest"), "--once")
    assert done.returncode == 0, done.stderr
    assert len(scan_ids(db)) == 1
    assert spooled(tmp_path) == []
    assert elsewhere.read_text() == '{"scan_id": "x"}'  # a symlink is moved, never followed
    said = [
        row["message"]
        for row in rows(db, "SELECT kind, message FROM problems")
        if row["kind"] == "delivery"
    ]
    assert len(said) == 1 and "4 corrupt spool file(s)" in said[0], said
    assert "0a0a0a0a" in said[0] and "not-a-report.txt" in said[0]


POLICY = """\
version: 1
collections:
  - name: everywhere
    hosts: ["*"]
rules:
  - name: keys-are-fine-here
    collections: [everywhere]
    effects: {"425": ignore}
"""


def test_the_consoles_policy_is_used_and_cached_for_when_it_is_away(
    tmp_path: Path, root: Path
) -> None:
    db = tmp_path / "console.db"
    with serving(db) as console:
        save_policy(engine_for(console.db_url), POLICY, "admin", base=None)
        token = console.shared_token("ingest")
        done = defend(tmp_path, root, console.base_url, token, "--once")
        assert done.returncode == 0, done.stderr
        away = console.base_url
    stored = rows(db, "SELECT suppressed FROM scans")
    assert [row["suppressed"] for row in stored] == [1]
    assert (tmp_path / "policy" / "policy.yaml").read_text() == POLICY
    done = defend(tmp_path, root, away, token, "--once")
    assert done.returncode == 0, done.stderr
    report = json.loads(spooled(tmp_path)[0].read_bytes())
    assert report["suppressed"] == 1  # the cached policy ran
    assert [p["kind"] for p in report["problems"]].count("policy") == 1


def test_sigterm_stops_a_cycle_within_five_seconds(tmp_path: Path) -> None:
    big = debootstrap_root()
    with failing_console(500) as (url, _state):
        process = defend(tmp_path, big, url, "a-token", "--interval", "1h", wait=False)
        # The first scan of a debootstrap root under way: the spool is made just before it
        # (however slowly a loaded machine imports).
        deadline = time.monotonic() + 60
        while not (tmp_path / "spool").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.0)
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
        took = time.monotonic() - started
        returncode = process.returncode
    print(f"SIGTERM to exit: {took:.2f} s")
    assert took < 5, took
    assert returncode == 128 + signal.SIGTERM, stderr
    for path in spooled(tmp_path):
        json.loads(path.read_bytes())  # whole, never half written


def test_healthcheck_follows_the_last_cycle(tmp_path: Path) -> None:
    assert healthcheck(tmp_path) == 1  # no cycle yet
    (tmp_path / HEARTBEAT).write_text(json.dumps({"finished": 1000.0, "interval": 60.0}))
    assert healthcheck(tmp_path, now=1100.0) == 0
    assert healthcheck(tmp_path, now=1121.0) == 1  # more than two intervals
    (tmp_path / HEARTBEAT).write_text('{"finished": "soon"')
    assert healthcheck(tmp_path, now=1000.0) == 1


def certificate_authority(directory: Path) -> tuple[Path, ssl.SSLContext]:
    """A private CA (openssl) and a server context with a certificate for localhost it signed."""

    def openssl(*argv: str) -> None:
        subprocess.run(["openssl", *argv], check=True, capture_output=True, cwd=directory)

    key = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"
    openssl(*f"req -x509 {key} -keyout ca.key -out ca.pem -days 2 -subj /CN=test-CA".split())
    openssl(*f"req {key} -keyout server.key -out server.csr -subj /CN=localhost".split())
    (directory / "ext").write_text("subjectAltName=DNS:localhost\n")
    signing = "-CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile ext"
    openssl(*f"x509 -req -in server.csr {signing}".split())
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(directory / "server.pem", directory / "server.key")
    return directory / "ca.pem", context


def test_an_https_console_is_trusted_through_ca_file_only(tmp_path: Path, root: Path) -> None:
    ca, context = certificate_authority(tmp_path)
    with failing_console(201, tls=context) as (url, state):
        untrusted = defend(tmp_path / "a", root, url, "a-token", "--once")
        trusted = defend(tmp_path / "b", root, url, "a-token", "--once", "--ca-file", str(ca))
    assert untrusted.returncode == 0 and trusted.returncode == 0, trusted.stderr
    assert len(spooled(tmp_path / "a")) == 1  # the unverified console got nothing
    assert "CERTIFICATE_VERIFY_FAILED" in untrusted.stderr
    assert spooled(tmp_path / "b") == []
    assert [r for r in state.requests if r.startswith("POST")] == ["POST /api/v1/scans"]


def test_vulnerabilities_travel_from_the_defender_to_the_console(tmp_path: Path) -> None:
    """`defend --vulndb`: an Alpine 3.20 root with an openssl older than real v3.20 secfixes;
    the console stores each vulnerability the defender's report names."""
    _vulnerabilities_delivered(tmp_path, fetched=False)


def test_the_defender_fetches_the_consoles_advisory_database(tmp_path: Path) -> None:
    """`console serve --vulndb`: the defender without --vulndb downloads it (GET
    /api/v1/vulndb), matches with it, then asks again with its ETag (304) and keeps its copy
    when the console is away; the copy is the console's snapshot, not its file."""
    _vulnerabilities_delivered(tmp_path, fetched=True)


def _vulnerabilities_delivered(tmp_path: Path, *, fetched: bool) -> None:
    from vulndb.sources import read
    from vulndb.store import VulnDB

    root = tmp_path / "alpine"
    (root / "lib/apk/db").mkdir(parents=True)
    (root / "etc").mkdir()
    (root / "etc/alpine-release").write_text("3.20.3\n")
    (root / "lib/apk/db/installed").write_text("P:libssl3\nV:3.3.0-r0\nA:x86_64\no:openssl\n\n")
    advisories = Path(__file__).resolve().parent / "fixtures/advisories/alpine/3.20/main"
    vulndb = tmp_path / "vulndb.sqlite"
    with VulnDB.open_write(vulndb) as store:
        store.import_advisories(read(advisories / "openssl.json"), label="main")
    db = tmp_path / "console.db"
    if not fetched:
        with serving(db) as console:
            token = console.shared_token("ingest")
            done = defend(
                tmp_path, root, console.base_url, token, "--once", "--vulndb", str(vulndb)
            )
            assert done.returncode == 0, done.stderr
    else:
        with serving(db, "--vulndb", str(vulndb)) as console:
            token = console.shared_token("ingest")
            done = defend(tmp_path, root, console.base_url, token, "--once")
            assert done.returncode == 0, done.stderr
            copy = tmp_path / "policy" / "vulndb.sqlite"
            assert copy.is_file() and (tmp_path / "policy" / "vulndb.etag").is_file()
            first = copy.stat().st_ino
            done = defend(tmp_path, root, console.base_url, token, "--once")
            assert done.returncode == 0, done.stderr
            assert copy.stat().st_ino == first  # 304: the copy was kept, not downloaded again
            away = console.base_url
        done = defend(tmp_path, root, away, token, "--once")  # the console is gone
        assert done.returncode == 0, done.stderr
        [left] = spooled(tmp_path)
        report = json.loads(left.read_bytes())
        assert report["vulnerabilities"], "the cached copy matched"
        assert any(p["kind"] == "advisories" for p in report["problems"])
    stored = rows(db, "SELECT advisory, package_name, fixed_version FROM vulnerabilities")
    assert stored and {row["package_name"] for row in stored} == {"libssl3"}
    assert any(
        row["advisory"] == "CVE-2024-5535" and row["fixed_version"] == "3.3.1-r1" for row in stored
    )
    scans = rows(db, "SELECT vulnerabilities_matched FROM scans")
    assert scans and all(scan["vulnerabilities_matched"] for scan in scans)
