"""Run-time commands to a simulation: validated, with errors that say what is wrong.

The same commands come from the dashboard's forms, the JSON API, the WebSocket and scenario
fault schedules. Commands that change how the engine runs (start, pause, speed, ...) belong to
the live runner; these are the ones that change the simulated world.
"""

from __future__ import annotations

import contextlib
import copy
import math
from dataclasses import dataclass
from typing import Any

ENGINE_COMMANDS = (
    "producer.rate",
    "consumer.down",
    "consumer.up",
    "consumer.crash",
    "consumer.slow",
    "consumer.delay",
    "consumer.failure_rate",
    "consumer.instances",
    "consumer.add",
    "consumer.remove",
    "consumer.reset",
    "dead_letters.redrive",
    "broker.down",
    "broker.up",
    "broker.delay",
)

# Commands about the run itself that the command log records (a rebuild replays them): ``extend``
# lengthens the run. Not world commands, so a scenario's script cannot use them.
RUN_COMMANDS = ("extend",)
LOGGED_COMMANDS = ENGINE_COMMANDS + RUN_COMMANDS

ERR_NOT_A_MAPPING = "a command must be a JSON object with a 'command' field"
ERR_NO_COMMAND = "missing 'command': say which command to run"
ERR_UNKNOWN_COMMAND = "unknown command {name!r}; known commands: {known}"
ERR_UNKNOWN_CONSUMER = "unknown consumer {name!r}"
ERR_UNKNOWN_PRODUCER = "unknown producer {name!r}"
ERR_MISSING_FIELD = "{command} needs '{field}'"
ERR_BAD_NUMBER = "{command}: '{field}' must be a number{bounds}, got {value!r}"
ERR_RESET_RUNNING = (
    "stop the service (consumer.down) before resetting its offsets: Kafka only resets the "
    "offsets of an inactive group"
)
ERR_RESET_BUSY = (
    "{name} is still finishing {n} event(s) it had started: reset its offsets once they are done"
)
ERR_RESET_QUEUE = "a queue has no offsets to reset: only stream consumers have them"
ERR_CONSUMER_EXISTS = "a consumer named {name!r} exists already"
ERR_EXTEND = (
    "extend needs a number of seconds to add to the run, more than 0 and at most {most} "
    "(a run may last {limit} in all), got {value!r}"
)
ERR_LOG_FULL = (
    "the command log is full ({n} commands): reset the simulation or start a new one to go on"
)

RATE_MAX = 50_000  # events per second a producer may send
INSTANCES_MAX = 64  # instances of one service
MAX_COMMAND_LOG = 10_000  # commands a simulation records (and a replay applies)


@dataclass(frozen=True)
class Bounds:
    """The range a command's value must be in: the same at run time and in a scenario's faults."""

    lo: float
    hi: float
    integer: bool = False
    strict_lo: bool = False


VALUE_BOUNDS: dict[str, Bounds] = {
    "producer.rate": Bounds(0, RATE_MAX),
    "consumer.slow": Bounds(0, 1000, strict_lo=True),
    "consumer.delay": Bounds(0, 600_000),
    "consumer.failure_rate": Bounds(0, 1),
    "consumer.instances": Bounds(0, INSTANCES_MAX, integer=True),
    "broker.delay": Bounds(0, 60_000),
}

# The fields each command reads: the command log keeps these and nothing else, so what a client
# adds to a command is never stored (or replayed).
COMMAND_FIELDS: dict[str, tuple[str, ...]] = {
    "producer.rate": ("producer", "value"),
    "consumer.down": ("consumer",),
    "consumer.up": ("consumer",),
    "consumer.crash": ("consumer", "instance"),
    "consumer.slow": ("consumer", "value"),
    "consumer.delay": ("consumer", "value"),
    "consumer.failure_rate": ("consumer", "value"),
    "consumer.instances": ("consumer", "value"),
    "consumer.add": ("consumer", "from"),
    "consumer.remove": ("consumer",),
    "consumer.reset": ("consumer", "to", "value"),
    "dead_letters.redrive": ("consumer", "event_id"),
    "broker.down": ("topic", "partition"),
    "broker.up": ("topic", "partition"),
    "broker.delay": ("value",),
    "extend": ("value",),
}
NUMBER_FIELDS = frozenset({"value", "instance", "partition", "event_id"})


class CommandError(ValueError):
    """A command that cannot be applied. The message says why; the simulation is untouched."""


def require(cmd: dict[str, Any], field: str) -> Any:
    if field not in cmd or cmd[field] is None:
        raise CommandError(ERR_MISSING_FIELD.format(command=cmd.get("command"), field=field))
    return cmd[field]


def number(
    cmd: dict[str, Any],
    field: str = "value",
    *,
    lo: float | None = None,
    hi: float | None = None,
    integer: bool = False,
    strict_lo: bool = False,
) -> float:
    value = require(cmd, field)
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = float(value)
    bounds = ""
    if lo is not None and hi is not None:
        bounds = f" between {lo:g} and {hi:g}"
    elif lo is not None:
        bounds = f" {'>' if strict_lo else '>='} {lo:g}"
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if ok:
        try:
            ok = math.isfinite(value)
        except OverflowError:  # an int too large for a float: out of any range
            ok = False
    if ok and lo is not None:
        ok = value > lo if strict_lo else value >= lo
    if ok and hi is not None:
        ok = value <= hi
    if ok and integer:
        ok = float(value).is_integer()
    if not ok:
        raise CommandError(
            ERR_BAD_NUMBER.format(
                command=cmd.get("command"), field=field, bounds=bounds, value=Shown(value)
            )
        )
    return int(value) if integer else float(value)


def bounded(cmd: dict[str, Any], bounds: Bounds, field: str = "value") -> float:
    """``cmd[field]`` checked against ``bounds`` (see :data:`VALUE_BOUNDS`)."""
    return number(
        cmd, field, lo=bounds.lo, hi=bounds.hi, integer=bounds.integer, strict_lo=bounds.strict_lo
    )


class Shown:
    """A value as an error message shows it (``{x!r}``): its repr, cut short, so a huge value
    sent in a command is not sent back in the refusal."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def __repr__(self) -> str:
        text = repr(self.value) if not isinstance(self.value, int) else _int_repr(self.value)
        return text if len(text) <= 60 else text[:57] + "..."


def _int_repr(value: int) -> str:
    try:
        return repr(value)
    except ValueError:  # more digits than Python converts to text
        return "a number too large"


def logged_command(
    cmd: dict[str, Any], fields: dict[str, tuple[str, ...]] = COMMAND_FIELDS
) -> dict[str, Any]:
    """What the command log keeps of an applied command: its name and the fields it reads.

    A number sent as text is kept as the number it was read as; a number field the command did
    not use and that is not a number is left out. The log then holds nothing a client added,
    and a replay applies the same command.
    """
    name = cmd["command"]
    out: dict[str, Any] = {"command": name}
    for field in fields.get(name, ()):
        if field not in cmd:
            continue
        value = cmd[field]
        if field in NUMBER_FIELDS and value is not None:
            if isinstance(value, str):
                try:
                    value = float(value)
                except ValueError:
                    continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                continue
            try:
                float(value)
            except OverflowError:
                continue
        elif isinstance(value, dict | list):
            value = copy.deepcopy(value)  # a consumer spec, already checked and bounded
        out[field] = value
    return out


def command_name(cmd: Any) -> str:
    if not isinstance(cmd, dict):
        raise CommandError(ERR_NOT_A_MAPPING)
    name = cmd.get("command")
    if not name:
        raise CommandError(ERR_NO_COMMAND)
    if not isinstance(name, str):
        raise CommandError(ERR_NOT_A_MAPPING)
    return name
