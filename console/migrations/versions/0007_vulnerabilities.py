"""vulnerabilities: the advisories a scan matched, and their counts on the scan's row.

Revision ID: 0007
Revises: 0006

On PostgreSQL, `scan_root_store_vulnerabilities` writes them for the scan that
`scan_root_store_report` (0004) has just stored: console/store.py calls both in one statement,
so one transaction holds the whole report, as before. A replay (the first function returns no
scan) writes nothing.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

FUNCTION = """
CREATE OR REPLACE FUNCTION scan_root_store_vulnerabilities(p_scan integer, p_rows jsonb)
RETURNS integer
LANGUAGE plpgsql
AS $function$
BEGIN
    IF p_scan IS NULL OR p_rows IS NULL THEN
        RETURN p_scan;
    END IF;
    UPDATE scans AS s SET
        vulnerabilities_matched = true,
        vuln_critical = (p_rows ->> 'critical')::integer,
        vuln_high = (p_rows ->> 'high')::integer,
        vuln_medium = (p_rows ->> 'medium')::integer,
        vuln_low = (p_rows ->> 'low')::integer,
        vuln_unknown = (p_rows ->> 'unknown')::integer
    WHERE s.id = p_scan;
    INSERT INTO vulnerabilities (
        scan_id, advisory, aliases, package_name, package_version, package_manager,
        source_package, fixed_version, severity, cvss, summary, source, source_date
    )
    SELECT p_scan, v.advisory, v.aliases, v.package_name, v.package_version,
        v.package_manager, v.source_package, v.fixed_version, v.severity, v.cvss, v.summary,
        v.source, v.source_date
    FROM jsonb_to_recordset(p_rows -> 'items') AS v(
        advisory text, aliases json, package_name text, package_version text,
        package_manager text, source_package text, fixed_version text, severity text,
        cvss double precision, summary text, source text, source_date text
    );
    RETURN p_scan;
END;
$function$
"""

SIGNATURE = "scan_root_store_vulnerabilities(integer, jsonb)"
SEVERITIES = ("unknown", "low", "medium", "high", "critical")


def upgrade() -> None:
    with op.batch_alter_table("scans") as batch:
        batch.add_column(
            sa.Column(
                "vulnerabilities_matched", sa.Boolean(), server_default=sa.false(), nullable=False
            )
        )
        for severity in ("critical", "high", "medium", "low", "unknown"):
            batch.add_column(
                sa.Column(f"vuln_{severity}", sa.Integer(), server_default="0", nullable=False)
            )
    op.create_table(
        "vulnerabilities",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("scan_id", sa.Integer(), nullable=False),
        sa.Column("advisory", sa.String(length=128), nullable=False),
        sa.Column("aliases", sa.JSON(), nullable=False),
        sa.Column("package_name", sa.Text(), nullable=False),
        sa.Column("package_version", sa.Text(), nullable=False),
        sa.Column("package_manager", sa.String(length=16), nullable=False),
        sa.Column("source_package", sa.Text(), nullable=True),
        sa.Column("fixed_version", sa.Text(), nullable=True),
        sa.Column(
            "severity",
            sa.Enum(
                *SEVERITIES,
                name="vulnerability_severity",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("cvss", sa.Float(), nullable=True),
        sa.Column("summary", sa.Text(), nullable=True),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("source_date", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["scan_id"],
            ["scans.id"],
            name=op.f("fk_vulnerabilities_scan_id_scans"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vulnerabilities")),
    )
    op.create_index(
        op.f("ix_vulnerabilities_scan_id"), "vulnerabilities", ["scan_id"], unique=False
    )
    if op.get_context().dialect.name == "postgresql":
        # As the driver's own text: SQLAlchemy's text() would take `:name` for a parameter.
        op.get_bind().exec_driver_sql(FUNCTION)


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute(f"DROP FUNCTION {SIGNATURE}")
    op.drop_index(op.f("ix_vulnerabilities_scan_id"), table_name="vulnerabilities")
    op.drop_table("vulnerabilities")
    with op.batch_alter_table("scans") as batch:
        for column in (
            "vuln_unknown",
            "vuln_low",
            "vuln_medium",
            "vuln_high",
            "vuln_critical",
            "vulnerabilities_matched",
        ):
            batch.drop_column(column)
