"""`GET /api/v1/vulndb` on SQLite and PostgreSQL consoles: the advisory database defenders
fetch, as a consistent snapshot with a strong ETag; scopes, 404 without one, 503 for a file
that is not one, a new snapshot (and ETag) after an import."""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from console_fixtures import ConsoleDB

from console.accounts import create_token
from console.app import Settings
from console.kinds import Scope
from vulndb.records import Distro, Ecosystem
from vulndb.sources import read
from vulndb.store import VulnDB

ADVISORIES = Path(__file__).resolve().parent / "fixtures" / "advisories"


def advisory_db(path: Path, *sources: Path) -> Path:
    with VulnDB.open_write(path) as db:
        for source in sources:
            db.import_advisories(read(source), label=source.name)
    return path


@pytest.fixture
def served(console_db: ConsoleDB, _console_http: Any) -> Any:
    """A function giving an HTTP client of the console served with `vulndb` on this store."""

    @contextlib.contextmanager
    def serve(vulndb: Path | None) -> Iterator[httpx.Client]:
        _console_http.app.state.settings = Settings(engine=console_db.engine, vulndb=vulndb)
        with httpx.Client(base_url=_console_http.base_url, timeout=30) as http:
            yield http

    return serve


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_the_database_with_its_etag_and_304(
    console_db: ConsoleDB, served: Any, tmp_path: Path
) -> None:
    path = advisory_db(tmp_path / "vulndb.sqlite", ADVISORIES / "alpine/3.20/main/openssl.json")
    token = create_token(console_db.engine, "defender", [Scope.INGEST])
    with served(path) as http:
        answer = http.get("/api/v1/vulndb", headers=bearer(token))
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "application/vnd.sqlite3"
        etag = answer.headers["etag"]
        assert etag == f'"{hashlib.sha256(answer.content).hexdigest()}"'
        copy = tmp_path / "copy.sqlite"
        copy.write_bytes(answer.content)
        with VulnDB.open_read(copy) as fetched:
            assert Ecosystem(Distro.ALPINE, "v3.20") in fetched.ecosystems()
        again = http.get("/api/v1/vulndb", headers={**bearer(token), "If-None-Match": etag})
        assert again.status_code == 304 and again.content == b""
        # an import changes the database: a new snapshot, a new ETag, the new data
        with VulnDB.open_write(path) as db:
            db.import_advisories(read(ADVISORIES / "alpine/3.20/main/zlib.json"), label="zlib")
        newer = http.get("/api/v1/vulndb", headers={**bearer(token), "If-None-Match": etag})
        assert newer.status_code == 200 and newer.headers["etag"] != etag
        copy.write_bytes(newer.content)
        with VulnDB.open_read(copy) as fetched:
            names = {s.label for s in fetched.sources()}
        assert names == {"openssl.json", "zlib"}


def test_scopes_and_parameters(console_db: ConsoleDB, served: Any, tmp_path: Path) -> None:
    path = advisory_db(tmp_path / "vulndb.sqlite", ADVISORIES / "alpine/3.20/main/zlib.json")
    with served(path) as http:
        assert http.get("/api/v1/vulndb").status_code == 401
        assert http.get("/api/v1/vulndb", headers=bearer("scan-root_nope")).status_code == 401
        for scope in (Scope.INGEST, Scope.READ, Scope.ADMIN):
            token = create_token(console_db.engine, f"t-{scope.value}", [scope])
            assert http.get("/api/v1/vulndb", headers=bearer(token)).status_code == 200
        token = create_token(console_db.engine, "reader", [Scope.READ])
        answer = http.get("/api/v1/vulndb?x=1", headers=bearer(token))
        assert answer.status_code == 422
        assert http.post("/api/v1/vulndb", headers=bearer(token)).status_code == 405


def test_no_database_is_a_404(console_db: ConsoleDB, served: Any) -> None:
    token = create_token(console_db.engine, "defender", [Scope.INGEST])
    with served(None) as http:
        answer = http.get("/api/v1/vulndb", headers=bearer(token))
    assert answer.status_code == 404
    assert "serves no advisory database" in answer.json()["error"]


@pytest.mark.parametrize("kind", ["absent", "garbage", "foreign", "directory"])
def test_a_file_that_is_no_database_is_a_503(
    console_db: ConsoleDB, served: Any, tmp_path: Path, kind: str
) -> None:
    path = tmp_path / "vulndb.sqlite"
    if kind == "garbage":
        path.write_bytes(b"\x00garbage" * 1000)
    elif kind == "foreign":
        sqlite3.connect(path).executescript("CREATE TABLE units (x); INSERT INTO units VALUES (1);")
    elif kind == "directory":
        path.mkdir()
    token = create_token(console_db.engine, "defender", [Scope.INGEST])
    with served(path) as http:
        answer = http.get("/api/v1/vulndb", headers=bearer(token))
    assert answer.status_code == 503
    assert answer.headers.get("retry-after")
    assert str(tmp_path) not in answer.text  # the console's paths stay in its log
