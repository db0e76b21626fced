"""pytest fixtures of the console's tests: each runs on SQLite and on a throwaway PostgreSQL
server (testsupport/postgres.py), with the console served by uvicorn on a loopback port."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import postgres
import pytest

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from starlette.applications import Starlette

__all__ = ["ConsoleDB", "ConsoleServer", "console_db", "console_server", "postgres_cluster"]

ENGINES = ("sqlite", "postgresql")
TEST_MAX_REPORT_BYTES = 4 * 1024 * 1024


@dataclass
class ConsoleDB:
    kind: str  # "sqlite" or "postgresql"
    url: str
    engine: Engine


@dataclass
class ConsoleServer:
    db: ConsoleDB
    base_url: str
    token: str  # a live token with the ingest scope

    def post(
        self,
        body: bytes,
        *,
        headers: dict[str, str] | None = None,
        token: str | None = None,
        timeout: float = 30,
    ) -> Any:
        import httpx

        sent = {
            "Content-Type": "application/json",
            "Authorization": f"Bearer {token or self.token}",
        }
        sent.update(headers or {})
        return httpx.post(
            f"{self.base_url}/api/v1/scans", content=body, headers=sent, timeout=timeout
        )


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[postgres.PostgresCluster]:
    """One server for the session, stopped (and its directory removed) at its end."""
    if postgres.find_bin() is None:
        pytest.skip("PostgreSQL is not installed (install.sh --test installs it)")
    cluster = postgres.start_cluster()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def postgres_store(postgres_cluster: postgres.PostgresCluster) -> Iterator[ConsoleDB]:
    """One database migrated from empty; each test starts from its tables emptied."""
    from console.database import engine_for, upgrade

    url = postgres_cluster.url(postgres_cluster.new_database())
    engine = engine_for(url)
    upgrade(engine)
    try:
        yield ConsoleDB("postgresql", url, engine)
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from console.database import engine_for, upgrade

    path = tmp_path_factory.mktemp("console-template") / "console.db"
    engine = engine_for(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()
    return path


def _empty(engine: Engine) -> None:
    from sqlalchemy import text

    from console.models import Base

    names = ", ".join(table.name for table in Base.metadata.sorted_tables)
    with engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))


@pytest.fixture(params=ENGINES)
def console_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ConsoleDB]:
    """An empty console database at the newest schema, on each engine."""
    from console.database import engine_for

    if request.param == "postgresql":
        store: ConsoleDB = request.getfixturevalue("postgres_store")
        _empty(store.engine)
        yield store
        return
    template: Path = request.getfixturevalue("sqlite_template")
    path = tmp_path / "console.db"
    path.write_bytes(template.read_bytes())
    url = f"sqlite:///{path}"
    engine = engine_for(url)
    try:
        yield ConsoleDB("sqlite", url, engine)
    finally:
        engine.dispose()


@dataclass
class _Served:
    """The console under a real uvicorn in a thread; its store is swapped for each test."""

    app: Starlette
    base_url: str
    stop: Any = field(default=None)


@pytest.fixture(scope="session")
def _console_http() -> Iterator[_Served]:
    import uvicorn
    from sqlalchemy import create_engine

    from console.app import Settings, create_app

    app = create_app(Settings(engine=create_engine("sqlite://")))
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    from console.http_protocol import BoundedHttpToolsProtocol

    # As `scan-root console serve` runs it: httptools (its head bounded) on uvloop, and no
    # X-Forwarded-For believed (uvicorn's default trusts it from loopback, where tests are).
    config = uvicorn.Config(
        app,
        log_level="critical",
        lifespan="off",
        http=BoundedHttpToolsProtocol,
        loop="uvloop",
        proxy_headers=False,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the console did not start")
        time.sleep(0.01)
    try:
        yield _Served(app, f"http://127.0.0.1:{listener.getsockname()[1]}")
    finally:
        server.should_exit = True
        thread.join(10)
        listener.close()


@pytest.fixture
def console_server(console_db: ConsoleDB, _console_http: _Served) -> ConsoleServer:
    """The console, served over HTTP on a loopback port, on this test's store, with a token."""
    from console.accounts import create_token
    from console.app import Settings

    _console_http.app.state.settings = Settings(
        engine=console_db.engine, max_report_bytes=TEST_MAX_REPORT_BYTES
    )
    token = create_token(console_db.engine, "defender", [])
    return ConsoleServer(console_db, _console_http.base_url, token)


@pytest.fixture(params=ENGINES)
def private_console_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ConsoleDB]:
    """A database of its own, migrated from empty, for a test that changes its schema."""
    from console.database import engine_for, upgrade

    if request.param == "postgresql":
        cluster: postgres.PostgresCluster = request.getfixturevalue("postgres_cluster")
        url = cluster.url(cluster.new_database())
    else:
        url = f"sqlite:///{tmp_path / 'private.db'}"
    engine = engine_for(url)
    upgrade(engine)
    try:
        yield ConsoleDB(request.param, url, engine)
    finally:
        engine.dispose()
