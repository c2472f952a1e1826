"""A scenario's script: engine commands played at simulated times, checked when they run."""

from __future__ import annotations

from typing import Any

import pytest

from simulator import ScenarioError, Simulation, parse_scenario, replay
from tests.engine_helpers import scenario


def _with(script: list[Any]) -> dict[str, Any]:
    return {**scenario(), "script": script}


@pytest.mark.parametrize(
    ("script", "path", "message"),
    [
        ([{"command": {"command": "consumer.down"}}], "script[0].at", "is required"),
        ([{"at": 1}], "script[0].command", "must be a mapping"),
        ([{"at": 1, "command": {"command": "pause"}}], "script[0].command.command", "engine's"),
        ([{"at": -1, "command": {"command": "consumer.up"}}], "script[0].at", ">= 0"),
        (
            [{"at": 1, "command": {"command": "consumer.up", "junk": "x" * 30_000}}],
            "script[0].command",
            "a scripted command may have 20,000",
        ),
        ([{"at": 1, "command": {"command": "consumer.up"}, "when": 2}], "script[0].when", ""),
    ],
)
def test_a_bad_script_step_is_named(script: list[Any], path: str, message: str) -> None:
    with pytest.raises(ScenarioError) as e:
        parse_scenario(_with(script))
    found = dict(e.value.errors)
    assert path in found and message in found[path], found


def test_a_script_is_bounded() -> None:
    steps = [
        {"at": i, "command": {"command": "consumer.up", "consumer": "email"}} for i in range(101)
    ]
    with pytest.raises(ScenarioError, match="at most 100"):
        parse_scenario(_with(steps))


def test_scripted_commands_run_at_their_time_and_a_refused_one_is_said() -> None:
    sim = Simulation(
        parse_scenario(
            _with(
                [
                    {"at": 2, "command": {"command": "consumer.down", "consumer": "email"}},
                    {"at": 3, "command": {"command": "consumer.down", "consumer": "nobody"}},
                    {"at": 4, "command": {"command": "consumer.up", "consumer": "email"}},
                ]
            )
        )
    )
    sim.run_until(2.5)
    assert sim.groups["email"].status == "down"
    sim.run_until(5)
    assert sim.groups["email"].status == "up"  # the refused step did not stop the run
    marks = [(m["t"], m["status"]) for m in sim.metrics_observer.marks if m["target"] == "script"]
    assert marks == [
        (2.0, "script: consumer.down"),
        (3.0, "script: consumer.down refused: unknown consumer 'nobody'"),
        (4.0, "script: consumer.up"),
    ]
    assert sim.command_log == []  # part of the scenario, not of the log


def test_a_replay_plays_the_script_once() -> None:
    doc = _with(
        [{"at": 2, "command": {"command": "producer.rate", "producer": "checkout", "value": 50}}]
    )
    sim = Simulation(parse_scenario(doc))
    sim.run_until(3)
    sim.apply({"command": "consumer.slow", "consumer": "email", "value": 2})
    sim.run_until(6)
    again = replay(parse_scenario(doc), None, sim.command_log, 6)
    assert again.snapshot() == sim.snapshot()
