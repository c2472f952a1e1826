"""Schemas in the engine: publish-time checks, readers that cannot read, scenario errors."""

from __future__ import annotations

import pytest

from simulator import ScenarioError, parse_scenario
from tests.engine_helpers import run

V1 = {"type": "object", "properties": {"total": {"type": "number"}}, "required": ["total"]}


def doc(**extra: object) -> dict:
    d: dict = {
        "schemas": {"subjects": {"OrderPlaced": [V1]}},
        "topics": [{"name": "orders"}],
        "producers": [
            {
                "name": "good",
                "topic": "orders",
                "event": "OrderPlaced",
                "rate": 10,
                "arrival": "constant",
                "schema": "OrderPlaced.v1",
                "payload": {"total": 5},
            },
            {
                "name": "bad",
                "topic": "orders",
                "event": "OrderPlaced",
                "rate": 10,
                "arrival": "constant",
                "schema": "OrderPlaced.v1",
                "payload": {"total": "five"},
            },
            {
                "name": "rogue",
                "topic": "orders",
                "event": "OrderPlaced",
                "rate": 10,
                "arrival": "constant",
                "payload": {"amount": 5},
            },
        ],
        "consumers": [
            {
                "name": "email",
                "topics": ["orders"],
                "reads": "OrderPlaced.v1",
                "retry": {"max_attempts": 3},
                "processing": {"dist": "constant", "mean_ms": 1},
            }
        ],
    }
    d.update(extra)
    return d


def test_payloads_that_break_the_producers_schema_are_refused_at_publish() -> None:
    sim, _ = run(doc(), until=2.05)
    bad = sim.producers["bad"]
    assert bad.rejected == 20 and bad.produced == 20
    assert "must be number, got string" in bad.last_rejection
    assert sim.topics["orders"].produced == 40  # good + rogue only


def test_an_event_the_consumer_cannot_read_goes_to_the_dlq_without_retries() -> None:
    sim, _ = run(doc(), until=2.05)
    g = sim.groups["email"]
    assert g.processed == 20 and g.dead_lettered == 20
    assert g.retries == 0
    assert all(d.attempts == 1 for d in g.dead_letters)
    assert {d.reason for d in g.dead_letters} == {
        "cannot read OrderPlaced with OrderPlaced.v1: missing required field 'total'"
    }


def test_an_incompatible_version_in_the_scenario_is_an_error_with_its_path() -> None:
    v2 = {"type": "object", "properties": {"total": {"type": "string"}}, "required": ["total"]}
    with pytest.raises(ScenarioError) as e:
        parse_scenario(doc(schemas={"subjects": {"OrderPlaced": [V1, v2]}}))
    ((path, message),) = e.value.errors
    assert path == "schemas.subjects.OrderPlaced[1]"
    assert "not BACKWARD compatible" in message and "changed type from number to string" in message


def test_schema_references_are_checked() -> None:
    d = doc()
    d["producers"][0]["schema"] = "OrderPlaced.v9"
    d["consumers"][0]["reads"] = "Nope"
    with pytest.raises(ScenarioError) as e:
        parse_scenario(d)
    assert e.value.errors == [
        ("consumers[0].reads", "must name a schema version such as OrderPlaced.v1, got 'Nope'"),
        ("producers[0].schema", "the registry has no schema OrderPlaced.v9"),
    ]
