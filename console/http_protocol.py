"""The HTTP/1.1 parser the console serves with: uvicorn's httptools protocol, its request head
bounded."""

from __future__ import annotations

import json
import logging

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["MAX_HEAD_BYTES", "BoundedHttpToolsProtocol"]

# A request line and headers together: more than any defender or browser sends, and what h11's
# max_incomplete_event_size was set to before.
MAX_HEAD_BYTES = 16 * 1024

log = logging.getLogger("console")


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """httptools (llhttp) keeps a request's URL and headers in memory until its head ends,
    however long it is. This counts the bytes that arrive while a head is incomplete and answers
    431 (and closes) once they pass MAX_HEAD_BYTES: a head costs at most that and two reads
    (the read that ends one request and begins the next is not counted).

    httptools rather than h11 because it parses in C: h11 cost about a tenth of the console's
    CPU per report (docs/performance.md, "Console ingest")."""

    # Whether the bytes arriving now belong to a request head: from the connection's start and
    # from the end of each request to the end of the next one's head.
    _in_head = True
    _head_bytes = 0

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True
        self._head_bytes = 0

    def data_received(self, data: bytes) -> None:
        if self.transport.is_closing():
            return
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        # Judged after parsing: a read that also ended the head (and began its body) is not a
        # long head. One that did not was head throughout, if it began in one.
        if self._in_head and self._head_bytes > MAX_HEAD_BYTES:
            self._refuse_head()

    def _refuse_head(self) -> None:
        if self.transport.is_closing():
            return
        log.warning("refused a request head of over %d bytes", MAX_HEAD_BYTES)
        body = json.dumps(
            {
                "error": f"request head: over the limit of {MAX_HEAD_BYTES} bytes",
                "field": "headers",
            }
        ).encode()
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
            b"content-type: application/json\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\n"
            b"connection: close\r\n\r\n" + body
        )
        self.transport.close()
