"""Run-time commands to a simulation: validated, with errors that say what is wrong.

The same commands come from the dashboard's forms, the JSON API, the WebSocket and scenario
fault schedules. Commands that change how the engine runs (start, pause, speed, ...) belong to
the live runner; these are the ones that change the simulated world.
"""

from __future__ import annotations

import contextlib
import math
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
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if ok and lo is not None:
        ok = value > lo if strict_lo else value >= lo
    if ok and hi is not None:
        ok = value <= hi
    if ok and integer:
        ok = float(value).is_integer()
    if not ok:
        raise CommandError(
            ERR_BAD_NUMBER.format(
                command=cmd.get("command"), field=field, bounds=bounds, value=value
            )
        )
    return int(value) if integer else float(value)


def command_name(cmd: Any) -> str:
    if not isinstance(cmd, dict):
        raise CommandError(ERR_NOT_A_MAPPING)
    name = cmd.get("command")
    if not name:
        raise CommandError(ERR_NO_COMMAND)
    if not isinstance(name, str):
        raise CommandError(ERR_NOT_A_MAPPING)
    return name
