"""Policies: collections, ordered rules and custom checks that decide what each finding means."""

from __future__ import annotations

from .model import Collection, CustomCheckSpec, Effect, Policy, Rule

__all__ = ["Collection", "CustomCheckSpec", "Effect", "Policy", "Rule"]
