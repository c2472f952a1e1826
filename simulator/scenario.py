"""Scenario files: parsing and validation.

A scenario is YAML or JSON. Every problem is reported with the path of the field it concerns
(``consumers[1].processing.mean_ms: must be > 0``), all problems at once, never a traceback.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .commands import (
    ENGINE_COMMANDS,
    INSTANCES_MAX,
    RATE_MAX,
    VALUE_BOUNDS,
    CommandError,
    bounded,
)
from .distributions import DISTRIBUTIONS, TEXT_MAX, VALUE_KINDS, LatencySpec, order_id_field
from .schema import (
    MAX_DEPTH,
    Compatibility,
    IncompatibleSchema,
    SchemaError,
    SchemaRegistry,
    SchemaRegistryError,
    nesting_overflow,
    parse_versioned,
)

LIMITS: dict[str, int] = {
    "topics": 50,
    "partitions": 64,
    "producers": 50,
    "consumers": 500,
    "instances": INSTANCES_MAX,
    "rate": RATE_MAX,
    "duration": 7 * 24 * 3600,
}
# What a hostile file could otherwise make huge (docs/scenarios.md, "Limits")
MAX_DOCUMENT_BYTES = 256 * 1024  # the scenario as compact JSON, aliases expanded
MAX_YAML_VALUES = 100_000  # values the YAML expands to, an alias counting each time it is used
MAX_CONSUMER_BYTES = 20_000  # one consumer spec (consumer.add), as compact JSON
NAME_MAX = 80  # characters of a topic's, producer's, consumer's or event's name
NAMES_MAX = 100  # names in one list (a consumer's topics or events)
TITLE_MAX = 200  # characters of a scenario's name, or a service's label
DESCRIPTION_MAX = 5_000  # characters of a scenario's description
SEED_MAX = 2**63 - 1  # what the database's integer holds
PAYLOAD_FIELDS_MAX = 100  # fields of a producer's payload
CHOICE_MAX = 1_000  # options of a payload's {choice: [...]}
KAFKA_MAX_MESSAGE_BYTES = 1_048_588  # the broker's message.max.bytes: a larger record is refused
PAYLOAD_TEXT_MAX = 1_000  # characters of a choice option, a sequence prefix or a filter's text
PAYLOAD_NUMBER_MAX = 1e15  # magnitude of a number in a payload or a filter
SCHEMA_VERSIONS_MAX = 50  # versions of one subject
SCHEMAS_MAX = 200  # versions of every subject together

FILTER_OPS = (">", ">=", "<", "<=", "==", "!=")
FAULT_ACTIONS = ("down", "up", "crash", "slow", "delay", "failure_rate", "instances", "rate")
DELIVERY_MODES = ("stream", "queue")
ARRIVALS = ("constant", "poisson")


class ScenarioError(ValueError):
    """A scenario that cannot be run. ``errors`` lists ``(path, message)`` pairs."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{p}: {m}" if p else m for p, m in errors))

    def as_list(self) -> list[dict[str, str]]:
        return [{"path": p, "message": m} for p, m in self.errors]


DEFAULT_RETENTION_MESSAGES = 100_000  # per partition, when a topic sets no retention


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int = 1
    retention_messages: int | None = DEFAULT_RETENTION_MESSAGES
    retention_age_s: float | None = None


@dataclass(frozen=True)
class BurstSpec:
    at: float
    count: int = 0
    duration: float = 0.0
    rate: float = 0.0


KAFKA_DELIVERY_TIMEOUT_MS = 120_000.0  # delivery.timeout.ms
KAFKA_RETRY_BACKOFF_MS = 100.0  # retry.backoff.ms
KAFKA_BUFFER_MEMORY = 33_554_432  # buffer.memory (32 MiB)
KAFKA_MAX_BLOCK_MS = 60_000.0  # max.block.ms
ACKS = ("0", "1", "all")


@dataclass(frozen=True)
class SendSpec:
    """A Kafka producer's send settings, with Kafka's defaults."""

    acks: str = "all"  # the default since Kafka 3.0
    delivery_timeout_ms: float = KAFKA_DELIVERY_TIMEOUT_MS
    retry_backoff_ms: float = KAFKA_RETRY_BACKOFF_MS
    buffer_memory: int = KAFKA_BUFFER_MEMORY
    max_block_ms: float = KAFKA_MAX_BLOCK_MS


@dataclass(frozen=True)
class BrokerSpec:
    """The broker's own latency: a produce request's append on the partition leader, and the
    followers' copy that ``acks: all`` waits for. Fanout's defaults are 0 (see fidelity.md)."""

    append_ms: float = 0.0
    replication_ms: float = 0.0


@dataclass(frozen=True)
class ProducerSpec:
    name: str
    topic: str
    event: str
    rate: float
    arrival: str = "poisson"
    key: str | None = None
    size_bytes: int = 200
    payload: Mapping[str, Any] = field(default_factory=dict)
    poison_rate: float = 0.0
    bursts: tuple[BurstSpec, ...] = ()
    schema: str | None = None  # "OrderPlaced.v2": payloads are checked against it at publish
    # Kafka's partitioner.class: "default" (murmur2 of the key; sticky without a key) or
    # "round_robin" (RoundRobinPartitioner: every record to the next partition, keys ignored)
    partitioner: str = "default"
    send: SendSpec = field(default_factory=SendSpec)


@dataclass(frozen=True)
class FilterSpec:
    field: str
    op: str
    value: Any

    def matcher(self) -> Callable[[Mapping[str, Any] | None], bool]:
        name, op, value = self.field, self.op, self.value

        def match(payload: Mapping[str, Any] | None) -> bool:
            if not payload or name not in payload:
                return False
            v = payload[name]
            try:
                if op == ">":
                    return bool(v > value)
                if op == ">=":
                    return bool(v >= value)
                if op == "<":
                    return bool(v < value)
                if op == "<=":
                    return bool(v <= value)
                if op == "==":
                    return bool(v == value)
                return bool(v != value)
            except TypeError:
                return False

        return match

    def describe(self) -> str:
        return f"{self.field} {self.op} {self.value}"


@dataclass(frozen=True)
class RetrySpec:
    max_attempts: int = 3
    backoff_ms: float = 100.0
    backoff: str = "exponential"
    max_backoff_ms: float = 30_000.0
    # stream: Spring Kafka's non-blocking retries (@RetryableTopic): a failed record goes to
    # <topic>-retry-0, -1, ... (one topic per retry) and its partition moves on
    topics: bool = False

    def delay(self, attempt: int) -> float:
        """Seconds to wait before attempt ``attempt + 1``."""
        ms = self.backoff_ms
        if self.backoff == "exponential":
            ms = min(self.max_backoff_ms, ms * (2 ** (attempt - 1)))
        return ms / 1000.0


@dataclass(frozen=True)
class EmitSpec:
    event: str
    topic: str
    size_bytes: int | None = None
    when: str | None = None  # emit only when processing this event type


# Defaults of the real systems (see docs/scenarios.md for each one's source).
KAFKA_SESSION_TIMEOUT_MS = 45_000.0  # session.timeout.ms, since Kafka 3.0 (KIP-735)
KAFKA_HEARTBEAT_INTERVAL_MS = 3_000.0  # heartbeat.interval.ms
KAFKA_AUTO_COMMIT_INTERVAL_MS = 5_000.0  # auto.commit.interval.ms
KAFKA_MAX_POLL_RECORDS = 500  # max.poll.records
KAFKA_INITIAL_REBALANCE_DELAY_MS = 3_000.0  # group.initial.rebalance.delay.ms (broker)
RABBITMQ_QUORUM_DELIVERY_LIMIT = 20  # x-delivery-limit of quorum queues, since RabbitMQ 4.0
# What a delivery costs the client and the broker beyond the processing itself: one message at
# a time, fetched and acknowledged, took 0.29 ms on Redis Streams and 0.28 ms on RabbitMQ here
# (bench/fidelity.py, experiment "overhead"; docs/fidelity.md)
CLIENT_OVERHEAD_MS = 0.3

ASSIGNMENT_STRATEGIES = ("range", "roundrobin", "sticky", "cooperative-sticky")
ACK_MODES = ("batch", "record")
OFFSET_RESETS = ("earliest", "latest")
QUEUE_TYPES = ("classic", "quorum")
ON_FAILURE = ("nack", "reject", "retry_queue")


@dataclass(frozen=True)
class ConsumerSpec:
    name: str
    topics: tuple[str, ...]
    processing: LatencySpec
    instances: int = 1
    delivery: str = "stream"
    events: tuple[str, ...] | None = None
    filter: FilterSpec | None = None
    failure_rate: float = 0.0
    retry: RetrySpec = field(default_factory=RetrySpec)
    idempotent: bool = False
    start: str | None = None  # `from:` earliest or latest; otherwise auto_offset_reset
    emits: tuple[EmitSpec, ...] = ()
    dedupe_window: int = 100_000
    label: str = ""
    reads: str | None = None  # "OrderPlaced.v1": the schema this service reads events with
    client_overhead_ms: float = CLIENT_OVERHEAD_MS
    # stream (Kafka consumer settings, snake_case)
    session_timeout_ms: float = KAFKA_SESSION_TIMEOUT_MS
    heartbeat_interval_ms: float = KAFKA_HEARTBEAT_INTERVAL_MS
    enable_auto_commit: bool = True
    auto_commit_interval_ms: float = KAFKA_AUTO_COMMIT_INTERVAL_MS
    ack_mode: str = "batch"  # without auto-commit: commit after each record or each batch
    auto_offset_reset: str = "latest"
    max_poll_records: int = KAFKA_MAX_POLL_RECORDS
    partition_assignment_strategy: str = "range"
    group_initial_rebalance_delay_ms: float = KAFKA_INITIAL_REBALANCE_DELAY_MS
    # queue (RabbitMQ)
    prefetch: int = 0  # basic.qos prefetch_count; 0 is unlimited
    queue_type: str = "classic"
    x_delivery_limit: int | None = None  # quorum queues only
    on_failure: str = "nack"


@dataclass(frozen=True)
class FaultSpec:
    at: float
    action: str
    consumer: str | None = None
    producer: str | None = None
    value: float | None = None
    instance: int | None = None
    broker: str | None = None  # a topic whose leaders the fault takes down, up or slows
    partition: int | None = None


@dataclass(frozen=True)
class ScriptStep:
    """A command the run applies by itself at a simulated time (a lesson's steps, played)."""

    at: float
    command: Mapping[str, Any]


SCRIPT_LIMIT = 100  # steps a scenario's script may have
SCRIPT_COMMAND_BYTES = 20_000  # what one scripted command may weigh, as JSON


@dataclass(frozen=True)
class Scenario:
    topics: tuple[TopicSpec, ...]
    producers: tuple[ProducerSpec, ...]
    consumers: tuple[ConsumerSpec, ...]
    faults: tuple[FaultSpec, ...] = ()
    script: tuple[ScriptStep, ...] = ()
    seed: int = 1
    duration: float = 60.0
    name: str = ""
    description: str = ""
    sample_interval_s: float = 1.0
    trace: str = "sample"  # which journeys a live run traces (TRACE_CHOICES)
    chain: tuple[str, ...] = ()
    broker: BrokerSpec = field(default_factory=BrokerSpec)
    extra: Mapping[str, Any] = field(default_factory=dict)
    source: Mapping[str, Any] = field(default_factory=dict)

    def consumer(self, name: str) -> ConsumerSpec | None:
        return next((c for c in self.consumers if c.name == name), None)


# --- validation -------------------------------------------------------------------------


class _V:
    """Collects errors while reading a document."""

    def __init__(self) -> None:
        self.errors: list[tuple[str, str]] = []

    def err(self, path: str, message: str) -> None:
        self.errors.append((path, message))

    def mapping(self, value: Any, path: str) -> dict[str, Any] | None:
        if not isinstance(value, dict):
            self.err(path, f"must be a mapping, got {_kind(value)}")
            return None
        return value

    def known(self, d: Mapping[str, Any], path: str, allowed: tuple[str, ...]) -> None:
        for k in d:
            if not isinstance(k, str):
                self.err(
                    _join(path, str(k)),
                    "field names must be text (YAML reads unquoted "
                    "on/off/yes/no as true/false: quote the name)",
                )
            elif k not in allowed:
                hint = f" (known fields: {', '.join(allowed)})"
                self.err(_join(path, k), f"unknown field{hint}")

    def name(self, d: Mapping[str, Any], key: str, path: str) -> str | None:
        v = d.get(key)
        p = _join(path, key)
        if v is None:
            self.err(p, "is required")
            return None
        if not isinstance(v, str) or not v.strip():
            self.err(p, "must be a non-empty string")
            return None
        if len(v) > NAME_MAX:
            self.err(p, f"must be at most {NAME_MAX} characters")
            return None
        return v

    def number(
        self,
        d: Mapping[str, Any],
        key: str,
        path: str,
        *,
        default: float | None = None,
        required: bool = False,
        gt: float | None = None,
        ge: float | None = None,
        le: float | None = None,
        integer: bool = False,
    ) -> Any:
        p = _join(path, key)
        if key not in d or d[key] is None:
            if required:
                self.err(p, "is required")
            return default
        v = d[key]
        if isinstance(v, bool) or not isinstance(v, int | float):
            self.err(p, f"must be a number, got {_kind(v)}")
            return default
        try:
            f = float(v)
        except OverflowError:  # an int beyond any float (10**400)
            self.err(p, f"must be <= {_fmt(le)}" if le is not None else "is too large")
            return default
        if not math.isfinite(f):
            self.err(p, "must be a finite number")
            return default
        if integer and (not isinstance(v, int) and not f.is_integer()):
            self.err(p, "must be a whole number")
            return default
        if gt is not None and not v > gt:
            self.err(p, f"must be > {_fmt(gt)}")
            return default
        if ge is not None and not v >= ge:
            self.err(p, f"must be >= {_fmt(ge)}")
            return default
        if le is not None and not v <= le:
            self.err(p, f"must be <= {_fmt(le)}")
            return default
        return int(v) if integer else f

    def choice(
        self, d: Mapping[str, Any], key: str, path: str, options: tuple[str, ...], default: str
    ) -> str:
        v = d.get(key, default)
        if v not in options:
            self.err(_join(path, key), f"must be one of {', '.join(options)}, got {v!r}")
            return default
        return str(v)

    def boolean(self, d: Mapping[str, Any], key: str, path: str, default: bool) -> bool:
        v = d.get(key, default)
        if not isinstance(v, bool):
            self.err(_join(path, key), f"must be true or false, got {_kind(v)}")
            return default
        return v

    def items(
        self, d: Mapping[str, Any], key: str, path: str, *, required: bool, limit: int
    ) -> list[tuple[str, Any]]:
        v = d.get(key)
        p = _join(path, key)
        if v is None:
            if required:
                self.err(p, "is required")
            return []
        if not isinstance(v, list):
            self.err(p, f"must be a list, got {_kind(v)}")
            return []
        if len(v) > limit:
            self.err(p, f"at most {limit} entries are allowed, got {len(v)}")
            return []
        return [(f"{p}[{i}]", item) for i, item in enumerate(v)]


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _kind(v: Any) -> str:
    if v is None:
        return "nothing"
    return {
        bool: "true/false",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a mapping",
    }.get(type(v), type(v).__name__)


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _latency(v: _V, value: Any, path: str) -> LatencySpec | None:
    d = v.mapping(value, path)
    if d is None:
        return None
    v.known(d, path, ("dist", "mean_ms", "jitter", "sigma"))
    dist = v.choice(d, "dist", path, DISTRIBUTIONS, "exponential")
    mean = v.number(d, "mean_ms", path, required=True, gt=0, le=3_600_000)
    jitter = v.number(d, "jitter", path, default=0.5, ge=0, le=1)
    sigma = v.number(d, "sigma", path, default=0.5, gt=0, le=5)
    if mean is None:
        return None
    return LatencySpec(dist=dist, mean_ms=mean, jitter=jitter, sigma=sigma)


def _plain_number(x: Any) -> bool:
    """A finite number a payload may carry (``abs`` compares a huge int without overflowing)."""
    return isinstance(x, int | float) and not isinstance(x, bool) and abs(x) <= PAYLOAD_NUMBER_MAX


def _scalar(x: Any) -> bool:
    """A constant a payload field or a filter may hold: text (short), a number, true/false, null."""
    return (
        x is None
        or isinstance(x, bool)
        or _plain_number(x)
        or (isinstance(x, str) and len(x) <= PAYLOAD_TEXT_MAX)
    )


def _generator_problem(kind: str, arg: Any) -> str | None:
    """What is wrong with ``{kind: arg}``, or None."""
    if kind in ("uniform", "int"):
        ok = isinstance(arg, list) and len(arg) == 2 and all(_plain_number(a) for a in arg)
        if ok and arg[0] <= arg[1]:
            return None
        return f"{kind} takes [low, high], numbers within ±{PAYLOAD_NUMBER_MAX:g}, low <= high"
    if kind == "choice":
        if not isinstance(arg, list) or not arg:
            return "choice takes a non-empty list of options"
        if len(arg) > CHOICE_MAX:
            return f"choice has at most {CHOICE_MAX} options, got {len(arg)}"
        if not all(_scalar(a) for a in arg):
            return (
                "choice options are constants: numbers, true/false, null or text of at most "
                f"{PAYLOAD_TEXT_MAX} characters"
            )
        return None
    if kind == "sequence":
        if isinstance(arg, str) and len(arg) <= PAYLOAD_TEXT_MAX:
            return None
        return f"sequence takes a prefix: text of at most {PAYLOAD_TEXT_MAX} characters"
    if kind == "text":
        if isinstance(arg, int) and not isinstance(arg, bool) and 0 <= arg <= TEXT_MAX:
            return None
        return f"text takes a length from 0 to {TEXT_MAX}"
    # lognormal
    if (
        isinstance(arg, dict)
        and set(arg) <= {"mean", "sigma"}
        and _plain_number(arg.get("mean"))
        and 0 < arg["mean"] <= 1e9
        and _plain_number(arg.get("sigma", 1.0))
        and 0 < arg.get("sigma", 1.0) <= 5
    ):
        return None
    return "lognormal takes {mean, sigma}: 0 < mean <= 1e9, 0 < sigma <= 5"


def _payload(v: _V, value: Any, path: str) -> dict[str, Any]:
    d = v.mapping(value, path)
    if d is None:
        return {}
    if len(d) > PAYLOAD_FIELDS_MAX:
        v.err(path, f"at most {PAYLOAD_FIELDS_MAX} fields are allowed, got {len(d)}")
        return {}
    out: dict[str, Any] = {}
    for k, spec in d.items():
        p = _join(path, str(k))
        if len(str(k)) > NAME_MAX:
            v.err(p, f"a field name may have at most {NAME_MAX} characters")
            continue
        if isinstance(spec, dict):
            if len(spec) != 1 or next(iter(spec)) not in VALUE_KINDS:
                v.err(
                    p,
                    f"a generated value is one of {', '.join(VALUE_KINDS)}, "
                    "e.g. {uniform: [10, 8000]}",
                )
                continue
            ((kind, arg),) = spec.items()
            problem = _generator_problem(kind, arg)
            if problem is not None:
                v.err(p, f"bad arguments for {kind}: {problem}")
                continue
        elif not isinstance(spec, str | int | float | bool) and spec is not None:
            v.err(p, "must be a constant or a generated value")
            continue
        elif isinstance(spec, int | float) and not _scalar(spec):
            v.err(p, f"must be a finite number within ±{PAYLOAD_NUMBER_MAX:g}")
            continue
        out[str(k)] = spec
    text = sum(
        int(spec["text"])
        for spec in out.values()
        if isinstance(spec, dict) and isinstance(spec.get("text"), int)
    )
    if text > KAFKA_MAX_MESSAGE_BYTES:
        v.err(
            path,
            f"the text fields add up to {text:,} characters: a record may have at most "
            f"{KAFKA_MAX_MESSAGE_BYTES:,} bytes (Kafka's message.max.bytes)",
        )
        return {}
    return out


RETENTION_AGE_MAX = 10 * 365 * 24 * 3600  # ten years, in seconds


def _topic(v: _V, value: Any, path: str) -> TopicSpec | None:
    d = v.mapping(value, path)
    if d is None:
        return None
    v.known(d, path, ("name", "partitions", "retention"))
    name = v.name(d, "name", path)
    parts = v.number(d, "partitions", path, default=1, ge=1, le=LIMITS["partitions"], integer=True)
    rmsg: int | None = DEFAULT_RETENTION_MESSAGES
    rage = None
    if "retention" in d:
        rp = _join(path, "retention")
        r = v.mapping(d["retention"], rp)
        if r is not None:
            v.known(r, rp, ("max_messages", "max_age_s"))
            rmsg = v.number(r, "max_messages", rp, ge=1, le=10_000_000, integer=True)
            rage = v.number(r, "max_age_s", rp, gt=0, le=RETENTION_AGE_MAX)
    if name is None:
        return None
    return TopicSpec(name=name, partitions=parts, retention_messages=rmsg, retention_age_s=rage)


def _producer(v: _V, value: Any, path: str) -> ProducerSpec | None:
    d = v.mapping(value, path)
    if d is None:
        return None
    v.known(
        d,
        path,
        (
            "name",
            "topic",
            "event",
            "rate",
            "arrival",
            "key",
            "size_bytes",
            "payload",
            "poison_rate",
            "bursts",
            "schema",
            "partitioner",
            *SEND_FIELDS,
        ),
    )
    name = v.name(d, "name", path)
    topic = v.name(d, "topic", path)
    event = v.name(d, "event", path)
    rate = v.number(d, "rate", path, required=True, ge=0, le=LIMITS["rate"])
    arrival = v.choice(d, "arrival", path, ARRIVALS, "poisson")
    key = d.get("key")
    if key is not None and not isinstance(key, str):
        v.err(_join(path, "key"), "must be the name of a payload field")
        key = None
    size = v.number(d, "size_bytes", path, default=200, ge=1, le=10_000_000, integer=True)
    payload = _payload(v, d["payload"], _join(path, "payload")) if "payload" in d else {}
    if key is not None and key not in payload:
        v.err(_join(path, "key"), f"names payload field {key!r}, which the payload lacks")
    poison = v.number(d, "poison_rate", path, default=0.0, ge=0, le=1)
    bursts = []
    for bp, b in v.items(d, "bursts", path, required=False, limit=100):
        bd = v.mapping(b, bp)
        if bd is None:
            continue
        v.known(bd, bp, ("at", "count", "duration", "rate"))
        at = v.number(bd, "at", bp, required=True, ge=0, le=LIMITS["duration"])
        count = v.number(bd, "count", bp, default=0, ge=0, le=1_000_000, integer=True)
        duration = v.number(bd, "duration", bp, default=0.0, ge=0, le=LIMITS["duration"])
        brate = v.number(bd, "rate", bp, default=0.0, ge=0, le=LIMITS["rate"])
        if not count and not (duration and brate):
            v.err(bp, "a burst needs either count, or duration and rate")
        elif at is not None:
            bursts.append(BurstSpec(at=at, count=count, duration=duration, rate=brate))
    if name is None or topic is None or event is None or rate is None:
        return None
    return ProducerSpec(
        name=name,
        topic=topic,
        event=event,
        rate=rate,
        arrival=arrival,
        key=key,
        size_bytes=size,
        payload=payload,
        poison_rate=poison,
        bursts=tuple(bursts),
        schema=_versioned_name(v, d, "schema", path),
        partitioner=v.choice(d, "partitioner", path, ("default", "round_robin"), "default"),
        send=_send_settings(v, d, path),
    )


SEND_FIELDS = ("acks", "delivery_timeout_ms", "retry_backoff_ms", "buffer_memory", "max_block_ms")


def _send_settings(v: _V, d: Mapping[str, Any], path: str) -> SendSpec:
    acks = d.get("acks", "all")
    if isinstance(acks, int) and not isinstance(acks, bool):
        acks = str(acks)
    if acks not in ACKS:
        v.err(_join(path, "acks"), f"must be 0, 1 or all, got {acks!r}")
        acks = "all"
    return SendSpec(
        acks=acks,
        delivery_timeout_ms=v.number(
            d, "delivery_timeout_ms", path, default=KAFKA_DELIVERY_TIMEOUT_MS, gt=0, le=86_400_000
        ),
        retry_backoff_ms=v.number(
            d, "retry_backoff_ms", path, default=KAFKA_RETRY_BACKOFF_MS, gt=0, le=3_600_000
        ),
        buffer_memory=v.number(
            d, "buffer_memory", path, default=KAFKA_BUFFER_MEMORY, ge=1, le=2**31, integer=True
        ),
        max_block_ms=v.number(
            d, "max_block_ms", path, default=KAFKA_MAX_BLOCK_MS, ge=0, le=3_600_000
        ),
    )


def _broker(v: _V, value: Any) -> BrokerSpec:
    d = v.mapping(value, "broker")
    if d is None:
        return BrokerSpec()
    v.known(d, "broker", ("append_ms", "replication_ms"))
    return BrokerSpec(
        append_ms=v.number(d, "append_ms", "broker", default=0.0, ge=0, le=60_000),
        replication_ms=v.number(d, "replication_ms", "broker", default=0.0, ge=0, le=60_000),
    )


def _str_list(v: _V, value: Any, path: str, limit: int = NAMES_MAX) -> tuple[str, ...] | None:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(x, str) and x for x in value):
        v.err(path, "must be a non-empty list of names")
        return None
    if len(value) > limit:
        v.err(path, f"at most {limit} names are allowed, got {len(value)}")
        return None
    long = [i for i, x in enumerate(value) if len(x) > NAME_MAX]
    for i in long:
        v.err(f"{path}[{i}]", f"must be at most {NAME_MAX} characters")
    return None if long else tuple(value)


STREAM_FIELDS = (
    "session_timeout_ms",
    "heartbeat_interval_ms",
    "enable_auto_commit",
    "auto_commit_interval_ms",
    "ack_mode",
    "auto_offset_reset",
    "max_poll_records",
    "partition_assignment_strategy",
    "group_initial_rebalance_delay_ms",
)
QUEUE_FIELDS = ("prefetch", "queue_type", "x_delivery_limit", "on_failure")
CONSUMER_FIELDS = (
    "name",
    "topics",
    "events",
    "instances",
    "processing",
    "failure_rate",
    "retry",
    "delivery",
    "filter",
    "idempotent",
    "from",
    "emits",
    "dedupe_window",
    "label",
    "reads",
    "client_overhead_ms",
    *STREAM_FIELDS,
    *QUEUE_FIELDS,
)
# Fields earlier versions had, with what replaced them
RENAMED_FIELDS = {
    "commit_interval_ms": "replaced by enable_auto_commit and auto_commit_interval_ms "
    "(Kafka's enable.auto.commit, auto.commit.interval.ms), or ack_mode: record",
    "rebalance_ms": "removed: a rebalance now takes as long as Kafka's (members learn of it at "
    "their next heartbeat, heartbeat_interval_ms, and rejoin once their batch is done)",
    "start": "renamed 'from' (earliest or latest); without it, auto_offset_reset decides",
}


def parse_consumer(v: _V, value: Any, path: str) -> ConsumerSpec | None:
    d = v.mapping(value, path)
    if d is None:
        return None
    for old, why in RENAMED_FIELDS.items():
        if old in d:
            v.err(_join(path, old), why)
    v.known({k: x for k, x in d.items() if k not in RENAMED_FIELDS}, path, CONSUMER_FIELDS)
    name = v.name(d, "name", path)
    topics = None
    if "topics" in d:
        topics = _str_list(v, d["topics"], _join(path, "topics"))
    else:
        v.err(_join(path, "topics"), "is required")
    events = _str_list(v, d["events"], _join(path, "events")) if "events" in d else None
    instances = v.number(
        d, "instances", path, default=1, ge=0, le=LIMITS["instances"], integer=True
    )
    processing = (
        _latency(v, d["processing"], _join(path, "processing"))
        if "processing" in d
        else LatencySpec("exponential", 10.0)
    )
    failure_rate = v.number(d, "failure_rate", path, default=0.0, ge=0, le=1)
    retry = RetrySpec()
    if "retry" in d:
        rp = _join(path, "retry")
        r = v.mapping(d["retry"], rp)
        if r is not None:
            v.known(r, rp, ("max_attempts", "backoff_ms", "backoff", "max_backoff_ms", "topics"))
            retry = RetrySpec(
                max_attempts=v.number(r, "max_attempts", rp, default=3, ge=1, le=100, integer=True),
                backoff_ms=v.number(r, "backoff_ms", rp, default=100.0, ge=0, le=3_600_000),
                backoff=v.choice(r, "backoff", rp, ("fixed", "exponential"), "exponential"),
                max_backoff_ms=v.number(
                    r, "max_backoff_ms", rp, default=30_000.0, ge=0, le=3_600_000
                ),
                topics=v.boolean(r, "topics", rp, False),
            )
    delivery = v.choice(d, "delivery", path, DELIVERY_MODES, "stream")
    if retry.topics and delivery == "queue":
        v.err(
            _join(path, "retry.topics"),
            "retry topics are Spring Kafka's non-blocking retries, for stream delivery; a "
            "queue retries through a delay queue (on_failure: retry_queue)",
        )
    flt = None
    if "filter" in d and d["filter"] is not None:
        fp = _join(path, "filter")
        f = v.mapping(d["filter"], fp)
        if f is not None:
            v.known(f, fp, ("field", "op", "value"))
            fname = v.name(f, "field", fp)
            op = v.choice(f, "op", fp, FILTER_OPS, "==")
            if "value" not in f:
                v.err(_join(fp, "value"), "is required")
            elif not _scalar(f["value"]):
                v.err(
                    _join(fp, "value"),
                    f"must be a number within ±{PAYLOAD_NUMBER_MAX:g}, true/false, null or text "
                    f"of at most {PAYLOAD_TEXT_MAX} characters",
                )
            elif fname is not None:
                flt = FilterSpec(field=fname, op=op, value=f["value"])
    idempotent = v.boolean(d, "idempotent", path, False)
    start = v.choice(d, "from", path, OFFSET_RESETS, "latest") if "from" in d else None
    emits = []
    for ep, e in v.items(d, "emits", path, required=False, limit=20):
        ed = v.mapping(e, ep)
        if ed is None:
            continue
        v.known(ed, ep, ("event", "topic", "size_bytes", "when"))
        ev = v.name(ed, "event", ep)
        et = v.name(ed, "topic", ep)
        es = v.number(ed, "size_bytes", ep, ge=1, le=10_000_000, integer=True)
        when = v.name(ed, "when", ep) if "when" in ed else None
        if ev and et:
            emits.append(EmitSpec(event=ev, topic=et, size_bytes=es, when=when))
    window = v.number(d, "dedupe_window", path, default=100_000, ge=1, le=10_000_000, integer=True)
    label = d.get("label", "")
    if not isinstance(label, str):
        v.err(_join(path, "label"), "must be a string")
        label = ""
    elif len(label) > TITLE_MAX:
        v.err(_join(path, "label"), f"must be at most {TITLE_MAX} characters")
        label = ""
    overhead = v.number(d, "client_overhead_ms", path, default=CLIENT_OVERHEAD_MS, ge=0, le=60_000)
    kafka = _kafka_settings(v, d, path, delivery)
    rabbit = _rabbit_settings(v, d, path, delivery)
    if name is None or topics is None or processing is None:
        return None
    return ConsumerSpec(
        name=name,
        topics=topics,
        processing=processing,
        instances=instances,
        delivery=delivery,
        events=events,
        filter=flt,
        failure_rate=failure_rate,
        retry=retry,
        idempotent=idempotent,
        start=start,
        emits=tuple(emits),
        dedupe_window=window,
        label=label,
        reads=_versioned_name(v, d, "reads", path),
        client_overhead_ms=overhead,
        **kafka,
        **rabbit,
    )


def _only_for(v: _V, d: Mapping[str, Any], path: str, fields: tuple[str, ...], mode: str) -> None:
    what = (
        "stream delivery (a Kafka consumer group)"
        if mode == "stream"
        else ("queue delivery (a RabbitMQ queue)")
    )
    for f in fields:
        if f in d:
            v.err(_join(path, f), f"applies to {what}; this consumer has the other delivery")


def _kafka_settings(v: _V, d: Mapping[str, Any], path: str, delivery: str) -> dict[str, Any]:
    if delivery != "stream":
        _only_for(v, d, path, STREAM_FIELDS, "stream")
        return {}
    session = v.number(
        d, "session_timeout_ms", path, default=KAFKA_SESSION_TIMEOUT_MS, gt=0, le=3_600_000
    )
    heartbeat = v.number(
        d, "heartbeat_interval_ms", path, default=KAFKA_HEARTBEAT_INTERVAL_MS, gt=0, le=3_600_000
    )
    if session is not None and heartbeat is not None and heartbeat >= session:
        v.err(
            _join(path, "heartbeat_interval_ms"),
            "must be lower than session_timeout_ms (Kafka refuses it otherwise)",
        )
    auto_commit = v.boolean(d, "enable_auto_commit", path, True)
    if auto_commit and "ack_mode" in d:
        v.err(_join(path, "ack_mode"), "applies only with enable_auto_commit: false")
    return {
        "session_timeout_ms": session,
        "heartbeat_interval_ms": heartbeat,
        "enable_auto_commit": auto_commit,
        "auto_commit_interval_ms": v.number(
            d,
            "auto_commit_interval_ms",
            path,
            default=KAFKA_AUTO_COMMIT_INTERVAL_MS,
            gt=0,
            le=3_600_000,
        ),
        "ack_mode": v.choice(d, "ack_mode", path, ACK_MODES, "batch"),
        "auto_offset_reset": v.choice(d, "auto_offset_reset", path, OFFSET_RESETS, "latest"),
        "max_poll_records": v.number(
            d,
            "max_poll_records",
            path,
            default=KAFKA_MAX_POLL_RECORDS,
            ge=1,
            le=100_000,
            integer=True,
        ),
        "partition_assignment_strategy": v.choice(
            d, "partition_assignment_strategy", path, ASSIGNMENT_STRATEGIES, "range"
        ),
        "group_initial_rebalance_delay_ms": v.number(
            d,
            "group_initial_rebalance_delay_ms",
            path,
            default=KAFKA_INITIAL_REBALANCE_DELAY_MS,
            ge=0,
            le=300_000,
        ),
    }


def _rabbit_settings(v: _V, d: Mapping[str, Any], path: str, delivery: str) -> dict[str, Any]:
    if delivery != "queue":
        _only_for(v, d, path, QUEUE_FIELDS, "queue")
        return {}
    queue_type = v.choice(d, "queue_type", path, QUEUE_TYPES, "classic")
    limit = None
    if queue_type == "quorum":
        limit = RABBITMQ_QUORUM_DELIVERY_LIMIT
        if "x_delivery_limit" in d and d["x_delivery_limit"] is None:
            limit = None  # explicitly none: RabbitMQ 3.x's default
        else:
            limit = v.number(
                d, "x_delivery_limit", path, default=limit, ge=0, le=1_000_000, integer=True
            )
    elif d.get("x_delivery_limit") is not None:
        v.err(_join(path, "x_delivery_limit"), "applies to quorum queues (queue_type: quorum)")
    return {
        "prefetch": v.number(d, "prefetch", path, default=0, ge=0, le=65_535, integer=True),
        "queue_type": queue_type,
        "x_delivery_limit": limit,
        "on_failure": v.choice(d, "on_failure", path, ON_FAILURE, "nack"),
    }


BROKER_ACTIONS = ("down", "up", "delay")
FAULT_FIELDS = ("at", "consumer", "producer", "broker", "action", "value", "instance", "partition")


VALUED_ACTIONS = ("slow", "delay", "failure_rate", "instances", "rate")


def fault_command(action: str, *, broker: Any, producer: Any) -> str:
    """The run-time command a fault applies (its ranges are the command's)."""
    if broker is not None:
        return f"broker.{action}"
    if producer is not None:
        return "producer.rate"
    return f"consumer.{action}"


def _fault(v: _V, value: Any, path: str) -> FaultSpec | None:
    d = v.mapping(value, path)
    if d is None:
        return None
    v.known(d, path, FAULT_FIELDS)
    at = v.number(d, "at", path, required=True, ge=0, le=LIMITS["duration"])
    action = v.choice(d, "action", path, FAULT_ACTIONS, "down")
    consumer, producer, broker = d.get("consumer"), d.get("producer"), d.get("broker")
    if sum(x is not None for x in (consumer, producer, broker)) != 1:
        v.err(path, "names exactly one consumer, one producer or one broker topic")
        return None
    for key, name in (("consumer", consumer), ("producer", producer), ("broker", broker)):
        if name is not None and (not isinstance(name, str) or len(name) > NAME_MAX):
            v.err(_join(path, key), f"must be a name of at most {NAME_MAX} characters")
            return None
    if action == "rate" and producer is None:
        v.err(_join(path, "action"), "rate applies to a producer")
    if broker is not None and action not in BROKER_ACTIONS:
        v.err(_join(path, "action"), f"a broker fault is one of {', '.join(BROKER_ACTIONS)}")
    if action != "rate" and consumer is None and broker is None:
        v.err(_join(path, "action"), f"{action} applies to a consumer")
    # the value is checked against the range of the command the fault applies, as a command
    # sent at run time is: a fault the run would refuse is refused here
    value_ = v.number(d, "value", path)
    if action in VALUED_ACTIONS:
        command = fault_command(action, broker=broker, producer=producer)
        bounds = VALUE_BOUNDS.get(command)
        if d.get("value") is None:
            v.err(_join(path, "value"), f"is required for {action}")
        elif value_ is not None and bounds is not None:
            try:
                bounded({"command": command, "value": value_}, bounds)
            except CommandError as e:
                v.err(_join(path, "value"), str(e))
    elif d.get("value") is not None:
        v.err(_join(path, "value"), f"applies to {', '.join(VALUED_ACTIONS)}, not to {action}")
    instance = v.number(d, "instance", path, ge=0, le=LIMITS["instances"] - 1, integer=True)
    if instance is not None and action != "crash":
        v.err(_join(path, "instance"), "applies to crash")
    partition = v.number(d, "partition", path, ge=0, le=LIMITS["partitions"] - 1, integer=True)
    if partition is not None and broker is None:
        v.err(_join(path, "partition"), "applies to a broker fault")
    if at is None:
        return None
    return FaultSpec(
        at=at,
        action=action,
        consumer=consumer,
        producer=producer,
        value=value_,
        instance=instance,
        broker=broker,
        partition=partition,
    )


def _instances_at(
    spec: ConsumerSpec, faults: list[FaultSpec], script: list[ScriptStep], index: int
) -> int | None:
    """How many instances ``spec``'s service has when fault ``index`` fires, when the scenario
    alone says so (None when its faults or script change the count before then)."""
    fault = faults[index]
    for j, f in enumerate(faults):
        if f.consumer == spec.name and f.action == "instances" and (f.at, j) < (fault.at, index):
            return None
    changes = ("consumer.instances", "consumer.add", "consumer.remove")
    if any(step.command.get("command") in changes and step.at <= fault.at for step in script):
        return None
    return spec.instances


TOP_FIELDS: tuple[str, ...] = (
    "seed",
    "name",
    "description",
    "duration",
    "sample_interval_s",
    "topics",
    "producers",
    "consumers",
    "faults",
    "script",
    "chain",
    "lesson",
    "sync",
    "schemas",
    "broker",
    "trace",
)
# ``trace``: which orders' journeys a live run traces. ``sample`` (the default): all of them
# while events come slower than its frames draw them, a sample when faster (simulator/observe.py,
# JourneyWatch); ``all``: every one, whatever the speed (a lesson about following an order).
TRACE_CHOICES = ("sample", "all")


def _script_step(v: _V, value: Any, path: str) -> ScriptStep | None:
    """``{at: 30, command: {command: dead_letters.redrive, consumer: payment}}``: the command is
    checked when it runs, as any command is; here only that it is one, and its size."""
    d = v.mapping(value, path)
    if d is None:
        return None
    v.known(d, path, ("at", "command"))
    if "at" not in d:
        v.err(_join(path, "at"), "is required: the simulated time the command runs at")
        return None
    at = v.number(d, "at", path, ge=0, le=LIMITS["duration"])
    cp = _join(path, "command")
    command = v.mapping(d.get("command"), cp)
    if command is None or at is None:
        return None
    name = command.get("command")
    if name not in ENGINE_COMMANDS:
        v.err(
            _join(cp, "command"),
            f"must be one of the engine's commands ({', '.join(ENGINE_COMMANDS)}), got {name!r}",
        )
        return None
    try:
        weight = len(json.dumps(command))
    except (TypeError, ValueError):
        v.err(cp, "must be plain JSON data")
        return None
    if weight > SCRIPT_COMMAND_BYTES:
        v.err(
            cp, f"is {weight:,} bytes as JSON; a scripted command may have {SCRIPT_COMMAND_BYTES:,}"
        )
        return None
    return ScriptStep(at=float(at), command=dict(command))


def parse_scenario(doc: Any) -> Scenario:
    """Validate a scenario (a mapping, or YAML/JSON text) and build a :class:`Scenario`.

    Raises :class:`ScenarioError` listing every problem found.
    """
    if isinstance(doc, bytes):
        try:
            doc = doc.decode("utf-8")
        except UnicodeDecodeError:
            raise ScenarioError([("", "the file is not UTF-8 text")]) from None
    if isinstance(doc, str):
        doc = load_text(doc)
    check_document(doc)
    v = _V()
    d = v.mapping(doc, "")
    if d is None:
        raise ScenarioError([("", f"a scenario must be a mapping, got {_kind(doc)}")])
    v.known(d, "", TOP_FIELDS)
    seed = d.get("seed", 1)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= SEED_MAX:
        v.err("seed", f"must be a whole number from 0 to {SEED_MAX} (2**63 - 1)")
        seed = 1
    duration = v.number(d, "duration", "", default=60.0, gt=0, le=LIMITS["duration"])
    # metrics fold their buffers every sample: a short interval keeps memory bounded
    interval = v.number(d, "sample_interval_s", "", default=1.0, ge=0.1, le=10)
    trace = v.choice(d, "trace", "", TRACE_CHOICES, "sample")
    name = d.get("name", "")
    description = d.get("description", "")
    if not isinstance(name, str):
        v.err("name", "must be a string")
        name = ""
    elif len(name) > TITLE_MAX:
        v.err("name", f"must be at most {TITLE_MAX} characters")
    if not isinstance(description, str):
        v.err("description", "must be a string")
        description = ""
    elif len(description) > DESCRIPTION_MAX:
        v.err("description", f"must be at most {DESCRIPTION_MAX} characters")

    topics = [
        t
        for p, x in v.items(d, "topics", "", required=True, limit=LIMITS["topics"])
        if (t := _topic(v, x, p))
    ]
    producers = [
        p_
        for p, x in v.items(d, "producers", "", required=False, limit=LIMITS["producers"])
        if (p_ := _producer(v, x, p))
    ]
    consumers = [
        c
        for p, x in v.items(d, "consumers", "", required=False, limit=LIMITS["consumers"])
        if (c := parse_consumer(v, x, p))
    ]
    faults = [
        f for p, x in v.items(d, "faults", "", required=False, limit=1000) if (f := _fault(v, x, p))
    ]
    script = [
        step
        for p, x in v.items(d, "script", "", required=False, limit=SCRIPT_LIMIT)
        if (step := _script_step(v, x, p))
    ]
    chain: tuple[str, ...] = ()
    if "chain" in d:
        chain = _str_list(v, d["chain"], "chain", LIMITS["consumers"]) or ()

    # cross references
    topic_names = [t.name for t in topics]
    _unique(v, "topics", topic_names)
    _unique(v, "producers", [p.name for p in producers])
    _unique(v, "consumers", [c.name for c in consumers])
    known_topics = set(topic_names)
    numbered: dict[str, str] = {}  # an order id prefix -> the producer that numbers with it
    for i, p in enumerate(producers):
        field = order_id_field(p.payload)
        if field is not None:
            prefix = str(p.payload[field]["sequence"])
            other = numbered.setdefault(prefix, p.name)
            if other != p.name:
                v.err(
                    f"producers[{i}].payload.{field}",
                    f"{other} already numbers its orders {prefix}1, {prefix}2, ...: two "
                    f"orders would share an id (and a correlation id); give this one another "
                    f"prefix",
                )
        if p.topic not in known_topics:
            v.err(f"producers[{i}].topic", f"unknown topic {p.topic!r}")
    for i, c in enumerate(consumers):
        check_consumer_refs(v, c, f"consumers[{i}]", known_topics)
    consumer_names = {c.name for c in consumers}
    producer_names = {p.name for p in producers}
    for i, f in enumerate(faults):
        if f.consumer is not None and f.consumer not in consumer_names:
            v.err(f"faults[{i}].consumer", f"unknown consumer {f.consumer!r}")
        if f.producer is not None and f.producer not in producer_names:
            v.err(f"faults[{i}].producer", f"unknown producer {f.producer!r}")
        target = next((c for c in consumers if c.name == f.consumer), None)
        if f.action == "crash" and f.instance is not None and target is not None:
            n = _instances_at(target, faults, script, i)
            if n is not None and f.instance >= n:
                v.err(
                    f"faults[{i}].instance",
                    f"{target.name} has {n} instance(s) at t={f.at:g}, numbered from 0",
                )
    for i, s in enumerate(chain):
        if s not in consumer_names:
            v.err(f"chain[{i}]", f"unknown consumer {s!r}")
    for i, f in enumerate(faults):
        if f.broker is not None:
            spec = next((t for t in topics if t.name == f.broker), None)
            if spec is None:
                v.err(f"faults[{i}].broker", f"unknown topic {f.broker!r}")
            elif f.partition is not None and f.partition >= spec.partitions:
                v.err(f"faults[{i}].partition", f"{f.broker} has {spec.partitions} partitions")
    broker = _broker(v, d["broker"]) if "broker" in d else BrokerSpec()
    registry = None
    if "schemas" in d:
        registry = build_registry(v, d["schemas"])
        if registry is not None:
            for i, p in enumerate(producers):
                _check_known_schema(v, registry, p.schema, f"producers[{i}].schema")
            for i, c in enumerate(consumers):
                _check_known_schema(v, registry, c.reads, f"consumers[{i}].reads")
    else:
        for i, p in enumerate(producers):
            if p.schema:
                v.err(f"producers[{i}].schema", "there is no 'schemas' section to find it in")
        for i, c in enumerate(consumers):
            if c.reads:
                v.err(f"consumers[{i}].reads", "there is no 'schemas' section to find it in")
    if v.errors:
        raise ScenarioError(v.errors)
    extra = {k: d[k] for k in ("lesson", "sync", "schemas") if k in d}
    return Scenario(
        topics=tuple(topics),
        producers=tuple(producers),
        consumers=tuple(consumers),
        faults=tuple(sorted(faults, key=lambda f: f.at)),
        script=tuple(sorted(script, key=lambda s: s.at)),
        seed=seed,
        duration=duration,
        name=name,
        description=description,
        sample_interval_s=interval,
        trace=trace,
        chain=chain,
        broker=broker,
        extra=extra,
        source=d,
    )


def _versioned_name(v: _V, d: Mapping[str, Any], key: str, path: str) -> str | None:
    value = d.get(key)
    if value is None:
        return None
    try:
        parse_versioned(str(value))
    except ValueError:
        v.err(_join(path, key), f"must name a schema version such as OrderPlaced.v1, got {value!r}")
        return None
    return str(value)


def build_registry(v: _V, doc: Any) -> Any:
    """The scenario's schema registry: every subject's versions, registered in order."""

    d = v.mapping(doc, "schemas")
    if d is None:
        return None
    mode = d.get("compatibility", "BACKWARD")
    try:
        registry = SchemaRegistry(compatibility=Compatibility.parse(mode))
    except (ValueError, KeyError):
        v.err(
            "schemas.compatibility", f"must be one of {', '.join(c.value for c in Compatibility)}"
        )
        return None
    subjects = d.get("subjects", {})
    if not isinstance(subjects, dict):
        v.err("schemas.subjects", "must map each event type to its list of schema versions")
        return None
    total = 0
    for subject, versions in subjects.items():
        path = f"schemas.subjects.{subject}"
        if not isinstance(versions, list) or not versions:
            v.err(path, "must be a non-empty list of schemas (version 1, 2, ...)")
            continue
        # a transitive mode checks each version against every earlier one: keep that small
        total += len(versions)
        if len(versions) > SCHEMA_VERSIONS_MAX or total > SCHEMAS_MAX:
            v.err(
                path,
                f"at most {SCHEMA_VERSIONS_MAX} versions of a subject, and {SCHEMAS_MAX} in all, "
                "are allowed",
            )
            return None
        for i, schema in enumerate(versions):
            try:
                registry.register(str(subject), schema)
            except SchemaError as e:
                v.err(f"{path}[{i}]", "; ".join(e.problems))
            except IncompatibleSchema as e:
                v.err(f"{path}[{i}]", str(e))
            except ValueError as e:  # an empty subject name
                v.err(path, str(e))
    return registry


def _check_known_schema(v: _V, registry: Any, name: str | None, path: str) -> None:
    if name is None:
        return
    subject, version = parse_versioned(name)
    try:
        registry.get(subject, version)
    except SchemaRegistryError:
        v.err(path, f"the registry has no schema {name}")


def check_consumer_refs(v: _V, c: ConsumerSpec, path: str, known_topics: set[str]) -> None:
    for j, t in enumerate(c.topics):
        if t not in known_topics:
            v.err(f"{path}.topics[{j}]", f"unknown topic {t!r}")
    for j, e in enumerate(c.emits):
        if e.topic not in known_topics:
            v.err(f"{path}.emits[{j}].topic", f"unknown topic {e.topic!r}")


def parse_consumer_spec(doc: Any, known_topics: set[str], path: str = "consumer") -> ConsumerSpec:
    """Validate one consumer spec (as in a scenario), e.g. for adding a service at run time."""
    check_document(doc, path=path, max_bytes=MAX_CONSUMER_BYTES, what="the consumer spec")
    v = _V()
    spec = parse_consumer(v, doc, path)
    if spec is not None:
        check_consumer_refs(v, spec, path, known_topics)
    if v.errors or spec is None:
        raise ScenarioError(v.errors or [(path, "is not a valid consumer")])
    return spec


def _unique(v: _V, path: str, names: list[str]) -> None:
    seen: set[str] = set()
    for i, n in enumerate(names):
        if n in seen:
            v.err(f"{path}[{i}].name", f"duplicate name {n!r}")
        seen.add(n)


MAX_TEXT = 1_000_000


def _printable(key: str) -> str:
    """A field name as an error's path shows it: what UTF-8 cannot encode, escaped."""
    return key if key.isascii() else key.encode("utf-8", "backslashreplace").decode("utf-8")


def _path(base: str, parts: list[str | int]) -> str:
    out = base
    for part in parts:
        out = f"{out}[{part}]" if isinstance(part, int) else _join(out, _printable(part))
    return out


def check_document(
    doc: Any, *, path: str = "", max_bytes: int = MAX_DOCUMENT_BYTES, what: str = "the scenario"
) -> None:
    """Refuse a document nested more than :data:`MAX_DEPTH` levels deep, holding text UTF-8
    cannot encode, or larger than ``max_bytes`` as compact JSON. Nothing here recurses, so
    this runs before anything that does."""
    deep = nesting_overflow(doc, MAX_DEPTH)
    if deep is not None:
        raise ScenarioError([(_path(path, deep), f"is nested more than {MAX_DEPTH} levels deep")])
    bad: list[str] = []
    stack: list[tuple[Any, str]] = [(doc, path)]
    while stack and len(bad) < 10:
        node, at = stack.pop()
        if isinstance(node, str):
            if not node.isascii():
                try:
                    node.encode("utf-8")
                except UnicodeEncodeError:
                    bad.append(at)
        elif isinstance(node, dict):
            for k, child in node.items():
                key_path = _join(at, _printable(str(k)))
                stack.append((child, key_path))
                if isinstance(k, str):
                    stack.append((k, key_path))
        elif isinstance(node, list | tuple):
            stack.extend((child, f"{at}[{i}]") for i, child in enumerate(node))
    if bad:
        message = "holds text UTF-8 cannot encode (a lone surrogate such as \\ud800)"
        raise ScenarioError([(p, message) for p in sorted(set(bad))])
    try:
        text = json.dumps(
            doc, ensure_ascii=False, separators=(",", ":"), default=str, skipkeys=True
        )
    except ValueError:  # an int of more digits than Python writes out
        raise ScenarioError([(path, "holds a number too large to write as JSON")]) from None
    size = len(text.encode("utf-8"))
    if size > max_bytes:
        raise ScenarioError(
            [
                (
                    path,
                    f"{what} is {size:,} bytes as compact JSON; at most {max_bytes:,} are "
                    "allowed" + ("" if path else " (YAML aliases count each time they are used)"),
                )
            ]
        )


def _at(node: yaml.Node) -> str:
    mark = node.start_mark
    return f"at line {mark.line + 1}, column {mark.column + 1}"


def _check_yaml_graph(root: yaml.Node) -> None:
    """Refuse a YAML node graph that expands to more than :data:`MAX_YAML_VALUES` values or
    nests deeper than :data:`MAX_DEPTH`, before anything is built from it. An alias is the node
    it names, shared: each node's expanded size is counted once and reused (a "billion laughs"
    costs its few hundred nodes to measure). Iterative; an anchor that contains its own alias
    (a cycle) is refused too."""
    size: dict[int, int] = {}
    height: dict[int, int] = {}
    open_: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        children: list[yaml.Node]
        if isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        else:
            children = []
        if done:
            open_.discard(key)
            size[key] = 1 + sum(size[id(c)] for c in children)
            level = 0 if isinstance(node, yaml.ScalarNode) else 1  # a collection is a level
            height[key] = level + max((height[id(c)] for c in children), default=0)
            if size[key] > MAX_YAML_VALUES:
                raise ScenarioError(
                    [
                        (
                            "",
                            f"the YAML expands to more than {MAX_YAML_VALUES} values (aliases "
                            "count each time they are used)",
                        )
                    ]
                )
            if height[key] > MAX_DEPTH:
                raise ScenarioError(
                    [("", f"the YAML nests more than {MAX_DEPTH} levels deep {_at(node)}")]
                )
            continue
        if key in size:
            continue
        if key in open_:
            raise ScenarioError(
                [("", f"the YAML contains itself (an alias inside its own anchor) {_at(node)}")]
            )
        open_.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in size)


def compose_yaml(text: str) -> yaml.Node | None:
    """YAML text as PyYAML's node graph, refused (:class:`ScenarioError`) if it would expand to
    too much (see :func:`_check_yaml_graph`). Raises ``yaml.YAMLError`` for invalid YAML."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
    except RecursionError:
        raise ScenarioError([("", f"the YAML nests more than {MAX_DEPTH} levels deep")]) from None
    finally:
        loader.dispose()
    if node is not None:
        _check_yaml_graph(node)
    return node


def load_text(text: str) -> Any:
    """Parse YAML or JSON text (JSON is YAML, but JSON errors read better from json)."""
    if len(text) > MAX_TEXT:
        raise ScenarioError([("", f"the scenario is larger than {MAX_TEXT} characters")])
    stripped = text.lstrip()
    if stripped.startswith("{") or stripped.startswith("["):
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise ScenarioError(
                [("", f"invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}")]
            ) from None
        except RecursionError:
            raise ScenarioError(
                [("", f"the JSON nests more than {MAX_DEPTH} levels deep")]
            ) from None
        except ValueError:  # an int of more than 4300 digits
            raise ScenarioError([("", "invalid JSON: a number has too many digits")]) from None
    try:
        node = compose_yaml(text)
        if node is None:
            return None
        constructor = yaml.SafeLoader("")
        try:
            return constructor.construct_document(node)
        finally:
            constructor.dispose()
    except ScenarioError:
        raise
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ScenarioError([("", f"invalid YAML{where}: {problem}")]) from None
    except (ValueError, OverflowError) as e:  # a value its tag cannot hold (an int too long)
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ScenarioError([("", f"invalid YAML: {first[:200]}")]) from None


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file (``.yaml``, ``.yml`` or ``.json``)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError([("", f"no such file: {p}")]) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ScenarioError([("", f"cannot read {p}: {e}")]) from None
    return parse_scenario(text)
