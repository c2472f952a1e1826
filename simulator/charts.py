"""What the pages' charts plot, from the run's sampled history: columnar, bounded, rounded.

A viewer who joins late (or reloads) gets every chart already filled: a full frame carries
``simulation_history(sim)`` or ``comparison_history(cmp)``. Every series is a column aligned on
one time column ``t`` (the engine's sample ticks, every ``sample_interval_s`` of simulated
time), so a page plots them as they are. The history is bounded: the last ``HISTORY_ROWS``
samples, fewer (every ``stride``-th one) when a run has so many series that the columns would
hold more than ``HISTORY_VALUES`` numbers.

A system of hundreds of services (compact state) is charted as its ``TOP_SERVICES`` services
furthest behind plus one aggregate of all the others (``top_services``), never 300 series.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from itertools import islice, pairwise
from operator import itemgetter
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .compare import Comparison
    from .groups import ConsumerGroup
    from .simulation import Simulation

HISTORY_ROWS = 600  # samples a full frame's history carries, at most
HISTORY_VALUES = 30_000  # numbers in all its columns, at most (the frame budget)
HISTORY_MARKS = 200  # marks a full frame's history carries, at most (the latest)
TOP_SERVICES = 8  # services charted one by one in a compact (hundreds of services) run
# when ranking, a service is behind when its lag's floor is at least this many events and two
# seconds of what it processes: below that, the lag is the commits' saw-tooth, not a backlog
TOP_LAG_MIN = 10
TOP_LAG_SECONDS = 2.0


def throughput(group: ConsumerGroup, now: float) -> float:
    """Events a second the service processed over the last sample interval (since the start
    before the second sample)."""
    hist = group.stats.history
    if len(hist) >= 2:
        (t0, *_, p0, _d0), (t1, *_, p1, _d1) = hist[-2], hist[-1]
        return round((p1 - p0) / (t1 - t0), 3) if t1 > t0 else 0.0
    return round(group.processed / now, 3) if now else 0.0


def end_to_end_p95(group: ConsumerGroup) -> float | None:
    """The end-to-end p95 (ms) as of the last sample (``Simulation(chart_history=True)``),
    None before anything was measured or when the run does not sample it."""
    lat = group.stats.latency_history
    if not lat or lat[-1][2] is None:
        return None
    return round(lat[-1][2], 1)


WINDOW_S = 5.0  # seconds of samples a lag's floor (or a rate) is read over, at least


def window_samples(sim: Simulation, group: ConsumerGroup) -> int:
    """Samples in a window: ``WINDOW_S``, and for a stream at least one auto-commit interval
    and a sample more, so that each window holds a trough of the lag's saw-tooth (Kafka's lag
    counts up to one auto-commit interval of work already processed)."""
    interval = sim.scenario.sample_interval_s
    k = max(2, round(WINDOW_S / interval))
    if group.mode == "stream":
        k = max(k, math.ceil(group.spec.auto_commit_interval_ms / 1000.0 / interval) + 1)
    return k


def lag_floor(sim: Simulation, group: ConsumerGroup, lag: int | None = None) -> int:
    """The lag at its lowest over the last window of samples and now (``lag``, when the
    caller has it): what is really left to read, without the commits' saw-tooth."""
    hist = group.stats.history
    k = min(window_samples(sim, group), len(hist))
    now = group.lag() if lag is None else lag
    return min([now, *(hist[-i][1] for i in range(1, k + 1))])


def top_services(sim: Simulation, groups: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The ``TOP_SERVICES`` services furthest behind (by the lag's floor, when it is a backlog:
    ``TOP_LAG_MIN`` events or more and ``TOP_LAG_SECONDS`` of what the service processes; most
    first) then in the scenario's order, so the set holds still while nothing lags and does not
    flicker with the commits; and one aggregate of all the others. ``groups``: the services'
    states in a frame."""
    order = {name: i for i, name in enumerate(groups)}

    def behind(name: str, g: dict[str, Any]) -> int:
        least = max(TOP_LAG_MIN, TOP_LAG_SECONDS * g.get("throughput", 0.0))
        if g["lag"] < least:  # a floor is never above the lag now
            return 0
        floor = lag_floor(sim, sim.groups[name], g["lag"])
        return floor if floor >= least else 0

    floors = {name: behind(name, g) for name, g in groups.items()}

    def rank(name: str) -> tuple[int, int]:
        return (-floors[name], order[name])

    top = sorted(groups, key=rank)[:TOP_SERVICES]
    chosen = set(top)
    others = [g for name, g in groups.items() if name not in chosen]
    return {
        "by": "lag",
        "services": top,
        "others": {
            "services": len(others),
            "lag": sum(g["lag"] for g in others),
            # the mean age of the oldest unread event (the one furthest behind is in the top)
            "lag_ms": round(sum(g["lag_ms"] for g in others) / len(others), 3) if others else 0.0,
            "throughput": round(sum(g.get("throughput", 0.0) for g in others), 3),
            "processed": sum(g["processed"] for g in others),
            "dead_lettered": sum(g["dead_lettered"] for g in others),
        },
    }


# --- history -------------------------------------------------------------------------------


def _stride(n: int, columns: int) -> int:
    return max(1, math.ceil(n * columns / HISTORY_VALUES)) if columns and n else 1


def _r(x: float | None, digits: int) -> float | None:
    return None if x is None else round(x, digits)


def _pick(values: list[Any], stride: int) -> list[Any]:
    """Every ``stride``-th value, always the latest one."""
    return values if stride == 1 else values[::-1][::stride][::-1]


def _tail(hist: Sequence[tuple[Any, ...]], times: list[float]) -> list[tuple[Any, ...] | None]:
    """``hist``'s rows at ``times`` (a tail of the run's sample times), None where it has none
    (a service added later). Every service is sampled at every tick, so the rows line up from
    the end; a service removed and added again (a gap) is matched time by time."""
    n = len(times)
    if not hist or not n:
        return [None] * n
    rows = list(islice(reversed(hist), n))[::-1]
    if len(rows) <= n and list(map(itemgetter(0), rows)) == times[n - len(rows) :]:
        return [None] * (n - len(rows)) + rows
    at = {h[0]: h for h in hist}
    return [at.get(t) for t in times]


def _rate(rows: list[tuple[Any, ...] | None], index: int) -> list[float | None]:
    """A running count's rate per second at each row, from the row before it (a frame's
    ``throughput`` at that time): rows[0] only serves as the first one's predecessor."""
    out: list[float | None] = []
    for prev, row in pairwise(rows):
        if prev is None or row is None or row[0] <= prev[0]:
            out.append(None)
        else:
            out.append(round((row[index] - prev[index]) / (row[0] - prev[0]), 2))
    return out


def _marks(marks: Iterable[dict[str, Any]], since: float) -> list[dict[str, Any]]:
    return [m for m in marks if m["t"] >= since][-HISTORY_MARKS:]


def simulation_history(sim: Simulation, *, compact: bool | None = None) -> dict[str, Any]:
    """A simulation page's charts, filled: per service lag, lag in ms, throughput and the
    end-to-end p50/p95/p99; per topic its throughput; the marks. Compact (hundreds of
    services): the top services one by one and ``others`` as one aggregate."""
    if compact is None:
        compact = len(sim.groups) > sim.COMPACT_ABOVE
    names = list(sim.groups)
    top = None
    if compact:
        states = {
            name: {
                "lag": g.lag(),
                "lag_ms": round(g.lag_seconds() * 1000.0, 3),
                "processed": g.processed,
                "dead_lettered": g.dead_lettered,
                "throughput": throughput(g, sim.now),
            }
            for name, g in sim.groups.items()
        }
        top = top_services(sim, states)
        names = top["services"]
    latency = sim.chart_history
    # one more sample than shown: the first row's throughput is counted from it
    times = list(islice(reversed(sim.sample_times), HISTORY_ROWS + 1))[::-1]
    shown = times[1:] if len(times) > HISTORY_ROWS else times
    columns = len(names) * (6 if latency else 3) + len(sim.topics) + (3 if top else 0)
    stride = _stride(len(shown), columns)
    lead = len(times) - len(shown)  # 1 when a predecessor row was kept, else 0

    def rates(rows: list[tuple[Any, ...] | None], index: int) -> list[float | None]:
        # with no predecessor kept, the run's start is one (a frame's throughput before the
        # second sample is the count over the time since the start)
        start: list[tuple[Any, ...] | None] = [(0.0, 0, 0.0, 0, 0)]
        return _pick(_rate((start if not lead else []) + rows, index), stride)

    out: dict[str, Any] = {
        "interval": sim.scenario.sample_interval_s,
        "stride": stride,
        "t": _pick([round(t, 3) for t in shown], stride),
        "groups": {},
        "topics": {},
    }
    for name in names:
        s = sim.groups[name].stats
        rows = _tail(s.history, times)
        mine = rows[lead:]
        series: dict[str, Any] = {
            "lag": _pick([r[1] if r else None for r in mine], stride),
            "lag_ms": _pick([round(r[2]) if r else None for r in mine], stride),
            "throughput": rates(rows, 3),
        }
        if latency:
            lat = _tail(s.latency_history, shown)
            for i, key in ((1, "p50"), (2, "p95"), (3, "p99")):
                series[key] = _pick([_r(r[i], 1) if r else None for r in lat], stride)
        out["groups"][name] = series
    for name in sim.topics:
        rows = _tail(sim.metrics_observer.topic_history.get(name, ()), times)
        out["topics"][name] = {"throughput": rates(rows, 1)}
    if top is not None:
        # the others: every service's totals (sampled by the engine) minus the top ones'
        totals = _tail(sim.totals_history, times)
        tops = [_tail(sim.groups[name].stats.history, times) for name in names]
        agg: list[tuple[Any, ...] | None] = []
        for i, row in enumerate(totals):
            if row is None:
                agg.append(None)
                continue
            at: list[tuple[Any, ...]] = [r for t in tops if (r := t[i]) is not None]
            n = row[1] - len(at)
            agg.append(
                (
                    row[0],
                    row[2] - sum(r[1] for r in at),
                    (row[3] - sum(r[2] for r in at)) / n if n > 0 else 0.0,
                    row[4] - sum(r[3] for r in at),
                )
            )
        shown_agg = agg[lead:]
        out["others"] = {
            "services": top["others"]["services"],
            "lag": _pick([r[1] if r else None for r in shown_agg], stride),
            "lag_ms": _pick([round(r[2]) if r else None for r in shown_agg], stride),
            "throughput": rates(agg, 3),
        }
        out["top"] = top["services"]
    out["marks"] = _marks(sim.metrics_observer.marks, shown[0] if shown else 0.0)
    return out


def comparison_history(cmp: Comparison) -> dict[str, Any]:
    """A comparison page's charts, filled: each side's recent checkout p50/p95/p99 (ms) and
    error percentage, each consumer's lag (event side), and the marks."""
    sim = cmp.sim
    samples = list(islice(reversed(cmp.history.rows), HISTORY_ROWS))[::-1]
    times = [r[0] for r in samples]
    stride = _stride(len(times), 8 + len(sim.groups))

    def side(offset: int) -> dict[str, list[Any]]:
        return {
            "p50": _pick([_r(r[offset], 1) for r in samples], stride),
            "p95": _pick([_r(r[offset + 1], 1) for r in samples], stride),
            "p99": _pick([_r(r[offset + 2], 1) for r in samples], stride),
            "error_pct": _pick([round(r[offset + 3] * 100, 1) for r in samples], stride),
        }

    groups = {}
    for name, g in sim.groups.items():
        rows = _tail(g.stats.history, times)
        groups[name] = {"lag": _pick([r[1] if r else None for r in rows], stride)}
    return {
        "interval": sim.scenario.sample_interval_s,
        "stride": stride,
        "t": _pick([round(t, 3) for t in times], stride),
        "sync": side(1),
        "events": side(5),
        "groups": groups,
        "marks": _marks(sim.metrics_observer.marks, times[0] if times else 0.0),
    }
