"""Console ingest and Deployed query: reports/s and latency of `POST /api/v1/scans` under
concurrent defenders, on SQLite and PostgreSQL with 1 and 2 `serve` processes, and the Deployed
page's p95 with 10,000 images and 500,000 findings loaded.

How to run it and what each row measures: bench/README.md, "Console ingest".
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "testsupport"))  # the builders the console's tests use
if str(REPO) not in sys.path:
    sys.path.append(str(REPO))  # last: an installed scan-root (the venv's, in CI) comes first

import httpx
import postgres
from console_load import load_fleet, run_deployed_page
from console_process import wait_until_answering
from console_reports import container_document, ecs_task, make_root, scan_report, task_document

import console

MINBASE = Path("/var/cache/scan-root-tests/bookworm-minbase")
TASK_ID = "0" * 31 + "1"  # the template's task id, replaced by each defender's own
SCAN_ID = "5ca1ab1e-0000-4000-8000-000000000000"  # the template's, replaced by a fresh UUID4
START_TIMEOUT = 60
REQUEST_TIMEOUT = 60  # seconds: a request slower than this is an error
BIG_FINDINGS = 2000
SMALL_EXTRA_MINERS = 11  # the generated "Debian-like" root: 12 findings, as bookworm-minbase's 10
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# --- reports -------------------------------------------------------------------------------


def _miners(count: int) -> dict[str, bytes]:
    marker = b"\x7fELF xmrig --donate-level 1 stratum+tcp://pool.example\n"
    return {f"tmp/miner-{index:05d}": marker + str(index).encode() for index in range(count)}


def _in_fargate_task(root: Path) -> dict[str, Any]:
    """The scanner's report of `root`, scanned inside a simulated Fargate task (its metadata
    served locally, as the ECS tests do); its scan_id and task id are placeholders."""
    app = container_document(TASK_ID, "app", "registry.example/app:1.2", "sha256:" + "d6" * 32)
    sidecar = container_document(TASK_ID, "scanner", "scan-root:latest", "sha256:" + "ab" * 32)
    task = task_document(TASK_ID, family="bench-task", containers=[app, sidecar])
    with ecs_task(task, app):
        return scan_report(root, scan_id=SCAN_ID)


def make_templates(work: Path, small_root: bool) -> dict[str, bytes]:
    """The two reports' JSON, as the scanner wrote them: `small` (bookworm-minbase when cached,
    else a generated root with 12 findings) and `big` (2,000 findings, a generated root)."""
    if small_root or not MINBASE.is_dir():
        small = _in_fargate_task(make_root(work / "small", extra=_miners(SMALL_EXTRA_MINERS)))
    else:
        small = _in_fargate_task(MINBASE)
    big = _in_fargate_task(make_root(work / "big", extra=_miners(BIG_FINDINGS - 1)))
    assert len(big["findings"]) == BIG_FINDINGS, len(big["findings"])
    return {name: json.dumps(report).encode() for name, report in (("small", small), ("big", big))}


@dataclass
class Defender:
    """One simulated defender: a Fargate task of its own (its task id in every report)."""

    index: int
    templates: dict[str, bytes]

    def __post_init__(self) -> None:
        own = f"{uuid.uuid4().hex}".encode()
        self.own = {
            name: body.replace(TASK_ID.encode(), own) for name, body in self.templates.items()
        }

    def body(self, kind: str, compress: bool) -> bytes:
        data = self.own[kind].replace(SCAN_ID.encode(), str(uuid.uuid4()).encode())
        return gzip.compress(data, compresslevel=6) if compress else data


# --- processes -----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _environment() -> dict[str, str]:
    """The serve and CLI children import the console this script imports."""
    env = dict(os.environ)
    imported = Path(console.__file__).resolve().parent.parent
    env["PYTHONPATH"] = os.pathsep.join([str(imported), str(REPO / "testsupport")])
    env["PYTHONSAFEPATH"] = "1"
    return env


def _console(*argv: str) -> list[str]:
    return [sys.executable, "-m", "console.entry", "console", *argv]


def create_token(url: str, scope: str = "ingest") -> str:
    """A token made by `scan-root console token create` (which also creates the schema)."""
    name = f"bench-{scope}-{uuid.uuid4().hex[:8]}"
    done = subprocess.run(
        _console("token", "create", name, "--scope", scope, "--db", url),
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"token create failed: {done.stderr.strip()}")
    return done.stdout.strip()


@contextmanager
def serving(url: str, processes: int) -> Iterator[tuple[str, int]]:
    """`scan-root console serve --workers N` on 127.0.0.1 and a free port: (base URL, pid)."""
    port = _free_port()
    command = _console(
        "serve", "--db", url, "--listen", f"127.0.0.1:{port}", "--workers", str(processes)
    )
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            command, env=_environment(), stdin=subprocess.DEVNULL, stdout=log, stderr=log
        )
        try:
            _wait_until_up(process, log, f"http://127.0.0.1:{port}", processes)
            yield f"http://127.0.0.1:{port}", process.pid
        finally:
            process.terminate()
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


def _wait_until_up(process: subprocess.Popen[bytes], log: Any, base: str, processes: int) -> None:
    deadline = time.monotonic() + START_TIMEOUT

    def output() -> str:
        log.seek(0)
        return str(log.read().decode(errors="replace")[-2000:])

    wait_until_answering(process, base, START_TIMEOUT, output)
    if processes > 1:
        _wait_for_children(process.pid, processes, deadline)


def _wait_for_children(pid: int, count: int, deadline: float) -> None:
    # uvicorn's supervisor answers as soon as one worker listens; wait for all of them.
    while len(_descendants(pid)) < count and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)  # each worker imports the app after it appears


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def _descendants(root: int) -> list[int]:
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat(int(entry))
            if fields is not None:
                parents.setdefault(int(fields[1]), []).append(int(entry))
    found, queue = [], [root]
    while queue:
        for child in parents.get(queue.pop(), []):
            found.append(child)
            queue.append(child)
    return found


def cpu_seconds(root: int) -> float:
    """CPU of `root` and its live descendants, and of the children they reaped."""
    total = 0
    for pid in (root, *_descendants(root)):
        fields = _stat(pid)
        if fields is not None:  # utime stime cutime cstime: fields 14-17 of stat
            total += sum(int(value) for value in fields[11:15])
    return total / CLOCK_TICKS


def _postmaster(cluster: postgres.PostgresCluster) -> int:
    return int((cluster.data / "postmaster.pid").read_text().split()[0])


# --- the load ------------------------------------------------------------------------------


@dataclass
class Sent:
    kind: str
    gzip: bool
    status: int  # 0: a transport error or a timeout
    seconds: float


@dataclass
class Row:
    engine: str
    processes: int
    senders: int
    seconds: float
    reports: int = 0
    reports_per_s: float = 0.0
    errors: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    latency_ms: dict[str, dict[str, float]] = field(default_factory=dict)
    cpu_s: dict[str, float] = field(default_factory=dict)
    load_before: tuple[float, float, float] = (0.0, 0.0, 0.0)
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)
    made_while_sending: int = 0  # reports past the premade ones: made in the timed window


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


class Wire:
    """One defender's keep-alive HTTP/1.1 connection, as plain bytes on an asyncio stream: the
    client must cost little, since it shares the two cores with what it measures (httpx cost
    about 2 ms of CPU per request, more than half of what the console spent)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def exchange(self, request: bytes) -> int:
        """Sends `request`, reads the whole answer; its status (0: the connection failed)."""
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                if self.streams is None:
                    self.streams = await asyncio.open_connection(self.host, self.port)
                reader, writer = self.streams
                writer.write(request)
                await writer.drain()
                head = await reader.readuntil(b"\r\n\r\n")
                status, length, close = _answer_head(head)
                await reader.readexactly(length)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            self.close()
            return 0
        if close:
            self.close()
        return status

    def close(self) -> None:
        if self.streams is not None:
            self.streams[1].close()
            self.streams = None


def _answer_head(head: bytes) -> tuple[int, int, bool]:
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    fields = dict(line.lower().split(": ", 1) for line in lines[1:] if ": " in line)
    return status, int(fields.get("content-length", "0")), fields.get("connection") == "close"


def _request(path: str, host: str, token: str, body: bytes, compressed: bool) -> bytes:
    coding = "Content-Encoding: gzip\r\n" if compressed else ""
    return (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\n{coding}Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


@dataclass
class Plan:
    """What one defender sends, in order: every report made before the timed window (as real
    defenders make theirs elsewhere); past the end of the list, made while sending."""

    defender: Defender
    numbers: list[int]
    made: list[bytes] = field(default_factory=list)
    made_late: int = 0


def _kind(number: int, big_every: int) -> tuple[str, bool]:
    kind = "big" if big_every and number % big_every == big_every - 1 else "small"
    return kind, number % 2 == 1  # every other report gzip (so every big one)


def _plans(
    defenders: list[Defender], count: int, big_every: int, path: str, host: str, token: str
) -> list[Plan]:
    plans = [Plan(defender, []) for defender in defenders]
    for number in range(count):  # numbered round robin, as the senders would take them
        plans[number % len(plans)].numbers.append(number)
    for plan in plans:
        for number in plan.numbers:
            kind, compressed = _kind(number, big_every)
            body = plan.defender.body(kind, compressed)
            plan.made.append(_request(path, host, token, body, compressed))
    return plans


async def _defend(
    wire: Wire,
    plan: Plan,
    deadline: float,
    counter: Iterator[int],
    big_every: int,
    path: str,
    host: str,
    token: str,
    out: list[Sent],
) -> None:
    made = iter(zip(plan.numbers, plan.made, strict=True))
    while time.monotonic() < deadline:
        ready = next(made, None)
        if ready is None:
            number = next(counter)
            kind, compressed = _kind(number, big_every)
            body = plan.defender.body(kind, compressed)
            request = _request(path, host, token, body, compressed)
            plan.made_late += 1
        else:
            number, request = ready
            kind, compressed = _kind(number, big_every)
        start = time.perf_counter()
        status = await wire.exchange(request)
        out.append(Sent(kind, compressed, status, time.perf_counter() - start))
    wire.close()


async def _load(
    plans: list[Plan], base: str, token: str, seconds: float, big_every: int
) -> tuple[list[Sent], float]:
    address = base.removeprefix("http://")
    host, port = address.rsplit(":", 1)
    out: list[Sent] = []
    counter = iter(range(10**9, 2 * 10**9))  # numbers past every premade one
    start = time.monotonic()
    await asyncio.gather(
        *(
            _defend(
                Wire(host, int(port)),
                plan,
                start + seconds,
                counter,
                big_every,
                "/api/v1/scans",
                address,
                token,
                out,
            )
            for plan in plans
        )
    )
    elapsed = time.monotonic() - start
    return out, elapsed


def measure_ingest(
    engine: str,
    url: str,
    processes: int,
    templates: dict[str, bytes],
    *,
    senders: int,
    seconds: float,
    big_every: int,
    premade_rate: float,
    cluster: postgres.PostgresCluster | None,
) -> Row:
    token = create_token(url)
    defenders = [Defender(index, templates) for index in range(senders)]
    row = Row(engine, processes, senders, seconds)
    with serving(url, processes) as (base, pid):
        address = base.removeprefix("http://")
        warm_up = _plans(defenders[:2], 40, big_every, "/api/v1/scans", address, token)
        asyncio.run(_load(warm_up, base, token, 1.0, big_every))  # not counted
        plans = _plans(
            defenders, int(premade_rate * seconds), big_every, "/api/v1/scans", address, token
        )
        row.load_before = os.getloadavg()
        cpu = {"server": cpu_seconds(pid), "client": time.process_time()}
        if cluster is not None:
            cpu["postgresql"] = cpu_seconds(_postmaster(cluster))
        sent, elapsed = asyncio.run(_load(plans, base, token, seconds, big_every))
        row.made_while_sending = sum(plan.made_late for plan in plans)
        cpu["server"] = cpu_seconds(pid) - cpu["server"]
        cpu["client"] = time.process_time() - cpu["client"]
        if cluster is not None:
            cpu["postgresql"] = cpu_seconds(_postmaster(cluster)) - cpu["postgresql"]
        row.load_after = os.getloadavg()
    stored = [one for one in sent if one.status == 201]
    row.seconds = round(elapsed, 2)
    row.reports = len(stored)
    row.reports_per_s = round(len(stored) / elapsed, 1)
    row.errors = len(sent) - len(stored)  # a replay (200) cannot happen: every scan_id is new
    row.statuses = {
        str(status): count for status, count in sorted(Counter(s.status for s in sent).items())
    }
    for name, chosen in (
        ("all", stored),
        ("small", [one for one in stored if one.kind == "small"]),
        ("big", [one for one in stored if one.kind == "big"]),
    ):
        if chosen:
            values = [one.seconds * 1000 for one in chosen]
            row.latency_ms[name] = {
                "n": len(values),
                "p50": round(statistics.median(values), 1),
                "p99": round(_percentile(values, 0.99), 1),
            }
    row.cpu_s = {name: round(value, 2) for name, value in cpu.items()}
    return row


# --- the Deployed query --------------------------------------------------------------------


def measure_deployed(
    engine: str, url: str, *, images: int, findings: int, runs: int
) -> dict[str, Any]:
    """Loads the fleet, then times the Deployed page: through `GET /api/v1/images?deployed=true`
    when the console serves it, else the statements the read API runs (console_load)."""
    from console.database import engine_for

    create_token(url)  # creates the schema, as any console command does on a new database
    store = engine_for(url)
    try:
        started = time.perf_counter()
        fleet = load_fleet(store, images=images, findings=findings)
        load_seconds = time.perf_counter() - started
        token = create_token(url, "read")
        timings: list[float] = []
        with serving(url, 1) as (base, _pid):
            probe = httpx.get(
                f"{base}/api/v1/images",
                params={"deployed": "true"},
                headers={"Authorization": f"Bearer {token}"},
                timeout=REQUEST_TIMEOUT,
            )
            via = "http" if probe.status_code == 200 else "sql"
            load_before = os.getloadavg()
            for _ in range(runs):
                start = time.perf_counter()
                if via == "http":
                    answer = httpx.get(
                        f"{base}/api/v1/images",
                        params={"deployed": "true"},
                        headers={"Authorization": f"Bearer {token}"},
                        timeout=REQUEST_TIMEOUT,
                    )
                    answer.raise_for_status()
                else:
                    with store.connect() as connection:
                        run_deployed_page(connection, fleet.now - timedelta(hours=24))
                timings.append((time.perf_counter() - start) * 1000)
        return {
            "engine": engine,
            "via": via,
            "route_status": probe.status_code,
            "fleet": {key: str(value) for key, value in asdict(fleet).items()},
            "load_seconds": round(load_seconds, 1),
            "runs": runs,
            "p50_ms": round(statistics.median(timings), 1),
            "p95_ms": round(_percentile(timings, 0.95), 1),
            "max_ms": round(max(timings), 1),
            "load_before": load_before,
            "load_after": os.getloadavg(),
        }
    finally:
        store.dispose()


# --- main ----------------------------------------------------------------------------------


def _database(engine: str, work: Path, cluster: postgres.PostgresCluster | None) -> str:
    if engine == "sqlite":
        return f"sqlite:///{work / f'console-{uuid.uuid4().hex[:8]}.db'}"
    assert cluster is not None
    return cluster.url(cluster.new_database())


def _machine() -> dict[str, Any]:
    model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return {"cpu": model, "cores": os.cpu_count(), "kernel": platform.release()}


def _print(rows: list[Row], deployed: list[dict[str, Any]]) -> None:
    print(
        "| engine | serve processes | reports/s | p50 ms | p99 ms | p50/p99 ms 2,000 findings "
        "| errors | CPU s server/db/client | load before / after |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        every = row.latency_ms.get("all", {})
        big = row.latency_ms.get("big", {})
        cpu = "/".join(
            f"{row.cpu_s.get(name, 0):.1f}" if name in row.cpu_s else "-"
            for name in ("server", "postgresql", "client")
        )
        print(
            f"| {row.engine} | {row.processes} | {row.reports_per_s:.0f} | {every.get('p50', '-')} "
            f"| {every.get('p99', '-')} | {big.get('p50', '-')} / {big.get('p99', '-')} "
            f"| {row.errors} | {cpu} | {row.load_before[0]:.2f} / {row.load_after[0]:.2f} |"
        )
    for result in deployed:
        print(
            f"Deployed page ({result['engine']}, via {result['via']}): p50 {result['p50_ms']} ms, "
            f"p95 {result['p95_ms']} ms over {result['runs']} runs; loaded in "
            f"{result['load_seconds']} s; load {result['load_before'][0]:.2f}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", default="sqlite,postgresql", help="sqlite,postgresql")
    parser.add_argument("--processes", default="1,2", help="serve processes per row, e.g. 1,2")
    parser.add_argument("--senders", type=int, default=32, help="concurrent defenders")
    parser.add_argument("--seconds", type=float, default=20, help="timed window per row")
    parser.add_argument(
        "--big-every", type=int, default=50, help="one report in N has 2,000 findings (0: none)"
    )
    parser.add_argument(
        "--small-root", action="store_true", help="a generated root, not bookworm-minbase"
    )
    parser.add_argument(
        "--premade-rate",
        type=float,
        default=600,
        help="reports/s the reports made before each timed window last for (default 600)",
    )
    parser.add_argument("--deployed-images", type=int, default=10_000)
    parser.add_argument("--deployed-findings", type=int, default=500_000)
    parser.add_argument("--deployed-runs", type=int, default=200, help="0: skip the query")
    parser.add_argument(
        "--pg-fast",
        action="store_true",
        help="PostgreSQL without fsync and synchronous commit (the tests' cluster)",
    )
    parser.add_argument("--json", type=Path, default=HERE / "results/console_ingest.json")
    args = parser.parse_args(argv)
    engines = [name.strip() for name in args.engines.split(",") if name.strip()]
    counts = [int(value) for value in args.processes.split(",")]
    if not set(engines) <= {"sqlite", "postgresql"} or not counts or min(counts) < 1:
        parser.error("--engines takes sqlite and/or postgresql; --processes positive numbers")
    if not 1 <= args.senders <= 512 or not 0 < args.seconds <= 600:
        parser.error("--senders 1..512, --seconds up to 600")
    with tempfile.TemporaryDirectory(prefix="console-bench-") as folder:
        work = Path(folder)
        templates = make_templates(work, args.small_root)
        rows: list[Row] = []
        deployed: list[dict[str, Any]] = []
        for engine in engines:
            cluster = (
                postgres.start_cluster(durable=not args.pg_fast) if engine == "postgresql" else None
            )
            try:
                for processes in counts:
                    rows.append(
                        measure_ingest(
                            engine,
                            _database(engine, work, cluster),
                            processes,
                            templates,
                            senders=args.senders,
                            seconds=args.seconds,
                            big_every=args.big_every,
                            premade_rate=args.premade_rate,
                            cluster=cluster,
                        )
                    )
                    print(json.dumps(asdict(rows[-1])), flush=True)
                if args.deployed_runs:
                    deployed.append(
                        measure_deployed(
                            engine,
                            _database(engine, work, cluster),
                            images=args.deployed_images,
                            findings=args.deployed_findings,
                            runs=args.deployed_runs,
                        )
                    )
            finally:
                if cluster is not None:
                    cluster.stop()
    _print(rows, deployed)
    result = {
        "machine": _machine(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "settings": vars(args) | {"json": str(args.json)},
        "report_bytes": {name: len(body) for name, body in templates.items()},
        "report_bytes_gzip": {name: len(gzip.compress(body)) for name, body in templates.items()},
        "ingest": [asdict(row) for row in rows],
        "deployed": deployed,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
