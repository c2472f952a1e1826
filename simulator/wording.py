"""Numbers and names as a person reads them: "1,234", "3.7/s", "420 ms", "1 min 40 s".

The timeline's labels, the replies to ``seek`` and ``extend`` and the narrative (``story``) are
read on screen, so they are written here once: units, plurals and thousands separators right.
"""

from __future__ import annotations

import math
from typing import Any

TIMES = "\u00d7"  # the multiplication sign of "Payment x5 slower"


def count_text(n: float) -> str:
    """A count: ``1,234``."""
    return f"{round(n):,}"


def plural(n: float, one: str, many: str | None = None) -> str:
    """``1 order``, ``2 orders``, ``1,234 orders``."""
    word = one if round(n) == 1 else (many or one + "s")
    return f"{count_text(n)} {word}"


def number_text(x: float) -> str:
    """A measured figure with as many digits as it deserves: 3.7, 16, 1,234, 0.25."""
    a = abs(x)
    if a >= 100:
        return f"{round(x):,}"
    if a >= 10:
        text = f"{x:.1f}"
        return text[:-2] if text.endswith(".0") else text
    if a >= 0.1:
        text = f"{x:.1f}"
        return text[:-2] if text.endswith(".0") else text
    if a == 0:
        return "0"
    return f"{x:.2g}"


def rate_text(per_s: float) -> str:
    """Events a second: ``3.7/s``, ``20/s``, ``1,250/s``."""
    return number_text(per_s) + "/s"


def ms_text(ms: float) -> str:
    """A duration in milliseconds: ``420 ms``, ``3.5 ms``, ``2,000 ms``; past 10 s in seconds."""
    if ms >= 10_000:
        return seconds_text(ms / 1000.0)
    return number_text(ms) + " ms"


def seconds_text(s: float) -> str:
    """A simulated time or span in seconds: ``19.5 s``, ``90 s``, ``3,600 s``."""
    text = f"{s:,.1f}" if s >= 100 else f"{s:,.2f}"
    text = text.rstrip("0").rstrip(".") if "." in text else text
    return text + " s"


def span_text(s: float) -> str:
    """A wait a person plans around: ``40 s``, ``1 min 40 s``, ``2 h 5 min``."""
    if not math.isfinite(s):
        return "never"
    s = max(0.0, s)
    if s < 60:
        return f"{max(1, round(s))} s"
    if s < 3600:
        m, sec = divmod(round(s), 60)
        return f"{m} min {sec} s" if sec else f"{m} min"
    h, rest = divmod(round(s), 3600)
    m = rest // 60
    return f"{h} h {m} min" if m else f"{h} h"


def percent_text(share: float) -> str:
    """A share (0..1) as a percentage: ``26%``, ``0.5%``, ``100%``."""
    pct = share * 100.0
    if 0 < pct < 1:
        return f"{pct:.1f}%"
    return f"{round(pct)}%"


def factor_text(x: float) -> str:
    """A factor: the multiplication sign, then the figure (x5, x1.5)."""
    return TIMES + number_text(x)


def service_name(label: str, name: str) -> str:
    """What a person calls a service: its label without " Service" ("Email"), else its name
    with a capital ("Payment", "Pricing-01")."""
    text = label.strip()
    if text.lower().endswith(" service"):
        text = text[: -len(" service")].strip()
    if text:
        return text
    return name[:1].upper() + name[1:] if name else name


def names_text(names: list[str]) -> str:
    """``Email``, ``Email and Inventory``, ``Email, Inventory and Fraud``."""
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + " and " + names[-1]


def is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)
