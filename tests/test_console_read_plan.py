"""The Deployed page's query plan on a real PostgreSQL with enough rows that the planner would
rather use indexes: it reads no findings at all (the counts live on `scans`)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import postgres
import pytest
from console_fixtures import ConsoleDB
from sqlalchemy import Engine, text

from console.database import engine_for, upgrade
from console.params import Page
from console.reads import ImageQuery, image_details, image_page, image_statements

IMAGES = 3000
FINDINGS = 100_000
HOSTS = 300


def _fill(engine: Engine) -> None:
    """IMAGES images, each scanned once, run by two containers (one current, one two days
    old), FINDINGS findings spread over the scans; made in SQL (generate_series): seconds."""
    statements = [
        f"""INSERT INTO hosts (id, name, name_folded, kind, first_seen, last_seen)
        SELECT i, 'host-' || i, 'host-' || i,
               CASE WHEN i % 2 = 0 THEN 'fargate-task' ELSE 'host' END, now(), now()
        FROM generate_series(1, {HOSTS}) i""",
        f"""INSERT INTO images (id, key, name, first_seen, last_seen)
        SELECT i, 'name:img-' || i, 'registry/img-' || i, now(), now()
        FROM generate_series(1, {IMAGES}) i""",
        f"""INSERT INTO image_refs (image_id, ref, ref_folded, is_tag)
        SELECT i, 'registry/img-' || i, 'registry/img-' || i, false
        FROM generate_series(1, {IMAGES}) i""",
        f"""INSERT INTO containers (id, host_id, key, name, image_id, first_seen, last_seen)
        SELECT i, 1 + i % {HOSTS}, 'c-' || i, 'app', 1 + i % {IMAGES}, now(),
               CASE WHEN i % 2 = 0 THEN now() ELSE now() - interval '2 days' END
        FROM generate_series(1, {2 * IMAGES}) i""",
        f"""INSERT INTO scans (id, scan_id, received_at, host_id, image_id, target_kind, root,
            scanner_version, complete, suppressed, critical, high, medium, low, problem_count,
            checks, managers, notices, stats)
        SELECT i, md5(i::text)::uuid, now(), 1 + i % {HOSTS}, i, 'rootfs', '/', '1.0', true,
               0, i % 3, i % 5, i % 7, i % 11, 0, '["426"]', '[]', '[]', '{{}}'
        FROM generate_series(1, {IMAGES}) i""",
        "UPDATE images SET latest_scan_id = id, last_scanned = now()",
        f"""INSERT INTO findings (scan_id, "check", title, severity, kind, path, baselined)
        SELECT 1 + i % {IMAGES}, '426', 'a miner', 'high', 'file', '/tmp/x' || i, false
        FROM generate_series(1, {FINDINGS}) i""",
        "ANALYZE",
    ]
    with engine.begin() as connection:
        for statement in statements:
            connection.execute(text(statement))


@pytest.fixture(scope="module")
def loaded(postgres_cluster: postgres.PostgresCluster) -> Iterator[ConsoleDB]:
    url = postgres_cluster.url(postgres_cluster.new_database())
    engine = engine_for(url)
    upgrade(engine)
    _fill(engine)
    try:
        yield ConsoleDB("postgresql", url, engine)
    finally:
        engine.dispose()


def explain(engine: Engine, statement: Any) -> list[tuple[str, str | None, str | None]]:
    """Every node of the plan PostgreSQL chose: (node type, table, index)."""
    with engine.connect() as connection:
        compiled = statement.compile(dialect=connection.dialect)
        plan = connection.exec_driver_sql(
            "EXPLAIN (FORMAT JSON) " + str(compiled), compiled.params
        ).scalar_one()
    nodes = []
    pending = [plan[0]["Plan"]]
    while pending:  # bounded: a plan is a finite tree
        node = pending.pop()
        nodes.append((node["Node Type"], node.get("Relation Name"), node.get("Index Name")))
        pending.extend(node.get("Plans", []))
    return nodes


def since() -> datetime:
    return datetime.now(UTC) - timedelta(hours=24)


DEPLOYED = ImageQuery(deployed=True)  # the default Deployed page: sort -last_scanned, page 1


def test_the_default_deployed_page_reads_no_findings(loaded: ConsoleDB) -> None:
    page, total = image_statements(DEPLOYED, since())
    for statement in (page, total):
        tables = {table for _, table, _ in explain(loaded.engine, statement)}
        assert "findings" not in tables
        assert {"images", "containers"} <= tables  # the plan is the real query's


def test_the_deployed_page_answers_what_was_loaded(loaded: ConsoleDB) -> None:
    answer = image_page(loaded.engine, DEPLOYED, since())
    # Even containers are current; container i runs image 1 + i % IMAGES: every other image.
    assert answer["total"] == IMAGES // 2 and len(answer["images"]) == Page().size
    assert all(image["hosts"] == 1 for image in answer["images"])
    started = time.perf_counter()
    for _ in range(5):
        image_page(loaded.engine, DEPLOYED, since())
    assert (time.perf_counter() - started) / 5 < 1.0  # generous: a shared 2-core machine


def test_one_images_findings_come_by_index(loaded: ConsoleDB) -> None:
    from sqlalchemy import select

    from console.reads import findings as findings_table

    plan = explain(
        loaded.engine, select(findings_table).where(findings_table.c.scan_id == 7).limit(5000)
    )
    assert ("Seq Scan", "findings", None) not in plan
    assert any(index == "ix_findings_scan_id" for _, _, index in plan)
    details = image_details(loaded.engine, 7, since())
    expected = sum(1 for i in range(1, FINDINGS + 1) if 1 + i % IMAGES == 7)
    assert details is not None and details["findings_total"] == expected
