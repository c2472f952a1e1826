"""The WebSocket consumer: watches a simulation's frames and forwards them to one browser.

Thin where Channels consumers should be: connect joins and accepts; receive parses, validates
and hands commands to the runner through the channel layer. What a socket is sent of each frame
is decided per socket (docs/api.md): a delta when the socket has the frame it applies to, else a
whole frame; at most ``FRAME_WINDOW`` unacknowledged, the latest winning for a slow reader, who
is told so. Frames reach a process's sockets through one ``FrameHub`` per simulation.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
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
from .frames import encode
from .guide import voter_id
from .runner import frames_group, runner_group
from .transport import deflated_text

MAX_MESSAGE_BYTES = 16 * 1024
# Frames a socket may have unacknowledged. Past that the server holds frames back for it and,
# when it acknowledges again, sends it the latest frame whole (latest wins) instead of buffering
# for a slow reader.
FRAME_WINDOW = env_int("FANOUT_FRAME_WINDOW", 8, 1, 10**9)
# A frame older than this when its turn comes is skipped: the next whole frame replaces it (a
# saturated server sheds its backlog instead of delivering it late).
STALE_FRAME_SECONDS = env_number("FANOUT_STALE_FRAME_SECONDS", 1.0, 0.05, 3600)
# A socket is told {"type": "slow", ...} when, over this many seconds, it was sent less than
# SLOW_SHARE of the frames the runner published (and once more when that is over).
SLOW_WINDOW_SECONDS = env_number("FANOUT_SLOW_WINDOW_SECONDS", 2.0, 0.1, 3600)
SLOW_SHARE = 0.9
# A whole frame asked of the runner that has not come after this long is asked for again.
SNAPSHOT_RETRY_SECONDS = 1.0
# Deltas that may arrive before a socket's full frame (they cannot apply to anything yet); past
# that its join is taken as lost and a whole frame is asked for.
JOIN_PATIENCE = 20
# Deltas kept while a socket waits for a whole frame (its join's, or one it asked for): that
# frame comes on the socket's own channel, the deltas on the process's (FrameHub), so the first
# deltas after it may come before it; kept, they follow it instead of being lost.
WAITING_DELTAS = 16
ERR_TOO_BIG = f"message too large: at most {MAX_MESSAGE_BYTES} bytes"
ERR_BAD_JSON = 'message is not valid JSON: send an object such as {"command": "pause"}'
ERR_NOT_OBJECT = "message must be a JSON object"
ERR_UNKNOWN_MESSAGE = (
    'unknown message: send {"command": ...} to control the run, '
    '{"type": "trace", "correlation_id": "ord-245" or N} to follow an order, '
    '{"type": "vote", "choice": KEY} to answer a guided lesson\'s question, '
    'or {"type": "ack", "seq": N} after drawing frame N '
    '(and {"type": "resync"} for a whole frame when a delta does not apply)'
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


class FrameHub:
    """This process's link to one simulation's frames: a single channel in the frames group,
    whose messages are handed to every socket of the process that watches the simulation.

    Joining the group socket by socket costs, per frame and per socket, a channel-layer
    receive, a copy of the message and a task to dispatch it; with the in-memory layer each
    receive also walks every channel. With a class watching, that was most of the server's
    work (docs/performance.md, "Streaming to many viewers"). Here a frame is received once per
    process and each socket's handler is called directly: the same ``sim_frame`` that its own
    channel's messages (the runner's replies) reach it by.

    A socket whose deltas stopped applying asks its hub for a whole frame: one request to the
    runner at a time for the whole process, answered on the hub's channel (after the deltas
    before it, before those after it) and offered to every socket, which takes it if it needs
    it. However many fall behind at once, the runner answers once.
    """

    def __init__(self, sim_id: str, layer: Any) -> None:
        self.sim_id = sim_id
        self.layer = layer
        self.loop = asyncio.get_running_loop()
        self.sockets: dict[SimulationConsumer, None] = {}  # in the order they joined
        self.channel = ""
        self.task: asyncio.Task[None] | None = None
        self.lock = asyncio.Lock()
        self.asked_at = 0.0  # when a whole frame was asked of the runner (0: none awaited)

    @classmethod
    async def join(cls, socket: SimulationConsumer) -> FrameHub:
        hub = HUBS.get(socket.sim_id)
        loop = asyncio.get_running_loop()
        if hub is None or hub.layer is not socket.channel_layer or hub.loop is not loop:
            hub = HUBS[socket.sim_id] = cls(socket.sim_id, socket.channel_layer)
        hub.sockets[socket] = None
        try:
            await hub.start()
        except BaseException:
            hub.leave(socket)
            raise
        return hub

    async def start(self) -> None:
        async with self.lock:
            if self.task is not None and not self.task.done():
                return
            channel = await self.layer.new_channel()
            await self.layer.group_add(frames_group(self.sim_id), channel)
            self.channel = channel
            self.task = asyncio.create_task(self._run(), context=contextvars.Context())

    async def ask_whole(self) -> None:
        """Ask the runner for its last frame whole, for whichever sockets need it."""
        now = time.monotonic()
        if self.asked_at and now - self.asked_at < SNAPSHOT_RETRY_SECONDS:
            return  # asked already; it is on its way
        self.asked_at = now
        await self.layer.group_send(
            runner_group(self.sim_id), {"type": "sim.snapshot", "reply_to": self.channel}
        )

    async def rejoin(self) -> None:
        """Join the group again (idempotent): after a Redis restart groups are empty."""
        if self.channel:
            await self.layer.group_add(frames_group(self.sim_id), self.channel)

    def leave(self, socket: SimulationConsumer) -> None:
        self.sockets.pop(socket, None)
        if self.sockets:
            return
        if HUBS.get(self.sim_id) is self:
            del HUBS[self.sim_id]
        if self.task is not None:
            self.task.cancel()
            self.task = None
        if self.channel:
            channel, self.channel = self.channel, ""
            task = asyncio.create_task(self._discard(channel), context=contextvars.Context())
            _DISCARDS.add(task)
            task.add_done_callback(_DISCARDS.discard)

    async def _discard(self, channel: str) -> None:
        with contextlib.suppress(Exception):  # the layer may be down: the group expires then
            await self.layer.group_discard(frames_group(self.sim_id), channel)

    async def _run(self) -> None:
        pause = 0.1
        while True:
            try:
                message = await self.layer.receive(self.channel)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # Redis restarting: wait, and listen again
                log.warning("simulation %s: frames could not be received (%s)", self.sim_id, e)
                await asyncio.sleep(pause)
                pause = min(pause * 2, 5.0)
                continue
            pause = 0.1
            if message.get("type") != "sim.frame":
                continue
            if message.get("snapshot"):
                self.asked_at = 0.0
            for n, socket in enumerate(tuple(self.sockets), 1):
                try:
                    await socket.sim_frame(message)
                except Exception:  # one socket's failure is not the others'
                    log.exception("simulation %s: a frame could not go to a socket", self.sim_id)
                if n % HUB_BATCH == 0:
                    # a class's frame is a burst of sends: let the loop run what waits
                    # between batches (a command's request, its thread hops), not after all
                    await asyncio.sleep(0)


def _wire(event: dict[str, Any]) -> str:
    """A frame's text, made once for every socket it goes to (a hub hands them all the same
    message): with its compressed payload and, once built, its WebSocket framing."""
    message = event.get("wire")
    if message is None:
        message = event["wire"] = deflated_text(event["text"], event.get("deflated"))
    return message


# Sockets a hub hands a frame to before it lets the loop run other work (about 2 ms of sends)
HUB_BATCH = 50
# one hub per simulation (and event loop: tests run each in a loop of its own)
HUBS: dict[str, FrameHub] = {}
_DISCARDS: set[asyncio.Task[None]] = set()


class SimulationConsumer(AsyncWebsocketConsumer):
    sim_id: str
    controls: bool
    hub: FrameHub | None = None

    async def connect(self) -> None:
        # flow control is per socket by nature: each reader has its own pace
        # seqs of the regular frames sent and not acknowledged yet: an ack must name one of
        # them, so acks release only frames this socket was actually sent
        self.outstanding: deque[int] = deque()
        # Deltas (docs/api.md): the seq of the frame this viewer holds, once all it was sent is
        # applied; a delta goes out only when it applies to that frame (its ``base``)
        self.sent: int | None = None
        self.joined = False  # its full frame went out
        self.early = 0  # deltas that came before the full frame
        # a whole frame held back for a slow reader (the latest wins)
        self.pending: dict[str, Any] | None = None
        # deltas were held back since ``sent``: the viewer needs a whole frame next
        self.behind = False
        self.waiting: list[dict[str, Any]] = []  # deltas that may follow the whole frame awaited
        # the runner's lease epoch of the frames this socket gets: a newer runner's frames win,
        # an older (fenced) runner's are dropped, so two runners never interleave on a screen
        self.epoch = 0
        self.dropped = 0
        # frames the runner published (by their seq) and frames sent here, this window
        self.window_start = time.monotonic()
        self.window_published = 0
        self.window_sent = 0
        self.seen_seq: int | None = None
        self.told_slow = False
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
            self.hub = await FrameHub.join(self)
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
        if self.hub is not None:
            self.hub.leave(self)
            self.hub = None
        if getattr(self, "sim_id", None):
            with contextlib.suppress(Exception):  # the layer may be down: nothing to undo then
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
            if len(outstanding) < FRAME_WINDOW:
                if self.pending is not None:
                    held, self.pending = self.pending, None
                    await self._send_frame(held)
                    await self._catch_up()
                elif self.behind:
                    await self._ask_whole()
            return
        if kind == "resync":
            # a delta did not apply on the viewer's side: a whole frame, then deltas again
            self.sent = None
            self.behind = True
            self.pending = None
            await self._ask_whole()
            return
        if kind == "ping":
            try:
                # joining again is idempotent, and after a Redis restart (groups are lost) it
                # is what brings this viewer's frames back
                if self.hub is not None:
                    await self.hub.rejoin()
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

    # --- frames: what this socket is sent (flow control, deltas), and the runner's replies ---

    async def sim_frame(self, event: dict[str, Any]) -> None:
        """A frame from the runner: a joiner's full frame, a whole frame (``base`` absent) or a
        delta against frame ``base``. Flow control and deltas decide what this socket gets."""
        epoch = event.get("epoch", 0)
        if isinstance(epoch, int):
            if epoch < self.epoch:
                self.dropped += 1
                return  # from a runner that lost its lease
            if epoch > self.epoch:
                self._new_runner(epoch)  # a new runner: its seqs start afresh
        seq = event.get("seq")
        if event.get("full"):  # a joiner's full frame always goes
            await self.send(text_data=_wire(event))
            if isinstance(seq, int):
                if not self.joined:  # frames are counted from here (those before it waited)
                    self.window_start = time.monotonic()
                    self.window_published = self.window_sent = 0
                    self.seen_seq = max(seq, self.seen_seq or seq)
                self.sent, self.behind, self.pending = seq, False, None
            self.joined = True
            if isinstance(seq, int):
                await self._catch_up()
            return
        if not isinstance(seq, int):
            return
        if self.seen_seq is None or seq > self.seen_seq:
            self.window_published += 1 if self.seen_seq is None else seq - self.seen_seq
            self.seen_seq = seq
        await self._frame(seq, event)
        if time.monotonic() - self.window_start >= SLOW_WINDOW_SECONDS:
            await self._tell_rate()

    async def _frame(self, seq: int, event: dict[str, Any]) -> None:
        sent = event.get("sent")
        if isinstance(sent, float) and time.time() - sent > STALE_FRAME_SECONDS:
            # A frame that waited this long in this socket's queue: the server is saturated.
            # Newer frames are queued behind it; skip to them rather than replay the past (a
            # delta that no longer applies then asks for a whole frame).
            self.dropped += 1
            return
        if "base" not in event:  # a whole frame: every SNAPSHOT_EVERY, or the one we asked for
            if event.get("snapshot") and self.sent is not None and seq <= self.sent:
                return  # asked for by another socket, or this one has it already
            if len(self.outstanding) >= FRAME_WINDOW:
                if self.pending is not None:
                    self.dropped += 1
                self.pending, self.behind = event, False
                return
            await self._send_frame(event)
            await self._catch_up()
            return
        if len(self.outstanding) >= FRAME_WINDOW:
            # a slow reader: what is held back is replaced by a whole frame when it acks
            self.dropped += 1
            self.behind, self.pending = True, None
            self.waiting.clear()
            return
        if not self.behind and event.get("base") == self.sent:
            await self._send_frame(event)
            return
        # It does not follow what this socket holds: frames were held back or lost, or the
        # whole frame it follows has not come yet (it comes by another channel). Keep it, in
        # case that frame is on its way, and ask for a whole frame.
        self.waiting.append(event)
        del self.waiting[:-WAITING_DELTAS]
        self.dropped += 1
        if not self.joined and self.sent is None:
            self.early += 1  # the join's full frame is on its way
            if self.early <= JOIN_PATIENCE:
                return
        await self._ask_whole()

    async def _catch_up(self) -> None:
        """After a whole frame: the deltas kept meanwhile that follow it go out after it."""
        waiting, self.waiting = self.waiting, []
        for event in waiting:
            if self.sent is not None and event["seq"] <= self.sent:
                continue
            if self.behind or event.get("base") != self.sent:
                break
            if len(self.outstanding) >= FRAME_WINDOW:
                self.behind = True
                break
            await self._send_frame(event)

    def _new_runner(self, epoch: int) -> None:
        self.epoch = epoch
        self.outstanding.clear()
        self.pending = None
        self.sent = None
        self.behind = False
        self.seen_seq = None
        self.waiting.clear()

    async def _ask_whole(self) -> None:
        """Ask for the last frame whole: through the hub, which asks once for the process."""
        if self.hub is None:
            return
        try:
            await self.hub.ask_whole()
        except Exception as e:  # the layer is down: the socket hears so and stays
            log.warning("simulation %s: could not reach the runner (%s)", self.sim_id, e)
            await self._error(ERR_LAYER_DOWN)

    async def _send_frame(self, event: dict[str, Any]) -> None:
        seq = event["seq"]
        self.outstanding.append(seq)
        self.sent, self.behind = seq, False
        self.window_sent += 1
        await self.send(text_data=_wire(event))

    async def _tell_rate(self) -> None:
        """Close this window of frames: a socket sent noticeably fewer frames than the runner
        published is told so ({"type": "slow", "thinned": true, ...}), and told once more when
        it is over ("thinned": false)."""
        now = time.monotonic()
        seconds = now - self.window_start
        published, sent = self.window_published, min(self.window_sent, self.window_published)
        self.window_start, self.window_published, self.window_sent = now, 0, 0
        if not self.joined or published == 0:
            return
        thinned = sent < SLOW_SHARE * published
        if thinned or self.told_slow:
            self.told_slow = thinned
            notice = {"type": "slow", "thinned": thinned, "sent": sent, "published": published}
            await self.send(text_data=encode({**notice, "seconds": round(seconds, 2)}))

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
