"""A simulation survives a server restart: scenario + seed + command log rebuild it exactly."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from django.test import AsyncClient

from dashboard.runner import RUNNERS
from tests.web_helpers import SMALL, stop_all_runners

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
async def _runners() -> AsyncIterator[None]:
    yield
    await stop_all_runners()


async def crash_runner(sim_id: str) -> None:
    """What a process dying does to a runner: it is gone, with nothing flushed."""
    runner = RUNNERS.pop(sim_id)
    runner._stopped = True
    for task in runner._tasks:
        task.cancel()
    await asyncio.gather(*runner._tasks, return_exceptions=True)
    if runner._persist_task is not None:
        runner._persist_task.cancel()
    assert runner.layer is not None
    await runner.layer.group_discard(f"runner.{sim_id}", runner.channel)


async def test_a_restart_mid_run_rebuilds_the_same_snapshot() -> None:
    client = AsyncClient()
    doc = {
        **SMALL,
        "consumers": [
            {
                **SMALL["consumers"][0],
                "failure_rate": 0.2,
                "retry": {"max_attempts": 2, "backoff_ms": 50},
            }
        ],
    }
    r = await client.post("/api/simulations", json.dumps(doc), content_type="application/json")
    body = r.json()
    url = f"/api/simulations/{body['id']}/commands"
    auth = {"Authorization": f"Bearer {body['control_token']}"}
    for cmd in (
        {"command": "step", "value": 3},
        {"command": "consumer.crash", "consumer": "email", "instance": 1},
        {"command": "step", "value": 1.25},
        {"command": "consumer.up", "consumer": "email"},
        {"command": "producer.rate", "producer": "checkout", "value": 70},
        {"command": "consumer.slow", "consumer": "email", "value": 2},
        {"command": "step", "value": 4},
    ):
        r = await client.post(url, json.dumps(cmd), content_type="application/json", headers=auth)
        assert r.status_code == 200, r.content
    before = r.json()["state"]
    await RUNNERS[body["id"]].flush()
    await crash_runner(body["id"])
    assert body["id"] not in RUNNERS
    r = await client.get(f"/api/simulations/{body['id']}")  # rebuilt on demand
    assert r.status_code == 200
    after = r.json()
    assert body["id"] in RUNNERS
    assert after["t"] == before["t"] == 8.25
    assert after["commands"] == 4
    assert after == before


async def test_a_running_simulation_comes_back_running_from_where_it_was_saved() -> None:
    client = AsyncClient()
    r = await client.post("/api/simulations", json.dumps(SMALL), content_type="application/json")
    body = r.json()
    url = f"/api/simulations/{body['id']}/commands"
    auth = {"Authorization": f"Bearer {body['control_token']}"}
    for cmd in ({"command": "speed", "value": 20}, {"command": "start"}):
        await client.post(url, json.dumps(cmd), content_type="application/json", headers=auth)
    await asyncio.sleep(2.5)  # it saves the time it reached every 2 s while running
    runner = RUNNERS[body["id"]]
    await runner.flush()
    from dashboard.models import SimulationRecord

    record = await SimulationRecord.objects.aget(pk=body["id"])
    assert record.running and record.sim_time > 5
    await crash_runner(body["id"])
    r = await client.get(f"/api/simulations/{body['id']}")
    st = r.json()
    assert st["running"] is True and st["t"] >= record.sim_time


async def test_a_live_lease_held_by_another_process_prevents_a_second_runner() -> None:
    from datetime import timedelta

    from django.utils import timezone

    from dashboard.models import SimulationRecord

    client = AsyncClient()
    r = await client.post("/api/simulations", json.dumps(SMALL), content_type="application/json")
    sim_id = r.json()["id"]
    await RUNNERS[sim_id].flush()
    await crash_runner(sim_id)
    # another server process holds the lease and renewed it just now (its runner is slow to
    # answer a ping): this process must not start a second runner for the same simulation
    await SimulationRecord.objects.filter(pk=sim_id).aupdate(
        runner_token="another-process", runner_seen=timezone.now()
    )
    r = await client.get(f"/api/simulations/{sim_id}")
    assert r.status_code == 503 and sim_id not in RUNNERS
    # that process died: once its lease is stale, this one takes the simulation over
    await SimulationRecord.objects.filter(pk=sim_id).aupdate(
        runner_seen=timezone.now() - timedelta(seconds=60)
    )
    r = await client.get(f"/api/simulations/{sim_id}")
    assert r.status_code == 200 and sim_id in RUNNERS
    record = await SimulationRecord.objects.aget(pk=sim_id)
    from dashboard.services import PROCESS_TOKEN

    assert record.runner_token == PROCESS_TOKEN
