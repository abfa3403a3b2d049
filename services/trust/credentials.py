"""Which credential references a lab may name: its own, ``labs/<lab_id>/<name>``.

The evaluation worker sends the secret a submission names to the endpoint the
lab chose, so a lab naming another lab's secret would receive it. Intake refuses
such a reference at filing and evaluation checks again before it resolves a
secret; both call ``owned_by``, so the two checks can't drift apart.
"""

from __future__ import annotations

from contracts.events.common import RejectionReason
from services.trust.refusal import Refusal, field_error
from services.trust.unverified import slug

CREDENTIAL_REF_PATH = "data.evaluation_access.credential_ref"


def lab_namespace(lab_id: str) -> str:
    return f"labs/{lab_id}/"


def owned_by(ref: str, lab_id: str) -> bool:
    """``labs/<lab_id>/<name>``, with no empty, ``.`` or ``..`` segment anywhere."""
    if slug(lab_id) is None:  # a lab id with '/' would make the namespace ambiguous
        return False
    segments = ref.split("/")
    return (
        ref.startswith(lab_namespace(lab_id))
        and len(segments) > 2
        and not set(segments) & {"", ".", ".."}
    )


def check_credential_ref(
    ref: str, lab_id: str, *, path: str = CREDENTIAL_REF_PATH
) -> Refusal | None:
    if owned_by(ref, lab_id):
        return None
    namespace = lab_namespace(lab_id)
    return Refusal(
        RejectionReason.CREDENTIAL_NOT_OWNED,
        f"{path.removeprefix('data.')} {ref[:200]!r} is not a credential of lab {lab_id!r}: "
        f"it must be a name under {namespace} (no empty, '.' or '..' segments)",
        (field_error(path, f"must be under {namespace}"),),
    )
