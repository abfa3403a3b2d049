"""The operator CLI and the lab CLI, run as the processes people run, against a live intake."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import stat
import sys
import uuid
from pathlib import Path

import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from contracts.events.common import signing_input
from tests.intake.rig import Rig

EXAMPLES = Path(__file__).parents[2] / "services/labclient/examples"


async def run(env: dict[str, str], module: str, *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        module,
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 90)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_operator_and_lab_command_lines(rig: Rig, tmp_path: Path) -> None:
    """The whole onboarding as people run it: registering the lab gives it a Kafka
    principal of its own, and the lab's CLI works with that principal alone."""
    principal_prefix = f"rig-{uuid.uuid4().hex[:8]}."
    tenants = tmp_path / "tenants"
    env = os.environ | {
        "FR_DATABASE_URL": rig.settings.database_url,
        "FR_DB_SCHEMA": rig.settings.db_schema,
        "FR_KAFKA_BOOTSTRAP": rig.settings.kafka_bootstrap,
        "FR_TOPIC_PREFIX": rig.settings.topic_prefix,
        "FR_PRINCIPAL_PREFIX": principal_prefix,
        "FR_TENANT_CREDENTIALS_DIR": str(tenants),
        "COLUMNS": "250",
    }
    lab_credentials = tenants / f"{principal_prefix}lab.cli-lab.json"
    lab_env = env | {"FR_KAFKA_CREDENTIALS_FILE": str(lab_credentials)}

    async def intake(*args: str) -> tuple[int, str, str]:
        return await run(env, "services.intake.cli", *args)

    async def lab(*args: str, key: str = "lab.key", key_id: str = "k1") -> tuple[int, str, str]:
        identity = ["--lab-id", "cli-lab", "--key", str(tmp_path / key), "--key-id", key_id]
        return await run(lab_env, "services.labclient.cli", *identity, *args)

    # The lab makes a key pair; the agency registers the lab and the public key.
    code, public, _ = await run(
        env, "services.labclient.cli", "keygen", "--out", str(tmp_path / "lab.key")
    )
    assert code == 0
    assert stat.S_IMODE((tmp_path / "lab.key").stat().st_mode) == 0o600
    assert (tmp_path / "lab.key.pub").read_text().strip() == public.strip()
    code, out, err = await intake("lab", "register", "cli-lab", "--name", "CLI Lab")
    assert code == 0, err
    assert f"Kafka principal {principal_prefix}lab.cli-lab" in out, out
    assert stat.S_IMODE(lab_credentials.stat().st_mode) == 0o600
    code, _, err = await intake("lab", "register", "cli-lab")
    assert code == 1 and "registered already" in err
    public_key = str(tmp_path / "lab.key.pub")
    assert (await intake("lab", "key", "add", "cli-lab", "k1", "--public-key", public_key))[0] == 0

    # Manifest -> signed submission -> decision; re-sends are duplicates.
    manifest = tmp_path / "submission.yaml"
    code, _, _ = await run(
        env, "services.labclient.cli", "init-manifest", str(manifest), "--lab-id", "cli-lab"
    )
    assert code == 0
    submission_id = yaml.safe_load(manifest.read_text())["submission_id"]
    code, _, err = await lab("submit", str(manifest))
    assert code == 0 and "accepted (covered_by_compute)" in err, err
    code, _, err = await lab("build", str(manifest), "-o", str(tmp_path / "filed.json"))
    assert code == 0
    code, _, err = await lab("publish", str(tmp_path / "filed.json"))
    assert code == 0 and "duplicate; the original stands: accepted" in err, err
    code, out, _ = await lab("follow", submission_id, "--timeout", "2", "--from-beginning")
    assert code == 0 and "accepted (covered_by_compute)" in out

    # Status, then withdrawal.
    code, out, _ = await intake("status", submission_id)
    assert code == 0 and "accepted" in out and "duplicate" in out
    code, _, err = await lab("withdraw", submission_id, "--reason", "release postponed")
    assert code == 0 and "withdrawn" in err, err
    code, out, _ = await intake("status", submission_id, "--json")
    status = json.loads(out)
    assert status["state"] == "withdrawn"
    assert [h["kind"] for h in status["history"]] == ["accepted", "duplicate", "withdrawn"]

    # Rotation and revocation.
    code, _, _ = await run(
        env, "services.labclient.cli", "keygen", "--out", str(tmp_path / "new.key")
    )
    code, out, _ = await intake(
        "lab",
        "key",
        "rotate",
        "cli-lab",
        "k2",
        "--public-key",
        str(tmp_path / "new.key.pub"),
        "--overlap-hours",
        "1",
    )
    assert code == 0 and "k1" in out and "valid until" in out, out
    revoke = ("lab", "key", "revoke", "cli-lab", "k2", "--reason", "test", "--yes")
    assert (await intake(*revoke))[0] == 0
    code, out, _ = await intake("lab", "key", "list", "cli-lab")
    assert code == 0 and "revoked" in out and "valid" in out
    second = tmp_path / "second.yaml"
    await run(env, "services.labclient.cli", "init-manifest", str(second), "--lab-id", "cli-lab")
    code, _, err = await lab("submit", str(second), key="new.key", key_id="k2")
    # A sender that did not authenticate learns no more than that; the operator sees why.
    assert code == 2 and "rejected (authentication_failed)" in err, err
    assert "not bound to your signature" in err, err
    code, out, _ = await intake("refusals")
    assert code == 0 and "cli-lab" in out and "revoked_key" in out, out
    # Not authenticated: answered under its event id, off the submission's own events.
    refused_id = re.search(r"published event (\S+)", err)
    assert refused_id is not None, err
    second_id = yaml.safe_load(second.read_text())["submission_id"]
    code, out, _ = await lab("follow", second_id, "--timeout", "2")
    assert code == 0 and "authentication_failed" not in out
    code, out, _ = await lab(
        "follow", second_id, "--event-id", refused_id.group(1), "--timeout", "2", "--from-beginning"
    )
    assert code == 0 and "rejected (authentication_failed)" in out, out
    code, _, err = await lab("submit", str(second))  # the old key, inside its overlap
    assert code == 0 and "accepted" in err, err

    # Compliance acknowledgements are signed by the same client.
    code, _, err = await lab("acknowledge", str(EXAMPLES / "acknowledgement.yaml"), "--no-publish")
    assert code == 1 and "is not --lab-id 'cli-lab'" in err, "a lab signs only its own input"
    ack = yaml.safe_load((EXAMPLES / "acknowledgement.yaml").read_text())
    ack |= {"lab_id": "cli-lab", "model_id": "cli-lab/frontier-1@2026-01-10"}
    (tmp_path / "ack.yaml").write_text(yaml.safe_dump(ack))
    code, out, err = await lab("acknowledge", str(tmp_path / "ack.yaml"), "--no-publish")
    assert code == 0, err
    event = json.loads(out)
    signature = base64.b64decode(event["data"]["signature"]["value"])
    verifier = Ed25519PublicKey.from_public_bytes(base64.b64decode(public))
    verifier.verify(signature, signing_input(event["data"]))  # raises if it doesn't verify
    assert event["subject"] == "cli-lab/frontier-1@2026-01-10"

    # Removal: the keys are revoked and the Kafka principal with them.
    code, out, err = await intake("lab", "remove", "cli-lab", "--reason", "test", "--yes")
    assert code == 0 and "revoked" in out, err
    code, _, err = await lab("follow", submission_id, "--timeout", "2")
    assert code == 1 and "error" in err and "Traceback" not in err, err
