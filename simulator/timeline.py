"""The run's timeline: what the scenario schedules (faults, script steps) and what was done,
each at its simulated time with a short label in words ("Email down", "broker partition
orders/0 down"; a slowdown with the multiplication sign, as "Payment x5 slower" shows).

A timeline bar draws ``Timeline.state()``: the moments still to come, the ones already past,
the run's length and the time left. It is bounded (``PAST_SHOWN`` + ``UPCOMING_SHOWN``
moments) and cheap: the scenario's moments are labelled once, and a frame slices them.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from .wording import (
    factor_text,
    ms_text,
    percent_text,
    rate_text,
    seconds_text,
    service_name,
)

PAST_SHOWN = 100  # moments already past a frame carries, at most (the latest ones)
UPCOMING_SHOWN = 100  # moments still to come a frame carries, at most (the soonest ones)
# "just before/after" in a seek's reply: the nearest moment within this many seconds, or this
# share of the run's length when that is longer
NEAR_S, NEAR_SHARE = 3.0, 0.05

NameOf = Callable[[str], str]


def fault_command(fault: Any) -> dict[str, Any]:
    """The run-time command a scheduled fault applies (``FaultSpec`` -> command)."""
    cmd: dict[str, Any]
    if fault.broker is not None:
        cmd = {"command": f"broker.{fault.action}", "topic": fault.broker}
        if fault.partition is not None:
            cmd["partition"] = fault.partition
        if fault.value is not None:
            cmd["value"] = fault.value
    elif fault.producer is not None:
        cmd = {"command": "producer.rate", "producer": fault.producer, "value": fault.value}
    else:
        cmd = {"command": f"consumer.{fault.action}", "consumer": fault.consumer}
        if fault.value is not None:
            cmd["value"] = fault.value
        if fault.instance is not None:
            cmd["instance"] = fault.instance
    return cmd


def _value(cmd: dict[str, Any]) -> float | None:
    v = cmd.get("value")
    if isinstance(v, bool) or not isinstance(v, int | float):
        try:
            return float(v) if isinstance(v, str) else None
        except ValueError:
            return None
    return float(v)


def describe(cmd: dict[str, Any], name_of: NameOf) -> tuple[str, str]:
    """A command as a timeline label ("Email down") and as a clause ("Email goes down")."""
    name = str(cmd.get("command", ""))
    value = _value(cmd)
    target = cmd.get("consumer")
    if isinstance(target, dict):  # consumer.add / service.add carry the spec
        who = service_name(str(target.get("label", "")), str(target.get("name", "")))
    else:
        who = name_of(str(target)) if target is not None else ""
    if name == "consumer.down":
        return f"{who} down", f"{who} goes down"
    if name == "consumer.up":
        return f"{who} up", f"{who} comes back"
    if name == "consumer.crash":
        inst = cmd.get("instance")
        if isinstance(inst, int) and not isinstance(inst, bool):
            return f"{who} instance {inst} crashes", f"{who}'s instance {inst} crashes"
        return f"{who} crashes", f"{who} crashes"
    if name == "consumer.slow" and value is not None:
        if value == 1:
            return f"{who} normal speed", f"{who} is back to normal speed"
        if value < 1:
            return f"{who} {factor_text(1 / value)} faster", f"{who} gets faster"
        return f"{who} {factor_text(value)} slower", f"{who} becomes {factor_text(value)} slower"
    if name == "consumer.delay" and value is not None:
        if value == 0:
            return f"{who} delay off", f"{who}'s added delay ends"
        return f"{who} +{ms_text(value)}", f"{who} gets {ms_text(value)} slower"
    if name == "consumer.failure_rate" and value is not None:
        if value == 0:
            return f"{who} stops failing", f"{who} stops failing"
        share = percent_text(value)
        return f"{who} fails {share}", f"{who} starts failing {share} of its work"
    if name == "consumer.instances" and value is not None:
        n = round(value)
        word = "instance" if n == 1 else "instances"
        return f"{who} → {n} {word}", f"{who} scales to {n} {word}"
    if name in ("consumer.add", "service.add"):
        return f"{who} added", f"{who} is deployed"
    if name == "consumer.remove":
        return f"{who} removed", f"{who} is removed"
    if name == "consumer.reset":
        to = cmd.get("to", "")
        return f"{who} offsets reset ({to})", f"{who}'s offsets are reset to {to}"
    if name == "dead_letters.redrive":
        return f"{who}'s dead letters redriven", f"{who}'s dead letters are sent again"
    if name == "producer.rate" and value is not None:
        producer = cmd.get("producer")
        if not isinstance(producer, str):  # a comparison's one order stream
            if value == 0:
                return "Orders stop", "orders stop arriving"
            return f"Orders {rate_text(value)}", f"orders arrive at {rate_text(value)}"
        who = name_of(producer)
        if value == 0:
            return f"{who} stops", f"{who} stops producing"
        return f"{who} {rate_text(value)}", f"{who}'s rate becomes {rate_text(value)}"
    if name in ("broker.down", "broker.up"):
        topic = str(cmd.get("topic", ""))
        part = cmd.get("partition")
        where = (
            f"broker partition {topic}/{part}"
            if isinstance(part, int) and not isinstance(part, bool)
            else f"broker: every partition of {topic}"
        )
        if name == "broker.down":
            return f"{where} down", f"{where.replace('broker: ', '')} goes down"
        return f"{where} up", f"{where.replace('broker: ', '')} comes back"
    if name == "broker.delay" and value is not None:
        if value == 0:
            return "broker delay off", "the broker answers at its normal speed again"
        return f"broker +{ms_text(value)}", f"the broker's acks get {ms_text(value)} slower"
    if name == "extend" and value is not None:
        return (
            f"run extended by {seconds_text(value)}",
            f"the run is extended by {seconds_text(value)}",
        )
    return name, name


@dataclass(frozen=True, slots=True)
class Moment:
    t: float
    label: str
    clause: str
    kind: str  # fault, script (the scenario's) or command (sent during the run)
    shown: dict[str, Any]  # what a frame carries, built once


def _moment(t: float, cmd: dict[str, Any], kind: str, name_of: NameOf) -> Moment:
    label, clause = describe(cmd, name_of)
    return Moment(t, label, clause, kind, {"t": round(t, 3), "label": label, "kind": kind})


class Timeline:
    """The scenario's scheduled moments and the commands recorded during the run."""

    def __init__(
        self,
        faults: Iterable[Any],
        script: Iterable[Any],
        name_of: NameOf,
    ) -> None:
        self.name_of = name_of
        moments = [_moment(f.at, fault_command(f), "fault", name_of) for f in faults]
        moments += [_moment(s.at, dict(s.command), "script", name_of) for s in script]
        moments.sort(key=lambda m: m.t)  # stable: faults before script steps at the same time
        self.scheduled = moments
        self._times = [m.t for m in moments]
        self.commands: list[Moment] = []  # at most the command log's bound

    def record(self, t: float, cmd: dict[str, Any]) -> None:
        """A command that took effect at ``t`` (the command log's entries, in order)."""
        self.commands.append(_moment(t, cmd, "command", self.name_of))

    def state(self, now: float, duration: float) -> dict[str, Any]:
        """What a timeline bar draws. ``past``: the latest ``PAST_SHOWN`` moments at or before
        ``now`` (oldest first); ``upcoming``: the soonest ``UPCOMING_SHOWN`` scheduled moments
        after ``now`` and within the run's length; ``more_past``/``more_upcoming``: how many
        were left out."""
        i = bisect_right(self._times, now)
        end = bisect_right(self._times, duration, lo=i)
        past_sched = self.scheduled[max(0, i - PAST_SHOWN) : i]
        past_cmds = self.commands[-PAST_SHOWN:]
        if past_cmds:
            past = sorted(past_sched + past_cmds, key=lambda m: m.t)[-PAST_SHOWN:]
        else:
            past = past_sched
        upcoming = self.scheduled[i : min(end, i + UPCOMING_SHOWN)]
        return {
            "duration": duration,
            "t": round(now, 6),
            "left": round(max(0.0, duration - now), 6),
            "past": [m.shown for m in past],
            "upcoming": [m.shown for m in upcoming],
            "more_past": i + len(self.commands) - len(past),
            "more_upcoming": end - i - len(upcoming),
            "after_end": len(self._times) - end,
        }

    def near(
        self, t: float, duration: float, *, before: list[Moment] | None = None
    ) -> tuple[str, Moment] | None:
        """The moment a jump to ``t`` lands next to: ("before", the next scheduled moment) when
        one comes soon after ``t``, else ("after", the latest moment at or before ``t``) when
        one was just before; None otherwise. ``before``: the recorded commands a jump keeps."""
        near = max(NEAR_S, NEAR_SHARE * duration)
        i = bisect_right(self._times, t)
        if i < len(self.scheduled) and self.scheduled[i].t - t <= near:
            return "before", self.scheduled[i]
        candidates = [m for m in (before or []) if m.t <= t]
        if i > 0:
            candidates.append(self.scheduled[i - 1])
        if candidates:
            last = max(candidates, key=lambda m: m.t)
            if t - last.t <= near:
                return "after", last
        return None


def jump_sentence(t: float, near: tuple[str, Moment] | None) -> str:
    """``Jumping to t = 19.5 s, just before Email goes down``."""
    text = f"Jumping to t = {seconds_text(t)}"
    if near is not None:
        where, m = near
        if where == "before":
            text += f", just before {m.clause} (t = {seconds_text(m.t)})"
        else:
            text += f", just after {m.clause} (t = {seconds_text(m.t)})"
    return text


__all__ = [
    "PAST_SHOWN",
    "UPCOMING_SHOWN",
    "Moment",
    "Timeline",
    "describe",
    "fault_command",
    "jump_sentence",
]
