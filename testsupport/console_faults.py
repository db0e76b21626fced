"""The console's app with a pause injected, for the tests that kill or race serving processes:
run as `uvicorn --factory console_faults:app`, it stops before the first SQL statement that
starts with $SCANROOT_PAUSE_AT, says so by creating `$SCANROOT_PAUSE_DIR/<pid>.reached`, and
goes on once `$SCANROOT_PAUSE_DIR/release` exists (or after 60 s). The app is otherwise the
real one, configured as `serve` configures it."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from sqlalchemy import event
from starlette.applications import Starlette

from console.app import app_from_environment

PAUSE_LIMIT = 60.0


def app() -> Starlette:
    application = app_from_environment()
    prefix = os.environ["SCANROOT_PAUSE_AT"]
    folder = Path(os.environ["SCANROOT_PAUSE_DIR"])
    paused = False

    @event.listens_for(application.state.settings.engine, "before_cursor_execute")
    def _pause(connection: Any, cursor: Any, statement: str, *args: Any) -> None:
        nonlocal paused
        if paused or not statement.startswith(prefix):
            return
        paused = True
        (folder / f"{os.getpid()}.reached").touch()
        deadline = time.monotonic() + PAUSE_LIMIT
        while not (folder / "release").exists() and time.monotonic() < deadline:
            time.sleep(0.01)

    return application
