"""``python -m simulator``: run a scenario headless and print what happened."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from .scenario import Scenario, ScenarioError, load_scenario
from .simulation import Simulation

PRESETS = Path(__file__).parent / "presets"
EXIT_BAD_SCENARIO = 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m simulator", description="Fanout's event-driven architecture simulator."
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="run a scenario headless and print its metrics")
    run.add_argument("file", help="scenario file (YAML or JSON), or the name of a preset")
    run.add_argument("--seed", type=int, default=None, help="override the scenario's seed")
    run.add_argument(
        "--until",
        type=float,
        default=None,
        help="simulated seconds to run (default: the scenario's duration)",
    )
    run.add_argument("--json", action="store_true", help="print the metrics document as JSON")
    cmp = sub.add_parser(
        "compare",
        help="run a synchronous call chain and event flow side by "
        "side on the same orders, and print both sides' metrics",
    )
    cmp.add_argument("file", help="scenario file with a 'chain' (or a preset name)")
    cmp.add_argument("--seed", type=int, default=None, help="override the scenario's seed")
    cmp.add_argument("--until", type=float, default=None, help="simulated seconds to run")
    cmp.add_argument("--json", action="store_true", help="print the metrics as JSON")
    sub.add_parser("presets", help="list the preset scenarios")
    return p


def resolve(file: str) -> Path:
    """A path, or the name of a preset (``ecommerce`` -> ``presets/ecommerce.yaml``)."""
    path = Path(file)
    if path.exists() or path.suffix:
        return path
    preset = PRESETS / f"{file}.yaml"
    return preset if preset.exists() else path


def main(
    argv: Sequence[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    args = _parser().parse_args(argv)
    if args.cmd == "presets":
        for preset in sorted(PRESETS.glob("*.yaml")):
            try:
                sc = load_scenario(preset)
                out.write(f"{preset.stem:24} {sc.name}\n")
            except ScenarioError as e:  # pragma: no cover - presets are tested
                out.write(f"{preset.stem:24} INVALID: {e}\n")
        return 0
    try:
        scenario = load_scenario(resolve(args.file))
    except ScenarioError as e:
        err.write(f"error: {args.file}: the scenario is not valid\n")
        for where, message in e.errors:
            err.write(f"  {where}: {message}\n" if where else f"  {message}\n")
        return EXIT_BAD_SCENARIO
    until = args.until if args.until is not None else scenario.duration
    if until <= 0:
        err.write("error: --until must be > 0\n")
        return EXIT_BAD_SCENARIO
    if args.cmd == "compare":
        return _compare(args, scenario, until, out, err)
    sim = Simulation(scenario, seed=args.seed)
    show_progress = err.isatty() and not args.json
    steps = 50
    for i in range(1, steps + 1):
        sim.run_until(until * i / steps)
        if show_progress:
            _progress(err, i / steps, sim)
    if show_progress:
        err.write("\n")
    metrics = sim.metrics()
    if args.json:
        json.dump(metrics, out, indent=2, sort_keys=True)
        out.write("\n")
    else:
        out.write(summary(metrics))
    return 0


def _compare(
    args: argparse.Namespace, scenario: Scenario, until: float, out: TextIO, err: TextIO
) -> int:
    from .compare import Comparison

    try:
        cmp = Comparison(scenario, seed=args.seed)
    except ScenarioError as e:
        err.write(f"error: {args.file}: cannot compare\n")
        for where, message in e.errors:
            err.write(f"  {where}: {message}\n" if where else f"  {message}\n")
        return EXIT_BAD_SCENARIO
    cmp.run_until(until)
    m = cmp.metrics()
    if args.json:
        json.dump(m, out, indent=2, sort_keys=True)
        out.write("\n")
        return 0
    sync_m, events_m = m["sync"], m["events"]
    out.write(
        f"{scenario.name or 'comparison'}: {m['time']:,.1f} simulated seconds, "
        f"{m['orders']:,} orders, seed {m['seed']}\n\n"
    )
    rows = []
    for side, d in (("synchronous chain", sync_m), ("event-driven", events_m)):
        c = d["checkout_ms"]
        rows.append(
            [
                side,
                f"{c['p50']:,.1f}",
                f"{c['p95']:,.1f}",
                f"{c['p99']:,.1f}",
                f"{d['checkout_errors']:,}",
                d["producer_changes"],
            ]
        )
    out.write(
        _table(["checkout", "p50 ms", "p95 ms", "p99 ms", "errors", "producer changes"], rows)
    )
    out.write("\nsynchronous chain: " + " -> ".join(["checkout", *sync_m["chain"]]) + "\n")
    lags = ", ".join(f"{n} {g['lag']:,}" for n, g in events_m["groups"].items())
    out.write(f"event side lag: {lags}\n")
    return 0


def _progress(err: TextIO, frac: float, sim: Simulation) -> None:
    width = 30
    done = int(frac * width)
    produced = sum(t.produced for t in sim.topics.values())
    err.write(
        f"\r[{'#' * done}{'.' * (width - done)}] {frac:4.0%}  t={sim.now:,.1f}s  "
        f"events={produced:,}"
    )
    err.flush()


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(cells):
        lines.append(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines) + "\n"


def summary(m: dict[str, Any]) -> str:
    """A plain-text report of a metrics document."""
    parts = [
        f"{m['scenario'] or 'scenario'}: {m['time']:,.1f} simulated seconds, seed {m['seed']}\n\n"
    ]
    parts.append(
        _table(
            ["topic", "produced", "stored", "bytes stored", "events/s"],
            [
                [
                    n,
                    f"{t['produced']:,}",
                    f"{t['stored']:,}",
                    f"{t['bytes_stored']:,}",
                    f"{t['throughput']:,.1f}",
                ]
                for n, t in m["topics"].items()
            ],
        )
    )
    parts.append("\n")
    parts.append(
        _table(
            [
                "service",
                "status",
                "processed",
                "lag",
                "lag ms",
                "dead-lettered",
                "redelivered",
                "duplicates",
                "wait ms",
                "e2e p50",
                "e2e p95",
                "e2e p99",
            ],
            [
                [
                    n,
                    g["status"],
                    f"{g['processed']:,}",
                    f"{g['lag']:,}",
                    f"{g['lag_ms']:,.0f}",
                    f"{g['dead_lettered']:,}",
                    f"{g['redelivered']:,}",
                    f"{g['duplicates']:,}",
                    f"{g['wait_ms']['mean']:,.1f}",
                    f"{g['end_to_end_ms']['p50']:,.1f}",
                    f"{g['end_to_end_ms']['p95']:,.1f}",
                    f"{g['end_to_end_ms']['p99']:,.1f}",
                ]
                for n, g in m["groups"].items()
            ],
        )
    )
    return "".join(parts)
