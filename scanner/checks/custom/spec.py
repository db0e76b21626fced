"""What a custom check is: the script a policy declares, with its limits (the policy reads it)."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ...report import Severity

__all__ = ["CustomCheckSpec", "Isolation"]


class Isolation(enum.StrEnum):
    """How a custom check's script is kept from the scanner and the target (runner.py)."""

    AUTO = "auto"  # namespaces when they can be built (CAP_SYS_ADMIN), else chroot
    NAMESPACES = "namespaces"  # demanded: an error where they cannot be built, never a fallback
    CHROOT = "chroot"  # what a Fargate sidecar can build


@dataclass(frozen=True, slots=True)
class CustomCheckSpec:
    """A user script run against the scanned root. Exit 0 pass, 1 fail (output is the cause)."""

    id: str  # "9000" and up
    name: str
    severity: Severity
    description: str
    script: bytes  # the script's text; its shebang (or the target's /bin/sh) runs it
    timeout: float = 60.0  # seconds; a timeout is an error, never a pass
    memory_mib: int = 256  # the script's memory (runner.py says how it is enforced)
    processes: int = 64  # processes and threads the script may have at once, itself included
    isolation: Isolation = Isolation.AUTO
    line: int = 0
