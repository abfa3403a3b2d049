"""The AsyncAPI pages are self-contained: a browser needs no file beside the document."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

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


def test_the_pages_are_served_and_nothing_else() -> None:
    client = TestClient(asyncapi_docs.create_app())
    listing = client.get("/")
    assert listing.status_code == 200 and listing.headers["content-type"].startswith("text/html")
    assert all(f'href="/{name}"' in listing.text for name in asyncapi_docs.services())
    risk = client.get("/risk")
    assert risk.status_code == 200 and "AsyncApiStandalone.render(" in risk.text
    for missing in ("/nope", "/..%2f..%2fetc%2fpasswd", "/openapi.json", "/docs"):
        assert client.get(missing).status_code == 404, missing
