"""The agency API: impact previews and the current policies, for reviewers' tools.

Served by the service's embedded HTTP server (``FR_HTTP_PORT``); OpenAPI docs
at ``/docs``. Callers authenticate with a bearer token from
``FR_ACCESS_API_TOKENS_FILE`` (one per line, ``#`` comments; kept as SHA-256
digests, compared in constant time against every entry); without that file
every route answers 401. ``/healthz``, ``/readyz`` and ``/metrics`` are the
runtime's, served beside these routes (services/runtime/health.py).

| endpoint | answer |
|---|---|
| ``POST /v1/impact-preview?format=csv\\|jsonl&at=&action=`` | the preview report (JSON) |
| ``GET /v1/models/{model_id}/policy`` | the model's current published version |

The preview body is the proposed order (a RestrictionOrdered's data) as **one
JSON line**, followed by the sample exactly as the CLI reads it (CSV with its
header, or JSON lines). It is spooled to a temporary file as it arrives
(``access_preview_max_bytes`` at most, else 413), then evaluated in a worker
thread, one preview at a time (429 while one runs): a preview is CPU work that
must not stall the service's consumers for long, nor pile up.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import AwareDatetime, ValidationError

from contracts.events.risk import RestrictionOrdered
from contracts.policy.cedar import Action
from services.access import queries
from services.access.country_groups import CountryGroups
from services.access.preview import MalformedSample, preview_impact, report_json
from services.access.sample import SampleError, SampleFormat
from services.access.settings import AccessSettings
from services.runtime.clock import Clock
from services.trust.refusal import Refusal
from services.trust.tokens import CallerTokens

if TYPE_CHECKING:
    from services.runtime.database import Pool

SPOOL_IN_MEMORY = 8 * 1024 * 1024
MAX_ORDER_LINE = 2 * 1024 * 1024


_BEARER = HTTPBearer(auto_error=False)
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)]


def agency_api(
    settings: AccessSettings, pool: Callable[[], Pool], groups: CountryGroups, clock: Clock
) -> FastAPI:
    tokens = CallerTokens.from_file(settings.access_api_tokens_file)
    busy = asyncio.Lock()
    app = FastAPI(
        title="frontier-review access: agency API",
        version="1",
        description="Impact previews of proposed restriction orders; current model policies.",
    )

    def caller(credentials: Credentials) -> None:
        if credentials is None or not tokens.accepts(credentials.credentials):
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "a valid bearer token is required",
                headers={"WWW-Authenticate": "Bearer"},
            )

    authenticated = [Depends(caller)]

    @app.get("/v1/models/{model_id:path}/policy", dependencies=authenticated)
    async def current_policy(model_id: str) -> dict[str, Any]:
        """The model's current published policy version (AccessPolicyPublished's fields)."""
        async with pool().acquire() as conn:
            found = await queries.policy(conn, model_id)
        if found is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no policy for {model_id}")
        document: dict[str, Any] = json.loads(found.published().model_dump_json())
        return document | {"problems": list(found.problems)}

    @app.post(
        "/v1/impact-preview",
        dependencies=authenticated,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "text/plain": {
                        "schema": {"type": "string"},
                        "example": '{"order_id": "...", "model_id": "lab/m@1", ...}\n'
                        "principal_id,citizenships\np-1,CN\n",
                    }
                },
                "description": "The proposed order as one JSON line, then the sample.",
            }
        },
    )
    async def impact_preview(
        request: Request,
        fmt: Annotated[SampleFormat, Query(alias="format")] = SampleFormat.CSV,
        at: Annotated[AwareDatetime | None, Query(description="Decision time; now.")] = None,
        action: Action = Action.INVOKE,
    ) -> dict[str, Any]:
        """Whom the proposed order would deny, against the model's current policy."""
        if busy.locked():
            raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS, "a preview is running")
        async with busy:
            spool = await _spool(request, settings.access_preview_max_bytes)
            try:
                proposed = _proposal(spool.readline(MAX_ORDER_LINE + 1))
                async with pool().acquire() as conn:
                    basis = await queries.preview_basis(conn, proposed.model_id)
                when = (at or clock.now()).astimezone(UTC)
                report = await asyncio.to_thread(
                    preview_impact,
                    proposed,
                    basis.in_force,
                    _lines(spool),
                    fmt=fmt,
                    groups=groups,
                    at=when,
                    action=action,
                    max_changed=settings.access_preview_max_changed,
                    published=basis.published,
                )
            except (SampleError, MalformedSample) as exc:
                raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
            finally:
                spool.close()
        if isinstance(report, Refusal):
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                {"reason": report.reason.value, "detail": report.detail},
            )
        return report_json(report) | {"generated_at": datetime.now(UTC).isoformat()}

    return app


async def _spool(request: Request, limit: int) -> IO[bytes]:
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, f"larger than {limit} bytes")
    spool: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)  # noqa: SIM115
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, f"larger than {limit} bytes")
            spool.write(chunk)
    except BaseException:
        spool.close()
        raise
    spool.seek(0)
    return spool


def _proposal(line: bytes) -> RestrictionOrdered:
    if len(line) > MAX_ORDER_LINE:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, "the order line is longer than 2 MiB"
        )
    try:
        return RestrictionOrdered.model_validate_json(line)
    except ValidationError as exc:
        errors = [
            {"path": ".".join(str(p) for p in e["loc"]), "message": e["msg"]}
            for e in exc.errors()[:50]
        ]
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            {"detail": "the first line is not a RestrictionOrdered", "errors": errors},
        ) from None


def _lines(spool: IO[bytes]) -> Iterator[bytes]:
    yield from spool
