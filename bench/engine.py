"""Engine vs SimPy on the same M/M/c queue, in one process.

    python bench/engine.py [--customers N] [--repeat R] [--seed S] [--json] [--live-parts]

Model (printed at start): c identical servers, Poisson arrivals at LAM per
second, exponential service with mean 1/MU, one FIFO queue.  In Fanout that
is a topic with one partition and a consumer group in ``delivery: queue`` mode
with c instances; in SimPy it is ``simpy.Resource(env, capacity=c)``.

Both models run for the same simulated horizon, customers / LAM seconds, so
both see (about) the same number of customers.  Each is run --repeat times
with the same seed and the best wall time (time.perf_counter) is kept; the
best CPU time of the process (time.process_time) is printed beside it, because
on a shared machine CPU seconds are less disturbed by other work than wall
seconds.

Prints, for each: customers completed, wall seconds, customers per wall second,
mean time in system and its relative error against Erlang C; then the speed
ratio engine/SimPy. The "live config" row runs the engine as the live runner
does (run_engine_live): the event sampler and the tracer attached, the charts'
history on, the engine advanced in slices of 100 actions, and the sampler
drained every 50 ms of wall time, as each frame does; it must serve the very
same customers with the same W as the engine row (watching changes what is
observed, never what happens). Two more rows run the same model as a hand-written event
loop with no broker (see run_bare): "bare loop" keeps a running sum as the
SimPy model does; "+ histograms" also feeds the engine's three latency
histograms. They are ceilings for a plain-Python engine of this model, each
printed as its ratio to SimPy.

Exits 1 if the engine's mean time in system is not within 3% of Erlang C, or
the live configuration's run differs from the engine's (correctness guards,
not timing assertions); exits 2 if the engine cannot be
imported (the SimPy half is still printed).
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import platform
import random
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _load_oracle() -> Any:
    """Load tests/queueing.py by path (tests/ need not be a package)."""
    spec = importlib.util.spec_from_file_location(
        "fanout_queueing_oracle", ROOT / "tests" / "queueing.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


queueing = _load_oracle()

# The standard model: c=4, lam=70/s, mean service 40 ms (mu=25/s) -> rho=0.7.
# (At rho=0.7 the mean of ~200k customers has a relative sd of ~0.8% across seeds, so
# the 3% correctness guard is ~4 sigma; at rho=0.8 it would be ~2 sigma.)
C = 4
LAM = 70.0
MEAN_SERVICE_MS = 40.0
MU = 1000.0 / MEAN_SERVICE_MS
TOLERANCE = 0.03


def scenario(seed: int, c: int = C, lam: float = LAM, mean_ms: float = MEAN_SERVICE_MS) -> dict:
    """The M/M/c scenario in Fanout's scenario format."""
    return {
        "seed": seed,
        "topics": [{"name": "jobs", "partitions": 1}],
        "producers": [
            {
                "name": "arrivals",
                "topic": "jobs",
                "event": "JobCreated",
                "rate": lam,
                "arrival": "poisson",
            },
        ],
        "consumers": [
            {
                "name": "workers",
                "topics": ["jobs"],
                "delivery": "queue",
                "instances": c,
                "processing": {"dist": "exponential", "mean_ms": mean_ms},
                # one message at a time to a free worker, at no client cost: the M/M/c model
                # (RabbitMQ's default prefetch is unlimited)
                "prefetch": 1,
                "client_overhead_ms": 0,
            },
        ],
    }


# ---------------------------------------------------------------- SimPy model
def run_simpy(horizon: float, seed: int, c: int = C, lam: float = LAM, mu: float = MU) -> dict:
    """Idiomatic SimPy M/M/c: a Resource, a source process, a process per customer."""
    import simpy

    rng = random.Random(seed)
    expo = rng.expovariate
    env = simpy.Environment()
    servers = simpy.Resource(env, capacity=c)
    stats = [0, 0.0]  # completed customers, sum of time in system (running sum only)

    def customer(env: simpy.Environment) -> Any:
        arrived = env.now
        with servers.request() as req:
            yield req
            yield env.timeout(expo(mu))
        stats[0] += 1
        stats[1] += env.now - arrived

    def source(env: simpy.Environment) -> Any:
        while True:
            yield env.timeout(expo(lam))
            env.process(customer(env))

    env.process(source(env))
    env.run(until=horizon)
    completed, total = stats
    return {
        "customers": completed,
        "mean_time_in_system_s": total / completed if completed else float("nan"),
    }


# ------------------------------------------------------ the ceiling: a bare loop
def run_bare(
    horizon: float,
    seed: int,
    c: int = C,
    lam: float = LAM,
    mu: float = MU,
    histograms: bool = False,
) -> dict:
    """The same M/M/c as a hand-written event loop: no broker, no records, no observers.

    A heap of (time, seq, kind, arrived, started), the exponential draws written out, and a
    running sum of time in system -- what the SimPy model keeps. It draws its random numbers
    in the same order as Fanout's engine, so it serves the same customers at the same times:
    its W equals the engine's. With ``histograms`` it also feeds the engine's own three latency
    histograms (wait, processing, end to end; ``simulator.metrics.Histogram``), folded the way
    the engine folds them. Its speed is a ceiling for any plain-Python engine of this model
    that keeps those metrics: what a real broker adds (a log with offsets and retention, event
    ids, counters, instances with states, faults, observers) can only cost more.
    """
    from collections import deque
    from heapq import heappop, heappush
    from itertools import count
    from math import log

    rnd = random.Random(seed).random
    seq = count()
    sinks: list[Any] = []
    if histograms:
        from simulator.metrics import FOLD_AT, Histogram

        sinks = [Histogram(), Histogram(), Histogram()]
    add_wait, add_processing, add_e2e = (h.add for h in sinks) if sinks else (None,) * 3
    queue = [(-log(1.0 - rnd()) / lam, next(seq), 0, 0.0, 0.0)]
    idle = c
    waiting: deque[float] = deque()
    completed, total, next_tick = 0, 0.0, 1.0
    while queue and queue[0][0] <= horizon:
        t, _, kind, arrived, started = heappop(queue)
        if sinks and t >= next_tick:  # the engine's sample tick, once a simulated second
            next_tick += 1.0
            for h in sinks:
                if len(h._buf) >= FOLD_AT:
                    h.fold()
        if kind == 0:  # an arrival: start service if a server is free, then the next arrival
            if idle:
                idle -= 1
                if add_wait is not None:
                    add_wait(0.0)
                heappush(queue, (t - log(1.0 - rnd()) / mu, next(seq), 1, t, t))
            else:
                waiting.append(t)
            heappush(queue, (t - log(1.0 - rnd()) / lam, next(seq), 0, 0.0, 0.0))
        else:  # a departure: count it, then serve the next in line
            completed += 1
            total += t - arrived
            if add_e2e is not None:
                add_processing((t - started) * 1000.0)
                add_e2e((t - arrived) * 1000.0)
            if waiting:
                arrived = waiting.popleft()
                if add_wait is not None:
                    add_wait((t - arrived) * 1000.0)
                heappush(queue, (t - log(1.0 - rnd()) / mu, next(seq), 1, arrived, t))
            else:
                idle += 1
    for h in sinks:
        h.fold()
    return {
        "customers": completed,
        "mean_time_in_system_s": total / completed if completed else float("nan"),
    }


def run_bare_with_histograms(horizon: float, seed: int) -> dict:
    return run_bare(horizon, seed, histograms=True)


# --------------------------------------------------------------- Fanout model
def run_engine(
    horizon: float, seed: int, c: int = C, lam: float = LAM, mean_ms: float = MEAN_SERVICE_MS
) -> dict:
    """The same model in Fanout's engine (queue delivery mode, c instances)."""
    from simulator import Simulation, parse_scenario

    sim = Simulation(parse_scenario(scenario(seed, c, lam, mean_ms)), seed=seed)
    sim.run_until(horizon)
    m = sim.metrics()
    g = m["groups"]["workers"]
    return {
        "customers": g["processed"],
        "mean_time_in_system_s": g["end_to_end_ms"]["mean"] / 1000.0,
        "produced": m["topics"]["jobs"]["produced"],
    }


# The live runner's frames: 20 a second, each draining the event sampler (dashboard/runner.py)
FRAME_INTERVAL_S = 0.05
EVENTS_PER_SLICE = 100  # engine actions between two looks at the clock, as the runner


def run_engine_live(
    horizon: float,
    seed: int,
    c: int = C,
    lam: float = LAM,
    mean_ms: float = MEAN_SERVICE_MS,
    *,
    watch: bool = True,
    charts: bool = True,
) -> dict:
    """The same model in the live runner's configuration: the event sampler and the tracer
    attached and the charts' history on (``dashboard.runner``'s ``_make_model``), the engine
    advanced in slices of ``EVENTS_PER_SLICE`` actions, and the sampler drained every
    ``FRAME_INTERVAL_S`` of wall time, as a frame does. No pacing: as fast as it goes.
    (``watch``/``charts`` False leave the sampler and tracer, or the charts' history, out:
    ``--live-parts`` measures what each costs.)"""
    from simulator import EventSampler, Simulation, parse_scenario

    sampler = EventSampler(200, seed=seed)
    sim = Simulation(
        parse_scenario(scenario(seed, c, lam, mean_ms)),
        seed=seed,
        observers=(sampler,) if watch else (),
        trace=watch,
        chart_history=charts,
    )
    clock = time.perf_counter
    frame_at = clock() + FRAME_INTERVAL_S
    frames = 0
    while not sim.run_some(horizon, EVENTS_PER_SLICE):
        if clock() >= frame_at:
            sampler.drain()
            frames += 1
            frame_at += FRAME_INTERVAL_S
    sim.run_until(horizon)
    sampler.drain()
    m = sim.metrics()
    g = m["groups"]["workers"]
    watch = getattr(sim, "watch", None)  # (an engine from before journeys were watched: all)
    return {
        "customers": g["processed"],
        "mean_time_in_system_s": g["end_to_end_ms"]["mean"] / 1000.0,
        "produced": m["topics"]["jobs"]["produced"],
        "frames": frames + 1,
        "journeys_watched": g["processed"] if watch is None else watch.started,
    }


def best_of(fn: Any, repeat: int, *args: Any) -> tuple[float, float, dict]:
    """Run fn(*args) `repeat` times: best wall time, best CPU time, last result."""
    best_wall = best_cpu = float("inf")
    result: dict = {}
    for _ in range(repeat):
        gc.collect()
        c0 = time.process_time()
        t0 = time.perf_counter()
        result = fn(*args)
        best_wall = min(best_wall, time.perf_counter() - t0)
        best_cpu = min(best_cpu, time.process_time() - c0)
    return best_wall, best_cpu, result


def live_parts(horizon: float, seed: int, repeat: int) -> int:
    """What each part of the live runner's configuration costs: best CPU seconds of each
    variant, interleaved run by run so that the machine's mood is shared, and as a ratio to
    the engine alone (in the same slices)."""
    parts = {
        "engine in slices": {"watch": False, "charts": False},
        "+ charts' history": {"watch": False, "charts": True},
        "+ sampler, tracer": {"watch": True, "charts": False},
        "live config": {"watch": True, "charts": True},
    }
    best = dict.fromkeys(parts, float("inf"))
    for _ in range(repeat):
        for name, kw in parts.items():
            gc.collect()
            c0 = time.process_time()
            run_engine_live(horizon, seed, **kw)
            best[name] = min(best[name], time.process_time() - c0)
    base = best["engine in slices"]
    print(f"the live configuration part by part: best CPU s of {repeat}, horizon {horizon:g} s")
    for name, cpu in best.items():
        print(f"{name:<20}{cpu:>8.3f} s{cpu / base:>8.3f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--customers",
        type=int,
        default=200_000,
        help="expected customers; horizon = customers / lam (default 200000)",
    )
    ap.add_argument(
        "--repeat", type=int, default=3, help="runs of each model, best wall time kept (default 3)"
    )
    ap.add_argument("--seed", type=int, default=7, help="seed for both models (default 7)")
    ap.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    ap.add_argument(
        "--live-parts",
        action="store_true",
        help="only the live configuration, part by part: CPU seconds of the engine in slices, "
        "+ the charts' history, + the sampler and tracer, both (best of --repeat)",
    )
    args = ap.parse_args(argv)
    if args.live_parts:
        return live_parts(args.customers / LAM, args.seed, args.repeat)

    horizon = args.customers / LAM
    w_theory = queueing.mmc_time_in_system(LAM, MU, C)
    model = {
        "c": C,
        "lam_per_s": LAM,
        "mu_per_s": MU,
        "mean_service_ms": MEAN_SERVICE_MS,
        "rho": LAM / (C * MU),
        "erlang_c": queueing.erlang_c(C, LAM / MU),
        "theory_time_in_system_ms": w_theory * 1000.0,
        "horizon_s": horizon,
        "seed": args.seed,
        "repeat": args.repeat,
    }
    report: dict[str, Any] = {
        "model": model,
        "python": platform.python_version(),
        "machine": platform.machine(),
    }

    def row(wall: float, cpu: float, res: dict) -> dict:
        w = res["mean_time_in_system_s"]
        return {
            "customers": res["customers"],
            "wall_s": wall,
            "cpu_s": cpu,
            "customers_per_s": res["customers"] / wall,
            "mean_time_in_system_ms": w * 1000.0,
            "rel_error_pct": (w - w_theory) / w_theory * 100.0,
        }

    import simpy

    wall, cpu, res = best_of(run_simpy, args.repeat, horizon, args.seed)
    report["simpy"] = {"version": simpy.__version__, **row(wall, cpu, res)}

    engine_error: str | None = None
    try:
        import simulator

        if getattr(simulator, "__file__", None) is None:
            raise ImportError("simulator/ has no __init__.py yet")
        simulator.Simulation, simulator.parse_scenario  # noqa: B018
    except (ImportError, AttributeError) as exc:  # the engine has not landed / does not import
        engine_error = f"{type(exc).__name__}: {exc}"
    if engine_error is None:
        wall, cpu, res = best_of(run_engine, args.repeat, horizon, args.seed)
        report["engine"] = row(wall, cpu, res)
        report["ratio_engine_over_simpy"] = (
            report["engine"]["customers_per_s"] / report["simpy"]["customers_per_s"]
        )
        report["cpu_ratio_engine_over_simpy"] = report["simpy"]["cpu_s"] / report["engine"]["cpu_s"]
        wall, cpu, res = best_of(run_engine_live, args.repeat, horizon, args.seed)
        report["engine_live"] = {
            **row(wall, cpu, res),
            "frames": res["frames"],
            "journeys_watched": res["journeys_watched"],
        }
        report["ratio_engine_live_over_simpy"] = (
            report["engine_live"]["customers_per_s"] / report["simpy"]["customers_per_s"]
        )
        report["cpu_ratio_engine_live_over_simpy"] = (
            report["simpy"]["cpu_s"] / report["engine_live"]["cpu_s"]
        )
    else:
        report["engine"] = {"error": engine_error}

    ceilings = [("bare_loop", run_bare)]
    if engine_error is None:
        ceilings.append(("bare_loop_with_histograms", run_bare_with_histograms))
    for key, fn in ceilings:
        wall, cpu, res = best_of(fn, args.repeat, horizon, args.seed)
        report[key] = row(wall, cpu, res)
        report[f"ratio_{key}_over_simpy"] = (
            report[key]["customers_per_s"] / report["simpy"]["customers_per_s"]
        )

    ok = engine_error is None and abs(report["engine"]["rel_error_pct"]) <= TOLERANCE * 100
    report["engine_within_3pct_of_erlang_c"] = ok
    # watching journeys changes what is observed, never what happens: the same customers, the
    # same times
    same = engine_error is None and all(
        report["engine_live"][k] == report["engine"][k]
        for k in ("customers", "mean_time_in_system_ms")
    )
    report["live_config_same_run"] = same

    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(
            f"M/M/c: c={C}, lam={LAM:g}/s, mean service {MEAN_SERVICE_MS:g} ms (mu={MU:g}/s), "
            f"rho={model['rho']:.3f}"
        )
        print(
            f"Erlang C P(wait)={model['erlang_c']:.6f}; theory mean time in system "
            f"W={model['theory_time_in_system_ms']:.4f} ms"
        )
        print(
            f"horizon {horizon:g} s simulated (~{args.customers} customers), seed {args.seed}, "
            f"best of {args.repeat}; Python {report['python']}"
        )
        print(
            f"{'model':<14}{'customers':>11}{'wall s':>10}{'cpu s':>9}{'customers/s':>14}"
            f"{'W ms':>10}{'err %':>9}"
        )
        names = [("SimPy " + report["simpy"]["version"], report["simpy"])]
        if engine_error is None:
            names.append(("Fanout engine", report["engine"]))
            names.append(("  live config", report["engine_live"]))
        names.append(("bare loop", report["bare_loop"]))
        if engine_error is None:
            names.append(("  + histograms", report["bare_loop_with_histograms"]))
        for name, r in names:
            print(
                f"{name:<14}{r['customers']:>11}{r['wall_s']:>10.3f}{r['cpu_s']:>9.3f}"
                f"{r['customers_per_s']:>14,.0f}"
                f"{r['mean_time_in_system_ms']:>10.4f}{r['rel_error_pct']:>+9.2f}"
            )
        if engine_error is None:
            print(
                "ratio engine/SimPy (customers per wall second): "
                f"{report['ratio_engine_over_simpy']:.2f}x   "
                f"(by CPU seconds: {report['cpu_ratio_engine_over_simpy']:.2f}x)"
            )
            live = report["engine_live"]
            print(
                "ratio live runner's configuration/SimPy: "
                f"{report['ratio_engine_live_over_simpy']:.2f}x   "
                f"(by CPU seconds: {report['cpu_ratio_engine_live_over_simpy']:.2f}x; "
                f"{live['frames']} frames, {live['journeys_watched']:,} journeys watched of "
                f"{live['customers']:,})"
            )
        else:
            print(f"engine not run: {engine_error}")
        print(
            "ceilings for a plain-Python engine of this model: bare loop/SimPy "
            f"{report['ratio_bare_loop_over_simpy']:.2f}x"
            + (
                ", with the engine's three latency histograms "
                f"{report['ratio_bare_loop_with_histograms_over_simpy']:.2f}x"
                if engine_error is None
                else ""
            )
        )
    if engine_error is not None:
        return 2
    if engine_error is None and not same:
        print(
            "FAIL: the live runner's configuration ran a different simulation "
            f"({report['engine_live']['customers']} customers, W "
            f"{report['engine_live']['mean_time_in_system_ms']:.4f} ms)",
            file=sys.stderr,
        )
        return 1
    if not ok:
        print(
            f"FAIL: engine mean time in system is {report['engine']['rel_error_pct']:+.2f}% "
            f"from Erlang C (tolerance {TOLERANCE:.0%})",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
