"""The risk CLI as operators and reviewers run it (``python -m services.risk.cli``), against
the rig's running service: reviewer keys and registry, signing and submitting decisions
and what the reviewer is shown, escalations with quorum progress, policy versions and
their assessments, and the STIX export of a real submission."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import stix2
import yaml
from stix2validator import ValidationOptions, validate_string

from contracts.events import (
    AuditCheckpoint,
    EscalationDecided,
    EscalationRaised,
    RestrictionOrdered,
    RiskAssessed,
)
from tests.risk.rig import Rig, Submission, cli


async def critical(rig: Rig) -> tuple[Submission, EscalationRaised]:
    sub = await rig.submission()
    await rig.deliver(rig.finding(sub, "cyber", 1.0))
    await rig.one(sub, RestrictionOrdered)
    return sub, await rig.one(sub, EscalationRaised)


def order_file(rig: Rig, path: Path) -> Path:
    """The order two reviewers sign: scope and times in one file."""
    now = rig.clock.now()
    path.write_text(
        yaml.safe_dump(
            {
                "scope": {
                    "nationality_rule": "most_recent",
                    "nationalities": ["KP", "IR"],
                    "residence_countries": ["KP"],
                    "verification_statuses": ["unverified"],
                    "exemptions": [
                        {"kind": "principal", "id": "user-7", "reason": "licensed partner"}
                    ],
                },
                "effective_at": now.isoformat(),
                "expires_at": (now + timedelta(days=90)).isoformat(),
                "compliance_deadline": (now + timedelta(days=1)).isoformat(),
            }
        )
    )
    return path


def decide_args(rig: Rig, escalation: EscalationRaised, reviewer: str, *extra: str) -> list[str]:
    who = rig.reviewers[reviewer]
    return [
        "decide",
        str(escalation.escalation_id),
        "--reviewer",
        reviewer,
        "--key",
        str(who.key_file),
        "--key-id",
        who.key_id,
        "--justification",
        "Reproduced the CTF results; foreign-national access must be restricted.",
        *extra,
    ]


async def test_a_reviewer_made_and_registered_with_the_cli_signs_an_accepted_decision(
    rig: Rig, tmp_path: Path
) -> None:
    key = tmp_path / "r9.key"
    made = await cli(rig.settings, "reviewers", "keygen", str(key))
    assert made.code == 0, made.output
    registered = await cli(rig.settings, "reviewers", "register", "r9", "--name", "Reviewer 9")
    assert registered.code == 0, registered.output
    added = await cli(
        rig.settings,
        "reviewers",
        "key",
        "add",
        "r9",
        "r9-k1",
        "--public-key",
        str(tmp_path / "r9.pub"),
    )
    assert added.code == 0, added.output
    sub, raised = await critical(rig)
    ran = await cli(
        rig.settings,
        "decide",
        str(raised.escalation_id),
        "--reviewer",
        "r9",
        "--key",
        str(key),
        "--key-id",
        "r9-k1",
        "--restrict",
        "--scope",
        str(order_file(rig, tmp_path / "order.yaml")),
        "--justification",
        "Reproduced the CTF results.",
    )
    assert ran.code == 0, ran.output
    assert "accepted: r9 signed restrict (order" in ran.stdout
    assert "1 of 2 signature(s)" in ran.stdout
    (decided,) = rig.of(sub, EscalationDecided)
    assert decided.reviewer_id == "r9" and not decided.quorum_met


async def test_two_reviewers_signing_one_order_file_through_the_cli_restrict(
    rig: Rig, tmp_path: Path
) -> None:
    sub, raised = await critical(rig)
    order = order_file(rig, tmp_path / "order.yaml")
    first = await cli(
        rig.settings, *decide_args(rig, raised, "r1", "--restrict", "--scope", str(order))
    )
    assert first.code == 0, first.output
    second = await cli(
        rig.settings, *decide_args(rig, raised, "r2", "--restrict", "--scope", str(order))
    )
    assert second.code == 0, second.output
    assert "the quorum is met: the decision takes effect (order" in second.stdout
    await rig.events.wait(lambda: len(rig.of(sub, RestrictionOrdered)) == 2)
    final = next(o for o in rig.of(sub, RestrictionOrdered) if not o.interim)
    assert final.scope.exemptions[0].id == "user-7"


async def test_a_forged_decision_through_the_cli_exits_1_told_authentication_failed(
    rig: Rig, tmp_path: Path
) -> None:
    _, raised = await critical(rig)
    forged = tmp_path / "stolen-id.key"
    assert (await cli(rig.settings, "reviewers", "keygen", str(forged))).code == 0
    args = decide_args(rig, raised, "r1", "--dismiss")
    args[args.index("--key") + 1] = str(forged)
    ran = await cli(rig.settings, *args)
    assert ran.code == 1, ran.output
    assert "refused (authentication_failed)" in ran.stderr
    assert "bad_signature" not in ran.output, "the precise reason stays with the operator"


async def test_the_same_reviewer_deciding_twice_through_the_cli_is_told_already_signed(
    rig: Rig,
) -> None:
    _, raised = await critical(rig)
    assert (await cli(rig.settings, *decide_args(rig, raised, "r3", "--monitor"))).code == 0
    again = await cli(rig.settings, *decide_args(rig, raised, "r3", "--dismiss"))
    assert again.code == 1
    assert "refused (already_signed): reviewer r3 already signed monitor" in again.stderr


async def test_an_order_file_with_an_unknown_field_is_refused_before_signing(
    rig: Rig, tmp_path: Path
) -> None:
    _, raised = await critical(rig)
    bad = tmp_path / "typo.yaml"
    order = yaml.safe_load(order_file(rig, bad).read_text())
    order["scope"]["nationalitys"] = ["CN"]
    bad.write_text(yaml.safe_dump(order))
    ran = await cli(
        rig.settings, *decide_args(rig, raised, "r1", "--restrict", "--scope", str(bad))
    )
    assert ran.code == 1
    assert "scope.nationalitys: Extra inputs are not permitted" in ran.stderr


async def test_escalations_list_shows_what_awaits_a_decision_with_quorum_progress(
    rig: Rig, tmp_path: Path
) -> None:
    _, raised = await critical(rig)
    order = order_file(rig, tmp_path / "order.yaml")
    assert (
        await cli(
            rig.settings, *decide_args(rig, raised, "r2", "--restrict", "--scope", str(order))
        )
    ).code == 0
    listed = await cli(rig.settings, "escalations", "list", "--json")
    assert listed.code == 0, listed.output
    (mine,) = [
        e for e in json.loads(listed.stdout) if e["escalation_id"] == str(raised.escalation_id)
    ]
    assert mine["status"] == "open" and mine["reviewers_required"] == 2
    assert [t["signed_by"] for t in mine["tallies"]] == [["r2"]]
    assert mine["interim_order_id"] == str(raised.interim_order_id)
    table = await cli(rig.settings, "escalations", "list")
    assert "1/2 (r2)" in table.stdout


async def test_policies_list_shows_the_version_and_how_many_assessments_used_it(rig: Rig) -> None:
    sub = await rig.submission()
    await rig.deliver(rig.finding(sub, "bio", 0.7))
    assessed = await rig.one(sub, RiskAssessed)
    listed = await cli(rig.settings, "policies", "list", "--json")
    assert listed.code == 0, listed.output
    older, version = json.loads(listed.stdout)
    assert older["version"] == "thresholds-2026.1" and not older["active"] and older["file"]
    assert older["assessments"] == 0, "a superseded version stays listed, for history"
    assert version["version"] == "thresholds-2026.2" and version["active"]
    count = (await rig.fetch("SELECT count(*) AS n FROM assessments"))[0]["n"]
    assert version["assessments"] == count >= 1
    used = await cli(rig.settings, "policies", "assessments", "thresholds-2026.2", "--json")
    assert str(assessed.assessment_id) in [a["assessment_id"] for a in json.loads(used.stdout)]


async def test_the_stix_export_of_a_real_submission_parses_and_validates(
    rig: Rig, tmp_path: Path
) -> None:
    sub = await rig.submission()
    for domain, score in (("cyber", 1.0), ("bio", 0.7), ("autonomy", 0.67)):
        await rig.deliver(rig.finding(sub, domain, score))
    await rig.events.wait(
        lambda: any(
            len(a.domains)
            and a.overall_level == "critical"
            and sum(d.level != "low" for d in a.domains) == 3
            for a in rig.of(sub, RiskAssessed)
        )
    )
    out = tmp_path / "bundle.json"
    ran = await cli(
        rig.settings,
        "stix",
        "export",
        str(sub.submission_id),
        "--out",
        str(out),
        "--tlp",
        "amber+strict",
    )
    assert ran.code == 0, ran.output
    text = out.read_text()
    bundle = stix2.parse(text, allow_custom=True)
    findings = [o for o in bundle.objects if o["type"] == "model-capability-finding"]
    assert len(findings) == 3
    results = validate_string(text, ValidationOptions(version="2.1", enforce_refs=True))
    assert results.is_valid, [e.message for e in results.errors]
    assert "evidence_ref" not in text and "inspect-logs" not in text
    assert "TLP:AMBER+STRICT" in text


async def test_escalations_show_lists_the_votes_with_the_order_signed(
    rig: Rig, tmp_path: Path
) -> None:
    _, raised = await critical(rig)
    order = order_file(rig, tmp_path / "order.yaml")
    args = decide_args(rig, raised, "r1", "--restrict", "--scope", str(order))
    assert (await cli(rig.settings, *args)).code == 0
    shown = await cli(rig.settings, "escalations", "show", str(raised.escalation_id))
    assert shown.code == 0, shown.output
    assert "- r1 restrict" in shown.stdout
    assert "Reproduced the CTF results" in shown.stdout
    assert '"nationalities":["KP","IR"]' in shown.stdout.replace(" ", "")


async def test_a_checkpoint_on_demand_is_published_on_gov_audit(rig: Rig) -> None:
    before = len(rig.checkpoints.records)
    ran = await cli(rig.settings, "audit", "checkpoint")
    assert ran.code == 0, ran.output
    await rig.checkpoints.wait(lambda: len(rig.checkpoints.records) > before)
    (row,) = await rig.fetch("SELECT sequence FROM audit_head")
    latest = rig.checkpoints.of("risk", AuditCheckpoint)[-1]
    assert latest.size == row["sequence"], "the head as it stands"
    assert latest.signature.key_id == rig.settings.risk_service_key_id
