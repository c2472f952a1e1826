"""Queue delivery: a RabbitMQ queue with competing consumers.

- The broker pushes messages to the queue's consumers in turn, each up to its channel's
  ``prefetch`` (``basic.qos`` prefetch_count; 0, RabbitMQ's default, is unlimited). As in
  RabbitMQ's queue process, the turn is a line of the consumers with room: a delivery goes to
  the head of the line, which goes to the back if it still has room; a consumer that had none
  joins the back when it acknowledges.
  A consumer works through what it was given one message at a time and acknowledges each; a
  slow consumer with a large prefetch hoards messages the others could have taken.
- ``down`` cancels the consumers (``basic.cancel``): each finishes the message in hand, and the
  messages pushed to it but not started go back. A crash closes the channel: everything unacked
  goes back. Returned messages go back to their original position in the queue, flagged
  ``redelivered``; a quorum queue counts the returns and dead-letters a message returned more
  than ``x_delivery_limit`` times.
- A failed attempt does what ``on_failure`` says: ``nack`` (``basic.nack`` with requeue: back at
  once, flagged redelivered), ``reject`` (``basic.reject`` without requeue: to the dead-letter
  exchange) or ``retry_queue`` (acknowledge, republish to a delay queue whose TTL is the backoff
  and whose dead-letter exchange routes back to the tail of the queue; after
  ``retry.max_attempts`` attempts, to the dead-letter exchange). A message it cannot
  deserialise is rejected whatever the policy, as Spring AMQP's error handler does.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

from ..broker import ID, OFFSET, TOPIC, TS, Partition, Record, RedriveCopy, Topic
from .base import BUSY, DEAD, IDLE, ConsumerGroup, Host, Instance
from .failures import REASON_DELIVERY_LIMIT, REASON_REJECTED, DeadLetter

if TYPE_CHECKING:
    from ..metrics import GroupStats
    from ..scenario import ConsumerSpec

Message = tuple[int, Record]  # (position in the queue, record)


class QueueGroup(ConsumerGroup):
    """A RabbitMQ queue and the consumers that compete for its messages."""

    mode = "queue"

    def __init__(
        self,
        sim: Host,
        spec: ConsumerSpec,
        topics: list[Topic],
        stats: GroupStats,
        *,
        start: str | None = None,
    ) -> None:
        # Messages with something to remember (returned, flagged redelivered, attempts in a
        # header, not standing for a fresh event) keep the fast lane off while they exist, so
        # the lane never looks them up.
        self.returns: dict[int, int] = {}  # position -> times returned to the queue
        self.flagged: set[int] = set()  # positions to deliver with redelivered = true
        self.attempts: dict[int, int] = {}  # retry_queue: position -> failed attempts so far
        # positions whose work does not stand for an event still to deal with: a duplicate
        # dead letter shovelled back, or a redriven copy of an event the queue had before
        self._dup: set[int] = set()
        super().__init__(sim, spec, topics, stats)
        self.prefetch = spec.prefetch
        self.quorum = spec.queue_type == "quorum"
        self.delivery_limit = spec.x_delivery_limit if self.quorum else None
        self.on_failure = spec.on_failure
        self.ready: deque[Message] = deque()
        self.delayed = 0  # messages waiting in the retry queue
        self._delayed_dup = 0
        self._enqueued_at_detach: int | None = None
        self.returned = 0
        self._last = 0  # the last position given out
        # consumers with room under their prefetch, in the order they get the next delivery
        self.active: deque[Instance] = deque()
        self._from_retry_cb = self._from_retry_queue
        self._parts: list[Partition] = []
        # per partition, the first offset routed to this queue (what it was bound to receive)
        self._bound_from: dict[tuple[str, int], int] = {}
        backlog: list[tuple[Record, Partition]] = []
        for topic in topics:
            for part in topic.partitions:
                part.listeners.append(self)
                self._parts.append(part)
                self._bound_from[topic.name, part.index] = (
                    part.start if start == "earliest" else part.end
                )
                if start == "earliest":
                    backlog.extend((r, part) for r in part.records)
        for record, part in sorted(backlog, key=lambda rp: (rp[0][TS], rp[0][ID])):
            copy = part.copies.get(record[OFFSET]) if part.copies else None
            if copy is None:
                self.notify(record)
            else:
                self.notify_copy(record, copy)
        self.instances = [Instance(i, sim.now) for i in range(spec.instances)]
        self.active.extend(self.instances)
        self._dispatch()

    def _refresh_lane(self) -> None:
        super()._refresh_lane()
        if self._lane and (self.returns or self.flagged or self.attempts or self._dup):
            self._lane = False

    def _take(self) -> Instance:
        """The consumer whose turn it is takes one more message (the line must not be empty)."""
        inst = self.active.popleft()
        inst.unacked += 1
        prefetch = self.prefetch
        if not prefetch or inst.unacked < prefetch:
            self.active.append(inst)  # room left: to the back of the line
        return inst

    def _credit(self, inst: Instance) -> None:
        """One of its messages left ``inst``: a consumer that was full joins the line again."""
        if self.prefetch and inst.unacked == self.prefetch - 1 and inst.alive and not inst.leaving:
            self.active.append(inst)

    def _deactivate(self, inst: Instance) -> None:
        if inst in self.active:
            self.active.remove(inst)

    # --- the broker's side --------------------------------------------------------------

    def notify(self, record: Record) -> None:
        """A record was published to a bound topic: it is routed to this queue."""
        if not self._accept_all and not self.accepts(record):
            self.filtered += 1  # the binding does not route it here
            return
        self._last += 1
        if self._lane and self.active and not self.ready:
            # the common case, inline: nothing waits, so it goes to the consumer whose turn it
            # is, which starts on it if it has nothing in hand
            active = self.active
            inst = active.popleft()  # _take, inline
            inst.unacked += 1
            if not self.prefetch or inst.unacked < self.prefetch:
                active.append(inst)
            if inst.state == IDLE:
                inst.seq = self._last
                inst.repeat = False
                self.begin_fresh(inst, record)
            else:
                inst.batch.append((self._last, record))
            return
        ready = self.ready
        if ready:
            # while messages wait, every consumer is full: this one waits at the end
            ready.append((self._last, record))
            return
        ready.append((self._last, record))
        self._dispatch()

    def notify_copy(self, record: Record, copy: RedriveCopy) -> None:
        """A redrive republished a dead letter to a bound topic: routed here like any message,
        a repeat if the queue had been routed the original."""
        topic = record[TOPIC]
        if not copy.read_before(lambda partition: self._bound_from.get((topic, partition))):
            self.notify(record)
            return
        if not self._accept_all and not self.accepts(record):
            self.filtered += 1
            return
        self.repeats += 1
        self._last += 1
        self._dup.add(self._last)
        self._lane = False
        self.ready.append((self._last, record))
        self._dispatch()

    def _enqueue_at_tail(self, record: Record, duplicate: bool) -> None:
        self._last += 1
        if duplicate:
            self._dup.add(self._last)
            self._lane = False
        self.ready.append((self._last, record))

    def _dispatch(self) -> None:
        """Push ready messages to consumers with room under their prefetch, in turn."""
        if self.status != "up" or not self.ready:
            return
        ready = self.ready
        active = self.active
        while ready and active:
            seq, record = ready.popleft()
            inst = self._take()
            if inst.state == IDLE:
                self._start(inst, seq, record)
            else:
                inst.batch.append((seq, record))

    def _requeue(self, seq: int, record: Record) -> None:
        """Back to the queue at its original position, flagged redelivered; a quorum queue
        dead-letters it once it has come back more than ``x_delivery_limit`` times."""
        self.returned += 1
        n = self.returns.get(seq, 0) + 1
        limit = self.delivery_limit
        if limit is not None and n > limit:
            self.returns.pop(seq, None)
            self.flagged.discard(seq)
            self.attempts.pop(seq, None)
            self.dead_letter(
                record,
                REASON_DELIVERY_LIMIT.format(n=n, limit=limit),
                n,
                duplicate=seq in self._dup,
                death="delivery_limit",
            )
            self._dup.discard(seq)
            self._refresh_lane()
            return
        self.returns[seq] = n
        self.flagged.add(seq)
        self._lane = False
        i = 0
        for s, _ in self.ready:  # returned messages sit near the head: a short walk
            if s > seq:
                break
            i += 1
        self.ready.insert(i, (seq, record))

    def _from_retry_queue(self, arg: tuple[Record, int, bool]) -> None:
        """The retry queue's TTL expired: dead-lettered back to the tail of the work queue."""
        record, attempts, duplicate = arg
        if self.detached:
            return  # the service was removed meanwhile
        self.delayed -= 1
        if duplicate:
            self._delayed_dup -= 1
        self._last += 1
        seq = self._last
        self.attempts[seq] = attempts
        self._lane = False
        if duplicate:
            self._dup.add(seq)
        self.ready.append((seq, record))
        self._dispatch()

    # --- the consumer's side ------------------------------------------------------------

    def _start(self, inst: Instance, seq: int, record: Record) -> None:
        inst.seq = seq
        redelivery = seq in self.flagged
        if redelivery:
            self.flagged.discard(seq)
            self.redelivered += 1
            if not self.flagged:
                self._refresh_lane()
        inst.repeat = seq in self._dup
        if self.idempotent and self.seen(record):
            if not inst.repeat:
                self.deduplicated_fresh += 1
            inst.record = record
            self._settle(inst)
            self._next(inst)
            return
        # retry_queue counts failed attempts in a header of the republished copy; otherwise an
        # attempt is a delivery, and a return (nack, cancel, crash) makes the next one
        if self.on_failure == "retry_queue":
            attempt = self.attempts.get(seq, 0) + 1
        else:
            attempt = self.returns.get(seq, 0) + 1
        self.begin(inst, record, attempt, redelivery)

    def _next(self, inst: Instance) -> None:
        """Take the next message pushed to this consumer, then let the broker push more."""
        inst.record = None
        inst.state = IDLE
        if self._lane and not inst.leaving:
            # the common case, inline: its own next message first; then, as every other
            # consumer is full while messages are ready, the freed place under its prefetch
            # takes the head of the queue (what _dispatch would do, turn included)
            if inst.batch:
                seq, record = inst.batch.popleft()
                inst.seq = seq
                inst.repeat = False
                self.begin_fresh(inst, record)
            ready = self.ready
            active = self.active
            if ready and active:
                seq, record = ready.popleft()
                taker = active.popleft()  # _take, inline
                taker.unacked += 1
                if not self.prefetch or taker.unacked < self.prefetch:
                    active.append(taker)
                if taker.state == IDLE:
                    taker.seq = seq
                    taker.repeat = False
                    self.begin_fresh(taker, record)
                else:
                    taker.batch.append((seq, record))
            return
        if inst.batch and inst.alive and self.status == "up":
            seq, record = inst.batch.popleft()
            self._start(inst, seq, record)
        elif inst.leaving and not inst.batch:
            self._gone(inst)
        self._dispatch()

    def _settle(self, inst: Instance) -> None:
        """The message leaves this consumer (acked, rejected or republished)."""
        seq = inst.seq
        inst.unacked -= 1
        self._credit(inst)
        if not self._lane:
            self.returns.pop(seq, None)
            self.attempts.pop(seq, None)
            self._dup.discard(seq)
            self._refresh_lane()

    def _done(self, inst: Instance) -> None:
        """``inst`` finished processing (a crash cancels this, see ``_stop``)."""
        record: Record = inst.record  # type: ignore[assignment]  # set by begin
        if self._lane and not inst.failing:
            # the common case: processed and acknowledged, nothing else to tell
            now = self.sim.now
            self.processed += 1
            inst.processed += 1
            sink = self._processing_sink
            if sink is not None:
                sink((now - inst.started) * 1000.0)
            sink = self._e2e_sink
            if sink is not None:
                sink((now - record[TS]) * 1000.0)
            ready = self.ready
            if ready and not self.active and not inst.batch and not inst.leaving:
                # Every consumer was full while messages waited: the room this one makes is
                # the only room, so it takes the queue's head (unacked: one out, one in).
                seq, record = ready.popleft()
                inst.seq = seq
                inst.repeat = False
                self.begin_fresh(inst, record)
                return
            inst.unacked -= 1
            prefetch = self.prefetch
            if prefetch and inst.unacked == prefetch - 1 and not inst.leaving:
                self.active.append(inst)  # it was full: back in the line
            if inst.batch or inst.leaving or ready:
                self._next(inst)  # its own next message, or the line's head takes the queue's
            else:
                inst.record = None
                inst.state = IDLE
            return
        duplicate = inst.repeat
        if not inst.failing:
            self.succeeded(inst, record, duplicate)
            self._settle(inst)
            self._next(inst)
            return
        reason = self.failed(inst, record)
        seq = inst.seq
        policy = "reject" if inst.unreadable else self.on_failure
        if policy == "nack":
            inst.unacked -= 1
            self._credit(inst)
            self._requeue(seq, record)
        elif policy == "retry_queue" and inst.attempt < self.retry.max_attempts:
            delay = self.retry.delay(inst.attempt)
            self.retry_in(record, inst.attempt + 1, delay)
            self._settle(inst)
            self.delayed += 1
            if duplicate:
                self._delayed_dup += 1
            self._at(self.sim.now + delay, self._from_retry_cb, (record, inst.attempt, duplicate))
        else:
            if policy == "reject":
                reason = f"{reason}; {REASON_REJECTED}"
            self._settle(inst)
            self.dead_letter(record, reason, inst.attempt, duplicate=duplicate)
        self._next(inst)

    def _retry(self, inst: Instance) -> None:  # pragma: no cover - queues never retry in place
        raise AssertionError("a queue consumer never waits to retry in place")

    def _give_back(self, inst: Instance, *, current: bool) -> None:
        """Return what the consumer holds unacked to the queue (``current``: the message in
        hand too). It leaves the line; whoever takes it up again puts it back."""
        self._deactivate(inst)
        if current and inst.record is not None and inst.state == BUSY:
            self._requeue(inst.seq, inst.record)
            inst.unacked -= 1
            inst.record = None
        while inst.batch:
            seq, record = inst.batch.popleft()
            self._requeue(seq, record)
            inst.unacked -= 1

    def _rejoin(self, inst: Instance) -> None:
        """A consumer (again) subscribed: to the back of the line, if it has room."""
        room = not self.prefetch or inst.unacked < self.prefetch
        if room and inst.alive and not inst.leaving and inst not in self.active:
            self.active.append(inst)

    def _gone(self, inst: Instance) -> None:
        self._deactivate(inst)
        if inst.retire and inst in self.instances:
            self.instances.remove(inst)
        inst.leaving = False

    # --- commands -----------------------------------------------------------------------

    def wake(self) -> None:
        self._dispatch()

    def redrive_one(self, letter: DeadLetter) -> bool:
        """A shovel moves the message from the dead-letter queue to the tail of this queue:
        a new message (not flagged redelivered), seen again by this queue's consumers only."""
        self._enqueue_at_tail(letter.record, letter.duplicate)
        for hook in self.sim.on_redriven:
            hook(self.sim.now, self, letter.record)
        return True

    def poll(self, inst: Instance) -> None:
        self._dispatch()

    def down(self) -> None:
        """basic.cancel: each consumer finishes the message in hand; the rest goes back."""
        if self.status == "down":
            return
        self.set_status("down")
        for inst in self.instances:
            if inst.alive:
                self._give_back(inst, current=False)
                self._rejoin(inst)  # cancelled, it is not sent anything while the queue is down

    def up(self) -> None:
        now = self.sim.now
        for inst in self.instances:
            if not inst.alive:
                inst.alive = True
                inst.state = IDLE
                inst.record = None
                inst.born = now
            self._rejoin(inst)
        self.set_status("up")
        self._dispatch()

    def crash(self, instance: int | None = None) -> None:
        """The channel closes: everything the consumer held unacked goes back to the queue."""
        for inst in self.instances:
            if not inst.alive or (instance is not None and inst.index != instance):
                continue
            self._stop(inst)
            self._give_back(inst, current=True)
            inst.alive = False
            inst.state = DEAD
            inst.record = None
            inst.unacked = 0
        for inst in [i for i in self.instances if i.retire and not i.alive]:
            self.instances.remove(inst)
        if not any(i.alive for i in self.instances):
            self.set_status("crashed")
        else:
            self.set_status(self.status)
            self._dispatch()

    def set_instances(self, n: int) -> None:
        current = [i for i in self.instances if not i.retire]
        if n > len(current):
            for inst in self.add_instances(n - len(current)):
                self._rejoin(inst)
        else:
            for inst in current[n:]:
                inst.retire = True
                inst.leaving = True
                self._deactivate(inst)
                if inst.alive:
                    self._give_back(inst, current=False)
                if inst.state != BUSY:
                    self._gone(inst)
        self.set_status(self.status)
        self._dispatch()

    def detach(self) -> None:
        self._enqueued_at_detach = self.enqueued
        self.detached = True
        self.active.clear()
        for part in self._parts:
            part.listeners.remove(self)
        for inst in self.instances:
            self._stop(inst)
            inst.alive = False

    # --- observation --------------------------------------------------------------------

    def waiting_retry(self) -> int:
        return self.delayed

    @property
    def enqueued(self) -> int:
        """Records routed to this queue: every one appended to a bound partition since the
        queue was bound (each is told to ``notify``), counted from the offsets."""
        if self._enqueued_at_detach is not None:
            return self._enqueued_at_detach
        bound = self._bound_from
        return sum(p.end - bound[p.topic, p.index] for p in self._parts)

    @property
    def unacked(self) -> int:
        return sum(i.unacked for i in self.instances)

    def lag(self) -> int:
        """Messages not yet acknowledged: ready, pushed to a consumer, or in the retry queue."""
        return len(self.ready) + self.unacked + self.delayed

    def records_lag(self) -> int:
        """Messages ready in the queue, not yet pushed to a consumer."""
        return len(self.ready)

    def backlog(self) -> int:
        """A queue forgets a message once acknowledged: its backlog is its lag."""
        return self.lag()

    def lag_seconds(self) -> float:
        oldest = None
        heads: list[Record | None] = [self.ready[0][1] if self.ready else None]
        for inst in self.instances:
            heads.append(inst.record)
            if inst.batch:
                heads.append(inst.batch[0][1])
        for r in heads:
            if r is not None and (oldest is None or r[TS] < oldest):
                oldest = r[TS]
        return 0.0 if oldest is None else max(0.0, self.sim.now - oldest)

    def accounting(self) -> dict[str, int]:
        dup = self._dup
        in_flight = batched = 0
        for inst in self.instances:
            if inst.state == BUSY and inst.record is not None and inst.seq not in dup:
                in_flight += 1
            batched += sum(1 for seq, _ in inst.batch if seq not in dup)
        return {
            "produced": self.enqueued,
            "processed": self.processed - self.duplicates,
            "in_flight": in_flight,
            "retrying": self.delayed - self._delayed_dup,
            "batched": batched,
            "dead_lettered": self.dead_letters_fresh(),
            "filtered": self.filtered,
            "expired": 0,
            "skipped": 0,
            "deduplicated": self.deduplicated_fresh,
            "repeats": self.repeats,
            "not_delivered": sum(1 for seq, _ in self.ready if seq not in dup),
        }

    def instance_state(self, inst: Instance) -> dict[str, Any]:
        state = super().instance_state(inst)
        state["unacked"] = inst.unacked
        return state

    def notes(self) -> list[str]:
        out = []
        if self.unacked:
            held = " · ".join(str(i.unacked) for i in self.instances)
            limit = self.prefetch or "unlimited"
            out.append(f"unacked per consumer: {held} (prefetch {limit})")
        if self.returned:
            out.append(
                f"{self.returned} returned to the queue at their place, "
                f"{self.redelivered} delivered again flagged redelivered"
            )
        if self.delayed:
            out.append(f"{self.delayed} waiting out their TTL in the retry queue")
        return out

    def settings(self) -> dict[str, Any]:
        spec = self.spec
        return {
            "prefetch": spec.prefetch,
            "queue_type": spec.queue_type,
            "x_delivery_limit": self.delivery_limit,
            "on_failure": spec.on_failure,
            "client_overhead_ms": spec.client_overhead_ms,
        }
