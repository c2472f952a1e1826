"""Queue groups behave as RabbitMQ queues: push under a prefetch, requeue at the original
position flagged redelivered, nack / reject / retry queue, quorum delivery limits.

A burst of messages at t=0.05 and constant processing make every trace exact.
"""

from __future__ import annotations

from typing import Any

import pytest

from simulator import ScenarioError, Simulation, parse_scenario
from tests.engine_helpers import burst, consumer, run, scenario


def _queue(n: int = 6, poison_rate: float = 0.0, **fields: Any) -> dict[str, Any]:
    producer = burst(n, poison_rate=poison_rate) if poison_rate else burst(n)
    c = consumer(delivery="queue", processing={"dist": "constant", "mean_ms": 100}, **fields)
    return scenario(producers=[producer], consumers=[c])


def _log(rec: Any, kind: str) -> list[tuple[float, int, int, str]]:
    return [(round(o.t, 6), o.event_id, o.instance, o.detail) for o in rec.log if o.kind == kind]


def _balanced(sim: Simulation) -> bool:
    acc = sim.groups["email"].accounting()
    return bool(acc["produced"] == sum(v for k, v in acc.items() if k != "produced"))


@pytest.mark.parametrize(("prefetch", "held"), [(0, [3, 3]), (1, [1, 1]), (2, [2, 2])])
def test_the_broker_pushes_messages_in_turn_up_to_each_consumers_prefetch(
    prefetch: int, held: list[int]
) -> None:
    sim, rec = run(_queue(instances=2, prefetch=prefetch), until=0.06)
    state = sim.snapshot()["groups"]["email"]
    assert [i["unacked"] for i in state["instances"]] == held
    assert state["ready"] == 6 - sum(held)
    # in turn: 1 to instance 0, 2 to instance 1, 3 to instance 0, ...
    assert [(e, i) for _, e, i, _ in _log(rec, "delivered")] == [(1, 0), (2, 1)]


def test_rabbitmqs_default_prefetch_is_unlimited() -> None:
    assert parse_scenario(_queue()).consumers[0].prefetch == 0


def test_a_crash_returns_every_unacked_message_to_its_original_position_flagged() -> None:
    sim, rec = run(_queue(prefetch=3), until=0.12)  # 1 in hand, 2 and 3 pushed, 4..6 ready
    sim.apply({"command": "consumer.crash", "consumer": "email"})
    assert [s for s, _ in sim.groups["email"].ready] == [1, 2, 3, 4, 5, 6]
    sim.apply({"command": "consumer.up", "consumer": "email"})
    sim.run_until(2)
    delivered = _log(rec, "delivered")[1:]  # after the first delivery of message 1
    assert [(e, d) for _, e, _, d in delivered] == [
        (1, "redelivery"),
        (2, "redelivery"),
        (3, "redelivery"),
        (4, ""),
        (5, ""),
        (6, ""),
    ]
    g = sim.groups["email"]
    assert (g.redelivered, g.duplicates, g.processed) == (3, 0, 6)
    assert _balanced(sim)


def test_a_cancel_finishes_the_message_in_hand_and_returns_the_rest() -> None:
    sim, rec = run(_queue(prefetch=3), until=0.12)
    sim.apply({"command": "consumer.down", "consumer": "email"})
    sim.run_until(1)
    g = sim.groups["email"]
    assert g.processed == 1  # message 1 was finished and acknowledged
    assert [s for s, _ in g.ready] == [2, 3, 4, 5, 6]
    assert g.returned == 2
    sim.apply({"command": "consumer.up", "consumer": "email"})
    sim.run_until(2)
    assert [d for _, e, _, d in _log(rec, "delivered") if e in (2, 3)] == ["redelivery"] * 2
    assert _balanced(sim)


def test_nack_requeues_at_once_at_the_head_flagged_redelivered() -> None:
    # every message is poison; a classic queue has no delivery limit: it comes back forever
    sim, rec = run(_queue(n=2, poison_rate=1.0, prefetch=1), until=0.5)
    delivered = _log(rec, "delivered")
    # message 1 goes round at the head; message 2 never gets a turn with prefetch 1
    assert [(t, e, d) for t, e, _, d in delivered] == [
        (0.05, 1, ""),
        (0.15, 1, "redelivery"),
        (0.25, 1, "redelivery"),
        (0.35, 1, "redelivery"),
        (0.45, 1, "redelivery"),
    ]
    assert sim.groups["email"].dead_lettered == 0


def test_a_quorum_queue_dead_letters_a_message_returned_past_its_delivery_limit() -> None:
    doc = _queue(n=1, poison_rate=1.0, queue_type="quorum", x_delivery_limit=2)
    sim, rec = run(doc, until=1)
    g = sim.groups["email"]
    assert len(_log(rec, "delivered")) == 3  # returned twice, the third return is one too many
    (dl,) = g.dead_letters
    assert dl.attempts == 3
    assert dl.reason == "delivery limit exceeded: returned 3 times (x-delivery-limit 2)"
    assert _balanced(sim)


def test_a_quorum_queue_counts_returns_from_crashes_too() -> None:
    doc = _queue(n=1, queue_type="quorum", x_delivery_limit=1)
    sim, _ = run(doc, until=0.1)
    for _ in range(2):
        sim.apply({"command": "consumer.crash", "consumer": "email"})
        sim.apply({"command": "consumer.up", "consumer": "email"})
        sim.run_until(sim.now + 0.05)
    g = sim.groups["email"]
    assert g.dead_lettered == 1 and g.processed == 0
    assert g.dead_letters[0].reason.startswith("delivery limit exceeded: returned 2 times")


def test_quorum_queues_default_to_rabbitmq_4s_delivery_limit_of_20() -> None:
    spec = parse_scenario(_queue(queue_type="quorum")).consumers[0]
    assert spec.x_delivery_limit == 20
    assert (
        parse_scenario(_queue(queue_type="quorum", x_delivery_limit=None))
        .consumers[0]
        .x_delivery_limit
        is None
    )


def test_reject_dead_letters_at_once() -> None:
    sim, rec = run(_queue(n=2, poison_rate=1.0, on_failure="reject"), until=1)
    g = sim.groups["email"]
    assert len(_log(rec, "delivered")) == 2
    assert [d.attempts for d in g.dead_letters] == [1, 1]
    assert all("basic.reject" in d.reason for d in g.dead_letters)


def test_a_retry_queue_republishes_to_the_tail_after_its_ttl_then_dead_letters() -> None:
    doc = _queue(
        n=3,
        on_failure="retry_queue",
        failure_rate=0.0,
        retry={"max_attempts": 3, "backoff_ms": 250, "backoff": "fixed"},
    )
    doc["producers"][0]["poison_rate"] = 1.0
    sim, rec = run(doc, until=2)
    delivered = [(t, e, d) for t, e, _, d in _log(rec, "delivered")]
    # 1 fails at 0.15 and waits 250 ms in the retry queue; 2 and 3 go first; the copy comes
    # back at the tail at 0.40, a new message: not flagged redelivered
    assert delivered[:6] == [
        (0.05, 1, ""),
        (0.15, 2, ""),
        (0.25, 3, ""),
        (0.4, 1, ""),
        (0.5, 2, ""),
        (0.6, 3, ""),
    ]
    g = sim.groups["email"]
    assert g.redelivered == 0
    assert sorted(d.attempts for d in g.dead_letters) == [3, 3, 3]
    assert _balanced(sim)


def test_unlimited_prefetch_lets_a_busy_consumer_hoard_messages_others_could_take() -> None:
    hoard, _ = run(_queue(n=10, instances=2, prefetch=0), until=0.06)
    fair, _ = run(_queue(n=10, instances=2, prefetch=1), until=0.06)
    # one more consumer joins after the burst: with prefetch 0 everything is taken already
    for sim in (hoard, fair):
        sim.apply({"command": "consumer.instances", "consumer": "email", "value": 3})
        sim.run_until(0.2)
    late = [sim.snapshot()["groups"]["email"]["instances"][2]["processed"] for sim in (hoard, fair)]
    assert late == [0, 1]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"session_timeout_ms": 1000}, "applies to stream delivery"),
        ({"x_delivery_limit": 5}, "x_delivery_limit: applies to quorum queues"),
        ({"on_failure": "drop"}, "on_failure: must be one of nack, reject, retry_queue"),
    ],
)
def test_a_scenario_with_a_wrong_rabbitmq_setting_says_which(
    fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(ScenarioError) as e:
        parse_scenario(_queue(**fields))
    assert message in str(e.value)
