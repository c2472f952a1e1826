"""Live equals measured: "Open it live" runs the lesson's preset, whose script plays the
lesson's steps at the times the measurement uses, with the same seed; the live run reaches the
numbers the answer states."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import yaml
from django.test import AsyncClient

from simulator.lessons import PRESETS, lesson, with_script
from tests.web_helpers import stop_all_runners

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
async def _runners() -> AsyncIterator[None]:
    yield
    await stop_all_runners()


async def _live_state(slug: str, until: float) -> dict[str, Any]:
    """The lesson's preset run live as "Open it live" does (its lesson's steps added), in the
    lesson's mode, to ``until``; its snapshot."""
    found = lesson(slug)
    assert found is not None
    doc = with_script(yaml.safe_load((PRESETS / f"{found.preset}.yaml").read_text()), found.script)
    query = "?mode=compare" if found.live == "compare" else ""
    client = AsyncClient()
    r = await client.post(
        "/api/simulations" + query, json.dumps(doc), content_type="application/json"
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
    assert state["t"] == pytest.approx(until)
    return state


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
        response = Client().post(
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
