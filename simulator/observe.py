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
keeps its histograms. Overriding ``delivered`` or ``processed`` instead (as the samplers and the
tracer do) works as always, and costs a call per event.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

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

# A group's per-event measures, in milliseconds (see Observer.measure):
# wait_ms        produced -> first delivery starts (not counted again for retries/redeliveries)
# processing_ms  a successful processing, start to finish
# end_to_end_ms  produced -> processed successfully (the first time: duplicates are not counted)
MEASURES = ("wait_ms", "processing_ms", "end_to_end_ms")

Sink = Callable[[float], Any]


class Observer:
    """Base class: every hook does nothing. Override the ones you need."""

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


def _obs(
    t: float,
    kind: str,
    r: Record,
    service: str = "",
    instance: int = -1,
    attempt: int = 0,
    detail: str = "",
) -> Observation:
    return Observation(
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
    """Turns every hook into an :class:`Observation` passed to :meth:`keep`."""

    def keep(self, obs: Observation) -> None:
        raise NotImplementedError

    def produced(self, t: float, record: Record) -> None:
        self.keep(_obs(t, "produced", record))

    def delivered(
        self,
        t: float,
        group: ConsumerGroup,
        instance: int,
        record: Record,
        attempt: int,
        redelivery: bool,
    ) -> None:
        self.keep(
            _obs(
                t,
                "delivered",
                record,
                group.name,
                instance,
                attempt,
                "redelivery" if redelivery else "",
            )
        )

    def processed(
        self,
        t: float,
        group: ConsumerGroup,
        instance: int,
        record: Record,
        started: float,
        duplicate: bool,
    ) -> None:
        self.keep(
            _obs(t, "processed", record, group.name, instance, 0, "duplicate" if duplicate else "")
        )

    def failed(
        self,
        t: float,
        group: ConsumerGroup,
        instance: int,
        record: Record,
        attempt: int,
        reason: str,
    ) -> None:
        self.keep(_obs(t, "failed", record, group.name, instance, attempt, reason))

    def retried(
        self, t: float, group: ConsumerGroup, record: Record, attempt: int, delay: float
    ) -> None:
        self.keep(
            _obs(t, "retried", record, group.name, -1, attempt, f"backoff {delay * 1000:.0f} ms")
        )

    def dead_lettered(
        self, t: float, group: ConsumerGroup, record: Record, reason: str, attempts: int
    ) -> None:
        self.keep(_obs(t, "dead_lettered", record, group.name, -1, attempts, reason))

    def redriven(self, t: float, group: ConsumerGroup, record: Record) -> None:
        self.keep(_obs(t, "redriven", record, group.name))

    def deduplicated(self, t: float, group: ConsumerGroup, record: Record) -> None:
        self.keep(_obs(t, "deduplicated", record, group.name))


class EventRecorder(_Recording):
    """Keeps every observation in a list: for tests and short traces, not for long runs."""

    def __init__(self) -> None:
        self.log: list[Observation] = []

    def keep(self, obs: Observation) -> None:
        self.log.append(obs)


class EventSampler(_Recording):
    """Keeps the latest observations for animation, at most ``capacity`` between two drains.

    Counts stay exact elsewhere (metrics); this only picks what is drawn. Reservoir sampling
    keeps an unbiased sample of everything since the last drain, with a fixed memory bound.
    """

    def __init__(self, capacity: int = 200, *, seed: int = 0) -> None:
        import random

        self.capacity = capacity
        self._rng = random.Random(seed)
        self._sample: list[Observation] = []
        self._seen = 0

    def keep(self, obs: Observation) -> None:
        self._seen += 1
        if len(self._sample) < self.capacity:
            self._sample.append(obs)
        else:
            j = self._rng.randrange(self._seen)
            if j < self.capacity:
                self._sample[j] = obs

    def drain(self) -> tuple[list[Observation], int]:
        """The sample (in time order) and how many observations it was drawn from."""
        sample = sorted(self._sample, key=lambda o: (o.t, o.event_id))
        seen = self._seen
        self._sample = []
        self._seen = 0
        return sample, seen


MAX_CORRELATION_ID_CHARS = 200


def valid_correlation_id(cid: object) -> bool:
    """Whether ``cid`` can name a journey: an event id (an integer) or an order id (text)."""
    if isinstance(cid, bool):
        return False
    if isinstance(cid, int):
        return 0 <= cid < 2**63
    return isinstance(cid, str) and 0 < len(cid) <= MAX_CORRELATION_ID_CHARS


class Tracer(_Recording):
    """The trace of each correlation id: every hop with its time.

    Keeps the ``max_traces`` most recent correlation ids (oldest dropped first) so memory stays
    bounded on long runs.
    """

    def __init__(self, max_traces: int = 5000, max_hops: int = 200) -> None:
        self.max_traces = max_traces
        self.max_hops = max_hops
        # each hop kept as a plain tuple of its fields: the garbage collector stops tracking a
        # tuple of numbers and strings, so 5,000 journeys' hops cost nothing in its full passes
        # (as Observation objects they were most of what a live server's full collections
        # walked: docs/performance.md, the soak)
        self._traces: OrderedDict[CorrelationId, list[tuple[Any, ...]]] = OrderedDict()
        self.recent: deque[CorrelationId] = deque(maxlen=50)

    def keep(self, obs: Observation) -> None:
        traces = self._traces
        journey = traces.get(obs.correlation_id)
        if journey is None:
            journey = traces[obs.correlation_id] = []
            self.recent.append(obs.correlation_id)
            if len(traces) > self.max_traces:
                traces.popitem(last=False)
        if len(journey) < self.max_hops:
            journey.append(
                (
                    obs.t,
                    obs.kind,
                    obs.event_id,
                    obs.event_type,
                    obs.correlation_id,
                    obs.topic,
                    obs.partition,
                    obs.offset,
                    obs.service,
                    obs.instance,
                    obs.attempt,
                    obs.detail,
                )
            )

    def trace(self, correlation_id: CorrelationId) -> list[Observation] | None:
        journey = self._traces.get(correlation_id)
        return None if journey is None else [Observation(*hop) for hop in journey]

    def correlation_ids(self) -> list[CorrelationId]:
        return list(self._traces)
