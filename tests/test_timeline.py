"""The timeline: scheduled faults and script steps in words, past and to come; ``seek`` to a
time (forward in slices, backward by replaying the recorded commands); a finished run refuses
what would change it and ``extend`` lengthens it (recorded, so a rebuild reproduces it)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from dashboard.runner import ERR_FINISHED, LiveRunner, make_runner
from simulator import CommandError, Simulation, parse_scenario, replay
from simulator.commands import COMMAND_FIELDS
from simulator.compare import SWITCH_FIELDS, Comparison
from simulator.timeline import PAST_SHOWN, UPCOMING_SHOWN

DOC: dict[str, Any] = {
    "name": "Timeline",
    "seed": 5,
    "duration": 90,
    "topics": [{"name": "orders", "partitions": 2}],
    "producers": [
        {"name": "checkout", "topic": "orders", "event": "OrderPlaced", "rate": 30},
    ],
    "consumers": [
        {
            "name": "email",
            "label": "Email Service",
            "topics": ["orders"],
            "instances": 2,
            "processing": {"dist": "exponential", "mean_ms": 10},
        },
        {
            "name": "payment",
            "topics": ["orders"],
            "processing": {"dist": "exponential", "mean_ms": 5},
        },
    ],
    "faults": [
        {"at": 20, "consumer": "email", "action": "down"},
        {"at": 40, "consumer": "email", "action": "up"},
        {"at": 30, "consumer": "payment", "action": "slow", "value": 5},
        {"at": 50, "broker": "orders", "partition": 0, "action": "down"},
        {"at": 200, "consumer": "email", "action": "crash"},  # after the run's end
    ],
    "script": [
        {"at": 60, "command": {"command": "producer.rate", "producer": "checkout", "value": 10}},
    ],
}


def labels(moments: list[dict[str, Any]]) -> list[tuple[float, str]]:
    return [(m["t"], m["label"]) for m in moments]


def test_the_timeline_says_what_is_scheduled_in_words_and_moves_it_to_the_past() -> None:
    sim = Simulation(parse_scenario(DOC))
    st = sim.timeline.state(sim.now, sim.duration)
    assert (st["duration"], st["left"]) == (90, 90)
    assert labels(st["upcoming"]) == [
        (20, "Email down"),
        (30, "Payment \u00d75 slower"),
        (40, "Email up"),
        (50, "broker partition orders/0 down"),
        (60, "Checkout 10/s"),
    ]
    assert [m["kind"] for m in st["upcoming"]] == ["fault"] * 4 + ["script"]
    assert st["after_end"] == 1  # the crash at t = 200 is past the run's length
    sim.run_until(35)
    st = sim.timeline.state(sim.now, sim.duration)
    assert labels(st["past"]) == [(20, "Email down"), (30, "Payment \u00d75 slower")]
    assert labels(st["upcoming"])[0] == (40, "Email up")
    assert st["left"] == pytest.approx(55)


def test_commands_sent_during_the_run_join_the_past_in_time_order() -> None:
    sim = Simulation(parse_scenario(DOC))
    sim.run_until(25)
    sim.apply({"command": "consumer.delay", "consumer": "payment", "value": 500})
    sim.run_until(32)
    sim.apply({"command": "consumer.failure_rate", "consumer": "email", "value": 0.2})
    past = sim.timeline.state(sim.now, sim.duration)["past"]
    assert labels(past) == [
        (20, "Email down"),
        (25, "Payment +500 ms"),
        (30, "Payment \u00d75 slower"),
        (32, "Email fails 20%"),
    ]
    assert [m["kind"] for m in past] == ["fault", "command", "fault", "command"]


def test_a_timeline_with_hundreds_of_moments_carries_at_most_two_hundred() -> None:
    doc = copy.deepcopy(DOC)
    doc["duration"] = 1000
    doc["faults"] = [
        {"at": t, "consumer": "payment", "action": "slow", "value": 1 + t % 3}
        for t in range(1, 700)
    ]
    sim = Simulation(parse_scenario(doc))  # 699 faults and the script's step at t = 60
    st = sim.timeline.state(0.0, sim.duration)
    assert len(st["upcoming"]) == UPCOMING_SHOWN and st["more_upcoming"] == 700 - UPCOMING_SHOWN
    sim.run_until(400.5)
    st = sim.timeline.state(sim.now, sim.duration)
    assert len(st["past"]) == PAST_SHOWN and len(st["upcoming"]) == UPCOMING_SHOWN
    assert st["past"][-1]["t"] == 400 and st["upcoming"][0]["t"] == 401
    assert st["more_past"] == 401 - PAST_SHOWN


def test_extend_lengthens_the_run_is_recorded_and_a_replay_reproduces_it() -> None:
    scenario = parse_scenario(DOC)
    sim = Simulation(scenario)
    sim.run_until(90)
    assert sim.apply({"command": "extend", "value": 60}) == {
        "duration": 150,
        "extended_by": 60,
    }
    assert sim.command_log[-1] == (90, {"command": "extend", "value": 60})
    assert "extend" in COMMAND_FIELDS and "extend" in SWITCH_FIELDS
    again = replay(scenario, scenario.seed, sim.command_log, 90)
    assert again.duration == 150
    for bad in (0, -5, "soon", True, 7 * 24 * 3600):
        with pytest.raises(CommandError, match="extend needs a number of seconds"):
            sim.apply({"command": "extend", "value": bad})
    assert sim.duration == 150


# --- the live runner: seek, finished, extend ---------------------------------------------------


def runner(doc: dict[str, Any] = DOC, mode: str = "live") -> LiveRunner:
    return make_runner("t1", copy.deepcopy(doc), doc["seed"], mode=mode)


def settle(r: LiveRunner) -> None:
    """Finish a step or seek under way, as the runner's ticks would."""
    while r.run.stepping_to is not None:
        r._step_on(1.0)


def test_seek_forward_plays_the_run_to_the_time_and_says_where_it_lands() -> None:
    r = runner()
    result = r.execute({"command": "seek", "value": 19.5})
    assert result["message"] == "Jumping to t = 19.5 s, just before Email goes down (t = 20 s)"
    settle(r)
    assert r.sim.now == pytest.approx(19.5)
    assert r.sim.groups["email"].status == "up"
    assert r.execute({"command": "seek", "value": 19.5})["message"] == "Already at t = 19.5 s"


def test_seek_back_replays_the_commands_up_to_that_time_and_drops_the_later_ones() -> None:
    r = runner()
    r.execute({"command": "step", "value": 10})
    settle(r)
    r.execute({"command": "producer.rate", "producer": "checkout", "value": 50})
    r.execute({"command": "step", "value": 15})
    settle(r)
    r.execute({"command": "consumer.crash", "consumer": "payment"})
    r.execute({"command": "step", "value": 10})
    settle(r)
    assert r.sim.now == pytest.approx(35)
    result = r.execute({"command": "seek", "value": 22})
    assert result["message"] == (
        "Jumping back to t = 22 s, just after Email goes down (t = 20 s): the run plays again "
        "from t = 0 with the same seed and its 1 command up to then; the one sent after it is "
        "dropped"
    )
    assert result["dropped"] == 1
    settle(r)
    assert r.sim.now == pytest.approx(22)
    assert r.command_log() == [
        (10, {"command": "producer.rate", "producer": "checkout", "value": 50})
    ]
    # the same run: the scenario, the seed and the commands kept, replayed to t = 22
    truth = replay(parse_scenario(DOC), DOC["seed"], r.command_log(), 22)
    assert r.sim.producers["checkout"].produced == truth.producers["checkout"].produced
    for name, g in truth.groups.items():
        mine = r.sim.groups[name]
        assert (mine.processed, mine.lag(), mine.status) == (g.processed, g.lag(), g.status)
    assert r.sim.groups["payment"].status == "up"  # the crash at t = 25 was dropped


def test_a_backward_seek_replays_in_slices_and_a_restart_midway_loses_nothing() -> None:
    r = runner()
    r.execute({"command": "step", "value": 5})
    settle(r)
    r.execute({"command": "consumer.instances", "consumer": "payment", "value": 3})
    r.execute({"command": "step", "value": 20})
    settle(r)
    r.execute({"command": "seek", "value": 15})
    # what a save during the replay stores: the commands still to replay are kept
    assert r.command_log() == [
        (5, {"command": "consumer.instances", "consumer": "payment", "value": 3})
    ]
    settle(r)
    assert r.run.replaying == 0 and len(r.sim.groups["payment"].instances) == 3


def test_seek_refuses_a_time_outside_the_run_with_a_sentence() -> None:
    r = runner()
    for bad in (-1, 91, "later", None, True):
        with pytest.raises(CommandError) as e:
            r.execute({"command": "seek", "value": bad})
        assert str(e.value).startswith("seek needs a time in seconds from 0 to 90 s")
    assert r.sim.now == 0


def test_a_finished_run_refuses_changes_in_one_sentence_and_extend_lets_it_go_on() -> None:
    r = runner()
    r.execute({"command": "seek", "value": 90})
    settle(r)
    assert r.run.finished
    refusal = ERR_FINISHED.format(t="90 s")
    assert refusal == (
        "The run finished at t = 90 s, its length: Reset to play it again, or extend it with "
        '{"command": "extend", "value": 60}'
    )
    for command in (
        {"command": "start"},
        {"command": "step"},
        {"command": "producer.rate", "producer": "checkout", "value": 5},
        {"command": "consumer.down", "consumer": "email"},
        {"command": "broker.delay", "value": 100},
    ):
        with pytest.raises(CommandError) as e:
            r.execute(command)
        assert str(e.value) == refusal
    # reading and pacing still work
    r.execute({"command": "pause"})
    r.execute({"command": "speed", "value": 2})
    assert r.run.speed == 2 and r.sim.now == 90
    result = r.execute({"command": "extend", "value": 30})
    assert result["message"] == "The run now lasts 120 s (30 s more): Start to play on"
    assert not r.run.finished
    r.execute({"command": "consumer.down", "consumer": "email"})
    r.execute({"command": "step", "value": 100})
    settle(r)
    assert r.sim.now == pytest.approx(120) and r.run.finished


async def test_a_rebuild_after_a_restart_reproduces_an_extended_run() -> None:
    r = runner()
    r.execute({"command": "seek", "value": 90})
    settle(r)
    r.execute({"command": "extend", "value": 10})
    r.execute({"command": "step", "value": 10})
    settle(r)
    again = make_runner("t1", copy.deepcopy(DOC), DOC["seed"], log_=r.command_log(), until=100)
    await again.catch_up()
    assert (again.duration, again.sim.now, again.run.finished) == (100, 100, True)


def test_a_finished_comparison_refuses_a_new_service_and_extends_like_a_simulation() -> None:
    doc = {
        **copy.deepcopy(DOC),
        "chain": ["email", "payment"],
        "faults": [{"at": 5, "consumer": "email", "action": "down"}],
        "script": [],
        "duration": 10,
    }
    r = runner(doc, mode="compare")
    assert isinstance(r.comparison, Comparison)
    st = r.current_state()
    assert labels(st["timeline"]["upcoming"]) == [(5, "Email down")]
    r.execute({"command": "seek", "value": 10})
    settle(r)
    fraud = {"name": "fraud", "topics": ["orders"], "processing": {"mean_ms": 5}}
    with pytest.raises(CommandError, match=r"^The run finished at t = 10 s, its length"):
        r.execute({"command": "service.add", "consumer": fraud})
    r.execute({"command": "extend", "value": 5})
    assert r.command_log()[-1] == (10, {"command": "extend", "value": 5})
    assert r.current_state()["timeline"]["past"][-1]["label"] == "run extended by 5 s"
    r.execute({"command": "service.add", "consumer": fraud})
    assert "fraud" in r.comparison.sync.services


def test_a_comparison_seeks_back_to_the_same_run_with_its_switches() -> None:
    doc = {**copy.deepcopy(DOC), "chain": ["email", "payment"], "faults": [], "script": []}
    r = runner(doc, mode="compare")
    r.execute({"command": "step", "value": 5})
    settle(r)
    r.execute({"command": "consumer.delay", "consumer": "email", "value": 200})
    r.execute({"command": "step", "value": 10})
    settle(r)
    r.execute({"command": "consumer.up", "consumer": "email"})
    result = r.execute({"command": "seek", "value": 8})
    assert r.command_log() == [
        (5, {"command": "consumer.delay", "consumer": "email", "value": 200})
    ]
    assert result["dropped"] == 1
    settle(r)
    truth = Comparison(parse_scenario(doc), doc["seed"])
    truth.run_until(5)
    truth.apply({"command": "consumer.delay", "consumer": "email", "value": 200})
    truth.run_until(8)
    assert r.comparison is not None
    mine, theirs = r.comparison.state(), truth.state()
    for side in ("sync", "events"):
        assert mine[side]["checkout_ms"] == theirs[side]["checkout_ms"]
    assert mine["orders"] == theirs["orders"]


# --- over the WebSocket ------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_a_controller_seeks_over_the_websocket_and_hears_a_sentence_back() -> None:
    from tests.web_helpers import (
        SMALL,
        connect,
        create,
        new_session,
        receive_until,
        stop_all_runners,
    )

    session = await new_session()
    doc = {**copy.deepcopy(SMALL), "duration": 20}
    doc["faults"] = [{"at": 12, "consumer": "email", "action": "down"}]
    sim_id, _ = await create(doc, owner=session)
    comm = await connect(sim_id, session)
    try:
        full = await receive_until(comm, lambda m: m.get("full"))
        assert labels(full["state"]["timeline"]["upcoming"]) == [(12, "Email down")]
        await comm.send_json_to({"command": "seek", "value": 11})
        ack = await receive_until(comm, lambda m: m.get("type") == "ack")
        assert ack["result"]["message"] == (
            "Jumping to t = 11 s, just before Email goes down (t = 12 s)"
        )
        await comm.send_json_to({"command": "seek", "value": 20})
        await receive_until(comm, lambda m: m.get("type") == "frame" and m["state"]["finished"])
        await comm.send_json_to({"command": "consumer.up", "consumer": "email"})
        error = await receive_until(comm, lambda m: m.get("type") == "error")
        assert error["message"] == ERR_FINISHED.format(t="20 s")
        await comm.send_json_to({"command": "extend", "value": 10})
        # its reply and its frame, in either order (they come by different channels)
        got: dict[str, Any] = {}
        while len(got) < 2:
            m = await receive_until(
                comm,
                lambda m: (
                    m.get("type") == "ack"
                    or (m.get("type") == "frame" and m["state"]["duration"] == 30)
                ),
            )
            got[m["type"]] = m
        ack, frame = got["ack"], got["frame"]
        assert ack["result"]["message"] == "The run now lasts 30 s (10 s more): Start to play on"
        assert frame["state"]["finished"] is False
        assert frame["state"]["timeline"]["left"] == pytest.approx(10)
    finally:
        await comm.disconnect()
        await stop_all_runners()
