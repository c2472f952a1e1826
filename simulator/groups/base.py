"""What both delivery modes share: instances, processing, counters, the fast lane.

Groups reach the simulation only through :class:`Host`, a narrow interface (the clock and the
scheduler, the random source, publishing, observer hooks and sinks), never through its private
state; the simulation imports the groups, the groups never import the simulation.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from math import log
from random import Random
from typing import TYPE_CHECKING, Any, Protocol

from ..broker import (
    CORRELATION_ID,
    ID,
    KEY,
    PAYLOAD,
    POISON,
    SIZE,
    TS,
    TYPE,
    CorrelationId,
    DeadLetterTopic,
    Record,
    Topic,
)
from ..observe import MEASURES, Observer, Sink
from ..schema import parse_versioned, read_payload
from .failures import FailureHandling

if TYPE_CHECKING:
    from ..metrics import GroupStats
    from ..observe import JourneyWatch
    from ..scenario import ConsumerSpec

IDLE, BUSY, BACKOFF, DEAD = "idle", "busy", "backoff", "dead"

Plan = Callable[[str, Record], tuple[float, float]]


class Host(Protocol):
    """What a group may use of the simulation that holds it."""

    now: float
    rng: Random
    observers: list[Observer]
    topics: dict[str, Topic]
    schemas: Any
    on_delivered: list[Any]
    on_processed: list[Any]
    on_failed: list[Any]
    on_retried: list[Any]
    on_dead_lettered: list[Any]
    on_redriven: list[Any]
    on_deduplicated: list[Any]
    on_expired: list[Any]
    on_rebalanced: list[Any]
    on_status_changed: list[Any]
    # the journeys watched, and the journey observers' hooks called for their records only
    watch: JourneyWatch
    journey_delivered: list[Any]
    journey_processed: list[Any]

    def at(self, time: float, action: Callable[[Any], None], arg: Any = None) -> None: ...

    # ``at`` as C-level calls for the hot path: push((time, next_seq(), action, arg))
    push: Callable[[tuple[float, int, Callable[[Any], None], Any]], None]
    next_seq: Callable[[], int]

    def cancel(self, action: Callable[[Any], None], arg: Any) -> int: ...

    def dead_letter_topic(self, topic: str, name: str = "") -> DeadLetterTopic: ...

    def retry_topic(self, topic: str, name: str) -> DeadLetterTopic: ...

    def publish(
        self,
        topic: Topic,
        type: str,
        key: str | None,
        payload: dict[str, Any] | None,
        size: int,
        correlation_id: CorrelationId | None,
        causation_id: int | None,
        poison: bool = False,
    ) -> None: ...


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
    """One running copy of a consumer service: a Kafka consumer, or a RabbitMQ channel with its
    consumer.

    It works on one record at a time (``record``); ``batch`` holds what it has been given and not
    started yet: the rest of the records its last ``poll()`` returned (stream), or the messages
    the broker pushed to it within its prefetch (queue).
    """

    __slots__ = (
        "alive",
        "attempt",
        "batch",
        "born",
        "commit_due",
        "cursor",
        "cursors",
        "failing",
        "index",
        "joined",
        "leaving",
        "member",
        "processed",
        "record",
        "rejoin",
        "repeat",
        "retire",
        "rr",
        "seq",
        "started",
        "state",
        "unacked",
        "unreadable",
        "waiting",
    )

    def __init__(self, index: int, born: float = 0.0) -> None:
        self.index = index
        self.alive = True
        self.leaving = False  # stopping gracefully: finishes what it holds, then leaves
        self.retire = False  # removed by scaling down once it has left
        self.member = False  # stream: a member of the consumer group
        self.state = IDLE
        self.record: Record | None = None
        self.cursor: Any = None  # stream: the Cursor the record came from
        self.seq = 0  # queue: the message's position in the queue
        self.batch: deque[Any] = deque()
        self.attempt = 0
        self.started = 0.0
        self.failing = False
        self.cursors: list[Any] = []  # stream: the partitions assigned to it
        self.rr = 0
        self.born = born  # when it started: its heartbeats fall at born + k * heartbeat interval
        self.commit_due = 0.0  # stream: when its next auto-commit is due
        self.rejoin = False  # stream: a rebalance is under way and it has not rejoined yet
        self.joined = False  # stream: it has rejoined and waits for the new assignment
        self.unacked = 0  # queue: messages delivered to it and not yet acknowledged
        self.waiting = False
        self.processed = 0
        # working on a copy of an event this group had finished before (a redriven copy of a
        # dead letter, republished)
        self.repeat = False
        self.unreadable = ""  # why the event cannot be read with the service's schema


class ConsumerGroup(FailureHandling):
    """Processing, counters and the fast lane, for both delivery modes."""

    mode = "stream"

    def __init__(
        self,
        sim: Host,
        spec: ConsumerSpec,
        topics: list[Topic],
        stats: GroupStats,
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
        self._overhead = spec.client_overhead_ms / 1000.0
        self._lane = False
        self._quiet = True
        self.status = "up"  # up, down, crashed
        self.rebalancing = False
        self.slow = 1.0  # processing-time multiplier ("slow x3")
        self.delay = 0.0  # seconds added to every processing ("Email slow +500 ms")
        self.failure_rate = spec.failure_rate
        # (service, record) -> (seconds, uniform draw for failure); set by a comparison
        self._plan: Plan | None = None
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
        self.instances: list[Instance] = []
        # counters
        self.processed = 0
        self.duplicates = 0
        self.redelivered = 0
        self.retries = 0
        self.failures = 0
        self.filtered = 0
        self.expired = 0
        self.skipped = 0
        self.deduplicated = 0
        # finished copies of events finished before, and fresh records skipped as seen (for
        # the accounting)
        self.repeats = 0
        self.deduplicated_fresh = 0
        self.emitted = 0
        self.detached = False
        self._done_cb = self._done
        self._done_watched_cb = self._done_watched
        self._watched = sim.watch.watched
        self._accept_all = self._types is None and self._match is None
        self._wait_sink: Sink | None = None
        self._processing_sink: Sink | None = None
        self._e2e_sink: Sink | None = None
        self._at = sim.at
        self._push = sim.push
        self._next_seq = sim.next_seq
        self._random = sim.rng.random
        self.init_failures()
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

        Called by everything that changes a field it depends on (status, speed, observers).
        """
        self._lane = (
            self._quiet
            and not self.idempotent
            and not self._emits
            and self.status == "up"
            and self.slow == 1.0
            and not self.delay
        )

    @property
    def plan(self) -> Plan | None:
        return self._plan

    @plan.setter
    def plan(self, plan: Plan | None) -> None:
        self._plan = plan
        self.bind_observers()

    # --- processing ---------------------------------------------------------------------

    def accepts(self, record: Record) -> bool:
        if self._accept_all:
            return True
        if self._types is not None and record[TYPE] not in self._types:
            return False
        return self._match is None or self._match(record[PAYLOAD])

    @property
    def fetching(self) -> bool:
        """Whether the service takes new work now."""
        return self.status == "up" and not self.rebalancing

    def begin(self, inst: Instance, record: Record, attempt: int, redelivery: bool) -> None:
        """``inst`` starts processing ``record``; ``_done(inst)`` follows when it finishes."""
        if self._lane and attempt == 1 and not redelivery:
            self.begin_fresh(inst, record)
            return
        service = self.draw(inst, record, attempt, redelivery)
        # a watched journey's record finishes the full way even if the lane is on by then
        done = self._done_watched_cb if record[CORRELATION_ID] in self._watched else self._done_cb
        self._push((self.sim.now + service, self._next_seq(), done, inst))

    def draw(self, inst: Instance, record: Record, attempt: int, redelivery: bool) -> float:
        """Start ``inst`` on ``record`` the full way: tell the observers, draw how long it takes
        and whether it fails. Returns the seconds it takes."""
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
        sim = self.sim
        rng = self.rng
        for hook in sim.on_delivered:
            hook(now, self, inst.index, record, attempt, redelivery)
        if record[CORRELATION_ID] in self._watched:
            for hook in sim.journey_delivered:
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
        return float(service * self.slow + self.delay + self._overhead)

    def begin_fresh(self, inst: Instance, record: Record) -> None:
        """The fast lane's ``begin``: a first delivery, nothing to tell anyone. The same draws
        and the same sum as the full path's, so that both give the very same times.

        A record of a watched journey takes the full path instead, from here to its ``_done``,
        so the journey observers see it delivered and processed (observe.JourneyWatch)."""
        if record[CORRELATION_ID] in self._watched:
            service = self.draw(inst, record, 1, False)
            self._push((self.sim.now + service, self._next_seq(), self._done_watched_cb, inst))
            return
        now = self.sim.now
        inst.record = record
        inst.attempt = 1
        inst.started = now
        inst.state = BUSY
        sink = self._wait_sink
        if sink is not None:
            sink((now - record[TS]) * 1000.0)
        rate = self._exp_rate
        service = -log(1.0 - self._random()) / rate if rate else self.sample(self.rng)
        fr = self.failure_rate
        inst.failing = record[POISON] or (fr > 0.0 and self._random() < fr)
        self._push((now + (service + self._overhead), self._next_seq(), self._done_cb, inst))

    def _done(self, inst: Instance) -> None:
        raise NotImplementedError

    def _done_watched(self, inst: Instance) -> None:
        """``_done`` the full way, for a record of a watched journey begun on the fast lane:
        the lane is off for this one call (both ways give the same results), then as it was
        (its fields may have changed meanwhile: asked again)."""
        if not self._lane:
            self._done(inst)
            return
        self._lane = False
        try:
            self._done(inst)
        finally:
            self._refresh_lane()

    def succeeded(self, inst: Instance, record: Record, duplicate: bool) -> None:
        """Count a successful processing, tell the observers, and react (emit)."""
        now = self.sim.now
        self.processed += 1
        inst.processed += 1
        sink = self._processing_sink
        if sink is not None:
            sink((now - inst.started) * 1000.0)
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
        if record[CORRELATION_ID] in self._watched:
            for hook in self.sim.journey_processed:
                hook(now, self, inst.index, record, inst.started, duplicate)
        if self._emits:
            self.emit(record)

    def _stop(self, inst: Instance) -> None:
        """The instance is gone: its work in progress is lost, its pending retry stale."""
        self.sim.cancel(self._done_cb, inst)
        self.sim.cancel(self._done_watched_cb, inst)
        self.sim.cancel(self._retry_cb, inst)

    def emit(self, record: Record) -> None:
        """React: publish this service's events, caused by ``record``, in its correlation."""
        sim = self.sim
        for emit, topic in self._emits:
            if emit.when is not None and emit.when != record[TYPE]:
                continue
            self.emitted += 1
            # the payload passes through, and weighs what it weighed; size_bytes is for events
            # without one
            size = record[SIZE] if record[PAYLOAD] is not None else emit.size_bytes or record[SIZE]
            sim.publish(
                topic,
                emit.event,
                record[KEY],
                record[PAYLOAD],
                size,
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

    # --- status ---------------------------------------------------------------------------

    def set_status(self, status: str) -> None:
        self.status = status
        self._refresh_lane()
        for hook in self.sim.on_status_changed:
            hook(self.sim.now, "consumer", self.name, self.display_status)

    def note(self, text: str) -> None:
        """Tell observers (chart markers, the event log) what happened, in words."""
        for hook in self.sim.on_status_changed:
            hook(self.sim.now, "consumer", self.name, text)

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
        """Records being processed right now."""
        return sum(1 for i in self.instances if i.state == BUSY)

    @property
    def retrying(self) -> int:
        """Records waiting out a retry backoff."""
        return sum(1 for i in self.instances if i.state == BACKOFF)

    @property
    def batched(self) -> int:
        """Records handed to instances that they have not started yet."""
        return sum(len(i.batch) for i in self.instances)

    def new_instance(self, index: int) -> Instance:
        inst = Instance(index, self.sim.now)
        inst.alive = self.status != "crashed"
        inst.state = IDLE if inst.alive else DEAD
        return inst

    def add_instances(self, count: int) -> list[Instance]:
        """Start ``count`` new instances (dead ones if the service is crashed)."""
        next_index = max((i.index for i in self.instances), default=-1) + 1
        added = [self.new_instance(next_index + k) for k in range(count)]
        self.instances.extend(added)
        return added

    # --- mode-specific ------------------------------------------------------------------

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

    def detach(self) -> None:
        raise NotImplementedError

    def lag(self) -> int:
        raise NotImplementedError

    def lag_seconds(self) -> float:
        raise NotImplementedError

    def records_lag(self) -> int:
        """Records the group has not yet read: how far behind it is, apart from commits."""
        raise NotImplementedError

    def backlog(self) -> int:
        """Events the group has not yet processed (read or not): how far behind its work is.
        Unlike ``lag`` it does not count what is processed and waits for a commit, so a healthy
        group with auto-commit (up to ``auto.commit.interval.ms`` of records) shows none."""
        raise NotImplementedError

    def accounting(self) -> dict[str, int]:
        raise NotImplementedError

    def partitions_state(self) -> list[dict[str, Any]]:
        return []

    def waiting_retry(self) -> int:
        """Records waiting for a later attempt outside the instances (a retry queue's TTL, a
        retry topic)."""
        return 0

    def instance_state(self, inst: Instance) -> dict[str, Any]:
        return {
            "index": inst.index,
            "state": inst.state,
            "processed": inst.processed,
            "batch": len(inst.batch),
        }

    def notes(self) -> list[str]:
        """What a learner should know about the group right now, in words, from the run."""
        return []

    def settings(self) -> dict[str, Any]:
        """The real-broker settings in force, for the page and the API."""
        return {"client_overhead_ms": self.spec.client_overhead_ms}
