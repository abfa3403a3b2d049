"""The HTTP decision API: the enforcer as a sidecar beside a lab's gateway (like OPA).

``create_app(enforcer, tokens=...)`` returns a FastAPI app (OpenAPI docs at
``/docs``, the document at ``/openapi.json``); run it with uvicorn. Its answers
are the enforcer's (same object, same cache):

| endpoint | auth | answer |
|---|---|---|
| ``POST /v1/decision`` | bearer | one ``Decision`` |
| ``POST /v1/decisions`` | bearer | ``{"decisions": [...]}`` in request order, one decision time |
| ``GET /v1/status`` | bearer | readiness, age of the view, applied version per model |
| ``GET /healthz`` | none | 200 while the process serves |
| ``GET /readyz`` | none | 200 once caught up with the policy feed (and, with ``max_view_age_s``, |
| | | not behind it for longer than that), else 503 |
| ``GET /metrics`` | none | the enforcer's Prometheus metrics (metrics.py): decisions by outcome, |
| | | applied version per model, the feed's lag |

``/metrics`` carries no authentication (scrapers rarely hold a token) and names the
lab's models with their applied versions, as ``/v1/status`` does for a caller with
a token: bind the API to the gateway's host or its private network (the sidecar
binds loopback by default), never to a public interface.

Callers authenticate with a bearer token listed in the token file (one per line,
``#`` comments); tokens are kept as SHA-256 digests and compared in constant time
against every entry. Missing or wrong token: 401. Bodies over ``max_body_bytes``:
413 (checked on the declared length and on the bytes actually received). Malformed
JSON, unknown fields, bad values or a batch over ``max_batch``: 422 with the
failing paths. A decision that is "deny" is still a 200: the HTTP status says
whether the question was understood, the body says the answer.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Request, status
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from contracts.events.common import ModelId
from contracts.policy.cedar import Action
from contracts.policy.decision import Decision
from contracts.policy.principal import Principal, RequestContext
from services.labclient.enforcer import Enforcer
from services.trust.tokens import CallerTokens

MAX_BATCH = 1000
DEFAULT_MAX_BODY_BYTES = 1_000_000


class BearerTokens(CallerTokens):
    """The accepted caller tokens (services/trust/tokens.py); a decision API without
    any would refuse every caller, so it needs at least one."""

    def __init__(self, tokens: list[str]) -> None:
        if not tokens:
            raise ValueError("at least one caller token is needed")
        super().__init__(tokens)


class DecisionRequest(BaseModel):
    """One question: may this principal do this with this model?"""

    model_config = ConfigDict(extra="forbid")

    principal: Principal
    model_id: ModelId
    action: Action = Action.INVOKE
    request: RequestContext = Field(default_factory=RequestContext)


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[DecisionRequest] = Field(min_length=1, max_length=MAX_BATCH)


class BatchResponse(BaseModel):
    decisions: list[Decision]


class ModelStatus(BaseModel):
    version: int
    content_hash: str
    order_ids: list[str]
    published_at: str
    applied_at: str
    usable: bool
    problem: str | None = None


class StatusResponse(BaseModel):
    ready: bool
    caught_up_at: str | None
    view_age_s: float | None
    models: dict[str, ModelStatus]


class BodyLimit:
    """ASGI middleware: refuse bodies over ``limit`` bytes with 413.

    The declared Content-Length is checked first; a body without one (chunked) is
    read up to the limit here and handed on only when it fits, so memory per
    request stays bounded by the limit.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await _too_large(send, self.limit)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break  # the client went away; let the app see the disconnect
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await _too_large(send, self.limit)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def _too_large(send: Send, limit: int) -> None:
    body = f'{{"detail":"request body larger than {limit} bytes"}}'.encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", b"%d" % len(body)),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


_BEARER = HTTPBearer(auto_error=False)
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)]


def _caller(tokens: BearerTokens) -> Callable[[Credentials], Awaitable[None]]:
    async def caller(credentials: Credentials) -> None:
        if credentials is None or not tokens.accepts(credentials.credentials):
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "a valid bearer token is required",
                headers={"WWW-Authenticate": "Bearer"},
            )

    return caller


def create_app(
    enforcer: Enforcer,
    *,
    tokens: BearerTokens,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_batch: int = MAX_BATCH,
    max_view_age_s: float | None = None,
) -> FastAPI:
    """The decision API over ``enforcer`` (see the module doc)."""
    app = FastAPI(
        title="frontier-review decision API",
        version="1",
        description="Access decisions under the agency's published restriction policies.",
    )
    authenticated = [Depends(_caller(tokens))]

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"path": ".".join(str(p) for p in e.get("loc", ())), "message": str(e.get("msg"))}
            for e in exc.errors()[:50]
        ]
        return JSONResponse({"detail": "invalid request", "errors": errors}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == status.HTTP_400_BAD_REQUEST:
            # FastAPI's answer to a body it could not parse (e.g. JSON nested too deep)
            errors = [{"path": "body", "message": str(exc.detail)}]
            return JSONResponse({"detail": "invalid request", "errors": errors}, status_code=422)
        return await http_exception_handler(request, exc)

    # The routes are async: a decision takes microseconds (cached), far less than the
    # thread-pool hop a sync route would pay, and the enforcer never blocks.
    @app.post("/v1/decision", dependencies=authenticated)
    async def decide(body: DecisionRequest) -> Decision:
        """One decision."""
        return enforcer.check(body.principal, body.model_id, body.action, body.request)

    @app.post("/v1/decisions", dependencies=authenticated)
    async def decide_batch(body: BatchRequest) -> BatchResponse:
        """Several decisions at one decision time, in request order."""
        if len(body.items) > max_batch:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                {
                    "detail": "invalid request",
                    "errors": [{"path": "body.items", "message": f"at most {max_batch} items"}],
                },
            )
        items = [(i.principal, i.model_id, i.action, i.request) for i in body.items]
        return BatchResponse(decisions=enforcer.check_batch(items))

    @app.get("/v1/status", dependencies=authenticated)
    def status_view() -> StatusResponse:
        """Readiness, the age of the view and the applied version of every model."""
        current = enforcer.status()
        return StatusResponse(
            ready=current.ready,
            caught_up_at=current.caught_up_at.isoformat() if current.caught_up_at else None,
            view_age_s=current.view_age_s,
            models={
                model: ModelStatus(
                    version=a.version,
                    content_hash=a.content_hash,
                    order_ids=[str(o) for o in a.order_ids],
                    published_at=a.published_at.isoformat(),
                    applied_at=a.applied_at.isoformat(),
                    usable=a.usable,
                    problem=a.problem,
                )
                for model, a in current.models.items()
            },
        )

    @app.get("/healthz")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    def ready() -> JSONResponse:
        current = enforcer.status()
        if not current.ready:
            return JSONResponse({"status": "catching up with the policy feed"}, status_code=503)
        age = current.view_age_s or 0.0
        if max_view_age_s is not None and age > max_view_age_s:
            return JSONResponse(
                {"status": f"the policy feed was last read to its end {age:.0f} s ago"},
                status_code=503,
            )
        return JSONResponse({"status": "ready", "view_age_s": age})

    @app.get("/metrics", include_in_schema=False)
    def metrics(request: Request) -> Response:
        body, content_type = enforcer.metrics.exposition(request.headers.get("accept", ""))
        return Response(body, media_type=content_type)

    app.add_middleware(BodyLimit, limit=max_body_bytes)
    return app
