"""Monitor > Compliance > Hosts: the listing, one host and one ECS task (what runs there)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .. import detail_reads, params, reads
from .access import viewer
from .monitor_common import Listing, error_page, given, row_id, since
from .render import render

__all__ = ["HOSTS", "TASKS", "routes"]

HOSTS = "/monitor/compliance/hosts"
TASKS = "/monitor/compliance/tasks"
FILTERS = ("fargate", "hosts")


def _query(found: dict[str, str]) -> reads.HostQuery:
    key, descending = params.sort(found, reads.HostSort, "-last_seen")
    return reads.HostQuery(
        fargate=params.boolean(found, "fargate"),
        hosts=params.expression(found, "hosts"),
        sort=key,
        descending=descending,
        page=params.page(found),
    )


async def listing(request: Request) -> Response:
    who = await viewer(request)
    if isinstance(who, Response):
        return who
    try:
        found = given(request, FILTERS)
        query = _query(found)
    except params.ParamError as refused:
        return error_page(request, who, 422, refused.message)
    engine = request.app.state.settings.engine
    answer = await run_in_threadpool(reads.host_page, engine, query, since(request))
    rows = [{**host, "seen": datetime.fromisoformat(host["last_seen"])} for host in answer["hosts"]]
    kept = {name: value for name, value in found.items() if name != "page"}
    pages = Listing(
        HOSTS,
        kept,
        query.sort.value,
        query.descending,
        query.page.number,
        query.page.size,
        answer["total"],
    )
    context = {
        "viewer": who,
        "hosts": rows,
        "listing": pages,
        "filters": found,
        "filtered": any(name in found for name in FILTERS),
        "severities": ("critical", "high", "medium", "low"),
    }
    return render(request, "monitor/hosts.html", context)


def _one(
    read: Callable[[Any, int, datetime], dict[str, Any] | None], template: str, what: str
) -> Callable[[Request], Any]:
    async def endpoint(request: Request) -> Response:
        who = await viewer(request)
        if isinstance(who, Response):
            return who
        try:
            given(request, (), paging=False)
        except params.ParamError as refused:
            return error_page(request, who, 422, refused.message)
        number = row_id(request.path_params["row_id"])
        details = None
        if number is not None:
            engine = request.app.state.settings.engine
            details = await run_in_threadpool(read, engine, number, since(request))
        if details is None:
            return error_page(request, who, 404, f"No {what} with this id.")
        context = {"viewer": who, **details, "severities": ("critical", "high", "medium", "low")}
        return render(request, template, context)

    return endpoint


routes = [
    Route(HOSTS, listing, methods=["GET"]),
    Route(
        f"{HOSTS}/{{row_id}}",
        _one(detail_reads.host_details, "monitor/host.html", "host"),
        methods=["GET"],
    ),
    Route(
        f"{TASKS}/{{row_id}}",
        _one(detail_reads.task_details, "monitor/task.html", "task"),
        methods=["GET"],
    ),
]
