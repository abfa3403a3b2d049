"""A sample of a lab's customers for the impact preview: CSV or JSON lines, one row per line.

**CSV** (UTF-8, a header line, one principal per line; quoted fields must not
span lines). Columns, all but ``principal_id`` optional (a missing column is an
unknown attribute for every row):

| column | value | empty cell | ``-`` |
|---|---|---|---|
| principal_id | the lab's principal id | (required) | |
| citizenships | ``CC`` or ``CC@YYYY-MM-DD`` (acquired), ``;``-separated | unknown | none |
| permanent_residencies | as citizenships | unknown | none |
| residence_country | ``CC`` | unknown | |
| us_person | citizen, lawful_permanent_resident, protected_individual, none | unknown | none |
| verification_status | verified, pending, unverified | unknown (the three verification columns) | |
| verified_at, verification_expires_at | ISO 8601 with offset | none | |
| organisation_id | the lab's organisation id | unknown | none (an individual) |
| organisation_headquarters_country | ``CC`` | unknown | |
| organisation_parent_country | ``CC`` (= headquarters when no parent) | unknown | |
| request_location_country | ``CC`` of the request | unknown | |

**JSON lines**: one object per line, ``{"principal": <Principal>, "request":
<RequestContext>}`` as in ``contracts.policy.principal`` (``request`` optional).

A row that does not parse is a ``MalformedRow`` with its line number; the
caller decides whether that stops anything.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import ValidationError

from contracts.policy.principal import Organisation, Principal, RequestContext

MAX_LINE_BYTES = 64 * 1024

COLUMNS = (
    "principal_id",
    "citizenships",
    "permanent_residencies",
    "residence_country",
    "us_person",
    "verification_status",
    "verified_at",
    "verification_expires_at",
    "organisation_id",
    "organisation_headquarters_country",
    "organisation_parent_country",
    "request_location_country",
)
NONE = "-"


class SampleFormat(StrEnum):
    CSV = "csv"
    JSONL = "jsonl"


@dataclass(frozen=True)
class SampleRow:
    line: int
    principal: Principal
    request: RequestContext


@dataclass(frozen=True)
class MalformedRow:
    line: int
    error: str


class SampleError(ValueError):
    """The sample as a whole cannot be read (e.g. a CSV header without principal_id)."""


def _ties(cell: str) -> list[dict[str, Any]] | None:
    if cell == "":
        return None
    if cell == NONE:
        return []
    ties = []
    for part in cell.split(";"):
        country, _, acquired = part.strip().partition("@")
        ties.append({"country": country, "acquired_on": acquired or None})
    return ties


def _csv_principal(cells: dict[str, str]) -> tuple[Principal, RequestContext]:
    def cell(name: str) -> str:
        return cells.get(name, "").strip()

    organisation: Any = None
    org_id = cell("organisation_id")
    if org_id == NONE:
        organisation = "none"
    elif org_id:
        organisation = {
            "id": org_id,
            "headquarters_country": cell("organisation_headquarters_country") or None,
            "parent_country": cell("organisation_parent_country") or None,
        }
    verification = None
    if cell("verification_status"):
        verification = {
            "status": cell("verification_status"),
            "verified_at": cell("verified_at") or None,
            "expires_at": cell("verification_expires_at") or None,
        }
    us_person = cell("us_person")
    principal = Principal.model_validate(
        {
            "id": cell("principal_id"),
            "citizenships": _ties(cell("citizenships")),
            "permanent_residencies": _ties(cell("permanent_residencies")),
            "residence_country": cell("residence_country") or None,
            "us_person": "none" if us_person == NONE else (us_person or None),
            "verification": verification,
            "organisation": organisation,
        }
    )
    request = RequestContext(location_country=cell("request_location_country") or None)
    return principal, request


def _error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        parts = [
            f"{'.'.join(str(p) for p in e['loc']) or '(row)'}: {e['msg']}" for e in exc.errors()
        ]
        return "; ".join(parts)[:500]
    return str(exc)[:500]


def read_csv(lines: Iterable[bytes]) -> Iterator[SampleRow | MalformedRow]:
    """Rows of a CSV sample; ``lines``: the file's lines as bytes (line 1 = the header)."""
    iterator = iter(lines)
    header_line = next(iterator, None)
    if header_line is None:
        raise SampleError("the sample is empty (no header line)")
    header = [h.strip() for h in next(csv.reader([header_line.decode("utf-8-sig")]))]
    if "principal_id" not in header:
        raise SampleError("the CSV header has no principal_id column")
    unknown = sorted(set(header) - set(COLUMNS))
    if unknown:
        raise SampleError(f"unknown CSV columns: {', '.join(unknown)} (known: {COLUMNS})")
    for number, raw in enumerate(iterator, start=2):
        if not raw.strip():
            continue
        try:
            if len(raw) > MAX_LINE_BYTES:
                raise ValueError(f"line longer than {MAX_LINE_BYTES} bytes")
            values = next(csv.reader([raw.decode("utf-8")]))
            if len(values) != len(header):
                raise ValueError(f"{len(values)} fields, the header has {len(header)}")
            principal, request = _csv_principal(dict(zip(header, values, strict=True)))
        except (ValueError, csv.Error, StopIteration) as exc:
            yield MalformedRow(number, _error(exc))
            continue
        yield SampleRow(number, principal, request)


def read_jsonl(lines: Iterable[bytes]) -> Iterator[SampleRow | MalformedRow]:
    """Rows of a JSON-lines sample (line 1 is a row)."""
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            if len(raw) > MAX_LINE_BYTES:
                raise ValueError(f"line longer than {MAX_LINE_BYTES} bytes")
            data = json.loads(raw)
            if not isinstance(data, dict) or set(data) - {"principal", "request"}:
                raise ValueError('a row is {"principal": {...}, "request": {...}}')
            principal = Principal.model_validate(data.get("principal"))
            request = RequestContext.model_validate(data.get("request") or {})
        except (ValueError, RecursionError) as exc:
            yield MalformedRow(number, _error(exc))
            continue
        yield SampleRow(number, principal, request)


def read_sample(lines: Iterable[bytes], fmt: SampleFormat) -> Iterator[SampleRow | MalformedRow]:
    return read_csv(lines) if fmt is SampleFormat.CSV else read_jsonl(lines)


def csv_line(principal: Principal, request: RequestContext) -> str:
    """One CSV line for a principal (the inverse of the reader; used to write samples)."""

    def ties(value: Any) -> str:
        if value is None:
            return ""
        if not value:
            return NONE
        return ";".join(t.country + (f"@{t.acquired_on}" if t.acquired_on else "") for t in value)

    org = principal.organisation
    company = org if isinstance(org, Organisation) else None
    verification = principal.verification
    cells = [
        principal.id,
        ties(principal.citizenships),
        ties(principal.permanent_residencies),
        principal.residence_country or "",
        "" if principal.us_person is None else principal.us_person.value,
        verification.status.value if verification else "",
        verification.verified_at.isoformat() if verification and verification.verified_at else "",
        verification.expires_at.isoformat() if verification and verification.expires_at else "",
        NONE if org == "none" else (company.id if company else ""),
        (company.headquarters_country or "") if company else "",
        (company.parent_country or "") if company else "",
        request.location_country or "",
    ]
    out: list[str] = []
    writer = csv.writer(_Sink(out), lineterminator="\n")
    writer.writerow(cells)
    return out[0]


class _Sink:
    def __init__(self, out: list[str]) -> None:
        self.out = out

    def write(self, text: str) -> int:
        self.out.append(text)
        return len(text)
