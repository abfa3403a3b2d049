"""The embedded HTTP server: uvicorn inside the service process, for its routes
(status, decision API, console) beside health, readiness and metrics.

It runs as a supervised background job of the service; the service's FastStream
app keeps owning the signals, so uvicorn's own signal handling is turned off.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from typing import Any

import uvicorn

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

BIND_RETRY_S = 30.0


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its own signal handling: the service's app owns the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve(
    app: ASGIApp, host: str, port: int, *, bound: Callable[[int], None] | None = None
) -> None:
    """Serve until cancelled; a busy port is logged and retried (it never kills the service).

    ``bound`` is told the port actually bound (port 0 picks a free one).
    """
    while True:
        try:
            sock = socket.create_server((host, port), reuse_port=False)
        except OSError as exc:
            log.error("http: cannot bind %s:%d (%s); retrying", host, port, exc)
            await asyncio.sleep(BIND_RETRY_S)
            continue
        break
    config = uvicorn.Config(app, lifespan="off", access_log=False, log_level="warning")
    server = _EmbeddedServer(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    actual = sock.getsockname()[1]
    if bound is not None:
        bound(actual)
    log.info("http: serving on http://%s:%d", host, actual)
    try:
        await asyncio.shield(task)
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await task
        sock.close()
