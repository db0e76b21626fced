"""The results store's tables (SQLAlchemy 2 ORM); docs/console.md describes them.

The migrations in console/migrations/ create exactly these tables; tests check the two agree.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from .filters import fold
from .kinds import Effect, HostKind, Scope, Severity, VulnerabilitySeverity

__all__ = [
    "Base",
    "Container",
    "Finding",
    "Host",
    "Image",
    "ImageRef",
    "LoginFailure",
    "PolicyVersion",
    "Problem",
    "Scan",
    "Task",
    "Token",
    "TokenScope",
    "User",
    "Vulnerability",
    "WebSession",
    "folded",
]

# Names of constraints and indexes fixed by convention, so that migrations can refer to them.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
# Indexed strings (names, keys) are bounded so that a PostgreSQL b-tree entry always fits
# (about 2,700 bytes); ingest refuses longer ones.
NAME_LENGTH = 512


def folded(text: str) -> str:
    """What a `*_folded` column holds: `filters.fold(text)`, cut to NAME_LENGTH characters
    (folding can lengthen a string: `ß` is `ss`), so that it fits its column and index."""
    return fold(text)[:NAME_LENGTH]


def _enum(kind: type[Any], name: str) -> Enum:
    """A portable enum column: VARCHAR plus a CHECK constraint, storing the values."""
    return Enum(
        kind,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=16,
        values_callable=lambda members: [member.value for member in members],
        validate_strings=True,
    )


def _prefix_index(column: str) -> Index:
    """An index that also serves `column LIKE 'prefix%'` (the filters' `term*`): PostgreSQL
    needs the pattern operator class unless the database's collation is C."""
    return Index(None, column, postgresql_ops={column: "varchar_pattern_ops"})


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def _when() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), nullable=False)


class Image(Base):
    """An image, keyed by `digest:...` when its digest is known, else `id:...`, else `name:...`."""

    __tablename__ = "images"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(NAME_LENGTH + 8), nullable=False, unique=True)
    digest: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    config_id: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    name: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    first_seen: Mapped[datetime] = _when()
    last_seen: Mapped[datetime] = _when()
    # The image's latest scan (of the image itself or of a container running it): what the
    # views show as its compliance, without reading findings.
    last_scanned: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # No foreign key: scans already refer to images (a cycle SQLite cannot add later).
    latest_scan_id: Mapped[int | None] = mapped_column(Integer)
    __table_args__ = (Index(None, "last_scanned"),)


class ImageRef(Base):
    """A name or tag an image was seen under; `ref_folded` (`folded(ref)`) serves the
    filters."""

    __tablename__ = "image_refs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    image_id: Mapped[int] = mapped_column(
        ForeignKey("images.id", ondelete="CASCADE"), nullable=False
    )
    ref: Mapped[str] = mapped_column(String(NAME_LENGTH), nullable=False)
    ref_folded: Mapped[str] = mapped_column(String(NAME_LENGTH), nullable=False)
    is_tag: Mapped[bool] = mapped_column(Boolean, nullable=False)
    __table_args__ = (UniqueConstraint("image_id", "is_tag", "ref"), _prefix_index("ref_folded"))


class Host(Base):
    """A machine, or a Fargate task (its name is then the task id)."""

    __tablename__ = "hosts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH), nullable=False, unique=True)
    name_folded: Mapped[str] = mapped_column(String(NAME_LENGTH), nullable=False)
    kind: Mapped[HostKind] = mapped_column(_enum(HostKind, "host_kind"), nullable=False)
    first_seen: Mapped[datetime] = _when()
    last_seen: Mapped[datetime] = _when()
    __table_args__ = (_prefix_index("name_folded"),)


class Task(Base):
    """An ECS task (Fargate or EC2 launch type), as its metadata endpoint described it."""

    __tablename__ = "tasks"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    arn: Mapped[str] = mapped_column(String(NAME_LENGTH), nullable=False, unique=True)
    task_id: Mapped[str] = mapped_column(String(NAME_LENGTH), nullable=False)
    task_id_folded: Mapped[str] = mapped_column(String(NAME_LENGTH), nullable=False)
    cluster: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    family: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    family_folded: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    revision: Mapped[str | None] = mapped_column(String(64))
    launch_type: Mapped[str | None] = mapped_column(String(64))
    availability_zone: Mapped[str | None] = mapped_column(String(64))
    # The host the task runs on: the task itself on Fargate, the instance for an EC2 task.
    host_id: Mapped[int] = mapped_column(ForeignKey("hosts.id"), nullable=False, index=True)
    first_seen: Mapped[datetime] = _when()
    last_seen: Mapped[datetime] = _when()
    __table_args__ = (_prefix_index("task_id_folded"), _prefix_index("family_folded"))


class Container(Base):
    """A container a host or task reported, and the image it runs.

    `key` is the runtime's container id when known (a restarted container is a new one), else
    its name; unique per host.
    """

    __tablename__ = "containers"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    host_id: Mapped[int] = mapped_column(ForeignKey("hosts.id"), nullable=False)
    key: Mapped[str] = mapped_column(String(NAME_LENGTH), nullable=False)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH), nullable=False)
    task_id: Mapped[int | None] = mapped_column(ForeignKey("tasks.id"), index=True)
    image_id: Mapped[int | None] = mapped_column(ForeignKey("images.id"))
    first_seen: Mapped[datetime] = _when()
    last_seen: Mapped[datetime] = _when()
    # The latest scan of this (host, container): what the views show for it.
    latest_scan_id: Mapped[int | None] = mapped_column(Integer)  # no foreign key: as Image's
    __table_args__ = (
        UniqueConstraint("host_id", "key"),
        # The Deployed query: containers running an image, seen since a moment.
        Index(None, "image_id", "last_seen"),
    )


class Scan(Base):
    """One report, stored whole: `scan_id` is the scanner's UUID, unique (replays store nothing)."""

    __tablename__ = "scans"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scan_id: Mapped[uuid.UUID] = mapped_column(Uuid, nullable=False, unique=True)
    received_at: Mapped[datetime] = _when()
    token_id: Mapped[int | None] = mapped_column(ForeignKey("tokens.id", ondelete="SET NULL"))
    host_id: Mapped[int] = mapped_column(ForeignKey("hosts.id"), nullable=False)
    container_id: Mapped[int | None] = mapped_column(ForeignKey("containers.id"))
    task_id: Mapped[int | None] = mapped_column(ForeignKey("tasks.id"))
    image_id: Mapped[int | None] = mapped_column(ForeignKey("images.id"))
    target_kind: Mapped[str] = mapped_column(String(16), nullable=False)
    root: Mapped[str] = mapped_column(Text, nullable=False)
    scanner_version: Mapped[str] = mapped_column(String(64), nullable=False)
    implementation: Mapped[str | None] = mapped_column(String(64))
    complete: Mapped[bool] = mapped_column(Boolean, nullable=False)
    suppressed: Mapped[int] = mapped_column(Integer, nullable=False)
    # Counted at ingest, so that the views' compliance columns never read findings.
    critical: Mapped[int] = mapped_column(Integer, nullable=False)
    high: Mapped[int] = mapped_column(Integer, nullable=False)
    medium: Mapped[int] = mapped_column(Integer, nullable=False)
    low: Mapped[int] = mapped_column(Integer, nullable=False)
    problem_count: Mapped[int] = mapped_column(Integer, nullable=False)
    checks: Mapped[list[str]] = mapped_column(JSON, nullable=False)
    managers: Mapped[list[Any]] = mapped_column(JSON, nullable=False)
    notices: Mapped[list[str]] = mapped_column(JSON, nullable=False)
    stats: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    # SHA-256 of the report's canonical JSON: a later body with this scan_id is a replay when
    # it matches, a conflict (refused, the first kept) when not. None: stored before 0002.
    report_sha256: Mapped[str | None] = mapped_column(String(64))
    # Whether the scan matched advisories (0007): false, "unknown", is never "none found".
    # The counts by severity, at ingest, as the compliance ones.
    vulnerabilities_matched: Mapped[bool] = mapped_column(
        Boolean, nullable=False, server_default=false()
    )
    vuln_critical: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    vuln_high: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    vuln_medium: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    vuln_low: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    vuln_unknown: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    __table_args__ = (
        Index(None, "image_id", "received_at"),
        Index(None, "host_id", "container_id", "received_at"),
    )


class Finding(Base):
    """One finding of a scan. Never a secret: the report carries none, and only these fields
    are kept (not the check-specific extras)."""

    __tablename__ = "findings"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    scan_id: Mapped[int] = mapped_column(
        ForeignKey("scans.id", ondelete="CASCADE"), nullable=False, index=True
    )
    check: Mapped[str] = mapped_column(String(16), nullable=False)
    title: Mapped[str] = mapped_column(Text, nullable=False)
    severity: Mapped[Severity] = mapped_column(_enum(Severity, "severity"), nullable=False)
    kind: Mapped[str] = mapped_column(String(64), nullable=False)
    path: Mapped[str | None] = mapped_column(Text)
    path_hex: Mapped[str | None] = mapped_column(Text)
    package_name: Mapped[str | None] = mapped_column(Text)
    package_version: Mapped[str | None] = mapped_column(Text)
    package_manager: Mapped[str | None] = mapped_column(String(16))
    rule: Mapped[str | None] = mapped_column(Text)
    effect: Mapped[Effect | None] = mapped_column(_enum(Effect, "effect"))
    baselined: Mapped[bool] = mapped_column(Boolean, nullable=False)
    detail: Mapped[str | None] = mapped_column(Text)


class Vulnerability(Base):
    """One advisory that applies to a package of a scan (0007)."""

    __tablename__ = "vulnerabilities"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    scan_id: Mapped[int] = mapped_column(
        ForeignKey("scans.id", ondelete="CASCADE"), nullable=False, index=True
    )
    advisory: Mapped[str] = mapped_column(String(128), nullable=False)
    aliases: Mapped[list[str]] = mapped_column(JSON, nullable=False)
    package_name: Mapped[str] = mapped_column(Text, nullable=False)
    package_version: Mapped[str] = mapped_column(Text, nullable=False)
    package_manager: Mapped[str] = mapped_column(String(16), nullable=False)
    source_package: Mapped[str | None] = mapped_column(Text)
    fixed_version: Mapped[str | None] = mapped_column(Text)
    severity: Mapped[VulnerabilitySeverity] = mapped_column(
        _enum(VulnerabilitySeverity, "vulnerability_severity"), nullable=False
    )
    cvss: Mapped[float | None] = mapped_column(Float)
    summary: Mapped[str | None] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(64), nullable=False)
    source_date: Mapped[str | None] = mapped_column(String(64))


class Problem(Base):
    """Something a scan could not do (a "could not verify")."""

    __tablename__ = "problems"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    scan_id: Mapped[int] = mapped_column(
        ForeignKey("scans.id", ondelete="CASCADE"), nullable=False, index=True
    )
    kind: Mapped[str] = mapped_column(String(64), nullable=False)
    message: Mapped[str] = mapped_column(Text, nullable=False)
    path: Mapped[str | None] = mapped_column(Text)
    path_hex: Mapped[str | None] = mapped_column(Text)
    check: Mapped[str | None] = mapped_column(String(16))
    package_name: Mapped[str | None] = mapped_column(Text)
    package_version: Mapped[str | None] = mapped_column(Text)
    package_manager: Mapped[str | None] = mapped_column(String(16))
    errno: Mapped[int | None] = mapped_column(Integer)


class Token(Base):
    """An API token: only the SHA-256 of its text is kept. A name is unique among live tokens."""

    __tablename__ = "tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH), nullable=False)
    token_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    created_at: Mapped[datetime] = _when()
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    __table_args__ = (
        Index(
            "uq_tokens_live_name",
            "name",
            unique=True,
            sqlite_where=revoked_at.is_(None),
            postgresql_where=revoked_at.is_(None),
        ),
    )


class TokenScope(Base):
    __tablename__ = "token_scopes"
    token_id: Mapped[int] = mapped_column(
        ForeignKey("tokens.id", ondelete="CASCADE"), primary_key=True
    )
    scope: Mapped[Scope] = mapped_column(_enum(Scope, "scope"), primary_key=True)


class User(Base):
    """A person who signs in to the web views; the password is kept as an argon2id hash."""

    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH), nullable=False, unique=True)
    password_hash: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime] = _when()


class PolicyVersion(Base):
    """One saved version of the defenders' policy (YAML, validated by the scanner's loader
    before it is stored). `id` is the version number, 1 and up: the newest is the current
    policy, and two saves made on the same version collide on it instead of one losing the
    other's change."""

    __tablename__ = "policy_versions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    text: Mapped[str] = mapped_column(Text, nullable=False)
    sha256: Mapped[str] = mapped_column(String(64), nullable=False)  # of the UTF-8 text: the ETag
    saved_by: Mapped[str] = mapped_column(String(NAME_LENGTH), nullable=False)
    saved_at: Mapped[datetime] = _when()


class WebSession(Base):
    """A signed-in user's session: only the SHA-256 of the cookie's random token is kept (a
    copy of this table signs no one in). Ends at `expires_at`, or when unused for the idle
    timeout (`last_seen_at`, moved at most once a minute), or at logout (the row deleted)."""

    __tablename__ = "web_sessions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    )
    # Sent back by every form of the session's pages (not a secret from the user: from
    # other sites, which cannot read our pages).
    csrf_token: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[datetime] = _when()
    last_seen_at: Mapped[datetime] = _when()
    expires_at: Mapped[datetime] = _when()


class LoginFailure(Base):
    """A failed sign-in, kept for the failure window: the rate limit counts them per user
    name (as typed) and per client address."""

    __tablename__ = "login_failures"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_name: Mapped[str] = mapped_column(String(NAME_LENGTH), nullable=False)
    address: Mapped[str] = mapped_column(String(64), nullable=False)
    failed_at: Mapped[datetime] = _when()
    __table_args__ = (Index(None, "user_name", "failed_at"), Index(None, "address", "failed_at"))
