"""Shared plumbing: settings, the service lifecycle, consuming with exactly-once
effects, the outbox and its relay, durable timers, dead letters, telemetry and
the embedded HTTP server. Every service imports it; it imports no service.

What a service uses is re-exported here::

    from services.runtime import Context, Service, TimerContext

The re-exports load on first use (PEP 562), so that a process outside the agency
(the lab client) can import ``services.runtime.kafka`` — how to connect to the
broker — without loading the database and service machinery.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from services.runtime.clock import SYSTEM_CLOCK, Clock, SystemClock
    from services.runtime.context import (
        Context,
        InvalidContext,
        Record,
        Timer,
        TimerContext,
        TxContext,
    )
    from services.runtime.errors import TRANSIENT_ERRORS, PermanentError, is_transient
    from services.runtime.service import Service
    from services.runtime.settings import RuntimeSettings

_EXPORTS = {
    "SYSTEM_CLOCK": "clock",
    "Clock": "clock",
    "SystemClock": "clock",
    "Context": "context",
    "InvalidContext": "context",
    "Record": "context",
    "Timer": "context",
    "TimerContext": "context",
    "TxContext": "context",
    "TRANSIENT_ERRORS": "errors",
    "PermanentError": "errors",
    "is_transient": "errors",
    "Service": "service",
    "RuntimeSettings": "settings",
}

__all__ = [
    "SYSTEM_CLOCK",
    "TRANSIENT_ERRORS",
    "Clock",
    "Context",
    "InvalidContext",
    "PermanentError",
    "Record",
    "RuntimeSettings",
    "Service",
    "SystemClock",
    "Timer",
    "TimerContext",
    "TxContext",
    "is_transient",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later lookups skip this function
    return value
