"""Spring Kafka's non-blocking retries (``retry.topics``): a failed record goes to
``<topic>-retry-N`` and its partition moves on; the retry consumers take it when it is due;
after the last attempt, ``<topic>-dlt``. Against blocking retries, in the same run, the order
of processing flips: that is the lesson.

Three events at t=0.05, 100 ms each; event 2 fails its first attempt (failure_rate 1 between
t=0.12 and t=0.16, when only event 2 starts)."""

from __future__ import annotations

from typing import Any

import pytest

from simulator import ScenarioError, Simulation, parse_scenario
from tests.engine_helpers import burst, consumer, run, scenario


def _doc(topics: bool, max_attempts: int = 3, **fields: Any) -> dict[str, Any]:
    retry = {"max_attempts": max_attempts, "backoff_ms": 1000, "backoff": "fixed", "topics": topics}
    processing = {"dist": "constant", "mean_ms": 100}
    return scenario(
        producers=[burst(3)], consumers=[consumer(retry=retry, processing=processing, **fields)]
    )


def _fail_event_2(doc: dict[str, Any]) -> tuple[Simulation, Any]:
    sim, rec = run(doc, until=0.12)
    sim.apply({"command": "consumer.failure_rate", "consumer": "email", "value": 1})
    sim.run_until(0.16)
    sim.apply({"command": "consumer.failure_rate", "consumer": "email", "value": 0})
    sim.run_until(5)
    return sim, rec


def _processed(rec: Any) -> list[tuple[float, int, int]]:
    return [(round(o.t, 6), o.event_id, o.instance) for o in rec.log if o.kind == "processed"]


def _balanced(sim: Simulation) -> bool:
    acc = sim.groups["email"].accounting()
    return acc["produced"] == sum(v for k, v in acc.items() if k != "produced")


def test_with_retry_topics_the_partition_moves_on_and_the_retry_comes_later() -> None:
    sim, rec = _fail_event_2(_doc(topics=True))
    # event 3 right after event 2's failure; event 2 by the retry consumer (instance 1000)
    # once its backoff is over: out of order
    assert _processed(rec) == [(0.15, 1, 0), (0.35, 3, 0), (1.35, 2, 1000)]
    (waited,) = sim.read_records("orders-retry-0")["records"]
    assert waited["id"] == 2
    assert waited["headers"]["retry_topic-backoff-timestamp"] == 1250
    assert waited["headers"]["retry_topic-attempts"] == 2
    assert _balanced(sim)


def test_blocking_retries_hold_the_partition_in_the_same_run() -> None:
    sim, rec = _fail_event_2(_doc(topics=False))
    assert _processed(rec) == [(0.15, 1, 0), (1.35, 2, 0), (1.45, 3, 0)]
    assert sim.snapshot()["retry_topics"] == {}
    assert _balanced(sim)


def test_one_retry_topic_per_attempt_then_the_dlt() -> None:
    doc = _doc(topics=True, failure_rate=1.0)
    sim, rec = run(doc, until=5)
    assert sorted(sim.snapshot()["retry_topics"]) == ["orders-retry-0", "orders-retry-1"]
    letters = sim.groups["email"].dead_letters
    assert [(d.record[0], d.attempts, d.destination) for d in letters] == [
        (1, 3, "orders-dlt"),
        (2, 3, "orders-dlt"),
        (3, 3, "orders-dlt"),
    ]
    assert sim.group_state(sim.groups["email"])["dead_letter_destination"] == "orders-dlt"
    failed = [(round(o.t, 6), o.event_id) for o in rec.log if o.kind == "failed"]
    # the main partition fails all three in 300 ms; each retry comes 1 s after the last failure
    assert failed[:3] == [(0.15, 1), (0.25, 2), (0.35, 3)]
    assert failed[3:6] == [(1.25, 1), (1.35, 2), (1.45, 3)]
    assert failed[6:] == [(2.35, 1), (2.45, 2), (2.55, 3)]
    assert _balanced(sim)


def test_a_waiting_retry_shows_in_the_state_and_in_words() -> None:
    sim, _ = run(_doc(topics=True, failure_rate=1.0), until=0.5)
    state = sim.group_state(sim.groups["email"])
    assert state["retrying"] == 3
    assert any("3 waiting in orders-retry-0" in n for n in state["notes"])
    assert state["settings"]["retry"] == "retry topics (non-blocking)"


def test_a_crash_loses_the_retry_in_hand_and_it_runs_again_after_the_restart() -> None:
    doc = _doc(topics=True)
    sim, rec = run(doc, until=0.12)
    sim.apply({"command": "consumer.failure_rate", "consumer": "email", "value": 1})
    sim.run_until(0.16)
    sim.apply({"command": "consumer.failure_rate", "consumer": "email", "value": 0})
    sim.run_until(1.3)  # event 2's retry started at 1.25
    sim.apply({"command": "consumer.crash", "consumer": "email"})
    sim.run_until(2)
    assert sim.groups["email"].waiting_retry() == 1
    sim.apply({"command": "consumer.up", "consumer": "email"})
    sim.run_until(60)
    assert [e for _, e, i in _processed(rec) if i >= 1000] == [2]
    assert _balanced(sim)


def test_retry_topics_are_refused_for_a_queue() -> None:
    doc = _doc(topics=True, delivery="queue")
    with pytest.raises(ScenarioError, match="retry topics are Spring Kafka's non-blocking"):
        parse_scenario(doc)


def test_retry_consumers_run_again_when_a_service_scaled_to_none_scales_up() -> None:
    """Found by the broker machine: scaled to 0 instances, then to 1, the retry consumers
    stayed stopped and a retry waited forever."""
    sim, _ = run(_doc(topics=True, failure_rate=1.0, max_attempts=2), until=0.2)
    sim.apply({"command": "consumer.instances", "consumer": "email", "value": 0})
    sim.run_until(3)
    sim.apply({"command": "consumer.failure_rate", "consumer": "email", "value": 0})
    sim.apply({"command": "consumer.instances", "consumer": "email", "value": 1})
    sim.run_until(10)
    assert sim.groups["email"].waiting_retry() == 0
    assert _balanced(sim)
