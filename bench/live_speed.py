"""How fast the live runner plays two heavy presets, in-process, against the asked speed.

    python bench/live_speed.py [--seconds 20] [--only ecommerce|scale] [--json]

The app's live runner configuration, in this process: Django set up with the in-memory channel
layer, `dashboard.runner.start_runner` (what the server calls: the event sampler and the tracer
attached, the charts' history on), one viewer's channel in the simulation's frame group reading
every frame (as one WebSocket consumer would), and the runner's tick loop on this asyncio loop.
No database: nothing is saved. Two runs, one after the other:

  ecommerce   simulator/presets/ecommerce.yaml with the order rate at 200/s, asked for x100
  scale       simulator/presets/lesson-scale.yaml (300 services), asked for x10

Each plays for --seconds of wall time (the run's length is raised so it never finishes). The
runner's own `_advance` (one call per tick that moved the run) is wrapped to record, per tick,
whether the run was "behind" after it, the speed it reached, and the engine budget it had.

Prints, for each run: the effective speed over the window (simulated seconds / wall seconds,
from the engine's clock), the share of ticks "behind", ticks per second, the engine budget per
tick (mean and range, ms), the frames the viewer received per second, this process's CPU
time over the window as a share of it, the load average (1 min) before the run, and the share
of journeys (orders, trips) the event sampler and the tracer watched. Exit status 0 whatever
the figures (a benchmark, not a test); 2 when the setup fails.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

RUNS = {
    # name: (preset, order rate or None to keep the preset's, asked speed)
    "ecommerce": ("ecommerce", 200.0, 100.0),
    "scale": ("lesson-scale", None, 10.0),
}
LONG_RUN_S = 100_000.0  # the run's length: it must not finish within the window


def setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
    os.environ.setdefault("DJANGO_DEBUG", "1")
    os.environ.pop("REDIS_URL", None)  # the in-memory channel layer: one process
    import django

    django.setup()


def scenario_doc(preset: str, rate: float | None) -> dict[str, Any]:
    path = ROOT / "simulator/presets" / f"{preset}.yaml"
    doc: dict[str, Any] = yaml.safe_load(path.read_text())
    if rate is not None:
        doc["producers"][0]["rate"] = rate
    doc["duration"] = LONG_RUN_S
    return doc


async def play(name: str, seconds: float) -> dict[str, Any]:
    from channels.layers import get_channel_layer

    from dashboard import runner as live

    preset, rate, speed = RUNS[name]
    sim_id = f"bench-{name}"
    r = await live.start_runner(sim_id, scenario_doc(preset, rate), 7, speed=speed)
    ticks: list[tuple[float, bool, float, float]] = []  # (wall, behind, effective, budget)
    advance = r._advance

    async def recorded(wall_dt: float) -> None:
        await advance(wall_dt)
        ticks.append((time.perf_counter(), r.run.behind, r.run.effective_speed, r.budget))

    r._advance = recorded  # type: ignore[method-assign]
    layer = get_channel_layer()
    assert layer is not None
    viewer = await layer.new_channel()
    await layer.group_add(live.frames_group(sim_id), viewer)
    await layer.group_send(live.runner_group(sim_id), {"type": "sim.viewer", "channel": viewer})
    frames = 0
    stop = asyncio.Event()

    async def watch() -> None:
        nonlocal frames
        while not stop.is_set():
            try:
                await asyncio.wait_for(layer.receive(viewer), 0.5)
            except TimeoutError:
                continue
            frames += 1

    watcher = asyncio.create_task(watch())
    r.execute({"command": "start"})
    await asyncio.sleep(1.0)  # warm up: the first ticks (imports, the first frames) not counted
    ticks.clear()
    frames = 0

    def journeys() -> tuple[int, int]:  # (journeys started, of them watched)
        return sum(p.produced for p in r.sim.producers.values()), r.sim.watch.started

    t0, wall0, cpu0, (j0, w0) = r.sim.now, time.perf_counter(), time.process_time(), journeys()
    await asyncio.sleep(seconds)
    t1, wall1, cpu1, (j1, w1) = r.sim.now, time.perf_counter(), time.process_time(), journeys()
    stop.set()
    await watcher
    await r.stop()
    wall = wall1 - wall0
    budgets = [b * 1000.0 for _, _, _, b in ticks]
    behind = sum(1 for _, b, _, _ in ticks if b)
    return {
        "run": name,
        "preset": preset,
        "rate_per_s": rate,
        "asked_speed": speed,
        "wall_s": wall,
        "simulated_s": t1 - t0,
        "effective_speed": (t1 - t0) / wall,
        "ticks": len(ticks),
        "ticks_per_s": len(ticks) / wall,
        "behind_share": behind / len(ticks) if ticks else 0.0,
        "budget_ms_mean": statistics.fmean(budgets) if budgets else 0.0,
        "budget_ms_min": min(budgets, default=0.0),
        "budget_ms_max": max(budgets, default=0.0),
        "frames_per_s": frames / wall,
        "cpu_s": cpu1 - cpu0,
        "cpu_share": (cpu1 - cpu0) / wall,
        "journeys": j1 - j0,
        "journeys_watched": w1 - w0,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20.0, help="wall seconds per run (20)")
    ap.add_argument("--only", choices=sorted(RUNS), help="run only this one")
    ap.add_argument("--json", action="store_true", help="print one JSON document")
    args = ap.parse_args(argv)
    try:
        setup_django()
    except Exception as e:  # a broken environment: say so, exit 2
        print(f"setup failed: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    names = [args.only] if args.only else list(RUNS)
    results = []
    for name in names:
        load = os.getloadavg()[0]
        res = asyncio.run(play(name, args.seconds))
        res["load_average_before"] = load
        res["load_average_after"] = os.getloadavg()[0]
        results.append(res)
    report = {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "runs": results,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(
        f"live runner in-process, {args.seconds:g} s wall a run; Python {report['python']}, "
        f"{report['cpus']} CPUs, {report['date_utc']} UTC"
    )
    print(
        f"{'run':<11}{'asked':>7}{'reached':>9}{'behind':>8}{'ticks/s':>9}"
        f"{'budget ms (mean, min-max)':>27}{'frames/s':>10}{'cpu':>6}{'load':>6}"
        f"{'watched':>10}"
    )
    for r in results:
        asked, reached = f"x{r['asked_speed']:g}", f"x{r['effective_speed']:.1f}"
        print(
            f"{r['run']:<11}{asked:>7}{reached:>9}"
            f"{r['behind_share']:>8.0%}{r['ticks_per_s']:>9.1f}"
            f"{r['budget_ms_mean']:>11.1f} ({r['budget_ms_min']:.1f}-{r['budget_ms_max']:.1f})"
            f"{'':>4}{r['frames_per_s']:>10.1f}{r['cpu_share']:>6.0%}"
            f"{r['load_average_before']:>6.1f}"
            f"{r['journeys_watched'] / max(1, r['journeys']):>10.1%}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
