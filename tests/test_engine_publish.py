"""The publish path: a producer's sends when a partition leader is down or slow, as Kafka's
producer handles them (acks, retries within delivery.timeout.ms, the buffer, max.block.ms)."""

from __future__ import annotations

from typing import Any

from simulator import Simulation, parse_scenario
from simulator.broker import PARTITION, PAYLOAD, SIZE, TS, stable_partition
from simulator.compare import Comparison
from simulator.distributions import payload_bytes
from simulator.scenario import load_scenario
from tests.engine_helpers import run, scenario

PRESETS = "simulator/presets/"


def _keyed(partitions: int = 2, **send: Any) -> dict[str, Any]:
    """A producer every 100 ms with key "a" (murmur2: partition 0 of 2) and no consumer."""
    assert stable_partition("a", 2) == 0
    doc = scenario(topics=[{"name": "orders", "partitions": partitions}], consumers=[])
    # a payload that serialises to exactly 200 bytes: the record's size
    payload = {"k": "a", "body": {"text": 181}}
    doc["producers"][0].update({"key": "k", "payload": payload, **send})
    return doc


def test_a_record_weighs_its_serialised_payload() -> None:
    sim, _ = run(_keyed(), until=0.15)
    (record,) = sim.topics["orders"].partitions[0].records
    assert record[SIZE] == payload_bytes(record[PAYLOAD]) == 200


def test_records_for_a_partition_without_leader_wait_and_keep_their_order_and_time() -> None:
    sim, _rec = run(_keyed(), until=1.05)
    sim.apply({"command": "broker.down", "topic": "orders", "partition": 0})
    sim.run_until(3.05)
    p = sim.snapshot()["producers"]["checkout"]
    assert (sim.topics["orders"].produced, p["waiting"]) == (10, 20)
    assert p["send_retries"] > 0
    sim.apply({"command": "broker.up", "topic": "orders", "partition": 0})
    sim.run_until(3.2)  # the next retry (retry.backoff.ms 100) sends the 20 in order
    records = list(sim.topics["orders"].partitions[0].records)
    assert sim.snapshot()["producers"]["checkout"]["waiting"] == 0
    assert len(records) == sim.producers["checkout"].sender.sent
    times = [r[TS] for r in records]
    assert times == sorted(times)  # CreateTime: when each was sent, not when it got in
    assert round(times[10], 6) == 1.1
    ack = sim.snapshot()["producers"]["checkout"]["ack_ms"]
    assert ack["max"] >= 2000  # the first one waited two seconds for its ack
    assert p["failed_sends"] == 0


def test_records_without_a_key_go_around_a_partition_without_leader() -> None:
    doc = scenario(topics=[{"name": "orders", "partitions": 3}], consumers=[])
    sim, rec = run(doc, until=0.05)
    sim.apply({"command": "broker.down", "topic": "orders", "partition": 1})
    sim.run_until(60)
    produced = [o.partition for o in rec.log if o.kind == "produced"]
    assert len(produced) == 600 and 1 not in produced
    assert sim.snapshot()["producers"]["checkout"]["failed_sends"] == 0


def test_acks_0_loses_what_it_sends_to_a_partition_without_leader() -> None:
    sim, _ = run(_keyed(acks=0), until=1.05)
    sim.apply({"command": "broker.down", "topic": "orders", "partition": 0})
    sim.run_until(2.05)
    sim.apply({"command": "broker.up", "topic": "orders", "partition": 0})
    sim.run_until(3.05)
    p = sim.snapshot()["producers"]["checkout"]
    assert (p["failed_sends"], sim.topics["orders"].produced) == (10, 20)
    assert p["last_failure"].startswith("acks=0")


def test_a_send_fails_once_delivery_timeout_ms_has_passed() -> None:
    sim, _ = run(_keyed(delivery_timeout_ms=1000), until=1.05)
    sim.apply({"command": "broker.down", "topic": "orders", "partition": 0})
    sim.run_until(3.05)
    p = sim.snapshot()["producers"]["checkout"]
    # sent at 1.1 .. 3.0; those older than 1 s at the last retry (3.0) have failed
    assert p["failed_sends"] + p["waiting"] == 20
    assert 9 <= p["failed_sends"] <= 11
    assert p["last_failure"].startswith("delivery.timeout.ms expired: orders/0")


def test_a_full_buffer_blocks_send_for_max_block_ms_then_fails() -> None:
    # 200-byte records, a 1,000-byte buffer: five wait, the rest block, then fail
    sim, _ = run(_keyed(buffer_memory=1000, max_block_ms=500), until=1.05)
    sim.apply({"command": "broker.down", "topic": "orders", "partition": 0})
    sim.run_until(2.05)
    p = sim.snapshot()["producers"]["checkout"]
    assert (p["waiting"], p["buffered_bytes"]) == (5, 1000)
    assert p["blocked_total"] == 5 and p["failed_sends"] == 0
    sim.run_until(3.05)
    p = sim.snapshot()["producers"]["checkout"]
    assert p["failed_sends"] > 0
    assert p["last_failure"] == "buffer full: send() blocked max.block.ms, then failed"


def test_acks_all_waits_for_replication_acks_1_for_the_leader_only() -> None:
    def ack_p50(acks: Any) -> float:
        doc = _keyed(acks=acks)
        doc["broker"] = {"append_ms": 2, "replication_ms": 3}
        sim, _ = run(doc, until=2)
        return float(sim.snapshot()["producers"]["checkout"]["ack_ms"]["p50"])

    assert [round(ack_p50(a)) for a in ("all", 1, 0)] == [5, 2, 0]


def test_the_event_side_checkout_waits_for_the_broker_and_can_fail() -> None:
    """With the broker healthy, checkout takes its work plus two hops whatever the consumers
    do; with OrderPlaced's partitions leaderless for longer than delivery.timeout.ms, orders
    fail on the event side too: its speed was the broker's, not a law."""

    def run_it(down: bool) -> dict[str, Any]:
        cmp = Comparison(load_scenario(PRESETS + "sync-vs-events.yaml"))
        cmp.run_until(10)
        if down:
            cmp.apply({"command": "broker.down", "topic": "orders"})
        cmp.run_until(140)
        if down:
            cmp.apply({"command": "broker.up", "topic": "orders"})
        cmp.run_until(150)
        return dict(cmp.state()["events"])

    healthy, broken = run_it(False), run_it(True)
    assert healthy["checkout_errors"] == 0
    assert broken["checkout_errors"] > 0
    assert broken["checkout_ms"]["p99"] > 10 * healthy["checkout_ms"]["p99"]


def test_a_scheduled_broker_fault_takes_a_leader_down_and_up() -> None:
    doc = _keyed()
    doc["faults"] = [
        {"at": 1.05, "broker": "orders", "action": "down", "partition": 0},
        {"at": 2.05, "broker": "orders", "action": "up", "partition": 0},
    ]
    sim = Simulation(parse_scenario(doc), seed=1)
    sim.run_until(1.5)
    assert not sim.topics["orders"].partitions[0].online
    assert sim.topics["orders"].produced == 10
    sim.run_until(2.05)
    assert sim.topics["orders"].partitions[0].online
    sim.run_until(3.05)
    assert sim.topics["orders"].produced == 30
    assert all(r[PARTITION] == 0 for r in sim.topics["orders"].partitions[0].records)
