"""One report into the store, in one transaction: stored whole, or (a replay) not at all.

Idempotence rests on the UNIQUE constraint on `scans.scan_id`, not on a read before the write:
two console processes racing with one report insert one scan row; the other's insert finds the
conflict (PostgreSQL waits for the first transaction to end) and its transaction is rolled
back. Rows are locked in one order (images by key, host, task, containers by key, scan) so
that concurrent ingests cannot deadlock.

Two writers of the same rows (console/store_rows.py): on SQLite, SQLAlchemy Core statements in
one transaction; on PostgreSQL, one call of the function `scan_root_store_report` (migration
0004), whose statements run in the server. That is one round trip per report instead of about
twenty-five, and what lets one PostgreSQL take hundreds of reports a second (docs/console.md,
"Ingest on PostgreSQL"). Both are parameterised; the tests run on both engines.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, Table, func, insert, select, text, update
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import IntegrityError

from .models import (
    Container,
    Finding,
    Host,
    Image,
    ImageRef,
    Problem,
    Scan,
    Task,
    Vulnerability,
)
from .report_schema import ReportRecord
from .store_rows import Row, Rows, rows_of

__all__ = ["Stored", "store_report"]


@dataclass(frozen=True, slots=True)
class Stored:
    scan_id: uuid.UUID
    created: bool  # False: a replay, or a conflict; nothing stored
    # Another report was stored under this scan_id first: it is kept, this one is not.
    conflict: bool = False


def _table(model: Any) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table


IMAGES, REFS, HOSTS, TASKS = _table(Image), _table(ImageRef), _table(Host), _table(Task)
CONTAINERS, SCANS, FINDINGS, PROBLEMS = (
    _table(Container),
    _table(Scan),
    _table(Finding),
    _table(Problem),
)
VULNERABILITIES = _table(Vulnerability)


def _stored(connection: Connection, scan_id: uuid.UUID) -> tuple[bool, str | None]:
    """Whether a scan with `scan_id` is stored, and its report's digest."""
    row = connection.execute(
        select(SCANS.c.report_sha256).where(SCANS.c.scan_id == scan_id)
    ).first()
    return row is not None, (row.report_sha256 if row is not None else None)


def _not_stored(report: ReportRecord, stored_digest: str | None) -> Stored:
    """A replay, or (the stored report's digest differs) a conflict. A scan stored before
    digests were kept (None) cannot be told apart: a replay."""
    conflict = stored_digest is not None and stored_digest != report.digest
    return Stored(report.scan_id, created=False, conflict=conflict)


# --- SQLite: Core statements in one transaction --------------------------------------------


def _upsert(
    connection: Connection, table: Table, values: Row, keys: list[str], changes: dict[str, Any]
) -> int:
    """The id of the row whose `keys` match `values`: inserted, or updated with `changes`."""
    statement = sqlite.insert(table).values(**values)
    upsert = statement.on_conflict_do_update(
        index_elements=[table.c[key] for key in keys],
        set_={
            key: value(statement.excluded) if callable(value) else value
            for key, value in changes.items()
        },
    ).returning(table.c.id)
    row_id = connection.execute(upsert).scalar_one()
    assert isinstance(row_id, int)
    return row_id


def _write_core(connection: Connection, rows: Rows, token_id: int | None, now: datetime) -> bool:
    """Writes `rows`; False (and nothing to keep) when the scan_id is stored already."""
    images = {
        row["key"]: _upsert(
            connection,
            IMAGES,
            {**row, "first_seen": now, "last_seen": now},
            ["key"],
            {
                "last_seen": now,
                "name": lambda new: func.coalesce(new.name, IMAGES.c.name),
                "config_id": lambda new: func.coalesce(new.config_id, IMAGES.c.config_id),
            },
        )
        for row in rows.images
    }
    if rows.refs:
        connection.execute(
            sqlite.insert(REFS).on_conflict_do_nothing(),
            [
                {"image_id": images[ref["image_key"]], **_without(ref, "image_key")}
                for ref in rows.refs
            ],
        )
    host_id = _upsert(
        connection,
        HOSTS,
        {**rows.host, "first_seen": now, "last_seen": now},
        ["name"],
        {"last_seen": now, "kind": rows.host["kind"]},
    )
    task_id = None
    if rows.task is not None:
        details = {**rows.task, "host_id": host_id, "last_seen": now}
        task_id = _upsert(
            connection, TASKS, {**details, "first_seen": now}, ["arn"], _without(details, "arn")
        )
    containers = {}
    for row in rows.containers:
        details = {
            "name": row["name"],
            "task_id": task_id,
            "image_id": images.get(row["image_key"]) if row["image_key"] else None,
            "last_seen": now,
        }
        containers[row["key"]] = _upsert(
            connection,
            CONTAINERS,
            {"host_id": host_id, "key": row["key"], "first_seen": now, **details},
            ["host_id", "key"],
            details,
        )
    image_id = images.get(rows.image_key) if rows.image_key else None
    container_id = containers.get(rows.container_key) if rows.container_key else None
    scan = connection.execute(
        sqlite.insert(SCANS)
        .values(
            scan_id=rows.scan_id,
            received_at=now,
            token_id=token_id,
            host_id=host_id,
            task_id=task_id,
            container_id=container_id,
            image_id=image_id,
            **rows.scan,
        )
        .on_conflict_do_nothing(index_elements=[SCANS.c.scan_id])
        .returning(SCANS.c.id)
    ).scalar_one_or_none()
    if scan is None:
        return False
    if rows.findings:
        connection.execute(insert(FINDINGS), [{"scan_id": scan, **row} for row in rows.findings])
    if rows.problems:
        connection.execute(insert(PROBLEMS), [{"scan_id": scan, **row} for row in rows.problems])
    if rows.vulnerabilities:
        connection.execute(
            insert(VULNERABILITIES), [{"scan_id": scan, **row} for row in rows.vulnerabilities]
        )
    if image_id is not None:
        connection.execute(
            update(IMAGES)
            .where(IMAGES.c.id == image_id)
            .where((IMAGES.c.last_scanned.is_(None)) | (IMAGES.c.last_scanned <= now))
            .values(latest_scan_id=scan, last_scanned=now)
        )
    if container_id is not None:
        connection.execute(
            update(CONTAINERS).where(CONTAINERS.c.id == container_id).values(latest_scan_id=scan)
        )
    return True


def _without(row: Row, key: str) -> Row:
    return {name: value for name, value in row.items() if name != key}


def _store_core(
    engine: Engine, report: ReportRecord, token_id: int | None, now: datetime
) -> Stored:
    with engine.connect() as connection:
        connection.execution_options(sqlite_immediate=True)
        with connection.begin() as transaction:
            # A shortcut for the usual replay only; the UNIQUE index is what decides.
            known, digest = _stored(connection, report.scan_id)
            if known:
                return _not_stored(report, digest)
            created = _write_core(connection, rows_of(report), token_id, now)
            if not created:  # another process stored it first: undo our upserts too
                transaction.rollback()
        if not created:
            with connection.begin():
                return _not_stored(report, _stored(connection, report.scan_id)[1])
    return Stored(report.scan_id, created=True)


# --- PostgreSQL: one call of the function migration 0004 made ------------------------------

# One statement, so one transaction: the report's rows (0004), then its vulnerabilities for
# the scan just stored (0007; nothing on a replay, whose scan_id comes back NULL).
_CALL = text(
    "SELECT scan_root_store_vulnerabilities(stored.scan_id, CAST(:vulnerabilities AS jsonb)) "
    "AS scan_id, stored.stored_digest FROM scan_root_store_report("
    "CAST(:rows AS jsonb), CAST(:checks AS json), CAST(:managers AS json), "
    "CAST(:notices AS json), CAST(:stats AS json), :token_id, :now) AS stored"
)
# The JSON columns keep the report's own text (the json type, not jsonb: key order as sent).
_JSON_COLUMNS = ("checks", "managers", "notices", "stats")


def _call_parameters(rows: Rows, token_id: int | None, now: datetime) -> dict[str, Any]:
    scan = {name: value for name, value in rows.scan.items() if name not in _JSON_COLUMNS}
    document = {
        "scan_id": str(rows.scan_id),
        "images": rows.images,
        "refs": rows.refs,
        "host": rows.host,
        "task": rows.task,
        "containers": rows.containers,
        "image_key": rows.image_key,
        "container_key": rows.container_key,
        "scan": scan,
        "findings": rows.findings,
        "problems": rows.problems,
    }
    vulnerabilities = None
    if rows.vulnerabilities is not None:
        counts = {
            key.removeprefix("vuln_"): value
            for key, value in rows.scan.items()
            if key.startswith("vuln_")
        }
        vulnerabilities = json.dumps({**counts, "items": rows.vulnerabilities})
    return {
        "rows": json.dumps(document),
        "vulnerabilities": vulnerabilities,
        **{name: json.dumps(rows.scan[name]) for name in _JSON_COLUMNS},
        "token_id": token_id,
        "now": now,
    }


def _store_postgresql(
    engine: Engine, report: ReportRecord, token_id: int | None, now: datetime
) -> Stored:
    parameters = _call_parameters(rows_of(report), token_id, now)
    # One statement is one transaction: autocommit saves the BEGIN and COMMIT round trips.
    with engine.connect() as connection:
        connection.execution_options(isolation_level="AUTOCOMMIT")
        try:
            scan, stored_digest = connection.execute(_CALL, parameters).one()
        except IntegrityError:
            # Another process stored this scan_id between the function's check and its insert;
            # the whole call was undone. Which report is kept decides replay or conflict.
            known, digest = _stored(connection, report.scan_id)
            if not known:
                raise  # not that race: nothing was stored, and the sender must not be told so
            return _not_stored(report, digest)
    if scan is None:
        return _not_stored(report, stored_digest)
    return Stored(report.scan_id, created=True)


def store_report(
    engine: Engine, report: ReportRecord, *, token_id: int | None, now: datetime | None = None
) -> Stored:
    """Stores `report` whole in one transaction; a known `scan_id` stores nothing."""
    when = now or datetime.now(UTC)
    if engine.dialect.name == "postgresql":
        return _store_postgresql(engine, report, token_id, when)
    return _store_core(engine, report, token_id, when)
