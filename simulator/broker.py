"""The broker: topics made of partitions, each an append-only log with offsets."""

from __future__ import annotations

import sys
from bisect import bisect_left
from collections import deque
from collections.abc import Callable
from random import Random
from typing import Any, Final, NamedTuple, Protocol

# A record is a plain tuple, read with these indices (``record[TS]``): an immutable fact, named
# in the past tense. A tuple costs a fraction of an object to make, and the garbage collector
# stops tracking a tuple of plain values after one look, so a log of 100,000 records does not
# make every collection longer. ``ts`` is when it was produced (virtual seconds); ``payload`` is
# shared, never copied: treat it as read-only.
ID: Final = 0
TYPE: Final = 1
TOPIC: Final = 2
KEY: Final = 3
TS: Final = 4
SIZE: Final = 5
PAYLOAD: Final = 6
CORRELATION_ID: Final = 7
CAUSATION_ID: Final = 8
POISON: Final = 9
PARTITION: Final = 10
OFFSET: Final = 11

# an order's correlation id: its order id where its producer numbers orders (a ``{sequence}``
# payload field, "ord-245"), else the id of the event that started its journey (245)
CorrelationId = int | str

Record = tuple[
    int,  # ID
    str,  # TYPE
    str,  # TOPIC
    str | None,  # KEY
    float,  # TS
    int,  # SIZE
    dict[str, Any] | None,  # PAYLOAD
    CorrelationId,  # CORRELATION_ID
    int | None,  # CAUSATION_ID
    bool,  # POISON
    int,  # PARTITION
    int,  # OFFSET
]


def record_dict(record: Record) -> dict[str, Any]:
    """A record as JSON-ready data."""
    return {
        "id": record[ID],
        "type": record[TYPE],
        "topic": record[TOPIC],
        "partition": record[PARTITION],
        "offset": record[OFFSET],
        "key": record[KEY],
        "ts": round(record[TS], 6),
        "size_bytes": record[SIZE],
        "correlation_id": record[CORRELATION_ID],
        "causation_id": record[CAUSATION_ID],
        "poison": record[POISON],
        "payload": record[PAYLOAD],
    }


def murmur2(data: bytes) -> int:
    """Kafka's ``Utils.murmur2``: the 32-bit MurmurHash2 of ``data`` with Kafka's seed, as the
    signed int Java returns (``murmur2(b"21") == -973932308``)."""
    m = 0x5BD1E995
    length = len(data)
    h = (0x9747B28C ^ length) & 0xFFFFFFFF
    n4 = length // 4
    for i in range(n4):
        k = int.from_bytes(data[4 * i : 4 * i + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> 24
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
    rest = length & 3
    tail = 4 * n4
    if rest == 3:
        h ^= data[tail + 2] << 16
    if rest >= 2:
        h ^= data[tail + 1] << 8
    if rest >= 1:
        h ^= data[tail]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def stable_partition(key: str, partitions: int) -> int:
    """The partition Kafka's producer picks for ``key``:
    ``toPositive(murmur2(key bytes)) % partitions`` (``BuiltInPartitioner.partitionForKey``),
    so a learner can check a key's partition against a real Kafka. The same on every run and
    every machine (Python's ``hash()`` is salted per process)."""
    return (murmur2(key.encode("utf-8")) & 0x7FFFFFFF) % partitions


STICKY_BATCH_BYTES = 16_384  # batch.size: the sticky partitioner moves on after this many bytes


# Kafka consumer's max.partition.fetch.bytes (1 MiB): a fetch from one partition returns records
# up to this many bytes, and always at least one record
MAX_PARTITION_FETCH_BYTES = 1_048_576


class Listener(Protocol):
    def notify(self, record: Record) -> None: ...

    def notify_copy(self, record: Record, copy: RedriveCopy) -> None: ...


class RedriveCopy(NamedTuple):
    """A record republished from a dead-letter topic by a redrive: which group dead-lettered
    the original (``group``; ``duplicate``: that group had finished the event before), where
    the original was, and where earlier copies of the same event are (partition, offset)."""

    group: Any  # the consumer group that redrove it (the object: a name may be reused)
    duplicate: bool
    partition: int
    offset: int
    earlier: tuple[tuple[int, int], ...] = ()

    def read_before(self, origin: Callable[[int], int | None]) -> bool:
        """Was an earlier record of this event (the original or an earlier copy) in what a
        reader gets? ``origin(partition)``: the first offset it reads there (None: none)."""
        for partition, offset in ((self.partition, self.offset), *self.earlier):
            first = origin(partition)
            if first is not None and offset >= first:
                return True
        return False


class Partition:
    """An append-only log. Offsets start at 0 and never repeat.

    Retention deletes from the front: ``start`` (the log-start offset) moves up, ``end`` (the
    log-end offset) is where the next record goes.
    """

    __slots__ = (
        "bytes_deleted",
        "bytes_in",
        "copies",
        "forgot_copies",
        "index",
        "listeners",
        "online",
        "records",
        "start",
        "topic",
    )

    def __init__(self, topic: str, index: int) -> None:
        self.topic = topic
        self.index = index
        self.records: deque[Record] = deque()
        self.start = 0
        self.bytes_in = 0  # bytes ever appended
        self.bytes_deleted = 0  # by retention
        self.listeners: list[Listener] = []
        self.online = True  # its leader is up (broker.down takes it offline)
        # offset -> what it is a redriven copy of (only redrive's records are here)
        self.copies: dict[int, RedriveCopy] = {}
        self.forgot_copies = False  # the topic's index of copies needs pruning

    @property
    def end(self) -> int:
        return self.start + len(self.records)

    @property
    def bytes(self) -> int:
        """Bytes stored now."""
        return self.bytes_in - self.bytes_deleted

    @property
    def name(self) -> str:
        return f"{self.topic}/{self.index}"

    def get(self, offset: int) -> Record:
        return self.records[offset - self.start]

    def offset_for_time(self, t: float) -> int:
        """The first offset whose record was produced at or after ``t``."""
        return self.start + bisect_left(self.records, t, key=_ts)

    def trim_age(self, before: float) -> None:
        records = self.records
        while records and records[0][TS] < before:
            self.bytes_deleted += records.popleft()[SIZE]
            self.start += 1
        if self.copies:
            self.forget_copies()

    def forget_copies(self) -> None:
        """Retention deleted some redriven copies: forget them too."""
        for offset in [o for o in self.copies if o < self.start]:
            del self.copies[offset]
        self.forgot_copies = True


def _ts(record: Record) -> float:
    return record[TS]


class Topic:
    """A named stream of records, split into partitions."""

    def __init__(
        self,
        name: str,
        partitions: int,
        *,
        retention_messages: int | None = None,
        retention_age_s: float | None = None,
        on_produced: list[Callable[[float, Record], None]] | None = None,
        rng: Random | None = None,
        journey_produced: list[Callable[[float, Record], None]] | None = None,
    ) -> None:
        self.name = name
        self.partitions = [Partition(name, i) for i in range(partitions)]
        self.retention_messages = retention_messages
        self.retention_age_s = retention_age_s
        self._max_messages = sys.maxsize if retention_messages is None else retention_messages
        self._retained = retention_messages is not None or retention_age_s is not None
        # the observers' produced hooks (the simulation's list, shared)
        self.on_produced: list[Callable[[float, Record], None]] = (
            [] if on_produced is None else on_produced
        )
        # the produced hooks of the journey observers, for the records of watched journeys
        # (the simulation's list, shared; see observe.JourneyWatch)
        self.journey_produced: list[Callable[[float, Record], None]] = (
            [] if journey_produced is None else journey_produced
        )
        # the sticky partitioner for records without a key (KIP-480, KIP-794): it fills one
        # partition with batch.size bytes, then moves to another, picked at random
        self._rng = rng if rng is not None else Random(0)
        self._sticky = 0
        self._sticky_bytes = 0
        self.offline = 0  # partitions whose leader is down
        # event id -> where redrives republished it (partition, offset)
        self.copy_index: dict[int, list[tuple[int, int]]] = {}

    def set_online(self, index: int | None, online: bool) -> None:
        """Take a partition's leader (or every partition's, ``index`` None) down or up."""
        for part in self.partitions:
            if index is None or part.index == index:
                part.online = online
        self.offline = sum(1 for p in self.partitions if not p.online)

    def partition_for(self, key: str | None, size: int = 0) -> Partition:
        """Where Kafka's default partitioner puts a record: by murmur2 of the key, or, without
        a key, on the sticky partition (``size`` bytes count towards its batch)."""
        parts = self.partitions
        n = len(parts)
        if n == 1:
            return parts[0]
        if key is not None:
            return parts[stable_partition(key, n)]
        if self._sticky_bytes >= STICKY_BATCH_BYTES or (
            self.offline and not parts[self._sticky].online
        ):
            # a new sticky partition, among those whose leader is up (all, when none is)
            online = [p for p in parts if p.online] if self.offline else parts
            choice = online or parts
            self._sticky = choice[int(self._rng.random() * len(choice))].index
            self._sticky_bytes = 0
        self._sticky_bytes += size
        return parts[self._sticky]

    def append(
        self,
        id: int,
        type: str,
        key: str | None,
        ts: float,
        size: int,
        payload: dict[str, Any] | None,
        correlation_id: CorrelationId,
        causation_id: int | None,
        poison: bool,
        part: Partition | None = None,
        copy: RedriveCopy | None = None,
        watched: bool = False,
    ) -> Record:
        """Store a new record and tell the observers' ``produced`` hooks, then the listeners.

        ``part``: the partition a producer's own partitioner chose; by default, Kafka's.
        ``copy``: the record is a redrive's republished copy of a dead letter.
        ``watched``: its journey is watched (the caller knows): the journey observers'
        ``produced`` hooks are told too."""
        if part is None:
            parts = self.partitions
            part = parts[0] if len(parts) == 1 else self.partition_for(key, size)
        records = part.records
        record = (
            id,
            type,
            self.name,
            key,
            ts,
            size,
            payload,
            correlation_id,
            causation_id,
            poison,
            part.index,
            part.start + len(records),
        )
        records.append(record)
        part.bytes_in += size
        if self._retained:
            if len(records) > self._max_messages:
                part.bytes_deleted += records.popleft()[SIZE]  # one in, one out
                part.start += 1
                if part.copies:
                    part.forget_copies()
            if self.retention_age_s is not None:
                part.trim_age(ts - self.retention_age_s)
        if self.on_produced:
            for hook in self.on_produced:
                hook(ts, record)
        if watched:
            for hook in self.journey_produced:
                hook(ts, record)
        if copy is None:
            for listener in part.listeners:
                listener.notify(record)
        else:
            part.copies[record[OFFSET]] = copy
            if any(p.forgot_copies for p in self.partitions):
                self._prune_copy_index()
            self.copy_index.setdefault(id, []).append((part.index, record[OFFSET]))
            for listener in part.listeners:
                listener.notify_copy(record, copy)
        return record

    def _prune_copy_index(self) -> None:
        """Forget copies that retention deleted (kept bounded by what the log holds)."""
        parts = self.partitions
        index = {}
        for event, where in self.copy_index.items():
            kept = [(p, o) for p, o in where if o >= parts[p].start]
            if kept:
                index[event] = kept
        self.copy_index = index
        for p in parts:
            p.forgot_copies = False

    def enforce_age(self, now: float) -> None:
        if self.retention_age_s is not None:
            for part in self.partitions:
                part.trim_age(now - self.retention_age_s)

    def read(self, partition: int, offset: int, limit: int) -> list[dict[str, Any]]:
        """Up to ``limit`` records of ``partition`` from ``offset`` (the log start if that was
        deleted): what a consumer would fetch."""
        part = self.partitions[partition]
        first = max(offset, part.start)
        out: list[dict[str, Any]] = []
        fetched = 0
        for o in range(first, min(part.end, first + limit)):
            record = part.get(o)
            fetched += record[SIZE]
            if out and fetched > MAX_PARTITION_FETCH_BYTES:
                break  # as a consumer's fetch: at most max.partition.fetch.bytes, at least one
            out.append(record_dict(record))
        return out

    @property
    def bytes_produced(self) -> int:
        return sum(p.bytes_in for p in self.partitions)

    @property
    def produced(self) -> int:
        """Records ever appended (offsets never repeat: the partitions' log-end offsets)."""
        return sum(p.start + len(p.records) for p in self.partitions)

    @property
    def bytes_stored(self) -> int:
        return sum(p.bytes for p in self.partitions)

    @property
    def stored(self) -> int:
        return sum(len(p.records) for p in self.partitions)


DLT_SUFFIX = ".DLT"


class DeadLetterTopic(Topic):
    """A topic Spring Kafka's ``DeadLetterPublishingRecoverer`` publishes to: ``<topic>.DLT``
    for a record that failed for good (``<topic>-dlt`` with retry topics), or a retry topic
    ``<topic>-retry-N``. To the same partition as the original (so it has as many
    partitions), with the ``kafka_dlt-*`` (and ``retry_topic-*``) headers, kept alongside each
    record.

    Retention keeps the newest ``retention_messages`` records a partition (Fanout's memory
    bound; Kafka's retention.ms default is 7 days)."""

    def __init__(self, original: Topic, retention_messages: int, name: str = "") -> None:
        super().__init__(
            name or original.name + DLT_SUFFIX,
            len(original.partitions),
            retention_messages=retention_messages,
        )
        self.original = original.name
        self.headers: list[deque[dict[str, Any]]] = [deque() for _ in self.partitions]

    def write(self, record: Record, headers: dict[str, Any], now: float) -> Record:
        """Publish a dead letter: the original's key, value and event id; a new timestamp."""
        part = self.partitions[record[PARTITION]]
        stored = self.append(
            record[ID],
            record[TYPE],
            record[KEY],
            now,
            record[SIZE],
            record[PAYLOAD],
            record[CORRELATION_ID],
            record[CAUSATION_ID],
            record[POISON],
            part,
        )
        kept = self.headers[part.index]
        kept.append(headers)
        while len(kept) > len(part.records):
            kept.popleft()
        return stored

    def read(self, partition: int, offset: int, limit: int) -> list[dict[str, Any]]:
        """As :meth:`Topic.read`, each record with its headers."""
        rows = super().read(partition, offset, limit)
        start = self.partitions[partition].start
        kept = self.headers[partition]
        for row in rows:
            row["headers"] = kept[row["offset"] - start]
        return rows
