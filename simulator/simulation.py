"""A simulation: the world of a scenario, advanced in virtual time.

``Simulation(scenario, seed=...)`` builds topics, producers and consumer groups;
``run_until(t)`` advances it (again and again, so a live runner can go in slices);
``apply(command)`` changes it between slices and records the command with its time, so
``replay(scenario, seed, log)`` rebuilds the same state. One ``random.Random(seed)`` drives
every random model.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Callable
from itertools import count
from random import Random
from typing import Any

from .broker import DLT_SUFFIX, CorrelationId, DeadLetterTopic, Partition, Record, Topic
from .charts import end_to_end_p95, throughput, top_services
from .commands import (
    ENGINE_COMMANDS,
    ERR_CONSUMER_EXISTS,
    ERR_EXTEND,
    ERR_LOG_FULL,
    ERR_RESET_BUSY,
    ERR_RESET_QUEUE,
    ERR_RESET_RUNNING,
    ERR_UNKNOWN_COMMAND,
    ERR_UNKNOWN_CONSUMER,
    ERR_UNKNOWN_PRODUCER,
    LOGGED_COMMANDS,
    MAX_COMMAND_LOG,
    VALUE_BOUNDS,
    CommandError,
    Shown,
    bounded,
    command_name,
    logged_command,
    number,
    require,
)
from .core import Scheduler
from .groups import ConsumerGroup, QueueGroup, StreamGroup
from .groups.failures import DEAD_LETTERS_KEPT
from .metrics import FOLD_AT, Metrics
from .observe import HOOKS, JOURNEY_HOOKS, JourneyWatch, Observer, Tracer, journey_filter
from .producers import Producer
from .publish import Sender
from .scenario import (
    _V,
    LIMITS,
    ConsumerSpec,
    FaultSpec,
    Scenario,
    ScenarioError,
    SendSpec,
    build_registry,
    parse_consumer_spec,
)
from .timeline import Timeline, fault_command
from .wording import seconds_text, service_name

FAULT_ERRORS_KEPT = 100  # the latest faults and script steps the run could not apply


# services whose end-to-end percentiles one sample tick computes again, at most (the others
# repeat their last ones: a run of 300 services has each one's at most 8 ticks old)
CHART_PERCENTILES_PER_TICK = 40

RECORDS_KEPT = 200_000  # records a run's topics keep in all (Fanout's memory bound)
MIN_RECORDS_PER_PARTITION = 50


class Simulation(Scheduler):
    """The running world of one scenario."""

    def __init__(
        self,
        scenario: Scenario,
        seed: int | None = None,
        *,
        observers: tuple[Observer, ...] = (),
        trace: bool = False,
        history: int = 3600,
        chart_history: bool = False,
    ) -> None:
        super().__init__()
        self.scenario = scenario
        self.seed = scenario.seed if seed is None else seed
        # the run's length: the scenario's, until an ``extend`` command lengthens it
        self.duration = scenario.duration
        # Also sample, at each sample tick, every service's end-to-end percentiles and its
        # processing time (what charts and the narrative need): the live runner's runs do,
        # a fast-forward (lessons' measures, the CLI, benchmarks) need not pay for it.
        self.chart_history = chart_history
        # called at each sample tick with the time (a comparison samples its own figures)
        self.on_sample: list[Callable[[float], None]] = []
        # the time of every sample tick (the newest ``history``): the charts' time column
        self.sample_times: deque[float] = deque(maxlen=history)
        self._chart_ticks = 0
        # (t, services, lag summed, lag_ms summed, processed summed) at each sample tick
        self.totals_history: deque[tuple[float, int, int, float, int]] = deque(maxlen=history)
        self.story_cache: tuple[Any, list[dict[str, str]]] | None = None  # see story.py
        self.rng = Random(self.seed)
        for hook in HOOKS:
            setattr(self, f"on_{hook}", [])
        self.on_produced: list[Any]
        self.on_delivered: list[Any]
        self.on_processed: list[Any]
        self.on_failed: list[Any]
        self.on_retried: list[Any]
        self.on_dead_lettered: list[Any]
        self.on_redriven: list[Any]
        self.on_deduplicated: list[Any]
        self.on_expired: list[Any]
        self.on_rebalanced: list[Any]
        self.on_status_changed: list[Any]
        self.on_command_applied: list[Any]
        self.observers: list[Observer] = []
        # which journeys the journey observers (the event sampler, the tracer) see, and their
        # hooks for those: called for the records of watched journeys only, so every other
        # record keeps the fast lane (observe.JourneyWatch)
        self.watch = JourneyWatch(self.seed)
        self.watch.every = scenario.trace == "all"
        self.journey_produced: list[Any] = []
        self.journey_delivered: list[Any] = []
        self.journey_processed: list[Any] = []
        self._journey_hooks: dict[int, list[tuple[list[Any], Any]]] = {}
        self.groups: dict[str, ConsumerGroup] = {}  # filled below, once topics exist
        self.metrics_observer = Metrics(history=history)
        self.add_observer(self.metrics_observer)
        self.tracer: Tracer | None = None
        if trace:
            self.tracer = Tracer()
            self.add_observer(self.tracer)
        for obs in observers:
            self.add_observer(obs)
        self.command_log: list[tuple[float, dict[str, Any]]] = []
        # (t, what, why) of each scheduled fault or script step the run could not apply: the
        # run goes on without it (a command sent now would have been refused, as this one was)
        self.fault_errors: deque[tuple[float, str, str]] = deque(maxlen=FAULT_ERRORS_KEPT)
        self.ids = count(1)  # event ids, shared by every topic
        self.schemas = registry_for(scenario)
        # Fanout's memory bound: all of a run's partitions together keep at most RECORDS_KEPT
        # records (about 400 bytes each), shared out per partition; a topic's own retention
        # applies when it is smaller. Kafka's default keeps 7 days, whatever that costs.
        partitions = sum(t.partitions for t in scenario.topics) or 1
        self.records_per_partition = max(MIN_RECORDS_PER_PARTITION, RECORDS_KEPT // partitions)
        self.topics: dict[str, Topic] = {
            t.name: Topic(
                t.name,
                t.partitions,
                retention_messages=min(
                    t.retention_messages or self.records_per_partition,
                    self.records_per_partition,
                ),
                retention_age_s=t.retention_age_s,
                on_produced=self.on_produced,
                rng=self.rng,
                journey_produced=self.journey_produced,
            )
            for t in scenario.topics
        }
        # topics Spring Kafka's clients publish to, made at the first record (by name): the
        # dead-letter topics <topic>.DLT (or <topic>-dlt), the retry topics <topic>-retry-N
        self.dead_letter_topics: dict[str, DeadLetterTopic] = {}
        self.retry_topics: dict[str, DeadLetterTopic] = {}
        self.broker = scenario.broker
        self.emit_sender = Sender(
            spec=SendSpec(),
            broker=scenario.broker,
            now=lambda: self.now,
            at=self.at,
            append=self.append_now,
        )
        self.broker_delay_ms = 0.0
        self.producers: dict[str, Producer] = {
            p.name: Producer(self, p, self.topics[p.topic]) for p in scenario.producers
        }
        self.removed: dict[str, ConsumerGroup] = {}
        for spec in scenario.consumers:
            self._add_group(spec, spec.start)
        self.timeline = Timeline(scenario.faults, scenario.script, self.service_name)
        for fault in scenario.faults:
            self.at(fault.at, self._fault, fault)
        for step in scenario.script:
            self.at(step.at, self.play, step.command)
        for producer in self.producers.values():
            producer.start()
        self.after(scenario.sample_interval_s, self._sample, None)

    # --- observers ---------------------------------------------------------------------

    def add_observer(self, observer: Observer) -> None:
        """Register the hooks ``observer`` overrides (the others cost nothing) and its sinks.

        A journey observer's per-record hooks go where only the records of watched journeys
        reach them: ``produced``, ``delivered`` and ``processed`` to the engine's journey
        lists (the fast lane stays on), the rare ones behind a filter among everyone's."""
        self.observers.append(observer)
        journeys = observer.journeys
        placed: list[tuple[list[Any], Any]] = []
        for hook in HOOKS:
            if getattr(type(observer), hook) is getattr(Observer, hook):
                continue
            bound = getattr(observer, hook)
            if not journeys or hook not in JOURNEY_HOOKS:
                getattr(self, f"on_{hook}").append(bound)
                continue
            if hook in ("produced", "delivered", "processed"):
                hooks: list[Any] = getattr(self, f"journey_{hook}")
            else:
                hooks = getattr(self, f"on_{hook}")
                bound = journey_filter(bound, JOURNEY_HOOKS[hook], self.watch.watched)
            hooks.append(bound)
            placed.append((hooks, bound))
        if journeys:
            observer.watch = self.watch
            self._journey_hooks[id(observer)] = placed
            if not self.watch.active:
                self.watch.set_active(True)
        self._rebind()

    def remove_observer(self, observer: Observer) -> None:
        if observer in self.observers:
            self.observers.remove(observer)
        for hooks, bound in self._journey_hooks.pop(id(observer), ()):
            if bound in hooks:
                hooks.remove(bound)
        for hook in HOOKS:
            hooks = getattr(self, f"on_{hook}")
            bound = getattr(observer, hook)
            if bound in hooks:
                hooks.remove(bound)
        if self.watch.active and not any(o.journeys for o in self.observers):
            self.watch.set_active(False)
        self._rebind()

    def _rebind(self) -> None:
        for group in self.groups.values():
            group.bind_observers()

    # --- the broker's front door -------------------------------------------------------

    def publish(
        self,
        topic: Topic,
        type: str,
        key: str | None,
        payload: dict[str, Any] | None,
        size: int,
        correlation_id: CorrelationId | None,
        causation_id: int | None,
        poison: bool = False,
    ) -> None:
        """A service publishes (an ``emits``): through the send path services share."""
        part = topic.partition_for(key, size)
        self.emit_sender.send(
            topic, part, type, key, payload, size, correlation_id, causation_id, poison
        )

    def dead_letter_topic(self, topic: str, name: str = "") -> DeadLetterTopic:
        """The dead-letter topic ``name`` (by default ``<topic>.DLT``) of ``topic``, created,
        like Kafka's auto-created topics, by the first record published to it."""
        return self._client_topic(self.dead_letter_topics, topic, name or topic + DLT_SUFFIX)

    def retry_topic(self, topic: str, name: str) -> DeadLetterTopic:
        """A retry topic of ``topic`` (Spring Kafka's ``<topic>-retry-N``)."""
        return self._client_topic(self.retry_topics, topic, name)

    def _client_topic(
        self, registry: dict[str, DeadLetterTopic], topic: str, name: str
    ) -> DeadLetterTopic:
        made = registry.get(name)
        if made is None:
            kept = min(DEAD_LETTERS_KEPT, self.records_per_partition)
            made = DeadLetterTopic(self.topics[topic], kept, name)
            registry[name] = made
        return made

    READ_LIMIT = 100  # records one read returns at most

    def read_records(
        self, topic: Any, partition: Any = 0, offset: Any = 0, limit: Any = 20
    ) -> dict[str, Any]:
        """Read a topic's log (or a dead-letter topic's, with its headers) from ``offset``, as
        a consumer would fetch it. Raises :class:`CommandError` naming a bad argument."""
        args = {"topic": topic, "partition": partition, "offset": offset, "limit": limit}
        if not isinstance(topic, str):
            raise CommandError("read: 'topic' must be a topic's name")
        client = self.dead_letter_topics.get(topic) or self.retry_topics.get(topic)
        log = client if client is not None else self.topics.get(topic)
        if log is None:
            known = sorted([*self.topics, *self.dead_letter_topics, *self.retry_topics])
            raise CommandError(f"read: no topic {Shown(topic)!r} (topics: {', '.join(known)})")
        p = int(number(args, "partition", lo=0, hi=len(log.partitions) - 1, integer=True))
        first = int(number(args, "offset", lo=0, hi=2**53, integer=True))
        n = int(number(args, "limit", lo=1, hi=self.READ_LIMIT, integer=True))
        part = log.partitions[p]
        records = log.read(p, first, n)  # a dead-letter or retry topic's with their headers
        return {
            "topic": log.name,
            "partition": p,
            "log_start_offset": part.start,
            "log_end_offset": part.end,
            "records": records,
        }

    def append_now(
        self,
        topic: Topic,
        type: str,
        key: str | None,
        payload: dict[str, Any] | None,
        size: int,
        correlation_id: CorrelationId | None,
        causation_id: int | None,
        poison: bool,
        part: Partition | None,
        ts: float,
    ) -> Record:
        """The partition leader appends a record (``ts``: its CreateTime, when it was sent)."""
        rid = next(self.ids)
        cid = rid if correlation_id is None else correlation_id
        watch = self.watch
        if causation_id is None:  # a journey starts: watch it, or let it pass (JourneyWatch)
            watch.starts(cid)
        return topic.append(
            rid,
            type,
            key,
            ts,
            size,
            payload,
            cid,
            causation_id,
            poison,
            part,
            None,
            cid in watch.watched,
        )

    # --- groups ------------------------------------------------------------------------

    def _add_group(self, spec: ConsumerSpec, start: str | None) -> ConsumerGroup:
        """``start``: earliest or latest; None lets the group decide (auto_offset_reset for a
        stream, the binding's moment for a queue)."""
        topics = [self.topics[name] for name in spec.topics]
        stats = self.metrics_observer.stats(spec.name)
        cls = QueueGroup if spec.delivery == "queue" else StreamGroup
        group = cls(self, spec, topics, stats, start=start)
        self.groups[spec.name] = group
        return group

    def group(self, name: Any) -> ConsumerGroup:
        group = self.groups.get(name) if isinstance(name, str) else None
        if group is None:
            raise CommandError(ERR_UNKNOWN_CONSUMER.format(name=Shown(name)))
        return group

    def producer(self, name: Any) -> Producer:
        producer = self.producers.get(name) if isinstance(name, str) else None
        if producer is None:
            raise CommandError(ERR_UNKNOWN_PRODUCER.format(name=Shown(name)))
        return producer

    # --- faults and commands -----------------------------------------------------------

    def service_name(self, name: str) -> str:
        """What a person calls a service or producer: "Email" for ``email`` labelled "Email
        Service"."""
        group = self.groups.get(name) or self.removed.get(name)
        return service_name(group.spec.label if group is not None else "", name)

    def _fault(self, fault: FaultSpec) -> None:
        cmd = fault_command(fault)
        if fault.consumer is not None and fault.consumer not in self.groups:
            return  # removed at run time: its scheduled faults no longer apply
        try:
            self._execute(cmd)
        except ValueError as e:  # CommandError, or a check further in
            self.command_failed("fault", cmd, e)

    def command_failed(self, source: str, cmd: dict[str, Any], error: Exception) -> None:
        """A scheduled fault or a script step the run cannot take now: kept in
        :attr:`fault_errors` (the latest ones) and said to observers; the run goes on."""
        name = cmd.get("command")
        target = cmd.get("consumer") or cmd.get("producer") or cmd.get("topic") or ""
        target = target if isinstance(target, str) else ""
        self.fault_errors.append((self.now, f"{source}: {name} {target}".rstrip(), str(error)))
        for hook in self.on_status_changed:
            hook(self.now, source, target, f"{source}: {name} refused: {error}")

    def apply(self, command: Any) -> dict[str, Any]:
        """Apply a run-time command now and record it in the command log.

        The log keeps the fields the command reads (see ``commands.COMMAND_FIELDS``), nothing
        else, and at most ``MAX_COMMAND_LOG`` commands. Raises :class:`CommandError` (the
        simulation unchanged) when the command is not valid or the log is full.
        """
        if len(self.command_log) >= MAX_COMMAND_LOG:
            raise CommandError(ERR_LOG_FULL.format(n=MAX_COMMAND_LOG))
        result = self._execute(command)
        # What the command set off at this very instant runs now, before anything else: a
        # replay, which calls run_until(t) before each command, then sees the same order.
        self.run_until(self.now)
        logged = logged_command(command)
        self.command_log.append((self.now, logged))
        self.timeline.record(self.now, logged)
        for hook in self.on_command_applied:
            hook(self.now, logged)
        return result

    def play(self, command: Any, execute: Callable[[dict[str, Any]], object] | None = None) -> None:
        """A step of the scenario's script: applied like a command (by ``execute``: a
        comparison's switches), not logged (a replay gets it from the scenario). One the run
        cannot take now is said, and the run goes on."""
        name = command.get("command")
        target = command.get("consumer") or command.get("producer") or command.get("topic") or ""
        try:
            (execute or self._execute)(dict(command))
        except ValueError as e:  # CommandError, or a check further in
            self.command_failed("script", dict(command), e)
            return
        for hook in self.on_status_changed:
            hook(self.now, "script", str(target), f"script: {name}")

    def _execute(self, cmd: Any) -> dict[str, Any]:
        name = command_name(cmd)
        if name not in LOGGED_COMMANDS:
            raise CommandError(
                ERR_UNKNOWN_COMMAND.format(name=Shown(name), known=", ".join(ENGINE_COMMANDS))
            )
        if name == "extend":
            return self.extend(cmd)
        if name == "producer.rate":
            producer = self.producer(require(cmd, "producer"))
            producer.set_rate(bounded(cmd, VALUE_BOUNDS[name]))
            return {}
        if name == "consumer.add":
            return self._add_consumer(cmd)
        if name.startswith("broker."):
            return self._broker_command(name, cmd)
        group = self.group(require(cmd, "consumer"))
        if name == "consumer.down":
            group.down()
        elif name == "consumer.up":
            group.up()
        elif name == "consumer.crash":
            instance = None
            if cmd.get("instance") is not None:
                instance = int(number(cmd, "instance", lo=0, integer=True))
                if not any(i.index == instance and i.alive for i in group.instances):
                    raise CommandError(f"{group.name} has no running instance {instance}")
            group.crash(instance)
        elif name == "consumer.slow":
            group.set_slow(bounded(cmd, VALUE_BOUNDS[name]))
            self._note(group, f"slow x{group.slow:g}")
        elif name == "consumer.delay":
            group.set_delay(bounded(cmd, VALUE_BOUNDS[name]) / 1000.0)
            self._note(group, f"+{group.delay * 1000:g} ms")
        elif name == "consumer.failure_rate":
            group.failure_rate = bounded(cmd, VALUE_BOUNDS[name])
            self._note(group, f"failure rate {group.failure_rate:g}")
        elif name == "consumer.instances":
            n = int(bounded(cmd, VALUE_BOUNDS[name]))
            group.set_instances(n)
            self._note(group, f"{n} instances")
        elif name == "consumer.remove":
            group.detach()
            del self.groups[group.name]
            self.removed[group.name] = group
            for hook in self.on_status_changed:
                hook(self.now, "consumer", group.name, "removed")
        elif name == "consumer.reset":
            if not isinstance(group, StreamGroup):
                raise CommandError(ERR_RESET_QUEUE)
            if group.status == "up":
                raise CommandError(ERR_RESET_RUNNING)
            busy = group.in_flight + group.retrying + group.batched
            if busy:
                raise CommandError(ERR_RESET_BUSY.format(name=group.name, n=busy))
            to = require(cmd, "to")
            if to not in ("earliest", "latest", "offset", "time"):
                raise CommandError("consumer.reset: 'to' must be earliest, latest, offset or time")
            value = number(cmd, lo=0) if to in ("offset", "time") else None
            group.reset_offsets(to, value)
        elif name == "dead_letters.redrive":
            event_id = None
            if cmd.get("event_id") is not None:
                event_id = int(number(cmd, "event_id", lo=1, integer=True))
            return {"redriven": group.redrive_dead_letters(event_id)}
        return {}

    def extend(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """``{"command": "extend", "value": S}``: the run lasts ``S`` seconds longer (in all at
        most the scenario's duration limit). Returns the new length."""
        limit = float(LIMITS["duration"])
        most = max(0.0, limit - self.duration)
        try:
            seconds = number(cmd, lo=0, hi=most, strict_lo=True)
        except CommandError:
            raise CommandError(
                ERR_EXTEND.format(
                    most=seconds_text(most),
                    limit=seconds_text(limit),
                    value=Shown(cmd.get("value")),
                )
            ) from None
        self.duration += seconds
        for hook in self.on_status_changed:
            hook(self.now, "run", "run", f"extended by {seconds_text(seconds)}")
        return {"duration": self.duration, "extended_by": seconds}

    def _broker_command(self, name: str, cmd: dict[str, Any]) -> dict[str, Any]:
        if name == "broker.delay":
            ms = bounded(cmd, VALUE_BOUNDS[name])
            self.broker_delay_ms = ms
            for sender in self._senders():
                sender.set_delay(ms)
            for hook in self.on_status_changed:
                hook(self.now, "broker", "broker", f"appends +{ms:g} ms")
            return {}
        topic_name = require(cmd, "topic")
        topic = self.topics.get(topic_name) if isinstance(topic_name, str) else None
        if topic is None:
            raise CommandError(f"unknown topic {Shown(topic_name)!r}")
        index = None
        if cmd.get("partition") is not None:
            index = int(number(cmd, "partition", lo=0, hi=len(topic.partitions) - 1, integer=True))
        topic.set_online(index, name == "broker.up")
        where = topic.name if index is None else f"{topic.name}/{index}"
        state = "leader up" if name == "broker.up" else "leader down"
        for hook in self.on_status_changed:
            hook(self.now, "broker", where, state)
        if name == "broker.up":
            for group in self.groups.values():
                group.wake()
        return {}

    def _senders(self) -> list[Sender]:
        return [self.emit_sender, *(p.sender for p in self.producers.values())]

    def _note(self, group: ConsumerGroup, text: str) -> None:
        """Tell observers (chart markers) what changed, in words."""
        for hook in self.on_status_changed:
            hook(self.now, "consumer", group.name, text)

    def _add_consumer(self, cmd: dict[str, Any]) -> dict[str, Any]:
        doc = require(cmd, "consumer")
        start = cmd.get("from")
        if start not in (None, "earliest", "latest"):
            raise CommandError("consumer.add: 'from' must be earliest or latest")
        if len(self.groups) >= LIMITS["consumers"]:
            raise CommandError(f"at most {LIMITS['consumers']} consumers are allowed")
        try:
            spec = parse_consumer_spec(doc, set(self.topics))
        except ScenarioError as e:
            raise CommandError(f"consumer.add: {e}") from None
        if spec.name in self.groups:
            raise CommandError(ERR_CONSUMER_EXISTS.format(name=spec.name))
        start = start or spec.start
        spec = dataclasses.replace(spec, start=start)
        self.removed.pop(spec.name, None)
        self._add_group(spec, start)
        reads_from = start or (spec.auto_offset_reset if spec.delivery == "stream" else "latest")
        for hook in self.on_status_changed:
            hook(self.now, "consumer", spec.name, f"added (from {reads_from})")
        return {}

    # --- sampling ------------------------------------------------------------------------

    def _sample(self, _: Any) -> None:
        now = self.now
        m = self.metrics_observer
        self.sample_times.append(now)
        for topic in self.topics.values():
            topic.enforce_age(now)
            hist = m.topic_history.get(topic.name)
            if hist is None:
                hist = m.topic_history[topic.name] = deque(maxlen=m.history_len)
            hist.append((now, topic.produced, topic.bytes_produced))
        for sender in self._senders():  # the send paths' ack times, folded like the rest
            sender.flush()
            sender.ack_ms.fold_at(FOLD_AT)
        lags = 0
        ages = 0.0
        done = 0
        for group in self.groups.values():
            group.stats.fold(FOLD_AT)
            lag = group.lag()
            age = group.lag_seconds() * 1000.0
            lags += lag
            ages += age
            done += group.processed
            group.stats.history.append((now, lag, age, group.processed, group.dead_lettered))
        # every service together: what a chart of hundreds of services aggregates "the others"
        # from (charts.simulation_history), without reading each one's history
        self.totals_history.append((now, len(self.groups), lags, ages, done))
        if self.chart_history:
            # percentiles cost a pass over a histogram: with many services, each tick
            # computes them again for CHART_PERCENTILES_PER_TICK of them in turn
            every = -(-len(self.groups) // CHART_PERCENTILES_PER_TICK) or 1
            turn = self._chart_ticks % every
            self._chart_ticks += 1
            for i, group in enumerate(self.groups.values()):
                group.stats.sample_charts(now, i % every == turn)
        for hook in self.on_sample:
            hook(now)
        self.after(self.scenario.sample_interval_s, self._sample, None)

    # --- reading the state ---------------------------------------------------------------

    def trace(self, correlation_id: CorrelationId) -> list[dict[str, Any]] | None:
        if self.tracer is None:
            return None
        hops = self.tracer.trace(correlation_id)
        return None if hops is None else [h.as_dict() for h in hops]

    def group_state(
        self, group: ConsumerGroup, *, latency: bool = True, compact: bool = False
    ) -> dict[str, Any]:
        if compact:
            # the headline numbers only: what a diagram and a table of hundreds of services
            # show (the p95 is the one sampled at the last tick: computing 300 percentiles
            # for every frame would cost more than the frame)
            return {
                "status": group.display_status,
                "label": group.spec.label,
                "mode": group.mode,
                "topics": list(group.spec.topics),
                "lag": group.lag(),
                "lag_ms": round(group.lag_seconds() * 1000.0, 3),
                "backlog": group.backlog(),
                "processed": group.processed,
                "dead_lettered": group.dead_lettered,
                "in_flight": group.in_flight,
                "instances_alive": sum(1 for i in group.instances if i.alive),
                "instances_total": len(group.instances),
                "throughput": throughput(group, self.now),
                "end_to_end_p95_ms": end_to_end_p95(group),
            }
        spec = group.spec
        state: dict[str, Any] = {
            "status": group.display_status,
            "mode": group.mode,
            "label": spec.label,
            "topics": list(spec.topics),
            "events": list(spec.events) if spec.events else None,
            "filter": spec.filter.describe() if spec.filter else None,
            "emits": [{"event": e.event, "topic": e.topic} for e in spec.emits],
            "idempotent": group.idempotent,
            "slow": group.slow,
            "delay_ms": round(group.delay * 1000.0, 3),
            "failure_rate": group.failure_rate,
            "lag": group.lag(),
            "lag_ms": round(group.lag_seconds() * 1000.0, 3),
            "processed": group.processed,
            "duplicates": group.duplicates,
            "redelivered": group.redelivered,
            "dead_lettered": group.dead_lettered,
            "dead_letters_waiting": len(group.dead_letters),
            "dead_letter_destination": group.dead_letter_destination,
            "redriven": group.redriven,
            "retries": group.retries,
            "failures": group.failures,
            "filtered": group.filtered,
            "expired": group.expired,
            "deduplicated": group.deduplicated,
            "in_flight": group.in_flight,
            "batched": group.batched,
            "retrying": group.retrying + group.waiting_retry(),
            "instances": [group.instance_state(i) for i in group.instances],
            "partitions": group.partitions_state(),
            "settings": group.settings(),
            "notes": group.notes(),
            "records_lag": group.records_lag(),
            "backlog": group.backlog(),
        }
        if isinstance(group, StreamGroup):
            state["rebalances"] = group.rebalances
            state["undetected"] = group.zombies_state()
        elif isinstance(group, QueueGroup):
            state["unacked"] = group.unacked
            state["ready"] = len(group.ready)
            state["returned"] = group.returned
        state["throughput"] = throughput(group, self.now)
        if latency:
            s = group.stats
            state["wait_ms"] = s.wait.summary()
            state["end_to_end_ms"] = s.e2e.summary()
            state["processing_ms"] = s.processing.summary()
        return state

    def topic_state(self, topic: Topic) -> dict[str, Any]:
        hist = self.metrics_observer.topic_history.get(topic.name)
        if hist and len(hist) >= 2:
            (t0, p0, b0), (t1, p1, b1) = hist[-2], hist[-1]
            span = t1 - t0
            throughput = (p1 - p0) / span if span > 0 else 0.0
            bytes_rate = (b1 - b0) / span if span > 0 else 0.0
        else:
            throughput = topic.produced / self.now if self.now else 0.0
            bytes_rate = topic.bytes_produced / self.now if self.now else 0.0
        return {
            "produced": topic.produced,
            "bytes_produced": topic.bytes_produced,
            "bytes_per_s": round(bytes_rate, 1),
            "bytes_stored": topic.bytes_stored,
            "stored": topic.stored,
            "throughput": round(throughput, 3),
            "partitions": [
                {
                    "index": p.index,
                    "start": p.start,
                    "end": p.end,
                    "bytes": p.bytes,
                    "online": p.online,
                }
                for p in topic.partitions
            ],
        }

    COMPACT_ABOVE = 40  # services; larger systems get compact per-service state

    def snapshot(self, *, latency: bool = True, compact: bool | None = None) -> dict[str, Any]:
        """The whole state, as plain data (what a dashboard frame carries).

        ``latency=False`` leaves out the percentile summaries, which cost the most to compute.
        ``compact`` (by default: above ``COMPACT_ABOVE`` services) keeps each service's headline
        numbers only, so a system of hundreds of services still streams live.
        """
        if compact is None:
            compact = len(self.groups) > self.COMPACT_ABOVE
        groups = {
            name: self.group_state(g, latency=latency and not compact, compact=compact)
            for name, g in self.groups.items()
        }
        snap = {
            "t": round(self.now, 6),
            "seed": self.seed,
            "scenario": self.scenario.name,
            "producers": {
                name: {
                    "produced": p.produced,
                    "rate": p.rate,
                    "topic": p.topic.name,
                    "event": p.event,
                    "arrival": "poisson" if p.poisson else "constant",
                    "schema": p.spec.schema,
                    "rejected": p.rejected,
                    "last_rejection": p.last_rejection,
                    **p.sender.state(),
                    "notes": p.sender.notes(),
                }
                for name, p in self.producers.items()
            },
            "topics": {name: self.topic_state(t) for name, t in self.topics.items()},
            # Spring Kafka's <topic>.DLT topics, once something was dead-lettered there
            "dead_letter_topics": {
                t.name: {"original": t.original, **self.topic_state(t)}
                for t in self.dead_letter_topics.values()
            },
            "retry_topics": {
                t.name: {"original": t.original, **self.topic_state(t)}
                for t in self.retry_topics.values()
            },
            "broker": {
                "append_ms": self.scenario.broker.append_ms,
                "replication_ms": self.scenario.broker.replication_ms,
                "delay_ms": self.broker_delay_ms,
                "emits": self.emit_sender.state(),
            },
            "compact": compact,
            "fault_errors": self.fault_errors_state(),
            "groups": groups,
        }
        if compact:
            # what charts of hundreds of services draw: the few furthest behind, and the rest
            # as one aggregate
            snap["top"] = top_services(self, groups)
        return snap

    def metrics(self) -> dict[str, Any]:
        """The metrics document (what ``python -m simulator run --json`` prints)."""
        snap = self.snapshot()
        return {
            "time": snap["t"],
            "seed": self.seed,
            "scenario": self.scenario.name,
            "producers": snap["producers"],
            "topics": snap["topics"],
            "groups": snap["groups"],
            "commands": len(self.command_log),
            "fault_errors": snap["fault_errors"],
        }

    def fault_errors_state(self) -> list[dict[str, Any]]:
        """The scheduled faults and script steps the run could not apply, oldest first."""
        return [
            {"t": round(t, 6), "fault": what, "error": why} for t, what, why in self.fault_errors
        ]

    def history(self, group: str) -> list[tuple[float, int, float, int, int]]:
        g = self.metrics_observer.groups.get(group)
        return [] if g is None else list(g.history)


def registry_for(scenario: Scenario) -> Any:
    """The scenario's schema registry (already validated when the scenario was parsed)."""
    doc = scenario.extra.get("schemas")
    if doc is None:
        return None
    return build_registry(_V(), doc)


def replay(
    scenario: Scenario,
    seed: int | None,
    log: list[tuple[float, dict[str, Any]]],
    until: float,
    **kwargs: Any,
) -> Simulation:
    """Rebuild a run from its scenario, seed and command log: the same state, exactly."""
    sim = Simulation(scenario, seed, **kwargs)
    for t, command in log:
        sim.run_until(t)
        sim.apply(command)
    sim.run_until(until)
    return sim
