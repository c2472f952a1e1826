"""Helpers for the web tests: simulations, sessions and WebSocket clients."""

from __future__ import annotations

import asyncio
import json
import weakref
from typing import Any

from channels.testing import WebsocketCommunicator
from django.contrib.sessions.backends.db import SessionStore

from dashboard import services
from dashboard.asgi import application
from dashboard.frames import apply_delta, frame_body
from dashboard.runner import RUNNERS, LiveRunner
from simulator import parse_scenario

ORIGIN = (b"origin", b"http://127.0.0.1:8000")

SMALL = {
    "name": "Small",
    "seed": 3,
    "duration": 600,
    "topics": [{"name": "orders", "partitions": 2}],
    "producers": [
        {
            "name": "checkout",
            "topic": "orders",
            "event": "OrderPlaced",
            "rate": 40,
            "arrival": "constant",
            "payload": {"total": {"uniform": [1, 9000]}},
        }
    ],
    "consumers": [
        {
            "name": "email",
            "topics": ["orders"],
            "instances": 2,
            "processing": {"dist": "constant", "mean_ms": 5},
        }
    ],
}


async def new_session() -> str:
    store = SessionStore()
    await store.acreate()
    assert store.session_key is not None
    return store.session_key


async def create(doc: dict[str, Any] | None = None, *, owner: str = "") -> tuple[str, str]:
    record, token = await services.simulation_create(
        scenario=parse_scenario(doc or SMALL), owner_session=owner
    )
    return record.id, token


async def connect(sim_id: str, session_key: str | None = None) -> WebsocketCommunicator:
    headers = [ORIGIN]
    if session_key:
        headers.append((b"cookie", f"sessionid={session_key}".encode()))
    comm = WebsocketCommunicator(application, f"/ws/simulations/{sim_id}/", headers=headers)
    connected, _ = await comm.connect()
    assert connected
    return comm


class FrameFollower:
    """A client's side of the frame protocol (docs/api.md, "Deltas"): keeps the last frame,
    turns each delta into the whole frame it stands for, and says when one does not apply."""

    def __init__(self) -> None:
        self.frame: dict[str, Any] | None = None
        self.resyncs = 0

    def take(self, message: dict[str, Any]) -> dict[str, Any] | None:
        """The frame ``message`` stands for (the message itself when it is not a delta); None
        for a delta that does not apply to the last frame (ask for {"type": "resync"})."""
        if message.get("type") == "frame":
            if "state" in message:
                self.frame = message
            return message
        if message.get("type") != "delta":
            return message
        last = self.frame
        if last is None or last.get("seq") != message.get("base"):
            self.frame = None
            self.resyncs += 1
            return None
        body = apply_delta(frame_body(last), message["patch"], message.get("remove"))
        self.frame = {"type": "frame", "seq": message["seq"], "full": False, **body}
        return self.frame


_followers: weakref.WeakKeyDictionary[WebsocketCommunicator, FrameFollower] = (
    weakref.WeakKeyDictionary()
)


def follower(comm: WebsocketCommunicator) -> FrameFollower:
    return _followers.setdefault(comm, FrameFollower())


async def receive(
    comm: WebsocketCommunicator, timeout: float = 3.0, *, ack: bool = True
) -> dict[str, Any]:
    """The next message, deltas made whole frames (as static/js/live.js does); frames are
    acknowledged as a browser does after drawing them."""
    follow = follower(comm)
    while True:
        message = follow.take(dict(json.loads(await comm.receive_from(timeout=timeout))))
        if message is not None:
            break
        await comm.send_json_to({"type": "resync"})
    if ack and message.get("type") == "frame" and not message.get("full"):
        await comm.send_json_to({"type": "ack", "seq": message["seq"]})
    return message


async def receive_until(
    comm: WebsocketCommunicator, predicate: Any, *, limit: int = 400, timeout: float = 3.0
) -> dict[str, Any]:
    for _ in range(limit):
        message = await receive(comm, timeout)
        if predicate(message):
            return message
    raise AssertionError("no matching message arrived")


async def stop_when_idle(runner: LiveRunner) -> None:
    """Let ``runner`` stop for being idle, at once rather than after half an hour, and wait
    until it has stopped and saved."""
    runner.idle_seconds = 0.3
    for _ in range(50):
        if RUNNERS.get(runner.sim_id) is not runner:
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(0)  # a cancelled task of the runner runs its cancellation
    await runner.flush()


async def stop_all_runners() -> None:
    for runner in list(RUNNERS.values()):
        await runner.stop()
