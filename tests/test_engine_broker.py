"""Topics, partitions, offsets, keys, retention and where a group starts reading."""

from __future__ import annotations

import zlib

import pytest

from simulator import CommandError, Record, Topic, stable_partition
from simulator.broker import ID, OFFSET, PARTITION, record_dict
from tests.engine_helpers import consumer, run, scenario


def _append(topic: Topic, i: int, key: str | None = None, ts: float = 0.0) -> Record:
    return topic.append(i, "OrderPlaced", key, ts, 100, None, i, None, False)


def test_keyed_records_go_to_the_partition_of_a_stable_hash_of_their_key() -> None:
    assert stable_partition("customer-42", 6) == zlib.crc32(b"customer-42") % 6
    topic = Topic("orders", 6)
    parts = [_append(topic, i, key="customer-42")[PARTITION] for i in range(1, 20)]
    assert set(parts) == {stable_partition("customer-42", 6)}


def test_records_without_a_key_go_round_robin() -> None:
    topic = Topic("orders", 3)
    parts = [_append(topic, i)[PARTITION] for i in range(1, 8)]
    assert parts == [0, 1, 2, 0, 1, 2, 0]


def test_offsets_are_consecutive_per_partition_and_never_reused() -> None:
    topic = Topic("orders", 2, retention_messages=2)
    records = [_append(topic, i) for i in range(1, 9)]
    assert [(r[PARTITION], r[OFFSET]) for r in records] == [
        (0, 0),
        (1, 0),
        (0, 1),
        (1, 1),
        (0, 2),
        (1, 2),
        (0, 3),
        (1, 3),
    ]
    p0 = topic.partitions[0]
    assert (p0.start, p0.end, [r[ID] for r in p0.records]) == (2, 4, [5, 7])


def test_retention_by_count_moves_the_log_start_offset_and_bounds_memory() -> None:
    doc = scenario(
        topics=[{"name": "orders", "partitions": 1, "retention": {"max_messages": 50}}],
        consumers=[],
    )
    sim, _ = run(doc, until=100)
    part = sim.topics["orders"].partitions[0]
    assert (part.start, part.end, len(part.records)) == (950, 1000, 50)
    assert sim.topics["orders"].bytes_stored == 50 * 200


def test_retention_by_age_deletes_old_records_even_without_new_appends() -> None:
    doc = scenario(
        topics=[{"name": "orders", "partitions": 1, "retention": {"max_age_s": 5}}], consumers=[]
    )
    sim, _ = run(doc, until=20)
    sim.apply({"command": "producer.rate", "producer": "checkout", "value": 0})
    sim.run_until(30)
    assert sim.topics["orders"].stored == 0
    assert sim.topics["orders"].partitions[0].start == sim.topics["orders"].produced == 200


def test_a_group_that_falls_behind_retention_counts_the_lost_records_as_expired() -> None:
    doc = scenario(
        topics=[{"name": "orders", "partitions": 1, "retention": {"max_messages": 20}}],
        faults=[
            {"at": 1, "consumer": "email", "action": "down"},
            {"at": 11, "consumer": "email", "action": "up"},
        ],
    )
    sim, _ = run(doc, until=15)
    g = sim.groups["email"]
    # It committed offset 10 when it went down at t=1. Back up at t=11, it rejoins after the
    # 300 ms rebalance: at t=11.3 the log holds offsets 93..112 only.
    assert g.expired == 93 - 10
    acc = g.accounting()
    assert acc["produced"] == sum(v for k, v in acc.items() if k != "produced")


def test_a_service_added_from_earliest_replays_history_and_from_latest_does_not() -> None:
    sim, _ = run(scenario(), until=10)
    spec = consumer("fraud", processing={"dist": "constant", "mean_ms": 1})
    sim.apply({"command": "consumer.add", "consumer": spec, "from": "earliest"})
    sim.apply({"command": "consumer.add", "consumer": {**spec, "name": "audit"}, "from": "latest"})
    sim.run_until(20.05)
    assert sim.groups["fraud"].processed == sim.topics["orders"].produced == 200
    assert sim.groups["audit"].processed == 100


def test_offsets_can_be_reset_to_a_time_while_the_group_is_down() -> None:
    sim, _ = run(scenario(), until=10)
    sim.apply({"command": "consumer.down", "consumer": "email"})
    # the event produced at t=10 is still being processed: Kafka resets only an idle group
    with pytest.raises(CommandError, match="still finishing 1 event"):
        sim.apply({"command": "consumer.reset", "consumer": "email", "to": "earliest"})
    sim.run_until(10.06)
    sim.apply({"command": "consumer.reset", "consumer": "email", "to": "time", "value": 5.0})
    cur = sim.groups["email"].partitions_state()[0]
    assert cur["committed"] == 49  # the record produced at t=5.0 has offset 49
    sim.apply({"command": "consumer.up", "consumer": "email"})
    sim.run_until(20)
    g = sim.groups["email"]
    assert g.duplicates == 100 - 49  # offsets 49..99 processed a second time
    assert g.lag() <= 1


def test_a_record_is_a_tuple_of_plain_values_and_reads_as_named_fields() -> None:
    topic = Topic("orders", 2)
    _append(topic, 1)
    record = topic.append(2, "OrderPlaced", "c-7", 1.5, 300, {"total": 9}, 1, 1, False)
    assert type(record) is tuple  # untracked by the garbage collector once it has seen it
    part = stable_partition("c-7", 2)
    assert record_dict(record) == {
        "id": 2,
        "type": "OrderPlaced",
        "topic": "orders",
        "partition": part,
        "offset": 1 if part == 0 else 0,
        "key": "c-7",
        "ts": 1.5,
        "size_bytes": 300,
        "correlation_id": 1,
        "causation_id": 1,
        "poison": False,
        "payload": {"total": 9},
    }
    assert record[ID] == 2 and record[OFFSET] == record_dict(record)["offset"]
