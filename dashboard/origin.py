"""Same-origin check for WebSockets, port included.

Channels' ``AllowedHostsOriginValidator`` compares the Origin's host with ALLOWED_HOSTS and
ignores the port, so a page on ``http://127.0.0.1:9999`` could open a socket on
``127.0.0.1:8000``. Browsers send Origin on every WebSocket handshake and do not enforce
same-origin for WebSockets themselves, so this is the server's check. It follows Django's own
CSRF origin check: the Origin must be the request's own origin (scheme, host and port) or one
of CSRF_TRUSTED_ORIGINS, and the request's Host must be in ALLOWED_HOSTS.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host

DEFAULT_PORTS = {"http": 80, "https": 443}

Origin = tuple[str, str, int]


def parse_origin(value: str) -> Origin | None:
    """``(scheme, host, port)`` of an origin such as ``https://example.com``, or None."""
    try:
        parts = urlsplit(value.strip().lower())
        port = parts.port
    except ValueError:  # a port out of range, a malformed IPv6 address
        return None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        return None
    return parts.scheme, parts.hostname, port if port is not None else DEFAULT_PORTS[parts.scheme]


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return bytes(value).decode("latin1")
    return None


def request_scheme(scope: dict[str, Any]) -> str:
    """``https`` when the socket is secure, or a trusted proxy says it was (as Django does)."""
    proxy_header = getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
    if proxy_header:
        name, secure_value = proxy_header
        meta_name = name.removeprefix("HTTP_").lower().replace("_", "-").encode("latin1")
        forwarded = _header(scope, meta_name)
        if forwarded is not None:
            return "https" if forwarded.split(",")[0].strip() == secure_value else "http"
    return "https" if scope.get("scheme") in ("wss", "https") else "http"


def allowed_hosts() -> list[str]:
    hosts = list(settings.ALLOWED_HOSTS)
    if settings.DEBUG and not hosts:  # Django's own default in development
        hosts = [".localhost", "127.0.0.1", "[::1]"]
    return hosts


def origin_allowed(scope: dict[str, Any]) -> bool:
    """Whether a WebSocket handshake's Origin may open a socket on this server."""
    origin_header = _header(scope, b"origin")
    if origin_header is None:
        return False  # as Channels: no Origin, no socket, unless every host is allowed
    origin = parse_origin(origin_header)
    if origin is None:
        return False
    host = _header(scope, b"host")
    if host is None:
        # HTTP/1.1 requires Host, so servers always pass it on; only test clients omit it.
        # Fall back to Channels' check: the Origin's host is one of ALLOWED_HOSTS.
        origin_host = f"[{origin[1]}]" if ":" in origin[1] else origin[1]
        return validate_host(origin_host, allowed_hosts())
    domain, _ = split_domain_port(host)
    if not domain or not validate_host(domain, allowed_hosts()):
        return False
    if origin == parse_origin(f"{request_scheme(scope)}://{host}"):
        return True
    return any(trusted_origin(origin, o) for o in getattr(settings, "CSRF_TRUSTED_ORIGINS", []))


def trusted_origin(origin: Origin, pattern: str) -> bool:
    """An origin listed in CSRF_TRUSTED_ORIGINS; ``https://*.example.com`` takes subdomains,
    as it does for Django's CSRF check."""
    wildcard = "://*." in pattern
    trusted = parse_origin(pattern.replace("://*.", "://", 1) if wildcard else pattern)
    if trusted is None:
        return False
    if not wildcard:
        return origin == trusted
    scheme, host, port = trusted
    return origin[0] == scheme and origin[2] == port and origin[1].endswith("." + host)


class SameOriginValidator:
    """ASGI middleware: a WebSocket from another origin is denied before it reaches the app."""

    def __init__(self, application: Any) -> None:
        self.application = application

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope["type"] != "websocket":
            raise ValueError("SameOriginValidator is for WebSocket connections only")
        if origin_allowed(scope):
            return await self.application(scope, receive, send)
        return await WebsocketDenier()(scope, receive, send)
