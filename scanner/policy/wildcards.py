"""Collection patterns: `abc*` starts-with, `*abc` ends-with, `*abc*` contains, `abc` exact.

Matching is case-insensitive (both sides are case-folded). A leading `-` makes a pattern an
exclusion. Within one field the inclusions are ORed and the exclusions remove what they match;
a field with only exclusions admits everything not excluded; an empty field admits everything.

A target may have several values for one field (a Fargate task is named by its family *and* by
its task id; an image by its name and each of its tags). They are aliases of one target, so the
field admits the target when some value is included and no value is excluded: excluding the
family `-web-canary*` excludes the task even though its task id matches nothing.

"Broader": an exclusion is broader than an inclusion when every value the inclusion admits,
the exclusion removes too (the language of the inclusion is contained in the exclusion's). Such an
inclusion can never admit anything, which is always a mistake, so it is rejected; in particular a
field whose exclusions remove everything its inclusions admit (`["fargate-task*", "-fargate*"]`)
is rejected. For these four shapes, containment by the *union* of several exclusions happens only
when one exclusion alone contains the inclusion (a value made longer with characters that appear in
no pattern escapes every exclusion that does not contain it alone), so checking pairs is exact.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ..errors import UsageError

__all__ = ["FieldMatcher", "Pattern", "PatternError", "Shape", "compile_field", "parse_pattern"]


class PatternError(UsageError):
    """A pattern of an unsupported shape, or a field that can never admit anything."""


class Shape(enum.Enum):
    EXACT = "exact"  # abc
    PREFIX = "prefix"  # abc*
    SUFFIX = "suffix"  # *abc
    CONTAINS = "contains"  # *abc*
    ANY = "any"  # *


@dataclass(frozen=True, slots=True)
class Pattern:
    """One parsed pattern; `text` is case-folded, without the stars and the `-`."""

    source: str  # as written, for messages
    shape: Shape
    text: str
    exclude: bool

    def matches(self, value: str) -> bool:
        value = value.casefold()
        if self.shape is Shape.EXACT:
            return value == self.text
        if self.shape is Shape.PREFIX:
            return value.startswith(self.text)
        if self.shape is Shape.SUFFIX:
            return value.endswith(self.text)
        if self.shape is Shape.CONTAINS:
            return self.text in value
        return True

    def contains(self, other: Pattern) -> bool:
        """True when every value `other` matches, this pattern matches too."""
        if self.shape is Shape.ANY:
            return True
        if other.shape is Shape.EXACT:
            return self.matches(other.text)
        if other.shape is Shape.PREFIX:
            return (self.shape is Shape.PREFIX and other.text.startswith(self.text)) or (
                self.shape is Shape.CONTAINS and self.text in other.text
            )
        if other.shape is Shape.SUFFIX:
            return (self.shape is Shape.SUFFIX and other.text.endswith(self.text)) or (
                self.shape is Shape.CONTAINS and self.text in other.text
            )
        if other.shape is Shape.CONTAINS:
            return self.shape is Shape.CONTAINS and self.text in other.text
        return False  # other is `*`: only `*` contains it


def parse_pattern(raw: str) -> Pattern:
    """Parse one pattern; PatternError names what is wrong with an unsupported shape."""
    if not isinstance(raw, str):
        raise PatternError(f"{raw!r}: a pattern is a string")
    exclude = raw.startswith("-")
    body = raw[1:] if exclude else raw
    if not body:
        raise PatternError(f"{raw!r}: empty pattern")
    if body != body.strip():
        raise PatternError(f"{raw!r}: leading or trailing whitespace")
    if body == "*":
        return Pattern(raw, Shape.ANY, "", exclude)
    leading, trailing = body.startswith("*"), body.endswith("*")
    inner = body[1 if leading else 0 : len(body) - 1 if trailing else len(body)]
    if not inner or "*" in inner:
        raise PatternError(
            f"{raw!r}: '*' may only start or end a pattern (abc*, *abc, *abc*, abc or *)"
        )
    if leading and trailing:
        shape = Shape.CONTAINS
    elif leading:
        shape = Shape.SUFFIX
    elif trailing:
        shape = Shape.PREFIX
    else:
        shape = Shape.EXACT
    return Pattern(raw, shape, inner.casefold(), exclude)


@dataclass(frozen=True, slots=True)
class FieldMatcher:
    """The compiled values of one collection field."""

    includes: tuple[Pattern, ...]
    excludes: tuple[Pattern, ...]

    @property
    def empty(self) -> bool:
        return not self.includes and not self.excludes

    def admits(self, values: Iterable[str]) -> bool:
        """Does a target with these values (aliases of one target) belong to this field?"""
        values = list(values)
        if any(pattern.matches(value) for pattern in self.excludes for value in values):
            return False
        if not self.includes:
            return True
        return any(pattern.matches(value) for pattern in self.includes for value in values)


def compile_field(raw: Sequence[str]) -> FieldMatcher:
    """Parse a field's values; rejects bad shapes and inclusions an exclusion entirely removes."""
    patterns = [parse_pattern(value) for value in raw]
    includes = tuple(p for p in patterns if not p.exclude)
    excludes = tuple(p for p in patterns if p.exclude)
    for inclusion in includes:
        for exclusion in excludes:
            if exclusion.contains(inclusion):
                raise PatternError(
                    f"exclusion {exclusion.source!r} is broader than inclusion "
                    f"{inclusion.source!r}: it removes every value the inclusion admits"
                )
    for exclusion in excludes:
        if exclusion.shape is Shape.ANY:  # with no inclusions left to blame above
            raise PatternError(f"exclusion {exclusion.source!r} removes every value")
    return FieldMatcher(includes, excludes)
