"""A learner walks one lesson end to end in real headless Chromium."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Page


def test_a_learner_predicts_sees_the_measured_answer_then_opens_it_live(
    page: Page, live_server_url: str, artifacts_dir: Path
) -> None:
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(live_server_url + "/")
    page.click("#lesson-temporal-decoupling a")
    page.wait_for_url("**/lessons/temporal-decoupling/")
    assert "Temporal decoupling" in page.locator("h1").inner_text()
    assert page.locator(".lesson-steps li").count() >= 3
    # predict (wrongly), then run: the answer comes from the simulation, in place (htmx)
    page.check("input[name=prediction][value=slower]")
    page.click("#reveal")
    page.wait_for_selector("#measured-answer")
    answer = page.locator("#answer").inner_text()
    assert "measured something else" in answer
    assert page.locator("#measured-answer").inner_text() == "nothing: it takes as long as before"
    assert "went out twice" in answer and "exactly once" in answer
    page.screenshot(path=str(artifacts_dir / "lesson-temporal-decoupling.png"), full_page=True)
    # then watch it happen: the lesson's scenario opens live, side by side
    page.click("#open-live")
    page.wait_for_url("**/simulations/*/")
    page.wait_for_function("window.fanoutCompare && window.fanoutCompare.framesReceived > 0")
    assert "Email" in page.content()
    assert errors == []
