"""End to end, in real headless Chromium against a real daphne server: temporal decoupling."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Page


def number(page: Page, selector: str) -> float:
    return float(page.locator(selector).inner_text().replace(",", "").split()[0])


def wait_number(page: Page, selector: str, predicate: str, timeout: float = 20_000) -> None:
    """Wait until the number shown by ``selector`` satisfies ``predicate`` (JS, in ``n``)."""
    page.wait_for_function(
        "([sel, pred]) => { const el = document.querySelector(sel); if (!el) return false;"
        " const n = parseFloat(el.textContent.replace(/,/g, '')); return eval(pred); }",
        arg=[selector, predicate],
        timeout=timeout,
    )


def test_take_a_consumer_down_and_watch_temporal_decoupling(
    page: Page, live_server_url: str, artifacts_dir: Path
) -> None:
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(live_server_url + "/")
    page.click("#preset-ecommerce button[type=submit]")
    page.wait_for_url("**/simulations/*/")
    page.select_option("#speed-select", "5")
    page.wait_for_function(
        "document.querySelector('#command-result').textContent.includes('speed')"
    )
    page.click("#btn-start")
    wait_number(page, "#frames-received", "n > 10")
    wait_number(page, "#sim-time", "n > 5")

    # take Notification down: the producer carries on, Notification's lag piles up
    page.click("tr.controls-row[data-group=notification] button[data-role=toggle]")
    page.wait_for_function(
        "document.querySelector('#group-notification-status').textContent.trim() === 'down'"
    )
    produced_at_outage = number(page, "#producer-order-service-produced")
    processed_at_outage = number(page, "#group-notification-processed")
    wait_number(page, "#group-notification-lag", "n > 60")
    assert number(page, "#producer-order-service-produced") > produced_at_outage + 40
    # nothing new is taken; the one event in flight (one instance) may still finish
    assert number(page, "#group-notification-processed") <= processed_at_outage + 1
    page.screenshot(path=str(artifacts_dir / "live-notification-down.png"), full_page=False)

    # bring it back: it catches up from its committed offset and the lag drains
    page.click("tr.controls-row[data-group=notification] button[data-role=toggle]")
    page.wait_for_function(
        "document.querySelector('#group-notification-status').textContent.trim() !== 'down'"
    )
    wait_number(page, "#group-notification-lag", "n <= 2", timeout=30_000)
    assert number(page, "#group-notification-processed") > processed_at_outage + 60
    page.screenshot(path=str(artifacts_dir / "live-caught-up.png"), full_page=True)
    assert errors == []
