"""A throwaway PostgreSQL server for tests and benchmarks: Debian's `postgresql` binaries,
`initdb` + `pg_ctl` on a temporary directory, listening on a unix socket only.

PostgreSQL refuses to run as root, so as root the cluster is made and run as `nobody`
(setpriv), in a directory it owns. Nothing is started by hand, and `stop()` removes it all.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

__all__ = ["PostgresCluster", "find_bin", "start_cluster"]

# The account the server runs as when the tests run as root.
UNPRIVILEGED = "nobody"
START_TIMEOUT = 60


def find_bin() -> Path | None:
    """The newest installed server's bin directory (`/usr/lib/postgresql/N/bin`), or None."""
    found = sorted(
        (
            Path(path)
            for path in glob.glob("/usr/lib/postgresql/*/bin")
            if Path(path, "initdb").is_file()
        ),
        key=lambda path: int(path.parent.name) if path.parent.name.isdigit() else 0,
    )
    return found[-1] if found else None


class PostgresCluster:
    """A running throwaway server; `url(name)` names one of its databases for SQLAlchemy."""

    def __init__(
        self, bin_dir: Path, base: Path, user_args: list[str], *, durable: bool = False
    ) -> None:
        self.bin_dir = bin_dir
        self.durable = durable
        self.base = base
        self.data = base / "data"
        self.socket_dir = base / "run"
        self._as_user = user_args
        self._counter = 0

    def _run(self, *command: str | os.PathLike[str], timeout: float = START_TIMEOUT) -> None:
        result = subprocess.run(
            [*self._as_user, *map(str, command)],
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"{Path(command[0]).name} failed ({result.returncode}): {result.stderr.strip()}"
            )

    def start(self) -> None:
        self._run(
            self.bin_dir / "initdb",
            "-D",
            self.data,
            "-U",
            "postgres",
            "-A",
            "trust",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
        )
        options = f"-k {self.socket_dir} -c listen_addresses='' -c max_connections=200"
        if not self.durable:  # tests: a commit need not reach the disk
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        self._run(
            self.bin_dir / "pg_ctl",
            "-D",
            self.data,
            "-o",
            options,
            "-l",
            self.base / "server.log",
            "-w",
            "-t",
            str(START_TIMEOUT),
            "start",
        )

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@/{database}?host={self.socket_dir}"

    def new_database(self, template: str | None = None) -> str:
        """A new, empty database's name (a copy of `template` when given)."""
        import psycopg

        self._counter += 1
        name = f"t{os.getpid()}_{self._counter}"
        with psycopg.connect(
            host=str(self.socket_dir), user="postgres", dbname="postgres", autocommit=True
        ) as connection:
            suffix = f" TEMPLATE {template}" if template else ""
            connection.execute(f"CREATE DATABASE {name}{suffix}")  # our own name, no input
        return name

    def stop(self) -> None:
        try:
            if self.data.is_dir():
                self._run(self.bin_dir / "pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.base, ignore_errors=True)


def start_cluster(*, durable: bool = False) -> PostgresCluster:
    """A started cluster; RuntimeError when no PostgreSQL server is installed or it fails.

    `durable` keeps PostgreSQL's defaults (fsync, synchronous commit, full-page writes), as a
    production server runs, for benchmarks; tests turn them off, since nothing need survive.
    """
    bin_dir = find_bin()
    if bin_dir is None:
        raise RuntimeError(
            "no PostgreSQL server in /usr/lib/postgresql/*/bin: install Debian's postgresql "
            "package (install.sh --test does)"
        )
    # Not under pytest's tmp_path: its parents are private to root, and the server runs as
    # nobody; a short path also keeps the socket's within the 107-byte limit.
    base = Path(tempfile.mkdtemp(prefix="scanroot-pg-"))
    user_args: list[str] = []
    if os.geteuid() == 0:
        import pwd

        account = pwd.getpwnam(UNPRIVILEGED)
        os.chmod(base, 0o755)
        os.chown(base, account.pw_uid, account.pw_gid)
        user_args = [
            "setpriv",
            f"--reuid={account.pw_uid}",
            f"--regid={account.pw_gid}",
            "--clear-groups",
        ]
    cluster = PostgresCluster(bin_dir, base, user_args, durable=durable)
    (base / "run").mkdir()
    if user_args:
        os.chown(base / "run", account.pw_uid, account.pw_gid)
    try:
        cluster.start()
    except BaseException:
        cluster.stop()
        raise
    return cluster
