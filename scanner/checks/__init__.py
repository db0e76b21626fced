"""The registry of built-in checks: an explicit tuple, ids permanent."""

from __future__ import annotations

from collections.abc import Iterable

from ..errors import UsageError
from .base import Check
from .env_secrets import EnvSecretsCheck
from .package_binaries import PackageBinariesCheck

__all__ = ["BUILTIN_CHECKS", "Check", "select_checks"]

BUILTIN_CHECKS: tuple[Check, ...] = (PackageBinariesCheck(), EnvSecretsCheck())


def select_checks(ids: Iterable[str] | None) -> tuple[Check, ...]:
    """The built-in checks named by `ids` (all of them for None), in registry order."""
    if ids is None:
        return BUILTIN_CHECKS
    wanted = {str(check_id).strip() for check_id in ids}
    known = {check.id for check in BUILTIN_CHECKS}
    unknown = sorted(wanted - known)
    if unknown:
        raise UsageError(
            f"unknown check id(s): {', '.join(unknown)} (known: {', '.join(sorted(known))})"
        )
    return tuple(check for check in BUILTIN_CHECKS if check.id in wanted)
