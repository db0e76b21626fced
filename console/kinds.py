"""The console's closed vocabularies: token scopes, severities, host kinds."""

from __future__ import annotations

import enum

__all__ = ["Effect", "HostKind", "Scope", "Severity"]


class Scope(enum.StrEnum):
    """What a token may do: post reports, read results, administer."""

    INGEST = "ingest"
    READ = "read"
    ADMIN = "admin"


class VulnerabilitySeverity(enum.StrEnum):
    """An advisory's severity; `unknown` when the advisory gives none (never read as low)."""

    UNKNOWN = "unknown"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


class Severity(enum.StrEnum):
    """A finding's severity, as the report spells it."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


class Effect(enum.StrEnum):
    """What a policy rule decided for a finding."""

    ALERT = "alert"
    BLOCK = "block"


class HostKind(enum.StrEnum):
    """A host is a machine (an EC2 instance, a server) or a Fargate task, named by its task id."""

    HOST = "host"
    FARGATE_TASK = "fargate-task"
