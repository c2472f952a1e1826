"""Queueing-theory oracles for the engine.

Two parts:

* unit tests of the exact formulas in ``tests/queueing.py`` against textbook
  values and an independent exact (rational) evaluation;
* statistical tests of the engine against those formulas: M/M/1, M/M/c in
  queue mode (Erlang C), Little's law, and stream mode with one instance per
  partition (E4/M/1 per partition, because unkeyed events go round-robin).

The engine's metrics count from t=0 (no warm-up removal), so runs are long
(~200k customers or more) at moderate utilisation (rho 0.5-0.7).  Seeds are
fixed, so each test is deterministic.  Over 12 seeds the engine's relative
errors had these standard deviations: M/M/1 time in system 0.54%, M/M/c time in
system 0.79%, E4/M/1 time in system 0.58%, Little's law against the
measured lambda*W 0.36%.  The asserted 3% is thus at least 3.8 sigma: the seeds are not
lucky picks.  Two statistics are noisier and are asserted at a stated 5%:
M/M/1 mean *wait* (half the customers wait zero at rho=0.5; sd 1.0%) and the
sampled number in system against the theoretical M/M/c L (sd 1.2%).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import pytest

import simulator
from tests.queueing import (
    ekm1_time_in_system,
    erlang_b,
    erlang_c,
    mm1_number_in_system,
    mm1_time_in_system,
    mm1_wait,
    mmc_number_in_system,
    mmc_time_in_system,
    mmc_wait,
)


# --------------------------------------------------------------------------
# The oracle formulas
# --------------------------------------------------------------------------
def _erlang_c_exact(c: int, a: Fraction) -> Fraction:
    """Textbook closed form, evaluated in exact rationals (independent of erlang_c)."""
    head = sum(a**k / math.factorial(k) for k in range(c))
    tail = a**c / math.factorial(c) * Fraction(c) / (c - a)
    return tail / (head + tail)


def test_mm1_with_lam_1_mu_2_has_time_in_system_1_and_wait_half() -> None:
    assert mm1_time_in_system(1.0, 2.0) == pytest.approx(1.0)
    assert mm1_wait(1.0, 2.0) == pytest.approx(0.5)
    assert mm1_number_in_system(1.0, 2.0) == pytest.approx(1.0)


def test_mm1_time_in_system_is_wait_plus_service() -> None:
    for lam, mu in [(1.0, 2.0), (50.0, 100.0), (9.0, 10.0), (0.1, 7.0)]:
        assert mm1_time_in_system(lam, mu) == pytest.approx(mm1_wait(lam, mu) + 1.0 / mu)


@pytest.mark.parametrize(
    ("c", "a", "expected"),
    [
        (1, 0.5, 0.5),  # M/M/1: P(wait) = rho
        (2, 1.0, 1 / 3),
        (3, 2.0, 4 / 9),
        (5, 4.0, 0.5541),  # Erlang C tables
        (10, 8.0, 0.4092),
        (11, 10.0, 0.6821),  # the classic call-centre example: 10 Erlangs on 11 agents
        (4, 3.2, 0.5964),
    ],
)
def test_erlang_c_matches_textbook_table(c: int, a: float, expected: float) -> None:
    assert erlang_c(c, a) == pytest.approx(expected, abs=5e-5)


@pytest.mark.parametrize(
    ("c", "a", "expected"),
    [(1, 1.0, 0.5), (2, 1.0, 0.2), (10, 8.0, 0.1217), (5, 2.0, 0.0367)],
)
def test_erlang_b_matches_textbook_table(c: int, a: float, expected: float) -> None:
    assert erlang_b(c, a) == pytest.approx(expected, abs=5e-5)


@pytest.mark.parametrize("c", [1, 2, 3, 4, 7, 16, 40])
@pytest.mark.parametrize("rho", [Fraction(1, 10), Fraction(1, 2), Fraction(4, 5), Fraction(19, 20)])
def test_erlang_c_equals_exact_closed_form(c: int, rho: Fraction) -> None:
    a = rho * c
    assert erlang_c(c, float(a)) == pytest.approx(float(_erlang_c_exact(c, a)), rel=1e-12)


def test_erlang_c_is_stable_for_thousands_of_servers() -> None:
    # The closed form would overflow (a**c / c!); the recursion must not.
    p = erlang_c(5000, 4900.0)
    assert 0.0 < p < 1.0 and math.isfinite(p)
    assert erlang_c(5000, 4999.0) < 1.0


def test_mmc_with_one_server_is_mm1() -> None:
    assert mmc_wait(30.0, 50.0, 1) == pytest.approx(mm1_wait(30.0, 50.0), rel=1e-12)
    assert mmc_time_in_system(30.0, 50.0, 1) == pytest.approx(
        mm1_time_in_system(30.0, 50.0), rel=1e-12
    )


def test_mmc_textbook_example_c4_lam80_mu25() -> None:
    # a = 3.2 Erlangs, rho = 0.8, C = 0.596432; Wq = C / (c*mu - lam) = C / 20
    assert mmc_wait(80.0, 25.0, 4) == pytest.approx(0.596432 / 20.0, rel=1e-5)
    assert mmc_time_in_system(80.0, 25.0, 4) == pytest.approx(0.596432 / 20.0 + 0.04, rel=1e-5)
    assert mmc_number_in_system(80.0, 25.0, 4) == pytest.approx(
        80.0 * (0.596432 / 20.0 + 0.04), rel=1e-5
    )


def test_more_servers_never_wait_longer() -> None:
    lam, mu = 70.0, 25.0
    waits = [mmc_wait(lam, mu, c) for c in range(3, 12)]
    assert all(x > y for x, y in itertools.pairwise(waits))


def test_ekm1_with_k1_is_mm1_and_e2m1_matches_closed_form() -> None:
    assert ekm1_time_in_system(50.0, 1, 100.0) == pytest.approx(
        mm1_time_in_system(50.0, 100.0), rel=1e-9
    )
    # E2/M/1, customer rate 1, mu = 2: sigma = (3 - sqrt 5) / 2, W = 1 / (mu (1 - sigma))
    sigma = (3.0 - math.sqrt(5.0)) / 2.0
    assert ekm1_time_in_system(2.0, 2, 2.0) == pytest.approx(1.0 / (2.0 * (1.0 - sigma)), rel=1e-9)


@pytest.mark.parametrize(
    "call",
    [
        lambda: mm1_time_in_system(2.0, 2.0),
        lambda: mm1_wait(3.0, 2.0),
        lambda: erlang_c(4, 4.0),
        lambda: erlang_c(0, 0.5),
        lambda: mmc_wait(100.0, 25.0, 4),
        lambda: mmc_time_in_system(10.0, 25.0, 0),
        lambda: ekm1_time_in_system(200.0, 4, 50.0),
    ],
)
def test_unstable_or_invalid_queues_are_rejected(call: Callable[[], float]) -> None:
    with pytest.raises(ValueError):
        call()


# --------------------------------------------------------------------------
# The engine against the oracles
# --------------------------------------------------------------------------


def _mm_scenario(
    *, seed: int, lam: float, mean_ms: float, delivery: str, instances: int, partitions: int = 1
) -> dict:
    """The queueing model in scenario form. The oracles know nothing of a client's own cost per
    message, so it is 0; a queue hands one message at a time to a free worker (prefetch 1:
    RabbitMQ's default, unlimited, would hand them all out at once); a stream commits after
    each record, so that what is processed and what is committed agree exactly."""
    mode: dict[str, Any] = (
        {"prefetch": 1}
        if delivery == "queue"
        else {"enable_auto_commit": False, "ack_mode": "record"}
    )
    return {
        "seed": seed,
        "topics": [{"name": "jobs", "partitions": partitions}],
        "producers": [
            {
                "name": "arrivals",
                "topic": "jobs",
                "event": "JobCreated",
                "rate": lam,
                "arrival": "poisson",
                # every 4th record to each partition, as the oracle assumes (Kafka's default,
                # the sticky partitioner, sends unkeyed records in batches instead)
                "partitioner": "round_robin",
            },
        ],
        "consumers": [
            {
                "name": "workers",
                "topics": ["jobs"],
                "delivery": delivery,
                "instances": instances,
                "processing": {"dist": "exponential", "mean_ms": mean_ms},
                "client_overhead_ms": 0,
                **mode,
            },
        ],
    }


def _run(doc: dict, horizon: float, seed: int) -> dict[str, Any]:
    sim = simulator.Simulation(simulator.parse_scenario(doc), seed=seed)
    sim.run_until(horizon)
    metrics: dict[str, Any] = sim.metrics()
    return metrics


# M/M/1: lam = 50/s, mean service 10 ms (mu = 100/s), rho = 0.5, ~200k customers.
MM1_LAM, MM1_MEAN_MS, MM1_SEED = 50.0, 10.0, 11
MM1_HORIZON = 4000.0


@pytest.fixture(scope="module")
def mm1_metrics() -> dict:
    doc = _mm_scenario(
        seed=MM1_SEED, lam=MM1_LAM, mean_ms=MM1_MEAN_MS, delivery="stream", instances=1
    )
    return _run(doc, MM1_HORIZON, MM1_SEED)


def test_mm1_mean_time_in_system_is_within_3pct_of_theory(mm1_metrics: dict) -> None:
    g = mm1_metrics["groups"]["workers"]
    expected_ms = mm1_time_in_system(MM1_LAM, 1000.0 / MM1_MEAN_MS) * 1000.0
    assert g["processed"] > 190_000
    assert g["end_to_end_ms"]["mean"] == pytest.approx(expected_ms, rel=0.03)


def test_mm1_mean_wait_is_within_5pct_of_theory(mm1_metrics: dict) -> None:
    # Wait is the noisy statistic: across 12 seeds its relative error had sd 1.0%
    # at this length, so 5% (not 3%) is the honest five-sigma bound.
    g = mm1_metrics["groups"]["workers"]
    expected_ms = mm1_wait(MM1_LAM, 1000.0 / MM1_MEAN_MS) * 1000.0
    assert g["wait_ms"]["mean"] == pytest.approx(expected_ms, rel=0.05)


def test_mm1_time_in_system_is_wait_plus_mean_service(mm1_metrics: dict) -> None:
    g = mm1_metrics["groups"]["workers"]
    service_ms = g["end_to_end_ms"]["mean"] - g["wait_ms"]["mean"]
    assert service_ms == pytest.approx(MM1_MEAN_MS, rel=0.03)


# M/M/c in queue mode: c = 4, lam = 70/s, mean service 40 ms (mu = 25/s), rho = 0.7.
MMC_C, MMC_LAM, MMC_MEAN_MS, MMC_SEED = 4, 70.0, 40.0, 5
MMC_HORIZON = 3000.0  # ~210k customers


def test_queue_mode_with_4_instances_matches_erlang_c_time_in_system() -> None:
    doc = _mm_scenario(
        seed=MMC_SEED, lam=MMC_LAM, mean_ms=MMC_MEAN_MS, delivery="queue", instances=MMC_C
    )
    m = _run(doc, MMC_HORIZON, MMC_SEED)
    g = m["groups"]["workers"]
    expected_ms = mmc_time_in_system(MMC_LAM, 1000.0 / MMC_MEAN_MS, MMC_C) * 1000.0
    assert g["processed"] > 200_000
    assert g["end_to_end_ms"]["mean"] == pytest.approx(expected_ms, rel=0.03)
    # and it is really one shared queue: 4 separate M/M/1 queues would give 100 ms
    assert g["end_to_end_ms"]["mean"] < 0.8 * 1000.0 / (1000.0 / MMC_MEAN_MS - MMC_LAM / MMC_C)


# Little's law on the same M/M/c queue, sampling L at evenly spaced times.
LITTLE_HORIZON, LITTLE_STEP, LITTLE_SEED = 2000.0, 0.25, 3


def _number_in_system(group: dict) -> int:
    # Queue mode: "lag" counts ready + unacked (it equals produced - processed), so it is
    # everything in the system; "in_flight" (being processed) is already part of it.
    assert group["lag"] >= group.get("in_flight", 0)
    n: int = group["lag"]
    return n


def test_littles_law_time_average_number_in_system_equals_lambda_w() -> None:
    doc = _mm_scenario(
        seed=LITTLE_SEED, lam=MMC_LAM, mean_ms=MMC_MEAN_MS, delivery="queue", instances=MMC_C
    )
    sim = simulator.Simulation(simulator.parse_scenario(doc), seed=LITTLE_SEED)
    steps = int(LITTLE_HORIZON / LITTLE_STEP)
    total = 0
    for i in range(1, steps + 1):
        sim.run_until(i * LITTLE_STEP)
        total += _number_in_system(sim.metrics()["groups"]["workers"])
    m = sim.metrics()
    assert m["time"] == pytest.approx(LITTLE_HORIZON)
    l_avg = total / steps
    lam_hat = m["topics"]["jobs"]["produced"] / LITTLE_HORIZON
    w_hat = m["groups"]["workers"]["end_to_end_ms"]["mean"] / 1000.0
    # Little's law is a sample-path identity: measured L = measured lambda * measured W.
    assert l_avg == pytest.approx(lam_hat * w_hat, rel=0.03)
    # ... and both agree with the M/M/c value (noisier: 5%).
    assert l_avg == pytest.approx(
        mmc_number_in_system(MMC_LAM, 1000.0 / MMC_MEAN_MS, MMC_C), rel=0.05
    )


# Stream mode: 4 partitions, 4 instances (one partition each), lam = 100/s in total.
# Unkeyed events go round-robin over the partitions, so each partition sees every 4th
# arrival of a Poisson stream: Erlang-4 gaps, not Poisson.  Each partition is then an
# E4/M/1 queue (GI/M/1 theory, exact): 28.7 ms, NOT an M/M/1 queue (40 ms).
STREAM_P, STREAM_LAM, STREAM_MEAN_MS, STREAM_SEED = 4, 100.0, 20.0, 9
STREAM_HORIZON = 2000.0  # 200k events


def test_stream_mode_one_instance_per_partition_is_e4m1_per_partition_and_keeps_up() -> None:
    doc = _mm_scenario(
        seed=STREAM_SEED,
        lam=STREAM_LAM,
        mean_ms=STREAM_MEAN_MS,
        delivery="stream",
        instances=STREAM_P,
        partitions=STREAM_P,
    )
    m = _run(doc, STREAM_HORIZON, STREAM_SEED)
    produced = m["topics"]["jobs"]["produced"]
    g = m["groups"]["workers"]
    # throughput equals the arrival rate (rho = 0.5 per instance: nothing piles up)
    assert produced / STREAM_HORIZON == pytest.approx(STREAM_LAM, rel=0.03)
    assert g["processed"] / STREAM_HORIZON == pytest.approx(STREAM_LAM, rel=0.03)
    assert g["processed"] + g["lag"] == produced
    assert g["lag"] < 50
    assert g["dead_lettered"] == 0 and g["redelivered"] == 0
    mu = 1000.0 / STREAM_MEAN_MS
    expected_ms = ekm1_time_in_system(STREAM_LAM, STREAM_P, mu) * 1000.0
    assert g["end_to_end_ms"]["mean"] == pytest.approx(expected_ms, rel=0.03)
    # and the partitions really are separate queues, not one shared M/M/4 queue
    shared_ms = mmc_time_in_system(STREAM_LAM, mu, STREAM_P) * 1000.0
    assert g["end_to_end_ms"]["mean"] > 1.1 * shared_ms
