"""Where access writes what a lab must read: the one place that chooses the topic.

Today every lab reads the shared registry topics: policies on ``access.policies``
(compacted, keyed by model id) and answers on ``access.events``. When per-lab
feeds exist (``labs.<lab_id>.policies``, readable by that lab alone), these two
functions are what changes; the handlers never name a topic.
"""

from __future__ import annotations

from contracts.registry import TOPIC_BY_NAME
from services.runtime.settings import RuntimeSettings

POLICIES = TOPIC_BY_NAME["access.policies"]
EVENTS = TOPIC_BY_NAME["access.events"]


def policy_feed(settings: RuntimeSettings, lab_id: str) -> str:
    """The compacted topic that carries ``lab_id``'s model policies."""
    return settings.topic(POLICIES.name)


def answer_feed(settings: RuntimeSettings, lab_id: str | None) -> str:
    """The topic that carries access's answers to ``lab_id`` (None: unknown sender)."""
    return settings.topic(EVENTS.name)
