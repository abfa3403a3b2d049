"""The status HTTP endpoint, served by uvicorn inside the intake process.

    GET /submissions/<submission id>  -> 200 state + history (JSON), 404 unknown, 400 bad id
    GET /healthz                      -> 200 {"status": "ok"}

FastStream's AsgiFastStream would replace the service's FastStream app (and
routes by exact path only), so a small ASGI app runs next to it as a
supervised background job instead; the service keeps owning the signals.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from typing import TYPE_CHECKING, Any
from uuid import UUID

import uvicorn
from faststream.asgi import AsgiResponse
from faststream.asgi.response import JSONResponse

from services.intake import repository

if TYPE_CHECKING:
    from services.runtime.database import Pool

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_SUBMISSION = re.compile(r"^/submissions/([^/]+)/?$")
BIND_RETRY_S = 30.0


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
    if path == "/healthz":
        return JSONResponse({"status": "ok"})
    match = _SUBMISSION.match(path)
    if match is None:
        return JSONResponse({"error": "not found; try /submissions/<submission id>"}, 404)
    try:
        submission_id = UUID(match.group(1))
    except ValueError:
        return JSONResponse({"error": f"{match.group(1)!r} is not a submission id (UUID)"}, 400)
    async with pool().acquire() as conn:
        status = await repository.fetch_status(conn, submission_id)
    if status is None:
        return JSONResponse({"error": f"intake knows no submission {submission_id}"}, 404)
    return JSONResponse(status.to_json())


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its own signal handling: the service's FastStream app owns it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve(app: ASGIApp, host: str, port: int) -> None:
    """Serve until cancelled; a busy port is logged and retried (never kills the service)."""
    while True:
        try:
            sock = socket.create_server((host, port), reuse_port=False)
        except OSError as exc:
            log.error("status endpoint: cannot bind %s:%d (%s); retrying", host, port, exc)
            await asyncio.sleep(BIND_RETRY_S)
            continue
        break
    config = uvicorn.Config(app, lifespan="off", access_log=False, log_level="warning")
    server = _EmbeddedServer(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    log.info("status endpoint on http://%s:%d/submissions/<id>", host, sock.getsockname()[1])
    try:
        await asyncio.shield(task)
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await task
        sock.close()
