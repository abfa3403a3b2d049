"""A covered model no suite applies to gets an answer: EvaluationCompleted with no suites."""

from __future__ import annotations

from contracts.events import EvaluationCompleted, FindingRecorded
from contracts.events.evaluation import EvaluationEnd
from tests.conftest import read_topic
from tests.evaluation.conftest import EvalRig
from tests.evaluation.support import accepted, window_closed
from tests.evaluation.test_external_findings import as_record as finding_record
from tests.evaluation.test_external_findings import register_example_key, submitted


async def test_a_model_no_suite_applies_to_is_answered_with_an_evaluation_of_no_suites(
    rig: EvalRig,
) -> None:
    settings = await rig.start(worker=False)
    await register_example_key(rig.database, rig.schema)
    images_only = accepted(rig.demo_url, "capable", modalities=["image"])  # every suite needs text
    sid = images_only.submission_id
    # Sent twice (e.g. intake re-published it), then the window closes.
    await rig.send_intake(images_only, images_only)
    await rig.send_intake(window_closed(images_only))
    async with rig.evaluation_reader() as reader:
        await reader.wait_until(lambda: bool(reader.of(sid, EvaluationCompleted)), what="an end")
        # A red team may still report on the model by hand.
        finding = finding_record(submitted(sid))
        await rig.send_findings((str(sid), finding))
        await reader.wait_until(lambda: bool(reader.of(sid, FindingRecorded)), what="a finding")
        await reader.linger()

    [completed] = reader.of(sid, EvaluationCompleted)
    assert completed.ended_by is EvaluationEnd.NO_APPLICABLE_SUITES
    assert completed.suites == [] and completed.incomplete
    assert completed.detail is not None and completed.detail.endswith("modalities: image")
    assert [type(e).__name__ for e in reader.of(sid)] == ["EvaluationCompleted", "FindingRecorded"]
    ended_by = await rig.fetchval(
        f'SELECT ended_by FROM "{rig.schema}".evaluations WHERE submission_id = $1', sid
    )
    jobs = await rig.fetchval(f'SELECT count(*) FROM "{rig.schema}".jobs')
    assert (ended_by, jobs) == ("no_applicable_suites", 0)
    dead = await read_topic(
        settings.kafka_bootstrap, f"{rig.topics.intake}.dlq", expected=0, timeout=1
    )
    assert dead == [], "nothing was dead-lettered"
