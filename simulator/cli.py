"""``python -m simulator``: run a scenario headless and print what happened."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from .scenario import LIMITS, MAX_TEXT, Scenario, ScenarioError, load_scenario, parse_scenario
from .simulation import Simulation

PRESETS = Path(__file__).parent / "presets"
EXIT_BAD_SCENARIO = 2
MAX_SEED = 2**63 - 1
# What a hostile or broken input can raise while it is parsed or run. Each becomes exit 2 and
# one line on stderr, never a traceback. (A scenario's own problems are ScenarioErrors; a
# fault whose value a command refuses is a CommandError, which is a ValueError.)
BAD_INPUT_ERRORS = (
    ScenarioError,
    ValueError,
    RecursionError,
    OverflowError,
    UnicodeDecodeError,
    MemoryError,
)


class InputError(Exception):
    """A file or option the CLI refuses; the message is one line, for stderr."""


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


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESETS.glob("*.yaml"))


def resolve(file: str) -> Path:
    """A path, or the name of a preset (``ecommerce`` -> ``presets/ecommerce.yaml``).

    Only a bare name (no separator, no suffix, not ``..``) is looked up as a preset, and only
    by matching the names of the files in ``presets/``: a name never builds a path that could
    leave that directory. Anything else is the user's own path, used as given.
    """
    path = Path(file)
    separators = {"/", os.sep, os.altsep or "/"}
    is_bare = not any(s in file for s in separators) and not path.suffix and ".." not in file
    if not is_bare or path.is_file():
        return path
    names = preset_names()
    if file in names:
        return PRESETS / f"{file}.yaml"
    raise InputError(
        f"no scenario file or preset named {file!r}; the presets are: {', '.join(names)}"
    )


def read_scenario(path: Path) -> Scenario:
    """Read at most MAX_TEXT bytes (``/dev/zero`` is not read to the end) and parse them."""
    try:
        with path.open("rb") as f:
            data = f.read(MAX_TEXT + 1)
    except FileNotFoundError:
        raise InputError("no such file") from None
    except IsADirectoryError:
        raise InputError("is a directory, not a scenario file") from None
    except OSError as e:
        raise InputError(f"cannot read it: {e.strerror or e}") from None
    if len(data) > MAX_TEXT:
        raise InputError(f"the file is larger than the limit of {MAX_TEXT:,} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError("the file is not UTF-8 text") from None
    return parse_scenario(text)


def _one_line(e: BaseException) -> str:
    """A short, single-line description of an error from a bad input."""
    if isinstance(e, RecursionError):
        return "the document is nested too deeply"
    if isinstance(e, MemoryError):
        return "the input needs more memory than there is"
    lines = str(e).strip().splitlines()
    text = lines[0] if lines else type(e).__name__
    return text if len(text) <= 300 else text[:300] + "..."


def _check_options(args: argparse.Namespace) -> None:
    if args.seed is not None and not 0 <= args.seed <= MAX_SEED:
        raise InputError(f"--seed must be between 0 and {MAX_SEED} (2**63-1), not {args.seed}")
    until = args.until
    if until is not None and not (math.isfinite(until) and 0 < until <= LIMITS["duration"]):
        raise InputError(
            f"--until must be a number of simulated seconds, > 0 and at most "
            f"{LIMITS['duration']:,}, not {until}"
        )


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
        _check_options(args)
    except InputError as e:
        err.write(f"error: {e}\n")
        return EXIT_BAD_SCENARIO
    try:
        scenario = read_scenario(resolve(args.file))
        until = args.until if args.until is not None else scenario.duration
        if args.cmd == "compare":
            return _compare(args, scenario, until, out, err)
        return _run(args, scenario, until, out, err)
    except ScenarioError as e:
        err.write(f"error: {args.file}: the scenario is not valid\n")
        for where, message in e.errors:
            err.write(f"  {where}: {message}\n" if where else f"  {message}\n")
        return EXIT_BAD_SCENARIO
    except InputError as e:
        err.write(f"error: {args.file}: {e}\n")
        return EXIT_BAD_SCENARIO
    except BAD_INPUT_ERRORS as e:
        err.write(f"error: {args.file}: {_one_line(e)}\n")
        return EXIT_BAD_SCENARIO


def _run(
    args: argparse.Namespace, scenario: Scenario, until: float, out: TextIO, err: TextIO
) -> int:
    sim = Simulation(scenario, seed=args.seed)
    show_progress = err.isatty() and not args.json
    steps = 50
    try:
        for i in range(1, steps + 1):
            sim.run_until(until * i / steps)
            if show_progress:
                _progress(err, i / steps, sim)
    finally:
        if show_progress:
            err.write("\n")  # an error message, if any, goes under the progress bar
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
