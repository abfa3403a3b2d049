"""The committed AsyncAPI documents are what FastStream generates from the services."""

from __future__ import annotations

import pytest
import yaml

from services.runtime.asyncapi import OUT, render, service_names


@pytest.mark.parametrize("name", service_names())
def test_committed_asyncapi_is_current(name: str) -> None:
    committed = OUT / f"{name}.yaml"
    assert committed.exists(), "run: python -m services.runtime.asyncapi generate"
    assert committed.read_text() == render(name), (
        "stale: python -m services.runtime.asyncapi generate"
    )
    document = yaml.safe_load(committed.read_text())
    assert document["asyncapi"] == "3.0.0"
    for message in document["components"]["messages"].values():
        refs = message["payload"].get("oneOf", [message["payload"]])
        for ref in refs:
            assert (OUT / ref["$ref"]).resolve().exists(), f"{ref} points at no schema file"


def test_every_service_is_documented() -> None:
    assert {"intake", "evaluation"} <= set(service_names())
