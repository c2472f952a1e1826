"""Service functions: what views and consumers call. They parse nothing and render nothing."""

from __future__ import annotations

import asyncio
import os
import secrets
from datetime import timedelta
from typing import Any

from django.db.models import Q
from django.utils import timezone

from simulator import Scenario, parse_scenario

from . import runner as runners
from .models import SimulationRecord, hash_token

ERR_UNKNOWN_SIMULATION = "no simulation with id {sim_id!r}"
ERR_NO_RUNNER = "the simulation's runner did not answer; try again in a moment"
ERR_READ_ONLY = "this is a read-only view: only whoever started the simulation can control it"
MAX_LIVE_PER_OWNER = int(os.environ.get("FANOUT_MAX_SIMULATIONS_PER_USER", "5"))
ERR_TOO_MANY = (
    "you already have {n} live simulations, the most one user may run: stop using one (idle "
    "simulations stop by themselves after {idle:.0f} minutes)"
)


class LimitReached(Exception):
    """A user asked for more than their share; the message says what and how to get on."""


_start_lock = asyncio.Lock()


# Identifies this server process in the runner lease (see SimulationRecord.runner_token).
PROCESS_TOKEN = secrets.token_hex(8)
RUNNER_STALE_SECONDS = 10.0  # a lease not renewed for this long is free to take over


async def _persist(runner: runners.LiveRunner) -> None:
    """Save the command log (and the time reached) so a restart can rebuild the run.

    Doubles as the runner's heartbeat: it renews this process's lease on the simulation.
    """
    log = [[t, cmd] for t, cmd in runner.command_log()]
    idle = runner.stopped_idle
    await SimulationRecord.objects.filter(pk=runner.sim_id).aupdate(
        runner_token="" if idle else PROCESS_TOKEN,
        runner_seen=None if idle else timezone.now(),
        command_log=log,
        sim_time=runner.sim.now,
        seed=runner.seed,
        running=runner.run.running,
        speed=runner.run.speed,
        stopped=runner.stopped_idle,
    )


async def simulation_create(
    *,
    scenario: Scenario,
    seed: int | None = None,
    owner_session: str = "",
    owner_ip: str = "",
    mode: str = "live",
) -> tuple[SimulationRecord, str]:
    """Store a new simulation, start its runner here, and return it with its control token.

    Raises :class:`LimitReached` when the owner (a browser session, or a client address for the
    API) already has ``MAX_LIVE_PER_OWNER`` simulations that have not stopped.
    """
    live = SimulationRecord.objects.filter(stopped=False)
    live = (
        live.filter(owner_session=owner_session)
        if owner_session
        else live.filter(owner_ip=owner_ip, owner_session="")
    )
    n = await live.acount()
    if n >= MAX_LIVE_PER_OWNER:
        raise LimitReached(ERR_TOO_MANY.format(n=n, idle=runners.IDLE_SECONDS / 60))
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
    )
    await runners.start_runner(
        record.id, record.scenario, record.seed, on_change=_persist, mode=mode
    )
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
    async with _start_lock:
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
            .aupdate(runner_token=PROCESS_TOKEN, runner_seen=now, stopped=False)
        )
        if not claimed:
            return
        record = await SimulationRecord.objects.aget(pk=record.id)  # the latest log
        await runners.start_runner(
            record.id,
            record.scenario,
            record.seed,
            speed=record.speed,
            log_=record.log(),
            until=record.sim_time,
            on_change=_persist,
            mode=record.mode,
            running=record.running,
        )


async def simulation_command(*, record: SimulationRecord, command: Any) -> dict[str, Any]:
    """Send a command to the runner; returns its reply (``ok``, ``error`` or ``state``)."""
    await runner_ensure(record=record)
    reply = await runners.request(record.id, {"type": "sim.command", "command": command})
    return reply or {"ok": False, "error": ERR_NO_RUNNER}


async def simulation_state(*, record: SimulationRecord) -> dict[str, Any] | None:
    await runner_ensure(record=record)
    reply = await runners.request(record.id, {"type": "sim.state"})
    return None if reply is None else reply.get("state")


async def simulation_records(
    *, record: SimulationRecord, query: dict[str, Any]
) -> dict[str, Any] | None:
    """Read a topic's (or a dead-letter topic's) records from an offset. None: no runner."""
    await runner_ensure(record=record)
    return await runners.request(record.id, {"type": "sim.records", **query})


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
