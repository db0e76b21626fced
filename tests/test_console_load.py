"""The synthetic fleet loader (testsupport/console_load.py) keeps ingest's invariants, on both
engines, and the console bench script runs (briefly, on SQLite) so that it cannot rot."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from child import child_env
from console_fixtures import ConsoleDB, ConsoleServer
from console_load import STALE_EVERY, deployed_page, load_fleet, run_deployed_page
from console_reports import make_root, scan_report
from sqlalchemy import func, select

from console.models import Container, Finding, Host, Image, Scan

REPO = Path(__file__).resolve().parent.parent
IMAGES, FINDINGS, HOSTS = 30, 407, 8


def _aware(moment: datetime) -> datetime:
    # SQLite gives back the UTC moments the store wrote without their zone.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def test_the_fleet_keeps_the_stores_invariants(console_db: ConsoleDB) -> None:
    fleet = load_fleet(console_db.engine, images=IMAGES, findings=FINDINGS, hosts=HOSTS)
    with console_db.engine.connect() as connection:
        scans = connection.execute(select(Scan)).all()
        severities = Counter(
            (row.scan_id, row.severity)
            for row in connection.execute(select(Finding.scan_id, Finding.severity))
        )
        images = connection.execute(select(Image)).all()
        containers = connection.execute(select(Container)).all()
        hosts = {row.id: row for row in connection.execute(select(Host))}
    assert len(scans) == fleet.scans == IMAGES
    assert sum(severities.values()) == fleet.findings == FINDINGS
    for scan in scans:
        for severity in ("critical", "high", "medium", "low"):
            assert getattr(scan, severity) == severities[(scan.id, severity)]
    by_id = {scan.id: scan for scan in scans}
    for image in images:
        assert by_id[image.latest_scan_id].image_id == image.id
    for container in containers:
        if container.latest_scan_id is not None:
            latest = by_id[container.latest_scan_id]
            assert (latest.host_id, latest.container_id) == (container.host_id, container.id)
        # A Fargate task is a host named by its task id; an instance runs no task of ours.
        assert (container.task_id is not None) == (hosts[container.host_id].kind == "fargate-task")
    assert fleet.containers == len(containers)
    assert fleet.deployed_images == IMAGES - IMAGES // STALE_EVERY


def test_the_deployed_page_lists_deployed_images_newest_first(console_db: ConsoleDB) -> None:
    fleet = load_fleet(console_db.engine, images=IMAGES, findings=FINDINGS, hosts=HOSTS)
    since = fleet.now - timedelta(hours=24)
    total, page, _tags, _checks = deployed_page(since, limit=10)
    with console_db.engine.connect() as connection:
        assert connection.execute(total).scalar_one() == fleet.deployed_images
        rows = connection.execute(page).all()
        expected: dict[int, set[int]] = {}
        for container in connection.execute(select(Container)):
            if _aware(container.last_seen) >= since:
                expected.setdefault(container.image_id, set()).add(container.host_id)
        assert run_deployed_page(connection, since, limit=10) == 10
    # The loader's image N was last scanned N % 3600 seconds before `now`.
    assert [row.id for row in rows] == sorted(expected, key=lambda image: (image % 3600, image))[
        :10
    ]
    for row in rows:
        assert row.id % STALE_EVERY != 0
        assert row.hosts == len(expected[row.id])


def test_ingest_works_after_the_fleet(console_server: ConsoleServer, tmp_path: Path) -> None:
    # The loader writes explicit ids: PostgreSQL's sequences must be moved past them.
    load_fleet(console_server.db.engine, images=IMAGES, findings=FINDINGS, hosts=HOSTS)
    report = scan_report(make_root(tmp_path))
    answer = console_server.post(json.dumps(report).encode())
    assert answer.status_code == 201, answer.text
    with console_server.db.engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(Scan)).scalar_one() == 31


def test_the_loader_refuses_a_store_with_rows(console_db: ConsoleDB) -> None:
    load_fleet(console_db.engine, images=3, findings=3, hosts=2)
    with pytest.raises(ValueError, match="empty store"):
        load_fleet(console_db.engine, images=3, findings=3, hosts=2)


def test_the_console_bench_runs(tmp_path: Path) -> None:
    """bench/console_ingest.py for 2 s on SQLite: every report stored, nothing an error."""
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "console_ingest.py"),
            "--engines=sqlite",
            "--processes=1",
            "--senders=4",
            "--seconds=2",
            "--small-root",
            "--deployed-images=200",
            "--deployed-findings=2000",
            "--deployed-runs=3",
            "--json",
            str(out),
        ],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(out.read_text())
    (row,) = result["ingest"]
    assert row["reports"] > 0 and row["errors"] == 0, row
    assert row["latency_ms"]["small"]["n"] > 0
    (deployed,) = result["deployed"]
    assert deployed["runs"] == 3 and deployed["p95_ms"] > 0
