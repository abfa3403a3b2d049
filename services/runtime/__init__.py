"""Shared plumbing: settings, the service lifecycle, consuming with exactly-once
effects, the outbox and its relay, durable timers, dead letters, telemetry and
the embedded HTTP server. Every service imports it; it imports no service.

What a service uses is re-exported here::

    from services.runtime import Context, Service, TimerContext
"""

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
