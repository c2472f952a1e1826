"""In headless Chromium against daphne: frames come as deltas over a compressed WebSocket, and a
page that stops drawing is told it gets fewer frames than the run makes, then told it is over."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from playwright.sync_api import Page

SENTENCE = re.compile(
    r"^Your screen is getting \d+ of \d+ frames? a second: "
    r"the numbers are exact, the animation is thinned\.$"
)


def test_a_page_that_stops_drawing_is_told_it_gets_fewer_frames_then_that_it_is_over(
    page: Page, live_server_url: str, artifacts_dir: Path
) -> None:
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    # what the server answered to the browser's WebSocket handshake
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    extensions: list[str] = []

    def handshake(event: Any) -> None:
        headers = {k.lower(): v for k, v in event["response"]["headers"].items()}
        extensions.append(headers.get("sec-websocket-extensions", ""))

    cdp.on("Network.webSocketHandshakeResponseReceived", handshake)
    page.goto(live_server_url + "/")
    page.click("#preset-ecommerce button[type=submit]")
    page.wait_for_url("**/simulations/*/")
    page.click("#btn-start")
    page.wait_for_function("Number(document.querySelector('#frames-received').textContent) > 40")
    assert page.locator("#ws-slow").is_hidden()
    # the browser took permessage-deflate: the frames it drew came compressed, as deltas
    assert any(e.startswith("permessage-deflate") for e in extensions), extensions

    # the page stops drawing (a busy or hidden tab): its animation frames are held back, so it
    # acknowledges nothing and the server stops after its window of frames
    page.evaluate(
        """() => {
          window.__held = [];
          window.__raf = window.requestAnimationFrame;
          window.requestAnimationFrame = (cb) => (window.__held.push(cb), 0);
        }"""
    )
    page.wait_for_function("!document.getElementById('ws-slow').hidden", timeout=15_000)
    said = page.locator("#ws-slow").inner_text()
    assert SENTENCE.match(said), said
    assert page.locator("#ws-state").inner_text() == "live"  # the connection itself is fine
    page.screenshot(path=str(artifacts_dir / "slow-notice.png"), full_page=False)

    # drawing again: the latest frame comes whole, then deltas, and the notice goes
    page.evaluate(
        """() => {
          window.requestAnimationFrame = window.__raf;
          for (const cb of window.__held.splice(0)) window.__raf(cb);
        }"""
    )
    page.wait_for_function("document.getElementById('ws-slow').hidden", timeout=15_000)
    shown = int(page.locator("#frames-received").inner_text().replace(",", ""))
    page.wait_for_function(
        f"Number(document.querySelector('#frames-received').textContent) > {shown + 20}"
    )
    assert errors == []
