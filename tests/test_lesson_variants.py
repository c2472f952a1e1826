"""Every lesson's answer is a measurement: run on a different system (a variant), the same
measurement comes out otherwise. Each test states what the variant changes and the answer it
must give; every choice a lesson offers is reached by the preset or one of its variants."""

from __future__ import annotations

import pytest

from simulator.lessons import LESSONS, lesson

# (lesson, variant or None for the preset, the answer measured)
FLIPS = [
    ("events-commands-queries", None, "ack"),
    ("events-commands-queries", "request-reply-all", "each"),
    ("events-commands-queries", "request-reply-first", "first"),
    ("temporal-decoupling", None, "unchanged"),
    ("temporal-decoupling", "broker-down", "fails"),
    ("temporal-decoupling", "broker-down-waiting", "slower"),
    ("adding-consumers", None, "history"),
    ("adding-consumers", "queue", "new"),
    ("schema-contract", None, "rejected"),
    ("schema-contract", "compatibility-none", "accepted"),
    ("eventual-consistency", None, "over-1000"),
    ("eventual-consistency", "fast", "under-10"),
    ("eventual-consistency", "quick", "10-100"),
    ("eventual-consistency", "fast-payment", "100-1000"),
    ("correlation-ids", None, "broker"),
    ("correlation-ids", "long-backoff", "backoff"),
    ("correlation-ids", "slow-payment", "processing"),
    ("fat-thin-events", None, "dlq"),
    ("fat-thin-events", "tolerant-reader", "nothing"),
    ("event-sourcing", None, "paid"),
    ("event-sourcing", "payment-down", "placed"),
    ("event-sourcing", "reserve-first", "reserved"),
    ("event-sourcing", "ship-first", "shipped"),
    ("ecommerce-flow", None, "step1"),
    ("ecommerce-flow", "request-reply", "later"),
    ("operations", None, "parked"),
    ("operations", "retry-longer", "forever"),
    ("operations", "short-retention", "lost"),
    ("scale", None, "none"),
    ("scale", "point-to-point", "per-consumer"),
]

# the claim (stock is reserved some time after checkout returned) holds at any speed; the
# answer is how long that window is
# likewise the correlation id ties an order's hops together whatever they waited for
CLAIM_KEPT = {"eventual-consistency", "correlation-ids"}


@pytest.mark.parametrize(("slug", "variant", "expected"), FLIPS)
def test_the_measured_answer_follows_the_system(
    slug: str, variant: str | None, expected: str
) -> None:
    found = lesson(slug)
    assert found is not None
    change = None if variant is None else found.variants[variant][1]
    answer = found.measure(None, change)
    assert answer.correct == expected, answer.summary
    # the preset is the system the lesson's claim is about; a variant breaks the claim, except
    # where the claim is that something exists whatever its size (a consistency window)
    assert answer.claim_holds == (variant is None or slug in CLAIM_KEPT), answer.summary


def test_every_choice_offered_is_reached_by_the_preset_or_a_variant() -> None:
    reached: dict[str, set[str]] = {}
    for slug, _, expected in FLIPS:
        reached.setdefault(slug, set()).add(expected)
    for each in LESSONS:
        offered = {key for key, _ in each.choices}
        assert offered == reached.get(each.slug), each.slug


def test_every_variant_is_tested() -> None:
    tested = {(slug, v) for slug, v, _ in FLIPS if v is not None}
    declared = {(each.slug, name) for each in LESSONS for name in each.variants}
    assert declared == tested
