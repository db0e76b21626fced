"""Monitor > Compliance > Images > Deployed, and one image's details (tabs)."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .. import detail_reads, params, reads
from .access import viewer
from .monitor_common import Listing, error_page, given, link, row_id, since
from .render import render

__all__ = ["DEPLOYED", "IMAGES", "Tab", "routes"]

IMAGES = "/monitor/compliance/images"
DEPLOYED = f"{IMAGES}/deployed"
FILTERS = ("fargate", "hosts", "search")
SEVERITIES = ("critical", "high", "medium", "low")


class Tab(enum.StrEnum):
    VULNERABILITIES = "vulnerabilities"
    COMPLIANCE = "compliance"
    FARGATE_TASKS = "fargate-tasks"
    HOSTS = "hosts"


def _query(found: dict[str, str]) -> reads.ImageQuery:
    key, descending = params.sort(found, reads.ImageSort, "-last_scanned")
    return reads.ImageQuery(
        deployed=True,  # this page lists deployed images only, whatever the URL says
        fargate=params.boolean(found, "fargate"),
        hosts=params.expression(found, "hosts"),
        search=params.expression(found, "search"),
        sort=key,
        descending=descending,
        page=params.page(found),
    )


def _when(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _highest(compliance: dict[str, int] | None) -> str | None:
    """The most severe level with a finding: the cell the eye should go to first."""
    for severity in SEVERITIES:
        if compliance and compliance[severity]:
            return severity
    return None


async def deployed(request: Request) -> Response:
    who = await viewer(request)
    if isinstance(who, Response):
        return who
    try:
        found = given(request, FILTERS)
        query = _query(found)
    except params.ParamError as refused:
        return error_page(request, who, 422, refused.message)
    engine = request.app.state.settings.engine
    answer = await run_in_threadpool(reads.image_page, engine, query, since(request))
    filtered = any(name in found for name in FILTERS)
    empty_store = False
    if answer["total"] == 0 and not filtered:
        empty_store = await run_in_threadpool(detail_reads.store_is_empty, engine)
    failed = await run_in_threadpool(
        detail_reads.failed_checks, engine, [image["id"] for image in answer["images"]]
    )
    rows = [
        {
            **image,
            "failed": failed[image["id"]],
            "highest": _highest(image["compliance"]),
            "scanned_at": _when(image["last_scanned"]),
        }
        for image in answer["images"]
    ]
    kept = {name: value for name, value in found.items() if name != "page"}
    listing = Listing(
        DEPLOYED,
        kept,
        query.sort.value,
        query.descending,
        query.page.number,
        query.page.size,
        answer["total"],
    )
    context = {
        "viewer": who,
        "images": rows,
        "listing": listing,
        "filters": found,
        "filtered": filtered,
        "empty_store": empty_store,
        "severities": SEVERITIES,
        "clear_link": DEPLOYED,
    }
    return render(request, "monitor/deployed.html", context)


async def image(request: Request) -> Response:
    who = await viewer(request)
    if isinstance(who, Response):
        return who
    try:
        found = given(request, ("tab",), paging=False)
        tab = Tab(found.get("tab", Tab.COMPLIANCE.value))
    except params.ParamError as refused:
        return error_page(request, who, 422, refused.message)
    except ValueError:
        choices = ", ".join(tab.value for tab in Tab)
        return error_page(request, who, 422, f"tab: must be one of {choices}")
    image_id = row_id(request.path_params["image_id"])
    engine = request.app.state.settings.engine
    details = None
    if image_id is not None:
        details = await run_in_threadpool(reads.image_details, engine, image_id, since(request))
    if details is None or image_id is None:
        return error_page(request, who, 404, "No image with this id.")
    problems: list[dict[str, Any]] = []
    if tab is Tab.COMPLIANCE:
        problems = await run_in_threadpool(detail_reads.image_problems, engine, image_id)
    here = f"{IMAGES}/{image_id}"
    context = {
        "viewer": who,
        "details": details,
        "image": details["image"],
        "tab": tab.value,
        "tabs": {t.value: link(here, {}, tab=t.value) for t in Tab},
        "problems": problems,
        "highest": _highest(details["image"]["compliance"]),
        "severities": SEVERITIES,
        "to_time": _when,
    }
    return render(request, "monitor/image.html", context)


routes = [
    Route(DEPLOYED, deployed, methods=["GET"]),
    Route(f"{IMAGES}/{{image_id}}", image, methods=["GET"]),
]
