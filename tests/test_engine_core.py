"""The scheduler, determinism and the engine's purity."""

from __future__ import annotations

import ast
import random
import subprocess
import sys
from pathlib import Path

import pytest

from simulator import Observer, Scheduler, Simulation, load_scenario, parse_scenario
from simulator.groups import ConsumerGroup
from simulator.observe import Sink
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
                "client_overhead_ms": 0,
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
                "client_overhead_ms": 0,
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


def test_cancel_drops_only_the_named_pending_action() -> None:
    s = Scheduler()
    log: list[str] = []
    a, b = object(), object()
    s.at(1.0, lambda _: log.append("a"), a)
    s.at(2.0, lambda _: log.append("b"), b)
    s.at(3.0, lambda _: log.append("late"), None)
    keep_a = s._queue[0][2]
    assert s.cancel(keep_a, b) == 0  # same action, other argument: nothing to drop
    drop_b = next(e[2] for e in s._queue if e[3] is b)
    assert s.cancel(drop_b, b) == 1
    s.run_until(5.0)
    assert log == ["a", "late"]


class _Sinks(Observer):
    """Takes every per-event measure through sinks, never through a per-event hook."""

    def __init__(self) -> None:
        self.values: dict[tuple[str, str], list[float]] = {}

    def measure(self, group: ConsumerGroup, name: str) -> Sink | None:
        return self.values.setdefault((group.name, name), []).append


def test_an_observer_sink_receives_every_latency_value_of_a_group() -> None:
    sinks = _Sinks()
    sim = Simulation(parse_scenario(scenario()), observers=(sinks,))
    sim.run_until(10.05)
    email = sim.metrics()["groups"]["email"]
    e2e = sinks.values[("email", "end_to_end_ms")]
    assert len(e2e) == email["processed"] == 100
    assert sum(e2e) / len(e2e) == pytest.approx(email["end_to_end_ms"]["mean"], abs=1e-3)
    assert sinks.values[("email", "wait_ms")] == [0.0] * 100  # never waits at 10/s, 50 ms
    assert sinks.values[("email", "processing_ms")] == pytest.approx([50.0] * 100)


class _Silent(Observer):
    """Overrides the per-event hooks and does nothing: the engine must take its full path."""

    def delivered(self, *args: object) -> None:
        pass

    def processed(self, *args: object) -> None:
        pass


@pytest.mark.parametrize("preset", ["ecommerce", "email-outage", "lesson-outage", "basic"])
def test_a_run_is_the_same_whether_or_not_anyone_watches_each_event(preset: str) -> None:
    """With no per-event hook the engine takes a fast lane; it must not change a single figure."""
    doc = load_scenario(ROOT / "simulator" / "presets" / f"{preset}.yaml")
    fast = Simulation(doc, seed=11)
    full = Simulation(doc, seed=11, observers=(_Silent(),))
    assert any(g._lane for g in fast.groups.values())
    assert not any(g._lane for g in full.groups.values())
    for t in (5.0, 17.5, 40.0, 90.0):
        fast.run_until(t)
        full.run_until(t)
        if t == 17.5:
            for sim in (fast, full):  # a crash and a slow-down mid-run, on both
                name = sorted(sim.groups)[0]
                sim.apply({"command": "consumer.crash", "consumer": name})
                sim.apply(
                    {"command": "consumer.slow", "consumer": sorted(sim.groups)[-1], "value": 3}
                )
        assert fast.metrics() == full.metrics()
        assert fast.snapshot() == full.snapshot()


def test_the_library_example_in_docs_engine_md_runs_and_sees_the_outage(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    text = (ROOT / "docs" / "engine.md").read_text()
    code = text.split("```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(ROOT)
    exec(compile(code, "docs/engine.md", "exec"), {"__name__": "docs_example"})
    lag, placed = map(int, capsys.readouterr().out.split())
    assert lag > 0 and placed > 0  # notification was down for 30 s: its lag grew
