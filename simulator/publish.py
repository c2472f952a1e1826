"""The producer's send path, as Kafka's producer has it: acks, retries, timeouts, the buffer.

A record sent to a partition whose leader is up is appended at once; the producer's
acknowledgement takes ``append_ms`` (``acks: 1``) plus ``replication_ms`` (``acks: all``, the
default since Kafka 3.0), and nothing with ``acks: 0``. A record for a partition whose leader
is down waits in the producer's buffer (``buffer.memory``) and is retried every
``retry.backoff.ms`` until ``delivery.timeout.ms`` has passed since it was sent; then the send
fails and the record is lost unless the application handles the failure. With ``acks: 0``
nothing is retried: a record sent to a dead leader is lost. When the buffer is full, ``send()``
blocks for up to ``max.block.ms`` waiting for room, then fails. Records without a key avoid a
partition whose leader is down (the sticky partitioner picks among available partitions).

A producer whose caller waits for the acknowledgement (a checkout that returns once the broker
has the order) feels every millisecond of it: ``ack_ms`` is that wait, measured per record.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .metrics import Histogram

if TYPE_CHECKING:
    from .broker import Partition, Topic
    from .scenario import BrokerSpec, SendSpec

FAIL_TIMEOUT = "delivery.timeout.ms expired: {topic}/{partition} had no leader"
FAIL_BLOCKED = "buffer full: send() blocked max.block.ms, then failed"
FAIL_ACKS0 = "acks=0: sent to {topic}/{partition} while its leader was down, lost"
MAX_BLOCKED = 10_000  # sends waiting for buffer room at once (a thread pool's worth)

Publish = Callable[..., Any]

# a send waiting in the buffer: (sent at, topic, partition, record fields..., on_ack)
Pending = tuple[float, "Topic", "Partition", str, "str | None", Any, int, Any, Any, bool, Any]
# told how a send ended: (milliseconds from send to ack or failure, acknowledged?)
OnAck = Callable[[float, bool], None]


class Sender:
    """One producer's accumulator and retry loop."""

    def __init__(
        self,
        *,
        spec: SendSpec,
        broker: BrokerSpec,
        now: Callable[[], float],
        at: Callable[[float, Callable[[Any], None], Any], None],
        append: Publish,
        inline: Callable[[], int] | None = None,
    ) -> None:
        self.spec = spec
        self.broker = broker
        # how many sends the producer's inline path has appended at once so far: each took
        # ``ack_now``; they are added to ``sent`` and ``ack_ms`` when read (no call per record)
        self._inline = inline
        self._inline_counted = 0
        self._now = now
        self._at = at
        self._append = append
        self.pending: deque[Pending] = deque()
        self.blocked: deque[Pending] = deque()
        self.buffered = 0  # bytes waiting in the buffer
        self.sent = 0
        self.failed = 0
        self.retries = 0
        self.blocked_total = 0
        self.last_failure = ""
        self.ack_ms = Histogram()
        self._timer = False
        self.extra_ms = 0.0  # broker.delay: added to every append
        self.ack_now = self.ack_latency()  # for a record appended at once
        self.waiting_for: dict[Partition, int] = {}  # records waiting, per partition

    def set_delay(self, ms: float) -> None:
        self.flush()
        self.extra_ms = ms
        self.ack_now = self.ack_latency()

    def flush(self) -> None:
        """Add the inline path's sends to ``sent`` and ``ack_ms``."""
        if self._inline is not None:
            n = self._inline() - self._inline_counted
            if n:
                self._inline_counted += n
                self.sent += n
                self.ack_ms.add_many(self.ack_now, n)

    def ack_latency(self) -> float:
        """Milliseconds from send to acknowledgement for a record appended at once."""
        acks = self.spec.acks
        if acks == "0":
            return 0.0
        ms = self.broker.append_ms + self.extra_ms
        if acks == "all":
            ms += self.broker.replication_ms
        return ms

    def send(
        self,
        topic: Topic,
        part: Partition,
        type: str,
        key: str | None,
        payload: Any,
        size: int,
        correlation_id: Any,
        causation_id: Any,
        poison: bool,
        on_ack: OnAck | None = None,
    ) -> bool:
        """Send a record to ``part``. Returns whether it was appended now. ``on_ack`` (if any)
        is told when the send is acknowledged or fails, and how long that took."""
        self.sent += 1
        now = self._now()
        if part.online and not self.waiting_for.get(part):
            self._append(
                topic, type, key, payload, size, correlation_id, causation_id, poison, part, now
            )
            self.ack_ms.add(self.ack_now)
            if on_ack is not None:
                on_ack(self.ack_now, True)
            return True
        if self.spec.acks == "0":
            self._fail(FAIL_ACKS0.format(topic=topic.name, partition=part.index))
            if on_ack is not None:
                on_ack(0.0, True)  # acks=0: the caller never hears of the loss
            return False
        entry: Pending = (
            now,
            topic,
            part,
            type,
            key,
            payload,
            size,
            correlation_id,
            causation_id,
            poison,
            on_ack,
        )
        if self.buffered + size > self.spec.buffer_memory:
            # send() blocks the caller until there is room, or max.block.ms has passed
            self.blocked_total += 1
            if len(self.blocked) >= MAX_BLOCKED:
                self._fail(FAIL_BLOCKED, entry, now)
            else:
                self.blocked.append(entry)
        else:
            self._wait(entry)
        self._arm()
        return False

    def _wait(self, entry: Pending) -> None:
        self.pending.append(entry)
        self.buffered += entry[6]
        part = entry[2]
        self.waiting_for[part] = self.waiting_for.get(part, 0) + 1

    def _done_waiting(self, entry: Pending) -> None:
        self.buffered -= entry[6]
        part = entry[2]
        n = self.waiting_for[part] - 1
        if n:
            self.waiting_for[part] = n
        else:
            del self.waiting_for[part]

    def _arm(self) -> None:
        if not self._timer:
            self._timer = True
            self._at(self._now() + self.spec.retry_backoff_ms / 1000.0, self._retry, None)

    def _retry(self, _: Any) -> None:
        """The sender thread tries the waiting batches again, oldest first."""
        self._timer = False
        now = self._now()
        timeout = self.spec.delivery_timeout_ms / 1000.0
        keep: deque[Pending] = deque()
        stuck: set[int] = set()  # partitions still down: later records for them wait too
        for entry in self.pending:
            sent_at, topic, part = entry[0], entry[1], entry[2]
            if part.online and id(part) not in stuck:
                self._done_waiting(entry)
                # the record keeps its CreateTime: when it was sent
                self._append(topic, *entry[3:10], part, sent_at)
                waited = (now - sent_at) * 1000.0 + self.ack_now
                self.ack_ms.add(waited)
                if entry[10] is not None:
                    entry[10](waited, True)
            elif now - sent_at >= timeout:
                self._done_waiting(entry)
                self._fail(FAIL_TIMEOUT.format(topic=topic.name, partition=part.index), entry, now)
            else:
                self.retries += 1
                stuck.add(id(part))
                keep.append(entry)
        self.pending = keep
        block = self.spec.max_block_ms / 1000.0
        while self.blocked:
            entry = self.blocked[0]
            if self.buffered + entry[6] <= self.spec.buffer_memory:
                self.blocked.popleft()
                self._wait(entry)
            elif now - entry[0] >= block:
                self.blocked.popleft()
                self._fail(FAIL_BLOCKED, entry, now)
            else:
                break
        if self.pending or self.blocked:
            self._arm()

    def _fail(self, reason: str, entry: Pending | None = None, now: float = 0.0) -> None:
        self.failed += 1
        self.last_failure = reason
        if entry is not None and entry[10] is not None:
            entry[10]((now - entry[0]) * 1000.0, False)

    def notes(self) -> list[str]:
        """What the send path is going through right now, in words, from the run."""
        out = []
        if self.pending:
            out.append(
                f"{len(self.pending)} records waiting in the buffer ({self.buffered:,} bytes), "
                f"retried every {self.spec.retry_backoff_ms:g} ms until delivery.timeout.ms "
                f"({self.spec.delivery_timeout_ms / 1000:g} s)"
            )
        if self.blocked:
            out.append(
                f"{len(self.blocked)} sends blocked: the buffer is full (buffer.memory); "
                f"each fails after max.block.ms ({self.spec.max_block_ms / 1000:g} s)"
            )
        if self.failed:
            out.append(f"{self.failed:,} sends failed; the last: {self.last_failure}")
        return out

    def state(self) -> dict[str, Any]:
        self.flush()
        return {
            "acks": self.spec.acks,
            "sent": self.sent,
            "failed_sends": self.failed,
            "send_retries": self.retries,
            "waiting": len(self.pending),
            "blocked": len(self.blocked),
            "blocked_total": self.blocked_total,
            "buffered_bytes": self.buffered,
            "last_failure": self.last_failure,
            "ack_ms": self.ack_ms.summary(),
        }
