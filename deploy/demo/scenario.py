"""End-to-end scenario: a lab submits a model and the agency reviews it.

Run by ``bash deploy/run.sh`` once the stack, the services and the demo lab
model server are up. It plays the lab (its own key, the lab client) and the
agency's operator (the intake CLI), and checks what the system does:

1. the operator registers the lab and its public key;
2. the lab submits a covered model whose evaluation endpoint is the demo lab
   model server; intake verifies the signature and opens the review window;
3. a forged copy (signed with a key the agency never registered) is rejected
   with a reason code, and nothing else happens to it;
4. evaluation runs the benign proxy suites with inspect_ai against the model
   over HTTP and records findings; the window closes (days last seconds here);
5. the whole story is one OpenTelemetry trace across the services.

Exits non-zero, saying what is missing, if any step does not happen.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer

from contracts import CloudEvent, ContractViolation, Event, decode
from contracts.events.evaluation import EvaluationCompleted, EvaluationStarted, FindingRecorded
from contracts.events.intake import ReviewWindowClosed, SubmissionAccepted, SubmissionRejected
from contracts.registry import TOPIC_BY_NAME
from services.labclient.client import LabClient
from services.labclient.keys import generate_key, load_private_key, save_private_key
from services.labclient.settings import LabSettings
from services.runtime.kafka import KafkaSettings, aiokafka_options

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / ".local" / "demo"
LAB, KEY_ID = "demo-lab", "demo-k1"
CREDENTIAL_REF = "labs/demo-lab/eval-api-key"
PY = sys.executable
OPERATOR_FILE = "FR_KAFKA_OPERATOR_CREDENTIALS_FILE"


def say(text: str) -> None:
    print(text, flush=True)


def operator(*args: str) -> subprocess.CompletedProcess[str]:
    """The agency operator's intake CLI, as a person would run it."""
    return subprocess.run(
        [PY, "-m", "services.intake.cli", *args], capture_output=True, text=True, check=False
    )


def register_lab() -> Any:
    DEMO.mkdir(parents=True, exist_ok=True)
    key_file = DEMO / "lab.key"
    if not key_file.exists():
        save_private_key(generate_key(), key_file)
    key = load_private_key(key_file)
    if LAB not in operator("lab", "list").stdout:
        done = operator("lab", "register", LAB, "--name", "Demo Lab")
        if done.returncode:
            sys.exit(f"registering the lab failed:\n{done.stdout}{done.stderr}")
        say(f"operator: registered lab {LAB}; {done.stdout.strip().splitlines()[-1]}")
    else:
        say(f"operator: lab {LAB} already registered")
    if KEY_ID not in operator("lab", "key", "list", LAB).stdout:
        public = key.public_key().public_bytes_raw()
        done = operator(
            "lab", "key", "add", LAB, KEY_ID, "--public-key", base64.b64encode(public).decode()
        )
        if done.returncode:
            sys.exit(f"registering the key failed:\n{done.stdout}{done.stderr}")
        say(f"operator: registered key {KEY_ID} of lab {LAB}")
    credentials = lab_settings().kafka_credentials_file
    if credentials is not None and not credentials.exists() and secured():
        # Registered before labs had principals of their own: provision its Kafka side.
        done = subprocess.run(
            [PY, "-m", "services.runtime.principals", "add", "lab", LAB, "--out", str(credentials)],
            capture_output=True,
            text=True,
            check=False,
            env=os.environ
            | {"FR_KAFKA_CREDENTIALS_FILE": os.environ["FR_KAFKA_OPERATOR_CREDENTIALS_FILE"]},
        )
        if done.returncode:
            sys.exit(f"provisioning the lab's Kafka principal failed:\n{done.stderr}")
    # The evaluation service resolves the credential reference at run time.
    secret = ROOT / ".local" / "secrets" / CREDENTIAL_REF
    secret.parent.mkdir(parents=True, exist_ok=True)
    secret.write_text(os.environ.get("DEMO_LAB_API_KEY", "demo-key"))
    return key


def manifest(model_url: str, profile: str) -> dict[str, Any]:
    version = time.strftime("%Y%m%d-%H%M%S")
    return {
        "submission_id": str(uuid.uuid4()),
        "lab_id": LAB,
        "model": {
            "name": f"demo-{profile}",
            "version": version,
            "family": "Demo",
            "modalities": ["text"],
            "training_compute_flop": 3.2e26,
            "planned_release_date": (date.today() + timedelta(days=40)).isoformat(),
            "deployment_channels": ["api"],
            "declared_capabilities": ["code-generation"],
        },
        "evaluation_access": {
            "endpoint": model_url,
            "api_model": profile,
            "credential_ref": CREDENTIAL_REF,
        },
        "requested_review_days": 30,
        "contacts": [{"name": "Ada Demo", "email": "ada@demo-lab.test", "role": "primary"}],
    }


def lab_settings() -> LabSettings:
    """The demo lab's own Kafka principal: the credentials `lab register` issued it."""
    tenants = Path(os.environ.get("FR_TENANT_CREDENTIALS_DIR", ROOT / ".local/kafka/tenants"))
    return LabSettings(lab_id=LAB, kafka_credentials_file=tenants / f"lab.{LAB}.json")


def secured() -> bool:
    return os.environ.get("FR_KAFKA_SECURITY_PROTOCOL", "SASL_SSL") != "PLAINTEXT"


def observer_settings() -> KafkaSettings:
    """The agency's view of its internal topics (the operator's principal)."""
    if not secured():
        return KafkaSettings()
    operator = os.environ[OPERATOR_FILE]
    return KafkaSettings(kafka_credentials_file=Path(operator))


async def watch(submission_id: str, until: float) -> list[tuple[float, Any]]:
    """Every event about the submission on intake.events and evaluation.events."""
    topics = ["intake.events", "evaluation.events"]
    types = {
        **TOPIC_BY_NAME["intake.events"].event_types,
        **TOPIC_BY_NAME["evaluation.events"].event_types,
    }
    consumer = AIOKafkaConsumer(
        *topics,
        **aiokafka_options(observer_settings()),
        group_id=None,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    await consumer.start()
    seen: list[tuple[float, CloudEvent[Event]]] = []
    started = time.monotonic()
    try:
        while time.monotonic() < until:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for record in records:
                    if record.key != submission_id.encode():
                        continue
                    try:
                        event = decode(record.value or b"", types)
                    except ContractViolation:
                        continue
                    seen.append((time.monotonic() - started, event))
                    say(
                        f"  +{seen[-1][0]:5.1f}s  {event.type.rsplit('.', 1)[-1]:<22} "
                        f"{summary(event.data)}"
                    )
                    if isinstance(event.data, ReviewWindowClosed):
                        return seen
    finally:
        await consumer.stop()
    return seen


def summary(data: Event) -> str:
    if isinstance(data, SubmissionAccepted):
        return f"window {data.review_days} days, deadline {data.deadline:%H:%M:%S}"
    if isinstance(data, EvaluationStarted):
        return f"{len(data.suites)} suites planned"
    if isinstance(data, FindingRecorded):
        return f"{data.suite_id} ({data.domain}): {data.metric}={data.score:.2f}"
    if isinstance(data, EvaluationCompleted):
        return ", ".join(f"{s.suite_id}={s.status}" for s in data.suites)
    return ""


def trace_of(event: CloudEvent[Event]) -> str | None:
    return event.traceparent.split("-")[1] if event.traceparent else None


def spans_in(trace_id: str) -> Counter[str]:
    traces = ROOT / ".local" / "traces.jsonl"
    services: Counter[str] = Counter()
    if traces.exists():
        for line in traces.read_text().splitlines():
            span = json.loads(line)
            if span["context"]["trace_id"] == f"0x{trace_id}":
                services[span["resource"]["attributes"]["service.name"]] += 1
    return services


async def main(model_url: str, timeout_s: float) -> int:
    key = register_lab()
    settings = lab_settings()
    async with LabClient(lab_id=LAB, key_id=KEY_ID, key=key, settings=settings) as lab:
        submitted = await lab.submit(manifest(model_url, "capable"))
        submission_id = str(submitted.data.submission_id)
        say(f"lab: submitted {submission_id} (model demo-capable, 3.2e26 FLOP)")

        # A forger with the lab's Kafka access but not its signing key.
        forger = LabClient(lab_id=LAB, key_id=KEY_ID, key=generate_key(), settings=settings)
        async with forger:
            forged = await forger.submit(manifest(model_url, "capable"))
            outcome = await forger.outcome(forged, within_s=30)
        say(f"forger: {outcome.status} - {outcome.summary}")
        # Input that does not authenticate learns no more than that (the operator's log
        # and `intake.cli refusals` have the precise reason: bad_signature).
        if not isinstance(outcome.event.data, SubmissionRejected) or (
            outcome.event.data.reason != "authentication_failed" or outcome.bound
        ):
            say("FAILED: a forged submission was not refused as authentication_failed")
            return 1

    say(f"following {submission_id}:")
    events = [e for _, e in await watch(submission_id, time.monotonic() + timeout_s)]
    kinds = [type(e.data) for e in events]
    missing = [
        k.__name__
        for k in (
            SubmissionAccepted,
            EvaluationStarted,
            FindingRecorded,
            EvaluationCompleted,
            ReviewWindowClosed,
        )
        if k not in kinds
    ]
    if missing:
        say(f"FAILED: never saw {', '.join(missing)} within {timeout_s:.0f} s")
        return 1
    findings = [e.data for e in events if isinstance(e.data, FindingRecorded)]
    say(
        f"{len(findings)} findings; mean score {sum(f.score for f in findings) / len(findings):.2f}"
    )

    trace_id = trace_of(events[0])
    await asyncio.sleep(6)  # the services export spans in batches every few seconds
    services = spans_in(trace_id) if trace_id else Counter()
    say(f"trace {trace_id}: " + ", ".join(f"{n} spans from {s}" for s, n in services.items()))
    if not {"intake", "evaluation"} <= set(services):
        say("FAILED: the submission's trace does not span intake and evaluation")
        return 1
    say("scenario complete: accepted, evaluated, window closed, forgery refused, one trace")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="frontier-review end-to-end scenario")
    parser.add_argument("--model-url", default="http://127.0.0.1:8900/v1")
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.model_url, args.timeout)))
