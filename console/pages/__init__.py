"""The console's web pages (server-rendered with Jinja2; each works without JavaScript)."""

from __future__ import annotations

from starlette.routing import BaseRoute, Mount

from . import defend, login, monitor_hosts, monitor_images
from .render import STATIC
from .static import GuardedStaticFiles

__all__ = ["routes"]

routes: list[BaseRoute] = [
    Mount("/static", app=GuardedStaticFiles(directory=STATIC), name="static"),
    *login.routes,
    *defend.routes,
    *monitor_images.routes,
    *monitor_hosts.routes,
]
