"""Spring Kafka's non-blocking retries (``@RetryableTopic``) for a stream group.

A record whose processing failed is published to the retry topic of its next attempt:
``<topic>-retry-0`` for the second attempt, ``-retry-1`` for the third, ... (Spring's default
naming, one topic per retry, suffixed with its index), to the same partition, with the time it
is due in the header ``retry_topic-backoff-timestamp``. The main partition moves on at once:
nothing waits behind the failed record. Each retry topic partition is read in order by one of
the service's retry consumers, which pauses the partition until its head is due, then
processes it and commits (AckMode RECORD, as Spring recommends). A failure goes on to the next
retry topic; after ``retry.max_attempts`` attempts, to ``<topic>-dlt``. The price is order: a
retried record is processed after records that came after it, even with the same key.

The retry consumers are part of the service: they stop while it is down or crashed (a crash
loses the attempt in hand, which runs again), and they keep every record until its retry ran,
up to ``PENDING_LIMIT`` a partition (then a failed record goes straight to the DLT, saying so).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..broker import OFFSET, PARTITION, TOPIC, TS, Record
from .base import BUSY, IDLE, Instance

if TYPE_CHECKING:
    from .stream import StreamGroup

RETRY_INSTANCE_BASE = 1000  # retry consumers: instance 1000 + 100 x retry topic + partition
PENDING_LIMIT = 100_000  # records waiting in one retry topic partition (Fanout's bound)
REASON_RETRY_FULL = "retry topic full: Fanout keeps at most {n:,} records waiting a partition"
_EPS = 1e-9


@dataclass(slots=True)
class Pending:
    """A record waiting in a retry topic for its next attempt."""

    original: Record  # the main topic's record: its event, correlation and produce time
    due: float
    attempt: int  # the attempt it will be
    repeat: bool  # the group had finished this event before: a duplicate, not fresh work


class Lane:
    """One retry topic partition and the retry consumer that reads it."""

    __slots__ = ("inst", "pending", "timer_at", "topic")

    def __init__(self, topic: str, index: int) -> None:
        self.topic = topic
        self.pending: deque[Pending] = deque()
        self.inst = Instance(index)
        self.timer_at: float | None = None


class RetryTopics:
    """The retry topics of one stream group, and its retry consumers."""

    def __init__(self, group: StreamGroup) -> None:
        self.group = group
        self.sim = group.sim
        self.lanes: dict[tuple[str, int, int], Lane] = {}
        self.fresh = 0  # waiting records that stand for an event still to deal with
        self._kick_cb = self._timer
        self._done_cb = self._done

    @staticmethod
    def topic_name(topic: str, index: int) -> str:
        return f"{topic}-retry-{index}"

    @property
    def waiting(self) -> int:
        return sum(len(lane.pending) for lane in self.lanes.values())

    def lane_instance(self, index: int) -> Instance | None:
        return next((lane.inst for lane in self.lanes.values() if lane.inst.index == index), None)

    def forward(self, original: Record, failed_attempt: int, repeat: bool, reason: str) -> bool:
        """Publish ``original`` to the retry topic of attempt ``failed_attempt + 1``. Returns
        False when that partition is full (the caller dead-letters it)."""
        g = self.group
        topic = original[TOPIC]
        k = failed_attempt - 1
        key = (topic, k, original[PARTITION])
        lane = self.lanes.get(key)
        if lane is None:
            name = self.topic_name(topic, k)
            lane = Lane(name, RETRY_INSTANCE_BASE + 100 * k + original[PARTITION])
            self.lanes[key] = lane
        if len(lane.pending) >= PENDING_LIMIT:
            return False
        now = self.sim.now
        due = now + g.retry.delay(failed_attempt)
        headers: dict[str, Any] = {
            "kafka_dlt-original-topic": topic,
            "kafka_dlt-original-partition": original[PARTITION],
            "kafka_dlt-original-offset": original[OFFSET],
            "kafka_dlt-original-consumer-group": g.name,
            "kafka_dlt-exception-message": reason,
            "retry_topic-attempts": failed_attempt + 1,
            "retry_topic-backoff-timestamp": round(due * 1000.0),
            "retry_topic-original-timestamp": round(original[TS] * 1000.0),
        }
        self.sim.retry_topic(topic, lane.topic).write(original, headers, now)
        lane.pending.append(Pending(original, due, failed_attempt + 1, repeat))
        if not repeat:
            self.fresh += 1
        self._kick(lane)
        return True

    def _running(self) -> bool:
        g = self.group
        return g.status == "up" and any(i.alive for i in g.instances)

    def _kick(self, lane: Lane) -> None:
        """Let the lane's consumer take its head, if it is free, running and the head is due
        (else pause the partition until then)."""
        if lane.inst.state == BUSY or not lane.pending or not self._running():
            return
        head = lane.pending[0]
        now = self.sim.now
        if head.due > now + _EPS:
            if lane.timer_at is None:
                lane.timer_at = head.due
                self.sim.at(head.due, self._kick_cb, lane)
            return
        inst = lane.inst
        inst.repeat = head.repeat
        inst.cursor = None
        g = self.group
        service = g.draw(inst, head.original, head.attempt, False)
        self.sim.at(now + service, self._done_cb, lane)

    def _timer(self, lane: Lane) -> None:
        lane.timer_at = None
        self._kick(lane)

    def _done(self, lane: Lane) -> None:
        g = self.group
        inst = lane.inst
        head = lane.pending.popleft()  # committed: the partition moves on
        record = head.original
        if not head.repeat:
            self.fresh -= 1
        if inst.failing:
            reason = g.failed(inst, record)
            if head.attempt < g.retry.max_attempts and not inst.unreadable:
                g.retry_in(record, head.attempt + 1, g.retry.delay(head.attempt))
                if not self.forward(record, head.attempt, head.repeat, reason):
                    g.dead_letter(
                        record,
                        REASON_RETRY_FULL.format(n=PENDING_LIMIT),
                        head.attempt,
                        duplicate=head.repeat,
                    )
            else:
                g.dead_letter(
                    record,
                    reason,
                    head.attempt,
                    duplicate=head.repeat,
                    unreadable=bool(inst.unreadable),
                )
        elif g.idempotent and g.seen(record):
            if not head.repeat:
                g.deduplicated_fresh += 1
        else:
            g.succeeded(inst, record, head.repeat)
        inst.state = IDLE
        inst.record = None
        self._kick(lane)

    def start(self) -> None:
        """The service runs (again): its retry consumers take up their partitions."""
        for lane in self.lanes.values():
            self._kick(lane)

    def stop(self) -> None:
        """The service crashed: the attempts in hand are lost and will run again."""
        for lane in self.lanes.values():
            if lane.inst.state == BUSY:
                self.sim.cancel(self._done_cb, lane)
                lane.inst.state = IDLE
                lane.inst.record = None

    def detach(self) -> None:
        self.stop()
        for lane in self.lanes.values():
            self.sim.cancel(self._kick_cb, lane)

    def notes(self) -> list[str]:
        out = []
        now = self.sim.now
        by_topic: dict[str, list[Lane]] = {}
        for lane in self.lanes.values():
            by_topic.setdefault(lane.topic, []).append(lane)
        for name, lanes in sorted(by_topic.items()):
            waiting = sum(len(lane.pending) for lane in lanes)
            if not waiting:
                continue
            due = min(lane.pending[0].due for lane in lanes if lane.pending)
            when = "due now" if due <= now + _EPS else f"next due in {due - now:.1f} s"
            out.append(f"{waiting} waiting in {name} ({when}); the main partitions move on")
        return out
