"""One stop path for a runner, whatever ends it: idle, Stop, a lost lease, the process shutting
down. Each leaves no task of the runner waiting, the registry free for another runner, and the
record saved as that kind of end says (stopped for good, or its lease let go)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from django.test import AsyncClient

from dashboard import runner as runners
from dashboard import services
from dashboard.models import SimulationRecord
from dashboard.runner import RUNNERS
from tests.conftest import run_daphne
from tests.test_scale_out import post
from tests.web_helpers import SMALL, stop_all_runners, stop_when_idle


@pytest.fixture
async def _runners() -> AsyncIterator[None]:
    yield
    await stop_all_runners()


async def create(client: AsyncClient) -> dict[str, Any]:
    r = await client.post("/api/simulations", json.dumps(SMALL), content_type="application/json")
    assert r.status_code == 201
    return dict(r.json())


async def command(client: AsyncClient, body: dict[str, Any], cmd: dict[str, Any]) -> None:
    r = await client.post(
        f"/api/simulations/{body['id']}/commands",
        json.dumps(cmd),
        content_type="application/json",
        headers={"Authorization": f"Bearer {body['control_token']}"},
    )
    assert r.status_code == 200, r.content


def every_task_ended(runner: runners.LiveRunner) -> bool:
    return bool(runner._tasks) and all(task.done() for task in runner._tasks)


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("_runners")
async def test_an_idle_stop_leaves_no_task_of_the_runner_waiting_on_the_channel_layer() -> None:
    client = AsyncClient()
    body = await create(client)
    runner = RUNNERS[body["id"]]
    await stop_when_idle(runner)
    assert body["id"] not in RUNNERS
    assert every_task_ended(runner), [t for t in runner._tasks if not t.done()]
    record = await SimulationRecord.objects.aget(pk=body["id"])
    assert record.stopped and record.runner_token == ""


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("_runners")
async def test_stop_all_saves_each_run_lets_its_lease_go_and_does_not_stop_it_for_good() -> None:
    client = AsyncClient()
    first, second = await create(client), await create(client)
    for body in (first, second):
        await command(client, body, {"command": "step", "value": 3})
    await command(client, first, {"command": "start"})
    started = [RUNNERS[first["id"]], RUNNERS[second["id"]]]

    assert await runners.stop_all() == 2

    assert not RUNNERS and all(every_task_ended(r) for r in started)
    records = {r.id: r async for r in SimulationRecord.objects.all()}
    for body in (first, second):
        record = records[body["id"]]
        # let go: no process holds it, so the next that is asked rebuilds it at once
        assert record.runner_token == "" and record.runner_seen is None
        assert not record.stopped and record.sim_time >= 3.0  # not stopped for good
    assert records[first["id"]].running and not records[second["id"]].running
    # it comes back at once, running where it was, by the ordinary path
    st = (await client.get(f"/api/simulations/{first['id']}")).json()
    assert st["running"] is True and st["t"] >= records[first["id"]].sim_time


def test_daphne_shutting_down_saves_every_run_and_lets_its_lease_go(
    tmp_path: Path, artifacts_dir: Path
) -> None:
    db = tmp_path / "shutdown.sqlite3"
    with run_daphne(db_path=db, log_path=artifacts_dir / "daphne-shutdown.log") as url:
        body = post(f"{url}/api/simulations", SMALL)
        commands = f"{url}/api/simulations/{body['id']}/commands"
        post(commands, {"command": "step", "value": 4}, body["control_token"])
        post(commands, {"command": "start"}, body["control_token"])
    # run_daphne sent SIGTERM and waited for the process to exit
    with sqlite3.connect(db) as con:
        token, seen, stopped, running, t = con.execute(
            "SELECT runner_token, runner_seen, stopped, running, sim_time"
            " FROM dashboard_simulationrecord WHERE id = ?",
            (body["id"],),
        ).fetchone()
    log = (artifacts_dir / "daphne-shutdown.log").read_text()
    assert token == "" and seen is None, log[-2000:]  # the heartbeat would have kept it
    assert not stopped and running and t >= 4.0


# --- one runner per simulation, by construction ----------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("_runners")
async def test_twenty_viewers_opening_a_stopped_run_at_once_start_one_runner(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = AsyncClient()
    body = await create(client)
    await command(client, body, {"command": "step", "value": 2})
    await runners.RUNNERS[body["id"]].stop()  # as after a restart: stored, no runner
    starts: list[str] = []
    start = runners.LiveRunner.start

    async def counted(self: runners.LiveRunner) -> None:
        starts.append(self.sim_id)
        await start(self)

    monkeypatch.setattr(runners.LiveRunner, "start", counted)

    record = await SimulationRecord.objects.aget(pk=body["id"])
    # what each viewer's request does (the test client would serve them one after another)
    await asyncio.gather(*(services.runner_ensure(record=record) for _ in range(20)))

    assert starts == [body["id"]]
    answer = await client.get(f"/api/simulations/{body['id']}")
    assert answer.status_code == 200 and answer.json()["t"] == 2.0
    record = await SimulationRecord.objects.aget(pk=body["id"])
    assert record.runner_epoch == 2  # created (1), then claimed once more


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("_runners")
async def test_a_second_runner_for_a_simulation_is_refused_while_the_first_runs() -> None:
    client = AsyncClient()
    body = await create(client)
    first = RUNNERS[body["id"]]
    second = runners.make_runner(body["id"], SMALL, 1)
    with pytest.raises(RuntimeError, match="already has a runner"):
        await second.start()
    assert RUNNERS[body["id"]] is first
    await first.stop()
    await second.start()  # once the first has ended, a new one may start
    assert RUNNERS[body["id"]] is second


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("_runners")
async def test_a_slow_start_of_one_simulation_does_not_hold_up_another() -> None:
    client = AsyncClient()
    a, b = await create(client), await create(client)
    for body in (a, b):
        await RUNNERS[body["id"]].stop()
    held = services._start_lock(a["id"])
    await held.acquire()  # a's start is under way (a long rebuild, say)
    try:
        r = await asyncio.wait_for(AsyncClient().get(f"/api/simulations/{b['id']}"), 5.0)
        assert r.status_code == 200 and b["id"] in RUNNERS
        assert a["id"] not in RUNNERS
    finally:
        held.release()
