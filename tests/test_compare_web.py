"""The side-by-side comparison over the API and the WebSocket."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml
from django.test import AsyncClient

from tests.web_helpers import connect, receive_until, stop_all_runners

pytestmark = pytest.mark.django_db(transaction=True)
PRESET = Path(__file__).resolve().parent.parent / "simulator/presets/sync-vs-events.yaml"


@pytest.fixture(autouse=True)
async def _runners() -> AsyncIterator[None]:
    yield
    await stop_all_runners()


async def test_a_comparison_streams_both_sides_and_switches_act_on_both() -> None:
    client = AsyncClient()
    doc = yaml.safe_load(PRESET.read_text())
    r = await client.post(
        "/api/simulations?mode=compare", json.dumps(doc), content_type="application/json"
    )
    assert r.status_code == 201
    body = r.json()
    comm = await connect(body["id"])
    first = await receive_until(comm, lambda m: m.get("type") == "frame")
    assert first["state"]["mode"] == "compare"
    assert first["state"]["sync"]["chain"] == ["inventory", "email"]
    url = f"/api/simulations/{body['id']}/commands"
    auth = {"Authorization": f"Bearer {body['control_token']}"}
    for cmd in (
        {"command": "consumer.delay", "consumer": "email", "value": 500},
        {"command": "step", "value": 10},
    ):
        r = await client.post(url, json.dumps(cmd), content_type="application/json", headers=auth)
        assert r.status_code == 200, r.content
    st = r.json()["state"]
    assert st["sync"]["services"]["email"]["delay_ms"] == 500
    assert st["events"]["groups"]["email"]["delay_ms"] == 500
    assert st["sync"]["checkout_ms"]["p50"] > 500
    assert st["events"]["checkout_ms"]["p50"] < 20
    frame = await receive_until(comm, lambda m: m.get("type") == "frame" and m["t"] >= 10)
    assert "sync_hops" in frame
    r = await client.post(
        url,
        json.dumps({"command": "consumer.instances", "consumer": "email", "value": 2}),
        content_type="application/json",
        headers=auth,
    )
    assert r.status_code == 400 and "unknown switch" in r.json()["error"]
    await comm.disconnect()


async def test_a_comparison_needs_a_chain() -> None:
    doc = yaml.safe_load(PRESET.read_text())
    del doc["chain"]
    r = await AsyncClient().post(
        "/api/simulations?mode=compare", json.dumps(doc), content_type="application/json"
    )
    assert r.status_code == 400
    assert r.json()["errors"][0]["path"] == "chain"
