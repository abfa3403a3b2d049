"""The whole system under faults: a few thousand submissions in flight while each
service is SIGKILLed and restarted in turn, Kafka is restarted and PostgreSQL crashes,
with about 1 % poison among the records; once with one replica of each service, once
with two in each consumer group.

What is real: the four services as OS processes on the secured broker and PostgreSQL,
three labs filing signed submissions through the lab client, two reviewers' signed
decisions, each lab's enforcer following its policy feed, Inspect runs of the demo lab
model over HTTP. What is made small: most models are image-only, so no suite applies
to them (evaluation plans nothing and says so: ``no_applicable_suites``) and their
reviews conclude cleared when their windows close; six text models each get one
real Inspect run of a one-sample cut of the cyber proxy (tests/system/suites.py), which
the demo model's ``capable`` profile solves (critical cyber: escalation and an interim
restriction); a review "day" lasts eight seconds.

In flight: 3,000 submissions (``FR_SYSTEM_FAULT_SUBMISSIONS``) are filed in the first
~75 s and their windows (15..25 days, 30 for the evaluated ones: two to four minutes)
stay open while the faults strike, so each fault finds most of them filed and not yet
concluded (``Fault.in_flight``, checked below and printed in the run's summary).

The run happens once per variant (the module's ``run`` fixture, bounded by
``DEADLINE_S``); each test checks one property of what it left
(tests/system/properties.py).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.runtime import RuntimeSettings
from tests.system import properties
from tests.system.rig import SERVICES, Lab, running_system
from tests.system.scenario import Faults, Run, run_workload
from tests.system.stack import stack_under_test
from tests.system.workload import plan_poison, plan_submissions

pytestmark = pytest.mark.system

SUBMISSIONS = int(os.environ.get("FR_SYSTEM_FAULT_SUBMISSIONS", "3000"))
EVALUATED = 6  # text models: one Inspect run each (a third confirmed, dismissed, pending)
RATE = 40.0  # filings per second
SECONDS_PER_DAY = 8.0
CLEARED_DAYS = (15, 25)  # a cleared model's window (an evaluated one's: 30 days)
DEADLINE_S = 900.0  # from the first filing until everything reached its outcome
IN_FLIGHT = SUBMISSIONS // 3  # at least this many filed, not concluded, at each fault
FAULTS = [
    *(f"SIGKILL {name}-1" for name in SERVICES),
    "restart Kafka",
    "crash PostgreSQL",
]


async def every_fault_in_turn(faults: Faults) -> None:
    """Each service's first replica killed and restarted, then the broker restarted, then
    the database crashed; each fault once the system moved on from the one before."""
    await faults.in_flight_reaches(IN_FLIGHT)
    for name in SERVICES:
        await faults.kill_and_restart(faults.rig.replicas[name][0])
        await faults.moved_on(at_least=50)
    await faults.strike("restart Kafka", faults.stack.restart_kafka)
    await faults.moved_on(at_least=50)
    await faults.strike("crash PostgreSQL", faults.stack.crash_postgres)
    await faults.moved_on(at_least=50)


@pytest.fixture(scope="module", params=[1, 2], ids=["one-replica", "two-replicas"])
async def run(
    request: pytest.FixtureRequest,
    settings: RuntimeSettings,
    kafka: str,
    database: str,
    demo_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Run]:
    """The workload through the faults, with one replica of each service, then with two
    in each consumer group (a killed replica's partitions move to the other)."""
    replicas: int = request.param
    stack = await stack_under_test(settings)
    directory: Path = tmp_path_factory.mktemp(f"faults-{replicas}")
    labs = [Lab(f"lab-{name}", f"{name}-k1") for name in ("a", "b", "c")]
    async with running_system(
        settings,
        directory,
        demo_url,
        labs=labs,
        seconds_per_day=SECONDS_PER_DAY,
        replicas=replicas,
    ) as rig:
        planned = plan_submissions(
            rig, SUBMISSIONS, evaluated=EVALUATED, seed=12, days=CLEARED_DAYS
        )
        poison = plan_poison(rig, planned, seed=12, per_kind=max(1, round(SUBMISSIONS / 1300)))
        try:
            done = await run_workload(
                rig,
                planned,
                poison,
                rate=RATE,
                faults=every_fault_in_turn,
                stack=stack,
                deadline_s=DEADLINE_S,
            )
        except BaseException as exc:
            print(f"the run failed: {exc!r}\n{rig.logs()}")
            raise
        print(properties.summary(done))
        yield done


def test_every_fault_struck_with_submissions_in_flight(run: Run) -> None:
    problems = properties.faults_struck(run, FAULTS, in_flight=IN_FLIGHT)
    assert not problems, "\n".join(problems)


def test_every_submission_reaches_exactly_one_terminal_outcome(run: Run) -> None:
    problems = properties.terminal_outcomes(run)
    assert not problems, "\n".join(problems[:20])


def test_each_lab_hears_each_outcome_once_on_its_own_feed(run: Run) -> None:
    problems = properties.lab_feed_outcomes(run)
    assert not problems, "\n".join(problems[:20])


def test_every_event_is_published_exactly_once(run: Run) -> None:
    problems = properties.published_once(run)
    assert not problems, "\n".join(problems[:20])


def test_no_event_is_applied_twice(run: Run) -> None:
    problems = properties.applied_once(run)
    assert not problems, "\n".join(problems[:20])


def test_per_submission_order_is_kept_on_every_topic(run: Run) -> None:
    problems = properties.order_kept(run)
    assert not problems, "\n".join(problems[:20])


def test_the_dead_letter_queues_hold_exactly_the_poison_with_its_reason(run: Run) -> None:
    problems = properties.dead_letters(run)
    assert not problems, "\n".join(problems[:20])


def test_poison_that_names_an_event_is_answered_once_with_its_reason(run: Run) -> None:
    problems = properties.poison_answered(run)
    assert not problems, "\n".join(problems[:20])


def test_every_enforcer_ends_on_the_latest_policy_version_of_each_model(run: Run) -> None:
    problems = properties.enforcers_current(run)
    assert not problems, "\n".join(problems[:20])


def test_the_audit_chain_verifies(run: Run) -> None:
    assert not properties.audit_verifies(run)
