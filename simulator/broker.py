"""The broker: topics made of partitions, each an append-only log with offsets."""

from __future__ import annotations

import zlib
from bisect import bisect_left
from collections import deque
from typing import Any, Protocol


class Record:
    """One event as stored by the broker: an immutable fact, named in the past tense.

    ``ts`` is when it was produced (virtual seconds). ``payload`` is shared, never copied:
    treat it as read-only.
    """

    __slots__ = (
        "causation_id",
        "correlation_id",
        "id",
        "key",
        "offset",
        "partition",
        "payload",
        "poison",
        "size",
        "topic",
        "ts",
        "type",
    )

    def __init__(
        self,
        id: int,
        type: str,
        topic: str,
        key: str | None,
        ts: float,
        size: int,
        payload: dict[str, Any] | None,
        correlation_id: int,
        causation_id: int | None,
        poison: bool,
    ) -> None:
        self.id = id
        self.type = type
        self.topic = topic
        self.key = key
        self.ts = ts
        self.size = size
        self.payload = payload
        self.correlation_id = correlation_id
        self.causation_id = causation_id
        self.poison = poison
        self.partition = -1
        self.offset = -1

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type,
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "key": self.key,
            "ts": round(self.ts, 6),
            "size_bytes": self.size,
            "correlation_id": self.correlation_id,
            "causation_id": self.causation_id,
            "poison": self.poison,
            "payload": self.payload,
        }

    def __repr__(self) -> str:
        return f"<Record {self.type} #{self.id} {self.topic}/{self.partition}@{self.offset}>"


def stable_partition(key: str, partitions: int) -> int:
    """The partition for ``key``: the same on every run and every machine.

    Python's ``hash()`` is salted per process, so it would scatter keys differently on each run.
    """
    return zlib.crc32(key.encode("utf-8")) % partitions


class Listener(Protocol):
    def notify(self, record: Record) -> None: ...


class Partition:
    """An append-only log. Offsets start at 0 and never repeat.

    Retention deletes from the front: ``start`` (the log-start offset) moves up, ``end`` (the
    log-end offset) is where the next record goes.
    """

    __slots__ = ("bytes", "index", "listeners", "records", "start", "topic")

    def __init__(self, topic: str, index: int) -> None:
        self.topic = topic
        self.index = index
        self.records: deque[Record] = deque()
        self.start = 0
        self.bytes = 0
        self.listeners: list[Listener] = []

    @property
    def end(self) -> int:
        return self.start + len(self.records)

    @property
    def name(self) -> str:
        return f"{self.topic}/{self.index}"

    def get(self, offset: int) -> Record:
        return self.records[offset - self.start]

    def offset_for_time(self, t: float) -> int:
        """The first offset whose record was produced at or after ``t``."""
        return self.start + bisect_left(self.records, t, key=_ts)

    def trim_count(self, max_messages: int) -> None:
        records = self.records
        while len(records) > max_messages:
            self.bytes -= records.popleft().size
            self.start += 1

    def trim_age(self, before: float) -> None:
        records = self.records
        while records and records[0].ts < before:
            self.bytes -= records.popleft().size
            self.start += 1


def _ts(record: Record) -> float:
    return record.ts


class Topic:
    """A named stream of records, split into partitions."""

    def __init__(
        self,
        name: str,
        partitions: int,
        *,
        retention_messages: int | None = None,
        retention_age_s: float | None = None,
    ) -> None:
        self.name = name
        self.partitions = [Partition(name, i) for i in range(partitions)]
        self.retention_messages = retention_messages
        self.retention_age_s = retention_age_s
        self._retention = retention_messages is not None or retention_age_s is not None
        self.produced = 0
        self.bytes_produced = 0
        self._next = 0  # round-robin pointer for records without a key

    def append_quiet(self, record: Record, now: float) -> Partition:
        """Store ``record``, assigning its partition and offset. The caller tells listeners."""
        parts = self.partitions
        n = len(parts)
        if n == 1:
            index = 0
        elif record.key is None:
            index = self._next
            self._next = (index + 1) % n
        else:
            index = stable_partition(record.key, n)
        part = parts[index]
        records = part.records
        record.partition = index
        record.offset = part.start + len(records)
        records.append(record)
        size = record.size
        part.bytes += size
        self.produced += 1
        self.bytes_produced += size
        if self._retention:
            if self.retention_messages is not None and len(records) > self.retention_messages:
                part.trim_count(self.retention_messages)
            if self.retention_age_s is not None:
                part.trim_age(now - self.retention_age_s)
        return part

    def enforce_age(self, now: float) -> None:
        if self.retention_age_s is not None:
            for part in self.partitions:
                part.trim_age(now - self.retention_age_s)

    @property
    def bytes_stored(self) -> int:
        return sum(p.bytes for p in self.partitions)

    @property
    def stored(self) -> int:
        return sum(len(p.records) for p in self.partitions)
