"""A teacher plays a guided lesson in front of a class: three students predict on their own
screens, the teacher sees the answers come in and reveals, everyone sees the measured answer."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Browser, Page


def test_a_teacher_and_three_students_play_a_guided_lesson_and_vote(
    browser: Browser, live_server_url: str, artifacts_dir: Path
) -> None:
    errors: list[str] = []
    contexts = []

    def open_page(width: int, height: int) -> Page:
        context = browser.new_context(viewport={"width": width, "height": height})
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda e: errors.append(str(e)))
        return page

    try:
        teacher = open_page(1280, 720)  # the projector
        teacher.goto(live_server_url + "/lessons/temporal-decoupling/")
        teacher.click("#open-live")
        teacher.wait_for_url("**/simulations/*/")
        teacher.wait_for_selector("#guide")
        assert "Card 1 of 5" in teacher.locator("#guide-step").inner_text()
        assert teacher.locator("#guide-question").is_hidden()
        # the card points at the comparison's figure for its number: Email's lag chip, framed
        # and labelled (not by colour alone)
        chip = teacher.locator("#events-lag-chip-email")
        chip.and_(teacher.locator(".is-pointed")).wait_for()
        assert chip.get_attribute("data-watch") == "watch: Email's lag (events)"
        students = [open_page(1280, 720), open_page(1280, 720), open_page(390, 844)]
        for student in students:
            student.goto(teacher.url)
            student.wait_for_selector("#guide")
            assert student.locator("[data-guide]").count() == 0  # only the teacher moves on
        # the teacher skips to the next card: the run plays to the question and pauses there
        teacher.click("[data-guide=next]")
        for page in (teacher, *students):
            page.wait_for_selector("#guide-question:not([hidden])", timeout=15_000)
            assert "Card 2 of 5" in page.locator("#guide-step").inner_text()
            assert "The Email service is down" in page.locator("#guide-question").inner_text()
        assert teacher.locator("#sim-status").inner_text() == "paused"
        # the second card's number is the event side's checkout p50: the pointer moved there
        assert teacher.locator(".is-pointed").count() == 1
        assert teacher.locator(".is-pointed #events-p50").count() == 1
        assert "watch: event checkout p50 (ms)" in (
            teacher.locator(".is-pointed").get_attribute("data-watch") or ""
        )
        # each student answers once, on their own screen
        for student, choice in zip(students, ("slower", "unchanged", "unchanged"), strict=True):
            student.click(f".guide-choice[data-choice={choice}]")
            student.wait_for_selector("#guide-mine:not([hidden])")
            assert (
                student.locator(f".guide-choice[data-choice={choice}]").get_attribute(
                    "aria-pressed"
                )
                == "true"
            )
            assert student.locator(".guide-choice[data-choice=fails]").is_disabled()
            assert student.locator("#guide-tally").is_hidden()  # no peeking before the reveal
        teacher.wait_for_function(
            "document.getElementById('guide-votes').textContent === '3 answers'"
        )
        tally = teacher.locator("#guide-tally-rows").inner_text()
        assert "1 (33%)" in tally and "2 (67%)" in tally
        teacher.screenshot(path=str(artifacts_dir / "guided-teacher-votes.png"), full_page=False)
        # the comparison's event side says what its broker stores, from the orders' payloads
        stored = teacher.locator("#events-bytes").inner_text()
        assert stored.startswith("orders: ") and "kB (" in stored, stored
        teacher.click("#guide-reveal")
        for page in (teacher, *students):
            page.wait_for_selector("#guide-answer:not([hidden])", timeout=10_000)
            assert page.locator("#guide-correct").inner_text() == (
                "nothing: it takes as long as before"
            )
        assert "it matches what was measured" in students[1].locator("#guide-yours").inner_text()
        assert "measured something else" in students[0].locator("#guide-yours").inner_text()
        assert "measured" in students[0].locator("#guide-tally-rows").inner_text()
        phone = students[2]
        assert phone.evaluate(
            "document.getElementById('guide').scrollWidth <= "
            "document.getElementById('guide').clientWidth + 1"
        )
        phone.locator("#guide").screenshot(path=str(artifacts_dir / "guided-student-phone.png"))
        students[0].locator("#guide").screenshot(
            path=str(artifacts_dir / "guided-student-answer.png")
        )
        teacher.locator("#guide").screenshot(path=str(artifacts_dir / "guided-teacher-answer.png"))
        assert errors == []
    finally:
        for context in contexts:
            context.close()


def test_event_sourcing_rebuilds_an_order_as_of_the_offset_on_the_slider(
    page: Page, live_server_url: str, artifacts_dir: Path
) -> None:
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(live_server_url + "/lessons/event-sourcing/")
    page.click("#open-live")
    page.wait_for_url("**/simulations/*/")
    page.wait_for_function(
        "window.fanout && window.fanout.send && window.fanout.framesReceived > 0"
    )
    # the guided lesson stops at its question; revealed, the run goes on to t = 30. (A send
    # before the socket is open is not sent and says so: it is tried until it is sent.)
    page.wait_for_function("window.fanout.send({command: 'step', value: 30})")
    page.wait_for_selector("#guide-question:not([hidden])")
    page.click("#guide-reveal")
    page.wait_for_selector("#guide-answer:not([hidden])")
    page.evaluate("window.fanout.send({command: 'step', value: 30})")
    page.wait_for_function("Number(document.getElementById('sim-time').textContent) >= 30")
    page.select_option("#replay-form select[name=topic]", "order-events")
    page.fill("#replay-form input[name=key]", "ord-10")
    page.click("#replay-go")
    page.wait_for_selector("#replay-result:not([hidden])")
    assert (
        "4 events with key ord-10, all in partition" in page.locator("#replay-where").inner_text()
    )
    assert "shipped" in page.locator("#replay-state").inner_text()
    # slide back to the second event: the order as it was then
    page.locator("#replay-slider").fill("1")
    page.wait_for_function("document.getElementById('replay-offset').textContent === '5'")
    state = page.locator("#replay-state").inner_text()
    assert "paid" in state and "shipped" not in state
    events = page.locator("#replay-events").inner_text()
    assert "PaymentProcessed — applied" in events and "OrderShipped — not yet" in events
    page.locator("#replay").screenshot(path=str(artifacts_dir / "replay-as-of-offset.png"))
    assert errors == []
