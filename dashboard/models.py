"""What survives a restart: each simulation's scenario, seed and command log."""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

from django.db import models


def new_id() -> str:
    return secrets.token_hex(6)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class SimulationRecord(models.Model):
    """A simulation is its scenario + seed + the log of commands with their simulated times.

    Replaying the log over the scenario rebuilds the exact state, which is how a run survives
    a server restart and how it is shared.
    """

    id = models.CharField(primary_key=True, max_length=32, default=new_id, editable=False)
    MODES = (("live", "live simulation"), ("compare", "sync chain vs event flow"))
    mode = models.CharField(max_length=16, choices=MODES, default="live")
    scenario = models.JSONField(help_text="the scenario document, as validated")
    seed = models.BigIntegerField()
    name = models.CharField(max_length=200, blank=True)
    command_log = models.JSONField(
        default=list, blank=True, help_text="[[simulated time, command], ...]"
    )
    sim_time = models.FloatField(default=0.0, help_text="simulated seconds reached so far")
    running = models.BooleanField(default=False)
    speed = models.FloatField(default=1.0)
    owner_session = models.CharField(max_length=64, blank=True, db_index=True)
    owner_ip = models.CharField(
        max_length=64,
        blank=True,
        db_index=True,
        help_text="client address of an API caller (for the limit)",
    )
    control_token_hash = models.CharField(max_length=64, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)
    stopped = models.BooleanField(default=False, help_text="stopped for being idle, or by Stop")
    stop_reason = models.CharField(
        max_length=8,
        blank=True,
        default="",
        help_text="why it stopped: 'idle' (nobody used it for FANOUT_IDLE_SECONDS), 'owner' "
        "(Stop on My simulations or the API); '' while it is live",
    )
    # The lease that keeps one runner per simulation across server processes: the process that
    # runs it and when it last said so. Another process may take over only a stale lease.
    runner_token = models.CharField(max_length=32, blank=True)
    runner_seen = models.DateTimeField(null=True, blank=True)
    # Fencing: every claim of the lease adds one. A runner saves only while the epoch is still
    # its own, so one that lost its lease (a newer runner took over) can never overwrite the
    # newer one's work, and it stops at once; its frames carry the epoch so viewers drop them.
    runner_epoch = models.PositiveBigIntegerField(default=0)
    # A guided lesson ("Open it live" from a lesson): its slug, phase, the class's answers and
    # the measured answer (dashboard/guide.py). Empty for a plain simulation.
    guide = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ("-created",)

    def __str__(self) -> str:
        return f"{self.name or 'simulation'} ({self.id})"

    def log(self) -> list[tuple[float, dict[str, Any]]]:
        return [(float(t), dict(cmd)) for t, cmd in self.command_log]


class SavedScenario(models.Model):
    """A scenario kept as its author typed it (YAML or JSON), valid or not (a draft).

    Only the browser session that created it may edit it; anyone with its link may view, fork,
    export it or start a simulation from it.
    """

    FORMATS = (("yaml", "YAML"), ("json", "JSON"))
    id = models.CharField(primary_key=True, max_length=32, default=new_id, editable=False)
    name = models.CharField(max_length=200)
    text = models.TextField(blank=True, help_text="the YAML or JSON source, as typed")
    format = models.CharField(max_length=8, choices=FORMATS, default="yaml")
    valid = models.BooleanField(default=False, help_text="the text passed validation when saved")
    owner_session = models.CharField(max_length=64, blank=True, db_index=True)
    forked_from = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="forks"
    )
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("-updated",)

    def __str__(self) -> str:
        return f"{self.name} ({self.id})"
