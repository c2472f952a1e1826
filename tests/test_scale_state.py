"""The 300-service view: the compact state carries what the table shows (instances, throughput,
lag, p95), and the charts get the top services plus one aggregate of the others, within the
frame budget."""

from __future__ import annotations

import copy
import json
from typing import Any

from dashboard.frames import RunState, build_frame, state
from dashboard.runner import make_runner
from dashboard.services import MAX_FRAME_BYTES
from simulator import Simulation, parse_scenario
from simulator.charts import HISTORY_VALUES, TOP_SERVICES, simulation_history
from simulator.lessons import lesson


def scale_doc(rate: float | None = None) -> dict[str, Any]:
    found = lesson("scale")
    assert found is not None
    doc = copy.deepcopy(found.live_doc())
    if rate is not None:
        doc["producers"][0]["rate"] = rate
    return doc


def test_the_compact_table_gets_instances_throughput_and_p95_for_every_service() -> None:
    runner = make_runner("s1", scale_doc(), 4)
    runner.execute({"command": "step", "value": 10})
    while runner.run.stepping_to is not None:
        runner._step_on(1.0)
    st = runner.current_state()
    assert st["compact"] is True and len(st["groups"]) == 300
    for g in st["groups"].values():
        assert (g["instances_alive"], g["instances_total"]) == (1, 1)
        assert g["throughput"] > 0
        assert g["end_to_end_p95_ms"] > 0
        assert g["processed"] > 0
    runner.execute({"command": "consumer.crash", "consumer": "maps-03"})
    runner.execute({"command": "step", "value": 8})
    while runner.run.stepping_to is not None:
        runner._step_on(1.0)
    st = runner.current_state()
    crashed = st["groups"]["maps-03"]
    assert (crashed["status"], crashed["instances_alive"], crashed["instances_total"]) == (
        "crashed",
        0,
        1,
    )
    assert crashed["throughput"] == 0
    # the charts' top services put the one that falls behind first
    assert st["top"]["services"][0] == "maps-03"


def test_the_top_services_and_the_others_add_up_to_the_whole_system() -> None:
    sim = Simulation(parse_scenario(scale_doc()), chart_history=True)
    sim.run_until(12)
    st = state(sim, RunState("x"), latency=False)
    top, groups = st["top"], st["groups"]
    assert top["by"] == "lag" and len(top["services"]) == TOP_SERVICES
    others = top["others"]
    assert others["services"] == 300 - TOP_SERVICES
    chosen = set(top["services"])
    rest = [g for name, g in groups.items() if name not in chosen]
    assert others["lag"] == sum(g["lag"] for g in rest)
    assert others["processed"] == sum(g["processed"] for g in rest)
    assert others["throughput"] == round(sum(g["throughput"] for g in rest), 3)
    # while nothing lags, the set holds still (the scenario's first services), frame to frame
    assert top["services"] == list(groups)[:TOP_SERVICES]
    sim.run_until(12.5)
    assert state(sim, RunState("x"), latency=False)["top"]["services"] == top["services"]


def test_a_compact_history_charts_the_top_services_and_one_series_for_the_others() -> None:
    sim = Simulation(parse_scenario(scale_doc()), chart_history=True)
    live = {}
    for t in range(1, 16):
        sim.run_until(t)
        live[float(t)] = state(sim, RunState("x"), latency=False)
    h = simulation_history(sim)
    assert h["top"] == live[15.0]["top"]["services"] and set(h["groups"]) == set(h["top"])
    others = h["others"]
    assert others["services"] == 300 - TOP_SERVICES
    assert all(len(others[k]) == len(h["t"]) for k in ("lag", "lag_ms", "throughput"))
    # with the same top services, equal to what the frames carried live
    for i, t in enumerate(h["t"]):
        if live[t]["top"]["services"] != h["top"]:
            continue
        frame = live[t]["top"]["others"]
        assert others["lag"][i] == frame["lag"]
        assert others["throughput"][i] == round(frame["throughput"], 2)
        assert abs(others["lag_ms"][i] - frame["lag_ms"]) <= 0.5


def test_a_long_300_service_run_keeps_its_frames_within_the_budget() -> None:
    doc = scale_doc(rate=2)
    doc["duration"] = 900
    sim = Simulation(parse_scenario(doc), trace=True, chart_history=True)
    sim.run_until(650)
    regular = json.dumps(build_frame(sim, RunState("x"), None, 1, latency=True))
    full = json.dumps(build_frame(sim, RunState("x"), None, 1, full=True))
    assert len(regular) < 100_000
    assert len(full) < MAX_FRAME_BYTES // 2
    h = json.loads(full)["history"]
    series = [*h["groups"].values(), *h["topics"].values(), h["others"]]
    values = sum(len(v) for s in series for v in s.values() if isinstance(v, list))
    assert values <= HISTORY_VALUES and len(h["t"]) * h["stride"] >= 599


def test_a_run_that_does_not_sample_percentiles_says_none_rather_than_a_stale_figure() -> None:
    sim = Simulation(parse_scenario(scale_doc()))  # the CLI's and the lessons' fast-forward
    sim.run_until(5)
    g = state(sim, RunState("x"), latency=False)["groups"]["pricing-01"]
    assert g["end_to_end_p95_ms"] is None and g["throughput"] > 0


def test_healthy_services_have_lag_until_a_commit_but_no_backlog_a_slowed_one_has_both() -> None:
    # Kafka's consumer lag counts what is processed and waits for the next auto-commit (5 s of
    # trips); the grid's amber and the "furthest behind" list go by the backlog, what is not
    # yet processed, so they pick out the one service that really fell behind
    sim = Simulation(parse_scenario(scale_doc()), 4)
    sim.run_until(20.0)
    sim.apply({"command": "consumer.slow", "consumer": "maps-03", "value": 50})
    sim.run_until(28.0)
    groups = sim.snapshot(compact=True)["groups"]
    with_lag = [n for n, g in groups.items() if g["lag"] > 5]
    with_backlog = [n for n, g in groups.items() if g["backlog"] > 5]
    assert len(with_lag) > 100  # auto-commit: most of 300 healthy services
    assert with_backlog == ["maps-03"]
    assert groups["maps-03"]["backlog"] <= groups["maps-03"]["lag"]
    # a queue forgets what is acknowledged: its backlog is its lag
    doc = scale_doc()
    doc["consumers"] = [{**doc["consumers"][0], "delivery": "queue"}]
    queue = Simulation(parse_scenario(doc), 4)
    queue.run_until(5.0)
    g = queue.snapshot()["groups"][doc["consumers"][0]["name"]]
    assert g["backlog"] == g["lag"]
