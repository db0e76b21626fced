"""The read API's query parameters, checked: each known, given once, in range; else ParamError.

A parameter outside what a listing takes is refused rather than ignored (a typo such as
`farget=true` would otherwise show every image); so is one given twice (which one counts
would be a guess).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from .filters import Filter, FilterError, parse
from .models import NAME_LENGTH

__all__ = [
    "DEFAULT_PER_PAGE",
    "MAX_PAGE",
    "MAX_PER_PAGE",
    "Page",
    "ParamError",
    "boolean",
    "expression",
    "page",
    "single",
    "sort",
]

DEFAULT_PER_PAGE = 50
MAX_PER_PAGE = 200  # rows a page: what a person reads, and bounded work per request
MAX_PAGE = 100_000  # past 20,000,000 rows no store of this console has anything to show
_DIGITS = 7  # characters of a number a page parameter may hold (before it is read)

Key = TypeVar("Key", bound=enum.Enum)


class ParamError(ValueError):
    """A query parameter refused: `field` names it, `message` says why (never echoing it)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = f"{field}: {message}"


@dataclass(frozen=True, slots=True)
class Page:
    number: int = 1
    size: int = DEFAULT_PER_PAGE

    @property
    def offset(self) -> int:
        return (self.number - 1) * self.size


def single(items: Iterable[tuple[str, str]], allowed: Iterable[str]) -> dict[str, str]:
    """The parameters as a mapping; ParamError for an unknown or a repeated one."""
    known = set(allowed)
    found: dict[str, str] = {}
    for name, value in items:
        if name not in known:
            shown = name if name.isidentifier() and len(name) <= 40 else "a parameter"
            raise ParamError(shown, f"unknown parameter (known: {', '.join(sorted(known))})")
        if name in found:
            raise ParamError(name, "given more than once")
        found[name] = value
    return found


def boolean(params: Mapping[str, str], name: str) -> bool:
    """`true` keeps only what the flag says; `false` or absent adds no condition."""
    value = params.get(name, "false")
    if value not in ("true", "false"):
        raise ParamError(name, "must be true or false")
    return value == "true"


def _number(params: Mapping[str, str], name: str, default: int, top: int) -> int:
    text = params.get(name)
    if text is None:
        return default
    if not text.isascii() or not text.isdigit() or len(text) > _DIGITS:
        raise ParamError(name, f"must be a whole number from 1 to {top}")
    number = int(text)
    if not 1 <= number <= top:
        raise ParamError(name, f"must be a whole number from 1 to {top}")
    return number


def page(params: Mapping[str, str]) -> Page:
    return Page(
        _number(params, "page", 1, MAX_PAGE),
        _number(params, "per_page", DEFAULT_PER_PAGE, MAX_PER_PAGE),
    )


def expression(params: Mapping[str, str], name: str) -> Filter:
    """A filter in the product's syntax (console/filters.py); its error is the parameter's.

    The store keeps folded values cut to NAME_LENGTH characters (models.folded), which answers
    exactly for a term shorter than that once folded: a longer one is refused, not guessed.
    """
    try:
        wanted = parse(params.get(name, ""))
    except FilterError as error:
        raise ParamError(name, str(error)) from None
    if any(len(term.text) >= NAME_LENGTH for term in wanted.terms):
        raise ParamError(
            name, f"a term is {NAME_LENGTH} characters or more once case-folded: use a prefix"
        )
    return wanted


def sort(params: Mapping[str, str], keys: type[Key], default: str) -> tuple[Key, bool]:
    """(key, descending) from `sort=KEY` or `sort=-KEY`; only the listing's keys."""
    text = params.get("sort", default)
    descending = text.startswith("-")
    try:
        return keys(text.removeprefix("-")), descending
    except ValueError:
        choices = ", ".join(str(key.value) for key in keys)
        raise ParamError("sort", f"must be one of {choices}, optionally after `-`") from None
