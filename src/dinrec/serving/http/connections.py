"""Connection limits for uvicorn: header / body timeouts and a cap on open connections.

uvicorn closes a kept-alive connection that stays idle after a response
(`timeout_keep_alive`), but nothing else: a connection that never sends a request, or sends
half its headers or half its body and stops, stays open for ever (measured: 300 idle plus
300 half-sent sockets all still open after 40 s), and enough of them exhaust file
descriptors. uvicorn has no option for either, so this is its httptools protocol with timers:

- header timeout: from the connection's start, or a request's first byte, to the end of its
  headers;
- body timeout: from the end of the headers to the end of the body;
- max connections: a connection beyond the cap is answered 503 and closed at once.

A timed-out connection gets a 408 (when no response has started) and is closed. Error
bodies written here (408, 503, and the 400 for a request httptools cannot parse, e.g. a
Content-Length that is not a number) have the API's JSON shape {"error", "field"}.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

STATUS_LINES = {400: b"HTTP/1.1 400 Bad Request", 408: b"HTTP/1.1 408 Request Timeout",
                503: b"HTTP/1.1 503 Service Unavailable"}


@dataclass(frozen=True)
class ConnectionLimits:
    """Per-connection limits of one server (seconds; connections).

    Args:
        header_timeout: most seconds from a connection's start (or a request's first byte)
            to the end of the request's headers.
        body_timeout: most seconds from the end of the headers to the end of the body.
        max_connections: most connections open at once; more are refused with a 503.
    """

    header_timeout: float = 10.0
    body_timeout: float = 30.0
    max_connections: int = 1000

    def __post_init__(self) -> None:
        for name in ("header_timeout", "body_timeout", "max_connections"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")


def error_response(status: int, message: str, field: str) -> bytes:
    """A complete HTTP/1.1 response with a JSON error body, closing the connection."""
    body = json.dumps({"error": f"{field}: {message}", "field": field}).encode()
    return b"".join([
        STATUS_LINES[status], b"\r\ncontent-type: application/json\r\ncontent-length: ",
        str(len(body)).encode(), b"\r\nconnection: close\r\n\r\n", body,
    ])


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the ConnectionLimits above (set `limits` on a
    subclass: protocol_class builds one)."""

    limits = ConnectionLimits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            self._refuse(503, f"more than {self.limits.max_connections} open connections; "
                         "retry later", "connection")
            return
        self._arm(self.limits.header_timeout, "headers")

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._deadline is None:  # a request's first byte on a kept-alive connection
            self._arm(self.limits.header_timeout, "headers")

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()
        if not self.transport.is_closing():
            self._arm(self.limits.body_timeout, "body")

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        self._refuse(400, f"not a valid HTTP request ({msg.rstrip('.')})", "request")

    def _arm(self, seconds: float, part: str) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._expired, seconds, part)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self, seconds: float, part: str) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and self.cycle.response_started:
            self.transport.close()  # a response is on its way: nothing more can be said
            return
        self._refuse(408, f"the request's {part} did not arrive within {seconds:g} s", part)

    def _refuse(self, status: int, message: str, field: str) -> None:
        self._disarm()
        self.transport.write(error_response(status, message, field))
        self.transport.close()


def protocol_class(limits: ConnectionLimits) -> type[LimitedHttpToolsProtocol]:
    """The protocol class to give uvicorn as `http=`, with these limits."""
    return type("LimitedHttpToolsProtocol", (LimitedHttpToolsProtocol,), {"limits": limits})
