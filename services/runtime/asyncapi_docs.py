"""The committed AsyncAPI documents as web pages, for people reading the contract.

    python -m services.runtime.asyncapi_docs [--host 127.0.0.1] [--port 8306]

``/`` lists the services; ``/<service>`` renders contracts/asyncapi/<service>.yaml
with the AsyncAPI React component (loaded by the browser from its CDN, as
``faststream docs serve`` does; no build step). A document's payloads point at
the event JSON Schemas in contracts/schemas/ by relative path, which a browser
cannot follow; each page inlines them, their ``$defs`` moved to
``components.schemas``, so that every message shows its fields. Read-only, the
files as committed (``python -m services.runtime.asyncapi check`` keeps them
current); for a workstation, not for the internet.
"""

from __future__ import annotations

import argparse
import html
import json
import sys
from functools import cache
from pathlib import Path
from typing import Any

import uvicorn
import yaml
from fastapi import FastAPI, HTTPException, status
from fastapi.responses import HTMLResponse
from faststream.specification.asyncapi.site import (
    ASYNCAPI_CSS_DEFAULT_URL,
    ASYNCAPI_JS_DEFAULT_URL,
)

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = ROOT / "contracts" / "asyncapi"
DEFS = "#/$defs/"
COMPONENT_SCHEMAS = "#/components/schemas/"


def services() -> list[str]:
    return sorted(path.stem for path in DOCUMENTS.glob("*.yaml"))


@cache
def self_contained(service: str) -> dict[str, Any]:
    """The service's document with every event JSON Schema it points at in
    ``components.schemas`` (named after its file), and the pointers to them."""
    path = DOCUMENTS / f"{service}.yaml"
    document: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    shared: dict[str, Any] = document.setdefault("components", {}).setdefault("schemas", {})

    def inline(node: Any) -> Any:
        if isinstance(node, list):
            return [inline(item) for item in node]
        if not isinstance(node, dict):
            return node
        reference = node.get("$ref")
        if isinstance(reference, str) and not reference.startswith("#"):
            file = (path.parent / reference).resolve()
            if file.stem not in shared:
                schema = json.loads(file.read_text(encoding="utf-8"))
                shared.update(_rebased(schema.pop("$defs", {})))
                shared[file.stem] = _rebased(schema)
            return {"$ref": COMPONENT_SCHEMAS + file.stem}
        return {key: inline(value) for key, value in node.items()}

    document["components"]["messages"] = inline(document["components"].get("messages", {}))
    return document


def _rebased(node: Any) -> Any:
    """``node`` with references into its schema's ``$defs`` pointed at the document's
    ``components.schemas`` (pydantic names a definition after its model, so the
    events' shared definitions are the same under one name)."""
    if isinstance(node, dict):
        return {
            key: (
                COMPONENT_SCHEMAS + value.removeprefix(DEFS)
                if key == "$ref" and isinstance(value, str) and value.startswith(DEFS)
                else _rebased(value)
            )
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_rebased(item) for item in node]
    return node


def page(service: str) -> str:
    return render(f"frontier-review {service}: AsyncAPI", self_contained(service))


def render(title: str, document: dict[str, Any]) -> str:
    """The HTML page showing ``document``."""
    # "</" cannot end the script element early once escaped; the JSON is otherwise as is.
    standalone = json.dumps({"schema": document, "config": {"show": {"sidebar": True}}}).replace(
        "</", "<\\/"
    )
    title = html.escape(title)
    return f"""<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>{title}</title>
<link rel="stylesheet" href="{ASYNCAPI_CSS_DEFAULT_URL}"></head>
<body><p><a href="/">all services</a></p><div id="asyncapi"></div>
<script src="{ASYNCAPI_JS_DEFAULT_URL}"></script>
<script>const root = document.getElementById("asyncapi");
window.AsyncApiStandalone.render({standalone}, root);</script>
</body></html>"""


def index() -> str:
    links = "".join(
        f'<li><a href="/{html.escape(name)}">{html.escape(name)}</a></li>' for name in services()
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        "<title>frontier-review: AsyncAPI</title></head><body>"
        f"<h1>frontier-review: the services' AsyncAPI documents</h1><ul>{links}</ul>"
        "</body></html>"
    )


def create_app() -> FastAPI:
    """The read-only pages: ``/`` lists the services, ``/<service>`` shows one."""
    # HTML pages only: no machine API to describe, so no OpenAPI routes.
    app = FastAPI(
        title="frontier-review AsyncAPI pages", docs_url=None, redoc_url=None, openapi_url=None
    )

    @app.get("/", response_class=HTMLResponse)
    def listing() -> str:
        return index()

    @app.get("/{service}", response_class=HTMLResponse)
    def document(service: str) -> str:
        if service not in services():
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such document")
        return page(service)

    return app


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m services.runtime.asyncapi_docs", description=__doc__
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8306)
    args = parser.parse_args(argv)
    print(f"asyncapi-docs: http://{args.host}:{args.port}/", file=sys.stderr)
    uvicorn.run(create_app(), host=args.host, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
