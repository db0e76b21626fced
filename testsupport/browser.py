"""A real `scan-root console serve` process and a headless Chromium driving it: the fixtures
of the web views' acceptance tests (tests/test_console_browser.py)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from console_process import wait_until_answering

import console

if TYPE_CHECKING:
    from selenium.webdriver import Chrome

__all__ = [
    "CHROMEDRIVER",
    "CHROMIUM",
    "SCREENSHOTS",
    "Browser",
    "ConsoleProcess",
    "Consoles",
    "browser_consoles",
    "chromium",
    "console_process",
    "require_chromium",
    "start_chromium",
]

REPO = Path(__file__).resolve().parent.parent
# Debian's packages (install.sh --test): chromedriver matches the chromium beside it, so
# selenium-manager is never asked to find (and download) either.
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
# Git-ignored; CI keeps them as the run's artifacts.
SCREENSHOTS = REPO / "artifacts" / "screenshots"
# Where the child imports the console from: the very package this session imports.
IMPORT_ROOT = Path(console.__file__).resolve().parent.parent
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
WINDOW = (1280, 900)


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(IMPORT_ROOT)
    env["PYTHONSAFEPATH"] = "1"  # the working directory must not shadow IMPORT_ROOT's package
    env.pop("SCAN_ROOT_CONSOLE_DB", None)  # every command names its database with --db
    return env


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


_SHARED_TOKENS: dict[tuple[str, str], str] = {}


@dataclass
class ConsoleProcess:
    """`scan-root console serve` on a loopback port, and the CLI on the same database."""

    db_url: str
    base_url: str
    log: Path  # what the server printed (stdout and stderr)

    def cli(self, *argv: str, stdin: str = "") -> str:
        """`scan-root console ARGV --db URL`; its stdout. AssertionError (with its stderr)
        when it fails."""
        done = subprocess.run(
            [sys.executable, "-m", "console.entry", "console", *argv, "--db", self.db_url],
            input=stdin,
            capture_output=True,
            text=True,
            env=_child_env(),
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, f"scan-root console {' '.join(argv)}: {done.stderr}"
        return done.stdout

    def add_user(self, name: str, password: str) -> None:
        self.cli("user", "add", name, stdin=password + "\n")

    def shared_token(self, scope: str) -> str:
        """One token of `scope` per database, made on first use (a name is given only once,
        and a console restarted on the same database keeps its tokens)."""
        key = (self.db_url, scope)
        if key not in _SHARED_TOKENS:
            _SHARED_TOKENS[key] = self.token(f"shared-{scope}", scope)
        return _SHARED_TOKENS[key]

    def token(self, name: str, *scopes: str) -> str:
        """A new token of `scopes` (the CLI's default, ingest, when none)."""
        argv = ["token", "create", name]
        for scope in scopes:
            argv += ["--scope", scope]
        return self.cli(*argv).strip()

    def post_report(self, body: bytes, token: str) -> httpx.Response:
        return httpx.post(
            f"{self.base_url}/api/v1/scans",
            content=body,
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
            timeout=60,
        )


@contextmanager
def console_process(db_url: str, workdir: Path, *serve: str) -> Iterator[ConsoleProcess]:
    """The database created and migrated by `db upgrade`, then `serve` (with `serve`'s extra
    options) on a free port, up and answering; stopped (SIGTERM, then SIGKILL) at the end."""
    port = _free_port()
    log = workdir / "console.log"
    served = ConsoleProcess(db_url, f"http://127.0.0.1:{port}", log)
    served.cli("db", "upgrade")
    command = [sys.executable, "-m", "console.entry", "console", "serve"]
    command += ["--db", db_url, "--listen", f"127.0.0.1:{port}", *serve]
    # A file, not a pipe: uvicorn logs every request, and a full pipe would stall the server.
    with log.open("wb") as output:
        process = subprocess.Popen(
            command,
            env=_child_env(),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            cwd=workdir,
        )
    try:
        wait_until_answering(
            process, served.base_url, START_TIMEOUT, lambda: log.read_text(errors="replace")
        )
        yield served
    finally:
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_TIMEOUT)


@dataclass
class Consoles:
    """One console process per database engine, started when first asked for and kept for the
    session (the browser tests share its data); all stopped at the session's end."""

    workdir: Path
    stack: ExitStack
    started: dict[str, ConsoleProcess] = field(default_factory=dict)

    def get(self, kind: str, db_url: Callable[[Path], str]) -> ConsoleProcess:
        """The console on engine `kind`, its database at `db_url(directory)` when new."""
        if kind not in self.started:
            directory = self.workdir / kind
            directory.mkdir()
            self.started[kind] = self.stack.enter_context(
                console_process(db_url(directory), directory)
            )
        return self.started[kind]


@pytest.fixture(scope="session")
def browser_consoles(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Consoles]:
    with ExitStack() as stack:
        yield Consoles(tmp_path_factory.mktemp("browser-consoles"), stack)


def require_chromium(environ: Mapping[str, str] = os.environ) -> None:
    """Nothing when chromium and chromedriver are installed; else the test skips, or fails
    when `environ` has CI set: CI must run the browser tests, never skip them."""
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    if not missing:
        return
    reason = f"{', '.join(missing)} absent (install.sh --test installs chromium chromium-driver)"
    if environ.get("CI"):
        pytest.fail(f"CI: {reason}")
    pytest.skip(reason)


def start_chromium(profile: Path) -> Chrome:
    """Headless Chromium under Debian's chromedriver, with a fresh profile in `profile`."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    options.add_argument("--headless=new")
    if os.geteuid() == 0:
        # Chromium refuses to run as root inside its sandbox (CI runs as root in a container).
        options.add_argument("--no-sandbox")
    # Containers give /dev/shm 64 MiB, too little for the renderer.
    options.add_argument("--disable-dev-shm-usage")
    options.add_argument(f"--window-size={WINDOW[0]},{WINDOW[1]}")
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument("--no-first-run")
    # The page's console messages (CSP violations among them), read back by Browser.errors().
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=str(CHROMEDRIVER))
    # Both paths given, selenium has nothing to find; SE_OFFLINE, should it ask selenium-manager
    # all the same, forbids any download. Set for this call only: the tests' children must not
    # inherit it.
    saved = os.environ.get("SE_OFFLINE")
    os.environ["SE_OFFLINE"] = "true"
    try:
        return webdriver.Chrome(service=service, options=options)
    finally:
        if saved is None:
            del os.environ["SE_OFFLINE"]
        else:
            os.environ["SE_OFFLINE"] = saved


@pytest.fixture(scope="session")
def chromium() -> Iterator[Chrome]:
    """One headless Chromium for the session. Without chromium or chromedriver the tests skip,
    except under CI, where that fails: CI must run them."""
    require_chromium()
    profile = Path(tempfile.mkdtemp(prefix="scan-root-chromium-"))
    try:
        driver = start_chromium(profile)
        try:
            yield driver
        finally:
            driver.quit()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


class Browser:
    """The driver pointed at one console: pages opened by path, screenshots, the console
    messages of the pages, and (for scripts' pages) a token sent with every request."""

    def __init__(self, driver: Chrome, base_url: str, label: str = "") -> None:
        self.driver = driver
        self.base_url = base_url
        self.label = label  # added to screenshots' names: the engine, say

    def open(self, path: str) -> None:
        self.driver.get(self.base_url + path)

    def path(self) -> str:
        """The current page's path and query."""
        url: str = self.driver.current_url
        return url.removeprefix(self.base_url)

    def reset(self) -> None:
        """Signed out, no token, an empty page, the log emptied."""
        self.use_token(None)
        self.driver.get("about:blank")
        # Every site's cookies: delete_all_cookies() would clear only the current page's (none
        # on about:blank), and the consoles of both engines share 127.0.0.1's cookie jar.
        self.driver.execute_cdp_cmd("Network.clearBrowserCookies", {})
        self.errors()

    def use_token(self, token: str | None) -> None:
        """Send `Authorization: Bearer TOKEN` with every request from now on (None: stop)."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.driver.execute_cdp_cmd("Network.enable", {})
        self.driver.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": headers})

    def screenshot(self, name: str) -> Path:
        """The viewport as artifacts/screenshots/NAME[-LABEL].png."""
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = (
            SCREENSHOTS / f"{name}-{self.label}.png" if self.label else SCREENSHOTS / f"{name}.png"
        )
        assert self.driver.save_screenshot(str(path)), f"no screenshot written to {path}"
        return path

    def errors(self) -> list[str]:
        """The SEVERE console messages since the last call (a CSP violation is one)."""
        # selenium leaves get_log unannotated.
        entries: list[dict[str, Any]] = self.driver.get_log("browser")  # type: ignore[no-untyped-call]
        return [str(entry["message"]) for entry in entries if entry.get("level") == "SEVERE"]
