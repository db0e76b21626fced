"""The registry of built-in checks: an explicit tuple, ids permanent."""

from __future__ import annotations

from collections.abc import Iterable

from ..errors import UsageError
from .base import Check, ContentCheck
from .crypto_miners import CryptoMinersCheck
from .env_secrets import EnvSecretsCheck
from .package_binaries import PackageBinariesCheck
from .private_keys import PrivateKeysCheck

__all__ = ["BUILTIN_CHECKS", "Check", "ContentCheck", "select_checks"]

# Classes, not instances: a check may keep per-scan state (426 its digest list), so every scan
# gets fresh ones. Order is report order.
BUILTIN_CHECKS: tuple[type[Check | ContentCheck], ...] = (
    PackageBinariesCheck,
    EnvSecretsCheck,
    PrivateKeysCheck,
    CryptoMinersCheck,
)


def select_checks(ids: Iterable[str] | None) -> tuple[Check | ContentCheck, ...]:
    """Fresh instances of the built-in checks named by `ids` (all for None), in registry order."""
    known = {check.id for check in BUILTIN_CHECKS}
    wanted = known if ids is None else {str(check_id).strip() for check_id in ids}
    unknown = sorted(wanted - known)
    if unknown:
        raise UsageError(
            f"unknown check id(s): {', '.join(unknown)} (known: {', '.join(sorted(known))})"
        )
    return tuple(check() for check in BUILTIN_CHECKS if check.id in wanted)
