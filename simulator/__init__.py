"""Fanout's engine: a deterministic discrete-event simulation of an event-driven system.

Pure Python: no Django, Channels or asyncio, and never the wall clock.
"""

from .broker import Partition, Record, Topic, stable_partition
from .commands import CommandError
from .core import Scheduler
from .observe import EventRecorder, EventSampler, Observation, Observer, Tracer
from .scenario import Scenario, ScenarioError, load_scenario, parse_scenario
from .simulation import Simulation, replay

__all__ = [
    "CommandError",
    "EventRecorder",
    "EventSampler",
    "Observation",
    "Observer",
    "Partition",
    "Record",
    "Scenario",
    "ScenarioError",
    "Scheduler",
    "Simulation",
    "Topic",
    "Tracer",
    "load_scenario",
    "parse_scenario",
    "replay",
    "stable_partition",
]
