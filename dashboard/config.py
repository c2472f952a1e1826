"""Numbers read from the environment, checked: a bad value names its variable and range.

Used by the settings and by the modules whose limits a deployment may tune (``FANOUT_*``), so a
typo in a deployment stops the server at start with a sentence, not a traceback later.
"""

from __future__ import annotations

import math
import os

from django.core.exceptions import ImproperlyConfigured


def env_number(name: str, default: float, lo: float, hi: float, *, integer: bool = False) -> float:
    """``name``'s value from the environment (``default`` when unset or empty), within
    ``lo``..``hi``; otherwise :class:`ImproperlyConfigured` naming the variable."""
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    try:
        number = int(value.strip()) if integer else float(value.strip())
    except ValueError:
        number = None
    if number is None or not math.isfinite(number) or not lo <= number <= hi:
        kind = "a whole number" if integer else "a number"
        raise ImproperlyConfigured(
            f"{name} must be {kind} from {_plain(lo)} to {_plain(hi)}, not {value[:40]!r}"
        )
    return number


def _plain(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def env_int(name: str, default: int, lo: int, hi: int) -> int:
    return int(env_number(name, default, lo, hi, integer=True))
