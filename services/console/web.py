"""The web console: read-only, server-rendered pages (Jinja2, no JavaScript build).

| page | what |
|---|---|
| ``GET /`` | submissions: state, window countdown, level, evaluation, quorum, |
| | orders, compliance, stuck stages |
| ``GET /submissions/{id}`` | one submission: its facts, stuck stages, suites, findings, levels |
| | and rationale, escalations with quorum progress, orders, policy versions |
| | and compliance, its dead letters, its timeline |
| ``GET /submissions/{id}/trace`` | its trace as a waterfall (the local trace file) |
| ``GET /escalations`` | escalations awaiting the reviewers' decision, most urgent first |
| ``GET /dead-letters`` | DLQ contents by topic and reason, latest records |
| ``GET /healthz`` | 200 while the process serves (no authentication) |

Everything shown came from outside at some point (lab, model and reviewer names,
free text, DLQ bytes): templates escape every value (autoescape on, nothing marked
safe), and the Content-Security-Policy lets only this response's own inline script
run. GET and HEAD only (anything else: 405); every page but /healthz needs a token
(services/trust/tokens.py: bearer, or a browser's basic-auth prompt with the token
as password; 401 otherwise). The server binds to ``FR_HTTP_HOST`` (127.0.0.1
unless set otherwise).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

from fastapi import FastAPI, HTTPException, Request, Response, status
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from services.console import queries
from services.console.model import Lift, Order, SubmissionView, SuiteStage
from services.console.projection import order_status
from services.console.settings import ConsoleSettings
from services.console.stuck import stuck_stages
from services.console.text import left, milliseconds, when
from services.console.traces import read_trace
from services.runtime.clock import Clock
from services.trust.tokens import CallerTokens

if TYPE_CHECKING:
    from services.runtime.database import Pool

TEMPLATES = Path(__file__).parent / "templates"
READ_METHODS = frozenset({"GET", "HEAD"})
OPEN_PATHS = frozenset({"/healthz"})
CHALLENGE = 'Basic realm="frontier-review console", charset="UTF-8"'


def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=True,  # every template, whatever its name
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = when
    env.filters["left"] = left
    env.filters["ms"] = milliseconds
    return env


def _security_headers(response: Response, nonce: str | None = None) -> None:
    script = f"'nonce-{nonce}'" if nonce else "'none'"
    response.headers["Content-Security-Policy"] = (
        f"default-src 'none'; script-src {script}; style-src 'unsafe-inline'; "
        "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"


def console_app(settings: ConsoleSettings, pool: Callable[[], Pool], clock: Clock) -> FastAPI:
    tokens = CallerTokens.from_file(settings.console_tokens_file)
    templates = environment()
    app = FastAPI(
        title="frontier-review console",
        docs_url=None,  # no unauthenticated documentation routes
        redoc_url=None,
        openapi_url=None,
    )

    @app.middleware("http")
    async def guard(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response: Response
        if request.method not in READ_METHODS:
            response = PlainTextResponse(
                "the console is read-only: GET and HEAD only\n",
                status.HTTP_405_METHOD_NOT_ALLOWED,
                headers={"Allow": "GET, HEAD"},
            )
        elif request.url.path not in OPEN_PATHS and not tokens.admits(
            request.headers.get("authorization")
        ):
            response = PlainTextResponse(
                "a valid token is required (bearer, or basic auth with the token as password)\n",
                status.HTTP_401_UNAUTHORIZED,
                headers={"WWW-Authenticate": CHALLENGE},
            )
        else:
            response = await call_next(request)
        if "Content-Security-Policy" not in response.headers:
            _security_headers(response)
        return response

    def page(name: str, **values: Any) -> HTMLResponse:
        nonce = secrets.token_urlsafe(16)
        now = values.pop("now")
        body = templates.get_template(name).render(nonce=nonce, now=now, **values)
        response = HTMLResponse(body)
        _security_headers(response, nonce)
        return response

    def submission_id(text: str) -> UUID:
        try:
            return UUID(text)
        except ValueError:
            raise HTTPException(
                status.HTTP_404_NOT_FOUND, "no such submission (not a UUID)"
            ) from None

    async def one(sid: UUID, now: datetime) -> SubmissionView:
        async with pool().acquire() as conn:
            view = await queries.submission(conn, sid, now=now, grace=settings.compliance_grace)
        if view is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "the console knows no such submission")
        return view

    @app.api_route("/healthz", methods=["GET", "HEAD"])
    async def health() -> JSONResponse:
        return JSONResponse({"status": "ok"})

    @app.api_route("/", methods=["GET", "HEAD"])
    async def submissions() -> HTMLResponse:
        now = clock.now()
        async with pool().acquire() as conn:
            views = await queries.submissions(
                conn, now=now, grace=settings.compliance_grace, limit=settings.console_page_size
            )
            checkpoints = await queries.checkpoints(conn)
            refusals = await queries.refusals(conn, limit=20)
        rows = [
            {
                "view": v,
                "stuck": stuck_stages(v, now, settings.thresholds),
                "suites_ended": sum(s.stage is not SuiteStage.PLANNED for s in v.evaluation.suites),
                "orders_in_force": sum(
                    order_status(o, lift, now) == "in force" for o, lift in v.orders
                ),
            }
            for v in views
        ]
        return page(
            "submissions.html",
            now=now,
            views=views,
            rows=rows,
            checkpoints=checkpoints,
            refusals=refusals,
        )

    @app.api_route("/submissions/{sid}", methods=["GET", "HEAD"])
    async def submission(sid: str) -> HTMLResponse:
        now = clock.now()
        view = await one(submission_id(sid), now)
        async with pool().acquire() as conn:
            timeline = await queries.timeline(conn, view.submission_id, view.model_id)
            findings = await queries.findings(conn, view.submission_id)
            letters = await queries.dead_letters(
                conn, submission_id=view.submission_id, model_id=view.model_id, limit=100
            )

        def status_of(order: Order, lift: Lift | None) -> str:
            return order_status(order, lift, now)

        return page(
            "submission.html",
            now=now,
            v=view,
            stuck=stuck_stages(view, now, settings.thresholds),
            timeline=timeline,
            findings=findings,
            letters=letters,
            order_status=status_of,
        )

    @app.api_route("/submissions/{sid}/trace", methods=["GET", "HEAD"])
    async def trace(sid: str) -> HTMLResponse:
        now = clock.now()
        view = await one(submission_id(sid), now)
        if view.trace_id is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no trace is known for it yet")
        read = await asyncio.to_thread(
            read_trace,
            settings.console_traces_file,
            view.trace_id,
            hide=tuple(settings.console_hide_services),
        )
        return page(
            "trace.html",
            now=now,
            v=view,
            trace_id=view.trace_id,
            wf=read.waterfall,
            total=max(read.waterfall.total_ms, 0.001),
            dropped=read.dropped,
            file_found=read.file_found,
            traces_file=str(settings.console_traces_file),
        )

    @app.api_route("/escalations", methods=["GET", "HEAD"])
    async def escalations() -> HTMLResponse:
        now = clock.now()
        async with pool().acquire() as conn:
            awaiting = await queries.awaiting_escalations(conn, limit=settings.console_page_size)
        return page("escalations.html", now=now, escalations=awaiting)

    @app.api_route("/dead-letters", methods=["GET", "HEAD"])
    async def dead_letters() -> HTMLResponse:
        now = clock.now()
        async with pool().acquire() as conn:
            groups = await queries.dead_letter_groups(conn)
            letters = await queries.dead_letters(conn, limit=settings.console_page_size)
        return page("dead_letters.html", now=now, groups=groups, letters=letters)

    return app
