"""The WebSocket protocol: snapshot on join, frames, commands, errors, read-only viewers."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from channels.testing import WebsocketCommunicator

from dashboard.asgi import application
from tests.web_helpers import (
    ORIGIN,
    SMALL,
    connect,
    create,
    new_session,
    receive,
    receive_until,
    stop_all_runners,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
async def _runners() -> AsyncIterator[None]:
    yield
    await stop_all_runners()


def is_frame(m: dict) -> bool:
    return m.get("type") == "frame"


async def test_a_socket_that_joins_first_gets_a_full_snapshot() -> None:
    sim_id, _ = await create()
    comm = await connect(sim_id)
    first = await receive_until(comm, is_frame)
    assert first["full"] is True
    assert set(first) >= {"type", "seq", "t", "state", "events", "history"}
    st = first["state"]
    assert st["id"] == sim_id and st["running"] is False and st["speed"] == 1.0
    assert st["producers"]["checkout"]["produced"] == 0
    g = st["groups"]["email"]
    assert (g["status"], g["lag"], g["processed"], g["dead_lettered"]) == ("up", 0, 0, 0)
    await comm.disconnect()


async def test_frames_stream_while_running_and_time_advances() -> None:
    session = await new_session()
    sim_id, _ = await create(owner=session)
    comm = await connect(sim_id, session)
    await receive_until(comm, is_frame)
    await comm.send_json_to({"command": "speed", "value": 10})
    await comm.send_json_to({"command": "start"})
    times = []
    while len(times) < 10:
        m = await receive(comm)
        if is_frame(m):
            times.append(m["t"])
    assert times == sorted(times) and times[-1] > times[0]
    last = await receive_until(comm, lambda m: is_frame(m) and m["state"]["t"] > 2)
    assert last["state"]["running"] is True
    assert last["state"]["producers"]["checkout"]["produced"] > 40
    assert any(e["kind"] == "produced" for e in last["events"]) or last["events_seen"] >= 0
    await comm.disconnect()


async def test_taking_a_consumer_down_makes_lag_rise_while_the_producer_carries_on() -> None:
    session = await new_session()
    sim_id, _ = await create(owner=session)
    comm = await connect(sim_id, session)
    await receive_until(comm, is_frame)
    await comm.send_json_to({"command": "speed", "value": 20})
    await comm.send_json_to({"command": "start"})
    await receive_until(comm, lambda m: is_frame(m) and m["t"] > 1)
    await comm.send_json_to({"command": "consumer.down", "consumer": "email"})
    down = await receive_until(
        comm, lambda m: is_frame(m) and m["state"]["groups"]["email"]["status"] == "down"
    )
    later = await receive_until(comm, lambda m: is_frame(m) and m["t"] > down["t"] + 2)
    g0, g1 = down["state"]["groups"]["email"], later["state"]["groups"]["email"]
    produced = (
        later["state"]["producers"]["checkout"]["produced"]
        - down["state"]["producers"]["checkout"]["produced"]
    )
    assert produced > 50  # the producer carried on
    # everything produced since is lag (Kafka's lag, from the committed offset, may also hold
    # work done before the stop and committed only when the service left the group)
    assert g1["lag"] >= produced
    # a down service takes nothing new; it finishes what its last poll returned (a graceful
    # stop, as Kafka's consumer does)
    assert g0["processed"] <= g1["processed"] <= g0["processed"] + g0["in_flight"] + g0["batched"]
    await comm.send_json_to({"command": "consumer.up", "consumer": "email"})
    drained = await receive_until(
        comm,
        lambda m: (
            is_frame(m)
            and m["state"]["groups"]["email"]["status"] == "up"
            and m["state"]["groups"]["email"]["processed"] > g1["processed"]
            and m["state"]["groups"]["email"]["records_lag"] <= 2
        ),
    )
    # (the wait above fails unless it catches up: read to the end of the log, processing more)
    assert drained["t"] > later["t"]
    await comm.disconnect()


async def test_garbage_gets_an_error_and_the_connection_and_run_carry_on() -> None:
    session = await new_session()
    sim_id, _ = await create(owner=session)
    comm = await connect(sim_id, session)
    await receive_until(comm, is_frame)
    await comm.send_json_to({"command": "start"})
    cases = [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('{"hello": 1}', "unknown message"),
        ('{"command": "consumer.explode", "consumer": "email"}', "unknown command"),
        (
            '{"command": "consumer.slow", "consumer": "ghost", "value": 2}',
            "unknown consumer 'ghost'",
        ),
        ('{"command": "speed", "value": 1000}', "between 0.1 and 100"),
        ("x" * 20000, "message too large"),
        ('{"type": "trace", "correlation_id": true}', "trace needs a correlation_id"),
        ('{"type": "trace", "correlation_id": ""}', "an order id such as"),
    ]
    for text, expected in cases:
        await comm.send_to(text_data=text)
        error = await receive_until(comm, lambda m: m.get("type") == "error")
        assert expected in error["message"], (text[:40], error)
    await comm.send_to(bytes_data=b"\x00\x01")
    error = await receive_until(comm, lambda m: m.get("type") == "error")
    assert "binary" in error["message"]
    frame = await receive_until(comm, lambda m: is_frame(m) and m["t"] > 0.5)
    assert frame["state"]["running"] is True
    await comm.disconnect()


async def test_a_viewer_without_control_watches_read_only() -> None:
    sim_id, _ = await create(owner=await new_session())
    comm = await connect(sim_id)  # no session: a student with the share link
    await receive_until(comm, is_frame)
    await comm.send_json_to({"command": "consumer.down", "consumer": "email"})
    error = await receive_until(comm, lambda m: m.get("type") == "error")
    assert "read-only" in error["message"]
    await comm.disconnect()


async def test_many_viewers_share_one_runner_and_see_the_same_run() -> None:
    from dashboard.runner import RUNNERS

    session = await new_session()
    sim_id, _ = await create(owner=session)
    teacher = await connect(sim_id, session)
    students = [await connect(sim_id) for _ in range(5)]
    assert list(RUNNERS) == [sim_id]
    await teacher.send_json_to({"command": "step", "value": 3})
    for student in students:
        frame = await receive_until(student, lambda m: is_frame(m) and m["t"] >= 3)
        assert frame["state"]["producers"]["checkout"]["produced"] == 120
    for c in [teacher, *students]:
        await c.disconnect()


async def test_a_trace_request_returns_the_journey_of_an_order() -> None:
    session = await new_session()
    sim_id, _ = await create(owner=session)
    comm = await connect(sim_id, session)
    await receive_until(comm, is_frame)
    await comm.send_json_to({"command": "step", "value": 1})
    await comm.send_json_to({"type": "trace", "correlation_id": 1})
    trace = await receive_until(comm, lambda m: m.get("type") == "trace")
    kinds = [h["kind"] for h in trace["hops"]]
    assert kinds[:3] == ["produced", "delivered", "processed"]
    await comm.disconnect()


async def test_an_order_is_traced_by_its_order_id_which_is_its_correlation_id() -> None:
    doc = json.loads(json.dumps(SMALL))
    doc["producers"][0]["payload"]["order_id"] = {"sequence": "ord-"}
    session = await new_session()
    sim_id, _ = await create(doc, owner=session)
    comm = await connect(sim_id, session)
    await receive_until(comm, is_frame)
    await comm.send_json_to({"command": "step", "value": 1})
    await comm.send_json_to({"type": "trace", "correlation_id": "ord-3"})
    trace = await receive_until(comm, lambda m: m.get("type") == "trace")
    assert trace["correlation_id"] == "ord-3"
    assert [h["kind"] for h in trace["hops"]][:3] == ["produced", "delivered", "processed"]
    # every hop of the order's journey carries the order id, none the event's number
    assert {h["correlation_id"] for h in trace["hops"]} == {"ord-3"}
    await comm.send_json_to({"type": "trace", "correlation_id": "ord-999999"})
    missing = await receive_until(comm, lambda m: m.get("type") == "trace")
    assert missing["hops"] == []
    await comm.disconnect()


async def test_an_unknown_simulation_closes_the_socket() -> None:
    comm = WebsocketCommunicator(application, "/ws/simulations/abcdef/", headers=[ORIGIN])
    connected, code = await comm.connect()
    assert (connected, code) == (False, 4404)


async def test_a_socket_from_a_foreign_origin_is_refused() -> None:
    sim_id, _ = await create()
    comm = WebsocketCommunicator(
        application, f"/ws/simulations/{sim_id}/", headers=[(b"origin", b"http://evil.example")]
    )
    connected, _ = await comm.connect()
    assert connected is False


async def test_commands_are_acknowledged_and_logged_with_their_time() -> None:
    from dashboard.models import SimulationRecord

    session = await new_session()
    sim_id, _ = await create(owner=session)
    comm = await connect(sim_id, session)
    await receive_until(comm, is_frame)
    await comm.send_json_to({"command": "step", "value": 2})
    await comm.send_json_to({"command": "consumer.slow", "consumer": "email", "value": 3})
    ack = await receive_until(comm, lambda m: m.get("type") == "ack" and m is not None, limit=50)
    assert ack["type"] == "ack"
    await receive_until(
        comm, lambda m: is_frame(m) and m["state"]["groups"]["email"]["status"] == "slow"
    )
    from dashboard.runner import RUNNERS

    await RUNNERS[sim_id].flush()
    record = await SimulationRecord.objects.aget(pk=sim_id)
    assert record.command_log == [
        [2.0, {"command": "consumer.slow", "consumer": "email", "value": 3}]
    ]
    _ = json
    await comm.disconnect()


async def test_a_reader_that_does_not_acknowledge_gets_a_window_then_the_latest_frame() -> None:
    from dashboard.consumers import FRAME_WINDOW
    from tests.web_helpers import receive as recv

    session = await new_session()
    sim_id, _ = await create(owner=session)
    comm = await connect(sim_id, session)
    await receive_until(comm, is_frame)  # the full snapshot
    await comm.send_json_to({"command": "speed", "value": 10})
    await comm.send_json_to({"command": "start"})
    frames = []
    while not await comm.receive_nothing(timeout=1.0):
        m = await recv(comm, 1.0, ack=False)
        if is_frame(m):
            frames.append(m)
        assert len(frames) <= FRAME_WINDOW + 1
    # without acknowledgements the server stops after the window, whatever keeps coming
    assert len(frames) == FRAME_WINDOW
    await comm.send_json_to({"type": "ack", "seq": frames[0]["seq"]})
    held = await recv(comm, 2.0, ack=False)
    assert is_frame(held) and held["seq"] > frames[-1]["seq"] + 5  # the latest, not the next
    await comm.disconnect()


async def test_a_ping_keeps_the_run_alive_and_gets_a_pong() -> None:
    sim_id, _ = await create()
    comm = await connect(sim_id)
    await receive_until(comm, is_frame)
    await comm.send_to(text_data='{"type": "ping"}')
    pong = await receive_until(comm, lambda m: m.get("type") == "pong")
    assert pong == {"type": "pong"}
    await comm.disconnect()


async def test_a_frame_that_queued_too_long_is_skipped_for_the_newer_ones() -> None:
    import time

    from channels.layers import get_channel_layer

    from dashboard.runner import frames_group

    sim_id, _ = await create()
    comm = await connect(sim_id)
    await receive_until(comm, is_frame)  # the joiner's snapshot
    layer = get_channel_layer()
    assert layer is not None
    stale = {"type": "frame", "seq": 1001, "t": 0.0, "state": {}, "events": []}
    await layer.group_send(
        frames_group(sim_id),
        {
            "type": "sim.frame",
            "text": json.dumps(stale),
            "seq": 1001,
            "epoch": 1,
            "sent": time.time() - 5.0,
        },
    )
    assert await comm.receive_nothing(timeout=0.3)  # five seconds old: skipped
    fresh = {**stale, "seq": 1002}
    await layer.group_send(
        frames_group(sim_id),
        {
            "type": "sim.frame",
            "text": json.dumps(fresh),
            "seq": 1002,
            "epoch": 1,
            "sent": time.time(),
        },
    )
    m = await receive_until(comm, lambda m: is_frame(m) and m["seq"] > 1000)
    assert m["seq"] == 1002
    await comm.disconnect()
