"""Dead letters go to a real destination: Spring Kafka's ``<topic>.DLT`` (stream groups) or a
queue bound to the dead-letter exchange (queue groups), and redrive sends them back the way
the real tools do: republished to the original topic (every group reading it gets them
again), or shovelled to the tail of the original queue (only that queue sees them)."""

from __future__ import annotations

from typing import Any

import pytest

from simulator import CommandError, Simulation, parse_scenario
from simulator.broker import ID, OFFSET
from tests.engine_helpers import burst, consumer, run, scenario


def _balanced(sim: Simulation, name: str) -> bool:
    acc = sim.groups[name].accounting()
    return acc["produced"] == sum(v for k, v in acc.items() if k != "produced")


def _three_readers() -> dict[str, Any]:
    """Payment fails everything until t = 0.5; Email and the idempotent Audit read the same
    topic and succeed."""
    return scenario(
        producers=[burst(3)],
        consumers=[
            consumer("payment", failure_rate=1.0, retry={"max_attempts": 1}),
            consumer("email"),
            consumer("audit", idempotent=True),
        ],
        faults=[{"at": 0.5, "consumer": "payment", "action": "failure_rate", "value": 0}],
    )


def test_a_stream_dead_letter_is_a_record_in_the_dlt_with_kafkas_headers() -> None:
    sim, _ = run(_three_readers(), until=1)
    payment = sim.groups["payment"]
    assert [(d.destination, d.dl_partition, d.dl_offset) for d in payment.dead_letters] == [
        ("orders.DLT", 0, 0),
        ("orders.DLT", 0, 1),
        ("orders.DLT", 0, 2),
    ]
    read = sim.read_records("orders.DLT", 0, 1, 10)
    assert (read["log_start_offset"], read["log_end_offset"]) == (0, 3)
    assert [r["offset"] for r in read["records"]] == [1, 2]
    headers = read["records"][0]["headers"]
    assert headers["kafka_dlt-original-topic"] == "orders"
    assert headers["kafka_dlt-original-offset"] == 1
    assert headers["kafka_dlt-original-consumer-group"] == "payment"
    assert sim.snapshot()["dead_letter_topics"]["orders.DLT"]["stored"] == 3


def test_redrive_republishes_to_the_topic_and_every_reader_gets_the_copies() -> None:
    sim, _ = run(_three_readers(), until=1)
    payment, email, audit = (sim.groups[n] for n in ("payment", "email", "audit"))
    assert (payment.processed, email.processed, audit.processed) == (0, 3, 3)
    result = sim.apply({"command": "dead_letters.redrive", "consumer": "payment"})
    assert result == {"redriven": 3}
    orders = sim.topics["orders"].partitions[0]
    # three new records at new offsets, carrying the same event ids
    assert [(r[OFFSET], r[ID]) for r in orders.records] == [
        (0, 1),
        (1, 2),
        (2, 3),
        (3, 1),
        (4, 2),
        (5, 3),
    ]
    sim.run_until(2)
    assert (payment.processed, payment.duplicates) == (3, 0)  # the second chance: fresh
    assert (email.processed, email.duplicates) == (6, 3)  # processed every order twice
    assert (audit.processed, audit.deduplicated) == (3, 3)  # idempotent: skipped the copies
    assert len(payment.dead_letters) == 0
    assert sim.read_records("orders.DLT")["log_end_offset"] == 3  # a log keeps its records
    for name in ("payment", "email", "audit"):
        assert _balanced(sim, name), sim.groups[name].accounting()
    assert email.accounting()["repeats"] == 3


def test_a_service_added_after_the_original_takes_a_redriven_copy_as_new() -> None:
    sim, _ = run(_three_readers(), until=1)
    sim.apply({"command": "consumer.add", "consumer": consumer("late"), "from": "latest"})
    sim.apply({"command": "dead_letters.redrive", "consumer": "payment"})
    sim.run_until(6)  # the new member's group waits group.initial.rebalance.delay.ms
    late = sim.groups["late"]
    assert (late.processed, late.duplicates) == (3, 0)
    assert _balanced(sim, "late")


def test_a_redrive_waits_for_a_partition_without_a_leader() -> None:
    sim, _ = run(_three_readers(), until=1)
    sim.apply({"command": "broker.down", "topic": "orders"})
    assert sim.apply({"command": "dead_letters.redrive", "consumer": "payment"}) == {"redriven": 0}
    assert len(sim.groups["payment"].dead_letters) == 3
    sim.apply({"command": "broker.up", "topic": "orders"})
    assert sim.apply({"command": "dead_letters.redrive", "consumer": "payment"}) == {"redriven": 3}


def test_the_dlt_keeps_its_newest_records_and_only_those_can_be_redriven(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import simulator.simulation as simulation

    monkeypatch.setattr(simulation, "DEAD_LETTERS_KEPT", 2)
    doc = scenario(producers=[burst(5)], consumers=[consumer(retry={"max_attempts": 1})])
    doc["consumers"][0]["failure_rate"] = 1.0
    sim, _ = run(doc, until=1)
    email = sim.groups["email"]
    assert email.dead_lettered == 5
    read = sim.read_records("orders.DLT")
    assert (read["log_start_offset"], read["log_end_offset"]) == (3, 5)
    assert sim.apply({"command": "dead_letters.redrive", "consumer": "email"}) == {"redriven": 2}
    assert email.dead_letters_dropped == 3


def _queue_doc(**fields: Any) -> dict[str, Any]:
    producer = burst(3)
    producer["bursts"].append({"at": 1.0, "count": 4})
    return scenario(
        producers=[producer],
        consumers=[
            consumer("email", delivery="queue", prefetch=1, **fields),
            consumer("audit", delivery="queue"),
        ],
        faults=[{"at": 0.5, "consumer": "email", "action": "failure_rate", "value": 0}],
    )


def test_a_rejected_message_goes_to_the_dead_letter_queue_with_x_death() -> None:
    sim, _ = run(_queue_doc(failure_rate=1.0, on_failure="reject"), until=0.9)
    letters = list(sim.groups["email"].dead_letters)
    assert [(d.destination, d.dl_offset) for d in letters] == [
        ("email.dlq", 0),
        ("email.dlq", 1),
        ("email.dlq", 2),
    ]
    (death,) = letters[0].headers["x-death"]
    assert (death["reason"], death["queue"], death["count"]) == ("rejected", "email", 1)
    assert letters[0].headers["x-first-death-reason"] == "rejected"


def test_a_shovel_moves_dead_letters_to_the_tail_of_their_own_queue_only() -> None:
    sim, rec = run(_queue_doc(failure_rate=1.0, on_failure="reject"), until=1.01)
    # four new messages arrived at t = 1.0: one in hand, three ready; the shovel goes behind
    assert sim.apply({"command": "dead_letters.redrive", "consumer": "email"}) == {"redriven": 3}
    sim.run_until(3)
    order = [o.event_id for o in rec.log if o.kind == "processed" and o.service == "email"]
    assert order == [4, 5, 6, 7, 1, 2, 3]
    audit = sim.groups["audit"]
    assert (audit.processed, audit.duplicates) == (7, 0)  # the shovel bypasses the exchange
    assert _balanced(sim, "email") and _balanced(sim, "audit")


def test_a_quorum_queue_dead_letters_past_its_delivery_limit_with_that_reason() -> None:
    doc = _queue_doc(failure_rate=1.0, queue_type="quorum", x_delivery_limit=2)
    sim, _ = run(doc, until=0.9)
    letter = sim.groups["email"].dead_letters[0]
    assert letter.headers["x-death"][0]["reason"] == "delivery_limit"
    assert letter.attempts == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"topic": "nope"}, "no topic 'nope' (topics: orders, orders.DLT)"),
        ({"topic": 3}, "'topic' must be a topic's name"),
        ({"topic": "orders", "partition": 1}, "partition"),
        ({"topic": "orders", "limit": 1000}, "limit"),
        ({"topic": "orders", "offset": -1}, "offset"),
    ],
)
def test_reading_a_log_names_a_bad_argument(args: dict[str, Any], message: str) -> None:
    sim, _ = run(_three_readers(), until=1)
    with pytest.raises(CommandError, match=message.replace("(", r"\(").replace(")", r"\)")):
        sim.read_records(**args)


def test_a_topic_can_be_read_from_an_offset_as_a_consumer_fetches_it() -> None:
    sim = Simulation(parse_scenario(scenario()), None)
    sim.run_until(1.05)
    read = sim.read_records("orders", 0, 4, 3)
    assert [r["offset"] for r in read["records"]] == [4, 5, 6]
    assert read["log_end_offset"] == 10


def test_the_group_names_where_its_dead_letters_go() -> None:
    sim = Simulation(parse_scenario(_queue_doc()), None)
    assert sim.group_state(sim.groups["email"])["dead_letter_destination"] == "email.dlq"
    sim = Simulation(parse_scenario(_three_readers()), None)
    assert sim.group_state(sim.groups["email"])["dead_letter_destination"] == "orders.DLT"


def test_a_service_added_from_earliest_after_a_redrive_takes_the_copy_as_a_repeat() -> None:
    """Found by the broker machine: the copy was in the log before the service existed, so
    only reading it (not its arrival) can tell that it repeats an event the service reads."""
    sim, _ = run(_three_readers(), until=1)
    sim.apply({"command": "dead_letters.redrive", "consumer": "payment"})
    sim.apply({"command": "consumer.add", "consumer": consumer("late"), "from": "earliest"})
    sim.apply(
        {
            "command": "consumer.add",
            "consumer": consumer("late-queue", delivery="queue"),
            "from": "earliest",
        }
    )
    sim.run_until(6)
    for name in ("late", "late-queue"):
        late = sim.groups[name]
        assert (late.processed, late.duplicates) == (6, 3), name
        assert late.accounting()["repeats"] == 3
        assert _balanced(sim, name)


def test_a_second_copy_of_one_event_is_a_repeat_for_a_service_that_read_the_first() -> None:
    """Found by the broker machine: two services dead-letter the same event and both redrive
    it. A service that joined (from latest) before the redrives reads both copies: the first
    is new to it, the second repeats it."""
    doc = scenario(
        producers=[burst(1)],
        consumers=[
            consumer("payment", failure_rate=1.0, retry={"max_attempts": 1}),
            consumer("billing", failure_rate=1.0, retry={"max_attempts": 1}),
        ],
    )
    sim, _ = run(doc, until=1)
    sim.apply({"command": "consumer.add", "consumer": consumer("late"), "from": "latest"})
    for name in ("payment", "billing"):
        sim.apply({"command": "consumer.failure_rate", "consumer": name, "value": 0})
    for name in ("payment", "billing"):
        sim.apply({"command": "dead_letters.redrive", "consumer": name})
    sim.run_until(6)
    late = sim.groups["late"]
    assert (late.processed, late.duplicates) == (2, 1)
    # each redriving service: its own copy is its second chance, the other's a repeat
    for name in ("payment", "billing"):
        g = sim.groups[name]
        assert (g.processed, g.duplicates) == (2, 1), name
    for name in ("payment", "billing", "late"):
        assert _balanced(sim, name), sim.groups[name].accounting()


def test_a_service_removed_and_added_again_takes_its_old_copies_as_repeats() -> None:
    """Found by the broker machine: the copy a removed service redrove is not the second
    chance of a new service with the same name, which reads the original too."""
    doc = scenario(
        producers=[burst(1)],
        consumers=[consumer("payment", failure_rate=1.0, retry={"max_attempts": 1})],
    )
    sim, _ = run(doc, until=1)
    sim.apply({"command": "dead_letters.redrive", "consumer": "payment"})
    sim.apply({"command": "consumer.remove", "consumer": "payment"})
    sim.apply({"command": "consumer.add", "consumer": consumer("payment"), "from": "earliest"})
    sim.run_until(6)
    again = sim.groups["payment"]
    assert (again.processed, again.duplicates) == (2, 1)
    assert _balanced(sim, "payment")
