"""Stream groups behave as Kafka's consumer groups: exact traces on fixed inputs.

Each test fixes a producer (constant arrivals, one record every 100 ms: offset k is produced at
t = 0.1 (k + 1)) and constant processing, so every time and count below follows from Kafka's
rules by hand. Where a setting changes the outcome, the test runs both values.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from simulator import ScenarioError, Simulation, parse_scenario
from simulator.groups.assignors import range_assign, roundrobin_assign, sticky_assign
from tests.engine_helpers import burst, consumer, run, scenario


def _deliveries(rec: Any, instance: int | None = None) -> list[tuple[float, int, str]]:
    return [
        (round(o.t, 6), o.offset, o.detail)
        for o in rec.log
        if o.kind == "delivered" and (instance is None or o.instance == instance)
    ]


def _balanced(sim: Simulation, name: str) -> bool:
    acc = sim.groups[name].accounting()
    return bool(acc["produced"] == sum(v for k, v in acc.items() if k != "produced"))


# --- assignors --------------------------------------------------------------------------------

PARTS = [("orders", i) for i in range(5)] + [("payments", i) for i in range(2)]


def test_range_assigns_consecutive_partitions_per_topic() -> None:
    assert range_assign([0, 1], PARTS, {}) == {
        0: [("orders", 0), ("orders", 1), ("orders", 2), ("payments", 0)],
        1: [("orders", 3), ("orders", 4), ("payments", 1)],
    }


def test_roundrobin_deals_every_partition_in_turn() -> None:
    assert roundrobin_assign([0, 1], PARTS, {}) == {
        0: [("orders", 0), ("orders", 2), ("orders", 4), ("payments", 1)],
        1: [("orders", 1), ("orders", 3), ("payments", 0)],
    }


def test_sticky_keeps_owners_and_moves_only_what_balance_needs() -> None:
    owned = {0: PARTS[:4], 1: PARTS[4:]}  # 4 and 3: balanced already
    assert sticky_assign([0, 1], PARTS, owned) == {0: sorted(PARTS[:4]), 1: sorted(PARTS[4:])}
    # a third member joins: each old member gives up one partition, nobody else moves
    moved = sticky_assign([0, 1, 2], PARTS, owned)
    assert sorted(len(v) for v in moved.values()) == [2, 2, 3]
    assert set(moved[0]) <= set(PARTS[:4]) and set(moved[1]) <= set(PARTS[4:])
    # range would move partitions between the old members too
    ranged = range_assign([0, 1, 2], PARTS, {})
    assert not set(ranged[1]) <= set(PARTS[4:])


# --- crash versus graceful stop ---------------------------------------------------------------

FAILOVER = {
    "session_timeout_ms": 10_000,
    "heartbeat_interval_ms": 3_000,
    "auto_commit_interval_ms": 2_000,
}


def test_a_crash_holds_the_partition_until_the_session_times_out_then_redelivers() -> None:
    sim, rec = run(scenario(consumers=[consumer(**FAILOVER)]), until=3.5)
    g = sim.groups["email"]
    # offsets 0..33 processed; offset 34 (produced at 3.5) is in hand; the auto-commit at
    # t=2.0 committed 19 (offsets 0..18 consumed then); the next would be at t=4.0
    assert g.processed == 34
    assert g.partitions_state()[0]["committed"] == 19
    sim.apply({"command": "consumer.crash", "consumer": "email"})
    sim.run_until(4)
    sim.apply({"command": "consumer.up", "consumer": "email"})  # a new process, a new member
    # its last heartbeat was at t=3.0, so the coordinator drops it at 3.0 + 10 = 13.0; until
    # then the restarted instance waits in the rebalance and nobody reads the partition
    assert g.zombies_state() == [
        {"index": 0, "partitions": ["orders/0"], "detected_at": 13.0, "seconds_left": 9.0}
    ]
    sim.run_until(12.99)
    assert g.display_status == "rebalancing"
    assert [d for d in _deliveries(rec) if d[0] > 3.5] == []
    sim.run_until(30)
    after = [d for d in _deliveries(rec) if d[0] > 3.5]
    # from the committed offset: 19..34 again (flagged redeliveries), then new ones
    assert after[0] == (13.0, 19, "redelivery")
    assert [d[1] for d in after if d[2] == "redelivery"] == list(range(19, 35))
    assert (g.redelivered, g.duplicates) == (16, 15)  # 34 had never finished
    assert _balanced(sim, "email")


def test_a_graceful_stop_commits_and_leaves_so_nothing_is_delivered_twice() -> None:
    sim, rec = run(scenario(consumers=[consumer(**FAILOVER)]), until=3.5)
    g = sim.groups["email"]
    sim.apply({"command": "consumer.down", "consumer": "email"})
    # it finishes offset 34 (until 3.55), commits on close and sends LeaveGroup
    sim.run_until(3.6)
    assert g.partitions_state()[0]["committed"] == 35
    assert g.partitions_state()[0]["owner"] is None
    sim.run_until(4)
    sim.apply({"command": "consumer.up", "consumer": "email"})
    # an empty group waits group.initial.rebalance.delay.ms (3 s) for more members
    sim.run_until(30)
    after = [d for d in _deliveries(rec) if d[0] > 3.5]
    assert after[0] == (7.0, 35, "")
    assert (g.redelivered, g.duplicates) == (0, 0)
    assert _balanced(sim, "email")


def test_without_the_initial_delay_a_restarted_group_resumes_at_once() -> None:
    c = consumer(**FAILOVER, group_initial_rebalance_delay_ms=0)
    sim, rec = run(scenario(consumers=[c]), until=3.5)
    sim.apply({"command": "consumer.down", "consumer": "email"})
    sim.run_until(4)
    sim.apply({"command": "consumer.up", "consumer": "email"})
    sim.run_until(5)
    assert next(d for d in _deliveries(rec) if d[0] > 3.55) == (4.0, 35, "")


@pytest.mark.parametrize(
    ("commits", "redelivered", "duplicates"),
    [
        # auto-commit every 5 s: nothing was committed yet, so 0..7 come back
        ({}, 8, 7),
        # Spring's BATCH ack mode: batches [0] and [1..5] were committed when done: 6, 7 again
        ({"enable_auto_commit": False, "ack_mode": "batch"}, 2, 1),
        # RECORD ack mode: 0..6 were committed one by one; only 7 comes back
        ({"enable_auto_commit": False, "ack_mode": "record"}, 1, 0),
    ],
)
def test_a_crash_redelivers_the_uncommitted_part_of_the_batch(
    commits: dict[str, Any], redelivered: int, duplicates: int
) -> None:
    doc = scenario(
        producers=[burst(20, at=0.05)],
        consumers=[
            consumer(
                max_poll_records=5,
                session_timeout_ms=1000,
                heartbeat_interval_ms=500,
                processing={"dist": "constant", "mean_ms": 100},
                **commits,
            )
        ],
    )
    sim, _rec = run(doc, until=0.8)
    g = sim.groups["email"]
    # the first record's arrival woke the idle member: poll 1 returned [0] (done at 0.15),
    # poll 2 returned 1..5 (done at 0.65), poll 3 returned 6..10; 7 is in hand at t=0.8
    assert g.processed == 7
    assert g.batched == 3  # 8, 9 and 10: fetched, not started
    sim.apply({"command": "consumer.crash", "consumer": "email"})
    sim.apply({"command": "consumer.up", "consumer": "email"})
    sim.run_until(10)
    assert (g.redelivered, g.duplicates) == (redelivered, duplicates)
    assert g.processed - g.duplicates == 20
    assert _balanced(sim, "email")


def test_auto_commit_commits_within_poll_once_the_interval_has_passed() -> None:
    sim, _ = run(scenario(consumers=[consumer(auto_commit_interval_ms=1000)]), until=0.95)
    part = sim.groups["email"].partitions_state
    assert part()[0]["committed"] == 0  # processed 0..8, nothing committed yet
    sim.run_until(1.0)  # the poll at t=1.0 commits everything consumed: offsets 0..8
    assert part()[0]["committed"] == 9
    sim.run_until(1.99)
    assert part()[0]["committed"] == 9


def test_an_idle_consumer_still_auto_commits_when_the_interval_is_up() -> None:
    doc = scenario(
        producers=[burst(3, at=0.1)],
        consumers=[consumer(auto_commit_interval_ms=1000)],
    )
    sim, _ = run(doc, until=0.9)
    part = sim.groups["email"].partitions_state
    assert part()[0]["committed"] == 0
    sim.run_until(1.0)
    assert part()[0]["committed"] == 3


# --- rebalances -------------------------------------------------------------------------------


def test_a_new_member_waits_until_the_others_notice_at_their_heartbeat() -> None:
    doc = scenario(
        topics=[{"name": "orders", "partitions": 4}],
        consumers=[consumer(instances=1)],
    )
    sim, rec = run(doc, until=2.02)
    g = sim.groups["email"]
    sim.apply({"command": "consumer.instances", "consumer": "email", "value": 2})
    assert g.display_status == "rebalancing"
    sim.run_until(2.99)
    # member 0 learns of the rebalance at its heartbeat at t=3.0; it keeps reading till then
    assert g.display_status == "rebalancing"
    assert [p["owner"] for p in g.partitions_state()] == [0, 0, 0, 0]
    assert any(2.02 < d[0] < 3.0 for d in _deliveries(rec, 0))
    sim.run_until(3.0)
    assert [p["owner"] for p in g.partitions_state()] == [0, 0, 1, 1]
    assert g.rebalances == 1
    assert _balanced(sim, "email")


def _stop_the_world(strategy: str) -> tuple[list[tuple[float, int, str]], Simulation]:
    """Three members on six partitions, batches of 10 records of 100-300 ms (about 2 s a
    batch); member 2 crashes at t=2.05 and its session times out at t=5.0 (its last heartbeat
    was at t=2.0). Members 0 and 1 hear of the rebalance at their heartbeat at t=5.0 and
    rejoin only when their batch is done, each at its own time."""
    doc = scenario(
        topics=[{"name": "orders", "partitions": 6}],
        producers=[burst(600, at=0.0)],
        consumers=[
            consumer(
                instances=3,
                max_poll_records=10,
                session_timeout_ms=3000,
                heartbeat_interval_ms=1000,
                partition_assignment_strategy=strategy,
                processing={"dist": "uniform", "mean_ms": 200, "jitter": 0.5},
            )
        ],
    )
    sim, rec = run(doc, until=2.05)
    sim.apply({"command": "consumer.crash", "consumer": "email", "instance": 2})
    sim.run_until(12)
    return [(o.t, o.instance, o.detail) for o in rec.log if o.kind == "delivered"], sim


def test_an_eager_rebalance_stops_every_member_a_cooperative_one_does_not() -> None:
    eager, sim_e = _stop_the_world("range")
    coop, sim_c = _stop_the_world("cooperative-sticky")

    # eager (range): the member done first revokes everything and waits for the other, idle;
    # cooperative: both keep reading their own partitions the whole time
    def longest_gap(log: list[tuple[float, int, str]]) -> float:
        return max(_longest_gap([t for t, i, _ in log if i == m and t > 2.05]) for m in (0, 1))

    assert longest_gap(coop) <= 0.3 + 1e-9  # never idle: one record after the other
    assert longest_gap(eager) > 0.3 + 1e-9
    assert sim_e.groups["email"].rebalances == sim_c.groups["email"].rebalances == 1
    # and cooperative-sticky moved only the dead member's partitions
    owners = [p["owner"] for p in sim_c.groups["email"].partitions_state()]
    assert owners[:4] == [0, 0, 1, 1] and set(owners[4:]) <= {0, 1}


def _longest_gap(times: list[float]) -> float:
    return max((b - a for a, b in itertools.pairwise(times)), default=0.0)


# --- where a new group starts -----------------------------------------------------------------


def test_a_service_added_at_run_time_starts_at_the_log_end_by_default() -> None:
    sim, _ = run(scenario(), until=10)
    spec = consumer("fraud", processing={"dist": "constant", "mean_ms": 1})
    sim.apply({"command": "consumer.add", "consumer": spec})  # auto.offset.reset: latest
    earliest = {**spec, "name": "audit", "auto_offset_reset": "earliest"}
    sim.apply({"command": "consumer.add", "consumer": earliest})
    explicit = {**earliest, "name": "ledger"}
    sim.apply({"command": "consumer.add", "consumer": explicit, "from": "latest"})  # from wins
    sim.run_until(20.05)
    assert sim.groups["fraud"].processed == 100
    assert sim.groups["audit"].processed == sim.topics["orders"].produced == 200
    assert sim.groups["ledger"].processed == 100


# --- what the scenario says -------------------------------------------------------------------


def test_kafka_defaults_are_kafkas() -> None:
    spec = parse_scenario(scenario()).consumers[0]
    assert (spec.session_timeout_ms, spec.heartbeat_interval_ms) == (45_000, 3_000)
    assert (spec.enable_auto_commit, spec.auto_commit_interval_ms) == (True, 5_000)
    assert (spec.auto_offset_reset, spec.max_poll_records) == ("latest", 500)
    assert spec.partition_assignment_strategy == "range"
    assert spec.group_initial_rebalance_delay_ms == 3_000


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"commit_interval_ms": 1000}, "consumers[0].commit_interval_ms: replaced by"),
        ({"rebalance_ms": 300}, "consumers[0].rebalance_ms: removed"),
        ({"start": "earliest"}, "consumers[0].start: renamed 'from'"),
        (
            {"session_timeout_ms": 3000, "heartbeat_interval_ms": 3000},
            "heartbeat_interval_ms: must be lower than session_timeout_ms",
        ),
        ({"ack_mode": "record"}, "ack_mode: applies only with enable_auto_commit: false"),
        ({"prefetch": 10}, "consumers[0].prefetch: applies to queue delivery"),
        ({"partition_assignment_strategy": "sticky-ish"}, "must be one of range, roundrobin"),
    ],
)
def test_a_scenario_with_a_wrong_kafka_setting_says_which(
    fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(ScenarioError) as e:
        parse_scenario(scenario(consumers=[consumer(**fields)]))
    assert message in str(e.value)


def test_records_come_in_offset_order_within_a_partition_across_batches() -> None:
    doc = scenario(consumers=[consumer(max_poll_records=3)])
    _sim, rec = run(doc, until=10)
    offsets = [o.offset for o in rec.log if o.kind == "processed"]
    assert offsets == sorted(offsets) == list(range(len(offsets)))
    assert all(o.offset == o.event_id - 1 for o in rec.log if o.kind == "processed")


def test_lag_in_time_is_the_age_of_the_oldest_uncommitted_record_over_all_partitions() -> None:
    """Two partitions: the older backlog is on partition 1, the newer on partition 0. Lag in
    time follows the older one, whichever partition it is on."""
    doc = scenario(
        topics=[{"name": "orders", "partitions": 2}],
        producers=[
            {
                "name": "checkout",
                "topic": "orders",
                "event": "OrderPlaced",
                "rate": 0,
                "key": "k",
                "payload": {"k": "d"},  # murmur2: partition 1
                "bursts": [{"at": 1.0, "count": 3}],
            },
            {
                "name": "late",
                "topic": "orders",
                "event": "OrderPlaced",
                "rate": 0,
                "key": "k",
                "payload": {"k": "a"},  # murmur2: partition 0
                "bursts": [{"at": 4.0, "count": 3}],
            },
        ],
        consumers=[consumer(enable_auto_commit=False, ack_mode="record")],
    )
    sim, _ = run(doc, until=0.5)
    sim.apply({"command": "consumer.down", "consumer": "email"})
    sim.run_until(6.0)
    g = sim.groups["email"]
    assert [p["lag"] for p in g.partitions_state()] == [3, 3]
    assert g.lag_seconds() == pytest.approx(5.0)  # the records from t=1, not those from t=4
    sim.apply({"command": "consumer.up", "consumer": "email"})
    sim.run_until(9.2)  # assigned at 9.0 (initial delay): 50 ms a record, partition 0 first
    assert g.partitions_state()[0]["lag"] == 0 and g.partitions_state()[1]["lag"] > 0
    assert g.lag_seconds() == pytest.approx(9.2 - 1.0)
