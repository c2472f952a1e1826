"""Streaming to many viewers: one live simulation watched by N WebSocket viewers.

    python bench/stream.py [--viewers N] [--seconds S] [--processes 1|2] [--redis URL]
                           [--rate R] [--speed X] [--url URL [--url URL]] [--json]
                           [--ack-every N] [--no-deflate]
    python bench/stream.py --encodings [--json]     # bytes per frame, encodings compared

Unless --url is given it serves the project itself: `manage.py migrate` on a temporary SQLite
database, then `python -m daphne -b 127.0.0.1 -p <free port> dashboard.asgi:application` with
DJANGO_DEBUG=1 (the in-memory channel layer). With --processes 2 it starts two daphne processes
sharing that database and a Redis channel layer (REDIS_URL, channels_redis; db 15 unless --redis
says otherwise): the simulation is created on process A and half of the viewers connect to
process B, so their frames cross Redis. A redis-server is started only when nothing answers at
127.0.0.1:6379; at the end the run deletes the keys it made there (its simulation's groups and its
server processes' inboxes), nothing else.

The run: create one simulation through the JSON API from a preset (ecommerce by default, the
producer's rate set by --rate), set its speed, start it, open --viewers sockets in
--client-processes processes of their own (2 by default: one asyncio process reading 300 viewers'
frames saturates its core before the server does; this process only sends and times the
commands; time.perf_counter is the same clock in every process) (an Origin header
as a browser sends, and permessage-deflate offered as browsers do unless --no-deflate). Viewers
only watch and follow the protocol of docs/api.md as static/js/live.js does: a delta is applied
to the frame it names as its base (or a {"type": "resync"} asks for a whole frame), and every
second regular frame is acknowledged at once with {"type": "ack"} (--ack-every), the protocol's
flow control. The run waits for every viewer's `full` frame (at most 15 s),
warm up, then measure for --seconds. Meanwhile a controller posts `producer.rate` through the HTTP
API every --interval seconds with the control token, alternating a low and a high rate (each value
unique, so a frame tells which command it reflects). Command-to-frame latency is, for every viewer
and every command, the first arrival of a frame whose state shows the new rate minus the moment
the request was about to be sent (time.perf_counter, this process). When a command is first seen
through a later command's value, that later frame's arrival is used (an upper bound).

Figures: frames published (the range of regular `seq` numbers seen in the window), frames/s and
delivered % per viewer (regular frames received with a seq in that range / the range's size),
seq numbers out of order or repeated (two runners publishing), latency percentiles over all
samples, split into until-the-first-viewer and first-to-last-viewer per command, the command's HTTP
round trip, each frame's delay on arrival (from its simulated time, relative to the least delayed
frame), per-server figures with two processes, the servers' CPU seconds in the window (utime +
stime from /proc/<pid>/stat), how long they waited for a CPU (/proc/<pid>/task/*/schedstat), the
CPU the rest of the machine used (/proc/stat), bytes received per viewer per second as they came
off the socket (compressed, with the WebSocket framing) and as payload (decompressed text), how
many frames came as deltas or whole, resyncs, and the "slow" notices the server sent.
--encodings builds the frames of the same run in this process instead (no server: the runner's
own functions) and prints the bytes per frame of each encoding, with and without compression.
It is a benchmark, not a test: it exits 0 whatever the figures (2 when the setup fails, 130 when
interrupted); every process it started is stopped either way.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import dataclasses
import datetime as dt
import html
import itertools
import json
import multiprocessing
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PRESETS = ROOT / "simulator" / "presets"
ASGI_APP = "dashboard.asgi:application"
START_TIMEOUT = 30.0
CONNECT_CONCURRENCY = 20
LAYER_PREFIX = "asgi"  # channels_redis' default key prefix (settings.py keeps it)
JOIN_TIMEOUT = 15.0  # for every viewer's full frame
GRACE = 1.5  # seconds after the window for late frames to arrive
TARGET_FPS = 20.0
TARGET_DELIVERED = 99.0
TARGET_P99_MS = 150.0
TARGET_WIRE_BYTES = 30_000  # per viewer per second (issue 13)
ACK = '{"type": "ack", "seq": %d}'
try:  # the viewers parse every frame; ujson (autobahn's dependency) does it in half the time
    from ujson import loads
except ImportError:  # pragma: no cover
    from json import loads
RESYNC = '{"type": "resync"}'
# a delta's start, as dashboard/frames.py encodes it (compact JSON, these keys first)
DELTA_START = '{"type":"delta",'
DELTA_HEAD = re.compile(r'\{"type":"delta","seq":(\d+),"base":(\d+),"patch":')
DELTA_T = re.compile(r'\{"t":(-?[0-9.eE+-]+)')  # the patch's first key, when t changed


class SetupError(Exception):
    """The benchmark could not be set up (server, simulation or viewers)."""


# --- processes ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process, in seconds."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rfind(")") + 2 :].split()  # fields[0] is field 3, "state"
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def runqueue_wait(pid: int) -> float:
    """Seconds the process's live threads spent ready to run but waiting for a CPU
    (/proc/<pid>/task/*/schedstat): how much other work on the machine held it back."""
    total = 0
    for stat in Path(f"/proc/{pid}/task").glob("*/schedstat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            total += int(stat.read_text().split()[1])
    return total / 1e9


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine, all cores, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    tick = os.sysconf("SC_CLK_TCK")
    total = sum(values) / tick
    idle = (values[3] + values[4]) / tick  # idle + iowait
    return total - idle, total


def redis_ping(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@dataclass
class Server:
    name: str
    url: str
    pid: int | None = None  # None: not ours (--url), CPU not measured


class Stack(contextlib.ExitStack):
    """Everything started, stopped in reverse order whatever happens."""

    def __init__(self, *, verbose: bool) -> None:
        super().__init__()
        self.verbose = verbose
        self.tmp = Path(tempfile.mkdtemp(prefix="fanout-stream-"))
        self.callback(shutil.rmtree, self.tmp, True)
        self.redis_pid: int | None = None
        self.bench: Bench | None = None

    def say(self, text: str) -> None:
        if self.verbose:
            print(f"# {text}", file=sys.stderr, flush=True)

    def env(self, redis_url: str | None, extra: list[str]) -> dict[str, str]:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "dashboard.settings",
            "DJANGO_DEBUG": "1",
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DJANGO_DB_PATH": str(self.tmp / "db.sqlite3"),
            "PYTHONUNBUFFERED": "1",
        }
        env.pop("REDIS_URL", None)
        for item in extra:
            name, _, value = item.partition("=")
            env[name] = value
        if redis_url:
            env["REDIS_URL"] = redis_url
        return env

    def migrate(self, env: dict[str, str]) -> None:
        done = subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode != 0:
            raise SetupError(f"manage.py migrate failed:\n{done.stdout}{done.stderr}")

    def daphne(self, name: str, env: dict[str, str]) -> Server:
        port = free_port()
        log_path = self.tmp / f"daphne-{name}.log"
        log = log_path.open("wb")
        self.callback(log.close)
        process = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), ASGI_APP],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.callback(self._stop, process, f"daphne {name}")
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if process.poll() is not None:
                tail = log_path.read_text(errors="replace")[-3000:]
                raise SetupError(f"daphne {name} exited with {process.returncode}:\n{tail}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError as e:
                if time.monotonic() > deadline:
                    raise SetupError(f"daphne {name} did not listen in {START_TIMEOUT} s") from e
                time.sleep(0.1)
        self.say(f"daphne {name}: pid {process.pid}, {url}")
        return Server(name, url, process.pid)

    def redis(self, url: str) -> int | None:
        """Make sure Redis answers at ``url``; returns its pid when it can be read."""
        parts = urllib.parse.urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 6379
        if not redis_ping(host, port):
            if (host, port) != ("127.0.0.1", 6379) or not shutil.which("redis-server"):
                raise SetupError(f"no Redis answers at {host}:{port}")
            process = subprocess.Popen(
                [*("redis-server", "--bind", "127.0.0.1", "--port", "6379"), "--save", ""],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            self.callback(self._stop, process, "redis-server")
            deadline = time.monotonic() + 10
            while not redis_ping(host, port):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SetupError("could not start redis-server on 127.0.0.1:6379")
                time.sleep(0.1)
            self.say(f"started redis-server, pid {process.pid}")
            return process.pid
        import redis

        info: Any = redis.Redis.from_url(url).info("server")
        pid = int(info.get("process_id", 0))
        return pid if Path(f"/proc/{pid}/stat").exists() else None

    def forget_keys(self, url: str) -> None:
        """Delete the channel layer's keys this run made (called once the servers stopped):
        its simulation's groups and its server processes' inboxes. Nothing else is touched."""
        import redis

        bench = self.bench
        if bench is None or not bench.sim_id:
            return
        client = redis.Redis.from_url(url)
        keys = list(client.scan_iter(match=f"{LAYER_PREFIX}:group:*.{bench.sim_id}"))
        keys += [f"{LAYER_PREFIX}{inbox}" for inbox in bench.inboxes]
        deleted = client.delete(*keys) if keys else 0
        self.say(f"deleted {deleted} Redis key(s) of simulation {bench.sim_id}")

    def keep_logs(self, into: Path) -> None:
        into.mkdir(parents=True, exist_ok=True)
        for log in self.tmp.glob("*.log"):
            shutil.copy(log, into / log.name)

    def _stop(self, process: subprocess.Popen[bytes], name: str) -> None:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        self.say(f"{name} stopped ({process.returncode})")


# --- HTTP ---------------------------------------------------------------------------------


async def http(
    base: str, method: str, path: str, body: Any = None, token: str | None = None
) -> tuple[int, Any]:
    """One HTTP/1.1 request on a fresh connection (asyncio streams: no thread hop)."""
    parts = urllib.parse.urlsplit(base)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port or 80)
    try:
        data = b"" if body is None else json.dumps(body).encode()
        head = [
            f"{method} {path} HTTP/1.1",
            f"Host: {parts.hostname}:{parts.port}",
            "Connection: close",
            "Content-Type: application/json",
            f"Content-Length: {len(data)}",
        ]
        if token:
            head.append(f"Authorization: Bearer {token}")
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + data)
        await writer.drain()
        raw = await reader.read()
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    head_raw, _, payload = raw.partition(b"\r\n\r\n")
    status = int(head_raw.split(b" ", 2)[1])
    if b"transfer-encoding: chunked" in head_raw.lower():
        payload = dechunk(payload)
    try:
        return status, json.loads(payload or b"null")
    except ValueError:
        return status, payload.decode(errors="replace")


def brief(body: Any) -> str:
    """An error body, short: Django's debug page is reduced to its exception line."""
    text = body if isinstance(body, str) else json.dumps(body)
    found = re.search(r'<pre class="exception_value">(.*?)</pre>', text, re.S)
    if found:
        return "server error: " + html.unescape(found.group(1)).strip()
    return text[:500]


def dechunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out, data = out + data[:size], data[size + 2 :]
    return out


# --- the frame protocol, as a script follows it (docs/api.md, "Deltas") -------------------

ENVELOPE = frozenset({"type", "seq", "full", "history", "my_vote"})


def apply_delta(
    body: dict[str, Any], patch: dict[str, Any], remove: Any, *, in_place: bool = False
) -> dict[str, Any]:
    """The frame body a delta makes of ``body``: written from docs/api.md alone (it is also a
    check of the server's own ``dashboard.frames.apply_delta``, tests/test_frame_deltas.py).
    ``in_place``: change ``body`` itself (a client that keeps only its latest frame: no copies),
    else leave it as it was."""

    def removed(value: dict[str, Any], tree: dict[str, Any]) -> dict[str, Any]:
        out = value if in_place else dict(value)
        for key, sub in tree.items():
            if sub is None:
                out.pop(key, None)
            elif isinstance(out.get(key), dict):
                out[key] = removed(out[key], sub)
        return out

    def merged(base: Any, change: Any) -> Any:
        if not isinstance(change, dict):
            return change
        if isinstance(base, dict):
            out = base if in_place else dict(base)
            for key, value in change.items():
                out[key] = merged(out[key], value) if key in out else value
            return out
        if isinstance(base, list):
            d = change.get("d", 0)
            k = change.get("k", len(base) - d)
            items = [*change.get("h", []), *base[d : d + k], *change.get("t", [])]
            for i, element in change.get("at", {}).items():
                items[int(i)] = merged(items[int(i)], element)
            return items
        if isinstance(base, str):
            s = change.get("s", 0)
            return base[: change["p"]] + change["m"] + (base[len(base) - s :] if s else "")
        return change

    return merged(removed(body, remove) if remove else body, patch)  # type: ignore[no-any-return]


# --- viewers and controller ---------------------------------------------------------------


@dataclass
class Command:
    index: int
    value: float
    sent: float  # perf_counter just before the request
    status: int = 0
    rtt: float = 0.0


@dataclass
class Viewer:
    index: int
    server: str
    probe: bool = False  # parses every frame, to report what the runner says about itself
    joined: asyncio.Event = field(default_factory=asyncio.Event)  # full frame, or gave up
    got_full: bool = False
    # one row per message: (arrival, payload bytes, seq or -1 for a non-frame, full)
    messages: list[tuple[float, int, int, bool]] = field(default_factory=list)
    # regular frames: (arrival, the frame's simulated time), for the delivery delay
    sim_times: list[tuple[float, float]] = field(default_factory=list)
    samples: list[float] = field(default_factory=list)  # seconds, one per command seen
    sample_command: list[int] = field(default_factory=list)  # the command's index
    errors: list[str] = field(default_factory=list)
    closed: str = ""
    ack: bool = True  # say {"type": "ack"} for each regular frame, as the browser does
    ack_refused: bool = False
    behind: int = 0
    speeds: list[float] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    # the protocol: the last frame (the base of the next delta), what came as deltas, whole
    # frames and resyncs, and the server's notices that this socket gets fewer frames
    frame: dict[str, Any] | None = None
    deltas: int = 0
    wholes: int = 0
    resyncs: int = 0
    slow: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    # bytes as they came off the socket (compressed, with WebSocket framing): (arrival, bytes)
    wire: list[tuple[float, int]] = field(default_factory=list)
    deflate: str = ""  # the permessage-deflate agreed, if any
    unacked: int = 0  # regular frames since the last ack
    # (arrival, the producer's rate) of each frame whose rate differs from the frame before:
    # matched with the commands afterwards (commands are sent by another process)
    rate: float | None = None
    changes: list[tuple[float, float]] = field(default_factory=list)
    rebuild: bool = True  # rebuild each frame from deltas (else only follow seq and base)
    held: int | None = None  # seq of the last frame
    sim_t: float = 0.0

    def record(self) -> dict[str, Any]:
        """What a viewer process sends back: everything but the live parts."""
        skip = ("joined", "frame")
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in skip}


def match_commands(viewer: Viewer, commands: list[Command]) -> None:
    """For every command, when this viewer first saw its effect: the first frame whose rate is
    that command's value, or a later command's (an upper bound). A frame is matched only with
    the commands sent before it arrived (clocks: time.perf_counter, the same in every process)."""
    sent = [c.sent for c in commands]
    nxt = 0
    for arrival, rate in viewer.changes:
        known = bisect.bisect_right(sent, arrival)
        for j in range(known - 1, nxt - 1, -1):
            if abs(commands[j].value - rate) < 1e-9:
                for k in range(nxt, j + 1):
                    viewer.samples.append(arrival - commands[k].sent)
                    viewer.sample_command.append(k)
                nxt = j + 1
                break


class Bench:
    def __init__(self, args: argparse.Namespace, servers: list[Server]) -> None:
        self.args = args
        self.servers = servers
        self.producer = args.producer
        self.commands: list[Command] = []
        self.viewers: list[Viewer] = []
        self.stop = asyncio.Event()
        self.sim_id = ""
        self.token = ""
        self.ws_path = ""
        self.redis_pid: int | None = None
        self.inboxes: set[str] = set()  # the server processes' channel-layer inboxes (Redis)
        # the producer's rate in a delta's text: its object holds "rate" before any nested one
        name = re.escape(json.dumps(self.producer)[1:-1])
        self.rate_in_text = re.compile('"' + name + r'":\{[^{}]*?"rate":(-?[0-9.eE+-]+)')

    # values: low, high, low, ... each one unique so that a frame names the command it shows
    def value(self, index: int) -> float:
        base = self.args.rate if index % 2 == 0 else self.args.rate * self.args.rate_factor
        return float(round(base + 0.001 * (index + 1), 3))

    async def create(self) -> None:
        import yaml

        doc = yaml.safe_load((PRESETS / f"{self.args.preset}.yaml").read_text())
        producers = {p["name"]: p for p in doc.get("producers", [])}
        if self.producer not in producers:
            raise SetupError(f"preset {self.args.preset!r} has no producer {self.producer!r}")
        producers[self.producer]["rate"] = self.args.rate
        # long enough that the run never reaches its end while we measure
        needed = self.args.speed * (self.args.seconds + self.args.warmup + 120)
        doc["duration"] = max(float(doc.get("duration", 60)), needed)
        status, body = await http(self.servers[0].url, "POST", "/api/simulations", doc)
        if status != 201:
            raise SetupError(f"POST /api/simulations answered {status}: {brief(body)}")
        self.sim_id, self.token, self.ws_path = body["id"], body["control_token"], body["ws"]
        for command in (
            {"command": "speed", "value": self.args.speed},
            {"command": "start"},
        ):
            status, body = await self.command(command)
            if status != 200:
                raise SetupError(f"command {command} answered {status}: {brief(body)}")

    async def command(self, command: dict[str, Any]) -> tuple[int, Any]:
        return await http(
            self.servers[0].url,
            "POST",
            f"/api/simulations/{self.sim_id}/commands",
            command,
            token=self.token,
        )

    async def watch(self, viewer: Viewer, gate: asyncio.Semaphore) -> None:
        from websockets.asyncio.client import ClientConnection, connect
        from websockets.typing import Origin

        class Counted(ClientConnection):
            """Counts the bytes as they come off the socket: what the network carries."""

            def data_received(self, data: bytes) -> None:
                viewer.wire.append((time.perf_counter(), len(data)))
                super().data_received(data)

        base = next(s.url for s in self.servers if s.name == viewer.server)
        uri = "ws" + base[4:] + self.ws_path
        compression = None if self.args.no_deflate else "deflate"
        try:
            async with gate:
                ws = await connect(
                    uri,
                    origin=Origin(base),
                    max_size=None,
                    open_timeout=30,
                    compression=compression,
                    create_connection=Counted,
                )
            viewer.deflate = (ws.response.headers if ws.response else {}).get(
                "Sec-WebSocket-Extensions", ""
            )
            async with ws:
                async for message in ws:
                    seq = self.receive(viewer, message)
                    if seq == -1:
                        await ws.send(RESYNC)  # a delta that does not apply: a whole frame
                    elif seq is not None and viewer.ack:
                        viewer.unacked += 1
                        if viewer.unacked >= self.args.ack_every:  # as static/js/live.js does
                            await ws.send(ACK % seq)
                            viewer.unacked = 0
                    if self.stop.is_set():
                        break
        except Exception as e:  # a viewer that drops out is reported, not fatal
            viewer.closed = f"{type(e).__name__}: {e}"
        finally:
            viewer.joined.set()  # never leave the start waiting on a dead viewer

    def receive(self, viewer: Viewer, message: str | bytes) -> int | None:
        """Record one message, following the protocol: a delta is applied to the last frame
        (when its ``base`` is that frame's seq). Returns a regular frame's seq (to acknowledge),
        -1 for a delta that does not apply (ask for a resync), else None."""
        now = time.perf_counter()
        text = message if isinstance(message, str) else message.decode()
        if not viewer.rebuild and text.startswith(DELTA_START):
            return self.follow(viewer, text, now)
        doc = loads(text)
        kind = doc.get("type")
        if kind == "delta":
            last = viewer.frame
            if last is None or last["seq"] != doc["base"]:
                viewer.frame = None
                viewer.resyncs += 1
                viewer.messages.append((now, len(text), -1, False))
                return -1
            # a viewer keeps its latest frame only: the delta changes it where it is
            body = {k: v for k, v in last.items() if k not in ENVELOPE}
            body = apply_delta(body, doc["patch"], doc.get("remove"), in_place=True)
            doc = viewer.frame = {"type": "frame", "seq": doc["seq"], "full": False, **body}
            viewer.deltas += 1
        elif kind == "frame":
            viewer.frame = doc if viewer.rebuild else None
            viewer.wholes += not doc.get("full")
        else:
            viewer.messages.append((now, len(text), -1, False))
            if kind == "slow":
                viewer.slow.append((now, doc))
            elif kind == "error":
                error = str(doc.get("message"))
                if viewer.ack and error.startswith("unknown message"):
                    viewer.ack = False  # a server from before flow control
                    viewer.ack_refused = True
                else:
                    viewer.errors.append(error)
            return None
        seq, full, sim_t = int(doc["seq"]), bool(doc.get("full")), float(doc["t"])
        viewer.messages.append((now, len(text), seq, full))
        viewer.held, viewer.sim_t = seq, sim_t
        if full:
            viewer.got_full = True
            viewer.joined.set()
            return None
        viewer.sim_times.append((now, sim_t))
        if viewer.probe:
            viewer.behind += bool(doc["state"].get("behind"))
            viewer.speeds.append(float(doc["state"].get("effective_speed", 0.0)))
            viewer.sizes.append(len(text))
        rate = doc["state"]["producers"][self.producer]["rate"]
        if rate != viewer.rate:
            viewer.rate = rate
            viewer.changes.append((now, rate))
        return seq

    def follow(self, viewer: Viewer, text: str, now: float) -> int:
        """A delta for a viewer that does not rebuild frames (--rebuild-every): it checks the
        delta's base and resyncs as the protocol says, and reads the time and the producer's
        rate from the text (a delta carries the rate when it changed, and ``t`` first)."""
        head = DELTA_HEAD.match(text)
        if head is None or viewer.held != int(head[2]):
            viewer.held = None
            viewer.resyncs += 1
            viewer.messages.append((now, len(text), -1, False))
            return -1
        seq = viewer.held = int(head[1])
        viewer.deltas += 1
        found = DELTA_T.match(text, head.end())
        if found:
            viewer.sim_t = float(found[1])
        viewer.messages.append((now, len(text), seq, False))
        viewer.sim_times.append((now, viewer.sim_t))
        found = self.rate_in_text.search(text)
        if found and float(found[1]) != viewer.rate:
            viewer.rate = float(found[1])
            viewer.changes.append((now, viewer.rate))
        return seq

    async def control(self, until: float) -> None:
        """A command every --interval seconds, through the HTTP API, until ``until``."""
        index = 0
        next_at = time.perf_counter()
        while next_at < until:
            value = self.value(index)
            command = Command(index, value, time.perf_counter())
            self.commands.append(command)
            status, _ = await self.command(
                {"command": "producer.rate", "producer": self.producer, "value": value}
            )
            command.status, command.rtt = status, time.perf_counter() - command.sent
            index += 1
            next_at += self.args.interval
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))

    async def run(self) -> dict[str, Any]:
        """Viewers join the simulation made by :meth:`create`; then the measured window.

        The viewers run in --client-processes processes of their own (``viewer_process``), so
        that reading frames does not slow this one, which sends the commands and times them."""
        args = self.args
        names = [s.name for s in self.servers]
        count = max(1, min(args.client_processes, args.viewers))
        ctx = multiprocessing.get_context("spawn")
        common = {
            "args": vars(args),
            "servers": [dataclasses.asdict(s) for s in self.servers],
            "ws_path": self.ws_path,
        }
        conns, procs = [], []
        started = time.perf_counter()
        for p in range(count):
            share = [
                (i, names[i % len(names)], i == 0, not args.no_ack, i % args.rebuild_every == 0)
                for i in range(p, args.viewers, count)
            ]
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=viewer_process, args=(child, {**common, "viewers": share}))
            proc.start()
            child.close()
            conns.append(parent)
            procs.append(proc)
        try:
            return await self._measure(conns, procs, started)
        finally:
            for conn in conns:
                with contextlib.suppress(OSError):
                    conn.send("stop")
            for proc in procs:
                await asyncio.to_thread(proc.join, 30)
                if proc.is_alive():
                    proc.kill()

    async def _measure(self, conns: list[Any], procs: list[Any], started: float) -> dict[str, Any]:
        args = self.args
        try:
            joined = [await asyncio.to_thread(conn.recv) for conn in conns]
        except EOFError as e:
            raise SetupError("a viewer process ended before its viewers joined") from e
        connect_s = time.perf_counter() - started
        if args.redis:
            await asyncio.to_thread(self.find_inboxes)
        # a viewer whose full frame never came still counts (it is a result, not a setup
        # failure); only a run where no socket at all could connect is
        if all(closed == total for _, total, closed, _ in joined):
            reasons = sorted({r for *_, why in joined for r in why})
            raise SetupError(f"no viewer could connect: {reasons[:3]}")
        await asyncio.sleep(args.warmup)

        pids = {s.name: s.pid for s in self.servers if s.pid}
        if self.redis_pid:
            pids["redis"] = self.redis_pid
        clients = [proc.pid for proc in procs]
        load_before = os.getloadavg()
        wait0 = {name: runqueue_wait(pid) for name, pid in pids.items()}
        client_wait0 = sum(runqueue_wait(pid) for pid in [os.getpid(), *clients])
        cpu0 = {name: cpu_seconds(pid) for name, pid in pids.items()}
        own0 = time.process_time() + sum(cpu_seconds(pid) for pid in clients)
        busy0, total0 = machine_cpu()
        t0 = time.perf_counter()
        controller = asyncio.create_task(self.control(t0 + args.seconds))
        await asyncio.sleep(args.seconds)
        t1 = time.perf_counter()
        cpu1 = {name: cpu_seconds(pid) for name, pid in pids.items()}
        wait1 = {name: runqueue_wait(pid) for name, pid in pids.items()}
        client_wait1 = sum(runqueue_wait(pid) for pid in [os.getpid(), *clients])
        own1 = time.process_time() + sum(cpu_seconds(pid) for pid in clients)
        busy1, total1 = machine_cpu()
        load_after = os.getloadavg()
        await controller
        await asyncio.sleep(GRACE)
        for conn in conns:
            conn.send("stop")
        viewers = []
        for conn in conns:
            try:
                viewers += [Viewer(**record) for record in await asyncio.to_thread(conn.recv)]
            except EOFError as e:
                raise SetupError("a viewer process ended before it reported") from e
        self.viewers = sorted(viewers, key=lambda v: v.index)
        for viewer in self.viewers:
            match_commands(viewer, self.commands)
        with contextlib.suppress(Exception):
            await self.command({"command": "pause"})

        cpu = {name: round(cpu1[name] - cpu0[name], 2) for name in pids}
        waits = {name: round(wait1[name] - wait0[name], 2) for name in pids}
        waits["client"] = round(client_wait1 - client_wait0, 2)
        machine_busy = busy1 - busy0
        machine_total = total1 - total0
        return self.figures(
            t0,
            t1,
            connect_s=connect_s,
            cpu=cpu,
            client_cpu=own1 - own0,
            waits=waits,
            machine_busy=machine_busy,
            machine_cores=machine_total / (t1 - t0) if t1 > t0 else 0.0,
            load=(load_before, load_after),
        )

    def find_inboxes(self) -> None:
        """Each server process has one Redis inbox, named by the part of its channel names
        before "!"; the members of this simulation's groups show them."""
        import redis

        client = redis.Redis.from_url(self.args.redis)
        for group in ("sim", "runner"):
            members: Any = client.zrange(f"{LAYER_PREFIX}:group:{group}.{self.sim_id}", 0, -1)
            for member in members:
                name = member.decode()
                if "!" in name:
                    self.inboxes.add(name.split("!", 1)[0] + "!")

    def delivery_delays(self, t0: float, t1: float) -> dict[str, list[float]]:
        """How late each regular frame arrived, in ms, relative to the least late one.

        At a steady speed a frame's simulated time maps to the wall time it was built at:
        ``built = t_sim / speed + offset``. The offset is taken from the frame that arrived
        soonest after being built (its delay counts as 0), so the figures are lags added by the
        server and the network beyond the best case. Only meaningful while the runner keeps
        pace (not ``behind``).
        """
        speed = self.args.speed
        rows = [
            (v.server, arrival, sim_t / speed)
            for v in self.viewers
            for arrival, sim_t in v.sim_times
            if t0 <= arrival <= t1
        ]
        out: dict[str, list[float]] = {"all": []}
        if not rows:
            return out
        offset = min(arrival - built for _, arrival, built in rows)
        for server, arrival, built in rows:
            delay = 1000.0 * (arrival - built - offset)
            out["all"].append(delay)
            out.setdefault(server, []).append(delay)
        return {k: sorted(v) for k, v in out.items()}

    def figures(
        self,
        t0: float,
        t1: float,
        *,
        connect_s: float,
        cpu: dict[str, float],
        client_cpu: float,
        machine_busy: float,
        machine_cores: float,
        waits: dict[str, float],
        load: tuple[tuple[float, ...], tuple[float, ...]],
    ) -> dict[str, Any]:
        args = self.args
        span = t1 - t0
        in_window = [
            seq
            for v in self.viewers
            for (t, _, seq, full) in v.messages
            if t0 <= t <= t1 and seq >= 0 and not full
        ]
        first, last = (min(in_window), max(in_window)) if in_window else (0, -1)
        published = last - first + 1
        fps, delivered, bps, wire, gaps = {}, {}, {}, {}, {}
        backwards = repeated = 0
        for v in self.viewers:
            regular = [(t, seq) for (t, _, seq, full) in v.messages if seq >= 0 and not full]
            seqs = [seq for _, seq in regular]
            # one runner numbers its frames one after the other: a seq going back or coming
            # twice means two runners publish to the same group
            backwards += sum(1 for a, b in itertools.pairwise(seqs) if b < a)
            repeated += len(seqs) - len(set(seqs))
            got = {seq for seq in seqs if first <= seq <= last}
            delivered[v.index] = 100.0 * len(got) / published if published > 0 else 0.0
            times = [t for t, _ in regular if t0 <= t <= t1]
            fps[v.index] = len(times) / span
            gaps[v.index] = max((b - a for a, b in itertools.pairwise(times)), default=0.0)
            bps[v.index] = sum(n for (t, n, _, _) in v.messages if t0 <= t <= t1) / span
            wire[v.index] = sum(n for (t, n) in v.wire if t0 <= t <= t1) / span
        delays = self.delivery_delays(t0, t1)
        window_commands = [c for c in self.commands if t0 <= c.sent <= t1]
        measured = {c.index for c in window_commands}
        per_command: dict[int, list[float]] = {i: [] for i in measured}
        per_server: dict[str, list[float]] = {s.name: [] for s in self.servers}
        for v in self.viewers:
            for s, k in zip(v.samples, v.sample_command, strict=True):
                if k in measured:
                    per_command[k].append(1000.0 * s)
                    per_server[v.server].append(1000.0 * s)
        samples_ms = sorted(s for samples in per_command.values() for s in samples)
        # where the time goes: until the first viewer sees a command, then the spread to the
        # last one (fan-out); a slow command path shows in the first, slow fan-out in the second
        firsts = sorted(min(v) for v in per_command.values() if v)
        spreads = sorted(max(v) - min(v) for v in per_command.values() if v)
        expected = len(window_commands) * len(self.viewers)
        probe = self.viewers[0]
        rtts = sorted(1000.0 * c.rtt for c in window_commands if c.status)
        server_cpu = round(sum(v for k, v in cpu.items() if k != "redis"), 2)
        ours = server_cpu + cpu.get("redis", 0.0) + client_cpu
        result: dict[str, Any] = {
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "nproc": os.cpu_count(),
            "python": platform.python_version(),
            "load_avg_before": [round(x, 2) for x in load[0]],
            "load_avg_after": [round(x, 2) for x in load[1]],
            "viewers": len(self.viewers),
            "processes": len(self.servers),
            "layer": "redis" if args.redis else "in-memory" if not args.url else "unknown (--url)",
            "seconds": round(span, 3),
            "speed": args.speed,
            "producer": self.producer,
            "rates": [self.value(0), self.value(1)],
            "connect_seconds": round(connect_s, 2),
            "frames_published": published,
            "seq_range": [first, last],
            "frames_per_second_published": round(published / span, 2),
            "frames_per_second_per_viewer": _spread(list(fps.values()), 2),
            "delivered_percent_per_viewer": _spread(list(delivered.values()), 3),
            "max_frame_gap_ms": round(1000 * max(gaps.values()), 1),
            "frames_out_of_order": backwards,
            "frames_repeated": repeated,
            "per_server": {
                server.name: {
                    "viewers": len(mine),
                    "frames_per_second_per_viewer": _spread([fps[i] for i in mine], 2),
                    "delivered_percent_per_viewer": _spread([delivered[i] for i in mine], 3),
                    "latency_ms": _percentiles(sorted(per_server[server.name])),
                    "frame_delay_ms": _percentiles(delays.get(server.name, [])),
                }
                for server in self.servers
                if (mine := [v.index for v in self.viewers if v.server == server.name])
            },
            "commands_sent": len(window_commands),
            "commands_failed": sum(1 for c in window_commands if c.status != 200),
            "command_http_ms": _percentiles(rtts),
            "frame_delay_ms": _percentiles(delays["all"]),
            "latency_samples": len(samples_ms),
            "latency_missing": expected - len(samples_ms),
            "latency_ms": _percentiles(samples_ms),
            "latency_first_viewer_ms": _percentiles(firsts),
            "latency_fanout_spread_ms": _percentiles(spreads),
            "commands": [
                {
                    "index": c.index,
                    "at_s": round(c.sent - t0, 3),
                    "http_ms": round(1000.0 * c.rtt, 1),
                    "first_ms": round(min(per_command[c.index]), 1),
                    "last_ms": round(max(per_command[c.index]), 1),
                }
                for c in window_commands
                if per_command[c.index]
            ],
            "server_cpu_seconds": cpu,
            "server_cpu_percent_of_core": {k: round(100.0 * v / span, 1) for k, v in cpu.items()},
            "runqueue_wait_seconds": waits,
            "client_cpu_seconds": round(client_cpu, 2),
            "machine_cpu_busy_seconds": round(machine_busy, 2),
            "other_processes_cpu_seconds": round(max(0.0, machine_busy - ours), 2),
            "machine_cores_seen": round(machine_cores, 2),
            "bytes_per_viewer_per_second": _spread(list(bps.values()), 0),
            "wire_bytes_per_viewer_per_second": _spread(list(wire.values()), 0),
            "wire_bytes_per_frame": round(
                _mean(list(wire.values())) / _mean(list(fps.values()))
                if _mean(list(fps.values()))
                else 0.0
            ),
            "frame_bytes_mean": round(_mean(probe.sizes)) if probe.sizes else 0,
            "permessage_deflate": sorted({v.deflate for v in self.viewers}),
            "frames_as_deltas": sum(v.deltas for v in self.viewers),
            "frames_whole": sum(v.wholes for v in self.viewers),
            "resyncs": sum(v.resyncs for v in self.viewers),
            "slow_notices": sum(1 for v in self.viewers for t, _ in v.slow if t0 <= t <= t1),
            "viewers_told_slow": sum(
                1
                for v in self.viewers
                if any(t0 <= t <= t1 and notice.get("thinned") for t, notice in v.slow)
            ),
            "runner_behind_frames": probe.behind,
            "runner_effective_speed_mean": _r(_mean(probe.speeds)) if probe.speeds else 0.0,
            "viewer_errors": sorted({e for v in self.viewers for e in v.errors})[:5],
            "viewers_dropped": sum(1 for v in self.viewers if v.closed),
            "viewers_without_full_frame": sum(1 for v in self.viewers if not v.got_full),
            "acknowledged": any(v.ack for v in self.viewers),
            "ack_every": args.ack_every,
            "acks_refused": sum(1 for v in self.viewers if v.ack_refused),
        }
        result["targets"] = {
            "frames_per_second": TARGET_FPS,
            "delivered_percent": TARGET_DELIVERED,
            "latency_p99_ms": TARGET_P99_MS,
            "met": {
                "frames_per_second": result["frames_per_second_per_viewer"]["min"] >= TARGET_FPS,
                "delivered_percent": min(delivered.values()) >= TARGET_DELIVERED,
                "latency_p99_ms": bool(samples_ms)
                and result["latency_ms"]["p99"] < TARGET_P99_MS
                and result["latency_missing"] == 0,
            },
        }
        return result


def _mean(values: Sequence[float]) -> float:
    return statistics.fmean(values) if values else 0.0


def _r(x: float) -> float:
    return round(x, 2)


def _spread(values: list[float], digits: int) -> dict[str, float]:
    if not values:
        return {"mean": 0.0, "min": 0.0}
    if digits == 0:
        return {"mean": round(_mean(values)), "min": round(min(values))}
    return {"mean": round(_mean(values), digits), "min": round(min(values), digits)}


def _percentiles(values: list[float]) -> dict[str, float]:
    """Nearest-rank percentiles of sorted values, in the values' unit."""
    if not values:
        return {"p50": 0.0, "p95": 0.0, "p99": 0.0, "max": 0.0}

    def rank(p: float) -> float:
        return values[max(0, min(len(values) - 1, int(-(-p * len(values) // 100)) - 1))]

    return {
        "p50": round(rank(50), 1),
        "p95": round(rank(95), 1),
        "p99": round(rank(99), 1),
        "max": round(values[-1], 1),
    }


# --- output -------------------------------------------------------------------------------


def table(r: dict[str, Any]) -> str:
    met = r["targets"]["met"]

    def ok(flag: bool) -> str:
        return "met" if flag else "MISSED"

    fps, dlv, lat = (
        r["frames_per_second_per_viewer"],
        r["delivered_percent_per_viewer"],
        r["latency_ms"],
    )
    cpu = ", ".join(
        f"{k} {v:.2f} s ({r['server_cpu_percent_of_core'][k]:.0f}% of a core)"
        for k, v in r["server_cpu_seconds"].items()
    )
    rows = [
        ("viewers", f"{r['viewers']}", ""),
        ("server processes", f"{r['processes']} ({r['layer']} channel layer)", ""),
        ("window", f"{r['seconds']:.1f} s (viewers joined in {r['connect_seconds']:.1f} s)", ""),
        (
            "frames published",
            f"{r['frames_published']} = {r['frames_per_second_published']:.2f}/s "
            f"(seq {r['seq_range'][0]}..{r['seq_range'][1]})",
            "",
        ),
        (
            "frames/s per viewer",
            f"mean {fps['mean']:.2f}, min {fps['min']:.2f}",
            f">= {TARGET_FPS:.0f}: {ok(met['frames_per_second'])}",
        ),
        (
            "delivered % per viewer",
            f"mean {dlv['mean']:.2f}, min {dlv['min']:.2f}",
            f">= {TARGET_DELIVERED:.0f}: {ok(met['delivered_percent'])}",
        ),
        (
            "longest gap between frames",
            f"{r['max_frame_gap_ms']:.0f} ms (any viewer); seq out of order "
            f"{r['frames_out_of_order']}, repeated {r['frames_repeated']}",
            "" if not (r["frames_out_of_order"] or r["frames_repeated"]) else "two runners?",
        ),
        (
            "command -> frame latency",
            f"p50 {lat['p50']:.0f}, p95 {lat['p95']:.0f}, p99 {lat['p99']:.0f}, "
            f"max {lat['max']:.0f} ms ({r['latency_samples']} samples, "
            f"{r['latency_missing']} missing)",
            f"p99 < {TARGET_P99_MS:.0f} ms: {ok(met['latency_p99_ms'])}",
        ),
        (
            "  until the first viewer",
            f"p50 {r['latency_first_viewer_ms']['p50']:.0f}, "
            f"max {r['latency_first_viewer_ms']['max']:.0f} ms (per command)",
            "",
        ),
        (
            "  first to last viewer",
            f"p50 {r['latency_fanout_spread_ms']['p50']:.0f}, "
            f"max {r['latency_fanout_spread_ms']['max']:.0f} ms (per command)",
            "",
        ),
        (
            "command HTTP round trip",
            f"p50 {r['command_http_ms']['p50']:.0f}, p99 {r['command_http_ms']['p99']:.0f} ms "
            f"({r['commands_sent']} commands, {r['commands_failed']} failed)",
            "",
        ),
        (
            "frame delay on arrival",
            f"p50 {r['frame_delay_ms']['p50']:.0f}, p95 {r['frame_delay_ms']['p95']:.0f}, "
            f"p99 {r['frame_delay_ms']['p99']:.0f}, max {r['frame_delay_ms']['max']:.0f} ms "
            "(beyond the least delayed frame)",
            "",
        ),
        ("server CPU in window", cpu, ""),
        (
            "waiting for a CPU",
            ", ".join(f"{k} {v:.2f} s" for k, v in r["runqueue_wait_seconds"].items())
            + " (run queue: ready, not running)",
            "",
        ),
        (
            "other CPU in window",
            f"bench client {r['client_cpu_seconds']:.2f} s, other processes "
            f"{r['other_processes_cpu_seconds']:.2f} s; machine busy "
            f"{r['machine_cpu_busy_seconds']:.2f} of "
            f"{r['machine_cores_seen'] * r['seconds']:.1f} s",
            "",
        ),
        (
            "bytes per viewer per second",
            f"on the wire: mean {r['wire_bytes_per_viewer_per_second']['mean']:,}, "
            f"min {r['wire_bytes_per_viewer_per_second']['min']:,} "
            f"({r['wire_bytes_per_frame']:,} B a frame); payload as read: mean "
            f"{r['bytes_per_viewer_per_second']['mean']:,} (frame ~{r['frame_bytes_mean']:,} B)",
            f"<= {TARGET_WIRE_BYTES // 1000} KB/s: "
            + ok(r["wire_bytes_per_viewer_per_second"]["mean"] <= TARGET_WIRE_BYTES),
        ),
        (
            "protocol",
            f"{r['frames_as_deltas']:,} frames as deltas, {r['frames_whole']:,} whole, "
            f"{r['resyncs']} resyncs; 'slow' notices {r['slow_notices']} "
            f"({r['viewers_told_slow']} viewers told they were thinned); permessage-deflate: "
            f"{' | '.join(r['permessage_deflate']) or 'none'}",
            "",
        ),
        (
            "runner",
            f"behind in {r['runner_behind_frames']} frames, effective speed "
            f"{r['runner_effective_speed_mean']:.2f} (asked {r['speed']})",
            "",
        ),
    ]
    if len(r["per_server"]) > 1:
        at = [k for k, _, _ in rows].index("frame delay on arrival") + 1
        for i, (name, ps) in enumerate(r["per_server"].items()):
            rows.insert(
                at + i,
                (
                    f"  viewers on {name}",
                    f"{ps['viewers']}: frames/s min {ps['frames_per_second_per_viewer']['min']:.2f}"
                    f", delivered min {ps['delivered_percent_per_viewer']['min']:.2f}%, latency "
                    f"p50 {ps['latency_ms']['p50']:.0f} p99 {ps['latency_ms']['p99']:.0f} ms, "
                    f"frame delay p99 {ps['frame_delay_ms']['p99']:.0f} ms",
                    "",
                ),
            )

    acks = "not acknowledged"
    if r["acknowledged"]:
        acks = f"acknowledged at once, every {r['ack_every']} frames"
    if r["acks_refused"]:
        acks += f" (the server refused acks on {r['acks_refused']} sockets)"
    rows.insert(1, ("frames", acks, ""))
    if r["viewers_dropped"] or r["viewer_errors"] or r["viewers_without_full_frame"]:
        problems = (
            f"{r['viewers_dropped']} dropped, {r['viewers_without_full_frame']} never got "
            f"their full frame; errors: {r['viewer_errors']}"
        )
        rows.append(("viewer problems", problems, ""))
    header = [
        f"Fanout streaming benchmark  {r['date']}  nproc={r['nproc']}  python {r['python']}  "
        f"load avg {r['load_avg_before'][0]:.2f} -> {r['load_avg_after'][0]:.2f}",
        f"producer {r['producer']} alternating {r['rates'][0]:g} / {r['rates'][1]:g} ev/s "
        f"every command, speed {r['speed']:g}",
    ]
    return format_rows(header, rows)


def format_rows(header: list[str], rows: list[tuple[str, str, str]]) -> str:
    """A header, a blank line, then ``key  value   [target]`` rows with the keys aligned."""
    width = max(len(k) for k, _, _ in rows)
    lines = [*header, ""]
    for key, value, target in rows:
        lines.append(f"{key:<{width}}  {value}" + (f"   [{target}]" if target else ""))
    return "\n".join(lines)


# --- the viewer processes ------------------------------------------------------------------


def viewer_process(conn: Any, config: dict[str, Any]) -> None:
    """A child process: its share of the viewers. Says how many joined, waits for "stop", then
    sends back what each viewer recorded."""
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_viewers(conn, config))


async def _viewers(conn: Any, config: dict[str, Any]) -> None:
    args = argparse.Namespace(**config["args"])
    bench = Bench(args, [Server(**s) for s in config["servers"]])
    bench.ws_path = config["ws_path"]
    viewers = [
        Viewer(i, server, probe=probe, ack=ack, rebuild=rebuild)
        for i, server, probe, ack, rebuild in config["viewers"]
    ]
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    tasks = [asyncio.create_task(bench.watch(v, gate)) for v in viewers]
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*(v.joined.wait() for v in viewers)), JOIN_TIMEOUT)
    closed = [v.closed for v in viewers if v.closed]
    conn.send(("joined", len(viewers), len(closed), sorted(set(closed))[:3]))
    with contextlib.suppress(EOFError):
        await asyncio.to_thread(conn.recv)  # "stop"
    bench.stop.set()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    conn.send([v.record() for v in viewers])


# --- encodings, offline -------------------------------------------------------------------


def encodings(args: argparse.Namespace) -> dict[str, Any]:
    """Bytes per frame of the same run in each encoding, and what compressing costs.

    The frames are built in this process by the runner's own functions (dashboard/frames.py),
    as the live runner builds them: the preset at --rate, 20 frames a simulated second at
    speed 1, percentile summaries every 5th frame, a producer.rate command every --interval
    (alternating, as the live run's controller sends them), measured after a 10 s warm-up."""
    import zlib

    import cbor2
    import msgpack  # type: ignore[import-untyped]
    import yaml

    sys.path.insert(0, str(ROOT))
    from dashboard import frames as F
    from simulator import EventSampler, Simulation, parse_scenario

    doc = yaml.safe_load((PRESETS / f"{args.preset}.yaml").read_text())
    for producer in doc.get("producers", []):
        if producer["name"] == args.producer:
            producer["rate"] = args.rate
    doc["duration"] = 3600
    count = round(args.seconds * 20)
    warm = 200

    def run(rounded: bool) -> list[dict[str, Any]]:
        F.ROUND_AS_SHOWN = rounded
        sampler = EventSampler(200, seed=1)
        sim = Simulation(
            parse_scenario(doc), 1, observers=(sampler,), trace=True, chart_history=True
        )
        state = F.RunState("bench", running=True, speed=1.0)
        built = []
        every = max(1, round(args.interval * 20))
        for seq in range(1, warm + count + 1):
            sim.run_until(seq * 0.05)
            if seq % every == 0:
                index = seq // every
                value = args.rate if index % 2 == 0 else args.rate * args.rate_factor
                command = {"command": "producer.rate", "producer": args.producer}
                sim.apply({**command, "value": round(value + 0.001 * index, 3)})
            frame = F.build_frame(sim, state, sampler, seq, latency=seq % 5 == 0)
            frame["epoch"] = 1
            built.append(frame)
        F.ROUND_AS_SHOWN = True
        return built[warm - 1 :]  # the frame before the window is the first delta's base

    def deltas(built: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for before, frame in itertools.pairwise(built):
            patch, remove = F.frame_delta(F.frame_body(before), F.frame_body(frame))
            out.append(F.delta_message(frame["seq"], before["seq"], patch, remove))
        return out

    def per_connection(texts: list[bytes]) -> tuple[float, float]:
        """permessage-deflate as autobahn does it per connection (context kept between
        messages): mean bytes, and microseconds of compression per message per viewer."""
        compressor = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
        size, started = 0, time.perf_counter()
        for text in texts:
            size += len(compressor.compress(text) + compressor.flush(zlib.Z_SYNC_FLUSH)) - 4
        return size / len(texts), 1e6 * (time.perf_counter() - started) / len(texts)

    def once(texts: list[bytes]) -> tuple[float, float]:
        """Each message compressed on its own, once for every viewer (frames.deflated)."""
        size, started = 0, time.perf_counter()
        for text in texts:
            compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
            size += len(compressor.compress(text) + compressor.flush(zlib.Z_SYNC_FLUSH)) - 4
        return size / len(texts), 1e6 * (time.perf_counter() - started) / len(texts)

    def timed(encode: Any, items: list[Any]) -> tuple[list[bytes], float]:
        started = time.perf_counter()
        out = [encode(item) for item in items]
        return out, 1e6 * (time.perf_counter() - started) / len(items)

    unrounded = run(False)
    raw = unrounded[1:]
    rounded = run(True)
    whole = rounded[1:]
    started = time.perf_counter()
    delta = deltas(rounded)
    diff_us = 1e6 * (time.perf_counter() - started) / len(delta)
    delta_unrounded = deltas(unrounded)

    def as_json(item: Any) -> bytes:
        return json.dumps(item).encode()

    def compact(item: Any) -> bytes:
        return F.encode(item).encode()

    rows: list[dict[str, Any]] = []

    def row(name: str, texts: list[bytes], encode_us: float, note: str = "") -> None:
        plain = sum(map(len, texts)) / len(texts)
        ctx, ctx_us = per_connection(texts)
        one, one_us = once(texts)
        rows.append(
            {
                "encoding": name,
                "bytes_per_frame": round(plain),
                "encode_us_per_frame": round(encode_us),
                "deflate_per_connection_bytes": round(ctx),
                "deflate_per_connection_us_per_viewer": round(ctx_us),
                "deflate_once_bytes": round(one),
                "deflate_once_us_per_frame": round(one_us),
                "note": note,
            }
        )

    texts, us = timed(as_json, raw)
    row("whole frames, json.dumps (before)", texts, us, "as sent before")
    texts, us = timed(compact, raw)
    row("whole frames, compact JSON", texts, us)
    texts, us = timed(compact, whole)
    row("whole frames, compact JSON, rounded", texts, us)
    texts, us = timed(compact, delta_unrounded)
    row("deltas, compact JSON", texts, us + diff_us)
    texts, us = timed(compact, delta)
    row("deltas, compact JSON, rounded", texts, us + diff_us, "sent now")
    texts, us = timed(msgpack.packb, delta)
    row("deltas, MessagePack", texts, us + diff_us, "binary: needs a decoder")
    texts, us = timed(cbor2.dumps, delta)
    row("deltas, CBOR", texts, us + diff_us, "binary: needs a decoder")
    sent = next(r for r in rows if r["note"] == "sent now")
    whole_once = next(r for r in rows if r["encoding"] == "whole frames, compact JSON, rounded")
    every = 200  # runner.SNAPSHOT_EVERY's default: one frame in 200 goes whole
    mix = ((every - 1) * sent["deflate_once_bytes"] + whole_once["deflate_once_bytes"]) / every
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "preset": args.preset,
        "rate": args.rate,
        "frames": len(whole),
        "python": platform.python_version(),
        "rows": rows,
        "sent_bytes_per_frame": round(mix),
        "sent_bytes_per_second_at_20": round(20 * mix),
    }


def encodings_table(r: dict[str, Any]) -> str:
    lines = [
        f"Fanout frame encodings  {r['date']}  preset {r['preset']} at {r['rate']:g} orders/s, "
        f"{r['frames']} frames (20 a second), python {r['python']}",
        "",
        f"{'encoding':38} {'B/frame':>8} {'KB/s':>6} {'encode':>7} | {'deflate, context kept':>22}"
        f" | {'deflate once, no context':>25}",
        f"{'':38} {'':>8} {'':>6} {'us':>7} | {'B':>8} {'us/viewer':>13} | "
        f"{'B':>8} {'us/frame':>16}",
    ]
    for row in r["rows"]:
        lines.append(
            f"{row['encoding']:38} {row['bytes_per_frame']:>8,} "
            f"{20 * row['bytes_per_frame'] / 1000:>6.0f} {row['encode_us_per_frame']:>7,} | "
            f"{row['deflate_per_connection_bytes']:>8,} "
            f"{row['deflate_per_connection_us_per_viewer']:>13,} | "
            f"{row['deflate_once_bytes']:>8,} {row['deflate_once_us_per_frame']:>16,}"
            + (f"   {row['note']}" if row["note"] else "")
        )
    lines += [
        "",
        f"sent (deltas compressed once, one frame in 200 whole): {r['sent_bytes_per_frame']:,} B "
        f"a frame, {r['sent_bytes_per_second_at_20'] / 1000:.1f} KB/s at 20 frames/s",
    ]
    return "\n".join(lines)


# --- main ---------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--viewers", type=int, default=100, help="WebSocket viewers (100)")
    p.add_argument("--seconds", type=float, default=20.0, help="measurement window (20)")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds before measuring (2)")
    p.add_argument("--processes", type=int, choices=(1, 2), default=1, help="daphne processes")
    p.add_argument(
        "--redis",
        metavar="URL",
        help="channel layer for --processes 2 (default redis://127.0.0.1:6379/15)",
    )
    p.add_argument(
        "--url",
        action="append",
        default=[],
        help="use running server(s) instead (give twice for two processes: A, then B)",
    )
    p.add_argument("--preset", default="ecommerce", help="scenario preset (ecommerce)")
    p.add_argument("--producer", default="order-service", help="producer whose rate alternates")
    p.add_argument("--rate", type=float, default=20.0, help="the producer's low rate, events/s")
    p.add_argument("--rate-factor", type=float, default=1.5, help="high rate = rate x this")
    p.add_argument("--speed", type=float, default=1.0, help="simulation speed (1)")
    p.add_argument("--interval", type=float, default=0.5, help="seconds between commands")
    p.add_argument(
        "--client-processes",
        type=int,
        default=2,
        help="processes the viewers run in (2): a single one saturates before the server does",
    )
    p.add_argument(
        "--rebuild-every",
        type=int,
        default=1,
        help="every Nth viewer rebuilds each frame from the deltas (1: all); the others follow "
        "seq and base and read the rate from the text, a cheaper client for many viewers",
    )
    p.add_argument(
        "--encodings",
        action="store_true",
        help="no server: compare the frames' encodings and compression (bytes, CPU)",
    )
    p.add_argument(
        "--ack-every",
        type=int,
        default=2,
        help="frames per ack (2, as static/js/live.js; 1 acknowledges every frame)",
    )
    p.add_argument(
        "--no-deflate",
        action="store_true",
        help="viewers offer no permessage-deflate (frames arrive as plain text)",
    )
    p.add_argument(
        "--no-ack",
        action="store_true",
        help="viewers never ack: the server then stops after its frame window",
    )
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.add_argument(
        "--server-env",
        metavar="NAME=VALUE",
        action="append",
        default=[],
        help="extra environment for the servers, e.g. PYTHONASYNCIODEBUG=1 (investigation)",
    )
    p.add_argument("--keep-logs", metavar="DIR", help="copy the servers' logs into DIR")
    args = p.parse_args(argv)
    if args.processes == 2 and not args.redis and not args.url:
        args.redis = "redis://127.0.0.1:6379/15"
    if args.url and len(args.url) > 2:
        p.error("--url at most twice")
    if args.viewers < 1:
        p.error("--viewers must be at least 1")
    return args


def _sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def setup(args: argparse.Namespace) -> Iterator[tuple[list[Server], Stack]]:
    with Stack(verbose=not args.quiet) as stack:
        if args.url:
            servers = [Server(name, u.rstrip("/")) for name, u in zip("AB", args.url, strict=False)]
            yield servers, stack
            return
        if args.keep_logs:
            stack.callback(stack.keep_logs, Path(args.keep_logs))  # runs after the servers stop
        env = stack.env(args.redis, args.server_env)
        if args.redis:
            stack.redis_pid = stack.redis(args.redis)
            stack.callback(stack.forget_keys, args.redis)  # runs after the servers stop
        stack.migrate(env)
        servers = [stack.daphne(name, env) for name in "AB"[: args.processes]]
        yield servers, stack


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.encodings:
        found = encodings(args)
        print(json.dumps(found, indent=2) if args.json else encodings_table(found))
        return 0
    signal.signal(signal.SIGTERM, _sigterm)
    try:
        with setup(args) as (servers, stack):

            async def go() -> dict[str, Any]:
                bench = Bench(args, servers)
                bench.redis_pid = stack.redis_pid
                stack.bench = bench
                await bench.create()
                stack.say(
                    f"simulation {bench.sim_id}; {args.viewers} viewers over "
                    f"{len(servers)} process(es), {args.seconds:g} s window"
                )
                return await bench.run()

            result = asyncio.run(go())
    except SetupError as e:
        print(f"setup failed: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: servers stopped", file=sys.stderr)
        return 130
    print(json.dumps(result, indent=2) if args.json else table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
