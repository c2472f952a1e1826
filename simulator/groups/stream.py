"""Stream delivery: a Kafka consumer group (the classic group protocol).

- Each partition is owned by at most one member; a member ``poll()``s up to
  ``max_poll_records`` records from its partitions and processes them one by one.
- Offsets are committed as Kafka's consumer does: with ``enable_auto_commit`` (the default)
  from within ``poll()`` once ``auto_commit_interval_ms`` has passed, when the member rejoins a
  rebalance and when it closes; without it, after each record (``ack_mode: record``) or after
  each poll's records (``ack_mode: batch``), as Spring Kafka's listener container does.
- A graceful stop (``down``, or fewer instances) finishes the batch in hand, commits and sends
  LeaveGroup: the group rebalances at once. A crash sends nothing: the dead member keeps its
  partitions, and nobody reads them, until the coordinator misses its heartbeats for
  ``session_timeout_ms`` (measured from its last heartbeat, every ``heartbeat_interval_ms``).
- A rebalance: every member learns of it at its next heartbeat and rejoins at its next
  ``poll()``, that is once its current batch is done. Eager assignors (range, roundrobin, sticky)
  revoke every partition on rejoining and wait for the whole group; cooperative-sticky keeps
  consuming and moves only the partitions that change owner, in a second rebalance.
- A new member or a moved partition starts from the committed offset, so work processed since
  the last commit is delivered again (at-least-once). A position that retention has deleted,
  and a group with no committed offset, start where ``auto_offset_reset`` says.
- A failed record is retried in place after a backoff (blocking the partition), then
  dead-lettered (Spring Kafka's DefaultErrorHandler with a DeadLetterPublishingRecoverer).
"""

from __future__ import annotations

from math import ceil, floor
from typing import TYPE_CHECKING, Any

from ..broker import (
    CAUSATION_ID,
    CORRELATION_ID,
    ID,
    KEY,
    OFFSET,
    PARTITION,
    PAYLOAD,
    POISON,
    SIZE,
    TOPIC,
    TS,
    TYPE,
    Partition,
    Record,
    RedriveCopy,
    Topic,
)
from .assignors import ASSIGNORS, COOPERATIVE, TopicPartition
from .base import BACKOFF, BUSY, DEAD, IDLE, ConsumerGroup, Host, Instance
from .failures import DeadLetter
from .retry_topics import PENDING_LIMIT, REASON_RETRY_FULL, RetryTopics

if TYPE_CHECKING:
    from ..metrics import GroupStats
    from ..scenario import ConsumerSpec

_EPS = 1e-9


class Cursor:
    """A group's position in one partition.

    ``committed``: the offset the group restarts from. ``position``: the owner's next offset to
    fetch. ``completed``: one past the highest offset ever finished (processed, filtered or
    dead-lettered), so a redelivery below it is a duplicate. ``fetched``: one past the highest
    offset ever handed to an instance, so a delivery below it is a redelivery. ``origin``: where
    the group started reading this partition. ``revoking``: a cooperative rebalance gave the
    partition to another member; the owner hands it back at its next poll.
    """

    __slots__ = (
        "committed",
        "completed",
        "fetched",
        "group",
        "origin",
        "owner",
        "partition",
        "position",
        "revoking",
        "skipped",
        "tp",
    )

    def __init__(self, group: StreamGroup, partition: Partition, start: int) -> None:
        self.group = group
        self.partition = partition
        self.tp: TopicPartition = (partition.topic, partition.index)
        self.committed = start
        self.position = start
        self.completed = start
        self.fetched = start
        self.origin = start
        self.owner: Instance | None = None
        self.revoking = False
        # offsets below ``fetched`` that were skipped (a reset forward), never delivered:
        # reading them later is a first delivery, not a redelivery
        self.skipped: list[tuple[int, int]] = []

    def first_time(self, offset: int) -> bool:
        """Is delivering ``offset`` (below ``fetched``) its first delivery?"""
        for k, (lo, hi) in enumerate(self.skipped):
            if lo <= offset < hi:
                self.skipped[k] = (offset + 1, hi)  # records are delivered in offset order
                return True
        return False

    def notify(self, record: Record) -> None:
        owner = self.owner
        if owner is not None and owner.state == IDLE and not owner.batch:
            self.group.poll(owner)

    def notify_copy(self, record: Record, copy: RedriveCopy) -> None:
        self.notify(record)  # whether it repeats an event is decided when it is read

    @property
    def lag(self) -> int:
        return max(0, self.partition.end - self.committed)


class StreamGroup(ConsumerGroup):
    """A Kafka consumer group: partitions owned by members, committed offsets."""

    mode = "stream"

    def __init__(
        self,
        sim: Host,
        spec: ConsumerSpec,
        topics: list[Topic],
        stats: GroupStats,
        *,
        start: str | None = None,
    ) -> None:
        super().__init__(sim, spec, topics, stats)
        start = start or spec.auto_offset_reset
        self.cursors: list[Cursor] = []
        self._cursor_of: dict[TopicPartition, Cursor] = {}
        for topic in topics:
            for part in topic.partitions:
                cur = Cursor(self, part, part.start if start == "earliest" else part.end)
                self.cursors.append(cur)
                self._cursor_of[cur.tp] = cur
                part.listeners.append(cur)
        self.session_timeout = spec.session_timeout_ms / 1000.0
        self.heartbeat = spec.heartbeat_interval_ms / 1000.0
        self.auto_commit = spec.enable_auto_commit
        self.commit_interval = spec.auto_commit_interval_ms / 1000.0
        self.commit_each = not self.auto_commit and spec.ack_mode == "record"
        self.commit_batch = not self.auto_commit and spec.ack_mode == "batch"
        self.max_poll = spec.max_poll_records
        self.strategy = spec.partition_assignment_strategy
        self.cooperative = self.strategy in COOPERATIVE
        self._assignor = ASSIGNORS[self.strategy]
        self.initial_delay = spec.group_initial_rebalance_delay_ms / 1000.0
        # crashed members the coordinator has not noticed yet: they keep their partitions
        self.zombies: list[Instance] = []
        self.expires: dict[Instance, float] = {}
        self.rebalances = 0
        self._delay_until = 0.0
        self._delay_pending = False
        self._idle_commit_cb = self._idle_commit
        self._notice_cb = self._notice
        self._expire_cb = self._expire
        # Spring's non-blocking retries, when retry.topics asks for them
        self.retry_lanes: RetryTopics | None = RetryTopics(self) if spec.retry.topics else None
        self.instances = [Instance(i, sim.now) for i in range(spec.instances)]
        for inst in self.instances:
            inst.commit_due = sim.now + self.commit_interval
        # the group has been running before the simulation starts: stable, assigned, no delay
        self._members_join(self.instances)
        self._assign()

    # --- the consumer loop --------------------------------------------------------------

    def poll(self, inst: Instance) -> None:
        """The member calls ``poll()``: rejoin or hand back partitions if a rebalance asks,
        auto-commit if due, then fetch up to ``max_poll_records`` and start on them."""
        if inst.state != IDLE or not inst.alive or inst.batch:
            return
        if inst.leaving:
            self._leave(inst)
            return
        if self.status != "up" or not inst.member:
            return
        if inst.rejoin:
            self._join(inst)  # may complete the rebalance, and the assignment polls again
            if inst.state != IDLE or inst.batch:
                return
        if inst.joined and not self.cooperative:
            return  # eager: nothing to read until the new assignment comes
        if self.cooperative and any(c.revoking for c in inst.cursors):
            self._hand_back(inst)
            if inst.state != IDLE or inst.batch:
                return
        if self.auto_commit and self.sim.now >= inst.commit_due - _EPS:
            self._commit(inst)
        if self._fetch(inst):
            self._next(inst)
        elif self.auto_commit and not inst.waiting and self._uncommitted(inst):
            inst.waiting = True  # an idle consumer still commits when the interval is up
            self._at(inst.commit_due, self._idle_commit_cb, inst)

    def _fetch(self, inst: Instance) -> int:
        """Move up to ``max_poll_records`` records into the member's batch. Returns how many."""
        cursors = inst.cursors
        n = len(cursors)
        if not n:
            return 0
        batch = inst.batch
        room = self.max_poll
        i = inst.rr if inst.rr < n else 0  # the assignment may have shrunk
        for _ in range(n):
            cur = cursors[i]
            i += 1
            if i == n:
                i = 0
            part = cur.partition
            if not part.online:
                continue  # its leader is down: nothing to fetch from it
            if cur.position < part.start:
                self._out_of_range(cur)
            pos = cur.position
            base = part.start
            records = part.records
            end = base + len(records)
            if pos >= end:
                continue
            take = end - pos if end - pos < room else room
            for off in range(pos - base, pos - base + take):
                batch.append(records[off])
            cur.position = pos + take
            room -= take
            if not room:
                break
        inst.rr = i
        return self.max_poll - room

    def _next(self, inst: Instance) -> None:
        """Start on the next record of the batch; with the batch done, commit (``ack_mode:
        batch``) and poll again."""
        batch = inst.batch
        cursor_of = self._cursor_of
        while batch:
            record = batch.popleft()
            cur = cursor_of[record[TOPIC], record[PARTITION]]
            offset = record[OFFSET]
            if not self._accept_all and not self.accepts(record):
                if offset >= cur.completed:
                    self.filtered += 1
                self._finish(cur, offset)
                continue
            copies = cur.partition.copies
            repeat = bool(copies) and self._repeats(cur, copies.get(offset))
            redelivery = offset < cur.fetched and not (cur.skipped and cur.first_time(offset))
            if redelivery:
                self.redelivered += 1
            elif offset >= cur.fetched:  # (a first delivery of a skipped offset is below it)
                cur.fetched = offset + 1
            if self.idempotent and self.seen(record):
                if offset >= cur.completed:
                    if repeat:
                        self.repeats += 1
                    else:
                        self.deduplicated_fresh += 1
                self._finish(cur, offset)
                continue
            inst.cursor = cur
            inst.repeat = repeat
            if self._lane and not redelivery:
                self.begin_fresh(inst, record)
            else:
                self.begin(inst, record, 1, redelivery)
            return
        inst.cursor = None
        inst.record = None
        inst.state = IDLE
        if self.commit_batch:
            self._commit(inst)
        self.poll(inst)

    def _finish(self, cur: Cursor, offset: int) -> None:
        if offset >= cur.completed:
            cur.completed = offset + 1
        if self.commit_each and offset >= cur.committed:
            cur.committed = offset + 1

    def _done(self, inst: Instance) -> None:
        """``inst`` finished processing (a crash cancels this, see ``_stop``)."""
        record: Record = inst.record  # type: ignore[assignment]  # set by begin
        cur = inst.cursor
        if self._lane and not inst.failing and not inst.repeat:
            # the common case: processed, counted, its offset finished
            now = self.sim.now
            self.processed += 1
            inst.processed += 1
            sink = self._processing_sink
            if sink is not None:
                sink((now - inst.started) * 1000.0)
            offset = record[OFFSET]
            if offset < cur.completed:
                self.duplicates += 1  # redelivered after a crash: done before
            else:
                cur.completed = offset + 1
                sink = self._e2e_sink
                if sink is not None:
                    sink((now - record[TS]) * 1000.0)
            if self.commit_each and offset >= cur.committed:
                cur.committed = offset + 1
            self._next(inst)
            return
        duplicate = self._is_dup(inst, record)
        offset = record[OFFSET]
        if inst.failing:
            reason = self.failed(inst, record)
            # an event it cannot read will not read better on a retry: straight to the DLT
            lanes = self.retry_lanes
            if inst.attempt < self.retry.max_attempts and not inst.unreadable:
                delay = self.retry.delay(inst.attempt)
                self.retry_in(record, inst.attempt + 1, delay)
                if lanes is None:
                    inst.state = BACKOFF  # blocking retry: the partition waits behind it
                    self._at(self.sim.now + delay, self._retry_cb, inst)
                    return
                # non-blocking: to the retry topic; the partition moves on
                if not lanes.forward(record, inst.attempt, duplicate, reason):
                    self.dead_letter(
                        record,
                        REASON_RETRY_FULL.format(n=PENDING_LIMIT),
                        inst.attempt,
                        duplicate=duplicate,
                    )
            else:
                self.dead_letter(
                    record,
                    reason,
                    inst.attempt,
                    duplicate=duplicate,
                    unreadable=bool(inst.unreadable),
                )
        elif self.idempotent and record[ID] in self._seen:
            # another copy (a redriven dead letter, a redelivery) finished first: the
            # processed-events table refuses this one, as the check at the start would have
            self.seen(record)
            if not duplicate:
                self.deduplicated_fresh += 1
        else:
            self.succeeded(inst, record, duplicate)
        if inst.repeat:
            inst.repeat = False
            if offset >= cur.completed:
                self.repeats += 1
        self._finish(cur, offset)
        self._next(inst)

    def _is_dup(self, inst: Instance, record: Record) -> bool:
        """Had this group already finished ``record`` (processed or dead-lettered it), or the
        event it is a redriven copy of? (A retry consumer knows it from its retry topic.)"""
        cur = inst.cursor
        if cur is None:
            return inst.repeat
        return bool(record[OFFSET] < cur.completed) or inst.repeat

    def _retry(self, inst: Instance) -> None:
        record = inst.record
        if record is None or not inst.alive:
            return
        if inst.leaving or self.status != "up":
            # stopping: give the record and the rest of the batch back uncommitted
            self._rewind(inst)
            inst.state = IDLE
            self.poll(inst)
            return
        self.begin(inst, record, inst.attempt + 1, False)

    def _rewind(self, inst: Instance) -> None:
        """Drop the record in hand and the batch, so that they are fetched again."""
        record, cur = inst.record, inst.cursor
        if record is not None:
            cur.position = min(cur.position, record[OFFSET])
        for r in inst.batch:
            c = self._cursor_of[r[TOPIC], r[PARTITION]]
            c.position = min(c.position, r[OFFSET])
        inst.batch.clear()
        inst.record = None
        inst.cursor = None

    def _out_of_range(self, cur: Cursor) -> None:
        """Retention deleted the position: reset as ``auto_offset_reset`` says. What retention
        deleted unread is expired; what a reset to latest jumps over is skipped."""
        part = cur.partition
        head = max(cur.position, cur.completed)
        lost = part.start - head
        if lost > 0:
            self.expired += lost
            for hook in self.sim.on_expired:
                hook(self.sim.now, self, part.topic, part.index, lost)
        target = part.start
        if self.spec.auto_offset_reset == "latest":
            target = part.end
            self.skipped += max(0, target - max(head, part.start))
        cur.position = target
        cur.completed = max(cur.completed, target)
        self._skip_to(cur, target)
        cur.committed = max(cur.committed, target)

    def _skip_to(self, cur: Cursor, target: int) -> None:
        """Move ``fetched`` up to ``target``, remembering the offsets passed over unread."""
        if target > cur.fetched:
            cur.skipped = [r for r in cur.skipped if r[0] < r[1]][-8:]
            cur.skipped.append((cur.fetched, target))
            cur.fetched = target

    # --- redrive ------------------------------------------------------------------------

    def redrive_one(self, letter: DeadLetter) -> bool:
        """Republish a dead letter to its original topic (by its key, as any producer would):
        a new record at a new offset, which every group reading the topic gets."""
        topic = self.sim.topics[letter.topic]
        rec = letter.record
        part = topic.partition_for(rec[KEY], rec[SIZE])
        if not part.online:
            return False  # no leader to take it: it stays in the DLT's list
        earlier = tuple(topic.copy_index.get(rec[ID], ()))
        copy = topic.append(
            rec[ID],
            rec[TYPE],
            rec[KEY],
            self.sim.now,
            rec[SIZE],
            rec[PAYLOAD],
            rec[CORRELATION_ID],
            rec[CAUSATION_ID],
            rec[POISON],
            part,
            RedriveCopy(self, letter.duplicate, letter.partition, letter.offset, earlier),
            rec[CORRELATION_ID] in self._watched,
        )
        for hook in self.sim.on_redriven:
            hook(self.sim.now, self, copy)
        return True

    def _repeats(self, cur: Cursor, copy: RedriveCopy | None) -> bool:
        """Is the record a redriven copy of an event this group had before? Then processing it
        is a second processing of the event (a duplicate): so for every group that reads the
        original or an earlier copy, and for the group that redrove a letter of an event it
        had processed."""
        if copy is None:
            return False
        if copy.group is self:  # this very group (a removed and re-added one is another)
            return copy.duplicate
        topic = cur.partition.topic
        cursor_of = self._cursor_of

        def origin(partition: int) -> int | None:
            c = cursor_of.get((topic, partition))
            return None if c is None else c.origin

        return copy.read_before(origin)

    # --- commits ------------------------------------------------------------------------

    def _commit(self, inst: Instance) -> None:
        """Commit what the member has consumed: every record its polls returned, all of them
        processed by now (it commits between batches)."""
        for cur in inst.cursors:
            if cur.position > cur.committed:
                cur.committed = cur.position
        inst.commit_due = self.sim.now + self.commit_interval

    def _uncommitted(self, inst: Instance) -> bool:
        return any(c.position > c.committed for c in inst.cursors)

    def _idle_commit(self, inst: Instance) -> None:
        inst.waiting = False
        if inst.alive and inst.member and inst.state == IDLE and not inst.batch:
            if self.sim.now >= inst.commit_due - _EPS:
                self._commit(inst)
            elif self._uncommitted(inst):
                inst.waiting = True
                self._at(inst.commit_due, self._idle_commit_cb, inst)

    # --- membership ---------------------------------------------------------------------

    def _heartbeat_after(self, inst: Instance, now: float) -> float:
        """The member's first heartbeat at or after ``now``."""
        k = ceil((now - inst.born) / self.heartbeat - _EPS)
        return inst.born + max(0, k) * self.heartbeat

    def _heartbeat_before(self, inst: Instance, now: float) -> float:
        """The member's last heartbeat at or before ``now``."""
        k = floor((now - inst.born) / self.heartbeat + _EPS)
        return inst.born + max(0, k) * self.heartbeat

    def _members(self) -> list[Instance]:
        """Every member of the group: running ones and crashed ones not yet detected."""
        return [i for i in self.instances if i.member and i.alive] + self.zombies

    def _members_join(self, joiners: list[Instance]) -> None:
        now = self.sim.now
        for inst in joiners:
            inst.member = True
            inst.joined = True
            inst.rejoin = False
            inst.commit_due = now + self.commit_interval

    def _rebalance(self) -> None:
        """Membership changed: every member learns it at its next heartbeat."""
        if self.status != "up":
            return
        if not self.rebalancing:
            self.rebalancing = True
            self.rebalances += 1
            self._refresh_lane()
            self.set_status(self.status)
        now = self.sim.now
        for inst in self.instances:
            if inst.alive and inst.member and not inst.joined and not inst.rejoin:
                self._at(self._heartbeat_after(inst, now), self._notice_cb, inst)
        self._maybe_complete()

    def _notice(self, inst: Instance) -> None:
        """A heartbeat answered REBALANCE_IN_PROGRESS: rejoin at the next poll."""
        if not (self.rebalancing and inst.alive and inst.member and not inst.joined):
            return
        inst.rejoin = True
        if inst.state == IDLE and not inst.batch:
            self.poll(inst)

    def _join(self, inst: Instance) -> None:
        """JoinGroup, from within poll: commit first; an eager member also revokes everything."""
        inst.rejoin = False
        inst.joined = True
        if self.auto_commit:
            self._commit(inst)
        if not self.cooperative:
            for cur in inst.cursors:
                cur.owner = None
                cur.position = cur.committed
            inst.cursors = []
        self._maybe_complete()

    def _maybe_complete(self) -> None:
        if not self.rebalancing:
            return
        members = self._members()
        if not members:
            self.rebalancing = False
            self._refresh_lane()
            return
        if any(not m.joined for m in members):
            return  # still waiting for a member to rejoin, leave or time out
        if self.sim.now < self._delay_until - _EPS:
            if not self._delay_pending:
                self._delay_pending = True
                self._at(self._delay_until, self._delay_over, None)
            return
        self._assign()

    def _delay_over(self, _: Any) -> None:
        self._delay_pending = False
        self._maybe_complete()

    def _assign(self) -> None:
        """SyncGroup: the leader's assignment takes effect."""
        members = [m for m in self._members() if m.joined]
        members.sort(key=lambda m: m.index)
        owned = {m.index: [c.tp for c in m.cursors] for m in members}
        target = self._assignor([m.index for m in members], [c.tp for c in self.cursors], owned)
        self.rebalancing = False
        for m in members:
            m.joined = False
            mine = target[m.index]
            if self.cooperative:
                keep = set(mine)
                for cur in m.cursors:
                    if cur.tp not in keep:
                        cur.revoking = True  # handed back at its next poll
            else:
                m.cursors = []
                m.rr = 0
            for tp in mine:
                cur = self._cursor_of[tp]
                if cur.owner is None:
                    cur.owner = m
                    cur.position = cur.committed
                    m.cursors.append(cur)
        self._refresh_lane()
        assignment = {m.index: [c.partition.name for c in m.cursors] for m in members}
        for hook in self.sim.on_rebalanced:
            hook(self.sim.now, self, assignment)
        self.set_status(self.status)
        for m in members:
            if m.alive and m.state == IDLE and not m.batch:
                self.poll(m)

    def _hand_back(self, inst: Instance) -> None:
        """Cooperative: give up the partitions the assignment moved, then ask for the second
        rebalance that hands them to their new owners."""
        if self.auto_commit:
            self._commit(inst)
        keep = []
        for cur in inst.cursors:
            if cur.revoking:
                cur.revoking = False
                cur.owner = None
                cur.position = cur.committed
            else:
                keep.append(cur)
        inst.cursors = keep
        self._rebalance()

    def _leave(self, inst: Instance) -> None:
        """LeaveGroup, after a graceful stop finished the batch in hand."""
        inst.leaving = False
        if self.auto_commit:
            self._commit(inst)  # commit on close
        self._release(inst)
        if inst.retire:
            self.instances.remove(inst)
        if any(m.alive for m in self._members()):
            self._rebalance()
        self._maybe_complete()

    def _release(self, inst: Instance) -> None:
        for cur in inst.cursors:
            cur.owner = None
            cur.revoking = False
            cur.position = cur.committed
        inst.cursors = []
        inst.member = False
        inst.joined = False
        inst.rejoin = False

    def _expire(self, inst: Instance) -> None:
        """The session timeout passed without a heartbeat: the coordinator removes the member."""
        if inst not in self.zombies:
            return
        self.zombies.remove(inst)
        self.expires.pop(inst, None)
        self._release(inst)
        self.note(f"instance {inst.index}: session timed out, its partitions move")
        if any(i.alive and i.member for i in self.instances):
            self._rebalance()
        self._maybe_complete()

    # --- commands -----------------------------------------------------------------------

    def wake(self) -> None:
        for inst in self.instances:
            if inst.state == IDLE and not inst.batch:
                self.poll(inst)

    def down(self) -> None:
        """Stop gracefully: each member finishes its batch, commits and leaves the group."""
        if self.status == "down":
            return
        self.set_status("down")
        for inst in list(self.instances):
            if inst.alive and inst.member:
                inst.leaving = True
                if inst.state == IDLE and not inst.batch:
                    self._leave(inst)

    def up(self) -> None:
        """Start the service (or its dead instances): new members join the group."""
        if self.status == "up" and all(i.alive for i in self.instances):
            if self.retry_lanes is not None:
                self.retry_lanes.start()
            return
        self.status = "up"
        now = self.sim.now
        for k, inst in enumerate(self.instances):
            if not inst.alive:
                self.instances[k] = Instance(inst.index, now)
            elif inst.leaving:
                inst.leaving = False  # started again before it had left
        self._start_members([i for i in self.instances if i.alive and not i.member])
        self.set_status("up")
        if self.retry_lanes is not None:
            self.retry_lanes.start()

    def _start_members(self, joiners: list[Instance]) -> None:
        if not joiners or self.status != "up":
            return
        if not self._members():
            # an empty group waits group.initial.rebalance.delay.ms for more members
            self._delay_until = self.sim.now + self.initial_delay
        self._members_join(joiners)
        for inst in joiners:
            inst.born = self.sim.now
        self._rebalance()

    def crash(self, instance: int | None = None) -> None:
        """Processes die: no LeaveGroup, no commit. Their partitions wait for the session
        timeout; what they had processed since the last commit will be delivered again."""
        now = self.sim.now
        victims = [
            i for i in self.instances if i.alive and (instance is None or i.index == instance)
        ]
        for inst in victims:
            self._stop(inst)
            inst.alive = False
            inst.state = DEAD
            inst.leaving = False
            inst.record = None
            inst.cursor = None
            inst.batch.clear()
            for cur in inst.cursors:
                cur.position = cur.committed
                cur.revoking = False
            if inst.member:
                expires = self._heartbeat_before(inst, now) + self.session_timeout
                self.zombies.append(inst)
                self.expires[inst] = expires
                self._at(expires, self._expire_cb, inst)
                self.note(
                    f"instance {inst.index} crashed: the coordinator notices after "
                    f"session.timeout.ms, at t={expires:g} s"
                )
            if inst.retire:
                self.instances.remove(inst)
        if not any(i.alive for i in self.instances):
            self.set_status("crashed")
            if self.retry_lanes is not None:
                self.retry_lanes.stop()
        else:
            self.set_status(self.status)
        self._maybe_complete()

    def set_instances(self, n: int) -> None:
        current = [i for i in self.instances if not i.retire]
        if n > len(current):
            added = self.add_instances(n - len(current))
            self._start_members([i for i in added if i.alive])
        else:
            for inst in current[n:]:
                inst.retire = True
                if not inst.alive or not inst.member:
                    self.instances.remove(inst)
                else:
                    inst.leaving = True
                    if inst.state == IDLE and not inst.batch:
                        self._leave(inst)
        self.set_status(self.status)
        if self.retry_lanes is not None:
            self.retry_lanes.start()  # scaled up from none: the retry consumers run again

    def detach(self) -> None:
        self.detached = True
        for cur in self.cursors:
            cur.partition.listeners.remove(cur)
        for inst in self.instances:
            self._stop(inst)
            inst.alive = False
        for inst in self.zombies:
            self.sim.cancel(self._expire_cb, inst)
        if self.retry_lanes is not None:
            self.retry_lanes.detach()

    def reset_offsets(self, to: str, value: float | None = None) -> None:
        """Move committed offsets explicitly (the group must be down, as Kafka requires).

        A reset never goes below where the service joined a partition (its origin): "earliest"
        is the log start or the origin, whichever is later. To replay history from before the
        service existed, add it again ``from: earliest``.
        """
        for c in self.cursors:
            part = c.partition
            if to == "earliest":
                target = part.start
            elif to == "latest":
                target = part.end
            elif to == "offset":
                target = min(max(int(value or 0), part.start), part.end)
            else:
                target = part.offset_for_time(float(value or 0.0))
            target = max(target, c.origin)
            head = max(c.position, c.completed)
            if target > head:
                self.skipped += target - head
                c.completed = target
            self._skip_to(c, target)
            c.committed = target
            c.position = target

    # --- observation --------------------------------------------------------------------

    @property
    def fetching(self) -> bool:
        return self.status == "up" and (self.cooperative or not self.rebalancing)

    def lag(self) -> int:
        """Kafka's consumer lag: log-end offset minus committed offset, over the partitions."""
        return sum(max(0, c.partition.end - c.committed) for c in self.cursors)

    def records_lag(self) -> int:
        """Kafka's client metric records-lag: log-end offset minus the fetch position."""
        return sum(max(0, c.partition.end - c.position) for c in self.cursors)

    def backlog(self) -> int:
        """Log-end offset minus one past the highest offset processed, over the partitions."""
        return sum(max(0, c.partition.end - c.completed) for c in self.cursors)

    def lag_seconds(self) -> float:
        """How long ago the oldest record not yet committed was produced."""
        oldest = None
        for c in self.cursors:
            part = c.partition
            if c.committed < part.end and part.records:
                ts = part.records[max(0, c.committed - part.start)][TS]
                if oldest is None or ts < oldest:
                    oldest = ts
        return 0.0 if oldest is None else max(0.0, self.sim.now - oldest)

    def accounting(self) -> dict[str, int]:
        """Where every event this group should see is now. The terms add up to ``produced``.

        Kept from independent counters and offsets, so the sum is a real check.
        """
        in_flight = retrying = batched = 0
        for inst in self.instances:
            r = inst.record
            if (
                r is not None
                and inst.state in (BUSY, BACKOFF)
                and r[OFFSET] >= inst.cursor.completed
            ):
                if inst.state == BUSY:
                    in_flight += 1
                else:
                    retrying += 1
            for b in inst.batch:
                if b[OFFSET] >= self._cursor_of[b[TOPIC], b[PARTITION]].completed:
                    batched += 1
        not_delivered = 0
        for c in self.cursors:
            head = max(c.position, c.completed)
            not_delivered += max(0, c.partition.end - head)
        return {
            "produced": sum(c.partition.end - c.origin for c in self.cursors),
            "processed": self.processed - self.duplicates,
            "in_flight": in_flight,
            "retrying": retrying + (self.retry_lanes.fresh if self.retry_lanes else 0),
            "batched": batched,
            "dead_lettered": self.dead_lettered_fresh,
            "filtered": self.filtered,
            "expired": self.expired,
            "skipped": self.skipped,
            "deduplicated": self.deduplicated_fresh,
            "repeats": self.repeats,
            "not_delivered": not_delivered,
        }

    def partitions_state(self) -> list[dict[str, Any]]:
        out = []
        for c in self.cursors:
            owner = c.owner
            out.append(
                {
                    "topic": c.partition.topic,
                    "partition": c.partition.index,
                    "committed": c.committed,
                    "position": c.position,
                    "end": c.partition.end,
                    "start": c.partition.start,
                    "lag": c.lag,
                    "owner": None if owner is None else owner.index,
                    # held by a crashed member the coordinator has not noticed yet: nobody reads
                    "held_until": None
                    if owner is None or owner.alive
                    else round(self.expires.get(owner, 0.0), 3),
                }
            )
        return out

    def instance_state(self, inst: Instance) -> dict[str, Any]:
        state = super().instance_state(inst)
        state["partitions"] = [c.partition.name for c in inst.cursors]
        state["member"] = inst.member
        state["rejoining"] = inst.rejoin or inst.joined
        state["leaving"] = inst.leaving
        return state

    def zombies_state(self) -> list[dict[str, Any]]:
        """Crashed members still in the group, with when the coordinator will notice."""
        now = self.sim.now
        return [
            {
                "index": z.index,
                "partitions": [c.partition.name for c in z.cursors],
                "detected_at": round(self.expires[z], 3),
                "seconds_left": round(max(0.0, self.expires[z] - now), 3),
            }
            for z in self.zombies
        ]

    def notes(self) -> list[str]:
        """What a learner should know about the group right now, in words, from the run."""
        out = []
        now = self.sim.now
        by_time: dict[int, list[Instance]] = {}
        for z in self.zombies:  # crashed together: one line
            by_time.setdefault(round(max(0.0, self.expires[z] - now)), []).append(z)
        for left, zs in sorted(by_time.items()):
            who = ", ".join(str(z.index) for z in zs)
            parts = ", ".join(c.partition.name for z in zs for c in z.cursors) or "nothing"
            out.append(
                f"instance{'s' if len(zs) > 1 else ''} {who} crashed; failure not detected "
                f"yet: {left} s left (session.timeout.ms {self.session_timeout:g} s). "
                f"Nobody reads {parts} meanwhile."
            )
        waiting = [i.index for i in self.instances if i.alive and i.member and not i.joined]
        if self.rebalancing and waiting:
            who = ", ".join(str(i) for i in waiting)
            out.append(f"rebalancing: waiting for instance {who} to rejoin after its batch")
        leaving = [i.index for i in self.instances if i.alive and i.leaving]
        if leaving:
            out.append(
                "stopping gracefully: instance "
                + ", ".join(str(i) for i in leaving)
                + " finishes the batch in hand, commits and leaves the group"
            )
        batched = self.batched
        if batched:
            out.append(
                f"{batched} records fetched in a batch, not started yet "
                f"(max.poll.records {self.max_poll})"
            )
        done = sum(max(0, c.position - c.committed) for c in self.cursors)
        done -= batched + self.in_flight + self.retrying
        if done > 0:
            how = (
                f"auto-commit every {self.commit_interval:g} s"
                if self.auto_commit
                else f"ack_mode {self.spec.ack_mode}"
            )
            out.append(
                f"{done} processed but not committed yet ({how}): a crash now would deliver "
                "them again"
            )
        if self.retry_lanes is not None:
            out.extend(self.retry_lanes.notes())
        return out

    def waiting_retry(self) -> int:
        return 0 if self.retry_lanes is None else self.retry_lanes.waiting

    def lane_instance(self, index: int) -> Instance | None:
        """A retry consumer, by its instance number."""
        return None if self.retry_lanes is None else self.retry_lanes.lane_instance(index)

    def settings(self) -> dict[str, Any]:
        spec = self.spec
        return {
            "session_timeout_ms": spec.session_timeout_ms,
            "heartbeat_interval_ms": spec.heartbeat_interval_ms,
            "enable_auto_commit": spec.enable_auto_commit,
            "auto_commit_interval_ms": spec.auto_commit_interval_ms,
            "ack_mode": None if spec.enable_auto_commit else spec.ack_mode,
            "auto_offset_reset": spec.auto_offset_reset,
            "max_poll_records": spec.max_poll_records,
            "partition_assignment_strategy": spec.partition_assignment_strategy,
            "group_initial_rebalance_delay_ms": spec.group_initial_rebalance_delay_ms,
            "client_overhead_ms": spec.client_overhead_ms,
            "retry": "retry topics (non-blocking)" if spec.retry.topics else "blocking",
            "dead_letter_topic": self.dead_letter_destination,
        }
