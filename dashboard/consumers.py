"""The WebSocket consumer: joins the simulation's group and forwards frames.

Thin, as Channels consumers should be: connect joins and accepts; receive parses, validates and
hands commands to the runner through the channel layer; group handlers only forward.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from channels.consumer import get_handler_name
from channels.generic.websocket import AsyncWebsocketConsumer

from . import services
from .runner import frames_group, runner_group

MAX_MESSAGE_BYTES = 16 * 1024
# Frames a socket may have unacknowledged. Past that the server keeps only the latest frame
# (frames carry the whole state, so the latest wins) instead of buffering for a slow reader.
FRAME_WINDOW = int(os.environ.get("FANOUT_FRAME_WINDOW", "8"))
# A frame older than this when its turn comes is skipped: frames carry the whole state, so the
# next one replaces it (a saturated server sheds its backlog instead of delivering it late).
STALE_FRAME_SECONDS = float(os.environ.get("FANOUT_STALE_FRAME_SECONDS", "1.0"))
ERR_TOO_BIG = f"message too large: at most {MAX_MESSAGE_BYTES} bytes"
ERR_BAD_JSON = 'message is not valid JSON: send an object such as {"command": "pause"}'
ERR_NOT_OBJECT = "message must be a JSON object"
ERR_UNKNOWN_MESSAGE = (
    'unknown message: send {"command": ...} to control the run, '
    '{"type": "trace", "correlation_id": N} to follow an order, '
    'or {"type": "ack"} after drawing a frame'
)
ERR_BINARY = "binary messages are not accepted: send JSON text"


class SimulationConsumer(AsyncWebsocketConsumer):
    sim_id: str
    controls: bool

    async def connect(self) -> None:
        # flow control is per socket by nature: each reader has its own pace
        self.unacked = 0
        self.pending: str | None = None
        self.dropped = 0
        self.sim_id = str(self.scope["url_route"]["kwargs"]["sim_id"])
        record = await services.simulation_get(sim_id=self.sim_id)
        if record is None:
            await self.close(code=4404)
            return
        session = self.scope.get("session")
        session_key = getattr(session, "session_key", None) if session is not None else None
        self.controls = services.can_control(record, session_key=session_key, bearer=None)
        await self.channel_layer.group_add(frames_group(self.sim_id), self.channel_name)
        await self.accept()
        await services.runner_ensure(record=record)
        # the runner answers a join with a full frame sent to this socket alone
        await self.channel_layer.group_send(
            runner_group(self.sim_id), {"type": "sim.join", "reply_to": self.channel_name}
        )

    # Only connect touches the database. Channels closes stale database connections before every
    # message, which costs a round trip to a worker thread; for frames and acks (thousands a
    # second with a class watching) that hop was most of the server's CPU (docs/performance.md).
    DB_MESSAGES = frozenset({"websocket.connect"})

    async def dispatch(self, message: dict[str, Any]) -> None:
        if message["type"] in self.DB_MESSAGES:
            await super().dispatch(message)
            return
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def disconnect(self, code: int) -> None:
        if getattr(self, "sim_id", None):
            await self.channel_layer.group_discard(frames_group(self.sim_id), self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data is None:
            await self._error(ERR_BINARY)
            return
        if len(text_data.encode("utf-8", "surrogatepass")) > MAX_MESSAGE_BYTES:
            await self._error(ERR_TOO_BIG)
            return
        try:
            message = json.loads(text_data)
        except (ValueError, RecursionError):
            await self._error(ERR_BAD_JSON)
            return
        if not isinstance(message, dict):
            await self._error(ERR_NOT_OBJECT)
            return
        kind = message.get("type")
        if kind == "ack":
            # the browser drew a frame: one more may go out; a held-back one goes first
            self.unacked = max(0, self.unacked - 1)
            if self.pending is not None:
                text, self.pending = self.pending, None
                await self._send_frame(text)
            return
        if kind == "ping":
            await self.channel_layer.group_send(runner_group(self.sim_id), {"type": "sim.viewer"})
            await self.send(text_data='{"type": "pong"}')
            return
        if kind == "trace":
            cid = message.get("correlation_id")
            if isinstance(cid, bool) or not isinstance(cid, int):
                await self._error("trace needs an integer correlation_id")
                return
            await self.channel_layer.group_send(
                runner_group(self.sim_id),
                {"type": "sim.trace", "correlation_id": cid, "reply_to": self.channel_name},
            )
            return
        if "command" in message:
            if not self.controls:
                await self._error(services.ERR_READ_ONLY)
                return
            await self.channel_layer.group_send(
                runner_group(self.sim_id),
                {"type": "sim.command", "command": message, "reply_to": self.channel_name},
            )
            return
        await self._error(ERR_UNKNOWN_MESSAGE)

    async def _error(self, message: str) -> None:
        await self.send(text_data=json.dumps({"type": "error", "message": message}))

    # --- group handlers: forward only ------------------------------------------------------

    async def sim_frame(self, event: dict[str, Any]) -> None:
        if event.get("full"):
            await self.send(text_data=event["text"])  # a joiner's snapshot always goes
            return
        sent = event.get("sent")
        if isinstance(sent, float) and time.time() - sent > STALE_FRAME_SECONDS:
            # A frame that waited this long in this socket's queue: the server is saturated.
            # Newer frames are queued behind it; skip to them rather than replay the past.
            self.dropped += 1
            return
        if self.unacked >= FRAME_WINDOW:
            if self.pending is not None:
                self.dropped += 1
            self.pending = event["text"]
            return
        await self._send_frame(event["text"])

    async def _send_frame(self, text: str) -> None:
        self.unacked += 1
        await self.send(text_data=text)

    async def sim_reply(self, event: dict[str, Any]) -> None:
        if event.get("ok"):
            await self.send(text_data=json.dumps({"type": "ack", "result": event.get("result")}))
        else:
            await self._error(str(event.get("error")))

    async def sim_trace(self, event: dict[str, Any]) -> None:
        await self.send(
            text_data=json.dumps(
                {
                    "type": "trace",
                    "correlation_id": event.get("correlation_id"),
                    "hops": event.get("hops", []),
                }
            )
        )
