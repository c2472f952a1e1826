"""Consumer groups: ownership, rebalance, crashes, at-least-once, idempotency, queues,
retries and dead letters, reactions, filters and faults."""

from __future__ import annotations

import pytest

from simulator import CommandError, ScenarioError, Simulation, parse_scenario
from simulator.broker import CAUSATION_ID, CORRELATION_ID, ID, PAYLOAD, POISON
from tests.engine_helpers import consumer, run, scenario, trace


def _balanced(sim: Simulation, name: str) -> bool:
    acc = sim.groups[name].accounting()
    return acc["produced"] == sum(v for k, v in acc.items() if k != "produced")


def test_each_partition_is_owned_by_exactly_one_instance() -> None:
    # Kafka's default assignor (range): consecutive partitions, the first member gets the extra
    doc = scenario(topics=[{"name": "orders", "partitions": 5}], consumers=[consumer(instances=2)])
    sim, _ = run(doc, until=1)
    owners = [p["owner"] for p in sim.groups["email"].partitions_state()]
    assert owners == [0, 0, 0, 1, 1]


def test_more_instances_than_partitions_leaves_some_idle() -> None:
    doc = scenario(topics=[{"name": "orders", "partitions": 2}], consumers=[consumer(instances=3)])
    sim, _ = run(doc, until=5)
    instances = sim.snapshot()["groups"]["email"]["instances"]
    assert [len(i["partitions"]) for i in instances] == [1, 1, 0]
    assert instances[2]["processed"] == 0


def test_queue_mode_shares_one_queue_among_competing_instances() -> None:
    doc = scenario(
        producers=[
            {
                "name": "checkout",
                "topic": "orders",
                "event": "OrderPlaced",
                "rate": 100,
                "arrival": "constant",
            }
        ],
        consumers=[
            consumer(delivery="queue", instances=3, processing={"dist": "constant", "mean_ms": 25})
        ],
    )
    sim, _ = run(doc, until=10)
    instances = sim.snapshot()["groups"]["email"]["instances"]
    # one partition, yet all three instances work: a queue has no partition ownership
    assert all(i["processed"] > 0 for i in instances)
    assert sum(i["processed"] for i in instances) == sim.groups["email"].processed


def test_queue_mode_crash_puts_unacknowledged_work_back_at_the_head() -> None:
    doc = scenario(
        consumers=[consumer(delivery="queue", processing={"dist": "constant", "mean_ms": 80})]
    )
    sim, _ = run(doc, until=0.15)
    sim.apply({"command": "consumer.crash", "consumer": "email"})
    sim.apply({"command": "consumer.up", "consumer": "email"})
    sim.run_until(0.25)
    g = sim.groups["email"]
    assert g.redelivered == 1
    assert _balanced(sim, "email")


def test_failures_retry_with_exponential_backoff_then_dead_letter() -> None:
    doc = scenario(
        producers=[
            {
                "name": "checkout",
                "topic": "orders",
                "event": "OrderPlaced",
                "rate": 1,
                "arrival": "constant",
            }
        ],
        consumers=[consumer(failure_rate=1.0, retry={"max_attempts": 3, "backoff_ms": 100})],
    )
    sim, rec = run(doc, until=1.5)
    assert trace(rec, "delivered", "failed", "retried", "dead_lettered") == [
        ("delivered", 1.0, 1, "email"),
        ("failed", 1.05, 1, "email"),
        ("retried", 1.05, 1, "email"),
        ("delivered", 1.15, 1, "email"),  # +100 ms
        ("failed", 1.2, 1, "email"),
        ("retried", 1.2, 1, "email"),
        ("delivered", 1.4, 1, "email"),  # +200 ms
        ("failed", 1.45, 1, "email"),
        ("dead_lettered", 1.45, 1, "email"),
    ]
    (dl,) = sim.groups["email"].dead_letters
    assert dl.as_dict() | {"payload": None} == {
        "event_id": 1,
        "event_type": "OrderPlaced",
        "correlation_id": 1,
        "reason": "processing failed",
        "attempts": 3,
        "t": 1.45,
        "topic": "orders",
        "partition": 0,
        "offset": 0,
        "payload": None,
        # published to Spring's <topic>.DLT, to the original's partition, with its headers
        "destination": "orders.DLT",
        "dl_partition": 0,
        "dl_offset": 0,
        "headers": {
            "kafka_dlt-original-topic": "orders",
            "kafka_dlt-original-partition": 0,
            "kafka_dlt-original-offset": 0,
            "kafka_dlt-original-timestamp": 1000,
            "kafka_dlt-original-timestamp-type": "CreateTime",
            "kafka_dlt-original-consumer-group": "email",
            "kafka_dlt-exception-fqcn": (
                "org.springframework.kafka.listener.ListenerExecutionFailedException"
            ),
            "kafka_dlt-exception-message": "processing failed",
            "kafka_deliveryAttempt": 3,
        },
    }
    (stored,) = sim.dead_letter_topics["orders.DLT"].read(0, 0, 10)
    assert (stored["topic"], stored["offset"], stored["ts"], stored["headers"]) == (
        "orders.DLT",
        0,
        1.45,
        dl.headers,
    )


def test_poison_events_always_fail_and_redrive_sends_dead_letters_back() -> None:
    doc = scenario(
        producers=[
            {
                "name": "checkout",
                "topic": "orders",
                "event": "OrderPlaced",
                "rate": 50,
                "arrival": "constant",
                "poison_rate": 0.1,
                "payload": {"order_id": {"sequence": "ord-"}},
            }
        ],
        consumers=[
            consumer(
                retry={"max_attempts": 2, "backoff_ms": 10},
                processing={"dist": "constant", "mean_ms": 1},
            )
        ],
    )
    sim, _ = run(doc, until=10)
    g = sim.groups["email"]
    poisoned = sum(1 for r in sim.topics["orders"].partitions[0].records if r[POISON])
    assert g.dead_lettered == poisoned > 0
    assert all(d.reason.startswith("poison") and d.attempts == 2 for d in g.dead_letters)
    sim.apply({"command": "producer.rate", "producer": "checkout", "value": 0})
    sim.run_until(10.1)
    result = sim.apply({"command": "dead_letters.redrive", "consumer": "email"})
    assert result == {"redriven": poisoned}
    sim.run_until(12)
    assert g.dead_lettered == 2 * poisoned  # poison fails again: it is the event, not luck
    assert _balanced(sim, "email")


def test_a_service_reacts_by_emitting_with_the_same_correlation_id() -> None:
    doc = scenario(
        topics=[{"name": "orders"}, {"name": "payments"}],
        consumers=[
            consumer("payment", emits=[{"event": "PaymentProcessed", "topic": "payments"}]),
            {
                "name": "inventory",
                "topics": ["orders", "payments"],
                "events": ["OrderPlaced", "PaymentProcessed"],
                "processing": {"dist": "constant", "mean_ms": 10},
            },
        ],
    )
    sim, _ = run(doc, until=0.5, trace=True)
    hops = sim.trace(1)
    assert hops is not None
    assert [(h["kind"], h["event_type"], h["service"], round(h["t"], 3)) for h in hops] == [
        ("produced", "OrderPlaced", "", 0.1),
        ("delivered", "OrderPlaced", "payment", 0.1),
        ("delivered", "OrderPlaced", "inventory", 0.1),
        ("processed", "OrderPlaced", "inventory", 0.11),
        ("processed", "OrderPlaced", "payment", 0.15),
        ("produced", "PaymentProcessed", "", 0.15),
        ("delivered", "PaymentProcessed", "inventory", 0.15),
        ("processed", "PaymentProcessed", "inventory", 0.16),
    ]
    payment = sim.topics["payments"].partitions[0].records[0]
    assert (payment[CORRELATION_ID], payment[CAUSATION_ID]) == (1, 1)
    assert sim.groups["inventory"].processed == 2 * sim.groups["payment"].processed


def test_an_order_id_is_its_correlation_id_on_every_record_of_its_journey() -> None:
    doc = scenario(
        topics=[{"name": "orders"}, {"name": "payments"}],
        producers=[
            {
                "name": "checkout",
                "topic": "orders",
                "event": "OrderPlaced",
                "rate": 10,
                "arrival": "constant",
                "payload": {"order_id": {"sequence": "ord-"}, "total": 5},
            }
        ],
        consumers=[consumer("payment", emits=[{"event": "PaymentProcessed", "topic": "payments"}])],
    )
    sim, _ = run(doc, until=1, trace=True)
    placed = list(sim.topics["orders"].partitions[0].records)
    paid = list(sim.topics["payments"].partitions[0].records)
    assert [r[PAYLOAD]["order_id"] for r in placed[:3]] == ["ord-1", "ord-2", "ord-3"]
    assert [r[CORRELATION_ID] for r in placed[:3]] == ["ord-1", "ord-2", "ord-3"]
    assert paid[0][CORRELATION_ID] == "ord-1"
    assert paid[0][CAUSATION_ID] == placed[0][ID]  # the cause is still the event itself
    hops = sim.trace("ord-2")
    assert hops is not None
    assert {h["correlation_id"] for h in hops} == {"ord-2"}
    assert [h["event_type"] for h in hops if h["kind"] == "produced"] == [
        "OrderPlaced",
        "PaymentProcessed",
    ]


def test_two_producers_numbering_orders_alike_are_refused() -> None:
    producer = {
        "topic": "orders",
        "event": "OrderPlaced",
        "rate": 1,
        "payload": {"order_id": {"sequence": "ord-"}},
    }
    doc = scenario(
        producers=[{"name": "web", **producer}, {"name": "app", **producer}],
        consumers=[consumer("payment")],
    )
    with pytest.raises(ScenarioError) as e:
        parse_scenario(doc)
    assert "web already numbers its orders ord-1, ord-2" in str(e.value)
    assert "producers[1].payload.order_id" in str(e.value)


def test_a_filtered_subscription_sees_only_matching_orders() -> None:
    doc = scenario(
        producers=[
            {
                "name": "checkout",
                "topic": "orders",
                "event": "OrderPlaced",
                "rate": 100,
                "payload": {"total": {"uniform": [0, 10000]}},
            }
        ],
        consumers=[
            consumer(
                "fraud",
                filter={"field": "total", "op": ">", "value": 5000},
                processing={"dist": "constant", "mean_ms": 1},
            )
        ],
    )
    sim, rec = run(doc, until=20)
    g = sim.groups["fraud"]
    records = list(sim.topics["orders"].partitions[0].records)
    big = {r[ID] for r in records if r[PAYLOAD] and r[PAYLOAD]["total"] > 5000}
    assert {o.event_id for o in rec.log if o.kind == "processed"} == big
    assert g.filtered == len(records) - len(big) - g.lag()
    assert _balanced(sim, "fraud")


def test_slow_multiplies_processing_time() -> None:
    sim, _ = run(scenario(), until=1)
    sim.apply({"command": "consumer.slow", "consumer": "email", "value": 4})
    assert sim.groups["email"].display_status == "slow"
    sim.run_until(3)
    assert sim.groups["email"].stats.processing.max == pytest.approx(200, rel=0.02)


def test_scheduled_faults_apply_at_their_time() -> None:
    doc = scenario(
        faults=[
            {"at": 2, "consumer": "email", "action": "failure_rate", "value": 1},
            {"at": 2, "producer": "checkout", "action": "rate", "value": 20},
        ]
    )
    sim, _ = run(doc, until=3)
    assert sim.groups["email"].failure_rate == 1.0
    assert sim.producers["checkout"].rate == 20


def test_invalid_commands_raise_a_clear_error_and_change_nothing() -> None:
    sim, _ = run(scenario(), until=2)
    before = sim.snapshot()
    bad = [
        ({"command": "consumer.explode", "consumer": "email"}, "unknown command"),
        ({"command": "consumer.down", "consumer": "nobody"}, "unknown consumer 'nobody'"),
        ({"command": "consumer.slow", "consumer": "email", "value": "fast"}, "must be a number"),
        ({"command": "consumer.slow", "consumer": "email"}, "needs 'value'"),
        ({"command": "producer.rate", "producer": "checkout", "value": -1}, "between 0 and"),
        ({"command": "consumer.reset", "consumer": "email", "to": "earliest"}, "stop the service"),
        (
            {"command": "consumer.add", "consumer": {"name": "x", "topics": ["nope"]}},
            "unknown topic 'nope'",
        ),
        ({"command": "consumer.add", "consumer": consumer("email")}, "exists already"),
        ("not a mapping", "JSON object"),
        ({}, "missing 'command'"),
    ]
    for cmd, message in bad:
        with pytest.raises(CommandError, match=message.replace("(", r"\(")):
            sim.apply(cmd)
    assert sim.snapshot() == before
    assert sim.command_log == []


def test_removing_a_service_stops_its_consumption_and_its_faults() -> None:
    doc = scenario(faults=[{"at": 5, "consumer": "email", "action": "down"}])
    sim, _ = run(doc, until=2)
    sim.apply({"command": "consumer.remove", "consumer": "email"})
    sim.run_until(10)
    assert "email" not in sim.groups
    assert sim.topics["orders"].partitions[0].listeners == []


def test_lag_in_time_is_the_age_of_the_oldest_unprocessed_event() -> None:
    doc = scenario(faults=[{"at": 3.05, "consumer": "email", "action": "down"}])
    sim, _ = run(doc, until=8)
    g = sim.groups["email"]
    # last committed offset is the record of t=3.0; the oldest waiting was produced at t=3.1
    assert g.lag_seconds() == pytest.approx(8 - 3.1)


def test_command_log_replay_rebuilds_the_same_state() -> None:
    from simulator import replay

    doc = parse_scenario(
        scenario(
            consumers=[consumer(failure_rate=0.2, instances=2)],
            topics=[{"name": "orders", "partitions": 3}],
        )
    )
    sim = Simulation(doc, 5)
    sim.run_until(3)
    sim.apply({"command": "consumer.crash", "consumer": "email", "instance": 1})
    sim.run_until(4.25)
    sim.apply({"command": "consumer.up", "consumer": "email"})
    sim.apply({"command": "producer.rate", "producer": "checkout", "value": 40})
    sim.run_until(9)
    again = replay(doc, 5, sim.command_log, until=9)
    assert again.snapshot() == sim.snapshot()
