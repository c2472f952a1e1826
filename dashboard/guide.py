"""A guided lesson on the live page: narration cards at simulated times, then the class predicts.

"Open it live" from a lesson attaches its guide to the simulation. The run plays the lesson
with the times and seed its answer was measured with. Each card appears when the simulated
clock reaches its time, and names the number to watch. At the lesson's question (``ask_at``)
the run pauses, and every screen watching it shows the question. Each browser answers once, and
the controller sees the answers come in. When the controller reveals, everyone sees the measured
answer beside their own prediction.

The guide lives in the runner. Its votes travel over the channel layer, so a viewer on another
server process votes the same way. It is saved with the simulation (``SimulationRecord.guide``)
so a rebuild keeps the votes. This module holds the guide's rules; it does no I/O.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from simulator.lessons import Answer, Lesson

PLAYING, ASKING, REVEALED = "playing", "asking", "revealed"
PHASES = (PLAYING, ASKING, REVEALED)
MAX_VOTERS = 1000  # answers one run keeps (a class, or a lecture hall); past that, refused
ERR_NOT_ASKING = "the question is not open: answers are taken once the run asks it"
ERR_UNKNOWN_CHOICE = "{choice!r} is not one of this question's answers"
ERR_VOTED = "you answered already: {choice}"
ERR_FULL = f"this run has taken {MAX_VOTERS} answers, as many as it keeps"


def voter_id(session_key: str) -> str:
    """A browser's voter id: a hash of its session key, so keys never travel in messages."""
    return hashlib.sha256(("vote:" + session_key).encode()).hexdigest()[:24]


def answer_doc(lesson: Lesson, answer: Answer) -> dict[str, Any]:
    """The measured answer as the page shows it (plain data, saved with the simulation)."""
    choices = dict(lesson.choices)
    return {
        "correct": answer.correct,
        "correct_text": choices.get(answer.correct, answer.correct),
        "summary": answer.summary,
        "facts": [list(f) for f in answer.facts],
        "claim_holds": answer.claim_holds,
    }


@dataclass(frozen=True)
class Card:
    at: float
    text: str
    point: str = ""  # a dotted path into the frame's state: the number to watch, shown live
    label: str = ""  # what that number is, in words


@dataclass
class Guide:
    slug: str
    title: str
    cards: tuple[Card, ...]
    ask_at: float
    question: str
    choices: tuple[tuple[str, str], ...]
    answer: dict[str, Any]
    phase: str = PLAYING
    votes: dict[str, str] = field(default_factory=dict)

    @classmethod
    def for_lesson(cls, lesson: Lesson, answer: Answer) -> Guide:
        return cls._of(lesson, answer_doc(lesson, answer))

    @classmethod
    def _of(cls, lesson: Lesson, answer: dict[str, Any]) -> Guide:
        return cls(
            slug=lesson.slug,
            title=f"{lesson.number}. {lesson.title}",
            cards=tuple(Card(**c) for c in lesson.cards),
            ask_at=lesson.ask_at,
            question=lesson.question,
            choices=lesson.choices,
            answer=answer,
        )

    # --- the clock ---------------------------------------------------------------------------

    def card_index(self, now: float) -> int:
        """The card showing at simulated time ``now``: the last one whose time has come (-1:
        none yet)."""
        index = -1
        for i, card in enumerate(self.cards):
            if card.at <= now + 1e-9:
                index = i
        return index

    def stop_at(self, start: float, target: float) -> float:
        """Where a run from ``start`` toward ``target`` must stop: at the question, the first
        time the clock reaches it while the class has not answered yet."""
        if self.phase == PLAYING and start < self.ask_at <= target:
            return self.ask_at
        return target

    def reached(self, now: float) -> bool:
        """Called after the run advanced: True when it just arrived at the question."""
        if self.phase == PLAYING and now >= self.ask_at - 1e-9:
            self.phase = ASKING
            return True
        return False

    # --- the class ---------------------------------------------------------------------------

    def vote(self, voter: str, choice: Any) -> str | None:
        """Record a browser's answer. Returns why it was refused, or None."""
        keys = dict(self.choices)
        if self.phase != ASKING:
            return ERR_NOT_ASKING
        if not isinstance(choice, str) or choice not in keys:
            return ERR_UNKNOWN_CHOICE.format(choice=str(choice)[:40])
        if voter in self.votes:
            return ERR_VOTED.format(choice=keys[self.votes[voter]])
        if len(self.votes) >= MAX_VOTERS:
            return ERR_FULL
        self.votes[voter] = choice
        return None

    def reveal(self) -> None:
        self.phase = REVEALED

    def tally(self) -> dict[str, int]:
        counts = {key: 0 for key, _ in self.choices}
        for choice in self.votes.values():
            counts[choice] = counts.get(choice, 0) + 1
        return counts

    # --- what frames carry -------------------------------------------------------------------

    def state(self, now: float) -> dict[str, Any]:
        """The guide's part of every frame: small, and changing."""
        out: dict[str, Any] = {
            "slug": self.slug,
            "card": self.card_index(now),
            "phase": self.phase,
            "ask_at": self.ask_at,
            "votes": len(self.votes),
            "tally": self.tally(),
        }
        if self.phase == REVEALED:
            out["answer"] = self.answer
        return out

    def static(self) -> dict[str, Any]:
        """What does not change: sent in full frames (a joiner's snapshot)."""
        return {
            "title": self.title,
            "cards": [
                {"at": c.at, "text": c.text, "point": c.point, "label": c.label} for c in self.cards
            ],
            "question": self.question,
            "choices": [{"key": k, "text": t} for k, t in self.choices],
        }

    # --- saved with the simulation -----------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "slug": self.slug,
            "phase": self.phase,
            "votes": dict(self.votes),
            "answer": self.answer,
        }

    @classmethod
    def from_json(cls, doc: Any, lesson: Lesson) -> Guide:
        guide = cls._of(lesson, dict(doc.get("answer") or {}))
        if doc.get("phase") in PHASES:
            guide.phase = str(doc["phase"])
        keys = dict(lesson.choices)
        votes = doc.get("votes")
        if isinstance(votes, dict):
            guide.votes = {str(v): str(c) for v, c in list(votes.items())[:MAX_VOTERS] if c in keys}
        return guide
