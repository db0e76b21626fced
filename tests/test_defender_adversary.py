"""The defender attacked: a spool another process writes into (FIFOs, symlinks, nested JSON,
a full disk) and hostile token files; each must end in bounded time, without a traceback,
with what was lost said."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from child import child_env

from defender import cycle
from defender.cli import main as defend_main
from defender.cycle import MAX_URIS, Defender, DefenderSettings
from defender.delivery import ConsoleClient, Outcome
from defender.discovery import find_processes
from defender.policy_cache import PolicyCache
from defender.spool import CORRUPT, LOSSES, Spool, SpoolError

REPO = Path(__file__).resolve().parent.parent


def _run(*code: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    """Python in a child, so that a hang fails the test instead of stopping the suite."""
    return subprocess.run(
        [sys.executable, "-c", "\n".join(code)],
        env=child_env(),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_deeply_nested_losses_json_is_said_not_a_crash(tmp_path: Path) -> None:
    depth = 100_000
    (tmp_path / LOSSES).write_text('{"dropped": ' + "[" * depth + "]" * depth + "}")
    said, _ = Spool(tmp_path, 1 << 20).take_losses()
    assert any(LOSSES in line and "unreadable" in line for line in said)


@pytest.mark.parametrize("kind", ["fifo", "zero", "shadow"])
def test_losses_json_that_is_not_a_file_neither_blocks_nor_is_read(
    tmp_path: Path, kind: str
) -> None:
    losses = tmp_path / LOSSES
    if kind == "fifo":
        os.mkfifo(losses)
    else:
        secret = tmp_path.parent / f"secret-{kind}"
        secret.write_text('{"dropped": ["SECRET-VALUE"]}')
        losses.symlink_to("/dev/zero" if kind == "zero" else secret)
    done = _run(
        "from defender.spool import Spool",
        f"said, _ = Spool({str(tmp_path)!r}, 1 << 20).take_losses()",
        "print(said)",
    )
    assert done.returncode == 0, done.stderr
    assert "unreadable" in done.stdout and "SECRET-VALUE" not in done.stdout


@pytest.mark.parametrize("kind", ["fifo", "zero", "shadow"])
def test_a_report_swapped_for_a_fifo_or_symlink_after_the_scan_is_quarantined(
    tmp_path: Path, kind: str
) -> None:
    # The race: pending() saw a regular file, then another process put something else there.
    spool = Spool(tmp_path, 1 << 20)
    scan_id = str(uuid.uuid4())
    entry = spool.put(scan_id, json.dumps({"scan_id": scan_id}).encode())
    entry.path.unlink()
    if kind == "fifo":
        os.mkfifo(entry.path)
    else:
        secret = tmp_path.parent / "report-lookalike"
        secret.write_text(json.dumps({"scan_id": scan_id, "secret": "SECRET-VALUE"}))
        entry.path.symlink_to("/dev/zero" if kind == "zero" else secret)
    done = _run(
        "from pathlib import Path",
        "from defender.spool import Spool, SpoolEntry",
        f"spool = Spool.__new__(Spool); spool.directory = Path({str(tmp_path)!r})",
        "spool.max_bytes = 1 << 20; spool._losses = spool._read_losses()",
        f"print(spool.read(SpoolEntry(Path({str(entry.path)!r}), {scan_id!r}, 10)))",
        "print(spool.take_losses()[0])",
    )
    assert done.returncode == 0, done.stderr
    first, said = done.stdout.splitlines()[:2]
    assert first == "None" and "unreadable" in said and "SECRET-VALUE" not in done.stdout
    assert not os.path.lexists(entry.path) and any((tmp_path / CORRUPT).iterdir())


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def fill(path: Path) -> None:
    """Write zeros to `path` until its file system is full (ENOSPC, and nothing else)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        with pytest.raises(OSError) as full:
            while os.write(fd, b"\0" * 4096):
                continue
        assert full.value.errno == errno.ENOSPC
    finally:
        os.close(fd)


def test_a_full_disk_loses_the_report_with_a_log_line_not_a_traceback(
    tmp_path: Path, tiny_disk: Path
) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "hostname").write_text("app\n")
    spool = tiny_disk / "spool"
    (spool / CORRUPT).mkdir(parents=True)
    fill(tiny_disk / "filler")
    env = child_env()
    env.pop("ECS_CONTAINER_METADATA_URI_V4", None)
    argv = [sys.executable, "-m", "console.entry", "defend", "--once", "--host-root", str(root)]
    argv += ["--spool", str(spool), "--state-dir", str(tmp_path / "state")]
    argv += ["--policy-cache", str(tmp_path / "policy"), "--spool-max-bytes", "1M"]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 0, done.stderr
    assert "not spooled" in done.stderr and "No space left" in done.stderr
    # The loss could not be written either (the disk is full): the log is where it is said.
    assert "cannot record the loss" in done.stderr


def test_a_report_lost_to_a_full_disk_is_said_by_the_next_report(tiny_disk: Path) -> None:
    spool = Spool(tiny_disk / "spool", 1 << 20)
    fill(tiny_disk / "filler")
    lost = str(uuid.uuid4())
    with pytest.raises(OSError):
        spool.put(lost, json.dumps({"scan_id": lost}).encode())
    spool.lost(lost)  # what Defender._spool does with that OSError
    (tiny_disk / "filler").unlink()
    said, _ = spool.take_losses()
    assert any(lost in line and "dropped" in line for line in said)


def _defend_with_token_file(tmp_path: Path, token_file: Path) -> subprocess.CompletedProcess[str]:
    env = child_env()
    env.pop("SCAN_ROOT_TOKEN", None)
    argv = [sys.executable, "-m", "console.entry", "defend", "--console", "http://127.0.0.1:9"]
    argv += ["--token-file", str(token_file), "--spool", str(tmp_path / "spool")]
    argv += ["--state-dir", str(tmp_path / "state"), "--policy-cache", str(tmp_path / "p")]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=20)


@pytest.mark.parametrize("kind", ["fifo", "zero", "crlf", "non-ascii"])
def test_a_hostile_token_file_is_a_usage_error_in_bounded_time(tmp_path: Path, kind: str) -> None:
    token_file = tmp_path / "token"
    if kind == "fifo":
        os.mkfifo(token_file)
    elif kind == "zero":
        token_file = Path("/dev/zero")
    elif kind == "crlf":
        token_file.write_bytes(b"SECRET-TOKEN\r\nX-Injected: 1")
    else:
        token_file.write_bytes("SECRET-TÖKEN".encode())
    done = _defend_with_token_file(tmp_path, token_file)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and "SECRET" not in done.stderr + done.stdout


class _Trickle(BaseHTTPRequestHandler):
    """A console that answers one byte at a time, each just inside the socket timeout."""

    headers_slowly = False

    def do_GET(self) -> None:
        stop: threading.Event = self.server.stop  # type: ignore[attr-defined]
        try:
            if self.headers_slowly:
                self.wfile.write(b"HTTP/1.1 200 OK\r\n")
                while not stop.wait(0.2):
                    self.wfile.write(b"X-Slow: 1\r\n")
                    self.wfile.flush()
                return
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            while not stop.wait(0.2):
                self.wfile.write(b" ")
                self.wfile.flush()
        except OSError:
            return  # the client gave up: what the test wants

    def log_message(self, format: str, *args: object) -> None:
        return


class _TrickleHeaders(_Trickle):
    headers_slowly = True


@pytest.mark.parametrize(
    "handler",
    [
        _Trickle,
        # Header lines trickled inside the socket timeout: the whole exchange's watchdog.
        _TrickleHeaders,
    ],
)
def test_a_trickling_console_answer_takes_bounded_time(handler: type[_Trickle]) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.stop = threading.Event()  # type: ignore[attr-defined]
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    client = ConsoleClient(f"http://127.0.0.1:{server.server_port}", "a-token", timeout=1.0)
    outcome: list[object] = []

    def ask() -> None:
        try:
            outcome.append(client.request("GET", "/api/v1/policy"))
        except OSError as error:
            outcome.append(error)

    asking = threading.Thread(target=ask, daemon=True)
    started = time.monotonic()
    asking.start()
    asking.join(timeout=8)
    elapsed = time.monotonic() - started
    server.stop.set()  # type: ignore[attr-defined]
    server.shutdown()
    server.server_close()
    asking.join(timeout=5)
    assert elapsed < 8, "the request was still reading after 8 s with a 1 s timeout"
    assert outcome and isinstance(outcome[0], OSError)


def _fake_process(proc: Path, pid: int, comm: bytes, environ: bytes) -> None:
    directory = proc / str(pid)
    directory.mkdir(parents=True)
    (directory / "cgroup").write_bytes(b"0::/\n")  # a cgroup namespace: no DockerId seen
    rest = b" ".join([b"S", b"1"] + [b"0"] * 17 + [str(1000 + pid).encode()] + [b"0"] * 10)
    (directory / "stat").write_bytes(b"%d (%s) %s\n" % (pid, comm, rest))
    (directory / "environ").write_bytes(environ)


@pytest.mark.parametrize(
    "uri",
    [
        "http://[::1",  # urlsplit raises on it
        "http://169.254.169.254/latest/meta-data/",  # SSRF: another host
        "http://169.254.170.2@evil.example/v4/x",  # credentials in the netloc
        "http://169.254.170.2:80/v4/x",  # the same host by another netloc
    ],
)
def test_a_hostile_metadata_uri_in_a_process_environment_is_never_asked(
    tmp_path: Path, uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[str] = []
    monkeypatch.setattr(cycle, "container_at", asked.append)
    proc = tmp_path / "proc"
    _fake_process(
        proc, 100, b"a) S 1 (x\nevil", b"PATH=/bin\0ECS_CONTAINER_METADATA_URI_V4=" + uri.encode()
    )
    settings = DefenderSettings(
        state_dir=tmp_path / "state",
        proc=str(proc),
        environ={"ECS_CONTAINER_METADATA_URI_V4": "http://169.254.170.2/v4/defender"},
    )
    defender = Defender(settings, Spool(tmp_path / "spool", 1 << 20))
    discovery = find_processes(
        ["c" * 64], own_pid=1, resolve_uri=defender._uri_resolver(), proc=str(proc)
    )
    assert discovery.found == {} and len(discovery.problems) == 1 and asked == []


def test_thousands_of_distinct_metadata_uris_are_not_each_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    proc = tmp_path / "proc"
    for pid in range(100, 2100):
        uri = f"http://127.0.0.1:9/v4/{pid}".encode()
        _fake_process(proc, pid, b"app", b"ECS_CONTAINER_METADATA_URI_V4=" + uri)
    asked: list[str] = []

    monkeypatch.setattr(cycle, "container_at", asked.append)

    settings = DefenderSettings(
        state_dir=tmp_path / "state",
        proc=str(proc),
        environ={"ECS_CONTAINER_METADATA_URI_V4": "http://127.0.0.1:9/v4/defender"},
    )
    resolver = Defender(settings, Spool(tmp_path / "spool", 1 << 20))._uri_resolver()
    find_processes(["c" * 64], own_pid=1, resolve_uri=resolver, proc=str(proc))
    assert 0 < len(asked) <= MAX_URIS


@pytest.mark.parametrize(
    "args",
    [
        ["--interval", "nan"],
        ["--interval", "inf"],
        ["--interval", "-1"],
        ["--interval", "1e400"],
        ["--interval", "30x"],
        ["--spool-max-bytes", "-5M"],
        ["--spool-max-bytes", "nanM"],
        ["--spool-max-bytes", "1e9"],
        ["--max-cpu", "nan"],
        ["--max-cpu", "inf"],
        ["--max-cpu", "0"],
    ],
)
def test_bad_option_values_are_usage_errors(
    args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        defend_main(["--once", *args])
    assert stopped.value.code == 2 and "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://console.example/",
        "http://admin:SECRET-PASSWORD@console.example/",
        "http://[::1",
        "http:///no-host",
    ],
)
def test_a_console_url_that_is_no_console_is_a_usage_error(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SCAN_ROOT_TOKEN", "SECRET-TOKEN")
    code = defend_main(
        ["--console", url, "--spool", str(tmp_path / "s"), "--state-dir", str(tmp_path / "t")]
    )
    said = capsys.readouterr()
    assert code == 2 and "SECRET" not in said.err + said.out


class _Scripted(ConsoleClient):
    """A console whose answers to GET /api/v1/policy are given; it records what was asked."""

    def __init__(self, answers: list[tuple[int, dict[str, str], bytes]]) -> None:
        super().__init__("http://console.invalid", "a-token")
        self.answers = answers
        self.asked: list[Mapping[str, str]] = []

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        max_bytes: int = 0,
    ) -> tuple[int, Mapping[str, str], bytes]:
        self.asked.append(dict(headers or {}))
        return self.answers.pop(0)


GOOD_POLICY = b"version: 1\nrules:\n  - name: r\n    effects: {'425': alert}\n"


def test_a_304_without_a_cached_policy_runs_none_and_says_so(tmp_path: Path) -> None:
    state = PolicyCache(_Scripted([(304, {}, b"")]), tmp_path).refresh()
    assert state.policy is None and any("304" in problem for problem in state.problems)


def test_an_etag_with_cr_lf_is_never_sent_back_as_a_header(tmp_path: Path) -> None:
    client = _Scripted([(200, {"ETag": '"v1"\r\nX-Injected: 1'}, GOOD_POLICY), (304, {}, b"")])
    cache = PolicyCache(client, tmp_path)
    assert cache.refresh().policy is not None
    cache.refresh()
    assert all("\r" not in v and "\n" not in v for v in client.asked[1].values())


@pytest.mark.parametrize("path", ["/etc/shadow", "../../../../etc/shadow", "/proc/self/root/x"])
def test_a_policy_whose_script_file_reaches_out_is_neither_used_nor_cached(
    tmp_path: Path, path: str
) -> None:
    hostile = (
        b"version: 1\ncustom_checks:\n  - {id: 9001, name: x, severity: high, description: x, "
        b"script_file: '" + path.encode() + b"'}\n"
    )
    client = _Scripted([(200, {"ETag": '"v1"'}, GOOD_POLICY), (200, {"ETag": '"v2"'}, hostile)])
    cache = PolicyCache(client, tmp_path)
    good = cache.refresh().policy
    state = cache.refresh()
    assert state.policy == good and any("does not validate" in p for p in state.problems)
    assert (tmp_path / "policy.yaml").read_bytes() == GOOD_POLICY


class _Answering(BaseHTTPRequestHandler):
    """Answers every POST with the server's `status` (and `location`); records the requests."""

    def do_POST(self) -> None:
        server: Any = self.server
        server.seen.append(dict(self.headers.items()))
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(server.status)
        if server.location:
            self.send_header("Location", server.location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        return


@contextlib.contextmanager
def _answering(status: int, location: str = "") -> Iterator[Any]:
    server: Any = ThreadingHTTPServer(("127.0.0.1", 0), _Answering)
    server.status, server.location, server.seen = status, location, []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_never_carries_the_token_elsewhere(status: int) -> None:
    with _answering(201) as elsewhere:
        with _answering(status, f"http://127.0.0.1:{elsewhere.server_port}/steal") as console:
            client = ConsoleClient(f"http://127.0.0.1:{console.server_port}", "SECRET-TOKEN")
            reply = client.send(b'{"scan_id": "x"}')
    assert reply.outcome is Outcome.RETRY and elsewhere.seen == []
    assert "SECRET" not in reply.reason


@pytest.mark.parametrize("status", [418, 599, 204, 302])
def test_an_odd_status_keeps_the_report_for_a_retry(status: int) -> None:
    with _answering(status) as console:
        reply = ConsoleClient(f"http://127.0.0.1:{console.server_port}", "t").send(b"{}")
    assert reply.outcome is Outcome.RETRY and reply.status == status


def test_a_spool_that_is_a_symlink_is_refused_and_touches_nothing(tmp_path: Path) -> None:
    elsewhere = tmp_path / "someone-elses"
    elsewhere.mkdir()
    (elsewhere / "precious.txt").write_text("keep me")
    (tmp_path / "spool").symlink_to(elsewhere)
    with pytest.raises(SpoolError, match="symbolic link"):
        Spool(tmp_path / "spool", 1 << 20)
    assert sorted(p.name for p in elsewhere.iterdir()) == ["precious.txt"]
