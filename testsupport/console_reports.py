"""Reports for the console's tests and benchmarks, written by the real scanner on small roots it
is given, inside a simulated ECS task when asked (a local task-metadata v4 server)."""

from __future__ import annotations

import copy
import json
import os
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

__all__ = ["body", "ecs_task", "fresh", "make_root", "scan_report", "task_document"]

METADATA_ENV = "ECS_CONTAINER_METADATA_URI_V4"


def make_root(base: Path, *, miner: bool = True, extra: dict[str, bytes] | None = None) -> Path:
    """A small root: /tmp/xmrig (a 426 finding) and an /etc; `extra` adds files (raw paths)."""
    root = base / "root"
    (root / "etc").mkdir(parents=True, exist_ok=True)
    (root / "tmp").mkdir(exist_ok=True)
    (root / "etc" / "hostname").write_text("box\n")
    if miner:
        miner_path = root / "tmp" / "xmrig"
        miner_path.write_bytes(b"\x7fELF xmrig --donate-level 1 stratum+tcp://pool.example\n")
        miner_path.chmod(0o755)
    for name, data in (extra or {}).items():
        path = os.path.join(os.fsencode(root), name.encode() if isinstance(name, str) else name)
        with open(path, "wb") as handle:
            handle.write(data)
        os.chmod(path, 0o755)
    return root


def scan_report(root: Path, *, scan_id: str | None = None) -> dict[str, Any]:
    """`scan-root ROOT --format json`'s report (the same writer), with a `scan_id` added when
    the scanner does not set one yet."""
    from scanner import scan_root
    from scanner.output.json_format import render

    document: dict[str, Any] = json.loads(render(scan_root(root)))
    if scan_id is not None or "scan_id" not in document:
        document["scan_id"] = scan_id or str(uuid.uuid4())
    return document


def task_document(
    task_id: str,
    *,
    family: str,
    launch_type: str = "FARGATE",
    containers: list[dict[str, Any]],
    cluster: str = "default",
) -> dict[str, Any]:
    """The documented `${ECS_CONTAINER_METADATA_URI_V4}/task` shape."""
    return {
        "Cluster": f"arn:aws:ecs:us-west-2:111122223333:cluster/{cluster}",
        "TaskARN": f"arn:aws:ecs:us-west-2:111122223333:task/{cluster}/{task_id}",
        "Family": family,
        "Revision": "3",
        "DesiredStatus": "RUNNING",
        "KnownStatus": "RUNNING",
        "AvailabilityZone": "us-west-2d",
        "LaunchType": launch_type,
        "Containers": containers,
    }


def container_document(task_id: str, name: str, image: str, image_id: str) -> dict[str, Any]:
    return {
        "DockerId": f"{task_id}-{abs(hash(name)) % 10**10:010d}",
        "Name": name,
        "Image": image,
        "ImageID": image_id,
        "DesiredStatus": "RUNNING",
        "KnownStatus": "RUNNING",
        "Type": "NORMAL",
    }


@contextmanager
def ecs_task(task: dict[str, Any], container: dict[str, Any]) -> Iterator[None]:
    """The scanner, within this block, runs inside `task` as `container` (os.environ set)."""
    routes = {
        "/v4/c/task": json.dumps(task).encode(),
        "/v4/c": json.dumps(container).encode(),
    }

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = routes.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    saved = os.environ.get(METADATA_ENV)
    os.environ[METADATA_ENV] = f"http://127.0.0.1:{server.server_address[1]}/v4/c"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(METADATA_ENV, None)
        else:
            os.environ[METADATA_ENV] = saved
        server.shutdown()
        server.server_close()
        thread.join(10)


def fresh(report: dict[str, Any]) -> dict[str, Any]:
    """`report` as a new scan: a copy under a scan_id of its own."""
    document = copy.deepcopy(report)
    document["scan_id"] = str(uuid.uuid4())
    return document


def body(report: dict[str, Any]) -> bytes:
    """A report as the request body a defender posts."""
    return json.dumps(report).encode()
