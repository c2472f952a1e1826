"""The JSON API and the HTML pages/forms, through Django's async test client."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from django.test import AsyncClient

from tests.web_helpers import SMALL, stop_all_runners

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
async def _runners() -> AsyncIterator[None]:
    yield
    await stop_all_runners()


async def _create(client: AsyncClient, doc: object = SMALL) -> dict:
    r = await client.post("/api/simulations", json.dumps(doc), content_type="application/json")
    assert r.status_code == 201, r.content
    return r.json()


async def test_posting_a_scenario_creates_a_simulation() -> None:
    client = AsyncClient()
    body = await _create(client)
    assert set(body) == {"id", "url", "ws", "control_token"}
    assert body["ws"] == f"/ws/simulations/{body['id']}/"
    assert body["url"].endswith(f"/simulations/{body['id']}/")


async def test_a_bad_scenario_gets_400_with_paths_and_messages() -> None:
    client = AsyncClient()
    bad = {
        **SMALL,
        "consumers": [{"name": "email", "topics": ["orders"], "processing": {"mean_ms": 0}}],
    }
    r = await client.post("/api/simulations", json.dumps(bad), content_type="application/json")
    assert r.status_code == 400
    assert r.json() == {
        "errors": [{"path": "consumers[0].processing.mean_ms", "message": "must be > 0"}]
    }
    for raw, status in ((b"{nope", 400), (b"[]", 400), (b"x" * 300_000, 413)):
        r = await client.post("/api/simulations", raw, content_type="application/json")
        assert r.status_code == status


async def test_get_returns_the_snapshot_and_404_for_an_unknown_simulation() -> None:
    client = AsyncClient()
    body = await _create(client)
    r = await client.get(f"/api/simulations/{body['id']}")
    assert r.status_code == 200
    st = r.json()
    assert {"t", "running", "speed", "producers", "groups", "topics"} <= set(st)
    assert st["groups"]["email"]["status"] == "up"
    r = await client.get("/api/simulations/abcdef123456")
    assert r.status_code == 404 and "no simulation" in r.json()["error"]


async def test_commands_with_the_control_token_return_the_new_snapshot() -> None:
    client = AsyncClient()
    body = await _create(client)
    url = f"/api/simulations/{body['id']}/commands"
    auth = {"Authorization": f"Bearer {body['control_token']}"}

    async def send(doc: object) -> tuple[int, dict]:
        r = await client.post(url, json.dumps(doc), content_type="application/json", headers=auth)
        return r.status_code, r.json()

    status, reply = await send({"command": "step", "value": 2})
    assert status == 200 and reply["state"]["t"] == 2.0
    status, reply = await send({"command": "consumer.down", "consumer": "email"})
    assert status == 200 and reply["state"]["groups"]["email"]["status"] == "down"
    status, reply = await send({"command": "step", "value": 1})
    assert reply["state"]["groups"]["email"]["lag"] >= 39
    status, reply = await send({"command": "producer.rate", "producer": "checkout", "value": 5})
    assert reply["state"]["producers"]["checkout"]["rate"] == 5
    add = {
        "command": "consumer.add",
        "from": "earliest",
        "consumer": {
            "name": "fraud",
            "topics": ["orders"],
            "filter": {"field": "total", "op": ">", "value": 5000},
        },
    }
    status, reply = await send(add)
    assert status == 200 and "fraud" in reply["state"]["groups"]
    status, reply = await send({"command": "consumer.remove", "consumer": "fraud"})
    assert status == 200 and "fraud" not in reply["state"]["groups"]
    status, reply = await send({"command": "dead_letters.redrive", "consumer": "email"})
    assert status == 200 and reply["result"] == {"redriven": 0}


async def test_bad_commands_get_400_unknown_simulation_404_and_no_token_403() -> None:
    client = AsyncClient()
    body = await _create(client)
    url = f"/api/simulations/{body['id']}/commands"
    auth = {"Authorization": f"Bearer {body['control_token']}"}
    r = await client.post(
        url, json.dumps({"command": "nope"}), content_type="application/json", headers=auth
    )
    assert r.status_code == 400 and "unknown command 'nope'" in r.json()["error"]
    r = await client.post(url, b"{", content_type="application/json", headers=auth)
    assert r.status_code == 400 and r.json()["error"] == "the request body is not valid JSON"
    r = await client.post(url, json.dumps({"command": "pause"}), content_type="application/json")
    assert r.status_code == 403
    r = await client.post(
        url,
        json.dumps({"command": "pause"}),
        content_type="application/json",
        headers={"Authorization": "Bearer wrong"},
    )
    assert r.status_code == 403
    r = await client.post(
        "/api/simulations/0123456789ab/commands",
        b"{}",
        content_type="application/json",
        headers=auth,
    )
    assert r.status_code == 404


async def test_home_lists_presets_and_the_form_starts_a_simulation_page() -> None:
    client = AsyncClient()
    r = await client.get("/")
    assert r.status_code == 200
    html = r.content.decode()
    assert "E-commerce order flow" in html and "The Email service restarts at 3 AM" in html
    r = await client.post("/simulations/", {"preset": "email-outage"})
    assert r.status_code == 302
    page = await client.get(r["Location"])
    assert page.status_code == 200
    text = page.content.decode()
    assert 'id="initial-frame"' in text and "/ws/simulations/" in text


async def test_control_forms_work_as_plain_posts_and_as_htmx() -> None:
    client = AsyncClient()
    await client.get("/")  # the session the forms' simulations belong to
    r = await client.post("/simulations/", {"preset": "basic"})
    page_url = r["Location"]
    control = page_url + "control"
    r = await client.post(control, {"command": "step", "value": "2"})
    assert (r.status_code, r["Location"]) == (302, page_url)
    r = await client.post(
        control, {"command": "consumer.down", "consumer": "email"}, headers={"HX-Request": "true"}
    )
    assert r.status_code == 200
    assert "command-result--ok" in r.content.decode()
    r = await client.post(
        control,
        {"command": "consumer.slow", "consumer": "email", "value": "fast"},
        headers={"HX-Request": "true"},
    )
    assert "command-result--error" in r.content.decode()
    assert "must be a number" in r.content.decode()
    sim_id = page_url.rstrip("/").split("/")[-1]
    st = (await client.get(f"/api/simulations/{sim_id}")).json()
    assert st["t"] == 2.0 and st["groups"]["email"]["status"] == "down"


async def test_someone_elses_simulation_is_read_only_for_forms() -> None:
    owner, other = AsyncClient(), AsyncClient()
    await owner.get("/")
    await other.get("/")
    r = await owner.post("/simulations/", {"preset": "basic"})
    page_url = r["Location"]
    r = await other.post(page_url + "control", {"command": "start"}, headers={"HX-Request": "true"})
    assert "read-only" in r.content.decode()
    page = await other.get(page_url)
    assert page.status_code == 200
    assert 'id="read-only-badge"' in page.content.decode()
    assert 'id="share-box"' not in page.content.decode()
    mine = (await owner.get(page_url)).content.decode()
    assert 'id="share-box"' in mine and page_url in mine  # the teacher's link for the class


async def test_the_add_service_form_builds_a_filtered_consumer() -> None:
    client = AsyncClient()
    await client.get("/")
    r = await client.post("/simulations/", {"preset": "basic"})
    sim_id = r["Location"].rstrip("/").split("/")[-1]
    control = r["Location"] + "control"
    r = await client.post(
        control,
        {
            "command": "consumer.add",
            "name": "fraud",
            "label": "Fraud Service",
            "topics": ["orders"],
            "events": "OrderPlaced",
            "filter_field": "total",
            "filter_op": ">",
            "filter_value": "5000",
            "dist": "constant",
            "mean_ms": "5",
            "instances": "1",
            "from": "earliest",
        },
        headers={"HX-Request": "true"},
    )
    assert "command-result--ok" in r.content.decode(), r.content
    st = (await client.get(f"/api/simulations/{sim_id}")).json()
    assert st["groups"]["fraud"]["filter"] == "total > 5000"
    assert st["groups"]["fraud"]["label"] == "Fraud Service"


async def test_an_unknown_page_is_a_friendly_404() -> None:
    r = await AsyncClient().get("/simulations/ffffff/")
    assert r.status_code == 404 and b"No simulation" in r.content


async def test_the_broker_form_takes_a_partition_leader_down_and_up() -> None:
    client = AsyncClient()
    await client.get("/")
    r = await client.post("/simulations/", {"preset": "ecommerce"})
    page_url = r["Location"]
    page = (await client.get(page_url)).content.decode()
    assert 'id="broker-controls"' in page and '<option value="orders">' in page
    control = page_url + "control"
    htmx = {"HX-Request": "true"}
    r = await client.post(
        control, {"command": "broker.down", "topic": "orders", "partition": "1"}, headers=htmx
    )
    assert "command-result--ok" in r.content.decode()
    sim_id = page_url.rstrip("/").split("/")[-1]
    st = (await client.get(f"/api/simulations/{sim_id}")).json()
    assert [p["online"] for p in st["topics"]["orders"]["partitions"]] == [True, False, True]
    r = await client.post(
        control, {"command": "broker.down", "topic": "orders", "partition": "9"}, headers=htmx
    )
    assert "command-result--error" in r.content.decode()
    assert "partition" in r.content.decode()
    r = await client.post(control, {"command": "broker.up", "topic": "orders"}, headers=htmx)
    st = (await client.get(f"/api/simulations/{sim_id}")).json()
    assert all(p["online"] for p in st["topics"]["orders"]["partitions"])


async def test_a_dead_letter_topic_is_read_by_offset_through_the_api() -> None:
    client = AsyncClient()
    failing = {
        **SMALL,
        "consumers": [{**SMALL["consumers"][0], "failure_rate": 1, "retry": {"max_attempts": 1}}],
    }
    body = await _create(client, failing)
    auth = {"Authorization": f"Bearer {body['control_token']}"}
    await client.post(
        f"/api/simulations/{body['id']}/commands",
        json.dumps({"command": "step", "value": 1}),
        content_type="application/json",
        headers=auth,
    )
    url = f"/api/simulations/{body['id']}/records"
    r = await client.get(url, {"topic": "orders.DLT", "partition": 0, "offset": 2, "limit": 3})
    assert r.status_code == 200, r.content
    read = r.json()
    assert [rec["offset"] for rec in read["records"]] == [2, 3, 4]
    assert read["records"][0]["headers"]["kafka_dlt-original-consumer-group"] == "email"
    # anyone watching may read; bad arguments are named
    r = await client.get(url, {"topic": "orders.DLT", "partition": 7})
    assert r.status_code == 400 and "partition" in r.json()["error"]
    r = await client.get(url, {"topic": "refunds"})
    assert r.status_code == 400 and "no topic 'refunds'" in r.json()["error"]
    r = await client.get("/api/simulations/abcdef123456/records", {"topic": "orders"})
    assert r.status_code == 404
