"""The thresholds policy: the shipped file, versions, and load errors that name line and field."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from contracts.events.common import RiskDomain, RiskLevel
from contracts.events.risk import NationalityRule, RecommendedAction
from services.risk.policy import (
    POLICY_DIR,
    SHIPPED_VERSION,
    ManualFindings,
    PolicyError,
    available_policies,
    check_unchanged,
    load_active,
    load_policy,
)
from tests.risk.support import SHIPPED_POLICY_FILE, shipped_policy

SHIPPED_TEXT = SHIPPED_POLICY_FILE.read_text()


def write(tmp_path: Path, text: str, version: str = SHIPPED_VERSION) -> Path:
    path = tmp_path / f"{version}.yaml"
    path.write_text(text)
    return path


def edited(old: str, new: str) -> str:
    assert SHIPPED_TEXT.count(old) >= 1, f"{old!r} is not in the shipped policy"
    return SHIPPED_TEXT.replace(old, new, 1)


def line_of(text: str, fragment: str) -> int:
    return text[: text.index(fragment)].count("\n") + 1


def test_the_shipped_policy_loads_with_every_domain_and_escalable_level() -> None:
    policy = shipped_policy()
    assert policy.version == SHIPPED_VERSION
    assert set(policy.domains) == set(RiskDomain)
    assert len(policy.sha256) == 64
    assert policy.domain(RiskDomain.CYBER).escalation_bar is RiskLevel.HIGH
    assert policy.domain(RiskDomain.AUTONOMY).escalation_bar is RiskLevel.CRITICAL
    assert policy.domain(RiskDomain.BIO).manual_findings is ManualFindings.CORROBORATED


def test_the_shipped_critical_level_needs_two_reviewers_and_restricts_at_once() -> None:
    critical = shipped_policy().response(RiskLevel.CRITICAL)
    assert critical is not None and critical.reviewers_required == 2
    assert critical.decision_deadline == timedelta(days=2)
    assert RecommendedAction.DELAY_RELEASE in critical.recommended_actions
    interim = critical.interim_restriction
    assert interim is not None and interim.compliance_within == timedelta(hours=4)
    assert interim.scope.nationality_rule is NationalityRule.MOST_RECENT
    assert interim.scope.country_groups == ["arms-embargoed"]


def test_the_shipped_high_level_needs_one_reviewer_and_no_interim_restriction() -> None:
    high = shipped_policy().response(RiskLevel.HIGH)
    assert high is not None and high.reviewers_required == 1
    assert high.interim_restriction is None
    assert shipped_policy().response(RiskLevel.LOW) is None


def test_policy_versions_are_listed_and_the_active_one_is_loaded_by_name() -> None:
    versions = [p.version for p in available_policies(POLICY_DIR)]
    assert SHIPPED_VERSION in versions
    assert load_active(POLICY_DIR, SHIPPED_VERSION).version == SHIPPED_VERSION


def test_an_unknown_active_version_names_the_known_ones() -> None:
    with pytest.raises(PolicyError, match=rf"no policy 'thresholds-9' .*{SHIPPED_VERSION}"):
        load_active(POLICY_DIR, "thresholds-9")


def test_a_policy_whose_content_changed_under_a_used_version_is_refused() -> None:
    policy = shipped_policy()
    assert check_unchanged(policy, {}) is None
    assert check_unchanged(policy, {policy.version: policy.sha256}) is None
    problem = check_unchanged(policy, {policy.version: "0" * 64})
    assert problem is not None and "new version" in problem


MALFORMED = [
    pytest.param(
        "        critical: 0.99",
        "        critical: 1.5",
        "domains.cyber.capabilities.vulnerability-discovery.critical",
        "less than or equal to 1",
        "        critical: 1.5",
        id="score-above-one",
    ),
    pytest.param(
        "    manual_findings: corroborated\n",
        "    manual_findings: sometimes\n",
        "domains.bio.manual_findings",
        "'count', 'corroborated' or 'advisory'",
        "    manual_findings: sometimes",
        id="unknown-manual-rule",
    ),
    pytest.param(
        "    reviewers_required: 2",
        "    reviewers_required: two",
        "levels.critical.reviewers_required",
        "valid integer",
        "    reviewers_required: two",
        id="reviewers-not-a-number",
    ),
    pytest.param(
        "    decision_deadline: P2D",
        "    decision_deadline: two days",
        "levels.critical.decision_deadline",
        "duration",
        "    decision_deadline: two days",
        id="deadline-not-a-duration",
    ),
    pytest.param(
        "      moderate: 0.25\n      high: 0.5\n",
        "      moderate: 0.25\n      high: 0.2\n",
        "domains.cyber.default.high",
        "must be above the moderate bound",
        "      high: 0.2",
        id="bands-fall",
    ),
    pytest.param(
        "        alert: 0.33\n        moderate: 0.33\n        high: 0.66\n        critical: 0.99",
        "        alert: 0.7\n        moderate: 0.33\n        high: 0.66\n        critical: 0.99",
        "domains.cyber.capabilities.vulnerability-discovery.alert",
        "below the escalation bar",
        "        alert: 0.7",
        id="alert-above-the-bar",
    ),
    pytest.param(
        "  chem:\n    escalation_bar: high",
        "  chem:\n    escalation_bar: low",
        "domains.chem.escalation_bar",
        "moderate, high or critical",
        "    escalation_bar: low",
        id="bar-at-low",
    ),
    pytest.param(
        "        country_groups: [arms-embargoed]",
        "        country_group: [arms-embargoed]",
        "levels.critical.interim_restriction.scope.country_group",
        "Extra inputs are not permitted",
        "        country_group: [arms-embargoed]",
        id="typo-in-the-interim-scope",
    ),
    pytest.param(
        "  cyber:\n",
        "  cyberr:\n",
        "domains.cyberr",
        "'cyber'",
        "  cyberr:",
        id="unknown-domain",
    ),
    pytest.param(
        "    reviewers_required: 1\n    decision_deadline: P5D",
        "    reviewers_required: 3\n    decision_deadline: P5D",
        "levels.critical.reviewers_required",
        "at least as many reviewers as high",
        "    reviewers_required: 2",
        id="fewer-reviewers-at-a-higher-level",
    ),
]


@pytest.mark.parametrize(("old", "new", "field", "message", "at"), MALFORMED)
def test_a_malformed_policy_fails_naming_the_line_and_the_field(
    tmp_path: Path, old: str, new: str, field: str, message: str, at: str
) -> None:
    text = edited(old, new)
    with pytest.raises(PolicyError) as caught:
        load_policy(write(tmp_path, text))
    problems = [p for p in caught.value.problems if p.field == field]
    assert problems, f"no problem for {field}: {caught.value}"
    assert message in problems[0].message
    assert problems[0].line == line_of(text, at), str(caught.value)
    assert f"line {problems[0].line}, column" in str(caught.value)
    assert field in str(caught.value)


def test_a_missing_field_points_at_the_mapping_that_lacks_it(tmp_path: Path) -> None:
    text = edited(
        "    manual_findings: count\n    default:\n      alert: 0.2",
        "    default:\n      alert: 0.2",
    )
    with pytest.raises(PolicyError) as caught:
        load_policy(write(tmp_path, text))
    [problem] = caught.value.problems
    assert problem.field == "domains.cyber.manual_findings"
    assert problem.message.startswith("Field required")
    assert problem.line == line_of(text, "    escalation_bar: high")


def test_a_duplicate_key_is_an_error_not_the_last_one_winning(tmp_path: Path) -> None:
    text = edited(
        "    escalation_bar: high\n    manual_findings: count",
        "    escalation_bar: high\n    escalation_bar: critical\n    manual_findings: count",
    )
    with pytest.raises(PolicyError) as caught:
        load_policy(write(tmp_path, text))
    [problem] = caught.value.problems
    assert problem.field == "domains.cyber.escalation_bar"
    assert problem.line == line_of(text, "    escalation_bar: critical")
    assert "duplicate key" in problem.message


def test_broken_yaml_names_its_line(tmp_path: Path) -> None:
    text = edited("  bio:\n", "  bio: [\n")
    with pytest.raises(PolicyError) as caught:
        load_policy(write(tmp_path, text))
    [problem] = caught.value.problems
    assert problem.line is not None and problem.line >= line_of(text, "  bio: [")


def test_a_document_that_is_not_a_mapping_is_refused(tmp_path: Path) -> None:
    for text in ("", "- a list\n"):
        with pytest.raises(PolicyError, match="must be a mapping"):
            load_policy(write(tmp_path, text))


def test_the_version_must_be_the_file_name(tmp_path: Path) -> None:
    with pytest.raises(PolicyError) as caught:
        load_policy(write(tmp_path, SHIPPED_TEXT, version="thresholds-2099.1"))
    [problem] = caught.value.problems
    assert problem.field == "version" and "file name" in problem.message
    assert problem.line == line_of(SHIPPED_TEXT, "version: ")


def test_a_missing_domain_is_named(tmp_path: Path) -> None:
    start = SHIPPED_TEXT.index("  autonomy:\n")
    end = SHIPPED_TEXT.index("\nlevels:")
    text = SHIPPED_TEXT[:start] + SHIPPED_TEXT[end + 1 :]
    with pytest.raises(PolicyError) as caught:
        load_policy(write(tmp_path, text))
    [problem] = caught.value.problems
    assert problem.field == "domains" and "autonomy" in problem.message
    assert problem.line == line_of(text, "  cyber:")
