"""A policy's custom checks, read from their YAML nodes into the checks package's spec."""

from __future__ import annotations

import math
import os

import yaml

from ..checks.custom.spec import Isolation
from ..jsonload import InputFileError, read_bounded
from ._nodes import FLOAT, INT, STR, NodeReader, line_of
from ._rules import SEVERITIES, parse_severity
from .model import CustomCheckSpec

__all__ = ["FIRST_CUSTOM_ID", "read_custom_check"]

FIRST_CUSTOM_ID = 9000
MAX_SCRIPT_BYTES = 1024 * 1024
MAX_TIMEOUT = 3600  # seconds: a custom check runs inside every scan
MAX_ID_DIGITS = 9
# A custom check's resource limits: (least, most) of each per-check key (defaults in the model).
MEMORY_MIB = (16, 64 * 1024)
PROCESSES = (1, 4096)


def read_custom_check(
    reader: NodeReader, node: yaml.Node, field: str, base_dir: str
) -> CustomCheckSpec | None:
    allowed = (
        "id",
        "name",
        "severity",
        "description",
        "script",
        "script_file",
        "timeout",
        "memory_mib",
        "processes",
        "isolation",
    )
    keys = reader.mapping(node, field, allowed, ("id", "name", "severity", "description"))
    if keys is None:
        return None
    check_id = _check_id(reader, keys["id"][1], f"{field}.id") if "id" in keys else None
    name = reader.string(keys["name"][1], f"{field}.name") if "name" in keys else None
    severity = (
        reader.choice(
            keys["severity"][1], f"{field}.severity", "severity", parse_severity, SEVERITIES
        )
        if "severity" in keys
        else None
    )
    description = (
        reader.string(keys["description"][1], f"{field}.description")
        if "description" in keys
        else None
    )
    script = _script(reader, node, keys, field, base_dir)
    timeout = 60.0
    if "timeout" in keys:
        timeout_node = keys["timeout"][1]
        number = (
            reader.value(timeout_node)
            if isinstance(timeout_node, yaml.ScalarNode) and timeout_node.tag in (INT, FLOAT)
            else None
        )
        if number is None or not math.isfinite(number) or not 0 < number <= MAX_TIMEOUT:
            reader.error(
                timeout_node,
                f"{field}.timeout",
                f"must be a number of seconds > 0 and at most {MAX_TIMEOUT}",
            )
        else:
            timeout = float(number)
    limits = {
        key: reader.integer(keys[key][1], f"{field}.{key}", *bounds)
        for key, bounds in (("memory_mib", MEMORY_MIB), ("processes", PROCESSES))
        if key in keys
    }
    isolation = Isolation.AUTO
    if "isolation" in keys:
        isolation = reader.choice(
            keys["isolation"][1],
            f"{field}.isolation",
            "isolation",
            Isolation,
            ", ".join(member.value for member in Isolation),
        )
    if None in (check_id, name, severity, description, script, isolation, *limits.values()):
        return None
    return CustomCheckSpec(
        id=check_id,  # type: ignore[arg-type]
        name=name,  # type: ignore[arg-type]
        severity=severity,  # type: ignore[arg-type]
        description=description,  # type: ignore[arg-type]
        script=script,  # type: ignore[arg-type]
        timeout=timeout,
        isolation=isolation,
        line=line_of(node),
        **limits,  # type: ignore[arg-type]
    )


def _check_id(reader: NodeReader, node: yaml.Node, field: str) -> str | None:
    text = str(node.value) if isinstance(node, yaml.ScalarNode) else ""
    if node.tag not in (INT, STR) or not text.isascii() or not text.isdigit():
        reader.error(node, field, f"must be a decimal number >= {FIRST_CUSTOM_ID}")
        return None
    if len(text) > MAX_ID_DIGITS:  # before int(): thousands of digits are slow, or refused
        reader.error(node, field, f"longer than {MAX_ID_DIGITS} digits")
        return None
    if int(text) < FIRST_CUSTOM_ID or text != str(int(text)):
        reader.error(
            node,
            field,
            f"custom check ids are {FIRST_CUSTOM_ID} and up, without leading zeros; got {text!r}",
        )
        return None
    return text


def _script(
    reader: NodeReader,
    node: yaml.Node,
    keys: dict[str, tuple[yaml.Node, yaml.Node]],
    field: str,
    base_dir: str,
) -> bytes | None:
    given = [key for key in ("script", "script_file") if key in keys]
    if len(given) != 1:
        reason = "both given" if given else "neither given"
        reader.error(node, field, f"exactly one of 'script' or 'script_file' ({reason})")
        return None
    value_node = keys[given[0]][1]
    where = f"{field}.{given[0]}"
    text = reader.string(value_node, where)
    if text is None:
        return None
    if given[0] == "script":
        data = text.encode("utf-8")
    else:
        path = os.path.join(base_dir, text)  # relative to the policy file
        # Beneath the policy's directory only: the script's output reaches the report, and
        # `sh` echoes each line it cannot run, so `script_file: /root/.ssh/id_rsa` (or a
        # symlink to it) printed the key, line by line, from a scan run as root.
        base = os.path.realpath(base_dir)
        real = os.path.realpath(path)
        if os.path.isabs(text) or not real.startswith(base.rstrip("/") + "/"):
            reader.error(value_node, where, "must be a file beneath the policy file's directory")
            return None
        try:
            data = read_bounded(path, what="script", max_bytes=MAX_SCRIPT_BYTES)
        except OSError as error:
            reader.error(value_node, where, f"cannot read {path}: {error.strerror or error}")
            return None
        except InputFileError as error:  # not a regular file, or too large
            reader.error(value_node, where, str(error))
            return None
    if len(data) > MAX_SCRIPT_BYTES:
        reader.error(value_node, where, f"script larger than {MAX_SCRIPT_BYTES} bytes")
        return None
    if not data.strip():
        reader.error(value_node, where, "empty script")
        return None
    return data
