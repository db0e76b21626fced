"""Problem kinds (each deciding whether it leaves a report incomplete), finding kinds, effects."""

from __future__ import annotations

import enum

__all__ = ["Effect", "FindingKind", "ProblemKind", "leaves_incomplete"]

# String enums: a member is the very string the JSON, SARIF and table outputs and the state file
# have always carried, so outputs stay byte-identical and old state files read back unchanged.


class _DecidedKind(enum.StrEnum):
    """A kind whose every member must say whether it leaves the report incomplete: a member
    defined without that decision (`NEW = "new"`) fails when the class is created."""

    incomplete: bool

    # `None` only lets mypy accept the lookup `ProblemKind("walk")` (Enum's own, which never
    # calls this); a member defined with no decision is refused below.
    def __new__(cls, value: str, incomplete: bool | None = None) -> _DecidedKind:
        if not isinstance(incomplete, bool):
            raise TypeError(f"problem kind {value!r}: incomplete must be True or False")
        member = str.__new__(cls, value)
        member._value_ = value
        member.incomplete = incomplete
        return member


class ProblemKind(_DecidedKind):
    """What a Problem is about, and whether it leaves some item's verdict open (exit 3).

    `incomplete` is the one place that decides: for a compliance tool "could not verify" is a
    result, never a pass, so a kind that leaves anything unverified must say True.
    """

    COULD_NOT_VERIFY = "could-not-verify", True  # an item a check could not judge
    PACKAGE_DB = "package-db", True  # a package database (or part of it) could not be read
    WALK = "walk", True  # part of the root could not be walked
    CONTENT_SKIPPED = "content-skipped", True  # a file not searched (too large, unreadable)
    CUSTOM_CHECK_ERROR = "custom-check-error", True  # a custom check could not decide
    CUSTOM_CHECK_SKIPPED = "custom-check-skipped", True  # a custom check did not run
    IMAGE_CHANGED = "image-changed", True  # the image changed while it was scanned
    IMAGE_MEMBER_SKIPPED = "image-member-skipped", True  # a layer member not extracted
    CONTAINER = "container", True  # a task's container could not be scanned (defender)
    # Packages not checked against the advisory database (`--vulndb`): no data for the root's
    # release, a version its manager would refuse, a database that cannot be read.
    VULNERABILITIES = "vulnerabilities", True
    # Complete: each says something the user should know, and leaves no item unjudged.
    NO_PACKAGE_DB = "no-package-db", False  # no manifest: 448 has nothing to verify against
    INPUT = "input", False  # a line of an input file (--miner-digests) that could not be used
    IMAGE = "image", False  # an image detail not applied (the files themselves were scanned)
    PRIORITY = "priority", False  # --nice could not lower the priority
    STATE = "state", False  # the --state file could not be used or written (a full scan ran)
    TASK_METADATA = "task-metadata", False  # the ECS task metadata endpoint could not be read
    # The defender's: reports dropped from a full spool or refused by the console (earlier
    # scans' results, said in the next report), and a policy not fetched (the cached one ran).
    DELIVERY = "delivery", False
    TRUNCATED = "truncated", False  # findings left out of a report to fit the console (counted)
    POLICY = "policy", False
    # The console's advisory database could not be fetched: the defender's cached copy matched.
    ADVISORIES = "advisories", False


def leaves_incomplete(kind: str) -> bool:
    """Whether a problem of `kind` leaves the report incomplete; a kind no member names (a
    report or state read back, a caller's own string) counts as incomplete, never verified."""
    if isinstance(kind, ProblemKind):  # the usual case, without Enum's ~1 us lookup
        return kind.incomplete
    try:
        return ProblemKind(kind).incomplete
    except ValueError:
        return True


class FindingKind(enum.StrEnum):
    """What a Finding says is wrong."""

    # 448: a package file against its manager's record.
    MISSING = "missing"
    MODIFIED = "modified"
    CONFIG_MODIFIED = "config-modified"  # a conffile: it may change legitimately
    REPLACED_BY_SYMLINK = "replaced-by-symlink"
    NOT_A_REGULAR_FILE = "not-a-regular-file"
    NOT_A_SYMLINK = "not-a-symlink"
    LINK_CHANGED = "link-changed"
    MODE_CHANGED = "mode-changed"
    PRIVATE_KEY = "private-key"  # 425
    CRYPTO_MINER = "crypto-miner"  # 426
    SECRET_IN_ENVIRONMENT = "secret-in-environment"  # 424
    CUSTOM_CHECK_FAILED = "custom-check-failed"  # a policy's custom check exited 1


class Effect(enum.StrEnum):
    """What a matching policy rule does with a check's findings."""

    IGNORE = "ignore"  # dropped from the report's findings (counted as suppressed)
    ALERT = "alert"  # reported
    BLOCK = "block"  # reported, and the scan's exit says blocked (never applied to Fargate tasks)
