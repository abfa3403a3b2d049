"""Event contracts of frontier-review: what flows between the services.

pydantic v2 models are the single source of truth; the JSON Schema files in
contracts/schemas/ are generated from them (``python -m contracts generate``).
This package imports nothing from services/.
"""

from contracts.envelope import (
    CONTENT_TYPE,
    CloudEvent,
    ContractViolation,
    Event,
    decode,
    encode,
    make_event,
)
from contracts.parsing import parse_json, salvage_json
from contracts.topic import Topic

__all__ = [
    "CONTENT_TYPE",
    "CloudEvent",
    "ContractViolation",
    "Event",
    "Topic",
    "decode",
    "encode",
    "make_event",
    "parse_json",
    "salvage_json",
]
