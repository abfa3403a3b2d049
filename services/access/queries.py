"""Read queries for the CLI and the agency API (write SQL is in repository.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from contracts.events.risk import RestrictionOrdered
from services.access import repository
from services.access.model import ModelPolicy
from services.access.policies import enforced_orders

if TYPE_CHECKING:
    from services.runtime.database import Connection


@dataclass(frozen=True)
class PreviewBasis:
    """What an impact preview compares a proposal with: the model as access enforces it."""

    published: ModelPolicy | None  # the current version (None: never restricted)
    in_force: list[RestrictionOrdered]  # its orders, windows as compiled


async def preview_basis(conn: Connection, model_id: str) -> PreviewBasis:
    records = await repository.model_orders(conn, model_id)
    published = await repository.current_policy(conn, model_id)
    return PreviewBasis(published, enforced_orders(model_id, records.values()))


@dataclass(frozen=True)
class ModelSummary:
    model_id: str
    lab_id: str
    version: int
    order_ids: list[str]
    published_at: datetime
    acknowledge_by: datetime
    acknowledged: bool  # this version, or a later one, acknowledged in time
    overdue: bool
    problems: list[str]


async def models(conn: Connection, lab_id: str | None = None) -> list[ModelSummary]:
    """Every restricted model's current version, with its compliance state."""
    rows = await conn.fetch(
        """SELECT p.model_id, p.lab_id, p.version, p.order_ids, p.published_at,
                  p.acknowledge_by, p.problems,
                  EXISTS (SELECT 1 FROM acknowledgements a
                          WHERE a.model_id = p.model_id AND a.version >= p.version
                            AND a.received_at <= p.acknowledge_by) AS acknowledged,
                  EXISTS (SELECT 1 FROM compliance_overdue o
                          WHERE o.model_id = p.model_id AND o.version = p.version) AS overdue
           FROM model_heads h
           JOIN model_policies p ON p.model_id = h.model_id AND p.version = h.version
           WHERE $1::text IS NULL OR p.lab_id = $1
           ORDER BY p.model_id""",
        lab_id,
    )
    return [
        ModelSummary(
            model_id=r["model_id"],
            lab_id=r["lab_id"],
            version=r["version"],
            order_ids=[str(o) for o in r["order_ids"]],
            published_at=r["published_at"],
            acknowledge_by=r["acknowledge_by"],
            acknowledged=r["acknowledged"],
            overdue=r["overdue"],
            problems=list(r["problems"]),
        )
        for r in rows
    ]


async def policy(conn: Connection, model_id: str, version: int | None = None) -> ModelPolicy | None:
    """A version of the model's policy (default: the current one)."""
    if version is None:
        return await repository.current_policy(conn, model_id)
    return await repository.find_policy(conn, model_id, version)


# For the metrics (app.py).
async def policy_versions_published(conn: Connection) -> int:
    """Every version of every model's policy ever published (a total the database keeps)."""
    return int(await conn.fetchval("SELECT count(*) FROM model_policies"))


async def compliance_overdue_now(conn: Connection) -> int:
    """Models whose current version went past its deadline unacknowledged, and still is."""
    return int(
        await conn.fetchval(
            """SELECT count(*) FROM model_heads h
               JOIN compliance_overdue o ON o.model_id = h.model_id AND o.version = h.version
               WHERE NOT EXISTS (SELECT 1 FROM acknowledgements a
                                 WHERE a.model_id = h.model_id AND a.version >= h.version)"""
        )
    )


async def models_failing_closed(conn: Connection) -> int:
    """Models whose current version compiled an order fail closed (``problems``)."""
    return int(
        await conn.fetchval(
            """SELECT count(*) FROM model_heads h
               JOIN model_policies p ON p.model_id = h.model_id AND p.version = h.version
               WHERE p.problems <> '{}'"""
        )
    )


# Enforcement points are named by the labs (signed, at most 100 per acknowledgement):
# a bound on the series, so a lab that invents names cannot flood the scraper.
MAX_ENFORCEMENT_POINT_SERIES = 1000


async def enforcement_point_versions(conn: Connection) -> dict[tuple[str, str, str], int]:
    """The highest version each enforcement point acknowledged, by (lab, model, point);
    the most recently acknowledged first when over the bound."""
    rows = await conn.fetch(
        """SELECT a.lab_id, a.model_id, point, max(a.version) AS version
           FROM acknowledgements a, unnest(a.enforcement_points) AS point
           GROUP BY a.lab_id, a.model_id, point
           ORDER BY max(a.received_at) DESC LIMIT $1""",
        MAX_ENFORCEMENT_POINT_SERIES,
    )
    return {(r["lab_id"], r["model_id"], r["point"]): int(r["version"]) for r in rows}


async def enforcement_points_behind(conn: Connection) -> dict[str, int]:
    """Per lab, the enforcement points whose highest acknowledged version of a model is
    older than the model's current version (they run, or said they ran, an old one)."""
    rows = await conn.fetch(
        """SELECT v.lab_id, count(*) AS n FROM (
               SELECT a.lab_id, a.model_id, point, max(a.version) AS version
               FROM acknowledgements a, unnest(a.enforcement_points) AS point
               GROUP BY a.lab_id, a.model_id, point) v
           JOIN model_heads h ON h.model_id = v.model_id
           WHERE v.version < h.version GROUP BY v.lab_id"""
    )
    return {r["lab_id"]: int(r["n"]) for r in rows}
