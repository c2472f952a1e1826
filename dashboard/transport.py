"""Bounds on what daphne may buffer for one WebSocket, out and in.

Daphne hands every ``websocket.send`` to Twisted, whose transport buffers whatever the peer has
not read yet, without limit. Flow control (``consumers.FRAME_WINDOW``) keeps a well-behaved
viewer's backlog short, but a client can acknowledge frames it never reads; then only the
transport knows. So before each send we look at how much the transport still holds for the peer
and, past ``MAX_SEND_BUFFER`` bytes, drop the connection instead of buffering more: one client
that stops reading can cost the server at most that much (plus the kernel's socket buffers).

Installed from ``dashboard.asgi`` (the module daphne loads), so it applies only where daphne
serves the app.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from .config import env_int

log = logging.getLogger(__name__)

MAX_SEND_BUFFER = env_int("FANOUT_MAX_SEND_BUFFER", 1024 * 1024, 16 * 1024, 10**12)
# Messages from one client waiting for the app to read them. Daphne queues them without limit:
# a client that sends faster than its messages are handled (bench/soak.py's junk client had
# 1,575 waiting) would grow the server's memory. Past this, the socket is closed.
MAX_INBOUND_QUEUE = env_int("FANOUT_MAX_INBOUND_QUEUE", 256, 8, 1_000_000)


def buffered_bytes(transport: Any) -> int:
    """Bytes a Twisted transport holds that the peer has not taken yet (0 if it cannot say)."""
    data = getattr(transport, "dataBuffer", b"")
    offset = getattr(transport, "offset", 0)
    pending = getattr(transport, "_tempDataLen", 0)
    try:
        return len(data) - int(offset) + int(pending)
    except (TypeError, ValueError):
        return 0


def install() -> None:
    """Wrap daphne's WebSocket send with the bound (once; a no-op without daphne)."""
    try:
        from daphne.ws_protocol import WebSocketProtocol
    except ImportError:  # pragma: no cover - daphne is a requirement
        return
    from autobahn.exception import Disconnected

    if getattr(WebSocketProtocol, "_fanout_send_bound", False):
        return
    send = WebSocketProtocol.serverSend
    receive = WebSocketProtocol.onMessage

    def drop(self: Any, why: str) -> None:
        if not getattr(self, "_fanout_dropped", False):
            self._fanout_dropped = True
            log.warning("WebSocket %s %s: closing it", getattr(self, "client_addr", None), why)
            self.dropConnection(abort=True)

    def bounded_send(self: Any, content: Any, binary: bool = False) -> None:
        held = buffered_bytes(getattr(self, "transport", None))
        if held > MAX_SEND_BUFFER:
            drop(self, f"holds {held} unread bytes (limit {MAX_SEND_BUFFER})")
            return
        # the client may have left while a frame was on its way to it: nothing to send to
        with contextlib.suppress(Disconnected):
            send(self, content, binary)

    def bounded_receive(self: Any, payload: bytes, is_binary: bool) -> None:
        queue = getattr(self, "application_queue", None)
        if queue is not None and queue.qsize() >= MAX_INBOUND_QUEUE:
            drop(self, f"sent {MAX_INBOUND_QUEUE} messages the server has not read yet")
            return
        receive(self, payload, is_binary)

    WebSocketProtocol.serverSend = bounded_send
    WebSocketProtocol.onMessage = bounded_receive
    WebSocketProtocol._fanout_send_bound = True
