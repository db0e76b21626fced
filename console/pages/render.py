"""Templates rendered to HTML responses: Jinja2 with autoescaping on, always."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse

from ..headers import PAGE_HEADERS

__all__ = ["STATIC", "TEMPLATES", "render"]

HERE = Path(__file__).resolve().parent.parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"

# Autoescape every template whatever its name: image names, paths, task families and script
# output come from reports, which come from people we do not trust.
_environment = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def render(
    request: Request, template: str, context: dict[str, Any], *, status: int = 200
) -> HTMLResponse:
    """`template` rendered with `context` (and the request, as `request`)."""
    html = _environment.get_template(template).render(request=request, **context)
    return HTMLResponse(html, status_code=status, headers=PAGE_HEADERS)
