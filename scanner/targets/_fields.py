"""Fields of image JSON (OCI index, manifest, config; docker's manifest.json), type-checked as read.

A field of the wrong JSON type is an ImageError naming the field, never a TypeError later: the
specs (https://github.com/opencontainers/image-spec/blob/main/config.md, descriptor.md) say
what each holds, and an image that breaks them cannot be read as its author meant. Absent and
`null` mean the same (docker writes `"Labels": null`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from ._layers import ImageError

__all__ = ["Config", "config", "json_type", "mapping", "member", "obj", "strings"]

_NAMES = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}


def json_type(value: Any) -> str:
    """`an array`, `a number`, ... for a message."""
    if value is None:
        return "null"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return "a number"
    return _NAMES.get(type(value), type(value).__name__)


def obj(value: Any, where: str) -> dict[str, Any]:
    """`value`, which must be a JSON object."""
    if not isinstance(value, dict):
        raise ImageError(f"{where} is {json_type(value)}, not an object")
    return value


def member(parent: dict[str, Any], key: str, kind: type, where: str) -> Any:
    """parent[key] when it is of `kind` (dict, list or str); None when absent or null."""
    value = parent.get(key)
    if value is None or (isinstance(value, kind) and not isinstance(value, bool)):
        return value
    raise ImageError(f"{where}: {key!r} is {json_type(value)}, not {_NAMES[kind]}")


def strings(parent: dict[str, Any], key: str, where: str) -> list[str] | None:
    """parent[key] as an array of strings; None when absent or null."""
    values = member(parent, key, list, where)
    if values is not None:
        for number, value in enumerate(values):
            if not isinstance(value, str):
                raise ImageError(f"{where}: {key}[{number}] is {json_type(value)}, not a string")
    return cast("list[str] | None", values)


def mapping(parent: dict[str, Any], key: str, where: str) -> dict[str, str]:
    """parent[key] as an object of strings; {} when absent or null."""
    values = member(parent, key, dict, where)
    if values is None:
        return {}
    for name, value in values.items():
        if not isinstance(value, str):
            raise ImageError(f"{where}: {key}[{name!r}] is {json_type(value)}, not a string")
    return cast("dict[str, str]", values)


@dataclass(frozen=True, slots=True)
class Config:
    """What the scan uses of an image config."""

    env: tuple[tuple[str, str], ...]
    user: str | None
    labels: dict[str, str]
    platform: str | None  # "linux/amd64"
    diff_ids: int | None  # how many, when rootfs lists them


def config(document: Any, where: str) -> Config:
    """An image config (config.md), its fields checked as they are read."""
    document = obj(document, where)
    runtime = member(document, "config", dict, where) or {}
    inner = f"{where}: config"
    env = []
    for entry in strings(runtime, "Env", inner) or ():
        name, _, value = entry.partition("=")
        env.append((name, value))
    user = member(runtime, "User", str, inner) or None
    labels = mapping(runtime, "Labels", inner)
    rootfs = member(document, "rootfs", dict, where)
    diff_ids = None if rootfs is None else strings(rootfs, "diff_ids", f"{where}: rootfs")
    system = member(document, "os", str, where)
    architecture = member(document, "architecture", str, where)
    return Config(
        env=tuple(env),
        user=user,
        labels=dict(labels),
        platform=f"{system}/{architecture}" if system and architecture else None,
        diff_ids=None if diff_ids is None else len(diff_ids),
    )
