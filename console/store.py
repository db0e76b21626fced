"""One report into the store, in one transaction: stored whole, or (a replay) not at all.

Idempotence rests on the UNIQUE constraint on `scans.scan_id`, not on a read before the write:
two console processes racing with one report insert one scan row; the other's insert finds the
conflict (PostgreSQL waits for the first transaction to end) and its transaction is rolled
back. Rows are locked in one order (images by key, host, task, containers by key, scan) so
that concurrent ingests cannot deadlock. Only parameterised statements (SQLAlchemy Core).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, Table, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from .kinds import HostKind, Severity
from .models import Container, Finding, Host, Image, ImageRef, Problem, Scan, Task
from .report_schema import ContainerRecord, ImageRecord, ReportRecord

__all__ = ["Stored", "store_report"]


@dataclass(frozen=True, slots=True)
class Stored:
    scan_id: uuid.UUID
    created: bool  # False: a replay, nothing stored


def _table(model: Any) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table


def _upsert(
    connection: Connection,
    model: Any,
    values: dict[str, Any],
    keys: Sequence[str],
    changes: dict[str, Any],
) -> int:
    """The id of the row whose `keys` match `values`: inserted, or updated with `changes`."""
    table = _table(model)
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(table).values(**values)
    statement = statement.on_conflict_do_update(
        index_elements=[table.c[key] for key in keys],
        set_={
            key: value(statement.excluded) if callable(value) else value
            for key, value in changes.items()
        },
    ).returning(table.c.id)
    row_id = connection.execute(statement).scalar_one()
    assert isinstance(row_id, int)
    return row_id


def _image_records(report: ReportRecord) -> tuple[ImageRecord | None, list[ImageRecord]]:
    """The scanned image (of an image scan, or of the container scanned) and every image the
    report names: the task's other containers run theirs."""
    containers = list(report.task.containers) if report.task is not None else []
    if report.container is not None:
        containers.append(report.container)
    found = [_container_image(container) for container in containers]
    images = [image for image in found if image is not None]
    scanned = report.image
    if scanned is None and report.container is not None:
        scanned = _container_image(report.container)
    if scanned is not None and scanned.key is not None:
        images.append(scanned)
    return (scanned if scanned is not None and scanned.key is not None else None), images


def _container_image(container: ContainerRecord) -> ImageRecord | None:
    image = ImageRecord(name=container.image, tags=(), config_id=container.image_id, digest=None)
    return image if image.key is not None else None


def _store_images(
    connection: Connection, images: list[ImageRecord], now: datetime
) -> dict[str, int]:
    ids: dict[str, int] = {}
    for image in sorted(images, key=lambda record: record.key or ""):
        key = image.key
        assert key is not None
        if key in ids:
            continue
        ids[key] = _upsert(
            connection,
            Image,
            {
                "key": key,
                "digest": image.digest,
                "config_id": image.config_id,
                "name": image.name,
                "first_seen": now,
                "last_seen": now,
            },
            ["key"],
            {
                "last_seen": now,
                "name": lambda new: func.coalesce(new.name, _table(Image).c.name),
                "config_id": lambda new: func.coalesce(new.config_id, _table(Image).c.config_id),
            },
        )
    refs = {
        (ids[image.key], is_tag, ref)
        for image in images
        if image.key is not None
        for is_tag, ref in [(False, image.name), *((True, tag) for tag in image.tags)]
        if ref
    }
    if refs:
        dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
        connection.execute(
            dialect.insert(_table(ImageRef)).on_conflict_do_nothing(),
            [
                {"image_id": image_id, "is_tag": is_tag, "ref": ref, "ref_lower": ref.lower()}
                for image_id, is_tag, ref in sorted(refs)
            ],
        )
    return ids


def _store_host(connection: Connection, report: ReportRecord, now: datetime) -> int:
    # A Fargate task is a host named by its task id; an EC2 task's host is the instance.
    fargate = report.fargate and report.task is not None
    name = report.task.task_id if fargate and report.task is not None else report.host
    kind = HostKind.FARGATE_TASK if fargate else HostKind.HOST
    return _upsert(
        connection,
        Host,
        {
            "name": name,
            "name_lower": name.lower(),
            "kind": kind,
            "first_seen": now,
            "last_seen": now,
        },
        ["name"],
        {"last_seen": now, "kind": kind},
    )


def _store_task(
    connection: Connection, report: ReportRecord, host_id: int, now: datetime
) -> int | None:
    task = report.task
    if task is None:
        return None
    details = {
        "task_id": task.task_id,
        "task_id_lower": task.task_id.lower(),
        "cluster": task.cluster,
        "family": task.family,
        "family_lower": task.family.lower() if task.family else None,
        "revision": task.revision,
        "launch_type": task.launch_type or report.launch_type,
        "availability_zone": task.availability_zone,
        "host_id": host_id,
        "last_seen": now,
    }
    return _upsert(
        connection, Task, {"arn": task.arn, "first_seen": now, **details}, ["arn"], details
    )


def _store_containers(
    connection: Connection,
    report: ReportRecord,
    host_id: int,
    task_id: int | None,
    images: dict[str, int],
    now: datetime,
) -> int | None:
    """Every container the report names; the id of the one scanned, if any."""
    containers = {
        container.key: container
        for container in (report.task.containers if report.task is not None else ())
    }
    if report.container is not None:
        containers[report.container.key] = report.container
    ids = {}
    for key, container in sorted(containers.items()):
        image = _container_image(container)
        details = {
            "name": container.name,
            "task_id": task_id,
            "image_id": images.get(image.key) if image is not None and image.key else None,
            "last_seen": now,
        }
        ids[key] = _upsert(
            connection,
            Container,
            {"host_id": host_id, "key": key, "first_seen": now, **details},
            ["host_id", "key"],
            details,
        )
    return ids[report.container.key] if report.container is not None else None


def _counts(report: ReportRecord) -> dict[str, int]:
    counts = dict.fromkeys(Severity, 0)
    for finding in report.findings:
        counts[finding.severity] += 1
    return {severity.value: count for severity, count in counts.items()}


def _package(record: Any) -> dict[str, Any]:
    package = record.package
    return {
        "package_name": package.name if package else None,
        "package_version": package.version if package else None,
        "package_manager": package.manager if package else None,
    }


def _insert_scan(
    connection: Connection,
    report: ReportRecord,
    ids: dict[str, int | None],
    token_id: int | None,
    now: datetime,
) -> int | None:
    """The new scan row's id, or None when `scan_id` is already stored (the UNIQUE index)."""
    table = _table(Scan)
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    statement = (
        dialect.insert(table)
        .values(
            scan_id=report.scan_id,
            received_at=now,
            token_id=token_id,
            target_kind=report.target_kind,
            root=report.root,
            scanner_version=report.scanner_version,
            implementation=report.implementation,
            complete=report.complete,
            suppressed=report.suppressed,
            problem_count=len(report.problems),
            checks=report.checks,
            managers=report.managers,
            notices=report.notices,
            stats=report.stats,
            **_counts(report),
            **ids,
        )
        .on_conflict_do_nothing(index_elements=[table.c.scan_id])
        .returning(table.c.id)
    )
    row_id = connection.execute(statement).scalar_one_or_none()
    assert row_id is None or isinstance(row_id, int)
    return row_id


def _insert_details(connection: Connection, report: ReportRecord, scan: int) -> None:
    if report.findings:
        connection.execute(
            insert(_table(Finding)),
            [
                {
                    "scan_id": scan,
                    "check": finding.check,
                    "title": finding.title,
                    "severity": finding.severity,
                    "kind": finding.kind,
                    "path": finding.path,
                    "path_hex": finding.path_hex,
                    "rule": finding.rule,
                    "effect": finding.effect,
                    "baselined": finding.baselined,
                    "detail": finding.detail,
                    **_package(finding),
                }
                for finding in report.findings
            ],
        )
    if report.problems:
        connection.execute(
            insert(_table(Problem)),
            [
                {
                    "scan_id": scan,
                    "kind": problem.kind,
                    "message": problem.message,
                    "path": problem.path,
                    "path_hex": problem.path_hex,
                    "check": problem.check,
                    "errno": problem.errno,
                    **_package(problem),
                }
                for problem in report.problems
            ],
        )


def _point_to_latest(
    connection: Connection,
    scan: int,
    image_id: int | None,
    container_id: int | None,
    now: datetime,
) -> None:
    if image_id is not None:
        images = _table(Image)
        connection.execute(
            update(images)
            .where(images.c.id == image_id)
            .where((images.c.last_scanned.is_(None)) | (images.c.last_scanned <= now))
            .values(latest_scan_id=scan, last_scanned=now)
        )
    if container_id is not None:
        containers = _table(Container)
        connection.execute(
            update(containers).where(containers.c.id == container_id).values(latest_scan_id=scan)
        )


def store_report(
    engine: Engine, report: ReportRecord, *, token_id: int | None, now: datetime | None = None
) -> Stored:
    """Stores `report` whole in one transaction; a known `scan_id` stores nothing."""
    when = now or datetime.now(UTC)
    with engine.connect() as connection:
        connection.execution_options(sqlite_immediate=True)
        with connection.begin() as transaction:
            scans = _table(Scan)
            # A shortcut for the usual replay only; the UNIQUE index below is what decides.
            known = connection.execute(
                select(scans.c.id).where(scans.c.scan_id == report.scan_id)
            ).first()
            if known is not None:
                return Stored(report.scan_id, created=False)
            scanned, images = _image_records(report)
            image_ids = _store_images(connection, images, when)
            host_id = _store_host(connection, report, when)
            task_id = _store_task(connection, report, host_id, when)
            container_id = _store_containers(connection, report, host_id, task_id, image_ids, when)
            image_id = image_ids.get(scanned.key) if scanned and scanned.key else None
            scan = _insert_scan(
                connection,
                report,
                {
                    "host_id": host_id,
                    "task_id": task_id,
                    "container_id": container_id,
                    "image_id": image_id,
                },
                token_id,
                when,
            )
            if scan is None:  # another process stored it first: undo our upserts too
                transaction.rollback()
                return Stored(report.scan_id, created=False)
            _insert_details(connection, report, scan)
            _point_to_latest(connection, scan, image_id, container_id, when)
    return Stored(report.scan_id, created=True)
