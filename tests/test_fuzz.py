"""Hostile input: random scenarios and random WebSocket messages never break anything."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulator import ScenarioError, Simulation, parse_scenario
from simulator.scenario import CONSUMER_FIELDS, TOP_FIELDS

FIELDS = (
    list(TOP_FIELDS)
    + list(CONSUMER_FIELDS)
    + [
        "partitions",
        "topic",
        "event",
        "rate",
        "arrival",
        "dist",
        "mean_ms",
        "at",
        "action",
        "value",
        "retention",
        "max_messages",
        "payload",
        "key",
        "filter",
        "op",
        "field",
    ]
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-10, 10**6),
    st.floats(allow_nan=True),
    st.text(max_size=12),
    st.sampled_from(["orders", "email", "exponential", "down", "queue"]),
)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(
            st.one_of(st.sampled_from(FIELDS), st.text(max_size=6)), children, max_size=5
        ),
    ),
    max_leaves=30,
)


def plausible_scenarios() -> st.SearchStrategy[dict[str, Any]]:
    """Mostly-valid scenarios with random mutations, so validation is reached deep down."""
    topic = st.fixed_dictionaries(
        {
            "name": st.sampled_from(["orders", "pay"]),
            "partitions": st.one_of(st.integers(-1, 70), scalars),
        }
    )
    producer = st.fixed_dictionaries(
        {
            "name": st.text(min_size=1, max_size=5),
            "topic": st.sampled_from(["orders", "x"]),
            "event": st.sampled_from(["OrderPlaced", ""]),
            "rate": st.one_of(st.floats(-5, 200), scalars),
        }
    )
    consumer = st.fixed_dictionaries(
        {
            "name": st.text(min_size=1, max_size=5),
            "topics": st.one_of(st.just(["orders"]), json_values),
            "processing": st.one_of(
                st.fixed_dictionaries(
                    {
                        "dist": st.sampled_from(["exponential", "constant", "lognormal", "gauss"]),
                        "mean_ms": st.one_of(st.floats(-1, 100), scalars),
                    }
                ),
                json_values,
            ),
        },
        optional={
            "delivery": st.sampled_from(["stream", "queue", "x"]),
            "instances": st.integers(-1, 70),
            "failure_rate": st.floats(-1, 2),
            "retry": json_values,
            "filter": json_values,
            "emits": json_values,
        },
    )
    return st.fixed_dictionaries(
        {
            "topics": st.lists(topic, max_size=3),
            "producers": st.lists(producer, max_size=3),
            "consumers": st.lists(consumer, max_size=3),
        },
        optional={
            "seed": scalars,
            "faults": json_values,
            "duration": scalars,
            "schemas": json_values,
        },
    )


@settings(max_examples=300, deadline=None)
@given(doc=st.one_of(json_values, plausible_scenarios()))
def test_a_random_scenario_is_either_valid_or_a_list_of_named_errors(doc: Any) -> None:
    try:
        scenario = parse_scenario(doc)
    except ScenarioError as e:
        assert e.errors, "a refusal must say what is wrong"
        for path, message in e.errors:
            assert isinstance(path, str) and isinstance(message, str) and message
        return
    Simulation(scenario).run_until(2.0)  # a valid one runs


@settings(max_examples=200, deadline=None)
@given(
    text=st.one_of(
        st.text(max_size=200), st.binary(max_size=200).map(lambda b: b.decode("latin-1"))
    )
)
def test_random_text_as_a_scenario_file_never_raises_anything_else(text: str) -> None:
    try:
        parse_scenario(text)
    except ScenarioError as e:
        assert e.errors


# --- the web: the API and the WebSocket ----------------------------------------------------

pytestmark_web = pytest.mark.django_db(transaction=True)


@pytestmark_web
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(doc=st.one_of(json_values, plausible_scenarios()))
async def test_the_api_never_answers_500_to_a_random_scenario(doc: Any) -> None:
    from django.test import AsyncClient

    from tests.web_helpers import stop_all_runners

    client = AsyncClient()
    r = await client.post("/api/simulations", json.dumps(doc), content_type="application/json")
    assert r.status_code in (201, 400, 429), r.content
    body = r.json()
    if r.status_code == 201:
        assert set(body) == {"id", "url", "ws", "control_token"}
        url = f"/api/simulations/{body['id']}/commands"
        r = await client.post(
            url,
            json.dumps(doc),
            content_type="application/json",
            headers={"Authorization": f"Bearer {body['control_token']}"},
        )
        assert r.status_code in (200, 400), r.content
    else:
        assert body["errors"] and all("message" in e for e in body["errors"])
    await stop_all_runners()


def project(state: dict[str, Any]) -> dict[str, Any]:
    """What a command could change (frames differ in whether they carry percentiles)."""
    keep = ("status", "lag", "processed", "slow", "failure_rate", "instances", "delay_ms")
    return {
        "t": state["t"],
        "running": state["running"],
        "speed": state["speed"],
        "commands": state["commands"],
        "producers": state["producers"],
        "topics": state["topics"],
        "groups": {n: {k: g[k] for k in keep} for n, g in state["groups"].items()},
    }


messages = st.one_of(
    st.text(min_size=1, max_size=100),  # the test client cannot send an empty frame
    json_values.map(json.dumps),
    st.fixed_dictionaries(
        {
            "command": st.one_of(
                st.sampled_from(
                    [
                        "consumer.down",
                        "consumer.slow",
                        "producer.rate",
                        "consumer.add",
                        "consumer.reset",
                        "speed",
                        "step",
                        "dead_letters.redrive",
                        "nope",
                    ]
                ),
                scalars,
            )
        },
        optional={
            "consumer": json_values,
            "producer": json_values,
            "value": json_values,
            "to": json_values,
            "from": json_values,
        },
    ).map(json.dumps),
    st.fixed_dictionaries(
        {"type": st.sampled_from(["trace", "ack", "ping", "x"]), "correlation_id": json_values}
    ).map(json.dumps),
)


@pytestmark_web
@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batch=st.lists(messages, min_size=5, max_size=25))
async def test_random_websocket_messages_leave_the_connection_and_the_run_intact(
    batch: list[str],
) -> None:
    from tests.web_helpers import (
        connect,
        create,
        new_session,
        receive,
        receive_until,
        stop_all_runners,
    )

    owner = await new_session()
    watched, _ = await create(owner=owner)  # stays paused: its state must not change
    viewer = await connect(watched)  # read-only: every command is refused
    first = await receive_until(viewer, lambda m: m.get("type") == "frame")
    for text in batch:
        await viewer.send_to(text_data=text)
    await viewer.send_to(text_data='{"type": "ping"}')
    await receive_until(viewer, lambda m: m.get("type") == "pong", limit=200)
    await viewer.send_to(text_data='{"type": "resync"}')  # the run's latest frame, whole
    again = await receive_until(viewer, lambda m: m.get("type") == "frame", limit=200)
    assert project(again["state"]) == project(first["state"])
    await viewer.disconnect()

    # the owner may change the run, but nothing it sends breaks the socket or the runner
    driven, _ = await create(owner=owner)
    ctl = await connect(driven, owner)
    await receive_until(ctl, lambda m: m.get("type") == "frame")
    for text in batch:
        await ctl.send_to(text_data=text)
    await ctl.send_to(text_data='{"command": "step", "value": 1}')
    await receive_until(ctl, lambda m: m.get("type") == "ack", limit=400)
    await ctl.send_to(text_data='{"type": "ping"}')
    await receive_until(ctl, lambda m: m.get("type") == "pong", limit=400)
    _ = receive
    await ctl.disconnect()
    await stop_all_runners()
