"""A student who joins late, or reloads, finds every chart already filled from t = 0 with its
fault markers, on the comparison and on the simulation page; the timeline shows what already
happened and what is still to come."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Browser, Page


def _open(browser: Browser, errors: list[str]) -> Page:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.on("pageerror", lambda e: errors.append(str(e)))
    return page


def _wait_t(page: Page, api: str, t: float) -> None:
    page.wait_for_function(
        f"window.{api} && window.{api}.lastState && window.{api}.lastState.t >= {t}",
        timeout=30_000,
    )


def test_a_late_joiner_finds_the_comparison_charts_filled_with_their_markers(
    browser: Browser, live_server_url: str, artifacts_dir: Path
) -> None:
    errors: list[str] = []
    teacher = _open(browser, errors)
    teacher.goto(live_server_url + "/")
    teacher.click("#preset-sync-vs-events button[type=submit]")
    teacher.wait_for_url("**/simulations/*/")
    teacher.select_option("#speed-select", "10")
    teacher.click("#btn-start")
    _wait_t(teacher, "fanoutCompare", 8)
    teacher.click("[data-role=down-toggle] >> nth=1")  # Email down, on both sides
    _wait_t(teacher, "fanoutCompare", 26)
    teacher.click("#btn-pause")

    student = _open(browser, errors)
    student.goto(teacher.url)  # joins at t ≈ 26 s, Email down since t ≈ 8
    # the page's own frame comes first; the history comes with the socket's first (full) frame
    student.wait_for_function(
        "window.fanoutCompare && window.fanoutCompare.framesReceived > 1"
        " && window.fanoutCompare.chartSummary().latency.rows > 1"
    )
    charts = student.evaluate("window.fanoutCompare.chartSummary()")
    for chart in ("latency", "errors", "lag"):
        assert charts[chart]["rows"] >= 20, (chart, charts[chart])
        assert charts[chart]["first"] <= 2.0, (chart, charts[chart])
    assert {"sync:p50", "events:p50"} <= set(charts["latency"]["series"])
    assert {"sync", "events"} <= set(charts["errors"]["series"])
    assert "email" in charts["lag"]["series"]
    assert any("Email" in m and ("down" in m or "crashed" in m) for m in charts["marks"]), charts
    # the timeline shows the switch among what already happened
    student.wait_for_function("document.querySelectorAll('.timeline__mark.is-past').length >= 1")
    assert "Email down" in (
        student.locator(".timeline__mark.is-past .timeline__pin").first.get_attribute("title") or ""
    )
    student.locator("#charts, .cmp-charts").first.screenshot(
        path=str(artifacts_dir / "late-joiner-comparison-charts.png")
    )
    assert errors == []


def test_a_reload_keeps_the_simulation_charts_from_the_start(
    browser: Browser, live_server_url: str
) -> None:
    errors: list[str] = []
    page = _open(browser, errors)
    page.goto(live_server_url + "/")
    page.click("#preset-email-outage button[type=submit]")  # Email down at t = 20, up at 50
    page.wait_for_url("**/simulations/*/")
    page.select_option("#speed-select", "10")
    page.click("#btn-start")
    _wait_t(page, "fanout", 25)
    page.click("#btn-pause")
    page.reload()
    page.wait_for_function(
        "window.fanout && window.fanout.framesReceived > 1"
        " && window.fanout.chartSummary().lag.rows > 1"
    )
    charts = page.evaluate("window.fanout.chartSummary()")
    assert charts["lag"]["rows"] >= 20 and charts["lag"]["first"] <= 2.0, charts["lag"]
    assert charts["throughput"]["rows"] >= 20, charts["throughput"]
    assert charts["latency"] and charts["latency"]["rows"] >= 10, charts["latency"]
    assert any("down" in m for m in charts["marks"]), charts["marks"]
    assert errors == []
