"""Each lesson's claim, checked by running its scenario headless; and the lesson pages."""

from __future__ import annotations

import pytest
from django.test import Client

from simulator.lessons import LESSONS, lesson


def measure(slug: str):  # type: ignore[no-untyped-def]
    found = lesson(slug)
    assert found is not None
    return found.measure(None)


def test_events_expect_no_reply_while_commands_wait_for_one_each() -> None:
    a = measure("events-commands-queries")
    assert a.correct == "ack" and a.claim_holds
    assert a.data["replies_per_order"] == pytest.approx(2.0, abs=0.01)
    e0, e1, e_all = a.data["events_p50"]
    s0, s1 = a.data["sync_p50"]
    # a slower consumer is not on checkout's path, nor are all of them
    assert e1 == pytest.approx(e0, rel=0.05)
    assert e_all == pytest.approx(e0, rel=0.05)
    assert s1 > s0 + 300


def test_after_the_email_outage_every_order_is_emailed_and_checkout_never_slowed() -> None:
    a = measure("temporal-decoupling")
    plain, idem = a.data["plain"], a.data["idempotent"]
    assert a.correct == "unchanged" and a.claim_holds
    assert plain["during"] == pytest.approx(plain["before"], rel=0.05)
    assert plain["peak_lag"] > 400  # 30 s of orders waited in the broker
    assert plain["lag"] == 0
    # every order emailed: at least once without idempotency, exactly once with it
    assert plain["emailed"] == plain["orders"] and plain["duplicates"] > 0
    assert idem["emailed"] == idem["orders"] and idem["duplicates"] == 0
    assert idem["deduplicated"] == plain["duplicates"]
    assert plain["sync_errors"] > 0


def test_fraud_from_earliest_replays_history_and_no_producer_changes() -> None:
    a = measure("adding-consumers")
    early, late = a.data["earliest"], a.data["latest"]
    assert a.correct == "history" and a.claim_holds
    assert early["flagged"] == early["big_total"] > late["flagged"] > 0
    assert late["flagged"] == late["big_total"] - late["big_before"]
    assert a.data["producer_changes"] == {"events": 0, "sync": 1}


def test_the_consistency_window_is_measured_per_order_as_a_distribution() -> None:
    a = measure("eventual-consistency")
    w = a.data["window_ms"]
    assert w["count"] > 2000
    assert 0 < w["p50"] <= w["p95"] <= w["p99"] <= w["max"]
    assert sum(a.data["buckets"]) == w["count"]
    bounds = {"under-10": 10, "10-100": 100, "100-1000": 1000, "over-1000": float("inf")}
    assert w["p95"] < bounds[a.correct]


def test_a_correlation_id_gives_the_whole_journey_with_retries() -> None:
    a = measure("correlation-ids")
    hops = a.data["hops"]
    cid = a.data["correlation_id"]
    assert all(h["correlation_id"] == cid for h in hops)
    kinds = {h["kind"] for h in hops}
    assert {"produced", "delivered", "processed"} <= kinds
    services = {h["service"] for h in hops} - {""}
    assert len(services) >= 4  # the order crossed several services
    times = [h["t"] for h in hops]
    assert times == sorted(times)
    parts = a.data["parts_s"]
    assert a.correct == max(parts, key=lambda k: parts[k])


def test_replaying_an_orders_events_rebuilds_its_state_at_any_offset() -> None:
    a = measure("event-sourcing")
    assert [t for _, t in a.data["events"]] == [
        "OrderPlaced",
        "PaymentProcessed",
        "InventoryReserved",
        "OrderShipped",
    ]
    offsets = [o for o, _ in a.data["events"]]
    assert offsets == sorted(offsets)  # one partition, in order
    assert a.data["final"]["status"] == "shipped"
    assert a.data["as_of"]["status"] == "paid" == a.correct
    assert a.data["final"]["total"] == a.data["as_of"]["total"]


def test_the_six_step_flow_runs_in_parallel_after_checkout_returns() -> None:
    a = measure("ecommerce-flow")
    p = a.data["p50_ms"]
    assert a.correct == "step1" and a.claim_holds
    assert {
        "inventory:OrderPlaced",
        "inventory:PaymentProcessed",
        "fulfillment:InventoryReserved",
        "notification:PaymentProcessed",
        "payment:OrderPlaced",
    } <= set(p)
    # Fulfillment needs payment then inventory: it comes after both
    assert p["fulfillment:InventoryReserved"] > p["payment:OrderPlaced"]


def test_failed_orders_wait_in_the_dead_letter_queue_until_redriven() -> None:
    a = measure("operations")
    assert a.correct == "parked" and a.claim_holds
    assert a.data["parked"] > 0
    assert a.data["paid"] == a.data["orders"]


def test_hundreds_of_consumers_read_one_stream_and_the_producer_publishes_once() -> None:
    a = measure("scale")
    assert a.correct == "none" and a.claim_holds
    assert a.data["groups"] >= 300
    assert a.data["deliveries"] >= 299 * a.data["produced"]


def test_every_lesson_has_a_page_a_preset_steps_and_a_question() -> None:
    assert len({item.slug for item in LESSONS}) == len(LESSONS)
    for item in LESSONS:
        assert item.steps and item.question and len(item.choices) >= 2
        assert item.scenario().name


@pytest.mark.django_db
def test_the_home_page_links_every_lesson() -> None:
    html = Client().get("/").content.decode()
    for item in LESSONS:
        assert f"/lessons/{item.slug}/" in html


@pytest.mark.django_db
def test_a_lesson_page_asks_then_shows_the_measured_answer() -> None:
    client = Client()
    page = client.get("/lessons/temporal-decoupling/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "Temporal decoupling" in html and "restarts at 3 AM" in html
    assert 'name="prediction"' in html and "measured-answer" not in html
    answer = client.post(
        "/lessons/temporal-decoupling/", {"prediction": "slower"}, headers={"HX-Request": "true"}
    )
    text = answer.content.decode()
    assert "measured something else" in text
    assert "nothing: it takes as long as before" in text  # the measured answer
    right = client.post("/lessons/temporal-decoupling/", {"prediction": "unchanged"})
    assert "matches what the simulation measured" in right.content.decode()
    assert "claim-does-not-hold" not in right.content.decode()


@pytest.mark.django_db
def test_a_lesson_page_runs_the_measurement_on_another_system_and_says_the_claim_fails() -> None:
    client = Client()
    first = client.post("/lessons/temporal-decoupling/", {"prediction": "unchanged"}).content
    assert b'data-variant="broker-down"' in first
    other = client.post(
        "/lessons/temporal-decoupling/",
        {"prediction": "unchanged", "variant": "broker-down"},
        headers={"HX-Request": "true"},
    ).content.decode()
    assert "On another system" in other and "delivery.timeout.ms 5 s" in other
    assert "it fails: orders cannot be confirmed" in other  # measured on that system
    assert 'id="claim-does-not-hold"' in other
    # an unknown variant is the lesson's own system, not an error
    odd = client.post(
        "/lessons/temporal-decoupling/", {"prediction": "unchanged", "variant": "<x>"}
    )
    assert odd.status_code == 200 and "claim-does-not-hold" not in odd.content.decode()


@pytest.mark.django_db
def test_an_unknown_lesson_is_404() -> None:
    assert Client().get("/lessons/nope/").status_code == 404


def test_the_registry_rejects_a_breaking_version_and_unreadable_events_are_dead_lettered() -> None:
    a = measure("schema-contract")
    v = a.data["verdicts"]
    assert a.correct == "rejected" and a.claim_holds
    for mode in ("BACKWARD", "FORWARD", "FULL", "NONE"):
        assert v[mode]["v2 adds optional currency"] == "accepted"
    assert "amount' was added as required" in v["BACKWARD"]["v3 renames total"]
    assert "'total' was removed" in v["FORWARD"]["v3 renames total"]
    assert v["FULL"]["v3 renames total"].startswith("rejected")
    assert v["NONE"]["v3 renames total"] == "accepted"
    assert a.data["rejected"] > 0  # refused at publish time, never stored
    assert a.data["email_dead"] == a.data["billing_dead"] == a.data["legacy"] > 0
    assert a.data["reasons"] == [
        "cannot read OrderPlaced with OrderPlaced.v1: missing required field 'total'"
    ]


def test_fat_events_cost_storage_and_break_their_readers_when_a_field_goes() -> None:
    a = measure("fat-thin-events")
    assert a.correct == "dlq" and a.claim_holds
    assert a.data["fat_per"] > 20 * a.data["thin_per"]
    assert a.data["fat_stored"] > 20 * a.data["thin_stored"]
    assert a.data["before"] == 0 and a.data["after"] > 500
    assert a.data["thin_dead"] == 0
