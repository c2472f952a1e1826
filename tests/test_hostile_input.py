"""Hostile but small input gets a clear refusal: never a traceback, a hang or unbounded memory.

Scenarios are refused with a :class:`ScenarioError` naming the field and the limit; run-time
commands with a :class:`CommandError`; a scheduled fault the run cannot take is recorded and
the run goes on.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from simulator import CommandError, Simulation, parse_scenario, replay
from simulator.compare import Comparison
from simulator.scenario import (
    MAX_DOCUMENT_BYTES,
    FaultSpec,
    ScenarioError,
    load_scenario,
)
from simulator.schema import SchemaError, SchemaRegistry
from tests.engine_helpers import consumer, scenario

PRESETS = Path(__file__).resolve().parent.parent / "simulator/presets"

# "billion laughs": 601 bytes of YAML that a loader expands to 10**7 strings
BOMB_LEVELS = "\n".join(
    f"  {name}: &{name} [{', '.join([f'*{prev}'] * 10)}]"
    for prev, name in zip("abcdef", "bcdefg", strict=True)
)
BOMB = f"""\
topics: [{{name: orders}}]
lesson:
  a: &a [x, x, x, x, x, x, x, x, x, x]
{BOMB_LEVELS}
"""


def _errors(doc: Any) -> list[tuple[str, str]]:
    with pytest.raises(ScenarioError) as e:
        parse_scenario(doc)
    return e.value.errors


def _nested(depth: int, leaf: Any = 1) -> Any:
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


# --- 1. YAML aliases ------------------------------------------------------------------------


def test_a_yaml_alias_bomb_is_refused_before_it_expands() -> None:
    assert len(BOMB.encode()) < 700
    assert _errors(BOMB) == [
        ("", "the YAML expands to more than 100000 values (aliases count each time they are used)")
    ]


def test_a_yaml_anchor_that_contains_itself_is_refused() -> None:
    [(path, message)] = _errors("topics: [{name: orders}]\nlesson: &a [*a]\n")
    assert path == ""
    assert message.startswith("the YAML contains itself (an alias inside its own anchor)")


def test_the_editor_finds_no_lines_in_an_alias_bomb_and_says_why() -> None:
    from dashboard.scenario_views import validate_text

    scenario_, problems = validate_text(BOMB)
    assert scenario_ is None
    assert [(p.line, p.message) for p in problems] == [
        (1, "the YAML expands to more than 100000 values (aliases count each time they are used)")
    ]


# --- 2. depth ---------------------------------------------------------------------------------


def _deep_schema(depth: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object"}
    for _ in range(depth):
        schema = {"type": "object", "properties": {"a": schema}}
    return schema


@pytest.mark.parametrize(
    ("where", "doc", "path"),
    [
        (
            "schema",
            scenario(schemas={"subjects": {"OrderPlaced": [_deep_schema(250)]}}),
            "schemas.subjects.OrderPlaced[0]",
        ),
        (
            "filter",
            scenario(
                consumers=[consumer(filter={"field": "x", "op": "==", "value": _nested(250)})]
            ),
            "consumers[0].filter.value",
        ),
        (
            "payload",
            scenario(
                producers=[
                    {
                        "name": "checkout",
                        "topic": "orders",
                        "event": "OrderPlaced",
                        "rate": 1,
                        "payload": {"x": {"choice": _nested(250)}},
                    }
                ]
            ),
            "producers[0].payload.x.choice",
        ),
    ],
)
def test_json_nested_deeper_than_the_limit_is_refused_with_its_path(
    where: str, doc: dict[str, Any], path: str
) -> None:
    [(at, message)] = _errors(json.dumps(doc))
    assert at.startswith(path), where
    assert message == "is nested more than 32 levels deep"


def test_json_text_nested_thousands_deep_is_refused() -> None:
    text = '{"topics": ' + "[" * 5000 + "]" * 5000 + "}"
    assert _errors(text) == [("", "the JSON nests more than 32 levels deep")]


def test_a_schema_nested_too_deep_is_a_schema_error_in_the_registry() -> None:
    with pytest.raises(SchemaError) as e:
        SchemaRegistry().register("OrderPlaced", _deep_schema(600))
    assert e.value.problems[0].endswith(": nested more than 32 levels deep")


def test_a_consumer_added_at_run_time_is_bounded_in_depth_and_size() -> None:
    sim = Simulation(parse_scenario(scenario()))
    deep = consumer("fraud", filter={"field": "x", "op": "==", "value": _nested(250)})
    with pytest.raises(CommandError, match="nested more than 32 levels deep"):
        sim.apply({"command": "consumer.add", "consumer": deep})
    heavy = consumer("fraud", label="x" * 30_000)
    with pytest.raises(CommandError, match=r"the consumer spec is .* bytes as compact JSON"):
        sim.apply({"command": "consumer.add", "consumer": heavy})
    assert "fraud" not in sim.groups and sim.command_log == []


# --- 3. size ----------------------------------------------------------------------------------


def test_a_document_larger_than_the_limit_once_aliases_expand_is_refused() -> None:
    text = (
        "topics: [{name: orders}]\n"
        f"lesson:\n  big: &big {'y' * 10_000}\n"
        f"  copies: [{', '.join(['*big'] * 30)}]\n"
    )
    assert len(text) < 11_000
    [(path, message)] = _errors(text)
    assert path == ""
    assert message.startswith("the scenario is 310,")
    assert f"at most {MAX_DOCUMENT_BYTES:,} are allowed" in message


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (list(range(1001)), "bad arguments for choice: choice has at most 1000 options, got 1001"),
        (
            [{"nested": "value"}],
            "bad arguments for choice: choice options are constants: numbers, true/false, null "
            "or text of at most 1000 characters",
        ),
        (
            ["z" * 1001],
            "bad arguments for choice: choice options are constants: numbers, true/false, null "
            "or text of at most 1000 characters",
        ),
    ],
)
def test_a_payload_choice_is_bounded(options: list[Any], message: str) -> None:
    producer = {
        "name": "checkout",
        "topic": "orders",
        "event": "OrderPlaced",
        "rate": 1,
        "payload": {"region": {"choice": options}},
    }
    assert _errors(scenario(producers=[producer])) == [("producers[0].payload.region", message)]


# --- 4. numbers -------------------------------------------------------------------------------

HUGE = "1" + "0" * 400  # an int that float() cannot hold


@pytest.mark.parametrize(
    ("text", "path", "message"),
    [
        (
            f'{{"topics": [{{"name": "o", "retention": {{"max_age_s": {HUGE}}}}}]}}',
            "topics[0].retention.max_age_s",
            "must be <= 315360000",
        ),
        (
            '{"topics": [{"name": "o"}], "producers": [{"name": "p", "topic": "o", "event": "E",'
            f' "rate": 1, "bursts": [{{"at": 1, "count": 5, "duration": {HUGE}}}]}}]}}',
            "producers[0].bursts[0].duration",
            "must be <= 604800",
        ),
        (
            '{"topics": [{"name": "o"}], "producers": [{"name": "p", "topic": "o", "event": "E",'
            f' "rate": 1, "payload": {{"total": {{"uniform": [0, {HUGE}]}}}}}}]}}',
            "producers[0].payload.total",
            "bad arguments for uniform: uniform takes [low, high], numbers within ±1e+15, "
            "low <= high",
        ),
        (
            '{"topics": [{"name": "o"}], "consumers": [{"name": "c", "topics": ["o"]}], '
            f'"faults": [{{"at": {HUGE}, "consumer": "c", "action": "down"}}]}}',
            "faults[0].at",
            "must be <= 604800",
        ),
        ('{"topics": [{"name": "o"}], "duration": NaN}', "duration", "must be a finite number"),
        (
            '{"topics": [{"name": "o"}], "duration": Infinity}',
            "duration",
            "must be a finite number",
        ),
    ],
)
def test_numbers_beyond_a_float_or_not_finite_are_refused_not_overflowed(
    text: str, path: str, message: str
) -> None:
    assert _errors(text) == [(path, message)]


def test_a_seed_beyond_the_databases_integer_is_refused_naming_the_range() -> None:
    message = "must be a whole number from 0 to 9223372036854775807 (2**63 - 1)"
    assert _errors(scenario(seed=2**63)) == [("seed", message)]
    assert _errors(scenario(seed=-1)) == [("seed", message)]
    assert parse_scenario(scenario(seed=2**63 - 1)).seed == 2**63 - 1


def test_a_command_value_beyond_a_float_is_a_command_error() -> None:
    sim = Simulation(parse_scenario(scenario()))
    with pytest.raises(CommandError) as e:
        sim.apply({"command": "consumer.slow", "consumer": "email", "value": 10**400})
    assert str(e.value) == (
        "consumer.slow: 'value' must be a number between 0 and 1000, got 1000000000000000000"
        "00000000000000000000000000000000000000..."
    )


# --- 5. strings -------------------------------------------------------------------------------


def test_text_utf8_cannot_encode_is_refused_with_its_path() -> None:
    text = json.dumps(scenario(consumers=[consumer("\ud800")], lesson={"\udfff": 1}))
    assert '"\\ud800"' in text  # what a client sends: valid JSON, a lone surrogate
    message = "holds text UTF-8 cannot encode (a lone surrogate such as \\ud800)"
    # the path escapes what it cannot show, so the refusal itself can be sent
    assert _errors(text) == [("consumers[0].name", message), ("lesson.\\udfff", message)]


def test_names_and_labels_are_capped() -> None:
    assert _errors(scenario(consumers=[consumer(label="l" * 201)], name="n" * 201)) == [
        ("name", "must be at most 200 characters"),
        ("consumers[0].label", "must be at most 200 characters"),
    ]
    assert _errors(scenario(consumers=[consumer(events=["E" * 81])])) == [
        ("consumers[0].events[0]", "must be at most 80 characters")
    ]


# --- 6. scheduled faults ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "path", "message"),
    [
        (
            {"consumer": "email", "action": "instances", "value": 1e9},
            "faults[0].value",
            "consumer.instances: 'value' must be a number between 0 and 64, got 1000000000.0",
        ),
        (
            {"consumer": "email", "action": "slow", "value": 1e300},
            "faults[0].value",
            "consumer.slow: 'value' must be a number between 0 and 1000, got 1e+300",
        ),
        (
            {"producer": "checkout", "action": "rate", "value": 1e12},
            "faults[0].value",
            "producer.rate: 'value' must be a number between 0 and 50000, got 1000000000000.0",
        ),
        (
            {"broker": "orders", "action": "delay", "value": 1e9},
            "faults[0].value",
            "broker.delay: 'value' must be a number between 0 and 60000, got 1000000000.0",
        ),
        (
            {"consumer": "email", "action": "crash", "instance": 7},
            "faults[0].instance",
            "email has 2 instance(s) at t=5, numbered from 0",
        ),
        (
            {"consumer": "email", "action": "down", "value": 3},
            "faults[0].value",
            "applies to slow, delay, failure_rate, instances, rate, not to down",
        ),
    ],
)
def test_a_fault_the_run_would_refuse_is_refused_when_the_scenario_is_read(
    fault: dict[str, Any], path: str, message: str
) -> None:
    doc = scenario(consumers=[consumer(instances=2)], faults=[{"at": 5, **fault}])
    assert _errors(doc) == [(path, message)]


def test_a_fault_refused_at_run_time_is_recorded_and_the_run_goes_on() -> None:
    # instance 1 is gone once the service is scaled to one: only the run can know it
    doc = scenario(
        consumers=[consumer(instances=2)],
        faults=[
            {"at": 1, "consumer": "email", "action": "instances", "value": 1},
            {"at": 2, "consumer": "email", "action": "crash", "instance": 1},
        ],
        duration=5,
    )
    sim = Simulation(parse_scenario(doc))
    sim.run_until(5)
    assert sim.now == 5
    assert list(sim.fault_errors) == [
        (2.0, "fault: consumer.crash email", "email has no running instance 1")
    ]
    assert sim.metrics()["fault_errors"] == [
        {
            "t": 2.0,
            "fault": "fault: consumer.crash email",
            "error": "email has no running instance 1",
        }
    ]
    assert sim.groups["email"].processed > 0


def test_a_comparisons_fault_refused_at_run_time_is_recorded_and_the_run_goes_on() -> None:
    sc = load_scenario(PRESETS / "sync-vs-events.yaml")
    # built past the parser, as a fault only the run could refuse would be
    sc = replace(sc, faults=(FaultSpec(at=5, action="slow", consumer="email", value=1e300),))
    c = Comparison(sc, 3)
    c.run_until(10)
    assert c.now == 10
    # the event side's engine has the scenario's faults too: each side says it could not
    assert {(t, what) for t, what, _ in c.sim.fault_errors} == {(5.0, "fault: consumer.slow email")}
    assert all(
        why.startswith("consumer.slow: 'value' must be a number between 0 and 1000")
        for _, _, why in c.sim.fault_errors
    )
    assert c.state()["fault_errors"][0]["fault"] == "fault: consumer.slow email"


# --- 7. the command log -----------------------------------------------------------------------


def test_the_command_log_keeps_only_the_fields_a_command_reads_and_replays_the_same() -> None:
    parsed = parse_scenario(scenario(consumers=[consumer(instances=2)]))
    sim = Simulation(parsed, 4)
    sim.run_until(1)
    junk = "j" * 200_000
    sim.apply({"command": "consumer.slow", "consumer": "email", "value": "3", "junk": junk})
    sim.run_until(2)
    sim.apply({"command": "consumer.crash", "consumer": "email", "instance": 1, "extra": [junk]})
    sim.apply({"command": "producer.rate", "producer": "checkout", "value": 30, "note": junk})
    sim.run_until(4)
    assert sim.command_log == [
        (1.0, {"command": "consumer.slow", "consumer": "email", "value": 3.0}),
        (2.0, {"command": "consumer.crash", "consumer": "email", "instance": 1}),
        (2.0, {"command": "producer.rate", "producer": "checkout", "value": 30}),
    ]
    again = replay(parsed, 4, sim.command_log, until=4)
    assert again.metrics() == sim.metrics()


def test_a_comparisons_switch_log_keeps_only_the_fields_a_switch_reads() -> None:
    c = Comparison(load_scenario(PRESETS / "sync-vs-events.yaml"), 3)
    c.run_until(1)
    c.apply({"command": "producer.rate", "producer": "x" * 100_000, "value": 5, "junk": [1] * 9})
    c.apply({"command": "consumer.delay", "consumer": "email", "value": 100, "junk": "j" * 9})
    assert c.switch_log == [
        (1.0, {"command": "producer.rate", "value": 5}),
        (1.0, {"command": "consumer.delay", "consumer": "email", "value": 100}),
    ]
    assert c.sim.command_log == [
        (1.0, {"command": "consumer.delay", "consumer": "email", "value": 100})
    ]


def test_a_full_command_log_refuses_the_next_command(monkeypatch: pytest.MonkeyPatch) -> None:
    import simulator.simulation

    monkeypatch.setattr(simulator.simulation, "MAX_COMMAND_LOG", 3)
    sim = Simulation(parse_scenario(scenario()))
    for _ in range(3):
        sim.apply({"command": "consumer.up", "consumer": "email"})
    with pytest.raises(CommandError) as e:
        sim.apply({"command": "consumer.up", "consumer": "email"})
    assert str(e.value) == (
        "the command log is full (3 commands): reset the simulation or start a new one to go on"
    )
    assert len(sim.command_log) == 3


def test_a_sampling_interval_too_fine_to_ever_finish_is_refused() -> None:
    # 1e-9 s scheduled a billion samples of every service a simulated second: the run never
    # got anywhere and, before slices, held the server
    errors = _errors({"topics": [{"name": "orders"}], "sample_interval_s": 1e-9})
    assert errors == [("sample_interval_s", "must be >= 0.1")]
    parse_scenario({"topics": [{"name": "orders"}], "sample_interval_s": 0.1})
