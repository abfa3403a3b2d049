"""The HTTP decision API, over a real uvicorn server on a free port."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from contracts.policy import Action, RequestContext
from services.labclient.decision_api import BearerTokens, create_app
from services.labclient.enforcer import Enforcer
from tests.access.support import LAB, MODEL, T0, order, person, published, ties

TOKEN = "test-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CN = person(citizenships=ties("CN"))


@dataclass
class Api:
    client: httpx.Client
    enforcer: Enforcer


def _serve(app: Any) -> tuple[uvicorn.Server, threading.Thread, int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    return server, thread, port


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    token_file = tmp_path / "tokens"
    token_file.write_text(f"# callers\n{TOKEN}\nanother-token-0123456789\n")
    enforcer = Enforcer(lab_id=LAB, clock=lambda: T0)
    app = create_app(
        enforcer, tokens=BearerTokens.from_file(token_file), max_body_bytes=200_000, max_batch=50
    )
    server, thread, port = _serve(app)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        yield Api(client, enforcer)
    server.should_exit = True
    thread.join(10)


def _ready(api: Api) -> None:
    api.enforcer.apply(published(order(nationalities=["CN"])))
    api.enforcer.mark_caught_up()


def _question(principal: Any = CN, model_id: str = MODEL) -> dict[str, Any]:
    return {
        "principal": principal.model_dump(mode="json"),
        "model_id": model_id,
        "action": "invoke",
        "request": {"location_country": "FR"},
    }


def test_readiness_is_503_until_the_enforcer_has_caught_up(api: Api) -> None:
    assert api.client.get("/healthz").status_code == 200
    assert api.client.get("/readyz").status_code == 503
    _ready(api)
    assert api.client.get("/readyz").status_code == 200


def test_a_decision_is_the_enforcers_decision(api: Api) -> None:
    _ready(api)
    answer = api.client.post("/v1/decision", json=_question(), headers=AUTH)
    assert answer.status_code == 200
    body = answer.json()
    expected = api.enforcer.check(CN, MODEL, Action.INVOKE, RequestContext(location_country="FR"))
    assert body == json.loads(expected.model_dump_json())
    assert body["allowed"] is False and body["policy_version"] == 1
    assert body["reasons"][0]["policy_id"].endswith(":nationality:match")


def test_a_decision_before_catching_up_is_a_denial_not_an_error(api: Api) -> None:
    answer = api.client.post("/v1/decision", json=_question(person()), headers=AUTH)
    assert answer.status_code == 200
    assert answer.json()["allowed"] is False and answer.json()["basis"] == "not_ready"


def test_a_batch_answers_in_request_order(api: Api) -> None:
    _ready(api)
    items = [_question(CN), _question(person()), _question(CN, f"{LAB}/unrestricted@1")]
    answer = api.client.post("/v1/decisions", json={"items": items}, headers=AUTH)
    assert answer.status_code == 200
    decisions = answer.json()["decisions"]
    assert [d["allowed"] for d in decisions] == [False, True, True]
    assert decisions[2]["basis"] == "unrestricted"
    assert len({d["decided_at"] for d in decisions}) == 1


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong-token-0123456789"}, {"Authorization": f"Basic {TOKEN}"}],
    ids=["no token", "wrong token", "wrong scheme"],
)
def test_callers_without_a_valid_token_get_401(api: Api, headers: dict[str, str]) -> None:
    answer = api.client.post("/v1/decision", json=_question(), headers=headers)
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == "Bearer"
    assert api.client.get("/v1/status", headers=headers).status_code == 401


def test_status_reports_versions_and_the_age_of_the_view(api: Api) -> None:
    _ready(api)
    body = api.client.get("/v1/status", headers=AUTH).json()
    assert body["ready"] is True and body["view_age_s"] == 0
    assert body["models"][MODEL]["version"] == 1 and body["models"][MODEL]["usable"] is True


@pytest.mark.parametrize(
    ("content", "path"),
    [
        (b"{not json", None),
        (json.dumps({**_question(), "surprise": 1}).encode(), "body.surprise"),
        (json.dumps({**_question(), "model_id": "no-slash"}).encode(), "body.model_id"),
        (json.dumps({**_question(), "action": "launch"}).encode(), "body.action"),
        (
            json.dumps(
                {"principal": {"id": "p", "citizenship": ["CN"]}, "model_id": MODEL}
            ).encode(),
            "body.principal.citizenship",
        ),
        (b"[" * 5000 + b"]" * 5000, None),
    ],
    ids=[
        "not json",
        "unknown field",
        "bad model id",
        "unknown action",
        "misspelt attribute",
        "deep nesting",
    ],
)
def test_malformed_questions_get_422_with_reasons(
    api: Api, content: bytes, path: str | None
) -> None:
    answer = api.client.post(
        "/v1/decision", content=content, headers={**AUTH, "content-type": "application/json"}
    )
    assert answer.status_code == 422, answer.text
    errors = answer.json()["errors"]
    assert errors
    if path is not None:
        assert path in {e["path"] for e in errors}


def test_a_batch_over_the_limit_gets_422(api: Api) -> None:
    answer = api.client.post("/v1/decisions", json={"items": [_question()] * 51}, headers=AUTH)
    assert answer.status_code == 422
    assert answer.json()["detail"]["errors"][0]["path"] == "body.items"


def test_an_empty_batch_gets_422(api: Api) -> None:
    assert api.client.post("/v1/decisions", json={"items": []}, headers=AUTH).status_code == 422


def test_a_body_over_the_limit_gets_413(api: Api) -> None:
    big = {"items": [_question()] * 40, "padding": "x" * 300_000}
    answer = api.client.post("/v1/decisions", json=big, headers=AUTH)
    assert answer.status_code == 413


def test_a_streamed_body_over_the_limit_gets_413(api: Api) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(30):
            yield b" " * 10_000  # no Content-Length: chunked transfer

    answer = api.client.post(
        "/v1/decision", content=chunks(), headers={**AUTH, "content-type": "application/json"}
    )
    assert answer.status_code == 413


def test_the_openapi_document_describes_the_decision_endpoints(api: Api) -> None:
    document = api.client.get("/openapi.json").json()
    assert {"/v1/decision", "/v1/decisions", "/readyz", "/healthz"} <= set(document["paths"])
    assert "Decision" in document["components"]["schemas"]
