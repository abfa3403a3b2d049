"""Freshness of a signature, judged at the broker's append time, and how long nonces live.

Three times:
- ``I``, the signed ``signature.issued_at`` (the sender's clock);
- ``B``, the record's broker timestamp. The input topics use
  ``message.timestamp.type=LogAppendTime``: the broker sets it when it appends the
  record, no producer can choose it;
- ``N``, the service's clock when it processes the record.

And the policy (``FreshnessPolicy``, defaults in brackets):
- ``A`` max_age [5 min]: ``I`` may precede ``B`` by this much (signer's clock
  behind, producer retries, transit);
- ``F`` max_future [1 min]: ``I`` may follow ``B`` by this much (signer's clock ahead);
- ``L`` max_record_age [21 d 5 min]: how long a record can wait on its topic. The
  input topics keep records ``INPUT_RETENTION_MS`` (14 d), but Kafka deletes a
  whole segment only once its newest record is older than that, and rolls a
  segment at the latest ``segment.ms`` (7 d by default) after its first record,
  checked every 5 min: a record can be read up to 14 d + 7 d + 5 min after it
  was appended;
- ``T`` clock_tolerance [5 min]: how far the broker's clock and the clocks of
  the service's replicas may differ.

The rule:
1. ``B`` must be plausible: ``N - L - T <= B <= N + T``. Otherwise the record is
   neither refused nor accepted but dead-lettered (``PermanentError``
   ``implausible_append_time``): a broker clock that is off, or a topic keeping
   records longer than ``L``, is the operator's to fix. A genuine input must not
   be refused for it, and nothing may be accepted whose nonce may have been
   forgotten (below). The dead-letter topic keeps the record for a re-drive.
2. The signature is fresh when ``B - A <= I <= B + F``; else ``stale_issued_at``
   or ``future_issued_at``. The processing time does not enter: an outage or a
   backlog of any length below ``L`` leaves queued input fresh.
3. A record without a LogAppendTime timestamp (a topic left at CreateTime, where
   the producer chooses the timestamp) is judged against ``N`` instead, as if
   ``B = N``. That keeps replay protection (it is the stricter case) but a
   backlog can turn such input stale: configure the topic.

Replay protection: a copy of a captured record is a new record with a new ``B``;
to be fresh it must be appended by ``I + A``, and it can be processed until
``B + L + T`` (rule 1). So once ``N > I + A + L + T`` no record carrying that
signature can be accepted any more, and its nonce can be forgotten. The purge
may run on a replica whose clock is up to ``T`` ahead of the verifying one, so
a nonce is kept while ``issued_at >= now - (L + A + 2T)``:
``FreshnessPolicy.nonce_retention``, 21 d 20 min with the defaults. Only an
authentic, fresh input spends a nonce (``verifier``), so unauthenticated input
adds no rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from contracts.events.common import RejectionReason
from contracts.registry import INPUT_RETENTION_MS
from services.trust.refusal import Refusal

if TYPE_CHECKING:
    from services.runtime.context import Context

LOG_APPEND_TIME = 1
"""Kafka's TimestampType of a broker-set timestamp (aiokafka ``ConsumerRecord.timestamp_type``)."""

KAFKA_DEFAULT_SEGMENT_MS = 7 * 24 * 3600 * 1000  # log.roll.hours = 168
KAFKA_RETENTION_CHECK_MS = 5 * 60 * 1000  # log.retention.check.interval.ms
MAX_INPUT_RECORD_AGE = timedelta(
    milliseconds=INPUT_RETENTION_MS + KAFKA_DEFAULT_SEGMENT_MS + KAFKA_RETENTION_CHECK_MS
)
"""How long after its append time a record of an input topic can still be read."""

IMPLAUSIBLE_APPEND_TIME = "implausible_append_time"
"""The dead-letter reason for a record whose broker timestamp fails rule 1."""


@dataclass(frozen=True)
class FreshnessPolicy:
    max_age: timedelta = timedelta(minutes=5)
    max_future: timedelta = timedelta(minutes=1)
    clock_tolerance: timedelta = timedelta(minutes=5)
    max_record_age: timedelta = MAX_INPUT_RECORD_AGE

    @property
    def nonce_retention(self) -> timedelta:
        """How long after its ``issued_at`` a spent nonce must be remembered."""
        return self.max_record_age + self.max_age + 2 * self.clock_tolerance


@dataclass(frozen=True)
class Receipt:
    """When a record was appended (by the broker's clock) and is processed (by ours)."""

    event_id: str
    now: datetime
    appended_at: datetime | None = None  # LogAppendTime; None when the record has none

    @property
    def reference(self) -> datetime:
        """The time a signature is judged at: the append time when there is one."""
        return self.appended_at if self.appended_at is not None else self.now


def receipt(
    event_id: str, now: datetime, *, timestamp_ms: int | None, log_append_time: bool
) -> Receipt:
    """A Receipt from a Kafka record's timestamp, used only if the broker set it.

    From the runtime: ``receipt(ctx.event.id, ctx.now(), timestamp_ms=ctx.record.timestamp_ms,
    log_append_time=ctx.record.log_append_time)``; from aiokafka:
    ``log_append_time=record.timestamp_type == LOG_APPEND_TIME``. Input that did not come
    through Kafka (an HTTP call) has no broker time: ``Receipt(event_id, now)``.
    """
    appended_at = (
        datetime.fromtimestamp(timestamp_ms / 1000, UTC)
        if timestamp_ms is not None and log_append_time
        else None
    )
    return Receipt(event_id=event_id, now=now, appended_at=appended_at)


def append_time_fault(received: Receipt, policy: FreshnessPolicy) -> str | None:
    """Why the broker timestamp can't be trusted (rule 1), or None."""
    appended_at = received.appended_at
    if appended_at is None:
        return None
    if appended_at > received.now + policy.clock_tolerance:
        return (
            f"the broker appended event {received.event_id!r} at {appended_at.isoformat()}, "
            f"after this service's clock ({received.now.isoformat()}) plus "
            f"{policy.clock_tolerance}: the broker's or this service's clock is off"
        )
    if appended_at < received.now - policy.max_record_age - policy.clock_tolerance:
        return (
            f"the broker appended event {received.event_id!r} at {appended_at.isoformat()}, "
            f"longer ago than a record can stay on an input topic ({policy.max_record_age}): "
            "the broker's clock is off or the topic keeps records longer than assumed, and "
            "the signature's nonce may have been forgotten"
        )
    return None


def check_freshness(
    issued_at: datetime, received: Receipt, policy: FreshnessPolicy
) -> Refusal | None:
    """Rule 2: ``B - A <= issued_at <= B + F`` (``B`` = ``received.reference``)."""
    reference = received.reference
    judge = "the broker received the record" if received.appended_at else "this service's clock"
    if issued_at < reference - policy.max_age:
        return Refusal(
            RejectionReason.STALE_ISSUED_AT,
            f"signature.issued_at {issued_at.isoformat()} is more than "
            f"{policy.max_age.total_seconds():g} s before {judge} ({reference.isoformat()}); "
            "sign again and re-send",
        )
    if issued_at > reference + policy.max_future:
        return Refusal(
            RejectionReason.FUTURE_ISSUED_AT,
            f"signature.issued_at {issued_at.isoformat()} is more than "
            f"{policy.max_future.total_seconds():g} s after {judge} ({reference.isoformat()}); "
            "check the signer's clock",
        )
    return None


def received(ctx: Context) -> Receipt:
    """The Receipt of the record a runtime handler is applying."""
    return receipt(
        ctx.event.id,
        ctx.now(),
        timestamp_ms=ctx.record.timestamp_ms,
        log_append_time=ctx.record.log_append_time,
    )
