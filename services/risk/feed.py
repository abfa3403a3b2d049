"""The government findings feed: FindingShared, built by redaction.

Only the fields of a FindingRecorded labelled ``public`` leave the agency
(``contracts.sensitivity.redact``): endpoints and credential references are not even in
a finding, and evidence references and digests, free-text summaries, the evaluator, the
standard error, training details and reviewers' rationales are labelled otherwise and
never reach the feed. The level of the finding's domain in the current assessment and
that assessment's policy version are added; nothing else is.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from uuid import UUID

from contracts.events import FindingRecorded, FindingShared, RiskAssessed
from contracts.sensitivity import redact

FEED_NAMESPACE = UUID("4c9e2a7d-5b1f-4e3a-8d6c-7f0b9e1a2c38")


def finding_shared(
    finding: FindingRecorded, assessed: RiskAssessed | None, now: datetime
) -> FindingShared:
    """The finding as other government systems may see it, with its domain's level."""
    level = None
    if assessed is not None:
        level = next((d.level for d in assessed.domains if d.domain is finding.domain), None)
    return FindingShared.model_validate(
        redact(finding)
        | {
            "level": level,
            "policy_version": assessed.policy_version if assessed is not None else None,
            "shared_at": now,
        }
    )


def shared_event_id(shared: FindingShared) -> str:
    """A finding is shared once per level it is assessed at: a rise is shared again, a
    redelivery is not."""
    key = f"{shared.finding_id}/{shared.policy_version}/{shared.level}"
    return str(uuid.uuid5(FEED_NAMESPACE, key))
