"""Metrics as an observer: fixed-size histograms and bounded histories.

Counters that are part of the broker's own state (produced, processed, dead-lettered, ...) live
on the topics and groups; this module adds what needs keeping over time: latency distributions
and the lag history charts draw.
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_left
from collections import _count_elements, deque  # type: ignore[attr-defined]
from collections.abc import Callable
from itertools import accumulate, repeat
from operator import mul
from typing import TYPE_CHECKING, Any

from .observe import Observer, Sink

if TYPE_CHECKING:
    from .groups import ConsumerGroup

_STEPS = 32  # buckets per doubling: each 2^(1/32), 2.2% wider than the last: percentiles ~1%
_GROWTH: float = 2.0 ** (1.0 / _STEPS)
# Bucket i >= 1 holds [g^(i-1+E), g^(i+E)); bucket 0 holds everything below g^E, zero included.
# With whole powers of g as edges, a value's bucket is floor(32 log2(ms)) - E + 1: one C-level
# pipeline (log2, multiply, floor, Counter) per fold, no Python frame per value.
_EXP0 = -319  # g^-319 = 2^(-319/32) = 0.000993 ms: the floor
_FLOOR_MS: float = _GROWTH**_EXP0
_BUCKETS = 1400  # 0.001 ms .. ~1e10 ms


class Histogram:
    """A log-bucketed histogram of milliseconds: fixed memory, exact count/mean/min/max.

    ``add`` is the C-level ``append`` of an ``array('d')``: the hot loop pays no Python frame
    per value. Values are folded into the buckets (one C-level pipeline, see ``fold``) when the
    histogram is read, and at a sample tick once ``FOLD_AT`` values wait (see
    ``Simulation._sample``), so the buffer stays small and each fold is worth its fixed cost.
    """

    __slots__ = (
        "_buf",
        "_buf_seen",
        "_buf_total",
        "_count",
        "_max",
        "_min",
        "_total",
        "add",
        "counts",
    )

    def __init__(self) -> None:
        self.counts = [0] * _BUCKETS
        self._count = 0
        self._total = 0.0
        self._min = math.inf
        self._max = 0.0
        self._buf = array("d")
        self.add: Callable[[float], None] = self._buf.append
        # the sum of the buffer's first _buf_seen values (``sums`` adds only what came since)
        self._buf_seen = 0
        self._buf_total = 0.0

    def fold_at(self, at_least: int) -> None:
        """Fold the buffer if it holds at least ``at_least`` values."""
        if len(self._buf) >= at_least:
            self.fold()

    def add_many(self, value: float, n: int) -> None:
        """Add ``value`` ``n`` times: straight into its bucket (what folding ``n`` copies would
        do, without a pass over them: the send path adds its inline sends' ack time so, once a
        sample tick, a value a customer)."""
        if n <= 0:
            return
        self.counts[_index(value)] += n  # (bucket 0 for a negative value, as fold)
        self._count += n
        self._total += value * n  # (n copies summed exactly, as fsum would: one rounding)
        if value < self._min:
            self._min = value
        if value > self._max:
            self._max = value

    def fold(self) -> None:
        buf = self._buf
        if not buf:
            return
        self._count += len(buf)
        self._total += math.fsum(buf)
        low, high = min(buf), max(buf)
        if low < self._min:
            self._min = low
        if high > self._max:
            self._max = high
        if low < 0.0:  # a duration is never negative; a sink fed one anyway counts it as 0
            buf = array("d", [v if v > 0.0 else 0.0 for v in buf])
        counts = self.counts
        top = _BUCKETS - 1
        shift = 1 - _EXP0
        counts[0] += buf.count(0.0)  # zeros (no wait at all) are common, and have no log
        keys = map(math.floor, map(mul, map(math.log2, filter(None, buf)), repeat(float(_STEPS))))
        found: dict[int, int] = {}
        _count_elements(found, keys)  # what Counter(keys) does, without its Python-level setup
        if found and min(found) + shift > 0 and max(found) + shift < top:
            for k, n in found.items():  # the common case: every value inside the range
                counts[k + shift] += n
        else:
            for k, n in found.items():
                i = k + shift
                counts[i if 0 < i < top else (0 if i <= 0 else top)] += n
        del self._buf[:]
        self._buf_seen = 0
        self._buf_total = 0.0

    @property
    def count(self) -> int:
        self.fold()
        return self._count

    @property
    def min(self) -> float:
        self.fold()
        return self._min

    @property
    def max(self) -> float:
        self.fold()
        return self._max

    @property
    def mean(self) -> float:
        self.fold()
        return self._total / self._count if self._count else 0.0

    def percentiles(self, *qs: float) -> list[float]:
        """Values at the given quantiles (0..1), each within about 1% of the true value."""
        self.fold()
        if not self._count:
            return [0.0 for _ in qs]
        # the first bucket whose running count reaches each target: one C-level pass
        # (accumulate) over the buckets between the smallest and the largest value, and a
        # bisection per quantile, no Python frame per bucket
        lo, hi = _index(self._min), _index(self._max)
        cumulative = list(accumulate(self.counts[lo : hi + 1]))
        return [
            self._value(lo + bisect_left(cumulative, max(1, math.ceil(q * self._count))))
            for q in qs
        ]

    def sums(self) -> tuple[int, float]:
        """(count, total) of every value added, folded or not, without folding (the values
        buffered since the last call are summed, not the whole buffer again)."""
        buf = self._buf
        n = len(buf)
        if n > self._buf_seen:
            self._buf_total += sum(buf[self._buf_seen :])  # (fold sums exactly: fsum)
            self._buf_seen = n
        return self._count + n, self._total + self._buf_total

    def _value(self, i: int) -> float:
        # the geometric middle of bucket i, which spans [F*g^(i-1), F*g^i)
        v = _FLOOR_MS if i == 0 else _FLOOR_MS * _GROWTH ** (i - 0.5)
        return min(max(v, self._min), self._max)

    def summary(self) -> dict[str, float]:
        p50, p95, p99 = self.percentiles(0.5, 0.95, 0.99)
        return {
            "count": self.count,
            "mean": round(self.mean, 3),
            "p50": round(p50, 3),
            "p95": round(p95, 3),
            "p99": round(p99, 3),
            "max": round(self.max, 3),
        }


def _index(ms: float) -> int:
    """The bucket ``fold`` puts ``ms`` in."""
    if ms <= 0.0:
        return 0
    i = math.floor(math.log2(ms) * _STEPS) + 1 - _EXP0
    return i if 0 < i < _BUCKETS - 1 else (0 if i <= 0 else _BUCKETS - 1)


FOLD_AT = 2048  # values a histogram buffers before a sample tick folds them (16 KB)

# A chart's end-to-end percentiles (since the run began) are computed again at a sample tick
# when the values measured since the last time are at least 1/64 of those before (they can
# then have moved), and at least every CHART_STALE_TICKS ticks when anything was measured: so
# they are exact while a run is young or its rate grows, at most that many ticks old after,
# and their cost stays a small share of the work that measured the values.
CHART_FRESH_SHIFT = 6
CHART_STALE_TICKS = 8


class GroupStats:
    __slots__ = (
        "_e2e_seen",
        "_stale",
        "e2e",
        "history",
        "latency_history",
        "processing",
        "processing_history",
        "wait",
    )

    def fold(self, at_least: int = 1) -> None:
        """Fold the histograms' buffers, those holding at least ``at_least`` values."""
        for h in (self.wait, self.e2e, self.processing):
            if len(h._buf) >= at_least:
                h.fold()

    def __init__(self, history: int) -> None:
        self.wait = Histogram()
        self.e2e = Histogram()
        self.processing = Histogram()
        # (t, lag, lag_ms, processed, dead_lettered)
        self.history: deque[tuple[float, int, float, int, int]] = deque(maxlen=history)
        # sampled with ``Simulation(chart_history=True)``, at the same ticks as ``history``:
        # (t, end-to-end p50, p95, p99 in ms since the run began; None before the first), and
        # (t, successful processings so far, their total milliseconds)
        self.latency_history: deque[tuple[float, float | None, float | None, float | None]] = deque(
            maxlen=history
        )
        self.processing_history: deque[tuple[float, int, float]] = deque(maxlen=history)
        self._e2e_seen = 0  # end-to-end values measured when the percentiles were computed
        self._stale = 0  # ticks the repeated percentiles have not counted new values

    def sample_charts(self, now: float, percentiles: bool = True) -> None:
        """Sample what charts and the narrative need beyond ``history``. The percentiles are
        computed again only when something was measured since they were last, and it is
        enough to move them or they are ``CHART_STALE_TICKS`` ticks old (see
        ``CHART_FRESH_SHIFT``); and only when ``percentiles`` (a service's turn, in a run of
        hundreds): else the last ones are repeated."""
        e2e = self.e2e
        history = self.latency_history
        seen = self._e2e_seen
        fresh = e2e._count + len(e2e._buf) - seen
        if not history or history[-1][1] is None:
            if fresh:
                p50, p95, p99 = e2e.percentiles(0.5, 0.95, 0.99)
                history.append((now, p50, p95, p99))
                self._e2e_seen = seen + fresh
            else:
                history.append((now, None, None, None))
        elif not fresh:
            _, q50, q95, q99 = history[-1]
            history.append((now, q50, q95, q99))  # exact: nothing new was measured
            self._stale = 0
        elif percentiles and (
            fresh >= seen >> CHART_FRESH_SHIFT or self._stale >= CHART_STALE_TICKS - 1
        ):
            p50, p95, p99 = e2e.percentiles(0.5, 0.95, 0.99)
            history.append((now, p50, p95, p99))
            self._e2e_seen = seen + fresh
            self._stale = 0
        else:
            _, q50, q95, q99 = history[-1]
            history.append((now, q50, q95, q99))
            self._stale += 1
        n, total = self.processing.sums()
        self.processing_history.append((now, n, total))


class Metrics(Observer):
    """Latency histograms per group, and bounded histories sampled at a fixed interval."""

    def __init__(self, history: int = 3600) -> None:
        self.history_len = history
        self.groups: dict[str, GroupStats] = {}
        # per topic: (t, records appended, bytes appended) at each sample
        self.topic_history: dict[str, deque[tuple[float, int, int]]] = {}
        self.marks: deque[dict[str, Any]] = deque(maxlen=500)

    def stats(self, group: str) -> GroupStats:
        s = self.groups.get(group)
        if s is None:
            s = self.groups[group] = GroupStats(self.history_len)
        return s

    def measure(self, group: ConsumerGroup, name: str) -> Sink | None:
        stats = group.stats
        if name == "wait_ms":
            return stats.wait.add
        if name == "processing_ms":
            return stats.processing.add
        if name == "end_to_end_ms":
            return stats.e2e.add
        return None

    def status_changed(self, t: float, target: str, name: str, status: str) -> None:
        self.marks.append({"t": round(t, 3), "target": target, "name": name, "status": status})
