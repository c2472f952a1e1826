"""Service functions: what views and consumers call. They parse nothing and render nothing."""

from __future__ import annotations

import asyncio
import logging
import secrets
import weakref
from collections import OrderedDict
from datetime import timedelta
from typing import Any

from django.db.models import F, Q
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
    "you already have {n} live simulations, the most one user may run: stop using one (idle "
    "simulations stop by themselves after {idle:.0f} minutes)"
)
ERR_TOO_MANY_ADDRESS = (
    "{n} live simulations already come from your network address, the most it may run: stop "
    "some, or wait for idle ones to stop (after {idle:.0f} minutes)"
)
ERR_SERVER_FULL = (
    "this server already runs {n} live simulations, as many as it serves well: try again when "
    "some have stopped"
)
ERR_UNBUILDABLE = "this simulation cannot be rebuilt: {reason}"

log = logging.getLogger(__name__)


class LimitReached(Exception):
    """A user asked for more than their share; the message says what and how to get on."""


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
    idle = runner.stopped_idle
    # fenced: only while the lease's epoch is still this runner's
    saved = await SimulationRecord.objects.filter(
        pk=runner.sim_id, runner_epoch=runner.epoch
    ).aupdate(
        runner_token="" if idle else PROCESS_TOKEN,
        runner_seen=None if idle else timezone.now(),
        command_log=log,
        sim_time=runner.sim.now,
        seed=runner.seed,
        running=runner.run.running,
        speed=runner.run.speed,
        stopped=runner.stopped_idle,
        **({"guide": runner.guide.to_json()} if runner.guide is not None else {}),
    )
    if not saved:
        runner.fence()


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
    live = SimulationRecord.objects.filter(stopped=False)
    idle = runners.IDLE_SECONDS / 60
    if owner_session:
        n = await live.filter(owner_session=owner_session).acount()
        if n >= MAX_LIVE_PER_OWNER:
            raise LimitReached(ERR_TOO_MANY.format(n=n, idle=idle))
    if owner_ip:
        mine = live.filter(owner_ip=owner_ip)
        if not owner_session:  # the API: an address is its user
            n = await mine.filter(owner_session="").acount()
            if n >= MAX_LIVE_PER_OWNER:
                raise LimitReached(ERR_TOO_MANY.format(n=n, idle=idle))
        n = await mine.acount()
        if n >= MAX_LIVE_PER_ADDRESS:
            raise LimitReached(ERR_TOO_MANY_ADDRESS.format(n=n, idle=idle))
    n = await live.acount()
    if n >= MAX_LIVE_TOTAL:
        raise LimitReached(ERR_SERVER_FULL.format(n=n))
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
