"""Limits and protections: live simulations per user, idle runs stopping, CSRF on forms."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from django.test import AsyncClient, Client

from dashboard import services
from dashboard.models import SimulationRecord
from dashboard.runner import RUNNERS
from tests.web_helpers import SMALL, stop_all_runners, stop_when_idle

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
async def _runners() -> AsyncIterator[None]:
    yield
    await stop_all_runners()


async def test_one_user_may_run_only_so_many_live_simulations() -> None:
    client = AsyncClient()
    for _ in range(services.MAX_LIVE_PER_OWNER):
        r = await client.post(
            "/api/simulations", json.dumps(SMALL), content_type="application/json"
        )
        assert r.status_code == 201
    r = await client.post("/api/simulations", json.dumps(SMALL), content_type="application/json")
    assert r.status_code == 429
    message = r.json()["errors"][0]["message"]
    assert f"already have {services.MAX_LIVE_PER_OWNER} live simulations" in message
    # a browser session has its own allowance, and gets the same message on the page
    browser = AsyncClient()
    await browser.get("/")
    for _ in range(services.MAX_LIVE_PER_OWNER):
        r = await browser.post("/simulations/", {"preset": "basic"})
        assert r["Location"].startswith("/simulations/")
    r = await browser.post("/simulations/", {"preset": "basic"})
    assert r["Location"] == "/"
    home = await browser.get("/")
    assert "live simulations" in home.content.decode()


async def test_an_idle_simulation_stops_and_comes_back_when_opened() -> None:
    client = AsyncClient()
    r = await client.post("/api/simulations", json.dumps(SMALL), content_type="application/json")
    body = r.json()
    await client.post(
        f"/api/simulations/{body['id']}/commands",
        json.dumps({"command": "step", "value": 3}),
        content_type="application/json",
        headers={"Authorization": f"Bearer {body['control_token']}"},
    )
    runner = RUNNERS[body["id"]]
    await stop_when_idle(runner)
    assert body["id"] not in RUNNERS
    record = await SimulationRecord.objects.aget(pk=body["id"])
    assert record.stopped and record.sim_time == 3.0
    # it no longer counts against the owner's limit, and opening it rebuilds it
    r = await client.get(f"/api/simulations/{body['id']}")
    assert r.status_code == 200 and r.json()["t"] == 3.0
    record = await SimulationRecord.objects.aget(pk=body["id"])
    assert not record.stopped


def test_forms_refuse_a_post_without_a_csrf_token() -> None:
    client = Client(enforce_csrf_checks=True)
    r = client.post("/simulations/", {"preset": "basic"})
    assert r.status_code == 403
    r = client.post("/lessons/temporal-decoupling/", {"prediction": "slower"})
    assert r.status_code == 403
