"""The lab's command line: keys, manifests, signed submissions, outcomes.

    python -m services.labclient.cli keygen --out lab.key
    python -m services.labclient.cli init-manifest submission.yaml --lab-id example-lab
    python -m services.labclient.cli --lab-id example-lab --key lab.key --key-id k1 \
        submit submission.yaml            # build, sign, publish, wait for the decision
    python -m services.labclient.cli ... build submission.yaml -o filed.json   # sign only
    python -m services.labclient.cli ... publish filed.json                    # send as is
    python -m services.labclient.cli ... follow <submission id>
    python -m services.labclient.cli ... withdraw <submission id> --reason "..."
    python -m services.labclient.cli ... acknowledge ack.yaml   # signed, to lab.compliance

Identity and broker also come from FR_LAB_ID, FR_LAB_KEY, FR_LAB_KEY_ID and
FR_KAFKA_BOOTSTRAP.
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from pydantic import ValidationError
from rich.console import Console

from contracts import CloudEvent, ContractViolation, decode
from contracts.registry import TOPIC_BY_NAME
from services.labclient.client import LabClient, Outcome, describe
from services.labclient.keys import (
    generate_key,
    load_private_key,
    public_key_base64,
    save_private_key,
)
from services.labclient.signing import ManifestError, load_manifest

app = typer.Typer(help="frontier-review lab client: sign and submit models for review.")
console = Console(stderr=True)
LAB_INPUT_TYPES = (
    TOPIC_BY_NAME["lab.submissions"].event_types | TOPIC_BY_NAME["lab.compliance"].event_types
)


@dataclass
class Profile:
    lab_id: str | None
    key_path: Path | None
    key_id: str | None
    bootstrap: str
    submissions_topic: str
    events_topic: str
    compliance_topic: str

    def client(self, lab_id: str | None = None) -> LabClient:
        lab = lab_id or self.lab_id
        if lab is None or self.key_path is None or self.key_id is None:
            _fail(
                "--lab-id, --key and --key-id (or FR_LAB_ID, FR_LAB_KEY, FR_LAB_KEY_ID) are needed"
            )
        if lab_id and self.lab_id and lab_id != self.lab_id:
            _fail(f"the manifest's lab_id {lab_id!r} is not --lab-id {self.lab_id!r}")
        assert lab is not None and self.key_path is not None and self.key_id is not None
        return LabClient(
            lab_id=lab,
            key_id=self.key_id,
            key=load_private_key(self.key_path),
            bootstrap=self.bootstrap,
            submissions_topic=self.submissions_topic,
            events_topic=self.events_topic,
            compliance_topic=self.compliance_topic,
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
    bootstrap: Annotated[str, typer.Option(envvar="FR_KAFKA_BOOTSTRAP")] = "127.0.0.1:19092",
    submissions_topic: Annotated[str, typer.Option(envvar="FR_LAB_SUBMISSIONS_TOPIC")] = (
        "lab.submissions"
    ),
    events_topic: Annotated[str, typer.Option(envvar="FR_LAB_EVENTS_TOPIC")] = "intake.events",
    compliance_topic: Annotated[str, typer.Option(envvar="FR_LAB_COMPLIANCE_TOPIC")] = (
        "lab.compliance"
    ),
) -> None:
    ctx.obj = Profile(
        lab_id, key, key_id, bootstrap, submissions_topic, events_topic, compliance_topic
    )


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
    out: Path,
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
                f"`follow {event.subject} --event-id {event.id}`"
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
    manifest: Path,
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
    event_file: Path,
    wait: Annotated[bool, typer.Option(help="Wait for intake's answer.")] = True,
    timeout: float = 60.0,
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
    _exit_for(asyncio.run(_send_and_wait(client, event, wait and not compliance, timeout)))


@app.command()
def submit(
    ctx: typer.Context,
    manifest: Path,
    wait: Annotated[bool, typer.Option(help="Wait for intake's decision.")] = True,
    timeout: float = 60.0,
) -> None:
    """Build, sign and publish a submission; wait for the decision."""
    client, event = _signed_event(ctx, _load(manifest))
    _exit_for(asyncio.run(_send_and_wait(client, event, wait, timeout)))


@app.command()
def withdraw(
    ctx: typer.Context,
    submission_id: uuid.UUID,
    reason: Annotated[str | None, typer.Option(help="Why you withdraw.")] = None,
    wait: Annotated[bool, typer.Option(help="Wait for intake's answer.")] = True,
    timeout: float = 60.0,
) -> None:
    """Withdraw a submission (allowed while its review window is open)."""
    client = _profile(ctx).client()
    event = client.envelope(client.withdrawal(submission_id, reason))
    _exit_for(asyncio.run(_send_and_wait(client, event, wait, timeout)))


@app.command()
def follow(
    ctx: typer.Context,
    submission_id: uuid.UUID,
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
) -> None:
    """Print intake's events about a submission as they arrive (from the first)."""
    profile = _profile(ctx)
    client = LabClient(  # following signs nothing: no key needed
        lab_id=profile.lab_id or "-", bootstrap=profile.bootstrap, events_topic=profile.events_topic
    )

    async def run() -> None:
        async for event in client.follow(
            submission_id, seconds=timeout, event_ids=tuple(event_ids or ())
        ):
            if as_json:
                print(event.model_dump_json(exclude_none=True))
            else:
                print(f"{event.time.isoformat()}  {describe(event)}")
            sys.stdout.flush()

    asyncio.run(run())


@app.command()
def acknowledge(
    ctx: typer.Context,
    manifest: Path,
    send: Annotated[bool, typer.Option("--publish/--no-publish", help="Publish it.")] = True,
) -> None:
    """Sign a ComplianceAcknowledged from a manifest and publish it to lab.compliance."""
    fields = _load(manifest)
    lab_id = fields.get("lab_id")
    client = _profile(ctx).client(lab_id if isinstance(lab_id, str) else None)
    try:
        event = client.envelope(client.acknowledgement(fields))
    except (ManifestError, ValidationError) as exc:
        _fail(str(exc))
        raise
    if send:
        asyncio.run(_send_and_wait(client, event, False, 0))
    print(json.dumps(json.loads(event.model_dump_json(exclude_none=True)), indent=2))


if __name__ == "__main__":
    app()
