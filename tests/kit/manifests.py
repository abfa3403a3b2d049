"""The example submission manifest (the one the lab guide and the lab client ship), for
any test that files through intake."""

from __future__ import annotations

import copy
import uuid
from pathlib import Path
from typing import Any

import yaml

EXAMPLE_MANIFEST = Path(__file__).parents[2] / "services/labclient/examples/submission.yaml"


def manifest(lab_id: str, **overrides: Any) -> dict[str, Any]:
    """The example manifest of ``lab_id`` (its own credential) with a fresh submission id;
    ``model`` and ``evaluation_access`` overrides merge."""
    document: dict[str, Any] = copy.deepcopy(yaml.safe_load(EXAMPLE_MANIFEST.read_text()))
    document["submission_id"] = str(uuid.uuid4())
    document["lab_id"] = lab_id
    document["evaluation_access"]["credential_ref"] = f"labs/{lab_id}/eval-api-key"
    model = overrides.pop("model", {})
    access = overrides.pop("evaluation_access", {})
    document["model"] |= model
    document["evaluation_access"] |= access
    return document | overrides
