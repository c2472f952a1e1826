"""Consumer services: consumer groups of instances reading from the broker.

Two delivery modes, so they can be compared:

- ``stream`` (Kafka): each partition is owned by one instance at a time; the group commits an
  offset per partition; a rebalance (with a short pause) reassigns partitions when instances
  join, leave or crash; a crash redelivers from the committed offset (at-least-once).
- ``queue`` (RabbitMQ): one shared queue per service; competing instances take the next message;
  a message is acknowledged after processing; a crash puts unacknowledged work back at the head.

Failures go through retries with backoff, then to the group's dead-letter topic.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from heapq import heappush
from math import log
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

from .broker import (
    CORRELATION_ID,
    ID,
    KEY,
    OFFSET,
    PARTITION,
    PAYLOAD,
    POISON,
    SIZE,
    TOPIC,
    TS,
    TYPE,
    Partition,
    Record,
    Topic,
)
from .observe import MEASURES, Sink
from .schema import parse_versioned, read_payload

if TYPE_CHECKING:
    from .metrics import GroupStats
    from .scenario import ConsumerSpec
    from .simulation import Simulation

IDLE, BUSY, BACKOFF, DEAD = "idle", "busy", "backoff", "dead"

REASON_POISON = "poison event: processing always fails"
REASON_FAILED = "processing failed"


T = TypeVar("T")


class _LaneField(Generic[T]):
    """A group attribute the fast lane depends on: setting it re-checks the lane.

    The value lives in ``store`` (``_status`` for ``status``), which the hot paths read directly.
    """

    def __init__(self, store: str) -> None:
        self.store = store

    @overload
    def __get__(self, obj: None, owner: type) -> _LaneField[T]: ...
    @overload
    def __get__(self, obj: ConsumerGroup, owner: type) -> T: ...
    def __get__(self, obj: ConsumerGroup | None, owner: type) -> T | _LaneField[T]:
        if obj is None:
            return self
        value: T = getattr(obj, self.store)
        return value

    def __set__(self, obj: ConsumerGroup, value: T) -> None:
        setattr(obj, self.store, value)
        obj._refresh_lane()


def _fan_out(sinks: list[Sink]) -> Sink | None:
    """One sink that feeds them all (None for none; the sink itself for one)."""
    if not sinks:
        return None
    if len(sinks) == 1:
        return sinks[0]

    def fan(value: float) -> None:
        for sink in sinks:
            sink(value)

    return fan


class Instance:
    """One running copy of a consumer service."""

    __slots__ = (
        "alive",
        "attempt",
        "cursor",
        "cursors",
        "epoch",
        "failing",
        "index",
        "leaving",
        "processed",
        "record",
        "redrive_dup",
        "rr",
        "started",
        "state",
        "unreadable",
        "waiting",
    )

    def __init__(self, index: int) -> None:
        self.index = index
        self.alive = True
        self.leaving = False
        self.state = IDLE
        self.epoch = 0
        self.record: Record | None = None
        self.cursor: Cursor | None = None
        self.attempt = 0
        self.started = 0.0
        self.failing = False
        self.cursors: list[Cursor] = []
        self.rr = 0
        self.waiting = False
        self.processed = 0
        self.redrive_dup = False  # working on a redriven duplicate dead letter
        self.unreadable = ""  # why the event cannot be read with the service's schema


class Cursor:
    """A group's position in one partition.

    ``committed``: the offset the group will restart from. ``position``: the next offset to
    fetch. ``completed``: one past the highest offset ever finished (processed, filtered or
    dead-lettered), so a redelivery below it is a duplicate. ``fetched``: one past the highest
    offset ever delivered, so a delivery below it is a redelivery. ``origin``: where the group
    started reading this partition.
    """

    __slots__ = (
        "committed",
        "completed",
        "fetched",
        "group",
        "origin",
        "owner",
        "partition",
        "position",
    )

    def __init__(self, group: StreamGroup, partition: Partition, start: int) -> None:
        self.group = group
        self.partition = partition
        self.committed = start
        self.position = start
        self.completed = start
        self.fetched = start
        self.origin = start
        self.owner: Instance | None = None

    def notify(self, record: Record) -> None:
        owner = self.owner
        if owner is not None and owner.state == IDLE:
            self.group.poll(owner)

    @property
    def lag(self) -> int:
        return max(0, self.partition.end - self.committed)


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


class ConsumerGroup:
    """What both delivery modes share: processing, retries, dead letters, counters."""

    mode = "stream"
    status: _LaneField[str] = _LaneField("_status")  # up, down, crashed
    rebalancing: _LaneField[bool] = _LaneField("_rebalancing")
    # a rebalance is due and waits for in-flight work to finish
    _rebalance_waiting: _LaneField[bool] = _LaneField("_waiting")
    slow: _LaneField[float] = _LaneField("_slow")  # processing-time multiplier ("slow x3")
    # seconds added to every processing ("Email slow +500 ms")
    delay: _LaneField[float] = _LaneField("_delay")

    def __init__(
        self,
        sim: Simulation,
        spec: ConsumerSpec,
        topics: list[Topic],
        stats: GroupStats,
        *,
        start: str = "earliest",
    ) -> None:
        self.sim = sim
        self.spec = spec
        self.name = spec.name
        self.topics = topics
        self.stats = stats
        self.rng = sim.rng
        self.sample = spec.processing.sampler()
        # exponential service is drawn inline (the same value random.expovariate returns)
        proc = spec.processing
        self._exp_rate = 1000.0 / proc.mean_ms if proc.dist == "exponential" else 0.0
        self.attempts: dict[int, int] = {}  # queue mode: attempts so far of failed messages
        self._lane = False
        self._quiet = True
        self._status = "up"
        self._rebalancing = False
        self._waiting = False
        self._slow = 1.0
        self._delay = 0.0
        self.failure_rate = spec.failure_rate
        # (service, record) -> (seconds, uniform draw for failure); set by a comparison
        self._plan: Callable[[str, Record], tuple[float, float]] | None = None
        self.retry = spec.retry
        types = spec.events
        self._types = frozenset(types) if types else None
        self._match = spec.filter.matcher() if spec.filter else None
        self._emits = [(e, sim.topics[e.topic]) for e in spec.emits]
        self.reader: dict[str, Any] | None = None  # the schema it reads events with
        if spec.reads is not None and sim.schemas is not None:
            self.reader = sim.schemas.get(*parse_versioned(spec.reads))
        self.idempotent = spec.idempotent
        self._seen: set[int] = set()
        self._seen_order: deque[int] = deque()
        self.dead_letters: deque[DeadLetter] = deque(maxlen=10_000)
        self.dead_letters_dropped = 0
        self.redrive: deque[Record] = deque()
        # alongside each redriven record: was its dead letter a duplicate (see DeadLetter)?
        self._redrive_dup: deque[bool] = deque()
        self.instances: list[Instance] = []
        # counters
        self.processed = 0
        self.duplicates = 0
        self.redelivered = 0
        self.dead_lettered = 0
        self.retries = 0
        self.failures = 0
        self.filtered = 0
        self.expired = 0
        self.skipped = 0
        self.deduplicated = 0
        self.redriven = 0
        self.emitted = 0
        self.detached = False
        self.redrive_deduplicated = 0  # redriven letters an idempotent group had processed
        self.dead_letters_dropped_fresh = 0
        self._done_cb = self._done
        self._accept_all = self._types is None and self._match is None
        self._wait_sink: Sink | None = None
        self._processing_sink: Sink | None = None
        self._e2e_sink: Sink | None = None
        self._queue = sim._queue  # the scheduler's heap and sequence, for begin's heappush
        self._seq = sim._seq
        self._random = sim.rng.random
        self.bind_observers()

    def bind_observers(self) -> None:
        """Take the observers' sinks for this group's measures, and note whether any per-event
        hook (or a comparison's plan, or a schema to read with) needs the full path of ``begin``
        and ``_done``."""
        sim = self.sim
        sinks: list[Sink | None] = []
        for name in MEASURES:
            found = [s for s in (o.measure(self, name) for o in sim.observers) if s is not None]
            sinks.append(_fan_out(found))
        self._wait_sink, self._processing_sink, self._e2e_sink = sinks
        self._quiet = (
            not sim.on_delivered
            and not sim.on_processed
            and self._plan is None
            and self.reader is None
        )
        self._refresh_lane()

    def _refresh_lane(self) -> None:
        """The fast lane: nothing but counting and sinks happens around a delivery.

        ``begin`` and ``_done`` take a short path while it holds. Every field it depends on is
        set once, or is a ``_LaneField`` that calls this when set, so it cannot go stale.
        """
        self._lane = (
            self._quiet
            and not self.idempotent
            and not self._emits
            and self._status == "up"
            and not self._rebalancing
            and not self._waiting
            and self._slow == 1.0
            and not self._delay
        )

    @property
    def plan(self) -> Callable[[str, Record], tuple[float, float]] | None:
        return self._plan

    @plan.setter
    def plan(self, plan: Callable[[str, Record], tuple[float, float]] | None) -> None:
        self._plan = plan
        self.bind_observers()

    # --- shared mechanics -----------------------------------------------------------

    def accepts(self, record: Record) -> bool:
        if self._accept_all:
            return True
        if self._types is not None and record[TYPE] not in self._types:
            return False
        return self._match is None or self._match(record[PAYLOAD])

    @property
    def fetching(self) -> bool:
        return self.status == "up" and not self.rebalancing

    def begin(self, inst: Instance, record: Record, attempt: int, redelivery: bool) -> None:
        now = self.sim.now
        inst.record = record
        inst.attempt = attempt
        inst.started = now
        inst.state = BUSY
        if attempt == 1 and not redelivery:
            sink = self._wait_sink
            if sink is not None:
                sink((now - record[TS]) * 1000.0)
        fr = self.failure_rate
        if self._lane:
            rate = self._exp_rate
            service = -log(1.0 - self._random()) / rate if rate else self.sample(self.rng)
            inst.failing = record[POISON] or (fr > 0.0 and self._random() < fr)
            heappush(self._queue, (now + service, next(self._seq), self._done_cb, inst))
            return
        sim = self.sim
        rng = self.rng
        for hook in sim.on_delivered:
            hook(now, self, inst.index, record, attempt, redelivery)
        if self._plan is not None and attempt == 1:
            # a comparison feeds both architectures the same per-order latency and luck
            service, luck = self._plan(self.name, record)
            inst.failing = record[POISON] or luck < fr
        else:
            rate = self._exp_rate
            service = -log(1.0 - rng.random()) / rate if rate else self.sample(rng)
            inst.failing = record[POISON] or (fr > 0.0 and rng.random() < fr)
        if self.reader is not None:
            _, problems = read_payload(self.reader, record[PAYLOAD] or {})
            inst.unreadable = problems[0] if problems else ""
            if problems:
                inst.failing = True
        service = service * self._slow + self._delay
        heappush(self._queue, (now + service, next(self._seq), self._done_cb, inst))

    def _done(self, inst: Instance) -> None:
        """``inst`` finished processing (a crash cancels this, see ``_stop``)."""
        record = inst.record
        assert record is not None
        cur = inst.cursor  # None in queue mode, and for redriven dead letters
        if inst.failing:
            if self._failed(inst, record):
                return  # a retry follows
        else:
            now = self.sim.now
            self.processed += 1
            inst.processed += 1
            sink = self._processing_sink
            if sink is not None:
                sink((now - inst.started) * 1000.0)
            duplicate = self._is_dup(inst, record)
            if duplicate:
                self.duplicates += 1
            else:
                sink = self._e2e_sink
                if sink is not None:
                    sink((now - record[TS]) * 1000.0)
            if self.idempotent:
                self.remember(record[ID])
            for hook in self.sim.on_processed:
                hook(now, self, inst.index, record, inst.started, duplicate)
            if self._emits:
                self.emit(record)
        if cur is not None or self.attempts:
            self.finish(inst, record)
        inst.record = None
        inst.state = IDLE
        if inst.leaving or self._waiting:
            self.after_idle(inst)
        else:
            self.poll(inst)

    def _failed(self, inst: Instance, record: Record) -> bool:
        """An attempt failed: retry it later (returns True) or dead-letter it."""
        sim = self.sim
        now = sim.now
        self.failures += 1
        reason = REASON_POISON if record[POISON] else REASON_FAILED
        if inst.unreadable:
            reason = f"cannot read {record[TYPE]} with {self.spec.reads}: {inst.unreadable}"
        for hook in sim.on_failed:
            hook(now, self, inst.index, record, inst.attempt, reason)
        # an event it cannot read will not read better on a retry: straight to the DLQ
        if inst.attempt < self.retry.max_attempts and not inst.unreadable:
            delay = self.retry.delay(inst.attempt)
            self.retries += 1
            for hook in sim.on_retried:
                hook(now, self, record, inst.attempt + 1, delay)
            self.retry_later(inst, record, delay)
            return True
        self.dead_letter(record, reason, inst.attempt, duplicate=self._is_dup(inst, record))
        return False

    def _stop(self, inst: Instance) -> None:
        """The instance is gone: its work in progress is lost, its pending retry stale."""
        inst.epoch += 1
        self.sim.cancel(self._done_cb, inst)

    def _is_dup(self, inst: Instance, record: Record) -> bool:
        """Had this group already finished ``record`` (processed or dead-lettered it)?"""
        cur = inst.cursor  # None in queue mode, and for redriven dead letters
        if cur is not None:
            return record[OFFSET] < cur.completed
        return inst.redrive_dup

    def emit(self, record: Record) -> None:
        """React: publish this service's events, caused by ``record``, in its correlation."""
        sim = self.sim
        for emit, topic in self._emits:
            if emit.when is not None and emit.when != record[TYPE]:
                continue
            self.emitted += 1
            sim.publish(
                topic,
                emit.event,
                record[KEY],
                record[PAYLOAD],
                emit.size_bytes or record[SIZE],
                record[CORRELATION_ID],
                record[ID],
            )

    def remember(self, event_id: int) -> None:
        if event_id not in self._seen:
            self._seen.add(event_id)
            self._seen_order.append(event_id)
            if len(self._seen_order) > self.spec.dedupe_window:
                self._seen.discard(self._seen_order.popleft())

    def seen(self, record: Record) -> bool:
        """Idempotent groups skip an event id they already processed."""
        if self.idempotent and record[ID] in self._seen:
            self.deduplicated += 1
            for hook in self.sim.on_deduplicated:
                hook(self.sim.now, self, record)
            return True
        return False

    def dead_letter(
        self, record: Record, reason: str, attempts: int, *, duplicate: bool = False
    ) -> None:
        self.dead_lettered += 1
        if len(self.dead_letters) == self.dead_letters.maxlen:
            self.dead_letters_dropped += 1
            if not self.dead_letters[0].duplicate:
                self.dead_letters_dropped_fresh += 1
        self.dead_letters.append(
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

    def redrive_push(self, record: Record, duplicate: bool, *, front: bool = False) -> None:
        if front:
            self.redrive.appendleft(record)
            self._redrive_dup.appendleft(duplicate)
        else:
            self.redrive.append(record)
            self._redrive_dup.append(duplicate)

    def redrive_pop(self) -> tuple[Record, bool]:
        return self.redrive.popleft(), self._redrive_dup.popleft()

    def skip_redriven(self, record: Record, duplicate: bool) -> bool:
        """An idempotent group skips a redriven letter whose event it has processed since."""
        if not self.seen(record):
            return False
        if not duplicate:
            self.redrive_deduplicated += 1
        return True

    def set_status(self, status: str) -> None:
        self.status = status
        for hook in self.sim.on_status_changed:
            hook(self.sim.now, "consumer", self.name, self.display_status)

    @property
    def display_status(self) -> str:
        if self.status == "up":
            if not any(i.alive for i in self.instances):
                return "down" if not self.instances else "crashed"
            if self.rebalancing:
                return "rebalancing"
            if self.slow != 1.0 or self.delay:
                return "slow"
        return self.status

    def set_slow(self, factor: float) -> None:
        self.slow = factor
        self.set_status(self.status)

    def set_delay(self, seconds: float) -> None:
        self.delay = seconds
        self.set_status(self.status)

    @property
    def in_flight(self) -> int:
        return sum(1 for i in self.instances if i.state == BUSY)

    @property
    def retrying(self) -> int:
        return sum(1 for i in self.instances if i.state == BACKOFF)

    # --- mode-specific ----------------------------------------------------------------

    def is_duplicate(self, inst: Instance, record: Record) -> bool:
        raise NotImplementedError

    def retry_later(self, inst: Instance, record: Record, delay: float) -> None:
        raise NotImplementedError

    def finish(self, inst: Instance, record: Record) -> None:
        raise NotImplementedError

    def after_idle(self, inst: Instance) -> None:
        raise NotImplementedError

    def poll(self, inst: Instance) -> None:
        raise NotImplementedError

    def wake(self) -> None:
        raise NotImplementedError

    def down(self) -> None:
        raise NotImplementedError

    def up(self) -> None:
        raise NotImplementedError

    def crash(self, instance: int | None = None) -> None:
        raise NotImplementedError

    def set_instances(self, n: int) -> None:
        raise NotImplementedError

    def add_instances(self, count: int) -> list[Instance]:
        """Start ``count`` new instances (dead ones if the service is crashed)."""
        next_index = max((i.index for i in self.instances), default=-1) + 1
        added = []
        for k in range(count):
            inst = Instance(next_index + k)
            inst.alive = self.status != "crashed"
            inst.state = IDLE if inst.alive else DEAD
            self.instances.append(inst)
            added.append(inst)
        return added

    def detach(self) -> None:
        raise NotImplementedError

    def lag(self) -> int:
        raise NotImplementedError

    def lag_seconds(self) -> float:
        raise NotImplementedError

    def accounting(self) -> dict[str, int]:
        raise NotImplementedError

    def partitions_state(self) -> list[dict[str, Any]]:
        return []


class StreamGroup(ConsumerGroup):
    """Kafka-style consumer group: partitions owned by instances, committed offsets."""

    mode = "stream"

    def __init__(
        self,
        sim: Simulation,
        spec: ConsumerSpec,
        topics: list[Topic],
        stats: GroupStats,
        *,
        start: str = "earliest",
    ) -> None:
        super().__init__(sim, spec, topics, stats, start=start)
        self.cursors: list[Cursor] = []
        for topic in topics:
            for part in topic.partitions:
                offset = part.start if start == "earliest" else part.end
                cur = Cursor(self, part, offset)
                self.cursors.append(cur)
                part.listeners.append(cur)
        self.instances = [Instance(i) for i in range(spec.instances)]
        self._rebalance_epoch = 0
        self._commit_each = spec.commit_interval_ms <= 0
        if not self._commit_each:
            sim.after(spec.commit_interval_ms / 1000.0, self._commit_tick, None)
        self._assign()

    # fetching

    def poll(self, inst: Instance) -> None:
        if (
            inst.state != IDLE
            or not inst.alive
            or inst.leaving
            or self._status != "up"
            or self._rebalancing
        ):
            return
        while self.redrive:
            record, duplicate = self.redrive_pop()
            if self.skip_redriven(record, duplicate):
                continue
            inst.cursor = None
            inst.redrive_dup = duplicate
            self.begin(inst, record, 1, True)
            return
        cursors = inst.cursors
        n = len(cursors)
        i = inst.rr
        for _ in range(n):
            cur = cursors[i]
            i += 1
            if i == n:
                i = 0
            part = cur.partition
            if cur.position < part.start:
                self._expire(cur)
            pos = cur.position
            end = part.start + len(part.records)
            while pos < end:
                record = part.records[pos - part.start]
                pos += 1
                cur.position = pos
                if not self._accept_all and not self.accepts(record):
                    if record[OFFSET] >= cur.completed:
                        self.filtered += 1
                    self._advance(cur, record[OFFSET])
                    continue
                redelivery = record[OFFSET] < cur.fetched
                if pos > cur.fetched:
                    cur.fetched = pos
                if redelivery:
                    self.redelivered += 1
                if self.idempotent and self.seen(record):
                    self._advance(cur, record[OFFSET])
                    continue
                inst.rr = i
                inst.cursor = cur
                self.begin(inst, record, 1, redelivery)
                return

    def _done(self, inst: Instance) -> None:
        cur = inst.cursor
        if not self._lane or inst.failing or cur is None or inst.leaving:
            super()._done(inst)
            return
        # the common case: processed, its offset finished (and committed, if committing each)
        record = inst.record
        assert record is not None
        now = self.sim.now
        self.processed += 1
        inst.processed += 1
        sink = self._processing_sink
        if sink is not None:
            sink((now - inst.started) * 1000.0)
        offset = record[OFFSET]
        if offset < cur.completed:
            self.duplicates += 1  # redelivered after a crash: done before
        else:
            cur.completed = offset + 1
            sink = self._e2e_sink
            if sink is not None:
                sink((now - record[TS]) * 1000.0)
        if self._commit_each and offset >= cur.committed:
            cur.committed = offset + 1
        inst.cursor = None
        inst.record = None
        inst.state = IDLE
        self.poll(inst)

    def _expire(self, cur: Cursor) -> None:
        start = cur.partition.start
        lost = start - max(cur.position, cur.completed)
        if lost > 0:
            self.expired += lost
            for hook in self.sim.on_expired:
                hook(self.sim.now, self, cur.partition.topic, cur.partition.index, lost)
        cur.position = max(cur.position, start)
        cur.completed = max(cur.completed, start)
        cur.fetched = max(cur.fetched, start)
        cur.committed = max(cur.committed, start)

    def _advance(self, cur: Cursor, offset: int) -> None:
        if offset >= cur.completed:
            cur.completed = offset + 1
        if self._commit_each and offset + 1 > cur.committed:
            cur.committed = offset + 1

    def is_duplicate(self, inst: Instance, record: Record) -> bool:
        cur = inst.cursor
        return cur is not None and record[OFFSET] < cur.completed

    def retry_later(self, inst: Instance, record: Record, delay: float) -> None:
        # In-place retry: the instance holds the partition (head-of-line) during backoff.
        inst.state = BACKOFF
        self.sim.at(self.sim.now + delay, self._retry, (inst, inst.epoch))

    def _retry(self, arg: tuple[Instance, int]) -> None:
        inst, epoch = arg
        record = inst.record
        if inst.epoch != epoch or record is None:
            return
        inst.state = IDLE
        if self.status != "up" or inst.leaving:
            # stopped meanwhile: give the event back uncommitted; it is delivered again later
            cur = inst.cursor
            if cur is None:
                self.redrive_push(record, inst.redrive_dup, front=True)
            else:
                cur.position = min(cur.position, record[OFFSET])
            inst.record = None
            inst.cursor = None
            self.after_idle(inst)
            return
        self.begin(inst, record, inst.attempt + 1, False)

    def finish(self, inst: Instance, record: Record) -> None:
        cur = inst.cursor
        if cur is not None:
            self._advance(cur, record[OFFSET])
            if not self._commit_each and (self.status != "up" or inst.leaving):
                cur.committed = max(cur.committed, cur.position)  # commit on shutdown
        inst.cursor = None

    def after_idle(self, inst: Instance) -> None:
        if self._rebalance_waiting:
            if not any(i.alive and i.state != IDLE for i in self.instances):
                self._assign()
            return
        self.poll(inst)

    def wake(self) -> None:
        for inst in self.instances:
            if inst.state == IDLE:
                self.poll(inst)

    # commits

    def _done_offset(self, cur: Cursor) -> int:
        owner = cur.owner
        if owner is not None and owner.cursor is cur and owner.state != IDLE:
            return cur.position - 1
        return cur.position

    def commit(self, alive_only: bool = True) -> None:
        for cur in self.cursors:
            owner = cur.owner
            if owner is None or (alive_only and not owner.alive):
                continue
            done = self._done_offset(cur)
            if done > cur.committed:
                cur.committed = done

    def _commit_tick(self, _: Any) -> None:
        if self.status == "up":
            self.commit()
        if not self.detached:
            self.sim.after(self.spec.commit_interval_ms / 1000.0, self._commit_tick, None)

    # membership

    def _members(self) -> list[Instance]:
        return [i for i in self.instances if i.alive and not i.leaving]

    def _rebalance(self) -> None:
        """Members changed: pause, let in-flight work finish, then reassign partitions."""
        if self.status != "up":
            return
        self.commit()  # commit on revoke
        self.rebalancing = True
        self._rebalance_epoch += 1
        self.set_status(self.status)
        self.sim.after(self.spec.rebalance_ms / 1000.0, self._rebalance_due, self._rebalance_epoch)

    def _rebalance_due(self, epoch: int) -> None:
        if epoch != self._rebalance_epoch or self.status != "up":
            return
        if any(i.alive and i.state != IDLE for i in self.instances):
            self._rebalance_waiting = True
            return
        self._assign()

    def _assign(self) -> None:
        self.commit()
        self.rebalancing = False
        self._rebalance_waiting = False
        self.instances = [i for i in self.instances if not i.leaving]
        members = self._members()
        for inst in self.instances:
            inst.cursors = []
            inst.rr = 0
        for k, cur in enumerate(self.cursors):
            owner = members[k % len(members)] if members else None
            cur.owner = owner
            cur.position = cur.committed  # restart from the committed offset
            if owner is not None:
                owner.cursors.append(cur)
        assignment = {m.index: [c.partition.name for c in m.cursors] for m in members}
        for hook in self.sim.on_rebalanced:
            hook(self.sim.now, self, assignment)
        self.set_status(self.status)
        for inst in members:
            self.poll(inst)

    def down(self) -> None:
        if self.status == "down":
            return
        self.commit()
        self.rebalancing = False
        self._rebalance_epoch += 1
        self._rebalance_waiting = False
        self.set_status("down")

    def up(self) -> None:
        if self.status == "up" and all(i.alive for i in self.instances):
            return
        for inst in self.instances:
            if not inst.alive:
                inst.alive = True
                inst.state = IDLE
                inst.record = None
                inst.cursor = None
        self.status = "up"
        self._rebalance()

    def crash(self, instance: int | None = None) -> None:
        victims = [
            i for i in self.instances if i.alive and (instance is None or i.index == instance)
        ]
        for inst in victims:
            inst.alive = False
            self._stop(inst)
            inst.state = DEAD
            if inst.record is not None and inst.cursor is None:
                # a redriven letter is not lost
                self.redrive_push(inst.record, inst.redrive_dup, front=True)
            inst.record = None
            inst.cursor = None
            for cur in inst.cursors:
                cur.position = cur.committed  # uncommitted work will be delivered again
        if instance is None or not self._members():
            self.rebalancing = False
            self._rebalance_epoch += 1
            self._rebalance_waiting = False
            self.set_status("crashed")
        else:
            self._rebalance()

    def set_instances(self, n: int) -> None:
        current = [i for i in self.instances if not i.leaving]
        if n > len(current):
            self.add_instances(n - len(current))
        else:
            for inst in current[n:]:
                inst.leaving = True
        if self.status == "up":
            self._rebalance()
        else:
            self.instances = [i for i in self.instances if not i.leaving or i.state != IDLE]

    def detach(self) -> None:
        self.detached = True
        for cur in self.cursors:
            cur.partition.listeners.remove(cur)
        for inst in self.instances:
            self._stop(inst)
            inst.alive = False

    # observation

    def lag(self) -> int:
        return sum(max(0, c.partition.end - c.committed) for c in self.cursors) + len(self.redrive)

    def lag_seconds(self) -> float:
        oldest = None
        for c in self.cursors:
            part = c.partition
            if c.committed < part.end and part.records:
                ts = part.records[max(0, c.committed - part.start)][TS]
                if oldest is None or ts < oldest:
                    oldest = ts
        for r in self.redrive:
            if oldest is None or r[TS] < oldest:
                oldest = r[TS]
        return 0.0 if oldest is None else max(0.0, self.sim.now - oldest)

    def accounting(self) -> dict[str, int]:
        """Where every event this group should see is now. The terms add up to ``produced``.

        Kept from independent counters and offsets, so the sum is a real check.
        """
        in_flight = retrying = 0
        for inst in self.instances:
            r = inst.record
            if r is None or inst.state not in (BUSY, BACKOFF):
                continue
            fresh = (
                not inst.redrive_dup if inst.cursor is None else r[OFFSET] >= inst.cursor.completed
            )
            if fresh:
                if inst.state == BUSY:
                    in_flight += 1
                else:
                    retrying += 1
        not_delivered = 0
        for c in self.cursors:
            head = max(c.position, c.completed)
            not_delivered += max(0, c.partition.end - head)
        return {
            "produced": sum(c.partition.end - c.origin for c in self.cursors),
            "processed": self.processed - self.duplicates,
            "in_flight": in_flight,
            "retrying": retrying,
            "dead_lettered": sum(1 for d in self.dead_letters if not d.duplicate)
            + self.dead_letters_dropped_fresh,
            "redrive_pending": sum(1 for d in self._redrive_dup if not d),
            "filtered": self.filtered,
            "expired": self.expired,
            "skipped": self.skipped,
            "deduplicated": self.redrive_deduplicated,
            "not_delivered": not_delivered,
        }

    def partitions_state(self) -> list[dict[str, Any]]:
        return [
            {
                "topic": c.partition.topic,
                "partition": c.partition.index,
                "committed": c.committed,
                "position": c.position,
                "end": c.partition.end,
                "start": c.partition.start,
                "lag": c.lag,
                "owner": None if c.owner is None else c.owner.index,
            }
            for c in self.cursors
        ]

    def reset_offsets(self, to: str, value: float | None = None) -> None:
        """Move committed offsets explicitly (the group must be down, as Kafka requires).

        A reset never goes below where the service joined a partition (its origin): "earliest"
        is the log start or the origin, whichever is later. To replay history from before the
        service existed, add it again ``from: earliest``.
        """
        for c in self.cursors:
            part = c.partition
            if to == "earliest":
                target = part.start
            elif to == "latest":
                target = part.end
            elif to == "offset":
                target = min(max(int(value or 0), part.start), part.end)
            else:
                target = part.offset_for_time(float(value or 0.0))
            target = max(target, c.origin)
            head = max(c.position, c.completed)
            if target > head:
                self.skipped += target - head
                c.completed = target
            c.committed = target
            c.position = target


class QueueGroup(ConsumerGroup):
    """RabbitMQ-style competing consumers on one shared queue."""

    mode = "queue"

    def __init__(
        self,
        sim: Simulation,
        spec: ConsumerSpec,
        topics: list[Topic],
        stats: GroupStats,
        *,
        start: str = "earliest",
    ) -> None:
        super().__init__(sim, spec, topics, stats, start=start)
        self.ready: deque[Record] = deque()
        self.idle: deque[Instance] = deque()
        self.delayed = 0
        self.requeued: set[int] = set()
        self.enqueued = 0
        self._parts: list[Partition] = []
        backlog: list[Record] = []
        for topic in topics:
            for part in topic.partitions:
                part.listeners.append(self)
                self._parts.append(part)
                if start == "earliest":
                    backlog.extend(part.records)
        for record in sorted(backlog, key=lambda r: (r[TS], r[ID])):
            self._enqueue(record)
        self.instances = [Instance(i) for i in range(spec.instances)]
        for inst in self.instances:
            self.poll(inst)

    def _enqueue(self, record: Record) -> bool:
        self.enqueued += 1
        if not self.accepts(record):
            self.filtered += 1
            return False
        self.ready.append(record)
        return True

    def notify(self, record: Record) -> None:
        self.enqueued += 1
        if not self._accept_all and not self.accepts(record):
            self.filtered += 1
            return
        idle = self.idle
        if idle and not self.ready and not self.redrive and self._status == "up":
            # fast path: hand the message straight to a waiting instance
            inst = idle.popleft()
            inst.waiting = False
            if inst.state == IDLE and inst.alive and not inst.leaving:
                if self.idempotent and self.seen(record):
                    self.poll(inst)  # the message was a duplicate and skipped: wait again
                else:
                    self.begin(inst, record, 1, False)
                return
        self.ready.append(record)
        if idle:
            self.wake()

    def _done(self, inst: Instance) -> None:
        if not self._lane or inst.failing or inst.redrive_dup:
            super()._done(inst)
            return
        # the common case: a fresh message processed and acknowledged, nothing else to tell
        record = inst.record
        assert record is not None
        now = self.sim.now
        self.processed += 1
        inst.processed += 1
        sink = self._processing_sink
        if sink is not None:
            sink((now - inst.started) * 1000.0)
        sink = self._e2e_sink
        if sink is not None:
            sink((now - record[TS]) * 1000.0)
        if self.attempts:
            self.attempts.pop(record[ID], None)
        inst.record = None
        inst.state = IDLE
        if inst.leaving:
            self.after_idle(inst)
        else:
            self.poll(inst)  # its own fast lane takes the next in line

    def wake(self) -> None:
        idle = self.idle
        while idle and (self.ready or self.redrive):
            inst = idle.popleft()
            inst.waiting = False
            if inst.state == IDLE and inst.alive:
                self.poll(inst)

    def poll(self, inst: Instance) -> None:
        if inst.state != IDLE or not inst.alive or inst.leaving:
            return
        if self._lane and not self.redrive and not self.requeued:
            # the common case: next in line, first attempt unless it is back from a retry
            ready = self.ready
            if ready:
                record = ready.popleft()
                attempts = self.attempts
                inst.redrive_dup = False
                self.begin(inst, record, attempts.get(record[ID], 0) + 1 if attempts else 1, False)
                return
        elif self._status != "up" or self._rebalancing:
            return
        while True:
            duplicate = False
            if self.redrive:
                record, duplicate = self.redrive_pop()
                if self.skip_redriven(record, duplicate):
                    continue
            elif self.ready:
                record = self.ready.popleft()
            else:
                if not inst.waiting:
                    inst.waiting = True
                    self.idle.append(inst)
                return
            rid = record[ID]
            redelivery = rid in self.requeued
            if redelivery:
                self.requeued.discard(rid)
                self.redelivered += 1
            if self.idempotent and self.seen(record):
                continue
            attempt = self.attempts.get(rid, 0) + 1
            inst.redrive_dup = duplicate
            self.begin(inst, record, attempt, redelivery)
            return

    def is_duplicate(self, inst: Instance, record: Record) -> bool:
        return False

    def retry_later(self, inst: Instance, record: Record, delay: float) -> None:
        # Nack with a delay: the message waits on the broker; the instance moves on.
        self.attempts[record[ID]] = inst.attempt
        self.delayed += 1
        self.sim.at(self.sim.now + delay, self._requeue, record)
        inst.record = None
        inst.state = IDLE
        self.after_idle(inst)

    def _requeue(self, record: Record) -> None:
        self.delayed -= 1
        self.ready.append(record)
        self.wake()

    def finish(self, inst: Instance, record: Record) -> None:
        self.attempts.pop(record[ID], None)

    def after_idle(self, inst: Instance) -> None:
        if inst.leaving:
            self.instances.remove(inst)
            return
        self.poll(inst)

    def down(self) -> None:
        self.set_status("down")

    def up(self) -> None:
        for inst in self.instances:
            if not inst.alive:
                inst.alive = True
                inst.state = IDLE
                inst.record = None
        self.set_status("up")
        for inst in self.instances:
            self.poll(inst)

    def crash(self, instance: int | None = None) -> None:
        for inst in self.instances:
            if not inst.alive or (instance is not None and inst.index != instance):
                continue
            inst.alive = False
            self._stop(inst)
            if inst.record is not None and inst.state == BUSY:
                # unacknowledged: back to the head of the queue, flagged as redelivered
                self.requeued.add(inst.record[ID])
                self.ready.appendleft(inst.record)
            inst.record = None
            inst.state = DEAD
        if instance is None or not any(i.alive for i in self.instances):
            self.set_status("crashed")
        else:
            self.wake()
            self.set_status(self.status)

    def set_instances(self, n: int) -> None:
        current = [i for i in self.instances if not i.leaving]
        if n > len(current):
            for inst in self.add_instances(n - len(current)):
                self.poll(inst)
        else:
            for inst in current[n:]:
                inst.leaving = True
                if inst.state in (IDLE, DEAD):
                    self.instances.remove(inst)
        self.set_status(self.status)

    def detach(self) -> None:
        for part in self._parts:
            part.listeners.remove(self)
        for inst in self.instances:
            self._stop(inst)
            inst.alive = False

    def lag(self) -> int:
        return (
            len(self.ready)
            + self.delayed
            + len(self.redrive)
            + sum(1 for i in self.instances if i.state == BUSY)
        )

    def lag_seconds(self) -> float:
        oldest = None
        for r in (
            self.ready[0] if self.ready else None,
            self.redrive[0] if self.redrive else None,
            *(i.record for i in self.instances if i.state == BUSY),
        ):
            if r is not None and (oldest is None or r[TS] < oldest):
                oldest = r[TS]
        return 0.0 if oldest is None else max(0.0, self.sim.now - oldest)

    def accounting(self) -> dict[str, int]:
        return {
            "produced": self.enqueued,
            "processed": self.processed - self.duplicates,
            "in_flight": sum(1 for i in self.instances if i.state == BUSY),
            "retrying": self.delayed,
            "dead_lettered": sum(1 for d in self.dead_letters if not d.duplicate)
            + self.dead_letters_dropped_fresh,
            "redrive_pending": sum(1 for d in self._redrive_dup if not d),
            "filtered": self.filtered,
            "expired": 0,
            "skipped": 0,
            "deduplicated": self.redrive_deduplicated,
            "not_delivered": len(self.ready),
        }
