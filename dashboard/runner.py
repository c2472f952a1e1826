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
import logging
import sys
import time
from collections import deque
from typing import Any

from channels.exceptions import ChannelFull
from channels.layers import get_channel_layer

from simulator import CommandError, EventSampler, Scenario, Simulation, parse_scenario
from simulator.compare import Comparison
from simulator.cost import refusal_for
from simulator.observe import valid_correlation_id
from simulator.timeline import Moment, Timeline, jump_sentence
from simulator.wording import plural, seconds_text

from .config import env_int, env_number
from .frames import (
    RunState,
    build_frame,
    compare_state,
    deflated,
    delta_message,
    encode,
    frame_body,
    frame_delta,
    history,
    state,
)
from .guide import Guide
from .transport import WS_DEFLATE

log = logging.getLogger(__name__)

FRAME_INTERVAL = 0.05  # 20 frames a second
ENGINE_BUDGET = 0.012  # seconds of engine work per tick, all runners together, at the start
# A paused run's state changes only by what the runner handles (a command, a vote, a step),
# and each sends its frame at once; between them a frame every 10 s is a safety net only.
# (Once a second it cost a 300-service run 4.4 ms of a core a second for nothing.)
PAUSED_FRAME_INTERVAL = 10.0
PERSIST_INTERVAL = 2.0  # wall seconds between saves of the time reached (and heartbeats)
# No command, joiner or viewer ping for this long: the runner stops (its work is saved, and
# opening the simulation again rebuilds it).
IDLE_SECONDS = env_number("FANOUT_IDLE_SECONDS", 1800, 0.1, 7 * 24 * 3600)
# No command, joiner or viewer ping for this long: a running simulation pauses (a viewer's page
# pings every 20 s, so a watched run never pauses; one nobody watches stops costing CPU).
UNWATCHED_SECONDS = env_number("FANOUT_UNWATCHED_SECONDS", 50, 0.1, 7 * 24 * 3600)
LATENCY_EVERY = 5  # percentile summaries every 5th frame (4 a second)
# Frames go out as deltas against the frame before; every this many frames one goes out whole
# (about every 10 s at 20 frames a second), so a viewer never depends on a long chain.
SNAPSHOT_EVERY = env_int("FANOUT_SNAPSHOT_EVERY", 200, 1, 10**6)
MIN_SPEED, MAX_SPEED = 0.1, 100.0
STEP_SECONDS = 0.5
REBUILD_SLICE = 0.005  # seconds of replay between two turns of the loop, when rebuilding
# A step that takes longer than this to run (20 ms, about a tick's engine budget) is not
# finished before the reply: it goes on in slices (as a running simulation does), so one step
# never holds the loop for everyone (at 100 ms, bench/soak.py's steps every 5 s showed in every
# viewer's p99 command -> frame).
STEP_REPLY_BUDGET = 0.02
RUNNER_COMMANDS = (
    "start",
    "pause",
    "step",
    "reset",
    "speed",
    "seed",
    "seek",
    "lesson.reveal",
    "lesson.card",
)
# What a finished run still takes: commands that read or restart it, or lengthen it. Anything
# else would change a run that is over (it is refused with ERR_FINISHED).
FINISHED_ALLOWS = frozenset(
    {"pause", "speed", "reset", "seed", "seek", "extend", "lesson.reveal", "lesson.card"}
)
EXTEND_EXAMPLE = 60
ERR_FINISHED = (
    "The run finished at t = {t}, its length: Reset to play it again, or extend it with "
    '{{"command": "extend", "value": ' + str(EXTEND_EXAMPLE) + "}}"
)
ERR_SEEK = "seek needs a time in seconds from 0 to {duration} (the run's length), got {value!r}"
ERR_NO_GUIDE = "this simulation is not a guided lesson: open one live from its lesson page"
# Messages waiting for the runner's next turn, at most; past that a sender is told to wait
INBOX_LIMIT = 1000
ERR_BUSY = "the simulation is busy with many requests: try again in a moment"


def frames_group(sim_id: str) -> str:
    return f"sim.{sim_id}"


def runner_group(sim_id: str) -> str:
    return f"runner.{sim_id}"


RUNNERS: dict[str, LiveRunner] = {}

# Engine actions between two looks at the clock: well under a millisecond of work in the live
# configuration (the engine keeps its fast lane: docs/performance.md, "The live engine"), so no
# slice holds the event loop for long (bench/soak.py measures what viewers feel).
EVENTS_PER_SLICE = 100
# The longest engine work holds the event loop at once: a tick's engine time is run in chunks
# of at most this, with a turn of the loop (sockets, requests, other runners) between them.
ENGINE_CHUNK = 0.004
# The share of each tick the loop may be busy in all (engines, frames, sockets, requests): the
# rest stays idle, so whatever arrives is served within a chunk or so. The engines get what
# the rest leaves of it (see adapt_engine_budget), within ENGINE_MIN and ENGINE_MAX a tick.
LOOP_SHARE = 0.8
ENGINE_MIN = 0.004
ENGINE_MAX = LOOP_SHARE * FRAME_INTERVAL
ENGINE_GROW = 0.5  # of the way to what the loop has room for, each tick it has room
LATE_TICK = 0.015  # a tick kept waiting this long: the loop is busier than it measures
# A run owes the simulated time it could not reach in a tick and catches up on it in the next
# ones, owing at most this much wall time's worth (a longer stall is lost, not caught up); it
# is "behind" when it owes more than BEHIND_AFTER's worth after a tick: a short stall it
# catches up on (a garbage collection, a heavy frame, the machine busy for a moment) is not
# being behind, not keeping the speed for a quarter of a second is.
CATCH_UP = 0.5
BEHIND_AFTER = 0.25
# The share of wall time all of this process's runners may spend building and encoding frames,
# shared equally: a simulation whose frames cost more than its share sends them less often.
FRAME_SHARE = 0.25
VIEWER_SECONDS = 60.0  # a viewer that neither joined nor pinged for this long is not counted
MAX_VIEWERS_COUNTED = 10_000


# The total weight of the running simulations, computed at most once per half tick (or when a
# viewer comes or goes): every runner asks for its share each tick, and summing over every runner
# each time would cost the process the square of its runners.
_weights = {"at": -1.0, "version": -1, "total": 0}
_viewers_version = [0]  # changes whenever some runner's set of viewers does


def share_of(runner: LiveRunner) -> float:
    """This runner's part of what the process's running simulations share (engine time each
    tick, and time for frames): weighted by the sockets watching each, so a class's run comes
    first and a heavy run few watch cannot crowd it out. Between 0 and 1."""
    now = time.monotonic()
    if now - _weights["at"] > FRAME_INTERVAL / 2 or _weights["version"] != _viewers_version[0]:
        active = [r for r in RUNNERS.values() if r.run.running or r.run.stepping_to]
        _weights.update(
            at=now,
            version=_viewers_version[0],
            total=sum(1 + r.watchers() for r in active),
        )
    mine = 1 + runner.watchers()
    total = _weights["total"]
    if (
        not (runner.run.running or runner.run.stepping_to)
        or RUNNERS.get(runner.sim_id) is not runner
    ):
        total += mine  # not counted among the running ones: it asks as one more
    return mine / max(total, mine)


def adapt_engine_budget(
    budget: float, *, wall: float, busy: float, engine: float, late: float = 0.0
) -> float:
    """The process's engine time a tick (all its running simulations together), from the last
    one and what the loop did since it was set.

    ``wall``: seconds since; ``busy``: the loop thread's CPU seconds in that time (everything
    it ran); ``engine``: the engines' share of them; ``late``: the most a tick timer was kept
    waiting. What is not the engines' (frames, sockets, requests) is what the viewers need:
    the engines get what it leaves of ``LOOP_SHARE`` of a tick -- at once when that is less
    than they had, growing ``ENGINE_GROW`` of the way towards it when more -- and half of
    what they had when ticks were kept waiting, which the loop's own accounts do not show (a
    thread holding the interpreter, a machine short of CPU). Always between ``ENGINE_MIN`` and
    ``ENGINE_MAX``.
    """
    others = max(0.0, busy - engine) * FRAME_INTERVAL / wall if wall > 0 else 0.0
    room = LOOP_SHARE * FRAME_INTERVAL - others
    if late > LATE_TICK:
        room = min(room, budget / 2)
    room = min(ENGINE_MAX, max(ENGINE_MIN, room))
    if room <= budget:
        return room
    return budget + ENGINE_GROW * (room - budget)


class EnginePace:
    """The engine time this process's running simulations share each tick, measured and
    adapted once a tick (see :func:`adapt_engine_budget`): more when their work is the only
    work, less when viewers need the loop. One per process, as the loop is."""

    def __init__(self) -> None:
        self.budget = ENGINE_BUDGET
        self._at: float | None = None  # when it was last adapted (perf_counter)
        self._busy_at = 0.0  # the loop thread's CPU time then
        self._engine = 0.0  # the engines' CPU seconds since
        self._late = 0.0

    def spent(self, cpu_seconds: float) -> None:
        """An engine ran for this long (CPU seconds of the loop's thread)."""
        self._engine += cpu_seconds

    def late_by(self, seconds: float) -> None:
        """A tick timer fired this late."""
        self._late = max(self._late, seconds)

    def update(self) -> float:
        """Adapt the budget, at most once a tick; returns it."""
        now, busy = time.perf_counter(), time.thread_time()
        if self._at is None:
            self._at, self._busy_at = now, busy
            return self.budget
        wall = now - self._at
        if wall < FRAME_INTERVAL:
            return self.budget
        self.budget = adapt_engine_budget(
            self.budget,
            wall=wall,
            busy=busy - self._busy_at,
            engine=self._engine,
            late=self._late,
        )
        self._at, self._busy_at, self._engine, self._late = now, busy, 0.0, 0.0
        return self.budget


PACE = EnginePace()


def engine_budget(runner: LiveRunner) -> float:
    """Seconds of engine work a running simulation may do this tick: its part (``share_of``,
    by who watches it) of what the process's engines share (``PACE``)."""
    return PACE.budget * share_of(runner)


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
        epoch: int = 0,
        guide: Guide | None = None,
    ) -> None:
        self.sim_id = sim_id
        self.guide = guide
        self.epoch = epoch  # the lease's epoch this runner holds (see SimulationRecord)
        self.scenario = scenario
        self.seed = seed
        self.run = RunState(sim_id, speed=speed)
        self.on_change = on_change  # async callable(runner): persist the log
        self.seq = 0
        self._build([], 0.0)
        # a rebuild replays ``log_`` up to ``until`` in slices (``catch_up``) before it starts
        self._catch_up_to: tuple[list[tuple[float, dict[str, Any]]], float, bool] = (
            list(log_ or []),
            until,
            running,
        )
        self.layer = get_channel_layer()
        self.channel = ""
        self._inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._wake = asyncio.Event()
        self._persist_task: asyncio.Task[None] | None = None
        self._persist_wanted = False
        self._tasks: list[asyncio.Task[None]] = []
        self._stopped = False
        self.released = False  # ended by a shutdown: the lease is let go, the run not stopped
        self.stop_reason = ""  # stopped for good: "idle" or "owner" (Stop); "" otherwise
        self.idle_seconds = IDLE_SECONDS
        self.unwatched_seconds = UNWATCHED_SECONDS
        self.viewers: dict[str, float] = {}  # a watching socket's channel -> when last heard
        self.last_activity = time.monotonic()

    comparison: Comparison | None = None
    fenced = False
    guide: Guide | None = None  # a guided lesson's cards and the class's predictions
    _discard: asyncio.Task[None] | None = None

    @property
    def duration(self) -> float:
        """The run's length: the scenario's, plus what ``extend`` commands added."""
        return self.sim.duration

    @property
    def timeline(self) -> Timeline:
        return self.comparison.timeline if self.comparison is not None else self.sim.timeline

    def _build(self, log_: list[tuple[float, dict[str, Any]]], until: float) -> None:
        self.sampler = EventSampler(200, seed=self.seed)
        # recorded commands a backward seek replays as the clock passes their times
        self._replay: deque[tuple[float, dict[str, Any]]] = deque()
        self.run.replaying = 0
        self._make_model()
        for t, command in log_:
            self.sim.run_until(t)
            self._apply_engine(command)
        if until > self.sim.now:
            self.sim.run_until(until)
        self.sampler.drain()
        self.run.finished = self.sim.now >= self.duration

    async def catch_up(self) -> None:
        """Replay the stored command log up to the time reached, in slices.

        A rebuild after a restart may be minutes of simulated time: run on the loop in one go it
        would stall every other socket of the process, so it yields between slices.
        """
        log_, until, running = self._catch_up_to
        self._catch_up_to = ([], 0.0, False)
        for t, command in log_:
            if t > until:
                # saved while a backward seek replayed: the rest is applied as the clock
                # passes it, as it would have been
                self._replay.append((t, command))
                continue
            await self._run_in_slices(t)
            self._apply_engine(command)
        self.run.replaying = len(self._replay)
        await self._run_in_slices(until)
        self.sampler.drain()
        self.run.finished = self.sim.now >= self.duration
        self.run.running = running and not self.run.finished

    async def _run_in_slices(self, t: float) -> None:
        while not self._timed_run(t, REBUILD_SLICE):
            # the sampler is drained as a frame would: what a rebuild watches stays a sample
            self.sampler.drain()
            await asyncio.sleep(0)

    def _make_model(self) -> None:
        self.sim = Simulation(
            self.scenario, self.seed, observers=(self.sampler,), trace=True, chart_history=True
        )

    def _apply_engine(self, command: dict[str, Any]) -> dict[str, Any]:
        return self.sim.apply(command)

    def command_log(self) -> list[tuple[float, dict[str, Any]]]:
        """The run's commands: those applied, then those a backward seek is still replaying."""
        return self.sim.command_log + list(self._replay)

    def current_state(self) -> dict[str, Any]:
        if self.comparison is not None:
            st = compare_state(self.comparison, self.run)
        else:
            st = state(self.sim, self.run)
        return self._with_guide(st, full=True)

    def _with_guide(self, st: dict[str, Any], *, full: bool) -> dict[str, Any]:
        if self.guide is not None:
            st["guide"] = self.guide.state(self.sim.now)
            if full:
                st["guide"].update(self.guide.static())
        return st

    # --- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        assert self.layer is not None, "no channel layer configured"
        other = RUNNERS.get(self.sim_id)
        if other is not None and other is not self and not other._stopped:
            raise RuntimeError(f"simulation {self.sim_id} already has a runner in this process")
        RUNNERS[self.sim_id] = self
        self.channel = await self.layer.new_channel()
        await self.layer.group_add(runner_group(self.sim_id), self.channel)
        # A fresh context: the runner outlives the request that started it, and must not
        # inherit that request's context (asgiref's per-request thread executor among it).
        self._tasks = [
            asyncio.create_task(self._receive(), context=contextvars.Context()),
            asyncio.create_task(self._loop(), context=contextvars.Context()),
        ]

    def _unregister(self) -> None:
        if RUNNERS.get(self.sim_id) is self:
            del RUNNERS[self.sim_id]

    def fence(self) -> None:
        """The lease is another runner's now (a newer epoch): stop at once, save nothing."""
        if self._stopped:
            return
        log.warning(
            "runner %s: lost its lease (epoch %d is no longer current); stopping",
            self.sim_id,
            self.epoch,
        )
        self.fenced = True
        self.on_change = None  # a stale runner's saves would overwrite the newer one's
        self._end()

    def _end(self, *, for_good: bool = False, reason: str = "owner") -> None:
        """The one way a runner ends, whatever ends it (idle, Stop, a lost lease, the process
        shutting down): it leaves the registry (another may start), its other tasks are
        cancelled (none is left waiting on the channel layer), it leaves its group, and its
        last state is saved (unless fenced). ``for_good`` (idle, Stop): the record is marked
        stopped, with ``reason`` ("idle" or "owner"), so nothing rebuilds it until it is opened
        again; otherwise (shutdown) the lease is only let go, and the next process that is asked
        for it rebuilds it from there."""
        if self._stopped:
            return
        self._stopped = True
        if for_good:
            self.run.running = False
            self.run.stepping_to = None
            self.stop_reason = reason
        self._unregister()
        self._schedule_persist()
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
        if self.layer is not None and self.channel:
            layer, channel = self.layer, self.channel
            self._discard = asyncio.create_task(
                layer.group_discard(runner_group(self.sim_id), channel),
                context=contextvars.Context(),
            )

    @property
    def stopped_for_good(self) -> bool:
        """Stopped by its owner or for being idle: its record says stopped."""
        return bool(self.stop_reason)

    async def stop(self, *, for_good: bool = False, reason: str = "owner") -> None:
        """End the runner (:meth:`_end`) and wait until it has: its last save (at most 2 s),
        its tasks, its leaving the group."""
        self._end(for_good=for_good, reason=reason)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.flush(), 2.0)
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if self._discard is not None:
            with contextlib.suppress(Exception):
                await self._discard

    async def _receive(self) -> None:
        """Commands from the channel layer. If the layer fails (Redis restarting), retry with
        a back-off instead of dying: a runner that cannot hear is worse than none."""
        assert self.layer is not None
        pause = 0.1
        while not self._stopped:
            try:
                message = await self.layer.receive(self.channel)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning("runner %s: channel layer receive failed (%s)", self.sim_id, e)
                await asyncio.sleep(pause)
                pause = min(pause * 2, 5.0)
                continue
            pause = 0.1
            if self._inbox.qsize() >= INBOX_LIMIT:
                await self._reply(
                    message,
                    {"type": "sim.reply", "ok": False, "error": ERR_BUSY},
                )
                continue
            self._inbox.put_nowait(message)
            self._wake.set()

    async def _loop(self) -> None:
        """Ticks at a steady rate; a command wakes it early so its effect shows at once."""
        loop = asyncio.get_running_loop()
        last_advance = next_tick = last_sent = last_saved = loop.time()
        moved = False  # the run moved since the last frame sent
        waited_for: float | None = None  # the tick whose timer this runner last waited for
        while not self._stopped:
            delay = next_tick - loop.time()
            if delay > 0:
                waited_for = next_tick
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
                if waited_for == next_tick:  # how late the loop got back to a waiting tick
                    PACE.late_by(now - next_tick)
                waited_for = None
                next_tick = max(next_tick + FRAME_INTERVAL, now)  # never owe a burst of ticks
                advanced = False
                PACE.update()
                try:
                    if self.run.running:
                        await self._advance(now - last_advance)
                        advanced = True
                    elif self.run.stepping_to is not None:
                        self._owed = 0.0
                        await self._step_tick()
                        advanced = True
                    else:
                        self._owed = 0.0
                except Exception as e:  # the engine failed: pause and say so, never go silent
                    self._engine_failed(e)
                    dirty = True
                if advanced:
                    await asyncio.sleep(0)  # a turn of the loop between the engine and the frame
                last_advance = now
                # a frame when the run moved, as often as this runner's share of frame work
                # allows (a heavy state goes out less often than 20 a second on a busy server)
                # (half a tick of slack: ticks are 50 ms apart give or take the loop's jitter,
                # and a frame due at every tick must not skip one for arriving 1 ms early)
                if advanced and now - last_sent >= self.frame_interval() - FRAME_INTERVAL / 2:
                    dirty = True
                moved |= advanced
                if moved and not advanced:
                    dirty = True  # it stopped moving (a step done, the end reached): say where
                if now - last_sent >= PAUSED_FRAME_INTERVAL:
                    dirty = True
            if dirty:
                await self._publish()
                last_sent = now
                moved = False
            quiet = time.monotonic() - self.last_activity
            if quiet > self.unwatched_seconds and (self.run.running or self.run.stepping_to):
                log.info("runner %s: nobody watching for %.0f s, pausing", self.sim_id, quiet)
                self.run.running = False
                self.run.stepping_to = None
                self.run.paused_unwatched = True
                self._schedule_persist()
                await self._publish()
            if quiet > self.idle_seconds:
                log.info("runner %s: idle for %.0f s, stopping", self.sim_id, self.idle_seconds)
                self._end(for_good=True, reason="idle")
                break
            if now - last_saved >= PERSIST_INTERVAL:
                # a restart rebuilds up to here; it is also this runner's heartbeat (lease)
                self._schedule_persist()
                last_saved = now
                await self._rejoin()

    async def _rejoin(self) -> None:
        """Join the runner's group again (idempotent). Redis keeps groups in memory: after a
        Redis restart they are empty, and a runner that did not rejoin would hold its lease
        while no command could reach it."""
        if self.layer is None or not self.channel:
            return
        try:
            await self.layer.group_add(runner_group(self.sim_id), self.channel)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.debug("runner %s: could not rejoin its group (%s)", self.sim_id, e)

    _owed = 0.0  # simulated seconds the run fell short of the asked speed, to catch up on
    budget = ENGINE_BUDGET  # the engine time it had at its last tick

    async def _advance(self, wall_dt: float) -> None:
        """Advance by wall_dt x speed (and what earlier ticks fell short of), within this tick's
        engine budget; say "behind" when it could not, for more than a short tick's worth."""
        sim = self.sim
        speed = self.run.speed
        wall_dt = min(wall_dt, CATCH_UP)  # a stalled loop does not become a huge jump
        start_t = sim.now
        owed = min(self._owed, speed * CATCH_UP)
        target = min(start_t + wall_dt * speed + owed, self.duration)
        if self.guide is not None:
            target = self.guide.stop_at(start_t, target)  # a guided lesson asks on time
        self.budget = engine_budget(self)
        await self._run_for(target, self.budget)
        self._owed = max(0.0, target - sim.now)
        self.run.behind = self._owed > speed * BEHIND_AFTER
        reached = (sim.now - start_t) / wall_dt if wall_dt > 0 else 0.0
        # what the frames show: the speed reached, over the last few ticks
        self.run.effective_speed = (
            reached
            if not self.run.effective_speed
            else 0.7 * self.run.effective_speed + 0.3 * reached
        )
        if sim.now >= self.duration:
            self.run.running = False
            self.run.finished = True
            self._owed = 0.0
        self._maybe_ask()

    async def _run_for(self, target: float, budget_s: float) -> bool:
        """Run the engine toward ``target`` for at most ``budget_s`` of this tick, in chunks of
        at most ``ENGINE_CHUNK`` with a turn of the loop between them (sockets, requests and
        the other runners are served while a long tick runs). Returns whether it got there."""
        deadline = time.perf_counter() + budget_s
        while True:
            left = deadline - time.perf_counter()
            if self._timed_run(target, min(left, ENGINE_CHUNK)):
                return True
            if time.perf_counter() >= deadline:
                return False
            await asyncio.sleep(0)

    def _timed_run(self, target: float, budget_s: float) -> bool:
        """``_run_within``, its CPU time told to the process's pace."""
        cpu = time.thread_time()
        try:
            return self._run_within(target, budget_s)
        finally:
            PACE.spent(time.thread_time() - cpu)

    def _maybe_ask(self) -> None:
        """At a guided lesson's question the run pauses for the class's predictions."""
        if self.guide is not None and self.guide.reached(self.sim.now):
            self.run.running = False
            self.run.stepping_to = None
            self._schedule_persist()

    def _run_within(self, target: float, budget_s: float) -> bool:
        """Run the engine toward ``target`` for at most ``budget_s`` seconds of this thread.

        The engine runs in slices of ``EVENTS_PER_SLICE`` actions and the clock is read between
        slices, so one tick can overrun its budget by one slice at most, however heavy the
        scenario: the loop that serves every socket of this process gets its turn back.
        Returns whether ``target`` was reached.
        """
        sim = self.sim
        deadline = time.perf_counter() + budget_s
        pending = self._replay
        while pending and pending[0][0] <= target:
            # a backward seek replays the run's recorded commands at their times: run to the
            # next one, apply it (as ``simulator.replay`` does), go on
            at = pending[0][0]
            while not sim.run_some(at, EVENTS_PER_SLICE):
                if time.perf_counter() > deadline:
                    return False
            _, command = pending.popleft()
            self.run.replaying = len(pending)
            try:
                self._apply_engine(command)
            except CommandError as e:  # it took effect then; a replay that cannot is a bug
                log.warning("runner %s: a recorded command did not replay (%s)", self.sim_id, e)
            if time.perf_counter() > deadline:
                return False
        while not sim.run_some(target, EVENTS_PER_SLICE):
            if time.perf_counter() > deadline:
                return False
        return True

    def _vote(self, voter: Any, choice: Any) -> str | None:
        if self.guide is None:
            return ERR_NO_GUIDE
        if not isinstance(voter, str) or not voter:
            return "open the simulation's page to answer (your browser's session is your vote)"
        error = self.guide.vote(voter, choice)
        if error is None:
            self._schedule_persist()
        return error

    def _go_to_card(self, command: dict[str, Any]) -> dict[str, Any]:
        """Step back, replay the moment or skip ahead: the run starts again from t = 0 (same
        seed, same script) and goes to the card's time in slices, as a long step does."""
        from simulator.commands import number

        if self.guide is None:
            raise CommandError(ERR_NO_GUIDE)
        cards = self.guide.cards
        index = int(number(command, lo=0, hi=max(len(cards) - 1, 0), integer=True))
        self.run.running = False
        self.run.behind = False
        self.run.error = None
        self._build([], 0.0)
        self.run.stepping_to = min(cards[index].at, self.duration)
        self._step_on(STEP_REPLY_BUDGET)
        return {"card": index, "stepping_to": self.run.stepping_to}

    def _seek(self, command: dict[str, Any]) -> dict[str, Any]:
        """Jump to a time: forward, the run plays there in slices (as a long ``step``);
        backward, it is rebuilt from t = 0 with the same seed and plays there again, replaying
        its recorded commands up to that time (the engine is deterministic, so it is the same
        run); the commands sent after that time are dropped. Replies with a sentence."""
        from simulator.commands import Shown, number

        duration = self.duration
        try:
            to = number(command, lo=0, hi=duration)
        except CommandError:
            raise CommandError(
                ERR_SEEK.format(duration=seconds_text(duration), value=Shown(command.get("value")))
            ) from None
        now = self.sim.now
        if abs(to - now) < 1e-9 and not self._replay:
            return {
                "message": f"Already at t = {seconds_text(now)}",
                "stepping_to": None,
                "t": now,
                "dropped": 0,
            }
        old: list[Moment] = [m for m in self.timeline.commands if m.t <= to]
        near = self.timeline.near(to, duration, before=old)
        message = jump_sentence(to, near)
        self.run.running = False
        self.run.behind = False
        self.run.error = None
        if to < now:
            recorded = self.command_log()
            kept = [(t, c) for t, c in recorded if t <= to]
            dropped = len(recorded) - len(kept)
            self._build([], 0.0)
            self._replay = deque(kept)
            self.run.replaying = len(kept)
            message = message.replace("Jumping to", "Jumping back to", 1)
            message += ": the run plays again from t = 0 with the same seed"
            if kept:
                message += f" and its {plural(len(kept), 'command')} up to then"
            if dropped:
                sent = "one sent after it is" if dropped == 1 else f"{dropped:,} sent after it are"
                message += f"; the {sent} dropped"
        else:  # forward: a replay under way keeps what comes before the new time
            kept_later = [(t, c) for t, c in self._replay if t <= to]
            dropped = len(self._replay) - len(kept_later)
            self._replay = deque(kept_later)
            self.run.replaying = len(kept_later)
        self.run.finished = False
        self.run.stepping_to = to
        try:
            self._step_on(STEP_REPLY_BUDGET)
        except Exception as e:
            self._engine_failed(e)
            raise CommandError(str(self.run.error)) from None
        return {
            "message": message,
            "stepping_to": self.run.stepping_to,
            "t": self.sim.now,
            "dropped": dropped,
        }

    def _engine_failed(self, e: Exception) -> None:
        log.exception("runner %s: the engine failed at t=%.3f", self.sim_id, self.sim.now)
        self.run.running = False
        self.run.stepping_to = None
        self.run.error = (
            f"the simulation stopped at t = {self.sim.now:.2f} s: {type(e).__name__}: {e}"
        )[:500]

    def _step_on(self, budget_s: float | None = None) -> None:
        """Run a step under way for one slice of budget (at once: a command's reply waits for
        it); end it when it gets there."""
        target = self._step_target()
        if target is None:
            return
        if self._timed_run(target, engine_budget(self) if budget_s is None else budget_s):
            self._stepped()

    async def _step_tick(self) -> None:
        """A tick of a step under way: as a running tick, in chunks of this tick's budget."""
        target = self._step_target()
        if target is None:
            return
        self.budget = engine_budget(self)
        if await self._run_for(target, self.budget):
            self._stepped()

    def _step_target(self) -> float | None:
        target = self.run.stepping_to
        if target is not None and self.guide is not None:
            target = self.guide.stop_at(self.sim.now, target)
        return target

    def _stepped(self) -> None:
        self.run.stepping_to = None
        if self.sim.now >= self.duration:
            self.run.finished = True
        self._maybe_ask()

    async def _publish(self) -> None:
        """Send a frame to every viewer. A channel layer that fails (Redis restarting) costs
        that frame, never the run: the next tick sends the next one."""
        try:
            await self._send_frame()
        except asyncio.CancelledError:
            raise
        except Exception as e:
            now = time.monotonic()
            if now - self._layer_warned > 10:
                self._layer_warned = now
                log.warning("runner %s: could not send a frame (%s)", self.sim_id, e)

    _layer_warned = 0.0

    frame_cost = 0.0  # seconds to build and encode a frame (a moving average)

    def _saw_viewer(self, channel: Any) -> None:
        if not isinstance(channel, str) or not channel:
            return
        viewers = self.viewers
        if channel not in viewers:
            _viewers_version[0] += 1
        viewers[channel] = time.monotonic()
        if len(viewers) > MAX_VIEWERS_COUNTED:  # forget the longest silent
            del viewers[min(viewers, key=viewers.__getitem__)]

    def watchers(self) -> int:
        """Sockets watching this run: joined or pinged in the last ``VIEWER_SECONDS`` (the
        silent ones are forgotten at most once a second)."""
        now = time.monotonic()
        if now - self._pruned_at > 1.0:
            self._pruned_at = now
            cutoff = now - VIEWER_SECONDS
            stale = [c for c, seen in self.viewers.items() if seen < cutoff]
            for c in stale:
                del self.viewers[c]
            if stale:
                _viewers_version[0] += 1
        return len(self.viewers)

    _pruned_at = 0.0

    def frame_interval(self) -> float:
        """Seconds between frames: 1/20 s, or longer when this runner's frames cost more than
        its share of the process's time.

        All runners share ``FRAME_SHARE`` of the process, weighted by who watches: a run a
        class of 30 watches gets 31 parts, one with a single viewer 2. So the frames go where
        the viewers are, and a heavy run few watch cannot slow a class's frames down."""
        return max(FRAME_INTERVAL, self.frame_cost / (FRAME_SHARE * share_of(self)))

    async def _send_frame(self) -> None:
        assert self.layer is not None
        started = time.perf_counter()
        self.seq += 1
        frame = build_frame(
            self.sim,
            self.run,
            self.sampler,
            self.seq,
            latency=self.seq % LATENCY_EVERY == 0,
            comparison=self.comparison,
        )
        frame["epoch"] = self.epoch
        # every frame carries the guide whole: a delta sends only what changed of it
        self._with_guide(frame["state"], full=True)
        message = self._frame_message(frame)
        self.frame_cost = 0.8 * self.frame_cost + 0.2 * (time.perf_counter() - started)
        # "sent" (wall clock, comparable across processes) lets a consumer that fell behind
        # skip frames that queued up for it instead of replaying them late
        message["sent"] = time.time()
        await self.layer.group_send(frames_group(self.sim_id), message)

    # the last frame published: the base of the next delta, and what a viewer who missed part
    # of the chain or joins is sent whole
    _last_frame: dict[str, Any] | None = None
    _last_body: dict[str, Any] | None = None
    _last_seq = 0
    _whole_seq = -(10**9)  # the last frame published whole
    _whole: tuple[int, str, bytes | None] | None = None  # (seq, text, deflated), encoded once
    _joiners: tuple[int, str, bytes | None] | None = None  # a joiner's full frame, the same

    def _frame_message(self, frame: dict[str, Any]) -> dict[str, Any]:
        """The channel-layer message for a new frame, encoded once for all its viewers: a delta
        against the frame published before it (``base``), or the frame whole (the first one,
        and every ``SNAPSHOT_EVERY`` frames). docs/api.md, "Deltas"."""
        seq = frame["seq"]
        body = frame_body(frame)
        previous, base = self._last_body, self._last_seq
        self._last_frame, self._last_body, self._last_seq = frame, body, seq
        message: dict[str, Any] = {"type": "sim.frame", "seq": seq, "epoch": self.epoch}
        if previous is None or seq - self._whole_seq >= SNAPSHOT_EVERY:
            self._whole_seq = seq
            self._whole = self._encoded(frame)
            _, message["text"], packed = self._whole
        else:
            patch, remove = frame_delta(previous, body)
            text = encode(delta_message(seq, base, patch, remove))
            message["text"], message["base"] = text, base
            packed = deflated(text) if WS_DEFLATE else None
        if packed is not None:
            message["deflated"] = packed
        return message

    @staticmethod
    def _encoded(frame: dict[str, Any]) -> tuple[int, str, bytes | None]:
        text = encode(frame)
        return frame["seq"], text, deflated(text) if WS_DEFLATE else None

    def _published(self) -> dict[str, Any]:
        """The last frame published (one is made, without events, when none was yet)."""
        if self._last_frame is None:
            # built as a full frame: that leaves a comparison's call hops for the next frame
            frame = build_frame(
                self.sim, self.run, None, self.seq, full=True, comparison=self.comparison
            )
            del frame["history"]
            frame["full"] = False
            frame["epoch"] = self.epoch
            self._with_guide(frame["state"], full=True)
            self._last_frame, self._last_body, self._last_seq = frame, frame_body(frame), self.seq
        return self._last_frame

    def snapshot_message(self) -> dict[str, Any]:
        """The last frame published, whole: for a viewer whose chain of deltas broke (it fell
        behind, a frame was lost, or it asked with ``{"type": "resync"}``). Encoded once however
        many ask."""
        frame = self._published()
        if self._whole is None or self._whole[0] != frame["seq"]:
            self._whole = self._encoded(frame)
        seq, text, packed = self._whole
        message: dict[str, Any] = {
            "type": "sim.frame",
            "seq": seq,
            "epoch": self.epoch,
            "text": text,
            "snapshot": True,
            "sent": time.time(),
        }
        if packed is not None:
            message["deflated"] = packed
        return message

    def join_message(self, voter: str = "") -> dict[str, Any]:
        """A joiner's full frame: the last frame published with every chart's history (and in a
        guided lesson this browser's answer). It repeats that frame's ``seq``, so the deltas
        that follow apply to it. Without an answer to add, one text serves every joiner of the
        same frame (a class that opens the page at once)."""
        frame = self._published()
        mine = bool(voter) and self.guide is not None
        if mine or self._joiners is None or self._joiners[0] != frame["seq"]:
            full = dict(frame, full=True, events=[], events_seen=0)
            if "sync_hops" in full:
                full["sync_hops"] = []
            full["history"] = history(self.sim, self.comparison)
            if mine:
                assert self.guide is not None
                full["my_vote"] = self.guide.votes.get(voter)
                encoded = self._encoded(full)
            else:
                encoded = self._joiners = self._encoded(full)
        else:
            encoded = self._joiners
        seq, text, packed = encoded
        message: dict[str, Any] = {
            "type": "sim.frame",
            "seq": seq,
            "text": text,
            "full": True,
            "epoch": self.epoch,
        }
        if packed is not None:
            message["deflated"] = packed
        return message

    def full_frame(self, voter: str = "") -> str:
        """A joiner's full frame, as text (:meth:`join_message`)."""
        return str(self.join_message(voter)["text"])

    # --- messages ----------------------------------------------------------------------

    async def _reply(self, message: dict[str, Any], reply: dict[str, Any]) -> None:
        to = message.get("reply_to")
        if to and self.layer is not None:
            try:
                await self.layer.send(to, reply)
            except ChannelFull:
                # the asker is too far behind to read it; the run must not stop for that
                log.warning("runner %s: reply to a full channel dropped", self.sim_id)
            except Exception as e:  # the channel layer is down: the asker times out, says so
                log.warning("runner %s: could not reply (%s)", self.sim_id, e)

    async def _handle(self, message: dict[str, Any]) -> bool:
        """Handle one channel-layer message. Returns whether the state changed."""
        kind = message.get("type")
        self.last_activity = time.monotonic()
        if kind in ("sim.viewer", "sim.join"):
            self._saw_viewer(message.get("channel") or message.get("reply_to"))
        if kind == "sim.join":
            voter = message.get("voter")
            await self._reply(message, self.join_message(voter if isinstance(voter, str) else ""))
            return False
        if kind == "sim.snapshot":
            await self._reply(message, self.snapshot_message())
            return False
        if kind == "sim.vote":
            error = self._vote(message.get("voter"), message.get("choice"))
            await self._reply(
                message,
                {
                    "type": "sim.vote",
                    "ok": error is None,
                    "choice": message.get("choice"),
                    "error": error,
                },
            )
            return error is None
        if kind == "sim.leave":
            if self.viewers.pop(str(message.get("channel")), None) is not None:
                _viewers_version[0] += 1
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
        if kind in ("sim.records", "sim.replay"):
            try:
                if kind == "sim.records":
                    result = self.sim.read_records(
                        message.get("topic"),
                        message.get("partition", 0),
                        message.get("offset", 0),
                        message.get("limit", 20),
                    )
                else:
                    result = replay(self.sim, message)
            except CommandError as e:
                await self._reply(message, {"type": "sim.reply", "ok": False, "error": str(e)})
                return False
            await self._reply(message, {"type": "sim.reply", "ok": True, "result": result})
            return False
        if kind == "sim.trace":
            cid = message.get("correlation_id")
            hops = self.sim.trace(cid) if cid is not None and valid_correlation_id(cid) else None
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
        if self.run.finished and name not in FINISHED_ALLOWS:
            raise CommandError(ERR_FINISHED.format(t=seconds_text(self.duration)))
        if name not in RUNNER_COMMANDS:
            refusal = refusal_for(self.sim, command)
            if refusal is not None:
                raise CommandError(refusal.replace("this scenario", "this simulation", 1))
            result = self._apply_engine(command)
            if name == "extend":
                self.run.finished = self.sim.now >= self.duration
                more = seconds_text(result["extended_by"])
                result["message"] = (
                    f"The run now lasts {seconds_text(self.duration)} ({more} more): "
                    "Start to play on"
                )
            return result
        if name == "seek":
            return self._seek(command)
        self.run.stepping_to = None  # any runner command ends a step under way
        if name == "start":
            if self.run.error:
                raise CommandError(self.run.error + "; reset it to run again")
            self.run.running = True
            self.run.paused_unwatched = False
        elif name == "pause":
            self.run.running = False
        elif name == "step":
            seconds = STEP_SECONDS
            if command.get("value") not in (None, ""):
                seconds = number(command, lo=0.001, hi=3600)
            self.run.running = False
            self.run.stepping_to = min(self.sim.now + seconds, self.duration)
            try:
                self._step_on(STEP_REPLY_BUDGET)
            except Exception as e:
                self._engine_failed(e)
                raise CommandError(str(self.run.error)) from None
            if self.run.stepping_to is not None:
                # too long to run before replying: it goes on in slices, tick by tick, and the
                # frames show the clock moving toward it
                return {"stepping_to": self.run.stepping_to, "now": self.sim.now}
        elif name == "speed":
            self.run.speed = number(command, lo=MIN_SPEED, hi=MAX_SPEED)
        elif name == "lesson.reveal":
            if self.guide is None:
                raise CommandError(ERR_NO_GUIDE)
            self.guide.reveal()
            self._schedule_persist()
        elif name == "lesson.card":
            return self._go_to_card(command)
        elif name in ("reset", "seed"):
            if name == "seed":
                self.seed = int(number(command, lo=0, hi=2**63 - 1, integer=True))
            self.run.running = False
            self.run.behind = False
            self.run.effective_speed = 0.0
            self.run.error = None
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
        return self.comparison.switch_log + list(self._replay)


def make_runner(
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
    epoch: int = 0,
    guide: dict[str, Any] | None = None,
) -> LiveRunner:
    """A runner for a stored simulation, not started yet (``catch_up``, then ``start``)."""
    cls = CompareRunner if mode == "compare" else LiveRunner
    return cls(
        sim_id,
        parse_scenario(scenario_doc),
        seed,
        speed=speed,
        log_=log_,
        until=until,
        on_change=on_change,
        running=running,
        epoch=epoch,
        guide=guide_from(guide),
    )


def replay(sim: Simulation, query: dict[str, Any]) -> dict[str, Any]:
    """A key's state rebuilt from its events up to an offset (``GET .../replay``)."""
    from simulator.commands import number
    from simulator.lessons import replay_key

    topic, key = query.get("topic"), query.get("key")
    if not isinstance(topic, str) or topic not in sim.topics:
        known = ", ".join(sorted(sim.topics))
        raise CommandError(f"replay: 'topic' must be one of the scenario's topics ({known})")
    if not isinstance(key, str) or not key or len(key) > 200:
        raise CommandError("replay: 'key' must be a record key (text, at most 200 characters)")
    upto = None
    if query.get("upto") not in (None, ""):
        upto = int(number(query, "upto", lo=0, hi=2**53, integer=True))
    state, events, partition = replay_key(sim, topic, key, upto)
    return {
        "topic": topic,
        "key": key,
        "partition": partition,
        "upto": upto,
        "events": [{"offset": o, "type": t} for o, t in events],
        "state": state,
    }


def guide_from(doc: dict[str, Any] | None) -> Guide | None:
    """The guide saved with a simulation (None: a plain simulation, or a lesson gone)."""
    from simulator.lessons import lesson

    if not doc or not isinstance(doc.get("slug"), str):
        return None
    found = lesson(doc["slug"])
    return Guide.from_json(doc, found) if found is not None else None


async def start_runner(
    sim_id: str, scenario_doc: dict[str, Any], seed: int, **kw: Any
) -> LiveRunner:
    runner = make_runner(sim_id, scenario_doc, seed, **kw)
    await runner.catch_up()
    await runner.start()
    _stop_all_at_shutdown()
    return runner


async def stop_all() -> int:
    """The process is shutting down: every runner ends by the one path (``LiveRunner.stop``),
    its last state saved and its lease let go, so another process (or this one, restarted)
    rebuilds each run from where it was at once, without waiting for the lease to go stale.
    Returns how many runners it stopped."""
    runners = list(RUNNERS.values())
    for runner in runners:
        runner.released = True
    await asyncio.gather(*(r.stop() for r in runners), return_exceptions=True)
    return len(runners)


_shutdown_hooked: list[bool] = []


def _stop_all_at_shutdown() -> None:
    """Under daphne (Twisted's asyncio reactor), have the reactor wait for :func:`stop_all`
    before it shuts down (SIGTERM, SIGINT), as daphne waits for its connections. Done once per
    process, when the first runner starts; elsewhere (tests, scripts) nothing."""
    if _shutdown_hooked or "twisted.internet.reactor" not in sys.modules:
        return
    from twisted.internet import defer
    from twisted.internet import reactor as _reactor

    reactor: Any = _reactor  # (Twisted types its interface's methods without self)

    def stop_them() -> defer.Deferred[int]:
        return defer.Deferred.fromFuture(asyncio.ensure_future(stop_all()))

    reactor.addSystemEventTrigger("before", "shutdown", stop_them)
    _shutdown_hooked.append(True)


async def request(
    sim_id: str, message: dict[str, Any], timeout: float = 2.0
) -> dict[str, Any] | None:
    """Send ``message`` to the simulation's runner and wait for its reply (None: no answer)."""
    layer = get_channel_layer()
    assert layer is not None
    try:
        reply_to = await layer.new_channel()
        await layer.group_send(runner_group(sim_id), {**message, "reply_to": reply_to})
        return dict(await asyncio.wait_for(layer.receive(reply_to), timeout))
    except TimeoutError:
        return None
    except asyncio.CancelledError:
        raise
    except Exception as e:  # the channel layer is down (Redis restarting): no answer, say so
        log.warning("simulation %s: the channel layer failed (%s)", sim_id, e)
        return None
