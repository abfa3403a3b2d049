"""Intake against the real broker and database: decisions, trust, duplicates, withdrawal."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from contracts import encode, make_event
from contracts.events.common import RejectionReason
from contracts.events.intake import (
    AcceptanceReason,
    SubmissionAccepted,
    SubmissionRejected,
    SubmissionWithdrawn,
    WithdrawalRejected,
)
from contracts.events.lab import SubmissionFiled
from contracts.principals import Role
from contracts.registry import LAB_FEED_BY_SUFFIX
from contracts.sensitivity import owner_copy
from services.intake.app import SCHEMA, build_service
from services.intake.settings import IntakeSettings
from services.labclient import LabClient, body_sha256
from services.labclient.client import answer_to, signature_sha256
from services.runtime import RuntimeSettings
from services.runtime.database import connect
from services.trust import registry
from services.trust.principals import LAB, PrincipalKey
from services.trust.refusal import AUTHENTICATION_FAILED_DETAIL, Refusal
from tests.intake.rig import (
    MAX_MESSAGE_BYTES,
    IntakeWatcher,
    Rig,
    create_intake_topics,
    intake_settings,
    register_labs,
    resolve_test_hosts,
    running_rig,
)
from tests.intake.support import Signer, envelope, mutated, public_bytes, raw
from tests.kit import (
    MovableClock,
    Producer,
    TopicWatcher,
    create_feeds,
    drop_schema,
    lab_settings,
    running,
    wait_for,
)
from tests.kit.manifests import manifest

R = RejectionReason


def accepted(event: Any) -> SubmissionAccepted:
    assert isinstance(event.data, SubmissionAccepted), event.data
    return event.data


def rejected(event: Any) -> SubmissionRejected:
    assert isinstance(event.data, SubmissionRejected), event.data
    return event.data


async def test_happy_path_accepts_opens_the_window_and_reports_status(rig: Rig) -> None:
    lab = rig.signers["a1"]
    filed = lab.filed(manifest(lab.lab_id, requested_review_days=14))
    event = await rig.publish(filed)
    answer = await rig.events.answer(event.id)
    decision = accepted(answer)

    assert answer.subject == str(filed.submission_id)
    assert decision.reason is AcceptanceReason.COVERED_BY_COMPUTE
    assert decision.model_id == "lab-a/frontier-1@2026-01-10"
    assert decision.review_days == 14
    assert decision.deadline - decision.accepted_at == timedelta(days=14)
    assert decision.criteria_version == "2026.1"
    assert decision.body_sha256 == body_sha256(filed)
    assert decision.evaluation_access.credential_ref == "labs/lab-a/eval-api-key"
    outcome = answer_to(event, answer)
    assert outcome is not None and outcome.status == "accepted"
    record = next(r for r in rig.events.records if json.loads(r.value or b"{}")["id"] == answer.id)
    assert record.key == str(filed.submission_id).encode(), "keyed by submission id"

    windows = await rig.fetch(
        "SELECT state, due_at FROM timers WHERE kind = 'review-window' AND key = $1",
        str(filed.submission_id),
    )
    assert [(w["state"], w["due_at"]) for w in windows] == [("pending", decision.deadline)]

    async with httpx.AsyncClient(base_url=rig.status_url) as http:
        status = (await http.get(f"/submissions/{filed.submission_id}")).json()
        assert (await http.get(f"/submissions/{uuid.uuid4()}")).status_code == 404
        assert (await http.get("/submissions/not-a-uuid")).status_code == 400
        assert (await http.get("/healthz")).json() == {"status": "ok"}
    assert status["state"] == "accepted"
    assert status["deadline"] == decision.deadline.isoformat()
    assert status["received_at"] == decision.accepted_at.isoformat()
    assert [(h["kind"], h["event_id"]) for h in status["history"]] == [("accepted", event.id)]


async def test_capability_criterion_covers_a_small_model(rig: Rig) -> None:
    lab = rig.signers["a1"]
    document = manifest(
        lab.lab_id,
        model={"training_compute_flop": 1e24, "declared_capabilities": ["cyber-offense"]},
    )
    decision = accepted(await rig.answer(lab.filed(document)))
    assert decision.reason is AcceptanceReason.COVERED_BY_CAPABILITY
    assert "cyber-offense" in decision.detail


def _stale(rig: Rig) -> SubmissionFiled:
    lab = rig.signers["a1"]
    return lab.filed(issued_at=datetime.now(UTC) - timedelta(minutes=10))


def _future(rig: Rig) -> SubmissionFiled:
    lab = rig.signers["a1"]
    return lab.filed(issued_at=datetime.now(UTC) + timedelta(minutes=10))


def _tampered(rig: Rig) -> SubmissionFiled:
    filed = rig.signers["a1"].filed()
    return filed.model_copy(update={"requested_review_days": 30})  # changed after signing


def _credential(ref: str) -> Any:
    def build(rig: Rig) -> SubmissionFiled:
        document = manifest("lab-a", evaluation_access={"credential_ref": ref})
        return rig.signers["a1"].filed(document)

    return build


def _endpoint(url: str) -> Any:
    def build(rig: Rig) -> SubmissionFiled:
        return rig.signers["a1"].filed(manifest("lab-a", evaluation_access={"endpoint": url}))

    return build


# Refused on their content, once authenticated: these bind the id and are on its record.
CONTENT_REASONS = (R.CREDENTIAL_NOT_OWNED, R.ENDPOINT_NOT_ALLOWED, R.NOT_COVERED_MODEL)


# Signed inputs that decode but must be refused: (name, build, precise reason, detail
# fragment). The precise reason of an input that did not authenticate is the operator's
# (its sender is told only authentication_failed); a content refusal is the lab's own.
SIGNED_CASES: list[tuple[str, Any, RejectionReason, str]] = [
    ("unknown lab", lambda rig: Signer("nobody-lab", "n1").filed(), R.UNKNOWN_LAB, ""),
    ("unknown key", lambda rig: Signer("lab-a", "not-registered").filed(), R.UNKNOWN_KEY, ""),
    ("revoked key", lambda rig: rig.signers["a-revoked"].filed(), R.REVOKED_KEY, ""),
    ("expired key", lambda rig: rig.signers["a-expired"].filed(), R.EXPIRED_KEY, ""),
    ("key not yet valid", lambda rig: rig.signers["a-future"].filed(), R.EXPIRED_KEY, ""),
    ("bad signature", _tampered, R.BAD_SIGNATURE, ""),
    ("stale issued_at", _stale, R.STALE_ISSUED_AT, ""),
    ("future issued_at", _future, R.FUTURE_ISSUED_AT, ""),
    (
        "another lab's credential",
        _credential("labs/lab-b/eval-api-key"),
        R.CREDENTIAL_NOT_OWNED,
        "'labs/lab-b/eval-api-key' is not a credential of lab 'lab-a'",
    ),
    (
        "credential leaving the lab's prefix",
        _credential("labs/lab-a/../lab-b/eval-api-key"),
        R.CREDENTIAL_NOT_OWNED,
        "under labs/lab-a/",
    ),
    (
        "credential outside any lab",
        _credential("eval-api-key"),
        R.CREDENTIAL_NOT_OWNED,
        "under labs/lab-a/",
    ),
    ("endpoint not https", _endpoint("http://eval.lab-a.test/v1"), R.ENDPOINT_NOT_ALLOWED, "https"),
    (
        "endpoint on a private address",
        _endpoint("https://private.lab-a.test/v1"),
        R.ENDPOINT_NOT_ALLOWED,
        "10.1.2.3",
    ),
    (
        "endpoint at the cloud metadata address",
        _endpoint("https://169.254.169.254/v1"),
        R.ENDPOINT_NOT_ALLOWED,
        "169.254.169.254",
    ),
    (
        "endpoint whose name also resolves to a private address",
        _endpoint("https://rebinding.lab-a.test/v1"),
        R.ENDPOINT_NOT_ALLOWED,
        "169.254.169.254",
    ),
    ("endpoint on loopback", _endpoint("https://127.0.0.1:8443/v1"), R.ENDPOINT_NOT_ALLOWED, ""),
    (
        "endpoint that does not resolve",
        _endpoint("https://nowhere.lab-a.test/v1"),
        R.ENDPOINT_NOT_ALLOWED,
        "does not resolve",
    ),
    (
        "not a covered model",
        lambda rig: rig.signers["a1"].filed(
            manifest(
                "lab-a", model={"training_compute_flop": 5e25, "declared_capabilities": ["chat"]}
            )
        ),
        R.NOT_COVERED_MODEL,
        "5e+25 FLOP < 1e+26 FLOP",
    ),
]


@pytest.mark.parametrize(
    ("name", "build", "reason", "fragment"), SIGNED_CASES, ids=[c[0] for c in SIGNED_CASES]
)
async def test_signed_input_is_rejected_with_its_reason(
    rig: Rig, name: str, build: Any, reason: RejectionReason, fragment: str
) -> None:
    filed: SubmissionFiled = build(rig)
    before = await rig.refused(filed.lab_id)
    event = await rig.publish(filed)
    answer = await rig.events.answer(event.id)
    rejection = rejected(answer)
    assert rejection.rejected_event_id == event.id
    assert rejection.body_sha256 == body_sha256(filed)
    content = reason in CONTENT_REASONS
    if content:  # the lab authenticated: it is told why, bound to what it signed
        assert rejection.reason is reason, rejection.detail
        assert fragment in rejection.detail
        assert rejection.signature_sha256 == signature_sha256(event)
    else:  # nobody is told who is registered or why exactly: the operator is
        assert rejection.reason is R.AUTHENTICATION_FAILED, rejection.detail
        assert rejection.detail == AUTHENTICATION_FAILED_DETAIL and not rejection.field_errors
        assert rejection.signature_sha256 is None
        after = await rig.refused(filed.lab_id)
        assert after.get(reason.value, 0) == before.get(reason.value, 0) + 1
    # An unauthenticated input is answered to its event id, not on the submission's key.
    assert rejection.submission_id == (filed.submission_id if content else None)
    assert answer.subject == (str(filed.submission_id) if content else event.id)
    rows = await rig.fetch(
        "SELECT state, reason FROM submissions WHERE submission_id = $1", filed.submission_id
    )
    # Only an authenticated, fresh filing binds the id; refusals on content do.
    assert [(r["state"], r["reason"]) for r in rows] == (
        [("rejected", reason.value)] if content else []
    )
    history = await rig.fetch(
        "SELECT submission_id FROM submission_history WHERE event_id = $1", event.id
    )
    # Refusals of unauthenticated input are counted, not kept one by one.
    assert [r["submission_id"] for r in history] == ([filed.submission_id] if content else [])
    if reason is R.CREDENTIAL_NOT_OWNED:
        paths = [e.path for e in rejection.field_errors]
        assert paths == ["data.evaluation_access.credential_ref"]
    if reason is R.ENDPOINT_NOT_ALLOWED:
        paths = [e.path for e in rejection.field_errors]
        assert paths == ["data.evaluation_access.endpoint"]


async def test_replayed_nonce_is_rejected(rig: Rig) -> None:
    lab = rig.signers["a1"]
    first = lab.filed()
    second = lab.resigned(lab.filed(), nonce=first.signature.nonce)  # another body, same nonce
    accepted(await rig.answer(first))
    before = await rig.refused("lab-a")
    rejection = rejected(await rig.answer(second))
    assert rejection.reason is R.AUTHENTICATION_FAILED, "a replay may be anyone's copy"
    after = await rig.refused("lab-a")
    assert after["replayed_nonce"] == before.get("replayed_nonce", 0) + 1


async def test_subject_must_be_the_signed_submission_id(rig: Rig) -> None:
    filed = rig.signers["a1"].filed()
    answer = await rig.answer(filed, subject=str(uuid.uuid4()))
    rejection = rejected(answer)
    assert rejection.reason is R.SUBJECT_MISMATCH
    assert rejection.submission_id is None and answer.subject == rejection.rejected_event_id


async def test_decodable_but_invalid_records_get_a_rejection_with_field_paths(rig: Rig) -> None:
    lab = rig.signers["a1"]
    filed = lab.filed()
    event = envelope(filed)

    def break_schema(document: dict[str, Any]) -> None:
        document["data"]["requested_review_days"] = 45
        del document["data"]["model"]["name"]
        document["data"]["surprise"] = True

    def unknown_type(document: dict[str, Any]) -> None:
        document["type"] = "frontier_review.lab.SomethingElse"

    def no_source(document: dict[str, Any]) -> None:
        del document["source"]

    def oversized(document: dict[str, Any]) -> None:
        document["data"]["notes"] = "x" * MAX_MESSAGE_BYTES

    def withdrawal_schema(document: dict[str, Any]) -> None:
        document["type"] = "frontier_review.lab.WithdrawalRequested"

    cases = [
        (break_schema, R.SCHEMA_VIOLATION, SubmissionRejected),
        (unknown_type, R.UNKNOWN_EVENT_TYPE, SubmissionRejected),
        (no_source, R.INVALID_ENVELOPE, SubmissionRejected),
        (oversized, R.OVERSIZED, SubmissionRejected),
        (withdrawal_schema, R.SCHEMA_VIOLATION, WithdrawalRejected),
    ]
    sent = []
    for change, _, _ in cases:
        value = mutated(event, change)
        document = json.loads(value)
        document["id"] = str(uuid.uuid4())
        await rig.send(json.dumps(document).encode(), event.subject)
        sent.append(document["id"])
    answers = [await rig.events.answer(event_id) for event_id in sent]
    for answer, event_id, (_, reason, kind) in zip(answers, sent, cases, strict=True):
        assert isinstance(answer.data, kind)
        assert answer.data.reason is reason, answer.data.detail
        # Nothing in it is authenticated: answered to the input, not on the submission.
        assert answer.data.submission_id is None and answer.data.lab_id == "lab-a"
        assert answer.subject == event_id
    history = await rig.fetch(
        "SELECT count(*) AS n FROM submission_history WHERE submission_id = $1",
        filed.submission_id,
    )
    assert history[0]["n"] == 0
    paths = {error.path for error in answers[0].data.field_errors}  # type: ignore[attr-defined]
    assert paths == {"data.requested_review_days", "data.model.name", "data.surprise"}
    withdrawal_paths = {e.path for e in answers[4].data.field_errors}  # type: ignore[attr-defined]
    assert "data.model" in withdrawal_paths  # a withdrawal has no such field


async def test_undecodable_or_unaddressable_bytes_go_to_the_dlq(rig: Rig) -> None:
    poison = [b"\x00\xff not json", b"[1, 2, 3]", b'{"neither": "id nor submission"}', b""]
    positions = [await rig.send(value, "k") for value in poison]
    origins = {(p, o) for p, o in positions}

    def dead() -> dict[tuple[int, int], Any]:
        return {
            (
                int(dict(r.headers)["dlq.origin.partition"]),
                int(dict(r.headers)["dlq.origin.offset"]),
            ): r
            for r in rig.dlq.records
        }

    await rig.dlq.wait(lambda: origins <= set(dead()), what="all poison records")
    by_origin = dead()
    for position, value in zip(positions, poison, strict=True):
        assert by_origin[position].value == value, "the DLQ keeps the original bytes"
    reasons = [dict(by_origin[p].headers)["dlq.reason"].decode() for p in positions]
    assert reasons == ["malformed_json", "invalid_envelope", "invalid_envelope", "malformed_json"]
    # The consumer goes on.
    accepted(await rig.answer(rig.signers["a1"].filed()))


async def test_forged_signature_with_another_labs_key_id(rig: Rig) -> None:
    victim, forger = rig.signers["a1"], rig.signers["b1"]
    document = manifest(victim.lab_id)
    # lab-b signs as lab-a, naming lab-a's valid key id: the signature can't verify.
    before = await rig.refused(victim.lab_id)
    posing = Signer(victim.lab_id, victim.key_id, forger.key).filed(document)
    assert rejected(await rig.answer(posing)).reason is R.AUTHENTICATION_FAILED
    # lab-b signs as lab-a with its own valid key id: not a key of lab-a.
    own_key = Signer(victim.lab_id, forger.key_id, forger.key).filed(document)
    rejection = rejected(await rig.answer(own_key))
    assert rejection.reason is R.AUTHENTICATION_FAILED
    assert "b1" not in rejection.detail, "the forger learns nothing of the registry"
    after = await rig.refused(victim.lab_id)
    for precise in ("bad_signature", "unknown_key"):
        assert after[precise] == before.get(precise, 0) + 1, precise
    # The forgeries bound nothing: the real lab files under the same id.
    assert accepted(await rig.answer(victim.filed(document))).lab_id == "lab-a"


async def test_key_rotation_old_key_valid_in_its_window_revoked_key_refused(rig: Rig) -> None:
    old, new = Signer("rot-lab", "r-old"), Signer("rot-lab", "r-new")
    now = datetime.now(UTC)
    await create_feeds(rig.settings, Role.LAB, "rot-lab")
    async with rig.service.pool.acquire() as conn:
        assert await registry.register(conn, LAB, "rot-lab", "Rotating Lab", now) is None
        key = PrincipalKey(LAB.name, "rot-lab", "r-old", public_bytes(old.key), now, None, None)
        assert await registry.add_key(conn, LAB, key, now) is None
        # Key expiry is judged at the broker's append time: real time must pass here.
        rotation = await registry.rotate_key(
            conn, LAB, "rot-lab", "r-new", public_bytes(new.key), now, timedelta(seconds=2)
        )
    assert not isinstance(rotation, Refusal)

    accepted(await rig.answer(old.filed()))  # inside the overlap
    accepted(await rig.answer(new.filed()))
    await asyncio.sleep(2.2)
    before = await rig.refused("rot-lab")
    late = rejected(await rig.answer(old.filed()))
    assert late.reason is R.AUTHENTICATION_FAILED
    assert (await rig.refused("rot-lab"))["expired_key"] == before.get("expired_key", 0) + 1
    accepted(await rig.answer(new.filed()))

    async with rig.service.pool.acquire() as conn:
        revoked = await registry.revoke_key(
            conn, LAB, "rot-lab", "r-new", datetime.now(UTC), "leaked"
        )
    assert revoked is None
    assert rejected(await rig.answer(new.filed())).reason is R.AUTHENTICATION_FAILED
    assert (await rig.refused("rot-lab"))["revoked_key"] == 1


async def test_replay_of_a_captured_valid_message(rig: Rig) -> None:
    lab = rig.signers["a1"]
    filed = lab.filed()
    event = envelope(filed)
    captured = raw(event)
    await rig.send(captured, event.subject)
    accepted(await rig.events.answer(event.id))

    # The exact bytes again, at a new offset: a record of its own (inputs from outside
    # are deduplicated by position, then by the signed nonce): the nonce was spent.
    await rig.send(captured, event.subject)
    # A fresh envelope around the captured signed data: the same.
    replay = mutated(event, lambda d: d.update(id=str(uuid.uuid4())))
    replay_id = json.loads(replay)["id"]
    await rig.send(replay, event.subject)
    assert rejected(await rig.events.answer(replay_id)).reason is R.AUTHENTICATION_FAILED

    # Same partition, in order: when the replay's answer is here, the exact copy was handled.
    first, copy = rig.events.answers(event.id)
    assert accepted(first) and rejected(copy).reason is R.AUTHENTICATION_FAILED
    # The lab's client takes only the answer bound to its signature as the outcome.
    assert answer_to(event, first) is not None and answer_to(event, first).bound  # type: ignore[union-attr]
    unbound = answer_to(event, copy)
    assert unbound is not None and not unbound.bound
    # Replays may not speak for the submission: their rejections are not on its key.
    assert [type(e.data).__name__ for e in rig.events.about(filed.submission_id)] == [
        "SubmissionAccepted"
    ]
    windows = await rig.fetch(
        "SELECT count(*) AS n FROM timers WHERE kind = 'review-window' AND key = $1",
        str(filed.submission_id),
    )
    assert windows[0]["n"] == 1


async def test_records_squatting_a_genuine_filings_event_id_change_nothing_for_it(
    rig: Rig,
) -> None:
    """An unsigned record and a forged one, both under the CloudEvent id of a genuine
    filing and ahead of it on its partition: the genuine filing is still accepted (the
    inbox of an input topic is keyed by position, not by the sender's id), and the lab
    client reports that acceptance, bound to what it signed, not the squatters' refusals,
    which reach the lab's feed first under the same id."""
    lab, forger = rig.signers["a1"], rig.signers["b1"]
    async with LabClient(
        lab_id=lab.lab_id,
        key_id=lab.key_id,
        key=lab.key,
        settings=lab_settings(rig.settings, lab.lab_id),
    ) as client:
        document = manifest(lab.lab_id)
        genuine = envelope(lab.filed(document))
        unsigned = mutated(genuine, lambda d: d["data"].pop("signature"))
        posing = Signer(lab.lab_id, lab.key_id, forger.key).filed(document | {"notes": "forged"})
        forged = make_event(
            posing, source="/labs/lab-a", subject=genuine.subject, event_id=genuine.id
        )
        await rig.send(unsigned, genuine.subject)
        await rig.send(encode(forged), genuine.subject)
        await client.publish(genuine)
        outcome = await client.outcome(genuine, within_s=20)

    assert outcome.status == "accepted" and outcome.bound, outcome.summary
    decision = accepted(outcome.event)
    assert decision.filed_event_id == genuine.id
    assert decision.signature_sha256 == signature_sha256(genuine)
    # The squatters were answered, to the id they copied and unbound, and changed nothing.
    answers = rig.events.answers(genuine.id)
    refusals = sorted(rejected(a).reason for a in answers if isinstance(a.data, SubmissionRejected))
    assert refusals == sorted([R.SCHEMA_VIOLATION, R.AUTHENTICATION_FAILED])
    for answer in answers:
        if isinstance(answer.data, SubmissionRejected):  # bound to no signature
            told = answer_to(genuine, answer)
            assert told is not None and not told.bound and answer.data.signature_sha256 is None
    reasons = [dict(r.headers).get("dlq.reason") for r in rig.dlq.records]
    assert b"event_id_reused" not in reasons
    history = await rig.fetch(
        "SELECT kind, event_id FROM submission_history WHERE submission_id = $1",
        decision.submission_id,
    )
    assert [(r["kind"], r["event_id"]) for r in history] == [("accepted", genuine.id)]


async def test_duplicate_and_conflicting_resubmission(rig: Rig) -> None:
    lab = rig.signers["a1"]
    document = manifest(lab.lab_id)
    submission_id = uuid.UUID(document["submission_id"])
    first = envelope(lab.filed(document))
    await rig.send(raw(first), first.subject)
    original = await rig.events.answer(first.id)
    accepted(original)

    again = envelope(lab.filed(document))  # same body, new signature, nonce, event id
    await rig.send(raw(again), again.subject)
    conflicting = envelope(lab.filed(document | {"requested_review_days": 7}))
    await rig.send(raw(conflicting), conflicting.subject)
    conflict = rejected(await rig.events.answer(conflicting.id))
    assert conflict.reason is R.CONFLICT
    assert first.id in conflict.detail

    # The duplicate got no second decision; the lab sees the original outcome.
    assert rig.events.answers(again.id) == []
    about = rig.events.about(submission_id)
    assert [type(e.data).__name__ for e in about] == ["SubmissionAccepted", "SubmissionRejected"]
    duplicate = next(a for e in about if (a := answer_to(again, e)) is not None)
    assert duplicate.status == "duplicate" and duplicate.event.id == original.id

    rows = await rig.fetch(
        "SELECT kind, event_id FROM submission_history WHERE submission_id = $1 ORDER BY id",
        submission_id,
    )
    assert [(r["kind"], r["event_id"]) for r in rows] == [
        ("accepted", first.id),
        ("duplicate", again.id),
        ("rejected", conflicting.id),
    ]
    state = await rig.fetch("SELECT state FROM submissions WHERE submission_id = $1", submission_id)
    assert state[0]["state"] == "accepted", "a conflict does not touch the filed submission"


async def test_duplicate_of_a_refused_model_shows_the_original_refusal(rig: Rig) -> None:
    lab = rig.signers["a1"]
    document = manifest(
        lab.lab_id, model={"training_compute_flop": 1e20, "declared_capabilities": []}
    )
    first = await rig.publish(lab.filed(document))
    original = rejected(await rig.events.answer(first.id))
    assert original.reason is R.NOT_COVERED_MODEL
    again = await rig.publish(lab.filed(document))
    marker = await rig.publish(lab.filed(document | {"notes": "changed"}))
    assert rejected(await rig.events.answer(marker.id)).reason is R.CONFLICT
    assert rig.events.answers(again.id) == []
    outcomes = [answer_to(again, e) for e in rig.events.about(document["submission_id"])]
    assert [o.status for o in outcomes if o is not None] == ["duplicate"]


async def test_withdrawal_cancels_the_window_and_bad_withdrawals_are_answered(rig: Rig) -> None:
    lab, other = rig.signers["a1"], rig.signers["b1"]
    filed = lab.filed()
    first = await rig.publish(filed)
    accepted(await rig.events.answer(first.id))

    stranger = await rig.answer(other.withdrawal(filed.submission_id))
    assert isinstance(stranger.data, WithdrawalRejected) and stranger.data.reason is R.NOT_OWNER
    unknown = await rig.answer(lab.withdrawal(uuid.uuid4()))
    assert (
        isinstance(unknown.data, WithdrawalRejected) and unknown.data.reason is R.UNKNOWN_SUBMISSION
    )
    forged = await rig.answer(
        Signer(lab.lab_id, lab.key_id, other.key).withdrawal(filed.submission_id)
    )
    assert (
        isinstance(forged.data, WithdrawalRejected)
        and forged.data.reason is R.AUTHENTICATION_FAILED
    )
    # None of them may speak for the submission: each is answered to its own event id
    # and tells nothing of the owner's filing.
    for answer in (stranger, unknown, forged):
        assert isinstance(answer.data, WithdrawalRejected)
        assert answer.data.submission_id is None
        assert answer.subject == answer.data.rejected_event_id
    assert first.id not in stranger.data.detail and "accepted" not in stranger.data.detail

    done = await rig.answer(lab.withdrawal(filed.submission_id))
    assert isinstance(done.data, SubmissionWithdrawn)
    assert done.data.model_id == "lab-a/frontier-1@2026-01-10"
    again = await rig.answer(lab.withdrawal(filed.submission_id))
    assert isinstance(again.data, WithdrawalRejected) and again.data.reason is R.INVALID_STATE
    assert again.data.submission_id == filed.submission_id, "the owner's own input is on record"

    windows = await rig.fetch(
        "SELECT state FROM timers WHERE kind = 'review-window' AND key = $1",
        str(filed.submission_id),
    )
    assert windows[0]["state"] == "cancelled"
    async with httpx.AsyncClient(base_url=rig.status_url) as http:
        status = (await http.get(f"/submissions/{filed.submission_id}")).json()
    assert status["state"] == "withdrawn" and status["withdrawn_at"]
    assert [h["kind"] for h in status["history"]] == [
        "accepted",
        "withdrawn",
        "withdrawal_rejected",
    ]


async def test_another_labs_or_unauthenticated_input_leaves_a_submission_alone(rig: Rig) -> None:
    owner, other = rig.signers["a1"], rig.signers["b1"]
    document = manifest(owner.lab_id)
    submission_id = uuid.UUID(document["submission_id"])
    first = await rig.publish(owner.filed(document))
    accepted(await rig.events.answer(first.id))

    posing = Signer(owner.lab_id, owner.key_id, other.key)
    schema_broken = envelope(owner.filed(document))
    broken = mutated(schema_broken, lambda d: d["data"].update(requested_review_days=99))
    await rig.send(broken, schema_broken.subject)
    refused = [
        (
            await rig.publish(
                other.filed(manifest(other.lab_id, submission_id=str(submission_id)))
            ),
            R.CONFLICT,
        ),
        (await rig.publish(posing.filed(document | {"notes": "forged"})), R.AUTHENTICATION_FAILED),
        (schema_broken, R.SCHEMA_VIOLATION),
        (await rig.publish(other.withdrawal(submission_id)), R.NOT_OWNER),
        (await rig.publish(posing.withdrawal(submission_id)), R.AUTHENTICATION_FAILED),
    ]
    for event, reason in refused:
        answer = await rig.events.answer(event.id)
        assert isinstance(answer.data, SubmissionRejected | WithdrawalRejected)
        assert answer.data.reason is reason, answer.data.detail
        assert answer.data.submission_id is None and answer.subject == event.id
        # Nothing about the owner's filing: not its event id, not its state.
        assert first.id not in answer.data.detail and "accepted" not in answer.data.detail

    history = await rig.fetch(
        "SELECT kind, event_id FROM submission_history WHERE submission_id = $1 ORDER BY id",
        submission_id,
    )
    assert [(r["kind"], r["event_id"]) for r in history] == [("accepted", first.id)]
    kept = await rig.fetch(
        "SELECT count(*) AS n FROM submission_history WHERE event_id = ANY($1::text[])",
        [event.id for event, _ in refused],
    )
    assert kept[0]["n"] == 0, "refusals that can't speak for a submission are only counted"
    on_key = [r for r in rig.events.records if r.key == str(submission_id).encode()]
    assert len(on_key) == 1, "only the acceptance is on the submission's key"
    state = await rig.fetch(
        "SELECT s.state, w.state AS window FROM submissions s JOIN timers w "
        "ON w.kind = 'review-window' AND w.key = s.submission_id::text "
        "WHERE submission_id = $1",
        submission_id,
    )
    assert [(r["state"], r["window"]) for r in state] == [("accepted", "pending")]

    # The lab that really sent a refused input still finds its answer with the lab client.
    async with LabClient(
        lab_id=other.lab_id,
        key_id=other.key_id,
        key=other.key,
        settings=lab_settings(rig.settings, other.lab_id),
    ) as client:
        sent = await client.withdraw(submission_id, "not ours")
        outcome = await client.outcome(sent, within_s=20)
        assert outcome.status == "withdrawal_rejected" and "not_owner" in outcome.summary
        filing = await client.submit(manifest(other.lab_id, submission_id=str(submission_id)))
        outcome = await client.outcome(filing, within_s=20)
        assert outcome.status == "rejected" and "conflict" in outcome.summary


async def test_refused_inputs_are_counted_not_filed_under_the_id_they_name(rig: Rig) -> None:
    filed = Signer("nobody-lab", "n1").filed()
    event = await rig.publish(filed)
    assert rejected(await rig.events.answer(event.id)).reason is R.AUTHENTICATION_FAILED
    async with httpx.AsyncClient(base_url=rig.status_url) as http:
        response = await http.get(f"/submissions/{filed.submission_id}")
    assert response.status_code == 404, "nothing is filed under the id"
    assert await rig.fetch("SELECT 1 FROM submission_history WHERE event_id = $1", event.id) == []
    assert (await rig.refused("nobody-lab")).get("unknown_lab", 0) >= 1


async def test_a_flood_of_unauthenticated_input_is_answered_up_to_the_hourly_limit(
    settings: RuntimeSettings,
) -> None:
    """What junk costs is bounded: counted per claimed sender and hour, and answered at
    most ``intake_refusals_answered_per_hour`` times; the genuine lab is unaffected."""
    async with running_rig(settings, intake_refusals_answered_per_hour=10) as rig:
        flood = [await rig.publish(Signer("flood-lab", "f1").filed()) for _ in range(30)]
        genuine = await rig.publish(rig.signers["b1"].filed())
        accepted(await rig.events.answer(genuine.id))  # same partitions' consumer, after
        await rig.events.linger(1.0)
        answered = [e for e in flood if rig.events.answers(e.id)]
        assert len(answered) == 10
        assert (await rig.refused("flood-lab"))["unknown_lab"] == 30
        rows = await rig.fetch(
            "SELECT count(*) AS n FROM trust_refusal_counts WHERE source = 'flood-lab'"
        )
        assert rows[0]["n"] == 1, "one counter, not a row per record"


async def test_a_body_rfc8785_refuses_is_answered_not_dead_lettered(rig: Rig) -> None:
    event = envelope(rig.signers["a1"].filed())
    # The schema takes a JSON integer beyond 2**53 (as a float); RFC 8785 refuses it.
    huge = 320_000_000_000_000_000_000_000_000
    value = mutated(event, lambda d: d["data"]["model"].update(training_compute_flop=huge))
    assert b'"training_compute_flop": 320000000000000000000000000' in value
    await rig.send(value, event.subject)
    answer = await rig.events.answer(event.id)
    rejection = rejected(answer)
    assert rejection.reason is R.SCHEMA_VIOLATION, rejection.detail
    assert [e.path for e in rejection.field_errors] == ["data.model.training_compute_flop"]
    assert "exponent" in rejection.detail
    assert rejection.submission_id is None and answer.subject == event.id
    assert not [r for r in rig.dlq.records if event.id.encode() in (r.value or b"")]


async def test_each_lab_reads_its_answers_on_its_own_feed(rig: Rig) -> None:
    """The lab's copy of every answer is on labs.<lab>.answers, the only topic its
    principal may read; another lab's feed never carries it. A refusal of input that did
    not authenticate goes to the feed of the registered lab it claims (that lab learns
    someone sends as it), and to no feed when the claimed lab is not registered."""
    types = {event.TYPE: event for event in LAB_FEED_BY_SUFFIX["answers"].events}
    a, b = rig.signers["a1"], rig.signers["b1"]
    async with (
        TopicWatcher(rig.settings, rig.settings.topic("labs.lab-a.answers"), types) as feed_a,
        TopicWatcher(rig.settings, rig.settings.topic("labs.lab-b.answers"), types) as feed_b,
    ):
        filed = a.filed()
        answer = await rig.answer(filed)
        await feed_a.wait(lambda: bool(feed_a.of(filed.submission_id)), what="lab-a's copy")
        assert feed_a.of(filed.submission_id) == [owner_copy(answer.data)]

        posing = Signer("lab-b", "b1")  # lab-b's key id, someone else's key
        forged = await rig.answer(posing.filed())
        refused_id = rejected(forged).rejected_event_id

        def told_b() -> list[Any]:
            return [e for e in feed_b.events() if rejected_id_of(e) == refused_id]

        await feed_b.wait(lambda: bool(told_b()), what="lab-b told of the forgery")
        assert [e.data for e in told_b()] == [owner_copy(forged.data)]
        assert rejected(told_b()[0]).reason is R.AUTHENTICATION_FAILED

        nobody = await rig.answer(Signer("unregistered-lab", "u1").filed())
        assert rejected(nobody).reason is R.AUTHENTICATION_FAILED
        later = b.filed()
        await rig.answer(later)  # the outbox went on past the feed that does not exist
        await feed_b.wait(lambda: bool(feed_b.of(later.submission_id)), what="lab-b's answer")
        mine = {str(filed.submission_id)}
        theirs = {str(later.submission_id), refused_id, rejected(nobody).rejected_event_id}
        assert not [e for e in feed_a.events() if {e.subject, rejected_id_of(e)} & theirs]
        assert not [e for e in feed_b.events() if e.subject in mine]
        parked = await rig.fetch("SELECT topic FROM outbox_parked")
        assert parked == [], "an unregistered lab's refusal is on no feed: nothing to park"


def rejected_id_of(event: Any) -> str | None:
    return getattr(event.data, "rejected_event_id", None)


async def test_history_and_refusal_counts_are_deleted_past_their_retention(
    settings: RuntimeSettings,
) -> None:
    """Retention (FR_INTAKE_HISTORY_KEEP_DAYS, FR_INTAKE_REFUSAL_COUNTS_KEEP_DAYS) by
    intake's clock: refusal counts go after 90 days, a submission's history after 400;
    the submission itself stays."""
    day = 86_400.0
    async with running_rig(settings, intake_prune_every_s=0.1) as rig:
        refused = rig.signers["a1"].filed(
            manifest("lab-a", model={"training_compute_flop": 1e20, "declared_capabilities": []})
        )
        assert rejected(await rig.answer(refused)).reason is R.NOT_COVERED_MODEL
        stranger = await rig.answer(Signer("nobody-lab", "n1").filed())
        assert rejected(stranger).reason is R.AUTHENTICATION_FAILED

        async def rows(table: str) -> int:
            found = await rig.fetch(f"SELECT count(*) AS n FROM {table}")
            return int(found[0]["n"])

        assert await rows("submission_history") == 1 and await rows("trust_refusal_counts") == 1
        rig.clock.advance(91 * day)
        await wait_for(
            lambda: _zero(rows("trust_refusal_counts")),
            what="refusal counts older than 90 days gone",
        )
        assert await rows("submission_history") == 1, "history is kept 400 days"
        rig.clock.advance(310 * day)
        await wait_for(
            lambda: _zero(rows("submission_history")), what="history older than 400 days gone"
        )
        kept = await rig.fetch(
            "SELECT state FROM submissions WHERE submission_id = $1", refused.submission_id
        )
        assert [r["state"] for r in kept] == ["rejected"]


async def _zero(count: Awaitable[int]) -> bool:
    return await count == 0


async def test_a_filing_queued_while_intake_was_down_is_judged_fresh_at_its_append_time(
    settings: RuntimeSettings,
) -> None:
    """Freshness is judged against the broker's LogAppendTime, not when intake gets to
    the record: a filing appended while intake was stopped is accepted by an intake that
    starts later than the skew window (its clock moved 20 minutes on), and a copy signed
    too long before its own append time is still refused."""
    config = intake_settings(settings)
    await create_intake_topics(config)
    lab = Signer("queued-lab", "q1")
    await register_labs(config, [lab])
    topic = config.topic("lab.submissions")
    try:
        async with (
            Producer(config) as producer,
            IntakeWatcher(config, config.topic("intake.events")) as events,
        ):
            first = build_service(config, clock=MovableClock(), resolver=resolve_test_hosts)
            async with running(first):
                before = envelope(lab.filed())
                await producer.send(topic, raw(before), before.subject)
                accepted(await events.answer(before.id))

            queued = envelope(lab.filed())  # signed and appended now, while intake is down
            stale = envelope(lab.filed(issued_at=datetime.now(UTC) - timedelta(minutes=10)))
            for event in (queued, stale):
                await producer.send(topic, raw(event), event.subject)
            later = MovableClock()
            later.advance(20 * 60)  # beyond max age (5 min) and clock tolerance (5 min)
            second = build_service(config, clock=later, resolver=resolve_test_hosts)
            async with running(second):
                decision = accepted(await events.answer(queued.id))
                refusal = rejected(await events.answer(stale.id))
            assert decision.accepted_at >= datetime.now(UTC) + timedelta(minutes=19)
            assert refusal.reason is R.AUTHENTICATION_FAILED
            counted = await refusal_counts(config, "queued-lab")
            assert counted == {"stale_issued_at": 1}
    finally:
        await drop_schema(config)


async def refusal_counts(config: IntakeSettings, lab_id: str) -> dict[str, int]:
    async with connect(config, SCHEMA) as conn:
        rows = await conn.fetch(
            "SELECT reason, sum(refused)::int AS n FROM trust_refusal_counts WHERE source = $1 "
            "GROUP BY reason",
            lab_id,
        )
    return {r["reason"]: r["n"] for r in rows}
