"""Property-based tests of the broker's invariants, over random fault schedules.

A Hypothesis state machine builds a small random scenario (1-2 topics, 1-4 partitions, Poisson
producers, 1-3 consumer groups with random retries, Kafka settings (session timeouts,
heartbeats, auto-commit intervals or per-record / per-batch commits, fetch batches, eager or
cooperative assignors, blocking retries or retry topics) or RabbitMQ settings (prefetch,
classic or quorum queues with delivery limits, nack / reject / retry queue), idempotency,
filters or event lists, retention, poison events, emits), then interleaves slices of virtual
time with
run-time commands: services stopped, started, crashed (whole or one instance) and restarted,
slowed, scaled, failing more or less, producers re-rated, dead letters redriven, offsets reset,
services added (from earliest or latest) and removed, and commands the engine must refuse
without changing anything (a reset of a running group, of a queue, ...).

After every step, for every consumer group:

- conservation: ``accounting()`` adds up to ``produced``, and ``produced`` matches the records
  an independent observer saw appended to the group's topics since it joined;
- the observer's own counts of fresh processing and dead letters match the group's counters;
- stream groups: first deliveries and fresh processing come in increasing offset order within
  a partition; a partition is worked on by one instance at a time, the one that owns it (a
  crashed owner keeps it, unread, until its session times out); committed offsets only move
  backwards through ``consumer.reset`` and never pass unfinished work; ``lag()`` is the sum of
  ``end - committed`` plus the redrive queue (queue groups: what waits, is delayed or in flight);
- a dead instance is handed nothing; a queue hands out nothing while its consumers are cancelled
  (a stopping stream member finishes the batch its last poll returned, as Kafka's does);
- every dead letter used the attempts its policy allows (``retry.max_attempts``; one for a
  rejected message; past ``x_delivery_limit`` returns on a quorum queue);
- an event counted as freshly processed is never counted so again (for an idempotent group:
  never processed twice at all).

Liveness, at random points: with producers stopped and every service healed, all work drains.
Determinism, at the end: the same scenario, seed, slices and commands rebuild the same
snapshot, and so does ``simulator.replay`` from the command log alone. Half of the runs never
apply two commands in one slice, so that replay can be checked on (nearly) the whole log.

Both delivery modes are covered: ``stream`` (Kafka-like) and ``queue`` (RabbitMQ-like).
Engine bugs found this way are pinned by focused reproductions at the end of the file."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from simulator import (
    CommandError,
    EventRecorder,
    Observer,
    Record,
    Simulation,
    parse_scenario,
    replay,
)
from simulator.broker import ID, OFFSET, PARTITION, TOPIC
from simulator.groups import BACKOFF, BUSY, ConsumerGroup, Instance, StreamGroup
from simulator.groups.retry_topics import RETRY_INSTANCE_BASE

EVENTS = ("OrderPlaced", "PaymentTaken")
EMITTED = "OrderShipped"
GROUP_NAMES = ("c0", "c1", "c2", "c3", "c4")
# virtual time let pass before a command: 0 applies it in the same slice as the one before
GAPS = st.sampled_from([0.0, 0.0, 0.01, 0.1, 0.4, 1.0])
ACCOUNTING_TERMS = (
    "processed",
    "in_flight",
    "batched",
    "retrying",
    "dead_lettered",
    "repeats",
    "filtered",
    "expired",
    "skipped",
    "deduplicated",
    "not_delivered",
)

MACHINE_SETTINGS = settings(
    max_examples=100,
    stateful_step_count=40,
    deadline=None,
    # the explain phase reruns a failing case hundreds of times: minutes, for little insight
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# --- scenario strategies ------------------------------------------------------------------


@st.composite
def processing_docs(draw: st.DrawFn) -> dict[str, Any]:
    dist = draw(st.sampled_from(["constant", "uniform", "exponential", "lognormal"]))
    return {"dist": dist, "mean_ms": draw(st.sampled_from([5, 20, 60, 150]))}


@st.composite
def consumer_docs(
    draw: st.DrawFn, name: str, topics: tuple[str, ...], mode: str, poison: bool = True
) -> dict[str, Any]:
    subscribed = draw(
        st.lists(st.sampled_from(topics), min_size=1, max_size=len(topics), unique=True)
    )
    doc: dict[str, Any] = {
        "name": name,
        "topics": subscribed,
        "delivery": mode,
        "instances": draw(st.integers(1, 3)),
        "processing": draw(processing_docs()),
        "client_overhead_ms": draw(st.sampled_from([0, 2])),
        "idempotent": draw(st.booleans()),
        "retry": {
            "max_attempts": draw(st.integers(1, 4)),
            "backoff_ms": draw(st.sampled_from([0, 20, 150])),
            "backoff": draw(st.sampled_from(["fixed", "exponential"])),
        },
    }
    if draw(st.booleans()):
        doc["failure_rate"] = draw(st.sampled_from([0.05, 0.2, 0.5]))
    if mode == "stream":
        session = draw(st.sampled_from([500, 2000, 10_000]))
        doc["session_timeout_ms"] = session
        doc["heartbeat_interval_ms"] = draw(st.sampled_from([100, 400]))
        doc["max_poll_records"] = draw(st.sampled_from([1, 5, 500]))
        doc["partition_assignment_strategy"] = draw(
            st.sampled_from(["range", "roundrobin", "sticky", "cooperative-sticky"])
        )
        doc["group_initial_rebalance_delay_ms"] = draw(st.sampled_from([0, 300]))
        # Spring's non-blocking retries: the failed record to a retry topic, the partition on
        doc["retry"]["topics"] = draw(st.sampled_from([False, False, True]))
        commits = draw(st.sampled_from(["auto", "record", "batch"]))
        if commits == "auto":
            doc["auto_commit_interval_ms"] = draw(st.sampled_from([100, 500, 2000]))
        else:
            doc["enable_auto_commit"] = False
            doc["ack_mode"] = commits
    else:
        doc["prefetch"] = draw(st.sampled_from([0, 1, 3]))
        doc["on_failure"] = draw(st.sampled_from(["nack", "reject", "retry_queue"]))
        quorum = draw(st.booleans())
        # a poison message nacked on a classic queue comes back forever: real, but it never
        # drains, so such queues get a delivery limit (or get no poison)
        if quorum or (poison and doc["on_failure"] == "nack"):
            doc["queue_type"] = "quorum"
            doc["x_delivery_limit"] = draw(st.sampled_from([0, 2, 5]))
    selection = draw(st.sampled_from(["all", "all", "events", "filter"]))
    if selection == "events":
        doc["events"] = draw(
            st.lists(st.sampled_from([*EVENTS, EMITTED, "Refunded"]), min_size=1, unique=True)
        )
    elif selection == "filter":
        doc["filter"] = draw(
            st.sampled_from(
                [
                    {"field": "amount", "op": ">", "value": 50},
                    {"field": "region", "op": "==", "value": "eu"},
                    {"field": "region", "op": "!=", "value": "us"},
                ]
            )
        )
    # Only services reading the first topic alone emit (to the second one): no emit loops.
    if len(topics) > 1 and subscribed == [topics[0]] and draw(st.booleans()):
        emit: dict[str, Any] = {"event": EMITTED, "topic": topics[1]}
        if draw(st.booleans()):
            emit["when"] = EVENTS[0]
        doc["emits"] = [emit]
    return doc


@st.composite
def scenario_docs(draw: st.DrawFn, mode: str) -> dict[str, Any]:
    topic_names = ("t0", "t1")[: draw(st.integers(1, 2))]
    topics = []
    for name in topic_names:
        topic: dict[str, Any] = {"name": name, "partitions": draw(st.integers(1, 4))}
        if draw(st.integers(0, 3)) == 0:
            topic["retention"] = {"max_messages": draw(st.integers(3, 30))}
        topics.append(topic)
    producers = []
    for k in range(draw(st.integers(1, 2))):
        producer: dict[str, Any] = {
            "name": f"p{k}",
            "topic": draw(st.sampled_from(topic_names)),
            "event": EVENTS[k],
            "rate": draw(st.sampled_from([2, 5, 10, 25])),
            "arrival": "poisson",
        }
        if draw(st.booleans()):
            producer["payload"] = {
                "amount": {"uniform": [0, 100]},
                "region": {"choice": ["eu", "us", "apac"]},
            }
            if draw(st.booleans()):
                producer["key"] = "region"
        if draw(st.integers(0, 3)) == 0:
            producer["poison_rate"] = draw(st.sampled_from([0.02, 0.1]))
        producers.append(producer)
    poison = any("poison_rate" in p for p in producers)
    consumers = [
        draw(consumer_docs(GROUP_NAMES[k], topic_names, mode, poison))
        for k in range(draw(st.integers(1, 3)))
    ]
    return {
        "name": f"invariants-{mode}",
        "topics": topics,
        "producers": producers,
        "consumers": consumers,
    }


# --- an independent witness ---------------------------------------------------------------


def _instance(group: ConsumerGroup, index: int) -> Instance | None:
    if index >= RETRY_INSTANCE_BASE and isinstance(group, StreamGroup):
        return group.lane_instance(index)  # a retry consumer (retry topics)
    return next((i for i in group.instances if i.index == index), None)


class Witness(Observer):
    """Counts and orders what the engine reports through its observer API.

    Violations are collected (not raised inside the engine) and asserted by the machine.
    """

    def __init__(self) -> None:
        self.appended: Counter[str] = Counter()
        self.fresh_processed: Counter[ConsumerGroup] = Counter()
        self.dead_letter_count: Counter[ConsumerGroup] = Counter()
        self.fresh_dead: Counter[ConsumerGroup] = Counter()
        self.redrive_count: Counter[ConsumerGroup] = Counter()
        self.redriven_ids: dict[ConsumerGroup, set[int]] = {}
        self.processed_ids: dict[ConsumerGroup, set[int]] = {}
        self.fresh_ids: dict[ConsumerGroup, set[int]] = {}
        self.max_delivered: dict[tuple[ConsumerGroup, str, int], int] = {}
        # the last first delivery per partition (a reset moves it: see the reset rule)
        self.last_first: dict[tuple[ConsumerGroup, str, int], int] = {}
        self.last_fresh: dict[tuple[ConsumerGroup, str, int], int] = {}
        self.violations: list[str] = []
        # a redriven copy that just failed: is it the copy standing for an event still to deal
        # with (a fresh dead letter), or a duplicate one? (see ``failed``)
        self.failing_copy: dict[tuple[ConsumerGroup, int], bool] = {}
        # Events a group has finished once (processed or dead-lettered): a later dead letter of
        # the same event comes from a redelivery and is not one more event waiting.
        self.finished_ids: dict[ConsumerGroup, set[int]] = {}
        self.waiting_ids: dict[ConsumerGroup, set[int]] = {}
        self.redriven_fresh: dict[ConsumerGroup, set[int]] = {}

    def produced(self, t: float, record: Record) -> None:
        self.appended[record[TOPIC]] += 1

    def delivered(
        self,
        t: float,
        group: ConsumerGroup,
        instance: int,
        record: Record,
        attempt: int,
        redelivery: bool,
    ) -> None:
        where = f"t={t:.4f} {group.name}#{instance} {record!r} attempt={attempt}"
        inst = _instance(group, instance)
        if inst is None or not inst.alive:
            self.violations.append(f"{where}: delivered to an instance that is not running")
            return
        if group.mode == "queue":
            # queue consumers start a message only while the queue may push to them: after a
            # cancel everything they held but had not started went back
            if attempt == 1 and not group.fetching and not redelivery:
                self.violations.append(
                    f"{where}: new work taken while the service is {group.display_status}"
                )
            return
        cur = inst.cursor
        if cur is None:
            return  # a retry consumer: it reads a retry topic, in order, when records are due
        if cur.owner is not inst:
            self.violations.append(
                f"{where}: {cur.partition.name} is owned by "
                f"{None if cur.owner is None else cur.owner.index}, not by this instance"
            )
        if record[OFFSET] >= cur.position:
            self.violations.append(f"{where}: offset {record[OFFSET]} was never fetched")
        part = cur.partition
        for other in group.instances:
            if (
                other is not inst
                and other.state in (BUSY, BACKOFF)
                and other.cursor is not None
                and other.cursor.partition is part
            ):
                self.violations.append(
                    f"{where}: instance {other.index} is working on {part.name} too"
                )
        key = (group, record[TOPIC], record[PARTITION])
        seen = self.max_delivered.get(key, -1)
        last_first = self.last_first.get(key, -1)
        if attempt == 1 and not redelivery:
            if record[OFFSET] <= last_first:
                self.violations.append(
                    f"{where}: first delivery of offset {record[OFFSET]} after {last_first}"
                )
            self.last_first[key] = record[OFFSET]
        if redelivery and record[OFFSET] > seen:
            self.violations.append(
                f"{where}: flagged as a redelivery but offset {record[OFFSET]} was never "
                f"delivered (highest so far {seen})"
            )
        self.max_delivered[key] = max(seen, record[OFFSET])

    def processed(
        self,
        t: float,
        group: ConsumerGroup,
        instance: int,
        record: Record,
        started: float,
        duplicate: bool,
    ) -> None:
        where = f"t={t:.4f} {group.name}#{instance} {record!r}"
        done = self.processed_ids.setdefault(group, set())
        if group.idempotent and record[ID] in done:
            self.violations.append(f"{where}: an idempotent service processed it twice")
        done.add(record[ID])
        if duplicate:
            return
        fresh = self.fresh_ids.setdefault(group, set())
        if record[ID] in fresh:
            self.violations.append(f"{where}: counted as freshly processed twice")
        fresh.add(record[ID])
        self.finished_ids.setdefault(group, set()).add(record[ID])
        self.redriven_fresh.get(group, set()).discard(record[ID])
        self.fresh_processed[group] += 1
        if group.mode != "stream" or instance >= RETRY_INSTANCE_BASE:
            return  # a retried record comes after later ones: retry topics give up order
        key = (group, record[TOPIC], record[PARTITION])
        last = self.last_fresh.get(key, -1)
        if record[OFFSET] <= last:
            self.violations.append(
                f"{where}: processed offset {record[OFFSET]} after offset {last} "
                f"in {record[TOPIC]}/{record[PARTITION]}"
            )
        self.last_fresh[key] = record[OFFSET]

    def failed(
        self,
        t: float,
        group: ConsumerGroup,
        instance: int,
        record: Record,
        attempt: int,
        reason: str,
    ) -> None:
        inst = _instance(group, instance)
        if inst is None or inst.record is not record:
            return
        # Whether this copy stands for an event still to deal with: one read from a partition
        # is fresh unless the group had finished, skipped or jumped over its offset (a reset,
        # or auto.offset.reset after retention) or it repeats an event the group had finished
        # (a redriven copy); a queued message, unless it is such a repeat or a duplicate dead
        # letter shovelled back. The witness takes that from the engine and counts the rest.
        if isinstance(group, StreamGroup):
            self.failing_copy[(group, record[ID])] = not group._is_dup(inst, record)
        else:
            self.failing_copy[(group, record[ID])] = not inst.repeat

    def dead_lettered(
        self, t: float, group: ConsumerGroup, record: Record, reason: str, attempts: int
    ) -> None:
        self.dead_letter_count[group] += 1
        finished = self.finished_ids.setdefault(group, set())
        redriven = self.redriven_fresh.setdefault(group, set())
        copy = self.failing_copy.pop((group, record[ID]), None)
        if copy is None:
            # read from a partition or queue: a dead letter stands for a waiting event unless
            # the group had finished that event before (a redelivery after a crash or reset)
            fresh = record[ID] not in finished or (group.mode == "queue" and record[ID] in redriven)
        else:
            fresh = copy
        if fresh:
            # a stream group's dead letters stay in its DLT: each fresh one is counted for
            # good; a queue's wait in the dead-letter queue until a shovel moves them back
            self.fresh_dead[group] += 1
            self.waiting_ids.setdefault(group, set()).add(record[ID])
            redriven.discard(record[ID])
        finished.add(record[ID])
        expected = _dead_letter_attempts(group, reason)
        if expected is not None and attempts != expected:
            self.violations.append(
                f"t={t:.4f} {group.name} {record!r}: dead-lettered after {attempts} attempts, "
                f"its policy allows {expected}"
            )

    def redriven(self, t: float, group: ConsumerGroup, record: Record) -> None:
        self.redrive_count[group] += 1
        self.redriven_ids.setdefault(group, set()).add(record[ID])
        if group.mode == "stream":
            return  # republished to the topic: a new record, which the partitions count
        waiting = self.waiting_ids.setdefault(group, set())
        if record[ID] in waiting:  # a fresh letter goes back to work (a duplicate one: no change)
            waiting.discard(record[ID])
            self.redriven_fresh.setdefault(group, set()).add(record[ID])


def _dead_letter_attempts(group: ConsumerGroup, reason: str) -> int | None:
    """How many attempts a dead letter must have used, by the group's failure policy."""
    if reason.startswith("delivery limit exceeded"):
        limit = getattr(group, "delivery_limit", None)
        return None if limit is None else limit + 1
    if reason.startswith("cannot read"):
        return None  # unreadable: given up at once, whatever the attempt
    if group.mode == "queue" and getattr(group, "on_failure", "") != "retry_queue":
        # reject: at the first failure, which may follow returns from cancels and crashes;
        # nack: only a delivery limit dead-letters a nacked message
        return None
    return group.retry.max_attempts


def _work_in_flight(group: ConsumerGroup) -> bool:
    return any(
        (i.record is not None and i.state in (BUSY, BACKOFF)) or i.batch for i in group.instances
    )


def _committed(group: ConsumerGroup) -> dict[tuple[str, int], int]:
    return {(p["topic"], p["partition"]): p["committed"] for p in group.partitions_state()}


# --- the state machine ----------------------------------------------------------------------


class BrokerMachine(RuleBasedStateMachine):
    """Random scenario, random commands; the invariants hold after every step."""

    mode = "stream"

    def __init__(self) -> None:
        super().__init__()
        self.sim: Simulation
        self.doc: dict[str, Any] = {}
        self.witness = Witness()
        self.committed: dict[ConsumerGroup, dict[tuple[str, int], int]] = {}
        # per group: the witness's append counts when it joined, and records it starts with
        self.joined: dict[ConsumerGroup, tuple[Counter[str], int]] = {}
        self.seed = 0
        # spaced runs never apply two commands in the same slice, so replay() can rebuild them
        self.spaced = False
        # everything done to the simulation, in order: ("run", until) or ("apply", command)
        self.steps: list[tuple[str, Any]] = []

    # helpers

    def context(self) -> str:
        """Everything needed to rebuild this run by hand: scenario, seed and steps."""
        steps = ",\n".join(f"    {step!r}" for step in self.steps)
        return (
            f"\nscenario = {self.doc!r}\nseed = {self.seed}\nnow = {self.sim.now:.6f}"
            f"\nsteps = [  # ('run', until) or ('apply', command)\n{steps}\n]"
        )

    def track(self, group: ConsumerGroup, start: str) -> None:
        stored = 0
        if start == "earliest":
            stored = sum(len(p.records) for t in group.topics for p in t.partitions)
        self.joined[group] = (Counter(self.witness.appended), stored)
        self.committed[group] = _committed(group)

    def untrack(self, group: ConsumerGroup) -> None:
        self.joined.pop(group, None)
        self.committed.pop(group, None)

    def pick_group(self, data: st.DataObject) -> ConsumerGroup:
        name = data.draw(st.sampled_from(sorted(self.sim.groups)), label="consumer")
        return self.sim.groups[name]

    def apply(self, command: dict[str, Any]) -> None:
        self.wait(0.0)  # a no-op, except between two commands of a spaced run
        self.steps.append(("apply", command))
        self.sim.apply(command)

    def expect_rejected(self, command: dict[str, Any]) -> None:
        """The engine must refuse ``command`` and leave the simulation exactly as it was."""
        sim = self.sim
        before = sim.snapshot()
        log_len, pending, now = len(sim.command_log), sim.pending, sim.now
        committed = {g: _committed(g) for g in sim.groups.values()}
        with pytest.raises(CommandError):
            sim.apply(command)
        assert sim.snapshot() == before, f"refused {command} changed the state{self.context()}"
        assert (len(sim.command_log), sim.pending, sim.now) == (log_len, pending, now)
        assert {g: _committed(g) for g in sim.groups.values()} == committed

    # setup

    @initialize(data=st.data())
    def build(self, data: st.DataObject) -> None:
        self.doc = data.draw(scenario_docs(self.mode), label="scenario")
        self.seed = data.draw(st.integers(0, 2**32 - 1), label="seed")
        self.spaced = data.draw(st.booleans(), label="spaced")
        self.sim = Simulation(parse_scenario(self.doc), seed=self.seed)
        self.sim.add_observer(self.witness)
        for group in self.sim.groups.values():
            self.track(group, group.spec.start)

    # time

    def wait(self, dt: float) -> None:
        """Let ``dt`` of virtual time pass (spaced runs: at least 1 ms after a command)."""
        if self.spaced and self.steps and self.steps[-1][0] == "apply":
            dt = max(dt, 0.001)
        if dt > 0:
            until = self.sim.now + dt
            self.steps.append(("run", until))
            self.sim.run_until(until)

    @rule(dt=st.sampled_from([0.001, 0.05, 0.3, 1.0, 2.0, 4.0]))
    def advance(self, dt: float) -> None:
        self.wait(dt)

    # services

    @precondition(lambda self: self.sim.groups)
    @rule(dt=GAPS, data=st.data(), action=st.sampled_from(["down", "up", "crash"]))
    def stop_start_or_crash_service(self, dt: float, data: st.DataObject, action: str) -> None:
        self.wait(dt)
        group = self.pick_group(data)
        self.apply({"command": f"consumer.{action}", "consumer": group.name})

    @precondition(lambda self: self.sim.groups)
    @rule(dt=GAPS, data=st.data(), down_for=GAPS, whole=st.booleans())
    def crash_and_restart(
        self, dt: float, data: st.DataObject, down_for: float, whole: bool
    ) -> None:
        """The at-least-once lesson: work since the last commit is delivered again."""
        self.wait(dt)
        group = self.pick_group(data)
        running = sorted(i.index for i in group.instances if i.alive)
        cmd: dict[str, Any] = {"command": "consumer.crash", "consumer": group.name}
        if running and not whole:
            cmd["instance"] = data.draw(st.sampled_from(running), label="instance")
        self.apply(cmd)
        self.wait(down_for)
        self.apply({"command": "consumer.up", "consumer": group.name})

    @precondition(lambda self: self.sim.groups)
    @rule(dt=GAPS, data=st.data())
    def crash_one_instance(self, dt: float, data: st.DataObject) -> None:
        self.wait(dt)
        group = self.pick_group(data)
        running = sorted(i.index for i in group.instances if i.alive)
        if not running:
            self.expect_rejected(
                {"command": "consumer.crash", "consumer": group.name, "instance": 0}
            )
            return
        index = data.draw(st.sampled_from(running), label="instance")
        self.apply({"command": "consumer.crash", "consumer": group.name, "instance": index})

    @precondition(lambda self: self.sim.groups)
    @rule(dt=GAPS, data=st.data(), value=st.sampled_from([0.25, 1.0, 3.0]))
    def slow_service(self, dt: float, data: st.DataObject, value: float) -> None:
        self.wait(dt)
        group = self.pick_group(data)
        self.apply({"command": "consumer.slow", "consumer": group.name, "value": value})

    @precondition(lambda self: self.sim.groups)
    @rule(dt=GAPS, data=st.data(), value=st.sampled_from([0.0, 0.1, 0.5, 1.0]))
    def set_failure_rate(self, dt: float, data: st.DataObject, value: float) -> None:
        self.wait(dt)
        group = self.pick_group(data)
        self.apply({"command": "consumer.failure_rate", "consumer": group.name, "value": value})

    @precondition(lambda self: self.sim.groups)
    @rule(dt=GAPS, data=st.data(), value=st.integers(0, 4))
    def scale_service(self, dt: float, data: st.DataObject, value: int) -> None:
        self.wait(dt)
        group = self.pick_group(data)
        self.apply({"command": "consumer.instances", "consumer": group.name, "value": value})

    @rule(dt=GAPS, data=st.data(), value=st.sampled_from([0, 3, 10, 40]))
    def set_producer_rate(self, dt: float, data: st.DataObject, value: float) -> None:
        self.wait(dt)
        name = data.draw(st.sampled_from(sorted(self.sim.producers)), label="producer")
        self.apply({"command": "producer.rate", "producer": name, "value": value})

    @rule(dt=GAPS, data=st.data(), down_for=st.sampled_from([0.0, 0.3, 2.0]), whole=st.booleans())
    def partition_leader_down_and_up(
        self, dt: float, data: st.DataObject, down_for: float, whole: bool
    ) -> None:
        """A broker fault: producers buffer and retry, unkeyed records go around, consumers
        fetch nothing from the partition until its leader is back."""
        self.wait(dt)
        name = data.draw(st.sampled_from(sorted(self.sim.topics)), label="topic")
        cmd: dict[str, Any] = {"command": "broker.down", "topic": name}
        if not whole:
            parts = len(self.sim.topics[name].partitions)
            cmd["partition"] = data.draw(st.integers(0, parts - 1), label="partition")
        self.apply(cmd)
        self.wait(down_for)
        self.apply({**cmd, "command": "broker.up"})

    @precondition(lambda self: self.sim.groups)
    @rule(dt=GAPS, data=st.data())
    def redrive_dead_letters(self, dt: float, data: st.DataObject) -> None:
        self.wait(dt)
        group = self.pick_group(data)
        cmd: dict[str, Any] = {"command": "dead_letters.redrive", "consumer": group.name}
        one_event = data.draw(st.booleans(), label="one event")
        if group.dead_letters and one_event:
            ids = sorted({dl.record[ID] for dl in group.dead_letters})
            cmd["event_id"] = data.draw(st.sampled_from(ids), label="event_id")
        self.apply(cmd)

    @precondition(lambda self: self.sim.groups)
    @rule(
        dt=GAPS,
        data=st.data(),
        to=st.sampled_from(["earliest", "latest", "offset", "time"]),
        stop_first=st.booleans(),
    )
    def reset_offsets(self, dt: float, data: st.DataObject, to: str, stop_first: bool) -> None:
        self.wait(dt)
        group = self.pick_group(data)
        if stop_first and isinstance(group, StreamGroup):
            # the legal way: stop the service, let its work in flight finish, then reset
            if group.status == "up":
                self.apply({"command": "consumer.down", "consumer": group.name})
            for _ in range(40):
                if not _work_in_flight(group):
                    break
                self.wait(0.05)
        cmd: dict[str, Any] = {"command": "consumer.reset", "consumer": group.name, "to": to}
        if to == "offset":
            cmd["value"] = data.draw(st.integers(0, 60), label="offset")
        elif to == "time":
            cmd["value"] = data.draw(st.floats(0.0, self.sim.now + 1.0), label="time")
        self.wait(0.0)  # spaced runs: the slice before the reset, so decide after it
        if not isinstance(group, StreamGroup) or group.status == "up" or _work_in_flight(group):
            # queues have no offsets; Kafka resets only inactive groups (down, nothing in flight)
            self.expect_rejected(cmd)
            return
        heads = [max(c.position, c.completed) for c in group.cursors]
        self.apply(cmd)
        self.committed[group] = _committed(group)  # the one way committed may move back
        for cur in group.cursors:  # and reading starts again from there
            self.witness.last_first[(group, *cur.tp)] = cur.committed - 1
        # A reset forward skips events: they count as done ("skipped"), so a later reset back
        # that reads them again reads them as duplicates. The witness learns which they were.
        finished = self.witness.finished_ids.setdefault(group, set())
        for cur, head in zip(group.cursors, heads, strict=True):
            finished.update(
                r[ID] for r in cur.partition.records if head <= r[OFFSET] < cur.committed
            )

    @precondition(lambda self: len(self.sim.groups) < len(GROUP_NAMES))
    @rule(dt=GAPS, data=st.data(), start=st.sampled_from(["earliest", "latest"]))
    def add_service(self, dt: float, data: st.DataObject, start: str) -> None:
        self.wait(dt)
        free = [n for n in GROUP_NAMES if n not in self.sim.groups]
        name = data.draw(st.sampled_from(free), label="name")
        topics = tuple(self.sim.topics)
        spec = data.draw(consumer_docs(name, topics, self.mode), label="spec")
        self.apply({"command": "consumer.add", "consumer": spec, "from": start})
        self.track(self.sim.groups[name], start)

    @precondition(lambda self: len(self.sim.groups) > 1)
    @rule(dt=GAPS, data=st.data())
    def remove_service(self, dt: float, data: st.DataObject) -> None:
        self.wait(dt)
        group = self.pick_group(data)
        self.apply({"command": "consumer.remove", "consumer": group.name})
        self.untrack(group)

    @precondition(lambda self: self.sim.groups)
    @rule(dt=GAPS, data=st.data())
    def refuse_invalid_command(self, dt: float, data: st.DataObject) -> None:
        self.wait(dt)
        group = self.pick_group(data)
        dead = [i.index for i in group.instances if not i.alive]
        not_running = data.draw(
            st.sampled_from([*dead, max((i.index for i in group.instances), default=-1) + 1]),
            label="not running",
        )
        spec = {"name": group.name, "topics": [next(iter(self.sim.topics))]}
        invalid: list[dict[str, Any]] = [
            {"command": "consumer.crash", "consumer": group.name, "instance": not_running},
            {"command": "consumer.add", "consumer": spec, "from": "earliest"},
            {"command": "consumer.down", "consumer": "nobody"},
            {"command": "consumer.failure_rate", "consumer": group.name, "value": 1.5},
            {"command": "consumer.slow", "consumer": group.name, "value": 0},
            {"command": "consumer.instances", "consumer": group.name, "value": 2.5},
            {"command": "producer.rate", "producer": "p0", "value": -1},
            {"command": "dead_letters.redrive", "consumer": group.name, "event_id": 0},
            {"command": "consumer.reset", "consumer": group.name, "to": "yesterday"},
        ]
        self.expect_rejected(data.draw(st.sampled_from(invalid), label="invalid command"))

    # invariants

    @invariant()
    def nothing_lost_nothing_invented(self) -> None:
        for group in self.sim.groups.values():
            acc = group.accounting()
            assert set(acc) == {"produced", *ACCOUNTING_TERMS}, acc
            assert all(v >= 0 for v in acc.values()), f"{group.name}: {acc}{self.context()}"
            total = sum(acc[k] for k in ACCOUNTING_TERMS)
            assert acc["produced"] == total, (
                f"{group.name} ({group.mode}): produced {acc['produced']} != sum of terms "
                f"{total}: {acc}{self.context()}"
            )

    @invariant()
    def produced_matches_the_records_appended_since_the_group_joined(self) -> None:
        w = self.witness
        for name, topic in self.sim.topics.items():
            assert w.appended[name] == topic.produced == sum(p.end for p in topic.partitions)
        for group, (at_join, stored) in self.joined.items():
            expected = stored + sum(w.appended[t.name] - at_join[t.name] for t in group.topics)
            produced = group.accounting()["produced"]
            assert produced == expected, (
                f"{group.name}: accounting says produced {produced}, the witness counted "
                f"{expected}{self.context()}"
            )

    @invariant()
    def counters_match_the_observed_events(self) -> None:
        w = self.witness
        assert not w.violations, "\n".join(w.violations[:10]) + self.context()
        for group in self.sim.groups.values():
            acc = group.accounting()
            assert w.fresh_processed[group] == acc["processed"], (group.name, acc)
            if group.mode == "stream":
                dead = w.fresh_dead[group]
            else:
                dead = len(w.waiting_ids.get(group, ()))
            assert dead == acc["dead_lettered"], (group.name, acc, self.context())
            for dl in group.dead_letters:
                expected = _dead_letter_attempts(group, dl.reason)
                assert expected is None or dl.attempts == expected, (group.name, dl)

    @invariant()
    def committed_offsets_never_move_backwards(self) -> None:
        for group, before in self.committed.items():
            now = _committed(group)
            for key, offset in now.items():
                assert offset >= before[key], (
                    f"{group.name} {key[0]}/{key[1]}: committed {before[key]} -> {offset} "
                    f"without a reset{self.context()}"
                )
            self.committed[group] = now

    @invariant()
    def a_group_never_commits_work_it_has_not_finished(self) -> None:
        # at-least-once: a crash restarts from the committed offset, so nothing below it may be
        # unfinished (completed: one past the highest offset processed, filtered, dead-lettered,
        # expired or skipped; a partition has one record in flight at a time)
        for group in self.sim.groups.values():
            if isinstance(group, StreamGroup):
                for cur in group.cursors:
                    assert cur.committed <= cur.completed, (
                        f"{group.name} {cur.partition.name}: committed {cur.committed} is past "
                        f"completed {cur.completed}{self.context()}"
                    )

    @invariant()
    def lag_is_what_is_left_to_do(self) -> None:
        for group in self.sim.groups.values():
            lag = group.lag()
            assert lag >= 0
            if isinstance(group, StreamGroup):
                parts = group.partitions_state()
                for p in parts:
                    assert p["start"] <= p["end"] and p["committed"] <= p["end"], p
                    assert p["lag"] == p["end"] - p["committed"], p
                expected = sum(p["end"] - p["committed"] for p in parts)
            else:
                acc = group.accounting()
                expected = (
                    acc["not_delivered"] + acc["retrying"] + acc["in_flight"] + acc["batched"]
                )
            assert lag == expected, f"{group.name}: lag {lag} != {expected}{self.context()}"

    @rule()
    def heal_everything_and_let_it_drain(self) -> None:
        """Liveness: with producers stopped and every service healthy and running, every group
        eventually works through everything (nothing stuck in a rebalance, an orphaned
        partition or a queue nobody polls)."""
        for name in sorted(self.sim.producers):
            self.apply({"command": "producer.rate", "producer": name, "value": 0})
        for name in sorted(self.sim.topics):
            self.apply({"command": "broker.up", "topic": name})
        for group in list(self.sim.groups.values()):
            name = group.name
            self.apply({"command": "consumer.failure_rate", "consumer": name, "value": 0})
            self.apply({"command": "consumer.slow", "consumer": name, "value": 1})
            if not any(not i.retire for i in group.instances):
                self.apply({"command": "consumer.instances", "consumer": name, "value": 1})
            self.apply({"command": "consumer.up", "consumer": name})

        def busy(group: ConsumerGroup) -> dict[str, int]:
            acc = group.accounting()
            left = {k: acc[k] for k in ("in_flight", "retrying", "batched", "not_delivered")}
            left["lag"] = group.lag()
            return {k: v for k, v in left.items() if v}

        for _ in range(60):
            if not any(busy(g) for g in self.sim.groups.values()):
                break
            self.wait(10.0)
        stuck = {g.name: busy(g) for g in self.sim.groups.values() if busy(g)}
        assert not stuck, f"still not done after healing: {stuck}{self.context()}"

    def teardown(self) -> None:
        sim = getattr(self, "sim", None)
        if sim is None:
            return
        # the same scenario, seed, slices and commands give the same state; and as ``again``
        # has no per-event observer (the witness has), it runs the engine's fast lane: the
        # lane and the full path must agree on everything, latency figures included
        again = Simulation(sim.scenario, seed=self.seed)
        assert all(g._quiet for g in again.groups.values())
        assert not any(g._quiet for g in sim.groups.values())
        for kind, arg in self.steps:
            if kind == "run":
                again.run_until(arg)
            else:
                again.apply(arg)
        assert again.snapshot() == sim.snapshot(), f"rerun differs{self.context()}"
        assert again.metrics() == sim.metrics(), f"fast lane differs{self.context()}"
        # ... and so does replay() from the command log alone
        replayed = replay(sim.scenario, sim.seed, sim.command_log, until=sim.now)
        assert replayed.snapshot() == sim.snapshot(), f"replay differs{self.context()}"


class StreamBrokerMachine(BrokerMachine):
    mode = "stream"


class QueueBrokerMachine(BrokerMachine):
    mode = "queue"


TestStreamGroupsKeepTheirInvariantsUnderFaults = StreamBrokerMachine.TestCase
TestStreamGroupsKeepTheirInvariantsUnderFaults.settings = MACHINE_SETTINGS
TestQueueGroupsKeepTheirInvariantsUnderFaults = QueueBrokerMachine.TestCase
TestQueueGroupsKeepTheirInvariantsUnderFaults.settings = MACHINE_SETTINGS


# --- focused reproductions --------------------------------------------------------------------

ONE_SLOW_CONSUMER = {
    "topics": [{"name": "t", "partitions": 1}],
    "producers": [{"name": "p", "topic": "t", "event": "E", "rate": 20, "arrival": "constant"}],
    "consumers": [
        {
            "name": "c",
            "topics": ["t"],
            "max_poll_records": 1,  # a stopping member finishes its batch: make it one record
            "processing": {"dist": "constant", "mean_ms": 500},
        }
    ],
}


def _conservation_gap(group: ConsumerGroup) -> tuple[int, dict[str, int]]:
    acc = group.accounting()
    return acc["produced"] - sum(acc[k] for k in ACCOUNTING_TERMS), acc


@pytest.mark.parametrize("to", ["earliest", "latest"])
def test_reset_of_a_stopped_group_waits_until_its_work_in_flight_is_done(to: str) -> None:
    """consumer.down lets the record in flight finish. Resetting meanwhile used to lose it
    (``latest``: neither skipped nor processed) or count it twice (``earliest``: in flight and
    not delivered at once); now the reset is refused until the group is idle."""
    sim = Simulation(parse_scenario(ONE_SLOW_CONSUMER), seed=1)
    sim.run_until(1.02)  # offset 1 is being processed, 0.55 s .. 1.05 s
    group = sim.groups["c"]
    sim.apply({"command": "consumer.down", "consumer": "c"})
    assert _work_in_flight(group)
    before = sim.snapshot()
    with pytest.raises(CommandError, match="still finishing"):
        sim.apply({"command": "consumer.reset", "consumer": "c", "to": to})
    assert sim.snapshot() == before
    sim.run_until(1.1)
    assert not _work_in_flight(group)
    sim.apply({"command": "consumer.reset", "consumer": "c", "to": to})
    assert _conservation_gap(group) == (0, group.accounting())
    sim.apply({"command": "consumer.up", "consumer": "c"})
    sim.run_until(3.0)
    assert _conservation_gap(group) == (0, group.accounting())


def test_replay_of_commands_applied_back_to_back_rebuilds_the_run() -> None:
    """Two commands in one slice (here up, then slow) share a time in the command log.

    The original run applied them back to back, so the assignment that ``up`` made at once
    (an empty group, no initial rebalance delay) started the first record before ``slow``.
    ``replay`` calls ``run_until(t)`` before each command, which runs that rebalance (and the
    first delivery, at normal speed) between the two commands.
    """
    scenario = parse_scenario(
        {
            "topics": [{"name": "t", "partitions": 1}],
            "producers": [
                {"name": "p", "topic": "t", "event": "E", "rate": 5, "arrival": "constant"}
            ],
            "consumers": [
                {
                    "name": "c",
                    "topics": ["t"],
                    "group_initial_rebalance_delay_ms": 0,
                    "processing": {"dist": "constant", "mean_ms": 100},
                }
            ],
        }
    )
    sim = Simulation(scenario, seed=1)
    sim.apply({"command": "consumer.down", "consumer": "c"})
    sim.run_until(2.0)
    sim.apply({"command": "consumer.up", "consumer": "c"})
    sim.apply({"command": "consumer.slow", "consumer": "c", "value": 3})
    sim.run_until(2.25)
    # "up" takes effect at once (no initial delay): the first record starts at normal speed
    # before "slow" arrives, and is done by 2.1; the replay must agree
    assert sim.groups["c"].processed == 1
    again = replay(scenario, sim.seed, sim.command_log, until=sim.now)
    assert again.snapshot() == sim.snapshot()


def _one_consumer(**consumer: Any) -> Simulation:
    """One topic, a producer every 100 ms (t = 0.1, 0.2, ...), one service taking 10 ms; a
    crashed member is noticed within 200 ms and a restarted group resumes at once."""
    spec = {
        "name": "c",
        "topics": ["t"],
        "session_timeout_ms": 200,
        "heartbeat_interval_ms": 50,
        "group_initial_rebalance_delay_ms": 0,
        "retry": {"max_attempts": 1},
        "processing": {"dist": "constant", "mean_ms": 10},
        **consumer,
    }
    return Simulation(
        parse_scenario(
            {
                "topics": [{"name": "t"}],
                "producers": [
                    {"name": "p", "topic": "t", "event": "E", "rate": 10, "arrival": "constant"}
                ],
                "consumers": [spec],
            }
        ),
        seed=1,
    )


def test_a_dead_letter_redelivered_after_a_crash_is_counted_once() -> None:
    """Every event fails and goes to the dead-letter topic; offsets are auto-committed once a
    second, so after the crash at 0.55 s the group rewinds to offset 0 and events 1-5 are
    delivered again, fail and are dead-lettered again: each counted once."""
    sim = _one_consumer(failure_rate=1, auto_commit_interval_ms=1000)
    sim.run_until(0.55)
    sim.apply({"command": "consumer.crash", "consumer": "c"})
    sim.apply({"command": "consumer.up", "consumer": "c"})
    sim.run_until(1.0)
    group = sim.groups["c"]
    # events 1-5 dead-lettered, 1-5 again after the crash (redelivered), then 6-9: 14 letters
    # for 9 events, and 5 of them counted as duplicates
    assert (group.redelivered, group.dead_lettered, group.accounting()["dead_lettered"]) == (
        5,
        14,
        9,
    )
    gap, acc = _conservation_gap(group)
    assert gap == 0, acc


def test_a_processed_event_read_again_after_a_reset_is_counted_once() -> None:
    """Events 1-3 are processed; the service is reset to earliest and now fails everything:
    the three events are read again and dead-lettered, counted as processed *and* as dead
    letters (6 for 3). The same happens to events skipped by a reset to latest and read
    again after a reset to earliest."""
    sim = _one_consumer()
    sim.run_until(0.35)
    for cmd in (
        {"command": "producer.rate", "producer": "p", "value": 0},
        {"command": "consumer.down", "consumer": "c"},
        {"command": "consumer.reset", "consumer": "c", "to": "earliest"},
        {"command": "consumer.failure_rate", "consumer": "c", "value": 1},
        {"command": "consumer.up", "consumer": "c"},
    ):
        sim.apply(cmd)
    sim.run_until(1.0)
    gap, acc = _conservation_gap(sim.groups["c"])
    assert gap == 0, acc


def test_an_idempotent_stream_service_skips_a_redriven_event_it_already_processed() -> None:
    """Event 1 fails and is dead-lettered. Offsets are committed once a second, so after a
    crash it is read again from the partition and, failures now off, processed. Redriving the
    dead letter must not process it again: the service is idempotent (queue mode asks
    ``seen`` before processing a redriven event; the stream redrive path never does). The
    skipped event must still be accounted for somewhere."""
    sim = _one_consumer(idempotent=True, failure_rate=1, auto_commit_interval_ms=1000)
    sim.run_until(0.15)  # event 1 (t=0.1) failed and was dead-lettered
    for cmd in (
        {"command": "producer.rate", "producer": "p", "value": 0},
        {"command": "consumer.failure_rate", "consumer": "c", "value": 0},
        {"command": "consumer.crash", "consumer": "c"},
        {"command": "consumer.up", "consumer": "c"},
    ):
        sim.apply(cmd)
    sim.run_until(0.5)  # offset 0 was never committed: read again once the crash is noticed
    group = sim.groups["c"]
    assert group.processed == 1
    sim.apply({"command": "dead_letters.redrive", "consumer": "c"})
    sim.run_until(0.7)
    assert group.processed == 1
    gap, acc = _conservation_gap(group)
    assert gap == 0, acc


def test_offsets_skipped_by_a_reset_and_read_later_are_redelivered_flagged() -> None:
    """A reset forward to offset 2, then back to earliest, while the service was down: offsets
    0 and 1 are first delivered after that, and delivered again after a crash flagged as
    redeliveries (a first delivery of a skipped offset used to lower the highest offset
    handed out, so offset 1 counted as new twice)."""
    sim = _one_consumer(max_poll_records=1)
    rec = EventRecorder()
    sim.add_observer(rec)
    sim.apply({"command": "consumer.down", "consumer": "c"})
    sim.run_until(0.35)
    sim.apply({"command": "consumer.reset", "consumer": "c", "to": "offset", "value": 2})
    sim.apply({"command": "consumer.reset", "consumer": "c", "to": "earliest"})
    sim.apply({"command": "consumer.up", "consumer": "c"})
    sim.run_until(0.5)
    sim.apply({"command": "consumer.crash", "consumer": "c"})
    sim.apply({"command": "consumer.up", "consumer": "c"})
    sim.run_until(2)
    second = [o.detail for o in rec.log if o.kind == "delivered" and o.event_id == 2]
    assert second == ["", "redelivery"]
    gap, acc = _conservation_gap(sim.groups["c"])
    assert gap == 0, acc
