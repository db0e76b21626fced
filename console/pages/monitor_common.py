"""What the Monitor pages share: the deployed window, checked parameters, links that keep the
filters, the error page (a refused parameter is a 422 page naming it, never a 500)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse

from .. import params
from .access import Viewer
from .render import render

__all__ = [
    "MAX_ID",
    "Listing",
    "error_page",
    "given",
    "link",
    "row_id",
    "since",
]

MAX_ID = 2**31 - 1  # the ids are 32-bit integers on both engines
PAGING = ("sort", "page", "per_page")


def since(request: Request) -> datetime:
    """The start of the deployed window: a container seen since then is current."""
    window = request.app.state.settings.deployed_window
    result: datetime = datetime.now(UTC) - window
    return result


def given(request: Request, allowed: Iterable[str], *, paging: bool = True) -> dict[str, str]:
    """The query parameters, each known and given once (params.single); an empty value is no
    value, as a GET form sends every field, filled in or not. A page that is no listing takes
    no `sort`, `page` or `per_page` (refused, as any parameter it would ignore)."""
    found = params.single(
        request.query_params.multi_items(), (*allowed, *(PAGING if paging else ()))
    )
    return {name: value for name, value in found.items() if value != ""}


def link(path: str, kept: Mapping[str, str], **changed: str | None) -> str:
    """`path` with the kept parameters, some changed (None drops one)."""
    merged = {**kept, **changed}
    query = urlencode({name: value for name, value in merged.items() if value is not None})
    return f"{path}?{query}" if query else path


def row_id(text: str) -> int | None:
    """A row id from a URL segment; None for anything but a whole number in range."""
    if not text.isascii() or not text.isdigit() or len(text) > 10:
        return None
    number = int(text)
    return number if 1 <= number <= MAX_ID else None


@dataclass(frozen=True, slots=True)
class Listing:
    """What a listing's sort headers and pagination need."""

    path: str
    kept: dict[str, str]  # the filters and sort in the URL, without the page
    sort: str  # the key sorted on
    descending: bool
    number: int
    size: int
    total: int

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.size))

    def sort_link(self, key: str) -> str:
        """Sorting on `key`: descending first (the worst, the latest), again reverses it."""
        ascending = key == self.sort and self.descending
        return link(self.path, self.kept, sort=key if ascending else f"-{key}", page=None)

    def aria_sort(self, key: str) -> str:
        if key != self.sort:
            return "none"
        return "descending" if self.descending else "ascending"

    def page_link(self, number: int) -> str:
        return link(self.path, self.kept, page=str(number) if number > 1 else None)


def error_page(request: Request, who: Viewer, status: int, message: str) -> HTMLResponse:
    return render(
        request,
        "monitor/error.html",
        {"viewer": who, "status": status, "message": message},
        status=status,
    )
