"""Every page on a student's phone (390x844) and on a projector (1280x720): nothing scrolls
sideways and axe-core finds no serious or critical accessibility violation. Presenter mode
fits the comparison's boards and big numbers on one projector screen; reduced motion stills
the dots. Screenshots go to test-artifacts/screens/."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page

from dashboard.settings import BASE_DIR

AXE = BASE_DIR / "node_modules" / "axe-core" / "axe.min.js"
SCREENS = [(390, 844), (1280, 720)]


def serious_violations(page: Page) -> list[dict[str, object]]:
    """axe-core's serious and critical findings on the page as it is now."""
    assert AXE.exists(), "axe-core is installed from npm by `make assets`"
    page.add_script_tag(path=str(AXE))
    found = page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
        ".map(v => ({id: v.id, impact: v.impact, nodes: v.nodes.map(n => n.target.join(' '))}))"
    )
    return [v for v in found if v["impact"] in ("serious", "critical")]


def sideways(page: Page) -> int:
    return int(
        page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    )


@pytest.fixture
def screen_page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    width, height = request.param
    context = browser.new_context(viewport={"width": width, "height": height})
    try:
        yield context.new_page()
    finally:
        context.close()


def check(page: Page, name: str, shots: Path) -> None:
    width = page.viewport_size["width"] if page.viewport_size else 0
    page.screenshot(path=str(shots / f"{name}-{width}.png"))
    assert sideways(page) <= 0, f"{name} at {width} px scrolls sideways by {sideways(page)} px"
    problems = serious_violations(page)
    assert problems == [], f"{name} at {width} px: " + json.dumps(problems)


@pytest.mark.parametrize("screen_page", SCREENS, indirect=True, ids=["phone", "projector"])
def test_every_page_fits_the_screen_and_passes_axe(
    screen_page: Page, live_server_url: str, live_server_db: Path, artifacts_dir: Path
) -> None:
    page = screen_page
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    shots = artifacts_dir / "screens"
    shots.mkdir(exist_ok=True)

    page.goto(live_server_url + "/")
    check(page, "home", shots)

    page.goto(live_server_url + "/lessons/temporal-decoupling/")
    check(page, "lesson", shots)
    page.click("#open-live")  # the comparison, with its guided lesson
    page.wait_for_url("**/simulations/*/")
    page.click("#btn-start")
    page.wait_for_function("window.fanoutCompare && window.fanoutCompare.framesReceived > 20")
    check(page, "comparison", shots)
    page.click("#btn-pause")

    page.goto(live_server_url + "/")
    page.click("#preset-ecommerce button[type=submit]")
    page.wait_for_url("**/simulations/*/")
    page.click("#btn-start")
    page.wait_for_function("window.fanout && window.fanout.framesReceived > 20")
    check(page, "simulation", shots)
    page.click("#btn-pause")

    page.goto(live_server_url + "/simulations/mine/")
    check(page, "my-simulations", shots)
    # the longest status a run can have: stopped, and why (as an idle stop leaves it, half an
    # hour on; its reason set in the database, the rest by the Stop button)
    page.locator(".run__actions button:has-text('Stop')").first.click()
    page.wait_for_selector(".run-status--stopped")
    stopped = page.locator(".run[data-status=stopped]").first.get_attribute("id") or ""
    with sqlite3.connect(live_server_db) as db:
        db.execute(
            "UPDATE dashboard_simulationrecord SET stop_reason = 'idle' WHERE id = ?",
            (stopped.removeprefix("run-"),),
        )
    page.goto(live_server_url + "/simulations/mine/")
    assert "stopped after 30 min unused" in page.locator(f"#{stopped}").inner_text()
    check(page, "my-simulations-stopped", shots)

    page.goto(live_server_url + "/scenarios/")
    check(page, "scenarios", shots)
    page.locator("form[action$='/scenarios/new'] button[type=submit]").first.click()
    page.wait_for_load_state()
    check(page, "scenario-editor", shots)
    assert errors == []


def test_presenter_mode_fits_the_boards_and_numbers_on_a_projector(
    browser: Browser, live_server_url: str, artifacts_dir: Path
) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 720})
    try:
        page = context.new_page()
        page.goto(live_server_url + "/lessons/temporal-decoupling/")
        page.click("#open-live")
        page.wait_for_url("**/simulations/*/")
        page.click("#present-toggle")
        assert "present=1" in page.url  # a reload or a bookmark keeps it
        assert page.locator(".site-header").is_hidden()
        # the share link is a QR code a class can scan from the screen
        assert page.locator("#share-box svg[role=img]").is_visible()
        page.click("#btn-start")
        page.wait_for_function("window.fanoutCompare.framesReceived > 10")
        for selector in ("#board-sync", "#board-events", "#sync-p50", "#events-p50"):
            box = page.locator(selector).bounding_box()
            assert box is not None and box["y"] + box["height"] <= 720, (selector, box)
        page.screenshot(path=str(artifacts_dir / "screens" / "presenter-comparison.png"))
        page.click("#present-toggle")
        assert "present=1" not in page.url
        assert page.locator(".site-header").is_visible()
    finally:
        context.close()


def test_reduced_motion_stills_the_dots_and_any_viewer_can_pause_them(
    browser: Browser, live_server_url: str
) -> None:
    context = browser.new_context(reduced_motion="reduce", viewport={"width": 1280, "height": 800})
    try:
        page = context.new_page()
        page.goto(live_server_url + "/")
        page.click("#preset-ecommerce button[type=submit]")
        page.wait_for_url("**/simulations/*/")
        assert page.locator("#motion-toggle").inner_text() == "Play animation"
        assert page.locator("#motion-note").is_visible()
        page.click("#btn-start")
        page.wait_for_function("window.fanout.framesReceived > 20")
        assert page.evaluate("window.fanout.dotsInFlight") == 0
        # the viewer asks for the animation after all: dots move
        page.click("#motion-toggle")
        page.wait_for_function("window.fanout.dotsInFlight > 0")
        assert page.locator("#motion-toggle").get_attribute("aria-pressed") == "false"
        # and pauses it again: they stop, the numbers go on
        page.click("#motion-toggle")
        page.wait_for_function("window.fanout.dotsInFlight === 0")
        frames = page.evaluate("window.fanout.framesReceived")
        page.wait_for_function(f"window.fanout.framesReceived > {frames + 5}")
    finally:
        context.close()
