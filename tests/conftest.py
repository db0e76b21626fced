"""Shared fixtures: both native implementations, the ../shared fixtures, and CI's no-skip rule."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

import _native

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("SCANNER_SHARED", REPO.parent / "shared"))
IMPLEMENTATIONS = _native.implementations()
# The console's fixtures (testsupport/console_fixtures.py): each console test on both engines;
# the browser's (testsupport/browser.py): a real console process and a headless Chromium.
pytest_plugins = ["console_fixtures", "browser"]


@pytest.fixture(
    params=sorted(IMPLEMENTATIONS), ids=lambda name: {"cython": "c", "python": "py"}[name]
)
def impl(request: pytest.FixtureRequest) -> tuple[ModuleType, ModuleType]:
    """(walker, hasher) of each loaded implementation: every test using it runs on both."""
    return IMPLEMENTATIONS[request.param]


@pytest.fixture(
    params=sorted(IMPLEMENTATIONS), ids=lambda name: {"cython": "c", "python": "py"}[name]
)
def scan_impl(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Whole scans on each implementation: the selector's walk, hasher and matcher swapped."""
    walker, hasher = IMPLEMENTATIONS[request.param]
    monkeypatch.setattr(_native, "walk", walker.walk)
    monkeypatch.setattr(_native, "hash_files", hasher.hash_files)
    monkeypatch.setattr(_native, "Matcher", _native.matchers()[request.param])
    yield request.param


@pytest.fixture(scope="session")
def shared_fixtures() -> Path:
    """`../shared/fixtures/pkgdb`, read in place; skipped (and so failed in CI) when absent."""
    path = SHARED / "fixtures" / "pkgdb"
    if not path.is_dir():
        pytest.skip(f"../shared is absent ({path} not found): real package-DB fixtures unavailable")
    return path


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--regenerate-golden",
        action="store_true",
        help="rewrite tests/golden/ from this build's reports instead of comparing (its README)",
    )


_skipped: list[str] = []


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests that compare the Cython core with its twin need the core.

    With SCANNER_NO_EXTENSIONS=1 that is by design, so they are deselected; if the core merely
    failed to load, they skip — and a skip fails CI.
    """
    if "cython" in IMPLEMENTATIONS:
        return
    reason = "the Cython core is not built"
    if os.environ.get("SCANNER_NO_EXTENSIONS") == "1":
        kept = [item for item in items if item.get_closest_marker("native_only") is None]
        config.hook.pytest_deselected(items=[item for item in items if item not in kept])
        items[:] = kept
        return
    for item in items:
        if item.get_closest_marker("native_only") is not None:
            item.add_marker(pytest.mark.skip(reason=reason))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # CI must not go green by skipping: a skip there means a missing fixture or tool.
    if os.environ.get("CI") == "true" and _skipped and session.exitstatus == 0:
        session.exitstatus = 1


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if os.environ.get("CI") == "true" and _skipped:
        terminalreporter.write_line(
            f"CI=true: {len(_skipped)} skipped test(s) count as failures: "
            + ", ".join(_skipped[:10]),
            red=True,
        )
