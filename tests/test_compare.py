"""Synchronous call chain vs event flow: same orders, same faults, fair numbers."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import yaml

from simulator import CommandError, load_scenario, parse_scenario
from simulator.cli import main
from simulator.compare import Comparison

PRESET = Path(__file__).resolve().parent.parent / "simulator/presets/sync-vs-events.yaml"


def comparison(seed: int = 11) -> Comparison:
    return Comparison(load_scenario(PRESET), seed)


def test_both_sides_see_the_same_orders_at_the_same_times() -> None:
    c = comparison()
    c.run_until(30)
    st = c.state()
    finished_or_waiting = st["sync"]["checkout_ok"] + st["sync"]["checkout_errors"]
    assert finished_or_waiting + st["sync"]["in_flight"] == st["orders"]
    # every order published on the event side, but those still inside checkout's first hop
    assert st["orders"] - st["events"]["orders_published"] <= 1
    assert c.sync.chain == ["inventory", "email"]


def test_email_500_ms_slower_reaches_sync_checkout_but_not_event_checkout() -> None:
    before, after = comparison(), comparison()
    after.apply({"command": "consumer.delay", "consumer": "email", "value": 500})
    for c in (before, after):
        c.run_until(60)
    b, a = before.state(), after.state()
    assert a["sync"]["checkout_ms"]["p50"] >= b["sync"]["checkout_ms"]["p50"] + 500
    assert a["events"]["checkout_ms"]["p50"] == pytest.approx(
        b["events"]["checkout_ms"]["p50"], rel=0.05
    )
    assert a["events"]["checkout_errors"] == 0
    # the slowdown shows on the event side as lag, where no customer waits for it
    assert a["events"]["groups"]["email"]["lag"] > b["events"]["groups"]["email"]["lag"]


def test_email_down_fails_every_sync_checkout_while_event_checkout_goes_on() -> None:
    c = comparison()
    c.run_until(20)
    email = c.sim.groups["email"]
    c.apply({"command": "consumer.down", "consumer": "email"})
    published_at_outage = c.producer.produced
    # Lag counts in-flight work until it commits; a graceful stop lets it finish.
    backlog_at_outage = email.lag() - email.in_flight
    assert backlog_at_outage <= 2  # Email was keeping up before the outage
    c.run_until(50)
    st = c.state()
    # every sync checkout that started during the outage failed (refused by Email)
    during = [ok for arrived, _, ok in c.sync.outcomes if 20.1 <= arrived < 47]
    assert len(during) > 400
    assert not any(during), "a sync checkout succeeded while Email was down"
    assert st["sync"]["checkout_errors"] >= len(during)
    # the event side: checkout never failed, and Email's lag is the orders since the outage
    assert st["events"]["checkout_errors"] == 0
    assert email.lag() == (c.producer.produced - published_at_outage) + backlog_at_outage
    c.apply({"command": "consumer.up", "consumer": "email"})
    c.run_until(120)
    c.apply({"command": "producer.rate", "value": 0})
    c.run_until(130)
    assert email.lag() == 0
    assert email.processed - email.duplicates == c.producer.produced  # no order lost
    assert c.sim.groups["inventory"].processed == c.producer.produced


def test_a_fast_failure_never_makes_sync_checkout_look_faster() -> None:
    # Email down refuses at once: a failed checkout takes less than a good one (Inventory's
    # time only). Checkout time is of the checkouts that returned, as on the event side; the
    # failures are the error rate.
    c = comparison()
    c.run_until(20)
    healthy = c.state()["sync"]
    c.apply({"command": "consumer.down", "consumer": "email"})
    c.run_until(40)
    down = c.state()["sync"]
    failed_ms = sorted(
        (end - arrived) * 1000.0 for arrived, end, ok in c.sync.outcomes if not ok and end > 35
    )
    assert failed_ms and failed_ms[len(failed_ms) // 2] < healthy["recent_checkout_ms"]["p50"]
    assert down["recent_checkout_ms"]["count"] == 0  # none returned in the last 5 s
    assert down["recent_error_rate"] == 1.0
    assert down["checkout_ms"]["count"] == down["checkout_ok"]
    c.apply({"command": "consumer.up", "consumer": "email"})
    c.run_until(60)
    back = c.state()["sync"]
    assert back["recent_error_rate"] == 0.0
    assert back["recent_checkout_ms"]["p50"] == pytest.approx(
        healthy["recent_checkout_ms"]["p50"], rel=0.2
    )


def test_adding_fraud_changes_the_producer_only_on_the_sync_side() -> None:
    c = comparison()
    c.run_until(30)
    base = c.sync.recent.summary(c.now)["p50"]
    fraud = {
        "name": "fraud",
        "label": "Fraud Service",
        "topics": ["orders"],
        "filter": {"field": "total", "op": ">", "value": 5000},
        "processing": {"dist": "constant", "mean_ms": 80},
    }
    c.apply({"command": "service.add", "consumer": fraud})
    c.run_until(35)
    # every checkout now waits for Fraud too: those that return take its 80 ms and more ...
    assert c.sync.recent.summary(c.now)["p50"] >= base + 80
    c.run_until(60)
    st = c.state()
    assert st["events"]["producer_changes"] == 0
    assert st["sync"]["producer_changes"] == 1
    assert st["sync"]["chain"] == ["inventory", "email", "fraud"]
    # ... and one Fraud instance at 80 ms a call serves 12.5 of the 20 orders a second: its
    # queue grows until every checkout times out
    assert st["sync"]["recent_error_rate"] == 1.0 and st["sync"]["checkout_timeouts"] > 0
    fraud_group = st["events"]["groups"]["fraud"]
    assert fraud_group["filter"] == "total > 5000"
    assert fraud_group["processed"] > 0


def test_with_request_reply_the_event_side_producer_changes_too() -> None:
    """Checkout that waits for reply events must learn to expect the new service's reply."""
    doc = yaml.safe_load(PRESET.read_text())
    doc["sync"]["events_await"] = "all"
    c = Comparison(parse_scenario(doc))
    c.run_until(1)
    fraud = {
        "name": "fraud",
        "topics": ["orders"],
        "processing": {"dist": "constant", "mean_ms": 5},
    }
    c.apply({"command": "service.add", "consumer": fraud})
    st = c.state()
    assert (st["events"]["producer_changes"], st["sync"]["producer_changes"]) == (1, 1)


def test_a_switch_with_a_bad_value_changes_neither_side() -> None:
    c = comparison()
    c.run_until(5)
    with pytest.raises(CommandError):
        c.apply({"command": "consumer.delay", "consumer": "email", "value": -5})
    with pytest.raises(CommandError, match="unknown switch"):
        c.apply({"command": "consumer.instances", "consumer": "email", "value": 3})
    with pytest.raises(CommandError, match="unknown consumer"):
        c.apply({"command": "consumer.down", "consumer": "nobody"})
    assert c.sync.services["email"].delay == 0 and c.sim.groups["email"].delay == 0


def test_the_same_seed_gives_the_same_comparison() -> None:
    a, b = comparison(5), comparison(5)
    for c in (a, b):
        c.run_until(10)
        c.apply({"command": "consumer.failure_rate", "consumer": "inventory", "value": 0.3})
        c.run_until(25)
    assert a.state() == b.state()


def test_cli_compare_json_has_both_sides() -> None:
    out = io.StringIO()
    assert (
        main(["compare", str(PRESET), "--until", "20", "--json"], out=out, err=io.StringIO()) == 0
    )
    m = json.loads(out.getvalue())
    for side in ("sync", "events"):
        assert set(m[side]["checkout_ms"]) >= {"p50", "p95", "p99"}
        assert m[side]["checkout_errors"] == 0
    assert set(m["events"]["groups"]) == {"inventory", "email"}
    assert isinstance(m["events"]["groups"]["email"]["lag"], int)


def test_cli_compare_without_a_chain_exits_2() -> None:
    err = io.StringIO()
    assert main(["compare", "basic"], out=io.StringIO(), err=err) == 2
    assert "needs a 'chain'" in err.getvalue()


def test_cli_compare_prints_both_sides_and_the_chain() -> None:
    out = io.StringIO()
    assert main(["compare", "sync-vs-events", "--until", "10"], out=out, err=io.StringIO()) == 0
    text = out.getvalue()
    assert "synchronous chain" in text and "event-driven" in text
    assert "checkout -> inventory -> email" in text
    assert "event side lag: inventory" in text


def test_scheduled_faults_in_the_scenario_act_on_both_sides() -> None:
    from dataclasses import replace

    from simulator.scenario import FaultSpec

    sc = load_scenario(PRESET)
    sc = replace(sc, faults=(FaultSpec(at=10, action="down", consumer="email"),))
    c = Comparison(sc)
    c.run_until(20)
    assert c.sync.services["email"].status == "down"
    assert c.sim.groups["email"].display_status == "down"
    assert c.sync.errors > 100
    assert c.switch_log == []  # faults are the scenario's, not commands


def test_the_event_sides_recent_error_rate_counts_its_failed_checkouts() -> None:
    """The event side's error chart reads recent_error_rate: with the broker's leaders down and
    the producer giving up after delivery.timeout.ms, its checkouts fail and the rate says so;
    with the broker up it is 0 (it used to be a literal 0.0)."""
    from simulator.lessons import CHANGES, lesson

    found = lesson("temporal-decoupling")
    assert found is not None
    doc = found.live_doc()
    CHANGES["broker-down"](doc)  # leaders down 20-50 s, delivery.timeout.ms 5 s
    down = Comparison(parse_scenario(doc), 7)
    healthy = Comparison(parse_scenario(found.live_doc()), 7)
    rates = []
    for t in (15.0, 35.0, 45.0):
        down.run_until(t)
        healthy.run_until(t)
        rates.append(down.state()["events"]["recent_error_rate"])
        assert healthy.state()["events"]["recent_error_rate"] == 0.0
    assert rates[0] == 0.0  # before the outage
    assert rates[1] > 0.5 and rates[2] > 0.5  # during it, most checkouts fail
    assert down.state()["events"]["checkout_errors"] > 0
