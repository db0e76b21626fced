"""The headers that keep a browser from framing, sniffing or caching what the console answers."""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["ERROR_HEADERS", "PAGE_HEADERS", "STATIC_HEADERS"]

# Pages are never framed (clickjacking), never cached by a shared cache, and load nothing
# from elsewhere.
PAGE_HEADERS: Mapping[str, str] = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

# An error answered in JSON (an unknown path, a method a route lacks, a refused token) reaches
# browsers too: it loads nothing, is framed nowhere, is read as JSON only and is not kept.
ERROR_HEADERS: Mapping[str, str] = {
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}

# A stylesheet is used as one only when served as one (never sniffed from its bytes).
STATIC_HEADERS: Mapping[str, str] = {"X-Content-Type-Options": "nosniff"}
