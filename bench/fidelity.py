"""Fidelity: the same small workloads on the real local brokers and in Fanout's engine.

    python bench/fidelity.py [--quick] [--repeats N] [--only NAME] [--json PATH]

Needs the local brokers: Redis 7 on 127.0.0.1:6379 and RabbitMQ 3.x on 127.0.0.1:5672
(guest/guest). An experiment whose broker does not answer is skipped with a line saying so, and
the script still exits 0.

Each experiment runs a workload against a real broker with real clients (redis-py; pika with one
blocking connection per thread), processing simulated by ``time.sleep`` of a draw from the
distribution the engine uses, then runs the same workload as a scenario in the engine, and
prints one table: each figure's mean and min-max range over the repeats (real runs) or seeds
1..N (engine runs, which are deterministic per seed), a target and a verdict. A target of
"15% or range" passes when the engine's mean is within 15% of the real mean or inside the real
range. When the engine refuses a scenario field, its column shows the ScenarioError.

Experiments (times in seconds since the producer started; ``--quick`` halves the outage's times
and the RabbitMQ runs, uses 1 repeat and smaller backlogs: a smoke test, whose verdicts rest on
one run each side; in its shorter outage the median end-to-end time sits at the edge between
the events that waited out the outage and those that did not, and swings widely):

outage
    Kafka-like stream. Real: a Redis Streams consumer group; a producer XADDs at 50/s (Poisson)
    with its send time in the entry; one consumer reads XREADGROUP COUNT 50 BLOCK, sleeps an
    exponential 10 ms per entry, XACKs each batch. It stops gracefully (finishes its batch) at
    5 and comes back at 15; the producer stops at 30 and the run ends when all is acked.
    Lag = entries added - entries acked, sampled every 0.1 s. Figures: peak lag, drain time
    (restart -> lag <= 5), end-to-end p50/p99 (send -> processed). Engine: one partition,
    max_poll_records 50, manual batch commits, faults down/up, sample_interval_s 0.1.
    Redis has no group join, so the engine's streams here run with
    group_initial_rebalance_delay_ms 0 (Kafka's 3 s would hold the rejoining member back).
crash
    Periodic commits and a crash. Real: 2 consumers in one Redis group, XREADGROUP COUNT 50,
    "auto-commit" = XACK of everything processed, every 1 s, between batches (a read's BLOCK
    ends when the commit is due, as Kafka's poll() wakes up for it); the producer sends 50/s at
    constant spacing. Consumer 1 is killed at 5.5 (mid commit interval, not at a commit
    instant, where the outcome is a coin toss): its thread stops at once, no ack. The survivor
    runs XAUTOCLAIM with min-idle 3 s every 0.5 s (at 0.25 + 0.5k, off the commit instants)
    and processes what it claims. Figures: redelivered (entries claimed), duplicates (entries
    processed twice), crash -> first redelivery. Engine: 2 partitions, 2 instances,
    auto-commit every 1000 ms, session_timeout_ms 3000, heartbeat_interval_ms 1000, crash of
    instance 1. (Claims after an idle time and a Kafka session timeout + rebalance are
    different mechanisms: the table's footnote says how.)
rabbit-nack
    RabbitMQ competing consumers: a classic queue, 3 consumers (a connection and channel each,
    prefetch 10), a publisher at 60/s (Poisson) for 20 s, exponential 30 ms processing, 20% of
    attempts fail -> basic_nack(requeue=True). Figures: retry wait p50 (nack -> next delivery
    of that message id to a consumer's code), deliveries flagged redelivered, dead letters,
    shares of successful processings (busiest and least busy consumer), and, not judged, how
    often a retry reached the consumer that failed it. Engine: delivery queue, 3 instances,
    prefetch 10, queue_type classic, on_failure nack.
rabbit-retry-queue
    As rabbit-nack with 30% failures and a retry queue: a failure publishes a copy (attempt + 1
    in a header) to a queue with x-message-ttl 200 ms whose dead-letter exchange routes back to
    the work queue, then acks the original; the third failure rejects (requeue=False) into the
    work queue's dead-letter queue. Engine: on_failure retry_queue, retry max_attempts 3,
    backoff 200 ms fixed.
overhead
    Per-message client and broker cost, for the engine's client_overhead_ms: one consumer drains
    a pre-filled backlog one message at a time (Redis: XREADGROUP COUNT 1 + XACK; RabbitMQ:
    prefetch 1 + basic_ack), with no processing (5,000 messages) and with constant 10 ms
    processing (2,000 messages; reported as time per message - 10 ms). A time.sleep(10 ms) loop
    without a broker gives the sleep's own overshoot. Engine: the same backlogs, measured as
    time of the last completion / messages.

Exit status: 0 when every experiment ran, or was skipped for an unreachable broker, or the
engine refused a scenario field (its ScenarioError is printed); 1 when a real run failed (a
client thread raised, or a run did not drain in time) or the engine raised anything else.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import threading
import time
import traceback
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import pika  # type: ignore[import-untyped]
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from simulator import Observer, ScenarioError, Simulation, parse_scenario

HOST = "127.0.0.1"
REDIS_PORT = 6379
RABBIT_PORT = 5672
GROUP = "fidelity"
SAMPLE_S = 0.1  # lag sampling, real and engine
DRAINED_LAG = 5  # a backlog at or below this many entries counts as drained
DRAIN_TIMEOUT_S = 60.0  # a real run that has not drained by then has failed

Row = dict[str, float | None]


# --- figures, targets, tables ---------------------------------------------------------------


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    tolerance: float | None  # relative; None: shown, not judged
    or_range: bool = True  # also passes when the engine's mean is inside the real range


@dataclass
class Outcome:
    name: str
    title: str
    params: dict[str, Any]
    metrics: list[Metric]
    notes: list[str] = field(default_factory=list)
    real: list[Row] = field(default_factory=list)
    engine: list[Row] = field(default_factory=list)
    engine_error: str | None = None
    engine_broke: bool = False  # the engine raised something other than a ScenarioError
    skipped: str | None = None
    failed: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "params": self.params,
            "skipped": self.skipped,
            "failed": self.failed,
            "real": self.real,
            "engine": self.engine,
            "engine_error": self.engine_error,
            "engine_broke": self.engine_broke,
            "summary": {m.key: summary(self, m) for m in self.metrics},
            "notes": self.notes,
        }


def values(rows: list[Row], key: str) -> list[float]:
    return [v for r in rows if (v := r.get(key)) is not None]


def stats(xs: list[float]) -> tuple[float, float, float] | None:
    return (sum(xs) / len(xs), min(xs), max(xs)) if xs else None


def verdict(m: Metric, real: list[float], engine: list[float]) -> str:
    r, e = stats(real), stats(engine)
    if r is None or e is None or m.tolerance is None:
        return "-"
    (rm, rlo, rhi), em = r, e[0]
    in_range = m.or_range and rlo <= em <= rhi
    if rm == 0:
        return "ok (both 0)" if em == 0 else ("ok (in range)" if in_range else "MISS")
    rel = (em - rm) / abs(rm)
    ok = abs(rel) <= m.tolerance or in_range
    return f"{'ok' if ok else 'MISS'} ({rel:+.0%})"


def summary(o: Outcome, m: Metric) -> dict[str, Any]:
    real, engine = values(o.real, m.key), values(o.engine, m.key)
    r, e = stats(real), stats(engine)
    return {
        "real": r and dict(zip(("mean", "min", "max"), r, strict=True)),
        "engine": e and dict(zip(("mean", "min", "max"), e, strict=True)),
        "tolerance": m.tolerance,
        "verdict": verdict(m, real, engine) if o.engine_error is None else "engine error",
    }


def fmt(x: float) -> str:
    if x == 0 or abs(x) >= 100:
        return f"{x:.0f}"
    return f"{x:.3g}" if abs(x) < 1 else f"{x:.1f}"


def cell(xs: list[float], runs: int) -> str:
    s = stats(xs)
    if s is None:
        return "-"
    mean, lo, hi = s
    text = fmt(mean) if lo == hi else f"{fmt(mean)} ({fmt(lo)}-{fmt(hi)})"
    return text if len(xs) == runs else f"{text} [{len(xs)}/{runs} runs]"


def target(m: Metric) -> str:
    if m.tolerance is None:
        return "-"
    return f"{m.tolerance:.0%}" + (" or range" if m.or_range else "")


def print_outcome(o: Outcome) -> None:
    print(f"\n== {o.name}: {o.title}")
    print("   " + ", ".join(f"{k}={v}" for k, v in o.params.items()))
    if o.skipped:
        print(o.skipped)
        return
    if o.failed:
        print(f"real run failed: {o.failed}")
        return
    short_error = None
    if o.engine_error is not None:
        short_error = "engine: " + o.engine_error.split("; ")[0].split(" (known")[0]
        if "; " in o.engine_error:
            short_error += f" (+{o.engine_error.count('; ')} more)"
    runs = f"real, {len(o.real)} run" + ("s" if len(o.real) > 1 else "")
    seeds = f"engine, seed 1..{len(o.engine)}" if o.engine else "engine"
    header = ("figure", runs, seeds, "target")
    rows = [(*header, "verdict")]
    for m in o.metrics:
        real = values(o.real, m.key)
        engine = short_error or cell(values(o.engine, m.key), len(o.engine))
        judged = verdict(m, real, values(o.engine, m.key)) if short_error is None else "-"
        rows.append((m.label, cell(real, len(o.real)), engine, target(m), judged))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    if o.engine_error is not None:
        print(f"engine: {o.engine_error}")
    for note in o.notes:
        print(f"  * {note}")


def percentile(xs: list[float], q: float) -> float | None:
    """Nearest-rank percentile, ``q`` in (0, 1]."""
    if not xs:
        return None
    s = sorted(xs)
    return s[max(0, math.ceil(q * len(s)) - 1)]


def drain_time(samples: list[tuple[float, float]], restart: float) -> float | None:
    """Seconds from ``restart`` to the first sample at or below DRAINED_LAG."""
    return next((t - restart for t, lag in samples if t >= restart and lag <= DRAINED_LAG), None)


Timed = list[tuple[float, Any, int]]  # (time, event or message id, consumer)


def retry_figures(failures: Timed, deliveries: Timed) -> Row:
    """Failure -> next delivery of the same id: the median wait (ms), and how often the next
    delivery went to the consumer that failed it."""
    by_id: dict[Any, list[tuple[float, int]]] = {}
    for t, key, consumer in sorted(deliveries, key=lambda d: d[0]):
        by_id.setdefault(key, []).append((t, consumer))
    waits, same = [], 0
    for t, key, consumer in failures:
        nexts = by_id.get(key, [])
        # the first delivery at or after the failure: in the engine a consumer with nothing
        # in hand starts a requeued message at the very time of the nack (a wait of 0)
        i = bisect_left(nexts, (t, -math.inf))
        if i < len(nexts):
            waits.append((nexts[i][0] - t) * 1000.0)
            same += nexts[i][1] == consumer
    return {
        "retry_wait_p50_ms": percentile(waits, 0.5),
        "retry_same_consumer": same / len(waits) if waits else None,
    }


# --- real runs: clocks and threads ----------------------------------------------------------


class Clock:
    """Seconds since the run began (``time.perf_counter``), shared by a run's threads."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()

    def now(self) -> float:
        return time.perf_counter() - self.t0

    def sleep_until(self, t: float) -> None:
        pause = t - self.now()
        if pause > 0:
            time.sleep(pause)


class Tally:
    """Counters written by several threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.produced = 0
        self.done = 0  # acked (streams) or finished: processed or dead-lettered (queues)

    def add(self, produced: int = 0, done: int = 0) -> None:
        with self.lock:
            self.produced += produced
            self.done += done


class Workers:
    """The threads of one real run, stopped (``stop`` set, then joined) when its ``with`` block
    ends, however it ends. An exception in any of them fails the run."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []
        self.errors: list[BaseException] = []

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=10)
        if exc_type is None:
            self.check()

    def start(self, name: str, fn: Callable[[], None]) -> None:
        def body() -> None:
            try:
                fn()
            except BaseException as exc:  # handed to the main thread by check()
                self.errors.append(exc)

        t = threading.Thread(target=body, name=name, daemon=True)
        t.start()
        self.threads.append(t)

    def check(self) -> None:
        if self.errors:
            raise RuntimeError(f"a client thread failed: {self.errors[0]!r}") from self.errors[0]

    def wait_for(self, done: Callable[[], bool], what: str) -> None:
        end = time.perf_counter() + DRAIN_TIMEOUT_S
        while not done():
            self.check()
            if time.perf_counter() > end:
                raise RuntimeError(f"{what}: not done after {DRAIN_TIMEOUT_S:g} s")
            time.sleep(0.01)


def arrivals(rate: float, poisson: bool, until: float, rng: random.Random) -> list[float]:
    """Send times in [0, until): Poisson, or constant spacing from 1 / rate."""
    times: list[float] = []
    t, n = 0.0, 0
    while True:
        n += 1
        t = t + rng.expovariate(rate) if poisson else n / rate
        if t >= until:
            return times
        times.append(t)


def exp_draw(rng: random.Random, mean_ms: float) -> float:
    """Seconds: an exponential draw, as the engine's ``{dist: exponential}``."""
    return rng.expovariate(1000.0 / mean_ms)


# --- Redis --------------------------------------------------------------------------------


def redis_client() -> redis.Redis:
    return redis.Redis(host=HOST, port=REDIS_PORT, socket_connect_timeout=2, socket_timeout=30)


def redis_unreachable() -> str | None:
    once = Retry(NoBackoff(), 0)  # not redis-py's default retries with backoff (~5 s)
    try:
        redis.Redis(host=HOST, port=REDIS_PORT, socket_connect_timeout=2, retry=once).ping()
    except redis.RedisError:
        return f"Redis not reachable on {HOST}:{REDIS_PORT}: skipped"
    return None


def fresh_stream(r: redis.Redis, key: str) -> None:
    r.delete(key)
    r.xgroup_create(key, GROUP, id="0", mkstream=True)


def stream_producer(clock: Clock, key: str, times: list[float], tally: Tally) -> None:
    r = redis_client()
    for t in times:
        clock.sleep_until(t)
        r.xadd(key, {"ts": f"{clock.now():.6f}"})
        tally.add(produced=1)


def lag_sampler(clock: Clock, tally: Tally, out: list[tuple[float, float]], w: Workers) -> None:
    n = 0
    while not w.stop.is_set():
        n += 1
        clock.sleep_until(n * SAMPLE_S)
        out.append((clock.now(), tally.produced - tally.done))


def read_batch(r: redis.Redis, key: str, consumer: str, count: int, block_s: float) -> list[Any]:
    """XREADGROUP of new entries; BLOCK at least 1 ms (BLOCK 0 would wait for ever)."""
    block = max(1, int(block_s * 1e3))
    resp: Any = r.xreadgroup(GROUP, consumer, {key: ">"}, count=count, block=block)
    return list(resp[0][1]) if resp else []


def ack(r: redis.Redis, key: str, ids: list[bytes]) -> int:
    """XACK; how many entries were pending and are now acknowledged."""
    acked: Any = r.xack(key, GROUP, *ids)
    return int(acked)


# --- outage ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class OutageParams:
    rate: float = 50.0
    mean_ms: float = 10.0
    max_poll: int = 50
    down_at: float = 5.0
    up_at: float = 15.0
    horizon: float = 30.0  # the producer stops
    tail: float = 10.0  # engine: time after the horizon to finish

    def scaled(self, k: float) -> OutageParams:
        """The same run with its times (not its rates) multiplied by ``k``."""
        return replace(
            self,
            down_at=self.down_at * k,
            up_at=self.up_at * k,
            horizon=self.horizon * k,
            tail=self.tail * k,
        )


OUTAGE_METRICS = [
    Metric("peak_lag", "peak lag (entries)", 0.15),
    Metric("drain_s", "drain time (s)", 0.20, or_range=False),
    Metric("e2e_p50_ms", "end-to-end p50 (ms)", 0.30, or_range=False),
    Metric("e2e_p99_ms", "end-to-end p99 (ms)", 0.30, or_range=False),
]


def outage_real(p: OutageParams, seed: int) -> Row:
    key = "fanout:fidelity:outage"
    r = redis_client()
    fresh_stream(r, key)
    times = arrivals(p.rate, True, p.horizon, random.Random(f"{seed}-arrivals"))
    rng = random.Random(f"{seed}-processing")
    tally, w, clock = Tally(), Workers(), Clock()
    e2e: list[float] = []
    samples: list[tuple[float, float]] = []

    def consumer() -> None:
        c = redis_client()
        while not w.stop.is_set():
            now = clock.now()
            if p.down_at <= now < p.up_at:  # stopped: back at up_at, from the group's position
                clock.sleep_until(p.up_at)
                continue
            block = p.down_at - now if now < p.down_at else 0.1
            batch = read_batch(c, key, "consumer-0", p.max_poll, min(block, 0.1))
            for _, fields in batch:
                time.sleep(exp_draw(rng, p.mean_ms))
                e2e.append((clock.now() - float(fields[b"ts"])) * 1000.0)
            if batch:
                tally.add(done=ack(c, key, [i for i, _ in batch]))

    with w:
        w.start("consumer", consumer)
        w.start("sampler", partial(lag_sampler, clock, tally, samples, w))
        stream_producer(clock, key, times, tally)
        w.wait_for(lambda: tally.done >= tally.produced, "outage drain")
    r.delete(key)
    return {
        "peak_lag": max(lag for _, lag in samples),
        "drain_s": drain_time(samples, p.up_at),
        "e2e_p50_ms": percentile(e2e, 0.50),
        "e2e_p99_ms": percentile(e2e, 0.99),
    }


def producer_doc(rate: float, poisson: bool, stop_at: float) -> tuple[dict[str, Any], Any]:
    """The engine's producer and the fault that stops it at ``stop_at``."""
    producer = {
        "name": "producer",
        "topic": "events",
        "event": "Sent",
        "rate": rate,
        "arrival": "poisson" if poisson else "constant",
    }
    return producer, {"at": stop_at, "producer": "producer", "action": "rate", "value": 0}


def outage_engine(p: OutageParams, seed: int) -> Row:
    producer, stop = producer_doc(p.rate, True, p.horizon)
    doc = {
        "seed": seed,
        "sample_interval_s": SAMPLE_S,
        "topics": [{"name": "events", "partitions": 1}],
        "producers": [producer],
        "consumers": [
            {
                "name": "consumer",
                "topics": ["events"],
                "delivery": "stream",
                "processing": {"dist": "exponential", "mean_ms": p.mean_ms},
                "max_poll_records": p.max_poll,
                "enable_auto_commit": False,
                "ack_mode": "batch",
                "group_initial_rebalance_delay_ms": 0,
            }
        ],
        "faults": [
            {"at": p.down_at, "consumer": "consumer", "action": "down"},
            {"at": p.up_at, "consumer": "consumer", "action": "up"},
            stop,
        ],
    }
    sim = Simulation(parse_scenario(doc), seed=seed)
    sim.run_until(p.horizon + p.tail)
    samples = [(row[0], float(row[1])) for row in sim.history("consumer")]
    e2e = sim.snapshot()["groups"]["consumer"]["end_to_end_ms"]
    return {
        "peak_lag": max(lag for _, lag in samples),
        "drain_s": drain_time(samples, p.up_at),
        "e2e_p50_ms": e2e["p50"],
        "e2e_p99_ms": e2e["p99"],
    }


# --- crash ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CrashParams:
    rate: float = 50.0
    mean_ms: float = 10.0
    max_poll: int = 50
    commit_s: float = 1.0
    crash_at: float = 5.5
    session_s: float = 3.0  # Redis: XAUTOCLAIM min-idle; engine: session_timeout_ms
    claim_every_s: float = 0.5
    heartbeat_s: float = 1.0
    horizon: float = 12.0
    tail: float = 5.0


CRASH_METRICS = [
    Metric("redelivered", "redelivered", 0.15),
    Metric("duplicates", "duplicates (processed twice)", 0.15),
    Metric("first_redelivery_s", "crash -> first redelivery (s)", 0.20, or_range=False),
]


def crash_real(p: CrashParams, seed: int) -> Row:
    key = "fanout:fidelity:crash"
    r = redis_client()
    fresh_stream(r, key)
    times = arrivals(p.rate, False, p.horizon, random.Random(f"{seed}-arrivals"))
    tally, w, clock = Tally(), Workers(), Clock()
    kill = [threading.Event(), threading.Event()]
    processed: Counter[bytes] = Counter()
    claims: list[tuple[float, int]] = []  # (time, entries claimed)

    def consumer(index: int) -> None:
        c = redis_client()
        name = f"consumer-{index}"
        rng = random.Random(f"{seed}-processing-{index}")
        survivor = index == 0
        unacked: list[bytes] = []
        last_commit = clock.now()
        next_claim = p.claim_every_s / 2  # claims between the commit instants, never on them
        while not w.stop.is_set():
            now = clock.now()
            if survivor and now >= next_claim:
                next_claim += p.claim_every_s
                resp: Any = c.xautoclaim(key, GROUP, name, int(p.session_s * 1e3), "0-0")
                batch = list(resp[1])
                if batch:
                    claims.append((now, len(batch)))
            else:
                # like Kafka's poll(), wake up for the next auto-commit (and claim, or crash)
                until = min(last_commit + p.commit_s, next_claim if survivor else p.crash_at)
                batch = read_batch(c, key, name, p.max_poll, min(0.1, until - now))
            for entry_id, _ in batch:
                if kill[index].wait(exp_draw(rng, p.mean_ms)):
                    return  # killed: no ack, nothing more
                processed[entry_id] += 1
                unacked.append(entry_id)
            if kill[index].is_set():
                return
            # Kafka's auto-commit: from within poll, once the interval has passed
            if clock.now() - last_commit >= p.commit_s:
                last_commit = clock.now()
                if unacked:
                    tally.add(done=ack(c, key, unacked))
                    unacked.clear()
        if unacked:  # a graceful end: commit what was processed
            tally.add(done=ack(c, key, unacked))

    def killer() -> None:
        clock.sleep_until(p.crash_at)
        kill[1].set()

    with w:
        for i in (0, 1):
            w.start(f"consumer-{i}", partial(consumer, i))
        w.start("killer", killer)
        stream_producer(clock, key, times, tally)
        w.wait_for(lambda: tally.done >= tally.produced, "crash drain")
    r.delete(key)
    after = [t for t, _ in claims if t >= p.crash_at]
    return {
        "redelivered": float(sum(n for _, n in claims)),
        "duplicates": float(sum(n - 1 for n in processed.values() if n > 1)),
        "first_redelivery_s": after[0] - p.crash_at if after else None,
    }


class FirstRedelivery(Observer):
    """The time of the first redelivery at or after ``since``."""

    def __init__(self, since: float) -> None:
        self.since = since
        self.first: float | None = None

    def delivered(
        self, t: float, group: Any, instance: int, record: Any, attempt: int, redelivery: bool
    ) -> None:
        if redelivery and self.first is None and t >= self.since:
            self.first = t


def crash_engine(p: CrashParams, seed: int) -> Row:
    producer, stop = producer_doc(p.rate, False, p.horizon)
    # two consumers share one Redis stream, taking entries in turn: the closest Kafka has is
    # two partitions fed in turn (the default sticky partitioner would send bursts of ~80)
    producer["partitioner"] = "round_robin"
    doc = {
        "seed": seed,
        "topics": [{"name": "events", "partitions": 2}],
        "producers": [producer],
        "consumers": [
            {
                "name": "consumer",
                "topics": ["events"],
                "delivery": "stream",
                "instances": 2,
                "processing": {"dist": "exponential", "mean_ms": p.mean_ms},
                "max_poll_records": p.max_poll,
                "enable_auto_commit": True,
                "auto_commit_interval_ms": round(p.commit_s * 1000),
                "session_timeout_ms": round(p.session_s * 1000),
                "heartbeat_interval_ms": round(p.heartbeat_s * 1000),
                "group_initial_rebalance_delay_ms": 0,
            }
        ],
        "faults": [
            {"at": p.crash_at, "consumer": "consumer", "action": "crash", "instance": 1},
            stop,
        ],
    }
    first = FirstRedelivery(p.crash_at)
    sim = Simulation(parse_scenario(doc), seed=seed, observers=(first,))
    sim.run_until(p.horizon + p.tail)
    g = sim.snapshot()["groups"]["consumer"]
    return {
        "redelivered": float(g["redelivered"]),
        "duplicates": float(g["duplicates"]),
        "first_redelivery_s": None if first.first is None else first.first - p.crash_at,
    }


# --- RabbitMQ -------------------------------------------------------------------------------


def rabbit_connection() -> pika.BlockingConnection:
    params = pika.ConnectionParameters(
        host=HOST,
        port=RABBIT_PORT,
        credentials=pika.PlainCredentials("guest", "guest"),
        connection_attempts=1,
        socket_timeout=2,
    )
    return pika.BlockingConnection(params)


def rabbit_unreachable() -> str | None:
    try:
        rabbit_connection().close()
    except (pika.exceptions.AMQPError, OSError):
        return f"RabbitMQ not reachable on {HOST}:{RABBIT_PORT}: skipped"
    return None


WORK, RETRY, DLQ = "fanout.fidelity.work", "fanout.fidelity.retry", "fanout.fidelity.dlq"


@dataclass(frozen=True)
class QueueParams:
    mode: str  # "nack" or "retry_queue"
    failure_rate: float
    rate: float = 60.0
    mean_ms: float = 30.0
    consumers: int = 3
    prefetch: int = 10
    publish_s: float = 20.0
    max_attempts: int = 3
    retry_ttl_ms: int = 200
    tail: float = 15.0  # engine: time after publishing stops to finish


QUEUE_METRICS = [
    Metric("retry_wait_p50_ms", "retry wait p50 (ms)", 0.30, or_range=False),
    Metric("redelivered", "redelivered", 0.15),
    Metric("dead_lettered", "dead-lettered", 0.15),
    Metric("share_max", "share of successes, busiest", 0.15),
    Metric("share_min", "share of successes, least busy", 0.15),
    Metric("retry_same_consumer", "retries delivered to the consumer that failed", None),
]


def declare_queues(ch: Any, p: QueueParams) -> None:
    for q in (WORK, RETRY, DLQ):
        ch.queue_delete(q)
    if p.mode == "nack":
        ch.queue_declare(WORK)
        return
    ch.queue_declare(DLQ)
    ch.queue_declare(
        WORK, arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": DLQ}
    )
    ch.queue_declare(
        RETRY,
        arguments={
            "x-message-ttl": p.retry_ttl_ms,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": WORK,
        },
    )


def queue_real(p: QueueParams, seed: int) -> Row:
    admin = rabbit_connection()
    ach = admin.channel()
    declare_queues(ach, p)
    times = arrivals(p.rate, True, p.publish_s, random.Random(f"{seed}-arrivals"))
    tally, w, clock = Tally(), Workers(), Clock()
    deliveries: Timed = []
    flagged = [0] * p.consumers  # deliveries with redelivered=True
    successes = [0] * p.consumers
    failures: Timed = []
    rejected = [0] * p.consumers

    def consumer(index: int) -> None:
        conn = rabbit_connection()
        ch = conn.channel()
        ch.basic_qos(prefetch_count=p.prefetch)
        rng = random.Random(f"{seed}-consumer-{index}")
        for method, props, body in ch.consume(WORK, inactivity_timeout=0.05):
            if w.stop.is_set():
                break
            if method is None:
                continue
            deliveries.append((clock.now(), props.message_id, index))
            flagged[index] += method.redelivered
            time.sleep(exp_draw(rng, p.mean_ms))
            if rng.random() >= p.failure_rate:
                ch.basic_ack(method.delivery_tag)
                successes[index] += 1
                tally.add(done=1)
                continue
            failures.append((clock.now(), props.message_id, index))
            attempt = int(props.headers["attempt"])
            if p.mode == "nack":
                ch.basic_nack(method.delivery_tag, requeue=True)
            elif attempt < p.max_attempts:
                again = pika.BasicProperties(
                    message_id=props.message_id, headers={"attempt": attempt + 1}
                )
                ch.basic_publish("", RETRY, body, again)
                ch.basic_ack(method.delivery_tag)
            else:  # to the work queue's dead-letter exchange, hence the DLQ
                ch.basic_nack(method.delivery_tag, requeue=False)
                rejected[index] += 1
                tally.add(done=1)
        ch.cancel()
        conn.close()

    with w:
        for i in range(p.consumers):
            w.start(f"consumer-{i}", partial(consumer, i))
        publisher = rabbit_connection()
        pch = publisher.channel()
        for n, t in enumerate(times):
            clock.sleep_until(t)
            pch.basic_publish(
                "", WORK, b"", pika.BasicProperties(message_id=str(n), headers={"attempt": 1})
            )
            tally.add(produced=1)
        publisher.close()
        w.wait_for(lambda: tally.done >= tally.produced, f"{p.mode} drain")
    dead = 0
    if p.mode == "retry_queue":
        w.wait_for(
            lambda: ach.queue_declare(DLQ, passive=True).method.message_count >= sum(rejected),
            "dead letters reaching the DLQ",
        )
        dead = ach.queue_declare(DLQ, passive=True).method.message_count
    for q in (WORK, RETRY, DLQ):
        ach.queue_delete(q)
    admin.close()
    total = sum(successes)
    return {
        **retry_figures(failures, deliveries),
        "redelivered": float(sum(flagged)),
        "dead_lettered": float(dead),
        "share_max": max(successes) / total,
        "share_min": min(successes) / total,
    }


class RetryWaits(Observer):
    """Failures and deliveries by event id, for retry waits."""

    def __init__(self) -> None:
        self.failures: Timed = []
        self.deliveries: Timed = []

    def failed(
        self, t: float, group: Any, instance: int, record: Any, attempt: int, reason: str
    ) -> None:
        self.failures.append((t, record[0], instance))

    def delivered(
        self, t: float, group: Any, instance: int, record: Any, attempt: int, redelivery: bool
    ) -> None:
        self.deliveries.append((t, record[0], instance))


def queue_engine(p: QueueParams, seed: int) -> Row:
    producer, stop = producer_doc(p.rate, True, p.publish_s)
    consumer: dict[str, Any] = {
        "name": "consumer",
        "topics": ["events"],
        "delivery": "queue",
        "instances": p.consumers,
        "prefetch": p.prefetch,
        "queue_type": "classic",
        "processing": {"dist": "exponential", "mean_ms": p.mean_ms},
        "failure_rate": p.failure_rate,
        "on_failure": p.mode,
    }
    if p.mode == "retry_queue":
        consumer["retry"] = {
            "max_attempts": p.max_attempts,
            "backoff_ms": p.retry_ttl_ms,
            "backoff": "fixed",
        }
    doc = {
        "seed": seed,
        "topics": [{"name": "events", "partitions": 1}],
        "producers": [producer],
        "consumers": [consumer],
        "faults": [stop],
    }
    obs = RetryWaits()
    sim = Simulation(parse_scenario(doc), seed=seed, observers=(obs,))
    sim.run_until(p.publish_s + p.tail)
    g = sim.snapshot()["groups"]["consumer"]
    done = [i["processed"] for i in g["instances"]]
    total = sum(done)
    return {
        **retry_figures(obs.failures, obs.deliveries),
        "redelivered": float(g["redelivered"]),
        "dead_lettered": float(g["dead_lettered"]),
        "share_max": max(done) / total if total else None,
        "share_min": min(done) / total if total else None,
    }


# --- overhead -------------------------------------------------------------------------------


@dataclass(frozen=True)
class OverheadParams:
    idle_messages: int = 5000
    busy_messages: int = 2000
    busy_ms: float = 10.0


OVERHEAD_METRICS = [
    Metric("redis_idle_ms", "Redis, no processing: ms per message", 0.20, or_range=False),
    Metric("redis_busy_ms", "Redis, 10 ms processing: ms per message - 10", 0.20, or_range=False),
    Metric("rabbit_idle_ms", "RabbitMQ, no processing: ms per message", 0.20, or_range=False),
    Metric(
        "rabbit_busy_ms", "RabbitMQ, 10 ms processing: ms per message - 10", 0.20, or_range=False
    ),
    Metric("sleep_ms", "time.sleep(10 ms) overshoot, no broker (ms)", None),
]


def redis_drain_ms(messages: int, sleep_s: float) -> float:
    """ms per message to drain a backlog one entry at a time: XREADGROUP COUNT 1 + XACK."""
    key = "fanout:fidelity:overhead"
    r = redis_client()
    fresh_stream(r, key)
    pipe = r.pipeline(transaction=False)
    for _ in range(messages):
        pipe.xadd(key, {"ts": "0"})
    pipe.execute()
    start = time.perf_counter()
    for _ in range(messages):
        ((entry_id, _),) = read_batch(r, key, "consumer-0", 1, 0.1)
        time.sleep(sleep_s)
        ack(r, key, [entry_id])
    elapsed = time.perf_counter() - start
    r.delete(key)
    return elapsed / messages * 1000.0


def rabbit_drain_ms(messages: int, sleep_s: float) -> float:
    """ms per message to drain a backlog with prefetch 1 and basic_ack."""
    conn = rabbit_connection()
    ch = conn.channel()
    ch.queue_delete(WORK)
    ch.queue_declare(WORK)
    for n in range(messages):
        ch.basic_publish("", WORK, b"", pika.BasicProperties(message_id=str(n)))
    end = time.perf_counter() + DRAIN_TIMEOUT_S
    while ch.queue_declare(WORK, passive=True).method.message_count < messages:
        if time.perf_counter() > end:
            raise RuntimeError("overhead: the backlog never reached the queue")
        time.sleep(0.01)
    ch.basic_qos(prefetch_count=1)
    start = time.perf_counter()
    deliveries = ch.consume(WORK, inactivity_timeout=DRAIN_TIMEOUT_S)
    for done, (method, _, _) in enumerate(deliveries, start=1):
        if method is None:
            raise RuntimeError(f"overhead: no message for {DRAIN_TIMEOUT_S:g} s")
        time.sleep(sleep_s)
        ch.basic_ack(method.delivery_tag)
        if done == messages:
            break
    elapsed = time.perf_counter() - start
    ch.cancel()
    ch.queue_delete(WORK)
    conn.close()
    return elapsed / messages * 1000.0


def sleep_overshoot_ms(busy_ms: float, n: int = 200) -> float:
    start = time.perf_counter()
    for _ in range(n):
        time.sleep(busy_ms / 1000.0)
    return (time.perf_counter() - start) / n * 1000.0 - busy_ms


class LastCompletion(Observer):
    def __init__(self) -> None:
        self.t = 0.0

    def processed(
        self, t: float, group: Any, instance: int, record: Any, started: float, duplicate: bool
    ) -> None:
        self.t = max(self.t, t)


def drain_engine_ms(queue: bool, messages: int, processing_ms: float) -> float:
    """The engine's ms per message on the same backlog (a burst at 0, one consumer)."""
    consumer: dict[str, Any] = {
        "name": "consumer",
        "topics": ["events"],
        "processing": {"dist": "constant", "mean_ms": processing_ms},
    }
    if queue:
        consumer |= {"delivery": "queue", "prefetch": 1, "queue_type": "classic"}
    else:
        consumer |= {
            "delivery": "stream",
            "max_poll_records": 1,
            "enable_auto_commit": False,
            "ack_mode": "batch",
            "group_initial_rebalance_delay_ms": 0,
        }
    doc = {
        "topics": [{"name": "events", "partitions": 1}],
        "producers": [
            {
                "name": "producer",
                "topic": "events",
                "event": "Sent",
                "rate": 0,
                "bursts": [{"at": 0, "count": messages}],
            }
        ],
        "consumers": [consumer],
    }
    last = LastCompletion()
    sim = Simulation(parse_scenario(doc), seed=1, observers=(last,))
    sim.run_until(messages * (processing_ms + 10.0) / 1000.0)
    return round(last.t / messages * 1000.0, 6)  # to the ns: no float noise in the table


# --- experiments ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    quick: bool
    repeats: int

    @property
    def seeds(self) -> range:
        return range(1, self.repeats + 1)


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def run_both(
    o: Outcome,
    cfg: Config,
    real: Callable[[int], Row],
    engine: Callable[[int], Row],
    unreachable: Callable[[], str | None],
) -> Outcome:
    o.skipped = unreachable()
    if o.skipped:
        return o
    try:
        for seed in cfg.seeds:
            progress(f"{o.name}: real run {seed}/{cfg.repeats}")
            o.real.append(real(seed))
    except (RuntimeError, redis.RedisError, pika.exceptions.AMQPError, OSError) as exc:
        o.failed = f"{type(exc).__name__}: {exc}"
        return o
    run_engine(o, lambda: [engine(seed) for seed in cfg.seeds])
    return o


def run_engine(o: Outcome, runs: Callable[[], list[Row]]) -> None:
    try:
        o.engine = runs()
    except ScenarioError as exc:  # a field the engine does not know (yet)
        o.engine_error = str(exc)
    except Exception as exc:  # an engine bug: shown, and the exit status says so
        traceback.print_exc()
        o.engine_error = f"{type(exc).__name__}: {exc}".rstrip(": ")
        o.engine_broke = True


NO_JOIN_DELAY = (
    "a Redis consumer reads at once, with no group join: the engine's streams run with "
    "group_initial_rebalance_delay_ms 0 (Kafka's default, 3 s, delays an empty group's first "
    "assignment)"
)


def exp_outage(cfg: Config) -> Outcome:
    p = OutageParams().scaled(0.5 if cfg.quick else 1.0)
    o = Outcome(
        "outage",
        "Redis Streams consumer group vs engine stream (1 partition), consumer down and up",
        {
            "rate/s": p.rate,
            "processing": f"exp {p.mean_ms:g} ms",
            "max_poll": p.max_poll,
            "down": f"{p.down_at:g}-{p.up_at:g} s",
            "producer stops": f"{p.horizon:g} s",
        },
        OUTAGE_METRICS,
        [
            f"lag = entries added - entries acked, sampled every {SAMPLE_S:g} s; drained = "
            f"first sample after the restart at or below {DRAINED_LAG} entries",
            NO_JOIN_DELAY,
        ],
    )
    return run_both(
        o, cfg, lambda s: outage_real(p, s), lambda s: outage_engine(p, s), redis_unreachable
    )


def exp_crash(cfg: Config) -> Outcome:
    p = CrashParams()
    o = Outcome(
        "crash",
        "Redis Streams, 2 consumers, periodic acks, one killed, XAUTOCLAIM vs engine Kafka group",
        {
            "rate/s": f"{p.rate:g} constant",
            "processing": f"exp {p.mean_ms:g} ms",
            "commit every": f"{p.commit_s:g} s",
            "crash": f"{p.crash_at:g} s",
            "min-idle/session": f"{p.session_s:g} s",
            "claim every": f"{p.claim_every_s:g} s (from {p.claim_every_s / 2:g} s)",
        },
        CRASH_METRICS,
        [
            "model difference: Redis detects nothing; the survivor claims entries pending "
            f"longer than {p.session_s:g} s since their delivery (XAUTOCLAIM every "
            f"{p.claim_every_s:g} s) and new entries keep flowing to it meanwhile. Kafka (the "
            "engine) waits for the session timeout after the last heartbeat, rebalances, and "
            "the survivor re-reads the dead member's partition from its committed offset; "
            "records appended meanwhile wait (lag), they are not redeliveries",
            "redelivered (real) = entries claimed; duplicates = entries processed twice",
            NO_JOIN_DELAY,
        ],
    )
    return run_both(
        o, cfg, lambda s: crash_real(p, s), lambda s: crash_engine(p, s), redis_unreachable
    )


def exp_queue(cfg: Config, p: QueueParams, name: str, title: str, notes: list[str]) -> Outcome:
    o = Outcome(
        name,
        title,
        {
            "rate/s": p.rate,
            "publish for": f"{p.publish_s:g} s",
            "processing": f"exp {p.mean_ms:g} ms",
            "consumers": p.consumers,
            "prefetch": p.prefetch,
            "failure rate": p.failure_rate,
        },
        QUEUE_METRICS,
        notes,
    )
    return run_both(
        o, cfg, lambda s: queue_real(p, s), lambda s: queue_engine(p, s), rabbit_unreachable
    )


def exp_rabbit_nack(cfg: Config) -> Outcome:
    p = QueueParams("nack", 0.2, publish_s=10.0 if cfg.quick else 20.0)
    return exp_queue(
        cfg,
        p,
        "rabbit-nack",
        "RabbitMQ classic queue, 3 competing consumers, nack with requeue, vs engine queue",
        [
            "retry wait = failure -> next delivery of that message id to a consumer's code "
            "(after any wait in the client's prefetch buffer)",
            "shares = successful processings per consumer / all of them",
        ],
    )


def exp_rabbit_retry(cfg: Config) -> Outcome:
    p = QueueParams("retry_queue", 0.3, publish_s=10.0 if cfg.quick else 20.0)
    return exp_queue(
        cfg,
        p,
        "rabbit-retry-queue",
        "RabbitMQ work queue + TTL retry queue + DLQ after 3 attempts, vs engine retry_queue",
        [
            f"a failed message is acked and republished to a queue with x-message-ttl "
            f"{p.retry_ttl_ms} ms dead-lettering back to the work queue: a new message, so "
            "never flagged redelivered; the third failure is rejected into the DLQ",
            "dead-lettered (real) = messages in the DLQ at the end",
        ],
    )


def exp_overhead(cfg: Config) -> Outcome:
    p = OverheadParams(2000, 500) if cfg.quick else OverheadParams()
    o = Outcome(
        "overhead",
        "per-message client + broker cost, one consumer draining a backlog one at a time",
        {
            "no processing": f"{p.idle_messages} messages",
            "busy": f"{p.busy_messages} messages of {p.busy_ms:g} ms",
        },
        OVERHEAD_METRICS,
        [
            "the no-processing figures are the candidates for the engine's client_overhead_ms "
            "default (Redis: XREADGROUP COUNT 1 + XACK; RabbitMQ: prefetch 1 + basic_ack)",
            "the busy figures include time.sleep's own overshoot (last row)",
        ],
    )
    redis_down, rabbit_down = redis_unreachable(), rabbit_unreachable()
    if redis_down and rabbit_down:
        o.skipped = f"{redis_down}\n{rabbit_down}"
        return o
    o.notes.extend(why for why in (redis_down, rabbit_down) if why)
    busy_s = p.busy_ms / 1000.0
    try:
        for seed in cfg.seeds:
            progress(f"overhead: real run {seed}/{cfg.repeats}")
            row: Row = {"sleep_ms": sleep_overshoot_ms(p.busy_ms)}
            if not redis_down:
                row["redis_idle_ms"] = redis_drain_ms(p.idle_messages, 0.0)
                row["redis_busy_ms"] = redis_drain_ms(p.busy_messages, busy_s) - p.busy_ms
            if not rabbit_down:
                row["rabbit_idle_ms"] = rabbit_drain_ms(p.idle_messages, 0.0)
                row["rabbit_busy_ms"] = rabbit_drain_ms(p.busy_messages, busy_s) - p.busy_ms
            o.real.append(row)
    except (RuntimeError, redis.RedisError, pika.exceptions.AMQPError, OSError) as exc:
        o.failed = f"{type(exc).__name__}: {exc}"
        return o
    measured = [
        f"{broker} {s[0]:.3f} ms (runs {s[1]:.3f}-{s[2]:.3f})"
        for broker, key in (("Redis", "redis_idle_ms"), ("RabbitMQ", "rabbit_idle_ms"))
        if (s := stats(values(o.real, key)))
    ]
    if measured:
        o.notes.append("client_overhead_ms, measured per message: " + ", ".join(measured))
    tiny_ms = 0.001  # the engine needs processing > 0
    run_engine(
        o,
        lambda: [
            {
                "redis_idle_ms": drain_engine_ms(False, p.idle_messages, tiny_ms) - tiny_ms,
                "redis_busy_ms": drain_engine_ms(False, p.busy_messages, p.busy_ms) - p.busy_ms,
                "rabbit_idle_ms": drain_engine_ms(True, p.idle_messages, tiny_ms) - tiny_ms,
                "rabbit_busy_ms": drain_engine_ms(True, p.busy_messages, p.busy_ms) - p.busy_ms,
            }
        ],
    )
    return o


EXPERIMENTS: dict[str, Callable[[Config], Outcome]] = {
    "outage": exp_outage,
    "crash": exp_crash,
    "rabbit-nack": exp_rabbit_nack,
    "rabbit-retry-queue": exp_rabbit_retry,
    "overhead": exp_overhead,
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1 repeat, shorter runs (about a minute)")
    ap.add_argument("--repeats", type=int, default=None, help="real runs and seeds (default 3)")
    ap.add_argument("--only", choices=sorted(EXPERIMENTS), help="run one experiment")
    ap.add_argument("--json", metavar="PATH", help="also write every figure as JSON to PATH")
    args = ap.parse_args(argv)
    repeats = args.repeats if args.repeats is not None else (1 if args.quick else 3)
    if repeats < 1:
        ap.error("--repeats must be >= 1")
    cfg = Config(quick=args.quick, repeats=repeats)
    names = [args.only] if args.only else list(EXPERIMENTS)
    outcomes = []
    for name in names:
        o = EXPERIMENTS[name](cfg)
        print_outcome(o)
        outcomes.append(o)
    if args.json:
        doc = {
            "quick": cfg.quick,
            "repeats": cfg.repeats,
            "experiments": {o.name: o.as_json() for o in outcomes},
        }
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
    return 1 if any(o.failed or o.engine_broke for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
