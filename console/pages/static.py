"""The pages' stylesheets, served with the headers that keep them from being sniffed."""

from __future__ import annotations

import os

from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from ..headers import STATIC_HEADERS

__all__ = ["GuardedStaticFiles"]


class GuardedStaticFiles(StaticFiles):
    """StaticFiles whose files carry STATIC_HEADERS (its 404s are the app's JSON errors)."""

    def file_response(
        self,
        full_path: str | os.PathLike[str],
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers.update(STATIC_HEADERS)
        return response
