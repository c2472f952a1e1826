"""Lessons are data: a YAML file with the lesson's words, steps, question and choices, and a
measurement that is a named function or declared over the run's snapshot. A teacher can write
one without Python; this one exists only as a data file."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulator.lessons import LESSON_DIR, LESSONS, LessonError, load_lesson

DATA_ONLY = """
number: 99
slug: poison-pile
title: A poison event piles up in the dead letters
preset: lesson-operations
idea:
  - An event a service can never process should not block its partition forever.
steps:
  - Start the run and watch Payment's dead letters.
question: Between t = 10 and t = 20 every payment fails. Are orders dead-lettered by t = 25?
choices:
  - {key: parked, text: "yes: they wait in the dead-letter topic"}
  - {key: none, text: "no: nothing is parked"}
measure:
  read: groups.payment.dead_lettered
  at: 25
  answers:
    - {choice: parked, when: "> 0"}
    - {choice: none, when: "== 0"}
variants:
  never-fails:
    says: the card processor never fails
    set: {faults: []}
"""


def test_a_lesson_written_only_as_data_measures_and_flips(tmp_path: Path) -> None:
    path = tmp_path / "99-poison-pile.yaml"
    path.write_text(DATA_ONLY)
    lesson = load_lesson(path)
    assert (lesson.number, lesson.slug, lesson.live) == (99, "poison-pile", "simulation")
    answer = lesson.measure(None)
    assert answer.correct == "parked" and answer.claim_holds
    assert answer.data["value"] > 0
    assert "groups.payment.dead_lettered was" in answer.summary
    other = lesson.measure(None, lesson.variants["never-fails"][1])
    assert other.correct == "none" and not other.claim_holds


def test_a_broken_lesson_file_is_named_with_what_is_wrong(tmp_path: Path) -> None:
    path = tmp_path / "98-broken.yaml"
    path.write_text(DATA_ONLY.replace("question:", "no_question:"))
    with pytest.raises(LessonError, match=r"98-broken\.yaml: KeyError: 'question'"):
        load_lesson(path)
    path.write_text(DATA_ONLY.replace("read: groups", "readx: groups"))
    with pytest.raises(LessonError, match=r"98-broken\.yaml"):
        load_lesson(path)


def test_the_shipped_lessons_are_the_data_files() -> None:
    files = sorted(LESSON_DIR.glob("*.yaml"))
    assert [load_lesson(f).slug for f in files] == [item.slug for item in LESSONS]
    assert [item.number for item in LESSONS] == list(range(1, len(LESSONS) + 1))


def test_the_measurements_default_steps_are_the_data_files() -> None:
    from simulator.lessons import CORRELATION_SCRIPT, EVENTS_SCRIPT, lesson

    for slug, default in (
        ("events-commands-queries", EVENTS_SCRIPT),
        ("correlation-ids", CORRELATION_SCRIPT),
    ):
        found = lesson(slug)
        assert found is not None and list(found.script) == list(default)
