"""Failure handling shared by both delivery modes: dead letters and redrive.

What a failed attempt leads to (a retry in place, a requeue, a retry queue, a dead letter) is
the delivery mode's choice; this module keeps what follows a dead letter. Dead letters are
listed with Kafka's dead-letter headers (original topic, partition, offset, exception,
attempts), kept to a bound, and redriven back to the service that failed them.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..broker import CORRELATION_ID, ID, OFFSET, PARTITION, PAYLOAD, POISON, TOPIC, TYPE, Record

if TYPE_CHECKING:
    from ..scenario import ConsumerSpec, RetrySpec
    from .base import Host, Instance

REASON_POISON = "poison event: processing always fails"
REASON_FAILED = "processing failed"
REASON_DELIVERY_LIMIT = "delivery limit exceeded: returned {n} times (x-delivery-limit {limit})"
REASON_REJECTED = "rejected (basic.reject, requeue=false)"

DEAD_LETTERS_KEPT = 10_000


@dataclass(frozen=True, slots=True)
class DeadLetter:
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
            "payload": self.record[PAYLOAD],
        }


class FailureHandling:
    """Dead letters and their redrive (a mix-in of :class:`~.base.ConsumerGroup`)."""

    sim: Host
    spec: ConsumerSpec
    name: str
    retry: RetrySpec
    failures: int
    retries: int
    idempotent: bool

    def init_failures(self) -> None:
        self.dead_letters: deque[DeadLetter] = deque(maxlen=DEAD_LETTERS_KEPT)
        self.dead_lettered = 0
        self.dead_letters_dropped = 0
        self.dead_letters_dropped_fresh = 0
        self.redriven = 0
        self.redrive_deduplicated = 0  # redriven letters an idempotent group had processed
        self.redrive: deque[Record] = deque()
        # alongside each redriven record: was its dead letter a duplicate (see DeadLetter)?
        self._redrive_dup: deque[bool] = deque()
        self._retry_cb = self._retry

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
        self, record: Record, reason: str, attempts: int, *, duplicate: bool = False
    ) -> None:
        self.dead_lettered += 1
        letters = self.dead_letters
        if len(letters) == letters.maxlen:
            self.dead_letters_dropped += 1
            if not letters[0].duplicate:
                self.dead_letters_dropped_fresh += 1
        letters.append(
            DeadLetter(
                record,
                reason,
                attempts,
                self.sim.now,
                record[TOPIC],
                record[PARTITION],
                record[OFFSET],
                duplicate,
            )
        )
        for hook in self.sim.on_dead_lettered:
            hook(self.sim.now, self, record, reason, attempts)

    def redrive_dead_letters(self, event_id: int | None = None) -> int:
        """Send dead letters back to this service for another try. Returns how many."""
        keep: deque[DeadLetter] = deque(maxlen=self.dead_letters.maxlen)
        moved = 0
        for dl in self.dead_letters:
            if event_id is None or dl.record[ID] == event_id:
                self.redrive_push(dl.record, dl.duplicate)
                moved += 1
                for hook in self.sim.on_redriven:
                    hook(self.sim.now, self, dl.record)
            else:
                keep.append(dl)
        self.dead_letters = keep
        self.redriven += moved
        if moved:
            self.wake()
        return moved

    def wake(self) -> None:
        raise NotImplementedError

    def redrive_push(self, record: Record, duplicate: bool, *, front: bool = False) -> None:
        if front:
            self.redrive.appendleft(record)
            self._redrive_dup.appendleft(duplicate)
        else:
            self.redrive.append(record)
            self._redrive_dup.append(duplicate)

    def redrive_pop(self) -> tuple[Record, bool]:
        return self.redrive.popleft(), self._redrive_dup.popleft()

    def seen(self, record: Record) -> bool:
        raise NotImplementedError

    def skip_redriven(self, record: Record, duplicate: bool) -> bool:
        """An idempotent group skips a redriven letter whose event it has processed since."""
        if not self.seen(record):
            return False
        if not duplicate:
            self.redrive_deduplicated += 1
        return True

    def dead_letters_fresh(self) -> int:
        """Dead letters that stand for an event still to deal with (for the accounting)."""
        return (
            sum(1 for d in self.dead_letters if not d.duplicate) + self.dead_letters_dropped_fresh
        )

    def redrive_fresh(self) -> int:
        return sum(1 for d in self._redrive_dup if not d)
