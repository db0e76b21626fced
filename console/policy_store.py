"""The defenders' policy in the store: each save a new version, validated by the scanner's own
loader before it is kept (an invalid policy is never stored); the newest version is current."""

from __future__ import annotations

import dataclasses
import hashlib
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine, Table, insert, select
from sqlalchemy.exc import IntegrityError

from scanner.policy import Policy, PolicyError, parse_policy

from .models import NAME_LENGTH, PolicyVersion

__all__ = [
    "MAX_POLICY_BYTES",
    "SOURCE",
    "PolicyConflict",
    "PolicyRefused",
    "StoredPolicy",
    "current_policy",
    "etag_of",
    "save_policy",
    "validate",
]

# A policy is hand-written or made by the Defend page: 1 MiB is far more than either makes, and
# every defender downloads it. (The scanner reads up to 4 MiB from a file.)
MAX_POLICY_BYTES = 1024 * 1024
SOURCE = "policy.yaml"  # what the loader's messages name: the file a defender saves it as
SCRIPT_FILE_NOTE = (
    "the console keeps scripts inline (use 'script:'): a file would be looked for on the "
    "console's machine, not the defender's"
)


class PolicyRefused(Exception):
    """A policy the scanner's loader (or the store's bound) refuses; `str()` is its message."""


class PolicyConflict(Exception):
    """The policy changed since the version an edit was made on."""


@dataclass(frozen=True, slots=True)
class StoredPolicy:
    version: int
    text: str
    sha256: str
    saved_by: str
    saved_at: datetime

    @property
    def etag(self) -> str:
        return etag_of(self.sha256)


def etag_of(sha256: str) -> str:
    """The strong entity tag of a version: its SHA-256, quoted (RFC 9110 section 8.8.3)."""
    return f'"{sha256}"'


def _table() -> Table:
    table = PolicyVersion.__table__
    assert isinstance(table, Table)
    return table


def validate(text: str) -> Policy:
    """The policy `text` as the scanner reads it; PolicyRefused with the loader's message.

    `script_file` is looked up in an empty directory of our own, so it always fails (the
    console's files are never read) and its message says why.
    """
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_POLICY_BYTES:
        raise PolicyRefused(f"{SOURCE}: larger than {MAX_POLICY_BYTES} bytes ({size})")
    with tempfile.TemporaryDirectory(prefix="policy-") as empty:
        try:
            return parse_policy(text, SOURCE, empty)
        except PolicyError as error:
            issues = [
                dataclasses.replace(issue, message=SCRIPT_FILE_NOTE)
                if issue.field.endswith(".script_file") and issue.message.startswith("cannot read")
                else issue
                for issue in error.issues
            ]
            raise PolicyRefused(str(PolicyError(issues))) from None


def current_policy(engine: Engine) -> StoredPolicy | None:
    """The newest version, or None when no policy was ever saved."""
    table = _table()
    with engine.connect() as connection:
        row = connection.execute(select(table).order_by(table.c.id.desc()).limit(1)).first()
    if row is None:
        return None
    return StoredPolicy(row.id, row.text, row.sha256, row.saved_by, row.saved_at)


def save_policy(engine: Engine, text: str, saved_by: str, *, base: int | None) -> StoredPolicy:
    """Store `text` as the next version after `base` (the version the edit was made on; 0: no
    policy yet; None: whatever is current). PolicyRefused when the loader refuses it (nothing
    is stored); PolicyConflict when `base` is no longer the newest version."""
    validate(text)
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    table = _table()
    now = datetime.now(UTC)
    try:
        # SQLite: the write lock taken at BEGIN (database.py), else two saves that both read
        # first deadlock on upgrading their locks ("database is locked") instead of queueing.
        with engine.connect() as connection:
            connection.execution_options(sqlite_immediate=True)
            with connection.begin():
                newest = connection.execute(select(table.c.id).order_by(table.c.id.desc()).limit(1))
                latest = newest.scalar() or 0
                if base is not None and base != latest:
                    raise PolicyConflict(
                        f"the policy changed since this page was loaded (version {base}; now "
                        f"{latest}): reload it and make the change again"
                    )
                # A save racing this one on the same version fails on the primary key.
                connection.execute(
                    insert(table).values(
                        id=latest + 1,
                        text=text,
                        sha256=digest,
                        saved_by=saved_by[:NAME_LENGTH],
                        saved_at=now,
                    )
                )
    except IntegrityError:
        raise PolicyConflict(
            "the policy was saved by someone else at the same moment: reload and retry"
        ) from None
    return StoredPolicy(latest + 1, text, digest, saved_by[:NAME_LENGTH], now)
