"""Monitor pages: server time of `GET /monitor/compliance/images/deployed` (default, Fargate
only, a search) with 10,000 deployed images, on SQLite and PostgreSQL.

How to run it and what it measures: bench/README.md, "Console pages".
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "testsupport"))  # the loader the console's tests use
if str(REPO) not in sys.path:
    sys.path.append(str(REPO))

import httpx
import postgres
from console_load import load_fleet

from console.accounts import create_token
from console.app import Settings, create_app
from console.database import engine_for, upgrade
from console.kinds import Scope

PAGE = "/monitor/compliance/images/deployed"
# load_fleet leaves one image in five undeployed: 12,500 images give 10,000 deployed ones.
IMAGES = 12_500
CASES = {
    "default": {},
    "fargate": {"fargate": "true"},
    "search": {"search": "fargate-task-1 OR fargate-task-2*"},
    "sort by hosts": {"sort": "-hosts"},
    "last page": {"page": "200"},
    "fargate+search+sort": {
        "fargate": "true",
        "search": "registry.example/team-7*",
        "sort": "-critical",
    },
}

Scope_ = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class Timed:
    """The app, timed from the request's arrival to its last body byte (no network, no client)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.seconds: list[float] = []

    async def __call__(self, scope: Scope_, receive: Receive, send: Send) -> None:
        start = time.perf_counter()
        await self.app(scope, receive, send)
        self.seconds.append(time.perf_counter() - start)


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


async def _measure(app: Timed, token: str, runs: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    transport = httpx.ASGITransport(app=app)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        for name, params in CASES.items():
            answer = await client.get(PAGE, params=params, headers=headers)  # warm
            assert answer.status_code == 200, answer.text[:500]
            rows = answer.text.count('<tr class="image-row"')
            app.seconds.clear()
            for _ in range(runs):
                answer = await client.get(PAGE, params=params, headers=headers)
                assert answer.status_code == 200
            ms = [value * 1000 for value in app.seconds]
            results[name] = {
                "params": params,
                "rows": rows,
                "p50_ms": round(statistics.median(ms), 1),
                "p95_ms": round(_percentile(ms, 0.95), 1),
                "max_ms": round(max(ms), 1),
            }
    return results


def run(
    engine_kind: str, work: Path, runs: int, cluster: Any, images: int = IMAGES
) -> dict[str, Any]:
    url = (
        f"sqlite:///{work / 'pages.db'}"
        if engine_kind == "sqlite"
        else cluster.url(cluster.new_database())
    )
    engine = engine_for(url)
    upgrade(engine)
    started = time.perf_counter()
    fleet = load_fleet(engine, images=images, findings=images * 40, now=datetime.now(UTC))
    loaded = time.perf_counter() - started
    token = create_token(engine, "bench-reader", [Scope.READ])
    app = Timed(create_app(Settings(engine=engine)))
    try:
        cases = asyncio.run(_measure(app, token, runs))
    finally:
        engine.dispose()
    return {
        "engine": engine_kind,
        "images": fleet.images,
        "deployed_images": fleet.deployed_images,
        "findings": fleet.findings,
        "load_seconds": round(loaded, 1),
        "runs": runs,
        "load_before": os.getloadavg(),
        "cases": cases,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", default="sqlite,postgresql", help="sqlite,postgresql")
    parser.add_argument("--runs", type=int, default=100, help="requests per case")
    parser.add_argument("--images", type=int, default=IMAGES, help="images (4 in 5 deployed)")
    parser.add_argument("--json", type=Path, default=HERE / "results" / "console_pages.json")
    args = parser.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory(prefix="console-pages-") as directory:
        for kind in args.engines.split(","):
            cluster = None
            if kind == "postgresql":
                if postgres.find_bin() is None:
                    print("PostgreSQL is not installed: skipped", file=sys.stderr)
                    continue
                cluster = postgres.start_cluster()
            try:
                results.append(run(kind, Path(directory), args.runs, cluster, args.images))
            finally:
                if cluster is not None:
                    cluster.stop()
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "",
    )
    document = {
        "machine": {"cpu": model, "cores": os.cpu_count(), "kernel": platform.release()},
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "results": results,
    }
    args.json.write_text(json.dumps(document, indent=2) + "\n")
    print("| engine | case | rows | p50 ms | p95 ms | max ms |")
    print("|---|---|---|---|---|---|")
    for result in results:
        for name, case in result["cases"].items():
            print(
                f"| {result['engine']} | {name} | {case['rows']} | {case['p50_ms']} "
                f"| {case['p95_ms']} | {case['max_ms']} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
