"""Console: what ops and reviewers see, as a read model of the agency's topics.

Consumes intake.events, evaluation.events, risk.events, access.events,
access.policies and gov.audit, and the dead-letter topic of every topic an agency
service consumes, each exactly once into its own schema; publishes nothing (no
outbox relay; its principal may not write). Serves the read-only web console
(submissions, escalations, orders, policies and compliance, DLQ contents, trace
waterfalls) on its HTTP port, bound to the loopback interface by default.
"""

from __future__ import annotations

from pathlib import Path

from contracts.principals import Role
from contracts.registry import DEAD_LETTER_TOPICS, TOPIC_BY_NAME
from services.console.handlers import ConsoleHandlers
from services.console.settings import ConsoleSettings
from services.console.web import console_app
from services.runtime import Clock, Service
from services.runtime.consumer import Handler, Idempotency

MIGRATIONS = Path(__file__).parent / "migrations"


def build_service(
    settings: ConsoleSettings | None = None, *, clock: Clock | None = None
) -> Service:
    settings = settings or ConsoleSettings()
    service = Service(
        settings,
        migrations=[MIGRATIONS],
        clock=clock,
        description=__doc__,
        relay=False,  # it publishes nothing
        role=Role.CONSOLE,
    )
    h = ConsoleHandlers(settings.topic_prefix)
    # Every event type of each topic goes to the topic's handler: the console shows
    # whatever travels there (a type without a fold of its own still gets its line).
    sources: dict[str, Handler] = {
        "intake.events": h.intake,
        "evaluation.events": h.evaluation,
        "risk.events": h.risk,
        "access.events": h.access,
        "access.policies": h.policies,
        "gov.audit": h.audit,
    }
    for name, handler in sources.items():
        topic = TOPIC_BY_NAME[name]
        service.consume(topic, dict.fromkeys(topic.events, handler), on_invalid=h.unreadable)
    for dlq in DEAD_LETTER_TOPICS:
        if Role.CONSOLE not in dlq.readers:
            continue  # no agency service reads the topic: nothing is ever dead-lettered
        letter: Handler = h.dead_letter
        service.consume(
            dlq,
            dict.fromkeys(dlq.events, letter),
            on_invalid=h.undecodable_dead_letter,
            # Two consumers of a topic dead-letter the same event twice (same id, same
            # bytes): each is its own dead letter, so each position counts once.
            idempotency=Idempotency.POSITION,
        )
    service.http(console_app(settings, lambda: service.pool, service.clock))
    return service
