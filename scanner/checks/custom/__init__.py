"""Custom checks (ids 9000 and up): a policy's scripts, run isolated against the scanned root."""

from __future__ import annotations

from .check import CustomCheck
from .spec import CustomCheckSpec

__all__ = ["CustomCheck", "CustomCheckSpec"]
