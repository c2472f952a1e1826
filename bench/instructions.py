"""Instructions per customer on the M/M/c of bench/engine.py, counted by valgrind.

    python bench/instructions.py [--small N] [--large N]

Wall seconds on a shared machine wander; instruction counts do not. For each model this runs
valgrind's callgrind (``--callgrind-out-file=/dev/null``) on a child Python twice, simulating
--small and then --large customers (defaults 10,000 and 30,000), and prints the difference
divided by the difference in customers: the instructions one more customer costs, start-up and
imports cancelled out. Models:

  simpy                    the idiomatic SimPy model of bench/engine.py
  engine                   Fanout's engine (a Simulation of the same scenario)
  bare                     the hand-written loop of bench/engine.py (running sum only)
  bare+histograms          the same, feeding the engine's three latency histograms

Needs valgrind on PATH (Debian: apt-get install valgrind). Takes about a minute and a half.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

MODELS = ("simpy", "engine", "bare", "bare+histograms")


def run_model(model: str, customers: int) -> int:
    """Simulate ``customers`` customers of ``model`` (in this process); return how many finished."""
    import bench.engine as b

    horizon = customers / b.LAM
    if model == "simpy":
        return int(b.run_simpy(horizon, 7)["customers"])
    if model == "bare":
        return int(b.run_bare(horizon, 7)["customers"])
    if model == "bare+histograms":
        return int(b.run_bare(horizon, 7, histograms=True)["customers"])
    from simulator import Simulation, parse_scenario

    sim = Simulation(parse_scenario(b.scenario(7)), seed=7)
    sim.run_until(horizon)
    sim.metrics()
    return int(sim.groups["workers"].processed)


def count(model: str, customers: int) -> tuple[int, int]:
    """(instructions, customers finished) for one run of ``model`` under callgrind."""
    out = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            __file__,
            "--child",
            model,
            str(customers),
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    found = re.search(r"Collected\s*:\s*(\d+)", out.stderr)
    if found is None:
        raise SystemExit(f"no instruction count in valgrind's output:\n{out.stderr[-2000:]}")
    return int(found.group(1)), int(out.stdout.split()[-1])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        print(run_model(argv[1], int(argv[2])))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", type=int, default=10_000, help="customers, first run")
    ap.add_argument("--large", type=int, default=30_000, help="customers, second run")
    args = ap.parse_args(argv)
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (Debian: apt-get install valgrind)", file=sys.stderr)
        return 2
    print(f"instructions per customer, from runs of {args.small} and {args.large} customers")
    results = {}
    for model in MODELS:
        (i1, c1), (i2, c2) = count(model, args.small), count(model, args.large)
        results[model] = (i2 - i1) / (c2 - c1)
        print(f"{model:<26}{results[model]:>12,.0f}")
    simpy = results["simpy"]
    print(
        "ratio SimPy/x (how many times fewer instructions than SimPy): "
        + ", ".join(f"{m} {simpy / v:.2f}x" for m, v in results.items() if m != "simpy")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
