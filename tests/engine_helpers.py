"""Small builders shared by the engine tests."""

from __future__ import annotations

from typing import Any

from simulator import EventRecorder, Simulation, parse_scenario


def scenario(**overrides: Any) -> dict[str, Any]:
    """One topic, one producer, one consumer: constant arrivals and processing."""
    doc: dict[str, Any] = {
        "seed": 1,
        "topics": [{"name": "orders", "partitions": 1}],
        "producers": [
            {
                "name": "checkout",
                "topic": "orders",
                "event": "OrderPlaced",
                "rate": 10,
                "arrival": "constant",
            }
        ],
        "consumers": [
            {
                "name": "email",
                "topics": ["orders"],
                "processing": {"dist": "constant", "mean_ms": 50},
                "client_overhead_ms": 0,
            }
        ],
    }
    doc.update(overrides)
    return doc


def burst(count: int, at: float = 0.05, **fields: Any) -> dict[str, Any]:
    """The producer "checkout" sending ``count`` OrderPlaced events at once, at ``at``."""
    return {
        "name": "checkout",
        "topic": "orders",
        "event": "OrderPlaced",
        "rate": 0,
        "bursts": [{"at": at, "count": count}],
        **fields,
    }


def consumer(name: str = "email", **fields: Any) -> dict[str, Any]:
    """A consumer taking exactly 50 ms a record: the exact traces leave out the client's own
    cost per delivery (``client_overhead_ms``, 0.3 ms by default)."""
    c: dict[str, Any] = {
        "name": name,
        "topics": ["orders"],
        "processing": {"dist": "constant", "mean_ms": 50},
        "client_overhead_ms": 0,
    }
    c.update(fields)
    return c


def run(
    doc: dict[str, Any], until: float, seed: int | None = None, **kwargs: Any
) -> tuple[Simulation, EventRecorder]:
    rec = EventRecorder()
    sim = Simulation(parse_scenario(doc), seed, observers=(rec,), **kwargs)
    sim.run_until(until)
    return sim, rec


def trace(rec: EventRecorder, *kinds: str) -> list[tuple[str, float, int, str]]:
    return [
        (o.kind, round(o.t, 6), o.event_id, o.service)
        for o in rec.log
        if not kinds or o.kind in kinds
    ]
