"""Live equals measured: "Open it live" runs the lesson's preset, whose script plays the
lesson's steps at the times the measurement uses, with the same seed; the live run reaches the
numbers the answer states."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from django.test import AsyncClient

from simulator.lessons import lesson
from tests.web_helpers import stop_all_runners

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
async def _runners() -> AsyncIterator[None]:
    yield
    await stop_all_runners()


async def _open_live(slug: str, until: float) -> tuple[AsyncClient, str, dict[str, Any]]:
    """The lesson's preset run live as "Open it live" does (its lesson's steps added), in the
    lesson's mode, to ``until``: the client, the simulation's id and its snapshot."""
    found = lesson(slug)
    assert found is not None
    query = "?mode=compare" if found.live == "compare" else ""
    client = AsyncClient()
    r = await client.post(
        "/api/simulations" + query, json.dumps(found.live_doc()), content_type="application/json"
    )
    assert r.status_code == 201, r.content
    body = r.json()
    r = await client.post(
        f"/api/simulations/{body['id']}/commands",
        json.dumps({"command": "step", "value": until}),
        content_type="application/json",
        headers={"Authorization": f"Bearer {body['control_token']}"},
    )
    assert r.status_code == 200, r.content
    state: dict[str, Any] = r.json()["state"]
    for _ in range(600):  # a long step goes on in slices after the reply (the loop stays free)
        if state["stepping_to"] is None:
            break
        await asyncio.sleep(0.05)
        state = (await client.get(f"/api/simulations/{body['id']}")).json()
    assert state["t"] == pytest.approx(until)
    return client, body["id"], state


async def _live_state(slug: str, until: float) -> dict[str, Any]:
    return (await _open_live(slug, until))[2]


async def test_operations_live_reaches_the_measured_redrive() -> None:
    answer = lesson("operations").measure(None)  # type: ignore[union-attr]
    st = await _live_state("operations", 90)
    payment = st["groups"]["payment"]
    assert st["producers"]["order-service"]["produced"] == answer.data["orders"]
    assert payment["processed"] - payment["duplicates"] == answer.data["paid"]
    assert payment["dead_letters_waiting"] == 0
    assert payment["redriven"] == answer.data["parked"]
    assert any(m["status"] == "script: dead_letters.redrive" for m in st["marks"])


async def test_schema_contract_live_reaches_the_measured_refusals_and_dead_letters() -> None:
    answer = lesson("schema-contract").measure(None)  # type: ignore[union-attr]
    st = await _live_state("schema-contract", 32)
    assert st["producers"]["checkout-renamed"]["rejected"] == answer.data["rejected"]
    assert st["groups"]["email"]["dead_lettered"] == answer.data["email_dead"]
    assert st["groups"]["billing"]["dead_lettered"] == answer.data["billing_dead"]
    assert st["groups"]["email"]["processed"] == answer.data["email_processed"]


async def test_adding_consumers_live_deploys_fraud_and_flags_what_was_measured() -> None:
    answer = lesson("adding-consumers").measure(None)  # type: ignore[union-attr]
    st = await _live_state("adding-consumers", 62)
    assert st["groups"]["fraud"]["processed"] == answer.data["earliest"]["flagged"]


async def test_temporal_decoupling_live_reaches_the_measured_outage() -> None:
    answer = lesson("temporal-decoupling").measure(None)  # type: ignore[union-attr]
    st = await _live_state("temporal-decoupling", 90)
    plain = answer.data["plain"]
    email = st["events"]["groups"]["email"]
    assert st["orders"] == plain["orders"]
    assert email["processed"] == plain["processed"]
    assert email["duplicates"] == plain["duplicates"]
    assert st["sync"]["checkout_errors"] == plain["sync_errors"]


async def test_open_it_live_from_a_lesson_adds_the_lessons_steps_to_its_preset() -> None:
    from asgiref.sync import sync_to_async
    from django.test import Client

    from dashboard.models import SimulationRecord

    def open_live() -> SimulationRecord:
        client = Client()
        client.get("/")  # the browser's session
        response = client.post(
            "/compare/", {"preset": "sync-vs-events", "lesson": "events-commands-queries"}
        )
        assert response.status_code == 302, response.content
        return SimulationRecord.objects.latest("created")

    record = await sync_to_async(open_live)()
    found = lesson("events-commands-queries")
    assert found is not None and found.script
    assert record.scenario["script"] == [dict(step) for step in found.script]


async def test_events_commands_queries_live_plays_the_slowdowns_it_measures() -> None:
    answer = lesson("events-commands-queries").measure(None)  # type: ignore[union-attr]
    st = await _live_state("events-commands-queries", 95)
    assert st["orders"] == answer.data["orders"]
    marks = [m["status"] for m in st["marks"] if m["target"] == "script"]
    assert marks == ["script: consumer.delay", "script: consumer.delay"]


async def test_ecommerce_flow_live_is_the_measured_comparison() -> None:
    answer = lesson("ecommerce-flow").measure(None)  # type: ignore[union-attr]
    st = await _live_state("ecommerce-flow", 120)
    assert st["events"]["checkout_ms"]["p50"] == pytest.approx(answer.data["checkout_p50"])


async def test_fat_thin_live_stores_the_measured_bytes() -> None:
    answer = lesson("fat-thin-events").measure(None)  # type: ignore[union-attr]
    st = await _live_state("fat-thin-events", 60)
    assert st["topics"]["orders-fat"]["bytes_stored"] == answer.data["fat_stored"]
    assert st["topics"]["orders-thin"]["bytes_stored"] == answer.data["thin_stored"]


async def test_scale_live_delivers_what_was_measured() -> None:
    answer = lesson("scale").measure(None)  # type: ignore[union-attr]
    st = await _live_state("scale", 30)
    assert st["producers"]["trip-service"]["produced"] == answer.data["produced"]
    assert sum(g["processed"] for g in st["groups"].values()) == answer.data["deliveries"]


async def test_open_it_live_sets_up_lesson_9_as_a_comparison() -> None:
    from asgiref.sync import sync_to_async
    from django.test import Client

    from dashboard.models import SimulationRecord

    def open_live() -> SimulationRecord:
        client = Client()
        client.get("/")  # the browser's session
        response = client.post("/compare/", {"preset": "ecommerce", "lesson": "ecommerce-flow"})
        assert response.status_code == 302, response.content
        return SimulationRecord.objects.latest("created")

    record = await sync_to_async(open_live)()
    assert record.mode == "compare"
    assert record.scenario["chain"] == ["payment", "inventory"]


async def test_event_sourcing_live_holds_the_orders_events_at_the_measured_offsets() -> None:
    """Read the live run's log by offset, as the page's records API does: the order's events
    sit where the answer says, so replaying them gives the measured states."""
    from simulator.broker import stable_partition

    answer = lesson("event-sourcing").measure(None)  # type: ignore[union-attr]
    client, sim_id, _ = await _open_live("event-sourcing", 30)
    partition = stable_partition("ord-10", 4)
    first = answer.data["events"][0][0]
    r = await client.get(
        f"/api/simulations/{sim_id}/records",
        {"topic": "order-events", "partition": partition, "offset": first, "limit": 100},
    )
    read = {rec["offset"]: (rec["type"], rec["key"]) for rec in r.json()["records"]}
    assert [(o, *read[o]) for o, _ in answer.data["events"]] == [
        (o, t, "ord-10") for o, t in answer.data["events"]
    ]


async def test_eventual_consistency_live_reserves_the_measured_orders() -> None:
    answer = lesson("eventual-consistency").measure(None)  # type: ignore[union-attr]
    st = await _live_state("eventual-consistency", 120)
    # every order whose window was measured is an InventoryReserved stored in the live run
    assert st["topics"]["inventory"]["stored"] == answer.data["window_ms"]["count"]


async def test_correlation_ids_live_shows_the_slowest_orders_measured_journey() -> None:
    from tests.web_helpers import connect, receive_until

    answer = lesson("correlation-ids").measure(None)  # type: ignore[union-attr]
    _, sim_id, st = await _open_live("correlation-ids", 60)
    assert st["groups"]["payment"]["failure_rate"] == 0.15  # the lesson's step, played live
    comm = await connect(sim_id)
    await receive_until(comm, lambda m: m.get("full"))
    cid = answer.data["correlation_id"]
    await comm.send_json_to({"type": "trace", "correlation_id": cid})
    trace = await receive_until(comm, lambda m: m.get("type") == "trace")
    # the page's event log, asked for that order, shows the journey the answer describes
    assert trace["hops"] == json.loads(json.dumps(answer.data["hops"]))
    await comm.disconnect()


async def test_event_sourcing_live_rebuilds_the_order_as_of_any_offset_as_measured() -> None:
    answer = lesson("event-sourcing").measure(None)  # type: ignore[union-attr]
    client, sim_id, _ = await _open_live("event-sourcing", 30)
    url = f"/api/simulations/{sim_id}/replay"
    now = (await client.get(url, {"topic": "order-events", "key": "ord-10"})).json()
    assert [(e["offset"], e["type"]) for e in now["events"]] == [
        tuple(e) for e in answer.data["events"]
    ]
    assert now["state"]["status"] == answer.data["final"]["status"] == "shipped"
    # the slider's position at the answer's offset: the order as it was then
    then = (
        await client.get(
            url, {"topic": "order-events", "key": "ord-10", "upto": answer.data["offset"]}
        )
    ).json()
    assert then["state"] == answer.data["as_of"]
    assert then["state"]["status"] == answer.correct == "paid"
    # bad questions get a sentence, not a 500
    for query, says in (
        ({"topic": "nope", "key": "ord-10"}, "must be one of the scenario's topics"),
        ({"topic": "order-events"}, "'key' must be a record key"),
        ({"topic": "order-events", "key": "ord-10", "upto": "-1"}, "'upto' must be a number"),
    ):
        r = await client.get(url, query)
        assert r.status_code == 400 and says in r.json()["error"], r.json()
