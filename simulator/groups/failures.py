"""Failure handling shared by both delivery modes: dead letters and redrive.

What a failed attempt leads to (a retry in place, a requeue, a retry queue, a dead letter) is
the delivery mode's choice; this module keeps what follows a dead letter, in a real destination:

- stream (Kafka): Spring's ``DeadLetterPublishingRecoverer`` publishes the record to the topic
  ``<original topic>.DLT``, to the same partition as the original, with the ``kafka_dlt-*``
  headers (original topic, partition, offset, timestamp, consumer group, exception). The DLT is
  a topic like any other: offsets, retention, readable from an offset. Redrive republishes each
  dead letter to the original topic, where *every* group reading that topic gets it again (a
  group that had processed the original processes a duplicate unless it is idempotent); the
  DLT keeps its records, as a log does.
- queue (RabbitMQ): the message is dead-lettered through the dead-letter exchange to the queue
  ``<queue>.dlq`` with an ``x-death`` header (reason ``rejected`` or ``delivery_limit``); the
  queue is bounded (``x-max-length``, overflow ``drop-head``, RabbitMQ's default behaviour).
  Redrive is a shovel: the messages move from the dead-letter queue to the tail of the
  original queue and only that queue's consumers see them again.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..broker import (
    CORRELATION_ID,
    ID,
    OFFSET,
    PARTITION,
    PAYLOAD,
    POISON,
    TOPIC,
    TS,
    TYPE,
    Record,
)

if TYPE_CHECKING:
    from ..scenario import ConsumerSpec, RetrySpec
    from .base import Host, Instance

REASON_POISON = "poison event: processing always fails"
REASON_FAILED = "processing failed"
REASON_DELIVERY_LIMIT = "delivery limit exceeded: returned {n} times (x-delivery-limit {limit})"
REASON_REJECTED = "rejected (basic.reject, requeue=false)"

# how many dead letters a group lists and can redrive; also a DLT partition's retention and a
# dead-letter queue's x-max-length (a memory bound of Fanout's, not a broker default)
DEAD_LETTERS_KEPT = 10_000

# the exception classes Spring Kafka records in kafka_dlt-exception-fqcn
_LISTENER_FAILED = "org.springframework.kafka.listener.ListenerExecutionFailedException"
_DESERIALIZATION = "org.springframework.kafka.support.serializer.DeserializationException"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A dead letter where it was sent: ``destination`` is the dead-letter topic (with the
    record's ``dl_partition`` and ``dl_offset`` there) or the dead-letter queue (``dl_offset``
    is then its position in the queue's order of arrival)."""

    record: Record
    reason: str
    attempts: int
    t: float
    topic: str
    partition: int
    offset: int
    # failed on a redelivery of an event this group had already finished: listed, but not
    # counted again among the events still to deal with
    duplicate: bool = False
    destination: str = ""
    dl_partition: int = 0
    dl_offset: int = 0
    headers: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "event_id": self.record[ID],
            "event_type": self.record[TYPE],
            "correlation_id": self.record[CORRELATION_ID],
            "reason": self.reason,
            "attempts": self.attempts,
            "t": round(self.t, 3),
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "destination": self.destination,
            "dl_partition": self.dl_partition,
            "dl_offset": self.dl_offset,
            "headers": self.headers,
            "payload": self.record[PAYLOAD],
        }


class FailureHandling:
    """Dead letters and their redrive (a mix-in of :class:`~.base.ConsumerGroup`)."""

    sim: Host
    spec: ConsumerSpec
    name: str
    mode: str
    retry: RetrySpec
    failures: int
    retries: int
    idempotent: bool

    def init_failures(self) -> None:
        # the group's dead letters not yet redriven, oldest first (a view of its DLT records,
        # or the dead-letter queue itself)
        self.dead_letters: deque[DeadLetter] = deque(maxlen=DEAD_LETTERS_KEPT)
        self.dead_lettered = 0
        self.dead_lettered_fresh = 0  # dead letters of events not finished before
        self.dead_letters_dropped = 0  # pushed out of the list (DLT retention, x-max-length)
        self.dead_letters_dropped_fresh = 0
        self.dead_letters_arrived = 0  # positions in the dead-letter queue
        self.redriven = 0
        self._retry_cb = self._retry

    @property
    def dead_letter_destination(self) -> str:
        """Where this group's dead letters go (the DLT of its first topic, for a stream group
        reading several: each record goes to its own topic's DLT)."""
        if self.mode == "queue":
            return f"{self.name}.dlq"
        return self.dead_letter_topic_name(self.spec.topics[0])

    def dead_letter_topic_name(self, topic: str) -> str:
        """Spring Kafka's names: ``<topic>.DLT`` (DeadLetterPublishingRecoverer), or
        ``<topic>-dlt`` next to retry topics (@RetryableTopic)."""
        return f"{topic}-dlt" if self.retry.topics else f"{topic}.DLT"

    def failure_reason(self, inst: Instance, record: Record) -> str:
        if inst.unreadable:
            return f"cannot read {record[TYPE]} with {self.spec.reads}: {inst.unreadable}"
        return REASON_POISON if record[POISON] else REASON_FAILED

    def failed(self, inst: Instance, record: Record) -> str:
        """Count a failed attempt and tell the observers. Returns the reason."""
        self.failures += 1
        reason = self.failure_reason(inst, record)
        for hook in self.sim.on_failed:
            hook(self.sim.now, self, inst.index, record, inst.attempt, reason)
        return reason

    def retry_in(self, record: Record, attempt: int, delay: float) -> None:
        """Count a retry that will run after ``delay`` seconds and tell the observers."""
        self.retries += 1
        for hook in self.sim.on_retried:
            hook(self.sim.now, self, record, attempt, delay)

    def _retry(self, inst: Instance) -> None:
        raise NotImplementedError

    def dead_letter(
        self,
        record: Record,
        reason: str,
        attempts: int,
        *,
        duplicate: bool = False,
        unreadable: bool = False,
        death: str = "rejected",
    ) -> None:
        """Send ``record`` to the dead-letter destination (``death``: RabbitMQ's x-death
        reason, ``rejected`` or ``delivery_limit``)."""
        self.dead_lettered += 1
        if not duplicate:
            self.dead_lettered_fresh += 1
        now = self.sim.now
        if self.mode == "stream":
            dlt = self.sim.dead_letter_topic(
                record[TOPIC], self.dead_letter_topic_name(record[TOPIC])
            )
            headers: dict[str, Any] = {
                "kafka_dlt-original-topic": record[TOPIC],
                "kafka_dlt-original-partition": record[PARTITION],
                "kafka_dlt-original-offset": record[OFFSET],
                "kafka_dlt-original-timestamp": round(record[TS] * 1000.0),
                "kafka_dlt-original-timestamp-type": "CreateTime",
                "kafka_dlt-original-consumer-group": self.name,
                "kafka_dlt-exception-fqcn": _DESERIALIZATION if unreadable else _LISTENER_FAILED,
                "kafka_dlt-exception-message": reason,
                "kafka_deliveryAttempt": attempts,
            }
            stored = dlt.write(record, headers, now)
            where = (dlt.name, stored[PARTITION], stored[OFFSET])
        else:
            death_entry = {
                "count": 1,
                "reason": death,
                "queue": self.name,
                "time": round(now, 3),
                "exchange": "",
                "routing-keys": [self.name],
            }
            headers = {
                "x-death": [death_entry],
                "x-first-death-reason": death,
                "x-first-death-queue": self.name,
                "x-first-death-exchange": "",
            }
            where = (self.dead_letter_destination, 0, self.dead_letters_arrived)
            self.dead_letters_arrived += 1
        letter = DeadLetter(
            record,
            reason,
            attempts,
            now,
            record[TOPIC],
            record[PARTITION],
            record[OFFSET],
            duplicate,
            *where,
            headers,
        )
        letters = self.dead_letters
        if len(letters) == letters.maxlen:
            self._drop(letters[0])
        letters.append(letter)
        for hook in self.sim.on_dead_lettered:
            hook(now, self, record, reason, attempts)

    def _drop(self, letter: DeadLetter) -> None:
        self.dead_letters_dropped += 1
        if not letter.duplicate:
            self.dead_letters_dropped_fresh += 1

    def waiting_letters(self) -> list[DeadLetter]:
        """The dead letters that can still be redriven: for a stream group, those its DLT has
        not deleted yet (retention)."""
        if self.mode == "stream":
            gone = 0
            letters = self.dead_letters
            while letters:
                first = letters[0]
                dlt = self.sim.dead_letter_topic(first.record[TOPIC], first.destination)
                if first.dl_offset >= dlt.partitions[first.dl_partition].start:
                    break
                letters.popleft()
                self._drop(first)
                gone += 1
        return list(self.dead_letters)

    def redrive_dead_letters(self, event_id: int | None = None) -> int:
        """Redrive the dead letters (or those of one event). Returns how many went back."""
        keep: deque[DeadLetter] = deque(maxlen=self.dead_letters.maxlen)
        moved = 0
        for dl in self.waiting_letters():
            if (event_id is None or dl.record[ID] == event_id) and self.redrive_one(dl):
                moved += 1
            else:
                keep.append(dl)
        self.dead_letters = keep
        self.redriven += moved
        if moved:
            self.wake()
        return moved

    def redrive_one(self, letter: DeadLetter) -> bool:
        """Send one dead letter back. Returns False when it cannot go now (it stays)."""
        raise NotImplementedError

    def wake(self) -> None:
        raise NotImplementedError

    def dead_letters_fresh(self) -> int:
        """Dead letters that stand for an event still to deal with (for a queue group's
        accounting: those waiting in the dead-letter queue, or pushed out of it)."""
        return (
            sum(1 for d in self.dead_letters if not d.duplicate) + self.dead_letters_dropped_fresh
        )
