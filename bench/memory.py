"""Memory on a long run: one simulated hour at 1,000 events/s with retention.

    python bench/memory.py [--hours H] [--rate R] [--limit-mb MB] [--json]

The scenario (printed) is stream mode: one topic with 6 partitions and a
retention bound per partition (max_messages and max_age_s), fed by a Poisson
producer at --rate events/s, read by three consumer groups of different sizes
that all keep up.  Memory must stay bounded because the logs are trimmed and
metrics are fixed-size histograms and bounded histories.

Two runs of the same scenario and seed, in this order:
  1. untraced: wall time, events/s simulated, and the process's peak RSS
     (resource.getrusage ru_maxrss) when it ends;
  2. under tracemalloc: peak traced Python memory (tracemalloc.get_traced_memory).
tracemalloc slows Python down several times, which is why wall time comes from
the first run.  Exits 1 if the traced peak is not below --limit-mb (200 MB).
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import resource
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PARTITIONS = 6
RETENTION_MESSAGES = 20_000  # per partition
RETENTION_AGE_S = 600.0
SEED = 42


def scenario(rate: float, seed: int = SEED) -> dict:
    """Three groups on one 6-partition topic; every instance stays below rho = 0.7."""
    return {
        "seed": seed,
        "topics": [
            {
                "name": "orders",
                "partitions": PARTITIONS,
                "retention": {"max_messages": RETENTION_MESSAGES, "max_age_s": RETENTION_AGE_S},
            }
        ],
        "producers": [
            {
                "name": "checkout",
                "topic": "orders",
                "event": "OrderPlaced",
                "rate": rate,
                "arrival": "poisson",
            }
        ],
        "consumers": [
            # 3 instances x 2 partitions: 333 ev/s each at 1000 ev/s, mean 2 ms -> rho 0.67
            {
                "name": "billing",
                "topics": ["orders"],
                "instances": 3,
                "processing": {"dist": "exponential", "mean_ms": 2.0 * 1000.0 / rate},
            },
            # 2 instances x 3 partitions: 500 ev/s each, mean 1 ms -> rho 0.5
            {
                "name": "email",
                "topics": ["orders"],
                "instances": 2,
                "processing": {"dist": "exponential", "mean_ms": 1.0 * 1000.0 / rate},
            },
            # 6 instances x 1 partition: 167 ev/s each, mean 4 ms -> rho 0.67
            {
                "name": "analytics",
                "topics": ["orders"],
                "instances": 6,
                "processing": {"dist": "exponential", "mean_ms": 4.0 * 1000.0 / rate},
            },
        ],
    }


def _maxrss_mb() -> float:
    # Linux reports ru_maxrss in KiB (macOS in bytes).
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024.0 * 1024.0) if sys.platform == "darwin" else rss / 1024.0


def run(doc: dict, horizon: float) -> tuple[float, dict]:
    from simulator import Simulation, parse_scenario

    gc.collect()
    t0 = time.perf_counter()
    sim = Simulation(parse_scenario(doc))
    sim.run_until(horizon)
    m = sim.metrics()
    wall = time.perf_counter() - t0
    return wall, m


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=float, default=1.0, help="simulated hours (default 1)")
    ap.add_argument("--rate", type=float, default=1000.0, help="events per second (default 1000)")
    ap.add_argument("--limit-mb", type=float, default=200.0, help="traced peak target (MB)")
    ap.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    args = ap.parse_args(argv)

    horizon = args.hours * 3600.0
    doc = scenario(args.rate)
    import simulator  # noqa: F401  (import cost is not part of the run)

    rss_before = _maxrss_mb()
    wall, m = run(doc, horizon)
    rss_after = _maxrss_mb()

    del m
    gc.collect()
    tracemalloc.start()
    traced_wall, m = run(doc, horizon)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    peak_mb = peak / 1e6

    topic = m["topics"]["orders"]
    produced = topic["produced"]
    groups = {
        name: {k: g.get(k) for k in ("processed", "lag", "dead_lettered", "redelivered")}
        for name, g in m["groups"].items()
    }
    delivered = sum(g["processed"] or 0 for g in groups.values())
    report: dict[str, Any] = {
        "scenario": doc,
        "simulated_s": m["time"],
        "events_produced": produced,
        "events_processed_all_groups": delivered,
        "wall_s": wall,
        "events_per_wall_s": produced / wall,
        "deliveries_per_wall_s": delivered / wall,
        "tracemalloc_peak_mb": peak_mb,
        "tracemalloc_run_wall_s": traced_wall,
        "ru_maxrss_mb_before_run": rss_before,
        "ru_maxrss_mb_after_run": rss_after,
        "limit_mb": args.limit_mb,
        "topic": {k: v for k, v in topic.items() if not isinstance(v, (list, dict))},
        "groups": groups,
        "python": platform.python_version(),
    }
    ok = peak_mb < args.limit_mb
    report["within_limit"] = ok

    if args.json:
        print(json.dumps(report, indent=2))
    else:
        import yaml

        print("scenario:")
        print("  " + yaml.safe_dump(doc, sort_keys=False).replace("\n", "\n  ").rstrip())
        print(
            f"simulated {m['time']:g} s ({args.hours:g} h) at {args.rate:g} events/s; "
            f"Python {report['python']}"
        )
        print(f"events produced           {produced:>12,}")
        print(f"events processed (groups) {delivered:>12,}")
        for name, g in groups.items():
            print(f"  {name:<12} processed {g['processed']:>10,}  lag {g['lag']:>6}")
        print(
            f"records stored at end    {topic.get('stored', '?'):>12}   "
            f"(bound {PARTITIONS} x {RETENTION_MESSAGES:,} by count)"
        )
        print(f"wall time (untraced)      {wall:>12.2f} s")
        print(f"events simulated / s      {produced / wall:>12,.0f}")
        print(f"deliveries processed / s  {delivered / wall:>12,.0f}")
        print(
            f"tracemalloc peak          {peak_mb:>12.1f} MB   (traced run took {traced_wall:.1f} s)"
        )
        print(
            f"ru_maxrss                 {rss_after:>12.1f} MB   "
            f"(before the run: {rss_before:.1f} MB)"
        )
        print(f"target: tracemalloc peak < {args.limit_mb:g} MB -> {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
