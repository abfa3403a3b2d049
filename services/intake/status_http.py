"""The status HTTP endpoint, served by the runtime's embedded server (services/runtime/http.py),
beside the runtime's /healthz, /readyz and /metrics (services/runtime/health.py).

GET /submissions/<submission id>  -> 200 state + history (JSON), 404 unknown, 400 bad id
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING
from uuid import UUID

from faststream.asgi import AsgiResponse
from faststream.asgi.response import JSONResponse

from services.intake import queries
from services.runtime.http import ASGIApp, Receive, Scope, Send

if TYPE_CHECKING:
    from services.runtime.database import Pool

_SUBMISSION = re.compile(r"^/submissions/([^/]+)/?$")


def status_app(pool: Callable[[], Pool]) -> ASGIApp:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        response = await _respond(scope, pool)
        await response(scope, receive, send)

    return app


async def _respond(scope: Scope, pool: Callable[[], Pool]) -> AsgiResponse:
    if scope["method"] not in ("GET", "HEAD"):
        return JSONResponse({"error": "method not allowed"}, 405, {"Allow": "GET, HEAD"})
    path: str = scope["path"]
    match = _SUBMISSION.match(path)
    if match is None:
        return JSONResponse({"error": "not found; try /submissions/<submission id>"}, 404)
    try:
        submission_id = UUID(match.group(1))
    except ValueError:
        return JSONResponse({"error": f"{match.group(1)!r} is not a submission id (UUID)"}, 400)
    async with pool().acquire() as conn:
        status = await queries.fetch_status(conn, submission_id)
    if status is None:
        return JSONResponse({"error": f"intake knows no submission {submission_id}"}, 404)
    return JSONResponse(status.to_json())
