"""Streaming to many viewers: one live simulation watched by N WebSocket viewers.

    python bench/stream.py [--viewers N] [--seconds S] [--processes 1|2] [--redis URL]
                           [--rate R] [--speed X] [--url URL [--url URL]] [--json]

Unless --url is given it serves the project itself: `manage.py migrate` on a temporary SQLite
database, then `python -m daphne -b 127.0.0.1 -p <free port> dashboard.asgi:application` with
DJANGO_DEBUG=1 (the in-memory channel layer). With --processes 2 it starts two daphne processes
sharing that database and a Redis channel layer (REDIS_URL, channels_redis; db 15 unless --redis
says otherwise): the simulation is created on process A and half of the viewers connect to
process B, so their frames cross Redis. A redis-server is started only when nothing answers at
127.0.0.1:6379; at the end the run deletes the keys it made there (its simulation's groups and its
server processes' inboxes), nothing else.

The run: create one simulation through the JSON API from a preset (ecommerce by default, the
producer's rate set by --rate), set its speed, start it, open --viewers sockets (an Origin header
as a browser sends; viewers only watch, and acknowledge each regular frame at once with
{"type": "ack"}, the protocol's flow control), wait for every one's `full` frame (at most 15 s),
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
CPU the rest of the machine used (/proc/stat), and payload bytes received per viewer per second.
It is a benchmark, not a test: it exits 0 whatever the figures (2 when the setup fails, 130 when
interrupted); every process it started is stopped either way.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import html
import itertools
import json
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
from dataclasses import dataclass, field
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
# json.dumps keeps the runner's key order: type, seq, t, full, state, ...
ACK = '{"type": "ack", "seq": %d}'
HEADER = re.compile(r'\{"type": "frame", "seq": (\d+), "t": ([^,]+), "full": (true|false)')


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
    next_command: int = 0  # first command this viewer has not yet seen the effect of
    samples: list[float] = field(default_factory=list)  # seconds, one per command seen
    sample_command: list[int] = field(default_factory=list)  # the command's index
    errors: list[str] = field(default_factory=list)
    closed: str = ""
    ack: bool = True  # say {"type": "ack"} for each regular frame, as the browser does
    ack_refused: bool = False
    behind: int = 0
    speeds: list[float] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)


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
        from websockets.asyncio.client import connect
        from websockets.typing import Origin

        base = next(s.url for s in self.servers if s.name == viewer.server)
        uri = "ws" + base[4:] + self.ws_path
        try:
            async with gate:
                ws = await connect(uri, origin=Origin(base), max_size=None, open_timeout=30)
            async with ws:
                async for message in ws:
                    seq = self.receive(viewer, message)
                    if seq is not None and viewer.ack:
                        await ws.send(ACK % seq)
                    if self.stop.is_set():
                        break
        except Exception as e:  # a viewer that drops out is reported, not fatal
            viewer.closed = f"{type(e).__name__}: {e}"
        finally:
            viewer.joined.set()  # never leave the start waiting on a dead viewer

    def receive(self, viewer: Viewer, message: str | bytes) -> int | None:
        """Record one message; returns a regular frame's seq (to acknowledge), else None."""
        now = time.perf_counter()
        text = message if isinstance(message, str) else message.decode()
        match = HEADER.match(text)
        if match is None:
            doc = json.loads(text)
            if doc.get("type") != "frame":
                viewer.messages.append((now, len(text), -1, False))
                if doc.get("type") == "error":
                    error = str(doc.get("message"))
                    if viewer.ack and error.startswith("unknown message"):
                        viewer.ack = False  # a server from before flow control
                        viewer.ack_refused = True
                    else:
                        viewer.errors.append(error)
                return None
            seq, full, sim_t = int(doc["seq"]), bool(doc.get("full")), float(doc["t"])
        else:
            doc = None
            seq, full = int(match.group(1)), match.group(3) == "true"
            sim_t = float(match.group(2))
        viewer.messages.append((now, len(text), seq, full))
        if full:
            viewer.got_full = True
            viewer.joined.set()
            return None
        viewer.sim_times.append((now, sim_t))
        if viewer.probe:
            doc = doc or json.loads(text)
            viewer.behind += bool(doc["state"].get("behind"))
            viewer.speeds.append(float(doc["state"].get("effective_speed", 0.0)))
            viewer.sizes.append(len(text))
        if len(self.commands) <= viewer.next_command:
            return seq
        doc = doc or json.loads(text)
        rate = doc["state"]["producers"][self.producer]["rate"]
        for j in range(len(self.commands) - 1, viewer.next_command - 1, -1):
            if abs(self.commands[j].value - rate) < 1e-9:
                for k in range(viewer.next_command, j + 1):
                    viewer.samples.append(now - self.commands[k].sent)
                    viewer.sample_command.append(k)
                viewer.next_command = j + 1
                break
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
        """Viewers join the simulation made by :meth:`create`; then the measured window."""
        args = self.args
        names = [s.name for s in self.servers]
        self.viewers = [
            Viewer(i, names[i % len(names)], probe=(i == 0), ack=not args.no_ack)
            for i in range(args.viewers)
        ]
        gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
        started = time.perf_counter()
        tasks = [asyncio.create_task(self.watch(v, gate)) for v in self.viewers]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                asyncio.gather(*(v.joined.wait() for v in self.viewers)), JOIN_TIMEOUT
            )
        connect_s = time.perf_counter() - started
        if args.redis:
            await asyncio.to_thread(self.find_inboxes)
        # a viewer whose full frame never came still counts (it is a result, not a setup
        # failure); only a run where no socket at all could connect is
        if all(v.closed for v in self.viewers):
            self.stop.set()
            reasons = sorted({v.closed for v in self.viewers})
            raise SetupError(f"no viewer could connect: {reasons[:3]}")
        await asyncio.sleep(args.warmup)

        pids = {s.name: s.pid for s in self.servers if s.pid}
        if self.redis_pid:
            pids["redis"] = self.redis_pid
        load_before = os.getloadavg()
        pids_waiting = {**pids, "client": os.getpid()}
        wait0 = {name: runqueue_wait(pid) for name, pid in pids_waiting.items()}
        cpu0 = {name: cpu_seconds(pid) for name, pid in pids.items()}
        own0 = time.process_time()
        busy0, total0 = machine_cpu()
        t0 = time.perf_counter()
        controller = asyncio.create_task(self.control(t0 + args.seconds))
        await asyncio.sleep(args.seconds)
        t1 = time.perf_counter()
        cpu1 = {name: cpu_seconds(pid) for name, pid in pids.items()}
        wait1 = {name: runqueue_wait(pid) for name, pid in pids_waiting.items()}
        own1 = time.process_time()
        busy1, total1 = machine_cpu()
        load_after = os.getloadavg()
        await controller
        await asyncio.sleep(GRACE)
        self.stop.set()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self.command({"command": "pause"})

        cpu = {name: round(cpu1[name] - cpu0[name], 2) for name in pids}
        machine_busy = busy1 - busy0
        machine_total = total1 - total0
        return self.figures(
            t0,
            t1,
            connect_s=connect_s,
            cpu=cpu,
            client_cpu=own1 - own0,
            waits={name: round(wait1[name] - wait0[name], 2) for name in pids_waiting},
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
        fps, delivered, bps, gaps = {}, {}, {}, {}
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
            "frame_bytes_mean": round(_mean(probe.sizes)) if probe.sizes else 0,
            "runner_behind_frames": probe.behind,
            "runner_effective_speed_mean": _r(_mean(probe.speeds)) if probe.speeds else 0.0,
            "viewer_errors": sorted({e for v in self.viewers for e in v.errors})[:5],
            "viewers_dropped": sum(1 for v in self.viewers if v.closed),
            "viewers_without_full_frame": sum(1 for v in self.viewers if not v.got_full),
            "acknowledged": any(v.ack for v in self.viewers),
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
            f"mean {r['bytes_per_viewer_per_second']['mean']:,}, "
            f"min {r['bytes_per_viewer_per_second']['min']:,} "
            f"(frame ~{r['frame_bytes_mean']:,} B)",
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

    acks = "acknowledged at once" if r["acknowledged"] else "not acknowledged"
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
