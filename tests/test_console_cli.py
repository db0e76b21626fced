"""`scan-root console ...`: the database (default place, created on first use, migrations,
an older revision refused), tokens and users, and the `scan-root` entry point's dispatch."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from child import child_env
from console_fixtures import ConsoleDB
from sqlalchemy import select, text

from console import cli, database, entry
from console.accounts import token_scopes
from console.app import parse_duration
from console.credentials import verify_password
from console.database import ConsoleDBError, default_url, engine_for, ensure_schema, head_revision
from console.kinds import Scope
from console.models import Base, User

REPO = Path(__file__).resolve().parent.parent


def run_cli(capsys: pytest.CaptureFixture[str], *arguments: str) -> tuple[int, str, str]:
    code = entry.main(["console", *arguments])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_default_database_places(tmp_path: Path) -> None:
    assert default_url({"SCAN_ROOT_CONSOLE_DB": "postgresql+psycopg://x/y"}) == (
        "postgresql+psycopg://x/y"
    )
    assert default_url({}, uid=0) == "sqlite:////var/lib/scan-root/console.db"
    assert default_url({"XDG_DATA_HOME": str(tmp_path)}, uid=1000) == (
        f"sqlite:///{tmp_path}/scan-root/console.db"
    )
    assert default_url({"HOME": "/home/u"}, uid=1000) == (
        "sqlite:////home/u/.local/share/scan-root/console.db"
    )


def test_a_new_sqlite_database_is_created_on_first_use(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.delenv("SCAN_ROOT_CONSOLE_DB", raising=False)
    monkeypatch.setattr(database.os, "geteuid", lambda: 1000)
    code, out, err = run_cli(capsys, "token", "list")
    assert (code, out) == (0, "")
    assert "created the database" in err
    created = tmp_path / "data" / "scan-root" / "console.db"
    assert database.revision_of(engine_for(f"sqlite:///{created}")) == head_revision()


def test_token_create_list_revoke(
    console_db: ConsoleDB, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(capsys, "token", "create", "fleet", "--db", console_db.url)
    assert code == 0
    token = out.strip()
    assert out == token + "\n" and token.startswith("srt_") and len(token) > 40  # alone
    assert token not in err
    assert token_scopes(console_db.engine, token) is not None
    code, out, _ = run_cli(
        capsys,
        "token",
        "create",
        "ops",
        "--scope",
        "read",
        "--scope",
        "admin",
        "--db",
        console_db.url,
    )
    ops = out.strip()
    found = token_scopes(console_db.engine, ops)
    assert found is not None and found[1] == {Scope.READ, Scope.ADMIN}
    code, out, _ = run_cli(capsys, "token", "list", "--db", console_db.url)
    assert code == 0
    lines = sorted(out.splitlines())
    assert [line.split("\t")[:2] for line in lines] == [
        ["fleet", "ingest"],
        ["ops", "read,admin"],
    ] or [line.split("\t")[:2] for line in lines] == [["fleet", "ingest"], ["ops", "admin,read"]]
    assert token not in out and ops not in out
    # A name is unique among live tokens: taken again, a clear error.
    code, out, err = run_cli(capsys, "token", "create", "fleet", "--db", console_db.url)
    assert (code, out) == (2, "") and "exists already" in err
    code, _, _ = run_cli(capsys, "token", "revoke", "fleet", "--db", console_db.url)
    assert code == 0 and token_scopes(console_db.engine, token) is None
    code, _, err = run_cli(capsys, "token", "revoke", "fleet", "--db", console_db.url)
    assert code == 2 and "no live token" in err
    # Revoked, the name is free again; the old token stays dead.
    code, out, _ = run_cli(capsys, "token", "create", "fleet", "--db", console_db.url)
    assert code == 0 and token_scopes(console_db.engine, token) is None
    assert "revoked" in run_cli(capsys, "token", "list", "--db", console_db.url)[1]


def test_user_add_keeps_an_argon2_hash(
    console_db: ConsoleDB, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    monkeypatch.setattr(sys, "stdin", io.StringIO("correct horse\n"))
    code, out, err = run_cli(capsys, "user", "add", "alice", "--db", console_db.url)
    assert (code, out) == (0, ""), err
    with console_db.engine.connect() as connection:
        stored = connection.execute(select(User.password_hash)).scalar_one()
    assert stored.startswith("$argon2id$") and "correct horse" not in stored
    assert verify_password(stored, "correct horse") and not verify_password(stored, "wrong")
    monkeypatch.setattr(sys, "stdin", io.StringIO("other\n"))
    assert run_cli(capsys, "user", "add", "alice", "--db", console_db.url)[0] == 2
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    code, _, err = run_cli(capsys, "user", "add", "bob", "--db", console_db.url)
    assert code == 2 and "empty" in err


def test_migrations_run_from_empty_and_match_the_models(private_console_db: ConsoleDB) -> None:
    """The fixture's database was migrated from empty; Alembic finds nothing to add."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    assert database.revision_of(private_console_db.engine) == head_revision()
    with private_console_db.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert differences == []


def newer_migrations(tmp_path: Path) -> Path:
    """This version's migrations and one more (a new column): the console of a later version."""
    folder = tmp_path / "migrations"
    shutil.copytree(database.MIGRATIONS, folder, ignore=shutil.ignore_patterns("__pycache__"))
    (folder / "versions" / "later_revision.py").write_text(
        '"""A later revision."""\n'
        "import sqlalchemy as sa\nfrom alembic import op\n\n"
        f"revision = 'later'\ndown_revision = {head_revision()!r}\n"
        "branch_labels = None\ndepends_on = None\n\n\n"
        "def upgrade() -> None:\n"
        "    with op.batch_alter_table('hosts') as batch:\n"
        "        batch.add_column(sa.Column('note', sa.Text(), nullable=True))\n\n\n"
        "def downgrade() -> None:\n    pass\n"
    )
    return folder


def test_an_older_database_is_refused_until_db_upgrade(
    private_console_db: ConsoleDB,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(database, "MIGRATIONS", newer_migrations(tmp_path))
    with pytest.raises(ConsoleDBError, match="db upgrade"):
        ensure_schema(private_console_db.engine)
    code, _, err = run_cli(
        capsys, "serve", "--db", private_console_db.url, "--listen", "127.0.0.1:1"
    )
    assert code == 2 and "older than this console's" in err and "db upgrade" in err
    assert run_cli(capsys, "token", "list", "--db", private_console_db.url)[0] == 2
    code, _, err = run_cli(capsys, "db", "upgrade", "--db", private_console_db.url)
    assert code == 0 and "later" in err
    assert ensure_schema(private_console_db.engine) == database.Revision.CURRENT
    with private_console_db.engine.connect() as connection:
        assert connection.execute(text("SELECT note FROM hosts")).all() == []


def test_a_database_from_a_newer_console_is_refused(
    private_console_db: ConsoleDB,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with private_console_db.engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = 'ffff'"))
    code, _, err = run_cli(capsys, "token", "list", "--db", private_console_db.url)
    assert code == 2 and "unknown to this console" in err


def test_a_foreign_database_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'other.db'}"
    with engine_for(url).begin() as connection:
        connection.execute(text("CREATE TABLE something (x INTEGER)"))
    code, _, err = run_cli(capsys, "token", "list", "--db", url)
    assert code == 2 and "not a console database" in err


@pytest.mark.parametrize(
    "url", ["mysql://x/y", "not a url", "postgresql+psycopg://postgres@/none?host=/nonexistent"]
)
def test_a_bad_database_url_is_a_clear_error(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "token", "list", "--db", url)
    assert code == 2 and out == "" and err.startswith("scan-root console: ")
    assert "Traceback" not in err


def test_the_entry_point_sends_the_rest_to_the_scanner(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = entry.main([str(tmp_path), "--format", "json", "--checks", "426"])
    assert code == 0 and '"schema": 1' in capsys.readouterr().out


def test_console_without_its_dependencies_says_what_to_install() -> None:
    script = (
        "import sys; sys.modules['sqlalchemy'] = None\n"
        "from console import entry\n"
        "sys.exit(entry.main(['console', 'token', 'list']))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env=child_env(),
    )
    assert result.returncode == 2
    assert "scan-root[console]" in result.stderr and "Traceback" not in result.stderr


def test_console_help_lists_its_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main(["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    for command in ("serve", "db", "token", "user"):
        assert command in out


@pytest.mark.parametrize(
    ("text", "seconds"), [("24h", 86400), ("30m", 1800), ("7d", 604800), ("90s", 90)]
)
def test_deployed_window_durations(text: str, seconds: int) -> None:
    assert parse_duration(text).total_seconds() == seconds


@pytest.mark.parametrize("text", ["", "0h", "24", "h", "1w", "-1h", "1.5h", "99999999d"])
def test_bad_deployed_windows_are_refused(text: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)
    with pytest.raises(SystemExit) as done:
        cli.main(["serve", f"--deployed-window={text}"])
    assert done.value.code == 2 and "duration" in capsys.readouterr().err


def test_serve_settings_reach_the_workers(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """uvicorn's workers build the app from the environment `serve` sets."""
    from console.app import app_from_environment

    monkeypatch.setenv("SCAN_ROOT_CONSOLE_DB", f"sqlite:///{tmp_path / 'c.db'}")
    monkeypatch.setenv("SCAN_ROOT_CONSOLE_MAX_REPORT_BYTES", "1234")
    monkeypatch.setenv("SCAN_ROOT_CONSOLE_DEPLOYED_WINDOW", "2h")
    settings = app_from_environment().state.settings
    try:
        assert settings.max_report_bytes == 1234
        assert settings.deployed_window.total_seconds() == 7200
    finally:
        settings.engine.dispose()
