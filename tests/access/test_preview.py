"""Impact preview: counts equal the enforcer's decisions on the same sample; hostile rows."""

from __future__ import annotations

from datetime import timedelta

import pytest

from contracts.events.common import RejectionReason
from contracts.policy import Action
from services.access.preview import ImpactReport, MalformedSample, preview_impact
from services.access.proposal import proposed_order
from services.access.sample import COLUMNS, SampleError, SampleFormat, read_sample
from services.labclient.enforcer import Enforcer
from services.trust.refusal import Refusal
from tests.access.generate import csv_sample, jsonl_sample
from tests.access.support import GROUPS, LAB, MODEL, T0, order, published

AT = T0 + timedelta(hours=1)
CURRENT = order(verification_statuses=["unverified"])
PROPOSED = order(
    nationalities=["CN", "RU"],
    nationality_rule="most_recent",
    organisations=["org-x"],
    exemptions=[{"kind": "organisation", "id": "org-1", "reason": "licensed"}],
)
HEADER = ",".join(COLUMNS) + "\n"


def _preview(
    lines: list[bytes], fmt: SampleFormat = SampleFormat.CSV, **kw: object
) -> ImpactReport:
    report = preview_impact(PROPOSED, [CURRENT], lines, fmt=fmt, groups=GROUPS, at=AT, **kw)  # type: ignore[arg-type]
    assert isinstance(report, ImpactReport), report
    return report


def _enforcer(*orders: object, version: int) -> Enforcer:
    enforcer = Enforcer(lab_id=LAB, clock=lambda: AT)
    enforcer.apply(published(*orders, version=version))  # type: ignore[arg-type]
    enforcer.mark_caught_up()
    return enforcer


@pytest.mark.parametrize("fmt", list(SampleFormat))
def test_preview_counts_equal_the_enforcers_decisions_on_the_same_sample(
    fmt: SampleFormat,
) -> None:
    lines = list(csv_sample(3000) if fmt is SampleFormat.CSV else jsonl_sample(3000))
    report = _preview(lines, fmt)
    before = _enforcer(CURRENT, version=1)
    after = _enforcer(CURRENT, PROPOSED, version=2)
    denied_before = denied_after = newly = 0
    changed: list[str] = []
    for row in read_sample(iter(lines), fmt):
        assert not isinstance(row, Exception)
        was = before.check(row.principal, MODEL, Action.INVOKE, row.request)  # type: ignore[union-attr]
        now = after.check(row.principal, MODEL, Action.INVOKE, row.request)  # type: ignore[union-attr]
        denied_before += not was.allowed
        denied_after += not now.allowed
        if was.allowed and not now.allowed:
            newly += 1
            changed.append(row.principal.id)  # type: ignore[union-attr]
    assert report.rows == 3000 and report.malformed == 0
    assert (report.denied_current, report.denied_proposed, report.newly_denied) == (
        denied_before,
        denied_after,
        newly,
    )
    assert [c.principal_id for c in report.changed] == changed[:1000]
    assert 0 < newly < 3000  # the sample exercises both outcomes
    assert sum(report.newly_denied_by_reason.values()) >= newly


def test_malformed_rows_are_counted_with_line_numbers_and_the_rest_is_evaluated() -> None:
    good = list(csv_sample(5))
    lines = [
        *good,
        b"p-bad,XX-not-a-country,,,,,,,,,,\n",
        b"\xff\xfe,broken\n",
        b"only,three,fields\n",
        b"p-ok2,CN,-,CN,none,verified,2026-01-01T00:00:00+00:00,,-,,,FR\n",
    ]
    report = _preview(lines)
    assert report.rows == 9 and report.malformed == 3
    assert [r.line for r in report.malformed_rows] == [7, 8, 9]
    assert "citizenships" in report.malformed_rows[0].error
    assert report.newly_denied >= 1  # the CN national on line 10 was still evaluated


def test_a_strict_preview_stops_at_the_first_malformed_row() -> None:
    with pytest.raises(MalformedSample, match="line 2"):
        _preview([HEADER.encode(), b"x,ZZZ\n"], stop_on_malformed=True)


def test_a_csv_header_without_principal_id_is_refused_as_a_whole() -> None:
    with pytest.raises(SampleError, match="principal_id"):
        _preview([b"citizenships\n", b"CN\n"])


def test_unknown_csv_columns_are_refused() -> None:
    with pytest.raises(SampleError, match="nationality"):
        _preview([b"principal_id,nationality\n", b"p,CN\n"])


def test_jsonl_rows_with_unknown_fields_or_bad_json_are_malformed() -> None:
    lines = [
        b'{"principal": {"id": "a", "nationality": "CN"}}\n',
        b"{oops\n",
        b"[1]\n",
        b'{"principal": {"id": "b"}}\n',
    ]
    report = _preview(lines, SampleFormat.JSONL)
    assert [r.line for r in report.malformed_rows] == [1, 2, 3]
    assert report.evaluated == 1


def test_the_changed_list_is_bounded_but_every_change_reaches_the_callback() -> None:
    seen: list[str] = []
    report = _preview(
        list(csv_sample(2000)), max_changed=10, on_changed=lambda c: seen.append(c.principal_id)
    )
    assert len(report.changed) == 10 and report.changed_truncated
    assert len(seen) == report.newly_denied


def test_a_proposal_naming_an_unknown_country_group_is_refused() -> None:
    bad = order(country_groups=["nowhere"])
    result = preview_impact(
        bad, [], iter([HEADER.encode()]), fmt=SampleFormat.CSV, groups=GROUPS, at=AT
    )
    assert isinstance(result, Refusal) and result.reason is RejectionReason.UNKNOWN_COUNTRY_GROUP


def test_a_superseding_proposal_is_compared_without_the_order_it_replaces() -> None:
    lines = list(csv_sample(500))
    loosened = order(verification_statuses=["pending"], supersedes=CURRENT.order_id)
    report = preview_impact(loosened, [CURRENT], lines, fmt=SampleFormat.CSV, groups=GROUPS, at=AT)
    assert isinstance(report, ImpactReport)
    assert str(CURRENT.order_id) not in report.proposed_order_ids
    assert report.newly_allowed > 0


# The proposal as a reviewer holds it: the order file risk.cli decide signs.

ORDER_FILE = """\
nationalities: [CN, RU]
nationality_rule: most_recent
organisations: [org-x]
exemptions:
  - {kind: organisation, id: org-1, reason: licensed}
"""


def test_a_reviewers_order_file_previews_like_the_order_it_becomes() -> None:
    proposed = proposed_order(ORDER_FILE, model_id=MODEL, at=AT)
    assert not isinstance(proposed, Refusal), proposed
    assert proposed.scope == PROPOSED.scope and proposed.effective_at == AT
    lines = list(csv_sample(1000, seed=3))
    report = preview_impact(proposed, [CURRENT], lines, fmt=SampleFormat.CSV, groups=GROUPS, at=AT)
    assert isinstance(report, ImpactReport), report
    expected = _preview(lines)
    assert (report.denied_current, report.denied_proposed, report.newly_denied) == (
        expected.denied_current,
        expected.denied_proposed,
        expected.newly_denied,
    )


def test_a_whole_order_file_keeps_its_times() -> None:
    text = f"scope:\n  nationalities: [CN]\neffective_at: {T0.isoformat()}\n" + (
        f"expires_at: {(T0 + timedelta(days=3)).isoformat()}\n"
        f"compliance_deadline: {(T0 + timedelta(days=1)).isoformat()}\n"
    )
    proposed = proposed_order(text, model_id=MODEL, at=AT)
    assert not isinstance(proposed, Refusal), proposed
    assert (proposed.effective_at, proposed.expires_at) == (T0, T0 + timedelta(days=3))


def test_a_restriction_ordered_json_is_taken_as_it_is() -> None:
    proposed = proposed_order(PROPOSED.model_dump_json(), model_id=None, at=AT)
    assert proposed == PROPOSED


def test_an_order_file_with_an_unknown_field_is_refused_naming_it() -> None:
    refusal = proposed_order("nationalitys: [CN]\n", model_id=MODEL, at=AT)
    assert isinstance(refusal, Refusal)
    assert refusal.reason is RejectionReason.SCHEMA_VIOLATION
    assert any("nationalitys" in e.path for e in refusal.field_errors)


def test_an_order_file_without_a_model_id_is_refused() -> None:
    refusal = proposed_order(ORDER_FILE, model_id=None, at=AT)
    assert isinstance(refusal, Refusal) and "model id" in refusal.detail
