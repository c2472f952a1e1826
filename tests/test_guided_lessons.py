"""Guided lessons: cards at simulated times that name a number the page shows, and the class's
predictions (the guide's rules; the browser test is in test_guided_lesson_e2e.py)."""

from __future__ import annotations

from typing import Any

import pytest

from dashboard.frames import RunState, compare_state, state
from dashboard.guide import ASKING, ERR_NOT_ASKING, PLAYING, REVEALED, Guide
from simulator import Simulation, parse_scenario
from simulator.compare import Comparison
from simulator.lessons import LESSONS, Answer, lesson


def resolve(doc: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(doc, dict) or part not in doc:
            return None
        doc = doc[part]
    return doc


@pytest.mark.parametrize("item", LESSONS, ids=lambda item: item.slug)
def test_every_card_names_a_number_the_live_run_shows_at_its_time(item: Any) -> None:
    assert item.cards, f"{item.slug} has no cards"
    assert any(card["at"] == item.ask_at for card in item.cards), "a card asks the question"
    scenario = parse_scenario(item.live_doc())
    if item.live == "compare":
        cmp = Comparison(scenario, scenario.seed)
        snapshot = lambda: compare_state(cmp, RunState("x"))  # noqa: E731
        run_until = cmp.run_until
    else:
        sim = Simulation(scenario, scenario.seed)
        snapshot = lambda: state(sim, RunState("x"))  # noqa: E731
        run_until = sim.run_until
    for card in item.cards:
        assert card["at"] < scenario.duration
        run_until(card["at"] + 0.5)
        value = resolve(snapshot(), card["point"])
        assert isinstance(value, int | float) and not isinstance(value, bool), (
            f"{item.slug} at t = {card['at']}: {card['point']} is {value!r}"
        )
        assert card["label"] and card["text"]


def guide() -> Guide:
    found = lesson("temporal-decoupling")
    assert found is not None
    answer = Answer(correct="unchanged", summary="s", facts=(("a", "1"),), claim_holds=True)
    return Guide.for_lesson(found, answer)


def test_the_run_stops_at_the_question_once_and_each_browser_answers_once() -> None:
    g = guide()
    assert g.ask_at == 15
    assert g.stop_at(10.0, 30.0) == 15.0  # a run toward t = 30 stops at the question
    assert g.vote("a", "slower") == ERR_NOT_ASKING  # not asked yet
    assert g.reached(15.0) and g.phase == ASKING
    assert g.vote("a", "slower") is None
    assert g.vote("a", "unchanged") == "you answered already: it slows down until Email is back"
    assert g.vote("b", "maybe") == "'maybe' is not one of this question's answers"
    assert g.vote("b", "unchanged") is None and g.vote("c", "unchanged") is None
    assert g.tally() == {"slower": 1, "fails": 0, "unchanged": 2}
    assert "answer" not in g.state(15.0)  # nobody sees the answer before the reveal
    g.reveal()
    st = g.state(16.0)
    assert st["phase"] == REVEALED and st["answer"]["correct"] == "unchanged"
    assert g.stop_at(16.0, 90.0) == 90.0  # asked once: the run goes on past it
    # saved with the simulation and read back, votes and all
    again = Guide.from_json(g.to_json(), lesson("temporal-decoupling"))  # type: ignore[arg-type]
    assert again.phase == REVEALED and again.tally() == g.tally()


def test_cards_show_in_time_order_by_the_simulated_clock() -> None:
    g = guide()
    times = [c.at for c in g.cards]
    assert times == sorted(times)
    assert g.card_index(0.0) == 0
    assert g.card_index(19.9) == times.index(15.0)
    assert g.card_index(20.0) == times.index(20.0)
    assert g.card_index(1e9) == len(times) - 1
    assert g.phase == PLAYING


# --- on the live page, over WebSockets ---------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_a_class_predicts_over_websockets_and_sees_the_measured_answer() -> None:
    import json

    from asgiref.sync import sync_to_async
    from django.test import Client

    from dashboard.models import SimulationRecord
    from dashboard.runner import RUNNERS
    from tests.web_helpers import connect, new_session, receive_until, stop_all_runners

    def open_live() -> tuple[str, str]:
        teacher = Client()
        teacher.get("/")
        r = teacher.post("/compare/", {"preset": "lesson-outage", "lesson": "temporal-decoupling"})
        assert r.status_code == 302, r.content
        return r["Location"].rstrip("/").split("/")[-1], teacher.session.session_key

    try:
        sim_id, teacher_session = await sync_to_async(open_live)()
        runner = RUNNERS[sim_id]
        assert runner.guide is not None and runner.guide.ask_at == 15
        teacher = await connect(sim_id, teacher_session)
        full = await receive_until(teacher, lambda m: m.get("full"))
        assert full["state"]["guide"]["question"].startswith("The Email service is down")
        # the run plays the lesson and stops at its question, for everyone
        await teacher.send_json_to({"command": "step", "value": 30})
        asked = await receive_until(
            teacher, lambda m: m.get("type") == "frame" and m["state"]["guide"]["phase"] == "asking"
        )
        assert asked["state"]["t"] == pytest.approx(15.0)
        assert asked["state"]["running"] is False
        viewers = []
        for choice in ("slower", "unchanged", "unchanged"):
            viewer = await connect(sim_id, await new_session())
            await receive_until(viewer, lambda m: m.get("full"))
            await viewer.send_json_to({"type": "vote", "choice": choice})
            reply = await receive_until(viewer, lambda m: m.get("type") in ("vote", "error"))
            assert reply == {"type": "vote", "choice": choice}
            viewers.append(viewer)
        # each browser answers once
        await viewers[0].send_json_to({"type": "vote", "choice": "fails"})
        again = await receive_until(viewers[0], lambda m: m.get("type") == "error")
        assert again["message"] == "you answered already: it slows down until Email is back"
        # a read-only viewer cannot reveal; the teacher sees 3 answers come in, then reveals
        await viewers[1].send_json_to({"command": "lesson.reveal"})
        assert (
            "read-only"
            in (await receive_until(viewers[1], lambda m: m.get("type") == "error"))["message"]
        )
        tallied = await receive_until(
            teacher, lambda m: m.get("type") == "frame" and m["state"]["guide"]["votes"] == 3
        )
        assert tallied["state"]["guide"]["tally"] == {"slower": 1, "fails": 0, "unchanged": 2}
        await teacher.send_json_to({"command": "lesson.reveal"})
        for comm in (teacher, *viewers):
            shown = await receive_until(
                comm, lambda m: m.get("type") == "frame" and "answer" in m["state"]["guide"]
            )
            answer = shown["state"]["guide"]["answer"]
            assert answer["correct"] == "unchanged" and answer["claim_holds"] is True
        # saved with the simulation, and a viewer who reloads is told its own answer
        await runner.flush()
        record = await SimulationRecord.objects.aget(pk=sim_id)
        assert record.guide["phase"] == "revealed" and len(record.guide["votes"]) == 3
        for comm in (teacher, *viewers):
            await comm.disconnect()
        session = await new_session()
        again_viewer = await connect(sim_id, session)
        rejoined = await receive_until(again_viewer, lambda m: m.get("full"))
        assert rejoined["my_vote"] is None  # a new browser has not answered
        await again_viewer.disconnect()
        assert json.dumps(record.guide)  # plain data
    finally:
        await stop_all_runners()
