"""Service functions: what views and consumers call. They parse nothing and render nothing."""

from __future__ import annotations

import asyncio
import logging
import secrets
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db.models import F, Q, QuerySet
from django.urls import reverse
from django.utils import timezone

from simulator import Scenario, parse_scenario
from simulator.cost import estimate

from . import runner as runners
from .config import env_int
from .models import SimulationRecord, hash_token

ERR_UNKNOWN_SIMULATION = "no simulation with id {sim_id!r}"
ERR_NO_RUNNER = "the simulation's runner did not answer; try again in a moment"
ERR_READ_ONLY = "this is a read-only view: only whoever started the simulation can control it"
MAX_LIVE_PER_OWNER = env_int("FANOUT_MAX_SIMULATIONS_PER_USER", 5, 1, 10_000)
# A classroom shares one address behind its router: room for a class, not for a flood.
MAX_LIVE_PER_ADDRESS = env_int("FANOUT_MAX_SIMULATIONS_PER_ADDRESS", 60, 1, 100_000)
MAX_LIVE_TOTAL = env_int("FANOUT_MAX_SIMULATIONS", 100, 1, 100_000)
ERR_TOO_MANY = (
    "you already have {n} live simulations, the most one user may run: stop one you no longer "
    "need on your My simulations page (idle simulations stop by themselves after {idle:.0f} "
    "minutes)"
)
# The API has no browser session: its caller is its network address, and it stops a run with
# the run's control token. Runs started in a browser are listed on that browser's page.
ERR_TOO_MANY_API = (
    "you already have {n} live simulations, the most one user may run: stop one with "
    "POST /api/simulations/<id>/stop and its control_token (simulations started in a browser "
    "are listed on that browser's My simulations page, {mine}), or wait: idle simulations stop "
    "by themselves after {idle:.0f} minutes"
)
ERR_TOO_MANY_ADDRESS = (
    "{n} live simulations already come from your network address, the most it may run: stop "
    "some (a browser lists its own on its My simulations page), or wait for idle ones to stop "
    "(after {idle:.0f} minutes)"
)
ERR_NO_ROOM_TO_REOPEN = (
    "this simulation was stopped, and opening it would start it again, which its owner has no "
    "room for just now ({reason})"
)
ERR_SERVER_FULL = (
    "this server already runs {n} live simulations, as many as it serves well: try again when "
    "some have stopped"
)
ERR_UNBUILDABLE = "this simulation cannot be rebuilt: {reason}"

log = logging.getLogger(__name__)


class LimitReached(Exception):
    """A user asked for more than their share; the message says what and how to get on.

    ``yours``: stopping one of the user's own simulations makes room, so a page shows the
    message with a link to My simulations.
    """

    def __init__(self, message: str, *, yours: bool = False) -> None:
        super().__init__(message)
        self.yours = yours


class TooCostly(Exception):
    """A scenario heavier than one server can run; ``reasons`` say what to change."""

    def __init__(self, reasons: list[str]) -> None:
        self.reasons = reasons
        super().__init__("; ".join(reasons))


# A frame larger than this could not be sent to browsers at 20 a second (nor drawn): a scenario
# whose state is that large is refused when it is created.
MAX_FRAME_BYTES = 512 * 1024
ERR_FRAME_TOO_BIG = (
    "this scenario's state is {kb:,} KB a frame, more than the {limit:,} KB a viewer can be sent "
    "20 times a second: use fewer topics, partitions or services"
)


# One lock per simulation: starting (or rebuilding) one never waits for another's start.
_start_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
# Simulations whose rebuild failed, and why (the newest 1,000): asked again, they answer with the
# reason at once instead of replaying their log again.
_unbuildable: OrderedDict[str, str] = OrderedDict()
UNBUILDABLE_KEPT = 1000


class Unbuildable(Exception):
    """A stored simulation that cannot be run again here; the message says why."""


class NoRoom(Unbuildable):
    """A stopped simulation whose owner has no live slot left to run it again."""

    def __init__(self, message: str, *, yours: bool = False) -> None:
        super().__init__(message)
        self.yours = yours


def _start_lock(sim_id: str) -> asyncio.Lock:
    lock = _start_locks.get(sim_id)
    if lock is None:
        lock = _start_locks[sim_id] = asyncio.Lock()
    return lock


# Identifies this server process in the runner lease (see SimulationRecord.runner_token).
PROCESS_TOKEN = secrets.token_hex(8)
RUNNER_STALE_SECONDS = 10.0  # a lease not renewed for this long is free to take over


async def _persist(runner: runners.LiveRunner) -> None:
    """Save the command log (and the time reached) so a restart can rebuild the run.

    Doubles as the runner's heartbeat: it renews this process's lease on the simulation.
    """
    log = [[t, cmd] for t, cmd in runner.command_log()]
    let_go = runner.stopped_for_good or runner.released  # no process holds it now
    # fenced: only while the lease's epoch is still this runner's
    saved = await SimulationRecord.objects.filter(
        pk=runner.sim_id, runner_epoch=runner.epoch
    ).aupdate(
        runner_token="" if let_go else PROCESS_TOKEN,
        runner_seen=None if let_go else timezone.now(),
        command_log=log,
        sim_time=runner.sim.now,
        seed=runner.seed,
        running=runner.run.running,
        speed=runner.run.speed,
        stopped=runner.stopped_for_good,
        stop_reason=runner.stop_reason,
        **({"guide": runner.guide.to_json()} if runner.guide is not None else {}),
    )
    if not saved:
        runner.fence()


def _live() -> QuerySet[SimulationRecord]:
    """The simulations that hold a live slot: every one not stopped (running, paused or
    finished, its runner still in memory). Stopping one frees its slot at once."""
    return SimulationRecord.objects.filter(stopped=False)


async def _check_room(*, owner_session: str, owner_ip: str) -> None:
    """Raise :class:`LimitReached` when one more live simulation of this owner would be one too
    many (for the browser session, the network address, or the server)."""
    live = _live()
    idle = runners.IDLE_SECONDS / 60
    if owner_session:
        n = await live.filter(owner_session=owner_session).acount()
        if n >= MAX_LIVE_PER_OWNER:
            raise LimitReached(ERR_TOO_MANY.format(n=n, idle=idle), yours=True)
    if owner_ip:
        mine = live.filter(owner_ip=owner_ip)
        if not owner_session:  # the API: an address is its user
            n = await mine.filter(owner_session="").acount()
            if n >= MAX_LIVE_PER_OWNER:
                where = reverse("my_simulations")
                raise LimitReached(ERR_TOO_MANY_API.format(n=n, idle=idle, mine=where))
        n = await mine.acount()
        if n >= MAX_LIVE_PER_ADDRESS:
            raise LimitReached(
                ERR_TOO_MANY_ADDRESS.format(n=n, idle=idle), yours=bool(owner_session)
            )
    n = await live.acount()
    if n >= MAX_LIVE_TOTAL:
        raise LimitReached(ERR_SERVER_FULL.format(n=n))


async def simulation_create(
    *,
    scenario: Scenario,
    seed: int | None = None,
    owner_session: str = "",
    owner_ip: str = "",
    mode: str = "live",
    guide: dict[str, Any] | None = None,
) -> tuple[SimulationRecord, str]:
    """Store a new simulation, start its runner here, and return it with its control token.

    Raises :class:`LimitReached` when the owner (a browser session, or a client address for the
    API) already has ``MAX_LIVE_PER_OWNER`` simulations that have not stopped.
    """
    reasons = estimate(scenario).refusals()
    if reasons:
        raise TooCostly(reasons)
    await _check_room(owner_session=owner_session, owner_ip=owner_ip)
    token = secrets.token_urlsafe(24)
    record = await SimulationRecord.objects.acreate(
        scenario=dict(scenario.source),
        seed=scenario.seed if seed is None else seed,
        name=scenario.name,
        owner_session=owner_session,
        control_token_hash=hash_token(token),
        mode=mode,
        owner_ip=owner_ip,
        runner_token=PROCESS_TOKEN,
        runner_seen=timezone.now(),
        runner_epoch=1,
        guide=guide or {},
    )
    runner = await runners.start_runner(
        record.id,
        record.scenario,
        record.seed,
        on_change=_persist,
        mode=mode,
        epoch=1,
        guide=guide,
    )
    size = len(runner.full_frame())
    if size > MAX_FRAME_BYTES:
        await runner.stop()
        await SimulationRecord.objects.filter(pk=record.id).adelete()
        raise TooCostly([ERR_FRAME_TOO_BIG.format(kb=size // 1024, limit=MAX_FRAME_BYTES // 1024)])
    return record, token


async def simulation_get(*, sim_id: str) -> SimulationRecord | None:
    try:
        return await SimulationRecord.objects.aget(pk=sim_id)
    except (SimulationRecord.DoesNotExist, ValueError):
        return None


async def runner_ensure(*, record: SimulationRecord) -> None:
    """Make sure some process runs this simulation; if none answers, rebuild it here.

    The rebuild replays the stored command log over the scenario and seed, so the run goes on
    from the same state it had.
    """
    if record.id in runners.RUNNERS:
        return
    if record.id in _unbuildable:
        raise Unbuildable(ERR_UNBUILDABLE.format(reason=_unbuildable[record.id]))
    async with _start_lock(record.id):
        if record.id in runners.RUNNERS:
            return
        pong = await runners.request(record.id, {"type": "sim.ping"}, timeout=1.0)
        if pong is not None:
            return
        # A stopped run (by its owner, or for being idle) takes a live slot again when it is
        # opened: only if its owner has one free, or stopping would not free anything.
        current = await SimulationRecord.objects.filter(pk=record.id).afirst()
        if current is not None and current.stopped:
            try:
                await _check_room(owner_session=current.owner_session, owner_ip=current.owner_ip)
            except LimitReached as e:
                raise NoRoom(ERR_NO_ROOM_TO_REOPEN.format(reason=e), yours=e.yours) from None
        # Claim the lease atomically: free, stale, or last held by this very process. If another
        # live process holds it, its runner is just slow to answer: do not start a second one.
        now = timezone.now()
        stale = now - timedelta(seconds=RUNNER_STALE_SECONDS)
        claimed = await (
            SimulationRecord.objects.filter(pk=record.id)
            .filter(
                Q(runner_seen__isnull=True)
                | Q(runner_seen__lt=stale)
                | Q(runner_token=PROCESS_TOKEN)
            )
            .aupdate(
                runner_token=PROCESS_TOKEN,
                runner_seen=now,
                stopped=False,
                stop_reason="",
                runner_epoch=F("runner_epoch") + 1,
            )
        )
        if not claimed:
            return
        record = await SimulationRecord.objects.aget(pk=record.id)  # the latest log
        try:
            runner = runners.make_runner(
                record.id,
                record.scenario,
                record.seed,
                speed=record.speed,
                log_=record.log(),
                until=record.sim_time,
                on_change=_persist,
                mode=record.mode,
                running=record.running,
                epoch=record.runner_epoch,
                guide=record.guide,
            )
            await runner.catch_up()
        except Exception as e:  # a stored run that no longer builds: say why, once
            log.exception("simulation %s: the rebuild failed", record.id)
            reason = str(e)[:300] or type(e).__name__
            _unbuildable[record.id] = reason
            while len(_unbuildable) > UNBUILDABLE_KEPT:
                _unbuildable.popitem(last=False)
            await SimulationRecord.objects.filter(pk=record.id).aupdate(
                runner_token="", runner_seen=None, stopped=True
            )
            raise Unbuildable(ERR_UNBUILDABLE.format(reason=reason)) from None
        try:
            await runner.start()
        except Exception as e:  # the channel layer is down: let the lease go, try again later
            log.warning("simulation %s: could not start its runner (%s)", record.id, e)
            runner.on_change = None  # it never ran: nothing of it to save
            await runner.stop()
            await SimulationRecord.objects.filter(
                pk=record.id, runner_epoch=record.runner_epoch
            ).aupdate(runner_token="", runner_seen=None)


async def simulation_command(*, record: SimulationRecord, command: Any) -> dict[str, Any]:
    """Send a command to the runner; returns its reply (``ok``, ``error`` or ``state``)."""
    try:
        await runner_ensure(record=record)
    except Unbuildable as e:
        return {"ok": False, "error": str(e), "unbuildable": True}
    reply = await runners.request(record.id, {"type": "sim.command", "command": command})
    return reply or {"ok": False, "error": ERR_NO_RUNNER}


async def simulation_state(*, record: SimulationRecord) -> dict[str, Any] | None:
    """The runner's current state; None when it did not answer (raises Unbuildable)."""
    await runner_ensure(record=record)
    reply = await runners.request(record.id, {"type": "sim.state"})
    return None if reply is None else reply.get("state")


async def simulation_read(
    *, record: SimulationRecord, message: dict[str, Any]
) -> dict[str, Any] | None:
    """Ask the runner to read something of its run (``sim.records``: a topic's log from an
    offset; ``sim.replay``: a key's state rebuilt from its events). None: no runner."""
    try:
        await runner_ensure(record=record)
    except Unbuildable as e:
        return {"ok": False, "error": str(e)}
    return await runners.request(record.id, message)


def can_control(record: SimulationRecord, *, session_key: str | None, bearer: str | None) -> bool:
    if (
        bearer
        and record.control_token_hash
        and secrets.compare_digest(hash_token(bearer), record.control_token_hash)
    ):
        return True
    return bool(session_key) and session_key == record.owner_session


def parse_scenario_or_errors(doc: Any) -> tuple[Scenario | None, list[dict[str, str]]]:
    from simulator import ScenarioError

    try:
        return parse_scenario(doc), []
    except ScenarioError as e:
        return None, e.as_list()


# --- a browser's own simulations: list, stop, delete ------------------------------------------


@dataclass(frozen=True)
class RunSummary:
    """One of a browser's simulations, as its My simulations page lists it."""

    id: str
    name: str
    kind: str  # "simulation", "comparison" or "lesson"
    lesson: str  # "Lesson 2: Temporal decoupling" for a guided lesson, else ""
    sim_time: float  # simulated seconds reached
    status: str  # "running", "paused", "finished" or "stopped"
    stop_reason: str  # stopped: "idle" or "owner"; else ""
    live: bool  # holds one of the owner's live slots
    created: datetime


def run_kind(record: SimulationRecord) -> str:
    if isinstance(record.guide, dict) and record.guide.get("slug"):
        return "lesson"
    return "comparison" if record.mode == "compare" else "simulation"


def run_status(record: SimulationRecord) -> tuple[str, float]:
    """``(status, simulated time)``: from the runner when it runs in this process (its clock is
    exact), otherwise from what it last saved (every 2 s)."""
    runner = runners.RUNNERS.get(record.id)
    if runner is not None:
        run = runner.run
        if run.finished:
            return "finished", runner.sim.now
        running = run.running or run.stepping_to is not None
        return ("running" if running else "paused"), runner.sim.now
    if record.stopped:
        return "stopped", record.sim_time
    duration = record.scenario.get("duration", 60.0) if isinstance(record.scenario, dict) else 0
    if isinstance(duration, int | float) and record.sim_time >= duration:
        return "finished", record.sim_time
    return ("running" if record.running else "paused"), record.sim_time


def lesson_title(record: SimulationRecord) -> str:
    """``Lesson 2: Temporal decoupling`` for a guided lesson's run, else ""."""
    from simulator.lessons import lesson

    slug = record.guide.get("slug") if isinstance(record.guide, dict) else None
    found = lesson(slug) if isinstance(slug, str) else None
    return f"Lesson {found.number}: {found.title}" if found is not None else ""


MAX_LISTED = 200  # a browser's newest simulations on its page


async def simulations_of(*, owner_session: str) -> list[RunSummary]:
    """The browser session's simulations, newest first (at most ``MAX_LISTED``)."""
    if not owner_session:
        return []
    out = []
    query = SimulationRecord.objects.filter(owner_session=owner_session).order_by("-created")
    async for record in query[:MAX_LISTED]:
        status, sim_time = run_status(record)
        out.append(
            RunSummary(
                id=record.id,
                name=record.name,
                kind=run_kind(record),
                lesson=lesson_title(record),
                sim_time=sim_time,
                status=status,
                stop_reason=record.stop_reason if status == "stopped" else "",
                live=not record.stopped,
                created=record.created,
            )
        )
    return out


async def live_count(*, owner_session: str) -> int:
    """How many of the session's live slots are taken (what the limit counts)."""
    if not owner_session:
        return 0
    return await _live().filter(owner_session=owner_session).acount()


async def simulation_stop(*, record: SimulationRecord) -> bool:
    """End the simulation's runner and free its live slot at once. False: it had stopped.

    The run is saved where it was, paused, as an idle stop leaves it, so opening it again
    rebuilds it there. A runner in this process stops now; one in another process is fenced:
    the lease's epoch moves on, so its next save (within ``PERSIST_INTERVAL``) fails and it
    stops itself, saving nothing over this.
    """
    runner = runners.RUNNERS.get(record.id)
    if runner is None and record.stopped:
        return False
    if runner is not None:
        # stopped for good, by the path the idle stop takes: the last save marks the record
        # stopped and lets the lease go.
        # That save is made here, in the caller's context, not by stop() from a task of the
        # runner's own: from there the database call waits for the thread a request's sync
        # middleware holds, and the request waits for the stop (Django's test client runs
        # every request on that one thread).
        save, runner.on_change = runner.on_change, None
        await runner.stop(for_good=True, reason="owner")
        if save is not None:
            await save(runner)
    await SimulationRecord.objects.filter(pk=record.id).aupdate(
        stopped=True,
        stop_reason="owner",
        running=False,
        runner_token="",
        runner_seen=None,
        runner_epoch=F("runner_epoch") + 1,
    )
    _unbuildable.pop(record.id, None)
    return True


async def simulation_delete(*, record: SimulationRecord) -> None:
    """Stop the simulation if it is live, then forget it: its page answers 404 from now on."""
    await simulation_stop(record=record)
    await SimulationRecord.objects.filter(pk=record.id).adelete()
