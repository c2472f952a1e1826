"""Random models: processing-time distributions and payload values.

Every sampler takes the simulation's own ``random.Random``; nothing here touches the
module-level ``random`` functions, so a seed reproduces a run.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from random import Random
from typing import Any

DISTRIBUTIONS = ("constant", "uniform", "exponential", "lognormal")

Sampler = Callable[[Random], float]


@dataclass(frozen=True, slots=True)
class LatencySpec:
    """A processing-time distribution, in milliseconds.

    ``uniform`` spreads ``mean_ms * (1 ± jitter)``; ``lognormal`` has the given mean and
    ``sigma`` (the standard deviation of the underlying normal).
    """

    dist: str
    mean_ms: float
    jitter: float = 0.5
    sigma: float = 0.5

    def sampler(self) -> Sampler:
        """A function ``rng -> seconds``."""
        mean = self.mean_ms / 1000.0
        if self.dist == "constant":
            return lambda rng: mean
        if self.dist == "uniform":
            low, high = mean * (1 - self.jitter), mean * (1 + self.jitter)
            return lambda rng: rng.uniform(low, high)
        if self.dist == "exponential":
            rate = 1.0 / mean
            return lambda rng: rng.expovariate(rate)
        if self.dist == "lognormal":
            sigma = self.sigma
            mu = math.log(mean) - sigma * sigma / 2.0
            return lambda rng: rng.lognormvariate(mu, sigma)
        raise ValueError(f"unknown distribution {self.dist!r}")

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"dist": self.dist, "mean_ms": self.mean_ms}
        if self.dist == "uniform":
            d["jitter"] = self.jitter
        if self.dist == "lognormal":
            d["sigma"] = self.sigma
        return d


ValueMaker = Callable[[Random, int], Any]


def value_maker(spec: Any) -> ValueMaker:
    """A payload field generator from its (already validated) spec.

    A plain value is constant; ``{uniform: [low, high]}``, ``{lognormal: {mean, sigma}}``,
    ``{int: [low, high]}``, ``{choice: [...]}`` and ``{sequence: "prefix-"}`` draw values.
    The second argument is the event's sequence number within its producer.
    """
    if isinstance(spec, dict):
        ((kind, arg),) = spec.items()
        if kind == "uniform":
            low, high = float(arg[0]), float(arg[1])
            return lambda rng, n: round(rng.uniform(low, high), 2)
        if kind == "int":
            lo, hi = int(arg[0]), int(arg[1])
            return lambda rng, n: rng.randint(lo, hi)
        if kind == "choice":
            options = list(arg)
            return lambda rng, n: rng.choice(options)
        if kind == "lognormal":
            mean, sigma = float(arg["mean"]), float(arg.get("sigma", 1.0))
            mu = math.log(mean) - sigma * sigma / 2.0
            return lambda rng, n: round(rng.lognormvariate(mu, sigma), 2)
        if kind == "sequence":
            prefix = str(arg)
            return lambda rng, n: f"{prefix}{n}"
        if kind == "text":
            filler = _text(int(arg))
            return lambda rng, n: filler
        raise ValueError(f"unknown value generator {kind!r}")
    return lambda rng, n: spec


def order_id_field(payload: Mapping[str, Any]) -> str | None:
    """The payload field that numbers a producer's orders: its first ``{sequence: ...}``.

    Its value ("ord-245") is the order's id and, as in a system that uses its business id as
    the correlation id, the correlation id of every record of the order's journey."""
    for name, spec in payload.items():
        if isinstance(spec, dict) and set(spec) == {"sequence"}:
            return name
    return None


VALUE_KINDS = ("uniform", "int", "choice", "lognormal", "sequence", "text")
TEXT_MAX = 1_000_000  # characters a {text: N} field may have


def _text(length: int) -> str:
    """``length`` characters of filler prose: what an embedded profile or address list weighs."""
    words = "the quick brown fox jumps over the lazy dog "
    return (words * (length // len(words) + 1))[:length]


def payload_bytes(payload: dict[str, Any]) -> int:
    """The size of a payload as its producer serialises it: compact JSON, UTF-8."""
    return len(json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
