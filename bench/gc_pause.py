"""What a full garbage collection costs with heavy runs in memory, as a live server holds them.

    .venv/bin/python bench/gc_pause.py [--runs 2] [--until 6]

Builds ``--runs`` simulations of the heaviest scenario the server allows (one producer at
20,000 events/s into 64 partitions, 64 instances), in the live runner's configuration (event
sampler and tracer on), runs each to ``--until`` simulated seconds, freezes what was loaded
before (as dashboard/asgi.py does at start-up), then times ``gc.collect()`` and counts the
objects the collector tracks, by type. A full collection holds a server's event loop for that
long (docs/performance.md, the soak). It is a benchmark: it prints figures and exits 0.
"""

from __future__ import annotations

import argparse
import collections
import gc
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from simulator import EventSampler, Simulation, parse_scenario

HEAVY = {
    "name": "Heavy",
    "seed": 1,
    "duration": 3600,
    "topics": [{"name": "orders", "partitions": 64}],
    "producers": [{"name": "flood", "topic": "orders", "event": "OrderPlaced", "rate": 20000}],
    "consumers": [
        {
            "name": "all",
            "topics": ["orders"],
            "instances": 64,
            "processing": {"dist": "constant", "mean_ms": 1},
        }
    ],
}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=2)
    p.add_argument("--until", type=float, default=6.0)
    args = p.parse_args()
    gc.collect()
    gc.freeze()
    sims = []
    for k in range(args.runs):
        sim = Simulation(
            parse_scenario(HEAVY), k, observers=(EventSampler(200, seed=1),), trace=True
        )
        sim.run_until(args.until)
        sims.append(sim)
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        gc.collect()
        times.append(time.perf_counter() - t0)
    tracked = gc.get_objects()
    records = sum(len(p.records) for s in sims for t in s.topics.values() for p in t.partitions)
    print(f"{args.runs} heavy runs to t = {args.until:g} s: {records:,} records stored")
    print(f"full collection: best {min(times) * 1000:.1f} ms of 3")
    print(f"tracked objects: {len(tracked):,}")
    for name, n in collections.Counter(type(o).__name__ for o in tracked).most_common(6):
        print(f"  {name:<16} {n:,}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
