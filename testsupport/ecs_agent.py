"""A local ECS task-metadata v4 endpoint: an HTTP server on loopback that plays the agent."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# The variable the ECS agent sets in every container (scanner/targets/ecs.py reads it).
METADATA_ENV = "ECS_CONTAINER_METADATA_URI_V4"


class Agent:
    """What each path answers: (status, body bytes), or "slow" (never answers in time), or
    "trickle" (a byte at a time, never the whole)."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[int, bytes] | str] = {}
        self.release = threading.Event()
        self.requests: list[str] = []
        self.uri = ""

    def serve(self, path: str, document: Any, status: int = 200) -> None:
        body = document if isinstance(document, bytes) else json.dumps(document).encode()
        self.routes[path] = (status, body)

    def environ(self, container: str = "/v4/app") -> dict[str, str]:
        return {METADATA_ENV: self.uri + container}


@contextlib.contextmanager
def running_agent() -> Iterator[Agent]:
    """An Agent answering on a free loopback port until the block ends; always stopped."""
    state = Agent()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            state.requests.append(self.path)
            route = state.routes.get(self.path, (404, b"404 page not found\n"))
            if route == "slow":
                state.release.wait(30)  # far beyond any timeout used here
                return
            if route == "trickle":  # each byte well within a socket timeout; the whole, never
                self.send_response(200)
                self.send_header("Content-Length", "1000")
                self.end_headers()
                while not state.release.wait(0.1):
                    self.wfile.write(b" ")
                    self.wfile.flush()
                return
            assert isinstance(route, tuple)
            status, body = route
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the test's output is the test's, not the server's access log

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    state.uri = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        state.release.set()
        server.shutdown()
        server.server_close()
        thread.join(5)
