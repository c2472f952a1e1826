"""My simulations: the runs a browser owns, listed with Stop and Delete; stopping frees a live
slot at once; a run's owner alone may stop or delete it; the limit's refusal links to the page.

Through Django's async test client, so the runners live on the test's own event loop."""

from __future__ import annotations

import asyncio
import html
import json
import re
from collections.abc import AsyncIterator

import pytest
from django.test import AsyncClient

from dashboard import services, views
from dashboard.models import SimulationRecord
from dashboard.runner import RUNNERS
from tests.web_helpers import SMALL, stop_all_runners, stop_when_idle

pytestmark = pytest.mark.django_db(transaction=True)

MINE = "/simulations/mine/"
HTMX = {"HX-Request": "true"}
LIMIT_LINK = re.compile(
    r'<li class="message message--error">[^<]*live simulations[^<]*'
    r'<a class="message__link" href="/simulations/mine/">Go to My simulations</a></li>'
)


@pytest.fixture(autouse=True)
async def _runners() -> AsyncIterator[None]:
    yield
    await stop_all_runners()


async def browser() -> AsyncClient:
    """A browser: its first page gives it the session that owns what it creates."""
    client = AsyncClient()
    await client.get("/")
    return client


async def open_preset(client: AsyncClient, preset: str = "basic", **extra: str) -> str | None:
    """Post a home-page form; the new simulation's id, or None when it was refused."""
    url = "/compare/" if preset == "sync-vs-events" else "/simulations/"
    r = await client.post(url, {"preset": preset, **extra})
    assert r.status_code == 302
    location = r["Location"]
    if location == "/":
        return None
    match = re.fullmatch(r"/simulations/(\w+)/", location)
    assert match, location
    return match.group(1)


async def page(client: AsyncClient, url: str = MINE) -> str:
    r = await client.get(url)
    assert r.status_code == 200
    return r.content.decode()


def row(listing: str, sim_id: str) -> str:
    """One run's row of the list, as text (tags dropped, spaces collapsed)."""
    match = re.search(rf'<tr class="run" id="run-{sim_id}".*?</tr>', listing, re.S)
    assert match, f"run {sim_id} is not listed"
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", match.group(0))).split())


def csrf_free(page: str) -> str:
    return re.sub(r'"X-CSRFToken": "\w+"', "", page)


def listed_ids(listing: str) -> list[str]:
    return re.findall(r'<tr class="run" id="run-(\w+)"', listing)


async def fill_up(client: AsyncClient) -> list[str]:
    ids = []
    for _ in range(services.MAX_LIVE_PER_OWNER):
        sim_id = await open_preset(client)
        assert sim_id is not None
        ids.append(sim_id)
    return ids


async def test_the_list_shows_only_this_browsers_runs_with_kind_time_and_status() -> None:
    mine, theirs = await browser(), await browser()
    simulation = await open_preset(mine, "basic")
    comparison = await open_preset(mine, "sync-vs-events")
    lesson = await open_preset(mine, "lesson-outage", lesson="temporal-decoupling")
    other = await open_preset(theirs, "basic")
    api = await AsyncClient().post(
        "/api/simulations", json.dumps(SMALL), content_type="application/json"
    )
    assert simulation and comparison and lesson and other and api.status_code == 201
    # one run stepped to 12 s, one to its end, one plays on: every status but "stopped"
    RUNNERS[simulation].execute({"command": "step", "value": 12})
    RUNNERS[comparison].execute({"command": "step", "value": 200})
    RUNNERS[lesson].execute({"command": "start"})
    while RUNNERS[comparison].run.stepping_to is not None:  # a long step goes on in slices
        await asyncio.sleep(0.05)

    listing = await page(mine)

    assert listed_ids(listing) == [lesson, comparison, simulation]  # newest first
    assert other not in listing and api.json()["id"] not in listing
    assert row(listing, simulation) == (
        "One producer, one consumer simulation 12.0 s live, paused just now Stop Delete"
    )
    assert row(listing, comparison) == (
        "Synchronous call chain vs event flow comparison 2 min 00 s finished just now Stop Delete"
    )
    assert re.fullmatch(
        r"Lesson 2: Temporal decoupling Scenario: The Email service restarts at 3 AM "
        r"lesson \d+\.\d s live and running just now Stop Delete",
        row(listing, lesson),
    )
    for sim_id in (simulation, comparison, lesson):
        assert f'<a href="/simulations/{sim_id}/" class="run__open"' in listing
        assert f'action="/simulations/{sim_id}/stop"' in listing
        assert f'action="/simulations/{sim_id}/delete"' in listing
        assert re.search(rf'id="run-{sim_id}".*?<time datetime="[^"]+"', listing, re.S)
    assert "3 of 5 live slots in use." in listing
    # the other browser sees its one run, and no one else's
    assert listed_ids(await page(theirs)) == [other]
    # a browser that has started nothing is told how to start
    assert 'id="no-runs"' in await page(AsyncClient())


async def test_stop_frees_a_live_slot_at_once() -> None:
    client = await browser()
    ids = await fill_up(client)
    assert await open_preset(client) is None  # the sixth is refused
    home = await page(client, "/")
    assert LIMIT_LINK.search(home), home

    r = await client.post(f"/simulations/{ids[0]}/stop")

    assert r.status_code == 302 and r["Location"] == MINE
    assert ids[0] not in RUNNERS
    record = await SimulationRecord.objects.aget(pk=ids[0])
    assert record.stopped and not record.running and record.runner_token == ""
    sixth = await open_preset(client)  # at once: no idle timeout to wait for
    assert sixth is not None and sixth in RUNNERS
    listing = await page(client)
    assert "Stopped \u201cOne producer, one consumer\u201d at t = 0.0 s" in html.unescape(listing)
    assert "live slots in use" not in listing and "All 5 live slots are in use" in listing
    assert "stopped" in row(listing, ids[0]) and f'id="stop-{ids[0]}"' not in listing
    assert f'id="delete-{ids[0]}"' in listing
    # stopping it again changes nothing, and says so
    again = await client.post(f"/simulations/{ids[0]}/stop", follow=True)
    assert "had already stopped: nothing changed" in html.unescape(again.content.decode())


async def test_stop_keeps_the_run_where_it_was_and_opening_it_brings_it_back() -> None:
    client = await browser()
    sim_id = await open_preset(client)
    assert sim_id is not None
    RUNNERS[sim_id].execute({"command": "step", "value": 4})
    RUNNERS[sim_id].execute({"command": "start"})

    await client.post(f"/simulations/{sim_id}/stop")

    record = await SimulationRecord.objects.aget(pk=sim_id)
    assert record.stopped and record.sim_time >= 4.0 and not record.running
    state = (await AsyncClient().get(f"/api/simulations/{sim_id}")).json()
    assert state["t"] == record.sim_time and state["running"] is False
    record = await SimulationRecord.objects.aget(pk=sim_id)
    assert not record.stopped and sim_id in RUNNERS  # live again, paused where it stopped


async def test_a_stopped_run_opens_again_only_when_its_owner_has_a_free_slot() -> None:
    client = await browser()
    ids = await fill_up(client)
    await client.post(f"/simulations/{ids[0]}/stop")
    assert await open_preset(client) is not None  # the slot went to a new run

    r = await client.get(f"/simulations/{ids[0]}/")

    assert r.status_code == 409
    text = html.unescape(r.content.decode())
    assert "This simulation was stopped, and opening it would start it again" in text
    assert '<a href="/simulations/mine/" id="my-simulations-link">' in text
    assert ids[0] not in RUNNERS
    await client.post(f"/simulations/{ids[1]}/stop")
    assert (await client.get(f"/simulations/{ids[0]}/")).status_code == 200
    assert ids[0] in RUNNERS


async def test_delete_removes_the_run_and_its_page_answers_404() -> None:
    client = await browser()
    sim_id = await open_preset(client)
    assert sim_id is not None

    r = await client.post(f"/simulations/{sim_id}/delete", follow=True)

    text = html.unescape(r.content.decode())
    assert "Deleted \u201cOne producer, one consumer\u201d" in text
    assert sim_id not in RUNNERS
    assert not await SimulationRecord.objects.filter(pk=sim_id).aexists()
    assert sim_id not in listed_ids(text)
    assert (await client.get(f"/simulations/{sim_id}/")).status_code == 404
    assert (await client.get(f"/api/simulations/{sim_id}")).status_code == 404
    # deleting it again: nothing to delete, said in a sentence
    again = await client.post(f"/simulations/{sim_id}/delete")
    assert again.status_code == 404
    assert views.ERR_NOT_YOURS.format(sim_id=sim_id) in html.unescape(again.content.decode())


async def test_someone_elses_run_cannot_be_stopped_or_deleted_nor_told_apart_from_none() -> None:
    owner, other = await browser(), await browser()
    sim_id = await open_preset(owner)
    assert sim_id is not None
    for client in (other, AsyncClient()):  # another browser, and one with no session at all
        for action in ("stop", "delete"):
            r = await client.post(f"/simulations/{sim_id}/{action}")
            assert r.status_code == 404
            unknown = await client.post(f"/simulations/ffffffffffff/{action}")
            assert unknown.status_code == 404
            body, none = html.unescape(r.content.decode()), html.unescape(unknown.content.decode())
            assert views.ERR_NOT_YOURS.format(sim_id=sim_id) in body
            # the same answer as for a run that does not exist (but for the id, and the CSRF
            # token each page carries)
            assert csrf_free(body).replace(sim_id, "X") == csrf_free(none).replace(
                "ffffffffffff", "X"
            )
    assert sim_id in RUNNERS
    assert not (await SimulationRecord.objects.aget(pk=sim_id)).stopped


async def test_stop_and_delete_take_only_a_post_with_a_csrf_token() -> None:
    client = await browser()
    sim_id = await open_preset(client)
    assert sim_id is not None
    for action in ("stop", "delete"):
        r = await client.get(f"/simulations/{sim_id}/{action}")
        assert r.status_code == 405 and r["Allow"] == "POST"
        assert "they send a POST" in r.content.decode()
    r = await client.post(MINE)
    assert r.status_code == 405
    strict = AsyncClient(enforce_csrf_checks=True)
    await strict.get("/")
    r = await strict.post(f"/simulations/{sim_id}/stop")
    assert r.status_code == 403 and sim_id in RUNNERS


async def test_with_htmx_stop_and_delete_answer_with_the_list_and_a_sentence() -> None:
    client = await browser()
    first, second = await open_preset(client), await open_preset(client)
    assert first and second

    r = await client.post(f"/simulations/{first}/stop", headers=HTMX)

    assert r.status_code == 200
    body = html.unescape(r.content.decode())
    assert "<html" not in body  # the list alone, for htmx to swap in
    assert '<section class="mine" id="my-simulations"' in body
    assert 'id="mine-outcome"' in body and "Stopped \u201cOne producer, one consumer\u201d" in body
    assert "1 of 5 live slots in use." in body
    r = await client.post(f"/simulations/{second}/delete", headers=HTMX)
    body = html.unescape(r.content.decode())
    assert "Deleted \u201cOne producer, one consumer\u201d" in body
    assert listed_ids(body) == [first]
    # not yours: the same list, the sentence, and a 404 (the page tells htmx to swap it in)
    r = await client.post("/simulations/ffffffffffff/stop", headers=HTMX)
    assert r.status_code == 404 and 'id="my-simulations"' in r.content.decode()
    assert '"code": "404", "swap": true' in await page(client)


async def test_the_limit_message_links_to_my_simulations_wherever_it_is_shown() -> None:
    client = await browser()
    await fill_up(client)
    # "Open it live" on a lesson page: refused, the home page says why, with the link
    await client.get("/lessons/adding-consumers/")
    r = await client.post(
        "/simulations/", {"preset": "lesson-fraud", "lesson": "adding-consumers"}, follow=True
    )
    assert LIMIT_LINK.search(r.content.decode())
    # Start in the scenario editor: the editor says it, with the link
    r = await client.post("/scenarios/new", {"preset": "basic"})
    r = await client.post(r["Location"] + "start", follow=True)
    assert LIMIT_LINK.search(r.content.decode())
    # the JSON API has no page: it names the way to stop one, and where browsers list theirs
    api = AsyncClient()
    for _ in range(services.MAX_LIVE_PER_OWNER):
        await api.post("/api/simulations", json.dumps(SMALL), content_type="application/json")
    r = await api.post("/api/simulations", json.dumps(SMALL), content_type="application/json")
    assert r.status_code == 429
    message = r.json()["errors"][0]["message"]
    assert "POST /api/simulations/<id>/stop" in message and "/simulations/mine/" in message


async def test_the_api_stops_and_deletes_with_the_control_token() -> None:
    api = AsyncClient()
    made = []
    for _ in range(services.MAX_LIVE_PER_OWNER):
        r = await api.post("/api/simulations", json.dumps(SMALL), content_type="application/json")
        made.append(r.json())
    full = await api.post("/api/simulations", json.dumps(SMALL), content_type="application/json")
    assert full.status_code == 429
    first = made[0]
    token = {"Authorization": f"Bearer {first['control_token']}"}
    wrong = {"Authorization": f"Bearer {made[1]['control_token']}"}

    assert (await api.post(f"/api/simulations/{first['id']}/stop")).status_code == 403
    assert (
        await api.post(f"/api/simulations/{first['id']}/stop", headers=wrong)
    ).status_code == 403
    r = await api.post(f"/api/simulations/{first['id']}/stop", headers=token)
    assert r.status_code == 200 and r.json() == {"ok": True, "id": first["id"], "stopped": True}
    r = await api.post(f"/api/simulations/{first['id']}/stop", headers=token)
    assert r.json()["stopped"] is False
    again = await api.post("/api/simulations", json.dumps(SMALL), content_type="application/json")
    assert again.status_code == 201  # the slot was free at once

    second = made[1]
    assert (await api.delete(f"/api/simulations/{second['id']}")).status_code == 403
    r = await api.delete(
        f"/api/simulations/{second['id']}",
        headers={"Authorization": f"Bearer {second['control_token']}"},
    )
    assert r.status_code == 200 and r.json()["deleted"] is True
    assert (await api.get(f"/api/simulations/{second['id']}")).status_code == 404
    assert (await api.get(f"/api/simulations/{first['id']}/stop")).status_code == 405
    r = await api.post("/api/simulations/ffffffffffff/stop", headers=token)
    assert r.status_code == 404 and "no simulation with id" in r.json()["error"]


async def test_the_home_page_links_to_my_simulations_with_the_live_count() -> None:
    client = await browser()
    await open_preset(client)
    home = await page(client, "/")
    assert '<a href="/simulations/mine/" id="my-simulations-link">My simulations</a>' in home
    assert "(1 of 5 live)" in home


async def test_a_runner_in_another_process_is_fenced_off_and_stops_itself() -> None:
    """With several server processes the runner may live elsewhere: the stop frees the slot at
    once all the same, and the lease's new epoch makes that runner stop at its next save."""
    client = await browser()
    sim_id = await open_preset(client)
    assert sim_id is not None
    elsewhere = RUNNERS.pop(sim_id)  # as if another process ran it
    epoch = elsewhere.epoch

    r = await client.post(f"/simulations/{sim_id}/stop")

    assert r.status_code == 302
    record = await SimulationRecord.objects.aget(pk=sim_id)
    assert record.stopped and record.runner_epoch == epoch + 1
    for _ in range(60):  # its next save is within PERSIST_INTERVAL (2 s)
        if elsewhere.fenced:
            break
        await asyncio.sleep(0.1)
    assert elsewhere.fenced
    record = await SimulationRecord.objects.aget(pk=sim_id)
    assert record.stopped  # its last word was not saved over the stop
    assert await open_preset(client) is not None


async def test_a_stopped_run_says_whether_it_was_stopped_or_stopped_for_being_unused() -> None:
    client = await browser()
    stopped, idle = await open_preset(client), await open_preset(client)
    assert stopped and idle
    await client.post(f"/simulations/{stopped}/stop")
    runner = RUNNERS[idle]
    await stop_when_idle(runner)

    records = {r.id: r async for r in SimulationRecord.objects.all()}
    assert (records[stopped].stop_reason, records[idle].stop_reason) == ("owner", "idle")
    listing = await page(client)
    assert " 0.0 s stopped just now" in row(listing, stopped)
    assert views.STOPPED_IDLE.format(idle="30 min") in row(listing, idle)
    # opened again, it is live: no reason any more
    await client.get(f"/simulations/{idle}/")
    record = await SimulationRecord.objects.aget(pk=idle)
    assert not record.stopped and record.stop_reason == ""
    assert "unused" not in row(await page(client), idle)
