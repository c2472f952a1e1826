"""What a scenario costs to run, estimated before it runs.

A live server runs many simulations on one event loop. Each is paced in bounded slices, so a
heavy one only falls behind; but a scenario can be so heavy that it could never show anything
useful (millions of deliveries a simulated second, thousands of partitions per service), and
building and drawing its state alone would cost every other class on the server. These figures
let the server refuse such a scenario when it is created, with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .scenario import Scenario

# Deliveries (records times the services reading them) a simulated second. The engine runs some
# tens of thousands of actions a wall second in the live runner's configuration (46,000 on the
# e-commerce preset here), a few per delivery: past this, a run could not show one simulated
# second a second even alone on the server.
MAX_DELIVERIES_PER_S = 20_000
# (partition, service) pairs: each is a lag figure, an assignment and a cell on the page.
MAX_PARTITION_READERS = 5_000


@dataclass(frozen=True)
class Cost:
    deliveries_per_s: float  # at the highest rate any producer reaches (bursts and faults too)
    partition_readers: int

    def refusals(self) -> list[str]:
        out = []
        if self.deliveries_per_s > MAX_DELIVERIES_PER_S:
            out.append(
                f"this scenario would deliver up to {self.deliveries_per_s:,.0f} events a "
                f"simulated second (each producer's highest rate times the services reading its "
                f"topic); one server runs at most {MAX_DELIVERIES_PER_S:,}: lower the rates or "
                f"the number of services"
            )
        if self.partition_readers > MAX_PARTITION_READERS:
            out.append(
                f"this scenario has {self.partition_readers:,} (partition, service) pairs "
                f"(each service times the partitions of the topics it reads); one simulation "
                f"may have at most {MAX_PARTITION_READERS:,}: use fewer partitions or services"
            )
        return out


def estimate(scenario: Scenario) -> Cost:
    partitions = {t.name: t.partitions for t in scenario.topics}
    readers: dict[str, int] = {}
    for c in scenario.consumers:
        for topic in c.topics:
            readers[topic] = readers.get(topic, 0) + 1
    fault_rates: dict[str, float] = {}
    for f in scenario.faults:
        if f.action == "rate" and f.producer and f.value is not None:
            fault_rates[f.producer] = max(fault_rates.get(f.producer, 0.0), float(f.value))
    deliveries = 0.0
    for p in scenario.producers:
        top = max([p.rate, fault_rates.get(p.name, 0.0)] + [b.rate for b in p.bursts])
        deliveries += top * max(1, readers.get(p.topic, 0))
    pairs = sum(partitions.get(topic, 1) for c in scenario.consumers for topic in c.topics)
    return Cost(deliveries_per_s=deliveries, partition_readers=pairs)


def live_estimate(sim: Any) -> Cost:
    """The same figures for a running :class:`~simulator.simulation.Simulation` (its current
    producers' rates and services)."""
    readers: dict[str, int] = {}
    pairs = 0
    for group in sim.groups.values():
        for topic in group.topics:
            readers[topic.name] = readers.get(topic.name, 0) + 1
            pairs += len(topic.partitions)
    deliveries = sum(p.rate * max(1, readers.get(p.topic.name, 0)) for p in sim.producers.values())
    return Cost(deliveries_per_s=deliveries, partition_readers=pairs)


def refusal_for(sim: Any, command: Any) -> str | None:
    """Why a command would take a running simulation past the limits, or None.

    Checked before ``producer.rate`` and ``consumer.add`` are applied, so a run that was allowed
    cannot be grown, one command at a time, into one the server would have refused."""
    if not isinstance(command, dict):
        return None
    name = command.get("command")
    now = live_estimate(sim)
    deliveries, pairs = now.deliveries_per_s, now.partition_readers
    if name == "producer.rate":
        producer = sim.producers.get(command.get("producer"))
        value = command.get("value")
        if producer is None or isinstance(value, bool) or not isinstance(value, int | float):
            return None  # the command itself says what is wrong
        readers = sum(1 for g in sim.groups.values() if producer.topic in g.topics)
        deliveries += (float(value) - producer.rate) * max(1, readers)
    elif name == "consumer.add":
        spec = command.get("consumer")
        topics = spec.get("topics") if isinstance(spec, dict) else None
        if not isinstance(topics, list):
            return None
        for topic_name in topics:
            topic = sim.topics.get(topic_name) if isinstance(topic_name, str) else None
            if topic is None:
                continue
            pairs += len(topic.partitions)
            deliveries += sum(p.rate for p in sim.producers.values() if p.topic is topic)
    else:
        return None
    reasons = Cost(deliveries_per_s=deliveries, partition_readers=pairs).refusals()
    return reasons[0] if reasons else None
