"""Fills an empty console store fast with a synthetic fleet, and the Deployed query it is built for.

The rows go straight into the store's own tables (SQLAlchemy Core executemany; PostgreSQL's
COPY for findings), not through `POST /api/v1/scans`: 10,000 reports at the ingest rates we
measure would take minutes, and the Deployed query reads only what ingest leaves behind, which
this loader writes with the same invariants (`tests/test_console_load.py` checks them):
* every scan's severity counts equal its findings', `problem_count` its problems';
* `images.latest_scan_id` / `last_scanned` name the image's newest scan, and
  `containers.latest_scan_id` the newest scan of that (host, container);
* a Fargate task is a host (`kind` `fargate-task`, named by its task id) and a task on it; an
  EC2 task's host is an instance;
* ids are explicit, and PostgreSQL's sequences are moved past them, so ingest works after.

The fleet: `images` images, each running in 1 to 3 containers (by its index) spread over
`hosts` hosts, half of them Fargate tasks; one image in five was last reported
`stale_age` ago (not deployed), the others within the last hour. Each image has one scan with
`findings // images` findings (the remainder goes to the first images).
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    Select,
    Table,
    and_,
    bindparam,
    distinct,
    exists,
    func,
    insert,
    select,
    text,
)

from console.kinds import HostKind
from console.models import Container, Finding, Host, Image, ImageRef, Scan, Task, folded

__all__ = ["Fleet", "deployed_page", "load_fleet"]

SEVERITIES = ("critical", "high", "medium", "low")
CHECKS = (("425", "private-key"), ("426", "miner"), ("448", "modified-package-file"))
TITLES = {
    "425": "Private keys stored in image",
    "426": "Crypto miner found",
    "448": "Package binaries modified",
}
STALE_EVERY = 5  # one image in this many is not deployed
CHUNK = 20_000  # rows per executemany / COPY batch


@dataclass(frozen=True, slots=True)
class Fleet:
    """What `load_fleet` wrote, and the moment its "now" was."""

    images: int
    deployed_images: int
    hosts: int
    tasks: int
    containers: int
    scans: int
    findings: int
    now: datetime


def _table(model: Any) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table


def _chunks(rows: Iterator[dict[str, Any]], size: int = CHUNK) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _insert(connection: Connection, model: Any, rows: Iterator[dict[str, Any]]) -> None:
    for batch in _chunks(rows):
        connection.execute(insert(_table(model)), batch)


def _severity(image: int, index: int) -> str:
    # Mostly low and medium, some high, few critical: what a fleet's compliance looks like.
    value = (image * 7 + index * 13) % 20
    return "critical" if value == 0 else "high" if value < 4 else "medium" if value < 11 else "low"


def _finding_rows(images: int, findings: int) -> Iterator[tuple[int, int, str]]:
    """(scan id, index within the scan, severity) of every finding."""
    per_image, extra = divmod(findings, images)
    for image in range(1, images + 1):
        for index in range(per_image + (1 if image <= extra else 0)):
            yield image, index, _severity(image, index)


def _copy_findings(connection: Connection, images: int, findings: int) -> None:
    """PostgreSQL: COPY in text format; every value here is plain ASCII without tabs."""
    raw = connection.connection.driver_connection
    assert raw is not None
    columns = 'scan_id, "check", title, severity, kind, path, baselined'
    cursor = raw.cursor()
    with cursor.copy(f"COPY findings ({columns}) FROM STDIN") as copy:
        buffer = io.StringIO()
        for count, (scan, index, severity) in enumerate(_finding_rows(images, findings), 1):
            check, kind = CHECKS[index % len(CHECKS)]
            buffer.write(
                f"{scan}\t{check}\t{TITLES[check]}\t{severity}\t{kind}\t"
                f"/usr/lib/app-{scan}/file-{index}\tf\n"
            )
            if count % CHUNK == 0:
                copy.write(buffer.getvalue())
                buffer = io.StringIO()
        copy.write(buffer.getvalue())


def _executemany_findings(connection: Connection, images: int, findings: int) -> None:
    def rows() -> Iterator[dict[str, Any]]:
        for scan, index, severity in _finding_rows(images, findings):
            check, kind = CHECKS[index % len(CHECKS)]
            yield {
                "scan_id": scan,
                "check": check,
                "title": TITLES[check],
                "severity": severity,
                "kind": kind,
                "path": f"/usr/lib/app-{scan}/file-{index}",
                "baselined": False,
            }

    _insert(connection, Finding, rows())


def _require_empty(connection: Connection) -> None:
    for model in (Image, Host, Task, Container, Scan, Finding):
        if connection.execute(select(func.count()).select_from(_table(model))).scalar_one():
            raise ValueError(f"load_fleet needs an empty store: {model.__tablename__} has rows")


def load_fleet(
    engine: Engine,
    *,
    images: int = 10_000,
    findings: int = 500_000,
    hosts: int = 2_000,
    now: datetime | None = None,
    stale_age: timedelta = timedelta(days=3),
) -> Fleet:
    """Writes the fleet into an empty, migrated store in one transaction."""
    if images < 1 or hosts < 2 or findings < 0:
        raise ValueError("load_fleet: at least 1 image, 2 hosts and no negative findings")
    when = now or datetime.now(UTC)
    fargate_hosts = hosts // 2  # hosts 1..fargate_hosts are Fargate tasks, the rest instances
    per_image, extra = divmod(findings, images)

    def seen(image: int) -> datetime:
        if image % STALE_EVERY == 0:
            return when - stale_age
        return when - timedelta(seconds=image % 3600)

    def host_of(image: int, slot: int) -> int:
        return (image * 3 + slot) % hosts + 1

    def task_id(host: int) -> str:
        return f"{host:032x}"

    def counts(image: int) -> dict[str, int]:
        found = dict.fromkeys(SEVERITIES, 0)
        for index in range(per_image + (1 if image <= extra else 0)):
            found[_severity(image, index)] += 1
        return found

    containers: list[dict[str, Any]] = []
    first_container: dict[int, int] = {}
    for image in range(1, images + 1):
        for slot in range(1 + image % 3):
            host = host_of(image, slot)
            container_id = len(containers) + 1
            first_container.setdefault(image, container_id)
            containers.append(
                {
                    "id": container_id,
                    "host_id": host,
                    "key": f"{image:08d}-{slot}",
                    "name": f"app-{slot}",
                    "task_id": host if host <= fargate_hosts else None,
                    "image_id": image,
                    "first_seen": seen(image),
                    "last_seen": seen(image),
                    "latest_scan_id": image if slot == 0 else None,
                }
            )

    with engine.begin() as connection:
        _require_empty(connection)
        _insert(
            connection,
            Host,
            (
                {
                    "id": host,
                    "name": task_id(host) if host <= fargate_hosts else f"ip-10-0-{host}",
                    "name_folded": folded(
                        task_id(host) if host <= fargate_hosts else f"ip-10-0-{host}"
                    ),
                    "kind": "fargate-task" if host <= fargate_hosts else "host",
                    "first_seen": when - stale_age,
                    "last_seen": when,
                }
                for host in range(1, hosts + 1)
            ),
        )
        _insert(
            connection,
            Task,
            (
                {
                    "id": host,
                    "arn": f"arn:aws:ecs:us-west-2:111122223333:task/prod/{task_id(host)}",
                    "task_id": task_id(host),
                    "task_id_folded": folded(task_id(host)),
                    "cluster": "arn:aws:ecs:us-west-2:111122223333:cluster/prod",
                    "family": f"fargate-task-{host % 50}",
                    "family_folded": folded(f"fargate-task-{host % 50}"),
                    "revision": "3",
                    "launch_type": "FARGATE",
                    "availability_zone": "us-west-2d",
                    "host_id": host,
                    "first_seen": when - stale_age,
                    "last_seen": when,
                }
                for host in range(1, fargate_hosts + 1)
            ),
        )
        _insert(
            connection,
            Image,
            (
                {
                    "id": image,
                    "key": f"digest:sha256:{image:064x}",
                    "digest": f"sha256:{image:064x}",
                    "config_id": f"sha256:{image + 10**9:064x}",
                    "name": f"registry.example/team-{image % 100}/app-{image}",
                    "first_seen": seen(image),
                    "last_seen": seen(image),
                    "last_scanned": seen(image),
                    "latest_scan_id": image,
                }
                for image in range(1, images + 1)
            ),
        )
        _insert(
            connection,
            ImageRef,
            (
                {"image_id": image, "is_tag": is_tag, "ref": ref, "ref_folded": folded(ref)}
                for image in range(1, images + 1)
                for is_tag, ref in (
                    (False, f"registry.example/team-{image % 100}/app-{image}"),
                    (True, f"registry.example/team-{image % 100}/app-{image}:1.{image % 10}"),
                )
            ),
        )
        _insert(connection, Container, iter(containers))
        _insert(
            connection,
            Scan,
            (
                {
                    "id": image,
                    "scan_id": uuid.UUID(int=image, version=4),
                    "received_at": seen(image),
                    "host_id": host_of(image, 0),
                    "container_id": first_container[image],
                    "task_id": host_of(image, 0) if host_of(image, 0) <= fargate_hosts else None,
                    "image_id": image,
                    "target_kind": "rootfs",
                    "root": "/",
                    "scanner_version": "0.0.0-load",
                    "implementation": "cython",
                    "complete": True,
                    "suppressed": 0,
                    "problem_count": 0,
                    "checks": [check for check, _ in CHECKS],
                    "managers": [],
                    "notices": [],
                    "stats": {},
                    **counts(image),
                }
                for image in range(1, images + 1)
            ),
        )
        if connection.dialect.name == "postgresql":
            _copy_findings(connection, images, findings)
            for table in ("hosts", "tasks", "images", "image_refs", "containers", "scans"):
                # Our own table names, no input: the sequences past the explicit ids.
                connection.execute(
                    text(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                        f"(SELECT max(id) FROM {table}))"
                    )
                )
        else:
            _executemany_findings(connection, images, findings)
    if engine.dialect.name == "postgresql":
        with engine.connect() as connection:
            connection.execution_options(isolation_level="AUTOCOMMIT")
            connection.execute(text("ANALYZE"))
    else:
        with engine.connect() as connection:
            connection.exec_driver_sql("ANALYZE")
    return Fleet(
        images=images,
        deployed_images=images - images // STALE_EVERY,
        hosts=hosts,
        tasks=fargate_hosts,
        containers=len(containers),
        scans=images,
        findings=findings,
        now=when,
    )


def deployed_page(since: datetime, *, limit: int = 50, offset: int = 0) -> list[Select[Any]]:
    """The statements of the default Deployed page (`GET /api/v1/images?deployed=true`), as
    the read API would run them with the store's indexes: the total, the page (newest scanned
    first) with hosts (hosts plus Fargate tasks: a Fargate task is a host) and Fargate tasks
    per image from `containers (image_id, last_seen)` and compliance from the latest scan's
    counts, then the page's tags and the checks of its latest scans (`findings (scan_id)`).

    The last two take the page's image and scan ids as bound parameters `images` / `scans`
    (expanding); `run_deployed_page` runs all four.
    """
    containers, images, scans = _table(Container), _table(Image), _table(Scan)
    hosts, refs, found = _table(Host), _table(ImageRef), _table(Finding)
    recent = containers.c.last_seen >= since
    running = containers.c.image_id == images.c.id
    # Per image of the page only (correlated): the page walks `images (last_scanned)` newest
    # first and stops after `limit` deployed images, each found by `containers (image_id,
    # last_seen)`; nothing is aggregated over the whole fleet but the total.
    host_count = (
        select(func.count(distinct(containers.c.host_id)))
        .where(running, recent)
        .scalar_subquery()
        .label("hosts")
    )
    fargate_count = (
        select(func.count(distinct(containers.c.host_id)))
        .join(hosts, hosts.c.id == containers.c.host_id)
        .where(running, recent, hosts.c.kind == HostKind.FARGATE_TASK)
        .scalar_subquery()
        .label("fargate_tasks")
    )
    total = select(func.count(distinct(containers.c.image_id))).where(
        recent, containers.c.image_id.is_not(None)
    )
    page = (
        select(
            images.c.id,
            images.c.name,
            images.c.digest,
            images.c.last_scanned,
            images.c.latest_scan_id,
            host_count,
            fargate_count,
            scans.c.critical,
            scans.c.high,
            scans.c.medium,
            scans.c.low,
        )
        .outerjoin(scans, scans.c.id == images.c.latest_scan_id)
        .where(exists().where(running, recent))
        .order_by(images.c.last_scanned.desc(), images.c.id)
        .limit(limit)
        .offset(offset)
    )
    tags = select(refs.c.image_id, refs.c.ref).where(
        and_(refs.c.image_id.in_(bindparam("images", expanding=True)), refs.c.is_tag.is_(True))
    )
    checks = (
        select(found.c.scan_id, func.count(distinct(found.c.check)))
        .where(found.c.scan_id.in_(bindparam("scans", expanding=True)))
        .group_by(found.c.scan_id)
    )
    return [total, page, tags, checks]


def run_deployed_page(connection: Connection, since: datetime, *, limit: int = 50) -> int:
    """Runs the Deployed page's statements; the number of images on the page."""
    total, page, tags, checks = deployed_page(since, limit=limit)
    connection.execute(total).scalar_one()
    rows = connection.execute(page).all()
    image_ids = [row.id for row in rows]
    scan_ids = [row.latest_scan_id for row in rows if row.latest_scan_id is not None]
    connection.execute(tags, {"images": image_ids}).all()
    connection.execute(checks, {"scans": scan_ids}).all()
    return len(rows)
