"""Soak: one daphne process serving a class while hostile clients attack it.

    python bench/soak.py [--seconds 300 | --quick] [--viewers 30] [--speed 5] [--json]

The server is started as bench/stream.py starts it (`manage.py migrate` on a temporary SQLite
database, one `daphne` process, DJANGO_DEBUG=1, the in-memory channel layer); its log is kept in
test-artifacts/soak-daphne.log (--log).

The class (from 127.0.0.1): one simulation of the e-commerce preset (duration 3600 s, --speed,
started), watched by --viewers WebSocket viewers that behave as the browser does: an Origin
header equal to the server's URL, {"type": "ack", "seq": N} after each regular frame, and
{"type": "ping"} every 20 s. A controller posts `producer.rate` through the HTTP API (Bearer
control token) every --interval seconds, alternating unique values; command-to-frame latency is
measured as stream.py measures it (the request about to be sent -> a viewer's first frame that
shows the new rate).

The attackers, all at once, for the whole window, each in its own task(s):

1. heavy: a second client (from 127.0.0.2, so the per-address limit is its own) creates
   simulations as heavy as the server accepts (one topic of 64 partitions, one producer at
   20,000 events/s, one consumer with 64 instances, duration 3600 s), at speed 100, started,
   until the server answers 429; one acking, pinging viewer on each keeps them running. One
   more at 50,000 events/s should be refused with 400.
2. steps: every 5 s {"command": "step", "value": 600} on the first heavy simulation.
3. ack flooder: a viewer of the class's simulation that reads its first frame and then never
   reads again, but acknowledges 125 times a second the newest seq the class has seen and, in
   turn, the 60 before it. The server should close it once 1 MiB waits unread for it; it then
   reconnects.
4. junk (from 127.0.0.3): a read-only socket sending messages that are not JSON, JSON nested
   8,000 and 10,000 deep, 20 KB, binary, of unknown types, acks without a valid seq, commands;
   and HTTP: a YAML alias bomb to the scenario editor's validate action and to the create
   form (with a session and CSRF token), JSON nested 300 and 50,000 deep, a 10 MB body
   (413 expected), text/plain (415), a cross-origin POST (403), no token (403), bad record
   reads. Every answer is counted by status; a 5xx or no answer is a failure figure.
5. idle: 50 TCP connections that never send a byte (and only notice when the server closes).

Then the correctness check: the attackers stop, the class's simulation is paused, its state is
read (GET /api/simulations/<id>), and once the server has saved that time (it saves the command
log and the time reached every 2 s) the stored record is read from the SQLite database and
rebuilt here, from scratch: Simulation(parse_scenario(scenario), seed), each logged command
replayed at its time, then run to the saved time. Its counts must equal the live state's.

It is a benchmark, not a test: it exits 0 whatever the figures (2 when the setup fails, 130 when
interrupted); every process it started is stopped either way.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import random
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
import urllib.parse
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import stream
from stream import ACK, HEADER, Server, SetupError, Viewer

ROOT = stream.ROOT
sys.path.insert(0, str(ROOT))  # the engine, for the rebuild

HEAVY_ADDR = "127.0.0.2"  # the heavy client's address: its own per-address limit
JUNK_ADDR = "127.0.0.3"
PING_EVERY = 20.0  # as the page does
HEAVY_RATE = 20_000.0  # the most one producer may send to one reader (simulator/cost.py)
REFUSED_RATE = 50_000.0
HEAVY_PARTITIONS = 64
HEAVY_SPEED = 100.0
HEAVY_ATTEMPTS = 20  # creations tried before giving up on ever hearing 429
STEP_EVERY = 5.0
STEP_VALUE = 600
FLOOD_BURST = 5  # acks per burst ...
FLOOD_EVERY = 0.04  # ... every 40 ms: 125 acks a second
FLOOD_REACH = 60  # seqs behind the newest that it acknowledges too (3 s of frames)
IDLE_SOCKETS = 50
JUNK_WS_EVERY = 0.05
JUNK_HTTP_EVERY = 2.0
BIG_BODY_EVERY = 5  # junk HTTP rounds between two 10 MB bodies
BIG_BODY = 10 * 1024 * 1024
SAVE_WAIT = 3.0  # the runner saves every 2 s
TARGET_FPS = 18.0
TARGET_P99_MS = 250.0
# Each simulation keeps at most 200,000 records (simulator.simulation.RECORDS_KEPT, ~400 B each):
# ~80 MB for each of the six, plus the interpreter; twice that leaves room for everything else.
RSS_BOUND_MB = 1024.0
ATTACKS = ("heavy", "steps", "flood", "junk", "idle")
LOG_PATH = ROOT / "test-artifacts" / "soak-daphne.log"
# what the rebuild is compared on: exact counts
PRODUCER_FIELDS = ("produced", "rejected", "rate")
TOPIC_FIELDS = ("produced", "stored")
GROUP_FIELDS = (
    "processed",
    "lag",
    "records_lag",
    "failures",
    "retries",
    "dead_lettered",
    "duplicates",
    "redelivered",
    "in_flight",
)


# --- HTTP with headers, raw bodies and a chosen source address -----------------------------


@dataclass
class Reply:
    status: int  # 0: no answer (reset, timeout)
    headers: list[tuple[str, str]]
    body: bytes
    seconds: float
    error: str = ""

    def header(self, name: str) -> str:
        return next((v for k, v in self.headers if k == name.lower()), "")

    def cookies(self) -> dict[str, str]:
        out = {}
        for k, v in self.headers:
            if k == "set-cookie":
                name, _, rest = v.partition("=")
                out[name.strip()] = rest.split(";", 1)[0]
        return out

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"null")
        except ValueError:
            return self.body.decode(errors="replace")


async def request(
    base: str,
    method: str,
    path: str,
    *,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    local: str | None = None,
    timeout: float = 60.0,
) -> Reply:
    """One HTTP/1.1 request on a fresh connection; never raises for a network failure."""
    parts = urllib.parse.urlsplit(base)
    start = time.perf_counter()
    head = {
        "Host": f"{parts.hostname}:{parts.port}",
        "Connection": "close",
        "Content-Length": str(len(body)),
        **(headers or {}),
    }
    raw = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in head.items())
    writer = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(
                parts.hostname, parts.port, local_addr=(local, 0) if local else None
            )
            writer.write(raw.encode() + b"\r\n" + body)
            await writer.drain()
            data = await reader.read()
    except (OSError, TimeoutError) as e:
        return Reply(0, [], b"", time.perf_counter() - start, f"{type(e).__name__}: {e}")
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
    seconds = time.perf_counter() - start
    head_raw, _, payload = data.partition(b"\r\n\r\n")
    lines = head_raw.decode("latin1").split("\r\n")
    try:
        status = int(lines[0].split(" ", 2)[1])
    except (IndexError, ValueError):
        return Reply(0, [], data, seconds, f"no HTTP answer: {data[:80]!r}")
    headers_out = []
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers_out.append((k.strip().lower(), v.strip()))
    if any(k == "transfer-encoding" and "chunked" in v.lower() for k, v in headers_out):
        payload = stream.dechunk(payload)
    return Reply(status, headers_out, payload, seconds)


def json_post(body: Any, token: str | None = None) -> dict[str, Any]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return {"body": json.dumps(body).encode(), "headers": headers}


# --- the attackers' records ----------------------------------------------------------------


@dataclass
class Heavy:
    sim_id: str
    token: str
    ws_path: str
    frames: int = 0
    reconnects: int = 0
    speeds: list[float] = field(default_factory=list)  # effective_speed, sampled
    behind: int = 0
    sampled: int = 0
    closed: str = ""


@dataclass
class Attack:
    heavy: list[Heavy] = field(default_factory=list)
    create_statuses: Counter[int] = field(default_factory=Counter)
    create_errors: list[str] = field(default_factory=list)
    refused_status: int = 0  # the 50,000 events/s scenario's answer
    refused_reason: str = ""
    steps: list[tuple[int, float, Any]] = field(default_factory=list)  # (status, seconds, result)
    flood_connections: int = 0
    flood_server_closes: int = 0
    flood_other_ends: Counter[str] = field(default_factory=Counter)
    flood_lifetimes: list[float] = field(default_factory=list)
    flood_acks: int = 0
    ws_sent: Counter[str] = field(default_factory=Counter)
    ws_replies: Counter[str] = field(default_factory=Counter)
    ws_closes: Counter[str] = field(default_factory=Counter)
    ws_reply_seconds: list[float] = field(default_factory=list)
    http: dict[str, Counter[int]] = field(default_factory=dict)
    http_expected: dict[str, int] = field(default_factory=dict)
    http_errors: list[str] = field(default_factory=list)
    idle_opened: int = 0
    idle_server_closes: int = 0
    idle_lifetimes: list[float] = field(default_factory=list)
    idle_bytes: int = 0
    idle_open_now: int = 0


@dataclass
class Junk:
    """One junk HTTP request and the status a sound server answers it with."""

    name: str
    expect: int
    method: str
    path: str
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


def heavy_doc(rate: float) -> dict[str, Any]:
    return {
        "name": "soak heavy",
        "seed": 1,
        "duration": 3600,
        "topics": [{"name": "firehose", "partitions": HEAVY_PARTITIONS}],
        "producers": [{"name": "blaster", "topic": "firehose", "event": "Blast", "rate": rate}],
        "consumers": [
            {
                "name": "sink",
                "topics": ["firehose"],
                "instances": HEAVY_PARTITIONS,
                "processing": {"dist": "exponential", "mean_ms": 2},
            }
        ],
    }


def alias_bomb(levels: int = 9) -> str:
    """The billion laughs in YAML: each level repeats the one before nine times."""
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def nested_json(depth: int) -> bytes:
    """A scenario whose name is ``depth`` lists deep."""
    return b'{"name": ' + b"[" * depth + b"]" * depth + b', "duration": 10}'


SILENT = {"ack seq 10**30"}  # junk the server rightly ignores: an ack of a frame never sent


def junk_ws_messages() -> list[tuple[str, str | bytes]]:
    return [
        ("not json", "this is not JSON {"),
        ("10,000 deep", "[" * 10_000 + "]" * 10_000),
        ("8,000 deep", "[" * 8_000 + "]" * 8_000),
        ("20 KB", json.dumps({"type": "ping", "pad": "x" * 20_000})),
        ("binary", b"\x00\xff" * 100),
        ("not an object", "[1, 2, 3]"),
        ("unknown type", '{"type": "subscribe", "topic": "*"}'),
        ("ack without seq", '{"type": "ack"}'),
        ("ack seq true", '{"type": "ack", "seq": true}'),
        ("ack seq 10**30", '{"type": "ack", "seq": 1000000000000000000000000000000}'),
        ("trace bad id", '{"type": "trace", "correlation_id": "x"}'),
        ("read-only pause", '{"command": "pause"}'),
        ("read-only rate", '{"command": "producer.rate", "producer": "order-service", "value": 1}'),
        ("read-only reset", '{"command": "reset"}'),
    ]


# --- the soak ------------------------------------------------------------------------------


class Soak(stream.Bench):
    """The class (stream.Bench's viewers, controller and latency matching) plus attackers."""

    def __init__(self, args: argparse.Namespace, server: Server, db: Path) -> None:
        super().__init__(args, [server])
        self.url = server.url
        self.pid = server.pid
        self.db = db
        self.latest_seq = 0  # the class's newest regular frame, for the ack flooder
        self.attack = Attack()
        self.samples: list[tuple[float, int, float]] = []  # (perf_counter, RSS kB, CPU s)
        self.halt = asyncio.Event()  # the attackers stop
        self.teardown = ""

    async def create(self) -> None:
        import yaml

        doc = yaml.safe_load((stream.PRESETS / "ecommerce.yaml").read_text())
        doc["duration"] = 3600
        status, body = await stream.http(self.url, "POST", "/api/simulations", doc)
        if status != 201:
            raise SetupError(f"POST /api/simulations answered {status}: {stream.brief(body)}")
        self.sim_id, self.token, self.ws_path = body["id"], body["control_token"], body["ws"]
        for command in ({"command": "speed", "value": self.args.speed}, {"command": "start"}):
            status, body = await self.command(command)
            if status != 200:
                raise SetupError(f"command {command} answered {status}: {stream.brief(body)}")

    def ws_uri(self, path: str) -> str:
        return "ws" + self.url[4:] + path

    async def _pinger(self, ws: Any) -> None:
        await asyncio.sleep(random.uniform(0, PING_EVERY))  # not all at once
        while True:
            await ws.send('{"type": "ping"}')
            await asyncio.sleep(PING_EVERY)

    async def watch(self, viewer: Viewer, gate: asyncio.Semaphore) -> None:
        """A browser-like viewer: acks each regular frame with its seq, pings every 20 s."""
        from websockets.asyncio.client import connect
        from websockets.typing import Origin

        try:
            async with gate:
                ws = await connect(
                    self.ws_uri(self.ws_path),
                    origin=Origin(self.url),
                    max_size=None,
                    open_timeout=30,
                )
            async with ws:
                pinger = asyncio.create_task(self._pinger(ws))
                try:
                    async for message in ws:
                        seq = self.receive(viewer, message)
                        if seq is not None:
                            self.latest_seq = max(self.latest_seq, seq)
                            await ws.send(ACK % seq)
                        if self.stop.is_set():
                            break
                finally:
                    pinger.cancel()
        except Exception as e:  # reported, not fatal
            viewer.closed = f"{type(e).__name__}: {e}"
        finally:
            viewer.joined.set()

    # --- 1 and 2: heavy simulations and long steps --------------------------------------

    async def heavy_side(self) -> None:
        a = self.attack
        viewers = []
        for _ in range(HEAVY_ATTEMPTS):
            if self.halt.is_set():
                break
            r = await request(
                self.url,
                "POST",
                "/api/simulations",
                local=HEAVY_ADDR,
                **json_post(heavy_doc(HEAVY_RATE)),
            )
            a.create_statuses[r.status] += 1
            if r.status != 201:
                if r.status != 429:
                    a.create_errors.append(f"{r.status}: {stream.brief(r.json())}"[:300])
                break
            body = r.json()
            heavy = Heavy(body["id"], body["control_token"], body["ws"])
            for command in ({"command": "speed", "value": HEAVY_SPEED}, {"command": "start"}):
                c = await request(
                    self.url,
                    "POST",
                    f"/api/simulations/{heavy.sim_id}/commands",
                    local=HEAVY_ADDR,
                    **json_post(command, heavy.token),
                )
                if c.status != 200:
                    a.create_errors.append(f"{command}: {c.status} {c.body[:200]!r}")
            a.heavy.append(heavy)
            viewers.append(asyncio.create_task(self.heavy_viewer(heavy)))
        r = await request(
            self.url,
            "POST",
            "/api/simulations",
            local=HEAVY_ADDR,
            **json_post(heavy_doc(REFUSED_RATE)),
        )
        a.refused_status = r.status
        a.refused_reason = stream.brief(r.json())[:200]
        try:
            await self.halt.wait()
        finally:
            for task in viewers:
                task.cancel()
            await asyncio.gather(*viewers, return_exceptions=True)

    async def heavy_viewer(self, heavy: Heavy) -> None:
        from websockets.asyncio.client import connect
        from websockets.typing import Origin

        while True:
            try:
                async with await connect(
                    self.ws_uri(heavy.ws_path),
                    origin=Origin(self.url),
                    max_size=None,
                    open_timeout=30,
                ) as ws:
                    pinger = asyncio.create_task(self._pinger(ws))
                    try:
                        async for message in ws:
                            text = message if isinstance(message, str) else message.decode()
                            m = HEADER.match(text)
                            if m is None or m.group(3) == "true":
                                continue
                            heavy.frames += 1
                            await ws.send(ACK % int(m.group(1)))
                            if heavy.frames % 20 == 0:  # about once a second
                                st = json.loads(text)["state"]
                                heavy.sampled += 1
                                heavy.behind += bool(st.get("behind"))
                                heavy.speeds.append(float(st.get("effective_speed") or 0.0))
                    finally:
                        pinger.cancel()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                heavy.closed = f"{type(e).__name__}: {e}"[:200]
            heavy.reconnects += 1
            await asyncio.sleep(1.0)

    async def steps(self) -> None:
        while not self.attack.heavy:
            await asyncio.sleep(0.5)
        target = self.attack.heavy[0]
        next_at = time.perf_counter()
        while True:
            r = await request(
                self.url,
                "POST",
                f"/api/simulations/{target.sim_id}/commands",
                local=HEAVY_ADDR,
                **json_post({"command": "step", "value": STEP_VALUE}, target.token),
            )
            body = r.json()
            result = body.get("result") if isinstance(body, dict) else None
            self.attack.steps.append((r.status, r.seconds, result))
            next_at += STEP_EVERY
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))

    # --- 3: the ack flooder -------------------------------------------------------------

    async def ack_flooder(self) -> None:
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed
        from websockets.typing import Origin

        a = self.attack
        while True:
            opened = time.perf_counter()
            try:
                # no keepalive pings: their pongs would never be read, and the client would
                # close the socket itself; max_queue 1: stop taking frames off the socket at once
                ws = await connect(
                    self.ws_uri(self.ws_path),
                    origin=Origin(self.url),
                    max_size=None,
                    ping_interval=None,
                    max_queue=1,
                    open_timeout=30,
                )
                a.flood_connections += 1
                opened = time.perf_counter()
                await ws.recv()  # the full frame; never read again
                back = 0
                while True:
                    # the newest seq, and older ones in turn: a saturated server sends to this
                    # socket late, so the seqs it has outstanding may be well behind the newest
                    latest = self.latest_seq
                    seqs = [latest, latest - 1]
                    for _ in range(FLOOD_BURST - 2):
                        back = back % FLOOD_REACH + 1
                        seqs.append(latest - 1 - back)
                    for seq in seqs:
                        await ws.send(ACK % seq)
                    a.flood_acks += len(seqs)
                    await asyncio.sleep(FLOOD_EVERY)
            except asyncio.CancelledError:
                raise
            except ConnectionClosed as e:
                # the server aborts the connection (no close frame): 1006 on this side
                if e.rcvd is None and e.sent is None:
                    a.flood_server_closes += 1
                    a.flood_lifetimes.append(time.perf_counter() - opened)
                else:
                    a.flood_other_ends[f"closed {e.rcvd or e.sent}"[:80]] += 1
            except Exception as e:
                a.flood_other_ends[f"{type(e).__name__}: {e}"[:80]] += 1
            await asyncio.sleep(0.5)

    # --- 4: junk ------------------------------------------------------------------------

    async def junk_ws(self) -> None:
        from websockets.asyncio.client import connect
        from websockets.typing import Origin

        a = self.attack
        items = junk_ws_messages()
        i = 0
        while True:
            try:
                async with await connect(
                    self.ws_uri(self.ws_path),
                    origin=Origin(self.url),
                    max_size=None,
                    open_timeout=30,
                ) as ws:
                    waiting: deque[float] = deque()  # send times of messages due an answer

                    reader = asyncio.create_task(self.junk_replies(ws, waiting))
                    try:
                        while not reader.done():
                            name, message = items[i % len(items)]
                            i += 1
                            if name not in SILENT:
                                waiting.append(time.perf_counter())
                            await ws.send(message)
                            a.ws_sent[name] += 1
                            await asyncio.sleep(JUNK_WS_EVERY)
                        reader.result()
                    finally:
                        reader.cancel()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                a.ws_closes[f"{type(e).__name__}: {e}"[:80]] += 1
            await asyncio.sleep(0.5)

    async def junk_replies(self, ws: Any, waiting: deque[float]) -> None:
        """Count the junk socket's answers; each one answers the oldest message due one."""
        a = self.attack
        async for message in ws:
            text = message if isinstance(message, str) else message.decode()
            if HEADER.match(text):
                a.ws_replies["frame"] += 1  # never acked: at most 8 come
                continue
            doc = json.loads(text)
            kind = doc.get("type")
            key = f"error: {doc.get('message', '')}"[:60] if kind == "error" else kind
            a.ws_replies[str(key)] += 1
            if waiting:  # a socket's answers come in order
                a.ws_reply_seconds.append(time.perf_counter() - waiting.popleft())

    async def junk_http(self) -> None:
        a = self.attack
        url = self.url
        form = {"Content-Type": "application/x-www-form-urlencoded", "Origin": url}
        # a browser session and its CSRF token, for the forms
        home = await request(url, "GET", "/", local=JUNK_ADDR)
        cookies = home.cookies()
        cookie = "; ".join(f"{k}={v}" for k, v in cookies.items())
        csrf = cookies.get("csrftoken", "")
        new = await request(
            url,
            "POST",
            "/scenarios/new",
            local=JUNK_ADDR,
            body=urllib.parse.urlencode({"csrfmiddlewaretoken": csrf}).encode(),
            headers={**form, "Cookie": cookie},
        )
        editor = new.header("location") if new.status == 302 else ""
        if not editor:
            a.http_errors.append(f"could not make a saved scenario: {new.status}")
        bomb = alias_bomb()

        def formed(**fields: str) -> dict[str, Any]:
            data = urllib.parse.urlencode({"csrfmiddlewaretoken": csrf, **fields}).encode()
            return {"body": data, "headers": {**form, "Cookie": cookie}}

        api = "/api/simulations"
        sim = f"{api}/{self.sim_id}"
        as_json = {"Content-Type": "application/json"}
        valid = json.dumps({"name": "x", "duration": 10}).encode()
        junk = [
            Junk("YAML alias bomb -> editor validate", 200, "POST", editor or "/scenarios/x/",
                 **formed(action="validate", name="bomb", text=bomb)),
            Junk("YAML alias bomb -> create form", 302, "POST", "/simulations/",
                 **formed(scenario=bomb)),
            Junk("JSON 300 deep -> API", 400, "POST", api, nested_json(300), as_json),
            Junk("JSON 50,000 deep -> API", 400, "POST", api, nested_json(50_000), as_json),
            Junk("text/plain -> API", 415, "POST", api, valid, {"Content-Type": "text/plain"}),
            Junk("cross-origin -> API", 403, "POST", api, valid,
                 {**as_json, "Origin": "http://evil.example"}),
            Junk("command without token", 403, "POST", f"{sim}/commands",
                 b'{"command": "pause"}', as_json),
            Junk("command, wrong token", 403, "POST", f"{sim}/commands",
                 **json_post({"command": "reset"}, "not-the-token")),
            Junk("records, bad partition", 400, "GET",
                 f"{sim}/records?topic=orders&partition=999&offset=-5&limit=99999"),
            Junk("records, bad topic", 400, "GET", f"{sim}/records?topic=%00%ff&partition=x"),
            Junk("unknown simulation", 404, "GET", f"{api}/nope"),
            Junk("GET on the create API", 405, "GET", api),
        ]  # fmt: skip
        big = Junk("10 MB body -> API", 413, "POST", api, b"[" + b"1," * (BIG_BODY // 2) + b"1]",
                   as_json)  # fmt: skip
        for item in [*junk, big]:
            a.http.setdefault(item.name, Counter())
            a.http_expected[item.name] = item.expect
        rounds = 0
        while True:
            started = time.perf_counter()
            for item in junk + ([big] if rounds % BIG_BODY_EVERY == 0 else []):
                r = await request(
                    url, item.method, item.path, body=item.body, headers=item.headers,
                    local=JUNK_ADDR,
                )  # fmt: skip
                a.http[item.name][r.status] += 1
                if r.status == 0 or r.status >= 500:
                    error = r.error or repr(r.body[:200])
                    a.http_errors.append(f"{item.name}: {r.status} {error}"[:300])
            rounds += 1
            await asyncio.sleep(max(0.0, JUNK_HTTP_EVERY - (time.perf_counter() - started)))

    # --- 5: idle sockets ----------------------------------------------------------------

    async def idle_socket(self) -> None:
        a = self.attack
        parts = urllib.parse.urlsplit(self.url)
        while True:
            try:
                reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
            except OSError:
                await asyncio.sleep(1.0)
                continue
            a.idle_opened += 1
            a.idle_open_now += 1
            opened = time.perf_counter()
            try:
                # never a byte written; this only waits for the server to give up on us
                data = await reader.read(65536)
                while data:
                    a.idle_bytes += len(data)
                    data = await reader.read(65536)
                a.idle_server_closes += 1
                a.idle_lifetimes.append(time.perf_counter() - opened)
            except OSError:
                a.idle_server_closes += 1
                a.idle_lifetimes.append(time.perf_counter() - opened)
            finally:
                a.idle_open_now -= 1
                writer.close()
            await asyncio.sleep(1.0)

    # --- measuring ----------------------------------------------------------------------

    def rss_kb(self) -> int:
        assert self.pid is not None
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    async def sample(self) -> None:
        assert self.pid is not None
        while True:
            with contextlib.suppress(OSError):
                self.samples.append(
                    (time.perf_counter(), self.rss_kb(), stream.cpu_seconds(self.pid))
                )
            await asyncio.sleep(1.0)

    async def run(self) -> dict[str, Any]:
        args = self.args
        assert self.pid is not None
        self.viewers = [Viewer(i, "A", probe=(i == 0)) for i in range(args.viewers)]
        gate = asyncio.Semaphore(stream.CONNECT_CONCURRENCY)
        started = time.perf_counter()
        watchers = [asyncio.create_task(self.watch(v, gate)) for v in self.viewers]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                asyncio.gather(*(v.joined.wait() for v in self.viewers)), stream.JOIN_TIMEOUT
            )
        connect_s = time.perf_counter() - started
        if all(v.closed for v in self.viewers):
            self.stop.set()
            raise SetupError(
                f"no viewer could connect: {sorted({v.closed for v in self.viewers})[:3]}"
            )
        await asyncio.sleep(2.0)  # warm up

        rss_start = self.rss_kb()
        sampler = asyncio.create_task(self.sample())
        wait0 = stream.runqueue_wait(self.pid)
        cpu0, own0, (busy0, total0) = (
            stream.cpu_seconds(self.pid),
            time.process_time(),
            stream.machine_cpu(),
        )
        load0 = os.getloadavg()
        t0 = time.perf_counter()
        self.samples.append((t0, rss_start, cpu0))
        makers = {
            "heavy": lambda: [self.heavy_side()],
            "steps": lambda: [self.steps()],
            "flood": lambda: [self.ack_flooder()],
            "junk": lambda: [self.junk_ws(), self.junk_http()],
            "idle": lambda: [self.idle_socket() for _ in range(IDLE_SOCKETS)],
        }
        attackers = [asyncio.create_task(coro) for name in args.attacks for coro in makers[name]()]
        controller = asyncio.create_task(self.control(t0 + args.seconds))
        deadline = t0 + args.seconds
        while time.perf_counter() < deadline:
            await asyncio.sleep(min(30.0, deadline - time.perf_counter()))
            self.say_progress(t0)
        t1 = time.perf_counter()
        cpu1, own1, (busy1, total1) = (
            stream.cpu_seconds(self.pid),
            time.process_time(),
            stream.machine_cpu(),
        )
        wait1 = stream.runqueue_wait(self.pid)
        rss_end = self.rss_kb()
        load1 = os.getloadavg()
        await controller
        await asyncio.sleep(stream.GRACE)
        self.halt.set()
        self.teardown = dt.datetime.now().strftime("%Y-%m-%d %H:%M:%S,%f")[:23]
        for task in attackers:
            task.cancel()  # heavy_side stops its viewers as it ends
        await asyncio.gather(*attackers, return_exceptions=True)
        sampler.cancel()
        self.stop.set()
        for task in watchers:
            task.cancel()
        await asyncio.gather(*watchers, sampler, return_exceptions=True)

        check = await self.rebuild_check()
        rss_after = self.rss_kb()
        machine = {
            "server_cpu_seconds": round(cpu1 - cpu0, 2),
            "server_runqueue_wait_seconds": round(wait1 - wait0, 2),
            "client_cpu_seconds": round(own1 - own0, 2),
            "other_processes_cpu_seconds": round(
                max(0.0, (busy1 - busy0) - (cpu1 - cpu0) - (own1 - own0)), 2
            ),
            "machine_busy_seconds": round(busy1 - busy0, 2),
            "machine_cpu_seconds": round(total1 - total0, 2),
            "load_avg": [round(load0[0], 2), round(load1[0], 2)],
        }
        rss = {"start": rss_start, "end": rss_end, "after": rss_after}
        return self.figures_soak(t0, t1, connect_s, machine, rss, check)

    def say_progress(self, t0: float) -> None:
        if self.args.quiet or not self.samples:
            return
        _, rss, _ = self.samples[-1]
        a = self.attack
        print(
            f"# {time.perf_counter() - t0:5.0f} s: RSS {rss / 1024:.0f} MB, latest seq "
            f"{self.latest_seq}, heavy {len(a.heavy)}, steps {len(a.steps)}, flooder closed "
            f"{a.flood_server_closes}x, junk HTTP {sum(sum(c.values()) for c in a.http.values())}",
            file=sys.stderr,
            flush=True,
        )

    # --- correctness: the live state against a clean rebuild from the stored log ----------

    async def rebuild_check(self) -> dict[str, Any]:
        out: dict[str, Any] = {"equal": False, "differences": [], "error": ""}
        status, body = await self.command({"command": "pause"})
        if status != 200:
            out["error"] = f"pause answered {status}: {stream.brief(body)}"
            return out
        status, live = await stream.http(self.url, "GET", f"/api/simulations/{self.sim_id}")
        if status != 200:
            out["error"] = f"GET state answered {status}: {stream.brief(live)}"
            return out
        out["t"] = live["t"]
        await asyncio.sleep(SAVE_WAIT)
        record = None
        for _ in range(8):  # a save every 2 s; the database may be busy a moment
            with contextlib.suppress(sqlite3.OperationalError):
                record = read_record(self.db, self.sim_id)
                if record is not None and round(record["sim_time"], 6) == live["t"]:
                    break
            await asyncio.sleep(1.0)
        if record is None:
            out["error"] = "could not read the stored record"
            return out
        out["saved_t"] = record["sim_time"]
        out["commands_logged"] = len(record["command_log"])
        if round(record["sim_time"], 6) != live["t"]:
            out["error"] = f"saved time {record['sim_time']} is not the live t {live['t']}"
            return out
        started = time.perf_counter()
        rebuilt = await asyncio.to_thread(rebuild, record)
        out["rebuild_seconds"] = round(time.perf_counter() - started, 2)
        out["differences"] = compare(live, rebuilt)
        out["equal"] = not out["differences"]
        out["compared"] = sum(1 for _ in compared_paths(live))
        return out

    # --- figures ------------------------------------------------------------------------

    def figures_soak(
        self,
        t0: float,
        t1: float,
        connect_s: float,
        machine: dict[str, Any],
        rss: dict[str, int],
        check: dict[str, Any],
    ) -> dict[str, Any]:
        span = t1 - t0
        in_window = [
            seq
            for v in self.viewers
            for (t, _, seq, full) in v.messages
            if t0 <= t <= t1 and seq >= 0 and not full
        ]
        first, last = (min(in_window), max(in_window)) if in_window else (0, -1)
        published = last - first + 1
        fps, delivered = [], []
        for v in self.viewers:
            regular = [(t, seq) for (t, _, seq, full) in v.messages if seq >= 0 and not full]
            fps.append(sum(1 for t, _ in regular if t0 <= t <= t1) / span)
            got = {seq for _, seq in regular if first <= seq <= last}
            delivered.append(100.0 * len(got) / published if published > 0 else 0.0)
        window = [c for c in self.commands if t0 <= c.sent <= t1]
        measured = {c.index for c in window}
        samples = sorted(
            1000.0 * s
            for v in self.viewers
            for s, k in zip(v.samples, v.sample_command, strict=True)
            if k in measured
        )
        missing = len(window) * len(self.viewers) - len(samples)
        probe = self.viewers[0]
        rtts = sorted(1000.0 * c.rtt for c in window if c.status)
        a = self.attack
        steps_ok = [s for s in a.steps if s[0] == 200]
        timeline = []
        for i in range(0, len(self.samples), 30):
            chunk = self.samples[i : i + 31]
            if len(chunk) > 1:
                (ta, _, ca), (tb, rb, cb) = chunk[0], chunk[-1]
                timeline.append(
                    {
                        "at_s": round(tb - t0),
                        "rss_mb": round(rb / 1024),
                        "cpu_percent": round(100.0 * (cb - ca) / (tb - ta)),
                    }
                )
        rss_max = max((r for _, r, _ in self.samples), default=rss["end"])
        log = daphne_log_figures(self.args.log, self.teardown)
        http = {name: dict(sorted(c.items())) for name, c in a.http.items()}
        http_5xx = sum(n for c in a.http.values() for s, n in c.items() if s >= 500)
        http_none = sum(c.get(0, 0) for c in a.http.values())
        unexpected = {
            name: {s: n for s, n in c.items() if s != a.http_expected[name]}
            for name, c in a.http.items()
        }
        result: dict[str, Any] = {
            "date": self.args.started,
            "git": self.args.git,
            "command": "bench/soak.py " + " ".join(self.args.argv),
            "nproc": os.cpu_count(),
            "python": platform.python_version(),
            "seconds": round(span, 1),
            "viewers": len(self.viewers),
            "speed": self.args.speed,
            "connect_seconds": round(connect_s, 2),
            "frames_published": published,
            "frames_per_second_published": round(published / span, 2),
            "frames_per_second_per_viewer": spread(fps),
            "delivered_percent_per_viewer": spread(delivered, 2),
            "latency_ms": stream._percentiles(samples),
            "latency_samples": len(samples),
            "latency_missing": missing,
            "commands_sent": len(window),
            "commands_failed": sum(1 for c in window if c.status != 200),
            "command_http_ms": stream._percentiles(rtts),
            "runner_behind_percent": round(100.0 * probe.behind / max(1, len(probe.speeds)), 1),
            "runner_effective_speed_mean": round(statistics.fmean(probe.speeds), 2)
            if probe.speeds
            else 0.0,
            "viewers_dropped": sum(1 for v in self.viewers if v.closed),
            "viewer_errors": sorted({e for v in self.viewers for e in v.errors})[:5],
            "rss_mb": {
                "start": round(rss["start"] / 1024),
                "max": round(rss_max / 1024),
                "end": round(rss["end"] / 1024),
                "after_attacks": round(rss["after"] / 1024),
            },
            **machine,
            "server_cpu_percent_of_core": round(100.0 * machine["server_cpu_seconds"] / span, 1),
            "timeline": timeline,
            "heavy": {
                "created": len(a.heavy),
                "create_statuses": {str(k): v for k, v in sorted(a.create_statuses.items())},
                "create_errors": a.create_errors[:3],
                "refused_50k_status": a.refused_status,
                "refused_50k_reason": a.refused_reason,
                "viewer_frames_per_second": [round(h.frames / span, 1) for h in a.heavy],
                "viewer_reconnects": sum(h.reconnects for h in a.heavy),
                "effective_speed_mean": [
                    round(statistics.fmean(h.speeds), 1) if h.speeds else 0.0 for h in a.heavy
                ],
                "behind_percent": [round(100.0 * h.behind / max(1, h.sampled)) for h in a.heavy],
            },
            "steps": {
                "sent": len(a.steps),
                "statuses": dict(Counter(str(s) for s, _, _ in a.steps)),
                "reply_ms": stream._percentiles(sorted(1000.0 * s for _, s, _ in steps_ok)),
                "replied_before_done": sum(
                    1 for _, _, r in steps_ok if isinstance(r, dict) and "stepping_to" in r
                ),
            },
            "ack_flooder": {
                "connections": a.flood_connections,
                "closed_by_server": a.flood_server_closes,
                "seconds_until_closed": stream._percentiles(sorted(a.flood_lifetimes)),
                "other_ends": dict(a.flood_other_ends),
                "acks_sent": a.flood_acks,
                "acks_per_second": round(a.flood_acks / span),
            },
            "junk_ws": {
                "sent": sum(a.ws_sent.values()),
                "sent_by_kind": dict(a.ws_sent),
                "replies": dict(a.ws_replies.most_common()),
                "reply_ms": stream._percentiles(sorted(1000.0 * x for x in a.ws_reply_seconds)),
                "unanswered_at_end": sum(n for k, n in a.ws_sent.items() if k not in SILENT)
                - sum(n for k, n in a.ws_replies.items() if k != "frame"),
                "socket_ends": dict(a.ws_closes),
            },
            "junk_http": {
                "by_request": {k: {str(s): n for s, n in v.items()} for k, v in http.items()},
                "unexpected": {
                    k: {str(s): n for s, n in v.items()} for k, v in unexpected.items() if v
                },
                "server_errors_5xx": http_5xx,
                "no_answer": http_none,
                "errors": a.http_errors[:5],
            },
            "idle": {
                "sockets": IDLE_SOCKETS,
                "opened": a.idle_opened,
                "closed_by_server": a.idle_server_closes,
                "open_at_end": a.idle_open_now,
                "seconds_until_closed": stream._percentiles(sorted(a.idle_lifetimes)),
                "bytes_received": a.idle_bytes,
            },
            "daphne_log": log,
            "rebuild": check,
        }
        result["targets"] = {
            "frames_per_second_min": TARGET_FPS,
            "latency_p99_ms": TARGET_P99_MS,
            "rss_max_mb": RSS_BOUND_MB,
            "met": {
                "frames_per_second": min(fps, default=0.0) >= TARGET_FPS,
                "latency_p99_ms": bool(samples)
                and result["latency_ms"]["p99"] < TARGET_P99_MS
                and missing == 0,
                "rss": rss_max / 1024 < RSS_BOUND_MB,
                "state_equals_rebuild": bool(check.get("equal")),
            },
        }
        return result


# --- the rebuild ---------------------------------------------------------------------------


def read_record(db: Path, sim_id: str) -> dict[str, Any] | None:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)) as con:
        row = con.execute(
            "SELECT scenario, seed, command_log, sim_time FROM dashboard_simulationrecord "
            "WHERE id = ?",
            (sim_id,),
        ).fetchone()
    if row is None:
        return None
    scenario, seed, log, sim_time = row
    return {
        "scenario": json.loads(scenario),
        "seed": int(seed),
        "command_log": json.loads(log),
        "sim_time": float(sim_time),
    }


def rebuild(record: dict[str, Any]) -> dict[str, Any]:
    """The run rebuilt from nothing but its stored scenario, seed and command log."""
    from simulator import Simulation, parse_scenario

    sim = Simulation(parse_scenario(record["scenario"]), record["seed"])
    for t, command in record["command_log"]:
        sim.run_until(float(t))
        sim.apply(command)
    sim.run_until(record["sim_time"])
    snap: dict[str, Any] = sim.snapshot(latency=False)
    return snap


def compared_paths(state: dict[str, Any]) -> Any:
    yield ("t",)
    for kind, fields in (
        ("producers", PRODUCER_FIELDS),
        ("topics", TOPIC_FIELDS),
        ("groups", GROUP_FIELDS),
    ):
        for name in sorted(state.get(kind, {})):
            for f in fields:
                yield (kind, name, f)


def compare(live: dict[str, Any], rebuilt: dict[str, Any]) -> list[str]:
    out = []
    for kind in ("producers", "topics", "groups"):
        if sorted(live.get(kind, {})) != sorted(rebuilt.get(kind, {})):
            out.append(f"{kind}: {sorted(live.get(kind, {}))} vs {sorted(rebuilt.get(kind, {}))}")
    for path in compared_paths(live):
        a: Any = live
        b: Any = rebuilt
        for key in path:
            a = a.get(key) if isinstance(a, dict) else None
            b = b.get(key) if isinstance(b, dict) else None
        if a != b:
            out.append(f"{'.'.join(path)}: live {a} vs rebuilt {b}")
    return out


# --- output --------------------------------------------------------------------------------


def spread(values: list[float], digits: int = 2) -> dict[str, float]:
    if not values:
        return {"min": 0.0, "median": 0.0, "mean": 0.0}
    return {
        "min": round(min(values), digits),
        "median": round(statistics.median(values), digits),
        "mean": round(statistics.fmean(values), digits),
    }


def git_head() -> str:
    """The commit the server was started from, "+" when the work tree differs from it."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
        return head + ("+" if dirty else "")
    return ""


def daphne_log_figures(path: Path, teardown: str = "") -> dict[str, Any]:
    """Counts from daphne's log. ``teardown``: the log's own time format ("2026-12-02
    08:09:52,974") of the moment the soak's clients began to close; ERROR lines from then on
    are counted apart (sockets closing while frames are on their way)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return {"path": str(path), "missing": True}
    lines = text.splitlines()
    errors = [ln for ln in lines if " ERROR " in ln]
    late = [ln for ln in errors if teardown and ln[:23] >= teardown]
    during = [ln for ln in errors if ln not in late]
    return {
        "path": str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path),
        "lines": len(lines),
        "tracebacks": text.count("Traceback"),
        "unread_bytes_closes": sum(1 for ln in lines if "unread bytes" in ln),
        "error_lines": len(errors),
        "error_lines_at_teardown": len(late),
        "first_errors": during[:3],
        "teardown": teardown,
        "teardown_errors": dict(Counter(ln[24:].strip() for ln in late).most_common(3)),
    }


def table(r: dict[str, Any]) -> str:
    met = r["targets"]["met"]

    def ok(flag: bool) -> str:
        return "met" if flag else "MISSED"

    def pct(p: dict[str, float], keys: str = "p50 p95 p99 max") -> str:
        return ", ".join(f"{k} {p[k]:.0f}" for k in keys.split()) + " ms"

    fps, dlv = r["frames_per_second_per_viewer"], r["delivered_percent_per_viewer"]
    h, st, fl, idle, lg, rb = (r[k] for k in ("heavy", "steps", "ack_flooder", "idle",
                                               "daphne_log", "rebuild"))  # fmt: skip
    jw, jh, rss = r["junk_ws"], r["junk_http"], r["rss_mb"]
    rows: list[tuple[str, str, str]] = [
        ("window", f"{r['seconds']:.0f} s; {r['viewers']} viewers joined in "
         f"{r['connect_seconds']:.1f} s; the class's simulation at speed {r['speed']:g}", ""),
        ("frames published", f"{r['frames_published']} = {r['frames_per_second_published']:.2f}/s",
         ""),
        ("frames/s per viewer", f"min {fps['min']:.2f}, median {fps['median']:.2f}",
         f">= {TARGET_FPS:.0f}: {ok(met['frames_per_second'])}"),
        ("delivered % per viewer", f"min {dlv['min']:.2f}, median {dlv['median']:.2f}", ""),
        ("command -> frame", f"{pct(r['latency_ms'])} ({r['latency_samples']} samples, "
         f"{r['latency_missing']} missing)",
         f"p99 < {TARGET_P99_MS:.0f} ms: {ok(met['latency_p99_ms'])}"),
        ("command HTTP round trip", f"{pct(r['command_http_ms'], 'p50 p99')} "
         f"({r['commands_sent']} sent, {r['commands_failed']} failed)", ""),
        ("class's runner", f"behind in {r['runner_behind_percent']:.1f}% of frames, effective "
         f"speed {r['runner_effective_speed_mean']:.2f}", ""),
        ("server RSS", f"start {rss['start']}, max {rss['max']}, end {rss['end']} MB "
         f"({rss['after_attacks']} MB after the attacks)",
         f"< {RSS_BOUND_MB:.0f} MB: {ok(met['rss'])}"),
        ("server CPU", f"{r['server_cpu_seconds']:.1f} s = {r['server_cpu_percent_of_core']:.0f}%"
         f" of a core; waited {r['server_runqueue_wait_seconds']:.1f} s for a CPU", ""),
        ("machine", f"busy {r['machine_busy_seconds']:.0f} of {r['machine_cpu_seconds']:.0f} "
         f"CPU s: this client {r['client_cpu_seconds']:.0f} s, other processes "
         f"{r['other_processes_cpu_seconds']:.0f} s; load {r['load_avg'][0]} -> "
         f"{r['load_avg'][1]}", ""),
        ("every 30 s: CPU, RSS", ", ".join(
            f"{p['at_s']} s {p['cpu_percent']}% {p['rss_mb']} MB" for p in r["timeline"]), ""),
        ("1 heavy simulations", f"{h['created']} created (answers {h['create_statuses']}); "
         f"the one at 50,000/s answered {h['refused_50k_status']}", ""),
        ("  their viewers", f"frames/s {h['viewer_frames_per_second']}; effective speed "
         f"{h['effective_speed_mean']} (asked {HEAVY_SPEED:g})", ""),
        ("2 steps of 600 s", f"{st['sent']} sent, answers {st['statuses']}; reply "
         f"{pct(st['reply_ms'], 'p50 p95 max')}; {st['replied_before_done']} went on in slices",
         ""),
        ("3 ack flooder", f"{fl['connections']} connections, closed by the server "
         f"{fl['closed_by_server']} times, after {pct(fl['seconds_until_closed'], 'p50 max')[:-3]}"
         f" s; {fl['acks_per_second']} acks/s; other ends {fl['other_ends'] or 'none'}", ""),
        ("4 junk WebSocket", f"{jw['sent']} messages, {jw['unanswered_at_end']} of those due an "
         f"answer not answered at the end; answer {pct(jw['reply_ms'])}; socket ends "
         f"{jw['socket_ends'] or 'none'}", ""),
    ]  # fmt: skip
    for reply, n in jw["replies"].items():
        rows.append(("  reply", f"{n} x {reply}", ""))
    for name, statuses in jh["by_request"].items():
        rows.append(("  junk HTTP", f"{name}: {statuses}", ""))
    rows += [
        ("  junk HTTP 5xx", f"{jh['server_errors_5xx']}; no answer {jh['no_answer']}; "
         f"unexpected {jh['unexpected'] or 'none'}", ""),
        ("5 idle sockets", f"{idle['sockets']} kept open: {idle['opened']} opened, "
         f"{idle['closed_by_server']} closed by the server (after p50 "
         f"{idle['seconds_until_closed']['p50']:.0f} s), {idle['open_at_end']} open at the end",
         ""),
        ("daphne log", f"{lg.get('tracebacks')} tracebacks; {lg.get('error_lines')} ERROR lines, "
         f"{lg.get('error_lines_at_teardown')} of them as the clients closed "
         f"{lg.get('teardown_errors')}; {lg.get('unread_bytes_closes')} unread-buffer closes "
         f"({lg.get('path')})", ""),
        ("state = clean rebuild", ("yes" if rb.get("equal") else "no")
         + f" (t = {rb.get('t')}, {rb.get('compared', 0)} figures, "
         f"{rb.get('commands_logged', '?')} commands replayed in {rb.get('rebuild_seconds')} s)"
         + (f"; {rb['error']}" if rb.get("error") else ""),
         f"nothing lost: {ok(met['state_equals_rebuild'])}"),
    ]  # fmt: skip
    rows += [("  differs", d, "") for d in rb.get("differences", [])[:10]]
    rows += [("  HTTP failure", e, "") for e in jh["errors"][:3]]
    rows += [("  ERROR in the soak", e[:160], "") for e in lg.get("first_errors", [])[:3]]
    if r["viewers_dropped"] or r["viewer_errors"]:
        rows.append(
            ("viewer problems", f"{r['viewers_dropped']} dropped; {r['viewer_errors']}", "")
        )
    header = [
        f"Fanout soak  {r['date']}  git {r['git']}  nproc={r['nproc']}  python {r['python']}",
        f"$ {r['command']}",
    ]
    return stream.format_rows(header, rows)


# --- main ----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=300.0, help="soak length (300)")
    p.add_argument("--quick", action="store_true", help="60 s")
    p.add_argument("--viewers", type=int, default=30, help="the class's viewers (30)")
    p.add_argument("--speed", type=float, default=5.0, help="the class's simulation speed (5)")
    p.add_argument("--interval", type=float, default=2.0, help="seconds between commands (2)")
    p.add_argument("--rate", type=float, default=20.0, help="the producer's low rate (20)")
    p.add_argument("--rate-factor", type=float, default=1.5, help="high rate = rate x this")
    p.add_argument(
        "--attacks",
        default=",".join(ATTACKS),
        help="which attacks, comma-separated (all: %(default)s); for investigation",
    )
    p.add_argument("--log", type=Path, default=LOG_PATH, help="where the daphne log is kept")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    raw = sys.argv[1:] if argv is None else argv
    args = p.parse_args(raw)
    args.argv = raw
    args.producer = "order-service"
    args.preset = "ecommerce"
    if args.quick:
        args.seconds = 60.0
    args.attacks = [a for a in args.attacks.split(",") if a]
    if unknown := set(args.attacks) - set(ATTACKS):
        p.error(f"unknown attacks {sorted(unknown)}; choose from {', '.join(ATTACKS)}")
    if args.viewers < 1:
        p.error("--viewers must be at least 1")
    return args


def _sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _sigterm)
    try:
        with stream.Stack(verbose=not args.quiet) as stack:
            log_path: Path = args.log

            def keep_log() -> None:  # runs once daphne stopped
                log_path.parent.mkdir(parents=True, exist_ok=True)
                with contextlib.suppress(OSError):
                    shutil.copy(stack.tmp / "daphne-A.log", log_path)

            stack.callback(keep_log)
            env = stack.env(None, [])
            args.started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
            args.git = git_head()  # what the server runs: read as it starts
            stack.migrate(env)
            server = stack.daphne("A", env)
            # the live log, read by the figures before the copy is made
            args.log = stack.tmp / "daphne-A.log"

            async def go() -> dict[str, Any]:
                soak = Soak(args, server, stack.tmp / "db.sqlite3")
                await soak.create()
                stack.say(f"simulation {soak.sim_id}; {args.viewers} viewers; {args.seconds:g} s")
                return await soak.run()

            result = asyncio.run(go())
        # read again from the kept copy: it has what daphne said while stopping too
        result["daphne_log"] = daphne_log_figures(log_path, result["daphne_log"]["teardown"])
    except SetupError as e:
        print(f"setup failed: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: server stopped", file=sys.stderr)
        return 130
    print(json.dumps(result, indent=2) if args.json else table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
