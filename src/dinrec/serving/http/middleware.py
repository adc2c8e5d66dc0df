"""The server's guard: one pure ASGI middleware that times and counts every request, checks
the API key, and caps the request body.

Pure ASGI rather than Starlette's BaseHTTPMiddleware, which costs a task and a stream per
request; this adds a few microseconds.
"""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Awaitable, Callable, Collection, MutableMapping
from typing import Any

from dinrec.serving.http.prometheus import ServingMetrics

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

API_KEY_HEADER = b"x-api-key"
ADMIN_KEY_HEADER = b"x-admin-key"
ADMIN_PREFIX = "/admin/"
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


async def send_json(
    send: Send, status: int, content: dict[str, Any],
    headers: Collection[tuple[bytes, bytes]] = (),
) -> None:
    """Send a complete JSON response."""
    body = json.dumps(content, separators=(",", ":")).encode()
    await send({
        "type": "http.response.start", "status": status,
        "headers": [(b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()), *headers],
    })
    await send({"type": "http.response.body", "body": body})


class Guard:
    """Metrics, API key and body size for every HTTP request.

    Args:
        app: the ASGI app to guard.
        metrics: where requests are counted and timed.
        api_key: required in the X-API-Key header (or Authorization: Bearer) when set, on
            every path but the open ones and /admin/*.
        admin_key: required in the X-Admin-Key header on /admin/* (the api key does not
            open them); without one they are refused.
        max_body_bytes: larger bodies get 413 before the app parses anything.
        open_paths: paths served without the API key (health checks).
        known_paths: paths used as the metrics label; any other path is "other".
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: ServingMetrics,
        api_key: str | None,
        admin_key: str | None = None,
        max_body_bytes: int,
        open_paths: Collection[str],
        known_paths: Collection[str],
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.api_key = api_key.encode() if api_key else None
        self.admin_key = admin_key.encode() if admin_key else None
        self.max_body_bytes = max_body_bytes
        self.open_paths = frozenset(open_paths)
        self.known_paths = frozenset(known_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what an exception escaping the app becomes

        async def observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        path = scope["path"]
        try:
            if path.startswith(ADMIN_PREFIX):
                # Without an admin key there are no admin routes: the router says 404.
                if self.admin_key is not None and not self._admin(scope):
                    await _unauthorized(observed, "X-Admin-Key", "admin key")
                    return
            elif path not in self.open_paths and not self._authorized(scope):
                await _unauthorized(observed, "X-API-Key", "API key")
                return
            if scope.get("method") in BODY_METHODS:
                replay = await self._read_body(scope, receive, observed)
                if replay is None:
                    return
                receive = replay
            await self.app(scope, receive, observed)
        finally:
            label = path if path in self.known_paths else "other"
            self.metrics.request(
                scope.get("method", ""), label, status, time.perf_counter() - started
            )

    def _authorized(self, scope: Scope) -> bool:
        if self.api_key is None:
            return True
        given = b""
        for name, value in scope.get("headers", ()):
            if name == API_KEY_HEADER:
                given = value
            elif name == b"authorization" and value[:7].lower() == b"bearer ":
                given = given or value[7:].strip()
        return hmac.compare_digest(given, self.api_key)

    def _admin(self, scope: Scope) -> bool:
        assert self.admin_key is not None
        given = next((v for n, v in scope.get("headers", ()) if n == ADMIN_KEY_HEADER), b"")
        return hmac.compare_digest(given, self.admin_key)

    async def _read_body(self, scope: Scope, receive: Receive, send: Send) -> Receive | None:
        """Read the body within the limit and hand back a `receive` that replays it; or send
        413 / 400 and return None."""
        limit = self.max_body_bytes
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await send_json(send, 400, {"error": "Content-Length: not a number",
                                                "field": "Content-Length"})
                    return None
                if declared > limit:
                    await _too_large(send, limit)
                    return None
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None  # the client left; nobody to answer
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await _too_large(send, limit)
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return replaying_receive(b"".join(chunks), receive)


async def _unauthorized(send: Send, header: str, what: str) -> None:
    await send_json(
        send, 401,
        {"error": f"{header}: missing or wrong {what}: send it in the {header} header",
         "field": header},
        [(b"www-authenticate", f'ApiKey header="{header}"'.encode())],
    )


async def _too_large(send: Send, limit: int) -> None:
    await send_json(
        send, 413, {"error": f"body: larger than {limit} bytes", "field": "body"}
    )


def replaying_receive(body: bytes, receive: Receive) -> Receive:
    """A `receive` that hands the already-read body to the app once, then defers to the
    original (which, after the body, waits for the disconnect as usual)."""
    delivered = False

    async def replay() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
