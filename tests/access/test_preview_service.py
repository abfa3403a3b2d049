"""The impact preview against the model's current policy as the service enforces it: the
agency API endpoint and the CLI read it from the access schema, and their counts are the
decisions of an enforcer running that policy and the proposal (real Kafka + PostgreSQL)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from contracts.policy import Action
from services.access.sample import SampleFormat, SampleRow, read_sample
from services.labclient.enforcer import Enforcer
from services.runtime import RuntimeSettings
from tests.access.generate import csv_sample
from tests.access.rig import Rig, applied, model_id, running_rig, service_env
from tests.access.support import LAB, order, published
from tests.kit import free_port

TOKEN = "agency-reviewer-token-0123456789"
AT = datetime.now(UTC) + timedelta(hours=1)


@pytest.fixture(scope="module")
async def rig(
    settings: RuntimeSettings, kafka: str, database: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Rig]:
    tokens = tmp_path_factory.mktemp("api") / "tokens"
    tokens.write_text(f"# reviewers' tools\n{TOKEN}\n")
    async with running_rig(
        settings, http_port=free_port(), access_api_tokens_file=tokens
    ) as started:
        yield started


def url(rig: Rig) -> str:
    return f"http://127.0.0.1:{rig.settings.http_port}"


async def current_and_proposal(rig: Rig) -> tuple[str, Any, Any]:
    model = model_id()
    current = order(
        model_id=model, verification_statuses=["unverified"], effective_at=datetime.now(UTC)
    )
    await rig.send(current)
    await rig.version(model, 1)
    proposal = order(
        model_id=model,
        nationalities=["CN", "RU"],
        nationality_rule="most_recent",
        organisations=["org-x"],
        effective_at=datetime.now(UTC),
    )
    return model, current, proposal


async def enforcer_counts(
    rig: Rig, lines: list[bytes], model: str, current: Any, proposal: Any
) -> dict[str, int]:
    """Decisions of an enforcer following the service's feed (the current policy, as
    published) and of one running current + proposal, as the service would publish it."""
    then = Enforcer(lab_id=LAB, clock=lambda: AT)
    then.apply(published(current, proposal, model_id=model, version=2))
    then.mark_caught_up()
    counts = {"denied_current": 0, "denied_proposed": 0, "newly_denied": 0}
    async with rig.enforcer(LAB) as now_:
        await applied(now_, model, 1)
        for row in read_sample(iter(lines), SampleFormat.CSV):
            assert isinstance(row, SampleRow)
            was = now_.check(row.principal, model, Action.INVOKE, row.request, at=AT).allowed
            is_ = then.check(row.principal, model, Action.INVOKE, row.request, at=AT).allowed
            counts["denied_current"] += not was
            counts["denied_proposed"] += not is_
            counts["newly_denied"] += was and not is_
    return counts


async def test_the_api_preview_counts_equal_an_enforcers_decisions(rig: Rig) -> None:
    model, current, proposal = await current_and_proposal(rig)
    lines = list(csv_sample(2000, seed=3))
    body = proposal.model_dump_json().encode() + b"\n" + b"".join(lines)
    async with httpx.AsyncClient(base_url=url(rig), timeout=120) as client:
        response = await client.post(
            "/v1/impact-preview",
            params={"format": "csv", "at": AT.isoformat()},
            content=body,
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["current_order_ids"] == [str(current.order_id)]
    expected = await enforcer_counts(rig, lines, model, current, proposal)
    assert {k: report[k] for k in expected} == expected
    assert report["rows"] == 2000 and report["newly_denied"] > 0
    assert sum(report["newly_denied_by_country"].values()) >= report["newly_denied"]


async def test_the_api_refuses_callers_without_a_token_and_bodies_without_an_order(
    rig: Rig,
) -> None:
    async with httpx.AsyncClient(base_url=url(rig), timeout=30) as client:
        assert (await client.post("/v1/impact-preview", content=b"x")).status_code == 401
        wrong = {"Authorization": "Bearer not-the-token-0123456789"}
        assert (
            await client.post("/v1/impact-preview", content=b"x", headers=wrong)
        ).status_code == 401
        auth = {"Authorization": f"Bearer {TOKEN}"}
        answer = await client.post(
            "/v1/impact-preview", content=b"{}\nprincipal_id\n", headers=auth
        )
        assert answer.status_code == 422 and "RestrictionOrdered" in answer.text
        assert (await client.get("/healthz")).status_code == 200


async def test_the_api_serves_a_models_current_policy(rig: Rig) -> None:
    model, current, _ = await current_and_proposal(rig)
    async with httpx.AsyncClient(base_url=url(rig), timeout=30) as client:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        answer = await client.get(f"/v1/models/{model}/policy", headers=auth)
        missing = await client.get("/v1/models/example-lab/none@1/policy", headers=auth)
    assert answer.status_code == 200 and answer.json()["policy_version"] == 1
    assert answer.json()["order_ids"] == [str(current.order_id)]
    assert missing.status_code == 404


async def test_the_cli_preview_reads_the_current_policy_from_the_access_schema(
    rig: Rig, tmp_path: Path
) -> None:
    model, current, proposal = await current_and_proposal(rig)
    lines = list(csv_sample(1500, seed=9))
    sample = tmp_path / "customers.csv"
    sample.write_bytes(b"".join(lines))
    proposed = tmp_path / "proposed.json"
    proposed.write_text(proposal.model_dump_json())
    changed = tmp_path / "changed.csv"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "services.access.cli",
            "preview",
            "--order",
            str(proposed),
            "--sample",
            str(sample),
            "--at",
            AT.isoformat(),
            "--changed-out",
            str(changed),
            "--json",
        ],
        env=dict(service_env(rig.settings)),
        capture_output=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    report = json.loads(done.stdout)
    expected = await enforcer_counts(rig, lines, model, current, proposal)
    assert {k: report[k] for k in expected} == expected
    with changed.open(newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["line", "principal_id", "reasons"]
    assert len(rows) - 1 == report["newly_denied"]
    assert all(len(r) == 3 for r in rows)


async def test_the_cli_previews_a_reviewers_order_file_for_a_model(
    rig: Rig, tmp_path: Path
) -> None:
    """The file a reviewer signs with risk.cli decide --scope (no ids), for --model-id."""
    model, current, proposal = await current_and_proposal(rig)
    lines = list(csv_sample(1500, seed=11))
    sample = tmp_path / "customers.csv"
    sample.write_bytes(b"".join(lines))
    scope = proposal.scope.model_dump(mode="json", exclude_defaults=True)
    order_file = tmp_path / "order.yaml"
    order_file.write_text(yaml.safe_dump({"scope": scope, "effective_at": AT.isoformat()}))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "services.access.cli",
            "preview",
            "--order",
            str(order_file),
            "--model-id",
            model,
            "--sample",
            str(sample),
            "--at",
            AT.isoformat(),
            "--json",
        ],
        env=dict(service_env(rig.settings)),
        capture_output=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout.decode()[-2000:] + done.stderr.decode()[-2000:]
    report = json.loads(done.stdout)
    expected = await enforcer_counts(rig, lines, model, current, proposal)
    assert {k: report[k] for k in expected} == expected
