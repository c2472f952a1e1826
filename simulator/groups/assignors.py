"""Kafka's partition assignors (``partition.assignment.strategy``), for equal subscriptions.

Members are ordered by instance index, as Kafka orders them by member id. Every member of a
Fanout service subscribes to the same topics, so the assignors' cases for differing
subscriptions are left out.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

TopicPartition = tuple[str, int]
Assignment = dict[int, list[TopicPartition]]

EAGER = ("range", "roundrobin", "sticky")
COOPERATIVE = ("cooperative-sticky",)
STRATEGIES = (*EAGER, *COOPERATIVE)


def range_assign(
    members: Sequence[int],
    partitions: Sequence[TopicPartition],
    owned: Mapping[int, Sequence[TopicPartition]],
) -> Assignment:
    """RangeAssignor: per topic, consecutive ranges; the first ``n % m`` members get one more."""
    out: Assignment = {m: [] for m in members}
    if not members:
        return out
    by_topic: dict[str, list[TopicPartition]] = {}
    for tp in sorted(partitions):
        by_topic.setdefault(tp[0], []).append(tp)
    ordered = sorted(members)
    for tps in by_topic.values():
        per, extra = divmod(len(tps), len(ordered))
        for i, member in enumerate(ordered):
            start = per * i + min(i, extra)
            out[member].extend(tps[start : start + per + (1 if i < extra else 0)])
    return out


def roundrobin_assign(
    members: Sequence[int],
    partitions: Sequence[TopicPartition],
    owned: Mapping[int, Sequence[TopicPartition]],
) -> Assignment:
    """RoundRobinAssignor: every topic-partition in order, dealt to the members in turn."""
    out: Assignment = {m: [] for m in members}
    ordered = sorted(members)
    for k, tp in enumerate(sorted(partitions)):
        if ordered:
            out[ordered[k % len(ordered)]].append(tp)
    return out


def sticky_assign(
    members: Sequence[int],
    partitions: Sequence[TopicPartition],
    owned: Mapping[int, Sequence[TopicPartition]],
) -> Assignment:
    """StickyAssignor and CooperativeStickyAssignor: balanced (each member gets ``n // m`` or
    one more), moving as few partitions as possible from their current owners."""
    out: Assignment = {m: [] for m in members}
    if not members:
        return out
    ordered = sorted(members)
    min_quota, extra = divmod(len(partitions), len(ordered))
    max_slots = extra  # members that may hold min_quota + 1
    valid = set(partitions)
    taken: set[TopicPartition] = set()
    # members that own the most keep theirs first, so a balanced group does not move at all
    for member in sorted(ordered, key=lambda m: (-len(owned.get(m, ())), m)):
        mine = [tp for tp in sorted(owned.get(member, ())) if tp in valid and tp not in taken]
        quota = min_quota
        if len(mine) > min_quota and max_slots > 0:
            quota = min_quota + 1
            max_slots -= 1
        keep = mine[:quota]
        out[member].extend(keep)
        taken.update(keep)
    free = [tp for tp in sorted(partitions) if tp not in taken]
    for member in ordered:
        while len(out[member]) < min_quota and free:
            out[member].append(free.pop(0))
    for member in ordered:
        if not free:
            break
        if max_slots > 0 and len(out[member]) == min_quota:
            out[member].append(free.pop(0))
            max_slots -= 1
    for member in ordered:
        out[member].sort()
    return out


ASSIGNORS: dict[
    str,
    Callable[
        [Sequence[int], Sequence[TopicPartition], Mapping[int, Sequence[TopicPartition]]],
        Assignment,
    ],
] = {
    "range": range_assign,
    "roundrobin": roundrobin_assign,
    "sticky": sticky_assign,
    "cooperative-sticky": sticky_assign,
}
