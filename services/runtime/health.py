"""Health, readiness and metrics: the endpoints every service serves the same way.

The embedded HTTP server (http.py) answers these paths itself, before the
service's own routes (``Service.http(app)``), so no service repeats them:

| path | answer |
|---|---|
| ``GET /healthz`` | 200 ``{"status": "ok"}`` while the process serves (liveness) |
| ``GET /readyz`` | 200 when ready, else 503; the body names every check and what is wrong |
| ``GET /metrics`` | the service's Prometheus registry (metrics.py), text format |

Ready means: the service finished starting (migrations, pool, relay, consumers),
its database answers, every consumer joined its group (an assignment of its own,
possibly empty when the group's other replicas hold every partition), and the
outbox has an elected relay, in this process or in another replica (a session
holds the election lock). It costs one short statement on a connection of its own
(``database.Probe``, never a handler's), bounded by ``readiness_timeout_s``.

The server starts before the database is opened, so an orchestrator sees a
starting (or stuck: database unreachable) service as alive but not ready; the
service's own routes answer 503 until it has started. The endpoints carry no
authentication: the server binds ``http_host`` (loopback by default); in a
cluster, expose the port to the cluster's network only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from faststream.asgi import AsgiResponse
from faststream.asgi.response import JSONResponse

from services.runtime.database import Probe
from services.runtime.http import ASGIApp, Receive, Scope, Send
from services.runtime.relay import leader_elected

if TYPE_CHECKING:
    from asyncpg import Connection, Record

    from services.runtime.service import Service

log = logging.getLogger(__name__)

OK = "ok"
OPERATIONS_PATHS = ("/healthz", "/readyz", "/metrics")
MAX_PROBLEM_CHARS = 300


class Phase(StrEnum):
    """Where a service is in its lifecycle (``Service.phase``)."""

    CREATED = "created"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"


@dataclass(frozen=True)
class Readiness:
    checks: dict[str, str]  # check -> "ok", or what is wrong

    @property
    def ready(self) -> bool:
        return all(answer == OK for answer in self.checks.values())

    def to_json(self) -> dict[str, object]:
        return {"status": "ready" if self.ready else "not ready", "checks": self.checks}


class Health:
    """Readiness checks and the operations endpoints of one service."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self._probe = Probe(service.settings, "readiness")

    async def readiness(self) -> Readiness:
        service = self.service
        checks: dict[str, str] = {}
        phase = service.phase
        checks["service"] = OK if phase is Phase.RUNNING else str(phase)

        async def elected(conn: Connection[Record]) -> bool:
            return await leader_elected(conn, service.schema)

        leading_here = service.relay is not None and service.relay.leading.is_set()
        try:
            elsewhere = await self._probe.run(elected, limit_s=service.settings.readiness_timeout_s)
            checks["database"] = OK
            checks["relay"] = (
                OK
                if leading_here or elsewhere
                else f"no relay of the {service.schema} outbox is elected (none running?)"
            )
        except Exception as exc:
            checks["database"] = _problem("unreachable", exc)
            checks["relay"] = OK if leading_here else "unknown: the database is unreachable"
        for consumer in service.consumers:
            name = f"consumer {consumer.group}"
            if consumer.assignment is None:
                checks[name] = f"has not joined its group (topic {consumer.topic})"
            elif not consumer.running:
                checks[name] = "stopped"
            else:
                checks[name] = OK
        return Readiness(checks)

    def app(self, routes: ASGIApp | None) -> ASGIApp:
        """The operations endpoints, then ``routes`` (the service's own) for other paths."""
        service = self.service

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                if routes is not None:
                    await routes(scope, receive, send)
                return
            path: str = scope["path"]
            if path in OPERATIONS_PATHS:
                response = await self._operations(scope, path)
            elif routes is None:
                response = JSONResponse(
                    {"error": "not found", "endpoints": list(OPERATIONS_PATHS)}, 404
                )
            elif service.phase is not Phase.RUNNING:
                response = JSONResponse({"error": f"{service.name} is {service.phase}"}, 503)
            else:
                await routes(scope, receive, send)
                return
            await response(scope, receive, send)

        return app

    async def close(self) -> None:
        await self._probe.close()

    async def _operations(self, scope: Scope, path: str) -> AsgiResponse:
        if scope["method"] not in ("GET", "HEAD"):
            return JSONResponse({"error": "method not allowed"}, 405, {"Allow": "GET, HEAD"})
        if path == "/healthz":
            return JSONResponse({"status": OK})
        if path == "/readyz":
            readiness = await self.readiness()
            return JSONResponse(readiness.to_json(), 200 if readiness.ready else 503)
        headers = dict(scope.get("headers") or [])
        accept = headers.get(b"accept", b"").decode("latin-1")
        body, content_type = await self.service.metrics.exposition(accept)
        return AsgiResponse(body, 200, {"Content-Type": content_type})


def _problem(what: str, exc: BaseException) -> str:
    detail = str(exc) or type(exc).__name__
    return f"{what}: {type(exc).__name__}: {detail}"[:MAX_PROBLEM_CHARS]
