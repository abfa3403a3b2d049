"""What can go wrong while applying a record, and whose fault it is.

A ``PermanentError`` is the record's fault: retrying can't help, so it is
dead-lettered at once with its reason. A *transient* error is the
infrastructure's fault (the database restarting, a connection cut, a
concurrency conflict): the record is not to blame, it is tried again until it
applies, and nothing is acknowledged meanwhile.
"""

from __future__ import annotations

import asyncpg


class PermanentError(Exception):
    """Raised by a handler when retrying can't help: dead-letter the record at once."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


# One set for the whole runtime (consumers, relay, timers, workers). Class 08
# (connection exceptions) and class 57 (operator intervention: admin shutdown,
# crash shutdown, cannot connect now) are what a restarting or failing-over
# database raises; the client-side errors come from a connection that died
# under us. Deadlocks and serialization failures succeed when tried again.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,  # includes ConnectionError and TimeoutError
    asyncpg.PostgresConnectionError,
    asyncpg.OperatorInterventionError,  # AdminShutdown, CrashShutdown, CannotConnectNow
    asyncpg.InterfaceError,  # e.g. "connection is closed" after the server went away
    # "cannot switch to state 15; another operation is in progress": asyncpg resetting,
    # on release to the pool, a connection the server dropped mid-query (seen when the
    # server crashed under a relay's claim, tests/runtime/test_database_restart.py).
    # A state of the client's broken connection, never the record's fault.
    asyncpg.InternalClientError,
    asyncpg.TooManyConnectionsError,
    asyncpg.DeadlockDetectedError,
    asyncpg.SerializationError,
)


def is_transient(error: BaseException) -> bool:
    """True for an error of the infrastructure, not of the record being applied."""
    return isinstance(error, TRANSIENT_ERRORS)
