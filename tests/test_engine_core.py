"""The scheduler, determinism and the engine's purity."""

from __future__ import annotations

import ast
import random
import subprocess
import sys
from pathlib import Path

from simulator import Scheduler, Simulation, parse_scenario
from tests.engine_helpers import run, scenario, trace

ROOT = Path(__file__).resolve().parent.parent


def test_same_time_actions_run_in_the_order_they_were_scheduled() -> None:
    s = Scheduler()
    log: list[tuple[str, float]] = []
    for name in "abc":
        s.at(1.0, lambda n: log.append((n, s.now)), name)
    s.at(0.5, lambda n: log.append((n, s.now)), "first")
    s.run_until(2.0)
    assert log == [("first", 0.5), ("a", 1.0), ("b", 1.0), ("c", 1.0)]
    assert s.now == 2.0


def test_run_until_can_be_called_again_and_again_in_slices() -> None:
    s = Scheduler()
    log: list[float] = []

    def tick(_: object) -> None:
        log.append(s.now)
        s.after(1.0, tick)

    s.at(0.0, tick)
    for t in (0.5, 1.0, 1.5, 3.0):
        s.run_until(t)
    assert log == [0.0, 1.0, 2.0, 3.0]
    assert s.now == 3.0


def test_exact_trace_with_constant_arrivals_and_processing() -> None:
    _, rec = run(scenario(), until=0.35)
    assert trace(rec) == [
        ("produced", 0.1, 1, ""),
        ("delivered", 0.1, 1, "email"),
        ("processed", 0.15, 1, "email"),
        ("produced", 0.2, 2, ""),
        ("delivered", 0.2, 2, "email"),
        ("processed", 0.25, 2, "email"),
        ("produced", 0.3, 3, ""),
        ("delivered", 0.3, 3, "email"),
        ("processed", 0.35, 3, "email"),
    ]


def test_exact_trace_on_a_fixed_seed_with_poisson_arrivals() -> None:
    doc = scenario(
        producers=[
            {
                "name": "checkout",
                "topic": "orders",
                "event": "OrderPlaced",
                "rate": 10,
                "arrival": "poisson",
            }
        ],
        consumers=[
            {
                "name": "email",
                "topics": ["orders"],
                "processing": {"dist": "exponential", "mean_ms": 50},
            }
        ],
    )
    _, rec = run(doc, until=0.5, seed=42)
    assert trace(rec, "produced", "processed") == [
        ("produced", 0.102006, 1, ""),
        ("processed", 0.103272, 1, "email"),
        ("produced", 0.134168, 2, ""),
        ("processed", 0.146798, 2, "email"),
        ("produced", 0.267528, 3, ""),
        ("processed", 0.323986, 3, "email"),
        ("produced", 0.490257, 4, ""),
        ("processed", 0.494804, 4, "email"),
    ]


def test_trace_follows_the_seeded_random_stream_draw_by_draw() -> None:
    """With an idle server, draws alternate: gap, service, gap, service, ... from one rng."""
    doc = scenario(
        producers=[
            {
                "name": "checkout",
                "topic": "orders",
                "event": "OrderPlaced",
                "rate": 10,
                "arrival": "poisson",
            }
        ],
        consumers=[
            {
                "name": "email",
                "topics": ["orders"],
                "processing": {"dist": "exponential", "mean_ms": 50},
            }
        ],
    )
    _, rec = run(doc, until=0.5, seed=42)
    rng = random.Random(42)
    t = 0.0
    expected = []
    for event_id in range(1, 5):
        t += rng.expovariate(10)
        done = t + rng.expovariate(1 / 0.05)
        expected += [
            ("produced", round(t, 6), event_id, ""),
            ("processed", round(done, 6), event_id, "email"),
        ]
    assert trace(rec, "produced", "processed") == expected


def test_same_scenario_and_seed_give_an_identical_trace() -> None:
    doc = parse_scenario(Path(ROOT / "simulator/presets/ecommerce.yaml").read_text())
    a, b = Simulation(doc, 11, trace=True), Simulation(doc, 11, trace=True)
    a.run_until(30)
    for t in (5, 10.5, 17, 30):  # slices must not matter
        b.run_until(t)
    assert a.snapshot() == b.snapshot()
    assert a.tracer is not None and b.tracer is not None
    ids = a.tracer.correlation_ids()
    assert ids == b.tracer.correlation_ids()
    assert [a.trace(i) for i in ids[-20:]] == [b.trace(i) for i in ids[-20:]]


def test_a_different_seed_gives_a_different_run() -> None:
    doc = parse_scenario(Path(ROOT / "simulator/presets/ecommerce.yaml").read_text())
    a, b = Simulation(doc, 1), Simulation(doc, 2)
    a.run_until(10)
    b.run_until(10)
    assert a.snapshot()["topics"] != b.snapshot()["topics"]


FORBIDDEN_IMPORTS = {"django", "channels", "asyncio", "time", "datetime", "daphne", "threading"}


def test_simulator_imports_no_framework_and_never_reads_the_wall_clock() -> None:
    for path in sorted((ROOT / "simulator").rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in FORBIDDEN_IMPORTS, f"{path}: imports {name}"
            # module-level random functions are shared global state: never use them
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                assert not (node.value.id == "random" and node.attr != "Random"), (
                    f"{path}:{node.lineno}: uses random.{node.attr}; use the simulation's rng"
                )


def test_running_a_scenario_loads_no_framework_module() -> None:
    code = (
        "import sys, simulator\n"
        "from simulator.cli import main\n"
        "import io\n"
        "main(['run', 'ecommerce', '--until', '5', '--json'], out=io.StringIO())\n"
        "bad = [m for m in ('django', 'channels', 'asyncio') if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == ""
