"""The live path keeps the engine's fast lane, and the runner uses the machine it has.

The live runner attaches an event sampler and a tracer: they watch a sample of journeys, decided
when each journey starts, so every other record takes the fast lane as in a headless run. These
tests hold that to what it promises: the same run, a bounded and reproducible sample, complete
traces of the journeys it watched. Then the runner's engine budget: more when the loop is idle,
less when others need it, and "behind" only when the run really cannot keep the speed.
"""

from __future__ import annotations

import asyncio
import copy
import gc
import time
from pathlib import Path
from typing import Any

import pytest

from bench.engine import scenario as mmc_scenario
from dashboard import runner as live
from dashboard.runner import (
    ENGINE_GROW,
    ENGINE_MAX,
    ENGINE_MIN,
    FRAME_INTERVAL,
    LOOP_SHARE,
    adapt_engine_budget,
    make_runner,
)
from simulator import EventRecorder, EventSampler, Observer, Simulation, load_scenario
from simulator import parse_scenario as parse
from simulator.metrics import CHART_STALE_TICKS, Histogram
from simulator.observe import BRAKE

ROOT = Path(__file__).resolve().parent.parent
ECOMMERCE = ROOT / "simulator/presets/ecommerce.yaml"


def ecommerce(rate: float = 20.0, **top: Any) -> dict[str, Any]:
    """The e-commerce preset (with Payment failing 15% and retrying), at ``rate`` orders/s."""
    doc = copy.deepcopy(load_scenario(ECOMMERCE).source)
    doc["producers"][0]["rate"] = rate
    doc["duration"] = 3600
    doc["consumers"][0]["failure_rate"] = 0.15
    doc.update(top)
    return dict(doc)


def live_model(
    doc: dict[str, Any], seed: int = 7, capacity: int = 200, sampler_seed: int | None = None
) -> tuple[Simulation, EventSampler]:
    """A simulation as the live runner makes one (runner.LiveRunner._make_model)."""
    sampler = EventSampler(capacity, seed=seed if sampler_seed is None else sampler_seed)
    sim = Simulation(parse(doc), seed, observers=(sampler,), trace=True, chart_history=True)
    return sim, sampler


def frames(sim: Simulation, sampler: EventSampler, until: float, every: float) -> list[Any]:
    """Run to ``until`` draining the sampler every ``every`` simulated seconds (a frame each):
    the samples, as plain data."""
    out = []
    t = 0.0
    while t < until:
        t = min(until, t + every)
        sim.run_until(t)
        sample, seen = sampler.drain()
        out.append(([o.as_dict() for o in sample], seen))
    return out


class Counting(Observer):
    """A journey observer counting what it is told."""

    journeys = True

    def __init__(self) -> None:
        self.calls = 0

    def produced(self, t: float, record: Any) -> None:
        self.calls += 1

    def delivered(self, *args: Any) -> None:
        self.calls += 1

    def processed(self, *args: Any) -> None:
        self.calls += 1


# --- the fast lane -------------------------------------------------------------------------


def test_the_live_configuration_keeps_the_fast_lane_and_observes_a_sample() -> None:
    sim, sampler = live_model(mmc_scenario(7))
    counting = Counting()
    sim.add_observer(counting)
    group = sim.groups["workers"]
    assert group._lane and group._quiet  # sampler and tracer attached: still the fast lane
    seen = [s for _, s in frames(sim, sampler, 600.0, 30.0)]
    events = 3 * group.processed  # produced, delivered, processed: one each per customer
    assert group.processed > 38_000
    # a frame sees about its budget (capacity) of events, whatever the rate: the rest pay
    # no observer call
    assert max(seen[3:]) <= BRAKE * 2 * sampler.budget
    assert counting.calls < events / 10
    assert group._lane


def test_a_removed_observer_is_told_nothing_more_and_the_last_one_turns_the_watch_off() -> None:
    sim = Simulation(parse(mmc_scenario(7)), 7)
    first, second = Counting(), Counting()
    sim.add_observer(first)
    sim.add_observer(second)
    assert sim.watch.active
    sim.run_until(5.0)
    assert first.calls > 0 and second.calls > 0

    sim.remove_observer(first)
    told = first.calls
    sim.run_until(10.0)
    assert first.calls == told  # told nothing more
    assert sim.watch.active and second.calls > 0  # the other still watches journeys

    sim.remove_observer(second)
    told = second.calls
    sim.run_until(15.0)
    assert second.calls == told and not sim.watch.active  # nobody watches: no journey work
    assert first not in sim.observers and second not in sim.observers


def test_a_journey_observer_leaves_the_run_as_it_was() -> None:
    """Watching journeys changes what is observed, never what happens: the same run, as
    headless, with every kind of delivery (retries, dead letters, a crash, a redrive)."""
    doc = ecommerce(rate=60)
    commands = [
        (20.0, {"command": "consumer.crash", "consumer": "inventory"}),
        (25.0, {"command": "consumer.up", "consumer": "inventory"}),
        (30.0, {"command": "consumer.failure_rate", "consumer": "notification", "value": 1}),
        (40.0, {"command": "consumer.failure_rate", "consumer": "notification", "value": 0}),
        (45.0, {"command": "dead_letters.redrive", "consumer": "notification"}),
    ]
    watched, sampler = live_model(doc, capacity=20)  # a small budget: a small share watched
    plain = Simulation(parse(doc), 7)
    for sim in (watched, plain):
        for t, command in commands:
            sim.run_until(t)
            if sim is watched:
                sampler.drain()
            sim.apply(command)
        sim.run_until(60.0)
    assert 0 < watched.watch.started < plain.producers["order-service"].produced
    assert watched.watch.rate < 1.0
    assert watched.metrics() == plain.metrics()
    assert watched.snapshot() == plain.snapshot()


# --- the sample -----------------------------------------------------------------------------


def test_the_sample_stays_within_its_bound_and_is_the_same_for_the_same_seed() -> None:
    doc = ecommerce(rate=150)
    a, sa = live_model(doc, capacity=50)
    b, sb = live_model(doc, capacity=50)
    fa = frames(a, sa, 30.0, 0.5)
    fb = frames(b, sb, 30.0, 0.5)
    assert all(len(sample) <= 50 for sample, _ in fa)
    assert max(seen for _, seen in fa) > 50  # more happened than it keeps: it is a sample
    assert fa == fb  # scenario, seed and frames: the same samples
    ids = a.tracer.correlation_ids()  # type: ignore[union-attr]
    assert ids == b.tracer.correlation_ids()  # type: ignore[union-attr]
    assert [a.trace(i) for i in ids] == [b.trace(i) for i in ids]
    c, sc = live_model(doc, capacity=50, sampler_seed=8)
    assert frames(c, sc, 30.0, 0.5) != fa  # the sampler's own seed: another sample


def test_a_slow_run_is_watched_whole_and_a_fast_one_in_part() -> None:
    slow, s_slow = live_model(ecommerce(rate=2), capacity=200)
    seen = [n for _, n in frames(slow, s_slow, 20.0, 0.5)]
    assert slow.watch.rate == 1.0  # fewer events than a frame draws: every one
    assert sum(seen) > 0
    assert all(n <= 200 for n in seen)
    fast, s_fast = live_model(ecommerce(rate=200), capacity=200)
    frames(fast, s_fast, 20.0, 5.0)
    assert fast.watch.rate < 0.5
    assert fast.watch.started < fast.producers["order-service"].produced / 2


# --- traces ---------------------------------------------------------------------------------


def as_queues(doc: dict[str, Any]) -> dict[str, Any]:
    """The same services as RabbitMQ queues: prefetch 5, a failure nacked back to the queue."""
    for c in doc["consumers"]:
        c.update(delivery="queue", prefetch=5)
        c.pop("retry", None)
    doc["consumers"][0]["x_delivery_limit"] = 3
    doc["consumers"][0]["queue_type"] = "quorum"
    return doc


TRACE_COMMANDS = [
    (8.0, {"command": "consumer.crash", "consumer": "analytics"}),
    (10.0, {"command": "consumer.up", "consumer": "analytics"}),
    (12.0, {"command": "consumer.slow", "consumer": "inventory", "value": 3}),
    (16.0, {"command": "consumer.slow", "consumer": "inventory", "value": 1}),
    (18.0, {"command": "consumer.failure_rate", "consumer": "payment", "value": 1}),
    (20.0, {"command": "consumer.failure_rate", "consumer": "payment", "value": 0.15}),
    (24.0, {"command": "dead_letters.redrive", "consumer": "payment"}),
]


@pytest.mark.parametrize("shape", ["streams", "queues"])
def test_a_traced_journey_is_complete(shape: str) -> None:
    """Every journey the tracer holds has every hop a full recorder saw for it, in order --
    through retries, dead letters, a crash, a slow service and a redrive -- and every other
    order none: the decision is made at its first record, so none is half traced."""
    doc = ecommerce(rate=100)
    if shape == "queues":
        doc = as_queues(doc)
    sim, sampler = live_model(doc, capacity=100)
    recorder = EventRecorder()
    full = Simulation(parse(doc), 7, observers=(recorder,))
    t = 0.0
    for at, command in [*TRACE_COMMANDS, (30.0, None)]:
        while t < at:
            t = min(at, t + 1.0)
            sim.run_until(t)
            sampler.drain()
        full.run_until(at)
        if command is not None:
            sim.apply(command)
            full.apply(command)
    assert sim.snapshot() == full.snapshot()
    assert sim.tracer is not None
    traced = sim.tracer.correlation_ids()
    produced = sim.producers["order-service"].produced
    assert 50 < len(traced) < produced / 2  # a sample of the orders
    by_order: dict[Any, list[dict[str, Any]]] = {}
    for o in recorder.log:
        by_order.setdefault(o.correlation_id, []).append(o.as_dict())
    kinds = {h["kind"] for cid in traced for h in by_order[cid]}
    assert {"produced", "delivered", "processed", "failed"} <= kinds
    for cid in traced:
        assert sim.trace(cid) == by_order[cid], cid
    untraced = next(cid for cid in by_order if cid not in set(traced))
    assert sim.trace(untraced) is None  # not watched: no trace at all, not a partial one


def test_a_scenario_can_ask_for_every_journey_to_be_traced() -> None:
    sim, sampler = live_model(ecommerce(rate=200, trace="all"), capacity=30)
    frames(sim, sampler, 5.0, 1.0)
    assert sim.watch.rate == 1.0
    assert sim.tracer is not None
    assert len(sim.tracer.correlation_ids()) == sim.producers["order-service"].produced
    assert len(sampler.drain()[0]) <= 30  # the animation is still a sample


# --- metrics the live configuration keeps ----------------------------------------------------


def test_adding_a_value_many_times_is_adding_it_once_each() -> None:
    a, b = Histogram(), Histogram()
    for value, n in ((0.0, 3), (1.5, 1000), (12.25, 7), (1.5, 3)):
        a.add_many(value, n)
        for _ in range(n):
            b.add(value)
    assert a.summary() == b.summary()
    b.fold()
    assert a.counts == b.counts


def test_chart_percentiles_are_exact_while_young_and_never_more_than_8_ticks_old() -> None:
    sim = Simulation(parse(mmc_scenario(7)), 7, chart_history=True)
    stats = sim.groups["workers"].stats
    exact_until = 0.0
    stale = 0
    for t in range(1, 301):
        sim.run_until(float(t))
        _, p50, p95, p99 = stats.latency_history[-1]
        now = stats.e2e.percentiles(0.5, 0.95, 0.99)
        if [p50, p95, p99] == now:
            stale = 0
            if exact_until == t - 1:
                exact_until = t
        else:
            stale += 1
            assert stale < CHART_STALE_TICKS, t
    assert exact_until >= 60  # every tick, while the values measured grow by 1/64 a tick


# --- the runner's engine budget --------------------------------------------------------------

TICK = FRAME_INTERVAL


def test_the_engine_budget_grows_when_the_loop_is_idle() -> None:
    budget = 0.012
    for _ in range(20):  # the engines used all they had, nothing else ran
        budget = adapt_engine_budget(budget, wall=TICK, busy=budget, engine=budget)
    assert budget == pytest.approx(ENGINE_MAX, rel=1e-3)
    assert pytest.approx(LOOP_SHARE * TICK) == ENGINE_MAX
    # not at once: it grows part of the way each tick
    assert adapt_engine_budget(0.012, wall=TICK, busy=0.0, engine=0.0) == pytest.approx(
        0.012 + ENGINE_GROW * (ENGINE_MAX - 0.012)
    )


def test_the_engine_budget_shrinks_at_once_when_viewers_need_the_loop() -> None:
    # 25 ms a tick of frames and sockets: the engines get what is left of 40 ms, at once
    assert adapt_engine_budget(0.04, wall=TICK, busy=0.035, engine=0.01) == pytest.approx(0.015)
    # measured over two ticks, the same share
    assert adapt_engine_budget(0.04, wall=2 * TICK, busy=0.07, engine=0.02) == pytest.approx(0.015)
    # the loop full of other work: the engines still get their minimum (a run goes on)
    assert adapt_engine_budget(0.04, wall=TICK, busy=0.05, engine=0.0) == ENGINE_MIN
    # a tick timer kept waiting (work the loop's accounts do not show): half of what it had
    assert adapt_engine_budget(0.04, wall=TICK, busy=0.0, engine=0.0, late=0.03) == 0.02


async def test_behind_is_false_when_the_engine_keeps_up() -> None:
    r = make_runner("keeps-up", ecommerce(rate=20), 7, speed=10.0)
    r.run.running = True
    for _ in range(10):
        await r._advance(TICK)
        assert not r.run.behind
    assert r.sim.now == pytest.approx(10 * TICK * 10.0)
    assert r.run.effective_speed == pytest.approx(10.0, rel=0.01)


async def test_behind_is_true_when_the_engine_cannot_keep_up_and_one_short_tick_is_not_behind(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    r = make_runner("slow", ecommerce(rate=50), 7, speed=100.0)
    r.run.running = True
    budget = [0.5]
    monkeypatch.setattr(live, "engine_budget", lambda runner: budget[0])
    await r._advance(TICK)  # enough time: it keeps up
    assert not r.run.behind
    budget[0] = 0.0  # one tick with next to no time (a slice of actions): short, not behind
    await r._advance(TICK)
    assert r._owed > 0 and not r.run.behind
    budget[0] = 0.5  # the next tick catches up on what it owed
    await r._advance(TICK)
    assert not r.run.behind and r._owed == 0.0
    budget[0] = 0.0  # no time, tick after tick: it cannot keep x100, and says so
    for _ in range(8):
        await r._advance(TICK)
    assert r.run.behind
    assert r.run.effective_speed < 100.0


async def test_a_long_tick_of_engine_work_yields_to_the_loop_between_chunks() -> None:
    r = make_runner("chunks", ecommerce(rate=200), 7, speed=100.0)
    turns = 0
    worst = 0.0
    stop = False
    chunks: list[float] = []  # each chunk's asked budget
    timed_run = r._timed_run

    def counted(target: float, budget_s: float) -> bool:
        chunks.append(budget_s)
        return timed_run(target, budget_s)

    r._timed_run = counted  # type: ignore[method-assign]

    async def probe() -> None:  # what every other socket of the process would feel
        nonlocal turns, worst
        while not stop:
            # CPU time of this thread, not wall time: a loaded machine that takes the core away
            # for a while (CI, other tests) is not the engine holding the loop
            t0 = time.thread_time()
            await asyncio.sleep(0)
            worst = max(worst, time.thread_time() - t0)
            turns += 1

    # a full garbage collection of the test process's heap (700 tests' worth) can take over
    # 100 ms wherever it falls: not the engine holding the loop (the server freezes its heap
    # at start-up, dashboard/asgi.py), so none runs while this is measured
    gc.collect()
    gc.disable()
    try:
        task = asyncio.create_task(probe())
        await asyncio.sleep(0)
        started = time.perf_counter()
        reached = await r._run_for(10_000.0, 0.2)  # far more work than 200 ms can do
        spent = time.perf_counter() - started
        stop = True
        await task
    finally:
        gc.enable()
    assert not reached and 0.2 <= spent < 0.5  # (the last chunk may end a little late)
    # the tick was cut into chunks of at most ENGINE_CHUNK (4 ms) of engine work ...
    assert len(chunks) >= 2 and max(chunks) <= live.ENGINE_CHUNK
    # ... and the loop got a turn after every one of them (however slow a loaded machine is)
    assert turns >= len(chunks) - 1, (turns, len(chunks))
    assert worst < 0.1, f"the loop was held for {worst * 1000:.0f} ms at once"
