"""The initial schema: images, hosts, tasks, containers, scans, findings, problems, tokens, users.

Revision ID: 0001
Revises:

"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "hosts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=512), nullable=False),
        sa.Column("name_lower", sa.String(length=512), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "host",
                "fargate-task",
                name="host_kind",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hosts")),
        sa.UniqueConstraint("name", name=op.f("uq_hosts_name")),
    )
    with op.batch_alter_table("hosts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_hosts_name_lower"),
            ["name_lower"],
            unique=False,
            postgresql_ops={"name_lower": "varchar_pattern_ops"},
        )

    op.create_table(
        "images",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=520), nullable=False),
        sa.Column("digest", sa.String(length=512), nullable=True),
        sa.Column("config_id", sa.String(length=512), nullable=True),
        sa.Column("name", sa.String(length=512), nullable=True),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_scanned", sa.DateTime(timezone=True), nullable=True),
        sa.Column("latest_scan_id", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_images")),
        sa.UniqueConstraint("key", name=op.f("uq_images_key")),
    )
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_images_last_scanned"), ["last_scanned"], unique=False)

    op.create_table(
        "tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=512), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_tokens_token_hash")),
    )
    with op.batch_alter_table("tokens", schema=None) as batch_op:
        batch_op.create_index(
            "uq_tokens_live_name",
            ["name"],
            unique=True,
            sqlite_where=sa.text("revoked_at IS NULL"),
            postgresql_where=sa.text("revoked_at IS NULL"),
        )

    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=512), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("name", name=op.f("uq_users_name")),
    )
    op.create_table(
        "image_refs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.Column("ref", sa.String(length=512), nullable=False),
        sa.Column("ref_lower", sa.String(length=512), nullable=False),
        sa.Column("is_tag", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["image_id"],
            ["images.id"],
            name=op.f("fk_image_refs_image_id_images"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_image_refs")),
        sa.UniqueConstraint(
            "image_id", "is_tag", "ref", name=op.f("uq_image_refs_image_id_is_tag_ref")
        ),
    )
    with op.batch_alter_table("image_refs", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_image_refs_ref_lower"),
            ["ref_lower"],
            unique=False,
            postgresql_ops={"ref_lower": "varchar_pattern_ops"},
        )

    op.create_table(
        "tasks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("arn", sa.String(length=512), nullable=False),
        sa.Column("task_id", sa.String(length=512), nullable=False),
        sa.Column("task_id_lower", sa.String(length=512), nullable=False),
        sa.Column("cluster", sa.String(length=512), nullable=True),
        sa.Column("family", sa.String(length=512), nullable=True),
        sa.Column("family_lower", sa.String(length=512), nullable=True),
        sa.Column("revision", sa.String(length=64), nullable=True),
        sa.Column("launch_type", sa.String(length=64), nullable=True),
        sa.Column("availability_zone", sa.String(length=64), nullable=True),
        sa.Column("host_id", sa.Integer(), nullable=False),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["host_id"], ["hosts.id"], name=op.f("fk_tasks_host_id_hosts")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tasks")),
        sa.UniqueConstraint("arn", name=op.f("uq_tasks_arn")),
    )
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_tasks_family_lower"),
            ["family_lower"],
            unique=False,
            postgresql_ops={"family_lower": "varchar_pattern_ops"},
        )
        batch_op.create_index(batch_op.f("ix_tasks_host_id"), ["host_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_tasks_task_id_lower"),
            ["task_id_lower"],
            unique=False,
            postgresql_ops={"task_id_lower": "varchar_pattern_ops"},
        )

    op.create_table(
        "token_scopes",
        sa.Column("token_id", sa.Integer(), nullable=False),
        sa.Column(
            "scope",
            sa.Enum(
                "ingest",
                "read",
                "admin",
                name="scope",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["token_id"],
            ["tokens.id"],
            name=op.f("fk_token_scopes_token_id_tokens"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("token_id", "scope", name=op.f("pk_token_scopes")),
    )
    op.create_table(
        "containers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("host_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=512), nullable=False),
        sa.Column("name", sa.String(length=512), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=True),
        sa.Column("image_id", sa.Integer(), nullable=True),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("latest_scan_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["host_id"], ["hosts.id"], name=op.f("fk_containers_host_id_hosts")
        ),
        sa.ForeignKeyConstraint(
            ["image_id"], ["images.id"], name=op.f("fk_containers_image_id_images")
        ),
        sa.ForeignKeyConstraint(
            ["task_id"], ["tasks.id"], name=op.f("fk_containers_task_id_tasks")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_containers")),
        sa.UniqueConstraint("host_id", "key", name=op.f("uq_containers_host_id_key")),
    )
    with op.batch_alter_table("containers", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_containers_image_id_last_seen"), ["image_id", "last_seen"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_containers_task_id"), ["task_id"], unique=False)

    op.create_table(
        "scans",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("scan_id", sa.Uuid(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("token_id", sa.Integer(), nullable=True),
        sa.Column("host_id", sa.Integer(), nullable=False),
        sa.Column("container_id", sa.Integer(), nullable=True),
        sa.Column("task_id", sa.Integer(), nullable=True),
        sa.Column("image_id", sa.Integer(), nullable=True),
        sa.Column("target_kind", sa.String(length=16), nullable=False),
        sa.Column("root", sa.Text(), nullable=False),
        sa.Column("scanner_version", sa.String(length=64), nullable=False),
        sa.Column("implementation", sa.String(length=64), nullable=True),
        sa.Column("complete", sa.Boolean(), nullable=False),
        sa.Column("suppressed", sa.Integer(), nullable=False),
        sa.Column("critical", sa.Integer(), nullable=False),
        sa.Column("high", sa.Integer(), nullable=False),
        sa.Column("medium", sa.Integer(), nullable=False),
        sa.Column("low", sa.Integer(), nullable=False),
        sa.Column("problem_count", sa.Integer(), nullable=False),
        sa.Column("checks", sa.JSON(), nullable=False),
        sa.Column("managers", sa.JSON(), nullable=False),
        sa.Column("notices", sa.JSON(), nullable=False),
        sa.Column("stats", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["container_id"], ["containers.id"], name=op.f("fk_scans_container_id_containers")
        ),
        sa.ForeignKeyConstraint(["host_id"], ["hosts.id"], name=op.f("fk_scans_host_id_hosts")),
        sa.ForeignKeyConstraint(["image_id"], ["images.id"], name=op.f("fk_scans_image_id_images")),
        sa.ForeignKeyConstraint(["task_id"], ["tasks.id"], name=op.f("fk_scans_task_id_tasks")),
        sa.ForeignKeyConstraint(
            ["token_id"], ["tokens.id"], name=op.f("fk_scans_token_id_tokens"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scans")),
        sa.UniqueConstraint("scan_id", name=op.f("uq_scans_scan_id")),
    )
    with op.batch_alter_table("scans", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_scans_host_id_container_id_received_at"),
            ["host_id", "container_id", "received_at"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_scans_image_id_received_at"), ["image_id", "received_at"], unique=False
        )

    op.create_table(
        "findings",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("scan_id", sa.Integer(), nullable=False),
        sa.Column("check", sa.String(length=16), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column(
            "severity",
            sa.Enum(
                "low",
                "medium",
                "high",
                "critical",
                name="severity",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("path", sa.Text(), nullable=True),
        sa.Column("path_hex", sa.Text(), nullable=True),
        sa.Column("package_name", sa.Text(), nullable=True),
        sa.Column("package_version", sa.Text(), nullable=True),
        sa.Column("package_manager", sa.String(length=16), nullable=True),
        sa.Column("rule", sa.Text(), nullable=True),
        sa.Column(
            "effect",
            sa.Enum(
                "alert",
                "block",
                name="effect",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=True,
        ),
        sa.Column("baselined", sa.Boolean(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["scan_id"], ["scans.id"], name=op.f("fk_findings_scan_id_scans"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_findings")),
    )
    with op.batch_alter_table("findings", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_findings_scan_id"), ["scan_id"], unique=False)

    op.create_table(
        "problems",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("scan_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("path", sa.Text(), nullable=True),
        sa.Column("path_hex", sa.Text(), nullable=True),
        sa.Column("check", sa.String(length=16), nullable=True),
        sa.Column("package_name", sa.Text(), nullable=True),
        sa.Column("package_version", sa.Text(), nullable=True),
        sa.Column("package_manager", sa.String(length=16), nullable=True),
        sa.Column("errno", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["scan_id"], ["scans.id"], name=op.f("fk_problems_scan_id_scans"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_problems")),
    )
    with op.batch_alter_table("problems", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_problems_scan_id"), ["scan_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("problems", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_problems_scan_id"))

    op.drop_table("problems")
    with op.batch_alter_table("findings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_findings_scan_id"))

    op.drop_table("findings")
    with op.batch_alter_table("scans", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_scans_image_id_received_at"))
        batch_op.drop_index(batch_op.f("ix_scans_host_id_container_id_received_at"))

    op.drop_table("scans")
    with op.batch_alter_table("containers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_containers_task_id"))
        batch_op.drop_index(batch_op.f("ix_containers_image_id_last_seen"))

    op.drop_table("containers")
    op.drop_table("token_scopes")
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_index(
            batch_op.f("ix_tasks_task_id_lower"),
            postgresql_ops={"task_id_lower": "varchar_pattern_ops"},
        )
        batch_op.drop_index(batch_op.f("ix_tasks_host_id"))
        batch_op.drop_index(
            batch_op.f("ix_tasks_family_lower"),
            postgresql_ops={"family_lower": "varchar_pattern_ops"},
        )

    op.drop_table("tasks")
    with op.batch_alter_table("image_refs", schema=None) as batch_op:
        batch_op.drop_index(
            batch_op.f("ix_image_refs_ref_lower"),
            postgresql_ops={"ref_lower": "varchar_pattern_ops"},
        )

    op.drop_table("image_refs")
    op.drop_table("users")
    with op.batch_alter_table("tokens", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_tokens_live_name",
            sqlite_where=sa.text("revoked_at IS NULL"),
            postgresql_where=sa.text("revoked_at IS NULL"),
        )

    op.drop_table("tokens")
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_images_last_scanned"))

    op.drop_table("images")
    with op.batch_alter_table("hosts", schema=None) as batch_op:
        batch_op.drop_index(
            batch_op.f("ix_hosts_name_lower"), postgresql_ops={"name_lower": "varchar_pattern_ops"}
        )

    op.drop_table("hosts")
