"""Topics, partitions, offsets, keys, retention and where a group starts reading."""

from __future__ import annotations

from itertools import groupby
from random import Random

import pytest

from simulator import CommandError, Record, Topic, stable_partition
from simulator.broker import ID, OFFSET, PARTITION, murmur2, record_dict
from tests.engine_helpers import consumer, run, scenario


def _append(topic: Topic, i: int, key: str | None = None, ts: float = 0.0) -> Record:
    return topic.append(i, "OrderPlaced", key, ts, 100, None, i, None, False)


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        # Kafka's own test vectors (UtilsTest.testMurmur2)
        ("21", -973932308),
        ("foobar", -790332482),
        ("a-little-bit-long-string", -985981536),
        ("a-little-bit-longer-string", -1486304829),
        ("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
        ("abc", 479470107),
    ],
)
def test_murmur2_is_kafkas(key: str, expected: int) -> None:
    assert murmur2(key.encode()) == expected


def test_keyed_records_go_to_the_partition_of_kafkas_murmur2_of_their_key() -> None:
    # toPositive(murmur2("21")) % 6: (-973932308 & 0x7fffffff) % 6
    assert stable_partition("21", 6) == 1173551340 % 6 == 0
    assert stable_partition("customer-42", 6) == (murmur2(b"customer-42") & 0x7FFFFFFF) % 6
    topic = Topic("orders", 6)
    parts = [_append(topic, i, key="customer-42")[PARTITION] for i in range(1, 20)]
    assert set(parts) == {stable_partition("customer-42", 6)}


def test_records_without_a_key_stick_to_a_partition_for_a_batch_of_bytes() -> None:
    # the sticky partitioner: 16,384 bytes (batch.size) of 100-byte records is 164 records
    topic = Topic("orders", 3, rng=Random(5))
    parts = [_append(topic, i)[PARTITION] for i in range(1, 1001)]
    runs = [len(list(g)) for _, g in groupby(parts)]
    assert all(r % 164 == 0 for r in runs[:-1])  # a partition may be drawn twice in a row
    assert set(parts) == {0, 1, 2}


def test_a_producer_with_kafkas_round_robin_partitioner_deals_records_in_turn() -> None:
    doc = scenario(topics=[{"name": "orders", "partitions": 3}], consumers=[])
    doc["producers"][0]["partitioner"] = "round_robin"
    _sim, rec = run(doc, until=0.75)
    assert [o.partition for o in rec.log if o.kind == "produced"] == [0, 1, 2, 0, 1, 2, 0]


def test_offsets_are_consecutive_per_partition_and_never_reused() -> None:
    topic = Topic("orders", 2, retention_messages=2)
    records = [_append(topic, i, key="ad"[i % 2]) for i in range(1, 9)]  # murmur2: 0 and 1
    parts = [r[PARTITION] for r in records]
    assert sorted(set(parts)) == [0, 1]
    for p in (0, 1):
        assert [r[OFFSET] for r in records if r[PARTITION] == p] == list(range(parts.count(p)))
    p0 = topic.partitions[0]
    kept = [r[ID] for r in records if r[PARTITION] == 0][-2:]
    assert (p0.end - p0.start, [r[ID] for r in p0.records]) == (2, kept)


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


@pytest.mark.parametrize(
    ("reset", "resumes_at", "skipped"), [("earliest", 119, 0), ("latest", 139, 20)]
)
def test_a_group_that_falls_behind_retention_resets_as_auto_offset_reset_says(
    reset: str, resumes_at: int, skipped: int
) -> None:
    doc = scenario(
        topics=[{"name": "orders", "partitions": 1, "retention": {"max_messages": 20}}],
        consumers=[consumer(auto_offset_reset=reset)],
        faults=[
            {"at": 1, "consumer": "email", "action": "down"},
            {"at": 11, "consumer": "email", "action": "up"},
        ],
    )
    sim, _ = run(doc, until=15)
    g = sim.groups["email"]
    # Stopped at t=1 with offsets 0..8 done, it committed 9 on leaving. Back at t=11 as the
    # only member of an empty group, it is assigned its partition after the broker's
    # group.initial.rebalance.delay.ms (3 s): at t=14 the log holds offsets 119..138 only.
    # Kafka's auto.offset.reset decides where it goes on: the log start, or the log end
    # (jumping over the 20 records still kept).
    assert (g.expired, g.skipped) == (119 - 9, skipped)
    assert g.partitions_state()[0]["committed"] >= resumes_at
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
    acc = g.accounting()
    assert acc["produced"] == sum(v for k, v in acc.items() if k != "produced")


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
