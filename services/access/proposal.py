"""The order an impact preview is asked about, in the form its author holds it.

A preview is run *before* an order exists, by the reviewer who is about to sign
it. Reviewers sign an order file (YAML: the whole order, ``scope`` with
``effective_at``, ``expires_at``, ``compliance_deadline``, or the scope alone;
what ``risk.cli decide --scope`` takes), which has no order, submission or
escalation ids: risk assigns those when the quorum issues it. So the preview
takes either that file, for a model named separately, or a whole
RestrictionOrdered (JSON), and both end as the RestrictionOrdered the compiler
would see. Times the file leaves out are the preview's decision time.

Pure: the caller reads the file; this parses and validates its text.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

import yaml
from pydantic import ValidationError

from contracts.events.common import RejectionReason
from contracts.events.reviewers import ReviewerOrder
from contracts.events.risk import RestrictionOrdered, RestrictionScope
from services.trust.refusal import Refusal, field_error

PROPOSER = "proposal"
"""The reviewer id a previewed order file carries (its reasons say "reviewer proposal")."""


def proposed_order(
    text: str, *, model_id: str | None, at: datetime
) -> RestrictionOrdered | Refusal:
    """The proposal in ``text``: a RestrictionOrdered (JSON, recognised by its
    ``order_id``) or a reviewer's order file for ``model_id`` (YAML or JSON)."""
    try:
        document = json.loads(text)
    except ValueError:
        try:
            document = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            return Refusal(RejectionReason.MALFORMED, f"the order is neither JSON nor YAML: {exc}")
    if not isinstance(document, dict):
        return Refusal(RejectionReason.SCHEMA_VIOLATION, "an order is a mapping")
    if "order_id" in document:
        try:
            ordered = RestrictionOrdered.model_validate_json(text)
        except ValidationError as exc:
            return _invalid("not a RestrictionOrdered", exc)
        if model_id is not None and model_id != ordered.model_id:
            return Refusal(
                RejectionReason.SCHEMA_VIOLATION,
                f"the order is for {ordered.model_id}, not {model_id}",
            )
        return ordered
    if model_id is None:
        return Refusal(
            RejectionReason.SCHEMA_VIOLATION,
            "a reviewer's order file names no model: give the model id",
        )
    spec: dict[str, Any] = dict(document) if "scope" in document else {"scope": document}
    spec.setdefault("effective_at", at)
    spec.setdefault("compliance_deadline", spec["effective_at"])
    try:
        reviewed = ReviewerOrder.model_validate(spec)
        return RestrictionOrdered(
            order_id=uuid.uuid4(),  # risk assigns the real ids when it issues the order
            submission_id=uuid.uuid4(),
            model_id=model_id,
            escalation_id=uuid.uuid4(),
            interim=False,
            reviewer_id=PROPOSER,  # a non-interim order names its reviewer; none yet
            scope=RestrictionScope.model_validate(reviewed.scope.model_dump(mode="json")),
            ordered_at=at,
            effective_at=reviewed.effective_at,
            expires_at=reviewed.expires_at,
            compliance_deadline=reviewed.compliance_deadline,
        )
    except ValidationError as exc:
        return _invalid("not a valid order", exc)


def _invalid(what: str, exc: ValidationError) -> Refusal:
    errors = tuple(field_error(".".join(map(str, e["loc"])), e["msg"]) for e in exc.errors()[:100])
    detail = "; ".join(f"{e.path}: {e.message}" for e in errors[:10])
    return Refusal(RejectionReason.SCHEMA_VIOLATION, f"{what}: {detail}", errors)
