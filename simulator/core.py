"""The scheduler: a virtual clock and a heap of timed actions.

This is the whole of the engine's notion of time. It never reads the wall clock: pacing a run
against real time is the live runner's job (``dashboard.runner``), the way SimPy keeps
``RealtimeEnvironment`` apart from ``Environment``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from heapq import heapify, heappop, heappush
from itertools import count, repeat
from typing import Any

Action = Callable[[Any], None]
_UNBOUNDED = 1 << 62  # run_until's budget: no bound


class Scheduler:
    """A heap of ``(time, seq, action, arg)``.

    ``seq`` grows by one for every scheduled action, so actions due at the same time run in the
    order they were scheduled: the same inputs always give the same order.
    """

    __slots__ = ("_queue", "_seq", "next_seq", "now", "push")

    def __init__(self) -> None:
        self.now = 0.0
        self._queue: list[tuple[float, int, Action, Any]] = []
        self._seq = count()
        # ``at`` for the hot paths, as two C-level calls and no Python frame:
        # ``push((time, next_seq(), action, arg))``, with ``time`` never before ``now``
        self.push: Callable[[tuple[float, int, Action, Any]], None] = partial(heappush, self._queue)
        self.next_seq: Callable[[], int] = self._seq.__next__

    def at(self, time: float, action: Action, arg: Any = None) -> None:
        """Run ``action(arg)`` at virtual ``time`` (never earlier than now)."""
        if time < self.now:
            time = self.now
        self.push((time, self.next_seq(), action, arg))

    def after(self, delay: float, action: Action, arg: Any = None) -> None:
        self.push((self.now + delay, self.next_seq(), action, arg))

    def cancel(self, action: Action, arg: Any) -> int:
        """Drop every pending ``action(arg)`` (``arg`` compared by identity). Returns how many.

        O(pending actions): for rare events such as a crash, so that the common ones need not
        carry a token to be checked when they run.
        """
        queue = self._queue
        keep = [e for e in queue if not (e[3] is arg and e[2] == action)]
        removed = len(queue) - len(keep)
        if removed:
            queue[:] = keep  # the same list: others hold a reference to it
            heapify(queue)
        return removed

    @property
    def pending(self) -> int:
        return len(self._queue)

    def step(self) -> bool:
        """Run the next action. Returns False when there was none."""
        if not self._queue:
            return False
        time, _, action, arg = heappop(self._queue)
        self.now = time
        action(arg)
        return True

    def run_until(self, until: float) -> None:
        """Run every action due at or before ``until``, then set the clock to ``until``.

        Can be called again and again with growing times, so a caller can advance a run in
        slices.
        """
        # the loop is run_some's: its ``for`` over ``repeat`` costs the interpreter fewer
        # instructions an action than a ``while queue`` loop did here (docs/performance.md,
        # "The live engine")
        while not self.run_some(until, _UNBOUNDED):
            pass

    def run_some(self, until: float, budget: int) -> bool:
        """Like :meth:`run_until`, but run at most ``budget`` actions.

        Returns True when every action due by ``until`` ran (the clock is then at ``until``);
        False when the budget ran out first (the clock is at the last action run). A caller that
        must not stall (the live runner, serving sockets on the same thread) advances in such
        bounded slices, checking its own clock in between.
        """
        queue = self._queue
        pop = heappop
        for _ in repeat(None, budget):  # (cheaper per action than counting down by hand)
            if not queue:
                break
            time, _, action, arg = item = pop(queue)
            if time > until:
                heappush(queue, item)  # not due yet: back where it was (its seq is unique)
                break
            self.now = time
            action(arg)
        if queue and queue[0][0] <= until:
            return False
        if until > self.now:
            self.now = until
        return True
