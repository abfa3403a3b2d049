"""The end-to-end scenario: one model's review, from the lab's submission to the conclusion.

``bash deploy/run.sh`` runs it in two parts around starting the lab's enforcement point:

    python -m deploy.demo.scenario onboard   # the operator registers the lab and reviewers
    python -m deploy.demo.scenario review    # everything else, then the summary

What happens is the real system doing it; the scenario only plays the people
(deploy/demo/parties.py: the commands they type, each with its own Kafka principal)
and watches the agency's topics as the operator to show and check each step
(deploy/demo/observer.py). The demo model (services/evaluation/demo_model, profile
``capable``) solves every toy CTF puzzle of the cyber proxy suite, which the
thresholds policy (services/risk/policies) rates critical in cyber: that, not any
edited result, is why the review escalates. Exits non-zero, naming the step and what
is missing, when something does not happen.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import yaml
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from contracts import CloudEvent, ContractViolation, Event, decode
from contracts.events import (
    AccessPolicyPublished,
    ComplianceAcknowledged,
    ComplianceRejected,
    EscalationDecided,
    EscalationRaised,
    EvaluationCompleted,
    EvaluationFailed,
    EvaluationStarted,
    FindingRecorded,
    FindingShared,
    RestrictionOrdered,
    ReviewConcluded,
    ReviewWindowClosed,
    RiskAssessed,
    SubmissionAccepted,
    SubmissionFiled,
)
from contracts.events.common import make_model_id
from contracts.events.risk import ReviewOutcome
from contracts.registry import TOPIC_BY_NAME
from deploy.demo import customers
from deploy.demo.observer import AgencyObserver, Missing, partitions
from deploy.demo.parties import (
    DEMO,
    ROOT,
    CommandFailed,
    Party,
    environment,
    operator_environment,
    shown,
)
from services.labclient.keys import load_private_key, public_key_base64
from services.runtime.kafka import KafkaSettings, aiokafka_options

LAB, LAB_NAME, KEY_ID = "demo-lab", "Demo Lab", "demo-k1"
CREDENTIAL_REF = f"labs/{LAB}/eval-api-key"
PROFILE = "capable"
REVIEWERS = (("demo-reviewer-1", "Reviewer One"), ("demo-reviewer-2", "Reviewer Two"))
GOVERNMENT = "demo-gov"
ENFORCEMENT_POINT = "demo-gateway"
SERVICES = ("intake", "evaluation", "risk", "access")

# A terminal gets its own width; a log (run.sh piped) lines of 110 characters.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 110)


def reviewer_key_id(reviewer_id: str) -> str:
    """The id of the reviewer's key pair in .local/demo: named after the public key, since
    a key id belongs to one key for ever and a key is registered once (the trust
    registry's rules), so a new key pair gets a new id and a re-run finds its own."""
    public = (DEMO / f"{reviewer_id}.pub").read_bytes()
    return f"{reviewer_id}-{hashlib.sha256(public).hexdigest()[:8]}"


class Unexpected(Exception):
    """The system did something, but not what the review needs (the message says what)."""


@dataclass(frozen=True)
class Demo:
    """Where things are: ports, files and credentials, from the variables run.sh exports."""

    tenants: Path
    decision_api: str
    access_api: str
    intake_api: str
    console_url: str
    console_tokens: Path
    asyncapi_url: str
    model_url: str
    access_tokens: Path
    decision_tokens: Path
    operator_credentials: Path | None
    seconds_per_day: float

    @classmethod
    def from_environment(cls) -> Demo:
        env = os.environ

        def port(name: str, default: int) -> int:
            return int(env.get(name, default))

        operator = env.get("FR_KAFKA_OPERATOR_CREDENTIALS_FILE")
        return cls(
            tenants=Path(env.get("FR_TENANT_CREDENTIALS_DIR", ROOT / ".local/kafka/tenants")),
            decision_api=f"http://127.0.0.1:{port('FR_DECISION_API_PORT', 8181)}",
            access_api=f"http://127.0.0.1:{port('FR_ACCESS_HTTP_PORT', 8304)}",
            intake_api=f"http://127.0.0.1:{port('FR_INTAKE_HTTP_PORT', 8301)}",
            console_url=f"http://127.0.0.1:{port('FR_CONSOLE_HTTP_PORT', 8305)}",
            console_tokens=Path(env.get("FR_CONSOLE_TOKENS_FILE", ROOT / ".local/console/tokens")),
            asyncapi_url=f"http://127.0.0.1:{port('FR_ASYNCAPI_DOCS_PORT', 8306)}",
            model_url=f"http://127.0.0.1:{port('FR_DEMO_MODEL_PORT', 8900)}/v1",
            access_tokens=Path(
                env.get("FR_ACCESS_API_TOKENS_FILE", DEMO / "access-api-tokens.txt")
            ),
            decision_tokens=Path(
                env.get("FR_ENFORCER_TOKENS_FILE", DEMO / "decision-api-tokens.txt")
            ),
            operator_credentials=Path(operator) if operator else None,
            seconds_per_day=float(env.get("FR_INTAKE_SECONDS_PER_DAY", 86_400)),
        )

    def credentials(self, principal: str) -> Path:
        """The Kafka credentials file a tenant's registration wrote (e.g. lab.demo-lab)."""
        return self.tenants / f"{principal}.json"

    def kafka(self, credentials: Path | None) -> KafkaSettings:
        return KafkaSettings(kafka_credentials_file=credentials)


def token(path: Path) -> str:
    return path.read_text(encoding="utf-8").splitlines()[0].strip()


def heading(number: int, title: str) -> None:
    console.print()
    console.rule(f"[bold]{number:>2}. {escape(title)}", align="left")


def say(text: str) -> None:
    console.print(f"  {text}", soft_wrap=True)


def ids(ran_json: str, field_name: str) -> set[str]:
    return {str(row[field_name]) for row in json.loads(ran_json or "[]")}


# --- 1. the lab joins ------------------------------------------------------------------------


def onboard(demo: Demo) -> None:
    """The lab makes its key pair; the operator registers the lab (which provisions its
    Kafka principal and feeds) and its public key with intake, whose registry reaches
    access on intake.registry."""
    heading(1, "A lab joins: its Kafka principal and its signing key")
    DEMO.mkdir(parents=True, exist_ok=True)
    operator = Party("operator", operator_environment(), console)
    credentials = demo.credentials(f"lab.{LAB}")
    lab = Party(LAB, environment(credentials, database=False), console)
    key = DEMO / "lab.key"
    public = DEMO / "lab.key.pub"
    if not key.exists():
        lab.run("frontier-lab", "keygen", "--out", key)
    elif not public.exists():  # made by an older demo, without the .pub file
        public.write_text(public_key_base64(load_private_key(key)) + "\n")
    earlier = LAB in ids(
        operator.run("frontier-review", "labs", "list", "--json", quiet=True).out, "id"
    )
    if not earlier:
        operator.run("frontier-review", "labs", "register", LAB, "--name", LAB_NAME)
    else:
        say(f"{LAB} is registered already (an earlier run)")
        if not credentials.exists():  # registered before labs had principals of their own
            operator.run("frontier-review", "principals", "add", "lab", LAB, "--out", credentials)
    keys = operator.run("frontier-review", "labs", "key", "list", LAB, "--json", quiet=True)
    if KEY_ID not in ids(keys.out, "key_id"):
        operator.run("frontier-review", "labs", "key", "add", LAB, KEY_ID, "--public-key", public)

    # Access verifies compliance acknowledgements with the lab's keys as intake announces
    # them on intake.registry: nothing is registered with access.
    def access_has_key() -> bool:
        listed = operator.run(
            "frontier-review", "access", "labs", "key", "list", LAB, "--json", quiet=True
        )
        return KEY_ID in ids(listed.out, "key_id")

    if earlier and not access_has_key():  # registered before intake announced its entries
        operator.run("frontier-review", "labs", "publish", LAB)
    deadline = time.monotonic() + 30
    while not access_has_key():
        if time.monotonic() > deadline:
            raise Unexpected(f"access did not receive key {KEY_ID} of {LAB} within 30 s")
        time.sleep(0.5)
    say(f"access received key {KEY_ID} of {LAB} from intake's registry (intake.registry)")
    # The evaluation service resolves the submission's credential reference at run time
    # (in production: the agency's secret store, filled through the lab's secure channel).
    secret = ROOT / ".local" / "secrets" / CREDENTIAL_REF
    secret.parent.mkdir(parents=True, exist_ok=True)
    secret.write_text(os.environ.get("DEMO_LAB_API_KEY", "demo-key"))
    if not credentials.exists():
        raise Unexpected(f"registering {LAB} wrote no Kafka credentials to {credentials}")
    say(
        f"[green]{LAB}[/green] has its own Kafka principal lab.{LAB} ({credentials.name}): it "
        f"may write lab.submissions and lab.compliance, and read only labs.{LAB}.answers and "
        f"labs.{LAB}.policies"
    )
    heading(2, "The agency's reviewers: a key pair and a Kafka principal each")
    for reviewer_id, name in REVIEWERS:
        register_reviewer(demo, operator, reviewer_id, name)


def register_reviewer(demo: Demo, operator: Party, reviewer_id: str, name: str) -> None:
    """A reviewer with a key pair and a Kafka principal of their own, registered once
    (before any review starts: the two-person rule's deadline is short in the demo)."""
    key = DEMO / f"{reviewer_id}.key"
    public = key.with_suffix(".pub")  # where `reviewers keygen` puts it
    if not key.exists():
        operator.run("frontier-review", "reviewers", "keygen", key, show=1)
    listed = operator.run("frontier-review", "reviewers", "list", "--json", quiet=True)
    if reviewer_id not in ids(listed.out, "id"):
        operator.run("frontier-review", "reviewers", "register", reviewer_id, "--name", name)
    else:
        say(f"{reviewer_id} is registered already (an earlier run)")
    keys = operator.run(
        "frontier-review", "reviewers", "key", "list", reviewer_id, "--json", quiet=True
    )
    if reviewer_key_id(reviewer_id) not in ids(keys.out, "key_id"):
        operator.run(
            "frontier-review",
            "reviewers",
            "key",
            "add",
            reviewer_id,
            reviewer_key_id(reviewer_id),
            "--public-key",
            public,
            show=1,
        )
    credentials = demo.credentials(f"reviewer.{reviewer_id}")
    if not credentials.exists():
        operator.run(
            "frontier-review", "principals", "add", "reviewer", reviewer_id, "--out", credentials
        )


# --- 3..15. the review -----------------------------------------------------------------------


@dataclass
class Review:
    demo: Demo
    seen: AgencyObserver
    submission_id: str
    model_id: str
    manifest: dict[str, Any]
    operator: Party
    lab: Party
    started: float = field(default_factory=time.monotonic)
    step: tuple[int, str] = (1, "")
    accepted: SubmissionAccepted | None = None
    trace_id: str | None = None
    escalation: EscalationRaised | None = None
    interim: RestrictionOrdered | None = None
    order: RestrictionOrdered | None = None
    policy: AccessPolicyPublished | None = None
    stix_file: Path | None = None

    def heading(self, number: int, title: str) -> None:
        self.step = (number, title)
        heading(number, title)

    @property
    def lab_identity(self) -> list[str]:
        return ["--lab-id", LAB, "--key", str(DEMO / "lab.key"), "--key-id", KEY_ID]

    async def play(self) -> None:
        await self.submit()
        await self.intake_accepts()
        await self.evaluation_runs()
        await self.risk_escalates()
        await self.interim_restriction()
        await self.impact_preview()
        await self.reviewers_confirm()
        await self.access_publishes()
        await self.enforcer_decides()
        await self.lab_acknowledges()
        await self.government_receives()
        await self.review_concludes()
        await self.audit_verifies()

    # 3 -------------------------------------------------------------------------------------
    async def submit(self) -> None:
        self.heading(3, "The lab files a signed submission")
        say(
            "[dim](the scenario watches the agency's topics intake.events, evaluation.events, "
            "risk.events, access.events and access.policies as the operator, the super user, "
            "to show each step; every party acts with its own principal)[/dim]"
        )
        filed = DEMO / f"submission-{self.manifest['model']['version']}.yaml"
        filed.write_text(yaml.safe_dump(self.manifest, sort_keys=False))
        answer = self.lab.run("frontier-lab", *self.lab_identity, "submit", filed)
        if "accepted" not in answer.err:
            raise Unexpected(f"the lab was not told its submission was accepted: {answer.err}")
        # A forger with the lab's Kafka access but not its signing key.
        forger_key = DEMO / "forger.key"
        if not forger_key.exists():
            self.lab.run("frontier-lab", "keygen", "--out", forger_key, show=0)
        forged = DEMO / "forged.yaml"
        forged.write_text(
            yaml.safe_dump(self.manifest | {"submission_id": str(uuid.uuid4())}, sort_keys=False)
        )
        say("a forger with the lab's Kafka credentials but another key tries the same:")
        refused = self.lab.run(
            "frontier-lab",
            "--lab-id",
            LAB,
            "--key",
            forger_key,
            "--key-id",
            KEY_ID,
            "submit",
            forged,
            expect=2,
            show=2,
        )
        if "authentication_failed" not in refused.err:
            raise Unexpected(f"a forged submission was not refused: {refused.err}")

    # 4 -------------------------------------------------------------------------------------
    async def intake_accepts(self) -> None:
        self.heading(4, "Intake verifies the signature, accepts, and opens the review window")
        event = await self.seen.wait_for(
            SubmissionAccepted, what="intake's acceptance", within_s=30
        )
        accepted = self.accepted = event.data
        self.trace_id = trace_of(event)
        left = (accepted.deadline - datetime.now(UTC)).total_seconds()
        say(
            f"intake.events: SubmissionAccepted ({accepted.reason}): {accepted.detail}; model id "
            f"[bold]{accepted.model_id}[/bold]"
        )
        say(
            f"review window: {accepted.review_days} days, closes at "
            f"{accepted.deadline:%H:%M:%S} UTC (in {left:.0f} s: a day lasts "
            f"{self.demo.seconds_per_day:g} s here)"
        )

    # 5 -------------------------------------------------------------------------------------
    async def evaluation_runs(self) -> None:
        self.heading(5, "Evaluation runs the proxy suites against the lab's model (inspect_ai)")
        started = await self.seen.wait_for(
            EvaluationStarted, what="the evaluation plan", within_s=60
        )
        say(
            f"evaluation.events: EvaluationStarted: {len(started.data.suites)} suites of registry "
            f"{started.data.registry_version} against {self.demo.model_url} (profile {PROFILE})"
        )
        printed: set[uuid.UUID] = set()

        def progress() -> EvaluationCompleted | None:
            for finding in self.seen.all(FindingRecorded):
                if finding.finding_id not in printed:
                    printed.add(finding.finding_id)
                    say(
                        f"  FindingRecorded  {finding.suite_id:<26} {finding.domain:<9} "
                        f"{finding.metric}={finding.score:.2f} ({finding.samples_scored} samples)"
                    )
            for failed in self.seen.all(EvaluationFailed):
                raise Unexpected(
                    f"suite {failed.suite_id} failed: {failed.failure}: {failed.error}"
                )
            done = self.seen.all(EvaluationCompleted)
            return done[0] if done else None

        with console.status("evaluating ..."):
            completed = await self.seen.until(progress, what="the evaluation's end", within_s=300)
        statuses = Counter(s.status.value for s in completed.suites)
        say(f"EvaluationCompleted ({completed.ended_by}): {dict(statuses)}")
        if set(statuses) != {"completed"}:
            raise Unexpected(f"not every suite completed: {dict(statuses)}")

    # 6 -------------------------------------------------------------------------------------
    async def risk_escalates(self) -> None:
        self.heading(6, "Risk applies the thresholds policy: critical in cyber, escalated")

        def critical_cyber(assessed: RiskAssessed) -> bool:
            return any(d.domain == "cyber" and d.level == "critical" for d in assessed.domains)

        assessed = await self.seen.wait_for(
            RiskAssessed, what="a critical cyber assessment", within_s=60, where=critical_cyber
        )
        for domain in assessed.data.domains:
            if domain.level != "low" or domain.early_warning:
                warning = " (early warning)" if domain.early_warning else ""
                say(f"{domain.domain:<9} {domain.level:<9}{warning} {escape(domain.rationale)}")
        say(
            f"overall {assessed.data.overall_level} under policy {assessed.data.policy_version}; "
            f"escalation required: {assessed.data.escalation_required}"
        )
        event = await self.seen.wait_for(EscalationRaised, what="the escalation", within_s=30)
        escalation = self.escalation = event.data
        say(
            f"risk.events: EscalationRaised {escalation.escalation_id}: {escalation.level} in "
            f"{', '.join(escalation.domains)}; {escalation.reviewers_required} reviewers must sign "
            f"by {escalation.decide_by:%H:%M:%S} UTC; recommended: "
            f"{', '.join(escalation.recommended_actions)}"
        )

    # 7 -------------------------------------------------------------------------------------
    async def interim_restriction(self) -> None:
        self.heading(7, "An interim restriction on foreign nationals is ordered at once")
        event = await self.seen.wait_for(
            RestrictionOrdered, what="the interim order", within_s=30, where=lambda o: o.interim
        )
        interim = self.interim = event.data
        say(f"risk.events: RestrictionOrdered (interim) {interim.order_id}: {scope_text(interim)}")
        published = await self.seen.wait_for(
            AccessPolicyPublished,
            what="the interim order's policy",
            within_s=30,
            where=lambda p: interim.order_id in p.order_ids,
        )
        say(
            f"access.policies: AccessPolicyPublished v{published.data.policy_version} "
            f"(hash {published.data.content_hash[:12]}) for {self.model_id}"
        )
        await self.show_problems(published.data.policy_version)

    async def show_problems(self, version: int) -> None:
        """What access reports about the model's current policy (its agency API)."""
        current = await self.access_api("GET", f"/v1/models/{self.model_id}/policy")
        if current.get("policy_version") != version:
            return
        for problem in current.get("problems", []):
            say(f"[yellow]access reports a problem with v{version}:[/yellow] {escape(problem)}")

    async def access_api(self, method: str, path: str, **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {token(self.demo.access_tokens)}"}
        async with httpx.AsyncClient(base_url=self.demo.access_api, timeout=60) as client:
            response = await client.request(method, path, headers=headers, **kwargs)
        if response.status_code != 200:
            raise Unexpected(f"access API {method} {path}: {response.status_code} {response.text}")
        return response.json()

    # 8 -------------------------------------------------------------------------------------
    def proposed_order(self) -> Path:
        """The order the reviewers will sign: arms-embargoed nationals under the stricter
        'any' rule, unverified customers, with the lab's licensed research partner exempt."""
        now = datetime.now(UTC).replace(microsecond=0)
        order = {
            "scope": {
                "nationality_rule": "any",
                "country_groups": ["arms-embargoed"],
                "verification_statuses": ["unverified", "pending"],
                "exemptions": [
                    {
                        "kind": "organisation",
                        "id": customers.PARTNER,
                        "reason": "licensed research partner (export licence on file)",
                    }
                ],
            },
            "effective_at": now.isoformat(),
            "expires_at": (now + timedelta(days=180)).isoformat(),
            "compliance_deadline": (now + timedelta(days=1)).isoformat(),
        }
        path = DEMO / f"order-{self.submission_id}.yaml"
        path.write_text(yaml.safe_dump(order, sort_keys=False))
        return path

    async def impact_preview(self) -> None:
        self.heading(8, "Impact preview: whom the proposed order would deny among the customers")
        assert self.escalation is not None and self.interim is not None
        order_file = self.proposed_order()
        order = yaml.safe_load(order_file.read_text())
        proposal = RestrictionOrdered(
            order_id=uuid.uuid4(),
            submission_id=self.escalation.submission_id,
            model_id=self.model_id,
            escalation_id=self.escalation.escalation_id,
            interim=False,
            reviewer_id=REVIEWERS[0][0],
            scope=order["scope"],
            supersedes=self.interim.order_id,
            ordered_at=datetime.now(UTC),
            effective_at=order["effective_at"],
            expires_at=order["expires_at"],
            compliance_deadline=order["compliance_deadline"],
        )
        sample = customers.sample_csv()
        (DEMO / "customers.csv").write_text(sample)
        say(
            f"the reviewers' proposal ({order_file.relative_to(ROOT)}): {scope_text(proposal)}; "
            f"sample: {len(sample.splitlines()) - 1} customers of {LAB} (.local/demo/customers.csv)"
        )
        say(f"POST {self.demo.access_api}/v1/impact-preview (access's agency API)")
        report = await self.access_api(
            "POST",
            "/v1/impact-preview",
            params={"format": "csv"},
            content=proposal.model_dump_json().encode() + b"\n" + sample.encode(),
        )
        table = Table(
            "customers",
            "denied now (interim)",
            "denied with the order",
            "allowed → denied",
            "denied → allowed",
        )
        table.add_row(
            str(report["evaluated"]),
            str(report["denied_current"]),
            str(report["denied_proposed"]),
            str(report["newly_denied"]),
            str(report["newly_allowed"]),
        )
        console.print(table)
        by_country = ", ".join(f"{c} {n}" for c, n in list(report["denied_by_country"].items())[:8])
        say(f"denied with the order, by country: {by_country}")
        if report["denied_proposed"] == 0:
            raise Unexpected("the preview says the order would deny nobody")

    # 9 -------------------------------------------------------------------------------------
    def reviewer(self, reviewer_id: str) -> Party:
        """A reviewer registered at onboarding, acting with their own Kafka principal."""
        credentials = self.demo.credentials(f"reviewer.{reviewer_id}")
        return Party(reviewer_id, environment(credentials), console)

    async def reviewers_confirm(self) -> None:
        self.heading(9, "Two reviewers confirm the order: the two-person rule at critical")
        assert self.escalation is not None and self.accepted is not None
        order_file = DEMO / f"order-{self.submission_id}.yaml"
        escalation_id = str(self.escalation.escalation_id)
        for number, (reviewer_id, _) in enumerate(REVIEWERS, start=1):
            if datetime.now(UTC) >= self.accepted.deadline:
                raise Unexpected(
                    "the review window closed before the reviewers could sign: give the demo "
                    "more time (FR_INTAKE_SECONDS_PER_DAY)"
                )
            party = self.reviewer(reviewer_id)
            party.run(
                "frontier-review",
                "decide",
                escalation_id,
                "--reviewer",
                reviewer_id,
                "--key",
                DEMO / f"{reviewer_id}.key",
                "--key-id",
                reviewer_key_id(reviewer_id),
                "--restrict",
                "--scope",
                order_file,
                "--justification",
                "Reproduced the cyber proxy results; restrict access for arms-embargoed "
                "nationals pending release safeguards.",
            )
            decided = await self.seen.wait_for(
                EscalationDecided,
                what=f"{reviewer_id}'s decision",
                within_s=30,
                where=lambda d, r=reviewer_id: d.reviewer_id == r,  # type: ignore[misc]
            )
            say(
                f"risk.events: EscalationDecided by {reviewer_id}: {decided.data.decision}, "
                f"signed by {len(decided.data.signed_by)} of {decided.data.reviewers_required}"
                + (" — quorum met" if decided.data.quorum_met else "")
            )
            if number == len(REVIEWERS) and not decided.data.quorum_met:
                raise Unexpected("the second reviewer's signature did not complete the quorum")
        event = await self.seen.wait_for(
            RestrictionOrdered,
            what="the confirmed order",
            within_s=30,
            where=lambda o: not o.interim,
        )
        order = self.order = event.data
        say(
            f"risk.events: RestrictionOrdered {order.order_id} signed by "
            f"{', '.join(order.reviewer_ids)}; supersedes the interim order {order.supersedes}"
        )

    # 10 ------------------------------------------------------------------------------------
    async def access_publishes(self) -> None:
        self.heading(10, "Access compiles the order to Cedar and publishes the policy")
        assert self.order is not None
        order_id = self.order.order_id
        event = await self.seen.wait_for(
            AccessPolicyPublished,
            what="the confirmed order's policy",
            within_s=30,
            where=lambda p: order_id in p.order_ids,
        )
        policy = self.policy = event.data
        say(
            f"access.policies and labs.{LAB}.policies: AccessPolicyPublished "
            f"v{policy.policy_version} (hash {policy.content_hash[:12]}, country groups "
            f"{policy.country_groups_version}), acknowledge by "
            f"{policy.acknowledge_by:%Y-%m-%d %H:%M} UTC"
        )
        for line in cedar_excerpt(policy.cedar_policies):
            console.print(f"    [cyan]{escape(line)}[/cyan]", highlight=False)
        await self.show_problems(policy.policy_version)

    # 11 ------------------------------------------------------------------------------------
    async def enforcer_decides(self) -> None:
        self.heading(11, "The lab's enforcer decides: the decision API beside its gateway")
        assert self.policy is not None
        headers = {"Authorization": f"Bearer {token(self.demo.decision_tokens)}"}
        async with httpx.AsyncClient(base_url=self.demo.decision_api, timeout=10) as client:
            deadline = time.monotonic() + 30
            while True:
                status = (await client.get("/v1/status", headers=headers)).json()
                applied = status.get("models", {}).get(self.model_id)
                if applied and applied["version"] >= self.policy.policy_version:
                    break
                if time.monotonic() > deadline:
                    raise Missing(
                        f"the decision API at {self.demo.decision_api} did not apply "
                        f"v{self.policy.policy_version} within 30 s (status: {status})"
                    )
                await asyncio.sleep(0.2)
            say(
                f"GET {self.demo.decision_api}/v1/status: v{applied['version']} applied at "
                f"{applied['applied_at'][11:19]} UTC, ready {status['ready']}"
            )
            items = [
                {"principal": principal, "model_id": self.model_id, "action": "invoke"}
                for principal in customers.ASKED.values()
            ]
            response = await client.post("/v1/decisions", headers=headers, json={"items": items})
        if response.status_code != 200:
            raise Unexpected(f"POST /v1/decisions: {response.status_code} {response.text}")
        say(f"POST {self.demo.decision_api}/v1/decisions:")
        table = Table("who", "decision", "why")
        wrong = []
        for (who, expected), decision in zip(
            customers.EXPECTED.items(), response.json()["decisions"], strict=True
        ):
            allowed = decision["allowed"]
            reasons = "; ".join(r["text"] for r in decision["reasons"]) or decision["basis"]
            table.add_row(who, "[green]allow[/green]" if allowed else "[red]deny[/red]", reasons)
            if allowed != expected:
                wrong.append(f"{who} was {'allowed' if allowed else 'denied'}")
        console.print(table)
        if wrong:
            raise Unexpected("the enforcer decided wrongly: " + "; ".join(wrong))

    # 12 ------------------------------------------------------------------------------------
    async def lab_acknowledges(self) -> None:
        self.heading(12, "The lab acknowledges that it enforces the policy")
        assert self.policy is not None
        self.lab.run(
            "frontier-lab",
            *self.lab_identity,
            "acknowledge",
            "--model-id",
            self.model_id,
            "--enforcement-point",
            ENFORCEMENT_POINT,
            "--decision-api",
            self.demo.decision_api,
            "--api-token-file",
            self.demo.decision_tokens,
            show=0,  # the signed acknowledgement as JSON: what it says is checked below
        )
        deadline = time.monotonic() + 45
        while True:
            rejected = self.seen.all(ComplianceRejected)
            if rejected:
                raise Unexpected(
                    f"access rejected the acknowledgement: {rejected[0].reason}: "
                    f"{rejected[0].detail}"
                )
            models = self.operator.run(
                "frontier-review", "access", "models", "--lab", LAB, "--json", quiet=True
            )
            entry = next(
                (m for m in json.loads(models.out) if m["model_id"] == self.model_id), None
            )
            if entry and entry["acknowledged"] and entry["version"] == self.policy.policy_version:
                say(
                    f"access: v{entry['version']} of {self.model_id} acknowledged "
                    f"(frontier-review access models --lab {LAB})"
                )
                return
            if time.monotonic() > deadline:
                raise Missing(f"access did not record the acknowledgement within 45 s: {entry}")
            await asyncio.sleep(1)

    # 13 ------------------------------------------------------------------------------------
    async def government_receives(self) -> None:
        self.heading(13, "A government subscriber receives the redacted finding; STIX export")
        credentials = self.demo.credentials(f"government.{GOVERNMENT}")
        self.operator.run(
            "frontier-review",
            "principals",
            "add",
            "government",
            GOVERNMENT,
            "--out",
            credentials,
            show=1,
        )
        shared = await read_gov_findings(self.demo.kafka(credentials), self.submission_id)
        cyber = next((f for f in shared if f.domain == "cyber"), None)
        if cyber is None:
            raise Missing("no cyber finding reached gov.findings")
        say(
            f"government.{GOVERNMENT} reads gov.findings with its own principal: "
            f"{len(shared)} FindingShared for the submission"
        )
        data = json.loads(cyber.model_dump_json(exclude_none=True))
        say(f"[dim]{escape(json.dumps(data))}[/dim]")
        kept_inside = {"evidence_ref", "summary", "evaluator", "stderr"} & set(data)
        if kept_inside:
            raise Unexpected(f"the government feed carries internal fields: {sorted(kept_inside)}")
        say("no evidence reference, summary, evaluator or standard error: they stay inside")
        self.stix_file = DEMO / f"stix-{self.submission_id}.json"
        self.operator.run(
            "frontier-review", "stix", "export", self.submission_id, "--out", self.stix_file, show=1
        )
        bundle = json.loads(self.stix_file.read_text())
        kinds = Counter(obj["type"] for obj in bundle["objects"])
        say(f"STIX 2.1 bundle: {', '.join(f'{n} {t}' for t, n in sorted(kinds.items()))}")

    # 14 ------------------------------------------------------------------------------------
    async def review_concludes(self) -> None:
        self.heading(14, "The review window closes; the review concludes")
        assert self.accepted is not None
        left = max(0.0, (self.accepted.deadline - datetime.now(UTC)).total_seconds())
        with console.status(f"waiting {left:.0f} s for the window to close ..."):
            closed = await self.seen.wait_for(
                ReviewWindowClosed, what="the window's close", within_s=left + 60
            )
        say(f"intake.events: ReviewWindowClosed at {closed.data.closed_at:%H:%M:%S} UTC")
        event = await self.seen.wait_for(ReviewConcluded, what="the conclusion", within_s=60)
        concluded = event.data
        say(
            f"risk.events: ReviewConcluded: [bold]{concluded.outcome}[/bold], overall level "
            f"{concluded.overall_level}"
        )
        for line in concluded.may:
            say(f"  may: {escape(line)}")
        for line in concluded.may_not:
            say(f"  may not: {escape(line)}")
        if concluded.outcome is not ReviewOutcome.RESTRICTIONS_ORDERED:
            raise Unexpected(f"the review concluded {concluded.outcome}, not restrictions_ordered")
        for _ in range(3):
            followed = self.lab.run(
                "frontier-lab",
                "--lab-id",
                LAB,
                "follow",
                self.submission_id,
                "--from-beginning",
                "--timeout",
                "4",
                show=0,
            )
            if "review concluded" in followed.out:
                break
        else:
            raise Missing(f"the lab's feed labs.{LAB}.answers has no ReviewConcluded")
        for line in followed.out.splitlines():
            say(f"  [dim]{escape(line)}[/dim]")

    # 15 ------------------------------------------------------------------------------------
    async def audit_verifies(self) -> None:
        self.heading(15, "The audit chain verifies")
        self.operator.run("frontier-review", "audit", "verify", show=3)

    # summary -----------------------------------------------------------------------------
    async def summary(self) -> None:
        console.print()
        console.rule("[bold green]The review, end to end", align="left")
        first = min(s.event.time for s in self.seen.seen)
        table = Table("+s", "topic", "event", "what")
        for seen in sorted(self.seen.seen, key=lambda s: s.event.time):
            table.add_row(
                f"{(seen.event.time - first).total_seconds():6.1f}",
                seen.topic,
                seen.event.type.rsplit(".", 1)[-1],
                describe(seen.event.data),
            )
        console.print(table)
        spans = await spans_of(self.trace_id)
        say(
            f"submission {self.submission_id}, model {self.model_id}\n"
            f"  trace {self.trace_id}: "
            + ", ".join(f"{spans[s]} spans from {s}" for s in SERVICES if spans[s])
            + " (.local/traces.jsonl)"
        )
        missing = [s for s in SERVICES if not spans[s]]
        if missing:
            raise Unexpected(f"the submission's trace has no spans from {', '.join(missing)}")
        self.operator.run("frontier-review", "traces", self.submission_id, show=40)
        page = await self.console_page()
        say(
            f"  console: {page} (the password: a line of "
            f"{shown(self.demo.console_tokens)}; any user name)"
        )
        say(
            f"  lab's decision API: {self.demo.decision_api}/docs   access's agency API: "
            f"{self.demo.access_api}/docs   intake status: "
            f"{self.demo.intake_api}/submissions/{self.submission_id}"
        )
        say(
            f"  AsyncAPI documents: {self.demo.asyncapi_url}/ (contracts/asyncapi/"
            "{intake,evaluation,risk,access}.yaml)"
        )
        say(
            f"  STIX bundle: {self.stix_file.relative_to(ROOT) if self.stix_file else '-'}   "
            "logs: .local/logs/   services: bash deploy/services.sh status"
        )
        say("  stop: bash deploy/services.sh stop && bash deploy/stack.sh down (same FR_* ports)")

    async def console_page(self) -> str:
        """The console's page of the submission, once the console shows it concluded."""
        url = f"{self.demo.console_url}/submissions/{self.submission_id}"
        headers = {"Authorization": f"Bearer {token(self.demo.console_tokens)}"}
        deadline = time.monotonic() + 30
        async with httpx.AsyncClient(timeout=10) as client:
            while True:
                try:
                    response = await client.get(url, headers=headers)
                    shows = response.status_code == 200 and "restrictions_ordered" in response.text
                    answer = f"{response.status_code}"
                except httpx.HTTPError as exc:
                    shows, answer = False, repr(exc)
                if shows:
                    return url
                if time.monotonic() > deadline:
                    raise Missing(f"the console at {url} does not show the conclusion: {answer}")
                await asyncio.sleep(1)


def trace_of(event: CloudEvent[Any]) -> str | None:
    return event.traceparent.split("-")[1] if event.traceparent else None


def scope_text(order: RestrictionOrdered) -> str:
    scope = order.scope
    parts = [f"nationality rule {scope.nationality_rule}"]
    if scope.country_groups:
        parts.append(f"country groups {', '.join(scope.country_groups)}")
    if scope.nationalities:
        parts.append(f"nationalities {', '.join(scope.nationalities)}")
    if scope.verification_statuses:
        parts.append(f"identity {' or '.join(scope.verification_statuses)}")
    if scope.exemptions:
        parts.append(f"{len(scope.exemptions)} exemption(s)")
    return "; ".join(parts)


def cedar_excerpt(text: str, lines: int = 8) -> list[str]:
    """The first forbid of the policy set with its annotations (the whole text is long)."""
    found = text.splitlines()
    start = next((i for i, line in enumerate(found) if line.startswith('@id("order:')), 0)
    return [*found[start : start + lines], "..."]


def describe(data: Event) -> str:
    """One line about an event for the timeline."""
    if isinstance(data, SubmissionFiled):
        return f"{data.model.name} {data.model.version}, signed with key {data.signature.key_id}"
    if isinstance(data, FindingShared):
        return f"{data.domain} {data.level} (redacted)"
    if isinstance(data, ComplianceAcknowledged):
        return f"v{data.policy_version} at {', '.join(data.enforcement_points)}"
    if isinstance(data, SubmissionAccepted):
        return f"{data.reason}; window {data.review_days} days"
    if isinstance(data, EvaluationStarted):
        return f"{len(data.suites)} suites planned"
    if isinstance(data, FindingRecorded):
        return f"{data.suite_id}: {data.metric}={data.score:.2f}"
    if isinstance(data, EvaluationCompleted):
        return f"{data.ended_by}: {len(data.suites)} suites"
    if isinstance(data, RiskAssessed):
        return f"#{data.sequence} overall {data.overall_level}"
    if isinstance(data, EscalationRaised):
        return f"{data.level} in {', '.join(data.domains)}; {data.reviewers_required} reviewers"
    if isinstance(data, RestrictionOrdered):
        return ("interim " if data.interim else "confirmed ") + str(data.order_id)[:8]
    if isinstance(data, EscalationDecided):
        return f"{data.reviewer_id}: {data.decision}" + (" (quorum)" if data.quorum_met else "")
    if isinstance(data, AccessPolicyPublished):
        return f"v{data.policy_version}, {len(data.order_ids)} order(s)"
    if isinstance(data, ReviewConcluded):
        return str(data.outcome)
    return ""


async def read_gov_findings(settings: KafkaSettings, submission_id: str) -> list[FindingShared]:
    """The FindingShared records about one submission on gov.findings (keyed by it), read
    from the partition its key hashes to; waits until the cyber finding is there."""
    topic = TOPIC_BY_NAME["gov.findings"]
    consumer = AIOKafkaConsumer(
        **aiokafka_options(settings),
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    available = [p.partition for p in await partitions(settings, topic.name)]
    partition = TopicPartition(
        topic.name, DefaultPartitioner()(submission_id.encode(), available, available)
    )
    await consumer.start()
    try:
        consumer.assign([partition])
        await consumer.seek_to_beginning(partition)
        found: list[FindingShared] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            batch = await consumer.getmany(partition, timeout_ms=500)
            for record in batch.get(partition, []):
                if record.key != submission_id.encode() or record.value is None:
                    continue
                try:
                    event = decode(record.value, topic.event_types)
                except ContractViolation:
                    continue
                if isinstance(event.data, FindingShared):
                    found.append(event.data)
            if any(f.domain == "cyber" for f in found):
                return found
        return found
    finally:
        await consumer.stop()


async def spans_of(trace_id: str | None, within_s: float = 15.0) -> Counter[str]:
    """Spans of the trace per service in .local/traces.jsonl; the services export them in
    batches every few seconds, so this waits until all four are there (or ``within_s``)."""
    traces = ROOT / ".local" / "traces.jsonl"
    deadline = time.monotonic() + within_s
    while True:
        found: Counter[str] = Counter()
        if trace_id and traces.exists():
            wanted = f'"0x{trace_id}"'
            with traces.open(encoding="utf-8") as lines:
                for line in lines:
                    if wanted in line:
                        span = json.loads(line)
                        if span["context"]["trace_id"] == f"0x{trace_id}":
                            found[span["resource"]["attributes"]["service.name"]] += 1
        if all(found[s] for s in SERVICES) or time.monotonic() > deadline:
            return found
        await asyncio.sleep(1)


def manifest(demo: Demo) -> dict[str, Any]:
    version = time.strftime("%Y%m%d-%H%M%S")
    return {
        "submission_id": str(uuid.uuid4()),
        "lab_id": LAB,
        "model": {
            "name": f"demo-{PROFILE}",
            "version": version,
            "family": "Demo",
            "modalities": ["text"],
            "training_compute_flop": 3.2e26,
            "planned_release_date": (datetime.now(UTC).date() + timedelta(days=40)).isoformat(),
            "deployment_channels": ["api"],
            "declared_capabilities": ["code-generation"],
        },
        "evaluation_access": {
            "endpoint": demo.model_url,
            "api_model": PROFILE,
            "credential_ref": CREDENTIAL_REF,
        },
        "requested_review_days": 30,
        "contacts": [{"name": "Ada Demo", "email": "ada@demo-lab.test", "role": "primary"}],
    }


async def review(demo: Demo) -> int:
    filed = manifest(demo)
    model = filed["model"]
    model_id = make_model_id(LAB, model["name"], model["version"])
    operator = Party("operator", operator_environment(), console)
    lab = Party(LAB, environment(demo.credentials(f"lab.{LAB}"), database=False), console)
    observer = AgencyObserver(
        demo.kafka(demo.operator_credentials), {filed["submission_id"], model_id}
    )
    async with observer:
        story = Review(demo, observer, filed["submission_id"], model_id, filed, operator, lab)
        try:
            await story.play()
            await story.summary()
        except (Missing, Unexpected, CommandFailed) as exc:
            number, title = story.step
            console.print(f"\n[red bold]FAILED[/red bold] at step {number} ({escape(title)}):")
            console.print(escape(str(exc)), soft_wrap=True)
            console.print("the services' logs: .local/logs/<service>.log")
            return 1
    console.print("\n[bold green]scenario complete[/bold green]: every step above happened.")
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.demo.scenario", description=__doc__)
    parser.add_argument("part", choices=["onboard", "review"])
    args = parser.parse_args(argv)
    demo = Demo.from_environment()
    if args.part == "onboard":
        try:
            onboard(demo)
        except (CommandFailed, Unexpected) as exc:
            console.print(f"[red bold]FAILED[/red bold] while onboarding: {escape(str(exc))}")
            return 1
        return 0
    return asyncio.run(review(demo))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
