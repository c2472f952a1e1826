"""Who is asking: a request's client address and whether its origin may use the API.

``X-Forwarded-For`` is believed only from a proxy listed in ``FANOUT_TRUSTED_PROXIES``
(comma-separated addresses): anyone can send the header, so from anywhere else it would let one
client pose as many and escape the per-address limit.
"""

from __future__ import annotations

import os

from django.conf import settings
from django.http import HttpRequest

from .origin import parse_origin, trusted_origin

TRUSTED_PROXIES = frozenset(
    a.strip() for a in os.environ.get("FANOUT_TRUSTED_PROXIES", "").split(",") if a.strip()
)


def client_ip(request: HttpRequest, trusted: frozenset[str] | None = None) -> str:
    """The client's address: the peer's, or behind trusted proxies the last hop they added."""
    proxies = TRUSTED_PROXIES if trusted is None else trusted
    addr = str(request.META.get("REMOTE_ADDR", ""))
    if addr not in proxies:
        return addr
    forwarded = str(request.META.get("HTTP_X_FORWARDED_FOR", ""))
    hops = [h.strip() for h in forwarded.split(",") if h.strip()]
    # walk back from the nearest hop: the first address no trusted proxy owns is the client
    for hop in reversed(hops):
        if hop not in proxies:
            return hop[:64]
    return addr


def origin_allowed(request: HttpRequest) -> bool:
    """True when the request carries no Origin (a script) or its Origin is this site's own (or
    one of ``CSRF_TRUSTED_ORIGINS``): the same rule as WebSockets' (``dashboard.origin``). A
    browser always sends Origin on a cross-site POST."""
    header = request.headers.get("Origin")
    if header is None:
        return True
    origin = parse_origin(header)
    if origin is None:
        return False
    if origin == parse_origin(f"{request.scheme}://{request.get_host()}"):
        return True
    return any(trusted_origin(origin, o) for o in getattr(settings, "CSRF_TRUSTED_ORIGINS", []))
