"""Filter columns hold `fold()`ed values: `*_lower` (str.lower) become `*_folded` (filters.fold).

Revision ID: 0003
Revises: 0002

The filters compare terms folded by `console.filters.fold` (Unicode NFKC case folding) with
these columns, so that `STRASSE` finds `Straße` on both engines; `lower()` folded less. Columns
are renamed in place (both engines have `ALTER TABLE ... RENAME COLUMN`: no table copy, which
SQLite could not do under its foreign keys) and refilled from the values they fold.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from alembic import op

from console.filters import fold

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# (table, source column, old column, new column), as in 0001.
COLUMNS = [
    ("image_refs", "ref", "ref_lower", "ref_folded"),
    ("hosts", "name", "name_lower", "name_folded"),
    ("tasks", "task_id", "task_id_lower", "task_id_folded"),
    ("tasks", "family", "family_lower", "family_folded"),
]
# models.NAME_LENGTH when this revision was written: a folded value is cut to it (folding can
# lengthen a string: `ß` is `ss`), so that it fits its column and a PostgreSQL b-tree entry.
NAME_LENGTH = 512
BATCH = 1000


def _folded(value: str | None) -> str | None:
    return None if value is None else fold(value)[:NAME_LENGTH]


def _lowered(value: str | None) -> str | None:
    return None if value is None else value.lower()


def _rename(old: str, new: str) -> None:
    for table, _, old_column, new_column in COLUMNS:
        source, target = (old_column, new_column) if new == "folded" else (new_column, old_column)
        op.drop_index(f"ix_{table}_{source}", table_name=table)
        op.execute(f"ALTER TABLE {table} RENAME COLUMN {source} TO {target}")  # our own names
        op.create_index(
            f"ix_{table}_{target}",
            table,
            [target],
            postgresql_ops={target: "varchar_pattern_ops"},
        )


def _refill(table: str, source: str, target: str, how: Callable[[str | None], str | None]) -> None:
    connection = op.get_bind()
    rows = sa.table(table, sa.column("id"), sa.column(source), sa.column(target))
    last = 0
    while True:  # bounded: ids only grow, each batch starts past the last
        batch = connection.execute(
            sa.select(rows.c.id, rows.c[source])
            .where(rows.c.id > last)
            .order_by(rows.c.id)
            .limit(BATCH)
        ).all()
        if not batch:
            return
        connection.execute(
            sa.update(rows).where(rows.c.id == sa.bindparam("row_id")),
            [{"row_id": row_id, target: how(value)} for row_id, value in batch],
        )
        last = batch[-1][0]


def upgrade() -> None:
    _rename("lower", "folded")
    for table, source, _, target in COLUMNS:
        _refill(table, source, target, _folded)


def downgrade() -> None:
    _rename("folded", "lower")
    for table, source, target, _ in COLUMNS:
        _refill(table, source, target, _lowered)
