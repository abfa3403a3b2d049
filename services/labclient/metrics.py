"""Prometheus metrics of one enforcement point (an ``Enforcer`` and its feed reader).

Every ``Enforcer`` has one ``EnforcerMetrics`` (``enforcer.metrics``) with a
registry of its own (never prometheus-client's global one: a gateway that embeds
two enforcers, or a test, keeps their numbers apart). The decision API serves it
at ``/metrics`` (decision_api.py); a gateway that embeds the enforcer serves
``enforcer.metrics.exposition()`` itself. Names share the system's prefix:

- ``frontier_review_enforcer_decisions_total`` (counter; outcome = allow | deny,
  basis = policy | unrestricted | not_ready | unusable_policy | evaluation_error):
  every answer ``check`` gave. No model label: the model id is the caller's
  input, and labels must not be chosen from outside;
- ``frontier_review_enforcer_policy_version`` (gauge; model): the version applied
  for each model of the lab (its policy feed is the agency's: bounded, trusted);
  ``frontier_review_enforcer_policy_usable`` (gauge; model): 0 where that version
  cannot be enforced and the model fails closed;
- ``frontier_review_enforcer_policy_records_total`` (counter; result = applied |
  duplicate | stale | unusable | conflict | other_lab | unreadable): records of
  the feed taken, by what applying them did;
- ``frontier_review_enforcer_ready`` (gauge): 1 once the feed was read to its end;
  ``frontier_review_enforcer_view_age_seconds`` (gauge): since it last was;
- ``frontier_review_enforcer_feed_lag_records`` (gauge; topic, partition): records
  of the feed not yet read, as of the feed reader's last look at the end offsets
  (it looks every ``refresh_s`` anyway, to keep the view's age; no extra request).

Counting a decision is one pre-bound prometheus-client child's ``inc()`` (a lock,
so a gateway may call ``check`` from several threads).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Protocol

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from contracts.policy.decision import Decision, DecisionBasis

if TYPE_CHECKING:
    from services.labclient.enforcer import EnforcerStatus

PREFIX = "frontier_review_enforcer_"
UNREADABLE = "unreadable"  # a feed record that is not a readable policy
B = DecisionBasis
POSSIBLE_DECISIONS = (
    (True, B.POLICY),
    (True, B.UNRESTRICTED),
    (False, B.POLICY),
    (False, B.NOT_READY),
    (False, B.UNUSABLE_POLICY),
    (False, B.EVALUATION_ERROR),
)


class FollowedFeed(Protocol):
    """What the metrics read of a feed reader (feed.py's ``PolicyFeed``)."""

    topic: str

    @property
    def lag(self) -> dict[int, int]: ...


class StatusSource(Protocol):
    def status(self) -> EnforcerStatus: ...


class EnforcerMetrics:
    """The registry of one enforcement point (see the module doc)."""

    def __init__(self, enforcer: StatusSource) -> None:
        self.registry = CollectorRegistry()
        self._decisions = Counter(
            f"{PREFIX}decisions",
            "Decisions the enforcer answered, by outcome and by what the decision rests on.",
            ("outcome", "basis"),
            registry=self.registry,
        )
        self._records = Counter(
            f"{PREFIX}policy_records",
            "Records of the policy feed taken, by what applying them did.",
            ("result",),
            registry=self.registry,
        )
        # Pre-bound children (at 0 from the start, so a rate has a series to work on):
        # the hot path does no label lookup.
        self._decided = {
            (allowed, basis): self._decisions.labels(_outcome(allowed), basis.value)
            for allowed, basis in POSSIBLE_DECISIONS
        }
        self._state = _EnforcerState(enforcer)
        self.registry.register(self._state)

    def decided(self, decision: Decision) -> None:
        key = (decision.allowed, DecisionBasis(decision.basis))
        child = self._decided.get(key)
        if child is None:  # a combination the enforcer does not give today
            child = self._decided[key] = self._decisions.labels(_outcome(key[0]), key[1].value)
        child.inc()

    def took(self, result: str) -> None:
        """One record of the feed taken: an ``ApplyResult`` value, or ``unreadable``."""
        self._records.labels(result).inc()

    def follow(self, feed: FollowedFeed) -> None:
        """Report ``feed``'s lag (a feed reader calls it for its enforcer)."""
        self._state.feeds.append(feed)

    def exposition(self, accept: str = "") -> tuple[bytes, str]:
        """The registry in the format the scraper accepts (``Accept`` header)."""
        encoder, content_type = choose_encoder(accept)
        return encoder(self.registry), content_type


def _outcome(allowed: bool) -> str:
    return "allow" if allowed else "deny"


class _EnforcerState:
    """The applied versions, readiness and the feed's lag, read when scraped."""

    def __init__(self, enforcer: StatusSource) -> None:
        self.enforcer = enforcer
        self.feeds: list[FollowedFeed] = []

    def describe(self) -> Iterable[Metric]:
        return self._families()

    def collect(self) -> Iterable[Metric]:
        return self._families(samples=True)

    def _families(self, samples: bool = False) -> Iterator[Metric]:
        version = GaugeMetricFamily(
            f"{PREFIX}policy_version",
            "The policy version applied for the model (what the lab acknowledges).",
            labels=("model",),
        )
        usable = GaugeMetricFamily(
            f"{PREFIX}policy_usable",
            "1 if the applied version is enforced; 0 if it cannot be and the model fails closed.",
            labels=("model",),
        )
        ready = GaugeMetricFamily(
            f"{PREFIX}ready", "1 once the policy feed was read to its end (until then: deny)."
        )
        age = GaugeMetricFamily(
            f"{PREFIX}view_age_seconds",
            "Seconds since the policy feed was last known to be read to its end.",
        )
        lag = GaugeMetricFamily(
            f"{PREFIX}feed_lag_records",
            "Records of the policy feed's partition not yet read (as of the last look).",
            labels=("topic", "partition"),
        )
        if samples:
            status = self.enforcer.status()
            for model, applied in sorted(status.models.items()):
                version.add_metric([model], float(applied.version))
                usable.add_metric([model], 1.0 if applied.usable else 0.0)
            ready.add_metric([], 1.0 if status.ready else 0.0)
            if status.view_age_s is not None:
                age.add_metric([], status.view_age_s)
            for feed in self.feeds:
                for partition, records in sorted(feed.lag.items()):
                    lag.add_metric([feed.topic, str(partition)], float(records))
        yield from (version, usable, ready, age, lag)
