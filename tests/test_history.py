"""History for everyone: a full frame carries every chart's series, sampled by the engine,
aligned on one time column, bounded, and equal to what the frames carried live."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from dashboard.frames import RunState, compare_state, state
from dashboard.runner import make_runner
from dashboard.services import MAX_FRAME_BYTES
from simulator import Simulation, load_scenario, parse_scenario, replay
from simulator.charts import HISTORY_ROWS, HISTORY_VALUES, comparison_history, simulation_history
from simulator.compare import Comparison

DOC: dict[str, Any] = {
    "seed": 9,
    "duration": 800,
    "topics": [{"name": "orders", "partitions": 2}, {"name": "payments", "partitions": 1}],
    "producers": [
        {"name": "checkout", "topic": "orders", "event": "OrderPlaced", "rate": 20},
        {"name": "billing", "topic": "payments", "event": "PaymentTaken", "rate": 5},
    ],
    "consumers": [
        {
            "name": "email",
            "topics": ["orders"],
            "processing": {"dist": "exponential", "mean_ms": 30},
        },
        {
            "name": "ledger",
            "delivery": "queue",
            "topics": ["payments", "orders"],
            "processing": {"dist": "lognormal", "mean_ms": 20},
        },
    ],
    "faults": [
        {"at": 12, "consumer": "email", "action": "down"},
        {"at": 20, "consumer": "email", "action": "up"},
    ],
}


def columns(series: dict[str, Any]) -> dict[str, list[Any]]:
    return {k: v for k, v in series.items() if isinstance(v, list)}


def test_a_late_joiner_gets_every_chart_as_the_frames_carried_it_live() -> None:
    sim = Simulation(parse_scenario(DOC), chart_history=True)
    live: dict[float, dict[str, Any]] = {}
    for t in range(1, 41):
        sim.run_until(t)
        live[float(t)] = state(sim, RunState("x"), latency=True)
    h = simulation_history(sim)
    assert h["t"] == [float(t) for t in range(1, 41)] and h["interval"] == 1.0
    assert h["stride"] == 1
    assert set(h["groups"]) == {"email", "ledger"} and set(h["topics"]) == {"orders", "payments"}
    for series in [*h["groups"].values(), *h["topics"].values()]:
        assert all(len(col) == len(h["t"]) for col in columns(series).values())
    for name, series in h["groups"].items():
        assert set(series) == {"lag", "lag_ms", "throughput", "p50", "p95", "p99"}
        for i, t in enumerate(h["t"]):
            g = live[t]["groups"][name]
            assert series["lag"][i] == g["lag"]
            assert series["lag_ms"][i] == pytest.approx(g["lag_ms"], abs=0.5)
            assert series["throughput"][i] == pytest.approx(g["throughput"], abs=0.005)
            e2e = g["end_to_end_ms"]
            for p in ("p50", "p95", "p99"):
                if e2e["count"]:
                    assert series[p][i] == pytest.approx(e2e[p], abs=0.05)
                else:
                    assert series[p][i] is None
    for name, series in h["topics"].items():
        for i, t in enumerate(h["t"]):
            assert series["throughput"][i] == pytest.approx(
                live[t]["topics"][name]["throughput"], abs=0.005
            )
    # the fault markers come with it
    marks = {(m["t"], m["name"], m["status"]) for m in h["marks"]}
    assert {(12, "email", "down"), (20, "email", "rebalancing"), (23, "email", "up")} <= marks


def test_a_long_run_keeps_the_latest_six_hundred_samples() -> None:
    sim = Simulation(parse_scenario(DOC), chart_history=True)
    sim.run_until(700)
    h = simulation_history(sim)
    assert len(h["t"]) == HISTORY_ROWS and h["t"][0] == 101 and h["t"][-1] == 700
    assert all(len(col) == HISTORY_ROWS for col in columns(h["groups"]["email"]).values())
    assert h["marks"] == []  # the faults at t = 12 and 20 are before the window
    # the first row's throughput is counted from the sample before the window, as live
    assert h["groups"]["email"]["throughput"][0] is not None


def test_a_run_with_many_services_thins_its_history_to_the_budget() -> None:
    doc = copy.deepcopy(DOC)
    doc["producers"][0]["rate"] = 2
    doc["consumers"] = [
        {"name": f"svc-{i:02}", "topics": ["orders"], "processing": {"mean_ms": 5}}
        for i in range(40)
    ]
    doc["faults"] = []
    sim = Simulation(parse_scenario(doc), chart_history=True)
    sim.run_until(650)
    h = simulation_history(sim)
    values = sum(
        len(c) for s in [*h["groups"].values(), *h["topics"].values()] for c in columns(s).values()
    )
    assert h["stride"] > 1 and values <= HISTORY_VALUES
    assert h["t"][-1] == 650 and h["t"][-1] - h["t"][-2] == h["stride"]
    assert len(json.dumps(h)) < MAX_FRAME_BYTES // 2


def test_a_rebuild_samples_the_same_history() -> None:
    scenario = parse_scenario(DOC)
    sim = Simulation(scenario, chart_history=True)
    sim.run_until(15)
    sim.apply({"command": "consumer.slow", "consumer": "ledger", "value": 3})
    sim.run_until(30)
    again = replay(scenario, scenario.seed, sim.command_log, 30, chart_history=True)
    assert simulation_history(again) == simulation_history(sim)


def test_a_comparison_history_has_both_sides_response_times_errors_and_lags() -> None:
    cmp = Comparison(load_scenario("simulator/presets/sync-vs-events.yaml"), 11)
    live: dict[float, dict[str, Any]] = {}
    for t in range(1, 31):
        if t == 10:
            cmp.apply({"command": "consumer.down", "consumer": "email"})
        cmp.run_until(t)
        live[float(t)] = compare_state(cmp, RunState("x"))
    h = comparison_history(cmp)
    assert h["t"] == [float(t) for t in range(1, 31)]
    for side in ("sync", "events"):
        assert set(h[side]) == {"p50", "p95", "p99", "error_pct"}
        for i, t in enumerate(h["t"]):
            recent = live[t][side]["recent_checkout_ms"]
            for p in ("p50", "p95", "p99"):
                expected = recent[p] if recent["count"] else None
                assert h[side][p][i] == pytest.approx(expected, abs=0.05)
            assert h[side]["error_pct"][i] == pytest.approx(
                live[t][side]["recent_error_rate"] * 100, abs=0.05
            )
    assert max(h["sync"]["error_pct"]) == 100 and max(h["events"]["error_pct"]) == 0
    for name in ("inventory", "email"):
        lags = h["groups"][name]["lag"]
        assert lags == [live[t]["events"]["groups"][name]["lag"] for t in h["t"]]
    assert any(m["name"] == "email" and m["status"] == "down" for m in h["marks"])


async def test_a_full_frame_carries_the_history_and_stays_within_the_frame_budget() -> None:
    runner = make_runner("h1", copy.deepcopy(DOC), DOC["seed"])
    runner.execute({"command": "step", "value": 30})
    while runner.run.stepping_to is not None:
        runner._step_on(1.0)
    text = runner.full_frame()
    frame = json.loads(text)
    assert len(text) < MAX_FRAME_BYTES
    h = frame["history"]
    assert len(h["t"]) == 30 and set(h["groups"]) == {"email", "ledger"}
    assert h["groups"]["email"]["p95"][-1] is not None  # the live runner samples percentiles
