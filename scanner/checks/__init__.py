"""The registry of built-in checks: an explicit tuple, ids permanent."""

from __future__ import annotations

from collections.abc import Iterable

from ..errors import UsageError
from ..report import CheckInfo
from .base import Check, ContentCheck
from .crypto_miners import CryptoMinersCheck
from .custom import CustomCheck, CustomCheckSpec
from .env_secrets import EnvSecretsCheck
from .package_binaries import PackageBinariesCheck
from .private_keys import PrivateKeysCheck

__all__ = [
    "BUILTIN_CHECKS",
    "Check",
    "ContentCheck",
    "CustomCheck",
    "CustomCheckSpec",
    "describe_checks",
    "select_checks",
]

# Classes, not instances: a check may keep per-scan state (426 its digest list), so every scan
# gets fresh ones. Order is report order.
BUILTIN_CHECKS: tuple[type[Check | ContentCheck], ...] = (
    PackageBinariesCheck,
    EnvSecretsCheck,
    PrivateKeysCheck,
    CryptoMinersCheck,
)


def select_checks(
    ids: Iterable[str] | None, custom: Iterable[CustomCheckSpec] = ()
) -> tuple[Check | ContentCheck, ...]:
    """Fresh instances of the checks named by `ids` (all for None): the built-in ones in registry
    order, then a policy's `custom` checks in policy order."""
    specs = tuple(custom)
    builtin = {check.id for check in BUILTIN_CHECKS}
    custom_ids = [spec.id for spec in specs]
    clashes = sorted({i for i in custom_ids if i in builtin or custom_ids.count(i) > 1})
    if clashes:
        raise UsageError(
            f"custom check id(s) used twice or by a built-in check: {', '.join(clashes)}"
        )
    known = builtin | set(custom_ids)
    wanted = known if ids is None else {str(check_id).strip() for check_id in ids}
    unknown = sorted(wanted - known)
    if unknown:
        raise UsageError(
            f"unknown check id(s): {', '.join(unknown)} (known: {', '.join(sorted(known))})"
        )
    chosen = [spec for spec in specs if spec.id in wanted]
    return tuple(check() for check in BUILTIN_CHECKS if check.id in wanted) + tuple(
        CustomCheck(spec, (number, len(chosen))) for number, spec in enumerate(chosen, 1)
    )


def describe_checks(checks: Iterable[Check | ContentCheck]) -> tuple[CheckInfo, ...]:
    """What a report's writers need to know of the checks that ran, in report order."""
    return tuple(CheckInfo(check.id, check.title, check.worst) for check in checks)
