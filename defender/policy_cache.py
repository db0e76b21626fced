"""The console's policy for the defender: fetched with its ETag, kept on disk for when it is away."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from scanner.atomic import write_atomically
from scanner.policy import Policy, PolicyError
from scanner.policy.loader import parse_policy

from .delivery import ConsoleClient
from .etags import forget, read_etag, write_etag

__all__ = ["PolicyCache", "PolicyState"]

log = logging.getLogger(__name__)

POLICY_PATH = "/api/v1/policy"
# The console bounds what it stores (console/policy_edit.py); past this is no policy of its.
MAX_POLICY_BYTES = 4 << 20
SOURCE = "console policy"


@dataclass(slots=True)
class PolicyState:
    policy: Policy | None
    problems: list[str] = field(default_factory=list)


class PolicyCache:
    """`GET /api/v1/policy` with If-None-Match; the last good policy in `directory`.

    A policy that does not validate is never used nor cached: the last good one stays. A 404
    (no policy saved) removes the cache: the console says there is none. Custom checks must be
    inline: `script_file` is resolved against an empty directory, so it names nothing of the
    defender's own files.
    """

    def __init__(self, client: ConsoleClient | None, directory: str | os.PathLike[str]):
        self.client = client
        self.directory = Path(directory)
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._no_files = self.directory / "no-script-files"
        self._no_files.mkdir(mode=0o700, exist_ok=True)
        self._text_path = self.directory / "policy.yaml"
        self._etag_path = self.directory / "policy.etag"

    def refresh(self) -> PolicyState:
        cached = self._cached()
        if self.client is None:
            return cached
        etag = read_etag(self._etag_path) if cached.policy is not None else None
        headers = {"Accept": "application/yaml"}
        if etag:
            headers["If-None-Match"] = etag
        try:
            status, answer_headers, body = self.client.request(
                "GET", POLICY_PATH, headers=headers, max_bytes=MAX_POLICY_BYTES
            )
        except OSError as error:
            return self._fallback(cached, f"console unreachable ({error})")
        if status == 304 and cached.policy is not None:
            return cached
        if status == 404:
            forget(self._text_path, self._etag_path)
            return PolicyState(None)
        if status != 200:
            return self._fallback(cached, f"console answered {status}")
        try:
            policy = parse_policy(body, SOURCE, base_dir=str(self._no_files))
        except PolicyError as error:
            return self._fallback(cached, f"the console's policy does not validate: {error}")
        write_atomically(str(self._text_path), body)
        write_etag(self._etag_path, answer_headers)
        return PolicyState(policy)

    def _fallback(self, cached: PolicyState, why: str) -> PolicyState:
        used = "the cached policy ran" if cached.policy is not None else "no policy ran"
        message = f"policy: {why}; {used}"
        log.warning("%s", message)
        return PolicyState(cached.policy, [*cached.problems, message])

    def _cached(self) -> PolicyState:
        try:
            with open(self._text_path, "rb") as handle:
                text = handle.read(MAX_POLICY_BYTES + 1)
        except FileNotFoundError:
            return PolicyState(None)
        except OSError as error:
            return PolicyState(None, [f"policy: cached copy unreadable: {error.strerror}"])
        try:
            return PolicyState(parse_policy(text, SOURCE, base_dir=str(self._no_files)))
        except PolicyError as error:
            return PolicyState(None, [f"policy: cached copy does not validate: {error}"])
