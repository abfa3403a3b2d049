"""The lab's command line (``frontier-lab``, or ``python -m services.labclient.cli``):
keys, manifests, signed submissions, outcomes, the decision API, acknowledgements.

    python -m services.labclient.cli keygen --out lab.key
    python -m services.labclient.cli init-manifest submission.yaml --lab-id example-lab
    python -m services.labclient.cli --lab-id example-lab --key lab.key --key-id k1 \
        submit submission.yaml            # build, sign, publish, wait for the decision
    python -m services.labclient.cli ... build submission.yaml -o filed.json   # sign only
    python -m services.labclient.cli ... publish filed.json                    # send as is
    python -m services.labclient.cli ... follow <submission id>
    python -m services.labclient.cli ... withdraw <submission id> --reason "..."
    python -m services.labclient.cli ... acknowledge --model-id M --enforcement-point gw-1
        [--decision-api http://127.0.0.1:8181 --api-token-file token.txt]
    python -m services.labclient.cli ... acknowledge ack.yaml   # a hand-written manifest
    python -m services.labclient.cli --lab-id example-lab decision-api --tokens callers.txt \
        [--host 127.0.0.1] [--port 8181] [--max-view-age-s 30]

``acknowledge --model-id`` acknowledges what an enforcer applied
(``Enforcer.applied``): with ``--decision-api`` that running enforcement
point's view (its /v1/status), else an enforcer of its own that reads the policy
feed to its end first. ``decision-api`` runs the HTTP decision API beside the
gateway, following the lab's policy feed (labs.<lab id>.policies).

Identity and broker also come from FR_LAB_ID, FR_LAB_KEY, FR_LAB_KEY_ID and the
connection settings FR_KAFKA_BOOTSTRAP, FR_KAFKA_CREDENTIALS_FILE (the file the
agency issued the lab) and FR_KAFKA_CA_FILE.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import httpx
import typer
import yaml
from aiokafka.errors import KafkaError
from pydantic import ValidationError
from rich.console import Console

from contracts import CloudEvent, ContractViolation, decode
from contracts.registry import TOPIC_BY_NAME
from services.labclient.client import FROM_BEGINNING, FeedMissing, LabClient, Outcome, describe
from services.labclient.enforcer import AppliedVersion, Enforcer
from services.labclient.feed import PolicyFeed
from services.labclient.keys import (
    generate_key,
    load_private_key,
    public_key_base64,
    save_private_key,
)
from services.labclient.settings import LabSettings
from services.labclient.sidecar import SidecarConfig, serve
from services.labclient.signing import ManifestError, acknowledgement_fields, load_manifest
from services.runtime.kafka import KafkaSecurityError

T = TypeVar("T")

app = typer.Typer(
    name="frontier-lab",
    help="frontier-lab, a lab's side of frontier-review: its keys, signed submissions and "
    "withdrawals, following the agency's answers, the enforcement point (the decision API) "
    "and compliance acknowledgements.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console(stderr=True)
LAB_INPUT_TYPES = (
    TOPIC_BY_NAME["lab.submissions"].event_types | TOPIC_BY_NAME["lab.compliance"].event_types
)


@dataclass
class Profile:
    lab_id: str | None
    key_path: Path | None
    key_id: str | None
    settings: LabSettings

    def lab(self, lab_id: str | None = None) -> str:
        lab = lab_id or self.lab_id
        if lab is None:
            _fail("--lab-id (or FR_LAB_ID) is needed")
        if lab_id and self.lab_id and lab_id != self.lab_id:
            _fail(f"the manifest's lab_id {lab_id!r} is not --lab-id {self.lab_id!r}")
        assert lab is not None
        return lab

    def client(self, lab_id: str | None = None) -> LabClient:
        lab = self.lab(lab_id)
        if self.key_path is None or self.key_id is None:
            _fail("--key and --key-id (or FR_LAB_KEY, FR_LAB_KEY_ID) are needed")
        assert self.key_path is not None and self.key_id is not None
        return LabClient(
            lab_id=lab,
            key_id=self.key_id,
            key=load_private_key(self.key_path),
            settings=self.settings,
        )


def _fail(message: str) -> None:
    console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(1)


def _profile(ctx: typer.Context) -> Profile:
    profile = ctx.obj
    assert isinstance(profile, Profile)
    return profile


@app.callback()
def main(
    ctx: typer.Context,
    lab_id: Annotated[str | None, typer.Option(envvar="FR_LAB_ID", help="Your lab id.")] = None,
    key: Annotated[
        Path | None, typer.Option(envvar="FR_LAB_KEY", help="Private key file (PEM).")
    ] = None,
    key_id: Annotated[
        str | None, typer.Option(envvar="FR_LAB_KEY_ID", help="The key id the agency registered.")
    ] = None,
    bootstrap: Annotated[
        str | None, typer.Option(help="Kafka host:port (default FR_KAFKA_BOOTSTRAP).")
    ] = None,
    kafka_credentials: Annotated[
        Path | None,
        typer.Option(
            help="The Kafka credentials file the agency issued your lab "
            "(default FR_KAFKA_CREDENTIALS_FILE)."
        ),
    ] = None,
    kafka_ca: Annotated[
        Path | None,
        typer.Option(help="CA bundle of the agency's broker (default FR_KAFKA_CA_FILE)."),
    ] = None,
) -> None:
    overrides: dict[str, Any] = {
        "lab_id": lab_id,
        "kafka_bootstrap": bootstrap,
        "kafka_credentials_file": kafka_credentials,
        "kafka_ca_file": kafka_ca,
    }
    try:
        settings = LabSettings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        _fail(f"settings: {exc}")
        raise
    ctx.obj = Profile(lab_id or settings.lab_id, key, key_id, settings)


@app.command()
def keygen(
    out: Annotated[Path, typer.Option(help="Where to write the private key (PEM, mode 0600).")],
) -> None:
    """Generate an Ed25519 key pair; prints the public key to register with the agency."""
    key = generate_key()
    try:
        save_private_key(key, out)
    except FileExistsError:
        _fail(f"{out} exists; never overwrite a key")
    public = public_key_base64(key)
    Path(f"{out}.pub").write_text(public + "\n")
    console.print(f"private key: {out} (keep it secret)\npublic key:  {out}.pub")
    print(public)


@app.command("init-manifest")
def init_manifest(
    out: Annotated[Path, typer.Argument(help="The manifest file to write (YAML).")],
    lab_id: Annotated[str, typer.Option("--lab-id", help="Your lab id.")],
) -> None:
    """Write a manifest template with a fresh submission id."""
    template = (Path(__file__).parent / "examples" / "submission.yaml").read_text()
    manifest = yaml.safe_load(template)
    old_id, old_lab = manifest["submission_id"], manifest["lab_id"]
    text = template.replace(str(old_id), str(uuid.uuid4())).replace(old_lab, lab_id)
    if out.exists():
        _fail(f"{out} exists")
    out.write_text(text)
    console.print(f"wrote {out}: edit it, then `submit {out}`")


def _load(path: Path) -> dict[str, Any]:
    try:
        return load_manifest(path)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        _fail(str(exc))
        raise


def _signed_event(
    ctx: typer.Context, manifest: dict[str, Any]
) -> tuple[LabClient, CloudEvent[Any]]:
    lab_id = manifest.get("lab_id")
    client = _profile(ctx).client(lab_id if isinstance(lab_id, str) else None)
    try:
        return client, client.envelope(client.submission(manifest))
    except ManifestError as exc:
        _fail(str(exc))
        raise


def _print_outcome(outcome: Outcome) -> None:
    colour = "green" if outcome.status in ("accepted", "withdrawn") else "yellow"
    console.print(f"[{colour}]{outcome.status}[/{colour}]: {outcome.summary}")
    if not outcome.bound:
        console.print(
            "  (not bound to your signature: the input under this event id did not "
            "authenticate — check your key id, key and clock — or it was not yours)"
        )


def _run(work: Coroutine[Any, Any, T]) -> T:
    """Run broker work; a connection problem is one line and exit 1, never a traceback."""
    try:
        return asyncio.run(work)
    except (FeedMissing, KafkaSecurityError) as exc:
        _fail(str(exc))
    except KafkaError as exc:
        _fail(f"Kafka: {type(exc).__name__}: {exc} (check the bootstrap, CA and credentials)")
    raise AssertionError  # _fail exits


async def _send_and_wait(
    client: LabClient, event: CloudEvent[Any], wait: bool, wait_s: float
) -> Outcome | None:
    async with client:
        await client.publish(event)
        console.print(f"published event {event.id} (subject {event.subject})")
        if not wait:
            return None
        try:
            return await client.outcome(event, within_s=wait_s)
        except TimeoutError as exc:
            console.print(
                f"[yellow]no answer yet[/yellow]: {exc}; try "
                f"`follow {event.subject} --event-id {event.id} --from-beginning`"
            )
            raise typer.Exit(3) from exc


def _exit_for(outcome: Outcome | None) -> None:
    if outcome is not None:
        _print_outcome(outcome)
        if outcome.status in ("rejected", "withdrawal_rejected"):
            raise typer.Exit(2)


@app.command()
def build(
    ctx: typer.Context,
    manifest: Annotated[Path, typer.Argument(help="The submission manifest (YAML/JSON).")],
    out: Annotated[Path | None, typer.Option("-o", "--out", help="Default: stdout.")] = None,
) -> None:
    """Build and sign a SubmissionFiled CloudEvent from a manifest (not published)."""
    _, event = _signed_event(ctx, _load(manifest))
    text = event.model_dump_json(exclude_none=True, indent=2)
    if out is None:
        print(text)
    else:
        out.write_text(text + "\n")
        console.print(f"wrote {out} (event {event.id})")


@app.command()
def publish(
    ctx: typer.Context,
    event_file: Annotated[Path, typer.Argument(help="A signed CloudEvent (JSON).")],
    wait: Annotated[bool, typer.Option(help="Wait for intake's answer.")] = True,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the answer.")] = 60.0,
) -> None:
    """Publish a signed CloudEvent file exactly as it is (e.g. from `build`)."""
    try:
        event = decode(event_file.read_bytes(), LAB_INPUT_TYPES)
    except (OSError, ContractViolation) as exc:
        _fail(f"{event_file}: {exc}")
        raise
    lab_id = getattr(event.data, "lab_id", None)
    client = _profile(ctx).client(lab_id)
    compliance = event.type in TOPIC_BY_NAME["lab.compliance"].event_types
    _exit_for(_run(_send_and_wait(client, event, wait and not compliance, timeout)))


@app.command()
def submit(
    ctx: typer.Context,
    manifest: Annotated[Path, typer.Argument(help="The submission manifest (YAML/JSON).")],
    wait: Annotated[bool, typer.Option(help="Wait for intake's decision.")] = True,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the answer.")] = 60.0,
) -> None:
    """Build, sign and publish a submission; wait for the decision."""
    client, event = _signed_event(ctx, _load(manifest))
    _exit_for(_run(_send_and_wait(client, event, wait, timeout)))


@app.command()
def withdraw(
    ctx: typer.Context,
    submission_id: Annotated[uuid.UUID, typer.Argument(help="The submission (UUID).")],
    reason: Annotated[str | None, typer.Option(help="Why you withdraw.")] = None,
    wait: Annotated[bool, typer.Option(help="Wait for intake's answer.")] = True,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the answer.")] = 60.0,
) -> None:
    """Withdraw a submission (allowed while its review window is open)."""
    client = _profile(ctx).client()
    event = client.envelope(client.withdrawal(submission_id, reason))
    _exit_for(_run(_send_and_wait(client, event, wait, timeout)))


@app.command()
def follow(
    ctx: typer.Context,
    submission_id: Annotated[uuid.UUID, typer.Argument(help="The submission (UUID).")],
    timeout: Annotated[float, typer.Option(help="Stop after this many seconds.")] = 30.0,
    as_json: Annotated[bool, typer.Option("--json", help="One CloudEvent per line.")] = False,
    event_ids: Annotated[
        list[str] | None,
        typer.Option(
            "--event-id",
            help="Also an answer intake keyed by this input's event id (an input it could "
            "not trust for the submission); repeatable.",
        ),
    ] = None,
    from_beginning: Annotated[
        bool,
        typer.Option(
            "--from-beginning",
            help="Print the answers already on the feed too (its history), not only new ones.",
        ),
    ] = False,
) -> None:
    """Print the agency's answers about a submission as they arrive (from now on, or
    with --from-beginning from the first)."""
    profile = _profile(ctx)
    client = LabClient(lab_id=profile.lab(), settings=profile.settings)  # no key needed
    keys = tuple(event_ids or ())

    async def run() -> None:
        async with client:
            since = (
                FROM_BEGINNING
                if from_beginning
                else await client.position({str(submission_id), *keys})
            )
            async for event in client.follow(
                submission_id, seconds=timeout, event_ids=keys, since=since
            ):
                if as_json:
                    print(event.model_dump_json(exclude_none=True))
                else:
                    print(f"{event.time.isoformat()}  {describe(event)}")
                sys.stdout.flush()

    _run(run())


@app.command()
def acknowledge(
    ctx: typer.Context,
    manifest: Annotated[
        Path | None, typer.Argument(help="A hand-written acknowledgement (YAML/JSON).")
    ] = None,
    model_id: Annotated[
        str | None, typer.Option(help="Acknowledge the version an enforcer applied.")
    ] = None,
    enforcement_points: Annotated[
        list[str] | None,
        typer.Option("--enforcement-point", help="An enforcement point's name; repeatable."),
    ] = None,
    decision_api: Annotated[
        str | None, typer.Option(help="Read the applied version from this decision API.")
    ] = None,
    api_token_file: Annotated[
        Path | None, typer.Option(help="Bearer token for --decision-api (file, first line).")
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to read the feed to its end.")] = 60.0,
    send: Annotated[bool, typer.Option("--publish/--no-publish", help="Publish it.")] = True,
) -> None:
    """Sign a ComplianceAcknowledged and publish it to lab.compliance.

    With --model-id, for the version the enforcer applied (its hash, orders and
    the time it applied it); else from a manifest.
    """
    profile = _profile(ctx)
    if manifest is not None:
        fields = _load(manifest)
    elif model_id is not None and enforcement_points:
        lab = profile.lab_id or model_id.split("/", 1)[0]
        if decision_api is not None:
            applied = _applied_from_api(decision_api, api_token_file, model_id)
        else:
            applied = _run(_applied_from_feed(profile, lab, model_id, timeout))
        try:
            fields = acknowledgement_fields(applied, lab, enforcement_points)
        except ManifestError as exc:
            _fail(str(exc))
            raise
    else:
        _fail("give a manifest, or --model-id with at least one --enforcement-point")
        raise AssertionError  # _fail exits
    lab_id = fields.get("lab_id")
    client = profile.client(lab_id if isinstance(lab_id, str) else None)
    try:
        event = client.envelope(client.acknowledgement(fields))
    except (ManifestError, ValidationError) as exc:
        _fail(str(exc))
        raise
    if send:
        _run(_send_and_wait(client, event, False, 0))
    print(json.dumps(json.loads(event.model_dump_json(exclude_none=True)), indent=2))


async def _applied_from_feed(
    profile: Profile, lab_id: str, model_id: str, within_s: float
) -> AppliedVersion:
    enforcer = Enforcer(lab_id=lab_id)
    async with PolicyFeed(enforcer, profile.settings) as feed:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        while not enforcer.ready:
            if loop.time() > deadline:
                _fail(f"the policy feed {feed.topic} was not read to its end in time")
            await asyncio.sleep(0.05)
    applied = enforcer.applied(model_id)
    if applied is None:
        _fail(f"the policy feed has no policy for {model_id}")
    assert applied is not None
    return applied


def _applied_from_api(url: str, token_file: Path | None, model_id: str) -> AppliedVersion:
    if token_file is None:
        _fail("--decision-api needs --api-token-file")
    assert token_file is not None
    token = token_file.read_text(encoding="utf-8").splitlines()[0].strip()
    try:
        response = httpx.get(
            f"{url.rstrip('/')}/v1/status",
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        response.raise_for_status()
    except httpx.HTTPError as exc:
        _fail(f"{url}: {exc}")
        raise
    status = response.json()
    if not status.get("ready"):
        _fail(f"{url} has not caught up with the policy feed")
    entry = status.get("models", {}).get(model_id)
    if entry is None:
        _fail(f"{url} enforces no policy for {model_id}")
    return AppliedVersion(
        model_id=model_id,
        version=entry["version"],
        content_hash=entry["content_hash"],
        order_ids=tuple(uuid.UUID(o) for o in entry["order_ids"]),
        published_at=datetime.fromisoformat(entry["published_at"]),
        applied_at=datetime.fromisoformat(entry["applied_at"]),
        problem=entry.get("problem"),
    )


@app.command("decision-api")
def decision_api_command(
    ctx: typer.Context,
    tokens: Annotated[Path, typer.Option(help="Caller bearer tokens, one per line.")],
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.")] = 8181,
    max_view_age_s: Annotated[
        float, typer.Option(help="/readyz is 503 when the feed view is older than this.")
    ] = 30.0,
    max_batch: Annotated[int, typer.Option(help="Most questions in one batch.")] = 1000,
) -> None:
    """Serve the HTTP decision API (OpenAPI at /docs), following the policy feed."""
    profile = _profile(ctx)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    config = SidecarConfig(
        lab_id=profile.lab(),
        settings=profile.settings,
        tokens_file=tokens,
        host=host,
        port=port,
        max_view_age_s=max_view_age_s,
        max_batch=max_batch,
    )
    try:
        asyncio.run(serve(config))
    except (OSError, ValueError) as exc:
        _fail(str(exc))


if __name__ == "__main__":
    app()
