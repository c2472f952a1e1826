"""Frames as deltas (docs/api.md, "Deltas"): a client that follows the protocol stays in step.

Every regular frame a client rebuilds from deltas equals the frame the runner built, over runs
with commands; so for a viewer that misses frames (it stops acknowledging), one that joins late,
one that asks for a resync, one on the other server process; and the browser's applyDelta
(static/js/live.js) and the script client's (bench/stream.py) rebuild the same frames as the
server's own function. A viewer that is sent fewer frames than the run makes is told so.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from dashboard import consumers, runner
from dashboard.frames import ENVELOPE, apply_delta, encode, frame_delta
from dashboard.runner import LiveRunner
from tests.test_scale_out import post, two_servers  # noqa: F401 (a fixture)
from tests.web_helpers import connect, create, new_session, stop_all_runners

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.django_db(transaction=True)


def bench_apply() -> Callable[..., dict[str, Any]]:
    """bench/stream.py's apply_delta: a script client's, written from docs/api.md alone."""
    spec = importlib.util.spec_from_file_location("bench_stream", ROOT / "bench" / "stream.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("bench_stream", module)  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module.apply_delta  # type: ignore[no-any-return]


SCRIPT_APPLY = bench_apply()


def ecommerce() -> dict[str, Any]:
    doc = yaml.safe_load((ROOT / "simulator/presets/ecommerce.yaml").read_text())
    doc["duration"] = 600
    return dict(doc)


# --- the functions ---------------------------------------------------------------------------

KEYS = st.sampled_from(["a", "b", "c", "h", "d", "k", "t", "at", "p", "m", "s", "__proto__"])
LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.sampled_from(["", "x", "processed", "lag grows 16/s: it can do 3.7/s", "é ü 🚀 ok"]),
    st.builds(
        lambda n: f"{n} processed but not committed yet (auto-commit every 5 s)",
        st.integers(0, 200),
    ),
)
TREES = st.recursive(
    LEAVES,
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(KEYS, inner, max_size=5),
    max_leaves=30,
)
BODIES = st.dictionaries(KEYS, TREES, max_size=5)


def shifted(items: list[Any], drop: int, add: list[Any]) -> list[Any]:
    return items[drop:] + add


@settings(max_examples=400, deadline=None)
@given(BODIES, BODIES)
def test_a_delta_turns_any_body_into_any_other(old: dict[str, Any], new: dict[str, Any]) -> None:
    patch, remove = frame_delta(old, new)
    wire = json.loads(encode({"patch": patch, "remove": remove}))  # as sent
    assert apply_delta(old, wire["patch"], wire["remove"]) == new
    kept = json.loads(json.dumps(old))
    assert SCRIPT_APPLY(old, wire["patch"], wire["remove"]) == new
    assert old == kept  # left as it was
    wire = json.loads(encode({"patch": patch, "remove": remove}))
    assert SCRIPT_APPLY(old, wire["patch"], wire["remove"], in_place=True) == new


@settings(max_examples=200, deadline=None)
@given(st.lists(TREES, max_size=12), st.integers(0, 4), st.lists(TREES, max_size=3), TREES)
def test_logs_that_drop_their_oldest_and_add_their_newest_go_as_their_change(
    log: list[Any], drop: int, add: list[Any], other: Any
) -> None:
    for new in (shifted(log, drop, add), add + log[: max(0, len(log) - drop)], [*log, other]):
        old_body, new_body = {"log": log, "x": 1}, {"log": new, "x": 1}
        patch, remove = frame_delta(old_body, new_body)
        assert apply_delta(old_body, patch, remove) == new_body
        assert SCRIPT_APPLY(old_body, *json.loads(encode([patch, remove]))) == new_body


def test_what_did_not_change_is_not_sent_and_per_frame_fields_always_are() -> None:
    old = {
        "t": 1.0,
        "state": {"lag": 4, "stepping_to": 3.0, "groups": {"a": {"x": 1}, "b": {"y": 2}}},
        "events": [],
        "events_seen": 0,
        "epoch": 1,
    }
    new = {
        "t": 1.05,
        "state": {"lag": 4, "stepping_to": None, "groups": {"a": {"x": 1}}},
        "events": [],
        "events_seen": 0,
        "epoch": 1,
    }
    patch, remove = frame_delta(old, new)
    assert patch == {"t": 1.05, "state": {"stepping_to": None}, "events": [], "events_seen": 0}
    assert remove == {"state": {"groups": {"b": None}}}


def test_a_bounded_log_goes_as_its_newest_entry_and_a_counter_in_a_sentence_as_itself() -> None:
    marks = [{"t": float(i), "name": "email", "status": "down"} for i in range(50)]
    note = "90 processed but not committed yet (auto-commit every 5 s): a crash now would ..."
    old = {"state": {"marks": marks, "notes": [note]}}
    new = {
        "state": {
            "marks": [*marks[1:], {"t": 50.0, "name": "email", "status": "up"}],
            "notes": [note.replace("90", "91")],
        }
    }
    patch, _ = frame_delta(old, new)
    assert patch["state"]["marks"] == {"d": 1, "t": [{"t": 50.0, "name": "email", "status": "up"}]}
    assert patch["state"]["notes"] == {"at": {"0": {"p": 1, "m": "1", "s": len(note) - 2}}}


# --- a live run -----------------------------------------------------------------------------


@pytest.fixture
async def published(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[dict[int, dict[str, Any]]]:
    """Every frame the runners build, by seq, as JSON carries it; whole frames every 25."""
    frames: dict[int, dict[str, Any]] = {}
    build = LiveRunner._frame_message

    def spy(self: LiveRunner, frame: dict[str, Any]) -> dict[str, Any]:
        frames[frame["seq"]] = json.loads(encode(frame))
        return build(self, frame)

    monkeypatch.setattr(LiveRunner, "_frame_message", spy)
    monkeypatch.setattr(runner, "SNAPSHOT_EVERY", 25)
    yield frames
    await stop_all_runners()


class ScriptClient:
    """A client written from docs/api.md: whole frames are kept, deltas applied to the frame
    they name as their base, and a delta that does not apply asks for {"type": "resync"}."""

    def __init__(self, comm: Any) -> None:
        self.comm = comm
        self.frame: dict[str, Any] | None = None
        self.raw: list[dict[str, Any]] = []  # what came, for the browser's function to redo
        self.frames: list[dict[str, Any]] = []  # every frame rebuilt or received
        self.kinds = {"delta": 0, "whole": 0, "full": 0, "resync": 0, "slow": 0}
        self.notices: list[dict[str, Any]] = []

    async def next(self, *, ack: bool = True, timeout: float = 3.0) -> dict[str, Any]:
        """The next message; a frame as a whole frame."""
        while True:
            message = json.loads(await self.comm.receive_from(timeout=timeout))
            kind = message.get("type")
            if kind == "delta":
                last = self.frame
                if last is None or last["seq"] != message["base"]:
                    self.frame = None
                    self.kinds["resync"] += 1
                    await self.comm.send_json_to({"type": "resync"})
                    continue
                self.raw.append(message)
                body = {k: v for k, v in last.items() if k not in ENVELOPE}
                body = SCRIPT_APPLY(body, message["patch"], message.get("remove"))
                message = {"type": "frame", "seq": message["seq"], "full": False, **body}
                self.kinds["delta"] += 1
            elif kind == "frame":
                self.raw.append(message)
                self.kinds["full" if message.get("full") else "whole"] += 1
            elif kind == "slow":
                self.kinds["slow"] += 1
                self.notices.append(message)
            if kind in ("delta", "frame"):
                self.frame = message
                self.frames.append(message)
                if ack and not message.get("full"):
                    await self.comm.send_json_to({"type": "ack", "seq": message["seq"]})
            return dict(message)

    async def frames_for(self, seconds: float, *, ack: bool = True) -> None:
        """What comes for ``seconds`` (a paused run may send nothing)."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            # (a receive that times out ends the test communicator's app: look first)
            if await self.comm.receive_nothing(timeout=min(left, 0.05), interval=0.01):
                continue
            await self.next(ack=ack)


def check_in_step(client: ScriptClient, published: dict[int, dict[str, Any]]) -> int:
    """Every regular frame the client has equals the frame the runner built; a full frame is
    the frame of its seq with history (and no events). Returns how many were compared."""
    compared = 0
    for frame in client.frames:
        if frame.get("full") and frame["seq"] not in published:
            continue  # a joiner before the first frame: the runner's state then
        built = published[frame["seq"]]
        if frame.get("full"):
            assert "history" in frame and frame["events"] == []
            assert frame["state"] == built["state"] and frame["t"] == built["t"]
        else:
            assert frame == built, f"frame {frame['seq']} differs from the runner's"
        compared += 1
    return compared


async def command(client: ScriptClient, cmd: dict[str, Any]) -> None:
    await client.comm.send_json_to(cmd)


async def test_a_script_client_stays_in_step_over_a_run_with_commands(
    published: dict[int, dict[str, Any]],
) -> None:
    session = await new_session()
    sim_id, _ = await create(ecommerce(), owner=session)
    client = ScriptClient(await connect(sim_id, session))
    first = await client.next()
    assert first["type"] == "frame" and first["full"]
    for cmd in (
        {"command": "speed", "value": 10},
        {"command": "start"},
        {"command": "consumer.failure_rate", "consumer": "payment", "value": 0.5},
        {"command": "consumer.down", "consumer": "notification"},
        {"command": "producer.rate", "producer": "order-service", "value": 35},
        {"command": "consumer.crash", "consumer": "inventory"},
        {"command": "consumer.up", "consumer": "notification"},
        {"command": "pause"},
        {"command": "step", "value": 2},
        {"command": "seek", "value": 3},  # back: the run is rebuilt, every figure changes
        {"command": "start"},
        {"command": "reset"},
        {"command": "start"},
    ):
        await command(client, cmd)
        await client.frames_for(0.4)
    assert check_in_step(client, published) > 60
    # most frames came as deltas, some whole (every 25th), and none needed a resync
    assert client.kinds["delta"] > 3 * client.kinds["whole"] > 0
    assert client.kinds["resync"] == 0 and client.kinds["slow"] == 0
    node_rebuilds_the_same_frames(client)
    await client.comm.disconnect()


async def test_a_paused_run_sends_a_frame_when_something_changes_not_every_second(
    published: dict[int, dict[str, Any]],
) -> None:
    session = await new_session()
    sim_id, _ = await create(ecommerce(), owner=session)
    client = ScriptClient(await connect(sim_id, session))
    await client.next()  # the joiner's full frame
    await asyncio.sleep(0.2)
    before = len(published)
    await asyncio.sleep(3.0)  # paused, nobody does anything: nothing to send
    assert len(published) == before
    started = time.monotonic()
    await command(client, {"command": "producer.rate", "producer": "order-service", "value": 7})
    frame = await client.next(timeout=2.0)
    while frame.get("type") != "frame":
        frame = await client.next(timeout=2.0)
    assert time.monotonic() - started < 0.5  # at once
    assert frame["state"]["producers"]["order-service"]["rate"] == 7
    assert len(published) == before + 1
    check_in_step(client, published)
    await client.comm.disconnect()


async def test_where_a_step_ends_is_sent_at_once_however_rarely_frames_may_go(
    published: dict[int, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # a heavy run on a busy server may send a frame only every few seconds; when it stops
    # moving (a step done, the end reached), where it stopped goes out at the next tick
    monkeypatch.setattr(LiveRunner, "frame_interval", lambda self: 5.0)
    session = await new_session()
    doc = ecommerce()
    doc["producers"][0]["rate"] = 400  # a step of 60 s takes several ticks
    sim_id, _ = await create(doc, owner=session)
    client = ScriptClient(await connect(sim_id, session))
    await client.next()
    started = time.monotonic()
    await command(client, {"command": "step", "value": 60})
    frame = await client.next(timeout=4.0)
    while frame.get("type") != "frame" or frame["state"].get("stepping_to") is not None:
        frame = await client.next(timeout=4.0)
    assert frame["t"] == pytest.approx(60.0)
    assert time.monotonic() - started < 4.0
    check_in_step(client, published)
    await client.comm.disconnect()


async def test_a_viewer_that_stops_acknowledging_gets_the_latest_frame_whole_then_deltas(
    published: dict[int, dict[str, Any]],
) -> None:
    session = await new_session()
    sim_id, _ = await create(ecommerce(), owner=session)
    client = ScriptClient(await connect(sim_id, session))
    await client.next()
    await command(client, {"command": "speed", "value": 10})
    await command(client, {"command": "start"})
    await client.frames_for(0.5)
    # it stops drawing: the server sends its window of frames, then holds back
    held_from = len(client.frames)
    while not await client.comm.receive_nothing(timeout=0.5):
        await client.next(ack=False)
    window = [f for f in client.frames[held_from:] if not f.get("full")]
    assert len(window) <= consumers.FRAME_WINDOW
    await asyncio.sleep(0.5)  # frames the runner makes meanwhile are not sent
    await client.comm.send_json_to({"type": "ack", "seq": client.frames[-1]["seq"]})
    caught_up = await client.next()
    while caught_up.get("type") != "frame":
        caught_up = await client.next()
    assert client.raw[-1]["type"] == "frame" and not caught_up["full"]  # it came whole
    assert caught_up["seq"] > window[-1]["seq"] + 5  # the latest, not the next
    await client.frames_for(1.0)  # and deltas again
    assert client.raw[-1]["type"] == "delta"
    check_in_step(client, published)
    assert client.kinds["resync"] == 0
    await client.comm.disconnect()


async def test_a_viewer_that_joins_late_or_asks_for_a_resync_is_in_step_at_once(
    published: dict[int, dict[str, Any]],
) -> None:
    session = await new_session()
    sim_id, _ = await create(ecommerce(), owner=session)
    first = ScriptClient(await connect(sim_id, session))
    await first.next()
    await command(first, {"command": "speed", "value": 10})
    await command(first, {"command": "start"})
    await command(first, {"command": "consumer.down", "consumer": "payment"})
    await first.frames_for(1.5)
    late = ScriptClient(await connect(sim_id))  # a student who opens the link now
    full = await late.next()
    while not full.get("full"):
        full = await late.next()
    assert full["t"] > 5
    await late.frames_for(1.0)
    assert late.kinds["delta"] > 10
    # asked for a resync (as a client whose delta did not apply does): one whole frame
    await late.comm.send_json_to({"type": "resync"})
    whole = await late.next()
    while late.raw[-1]["type"] != "frame":
        whole = await late.next()
    assert not whole["full"]
    await late.frames_for(0.5)
    await first.frames_for(0.2)
    check_in_step(late, published)
    check_in_step(first, published)
    # both saw the same frames where they overlap
    mine = {f["seq"]: f for f in first.frames if not f.get("full")}
    common = [f for f in late.frames if not f.get("full") and f["seq"] in mine]
    assert len(common) >= 5 and all(f == mine[f["seq"]] for f in common)
    for client in (first, late):
        await client.comm.disconnect()


async def test_a_delta_that_does_not_follow_what_a_socket_was_sent_is_not_sent_to_it(
    published: dict[int, dict[str, Any]],
) -> None:
    from channels.layers import get_channel_layer

    from dashboard.runner import frames_group

    session = await new_session()
    sim_id, _ = await create(ecommerce(), owner=session)
    client = ScriptClient(await connect(sim_id, session))
    full = await client.next()
    layer = get_channel_layer()
    assert layer is not None
    # a delta whose base this socket never had (a frame lost on the way): the consumer asks
    # the runner for the frame whole instead of sending something that cannot apply
    bogus = {"type": "delta", "seq": full["seq"] + 1, "base": full["seq"] + 7, "patch": {}}
    await layer.group_send(
        frames_group(sim_id),
        {
            "type": "sim.frame",
            "text": encode(bogus),
            "seq": full["seq"] + 1,
            "base": full["seq"] + 7,
            "epoch": full["epoch"],
            "sent": time.time(),
        },
    )
    # the run is paused: the next frame comes with the next change
    await command(client, {"command": "producer.rate", "producer": "order-service", "value": 7})
    following = await client.next()
    while following.get("type") != "frame":
        following = await client.next()
    assert client.raw[-1]["type"] == "frame" and not following["full"]
    assert following["seq"] in (full["seq"], full["seq"] + 1)
    assert client.kinds["resync"] == 0  # the client never saw the bogus delta
    check_in_step(client, published)
    await client.comm.disconnect()


async def test_a_viewer_sent_fewer_frames_than_the_run_makes_is_told_so_and_when_it_is_over(
    published: dict[int, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(consumers, "SLOW_WINDOW_SECONDS", 0.6)
    session = await new_session()
    sim_id, _ = await create(ecommerce(), owner=session)
    client = ScriptClient(await connect(sim_id, session))
    await client.next()
    await command(client, {"command": "start"})
    await client.frames_for(1.5)
    assert client.notices == []  # it keeps up: nothing to say
    end = time.monotonic() + 2.0
    while time.monotonic() < end:  # it stops drawing (a busy or hidden tab)
        if not await client.comm.receive_nothing(timeout=0.2):
            await client.next(ack=False)
    thinned = [n for n in client.notices if n["thinned"]]
    assert thinned, client.notices
    notice = thinned[-1]
    assert notice["sent"] < 0.9 * notice["published"] and notice["seconds"] >= 0.6
    assert set(notice) == {"type", "thinned", "sent", "published", "seconds"}
    await client.comm.send_json_to({"type": "ack", "seq": client.frames[-1]["seq"]})
    told = len(client.notices)
    end = time.monotonic() + 3.0
    while time.monotonic() < end and not any(not n["thinned"] for n in client.notices[told:]):
        await client.next()
    over = [n for n in client.notices[told:] if not n["thinned"]]
    assert over and over[0]["sent"] >= 0.9 * over[0]["published"]
    check_in_step(client, published)
    await client.comm.disconnect()


# --- the browser's function ------------------------------------------------------------------

NODE_SCRIPT = """
import { readFileSync } from "node:fs";
import { applyDelta } from "%s";
const messages = JSON.parse(readFileSync(process.argv[2], "utf8"));
let last = null;
const out = [];
for (const m of messages) {
  last = m.type === "delta" ? applyDelta(last, m) : m;
  out.push(last);
}
process.stdout.write(JSON.stringify(out));
"""


def node_rebuilds_the_same_frames(client: ScriptClient) -> None:
    """static/js/live.js's applyDelta, given what the client was sent, rebuilds its frames."""
    node = shutil.which("node")
    if node is None:
        return  # the Node unit tests cover it where Node is installed (CI has it)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "rebuild.mjs"
        script.write_text(NODE_SCRIPT % (ROOT / "static/js/live.js").as_uri())
        data = Path(tmp) / "messages.json"
        data.write_text(json.dumps(client.raw))
        done = subprocess.run(
            [node, str(script), str(data)], capture_output=True, text=True, timeout=60
        )
    assert done.returncode == 0, done.stderr
    rebuilt = json.loads(done.stdout)
    assert len(rebuilt) == len(client.frames)
    for mine, theirs in zip(client.frames, rebuilt, strict=True):
        assert theirs == mine


# --- two processes ---------------------------------------------------------------------------


def test_a_viewer_on_the_other_process_follows_the_deltas_and_resyncs_across_redis(
    two_servers: list[str],  # noqa: F811
) -> None:
    from websockets.sync.client import connect as ws_connect

    a, b = two_servers
    created = post(f"{a}/api/simulations", ecommerce())  # the runner lives in process A
    sim_id, token = created["id"], created["control_token"]
    path = f"/ws/simulations/{sim_id}/"

    class Follower:
        def __init__(self, ws: Any) -> None:
            self.ws = ws
            self.frame: dict[str, Any] | None = None
            self.frames: dict[int, dict[str, Any]] = {}
            self.kinds = {"delta": 0, "whole": 0, "resync": 0}

        def read(self, seconds: float, *, ack: bool = True) -> None:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                try:
                    m = json.loads(self.ws.recv(timeout=0.3))
                except TimeoutError:
                    continue
                if m.get("type") == "delta":
                    last = self.frame
                    if last is None or last["seq"] != m["base"]:
                        self.frame = None
                        self.kinds["resync"] += 1
                        self.ws.send('{"type": "resync"}')
                        continue
                    body = {k: v for k, v in last.items() if k not in ENVELOPE}
                    body = SCRIPT_APPLY(body, m["patch"], m.get("remove"))
                    m = {"type": "frame", "seq": m["seq"], "full": False, **body}
                    self.kinds["delta"] += 1
                elif m.get("type") == "frame" and not m.get("full"):
                    self.kinds["whole"] += 1
                if m.get("type") == "frame":
                    self.frame = m
                    if not m.get("full"):
                        self.frames[m["seq"]] = m
                        if ack:
                            self.ws.send(json.dumps({"type": "ack", "seq": m["seq"]}))

    with (
        ws_connect(a.replace("http", "ws") + path, origin=a) as on_a,
        ws_connect(b.replace("http", "ws") + path, origin=b) as on_b,
    ):
        fa, fb = Follower(on_a), Follower(on_b)
        for cmd in (
            {"command": "speed", "value": 10},
            {"command": "start"},
            {"command": "consumer.down", "consumer": "payment"},
        ):
            post(f"{b}/api/simulations/{sim_id}/commands", cmd, token)
        fa.read(1.0)
        fb.read(1.0)
        fb.read(1.0, ack=False)  # B's viewer stops drawing for a while ...
        fa.read(1.0)
        post(
            f"{b}/api/simulations/{sim_id}/commands",
            {"command": "consumer.up", "consumer": "payment"},
            token,
        )
        fb.read(0.1, ack=False)
        if fb.frame is not None:
            on_b.send(json.dumps({"type": "ack", "seq": fb.frame["seq"]}))
        fb.read(2.0)  # ... then again: the latest frame whole, across Redis, then deltas
        fa.read(1.0)
    assert fb.kinds["whole"] >= 1 and fb.kinds["delta"] > 20 and fa.kinds["delta"] > 20
    common = sorted(set(fa.frames) & set(fb.frames))
    assert len(common) >= 10
    for seq in common:
        assert fa.frames[seq] == fb.frames[seq]
    with urllib.request.urlopen(f"{a}/api/simulations/{sim_id}", timeout=10) as r:
        assert json.load(r)["groups"]["payment"]["status"] != "down"
