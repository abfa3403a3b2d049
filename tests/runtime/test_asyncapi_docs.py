"""The AsyncAPI pages are self-contained: a browser needs no file beside the document."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from services.runtime import asyncapi_docs


def references(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from references(value)
    elif isinstance(node, list):
        for item in node:
            yield from references(item)


def resolve(document: dict[str, Any], reference: str) -> Any:
    node: Any = document
    for part in reference.removeprefix("#/").split("/"):
        node = node[part]
    return node


@pytest.mark.parametrize("service", asyncapi_docs.services())
def test_every_reference_of_a_page_resolves_inside_the_document(service: str) -> None:
    document = asyncapi_docs.self_contained(service)
    found = list(references(document))
    assert found and all(ref.startswith("#/") for ref in found)
    for reference in found:
        resolve(document, reference)  # a KeyError names the dangling one


def test_every_message_shows_its_events_fields() -> None:
    document = asyncapi_docs.self_contained("risk")
    for message in document["components"]["messages"].values():
        payload = message["payload"]
        events = [resolve(document, item["$ref"]) for item in payload.get("oneOf", [payload])]
        assert events and all(event["properties"] for event in events)


def test_a_document_cannot_end_the_page_script_early() -> None:
    hostile = {"info": {"title": "</script><script>alert(1)</script>"}}
    page = asyncapi_docs.render("a title", hostile)
    script = page.split("AsyncApiStandalone.render(", 1)[1].rsplit(", root);", 1)[0]
    assert "</" not in script
    assert json.loads(script.replace("<\\/", "</"))["schema"] == hostile
