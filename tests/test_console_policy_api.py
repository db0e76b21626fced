"""The policy store and `GET /api/v1/policy` on SQLite and a real PostgreSQL: versions, the
scanner's loader as the judge (same messages; nothing invalid stored), ETag and 304, scopes,
hostile YAML refused cleanly."""

from __future__ import annotations

import hashlib
import time

import httpx
import pytest
from console_fixtures import ConsoleDB, ConsoleServer

from console.accounts import create_token
from console.kinds import Scope
from console.policy_api import matches
from console.policy_store import (
    MAX_POLICY_BYTES,
    SCRIPT_FILE_NOTE,
    PolicyConflict,
    PolicyRefused,
    current_policy,
    save_policy,
)
from scanner.policy import PolicyError, parse_policy

POLICY = """\
version: 1
collections:
  - name: fargate-tasks
    hosts: ["fargate-task*"]
rules:
  - name: ignore-keys
    collections: [fargate-tasks]
    effects: {"425": ignore}
"""


def get(server: ConsoleServer, token: str | None, **headers: str) -> httpx.Response:
    sent = dict(headers)
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    return httpx.get(f"{server.base_url}/api/v1/policy", headers=sent, timeout=30)


def test_no_policy_saved_is_a_404(console_server: ConsoleServer) -> None:
    answer = get(console_server, console_server.token)
    assert answer.status_code == 404
    assert answer.json()["error"].startswith("no policy saved yet")


def test_current_policy_with_a_strong_etag_and_304(console_server: ConsoleServer) -> None:
    engine = console_server.db.engine
    first = save_policy(engine, POLICY, "alice", base=0)
    answer = get(console_server, console_server.token)  # the defender's ingest token
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/yaml; charset=utf-8"
    assert answer.text == POLICY
    etag = answer.headers["etag"]
    assert etag == f'"{hashlib.sha256(POLICY.encode()).hexdigest()}"' == first.etag
    assert answer.headers["cache-control"] == "no-cache"
    for given in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        again = get(console_server, console_server.token, **{"If-None-Match": given})
        assert (again.status_code, again.content, again.headers["etag"]) == (304, b"", etag)
    assert get(console_server, console_server.token, **{"If-None-Match": '"x"'}).status_code == 200
    # A new version: the old tag no longer matches.
    changed = POLICY.replace("ignore", "block")
    save_policy(engine, changed, "bob", base=first.version)
    newer = get(console_server, console_server.token, **{"If-None-Match": etag})
    assert newer.status_code == 200 and newer.text == changed and newer.headers["etag"] != etag


def test_scopes(console_server: ConsoleServer) -> None:
    engine = console_server.db.engine
    save_policy(engine, POLICY, "alice", base=0)
    assert get(console_server, None).status_code == 401
    assert get(console_server, "not-a-token").status_code == 401
    for scope in Scope:
        token = create_token(engine, f"t-{scope.value}", [scope])
        assert get(console_server, token).status_code == 200, scope
    query = httpx.get(
        f"{console_server.base_url}/api/v1/policy?token={console_server.token}", timeout=30
    )
    assert query.status_code == 401  # never a token from the URL


@pytest.mark.parametrize(
    ("given", "etag", "expected"),
    [
        ('"a"', '"a"', True),
        ('W/"a"', '"a"', True),
        ('"b" , "a"', '"a"', True),
        ("*", '"a"', True),
        ('"b"', '"a"', False),
        ("a", '"a"', False),  # unquoted: not an entity tag
        (", ".join(['"b"'] * 64 + ['"a"']), '"a"', False),  # past MAX_TAGS
    ],
)
def test_if_none_match(given: str, etag: str, expected: bool) -> None:
    assert matches(given, etag) is expected


def test_versions_and_conflicts(console_db: ConsoleDB) -> None:
    engine = console_db.engine
    assert current_policy(engine) is None
    first = save_policy(engine, POLICY, "alice", base=0)
    assert (first.version, first.saved_by) == (1, "alice")
    with pytest.raises(PolicyConflict, match="changed since"):
        save_policy(engine, POLICY + "# b\n", "bob", base=0)  # made on no policy: stale
    second = save_policy(engine, POLICY + "# c\n", "carol", base=1)
    stored = current_policy(engine)
    assert stored is not None
    assert (stored.version, stored.text, stored.saved_by) == (2, second.text, "carol")
    assert stored.sha256 == hashlib.sha256(second.text.encode()).hexdigest()


INVALID = [
    "version: 1\nrules:\n  - name: r\n    effects: {'425': blok}\n",
    "version: 2\n",
    "version: 1\ncollections:\n  - name: a\n    hosts: [fargate-task*, -fargate*]\n",
    "version: 1\nrules:\n  - name: r\n    collections: [nowhere]\n    effects: {'*': alert}\n",
    "rules: [\n",
    "",
]


@pytest.mark.parametrize("text", INVALID)
def test_an_invalid_policy_is_refused_with_the_loaders_message(
    console_db: ConsoleDB, text: str
) -> None:
    with pytest.raises(PolicyError) as loader:
        parse_policy(text, "policy.yaml")
    with pytest.raises(PolicyRefused) as refused:
        save_policy(console_db.engine, text, "alice", base=0)
    assert str(refused.value) == str(loader.value)
    assert current_policy(console_db.engine) is None


def _deep(levels: int) -> str:
    return "version: 1\nrules: " + "[" * levels + "]" * levels + "\n"


def _laughs() -> str:
    lines = ["version: 1", 'a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    return "\n".join(lines) + "\n"


HOSTILE = {
    "huge": ("version: 1\n# " + "x" * MAX_POLICY_BYTES + "\n", "larger than"),
    "deep": (_deep(10_000), "nested deeper than"),
    "laughs": (_laughs(), "aliases"),
    "many aliases": (
        "version: 1\nx: &x 1\ny: [" + ", ".join(["*x"] * 300) + "]\n",
        "more than 256 aliases",
    ),
    "a python tag": ("version: 1\nx: !!python/object/apply:os.system ['true']\n", "policy.yaml"),
    "not UTF-8 text": ("version: 1\n# \x00\n", "invalid YAML"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_yaml_is_refused_cleanly(console_db: ConsoleDB, name: str) -> None:
    text, message = HOSTILE[name]
    started = time.monotonic()
    with pytest.raises(PolicyRefused, match=message):
        save_policy(console_db.engine, text, "mallory", base=0)
    assert time.monotonic() - started < 5
    assert current_policy(console_db.engine) is None


def test_a_script_file_is_refused_and_nothing_of_the_console_is_read(
    console_db: ConsoleDB,
) -> None:
    """A `script_file` would name a file on the console's machine (its database, its keys);
    it is looked up in an empty directory, so never found, and the message says why."""
    for path in ("/etc/passwd", "../../../../etc/passwd", "console.db"):
        text = (
            "version: 1\ncustom_checks:\n  - {id: 9001, name: n, severity: low, "
            f"description: d, script_file: {path!r}}}\n"
        )
        with pytest.raises(PolicyRefused) as refused:
            save_policy(console_db.engine, text, "mallory", base=0)
        message = str(refused.value)
        assert "custom_checks[0].script_file" in message
        assert SCRIPT_FILE_NOTE in message or "beneath the policy file's directory" in message
        assert "root:" not in message
    assert current_policy(console_db.engine) is None


def test_racing_saves_on_one_version_keep_exactly_one(console_db: ConsoleDB) -> None:
    """Two editors saving on the same version: one is stored, the other told (never lost
    silently, never two versions of one number)."""
    from concurrent.futures import ThreadPoolExecutor

    engine = console_db.engine
    save_policy(engine, POLICY, "alice", base=0)

    def attempt(number: int) -> str:
        try:
            save_policy(engine, POLICY + f"# {number}\n", f"editor-{number}", base=1)
        except PolicyConflict:
            return "conflict"
        return "saved"

    with ThreadPoolExecutor(4) as pool:
        outcomes = sorted(pool.map(attempt, range(6)))
    assert outcomes == ["conflict"] * 5 + ["saved"]
    stored = current_policy(engine)
    assert stored is not None and stored.version == 2
