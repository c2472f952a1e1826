"""The WebSocket consumer: joins the simulation's group and forwards frames.

Thin, as Channels consumers should be: connect joins and accepts; receive parses, validates and
hands commands to the runner through the channel layer; group handlers only forward.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections import deque
from typing import Any

from channels.consumer import get_handler_name
from channels.generic.websocket import AsyncWebsocketConsumer

from simulator.observe import valid_correlation_id

from . import services
from .config import env_int, env_number
from .guide import voter_id
from .runner import frames_group, runner_group

MAX_MESSAGE_BYTES = 16 * 1024
# Frames a socket may have unacknowledged. Past that the server keeps only the latest frame
# (frames carry the whole state, so the latest wins) instead of buffering for a slow reader.
FRAME_WINDOW = env_int("FANOUT_FRAME_WINDOW", 8, 1, 10**9)
# A frame older than this when its turn comes is skipped: frames carry the whole state, so the
# next one replaces it (a saturated server sheds its backlog instead of delivering it late).
STALE_FRAME_SECONDS = env_number("FANOUT_STALE_FRAME_SECONDS", 1.0, 0.05, 3600)
ERR_TOO_BIG = f"message too large: at most {MAX_MESSAGE_BYTES} bytes"
ERR_BAD_JSON = 'message is not valid JSON: send an object such as {"command": "pause"}'
ERR_NOT_OBJECT = "message must be a JSON object"
ERR_UNKNOWN_MESSAGE = (
    'unknown message: send {"command": ...} to control the run, '
    '{"type": "trace", "correlation_id": "ord-245" or N} to follow an order, '
    '{"type": "vote", "choice": KEY} to answer a guided lesson\'s question, '
    'or {"type": "ack", "seq": N} after drawing frame N'
)
ERR_TRACE_ID = (
    'trace needs a correlation_id: an order id such as "ord-245" (at most 200 characters) '
    "or an event id such as 245"
)
ERR_ACK_SEQ = 'an ack names the frame it acknowledges: {"type": "ack", "seq": N}'
ERR_BINARY = "binary messages are not accepted: send JSON text"
ERR_NO_VOTER = "open the simulation's page to answer: your browser's session is your vote"
ERR_LAYER_DOWN = (
    "the server cannot reach its message layer (Redis) just now: the page reconnects by itself"
)

log = logging.getLogger(__name__)


class NoSuchSocket(AsyncWebsocketConsumer):
    """Every WebSocket path that names no simulation: refused at the handshake."""

    async def connect(self) -> None:
        await self.close(code=4404)


class SimulationConsumer(AsyncWebsocketConsumer):
    sim_id: str
    controls: bool

    async def connect(self) -> None:
        # flow control is per socket by nature: each reader has its own pace
        # seqs of the regular frames sent and not acknowledged yet: an ack must name one of
        # them, so acks release only frames this socket was actually sent
        self.outstanding: deque[int] = deque()
        self.pending: tuple[int, str] | None = None
        # the runner's lease epoch of the frames this socket gets: a newer runner's frames win,
        # an older (fenced) runner's are dropped, so two runners never interleave on a screen
        self.epoch = 0
        self.dropped = 0
        self.sim_id = str(self.scope["url_route"]["kwargs"]["sim_id"])
        record = await services.simulation_get(sim_id=self.sim_id)
        if record is None:
            await self.close(code=4404)
            return
        session = self.scope.get("session")
        session_key = getattr(session, "session_key", None) if session is not None else None
        self.controls = services.can_control(record, session_key=session_key, bearer=None)
        # a guided lesson's answers: one per browser, by its session (hashed, never sent on)
        self.voter = voter_id(session_key) if session_key else ""
        await self.accept()
        try:
            await self.channel_layer.group_add(frames_group(self.sim_id), self.channel_name)
            await services.runner_ensure(record=record)
        except services.Unbuildable as e:
            await self._error(str(e))
            await self.close(code=4409)
            return
        except Exception as e:  # the channel layer (Redis) is down: say so; the page retries
            log.warning("simulation %s: a viewer could not join (%s)", self.sim_id, e)
            await self._error(ERR_LAYER_DOWN)
            await self.close(code=1013)  # "try again later"
            return
        # the runner answers a join with a full frame sent to this socket alone (with this
        # browser's answer, if it gave one)
        await self._to_runner(
            {"type": "sim.join", "reply_to": self.channel_name, "voter": self.voter}
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
            with contextlib.suppress(Exception):  # the layer may be down: nothing to undo then
                await self.channel_layer.group_discard(frames_group(self.sim_id), self.channel_name)
                await self.channel_layer.group_send(
                    runner_group(self.sim_id), {"type": "sim.leave", "channel": self.channel_name}
                )

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
            # the browser drew frame ``seq`` (and so every frame before it): as many more may go
            # out; a held-back one goes first
            seq = message.get("seq")
            if isinstance(seq, bool) or not isinstance(seq, int):
                await self._error(ERR_ACK_SEQ)
                return
            outstanding = self.outstanding
            if seq not in outstanding:
                return  # a frame never sent here, or acknowledged already: it releases nothing
            while outstanding and outstanding.popleft() != seq:
                pass
            if self.pending is not None and len(outstanding) < FRAME_WINDOW:
                (pending_seq, text), self.pending = self.pending, None
                await self._send_frame(pending_seq, text)
            return
        if kind == "ping":
            try:
                # joining again is idempotent, and after a Redis restart (groups are lost) it
                # is what brings this viewer's frames back
                await self.channel_layer.group_add(frames_group(self.sim_id), self.channel_name)
                await self.channel_layer.group_send(
                    runner_group(self.sim_id), {"type": "sim.viewer", "channel": self.channel_name}
                )
            except Exception as e:
                log.warning("simulation %s: a ping could not reach the layer (%s)", self.sim_id, e)
                await self._error(ERR_LAYER_DOWN)
                return
            await self.send(text_data='{"type": "pong"}')
            return
        if kind == "trace":
            cid = message.get("correlation_id")
            if not valid_correlation_id(cid):
                await self._error(ERR_TRACE_ID)
                return
            await self._to_runner(
                {"type": "sim.trace", "correlation_id": cid, "reply_to": self.channel_name}
            )
            return
        if kind == "vote":
            if not self.voter:
                await self._error(ERR_NO_VOTER)
                return
            await self._to_runner(
                {
                    "type": "sim.vote",
                    "voter": self.voter,
                    "choice": message.get("choice"),
                    "reply_to": self.channel_name,
                }
            )
            return
        if "command" in message:
            if not self.controls:
                await self._error(services.ERR_READ_ONLY)
                return
            await self._to_runner(
                {"type": "sim.command", "command": message, "reply_to": self.channel_name}
            )
            return
        await self._error(ERR_UNKNOWN_MESSAGE)

    async def _to_runner(self, message: dict[str, Any]) -> None:
        try:
            await self.channel_layer.group_send(runner_group(self.sim_id), message)
        except Exception as e:  # the layer is down: the sender hears so, the socket stays
            log.warning("simulation %s: could not reach the runner (%s)", self.sim_id, e)
            await self._error(ERR_LAYER_DOWN)

    async def _error(self, message: str) -> None:
        await self.send(text_data=json.dumps({"type": "error", "message": message}))

    # --- group handlers: forward only ------------------------------------------------------

    async def sim_frame(self, event: dict[str, Any]) -> None:
        epoch = event.get("epoch", 0)
        if isinstance(epoch, int):
            if epoch < self.epoch:
                self.dropped += 1
                return  # from a runner that lost its lease
            if epoch > self.epoch:
                self.epoch = epoch  # a new runner: its seqs start afresh
                self.outstanding.clear()
                self.pending = None
        if event.get("full"):
            await self.send(text_data=event["text"])  # a joiner's snapshot always goes
            return
        sent = event.get("sent")
        if isinstance(sent, float) and time.time() - sent > STALE_FRAME_SECONDS:
            # A frame that waited this long in this socket's queue: the server is saturated.
            # Newer frames are queued behind it; skip to them rather than replay the past.
            self.dropped += 1
            return
        seq = event.get("seq")
        if not isinstance(seq, int):
            return
        if len(self.outstanding) >= FRAME_WINDOW:
            if self.pending is not None:
                self.dropped += 1
            self.pending = (seq, event["text"])
            return
        await self._send_frame(seq, event["text"])

    async def _send_frame(self, seq: int, text: str) -> None:
        self.outstanding.append(seq)
        await self.send(text_data=text)

    async def sim_reply(self, event: dict[str, Any]) -> None:
        if event.get("ok"):
            await self.send(text_data=json.dumps({"type": "ack", "result": event.get("result")}))
        else:
            await self._error(str(event.get("error")))

    async def sim_vote(self, event: dict[str, Any]) -> None:
        if event.get("ok"):
            await self.send(text_data=json.dumps({"type": "vote", "choice": event.get("choice")}))
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
