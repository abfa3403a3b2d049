"""The lab-side client of frontier-review: keys, signed submissions, outcomes.

Labs use it to generate an Ed25519 key pair, build a SubmissionFiled from a
manifest file, sign it (the contract's signing rule), publish it to
lab.submissions keyed by its submission id, follow the outcome on its own
answers feed (labs.<lab id>.answers, from where it stood when the input was
sent), withdraw it, and sign compliance acknowledgements for
lab.compliance. It depends on the shared ``contracts`` package only, never on
the agency's services.
"""

from services.labclient.client import FROM_BEGINNING, FeedPosition, LabClient, Outcome
from services.labclient.keys import generate_key, load_private_key, public_key_base64
from services.labclient.signing import (
    ManifestError,
    body_sha256,
    build_acknowledgement,
    build_submission,
    build_withdrawal,
    load_manifest,
    sign,
)

__all__ = [
    "FROM_BEGINNING",
    "FeedPosition",
    "LabClient",
    "ManifestError",
    "Outcome",
    "body_sha256",
    "build_acknowledgement",
    "build_submission",
    "build_withdrawal",
    "generate_key",
    "load_manifest",
    "load_private_key",
    "public_key_base64",
    "sign",
]
