"""The decision API as a process beside a lab's gateway: enforcer + feed reader + uvicorn.

``python -m services.labclient.cli decision-api --tokens callers.txt --port 8181``
runs it: the feed reader follows the policy feed into the enforcer, uvicorn
serves ``decision_api.create_app`` over the same enforcer. ``/readyz`` turns
200 once the feed was read to its end offsets; SIGTERM/SIGINT stop the server
(uvicorn's signal handling) and then the reader.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from services.labclient.decision_api import (
    DEFAULT_MAX_BODY_BYTES,
    MAX_BATCH,
    BearerTokens,
    create_app,
)
from services.labclient.enforcer import Enforcer
from services.labclient.feed import PolicyFeed
from services.labclient.settings import LabSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SidecarConfig:
    lab_id: str
    settings: LabSettings
    tokens_file: Path
    host: str = "127.0.0.1"
    port: int = 8181
    max_view_age_s: float | None = 30.0
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_batch: int = MAX_BATCH


def _reader_ended(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        # The enforcer keeps its last view; /readyz turns 503 once it is older than
        # max_view_age_s (or stays 503 if it never caught up): the gateway's operator sees it.
        log.error("the policy feed reader stopped", exc_info=task.exception())


async def serve(config: SidecarConfig) -> None:
    enforcer = Enforcer(lab_id=config.lab_id)
    app = create_app(
        enforcer,
        tokens=BearerTokens.from_file(config.tokens_file),
        max_body_bytes=config.max_body_bytes,
        max_batch=config.max_batch,
        max_view_age_s=config.max_view_age_s,
    )
    feed = PolicyFeed(enforcer, config.settings)

    async def follow() -> None:
        await feed.start()
        log.info("following %s from its beginning", feed.topic)
        await feed.run()

    reader = asyncio.create_task(follow(), name="policy-feed")
    reader.add_done_callback(_reader_ended)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=config.host,
            port=config.port,
            lifespan="off",
            access_log=False,
            log_level="warning",
        )
    )
    try:
        await server.serve()  # serves while the feed catches up: /readyz says 503 meanwhile
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await reader
        await feed.consumer.stop()
