"""The web console over HTTP on the real stack: pages, who may see them, what they escape."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest

from contracts import encode, make_event
from tests.console.rig import Rig
from tests.console.scenario import Scenario
from tests.console.test_waterfall import span_line

TRACE = "5cf92f3577b34da6a3ce929d0e0e4737"
TRACEPARENT = f"00-{TRACE}-00f067aa0ba902b7-01"
SCRIPT = "<script>document.title='pwned'</script>"
IMG = '"><img src=x onerror="document.title=\'pwned\'">'


async def reviewed(console: Rig, **scenario: object) -> Scenario:
    s = Scenario(**scenario)  # type: ignore[arg-type]
    await console.send(s.accepted(), traceparent=TRACEPARENT)
    for data in s.pipeline()[1:]:
        await console.send(data)
    await console.send(s.policy(1, published=s.at(seconds=25), acknowledge_by=s.at(days=1)))
    await console.until_row(
        "the confirmed order and the policy",
        """SELECT (SELECT count(*) FROM orders WHERE submission_id = $1) = 2
              AND (SELECT count(*) FROM policies WHERE model_id = $2) = 1
              AND (SELECT count(*) FROM escalations WHERE submission_id = $1
                   AND status = 'decided') = 1""",
        s.submission_id,
        s.model_id,
    )
    return s


async def test_the_submissions_page_lists_a_submission_with_its_countdown_and_level(
    console: Rig,
) -> None:
    s = await reviewed(console)
    page = await console.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert s.model_id in page.text and f"/submissions/{s.submission_id}" in page.text
    assert "level-critical" in page.text and "evaluated" in page.text
    assert f'data-deadline="{s.deadline.isoformat()}"' in page.text
    assert "left</span>" in page.text  # the countdown as the server rendered it


async def test_a_submissions_page_shows_its_levels_quorum_orders_policies_and_timeline(
    console: Rig,
) -> None:
    s = await reviewed(console)
    page = await console.get(f"/submissions/{s.submission_id}")
    assert page.status_code == 200
    text = page.text
    assert "cyber-ctf-proxy accuracy 0.93 &gt;= 0.9 (critical)" in text  # the rationale
    assert "2/2" in text and "reviewer-a, reviewer-b" in text  # quorum progress
    assert "superseded" in text and "in force" in text  # the interim and confirmed orders
    assert "nationals (any citizenship) of KP" in text
    assert "<td>due</td>" in text  # version 1 is due tomorrow
    assert "EscalationDecided" in text and "SubmissionAccepted" in text  # the timeline
    assert f'href="/submissions/{s.submission_id}/trace"' in text


async def test_the_escalations_page_shows_those_awaiting_with_their_quorum(console: Rig) -> None:
    s = Scenario()
    await console.send(s.accepted())
    await console.send(s.raised())
    await console.send(s.decided("reviewer-a", signed_by=["reviewer-a"], quorum=False))
    await console.until_row(
        "a signature",
        "SELECT 1 FROM escalations WHERE escalation_id = $1 AND doc->'tallies' != '[]'",
        s.escalation,
    )
    page = await console.get("/escalations")
    assert page.status_code == 200 and str(s.submission_id) in page.text and "1/2" in page.text


async def test_the_dead_letters_page_groups_them_by_topic_and_reason(console: Rig) -> None:
    s = Scenario()
    await console.send_dead_letter(
        "reviewers.decisions", b"{}", key=str(s.submission_id), reason="unknown_event_type"
    )
    await console.until_row(
        "the dead letter",
        "SELECT 1 FROM dead_letters WHERE submission_id = $1",
        s.submission_id,
    )
    page = await console.get("/dead-letters")
    assert page.status_code == 200
    assert "reviewers.decisions.dlq" in page.text and "unknown_event_type" in page.text


async def test_the_trace_page_draws_the_submissions_spans_as_a_waterfall(console: Rig) -> None:
    s = await reviewed(console)
    console.write_spans(
        [
            span_line(1, None, "lab.submissions process", "intake", 0, 40, trace=TRACE),
            span_line(2, 1, "intake.events process", "evaluation", 50, 90, trace=TRACE),
            span_line(3, 2, "evaluation.events process", "risk", 100, 200, trace=TRACE),
        ]
    )
    page = await console.get(f"/submissions/{s.submission_id}/trace")
    assert page.status_code == 200
    assert "3 spans over 200.0 ms" in page.text
    assert 'style="left: 50.0%; width: 50.0%"' in page.text  # risk's bar
    assert "evaluation.events process" in page.text


# --- who may see it -------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/escalations", "/dead-letters", "/submissions/x"])
async def test_a_page_without_a_token_is_refused(console: Rig, path: str) -> None:
    refused = await console.request("GET", path)
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"].startswith("Basic")


async def test_a_wrong_token_is_refused(console: Rig) -> None:
    assert (await console.get("/", token="not-the-token-at-all")).status_code == 401


async def test_the_token_is_accepted_as_a_basic_auth_password(console: Rig) -> None:
    basic = base64.b64encode(f"ops:{console.token}".encode()).decode()
    page = await console.request("GET", "/", headers={"Authorization": f"Basic {basic}"})
    assert page.status_code == 200


async def test_health_needs_no_token(console: Rig) -> None:
    health = await console.request("GET", "/healthz")
    assert health.status_code == 200 and health.json() == {"status": "ok"}


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
async def test_anything_but_get_and_head_is_405(console: Rig, method: str) -> None:
    for headers in ({}, {"Authorization": f"Bearer {console.token}"}):
        refused = await console.request(method, "/", headers=headers)
        assert refused.status_code == 405 and refused.headers["allow"] == "GET, HEAD"


async def test_head_is_answered_without_a_body(console: Rig) -> None:
    head = await console.request("HEAD", "/", headers={"Authorization": f"Bearer {console.token}"})
    assert head.status_code == 200 and head.content == b""


@pytest.mark.parametrize(
    "path", ["/submissions/not-a-uuid", f"/submissions/{'0' * 8}-0000-4000-8000-{'0' * 12}"]
)
async def test_an_unknown_submission_is_404(console: Rig, path: str) -> None:
    assert (await console.get(path)).status_code == 404


async def test_the_api_docs_are_not_served(console: Rig) -> None:
    for path in ("/docs", "/openapi.json", "/redoc"):
        assert (await console.get(path)).status_code == 404


async def test_pages_forbid_framing_sniffing_and_every_script_but_their_own(console: Rig) -> None:
    page = await console.get("/")
    policy = page.headers["content-security-policy"]
    assert "script-src 'nonce-" in policy and "default-src 'none'" in policy
    assert "'unsafe-inline'" not in policy.split("script-src", 1)[1].split(";", 1)[0]
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["cache-control"] == "no-store"


# --- everything shown came from outside ------------------------------------------------


async def test_markup_in_what_labs_and_records_carry_renders_inert(console: Rig) -> None:
    s = Scenario(family=SCRIPT)  # model names are restricted by contract; the family is free text
    await console.send(s.accepted(), traceparent=TRACEPARENT)
    await console.send(s.compliance_rejected(detail=f"refused {IMG}"))
    forged = make_event(s.accepted(), source="/forged", subject=str(s.submission_id))
    await console.send_dead_letter(
        "intake.events",
        encode(forged) + SCRIPT.encode(),
        key=f"{s.submission_id}",
        reason=f"bad{SCRIPT}",
        error=f"boom {IMG}",
    )
    await console.send_dead_letter("lab.submissions", SCRIPT.encode(), key=SCRIPT, reason="x")
    await console.until_row(
        "the dead letters and the refusal",
        """SELECT (SELECT count(*) FROM dead_letters WHERE submission_id = $1) = 1
              AND (SELECT count(*) FROM dead_letters WHERE doc->>'key' = $3) = 1
              AND (SELECT count(*) FROM refusals WHERE model_id = $2) = 1""",
        s.submission_id,
        s.model_id,
        SCRIPT,
    )
    pages = [
        await console.get("/"),
        await console.get(f"/submissions/{s.submission_id}"),
        await console.get("/dead-letters"),
    ]
    for page in pages:
        assert page.status_code == 200
        assert "<script>document" not in page.text and "<img" not in page.text
        assert page.text.count("<script") == 1  # the page's own countdown script
    assert "&lt;script&gt;document.title=&#39;pwned&#39;&lt;/script&gt;" in pages[1].text
    assert "&lt;img src=x onerror=" in pages[0].text


async def test_a_submission_accepted_now_counts_down_its_whole_window(console: Rig) -> None:
    s = Scenario(start=datetime.now(UTC).replace(microsecond=0))
    await console.send(s.accepted())
    await console.until_row(
        "the acceptance", "SELECT 1 FROM intake_facts WHERE submission_id = $1", s.submission_id
    )
    page = await console.get(f"/submissions/{s.submission_id}")
    assert f"{s.review_days - 1}d 23h" in page.text or f"{s.review_days}d 0h" in page.text
