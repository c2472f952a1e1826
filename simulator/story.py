"""The narrative: a few sentences that say what the figures on screen mean, now.

Computed from the present state at every frame, so it never goes stale or contradicts the
numbers: when most recent checkouts fail that is said first, and a side is never called healthy
or fast while its recent errors are high; a consumer whose lag grows says how fast, what it can
process and what arrives; one that catches up says at what rate and when it will be up to date;
a synchronous service slower than the calls it gets says so with its numbers.

Two steps, both pure: ``*_figures`` reads the run into plain figures (:class:`Consumer`,
:class:`Side`, :class:`Call`), and ``tell_*`` turns figures into sentences, so each rule can be
tested with figures made up for it as well as with a run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .charts import window_samples
from .wording import (
    count_text,
    factor_text,
    ms_text,
    names_text,
    percent_text,
    plural,
    rate_text,
    service_name,
    span_text,
)

if TYPE_CHECKING:
    from .compare import Comparison
    from .groups import ConsumerGroup
    from .simulation import Simulation

STORY_MAX = 5  # sentences, at most
DOMINATE = 0.5  # more than this share of recent checkouts failing: errors dominate
ERRORS_BAD = 0.05  # a side with at least this share of recent failures is not fine
ERRORS_SEEN = 0.01  # below this, no error worth a word
# a lag that changes by less than this (events/s, or this share of the arrival rate) holds:
# over a few seconds of Poisson arrivals, counts alone wander by ~15% of the rate
GROWTH_MIN, GROWTH_SHARE = 2.0, 0.15

OK, WARN, BAD = "ok", "warn", "bad"
_ORDER = {BAD: 0, WARN: 1, OK: 2}


@dataclass(frozen=True)
class Consumer:
    """A consumer service's figures, as the narrative reads them."""

    name: str  # what a person calls it ("Email")
    status: str  # up, down, crashed, slow, rebalancing
    lag: int
    growth: float | None  # events/s the lag's floor moved over the window (None: too early)
    capacity: float | None  # events/s it can process now (None: nothing to measure it by)
    arrival: float  # events/s arriving on the topics it reads
    processing_ms: float | None = None  # its recent mean processing time
    working: int = 0  # instances that can work (a stream's: alive and owning partitions)
    dead_letters: int = 0
    dead_letter_growth: float | None = None  # dead letters a second, over the window
    # events/s it finished (processed or dead-lettered) over the window: the flow balance
    # (arrival - done) confirms what the lag's floor says
    done_rate: float | None = None
    failure_rate: float = 0.0
    # the lag's lowest over the window: what is really left to read (a stream's lag also
    # counts up to one auto-commit interval of work already processed)
    floor: int = 0

    @property
    def backlog(self) -> bool:
        """Whether the lag is a backlog, not the commits' saw-tooth: more than two seconds of
        arrivals still unread at the lag's lowest."""
        return self.floor >= max(10.0, 2.0 * self.arrival)


@dataclass(frozen=True)
class Side:
    """One side of a comparison: its recent checkouts."""

    error_rate: float  # share of the checkouts of the last 5 s that failed
    count: int  # checkouts that finished in the last 5 s, failed or returned
    p50_ms: float  # of those that returned


@dataclass(frozen=True)
class Call:
    """A service the synchronous checkout calls, in chain order."""

    name: str
    status: str
    instances: int
    call_ms: float  # one call's mean processing time now (slowdowns included)
    failure_rate: float
    queue: int  # calls waiting for an instance
    slow: float = 1.0
    delay_ms: float = 0.0

    @property
    def capacity(self) -> float:
        """Calls a second it can answer."""
        return self.instances * 1000.0 / self.call_ms if self.call_ms > 0 else float("inf")


@dataclass(frozen=True)
class CompareFigures:
    t: float
    orders: int
    rate: float  # orders a second now
    sync: Side
    events: Side
    chain: Sequence[Call]
    consumers: Sequence[Consumer]
    timeout_ms: float
    events_await: str = "ack"
    sync_changes: int = 0  # producer changes: checkout's code changed to call a new service
    events_changes: int = 0
    added: Sequence[str] = field(default_factory=tuple)


def _line(level: str, text: str) -> dict[str, str]:
    return {"level": level, "text": text}


def _ordered(lines: list[dict[str, str]]) -> list[dict[str, str]]:
    """Worst first (a stable sort keeps each level's own order), at most ``STORY_MAX``."""
    return sorted(lines, key=lambda x: _ORDER[x["level"]])[:STORY_MAX]


# --- reading a run ---------------------------------------------------------------------------


def _floor_growth(hist: Sequence[tuple[Any, ...]], k: int, index: int = 1) -> float | None:
    """How fast a sampled count's floor moves: the lowest value over the last ``k`` samples
    minus the lowest over the ``k`` before, over the time between the two windows' ends. The
    floor, not the last value: Kafka's lag saw-tooths with every auto-commit (up to
    ``auto_commit_interval_ms`` of work counted as lag), and its troughs are the backlog."""
    if len(hist) < 2 * k:
        return None
    recent = [hist[-i] for i in range(1, k + 1)]
    before = [hist[-i] for i in range(k + 1, 2 * k + 1)]
    span = recent[0][0] - before[0][0]
    if span <= 0:
        return None
    return float((min(r[index] for r in recent) - min(r[index] for r in before)) / span)


def _arrival(sim: Simulation, group: ConsumerGroup, k: int) -> float:
    """Records a second appended to the group's topics over the window (the producers' rates
    before there is one)."""
    total = 0.0
    for topic in group.topics:
        hist = sim.metrics_observer.topic_history.get(topic.name)
        if hist and len(hist) > k and hist[-1][0] > hist[-1 - k][0]:
            total += (hist[-1][1] - hist[-1 - k][1]) / (hist[-1][0] - hist[-1 - k][0])
        else:
            total += sum(p.rate for p in sim.producers.values() if p.topic is topic)
    return total


def consumer_figures(sim: Simulation, group: ConsumerGroup, *, sampled: bool = False) -> Consumer:
    """A consumer service's figures from the run's sampled history. ``sampled``: its lag as of
    the last sample too, not counted again now (hundreds of services' lags cost a frame)."""
    k = window_samples(sim, group)
    stats = group.stats
    hist = stats.history
    lag = hist[-1][1] if sampled and hist else group.lag()
    alive = [i for i in group.instances if i.alive and not i.leaving]
    # a stream's instances without a partition have nothing to read (more instances than
    # partitions); a service stopped or crashed processes nothing
    working = sum(1 for i in alive if i.cursors) if group.mode == "stream" else len(alive)
    if group.status != "up":
        working = 0
    processing_ms: float | None = None
    ph = stats.processing_history
    if len(ph) > k and ph[-1][1] > ph[-1 - k][1]:
        processing_ms = (ph[-1][2] - ph[-1 - k][2]) / (ph[-1][1] - ph[-1 - k][1])
    else:
        n, total = stats.processing.sums()
        if n:
            processing_ms = total / n
    capacity: float | None = None
    if working == 0:
        capacity = 0.0
    elif processing_ms:
        capacity = working * 1000.0 / processing_ms
        if 0 < group.failure_rate < 1:
            capacity *= 1.0 - group.failure_rate  # a failed attempt's time buys no progress
    arrival = _arrival(sim, group, k)
    return Consumer(
        name=service_name(group.spec.label, group.name),
        status=group.display_status,
        lag=lag,
        growth=_floor_growth(hist, k),
        capacity=capacity,
        arrival=arrival,
        processing_ms=processing_ms,
        working=working,
        dead_letters=group.dead_lettered,
        dead_letter_growth=_last_rate(hist, k, 4),
        done_rate=_done_rate(hist, k),
        failure_rate=group.failure_rate,
        floor=min((h[1] for h in _last(hist, k)), default=lag),
    )


def _last(hist: Sequence[tuple[Any, ...]], k: int) -> list[tuple[Any, ...]]:
    return [hist[-i] for i in range(1, min(k, len(hist)) + 1)]


def _done_rate(hist: Sequence[tuple[Any, ...]], k: int) -> float | None:
    if len(hist) <= k or hist[-1][0] <= hist[-1 - k][0]:
        return None
    (t0, _l0, _m0, p0, d0), (t1, _l1, _m1, p1, d1) = hist[-1 - k], hist[-1]
    return float((p1 + d1 - p0 - d0) / (t1 - t0))


def _last_rate(hist: Sequence[tuple[Any, ...]], k: int, index: int) -> float | None:
    if len(hist) <= k or hist[-1][0] <= hist[-1 - k][0]:
        return None
    return float((hist[-1][index] - hist[-1 - k][index]) / (hist[-1][0] - hist[-1 - k][0]))


def compare_figures(cmp: Comparison, state: dict[str, Any]) -> CompareFigures:
    """A comparison's figures: ``state`` is ``cmp.state()`` of this very moment."""
    sync, events = state["sync"], state["events"]
    chain = []
    for name in cmp.sync.chain:
        s = cmp.sync.services[name]
        chain.append(
            Call(
                name=service_name(s.label, name),
                status=s.status,
                instances=s.instances,
                call_ms=s.mean_ms * s.slow + s.delay * 1000.0,
                failure_rate=s.failure_rate,
                queue=len(s.queue),
                slow=s.slow,
                delay_ms=s.delay * 1000.0,
            )
        )
    changes = sync["producer_changes"]
    return CompareFigures(
        t=cmp.now,
        orders=state["orders"],
        rate=cmp.rate,
        sync=Side(
            sync["recent_error_rate"],
            sync["recent_finished"],
            sync["recent_checkout_ms"]["p50"],
        ),
        events=Side(
            events["recent_error_rate"],
            events["recent_finished"],
            events["recent_checkout_ms"]["p50"],
        ),
        chain=chain,
        consumers=[consumer_figures(cmp.sim, g) for g in cmp.sim.groups.values()],
        timeout_ms=cmp.sync_spec.timeout_ms,
        events_await=cmp.sync_spec.events_await,
        sync_changes=changes,
        events_changes=events["producer_changes"],
        added=[c.name for c in chain[len(chain) - changes :]] if changes else (),
    )


# --- telling ---------------------------------------------------------------------------------


def _is_down(status: str) -> bool:
    return status in ("down", "crashed")


def _saturated(call: Call, rate: float) -> bool:
    return call.status == "up" and call.capacity < rate * 0.98


def _sync_causes(f: CompareFigures) -> list[str]:
    """Why synchronous checkouts fail, in words."""
    causes = []
    for c in f.chain:
        if _is_down(c.status):
            causes.append(f"{c.name} is {c.status} and checkout calls it for every order")
        elif c.failure_rate > 0:
            causes.append(f"{c.name} fails {percent_text(c.failure_rate)} of its calls")
        elif _saturated(c, f.rate):
            causes.append(f"calls to {c.name} wait and time out after {ms_text(f.timeout_ms)}")
    return causes


def _events_causes(f: CompareFigures) -> list[str]:
    if f.events_await == "ack":
        return ["the broker did not acknowledge OrderPlaced in time"]
    silent = [c.name for c in f.consumers if _is_down(c.status)]
    who = "the first consumer" if f.events_await == "first" else "every consumer"
    text = f"checkout waits for a reply from {who}"
    if silent:
        text += f", and {names_text(silent)} cannot reply"
    return [text]


def _slowdown(c: Call) -> str:
    parts = []
    if c.slow > 1:
        parts.append(f"{factor_text(c.slow)} slower")
    if c.delay_ms > 0:
        parts.append(f"+{ms_text(c.delay_ms)} a call")
    return ", ".join(parts)


def _side_line(label: str, side: Side, causes: list[str], fine: str) -> dict[str, str] | None:
    """A side's headline: its errors when it has any worth a word, else how fast it is."""
    if side.count == 0:
        return None
    why = f": {'; '.join(causes)}" if causes else ""
    if side.error_rate > DOMINATE:
        return _line(
            BAD,
            f"{label}: {percent_text(side.error_rate)} of the checkouts of the last 5 s failed"
            f"{why}.",
        )
    if side.error_rate >= ERRORS_BAD:
        return _line(
            BAD, f"{label}: {percent_text(side.error_rate)} of recent checkouts fail{why}."
        )
    if side.error_rate >= ERRORS_SEEN:
        return _line(
            WARN,
            f"{label}: {percent_text(side.error_rate)} of recent checkouts fail{why}; the rest "
            f"take {ms_text(side.p50_ms)} (p50).",
        )
    return _line(OK, f"{label}: checkout takes {ms_text(side.p50_ms)} (p50): {fine}.")


def consumer_line(c: Consumer, *, what: str = "events") -> dict[str, str] | None:
    """A consumer's lag, when it says something: growing (with the measured rate, what it can
    do and what arrives), catching up (at what rate, up to date when), or down."""
    if c.growth is None:
        if _is_down(c.status) and c.lag:
            return _line(WARN, f"{c.name} is {c.status}: {plural(c.lag, 'event')} wait for it.")
        return None
    steady = max(GROWTH_MIN, GROWTH_SHARE * c.arrival)
    # the flow balance must agree with the lag: a lag that saw-tooths with the commits, or
    # one still waiting for a commit while the service works through its backlog, says
    # nothing a sentence should repeat
    flow = None if c.done_rate is None else c.arrival - c.done_rate
    if _is_down(c.status):
        grows = f", growing {rate_text(c.growth)}" if c.growth >= steady else ""
        return _line(
            WARN,
            f"{c.name} is {c.status}: {what} wait in the broker for it (lag "
            f"{count_text(c.lag)}{grows}); nothing is lost, it reads them when it is back.",
        )
    if c.growth >= steady and c.lag and (flow is None or steady <= flow >= c.growth / 2):
        text = f"{c.name}'s lag grows {rate_text(c.growth)}"
        if c.failure_rate >= 1:
            text += (
                f": every attempt fails, so each event waits out its retries (then goes to "
                f"the dead-letter topic); {what} arrive at {rate_text(c.arrival)}"
            )
        elif c.capacity == 0:
            text += (
                f": none of its instances reads a partition yet (it is joining its group), "
                f"{what} arrive at {rate_text(c.arrival)}"
            )
        elif c.capacity is not None:
            text += f": it can do {rate_text(c.capacity)}, {what} arrive at {rate_text(c.arrival)}"
        return _line(WARN, text + ".")
    if c.growth <= -steady and c.backlog and (flow is None or -steady >= flow <= c.growth / 2):
        falls = -c.growth
        return _line(
            OK,
            f"{c.name} is catching up: its lag of {count_text(c.lag)} falls "
            f"{rate_text(falls)}, up to date in about {span_text(c.floor / falls)}.",
        )
    if c.backlog:
        return _line(
            WARN,
            f"{c.name} is behind: {plural(c.lag, what[:-1] if what.endswith('s') else what)}"
            f" to read (lag).",
        )
    return None


def tell_comparison(f: CompareFigures) -> list[dict[str, str]]:
    """The comparison's narrative, worst first, at most ``STORY_MAX`` sentences."""
    if f.orders == 0 or (f.sync.count == 0 and f.events.count == 0):
        return [
            _line(
                OK,
                "Same orders, same services, same luck on both sides: start the run, then flip "
                "a switch.",
            )
        ]
    lines: list[dict[str, str]] = []
    names = names_text([c.name for c in f.chain])
    slow = [c for c in f.chain if c.status == "up" and (c.slow > 1 or c.delay_ms > 0)]
    slowed = names_text([f"{c.name} ({_slowdown(c)})" for c in slow])
    sync_fine = f"it waits for {slowed or names} on every order"
    events_fine = (
        "it waits for the broker's acknowledgement only"
        if f.events_await == "ack"
        else "it waits for the consumers' replies"
    )
    sync = _side_line("Synchronous", f.sync, _sync_causes(f), sync_fine)
    events = _side_line("Event-driven", f.events, _events_causes(f), events_fine)
    saturated = [c for c in f.chain if _saturated(c, f.rate)]
    consumer_lines = [x for c in f.consumers if (x := consumer_line(c, what="orders"))]
    troubled = (
        any(_is_down(c.status) for c in f.chain)
        or saturated
        or slow
        or any(c.failure_rate > 0 for c in f.chain)
        or any(x["level"] != OK for x in consumer_lines)
    )
    healthy = (
        sync is not None
        and events is not None
        and sync["level"] == OK
        and events["level"] == OK
        and not troubled
    )
    if healthy:
        lines.append(
            _line(
                OK,
                f"All services healthy: synchronous checkout takes {ms_text(f.sync.p50_ms)} "
                f"(p50), waiting for {names}; event-driven {ms_text(f.events.p50_ms)}, waiting "
                f"for the broker only.",
            )
        )
    else:
        for side in (sync, events):
            if side is not None and side["level"] == BAD and "last 5 s" in side["text"]:
                lines.append(side)  # errors dominate: said first
        for side in (sync, events):
            if side is not None and side not in lines:
                if side["level"] == OK and side is sync and (saturated or slow):
                    side = _line(WARN, side["text"])  # fast it is not: it waits for a slow one
                lines.append(side)
    for c in saturated:
        lines.append(
            _line(
                BAD,
                f"Synchronous: {c.name} can answer {rate_text(c.capacity)} "
                f"({plural(c.instances, 'instance')}, {ms_text(c.call_ms)} a call) but checkout "
                f"calls it up to {f.rate:g} times a second: calls queue "
                f"({count_text(c.queue)} waiting) and time out after {ms_text(f.timeout_ms)}.",
            )
        )
    lines.extend(consumer_lines)
    if f.sync_changes:
        added = names_text(list(f.added)) or "A new service"
        many = len(f.added) > 1
        was, it = ("were", "them") if many else ("was", "it")
        lines.append(
            _line(
                OK,
                f"{added} {was} added: synchronous checkout's code had to change to call {it} "
                f"({plural(f.sync_changes, 'change')}) and every checkout waits for {it}; event "
                f"flow subscribed {it} to OrderPlaced ({plural(f.events_changes, 'change')} to "
                f"checkout).",
            )
        )
    return _ordered(lines)


def comparison_story(cmp: Comparison, state: dict[str, Any]) -> list[dict[str, str]]:
    """``state.story`` of a comparison: ``state`` is ``cmp.state()`` of this moment."""
    return tell_comparison(compare_figures(cmp, state))


# --- the simulation page ---------------------------------------------------------------------


def tell_simulation(consumers: Sequence[Consumer]) -> list[dict[str, str]]:
    """A simulation's narrative: each consumer's lag when it grows, falls or waits for a
    service that is down, and dead letters piling up; worst first, at most ``STORY_MAX``."""
    lines = []
    for c in consumers:
        line = consumer_line(c)
        if line is not None:
            lines.append(line)
        if c.dead_letter_growth is not None and c.dead_letter_growth >= 0.1:
            lines.append(
                _line(
                    BAD,
                    f"{c.name} dead-letters {rate_text(c.dead_letter_growth)} "
                    f"({count_text(c.dead_letters)} so far): those events wait in its "
                    f"dead-letter topic until someone redrives them.",
                )
            )
    if not lines and consumers and all(c.growth is not None for c in consumers):
        lines.append(_line(OK, "Every service keeps up with what arrives."))
    return _ordered(lines)


def simulation_story(sim: Simulation) -> list[dict[str, str]]:
    """``state.story`` of a simulation. Its figures move at the sample ticks, so it is told
    again only after one, or when a command, fault or status change happened (a frame in
    between reuses it: a run of hundreds of services does not read them all 20 times a
    second)."""
    marks = sim.metrics_observer.marks
    key = (
        sim.sample_times[-1] if sim.sample_times else None,
        len(sim.command_log),
        len(marks),
        (marks[-1]["t"], marks[-1]["status"]) if marks else None,
        len(sim.groups),
    )
    cached = sim.story_cache
    if cached is not None and cached[0] == key:
        return cached[1]
    sampled = len(sim.groups) > sim.COMPACT_ABOVE
    lines = tell_simulation(
        [consumer_figures(sim, g, sampled=sampled) for g in sim.groups.values()]
    )
    sim.story_cache = (key, lines)
    return lines
