"""The live runner: one per simulation, pacing the engine against the wall clock.

The engine knows only virtual time; this is where wall time comes in (as SimPy's
``RealtimeEnvironment`` sits apart from its ``Environment``). Each tick the runner applies the
commands that arrived, advances the engine by ``wall dt x speed`` within a time budget, and
publishes one coalesced frame to the simulation's group. When the engine cannot keep pace, the
frame says so (``effective_speed``, ``behind``) instead of the server stalling.

Commands reach the runner through the channel layer (its group ``runner.<id>``), never through a
Python object lookup, so a viewer connected to another server process controls it the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
import os
import time
from typing import Any

from channels.exceptions import ChannelFull
from channels.layers import get_channel_layer

from simulator import CommandError, EventSampler, Scenario, Simulation, parse_scenario
from simulator.compare import Comparison

from .frames import RunState, build_frame, compare_state, state

log = logging.getLogger(__name__)

FRAME_INTERVAL = 0.05  # 20 frames a second
ENGINE_BUDGET = 0.012  # seconds of engine work per tick, at most
PAUSED_FRAME_INTERVAL = 1.0
PERSIST_INTERVAL = 2.0  # wall seconds between saves of the time reached (and heartbeats)
# No command, joiner or viewer ping for this long: the runner stops (its work is saved, and
# opening the simulation again rebuilds it).
IDLE_SECONDS = float(os.environ.get("FANOUT_IDLE_SECONDS", "1800"))
LATENCY_EVERY = 5  # percentile summaries every 5th frame (4 a second)
MIN_SPEED, MAX_SPEED = 0.1, 100.0
STEP_SECONDS = 0.5
RUNNER_COMMANDS = ("start", "pause", "step", "reset", "speed", "seed")


def frames_group(sim_id: str) -> str:
    return f"sim.{sim_id}"


def runner_group(sim_id: str) -> str:
    return f"runner.{sim_id}"


RUNNERS: dict[str, LiveRunner] = {}


class LiveRunner:
    def __init__(
        self,
        sim_id: str,
        scenario: Scenario,
        seed: int,
        *,
        speed: float = 1.0,
        log_: list[tuple[float, dict[str, Any]]] | None = None,
        until: float = 0.0,
        on_change: Any = None,
        running: bool = False,
    ) -> None:
        self.sim_id = sim_id
        self.scenario = scenario
        self.seed = seed
        self.run = RunState(sim_id, speed=speed)
        self.on_change = on_change  # async callable(runner): persist the log
        self.seq = 0
        self._build(log_ or [], until)
        self.run.running = running and not self.run.finished
        self.layer = get_channel_layer()
        self.channel = ""
        self._inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._wake = asyncio.Event()
        self._persist_task: asyncio.Task[None] | None = None
        self._persist_wanted = False
        self._tasks: list[asyncio.Task[None]] = []
        self._stopped = False
        self.stopped_idle = False
        self.idle_seconds = IDLE_SECONDS
        self.last_activity = time.monotonic()

    comparison: Comparison | None = None

    def _build(self, log_: list[tuple[float, dict[str, Any]]], until: float) -> None:
        self.sampler = EventSampler(200, seed=self.seed)
        self._make_model()
        for t, command in log_:
            self.sim.run_until(t)
            self._apply_engine(command)
        if until > self.sim.now:
            self.sim.run_until(until)
        self.sampler.drain()
        self.run.finished = self.sim.now >= self.scenario.duration

    def _make_model(self) -> None:
        self.sim = Simulation(self.scenario, self.seed, observers=(self.sampler,), trace=True)

    def _apply_engine(self, command: dict[str, Any]) -> dict[str, Any]:
        return self.sim.apply(command)

    def command_log(self) -> list[tuple[float, dict[str, Any]]]:
        return self.sim.command_log

    def current_state(self) -> dict[str, Any]:
        if self.comparison is not None:
            return compare_state(self.comparison, self.run)
        return state(self.sim, self.run)

    # --- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        assert self.layer is not None, "no channel layer configured"
        self.channel = await self.layer.new_channel()
        await self.layer.group_add(runner_group(self.sim_id), self.channel)
        RUNNERS[self.sim_id] = self
        # A fresh context: the runner outlives the request that started it, and must not
        # inherit that request's context (asgiref's per-request thread executor among it).
        self._tasks = [
            asyncio.create_task(self._receive(), context=contextvars.Context()),
            asyncio.create_task(self._loop(), context=contextvars.Context()),
        ]

    async def stop(self) -> None:
        self._stopped = True
        RUNNERS.pop(self.sim_id, None)
        self._schedule_persist()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.flush(), 2.0)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.layer is not None and self.channel:
            await self.layer.group_discard(runner_group(self.sim_id), self.channel)

    async def _receive(self) -> None:
        assert self.layer is not None
        while not self._stopped:
            message = await self.layer.receive(self.channel)
            self._inbox.put_nowait(message)
            self._wake.set()

    async def _loop(self) -> None:
        """Ticks at a steady rate; a command wakes it early so its effect shows at once."""
        loop = asyncio.get_running_loop()
        last_advance = next_tick = last_sent = last_saved = loop.time()
        while not self._stopped:
            delay = next_tick - loop.time()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)
            self._wake.clear()
            dirty = False
            while not self._inbox.empty():
                message = self._inbox.get_nowait()
                try:
                    dirty |= await self._handle(message)
                except Exception:  # one bad message must not stop the run for everyone
                    log.exception(
                        "runner %s: failed to handle %r", self.sim_id, message.get("type")
                    )
                    await self._reply(
                        message,
                        {
                            "type": "sim.reply",
                            "ok": False,
                            "error": "internal error; the run goes on",
                        },
                    )
            now = loop.time()
            if now >= next_tick:
                next_tick = max(next_tick + FRAME_INTERVAL, now)  # never owe a burst of ticks
                if self.run.running:
                    self._advance(now - last_advance)
                    dirty = True
                last_advance = now
                if now - last_sent >= PAUSED_FRAME_INTERVAL:
                    dirty = True
            if dirty:
                await self._publish()
                last_sent = now
            if time.monotonic() - self.last_activity > self.idle_seconds:
                log.info("runner %s: idle for %.0f s, stopping", self.sim_id, self.idle_seconds)
                self.stopped_idle = True
                self.run.running = False
                RUNNERS.pop(self.sim_id, None)
                self._stopped = True
                self._schedule_persist()
                if self.layer is not None:
                    await self.layer.group_discard(runner_group(self.sim_id), self.channel)
                break
            if now - last_saved >= PERSIST_INTERVAL:
                # a restart rebuilds up to here; it is also this runner's heartbeat (lease)
                self._schedule_persist()
                last_saved = now

    def _advance(self, wall_dt: float) -> None:
        """Advance by wall_dt x speed, within the time budget; say so when behind."""
        sim = self.sim
        wall_dt = min(wall_dt, 0.25)  # a stalled loop does not become a huge jump
        start_t = sim.now
        target = min(start_t + wall_dt * self.run.speed, self.scenario.duration)
        deadline = time.perf_counter() + ENGINE_BUDGET
        chunk = max((target - start_t) / 8, 1e-6)
        while sim.now < target:
            sim.run_until(min(target, sim.now + chunk))
            if time.perf_counter() > deadline:
                break
        self.run.behind = sim.now < target - 1e-9
        self.run.effective_speed = (sim.now - start_t) / wall_dt if wall_dt > 0 else 0.0
        if sim.now >= self.scenario.duration:
            self.run.running = False
            self.run.finished = True

    async def _publish(self) -> None:
        assert self.layer is not None
        self.seq += 1
        frame = build_frame(
            self.sim,
            self.run,
            self.sampler,
            self.seq,
            latency=self.seq % LATENCY_EVERY == 0,
            comparison=self.comparison,
        )
        # "sent" (wall clock, comparable across processes) lets a consumer that fell behind
        # skip frames that queued up for it instead of replaying them late
        await self.layer.group_send(
            frames_group(self.sim_id),
            {"type": "sim.frame", "text": json.dumps(frame), "sent": time.time()},
        )

    def full_frame(self) -> str:
        """A joiner's snapshot. It repeats the current ``seq``, so regular frames stay numbered
        one after the other and a viewer can count what it missed."""
        frame = build_frame(
            self.sim, self.run, None, self.seq, full=True, comparison=self.comparison
        )
        return json.dumps(frame)

    # --- messages ----------------------------------------------------------------------

    async def _reply(self, message: dict[str, Any], reply: dict[str, Any]) -> None:
        to = message.get("reply_to")
        if to and self.layer is not None:
            try:
                await self.layer.send(to, reply)
            except ChannelFull:
                # the asker is too far behind to read it; the run must not stop for that
                log.warning("runner %s: reply to a full channel dropped", self.sim_id)

    async def _handle(self, message: dict[str, Any]) -> bool:
        """Handle one channel-layer message. Returns whether the state changed."""
        kind = message.get("type")
        self.last_activity = time.monotonic()
        if kind == "sim.join":
            await self._reply(
                message, {"type": "sim.frame", "text": self.full_frame(), "full": True}
            )
            return False
        if kind == "sim.viewer":
            return False  # a viewer is still watching: that counts as activity
        if kind == "sim.ping":
            await self._reply(message, {"type": "sim.pong", "sim_id": self.sim_id})
            return False
        if kind == "sim.state":
            await self._reply(
                message, {"type": "sim.reply", "ok": True, "state": self.current_state()}
            )
            return False
        if kind == "sim.records":
            try:
                read = self.sim.read_records(
                    message.get("topic"),
                    message.get("partition", 0),
                    message.get("offset", 0),
                    message.get("limit", 20),
                )
            except CommandError as e:
                await self._reply(message, {"type": "sim.reply", "ok": False, "error": str(e)})
                return False
            await self._reply(message, {"type": "sim.reply", "ok": True, "read": read})
            return False
        if kind == "sim.trace":
            cid = message.get("correlation_id")
            hops = self.sim.trace(cid) if isinstance(cid, int) else None
            await self._reply(
                message, {"type": "sim.trace", "correlation_id": cid, "hops": hops or []}
            )
            return False
        if kind == "sim.command":
            command = message.get("command")
            try:
                result = self.execute(command)
            except CommandError as e:
                await self._reply(message, {"type": "sim.reply", "ok": False, "error": str(e)})
                return False
            await self._reply(
                message,
                {
                    "type": "sim.reply",
                    "ok": True,
                    "result": result,
                    "state": self.current_state(),
                },
            )
            self._schedule_persist()
            return True
        if kind == "sim.stop":
            self._stopped = True
            return False
        log.warning("runner %s: ignored message of type %r", self.sim_id, kind)
        return False

    def _schedule_persist(self) -> None:
        """Save the command log in the background: a reply never waits on the database."""
        if self.on_change is None:
            return
        self._persist_wanted = True
        if self._persist_task is None or self._persist_task.done():
            self._persist_task = asyncio.create_task(
                self._persist_loop(), context=contextvars.Context()
            )

    async def _persist_loop(self) -> None:
        while self._persist_wanted:
            self._persist_wanted = False  # commands arriving meanwhile ask for one more write
            try:
                await self.on_change(self)
            except Exception:
                log.exception("runner %s: could not save the command log", self.sim_id)

    async def flush(self) -> None:
        """Wait until the latest state of the command log is saved."""
        task = self._persist_task
        if task is not None:
            await task

    def execute(self, command: Any) -> dict[str, Any]:
        """Apply one command: the runner's own (start, pause, ...) or the engine's."""
        from simulator.commands import command_name, number

        name = command_name(command)
        if name not in RUNNER_COMMANDS:
            return self._apply_engine(command)
        if name == "start":
            if self.run.finished:
                raise CommandError("the run reached its duration: reset it to run again")
            self.run.running = True
        elif name == "pause":
            self.run.running = False
        elif name == "step":
            seconds = STEP_SECONDS
            if command.get("value") not in (None, ""):
                seconds = number(command, lo=0.001, hi=3600)
            self.run.running = False
            self.sim.run_until(min(self.sim.now + seconds, self.scenario.duration))
        elif name == "speed":
            self.run.speed = number(command, lo=MIN_SPEED, hi=MAX_SPEED)
        elif name in ("reset", "seed"):
            if name == "seed":
                self.seed = int(number(command, lo=0, hi=2**63 - 1, integer=True))
            self.run.running = False
            self.run.behind = False
            self.run.effective_speed = 0.0
            self._build([], 0.0)
        return {}


class CompareRunner(LiveRunner):
    """Runs a :class:`~simulator.compare.Comparison`: both architectures, one clock."""

    def _make_model(self) -> None:
        self.comparison = Comparison(self.scenario, self.seed, observers=(self.sampler,))
        self.sim = self.comparison.sim

    def _apply_engine(self, command: dict[str, Any]) -> dict[str, Any]:
        assert self.comparison is not None
        return self.comparison.apply(command)

    def command_log(self) -> list[tuple[float, dict[str, Any]]]:
        assert self.comparison is not None
        return self.comparison.switch_log


async def start_runner(
    sim_id: str,
    scenario_doc: dict[str, Any],
    seed: int,
    *,
    speed: float = 1.0,
    log_: list[tuple[float, dict[str, Any]]] | None = None,
    until: float = 0.0,
    on_change: Any = None,
    mode: str = "live",
    running: bool = False,
) -> LiveRunner:
    cls = CompareRunner if mode == "compare" else LiveRunner
    runner = cls(
        sim_id,
        parse_scenario(scenario_doc),
        seed,
        speed=speed,
        log_=log_,
        until=until,
        on_change=on_change,
        running=running,
    )
    await runner.start()
    return runner


async def request(
    sim_id: str, message: dict[str, Any], timeout: float = 2.0
) -> dict[str, Any] | None:
    """Send ``message`` to the simulation's runner and wait for its reply (None: no answer)."""
    layer = get_channel_layer()
    assert layer is not None
    reply_to = await layer.new_channel()
    await layer.group_send(runner_group(sim_id), {**message, "reply_to": reply_to})
    try:
        return dict(await asyncio.wait_for(layer.receive(reply_to), timeout))
    except TimeoutError:
        return None
