"""The observer API: what happens inside the engine, told to whoever listens.

An observer subclasses :class:`Observer` and overrides the hooks it cares about; the simulation
calls only the hooks that were overridden, so an unobserved kind of event costs nothing.
Metrics (:mod:`simulator.metrics`), animation sampling (:class:`EventSampler`) and traces
(:class:`Tracer`) are observers, not code inside the core.

Each hook receives the virtual time first. The ``record`` arguments are the broker's records
(:class:`simulator.broker.Record`): read them, never change them.

Numbers that come once per event -- a group's wait, processing and end-to-end times -- also have
a cheaper way out: :meth:`Observer.measure` hands the engine a *sink* for one measure, a callable
taking one float, ideally a C-level one such as ``array.append``. The engine calls each sink with
each value and no Python frame of the observer's runs per event; that is how :mod:`.metrics`
keeps its histograms.

An observer that overrides ``delivered`` or ``processed`` is called for every event, and takes
the engine off its fast lane. One that only needs some journeys -- an animation's sample, the
traces of recent orders -- sets ``journeys = True``: its per-record hooks are then called only
for the records of *watched* journeys, chosen by the simulation's :class:`JourneyWatch` when a
journey starts (its first record, one without a cause), and the records of every other journey
take the fast lane as if nobody watched. :class:`EventSampler` and :class:`Tracer` are such
observers; the sampler sets how many journeys are watched, so that what it sees stays about
``budget`` events between two drains whatever the event rate.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from math import log, log1p
from operator import itemgetter
from random import Random
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from .broker import CORRELATION_ID, ID, OFFSET, PARTITION, TOPIC, TYPE, CorrelationId

if TYPE_CHECKING:
    from .broker import Record
    from .groups import ConsumerGroup

HOOKS = (
    "produced",
    "delivered",
    "processed",
    "failed",
    "retried",
    "dead_lettered",
    "redriven",
    "deduplicated",
    "expired",
    "rebalanced",
    "status_changed",
    "command_applied",
)

# The hooks a journey observer (``Observer.journeys``) is called with for watched journeys only,
# and where each finds its record among its arguments (after the time).
JOURNEY_HOOKS = {
    "produced": 1,
    "delivered": 3,
    "processed": 3,
    "failed": 3,
    "retried": 2,
    "dead_lettered": 2,
    "redriven": 2,
    "deduplicated": 2,
}

# A group's per-event measures, in milliseconds (see Observer.measure):
# wait_ms        produced -> first delivery starts (not counted again for retries/redeliveries)
# processing_ms  a successful processing, start to finish
# end_to_end_ms  produced -> processed successfully (the first time: duplicates are not counted)
MEASURES = ("wait_ms", "processing_ms", "end_to_end_ms")

Sink = Callable[[float], Any]


class Observer:
    """Base class: every hook does nothing. Override the ones you need."""

    # True: the per-record hooks (JOURNEY_HOOKS) are called for watched journeys only
    journeys: ClassVar[bool] = False
    # the simulation's watch, set when a journey observer is added to a simulation
    watch: JourneyWatch | None = None

    def measure(self, group: ConsumerGroup, name: str) -> Sink | None:
        """A sink for ``group``'s measure ``name`` (one of :data:`MEASURES`), or None.

        Asked once per group (again when observers change); the sink is then called with each
        value. Return something cheap to call, such as ``array('d').append``.
        """
        return None

    def produced(self, t: float, record: Record) -> None:
        """A record was appended to a topic partition."""

    def delivered(
        self,
        t: float,
        group: ConsumerGroup,
        instance: int,
        record: Record,
        attempt: int,
        redelivery: bool,
    ) -> None:
        """An instance of ``group`` started processing ``record`` (attempt 1, 2, ...)."""

    def processed(
        self,
        t: float,
        group: ConsumerGroup,
        instance: int,
        record: Record,
        started: float,
        duplicate: bool,
    ) -> None:
        """Processing succeeded. ``duplicate``: this group had already processed the record."""

    def failed(
        self,
        t: float,
        group: ConsumerGroup,
        instance: int,
        record: Record,
        attempt: int,
        reason: str,
    ) -> None:
        """An attempt failed (a retry or a dead letter follows)."""

    def retried(
        self, t: float, group: ConsumerGroup, record: Record, attempt: int, delay: float
    ) -> None:
        """Attempt ``attempt`` will run after ``delay`` seconds of backoff."""

    def dead_lettered(
        self, t: float, group: ConsumerGroup, record: Record, reason: str, attempts: int
    ) -> None:
        """The record went to the group's dead-letter topic."""

    def redriven(self, t: float, group: ConsumerGroup, record: Record) -> None:
        """A dead letter was sent back to the group for another try."""

    def deduplicated(self, t: float, group: ConsumerGroup, record: Record) -> None:
        """An idempotent group recognised a redelivered event and skipped it."""

    def expired(
        self, t: float, group: ConsumerGroup, topic: str, partition: int, count: int
    ) -> None:
        """Retention deleted ``count`` records before ``group`` had read them."""

    def rebalanced(self, t: float, group: ConsumerGroup, assignment: dict[int, list[str]]) -> None:
        """Partitions were (re)assigned: instance index -> ``topic/partition`` names."""

    def status_changed(self, t: float, target: str, name: str, status: str) -> None:
        """A service or producer changed status (up, down, crashed, slow, ...)."""

    def command_applied(self, t: float, command: dict[str, Any]) -> None:
        """A run-time command took effect."""


# --- Which journeys are watched ------------------------------------------------------------

NEVER = (1 << 30) - 1  # journeys to let pass before the next watched one, when none is watched
MIN_WATCH_RATE = 1e-6  # the least share of journeys watched (about one a second at 1M/s)
WATCH_KEEP = 5000  # journeys whose records are still watched (the most recent ones)


class Countdown(Protocol):
    """Something that starts journeys on an inline path and counts them itself (a producer):
    told the gap to the next watched one whenever the watch draws it again."""

    def watch_next(self, gap: int) -> None: ...


class JourneyWatch:
    """Which journeys the journey observers see: decided when a journey starts, before any
    observer is called, so an unwatched journey costs an integer count down when it starts and a
    set lookup when a record of it is delivered -- no observer call, no slower path.

    Each journey is watched with probability :attr:`rate`, drawn as the gap to the next watched
    one (geometric, so the decisions are independent Bernoulli draws) from the watch's own
    seeded random source: the model's draws are never touched, and the same scenario, seed,
    commands and rate changes at the same simulated times watch the same journeys. ``rate``
    is 1 (every journey) until something lowers it: the event sampler does, at each drain
    (:meth:`adapt`). The records of the ``keep`` most recently watched journeys are watched;
    older journeys are forgotten (their later records go unobserved), so memory stays bounded.
    """

    __slots__ = (
        "_order",
        "_rng",
        "active",
        "every",
        "keep",
        "left",
        "rate",
        "sources",
        "started",
        "watched",
    )

    def __init__(self, seed: int, keep: int = WATCH_KEEP) -> None:
        self.watched: set[CorrelationId] = set()
        self._order: deque[CorrelationId] = deque()
        self.keep = keep
        self.rate = 1.0
        self._rng = Random(f"journeys/{seed}")
        self.active = False  # a journey observer is attached
        # journeys started elsewhere than on a countdown's inline path (sends through the
        # send path): counted down here
        self.left = NEVER
        self.sources: list[Countdown] = []
        self.started = 0  # journeys watched so far
        self.every = False  # every journey, whatever the rate asked (a scenario's trace: all)

    def gap(self) -> int:
        """Journeys from now to the next watched one (1: the next)."""
        if not self.active:
            return NEVER
        rate = self.rate
        if rate >= 1.0:
            return 1
        # the number of Bernoulli(rate) trials up to the first success: floor(ln U / ln(1-p)) + 1
        return int(log(1.0 - self._rng.random()) / log1p(-rate)) + 1

    def begin(self, cid: CorrelationId) -> int:
        """Watch the journey ``cid`` (its first record is about to be appended). Returns the
        gap to the next watched journey."""
        if not self.active:
            return NEVER  # a countdown ran out while nobody watches: start it again
        watched = self.watched
        if cid not in watched:
            order = self._order
            if len(order) >= self.keep:
                watched.discard(order.popleft())
            order.append(cid)
            watched.add(cid)
            self.started += 1
        return self.gap()

    def starts(self, cid: CorrelationId) -> None:
        """A journey starts through the send path: count down, and watch it when due."""
        left = self.left - 1
        if left:
            self.left = left
        else:
            self.left = self.begin(cid)

    def set_active(self, active: bool) -> None:
        self.active = active
        if not active:
            self.watched.clear()
            self._order.clear()
        self._redraw()

    def set_rate(self, rate: float) -> None:
        """Watch this share of the journeys that start from now on (between
        :data:`MIN_WATCH_RATE` and 1)."""
        rate = 1.0 if self.every else min(1.0, max(MIN_WATCH_RATE, rate))
        if rate != self.rate:
            self.rate = rate
            self._redraw()

    def adapt(self, observed: int, budget: int) -> None:
        """Aim the rate at ``budget`` observed events until the next call, from the ``observed``
        since the last one: down in proportion at once, up at most twice as many at a time
        (the events of journeys already watched still come for a while)."""
        ratio = budget / observed if observed else 2.0
        self.set_rate(self.rate * min(ratio, 2.0))

    def _redraw(self) -> None:
        self.left = self.gap()
        for source in self.sources:
            source.watch_next(self.gap())


# --- Typed observation events, for observers that keep a log ------------------------------


@dataclass(frozen=True, slots=True)
class Observation:
    """One thing that happened, as kept by :class:`EventSampler` and :class:`Tracer`."""

    t: float
    kind: str
    event_id: int
    event_type: str
    correlation_id: CorrelationId
    topic: str
    partition: int
    offset: int
    service: str = ""
    instance: int = -1
    attempt: int = 0
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "t": round(self.t, 6),
            "kind": self.kind,
            "event_id": self.event_id,
            "event_type": self.event_type,
            "correlation_id": self.correlation_id,
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "service": self.service,
            "instance": self.instance,
            "attempt": self.attempt,
            "detail": self.detail,
        }


# An observation as a plain tuple of Observation's fields, in order: what the recording
# observers keep (cheap to make, and the garbage collector stops tracking a tuple of numbers and
# strings, so thousands kept cost nothing in its full passes); Observation(*hop) when read.
Hop = tuple[float, str, int, str, CorrelationId, str, int, int, str, int, int, str]


def _hop(
    t: float,
    kind: str,
    r: Record,
    service: str = "",
    instance: int = -1,
    attempt: int = 0,
    detail: str = "",
) -> Hop:
    return (
        t,
        kind,
        r[ID],
        r[TYPE],
        r[CORRELATION_ID],
        r[TOPIC],
        r[PARTITION],
        r[OFFSET],
        service,
        instance,
        attempt,
        detail,
    )


class _Recording(Observer):
    """Turns every hook into a hop passed to :meth:`keep`. (The live run's recorders, the
    sampler and the tracer, watch journeys: their hooks run for the watched ones only.)"""

    def keep(self, hop: Hop) -> None:
        raise NotImplementedError

    def produced(self, t: float, r: Record) -> None:
        self.keep(_hop(t, "produced", r))

    def delivered(
        self,
        t: float,
        group: ConsumerGroup,
        instance: int,
        r: Record,
        attempt: int,
        redelivery: bool,
    ) -> None:
        detail = "redelivery" if redelivery else ""
        self.keep(_hop(t, "delivered", r, group.name, instance, attempt, detail))

    def processed(
        self,
        t: float,
        group: ConsumerGroup,
        instance: int,
        r: Record,
        started: float,
        duplicate: bool,
    ) -> None:
        detail = "duplicate" if duplicate else ""
        self.keep(_hop(t, "processed", r, group.name, instance, 0, detail))

    def failed(
        self,
        t: float,
        group: ConsumerGroup,
        instance: int,
        record: Record,
        attempt: int,
        reason: str,
    ) -> None:
        self.keep(_hop(t, "failed", record, group.name, instance, attempt, reason))

    def retried(
        self, t: float, group: ConsumerGroup, record: Record, attempt: int, delay: float
    ) -> None:
        self.keep(
            _hop(t, "retried", record, group.name, -1, attempt, f"backoff {delay * 1000:.0f} ms")
        )

    def dead_lettered(
        self, t: float, group: ConsumerGroup, record: Record, reason: str, attempts: int
    ) -> None:
        self.keep(_hop(t, "dead_lettered", record, group.name, -1, attempts, reason))

    def redriven(self, t: float, group: ConsumerGroup, record: Record) -> None:
        self.keep(_hop(t, "redriven", record, group.name))

    def deduplicated(self, t: float, group: ConsumerGroup, record: Record) -> None:
        self.keep(_hop(t, "deduplicated", record, group.name))


class EventRecorder(_Recording):
    """Keeps every observation in a list: for tests and short traces, not for long runs. It
    sees every event (it is not a journey observer), so it takes the engine off its fast lane."""

    def __init__(self) -> None:
        self.log: list[Observation] = []

    def keep(self, hop: Hop) -> None:
        self.log.append(Observation(*hop))


_BY_TIME = itemgetter(0, 2)  # a hop's time, then its event id
# Seeing twice the budget before a drain divides the watch's rate by BRAKE at once, and again
# each time what was seen doubles.
BRAKE = 4


class EventSampler(_Recording):
    """A bounded random sample of what happened between two drains, for animation and the
    event log.

    A journey observer: it sees the events of watched journeys only, and at each :meth:`drain`
    it sets the simulation's watch so that about ``budget`` events are seen until the next one
    (every journey while the events are fewer; a share of the journeys when they are more). Of
    those (``budget`` is ``capacity`` unless said otherwise), a reservoir keeps an unbiased
    sample of at most ``capacity``. Counts stay exact
    elsewhere (metrics); this only picks what is drawn. Deterministic: the same run drained at
    the same simulated times gives the same samples.
    """

    journeys = True

    def __init__(self, capacity: int = 200, *, seed: int = 0, budget: int | None = None) -> None:
        self.capacity = capacity
        self.budget = capacity if budget is None else budget
        self._random = Random(seed).random
        self._sample: list[Hop] = []
        self._seen = 0
        self._brake_at = 2 * self.budget

    def keep(self, hop: Hop) -> None:
        seen = self._seen = self._seen + 1
        if seen == self._brake_at:
            self._brake()
        sample = self._sample
        if len(sample) < self.capacity:
            sample.append(hop)
        else:
            j = int(self._random() * seen)
            if j < self.capacity:
                sample[j] = hop

    def drain(self) -> tuple[list[Observation], int]:
        """The sample (in time order) and how many observations it was drawn from (the events
        of the watched journeys since the last drain)."""
        sample = [Observation(*hop) for hop in sorted(self._sample, key=_BY_TIME)]
        seen = self._seen
        self._sample = []
        self._seen = 0
        self._brake_at = 2 * self.budget
        if self.watch is not None:
            self.watch.adapt(seen, self.budget)
        return sample, seen

    def _brake(self) -> None:
        """Far more events than the budget before a drain (a run that sped up, or its first
        frame at full speed): watch fewer journeys at once instead of at the drain."""
        self._brake_at *= 2
        if self.watch is not None:
            self.watch.set_rate(self.watch.rate / BRAKE)


MAX_CORRELATION_ID_CHARS = 200


def valid_correlation_id(cid: object) -> bool:
    """Whether ``cid`` can name a journey: an event id (an integer) or an order id (text)."""
    if isinstance(cid, bool):
        return False
    if isinstance(cid, int):
        return 0 <= cid < 2**63
    return isinstance(cid, str) and 0 < len(cid) <= MAX_CORRELATION_ID_CHARS


class Tracer(_Recording):
    """The trace of each watched journey (correlation id): every hop with its time.

    A journey observer: it traces the journeys the simulation's watch watches -- every one,
    unless an event sampler lowered the watch's rate (the live runner's does, when events come
    faster than it draws them). Keeps the ``max_traces`` most recent correlation ids (oldest
    dropped first) so memory stays bounded on long runs.
    """

    journeys = True

    def __init__(self, max_traces: int = 5000, max_hops: int = 200) -> None:
        self.max_traces = max_traces
        self.max_hops = max_hops
        # each hop kept as a plain tuple of its fields: the garbage collector stops tracking a
        # tuple of numbers and strings, so 5,000 journeys' hops cost nothing in its full passes
        # (as Observation objects they were most of what a live server's full collections
        # walked: docs/performance.md, the soak)
        self._traces: OrderedDict[CorrelationId, list[Hop]] = OrderedDict()
        self.recent: deque[CorrelationId] = deque(maxlen=50)

    def keep(self, hop: Hop) -> None:
        traces = self._traces
        cid = hop[4]
        journey = traces.get(cid)
        if journey is None:
            journey = traces[cid] = []
            self.recent.append(cid)
            if len(traces) > self.max_traces:
                traces.popitem(last=False)
        if len(journey) < self.max_hops:
            journey.append(hop)

    def trace(self, correlation_id: CorrelationId) -> list[Observation] | None:
        journey = self._traces.get(correlation_id)
        return None if journey is None else [Observation(*hop) for hop in journey]

    def correlation_ids(self) -> list[CorrelationId]:
        return list(self._traces)


def journey_filter(
    hook: Callable[..., None], at: int, watched: set[CorrelationId]
) -> Callable[..., None]:
    """``hook``, called only when the record among its arguments (at ``at``, after the time)
    belongs to a watched journey: how a journey observer's rare hooks (failures, retries, dead
    letters, ...) sit among everyone's."""

    def only_watched(t: float, *args: Any) -> None:
        if args[at - 1][CORRELATION_ID] in watched:
            hook(t, *args)

    return only_watched
