"""The embeddable enforcer: readiness, versions, swaps, cache, staleness."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

from contracts.events.access import policy_hash
from contracts.policy import Action, DecisionBasis
from services.labclient.enforcer import ApplyResult, Enforcer
from tests.access.support import LAB, MODEL, T0, order, person, published, ties

CN = person(citizenships=ties("CN"))
FR = person()


class Clock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def ready_enforcer(clock: Clock | None = None) -> Enforcer:
    enforcer = Enforcer(lab_id=LAB, clock=clock or Clock())
    enforcer.mark_caught_up()
    return enforcer


def test_before_catching_up_every_model_is_denied() -> None:
    enforcer = Enforcer(lab_id=LAB, clock=Clock())
    assert enforcer.apply(published(order(nationalities=["CN"]))) is ApplyResult.APPLIED
    for model in (MODEL, f"{LAB}/never-restricted@1"):
        decision = enforcer.check(FR, model)
        assert not decision.allowed and decision.basis is DecisionBasis.NOT_READY
    assert not enforcer.ready and enforcer.status().view_age_s is None


def test_once_caught_up_the_applied_policy_decides() -> None:
    enforcer = Enforcer(lab_id=LAB, clock=Clock())
    enforcer.apply(published(order(nationalities=["CN"])))
    enforcer.mark_caught_up()
    assert enforcer.ready
    assert not enforcer.check(CN, MODEL).allowed
    assert enforcer.check(FR, MODEL).allowed


def test_a_model_without_any_policy_is_unrestricted() -> None:
    decision = ready_enforcer().check(CN, f"{LAB}/other@1")
    assert decision.allowed and decision.basis is DecisionBasis.UNRESTRICTED
    assert decision.policy_version is None


def test_a_newer_version_replaces_the_older_one() -> None:
    enforcer = ready_enforcer()
    enforcer.apply(published(order(nationalities=["CN"]), version=1))
    assert enforcer.apply(published(version=2)) is ApplyResult.APPLIED
    decision = enforcer.check(CN, MODEL)
    assert decision.allowed and decision.policy_version == 2


def test_an_older_version_arriving_late_is_ignored() -> None:
    enforcer = ready_enforcer()
    enforcer.apply(published(version=2))
    assert enforcer.apply(published(order(nationalities=["CN"]), version=1)) is ApplyResult.STALE
    decision = enforcer.check(CN, MODEL)
    assert decision.allowed and decision.policy_version == 2


def test_the_same_version_again_is_a_duplicate() -> None:
    enforcer = ready_enforcer()
    event = published(order(nationalities=["CN"]))
    enforcer.apply(event)
    assert enforcer.apply(event) is ApplyResult.DUPLICATE


def test_two_texts_under_one_version_make_the_model_fail_closed() -> None:
    enforcer = ready_enforcer()
    enforcer.apply(published(order(nationalities=["CN"])))
    other = published(order(nationalities=["RU"]))
    assert enforcer.apply(other) is ApplyResult.CONFLICT
    decision = enforcer.check(FR, MODEL)
    assert not decision.allowed and decision.basis is DecisionBasis.UNUSABLE_POLICY


def test_an_unusable_version_makes_the_model_fail_closed_until_a_usable_one() -> None:
    enforcer = ready_enforcer()
    enforcer.apply(published(version=1))
    text = "permit (principal, action, resource);"  # no @id, no reason
    broken = published(version=2).model_copy(
        update={"cedar_policies": text, "content_hash": policy_hash(text)}
    )
    assert enforcer.apply(broken) is ApplyResult.UNUSABLE
    decision = enforcer.check(FR, MODEL)
    assert not decision.allowed and decision.basis is DecisionBasis.UNUSABLE_POLICY
    assert decision.policy_version == 2 and "@id" in decision.reasons[0].text
    assert enforcer.apply(published(version=3)) is ApplyResult.APPLIED
    assert enforcer.check(FR, MODEL).allowed


def test_an_unknown_schema_version_is_unusable() -> None:
    enforcer = ready_enforcer()
    event = published(version=1).model_copy(update={"cedar_schema_version": "fr-access-99"})
    assert enforcer.apply(event) is ApplyResult.UNUSABLE
    assert not enforcer.check(FR, MODEL).allowed


def test_another_labs_policy_is_ignored() -> None:
    enforcer = ready_enforcer()
    event = published(
        order(model_id="other-lab/m@1", nationalities=["CN"]), model_id="other-lab/m@1"
    )
    assert enforcer.apply(event) is ApplyResult.OTHER_LAB
    assert enforcer.applied("other-lab/m@1") is None


def test_an_order_published_ahead_applies_at_its_effective_time() -> None:
    clock = Clock()
    enforcer = ready_enforcer(clock)
    enforcer.apply(published(order(nationalities=["CN"], effective_at=T0 + timedelta(hours=2))))
    assert enforcer.check(CN, MODEL).allowed
    clock.now = T0 + timedelta(hours=2)
    assert not enforcer.check(CN, MODEL).allowed


def test_a_time_limited_order_stops_denying_at_its_expiry() -> None:
    clock = Clock()
    enforcer = ready_enforcer(clock)
    enforcer.apply(published(order(nationalities=["CN"], expires_at=T0 + timedelta(hours=2))))
    assert not enforcer.check(CN, MODEL).allowed
    clock.now = T0 + timedelta(hours=2)
    assert enforcer.check(CN, MODEL).allowed


def test_repeated_questions_are_answered_from_the_cache_of_the_version() -> None:
    enforcer = ready_enforcer()
    enforcer.apply(published(order(nationalities=["CN"])))
    for pid in ("a", "b", "c"):
        assert not enforcer.check(person(pid, citizenships=ties("CN")), MODEL).allowed
    policy = enforcer._entries[MODEL].policy  # the loaded version
    assert policy is not None and (policy.misses, policy.hits) == (1, 2)


def test_an_exempt_principal_is_not_served_a_cached_denial() -> None:
    exempt = {"kind": "principal", "id": "vip", "reason": "licensed"}
    enforcer = ready_enforcer()
    enforcer.apply(published(order(nationalities=["CN"], exemptions=[exempt])))
    assert not enforcer.check(person("someone", citizenships=ties("CN")), MODEL).allowed
    assert enforcer.check(person("vip", citizenships=ties("CN")), MODEL).allowed


def test_the_cache_does_not_outlive_its_time_window() -> None:
    clock = Clock()
    enforcer = ready_enforcer(clock)
    enforcer.apply(published(order(nationalities=["CN"], effective_at=T0 + timedelta(hours=1))))
    assert enforcer.check(CN, MODEL).allowed  # cached before the order applies
    clock.now = T0 + timedelta(hours=1)
    assert not enforcer.check(CN, MODEL).allowed


def test_the_view_age_is_the_time_since_the_feed_was_last_read_to_its_end() -> None:
    clock = Clock()
    enforcer = ready_enforcer(clock)
    clock.now = T0 + timedelta(seconds=42)
    assert enforcer.status().view_age_s == 42
    enforcer.mark_caught_up()
    assert enforcer.status().view_age_s == 0


def test_decisions_name_the_applied_version_and_its_hash() -> None:
    enforcer = ready_enforcer()
    event = published(order(nationalities=["CN"]), version=4)
    enforcer.apply(event)
    decision = enforcer.check(CN, MODEL, Action.FINE_TUNE)
    assert (decision.policy_version, decision.content_hash) == (4, event.content_hash)
    applied = enforcer.applied(MODEL)
    assert applied is not None and applied.order_ids == tuple(event.order_ids)


def test_concurrent_checks_never_see_a_version_go_backwards() -> None:
    enforcer = ready_enforcer()
    restrict = order(nationalities=["CN"])
    events = [
        published(restrict, version=v) if v % 2 else published(version=v) for v in range(1, 41)
    ]
    seen: list[int] = []
    stop = threading.Event()
    checked = threading.Condition()

    def checker() -> None:
        while not stop.is_set():
            version = enforcer.check(CN, MODEL).policy_version
            with checked:
                if version is not None:
                    seen.append(version)
                checked.notify_all()

    thread = threading.Thread(target=checker)
    thread.start()
    for event in events:  # in order, with stale replays mixed in
        enforcer.apply(event)
        enforcer.apply(events[0])
        with checked:  # the checker runs between every two applies, however busy the CPU
            wanted = len(seen) + 2
            assert checked.wait_for(lambda: len(seen) >= wanted, timeout=10)  # noqa: B023
    stop.set()
    thread.join()
    assert seen and seen == sorted(seen)
    assert enforcer.applied(MODEL).version == 40  # type: ignore[union-attr]
