"""The side-by-side comparison page in Chromium: one set of switches, two architectures.

Drives the page through its own buttons: Email slow (+500 ms) reaches the synchronous checkout
but not the event-driven one; Email down fails synchronous checkouts while the broker keeps the
events (Email's lag grows); adding a Fraud service changes the synchronous producer only.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

WAIT_S = 12.0


def number(page: Page, selector: str) -> float | None:
    """The number a big readout shows (None while it shows a dash)."""
    text = page.inner_text(selector).replace(",", "").strip()
    try:
        return float(text)
    except ValueError:
        return None


def wait_for(what: str, check: Callable[[], bool], timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


def above(page: Page, selector: str, limit: float) -> bool:
    value = number(page, selector)
    return value is not None and value > limit


def below(page: Page, selector: str, limit: float) -> bool:
    value = number(page, selector)
    return value is not None and value < limit


def event_side_unharmed(page: Page) -> bool:
    """Checked on every poll while a fault is on: the event-driven checkout stays fast and whole."""
    p50, errors = number(page, "#events-p50"), number(page, "#events-errors")
    assert p50 is not None and p50 < 50, f"event-driven checkout p50 is {p50} ms"
    assert errors == 0, f"event-driven checkout errors: {errors}%"
    return True


def open_controlled_comparison(page: Page, base: str) -> str:
    """Create a comparison from this browser's session (so it may control it) and open it."""
    page.goto(base + "/")
    token = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
    response = page.request.post(
        base + "/compare/",
        form={"preset": "sync-vs-events", "csrfmiddlewaretoken": token},
        headers={"X-CSRFToken": token, "Referer": base + "/"},
    )
    assert response.ok, response.text()
    assert "/simulations/" in response.url
    page.goto(response.url)
    return response.url


def test_one_set_of_switches_acts_on_both_architectures(
    page: Page, browser: Browser, live_server_url: str, artifacts_dir: Path
) -> None:
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.set_viewport_size({"width": 1400, "height": 900})

    url = open_controlled_comparison(page, live_server_url)
    page.wait_for_function("window.fanoutCompare && window.fanoutCompare.framesReceived > 1")
    assert page.locator("#read-only-badge").count() == 0
    page.locator("#switch-email-slow").wait_for()
    assert page.inner_text("#sync-producer-changes") == "0"
    assert page.inner_text("#events-producer-changes") == "0"

    # Start at speed 5, with the page's own controls
    page.select_option("#speed-select", "5")
    page.wait_for_function("window.fanoutCompare.lastState.speed === 5")
    page.click("#btn-start")
    wait_for("both sides to report checkouts", lambda: above(page, "#events-p50", 0))
    wait_for("a baseline", lambda: above(page, "#sim-time", 4) and below(page, "#sync-p50", 200))
    page.screenshot(path=str(artifacts_dir / "compare-healthy.png"), full_page=True)

    # Email slow (+500 ms): the synchronous checkout waits for it; the event-driven one does not
    slow = page.locator("#switch-email-slow")
    assert "Email slow (+500 ms)" in slow.inner_text()
    slow.click()
    page.wait_for_function(
        "document.getElementById('switch-email-slow').getAttribute('aria-pressed') === 'true'"
    )
    wait_for(
        "the slowdown to reach the sync checkout",
        lambda: event_side_unharmed(page) and above(page, "#sync-p50", 500),
    )
    page.screenshot(path=str(artifacts_dir / "compare-email-slow.png"), full_page=True)
    page.locator(".cmp-columns").screenshot(path=str(artifacts_dir / "compare-sides-slow.png"))

    # switch it off again: the synchronous side recovers
    slow.click()
    wait_for("the sync checkout to recover", lambda: below(page, "#sync-p50", 200), timeout=15)

    # Email down: synchronous checkouts fail; event-driven ones don't, the broker keeps the events
    errors_before = number(page, "#sync-error-count") or 0
    lag_before = number(page, "#events-lag-email") or 0
    page.click("#switch-email-down")
    wait_for(
        "sync checkouts to fail",
        lambda: event_side_unharmed(page) and above(page, "#sync-errors", 50),
    )
    wait_for(
        "Email's lag to grow",
        lambda: event_side_unharmed(page) and above(page, "#events-lag-email", max(lag_before, 20)),
    )
    assert (number(page, "#sync-error-count") or 0) > errors_before
    page.screenshot(path=str(artifacts_dir / "compare-email-down.png"), full_page=True)
    page.locator(".cmp-columns").screenshot(path=str(artifacts_dir / "compare-sides-down.png"))

    # Add a Fraud service: one producer change on the sync side, none on the event side
    page.click("#add-fraud")
    wait_for(
        "the sync producer to change", lambda: page.inner_text("#sync-producer-changes") == "1"
    )
    assert page.inner_text("#events-producer-changes") == "0"
    page.locator("#events-lag-fraud").wait_for()
    page.locator("#switches-fraud").wait_for()
    assert page.locator("#add-fraud").is_disabled()
    page.wait_for_timeout(1500)  # let the charts and the dots show it
    page.screenshot(path=str(artifacts_dir / "compare-fraud.png"), full_page=True)
    page.locator(".cmp-columns").screenshot(path=str(artifacts_dir / "compare-sides-fraud.png"))
    page.screenshot(path=str(artifacts_dir / "compare.png"))

    counters = page.evaluate("({...window.fanoutCompare, lastState: null})")
    assert counters["rafCount"] > 30
    assert counters["framesReceived"] > 30
    marks = page.evaluate("window.fanoutCompare.lastState.marks.map((m) => m.status)")
    assert "slow" in marks and "down" in marks

    # anyone else with the link watches read-only: no switches
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        viewer = context.new_page()
        viewer.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        viewer.on("pageerror", lambda e: errors.append(str(e)))
        viewer.goto(url)
        viewer.wait_for_function("window.fanoutCompare && window.fanoutCompare.framesReceived > 2")
        assert viewer.locator("#read-only-badge").inner_text() == "watching read-only"
        assert viewer.locator("#switches, #btn-start, form").count() == 0
        assert viewer.inner_text("#sync-producer-changes") == "1"
        viewer.screenshot(path=str(artifacts_dir / "compare-read-only.png"))
    finally:
        context.close()

    # Reset: back to t = 0 with the same orders; the switches and Fraud are undone
    page.click("#btn-reset")
    wait_for("the reset", lambda: page.inner_text("#sync-producer-changes") == "0")
    assert below(page, "#sim-time", 1)
    assert page.locator("#switches-fraud, #events-lag-fraud").count() == 0
    assert page.get_attribute("#switch-email-down", "aria-pressed") == "false"
    page.click("#btn-step")
    wait_for("a step", lambda: above(page, "#sim-time", 0.4))

    assert not errors, errors
