"""Side by side: a synchronous call chain and event flow, under the same load and faults.

Checkout calls the services of ``chain`` one after another and waits for each (Order ->
Inventory -> Email): every call blocks its caller for a network hop, the callee's queueing and
processing, and a hop back; it has a timeout, and a failure propagates to checkout. On the event
side, checkout persists the order, publishes OrderPlaced to the broker and returns; the services
consume it when they can.

Both sides run in one scheduler and are fed by one :class:`OrderPlan`: the same arrival times, the
same per-order processing time of each service and the same luck (the uniform draw that decides a
failure), so the comparison is fair.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Iterable
from random import Random
from typing import Any

from .broker import PAYLOAD, TYPE, Record
from .commands import (
    COMMAND_FIELDS,
    ERR_LOG_FULL,
    MAX_COMMAND_LOG,
    VALUE_BOUNDS,
    CommandError,
    Shown,
    bounded,
    command_name,
    logged_command,
    require,
)
from .distributions import LatencySpec, Sampler, payload_bytes, value_maker
from .metrics import Histogram
from .observe import Observer
from .scenario import (
    _V,
    ConsumerSpec,
    FaultSpec,
    Scenario,
    ScenarioError,
    _latency,
    parse_consumer_spec,
)
from .simulation import Simulation
from .timeline import Timeline

ERR_NO_CHAIN = "a comparison needs a 'chain': the services checkout calls, in order"
SWITCHES = (
    "consumer.down",
    "consumer.up",
    "consumer.slow",
    "consumer.delay",
    "consumer.failure_rate",
    "consumer.crash",
    "producer.rate",
    "service.add",
    # the event side's broker (the synchronous chain has none)
    "broker.down",
    "broker.up",
    "broker.delay",
    # the run's length (both sides share the clock)
    "extend",
)
# what the switch log keeps of each switch: the fields it reads (a comparison has one producer)
SWITCH_FIELDS = {
    **COMMAND_FIELDS,
    "producer.rate": ("value",),
    "service.add": ("consumer", "from"),
}


@dataclasses.dataclass(frozen=True)
class SyncSpec:
    hop_ms: float = 2.0
    timeout_ms: float = 2000.0
    retries: int = 0
    backoff_ms: float = 50.0
    checkout: LatencySpec = dataclasses.field(default_factory=lambda: LatencySpec("constant", 5.0))
    # what the event side's checkout waits for after publishing: the broker's acknowledgement
    # (event-driven), or a reply event from the first / every consumer of the order (request-
    # reply over the broker, which puts the consumers back on checkout's path)
    events_await: str = "ack"


EVENTS_AWAIT = ("ack", "first", "all")


def parse_sync(doc: Any) -> SyncSpec:
    v = _V()
    d = v.mapping(doc if doc is not None else {}, "sync") or {}
    v.known(
        d, "sync", ("hop_ms", "timeout_ms", "retries", "backoff_ms", "checkout", "events_await")
    )
    spec = SyncSpec(
        hop_ms=v.number(d, "hop_ms", "sync", default=2.0, ge=0, le=60_000),
        timeout_ms=v.number(d, "timeout_ms", "sync", default=2000.0, gt=0, le=600_000),
        retries=v.number(d, "retries", "sync", default=0, ge=0, le=10, integer=True),
        backoff_ms=v.number(d, "backoff_ms", "sync", default=50.0, ge=0, le=600_000),
        checkout=(
            _latency(v, d["checkout"], "sync.checkout")
            if "checkout" in d
            else LatencySpec("constant", 5.0)
        )
        or LatencySpec("constant", 5.0),
        events_await=v.choice(d, "events_await", "sync", EVENTS_AWAIT, "ack"),
    )
    if v.errors:
        raise ScenarioError(v.errors)
    return spec


class OrderPlan:
    """The orders both sides see: drawn once, from streams seeded by the comparison's seed.

    Each kind of draw has its own stream (arrivals, checkout work, each service's processing
    time, each service's luck), so adding a service later does not shift anyone's numbers.
    """

    def __init__(
        self,
        seed: int,
        services: dict[str, LatencySpec],
        checkout: LatencySpec,
        payload: dict[str, Any],
    ) -> None:
        self.seed = seed
        self._rngs: dict[str, Random] = {}
        self._samplers: dict[str, Sampler] = {n: s.sampler() for n, s in services.items()}
        self._checkout = checkout.sampler()
        self._makers = [(name, value_maker(v)) for name, v in payload.items()]
        self._latency: dict[str, list[float]] = {}
        self._luck: dict[str, list[float]] = {}
        self.checkout_s: list[float] = []
        self.payloads: list[dict[str, Any]] = []

    def _rng(self, name: str) -> Random:
        rng = self._rngs.get(name)
        if rng is None:
            rng = self._rngs[name] = Random(f"{self.seed}:{name}")
        return rng

    def add_service(self, name: str, latency: LatencySpec) -> None:
        self._samplers.setdefault(name, latency.sampler())

    def gap(self, rate: float) -> float:
        rng = self._rng("arrivals")
        return rng.expovariate(rate)

    def new_order(self) -> int:
        n = len(self.checkout_s)
        self.checkout_s.append(self._checkout(self._rng("checkout")))
        rng = self._rng("payload")
        self.payloads.append({"order": n, **{k: make(rng, n + 1) for k, make in self._makers}})
        return n

    def service(self, name: str, order: int) -> tuple[float, float]:
        """Order ``order``'s processing time (s) at ``name``, and its luck (0..1)."""
        lat = self._latency.setdefault(name, [])
        luck = self._luck.setdefault(name, [])
        sampler = self._samplers[name]
        rng_l, rng_f = self._rng(f"latency:{name}"), self._rng(f"luck:{name}")
        while len(lat) <= order:
            lat.append(sampler(rng_l))
            luck.append(rng_f.random())
        return lat[order], luck[order]


class RecentWindow:
    """Latencies of the last ``seconds`` of simulated time: what a live chart wants."""

    def __init__(self, seconds: float = 5.0, cap: int = 20_000) -> None:
        self.seconds = seconds
        self.values: deque[tuple[float, float]] = deque(maxlen=cap)

    def add(self, t: float, ms: float) -> None:
        self.values.append((t, ms))

    def summary(self, now: float) -> dict[str, float]:
        while self.values and self.values[0][0] < now - self.seconds:
            self.values.popleft()
        ms = sorted(v for _, v in self.values)
        if not ms:
            return {"count": 0, "p50": 0.0, "p95": 0.0, "p99": 0.0}

        def q(p: float) -> float:
            return round(ms[min(len(ms) - 1, int(p * len(ms)))], 3)

        return {"count": len(ms), "p50": q(0.5), "p95": q(0.95), "p99": q(0.99)}


class CompareHistory:
    """A comparison's own chart history, sampled on simulated time at the engine's sample
    ticks (deterministic: a rebuild samples the same): each side's recent checkout time
    (p50/p95/p99 over the last 5 s, None when no checkout finished in them) and the share of
    recent checkouts that failed."""

    def __init__(self, cmp: Comparison, maxlen: int = 3600) -> None:
        self.cmp = cmp
        # (t, sync p50, p95, p99, sync error rate, events p50, p95, p99, events error rate)
        self.rows: deque[tuple[Any, ...]] = deque(maxlen=maxlen)

    def sample(self, now: float) -> None:
        cmp = self.cmp
        s = cmp.sync.recent.summary(now)
        e = cmp.events_recent.summary(now)
        self.rows.append(
            (
                now,
                *((s["p50"], s["p95"], s["p99"]) if s["count"] else (None, None, None)),
                _rate(cmp.sync.recent_errors, cmp.sync.recent.values, now),
                *((e["p50"], e["p95"], e["p99"]) if e["count"] else (None, None, None)),
                cmp._events_error_rate(),
            )
        )


class SyncService:
    def __init__(self, spec: ConsumerSpec) -> None:
        self.name = spec.name
        self.label = spec.label
        self.instances = spec.instances
        self.mean_ms = spec.processing.mean_ms  # one call's mean processing time, unslowed
        self.busy = 0
        self.queue: deque[_Call] = deque()
        self.status = "up"
        self.slow = 1.0
        self.delay = 0.0
        self.failure_rate = spec.failure_rate
        self.calls = 0
        self.failures = 0
        self.refused = 0


class _Call:
    __slots__ = ("attempt", "done", "index", "order", "started")

    def __init__(self, order: int, index: int, attempt: int, started: float) -> None:
        self.order = order
        self.index = index
        self.attempt = attempt
        self.started = started
        self.done = False


class SyncChain:
    """Checkout calls each service of ``chain`` in turn, blocking on every call."""

    def __init__(
        self,
        sim: Simulation,
        plan: OrderPlan,
        spec: SyncSpec,
        services: dict[str, SyncService],
        chain: list[str],
    ) -> None:
        self.sim = sim
        self.plan = plan
        self.spec = spec
        self.services = services
        self.chain = chain
        self.hop = spec.hop_ms / 1000.0
        self.timeout = spec.timeout_ms / 1000.0
        self.checkout = Histogram()
        self.recent = RecentWindow()
        self.recent_errors: deque[float] = deque(maxlen=20_000)
        # (arrived, finished, ok) of the latest checkouts, oldest dropped first
        self.outcomes: deque[tuple[float, float, bool]] = deque(maxlen=100_000)
        self.arrived: dict[int, float] = {}
        self.ok = 0
        self.errors = 0
        self.timeouts = 0
        self.producer_changes = 0
        self.rng = Random(f"{plan.seed}:sync-retries")
        # the latest call hops, for animation (bounded; drained by whoever draws them)
        self.hops: deque[dict[str, Any]] = deque(maxlen=150)

    def _hop(self, kind: str, call: _Call) -> None:
        self.hops.append(
            {
                "t": round(self.sim.now, 6),
                "kind": kind,
                "order": call.order,
                "service": self.chain[call.index] if call.index < len(self.chain) else "",
                "attempt": call.attempt,
            }
        )

    def drain_hops(self) -> list[dict[str, Any]]:
        hops = list(self.hops)
        self.hops.clear()
        return hops

    def order_placed(self, order: int, arrived: float) -> None:
        self.arrived[order] = arrived
        self.sim.at(arrived + self.plan.checkout_s[order], self._next, (order, 0))

    def _next(self, arg: tuple[int, int]) -> None:
        order, index = arg
        if index >= len(self.chain):
            self._finish(order, ok=True)
            return
        self._call(_Call(order, index, 1, self.sim.now))

    def _call(self, call: _Call) -> None:
        sim = self.sim
        self._hop("call", call)
        sim.at(sim.now + self.timeout, self._timed_out, call)
        sim.at(sim.now + self.hop, self._arrive, call)

    def _arrive(self, call: _Call) -> None:
        if call.done:
            return
        service = self.services[self.chain[call.index]]
        service.calls += 1
        if service.status != "up":
            service.refused += 1
            self.sim.at(self.sim.now + self.hop, self._reply, (call, False))  # refused
            return
        service.queue.append(call)
        self._serve(service)

    def _serve(self, service: SyncService) -> None:
        sim = self.sim
        while service.queue and service.busy < service.instances and service.status == "up":
            call = service.queue.popleft()
            service.busy += 1
            if call.attempt == 1:
                seconds, luck = self.plan.service(service.name, call.order)
            else:
                base, _ = self.plan.service(service.name, call.order)
                seconds, luck = base, self.rng.random()
            seconds = seconds * service.slow + service.delay
            sim.at(sim.now + seconds, self._served, (service, call, luck < service.failure_rate))

    def _served(self, arg: tuple[SyncService, _Call, bool]) -> None:
        service, call, failed = arg
        service.busy -= 1
        if failed:
            service.failures += 1
        # the callee works on even when its caller gave up: that work is wasted
        self.sim.at(self.sim.now + self.hop, self._reply, (call, not failed))
        self._serve(service)

    def _reply(self, arg: tuple[_Call, bool]) -> None:
        call, ok = arg
        if call.done:
            return
        call.done = True
        self._hop("reply" if ok else "failed", call)
        if ok:
            self._next((call.order, call.index + 1))
        else:
            self._failed(call)

    def _timed_out(self, call: _Call) -> None:
        if call.done:
            return
        call.done = True
        self.timeouts += 1
        self._hop("timeout", call)
        self._failed(call)

    def _failed(self, call: _Call) -> None:
        if call.attempt <= self.spec.retries:
            retry = _Call(call.order, call.index, call.attempt + 1, self.sim.now)
            self.sim.at(
                self.sim.now + self.spec.backoff_ms / 1000.0 * call.attempt, self._call, retry
            )
            return
        self._finish(call.order, ok=False)

    def _finish(self, order: int, *, ok: bool) -> None:
        arrived = self.arrived.pop(order)
        self.outcomes.append((arrived, self.sim.now, ok))
        if ok:
            # checkout time is of the checkouts that returned, as on the event side: a fast
            # failure (a service down refuses at once) must not make checkout look faster
            ms = (self.sim.now - arrived) * 1000.0
            self.checkout.add(ms)
            self.recent.add(self.sim.now, ms)
            self.ok += 1
        else:
            self.errors += 1
            self.recent_errors.append(self.sim.now)

    def state(self) -> dict[str, Any]:
        return {
            "chain": list(self.chain),
            "producer_changes": self.producer_changes,
            "checkout_ms": self.checkout.summary(),
            "recent_checkout_ms": self.recent.summary(self.sim.now),
            "recent_error_rate": _rate(self.recent_errors, self.recent.values, self.sim.now),
            "recent_finished": _finished(self.recent_errors, self.recent.values, self.sim.now),
            "checkout_ok": self.ok,
            "checkout_errors": self.errors,
            "checkout_timeouts": self.timeouts,
            "in_flight": len(self.arrived),
            "services": {
                name: {
                    "label": s.label,
                    "status": s.status,
                    "busy": s.busy,
                    "queue": len(s.queue),
                    "calls": s.calls,
                    "failures": s.failures,
                    "refused": s.refused,
                    "slow": s.slow,
                    "delay_ms": round(s.delay * 1000, 3),
                    "failure_rate": s.failure_rate,
                }
                for name, s in self.services.items()
            },
        }


def _finished(errors: deque[float], recent: deque[tuple[float, float]], now: float) -> int:
    """Checkouts that finished in the recent window, failed or returned (``recent`` holds
    those that returned)."""
    while errors and errors[0] < now - 5.0:
        errors.popleft()
    while recent and recent[0][0] < now - 5.0:
        recent.popleft()
    return len(errors) + len(recent)


def _rate(errors: deque[float], recent: deque[tuple[float, float]], now: float) -> float:
    """Share of the checkouts that finished in the recent window which failed."""
    finished = _finished(errors, recent, now)
    return round(len(errors) / finished, 4) if finished else 0.0


OUTCOMES_KEPT = 200_000


class _Replies(Observer):
    """Request-reply over the broker: a consumer that processed an order replies."""

    def __init__(self, comparison: Comparison) -> None:
        self.comparison = comparison

    def processed(
        self,
        t: float,
        group: Any,
        instance: int,
        record: Record,
        started: float,
        duplicate: bool,
    ) -> None:
        order = record[PAYLOAD].get("order") if record[PAYLOAD] else None
        if isinstance(order, int) and record[TYPE] == self.comparison.event:
            self.comparison.replied(order, group.name)


def window_outcomes(
    outcomes: Iterable[tuple[float, float | None]], start: float, end: float
) -> dict[str, float]:
    """Checkouts placed in [start, end): how many, how many failed, and the median time of the
    ones that succeeded (ms; 0 when none did)."""
    ok = sorted(ms for t, ms in outcomes if start <= t < end and ms is not None)
    failed = sum(1 for t, ms in outcomes if start <= t < end and ms is None)
    return {
        "count": len(ok) + failed,
        "failed": failed,
        "p50": ok[len(ok) // 2] if ok else 0.0,
    }


class Comparison:
    """Both architectures, one clock, one order stream, one set of fault switches."""

    def __init__(self, scenario: Scenario, seed: int | None = None, **kwargs: Any) -> None:
        if not scenario.chain:
            raise ScenarioError([("chain", ERR_NO_CHAIN)])
        self.scenario = scenario
        self.seed = scenario.seed if seed is None else seed
        self.sync_spec = parse_sync(scenario.extra.get("sync"))
        producer = scenario.producers[0]
        self.rate = producer.rate
        # The event side's order producer is driven from here, so both sides get the same orders.
        quiet = dataclasses.replace(producer, rate=0.0)
        # the narrative and the charts read each service's sampled processing time and latency
        kwargs.setdefault("chart_history", True)
        # the script plays through the comparison's switches (both sides), not the engine's
        self.sim = Simulation(
            dataclasses.replace(scenario, producers=(quiet,), script=()), self.seed, **kwargs
        )
        self.producer = self.sim.producers[producer.name]
        self.topic = self.sim.topics[producer.topic]
        self.event = producer.event
        self.size = producer.size_bytes
        self.key = producer.key
        specs = {c.name: c for c in scenario.consumers}
        self.plan = OrderPlan(
            self.seed,
            {n: c.processing for n, c in specs.items()},
            self.sync_spec.checkout,
            dict(producer.payload),
        )
        self.sync = SyncChain(
            self.sim,
            self.plan,
            self.sync_spec,
            {n: SyncService(c) for n, c in specs.items()},
            list(scenario.chain),
        )
        for group in self.sim.groups.values():
            group.plan = self._plan_for
        self.hop = self.sync_spec.hop_ms / 1000.0
        self.events_checkout = Histogram()
        self.events_recent = RecentWindow()
        self.events_errors = 0
        self.events_recent_errors: deque[float] = deque()  # when each recent one failed
        # each checkout's (placed at, milliseconds) on the event side, None for a failed one;
        # the newest OUTCOMES_KEPT, so that a window of the run can be measured afterwards
        self.events_outcomes: deque[tuple[float, float | None]] = deque(maxlen=OUTCOMES_KEPT)
        # request-reply over the broker (sync.events_await first / all): orders waiting for
        # their replies, order -> (placed at, consumers still to reply)
        self.awaiting: dict[int, tuple[float, set[str]]] = {}
        # order -> when its checkout returned (event side), the newest OUTCOMES_KEPT
        self.returned: dict[int, float] = {}
        if self.sync_spec.events_await != "ack":
            self.sim.add_observer(_Replies(self))
        self.switch_log: list[tuple[float, dict[str, Any]]] = []
        self._epoch = 0
        for fault in scenario.faults:
            self.sim.at(fault.at, self._fault, fault)
        for step in scenario.script:
            self.sim.at(step.at, self._scripted, step.command)
        # the faults it applies (a broker fault has no synchronous side, and is not one)
        self.timeline = Timeline(
            [f for f in scenario.faults if f.producer is not None or f.consumer in specs],
            scenario.script,
            self.sim.service_name,
        )
        self.history = CompareHistory(self)
        self.sim.on_sample.append(self.history.sample)
        self._schedule_arrival()

    def _scripted(self, command: Any) -> None:
        """A step of the scenario's script, through the switches (both sides)."""
        self.sim.play(command, self._execute)

    def _fault(self, fault: FaultSpec) -> None:
        cmd: dict[str, Any]
        if fault.producer is not None:
            cmd = {"command": "producer.rate", "value": fault.value}
        else:
            cmd = {"command": f"consumer.{fault.action}", "consumer": fault.consumer}
            if fault.value is not None:
                cmd["value"] = fault.value
            if fault.consumer not in self.sync.services:
                return
        try:
            self._execute(cmd)
        except ValueError as e:  # one the run cannot take now: said, and the run goes on
            self.sim.command_failed("fault", cmd, e)

    def _plan_for(self, service: str, record: Record) -> tuple[float, float]:
        order = record[PAYLOAD].get("order") if record[PAYLOAD] else None
        if not isinstance(order, int) or service not in self.plan._samplers:
            return self.sim.rng.expovariate(1.0), self.sim.rng.random()
        return self.plan.service(service, order)

    # --- orders ---------------------------------------------------------------------------

    def _schedule_arrival(self) -> None:
        if self.rate > 0:
            self.sim.at(self.sim.now + self.plan.gap(self.rate), self._arrive, self._epoch)

    def _arrive(self, epoch: int) -> None:
        if epoch != self._epoch:
            return
        now = self.sim.now
        order = self.plan.new_order()
        self.sync.order_placed(order, now)
        # Event side: checkout does its own work, publishes OrderPlaced (a hop to the broker)
        # and returns to the customer once the broker acknowledges it. Nothing else is on its
        # path, but the broker is: a slow or down partition leader makes checkout wait, and a
        # send that fails (delivery.timeout.ms, a full buffer) fails the checkout.
        work = self.plan.checkout_s[order]
        self.sim.at(now + work + self.hop, self._publish, (order, now))
        self._schedule_arrival()

    def _publish(self, arg: tuple[int, float]) -> None:
        order, placed = arg
        payload = self.plan.payloads[order]
        key = str(payload[self.key]) if self.key and self.key in payload else None
        self.producer.count_send()
        topic = self.topic
        size = payload_bytes(payload)  # what the serialised order weighs
        part = topic.partition_for(key, size)
        # its own work and the hop to the broker so far; the ack's wait and the hop back follow
        before = (self.sim.now - placed + self.hop) * 1000.0

        def acked(wait_ms: float, ok: bool) -> None:
            if not ok:
                self._events_failed(placed)
                return
            if self.sync_spec.events_await != "ack":
                self._await_replies(order, placed)
                return
            self._checkout_done(placed, before + wait_ms, order)

        self.producer.sender.send(
            topic, part, self.event, key, payload, size, None, None, False, acked
        )

    def _checkout_done(self, placed: float, ms: float, order: int) -> None:
        self.events_checkout.add(ms)
        self.events_recent.add(placed, ms)
        self.events_outcomes.append((placed, ms))
        returned = self.returned
        returned[order] = placed + ms / 1000.0
        if len(returned) > OUTCOMES_KEPT:
            del returned[next(iter(returned))]

    def _await_replies(self, order: int, placed: float) -> None:
        """Request-reply: checkout waits for a reply event from the order's consumers."""
        topic = self.topic.name
        needed = {
            g.name
            for g in self.sim.groups.values()
            if topic in g.spec.topics and (not g.spec.events or self.event in g.spec.events)
        }
        if not needed:
            self._checkout_done(placed, (self.sim.now - placed + self.hop) * 1000.0, order)
            return
        self.awaiting[order] = (placed, needed)
        self.sim.at(placed + self.sync_spec.timeout_ms / 1000.0, self._await_timeout, order)

    def replied(self, order: int, service: str) -> None:
        waiting = self.awaiting.get(order)
        if waiting is None:
            return
        placed, needed = waiting
        needed.discard(service)
        if self.sync_spec.events_await == "first" or not needed:
            del self.awaiting[order]
            # the reply travels back through the broker: one hop to it, one to checkout
            self._checkout_done(placed, (self.sim.now - placed + 2 * self.hop) * 1000.0, order)

    def _await_timeout(self, order: int) -> None:
        waiting = self.awaiting.pop(order, None)
        if waiting is not None:
            self._events_failed(waiting[0])  # no reply in time: the checkout fails

    def _events_failed(self, placed: float) -> None:
        self.events_errors += 1
        self.events_recent_errors.append(self.sim.now)
        self.events_outcomes.append((placed, None))

    def _events_error_rate(self) -> float:
        """Share of the event side's checkouts of the last 5 simulated seconds that failed
        (as the synchronous side's: failures over all that finished)."""
        return _rate(self.events_recent_errors, self.events_recent.values, self.now)

    # --- switches ------------------------------------------------------------------------

    def run_until(self, t: float) -> None:
        self.sim.run_until(t)

    @property
    def duration(self) -> float:
        """The run's length (the scenario's, until ``extend`` lengthens it)."""
        return self.sim.duration

    @property
    def now(self) -> float:
        return self.sim.now

    def apply(self, command: Any) -> dict[str, Any]:
        """One switch, acting on both sides at once, recorded in the switch log (the fields it
        reads, nothing else; at most ``MAX_COMMAND_LOG`` switches)."""
        if len(self.switch_log) >= MAX_COMMAND_LOG:
            raise CommandError(ERR_LOG_FULL.format(n=MAX_COMMAND_LOG))
        result = self._execute(command)
        logged = logged_command(command, SWITCH_FIELDS)
        self.switch_log.append((self.now, logged))
        self.timeline.record(self.now, logged)
        return result

    def _execute(self, command: Any) -> dict[str, Any]:
        name = command_name(command)
        if name not in SWITCHES:
            raise CommandError(
                f"unknown switch {Shown(name)!r}; known switches: {', '.join(SWITCHES)}"
            )
        if name == "producer.rate":
            self.rate = bounded(command, VALUE_BOUNDS[name])
            self._epoch += 1
            self._schedule_arrival()
        elif name == "service.add":
            self._add_service(command)
        elif name == "extend":
            return self.sim.extend(command)
        elif name.startswith("broker."):
            self.sim.apply(command)
        else:
            target = require(command, "consumer")
            service = self.sync.services.get(target) if isinstance(target, str) else None
            if service is None:
                raise CommandError(f"unknown consumer {Shown(target)!r}")
            self.sim.apply(command)  # validates the value; raises before anything changes
            if name == "consumer.down":
                service.status = "down"
            elif name == "consumer.crash":
                service.status = "crashed"
            elif name == "consumer.up":
                service.status = "up"
                self.sync._serve(service)
            elif name == "consumer.slow":
                service.slow = float(command["value"])
            elif name == "consumer.delay":
                service.delay = float(command["value"]) / 1000.0
            elif name == "consumer.failure_rate":
                service.failure_rate = float(command["value"])
        return {}

    def _add_service(self, command: dict[str, Any]) -> None:
        """Deploy a new service (the lesson's Fraud) on both sides.

        Event side: it subscribes to the topic; no producer changes - unless checkout waits for
        reply events (``sync.events_await``), when its code must learn to expect one more. Sync
        side: checkout's code must be changed to call it, and every checkout waits for it.
        """
        doc = require(command, "consumer")
        try:
            spec = parse_consumer_spec(doc, set(self.sim.topics))
        except ScenarioError as e:
            raise CommandError(f"service.add: {e}") from None
        if spec.name in self.sync.services:
            raise CommandError(f"a consumer named {spec.name!r} exists already")
        self.sim.apply(
            {"command": "consumer.add", "consumer": doc, "from": command.get("from", "latest")}
        )
        self.plan.add_service(spec.name, spec.processing)
        self.sim.groups[spec.name].plan = self._plan_for
        self.sync.services[spec.name] = SyncService(spec)
        self.sync.chain.append(spec.name)
        self.sync.producer_changes += 1
        if self.sync_spec.events_await != "ack":
            self.producer.changes += 1

    # --- results -------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        groups = {
            name: self.sim.group_state(g, latency=False) for name, g in self.sim.groups.items()
        }
        return {
            "t": round(self.now, 6),
            "seed": self.seed,
            "orders": len(self.plan.checkout_s),
            "rate": self.rate,
            "fault_errors": self.sim.fault_errors_state(),
            "sync": self.sync.state(),
            "events": {
                "producer_changes": self.producer.changes,
                "checkout_ms": self.events_checkout.summary(),
                "recent_checkout_ms": self.events_recent.summary(self.now),
                "recent_error_rate": self._events_error_rate(),
                "recent_finished": _finished(
                    self.events_recent_errors, self.events_recent.values, self.now
                ),
                "checkout_errors": self.events_errors,
                "orders_published": self.producer.produced,
                "groups": groups,
                # what the broker holds, from the serialised payloads the orders were sent with
                "topics": {
                    name: {
                        k: v
                        for k, v in self.sim.topic_state(topic).items()
                        if k in ("bytes_per_s", "bytes_stored", "stored")
                    }
                    for name, topic in self.sim.topics.items()
                },
            },
        }

    @property
    def command_log(self) -> list[tuple[float, dict[str, Any]]]:
        return self.switch_log

    def metrics(self) -> dict[str, Any]:
        st = self.state()
        st["time"] = st.pop("t")
        return st
