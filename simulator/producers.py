"""Producers: services that emit events at a rate, with constant or Poisson arrivals."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from math import log
from random import Random
from typing import TYPE_CHECKING, Any, Protocol

from .distributions import order_id_field, payload_bytes, value_maker
from .publish import Sender
from .schema import parse_versioned, validate

if TYPE_CHECKING:
    from .broker import Topic
    from .observe import JourneyWatch
    from .scenario import BrokerSpec, BurstSpec, ProducerSpec


class ProducerHost(Protocol):
    """What a producer may use of the simulation that holds it."""

    now: float
    rng: Random
    schemas: Any
    broker: BrokerSpec
    on_status_changed: list[Any]
    watch: JourneyWatch

    @property
    def ids(self) -> Iterator[int]: ...  # event ids, shared by every topic

    def at(self, time: float, action: Callable[[Any], None], arg: Any = None) -> None: ...

    push: Callable[[tuple[float, int, Callable[[Any], None], Any]], None]
    next_seq: Callable[[], int]

    def append_now(self, *fields: Any) -> Any: ...


class Producer:
    def __init__(self, sim: ProducerHost, spec: ProducerSpec, topic: Topic) -> None:
        self.sim = sim
        self.spec = spec
        self.name = spec.name
        self.topic = topic
        self.event = spec.event
        self.rate = spec.rate
        self.base_rate = spec.rate
        self.poisson = spec.arrival == "poisson"
        self.key = spec.key
        self.size = spec.size_bytes
        self.poison_rate = spec.poison_rate
        self._makers = [(name, value_maker(v)) for name, v in spec.payload.items()]
        # the field that numbers this producer's orders ({sequence: "ord-"}): its value is the
        # order's id and its correlation id, on every record of the order's journey
        self.order_field = order_id_field(spec.payload)
        self.produced = 0
        self._emitted = 0  # sends through ``emit`` (the rest: the inline path)
        self.rejected = 0  # payloads the schema registry refused at publish time
        self.last_rejection = ""
        self._schema: dict[str, Any] | None = None
        if spec.schema is not None and sim.schemas is not None:
            self._schema = sim.schemas.get(*parse_versioned(spec.schema))
        # edits to this producer's code a new consumer forced: a comparison's checkout that
        # waits for reply events must learn to expect the new service's (compare.py)
        self.changes = 0
        self._epoch = 0
        self._anchor = 0.0
        self._n = 0
        self._round_robin = spec.partitioner == "round_robin" and len(topic.partitions) > 1
        self._rr = 0
        self._plain = (
            not self._makers
            and not self.poison_rate
            and self._schema is None
            and not self._round_robin
        )
        self._arrive_cb = self._arrive
        # a topic of one partition: no partitioner to ask
        self._only = topic.partitions[0] if len(topic.partitions) == 1 else None
        self._ids = sim.ids
        self._at = sim.at
        self._push = sim.push
        self._next_seq = sim.next_seq
        self._random = sim.rng.random
        # the send (``produced``) whose journey the journey observers watch next, on the inline
        # path: the simulation's watch draws the gaps (observe.JourneyWatch)
        self._watch = sim.watch
        self.watch_at = sim.watch.gap()
        sim.watch.sources.append(self)
        self.sender = Sender(
            spec=spec.send,
            broker=sim.broker,
            now=lambda: sim.now,
            at=sim.at,
            append=sim.append_now,
            inline=self._inline_sends,
        )
        for burst in spec.bursts:
            sim.at(burst.at, self._burst, burst)

    def count_send(self) -> None:
        """Count a record another component sends for this producer through its ``sender``."""
        self.produced += 1
        self._emitted += 1

    def _inline_sends(self) -> int:
        """Sends made by ``_arrive``'s inline path (each appended and acknowledged at once)."""
        return self.produced - self._emitted

    def start(self) -> None:
        self._schedule_next()

    def _schedule_next(self) -> None:
        rate = self.rate
        if rate <= 0:
            return
        sim = self.sim
        if self.poisson:
            # -log(1 - U) / rate is exactly what random.expovariate computes, without the call
            t = sim.now - log(1.0 - sim.rng.random()) / rate
        else:
            # anchor + n / rate, not a running sum of 1 / rate: no drift over long runs
            self._n += 1
            t = self._anchor + self._n / rate
        self._at(t, self._arrive_cb, self._epoch)

    def _arrive(self, epoch: int) -> None:
        if epoch != self._epoch:
            return  # the rate changed: this arrival was rescheduled
        now = self.sim.now
        if self._plain and not self.sender.waiting_for and not self.topic.offline:
            # the send path, inline: no key, no payload, its own correlation, the leader up
            # sent and acknowledged at once (see Sender.flush)
            produced = self.produced = self.produced + 1
            rid = next(self._ids)
            if produced < self.watch_at:  # a journey nobody watches: most (JourneyWatch)
                self.topic.append(
                    rid, self.event, None, now, self.size, None, rid, None, False, self._only
                )
            else:
                self._append_watched(rid, now)
        else:
            self.emit()
        if self.poisson:  # the common case of _schedule_next, inline
            t = now - log(1.0 - self._random()) / self.rate
            self._push((t, self._next_seq(), self._arrive_cb, epoch))
        else:
            self._schedule_next()

    def _append_watched(self, rid: int, now: float) -> None:
        """The inline path's send, for a journey the journey observers watch."""
        self.watch_at = self.produced + self._watch.begin(rid)
        self.topic.append(
            rid, self.event, None, now, self.size, None, rid, None, False, self._only, None, True
        )

    def watch_next(self, gap: int) -> None:
        """Watch the journey of the ``gap``-th send from now (JourneyWatch)."""
        self.watch_at = self.produced + gap

    def emit(self) -> None:
        self.produced += 1
        self._emitted += 1
        sim = self.sim
        rng = sim.rng
        payload: dict[str, Any] | None = None
        key = None
        if self._makers:
            n = self.produced
            payload = {name: make(rng, n) for name, make in self._makers}
            if self.key is not None:
                key = str(payload[self.key])
        poison = self.poison_rate > 0.0 and rng.random() < self.poison_rate
        if self._schema is not None:
            problems = validate(self._schema, payload or {})
            if problems:
                # the broker's schema check refuses it: nothing is stored, nobody sees it
                self.rejected += 1
                self.last_rejection = f"{self.spec.schema}: {problems[0]}"
                return
        topic = self.topic
        # the record weighs what its payload serialises to (size_bytes: for payload-less ones)
        size = payload_bytes(payload) if payload is not None else self.size
        if self._round_robin:  # RoundRobinPartitioner: the next partition, whatever the key
            parts = topic.partitions
            part = parts[self._rr]
            self._rr = (self._rr + 1) % len(parts)
        else:
            part = topic.partition_for(key, size)
        cid = payload[self.order_field] if self.order_field is not None and payload else None
        self.sender.send(topic, part, self.event, key, payload, size, cid, None, poison)

    def set_rate(self, rate: float) -> None:
        self.rate = rate
        self._epoch += 1
        self._anchor = self.sim.now
        self._n = 0
        self._schedule_next()
        for hook in self.sim.on_status_changed:
            hook(self.sim.now, "producer", self.name, f"rate {rate:g}/s")

    def _burst(self, burst: BurstSpec) -> None:
        if burst.count:
            for _ in range(burst.count):
                self.emit()
        else:
            before = self.rate
            self.set_rate(burst.rate)
            self.sim.at(self.sim.now + burst.duration, self._end_burst, before)

    def _end_burst(self, rate: float) -> None:
        self.set_rate(rate)
