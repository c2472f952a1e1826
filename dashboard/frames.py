"""Frames: what the browser is sent, built from the engine's state.

A frame is one coalesced message per tick: the whole state (counts stay exact) plus a bounded
sample of the events that happened since the previous frame (for animation and the event log).
Its size does not grow with the event rate.

On the wire most frames travel as a *delta* against the frame before them (docs/api.md,
"Deltas"): :func:`frame_delta` computes it once per frame for every viewer, :func:`apply_delta`
is what a client does with it. Numbers are rounded to what the pages show (:func:`state`).
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from typing import Any

from simulator import EventSampler, Simulation
from simulator.charts import comparison_history, simulation_history
from simulator.compare import Comparison
from simulator.story import comparison_story, simulation_story

MAX_EVENTS_PER_FRAME = 150
DEAD_LETTERS_SHOWN = 20
# What frames carry is rounded to what the pages show (docs/api.md, "Rounding"): fewer digits
# to send, and a figure that did not change as shown does not go out again in a delta.
SUMMARY_KEYS = ("mean", "p50", "p95", "p99", "max")
ROUND_AS_SHOWN = True  # off only to measure what rounding saves (bench/stream.py --encodings)


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
    if ROUND_AS_SHOWN:
        round_as_shown(snap)
    return snap


def _summary(value: Any) -> Any:
    """A percentile summary ({count, mean, p50, ...}) with its times to 0.1 ms."""
    if not isinstance(value, dict):
        return value
    return {
        k: round(v, 1) if k in SUMMARY_KEYS and isinstance(v, float) else v
        for k, v in value.items()
    }


def round_as_shown(snap: dict[str, Any]) -> None:
    """Round a simulation state's measured figures (in place) as the pages and the charts'
    history show them: times in whole ms (a lag's age) or 0.1 ms (latency percentiles), rates
    to 2 decimals, byte rates whole. Counts are integers already; settings and the rates a
    user set are left as they are."""
    for g in snap.get("groups", {}).values():
        if isinstance(g.get("lag_ms"), float):
            g["lag_ms"] = round(g["lag_ms"])
        if isinstance(g.get("throughput"), float):
            g["throughput"] = round(g["throughput"], 2)
        if isinstance(g.get("end_to_end_p95_ms"), float):
            g["end_to_end_p95_ms"] = round(g["end_to_end_p95_ms"], 1)
        for key in ("wait_ms", "end_to_end_ms", "processing_ms"):
            if key in g:
                g[key] = _summary(g[key])
    for topic in snap.get("topics", {}).values():
        if isinstance(topic.get("throughput"), float):
            topic["throughput"] = round(topic["throughput"], 2)
        if isinstance(topic.get("bytes_per_s"), float):
            topic["bytes_per_s"] = round(topic["bytes_per_s"])
    for producer in snap.get("producers", {}).values():
        if "ack_ms" in producer:
            producer["ack_ms"] = _summary(producer["ack_ms"])
    others = (snap.get("top") or {}).get("others")
    if isinstance(others, dict):
        if isinstance(others.get("lag_ms"), float):
            others["lag_ms"] = round(others["lag_ms"])
        if isinstance(others.get("throughput"), float):
            others["throughput"] = round(others["throughput"], 2)


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
        if ROUND_AS_SHOWN:
            for e in events:
                e["t"] = round(e["t"], 3)  # the event log shows ms; animation needs no finer
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


# --- deltas (docs/api.md, "Deltas") ---------------------------------------------------------

# A frame's envelope: what a delta never carries. The frame a delta builds is of type "frame"
# with the delta's own seq and full false; a full frame's history and my_vote are that frame's.
ENVELOPE = frozenset({"type", "seq", "full", "history", "my_vote"})
# What each frame has of its own (a sample of what happened since the frame before): a delta
# carries these whole, never as a change.
PER_FRAME = ("events", "events_seen", "sync_hops")
# A string shorter than this is sent whole when it changes: a patch would not be shorter.
MIN_STRING_PATCH = 24


class _Inexpressible(Exception):
    """A list element's change needs a key removed: the list is sent whole instead."""


def encode(message: Any) -> str:
    """A frame or delta as sent: compact JSON, ASCII (a lone surrogate in a user's name must not
    make the text unencodable)."""
    return json.dumps(message, separators=(",", ":"))


def frame_body(frame: dict[str, Any]) -> dict[str, Any]:
    """What a delta applies to: the frame without its envelope."""
    return {k: v for k, v in frame.items() if k not in ENVELOPE}


def frame_delta(old: dict[str, Any], new: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(patch, remove)`` that turn the frame body ``old`` into ``new`` (see
    :func:`apply_delta`): only what changed, lists and strings by their changed parts when that
    is shorter, and the per-frame fields whole."""
    patch, remove = _diff_dict(
        {k: v for k, v in old.items() if k not in PER_FRAME},
        {k: v for k, v in new.items() if k not in PER_FRAME},
    )
    for key in PER_FRAME:
        if key in new:
            patch[key] = new[key]
        elif key in old:
            remove[key] = None
    return patch, remove


def delta_message(
    seq: int, base: int, patch: dict[str, Any], remove: dict[str, Any]
) -> dict[str, Any]:
    message: dict[str, Any] = {"type": "delta", "seq": seq, "base": base, "patch": patch}
    if remove:
        message["remove"] = remove
    return message


def apply_delta(
    body: dict[str, Any], patch: dict[str, Any], remove: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The frame body a delta makes of ``body`` (which is left as it is).

    ``remove`` first: a tree of objects whose ``null`` leaves are keys to delete. Then
    ``patch``, merged key by key: a value that is not an object replaces what was there (null
    included); an object merges into an object, patches a list (``{h, d, k, t, at}``: the list
    becomes ``h + old[d:d+k] + t``, then each ``at[i]`` patches element ``i``) or a string
    (``{p, s, m}``: ``old[:p] + m + old[len-s:]``), and is the new value anywhere else.
    """
    out = _removed(body, remove) if remove else dict(body)
    for key, value in patch.items():
        out[key] = _applied(out[key], value) if key in out else value
    return out


def _removed(value: dict[str, Any], tree: dict[str, Any]) -> dict[str, Any]:
    out = dict(value)
    for key, sub in tree.items():
        if sub is None:
            out.pop(key, None)
        elif isinstance(out.get(key), dict):
            out[key] = _removed(out[key], sub)
    return out


def _applied(base: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return patch
    if isinstance(base, dict):
        out = dict(base)
        for key, value in patch.items():
            out[key] = _applied(out[key], value) if key in out else value
        return out
    if isinstance(base, list):
        drop = patch.get("d", 0)
        keep = patch.get("k", len(base) - drop)
        items = [*patch.get("h", ()), *base[drop : drop + keep], *patch.get("t", ())]
        for index, element in patch.get("at", {}).items():
            items[int(index)] = _applied(items[int(index)], element)
        return items
    if isinstance(base, str):
        suffix = patch.get("s", 0)
        return base[: patch["p"]] + patch["m"] + (base[len(base) - suffix :] if suffix else "")
    return patch


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b


def _diff_dict(old: dict[str, Any], new: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    patch: dict[str, Any] = {}
    remove: dict[str, Any] = {}
    for key, value in new.items():
        if key not in old:
            patch[key] = value
            continue
        before = old[key]
        if _same(before, value):
            continue
        if isinstance(value, dict):
            if isinstance(before, dict):
                sub_patch, sub_remove = _diff_dict(before, value)
                if sub_patch:
                    patch[key] = sub_patch
                if sub_remove:
                    remove[key] = sub_remove
                continue
            if isinstance(before, (list, str)):
                remove[key] = None  # else the object would be read as the list's or string's patch
            patch[key] = value
            continue
        patch[key] = _change(before, value)
    for key in old:
        if key not in new:
            remove[key] = None
    return patch, remove


def _change(before: Any, value: Any) -> Any:
    """What turns ``before`` into ``value`` (not an object): the changed parts of a list or a
    string when they are shorter than the value, else the value."""
    if isinstance(value, list) and isinstance(before, list):
        found = _list_patch(before, value)
        if found is not None:
            return found
    elif isinstance(value, str) and isinstance(before, str):
        found = _string_patch(before, value)
        if found is not None:
            return found
    return value


def _element_patch(before: Any, value: Any) -> Any:
    if isinstance(value, dict):
        if isinstance(before, dict):
            sub_patch, sub_remove = _diff_dict(before, value)
            if sub_remove:
                raise _Inexpressible
            return sub_patch
        if isinstance(before, (list, str)):
            raise _Inexpressible
        return value
    return _change(before, value)


def _alignments(old: list[Any], new: list[Any]) -> list[tuple[int, int]]:
    """(items added at the head, items dropped from the head) worth trying: in place; the
    oldest dropped and the newest appended (a bounded log: marks, a timeline); the newest put
    first and the oldest dropped from the end (dead letters, newest first)."""
    found = [(0, 0)]
    if old and new:
        first_new, first_old = new[0], old[0]
        for drop in range(1, len(old)):
            if _same(old[drop], first_new):
                found.append((0, drop))
                break
        for head in range(1, len(new)):
            if _same(new[head], first_old):
                found.append((head, 0))
                break
    return found


def _list_patch(old: list[Any], new: list[Any]) -> dict[str, Any] | None:
    best: dict[str, Any] | None = None
    best_size = len(encode(new))
    for head, drop in _alignments(old, new):
        keep = max(0, min(len(old) - drop, len(new) - head))
        found: dict[str, Any] = {}
        if head:
            found["h"] = new[:head]
        if drop:
            found["d"] = drop
        if keep != len(old) - drop:
            found["k"] = keep
        tail = new[head + keep :]
        if tail:
            found["t"] = tail
        at: dict[str, Any] = {}
        try:
            for i in range(keep):
                before, value = old[drop + i], new[head + i]
                if not _same(before, value):
                    at[str(head + i)] = _element_patch(before, value)
        except _Inexpressible:
            continue
        if at:
            found["at"] = at
        size = len(encode(found))
        if size < best_size:
            best, best_size = found, size
    return best


def _bmp(text: str) -> bool:
    """Whether every character is one UTF-16 code unit (so a browser counts as Python does)."""
    return text.isascii() or max(text) < "\U00010000"


def _string_patch(old: str, new: str) -> dict[str, Any] | None:
    if len(new) < MIN_STRING_PATCH or not (_bmp(old) and _bmp(new)):
        return None
    n = min(len(old), len(new))
    prefix = 0
    while prefix < n and old[prefix] == new[prefix]:
        prefix += 1
    suffix = 0
    while suffix < n - prefix and old[-1 - suffix] == new[-1 - suffix]:
        suffix += 1
    found: dict[str, Any] = {"p": prefix, "m": new[prefix : len(new) - suffix]}
    if suffix:
        found["s"] = suffix
    return found if len(encode(found)) < len(encode(new)) else None


def deflated(text: str) -> bytes:
    """``text`` compressed as one permessage-deflate message (RFC 7692) that needs no context:
    raw deflate, flushed, without the final 4 bytes. Done once per frame; every viewer whose
    connection negotiated permessage-deflate is sent these bytes (dashboard/transport.py)."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    data = compressor.compress(text.encode()) + compressor.flush(zlib.Z_SYNC_FLUSH)
    return data[:-4]
