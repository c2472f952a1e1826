"""The narrative (``state.story``): sentences computed from the present figures, which flip
when the figures do, and never contradict them."""

from __future__ import annotations

import re
from typing import Any

import pytest

from dashboard.frames import RunState, compare_state, state
from simulator import Simulation, load_scenario, parse_scenario
from simulator.compare import Comparison
from simulator.story import (
    STORY_MAX,
    Call,
    CompareFigures,
    Consumer,
    Side,
    comparison_story,
    tell_comparison,
    tell_simulation,
)

PRESET = "simulator/presets/sync-vs-events.yaml"


def told(commands: list[tuple[float, dict[str, Any]]], until: float) -> list[dict[str, str]]:
    """The comparison's story at ``until``, after ``commands`` (time, command)."""
    cmp = Comparison(load_scenario(PRESET), 11)
    for t, command in commands:
        cmp.run_until(t)
        cmp.apply(command)
    cmp.run_until(until)
    return comparison_story(cmp, cmp.state())


def texts(story: list[dict[str, str]]) -> list[str]:
    return [line["text"] for line in story]


EMAIL_DOWN = (10.0, {"command": "consumer.down", "consumer": "email"})


def test_with_email_up_the_story_is_one_healthy_sentence_with_both_times() -> None:
    story = told([], 30)
    assert len(story) == 1 and story[0]["level"] == "ok"
    assert re.fullmatch(
        r"All services healthy: synchronous checkout takes [\d.]+ ms \(p50\), waiting for "
        r"Inventory and Email; event-driven [\d.]+ ms, waiting for the broker only\.",
        story[0]["text"],
    )


def test_with_email_down_the_failing_checkouts_come_first_and_the_broker_keeps_the_orders() -> None:
    story = told([EMAIL_DOWN], 30)
    assert story[0] == {
        "level": "bad",
        "text": "Synchronous: 100% of the checkouts of the last 5 s failed: Email is down and "
        "checkout calls it for every order.",
    }
    email = next(t for t in texts(story) if t.startswith("Email is down"))
    assert re.fullmatch(
        r"Email is down: orders wait in the broker for it \(lag [\d,]+, growing [\d.]+/s\); "
        r"nothing is lost, it reads them when it is back\.",
        email,
    )
    assert not any("healthy" in t for t in texts(story))
    # the event side is fine, and says so with its own figure
    assert any(t.startswith("Event-driven: checkout takes") for t in texts(story))


def test_when_every_call_fails_errors_dominate_and_no_side_is_called_healthy_or_fast() -> None:
    story = told([(10, {"command": "consumer.failure_rate", "consumer": "email", "value": 1})], 30)
    assert story[0]["level"] == "bad"
    assert story[0]["text"] == (
        "Synchronous: 100% of the checkouts of the last 5 s failed: Email fails 100% of its calls."
    )
    assert not any("healthy" in t for t in texts(story))
    # the synchronous side's p50 (fast failures) is not shown as its speed
    assert not any(t.startswith("Synchronous: checkout takes") for t in texts(story))


def test_a_consumer_slower_than_the_orders_says_its_lag_grows_with_the_measured_rates() -> None:
    story = told([(10, {"command": "consumer.delay", "consumer": "email", "value": 500})], 30)
    line = next(t for t in texts(story) if t.startswith("Email's lag grows"))
    m = re.fullmatch(
        r"Email's lag grows ([\d.]+)/s: it can do ([\d.]+)/s, orders arrive at ([\d.]+)/s\.",
        line,
    )
    assert m, line
    growth, capacity, arrival = (float(x) for x in m.groups())
    # two instances, 40 ms + 500 ms a call: 3.7 a second
    assert capacity == pytest.approx(2 * 1000 / 540, abs=0.15)
    assert growth == pytest.approx(arrival - capacity, rel=0.25)
    # the synchronous side saturates: explained with its numbers
    assert any(
        re.fullmatch(
            r"Synchronous: Email can answer 3.7/s \(2 instances, 540 ms a call\) but checkout "
            r"calls it up to 20 times a second: calls queue \([\d,]+ waiting\) and time out "
            r"after 2,000 ms\.",
            t,
        )
        for t in texts(story)
    )


def test_a_consumer_back_to_speed_says_at_what_rate_it_catches_up_and_when() -> None:
    slow = (10.0, {"command": "consumer.delay", "consumer": "email", "value": 500})
    fast = (25.0, {"command": "consumer.delay", "consumer": "email", "value": 0})
    cmp = Comparison(load_scenario(PRESET), 11)
    for t, command in (slow, fast):
        cmp.run_until(t)
        cmp.apply(command)
    seen = []
    for t in range(26, 50):
        cmp.run_until(t)
        seen += [
            line for line in comparison_story(cmp, cmp.state()) if "catching up" in line["text"]
        ]
    assert seen, "no catching-up sentence while Email worked through its backlog"
    assert all(line["level"] == "ok" for line in seen)
    assert re.fullmatch(
        r"Email is catching up: its lag of [\d,]+ falls [\d.]+/s, up to date in about \d+ s\.",
        seen[0]["text"],
    )


def test_a_small_slowdown_the_chain_absorbs_is_not_called_healthy() -> None:
    story = told([(10, {"command": "consumer.delay", "consumer": "email", "value": 30})], 30)
    assert not any("healthy" in t for t in texts(story))
    sync = next(line for line in story if line["text"].startswith("Synchronous"))
    assert sync["level"] == "warn"
    assert sync["text"].endswith("it waits for Email (+30 ms a call) on every order.")


def test_a_comparison_state_carries_its_story() -> None:
    cmp = Comparison(load_scenario(PRESET), 11)
    st = compare_state(cmp, RunState("x"))
    assert st["story"] == [
        {
            "level": "ok",
            "text": "Same orders, same services, same luck on both sides: start the run, then "
            "flip a switch.",
        }
    ]


# --- the rules, with figures made up for them ------------------------------------------------


def figures(**changes: Any) -> CompareFigures:
    base: dict[str, Any] = {
        "t": 30.0,
        "orders": 600,
        "rate": 20.0,
        "sync": Side(error_rate=0.0, count=100, p50_ms=85.0),
        "events": Side(error_rate=0.0, count=100, p50_ms=14.0),
        "chain": [Call("Inventory", "up", 2, 30, 0.0, 0), Call("Email", "up", 2, 40, 0.0, 0)],
        "consumers": [],
        "timeout_ms": 2000.0,
    }
    base.update(changes)
    return CompareFigures(**base)


def email(**changes: Any) -> Consumer:
    base: dict[str, Any] = {
        "name": "Email",
        "status": "up",
        "lag": 1234,
        "growth": 16.04,
        "capacity": 3.72,
        "arrival": 20.0,
        "done_rate": 3.9,
        "floor": 1200,
    }
    base.update(changes)
    return Consumer(**base)


def test_errors_dominate_above_half_of_the_recent_checkouts() -> None:
    below = tell_comparison(figures(sync=Side(0.49, 100, 90.0)))
    above = tell_comparison(figures(sync=Side(0.51, 100, 90.0)))
    assert below[0]["text"].startswith("Synchronous: 49% of recent checkouts fail")
    assert above[0]["text"].startswith("Synchronous: 51% of the checkouts of the last 5 s failed")
    assert not any("healthy" in t for t in texts(below) + texts(above))


def test_figures_are_written_with_units_separators_and_plurals() -> None:
    line = tell_simulation([email()])[0]["text"]
    assert line == "Email's lag grows 16/s: it can do 3.7/s, events arrive at 20/s."
    behind = tell_simulation([email(growth=0.3, done_rate=20.0)])[0]["text"]
    assert behind == "Email is behind: 1,234 events to read (lag)."
    one = tell_comparison(figures(sync_changes=1, added=["Fraud"]))
    two = tell_comparison(figures(sync_changes=2, added=["Fraud", "Audit"]))
    assert "(1 change)" in texts(one)[-1] and "(2 changes)" in texts(two)[-1]
    assert texts(two)[-1].startswith(
        "Fraud and Audit were added: synchronous checkout's code had to change to call them"
    )


def test_a_lag_that_moves_with_the_commits_but_not_the_flow_says_nothing() -> None:
    # the lag's floor rose, but what it finished kept pace with what arrived: noise
    noise = email(growth=6.0, done_rate=19.8, lag=80, floor=12)
    assert texts(tell_simulation([noise])) == ["Every service keeps up with what arrives."]
    # a real backlog whose growth the flow does not confirm: its size, no rate
    assert texts(tell_simulation([email(done_rate=19.8)])) == [
        "Email is behind: 1,234 events to read (lag)."
    ]


def test_the_story_is_at_most_five_sentences_worst_first() -> None:
    down = [email(name=f"Service {i}", status="down", growth=20.0) for i in range(8)]
    story = tell_comparison(
        figures(
            consumers=down, sync=Side(0.9, 100, 40.0), chain=[Call("Email", "down", 2, 40, 0, 0)]
        )
    )
    assert len(story) == STORY_MAX
    levels = [line["level"] for line in story]
    assert levels == sorted(levels, key=["bad", "warn", "ok"].index)
    assert story[0]["text"].startswith("Synchronous: 90% of the checkouts of the last 5 s failed")


# --- the simulation page ----------------------------------------------------------------------


SIM: dict[str, Any] = {
    "seed": 2,
    "duration": 120,
    "topics": [{"name": "orders", "partitions": 2}],
    "producers": [{"name": "checkout", "topic": "orders", "event": "OrderPlaced", "rate": 20}],
    "consumers": [
        {
            "name": "payment",
            "topics": ["orders"],
            "processing": {"dist": "exponential", "mean_ms": 10},
            "retry": {"max_attempts": 2, "backoff_ms": 10},
        },
    ],
}


def test_a_simulation_says_when_a_service_is_down_and_when_it_dead_letters() -> None:
    sim = Simulation(parse_scenario(SIM), chart_history=True)
    sim.run_until(20)
    assert texts(state(sim, RunState("x"))["story"]) == [
        "Every service keeps up with what arrives."
    ]
    sim.apply({"command": "consumer.down", "consumer": "payment"})
    sim.run_until(40)
    (line,) = state(sim, RunState("x"))["story"]
    assert re.fullmatch(
        r"Payment is down: events wait in the broker for it \(lag [\d,]+, growing [\d.]+/s\); "
        r"nothing is lost, it reads them when it is back\.",
        line["text"],
    )
    sim.apply({"command": "consumer.up", "consumer": "payment"})
    sim.apply({"command": "consumer.failure_rate", "consumer": "payment", "value": 1})
    sim.run_until(70)
    story = state(sim, RunState("x"))["story"]
    assert story[0]["level"] == "bad"
    assert re.fullmatch(
        r"Payment dead-letters [\d.]+/s \([\d,]+ so far\): those events wait in its dead-letter "
        r"topic until someone redrives them\.",
        story[0]["text"],
    )
