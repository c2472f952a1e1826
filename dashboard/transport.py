"""Bounds on what daphne may buffer for one WebSocket, out and in; frames compressed once.

Daphne hands every ``websocket.send`` to Twisted, whose transport buffers whatever the peer has
not read yet, without limit. Flow control (``consumers.FRAME_WINDOW``) keeps a well-behaved
viewer's backlog short, but a client can acknowledge frames it never reads; then only the
transport knows. So before each send we look at how much the transport still holds for the peer
and, past ``MAX_SEND_BUFFER`` bytes, drop the connection instead of buffering more: one client
that stops reading can cost the server at most that much (plus the kernel's socket buffers).

Compression: daphne builds autobahn's ``WebSocketServerFactory`` without a
``perMessageCompressionAccept``, so it negotiates no permessage-deflate (RFC 7692). We give its
factory one. Autobahn would then compress every message for every connection on its own; frames
instead are compressed once by the runner, without context (``frames.deflated``), and these same
bytes go to every viewer whose connection took the extension, as a frame with RSV1 set (any
decoder, with or without context takeover, reads a message compressed without it). Other
messages (acks, errors, pongs) are small and go uncompressed, which the extension allows. A
client that offers no permessage-deflate, or asks for a server window under 32 KB, gets text.

A frame's WebSocket framing is the same for every viewer too: it is built once (``Frame.wire``)
and written to each connection's socket at once when nothing is waiting in Twisted's buffer for
it (``write_now``), instead of being framed again by autobahn and handed to Twisted, which
registers the socket for writing and unregisters it again, for every viewer and every frame
(18% of the server's time with 300 viewers, docs/performance.md).

Installed from ``dashboard.asgi`` (the module daphne loads), so it applies only where daphne
serves the app.
"""

from __future__ import annotations

import contextlib
import logging
import struct
from typing import Any

from .config import env_int

log = logging.getLogger(__name__)

MAX_SEND_BUFFER = env_int("FANOUT_MAX_SEND_BUFFER", 1024 * 1024, 16 * 1024, 10**12)
# Messages from one client waiting for the app to read them. Daphne queues them without limit:
# a client that sends faster than its messages are handled (bench/soak.py's junk client had
# 1,575 waiting) would grow the server's memory. Past this, the socket is closed.
MAX_INBOUND_QUEUE = env_int("FANOUT_MAX_INBOUND_QUEUE", 256, 8, 1_000_000)
# Negotiate permessage-deflate and send frames compressed once (docs/performance.md measures it).
WS_DEFLATE = bool(env_int("FANOUT_WS_DEFLATE", 1, 0, 1))
# The window the server asks a client to compress its own messages with: they are acks and
# commands of a few dozen bytes, and a small window keeps each connection's decompressor small.
CLIENT_WINDOW_BITS = 9


class Frame(str):
    """A text message encoded once for every viewer: its permessage-deflate payload
    (``deflated``, or None) and, built when first needed, its WebSocket framing."""

    deflated: bytes | None
    _framed: dict[bool, bytes]

    def wire(self, *, compressed: bool) -> bytes:
        """The whole WebSocket message as the socket carries it: one final text frame, with RSV1
        set when its payload is the deflated one."""
        compressed = compressed and self.deflated is not None
        framed = self._framed.get(compressed)
        if framed is None:
            payload = self.deflated if compressed and self.deflated else self.encode("utf8")
            first = 0x80 | (0x40 if compressed else 0) | 0x1  # FIN, RSV1, text
            n = len(payload)
            if n < 126:
                header = struct.pack("!BB", first, n)
            elif n < 1 << 16:
                header = struct.pack("!BBH", first, 126, n)
            else:
                header = struct.pack("!BBQ", first, 127, n)
            framed = self._framed[compressed] = header + payload
        return framed


def deflated_text(text: str, packed: bytes | None) -> Frame:
    """``text`` as a frame sent to many, carrying ``packed`` for the connections that take it."""
    message = Frame(text)
    message.deflated = packed
    message._framed = {}
    return message


def write_now(transport: Any, data: bytes) -> None:
    """Write ``data`` to a plain TCP connection's socket at once when Twisted holds nothing for
    it; what the socket does not take, and anything while data is waiting, goes through
    Twisted's buffer as usual (so the order is kept). TLS connections always go through it."""
    from twisted.internet import tcp

    if (
        type(transport) is tcp.Server
        and not transport.TLS
        and transport.connected
        and not transport.disconnecting
        and not transport._writeDisconnected
        and not transport._tempDataBuffer
        and transport.offset == len(transport.dataBuffer)
    ):
        sent = transport.writeSomeData(data)
        if isinstance(sent, int) and sent >= 0:
            if sent < len(data):
                transport.write(data[sent:])
            return
    transport.write(data)  # an error is Twisted's to handle, as for any write


def accept_deflate(offers: list[Any]) -> Any:
    """Autobahn's ``perMessageCompressionAccept``: take a permessage-deflate offer whose server
    window is the full 32 KB (the size frames are compressed for), or none."""
    from autobahn.websocket.compress import PerMessageDeflateOffer, PerMessageDeflateOfferAccept

    for offer in offers:
        if isinstance(offer, PerMessageDeflateOffer) and offer.request_max_window_bits in (0, 15):
            bits = CLIENT_WINDOW_BITS if offer.accept_max_window_bits else 0
            return PerMessageDeflateOfferAccept(offer, request_max_window_bits=bits)
    return None


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
        from daphne.ws_protocol import WebSocketFactory, WebSocketProtocol
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
            compress = getattr(self, "_perMessageCompress", None) is not None
            if binary or self.state != self.STATE_OPEN:
                send(self, content, binary)  # daphne accepts first, or refuses, as it does
            elif isinstance(content, Frame):
                write_now(self.transport, content.wire(compressed=compress))
            elif compress:
                self.sendMessage(content.encode("utf8"), False, doNotCompress=True)
            else:
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

    if WS_DEFLATE:
        factory_init = WebSocketFactory.__init__

        def init_with_deflate(self: Any, *args: Any, **kwargs: Any) -> None:
            factory_init(self, *args, **kwargs)
            self.setProtocolOptions(perMessageCompressionAccept=accept_deflate)

        WebSocketFactory.__init__ = init_with_deflate
