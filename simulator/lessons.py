"""Guided lessons: each idea of the EDA lesson, demonstrated by a run of the simulator.

A lesson is data (its words, its preset, steps to try, a question to predict) plus a
``measure`` function that runs the preset headless and derives the answer - including which
prediction was right - from what the simulation measured. Nothing here is a hard-coded result.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from math import inf
from pathlib import Path
from typing import Any

import yaml

from .broker import (
    CORRELATION_ID,
    KEY,
    OFFSET,
    PAYLOAD,
    TS,
    TYPE,
    CorrelationId,
    Record,
    stable_partition,
)
from .compare import Comparison, window_outcomes
from .groups import ConsumerGroup
from .metrics import Histogram
from .observe import Observer
from .scenario import Scenario, load_scenario, parse_scenario
from .schema import Compatibility, IncompatibleSchema, SchemaRegistry
from .simulation import Simulation

PRESETS = Path(__file__).parent / "presets"

# A variant changes the system a lesson measures (a scenario document, changed in place): a
# broker that is down, a consumer without idempotency, a registry that accepts anything. A
# lesson's answer is a measurement when some variant makes it come out otherwise; the tests run
# each variant and check that it does.
Variant = Callable[[dict[str, Any]], None]


def _doc(preset: str) -> dict[str, Any]:
    doc = yaml.safe_load((PRESETS / f"{preset}.yaml").read_text(encoding="utf-8"))
    assert isinstance(doc, dict)
    return doc


def _scenario(
    preset: str, variant: Variant | None = None, script: tuple[dict[str, Any], ...] = ()
) -> Scenario:
    """The preset with a lesson's ``script`` added, changed by ``variant`` if one is given."""
    doc = with_script(copy.deepcopy(_doc(preset)), script)
    if variant is not None:
        variant(doc)
    return parse_scenario(doc)


def with_script(doc: dict[str, Any], script: tuple[dict[str, Any], ...]) -> dict[str, Any]:
    """``doc`` with a lesson's steps added to its script."""
    if script:
        doc["script"] = [*doc.get("script", []), *copy.deepcopy(list(script))]
    return doc


def _consumer(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in doc["consumers"] if c["name"] == name)


@dataclass(frozen=True)
class Answer:
    """What the simulation measured, and which prediction it makes right."""

    correct: str
    summary: str
    facts: tuple[tuple[str, str], ...]
    claim_holds: bool
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Lesson:
    number: int
    slug: str
    title: str
    idea: tuple[str, ...]
    preset: str
    live: str  # "simulation" or "compare": how the preset opens in the dashboard
    steps: tuple[str, ...]
    question: str
    choices: tuple[tuple[str, str], ...]
    measure: Callable[..., Answer]  # (seed, variant=None) -> the measured answer
    # other systems the same measurement can be run on (name -> what changes, the change): a
    # lesson's answer is a measurement because some of them make it come out otherwise
    variants: dict[str, tuple[str, Variant]] = field(default_factory=dict)
    # the lesson's steps the run plays by itself (added to its preset's script), so that the
    # live run ("Open it live") is the measured one
    script: tuple[dict[str, Any], ...] = ()
    # what the lesson adds to its preset besides steps (lesson 9: a synchronous chain beside
    # the flow, to compare checkout's return with), for the measurement and the live run alike
    setup: Variant | None = None
    # the guided lesson on the live page: narration cards at simulated times ({at, text, and
    # the number to watch: point, a dotted path in the frame's state, with its label}), and the
    # time the run pauses to ask the question
    cards: tuple[dict[str, Any], ...] = ()
    ask_at: float = 0.0

    def live_doc(self) -> dict[str, Any]:
        """The scenario "Open it live" runs: the preset, set up, with the lesson's steps."""
        doc = with_script(copy.deepcopy(_doc(self.preset)), self.script)
        if self.setup is not None:
            self.setup(doc)
        return doc

    def scenario(self) -> Scenario:
        return load_scenario(PRESETS / f"{self.preset}.yaml")


def _n(count: int, word: str, plural: str = "") -> str:
    """``3 retries``, ``1 retry``: a count with its noun in the right number."""
    return f"{count:,} {word if count == 1 else plural or word + 's'}"


def _times(count: int) -> str:
    """``not at all``, ``once``, ``twice``, ``3 times``."""
    return {0: "not at all", 1: "once", 2: "twice"}.get(count, f"{count:,} times")


def _ms(x: float) -> str:
    """A duration as a person reads it: "0 ms", "3.2 ms", "420 ms", "21.3 s"."""
    if x == 0:
        return "0 ms"
    if x >= 10_000:
        return f"{x / 1000:,.1f} s"
    return f"{x:,.0f} ms" if x >= 10 else f"{x:,.1f} ms"


def _unique(g: ConsumerGroup) -> int:
    return g.processed - g.duplicates


# --- 1. events, commands and queries --------------------------------------------------------


# Lesson 1's steps: Email 300 ms slower at t = 30, then every consumer at t = 60
SLOW_EMAIL_AT, SLOW_ALL_AT, EVENTS_END = 30.0, 60.0, 90.0
EVENTS_SCRIPT: tuple[dict[str, Any], ...] = (
    {
        "at": SLOW_EMAIL_AT,
        "command": {"command": "consumer.delay", "consumer": "email", "value": 300},
    },
    {
        "at": SLOW_ALL_AT,
        "command": {"command": "consumer.delay", "consumer": "inventory", "value": 300},
    },
)


def _ms_or_failed(x: float) -> str:
    return "failed (no reply in time)" if x == inf else _ms(x)


def _p50(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2] if ordered else 0.0


def measure_events_commands_queries(
    seed: int | None = None,
    variant: Variant | None = None,
    script: tuple[dict[str, Any], ...] = EVENTS_SCRIPT,
) -> Answer:
    cmp = Comparison(_scenario("sync-vs-events", variant, script), seed)
    cmp.run_until(SLOW_EMAIL_AT - 0.001)
    # commands sent per order while every service answers in time (later, timeouts cut the
    # chain short)
    st = cmp.state()
    calls = sum(s["calls"] for s in st["sync"]["services"].values())
    per_order = calls / st["orders"] if st["orders"] else 0.0
    cmp.run_until(EVENTS_END + 5)
    orders = cmp.state()["orders"]
    # What is on checkout's path? The run slows Email by 300 ms at t = 30, then every consumer
    # at t = 60: the checkouts placed in each phase (after 5 s to settle) say whether the event
    # side waited for every consumer, for the first, or for neither.
    phases = ((5.0, SLOW_EMAIL_AT), (SLOW_EMAIL_AT + 5, SLOW_ALL_AT), (SLOW_ALL_AT + 5, EVENTS_END))
    # a checkout that failed (no reply in time) counts as slower than any that returned
    e0, e1, e_all = (
        _p50([inf if ms is None else ms for t, ms in cmp.events_outcomes if a <= t < b])
        for a, b in phases
    )
    s0, s1 = (
        _p50([(end - t) * 1000.0 for t, end, _ in cmp.sync.outcomes if a <= t < b])
        for a, b in phases[:2]
    )
    if e1 > e0 + 100:
        correct, waited = "each", "a reply from every consumer"
    elif e_all > e0 + 100:
        correct, waited = "first", "the first consumer's reply"
    else:
        correct, waited = "ack", "only the broker's acknowledgement that it stored the event"
    return Answer(
        correct=correct,
        summary=(
            f"Checkout's commands (ReserveStock, SendConfirmation) each waited for a reply: "
            f"{per_order:.1f} replies per order. Emitting OrderPlaced waited for {waited}: once "
            f"Email was 300 ms slower (t = 30), event-side checkout took {_ms_or_failed(e1)} "
            f"at the median (before: {_ms_or_failed(e0)}), and {_ms_or_failed(e_all)} once "
            f"every consumer was (t = 60); the synchronous one went from {_ms(s0)} to "
            f"{_ms(s1)}."
        ),
        facts=(
            ("orders", f"{orders:,}"),
            ("replies awaited per order (commands)", f"{per_order:.1f}"),
            (
                "event checkout p50, before / Email +300 ms",
                f"{_ms_or_failed(e0)} / {_ms_or_failed(e1)}",
            ),
            ("event checkout p50, every consumer +300 ms", _ms_or_failed(e_all)),
            ("sync checkout p50, before / Email +300 ms", f"{_ms(s0)} / {_ms(s1)}"),
        ),
        claim_holds=correct == "ack" and per_order >= 1.99,
        data={
            "orders": orders,
            "replies_per_order": per_order,
            "events_p50": [e0, e1, e_all],
            "sync_p50": [s0, s1],
        },
    )


def _events_await(mode: str) -> Variant:
    """Request-reply over the broker: checkout waits for a reply event."""

    def change(doc: dict[str, Any]) -> None:
        doc.setdefault("sync", {})["events_await"] = mode

    return change


# --- 2. temporal decoupling -----------------------------------------------------------------


OUTAGE = (20.0, 50.0)  # Email is down (lesson-outage.yaml's faults)


def _outage(seed: int | None, *, idempotent: bool, variant: Variant | None) -> dict[str, Any]:
    def change(doc: dict[str, Any]) -> None:
        if variant is not None:
            variant(doc)
        _consumer(doc, "email")["idempotent"] = idempotent

    cmp = Comparison(_scenario("lesson-outage", change), seed)
    email = cmp.sim.groups["email"]
    cmp.run_until(OUTAGE[1] - 0.1)
    peak_lag = max((row[1] for row in email.stats.history), default=0)
    cmp.run_until(90)  # the script stops the orders at t = 50
    sync_errors = cmp.sync.errors  # every checkout placed before has its outcome by now
    # every checkout placed before and during the outage has its outcome by now
    before = window_outcomes(cmp.events_outcomes, 0.0, OUTAGE[0])
    during = window_outcomes(cmp.events_outcomes, *OUTAGE)
    return {
        "before": before["p50"],
        "during": during["p50"],
        "failed_during": during["failed"],
        "checkouts_during": during["count"],
        "peak_lag": peak_lag,
        "lag": email.lag(),
        "orders": cmp.producer.produced,
        "stored": cmp.topic.produced,
        "emailed": _unique(email),
        "duplicates": email.duplicates,
        "deduplicated": email.deduplicated,
        "processed": email.processed,
        "sync_errors": sync_errors,
    }


def measure_temporal_decoupling(seed: int | None = None, variant: Variant | None = None) -> Answer:
    plain = _outage(seed, idempotent=False, variant=variant)
    idem = _outage(seed, idempotent=True, variant=variant)
    failed = plain["failed_during"]
    if failed:
        correct = "fails"
    elif plain["during"] > plain["before"] * 1.05 + 1.0:
        correct = "slower"
    else:
        correct = "unchanged"
    none_lost = plain["emailed"] == plain["stored"] and idem["emailed"] == idem["stored"]
    if failed:
        checkout = (
            f"{failed:,} of the {plain['checkouts_during']:,} checkouts placed while Email was "
            f"down failed: the broker could not store OrderPlaced"
        )
    else:
        checkout = (
            f"checkouts placed while Email was down took {_ms(plain['during'])} at the median "
            f"(before: {_ms(plain['before'])})"
        )
    return Answer(
        correct=correct,
        summary=(
            f"The event side: {checkout}. The broker kept the orders it stored and Email's lag "
            f"peaked at {plain['peak_lag']:,}. When Email came back it picked up from its "
            f"committed offset: {plain['emailed']:,} of {plain['stored']:,} stored orders were "
            f"emailed. It had done work it had not committed, so {plain['duplicates']:,} emails "
            f"went out twice (at-least-once); with idempotency on it recognised "
            f"{idem['deduplicated']:,} redelivered orders and sent each email exactly once. The "
            f"synchronous chain failed {plain['sync_errors']:,} checkouts."
        ),
        facts=(
            (
                "event checkout p50, before / during the outage",
                f"{_ms(plain['before'])} / {_ms(plain['during'])}",
            ),
            ("event checkouts failed during the outage", f"{failed:,}"),
            ("Email lag at its peak", f"{plain['peak_lag']:,}"),
            ("orders stored / emailed (unique)", f"{plain['stored']:,} / {plain['emailed']:,}"),
            ("duplicate emails without idempotency", f"{plain['duplicates']:,}"),
            (
                "duplicates with idempotency",
                f"{idem['duplicates']:,} ({idem['deduplicated']:,} skipped)",
            ),
            ("sync checkouts failed meanwhile", f"{plain['sync_errors']:,}"),
        ),
        claim_holds=(
            correct == "unchanged"
            and none_lost
            and plain["lag"] == 0
            and plain["duplicates"] > 0
            and idem["duplicates"] == 0
            and idem["deduplicated"] > 0
        ),
        data={"plain": plain, "idempotent": idem},
    )


def _broker_down_during_outage(delivery_timeout_ms: float | None) -> Variant:
    def change(doc: dict[str, Any]) -> None:
        doc.setdefault("faults", []).extend(
            [
                {"at": OUTAGE[0], "broker": "orders", "action": "down"},
                {"at": OUTAGE[1], "broker": "orders", "action": "up"},
            ]
        )
        if delivery_timeout_ms is not None:
            doc["producers"][0]["delivery_timeout_ms"] = delivery_timeout_ms

    return change


# --- 3. adding consumers without touching producers -----------------------------------------


def _fraud_step(doc: dict[str, Any]) -> dict[str, Any]:
    """The script's step that deploys Fraud at t = 30."""
    return next(s["command"] for s in doc["script"] if s["command"]["command"] == "consumer.add")


def _fraud_run(seed: int | None, start: str, variant: Variant | None) -> dict[str, Any]:
    def change(doc: dict[str, Any]) -> None:
        if variant is not None:
            variant(doc)
        step = _fraud_step(doc)
        step["consumer"].update((doc.get("lesson") or {}).get("fraud", {}))
        if step["consumer"].get("delivery", "stream") == "stream":
            step["from"] = start
        else:
            step.pop("from", None)  # a RabbitMQ queue declared now has no history to start from

    sc = _scenario("lesson-fraud", change)
    step = _fraud_step(dict(sc.source))
    sim = Simulation(sc, seed)
    sim.run_until(29.99)  # the script deploys Fraud at t = 30
    before = list(sim.topics["orders"].partitions)
    big_before = sum(
        1 for p in before for r in p.records if r[PAYLOAD] and r[PAYLOAD]["total"] > 5000
    )
    sim.run_until(62)  # and stops the orders at t = 60
    records = [r for p in sim.topics["orders"].partitions for r in p.records]
    big = sum(1 for r in records if r[PAYLOAD] and r[PAYLOAD]["total"] > 5000)
    fraud = sim.groups["fraud"]
    return {
        "flagged": fraud.processed,
        "seen": fraud.processed + fraud.filtered,
        "big_total": big,
        "big_before": big_before,
        "orders": len(records),
        "how": "from earliest"
        if "from" in step and start == "earliest"
        else ("from latest" if "from" in step else "with a new RabbitMQ queue"),
        "flagged_before": sum(
            1 for r in records if r[PAYLOAD] and r[PAYLOAD]["total"] > 5000 and r[TS] < 30
        )
        if step.get("from") == "earliest"
        else 0,
    }


def measure_adding_consumers(seed: int | None = None, variant: Variant | None = None) -> Answer:
    early = _fraud_run(seed, "earliest", variant)
    late = _fraud_run(seed, "latest", variant)
    changes = _producer_changes(seed)
    replayed = early["seen"] == early["orders"]
    return Answer(
        correct="history" if replayed else "new",
        summary=(
            f"Deployed at t = 30 {early['how']}, Fraud read {early['seen']:,} of the "
            f"{early['orders']:,} orders the broker had kept and flagged {early['flagged']:,} "
            f"over $5,000 ({early['flagged_before']:,} of them placed before it existed). From "
            f"latest it read only the "
            f"{late['seen']:,} new orders and flagged {late['flagged']:,}. Deploying Fraud beside "
            f"a synchronous chain (lesson 1's comparison) changed the order service's code "
            f"{_times(changes['sync'])} there and {_times(changes['events'])} on the event side."
        ),
        facts=(
            ("orders over $5,000 in the log", f"{early['big_total']:,}"),
            (
                "orders Fraud read, from earliest / in the log",
                f"{early['seen']:,} / {early['orders']:,}",
            ),
            ("flagged, from earliest", f"{early['flagged']:,}"),
            ("flagged, from latest", f"{late['flagged']:,}"),
            (
                "order service code changes, event side / sync chain",
                f"{changes['events']} / {changes['sync']}",
            ),
        ),
        claim_holds=(
            early["flagged"] == early["big_total"]
            and late["flagged"] == late["big_total"] - late["big_before"]
            and changes["events"] == 0
            and changes["sync"] > 0
            and replayed
        ),
        data={"earliest": early, "latest": late, "producer_changes": changes},
    )


def _producer_changes(seed: int | None) -> dict[str, int]:
    """Deploy Fraud in lesson 1's comparison: how often each side's checkout code changed."""
    cmp = Comparison(_scenario("sync-vs-events"), seed)
    cmp.run_until(1)
    fraud = _fraud_step(_doc("lesson-fraud"))["consumer"]
    cmp.apply({"command": "service.add", "consumer": {**fraud, "topics": ["orders"]}})
    st = cmp.state()
    return {"events": st["events"]["producer_changes"], "sync": st["sync"]["producer_changes"]}


def _fraud_through_a_queue(doc: dict[str, Any]) -> None:
    """Fraud deployed with a RabbitMQ queue bound to the orders: a queue starts empty."""
    doc.setdefault("lesson", {}).setdefault("fraud", {})["delivery"] = "queue"


# --- 4. the event schema contract -----------------------------------------------------------


def measure_schema_contract(seed: int | None = None, variant: Variant | None = None) -> Answer:
    sc = _scenario("lesson-schema", variant)
    configured = str(sc.extra["schemas"].get("compatibility", "BACKWARD"))  # the registry's
    v1, v2 = sc.extra["schemas"]["subjects"]["OrderPlaced"]
    renamed = {
        **v2,
        "properties": {
            **{k: p for k, p in v2["properties"].items() if k != "total"},
            "amount": {"type": "number"},
        },
        "required": ["order_id", "customer_id", "amount"],
    }
    verdicts: dict[str, dict[str, str]] = {}
    for mode in (
        Compatibility.BACKWARD,
        Compatibility.FORWARD,
        Compatibility.FULL,
        Compatibility.NONE,
    ):
        registry = SchemaRegistry(compatibility=mode)
        registry.register("OrderPlaced", v1)
        row = {}
        for label, schema in (("v2 adds optional currency", v2), ("v3 renames total", renamed)):
            try:
                registry.register("OrderPlaced", schema)
                row[label] = "accepted"
            except IncompatibleSchema as e:
                row[label] = "rejected: " + "; ".join(e.reasons)
        verdicts[mode.value] = row
    sim = Simulation(sc, seed)
    sim.run_until(32)  # the script stops the producers at 30; what is in flight finishes
    email, billing = sim.groups["email"], sim.groups["billing"]
    renamed_p = sim.producers["checkout-renamed"]
    legacy = sim.producers["legacy-export"].produced
    reasons = sorted({d.reason for d in email.dead_letters})
    backward_v3 = verdicts[configured]["v3 renames total"]
    parallel = sum(1 for name in ("checkout-v1", "checkout-v2") if sim.producers[name].produced > 0)
    return Answer(
        correct="rejected" if backward_v3.startswith("rejected") else "accepted",
        summary=(
            f"Under {configured}, v2 (adding an optional currency) was "
            f"{verdicts[configured]['v2 adds optional currency'].split(':')[0]} and v3 (renaming "
            f"total to amount) {backward_v3}. In the run, OrderPlaced.v1 and .v2 flowed in "
            f"parallel and both services read both ({email.processed:,} and "
            f"{billing.processed:,} events); the renamed payloads were refused at publish time "
            f"({renamed_p.rejected:,} of them, none stored). The export job that bypasses the "
            f"registry published {legacy:,} events, and each service dead-lettered every one: "
            f"{reasons[0] if reasons else 'no reason'}."
        ),
        facts=(
            *(
                (
                    f"{mode}: v2 / v3",
                    f"{row['v2 adds optional currency'].split(':')[0]} / "
                    f"{row['v3 renames total'].split(':')[0]}",
                )
                for mode, row in verdicts.items()
            ),
            ("v1 and v2 producers running in parallel", str(parallel)),
            ("renamed payloads refused at publish", f"{renamed_p.rejected:,}"),
            ("events email / billing could read", f"{email.processed:,} / {billing.processed:,}"),
            (
                "dead-lettered by email / billing",
                f"{email.dead_lettered:,} / {billing.dead_lettered:,}",
            ),
        ),
        claim_holds=(
            configured == "BACKWARD"
            and backward_v3.startswith("rejected")
            and verdicts["NONE"]["v3 renames total"] == "accepted"
            and all(v["v2 adds optional currency"] == "accepted" for v in verdicts.values())
            and renamed_p.rejected > 0
            and email.dead_lettered == legacy
            and billing.dead_lettered == legacy
            and parallel == 2
        ),
        data={
            "verdicts": verdicts,
            "rejected": renamed_p.rejected,
            "legacy": legacy,
            "email_dead": email.dead_lettered,
            "billing_dead": billing.dead_lettered,
            "email_processed": email.processed,
            "reasons": reasons,
        },
    )


def _compatibility(mode: str) -> Variant:
    def change(doc: dict[str, Any]) -> None:
        doc["schemas"]["compatibility"] = mode

    return change


# --- 7. fat vs thin events -------------------------------------------------------------------


def measure_fat_thin(seed: int | None = None, variant: Variant | None = None) -> Answer:
    sim = Simulation(_scenario("lesson-fat-thin", variant), seed)
    sim.run_until(29.9)
    fat_before = sim.groups["shipping-fat"].dead_lettered
    sim.run_until(60)
    fat, thin = sim.topics["orders-fat"], sim.topics["orders-thin"]
    fat_per = fat.bytes_produced / max(1, fat.produced)
    thin_per = thin.bytes_produced / max(1, thin.produced)
    broken = sim.groups["shipping-fat"]
    fine = sim.groups["shipping-thin"]
    after = broken.dead_lettered - fat_before
    reason = broken.dead_letters[-1].reason if broken.dead_letters else ""
    return Answer(
        correct="dlq" if after > 0 and fine.dead_lettered == 0 else "nothing",
        summary=(
            f"Fat events cost {fat_per:,.0f} bytes each against {thin_per:,.0f} for thin ones: "
            f"the broker stored {fat.bytes_stored:,} bytes for the fat topic and "
            f"{thin.bytes_stored:,} for the thin one, for the same order updates. When the fat "
            f"event lost shipping_address at t = 30, the Shipping service that read it from the "
            f"event dead-lettered all {after:,} events after that ({reason}). The thin-event "
            f"Shipping service, which asks the Order API for the address, did not notice."
        ),
        facts=(
            ("bytes per fat event", f"{fat_per:,.0f}"),
            ("bytes per thin event", f"{thin_per:,.0f}"),
            ("broker storage, fat topic", f"{fat.bytes_stored:,} bytes"),
            ("broker storage, thin topic", f"{thin.bytes_stored:,} bytes"),
            ("fat-event consumer: dead letters after the change", f"{after:,}"),
            ("thin-event consumer: dead letters", f"{fine.dead_lettered:,}"),
        ),
        claim_holds=fat_per > 10 * thin_per
        and fat_before == 0
        and after > 0
        and fine.dead_lettered == 0,
        data={
            "fat_per": fat_per,
            "thin_per": thin_per,
            "after": after,
            "before": fat_before,
            "thin_dead": fine.dead_lettered,
            "fat_stored": fat.bytes_stored,
            "thin_stored": thin.bytes_stored,
        },
    )


def _tolerant_reader(doc: dict[str, Any]) -> None:
    _consumer(doc, "shipping-fat").pop("reads", None)


# --- 5. eventual consistency ----------------------------------------------------------------


class ConsistencyWindow(Observer):
    """Per correlation id: time from the first event of one type to the first of another."""

    def __init__(self, start: str, end: str) -> None:
        self.start_type, self.end_type = start, end
        self.started: dict[CorrelationId, float] = {}
        self.window = Histogram()

    def produced(self, t: float, record: Record) -> None:
        if record[TYPE] == self.start_type:
            self.started.setdefault(record[CORRELATION_ID], t)
        elif record[TYPE] == self.end_type:
            t0 = self.started.pop(record[CORRELATION_ID], None)
            if t0 is not None:
                self.window.add((t - t0) * 1000.0)


CONSISTENCY_BUCKETS = (
    ("under-10", 10.0),
    ("10-100", 100.0),
    ("100-1000", 1000.0),
    ("over-1000", float("inf")),
)


def measure_eventual_consistency(seed: int | None = None, variant: Variant | None = None) -> Answer:
    window = ConsistencyWindow("OrderPlaced", "InventoryReserved")
    sim = Simulation(_scenario("ecommerce", variant), seed, observers=(window,))
    sim.run_until(120)
    s = window.window.summary()
    correct = next(key for key, upper in CONSISTENCY_BUCKETS if s["p95"] < upper)
    return Answer(
        correct=correct,
        summary=(
            f"For {s['count']:,} orders, stock was reserved {_ms(s['p50'])} after OrderPlaced at "
            f"the median, {_ms(s['p95'])} for 95% of orders and {_ms(s['p99'])} for 99% (the "
            f"slowest: {_ms(s['max'])}). Checkout had already returned: in that window a "
            f"customer who looks sees an order whose stock is not reserved yet."
        ),
        facts=(
            ("orders measured", f"{s['count']:,}"),
            ("p50", _ms(s["p50"])),
            ("p95", _ms(s["p95"])),
            ("p99", _ms(s["p99"])),
            ("max", _ms(s["max"])),
        ),
        claim_holds=s["count"] > 0 and s["p50"] > 0,
        data={"window_ms": s, "buckets": window.window.counts[:]},
    )


def _processing(**ms: float) -> Variant:
    """Services take a constant time (ms) each."""

    def change(doc: dict[str, Any]) -> None:
        for name, value in ms.items():
            _consumer(doc, name)["processing"] = {"dist": "constant", "mean_ms": value}

    return change


# --- 6. debugging with correlation ids -----------------------------------------------------


# Lesson 6's first step: Payment fails 15% of its attempts from the start
CORRELATION_SCRIPT: tuple[dict[str, Any], ...] = (
    {
        "at": 0,
        "command": {"command": "consumer.failure_rate", "consumer": "payment", "value": 0.15},
    },
)


def _order(cid: CorrelationId) -> str:
    """An order as a person reads it: by its order id, which is its correlation id."""
    return str(cid) if isinstance(cid, str) else f"the order of correlation id {cid}"


def measure_correlation_ids(
    seed: int | None = None,
    variant: Variant | None = None,
    script: tuple[dict[str, Any], ...] = CORRELATION_SCRIPT,
) -> Answer:
    sim = Simulation(_scenario("ecommerce", variant, script), seed, trace=True)
    sim.run_until(60)
    assert sim.tracer is not None
    best: tuple[float, CorrelationId] = (-1.0, 0)
    for candidate in sim.tracer.correlation_ids():
        journey = sim.tracer.trace(candidate) or []
        if len(journey) > 1 and journey[-1].t - journey[0].t > best[0]:
            best = (journey[-1].t - journey[0].t, candidate)
    cid = best[1]
    hops = sim.trace(cid) or []
    waiting = processing = backoff = 0.0
    delivered_at: dict[tuple[str, int], float] = {}
    produced_at: dict[int, float] = {}
    retry_at: dict[tuple[str, int], float] = {}
    # when a service could take the event up again: after a failure that is not waited out in a
    # backoff (a requeue), the time it failed
    ready_at: dict[tuple[str, int], float] = {}
    for h in hops:
        key = (h["service"], h["event_id"])
        if h["kind"] == "produced":
            produced_at[h["event_id"]] = h["t"]
        elif h["kind"] == "delivered":
            if key in retry_at:
                backoff += h["t"] - retry_at.pop(key)
            else:
                since = ready_at.pop(key, produced_at.get(h["event_id"]))
                if since is not None:
                    waiting += h["t"] - since
            delivered_at[key] = h["t"]
        elif h["kind"] in ("processed", "failed") and key in delivered_at:
            processing += h["t"] - delivered_at.pop(key)
            if h["kind"] == "failed":
                ready_at[key] = h["t"]
        elif h["kind"] == "retried":
            retry_at[key] = h["t"]
            ready_at.pop(key, None)
    parts = {"broker": waiting, "processing": processing, "backoff": backoff}
    correct = max(parts, key=lambda k: parts[k])
    retries = sum(1 for h in hops if h["kind"] == "retried")
    services = len({h["service"] for h in hops} - {""})
    return Answer(
        correct=correct,
        summary=(
            f"The slowest order, {_order(cid)}, took {_ms(best[0] * 1000)} from "
            f"OrderPlaced to its last hop, across "
            f"{_n(services, 'service')} and "
            f"{_n(retries, 'retry', 'retries') if retries else 'no retries'}. Summed over "
            f"every hop: "
            f"{_ms(waiting * 1000)} waiting in the broker, {_ms(processing * 1000)} being "
            f"processed, {_ms(backoff * 1000)} in retry backoff (hops in parallel services "
            f"overlap, so the parts may add up to more than the journey). Without the "
            f"correlation id, "
            f"these hops would be unrelated lines in {_n(services, 'service')}' logs."
        ),
        facts=(
            ("order (its correlation id)", str(cid)),
            ("hops", str(len(hops))),
            ("waiting in the broker", _ms(waiting * 1000)),
            ("processing", _ms(processing * 1000)),
            ("retry backoff", _ms(backoff * 1000)),
        ),
        claim_holds=len(hops) > 3,
        data={"correlation_id": cid, "hops": hops, "parts_s": parts},
    )


def _payment_retry_queue(doc: dict[str, Any]) -> None:
    _consumer(doc, "payment").update(
        delivery="queue",
        instances=8,
        prefetch=1,
        failure_rate=0.5,
        on_failure="retry_queue",
        retry={"max_attempts": 6, "backoff_ms": 3000, "backoff": "fixed"},
    )
    _consumer(doc, "notification")["instances"] = 3


def _payment_slow_no_queueing(doc: dict[str, Any]) -> None:
    _consumer(doc, "payment").update(
        delivery="queue",
        instances=64,
        prefetch=1,
        processing={"dist": "constant", "mean_ms": 1500},
    )
    _consumer(doc, "notification")["instances"] = 3


# --- 8. event sourcing ----------------------------------------------------------------------

TRANSITIONS = {
    "OrderPlaced": "placed",
    "PaymentProcessed": "paid",
    "InventoryReserved": "reserved",
    "OrderShipped": "shipped",
}


REPLAY_KEEP = 1_000  # a key's events one replay shows at most (the newest)


def replay_key(
    sim: Simulation, topic_name: str, key: str, upto_offset: int | None = None
) -> tuple[dict[str, Any], list[tuple[int, str]], int]:
    """Rebuild one key's state by replaying its events from the log, in offset order, up to an
    offset: event sourcing's fold. The state is each event's fields applied in turn, its status
    the last event's transition (``OrderPaid`` → paid), its version the count of events applied.

    Returns the state, every event of the key still in the log as (offset, type), and the key's
    partition (Kafka's murmur2 of the key, as the producer chose it)."""
    topic = sim.topics[topic_name]
    index = stable_partition(key, len(topic.partitions))
    state: dict[str, Any] = {}
    events: list[tuple[int, str]] = []
    for r in topic.partitions[index].records:
        if r[KEY] != key:
            continue
        events.append((r[OFFSET], r[TYPE]))
        if upto_offset is not None and r[OFFSET] > upto_offset:
            continue
        if r[PAYLOAD]:
            state.update(r[PAYLOAD])
        state["status"] = TRANSITIONS.get(r[TYPE], _last_word(r[TYPE]))
        state["version"] = state.get("version", 0) + 1
    return state, events[-REPLAY_KEEP:], index


def _last_word(event_type: str) -> str:
    """``OrderPlaced`` → ``placed``: the past tense an event's name ends with."""
    for i in range(len(event_type) - 1, 0, -1):
        if event_type[i].isupper():
            return event_type[i:].lower()
    return event_type.lower()


def order_state(
    sim: Simulation, order_id: str, upto_offset: int | None = None
) -> tuple[dict[str, Any], list[tuple[int, str]]]:
    """Rebuild one order by replaying its events from the log (up to an offset)."""
    state, events, _ = replay_key(sim, "order-events", order_id, upto_offset)
    return state, events


def _describe(state: dict[str, Any]) -> str:
    """An order's state in words: "paid, version 2, customer 56, total 371.72"."""
    if not state:
        return "nothing yet"
    parts = [str(state.get("status", "unknown"))]
    parts += [
        f"{key.replace('_id', '')} {state[key]}"
        for key in ("version", "customer_id", "total")
        if key in state
    ]
    return ", ".join(parts)


def measure_event_sourcing(seed: int | None = None, variant: Variant | None = None) -> Answer:
    sim = Simulation(_scenario("lesson-sourcing", variant), seed)
    sim.run_until(30)
    order_id = "ord-10"
    final, events, partition = replay_key(sim, "order-events", order_id)
    middle = events[1][0] if len(events) > 1 else events[0][0]
    as_of, _ = order_state(sim, order_id, upto_offset=middle)
    return Answer(
        correct=str(as_of.get("status")),
        summary=(
            f"{order_id} is stored nowhere as a row. Its {len(events)} events sit in partition "
            f"{partition} of order-events, at offsets {', '.join(str(o) for o, _ in events)}. "
            f"Replaying all of them gives status '{final.get('status')}'; replaying up to "
            f"offset {middle} gives '{as_of.get('status')}' - the order as it was then."
        ),
        facts=(
            *((f"offset {o}", t) for o, t in events),
            ("state now", _describe(final)),
            (f"state as of offset {middle}", _describe(as_of)),
        ),
        claim_holds=final.get("status") == "shipped" and as_of.get("status") == "paid",
        data={"events": events, "final": final, "as_of": as_of, "offset": middle},
    )


def _reacts_to_placed(name: str) -> Variant:
    """``name`` reacts to OrderPlaced itself, in 5 ms."""

    def change(doc: dict[str, Any]) -> None:
        _consumer(doc, name).update(
            events=["OrderPlaced"], processing={"dist": "constant", "mean_ms": 5}
        )

    return change


def _payment_fails(doc: dict[str, Any]) -> None:
    _consumer(doc, "payment").update(failure_rate=1.0, retry={"max_attempts": 1})


# --- 9. the e-commerce order flow -----------------------------------------------------------


class FlowTimes(Observer):
    """When each order reached each step (first time)."""

    def __init__(self) -> None:
        self.placed: dict[CorrelationId, float] = {}
        self.step: dict[str, Histogram] = {}
        self.done_before_checkout = 0  # downstream work finished before checkout returned

    def produced(self, t: float, record: Record) -> None:
        if record[TYPE] == "OrderPlaced":
            self.placed[record[CORRELATION_ID]] = t

    def processed(
        self,
        t: float,
        group: ConsumerGroup,
        instance: int,
        record: Record,
        started: float,
        duplicate: bool,
    ) -> None:
        t0 = self.placed.get(record[CORRELATION_ID])
        if t0 is not None and not duplicate:
            if t <= t0:
                self.done_before_checkout += 1
            key = f"{group.name}:{record[TYPE]}"
            self.step.setdefault(key, Histogram()).add((t - t0) * 1000.0)


class Confirmations(Observer):
    """Per order (its ``order`` number): when a later step was first confirmed."""

    def __init__(self, types: tuple[str, ...]) -> None:
        self.types = types
        self.first: dict[int, float] = {}

    def produced(self, t: float, record: Record) -> None:
        order = record[PAYLOAD].get("order") if record[PAYLOAD] else None
        if isinstance(order, int) and record[TYPE] in self.types:
            self.first.setdefault(order, t)


def _beside_a_chain(doc: dict[str, Any]) -> None:
    """The e-commerce flow with a synchronous chain beside it (a comparison), so that
    checkout's return is measured per order: the event side is the flow itself."""
    doc.setdefault("chain", ["payment", "inventory"])
    doc.setdefault("sync", {"hop_ms": 2, "timeout_ms": 5000})


def _ecommerce_compared(variant: Variant | None) -> Variant:
    def change(doc: dict[str, Any]) -> None:
        _beside_a_chain(doc)
        if variant is not None:
            variant(doc)

    return change


def measure_ecommerce_flow(seed: int | None = None, variant: Variant | None = None) -> Answer:
    flow = FlowTimes()
    confirmed = Confirmations(("PaymentProcessed", "InventoryReserved"))
    cmp = Comparison(
        _scenario("ecommerce", _ecommerce_compared(variant)), seed, observers=(flow, confirmed)
    )
    cmp.run_until(120)
    sim = cmp.sim
    p = {k: h.summary()["p50"] for k, h in flow.step.items()}
    inv = sim.groups["inventory"]
    both = {k.split(":")[1] for k in flow.step if k.startswith("inventory:")}
    fulfilled = p.get("fulfillment:InventoryReserved", 0.0)
    # Did checkout return before or after a later step (payment, stock) was confirmed?
    returned = cmp.returned
    after = sum(
        1 for order, t in confirmed.first.items() if order in returned and t <= returned[order]
    )
    measured = sum(1 for order in confirmed.first if order in returned)
    correct = "later" if measured and after > measured / 2 else "step1"
    checkout = cmp.events_checkout.summary()
    when = (
        "when OrderPlaced was stored (step 1)"
        if correct == "step1"
        else "only after a later step was confirmed"
    )
    return Answer(
        correct=correct,
        summary=(
            f"Checkout returned {when}: {_ms(checkout['p50'])} at the median, and for "
            f"{after:,} of {measured:,} orders a later step was confirmed before it returned. "
            f"Then, in parallel: Payment charged the card {_ms(p.get('payment:OrderPlaced', 0))} "
            f"after OrderPlaced (median), Inventory handled OrderPlaced after "
            f"{_ms(p.get('inventory:OrderPlaced', 0))} and PaymentProcessed after "
            f"{_ms(p.get('inventory:PaymentProcessed', 0))}, Notification emailed after "
            f"{_ms(p.get('notification:PaymentProcessed', 0))}, Fulfillment created the "
            f"pick-pack-ship task after {_ms(fulfilled)}, and Analytics saw all "
            f"{sim.groups['analytics'].processed:,} events."
        ),
        facts=(
            ("checkout p50", _ms(checkout["p50"])),
            ("orders with a later step confirmed before checkout returned", f"{after:,}"),
            *tuple((k.replace(":", " handles "), _ms(v)) for k, v in sorted(p.items())),
            ("Inventory consumed", ", ".join(sorted(both))),
            ("Inventory processed", f"{inv.processed:,}"),
        ),
        claim_holds=(
            both == {"OrderPlaced", "PaymentProcessed"} and fulfilled > 0 and correct == "step1"
        ),
        data={
            "p50_ms": p,
            "confirmed_before_return": after,
            "orders": measured,
            "checkout_p50": checkout["p50"],
        },
    )


# --- 10. operational overhead ----------------------------------------------------------------


def measure_operations(seed: int | None = None, variant: Variant | None = None) -> Answer:
    sim = Simulation(_scenario("lesson-operations", variant), seed)
    sim.run_until(29.9)  # the script redrives and stops the orders at t = 30
    payment = sim.groups["payment"]
    parked = len(payment.dead_letters)
    retrying_at_30 = payment.retrying + payment.waiting_retry()
    peak_lag = max((row[1] for row in payment.stats.history), default=0)
    reasons = {d.reason for d in payment.dead_letters}
    attempts = {d.attempts for d in payment.dead_letters}
    sim.run_until(90)
    orders = sim.producers["order-service"].produced
    paid = _unique(payment)
    confirmed = sim.groups["notification"].processed
    lost = payment.expired + payment.skipped
    if lost or paid < orders:
        correct = "lost"
    elif parked:
        correct = "parked"
    else:
        correct = "forever"
    attempt_text = ", ".join(map(str, sorted(attempts))) or "no"
    if parked:
        fate = (
            f"each was tried {attempt_text} times with backoff, then {parked:,} orders were "
            f"parked in the dead-letter topic {payment.dead_letter_destination} with reason "
            f"'{', '.join(sorted(reasons))}' and their original offsets in kafka_dlt-* headers; "
            f"after the fix a redrive republished them to orders"
        )
    else:
        fate = (
            f"none was parked: Payment retried {payment.retries:,} times in all, each failing "
            f"order holding up its partition, until the card processor came back"
        )
    if lost:
        fate += f"; {lost:,} orders were deleted by the topic's retention before Payment read them"
    return Answer(
        correct=correct,
        summary=(
            f"Between t = 10 and 20 every payment attempt failed: {fate}. Payment's lag peaked "
            f"at {peak_lag:,}; {_n(len(payment.dead_letters), 'dead letter')} left to redrive, "
            f"{paid:,} of {orders:,} orders were paid and {confirmed:,} confirmed."
        ),
        facts=(
            ("dead-lettered", f"{parked:,}"),
            ("attempts each", attempt_text),
            ("still retrying at t = 30", f"{retrying_at_30:,}"),
            ("deleted by retention unread", f"{lost:,}"),
            ("lag peak", f"{peak_lag:,}"),
            ("dead letters after redrive", str(len(payment.dead_letters))),
            ("orders paid / placed", f"{paid:,} / {orders:,}"),
        ),
        claim_holds=(
            correct == "parked" and len(payment.dead_letters) == 0 and confirmed == orders
        ),
        data={"parked": parked, "orders": orders, "paid": paid, "lost": lost},
    )


def _payment_retries(max_attempts: int) -> Variant:
    """Payment retries up to ``max_attempts`` times, backoff doubling up to 30 s."""

    def change(doc: dict[str, Any]) -> None:
        _consumer(doc, "payment")["retry"] = {
            "max_attempts": max_attempts,
            "backoff_ms": 100,
            "backoff": "exponential",
        }

    return change


def _orders_retention(seconds: float) -> Variant:
    """The orders topic keeps records ``seconds`` (retention.ms), whether read or not."""

    def change(doc: dict[str, Any]) -> None:
        for t in doc["topics"]:
            if t["name"] == "orders":
                t["retention"] = {"max_age_s": seconds}

    return change


# --- 11. scale ------------------------------------------------------------------------------


def _publishes_per_trip(sim: Simulation) -> float:
    """What the trip service publishes per trip: every record its producers appended."""
    trips = sim.producers["trip-service"].produced
    return sum(p.produced for p in sim.producers.values()) / max(1, trips)


def _without_last_consumer(doc: dict[str, Any]) -> None:
    """One consumer fewer (and the topic and producer that fed only it, if any)."""
    last = doc["consumers"].pop()
    read = {t for c in doc["consumers"] for t in c["topics"]}
    orphans = [t for t in last["topics"] if t not in read]
    doc["topics"] = [t for t in doc["topics"] if t["name"] not in orphans]
    doc["producers"] = [p for p in doc["producers"] if p["topic"] not in orphans]


def measure_scale(seed: int | None = None, variant: Variant | None = None) -> Answer:
    sim = Simulation(_scenario("lesson-scale", variant), seed)
    sim.run_until(30)

    def fewer(doc: dict[str, Any]) -> None:
        if variant is not None:
            variant(doc)
        _without_last_consumer(doc)

    smaller = Simulation(_scenario("lesson-scale", fewer), seed)
    smaller.run_until(30)
    per_trip, per_trip_before = _publishes_per_trip(sim), _publishes_per_trip(smaller)
    extra = per_trip - per_trip_before  # what the last consumer costs the trip service
    produced = sim.producers["trip-service"].produced
    groups = list(sim.groups.values())
    # how far each consumer is behind the log end: Kafka's client metric records-lag (its
    # committed lag also holds up to auto.commit.interval.ms of processed records)
    behind = max(g.records_lag() for g in groups)
    slowest = min(g.processed for g in groups)
    total = sum(g.processed for g in groups)
    correct = "per-consumer" if extra >= 0.5 else "none"
    cost = (
        "nothing: it published each trip once either way"
        if correct == "none"
        else f"{extra:.1f} more publishes per trip: it sends each consumer its own copy"
    )
    return Answer(
        correct=correct,
        summary=(
            f"{len(groups)} services read the trips. The trip service published "
            f"{per_trip:.1f} records per trip ({produced:,} trips); with one service fewer it "
            f"published {per_trip_before:.1f}, so the last one cost it {cost}. The broker "
            f"delivered {total:,} events in all, {total / max(1, produced):,.0f} per trip, and "
            f"every service kept up (the furthest behind was {_n(behind, 'record')} from the "
            f"end of its log)."
        ),
        facts=(
            ("consumer services", str(len(groups))),
            ("trips", f"{produced:,}"),
            ("records published per trip", f"{per_trip:.1f}"),
            ("with one service fewer", f"{per_trip_before:.1f}"),
            ("deliveries", f"{total:,}"),
            ("slowest service processed", f"{slowest:,}"),
            ("largest records-lag", str(behind)),
        ),
        claim_holds=correct == "none" and behind <= 10 and len(groups) >= 300,
        data={
            "groups": len(groups),
            "produced": produced,
            "deliveries": total,
            "per_trip": per_trip,
            "extra": extra,
        },
    )


def _point_to_point(doc: dict[str, Any]) -> None:
    """The trip service sends each consumer its own copy (a queue per consumer, filled by the
    producer): 40 services, each with its own topic the trip service publishes to."""
    trips = doc["producers"][0]
    kept = doc["consumers"][:40]
    doc["topics"] = []
    doc["producers"] = []
    for i, c in enumerate(kept):
        topic = f"trips-{c['name']}"
        doc["topics"].append({"name": topic, "partitions": 1})
        name = "trip-service" if i == 0 else f"trip-service-{i}"
        doc["producers"].append({**trips, "name": name, "topic": topic, "arrival": "constant"})
        c["topics"] = [topic]
    doc["consumers"] = kept


# --- lessons as data ---------------------------------------------------------------------

LESSON_DIR = PRESETS / "lessons"

# What a lesson's data file names: its measurement, the systems it may be compared with, and
# what it sets up. A data file may also declare its measurement and variants (see
# docs/lessons.md), without any of these.
MEASURES: dict[str, Callable[..., Answer]] = {
    "events_commands_queries": measure_events_commands_queries,
    "temporal_decoupling": measure_temporal_decoupling,
    "adding_consumers": measure_adding_consumers,
    "schema_contract": measure_schema_contract,
    "eventual_consistency": measure_eventual_consistency,
    "correlation_ids": measure_correlation_ids,
    "fat_thin": measure_fat_thin,
    "event_sourcing": measure_event_sourcing,
    "ecommerce_flow": measure_ecommerce_flow,
    "operations": measure_operations,
    "scale": measure_scale,
}
CHANGES: dict[str, Variant] = {
    "request-reply-all": _events_await("all"),
    "request-reply-first": _events_await("first"),
    "broker-down": _broker_down_during_outage(5000),
    "broker-down-waiting": _broker_down_during_outage(None),
    "queue": _fraud_through_a_queue,
    "compatibility-none": _compatibility("NONE"),
    "fast": _processing(payment=1, inventory=1),
    "quick": _processing(payment=20, inventory=10),
    "fast-payment": _processing(payment=2),
    "long-backoff": _payment_retry_queue,
    "slow-payment": _payment_slow_no_queueing,
    "tolerant-reader": _tolerant_reader,
    "payment-down": _payment_fails,
    "reserve-first": _reacts_to_placed("inventory"),
    "ship-first": _reacts_to_placed("shipping"),
    "request-reply": _events_await("all"),
    "retry-longer": _payment_retries(100),
    "short-retention": _orders_retention(3),
    "point-to-point": _point_to_point,
}


def _trace_every_journey(doc: dict[str, Any]) -> None:
    """The live run traces every order, as the measurement does (whatever the speed: by
    default a fast run traces a sample)."""
    doc["trace"] = "all"


SETUPS: dict[str, Variant] = {
    "beside_a_chain": _beside_a_chain,
    "trace_every_journey": _trace_every_journey,
}


class LessonError(ValueError):
    """A lesson data file that cannot be used: says which file and what is wrong."""


def _setter(changes: dict[str, Any]) -> Variant:
    """A variant declared as data: ``{"consumers.email.failure_rate": 1}`` sets a field of a
    named consumer (producer, topic) or a top-level one."""

    def change(doc: dict[str, Any]) -> None:
        for path, value in changes.items():
            parts = str(path).split(".")
            target: Any = doc
            if parts[0] in ("consumers", "producers", "topics") and len(parts) >= 3:
                target = next(x for x in doc[parts[0]] if x["name"] == parts[1])
                parts = parts[2:]
            for key in parts[:-1]:
                target = target.setdefault(key, {})
            target[parts[-1]] = copy.deepcopy(value)

    return change


def _declared(spec: dict[str, Any], preset: str, script: tuple[dict[str, Any], ...]) -> Any:
    """A measurement declared as data: run the preset to ``at`` and read ``read`` (a dotted
    path in the snapshot, as GET /api/simulations/<id> returns it); the answer is the first
    choice whose ``when`` (``> 0``, ``== 0``, ``< 5`` ...) holds."""
    read, at, answers = str(spec["read"]), float(spec["at"]), list(spec["answers"])
    ops = {
        ">": lambda a, b: a > b,
        ">=": lambda a, b: a >= b,
        "<": lambda a, b: a < b,
        "<=": lambda a, b: a <= b,
        "==": lambda a, b: a == b,
        "!=": lambda a, b: a != b,
    }

    def measure(seed: int | None = None, variant: Variant | None = None) -> Answer:
        sim = Simulation(_scenario(preset, variant, script), seed)
        sim.run_until(at)
        value: Any = sim.snapshot()
        for key in read.split("."):
            value = value[key]
        correct = ""
        for a in answers:
            op, limit = str(a["when"]).split()
            if ops[op](float(value), float(limit)):
                correct = str(a["choice"])
                break
        return Answer(
            correct=correct,
            summary=f"At t = {at:g} s, {read} was {value:,}.",
            facts=((read, f"{value:,}"),),
            claim_holds=correct == str(answers[0]["choice"]),
            data={"value": value},
        )

    return measure


CARD_FIELDS = ("at", "text", "point", "label")


def _cards(docs: Any) -> tuple[dict[str, Any], ...]:
    """A lesson's narration cards, in time order; a card names its time and its words."""
    cards = []
    for i, c in enumerate(docs):
        unknown = set(c) - set(CARD_FIELDS)
        if unknown:
            raise ValueError(f"cards[{i}]: unknown field(s) {', '.join(sorted(unknown))}")
        at = float(c["at"])
        if not 0 <= at < 7 * 24 * 3600:
            raise ValueError(f"cards[{i}].at: a simulated time in seconds, not {at}")
        cards.append(
            {
                "at": at,
                "text": str(c["text"]),
                "point": str(c.get("point", "")),
                "label": str(c.get("label", "")),
            }
        )
    return tuple(sorted(cards, key=lambda c: c["at"]))


def load_lesson(path: Path) -> Lesson:
    """A lesson from its data file (YAML)."""
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        script = tuple(doc.get("script") or ())
        measure_spec = doc["measure"]
        if isinstance(measure_spec, dict):
            measure = _declared(measure_spec, doc["preset"], script)
        else:
            measure = MEASURES[measure_spec]
            if "script" in inspect.signature(measure).parameters:
                # the data file's steps are what the measurement plays (and the live run)
                measure = partial(measure, script=script)
        variants: dict[str, tuple[str, Variant]] = {}
        for name, v in (doc.get("variants") or {}).items():
            change = _setter(v["set"]) if "set" in v else CHANGES[v.get("change", name)]
            variants[name] = (str(v["says"]), change)
        return Lesson(
            int(doc["number"]),
            str(doc["slug"]),
            str(doc["title"]),
            tuple(doc["idea"]),
            str(doc["preset"]),
            str(doc.get("live", "simulation")),
            tuple(doc["steps"]),
            str(doc["question"]),
            tuple((str(c["key"]), str(c["text"])) for c in doc["choices"]),
            measure,
            variants=variants,
            script=script,
            setup=SETUPS[doc["setup"]] if doc.get("setup") else None,
            cards=_cards(doc.get("cards") or ()),
            ask_at=float(doc.get("ask_at", 0.0)),
        )
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError, AttributeError) as e:
        raise LessonError(f"{path.name}: {e.__class__.__name__}: {e}") from None


def _lessons() -> tuple[Lesson, ...]:
    found = [load_lesson(path) for path in sorted(LESSON_DIR.glob("*.yaml"))]
    return tuple(sorted(found, key=lambda item: item.number))


LESSONS = _lessons()


def lesson(slug: str) -> Lesson | None:
    return next((item for item in LESSONS if item.slug == slug), None)
