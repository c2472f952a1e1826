"""In Chromium: a student opens lessons live until the sixth is refused, follows the refusal's
link to My simulations, stops one there, and opens the sixth after all."""

from __future__ import annotations

import re
from pathlib import Path

from playwright.sync_api import Browser, Page

# six lessons, each opened live from its page ("Open it live"); the limit is five a browser
LESSON_SLUGS = [
    "events-commands-queries",
    "temporal-decoupling",
    "adding-consumers",
    "schema-contract",
    "fat-thin-events",
    "event-sourcing",
]
SIMULATION_URL = re.compile(r".*/simulations/[0-9a-f]{12}/$")


def open_live(page: Page, base: str, slug: str) -> None:
    page.goto(f"{base}/lessons/{slug}/")
    page.click("#open-live")
    page.wait_for_load_state("domcontentloaded")


def no_sideways_scroll(page: Page) -> bool:
    return bool(
        page.evaluate(
            "document.documentElement.scrollWidth <= document.documentElement.clientWidth"
        )
    )


def test_a_refused_sixth_lesson_opens_after_stopping_one_on_my_simulations(
    browser: Browser, live_server_url: str, artifacts_dir: Path
) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 720})
    errors: list[str] = []
    try:
        page = context.new_page()
        page.on("pageerror", lambda e: errors.append(str(e)))
        for slug in LESSON_SLUGS[:5]:
            open_live(page, live_server_url, slug)
            page.wait_for_url(SIMULATION_URL)

        # the sixth is refused: the home page says why, with the way out
        open_live(page, live_server_url, LESSON_SLUGS[5])
        page.wait_for_url(f"{live_server_url}/")
        refusal = page.locator(".message--error", has_text="live simulations")
        assert "you already have 5 live simulations" in refusal.inner_text()
        refusal.get_by_role("link", name="Go to My simulations").click()
        page.wait_for_url(f"{live_server_url}/simulations/mine/")

        rows = page.locator("#run-list tbody tr")
        assert rows.count() == 5
        assert page.locator("#live-slots").inner_text() == (
            "All 5 live slots are in use: stop one to open another."
        )
        kinds = page.locator("#run-list .run__kind").all_inner_texts()
        assert kinds == ["lesson"] * 5
        newest = rows.first
        name = newest.locator(".run__open").inner_text()

        newest.get_by_role("button", name="Stop").click()  # htmx: the list comes back in place
        outcome = page.locator("#mine-outcome")
        outcome.wait_for()
        assert outcome.inner_text().startswith(f"Stopped \u201c{name}\u201d at t = ")
        assert page.url == f"{live_server_url}/simulations/mine/"
        assert newest.locator(".run-status").inner_text() == "stopped"
        assert newest.get_by_role("button", name="Stop").count() == 0
        assert page.locator("#live-slots").inner_text() == "4 of 5 live slots in use."
        page.screenshot(path=str(artifacts_dir / "my-simulations-1280.png"), full_page=True)
        assert no_sideways_scroll(page)
        page.set_viewport_size({"width": 390, "height": 844})
        page.wait_for_timeout(100)
        page.screenshot(path=str(artifacts_dir / "my-simulations-390.png"), full_page=True)
        assert no_sideways_scroll(page)
        assert page.locator("#run-list").bounding_box()["width"] <= 390  # type: ignore[index]
        page.set_viewport_size({"width": 1280, "height": 720})

        # back to the sixth lesson: it opens now
        page.go_back()
        page.wait_for_url(f"{live_server_url}/")
        open_live(page, live_server_url, LESSON_SLUGS[5])
        page.wait_for_url(SIMULATION_URL)
        page.goto(f"{live_server_url}/simulations/mine/")
        assert page.locator("#run-list tbody tr").count() == 6
        assert page.locator("#live-slots").inner_text() == (
            "All 5 live slots are in use: stop one to open another."
        )
        assert errors == []
    finally:
        context.close()
