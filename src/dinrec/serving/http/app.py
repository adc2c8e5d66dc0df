"""The HTTP app: FastAPI routes over a RankingService.

    POST /v1/rank       rank raw candidate ids for a user (history + profile from the store)
    POST /v1/score      score self-contained rows (stateless)
    POST /v1/events     append behaviors to the store
    GET  /v1/model      the model being served: version, bundle metadata, features
    POST /admin/reload  load a bundle from the bundle root (default: re-read the current one)
                        and swap it in; only with an admin key, which it needs
    GET  /healthz       the process is up (no API key needed)
    GET  /readyz        a model is loaded and the store answers (no API key needed)
    GET  /metrics       Prometheus text
    GET  /docs, /redoc, /openapi.json

Well-formed POST /v1/rank requests are answered by RankRoute (rank_route.py), pure ASGI in
front of the router; everything else, and every rank request that fails validation, by the
FastAPI routes below.

Every error is JSON {"error": "<field>: <what>", "field": ..., "detail": [...]} with a 4xx
status for a bad request and 500 for a fault, never a traceback. Rank, score and events run
on a few worker threads (ServeConfig.inference_threads): the model's kernels release the GIL,
so on two cores two requests are scored at once while the event loop parses the next ones.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, PlainTextResponse, Response

from dinrec.serving.encoding import RequestError
from dinrec.serving.http.middleware import Guard
from dinrec.serving.http.rank_route import RankRoute
from dinrec.serving.http.schemas import (
    ErrorResponse,
    EventsRequest,
    EventsResponse,
    RankRequest,
    RankResponse,
    ReloadRequest,
    ReloadResponse,
    ScoreRequest,
    ScoreResponse,
)
from dinrec.serving.service import RankingService, ServeConfig
from dinrec.version import __version__

log = logging.getLogger("dinrec.serving")

OPEN_PATHS = ("/healthz", "/readyz")
PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 401, 413, 415, 422, 500)
}
# pydantic tags each branch of a union in an error's location; they are not field names.
_UNION_TAGS = ("str", "int", "float", "bool", "list", "dict", "none")


def field_path(loc: Sequence[Any]) -> str:
    """A pydantic error location as a field path: ("body", "rows", 0, "x") -> "rows[0].x"."""
    out = ""
    for part in loc:
        if part == "body" and not out:
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        elif str(part).split("[")[0].removeprefix("constrained-").removeprefix("function-") in (
            _UNION_TAGS
        ):
            continue
        else:
            out += f".{part}" if out else str(part)
    return out or "body"


def error(
    status: int, message: str, field: str | None = None, detail: Any = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    content: dict[str, Any] = {"error": message, "field": field}
    if detail is not None:
        content["detail"] = detail
    return JSONResponse(content, status_code=status, headers=headers)


def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if request.method in ("POST", "PUT", "PATCH") and not media.endswith("json"):
        # FastAPI parses a body as JSON only when the request says it is JSON.
        given = media or "no Content-Type"
        return error(415, f"body: send JSON with Content-Type: application/json (got {given})",
                     "body")
    if any(e.get("type") == "json_invalid" for e in errors):
        ctx = errors[0].get("ctx") or {}
        return error(400, f"body: malformed JSON ({ctx.get('error', 'cannot parse')})", "body")
    detail = [{"field": field_path(e.get("loc", ())), "message": str(e.get("msg", "")),
               "type": str(e.get("type", ""))} for e in errors[:20]]
    if not detail:
        return error(422, "body: invalid request", "body")
    field = detail[0]["field"]
    # A union (id = string or integer) fails once per branch: say all of them in one line.
    messages = dict.fromkeys(d["message"] for d in detail if d["field"] == field)
    return error(422, f"{field}: {'; or '.join(messages)}", field, detail)


def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own errors (no route, wrong method, a body FastAPI cannot parse) in the
    API's shape: the error names the field at fault, as every other error does."""
    assert isinstance(exc, StarletteHTTPException)
    field, message = {
        404: ("path", f"no route {request.url.path}"),
        405: ("method", f"{request.method} is not allowed on {request.url.path}"),
        400: ("body", f"cannot parse ({exc.detail})"),
    }.get(exc.status_code, ("request", str(exc.detail)))
    return error(exc.status_code, f"{field}: {message}", field,
                 headers=getattr(exc, "headers", None))


def _request_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestError)
    return error(422, str(exc), exc.field)


def _internal_error(request: Request, exc: Exception) -> Response:
    log.error("unhandled error on %s", request.url.path, exc_info=exc)
    return error(500, "internal error; the server logged it")


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """SIGHUP reloads the bundle (main thread only); the store closes at shutdown."""
    service: RankingService = app.state.service
    loop = asyncio.get_running_loop()
    hooked = False
    if threading.current_thread() is threading.main_thread() and hasattr(signal, "SIGHUP"):
        try:
            loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(_sighup(service)))
            hooked = True
        except (NotImplementedError, RuntimeError):
            pass
    try:
        yield
    finally:
        if hooked:
            loop.remove_signal_handler(signal.SIGHUP)
        service.close()


async def _sighup(service: RankingService) -> None:
    try:
        result = await anyio.to_thread.run_sync(service.reload)
        log.warning("SIGHUP: now serving model %s", result["model_version"])
    except Exception as err:  # the old model keeps serving
        log.error("SIGHUP: reload failed, still serving the old model: %s", err)


def create_app(config: ServeConfig, service: RankingService | None = None) -> FastAPI:
    """The ASGI app serving `config.bundle` (or the given service).

    Example:
        >>> app = create_app(ServeConfig("din_bundle", store="sqlite:///s.db"))  # doctest: +SKIP
    """
    service = service or RankingService(config)
    app = FastAPI(
        title="dinrec ranking service",
        version=__version__,
        description="Deep Interest Network: rank candidates by click probability.",
        lifespan=_lifespan,
    )
    app.state.service = service
    limiter = (
        anyio.CapacityLimiter(config.inference_threads) if config.inference_threads else None
    )

    async def run(work: Callable[[Any], dict[str, Any]], body: Any) -> dict[str, Any]:
        if limiter is None:
            return work(body)
        return await anyio.to_thread.run_sync(work, body, limiter=limiter)

    async def handle(work: Callable[[Any], dict[str, Any]], body: Any) -> Response:
        return JSONResponse(await run(work, body))

    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(RequestError, _request_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _internal_error)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", responses={503: {"model": ErrorResponse}})
    async def readyz() -> Response:
        """Readiness: a model is loaded and the store answers."""
        ready, details = service.readiness()
        return JSONResponse(
            {"status": "ready" if ready else "unavailable", **details},
            status_code=200 if ready else 503,
        )

    @app.get("/metrics", response_class=PlainTextResponse)
    async def metrics() -> Response:
        """Prometheus metrics: requests, errors, latency and batch-size histograms."""
        return Response(service.metrics.render(), media_type=PROMETHEUS_TEXT)

    @app.get("/v1/model", responses=ERRORS)
    async def model() -> dict[str, Any]:
        """The model being served: version, bundle metadata and features."""
        return service.model_info()

    @app.post("/v1/rank", response_model=RankResponse, responses=ERRORS)
    async def rank(body: RankRequest) -> Response:
        """Rank candidates for a user; an unknown user is a cold start (empty history)."""
        # Well-formed JSON requests are answered by RankRoute before reaching here.
        return await handle(service.rank, body)

    @app.post("/v1/score", response_model=ScoreResponse, responses=ERRORS)
    async def score(body: ScoreRequest) -> Response:
        """Score rows that carry every feature, history included."""
        return await handle(service.score, body)

    @app.post("/v1/events", response_model=EventsResponse, responses=ERRORS)
    async def events(body: EventsRequest) -> Response:
        """Append behaviors; the next rank call sees them."""
        return await handle(service.append, body)

    if config.admin_key is not None:  # no admin routes at all without their own key

        @app.post("/admin/reload", response_model=ReloadResponse, responses=ERRORS)
        async def reload(body: ReloadRequest | None = None) -> Response:
            """Load a bundle from the bundle root and swap it in atomically; requests keep
            being served meanwhile. Needs the admin key (X-Admin-Key)."""
            bundle = body.bundle if body is not None else None
            # Loading takes a while: off the event loop, so requests go on being answered.
            # A failure is a RequestError (422); the old model keeps serving.
            return JSONResponse(await anyio.to_thread.run_sync(service.reload, bundle))

    paths = [getattr(route, "path", "") for route in app.routes]
    # Added first, so it runs inside Guard (API key, body limit, metrics).
    app.add_middleware(RankRoute, service=service, run=run)
    app.add_middleware(
        Guard, metrics=service.metrics, api_key=config.api_key, admin_key=config.admin_key,
        max_body_bytes=config.max_body_bytes, open_paths=OPEN_PATHS,
        known_paths=[p for p in paths if p],
    )
    return app
