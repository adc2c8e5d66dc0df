"""POST /v1/rank's well-formed requests, answered in pure ASGI in front of FastAPI.

A rank call is the hot path, and FastAPI's per-request machinery (routing over every route,
dependency solving, json.loads then validation, exception middleware, json.dumps of the
response) cost more CPU than reading the store and encoding the inputs. Here a request that
says it is JSON is parsed and validated in one step (pydantic's own JSON parser, the same
RankRequest model), scored, and its response written with orjson.

Anything else is handed to FastAPI unchanged: a body that fails to parse or validate goes to
the FastAPI route, which answers with exactly the error it always gave (the 400 / 415 / 422
naming the field), so error responses have a single source. The FastAPI route also still
documents the endpoint (OpenAPI). The Guard middleware (API key, body limit, metrics) runs
before this, as for every other route.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import ValidationError

from dinrec.serving.encoding import RequestError
from dinrec.serving.http.middleware import ASGIApp, Receive, Scope, Send, replaying_receive
from dinrec.serving.http.schemas import RankRequest
from dinrec.serving.service import RankingService

_fast_dumps: Callable[[Any], bytes] | None
try:  # ~10x faster than json.dumps on a 100-item response (serve extra)
    from orjson import dumps as _fast_dumps
except ImportError:  # pragma: no cover - only without orjson installed
    _fast_dumps = None

log = logging.getLogger("dinrec.serving")

RANK_PATH = "/v1/rank"
JSON_TYPE = b"application/json"
# Runs a service call (inline or on a worker thread) and returns its result.
Runner = Callable[[Callable[[Any], dict[str, Any]], Any], Awaitable[dict[str, Any]]]


def dumps(content: Any) -> bytes:
    """Compact UTF-8 JSON, as Starlette's JSONResponse writes it."""
    if _fast_dumps is not None:
        try:
            return _fast_dumps(content)
        except TypeError:  # e.g. an id beyond 64 bits, which orjson refuses
            pass
    return json.dumps(
        content, ensure_ascii=False, allow_nan=False, separators=(",", ":")
    ).encode()


def _is_json(scope: Scope) -> bool:
    """Content-Type is application/json (parameters such as charset allowed)."""
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            return bool(value.split(b";", 1)[0].strip().lower() == JSON_TYPE)
    return False


class RankRoute:
    """Answers well-formed POST /v1/rank requests; passes everything else to `app`.

    Args:
        app: the FastAPI app (its exception middleware and router).
        service: the RankingService.
        run: how a service call runs (inline, or on the inference threads).
    """

    def __init__(self, app: ASGIApp, *, service: RankingService, run: Runner) -> None:
        self.app = app
        self.service = service
        self.run = run

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not (
            scope["type"] == "http" and scope["path"] == RANK_PATH
            and scope.get("method") == "POST" and _is_json(scope)
        ):
            await self.app(scope, receive, send)
            return
        body, replay = await _body(receive)
        if body is None:
            return  # the client left
        try:
            request = RankRequest.model_validate_json(body)
        except ValidationError:
            await self.app(scope, replay, send)  # FastAPI words the error, as ever
            return
        try:
            result = await self.run(self.service.rank, request)
        except RequestError as err:
            await _send(send, 422, dumps({"error": str(err), "field": err.field}))
            return
        except Exception as err:  # what the app's 500 handler does for the FastAPI route
            log.error("unhandled error on %s", RANK_PATH, exc_info=err)
            await _send(send, 500, dumps({"error": "internal error; the server logged it",
                                          "field": None}))
            return
        await _send(send, 200, dumps(result))


async def _send(send: Send, status: int, content: bytes) -> None:
    await send({
        "type": "http.response.start", "status": status,
        "headers": [(b"content-length", str(len(content)).encode()),
                    (b"content-type", JSON_TYPE)],
    })
    await send({"type": "http.response.body", "body": content})


async def _body(receive: Receive) -> tuple[bytes | None, Receive]:
    """The whole request body (None if the client left), and a `receive` replaying it."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None, receive
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    return body, replaying_receive(body, receive)
