"""Scraping a service's operations endpoints, and cutting its database off.

``scrape`` reads ``/metrics`` over HTTP and parses it with prometheus-client's
own parser (never regexes); ``TcpProxy`` stands between a service and
PostgreSQL so a test can make the database unreachable and bring it back
without touching the shared server.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

PREFIX = "frontier_review_"


@dataclass(frozen=True)
class Scrape:
    """One scrape's samples."""

    samples: list[Sample]

    def matching(self, name: str, **labels: str) -> list[Sample]:
        return [
            s
            for s in self.samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        ]

    def value(self, name: str, **labels: str) -> float | None:
        """The value of the one sample ``name`` with these labels (None: no such sample)."""
        found = self.matching(name, **labels)
        if len(found) > 1:
            raise AssertionError(f"{len(found)} samples of {name} match {labels}: {found}")
        return found[0].value if found else None

    def total(self, name: str, **labels: str) -> float:
        """The sum over every sample ``name`` with these labels (0 when none)."""
        return sum(s.value for s in self.matching(name, **labels))


async def scrape(port: int, host: str = "127.0.0.1") -> Scrape:
    async with httpx.AsyncClient(base_url=f"http://{host}:{port}", timeout=10) as client:
        answer = await client.get("/metrics")
    answer.raise_for_status()
    families = text_string_to_metric_families(answer.text)
    return Scrape([sample for family in families for sample in family.samples])


async def scrape_until(
    port: int, condition: Callable[[Scrape], bool], *, timeout: float = 30.0, what: str
) -> Scrape:
    """Scrape until ``condition`` holds for a scrape (query-backed values refresh every
    ``metrics_refresh_s``), and return that scrape; fail naming ``what`` at ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last: Scrape | None = None
    while loop.time() < deadline:
        last = await scrape(port)
        if condition(last):
            return last
        await asyncio.sleep(0.1)
    shown = [] if last is None else [s for s in last.samples if s.name.startswith(PREFIX)]
    raise AssertionError(f"timed out after {timeout} s waiting for {what}; last scrape: {shown}")


async def get_json(port: int, path: str, host: str = "127.0.0.1") -> tuple[int, Any]:
    async with httpx.AsyncClient(base_url=f"http://{host}:{port}", timeout=10) as client:
        answer = await client.get(path)
    return answer.status_code, answer.json()


class TcpProxy:
    """Forwards ``127.0.0.1:<port>`` to ``target``; ``cut()`` drops every connection and
    refuses new ones (an unreachable server, as after a network partition) until
    ``restore()``."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._pumps: set[asyncio.Task[None]] = set()

    async def start(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._connected, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def restore(self) -> None:
        await self.start()

    async def close(self) -> None:
        await self.cut()
        for pump in list(self._pumps):
            pump.cancel()
        await asyncio.gather(*self._pumps, return_exceptions=True)

    async def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            pump = asyncio.create_task(self._pump(source, sink))
            self._pumps.add(pump)
            pump.add_done_callback(self._pumps.discard)

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while chunk := await source.read(65536):
                sink.write(chunk)
                await sink.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self._writers.discard(sink)
            with contextlib.suppress(Exception):
                sink.transport.abort()
