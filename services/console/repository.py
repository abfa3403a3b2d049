"""All of the console's SQL that writes (reads for pages and CLIs: queries.py).

A row's state is its model type as JSON (``doc``), loaded ``FOR UPDATE`` by the one
consumer that writes its table (migrations/0001_console.sql), folded by
``projection`` and saved whole; insert-only facts are written ``ON CONFLICT DO
NOTHING``, so a redelivery changes nothing. Every function takes the caller's
connection (the consumed record's transaction).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID

from pydantic import TypeAdapter

from services.console.model import (
    Checkpoint,
    DeadLetter,
    Escalation,
    EvaluationFacts,
    Finding,
    IntakeFacts,
    Lift,
    Order,
    Overdue,
    PolicyVersion,
    Refusal,
    RiskFacts,
    TimelineEntry,
)

if TYPE_CHECKING:
    from services.runtime.database import Connection

T = TypeVar("T")

_ADAPTERS: dict[type[Any], TypeAdapter[Any]] = {}


def adapter(kind: type[T]) -> TypeAdapter[T]:
    found = _ADAPTERS.get(kind)
    if found is None:
        found = _ADAPTERS[kind] = TypeAdapter(kind)
    return found


def dump(value: object) -> str:
    """``value`` as JSON PostgreSQL stores: no NUL character (jsonb refuses \\u0000; the
    text is for display, so it is shown escaped)."""
    text = adapter(type(value)).dump_json(value).decode()
    return text.replace("\\u0000", "\\\\u0000")


def load(kind: type[T], doc: str) -> T:
    return adapter(kind).validate_json(doc)


# --- the tables ----------------------------------------------------------------------
#
# Each model type has one table: the columns the pages filter on, read off the value
# by name, and the whole value as ``doc``. A folded state is upserted whole under its
# key; a fact is inserted once (a redelivery changes nothing).


@dataclass(frozen=True)
class _Table:
    name: str
    columns: tuple[str, ...]  # indexed columns beside doc, read off the value by name
    key: str | None = None  # a folded state's primary key; None for an insert-only fact


_TABLES: dict[type[Any], _Table] = {
    # folded states, one writer per table (the consumer of its topic)
    IntakeFacts: _Table(
        "intake_facts", ("lab_id", "model_id", "accepted_at", "deadline"), key="submission_id"
    ),
    EvaluationFacts: _Table("evaluation_facts", ("model_id",), key="submission_id"),
    RiskFacts: _Table("risk_facts", ("model_id", "overall_level"), key="submission_id"),
    Escalation: _Table(
        "escalations", ("submission_id", "status", "decide_by"), key="escalation_id"
    ),
    Order: _Table("orders", ("submission_id", "model_id"), key="order_id"),
    # insert-only facts
    Finding: _Table("findings", ("finding_id", "submission_id", "suite_id")),
    Lift: _Table("lifts", ("order_id", "submission_id", "model_id")),
    Overdue: _Table("overdue", ("model_id", "version")),
    PolicyVersion: _Table("policies", ("model_id", "version", "published_at")),
    Checkpoint: _Table("checkpoints", ("log_id", "size")),
    DeadLetter: _Table(
        "dead_letters",
        (
            "dlq_topic",
            "partition",
            "offset",
            "origin_topic",
            "reason",
            "submission_id",
            "model_id",
            "failed_at",
        ),
    ),
    TimelineEntry: _Table("timeline", ("topic", "event_id", "submission_id", "model_id", "at")),
    Refusal: _Table("refusals", ("kind", "event_id", "reason", "submission_id", "model_id", "at")),
}


async def locked(conn: Connection, kind: type[T], key: UUID) -> T | None:
    """The folded state of ``kind`` under ``key``, locked for this transaction."""
    table = _TABLES[kind]
    doc = await conn.fetchval(
        f"SELECT doc::text FROM {table.name} WHERE {table.key} = $1 FOR UPDATE", key
    )
    return None if doc is None else load(kind, doc)


async def save(conn: Connection, state: object, now: datetime) -> None:
    """Upsert a folded state whole (its columns, its doc, when it changed)."""
    table = _TABLES[type(state)]
    assert table.key is not None, f"{type(state).__name__} is an insert-only fact"
    columns = (table.key, *table.columns)
    changed = ", ".join(
        f'"{name}" = EXCLUDED."{name}"' for name in (*table.columns, "doc", "updated_at")
    )
    await conn.execute(
        f"""INSERT INTO {table.name} ({_names(columns)}, doc, updated_at)
            VALUES ({_params(len(columns))}, ${len(columns) + 1}::jsonb, ${len(columns) + 2})
            ON CONFLICT ("{table.key}") DO UPDATE SET {changed}""",
        *_values(state, columns),
        dump(state),
        now,
    )


async def add(conn: Connection, fact: object) -> None:
    """Insert a fact once: the same fact delivered again changes nothing."""
    table = _TABLES[type(fact)]
    assert table.key is None, f"{type(fact).__name__} is a folded state"
    await conn.execute(
        f"""INSERT INTO {table.name} ({_names(table.columns)}, doc)
            VALUES ({_params(len(table.columns))}, ${len(table.columns) + 1}::jsonb)
            ON CONFLICT DO NOTHING""",
        *_values(fact, table.columns),
        dump(fact),
    )


def _names(columns: tuple[str, ...]) -> str:
    return ", ".join(f'"{name}"' for name in columns)  # "partition" and "offset" are keywords


def _params(count: int) -> str:
    return ", ".join(f"${index}" for index in range(1, count + 1))


def _values(value: object, columns: tuple[str, ...]) -> list[object]:
    return [_stored(getattr(value, name)) for name in columns]


def _stored(value: object) -> object:
    """A column's value as PostgreSQL stores it: enums by value; text without NUL
    (a text column cannot hold it; DLQ headers and sender-claimed ids can be anything)."""
    if isinstance(value, Enum):
        value = value.value
    return value.replace("\x00", "\\u0000") if isinstance(value, str) else value
