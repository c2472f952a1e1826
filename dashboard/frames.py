"""Frames: what the browser is sent, built from the engine's state.

A frame is one coalesced message per tick: the whole state (counts stay exact) plus a bounded
sample of the events that happened since the previous frame (for animation and the event log).
Its size does not grow with the event rate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from simulator import EventSampler, Simulation
from simulator.charts import comparison_history, simulation_history
from simulator.compare import Comparison
from simulator.story import comparison_story, simulation_story

MAX_EVENTS_PER_FRAME = 150
DEAD_LETTERS_SHOWN = 20


@dataclass
class RunState:
    """What the live runner adds to the engine's state."""

    sim_id: str
    running: bool = False
    speed: float = 1.0
    effective_speed: float = 0.0
    behind: bool = False
    finished: bool = False
    # a long ``step`` runs in slices across ticks; until it gets there, the time it goes to
    stepping_to: float | None = None
    # why the engine stopped, when it failed (the run pauses; a reset starts it afresh)
    error: str | None = None
    # paused because nobody watched or controlled it for a while (``UNWATCHED_SECONDS``)
    paused_unwatched: bool = False
    # a backward ``seek`` replays the run's recorded commands from t = 0: how many are still
    # to apply on the way to ``stepping_to``
    replaying: int = 0


def run_note(run: RunState, now: float) -> str:
    """A sentence for the run header when the run is in a state its badges don't say."""
    if run.error:
        return run.error + " — reset to run it again"
    if run.stepping_to is not None and run.replaying:
        return (
            f"replaying the run to t = {run.stepping_to:.2f} s (now {now:.2f} s, "
            f"{run.replaying} recorded command{'s' if run.replaying != 1 else ''} to go)"
        )
    if run.stepping_to is not None:
        return f"stepping to t = {run.stepping_to:.2f} s (now {now:.2f} s)"
    if run.paused_unwatched and not run.running:
        return "paused: nobody watched or controlled this run for a while — Start to go on"
    return ""


def state(sim: Simulation, run: RunState, *, latency: bool = True) -> dict[str, Any]:
    """The state a frame carries (``GET /api/simulations/<id>`` returns the same shape)."""
    snap = sim.snapshot(latency=latency)
    snap.update(
        id=run.sim_id,
        running=run.running,
        speed=run.speed,
        effective_speed=round(run.effective_speed, 3),
        behind=run.behind,
        finished=run.finished,
        stepping_to=run.stepping_to,
        error=run.error,
        paused_unwatched=run.paused_unwatched,
        run_note=run_note(run, sim.now),
        duration=sim.duration,
        marks=list(sim.metrics_observer.marks)[-50:],
        commands=len(sim.command_log),
        timeline=sim.timeline.state(sim.now, sim.duration),
        story=simulation_story(sim),
    )
    if not snap["compact"]:
        for name, group in sim.groups.items():
            letters = list(group.dead_letters)[-DEAD_LETTERS_SHOWN:]
            snap["groups"][name]["dead_letters"] = [d.as_dict() for d in reversed(letters)]
    return snap


def history(sim: Simulation, comparison: Comparison | None = None) -> dict[str, Any]:
    """Every chart's bounded history, for a viewer who joins late (docs/api.md, "history")."""
    return comparison_history(comparison) if comparison is not None else simulation_history(sim)


def compare_state(cmp: Comparison, run: RunState, *, latency: bool = True) -> dict[str, Any]:
    """A comparison's state: both sides, plus what the runner adds."""
    st = cmp.state()
    st.update(
        id=run.sim_id,
        mode="compare",
        running=run.running,
        speed=run.speed,
        effective_speed=round(run.effective_speed, 3),
        behind=run.behind,
        finished=run.finished,
        stepping_to=run.stepping_to,
        error=run.error,
        paused_unwatched=run.paused_unwatched,
        run_note=run_note(run, cmp.now),
        duration=cmp.duration,
        marks=list(cmp.sim.metrics_observer.marks)[-50:],
        commands=len(cmp.switch_log),
        timeline=cmp.timeline.state(cmp.now, cmp.duration),
    )
    st["story"] = comparison_story(cmp, st)
    return st


def build_frame(
    sim: Simulation,
    run: RunState,
    sampler: EventSampler | None,
    seq: int,
    *,
    full: bool = False,
    latency: bool = True,
    comparison: Comparison | None = None,
) -> dict[str, Any]:
    events: list[dict[str, Any]] = []
    seen = 0
    if sampler is not None:
        sample, seen = sampler.drain()
        events = [o.as_dict() for o in sample[-MAX_EVENTS_PER_FRAME:]]
    frame: dict[str, Any] = {
        "type": "frame",
        "seq": seq,
        "t": round(sim.now, 6),
        "full": full,
        "state": (
            state(sim, run, latency=latency)
            if comparison is None
            else compare_state(comparison, run, latency=latency)
        ),
        "events": events,
        "events_seen": seen,
    }
    if comparison is not None:
        frame["sync_hops"] = comparison.sync.drain_hops() if not full else []
    if full:
        frame["history"] = history(sim, comparison)
    return frame
