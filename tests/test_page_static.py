"""The simulation page on its own: templates rendered with a fake context, frames from the engine.

No view, runner or WebSocket consumer is involved: the page is rendered with Django's template
engine, served with the static files by a tiny HTTP server, and fed frames built by
`dashboard.frames.build_frame` through `FanoutSim.feed` — the same entry point the WebSocket
handler uses. The WebSocket itself cannot connect here, which is also tested: the page says it is
reconnecting, without console errors.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import mimetypes
import struct
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from django.contrib.staticfiles import finders
from django.template.loader import render_to_string
from django.test import RequestFactory
from playwright.sync_api import Page

import simulator
from dashboard.frames import RunState, build_frame

BASE_DIR = Path(__file__).resolve().parent.parent
PRESET = BASE_DIR / "simulator" / "presets" / "ecommerce.yaml"
SIM_ID = "static-test"
PAGE_PATH = f"/simulations/{SIM_ID}/"
READ_ONLY_PATH = f"/simulations/{SIM_ID}/watch/"
CONTROL_URL = f"/simulations/{SIM_ID}/control"
WS_PATH = f"/ws/simulations/{SIM_ID}/"
SPEEDS = [0.1, 0.25, 0.5, 1, 2, 5, 10, 25, 50, 100]

# 40 coarse frames (0.25 s) then 40 live-rate ones (0.05 s): 12 simulated seconds in all.
COARSE_FRAMES = 40
FINE_FRAMES = 40
PAYMENT_FAILS_AT = 12  # frame seq: payment's failure rate goes to 0.6 (dead letters follow)
NOTIFICATION_DOWN_AT = 24  # frame seq: the notification service goes down and stays down


def make_frames() -> list[dict[str, Any]]:
    """Frames as the live runner sends them (JSON round-tripped), from the e-commerce preset."""
    scenario = simulator.load_scenario(PRESET)
    sampler = simulator.EventSampler(200, seed=1)
    sim = simulator.Simulation(scenario, observers=(sampler,), trace=True)
    run = RunState(SIM_ID, running=True, speed=1.0, effective_speed=1.0)
    frames = []
    t = 0.0
    for seq in range(1, COARSE_FRAMES + FINE_FRAMES + 1):
        t += 0.25 if seq <= COARSE_FRAMES else 0.05
        sim.run_until(t)
        if seq == PAYMENT_FAILS_AT:
            sim.apply({"command": "consumer.failure_rate", "consumer": "payment", "value": 0.6})
        if seq == NOTIFICATION_DOWN_AT:
            sim.apply({"command": "consumer.down", "consumer": "notification"})
        frame = build_frame(sim, run, sampler, seq, full=(seq == 1), latency=(seq % 5 == 0))
        frames.append(json.loads(json.dumps(frame)))
    return frames


@pytest.fixture(scope="module")
def frames() -> list[dict[str, Any]]:
    return make_frames()


def page_context(frame: dict[str, Any], *, can_control: bool) -> dict[str, Any]:
    """The context the lead's `simulation_page` view passes (see the page contract)."""
    return {
        "sim_id": SIM_ID,
        "ws_path": WS_PATH,
        "initial_frame": frame,
        "scenario_name": frame["state"]["scenario"],
        "scenario_description": "The lesson's six steps, as a simulation.",
        "speeds": SPEEDS,
        "control_url": CONTROL_URL,
        "api_url": f"/api/simulations/{SIM_ID}",
        "can_control": can_control,
    }


def render_page(frame: dict[str, Any], *, can_control: bool = True) -> str:
    request = RequestFactory().get(PAGE_PATH)
    return render_to_string(
        "simulation.html", page_context(frame, can_control=can_control), request=request
    )


def render_home() -> str:
    presets = [
        {"slug": "basic", "name": "One producer, one consumer", "description": "The smallest."},
        {"slug": "ecommerce", "name": "E-commerce order flow", "description": "Six steps."},
    ]
    lessons = [{"slug": "eda", "title": "Event-Driven Architecture", "url": "/lessons/eda/"}]
    context = {"presets": presets, "create_url": "/simulations/", "lessons": lessons}
    return render_to_string("home.html", context, request=RequestFactory().get("/"))


# --- the templates, without a browser -----------------------------------------------------


def test_page_has_forms_templates_and_the_initial_frame(frames: list[dict[str, Any]]) -> None:
    html = render_page(frames[0])

    assert 'id="command-result" aria-live="polite"' in html
    assert f'hx-post="{CONTROL_URL}"' in html
    assert f'action="{CONTROL_URL}"' in html
    assert "csrfmiddlewaretoken" in html
    for template_id in ("tpl-group-controls", "tpl-producer-controls", "tpl-redrive"):
        assert f'<template id="{template_id}">' in html
    for command in ("start", "pause", "step", "reset", "consumer.crash", "consumer.remove"):
        assert f'value="{command}"' in html
    assert 'name="command" value="consumer.add"' in html
    assert '<option value="orders">orders</option>' in html  # topics from the initial frame
    assert '<option value="1" selected>' in html  # the run's speed
    assert 'id="initial-frame" type="application/json"' in html
    assert f'data-ws-path="{WS_PATH}"' in html
    assert "watching read-only" not in html


def test_read_only_page_has_no_forms(frames: list[dict[str, Any]]) -> None:
    html = render_page(frames[0], can_control=False)

    assert "watching read-only" in html
    assert "<form" not in html
    assert "<template" not in html
    assert 'id="sim-time"' in html
    assert 'data-can-control="false"' in html


def test_home_renders_its_presets_and_lessons() -> None:
    presets = [{"slug": "ecommerce", "name": "E-commerce order flow", "description": "Six steps."}]
    lessons = [{"slug": "eda", "title": "Event-Driven Architecture", "url": "/lessons/eda/"}]
    request = RequestFactory().get("/")
    context = {"presets": presets, "create_url": "/simulations/", "lessons": lessons}

    html = render_to_string("home.html", context, request=request)
    without = render_to_string("home.html", {**context, "lessons": []}, request=request)

    assert 'id="page-heading"' in html
    assert '<form method="post" action="/simulations/"' in html
    assert 'name="preset" value="ecommerce"' in html
    assert 'name="seed"' in html
    assert '<a href="/lessons/eda/">Event-Driven Architecture</a>' in html
    assert "Lessons" not in without


# --- in Chromium ------------------------------------------------------------------------------


WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class _Handler(http.server.BaseHTTPRequestHandler):
    """Rendered pages by path, /static/ through Django's static file finders, and WS_PATH.

    WS_PATH refuses the upgrade (404) unless the test gave the server a `ws_session`: then it
    completes the handshake, sends the session's messages, answers trace requests from the
    session's events, and closes after the first trace (one session; later attempts are refused).
    """

    protocol_version = "HTTP/1.1"
    server: _StaticServer

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == WS_PATH and self.server.ws_session is not None:
            session, self.server.ws_session = self.server.ws_session, None
            self._websocket(session)
            return
        body: bytes | None = None
        ctype = "text/html; charset=utf-8"
        if path in self.server.pages:
            body = self.server.pages[path].encode()
        elif path.startswith("/static/"):
            found = finders.find(path.removeprefix("/static/"))
            if isinstance(found, str):
                body = Path(found).read_bytes()
                ctype = mimetypes.guess_type(found)[0] or "application/octet-stream"
                if ctype.startswith("text/") or ctype.endswith("javascript"):
                    ctype += "; charset=utf-8"
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # A minimal RFC 6455 server side: text frames out, masked text frames in.

    def _websocket(self, session: WsSession) -> None:
        key = self.headers["Sec-WebSocket-Key"]
        accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        self.send_response(101, "Switching Protocols")
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.end_headers()
        for message in session.send:
            self._ws_send(message)
        while (message := self._ws_recv()) is not None:
            session.received.append(message)
            if message.get("type") == "trace":
                corr = message["correlation_id"]
                hops = [e for e in session.events if e["correlation_id"] == corr]
                self._ws_send({"type": "trace", "correlation_id": corr, "hops": hops})
                break
        self.wfile.write(b"\x88\x00")  # close
        self.close_connection = True

    def _ws_send(self, message: dict[str, Any]) -> None:
        data = json.dumps(message).encode()
        n = len(data)
        if n < 126:
            head = bytes([0x81, n])
        elif n < 65536:
            head = bytes([0x81, 126]) + struct.pack(">H", n)
        else:
            head = bytes([0x81, 127]) + struct.pack(">Q", n)
        self.wfile.write(head + data)
        self.wfile.flush()

    def _ws_recv(self) -> dict[str, Any] | None:
        head = self.rfile.read(2)
        if len(head) < 2:
            return None
        opcode, n = head[0] & 0x0F, head[1] & 0x7F
        if n == 126:
            n = struct.unpack(">H", self.rfile.read(2))[0]
        elif n == 127:
            n = struct.unpack(">Q", self.rfile.read(8))[0]
        mask = self.rfile.read(4) if head[1] & 0x80 else b"\0\0\0\0"
        data = bytes(b ^ mask[i % 4] for i, b in enumerate(self.rfile.read(n)))
        if opcode == 0x8:
            return None
        message: dict[str, Any] = json.loads(data) if opcode == 0x1 else {}
        return message


@dataclass
class WsSession:
    send: list[dict[str, Any]]
    events: list[dict[str, Any]]
    received: list[dict[str, Any]] = field(default_factory=list)


class _StaticServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    pages: dict[str, str]
    ws_session: WsSession | None = None


@pytest.fixture(scope="module")
def static_server(frames: list[dict[str, Any]], vendor_assets: Path) -> Iterator[_StaticServer]:
    server = _StaticServer(("127.0.0.1", 0), _Handler)
    server.pages = {
        PAGE_PATH: render_page(frames[0]),
        READ_ONLY_PATH: render_page(frames[0], can_control=False),
        "/": render_home(),
    }
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def static_site(static_server: _StaticServer) -> Iterator[str]:
    """Base URL of the static server; its WebSocket refuses unless a test sets a session."""
    static_server.ws_session = None
    yield f"http://127.0.0.1:{static_server.server_address[1]}"
    static_server.ws_session = None


# Chromium itself logs a refused WebSocket handshake as a console error, whatever the page does.
REFUSED_WS = "WebSocket connection to 'ws://127.0.0.1:{port}" + WS_PATH + "' failed: "


def collect_errors(page: Page, site: str) -> list[str]:
    """Console errors, uncaught exceptions and failed requests.

    Only Chromium's own line about the refused WebSocket is let through: the page's code logs
    nothing at error level when the connection fails (it shows the reconnect banner).
    """
    refused = REFUSED_WS.format(port=site.rsplit(":", 1)[1])
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(f"pageerror: {error}"))
    page.on(
        "console",
        lambda msg: (
            errors.append(msg.text)
            if msg.type == "error" and not msg.text.startswith(refused)
            else None
        ),
    )
    page.on(
        "response",
        lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None,
    )
    return errors


def feed(page: Page, frames: list[dict[str, Any]], *, every_ms: int) -> None:
    page.evaluate(
        """async ([frames, every]) => {
            for (const f of frames) {
                FanoutSim.feed(f);
                await new Promise((r) => setTimeout(r, every));
            }
        }""",
        [frames, every_ms],
    )


def text(page: Page, selector: str) -> str:
    return page.locator(selector).inner_text().strip()


def test_simulation_page_shows_the_last_frame(
    page: Page, static_site: str, frames: list[dict[str, Any]], artifacts_dir: Path
) -> None:
    errors = collect_errors(page, static_site)
    page.goto(static_site + PAGE_PATH)
    page.wait_for_function("window.fanout && window.fanout.framesReceived === 1")
    # Nothing answers the WebSocket here: the page says so and keeps trying.
    page.locator("#ws-banner").wait_for(state="visible")
    assert "reconnecting" in text(page, "#ws-banner")

    feed(page, frames[1:], every_ms=25)
    # while the last frames' dots are still in flight
    page.locator("#diagram").screenshot(path=artifacts_dir / "simulation-static-diagram.png")
    last = frames[-1]
    state = last["state"]
    page.wait_for_function(
        "t => document.getElementById('sim-time').textContent === t", arg=f"{last['t']:.2f}"
    )

    assert text(page, "#sim-status") == "running"
    assert text(page, "#frames-received") == str(len(frames))
    for name, producer in state["producers"].items():
        assert text(page, f"#producer-{name}-produced") == str(producer["produced"])
    for name, group in state["groups"].items():
        assert text(page, f"#group-{name}-lag") == str(group["lag"])
        assert text(page, f"#group-{name}-lag-ms") == str(round(group["lag_ms"]))
        assert text(page, f"#group-{name}-processed") == str(group["processed"])
        assert text(page, f"#group-{name}-dead-lettered") == str(group["dead_lettered"])
        assert text(page, f"#group-{name}-status") == group["status"]
    # temporal decoupling: the producer carried on while notification was down
    assert state["groups"]["notification"]["status"] == "down"
    assert state["groups"]["notification"]["lag"] > 0
    # the narrative is the server's, from the present figures, as it is (never markup)
    story = [s["text"] for s in state["story"]]
    assert any("Notification" in s and "down" in s for s in story), story
    shown = page.locator("#insight li").all_inner_texts()
    assert [line.split(" ", 1)[1] for line in shown] == story
    assert page.locator("#group-row-notification").get_attribute("class") == "group-row is-down"
    toggle = page.locator('.controls-row[data-group="notification"] [data-role="toggle"]')
    assert toggle.get_attribute("value") == "consumer.up"

    # dots are drawn, numbers are the frame's, the sample only feeds the animation and the log
    page.evaluate("f => FanoutSim.feed(f)", {**last, "t": last["t"] + 0.05, "seq": last["seq"] + 1})
    page.wait_for_function("window.fanout.dotsInFlight > 0", timeout=2000)
    assert page.evaluate("window.fanout.rafCount") > 0
    assert page.evaluate("window.fanout.lastState.t") == state["t"]
    page.locator("#event-log").scroll_into_view_if_needed()
    page.wait_for_function("document.querySelectorAll('#event-log-rows tr').length > 0")
    assert page.locator("#event-log-rows tr").count() <= 300

    # per-service controls were cloned from the template and carry their consumer
    consumers = page.locator('.controls-row input[name="consumer"]').evaluate_all(
        "els => [...new Set(els.map(e => e.value))]"
    )
    assert consumers == list(state["groups"])
    assert page.locator('#producer-row-order-service input[name="producer"]').input_value() == (
        "order-service"
    )

    # charts were drawn by uPlot
    for chart in ("lag", "lag-time", "throughput", "latency"):
        assert page.locator(f"#chart-{chart} .uplot").count() == 1

    # dead letters: payment's, with the payload shown as text on click
    payment_letters = state["groups"]["payment"]["dead_letters"]
    assert payment_letters, "the fixture should produce dead letters"
    entries = page.locator("#dlq-payment .dlq-entry")
    page.wait_for_function(
        "n => document.querySelectorAll('#dlq-payment .dlq-entry').length === n",
        arg=len(payment_letters),
    )
    entries.first.locator(".dlq-entry__summary").click()
    payload = entries.first.locator(".dlq-entry__payload")
    assert payload.is_visible()
    assert json.loads(payload.inner_text()) == payment_letters[0]["payload"]
    # where it went, with the headers a DLT consumer would read
    headers = entries.first.locator(".dlq-entry__headers").inner_text()
    assert json.loads(headers.removeprefix("headers ")) == payment_letters[0]["headers"]
    assert "→ orders.DLT/" in entries.first.inner_text()

    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=artifacts_dir / "simulation-static.png", full_page=True)
    assert errors == []


def test_event_log_filters_and_trace(
    page: Page, static_site: str, frames: list[dict[str, Any]]
) -> None:
    errors = collect_errors(page, static_site)
    page.goto(static_site + PAGE_PATH)
    page.wait_for_function("window.fanout && window.fanout.framesReceived === 1")
    feed(page, frames[1:20], every_ms=0)

    # the log is filled when it is on screen (off screen it costs nothing)
    page.locator("#event-log").scroll_into_view_if_needed()
    page.wait_for_function("document.querySelectorAll('#event-log-rows tr').length > 0")
    page.select_option("#log-type", "PaymentProcessed")
    page.wait_for_function(
        "type => { const rows = [...document.querySelectorAll('#event-log-rows tr')];"
        " return rows.length > 0 && rows.every(r => r.cells[2].textContent === type); }",
        arg="PaymentProcessed",
    )

    page.select_option("#log-type", "")
    # an order is followed by its order id, which is its correlation id
    page.fill("#log-corr", "ord-1")
    page.wait_for_selector("#trace:not([hidden])")
    hops = [e for f in frames[:20] for e in f["events"] if e["correlation_id"] == "ord-1"]
    assert hops
    page.evaluate(
        "hops => FanoutSim.receive({type: 'trace', correlation_id: 'ord-1', hops})", hops[:12]
    )
    assert page.locator("#trace-hops li").count() == len(hops[:12])
    assert "Journey of ord-1" in text(page, "#trace-title")
    page.wait_for_function(
        "() => { const rows = [...document.querySelectorAll('#event-log-rows tr')];"
        " return rows.length > 0 && rows.every(r => r.cells[3].textContent === 'ord-1'); }"
    )

    # server errors are shown as text, never as markup
    page.evaluate("FanoutSim.receive({type: 'error', message: '<b>nope</b>'})")
    assert text(page, "#sim-error") == "<b>nope</b>"
    assert page.locator("#sim-error b").count() == 0
    assert errors == []


def test_read_only_page_in_chromium(
    page: Page, static_site: str, frames: list[dict[str, Any]], artifacts_dir: Path
) -> None:
    errors = collect_errors(page, static_site)
    page.goto(static_site + READ_ONLY_PATH)
    page.wait_for_function("window.fanout && window.fanout.framesReceived === 1")
    feed(page, frames[1:], every_ms=0)  # to the end, where Payment has dead letters
    page.wait_for_function("() => document.querySelectorAll('#group-rows tr').length === 5")
    page.wait_for_selector("#dlq-payment .dlq-entry")

    assert page.locator("#read-only-badge").is_visible()
    # nothing that changes the run; reading a dead-letter topic by offset is for everyone
    assert page.locator("form:not(.dlq-browse__form)").count() == 0
    assert page.locator(".dlq-browse__form").count() >= 1
    assert text(page, "#group-notification-status") == "down"
    assert errors == []


def test_websocket_frames_trace_and_reconnect(
    page: Page, static_server: _StaticServer, static_site: str, frames: list[dict[str, Any]]
) -> None:
    errors = collect_errors(page, static_site)
    session = WsSession(send=frames[:10], events=[e for f in frames for e in f["events"]])
    static_server.ws_session = session
    page.goto(static_site + PAGE_PATH)

    # the initial frame from the page, then ten over the WebSocket
    page.wait_for_function("window.fanout.framesReceived === 11")
    page.wait_for_function("document.getElementById('ws-state').textContent === 'live'")
    assert page.locator("#ws-banner").is_hidden()
    assert text(page, "#sim-time") == f"{frames[9]['t']:.2f}"

    page.fill("#log-corr", "ord-3")
    page.wait_for_function("document.querySelectorAll('#trace-hops li').length > 0")
    # frames are acknowledged once drawn, one ack for the latest drawn after every second
    # frame (flow control: docs/api.md, ACK_EVERY in live.js), in order, up to the last frame
    # sent or the one before it; and the trace asked for
    acks = [m for m in session.received if m.get("type") == "ack"]
    seqs = [a["seq"] for a in acks]
    sent = [f["seq"] for f in frames[:10] if not f.get("full")]
    assert seqs == sorted(set(seqs)) and set(seqs) <= set(sent)
    assert sent.index(seqs[-1]) >= len(sent) - 2, (seqs, sent)
    assert [m for m in session.received if m not in acks] == [
        {"type": "trace", "correlation_id": "ord-3"}
    ]
    hops = [e for e in session.events if e["correlation_id"] == "ord-3"]
    assert page.locator("#trace-hops li").count() == len(hops)

    # the server closed after the trace: the page says so and tries again (refused from now on)
    page.locator("#ws-banner").wait_for(state="visible")
    assert text(page, "#ws-state") == "disconnected"
    assert errors == []


def test_controls_post_the_contract_fields_with_htmx(
    page: Page, static_site: str, frames: list[dict[str, Any]]
) -> None:
    errors = collect_errors(page, static_site)
    posted: list[dict[str, list[str]]] = []
    headers: list[dict[str, str]] = []

    def answer(route: Any) -> None:
        posted.append(urllib.parse.parse_qs(route.request.post_data or ""))
        headers.append(route.request.headers)
        route.fulfill(status=200, content_type="text/html", body='<p class="ok">Done</p>')

    page.route("**" + CONTROL_URL, answer)
    page.goto(static_site + PAGE_PATH)
    page.wait_for_function("window.fanout && window.fanout.framesReceived === 1")
    feed(page, frames[1:], every_ms=0)
    page.wait_for_function("document.querySelector('#dlq-payment .dlq-entry') !== null")

    def submit(click: Any) -> dict[str, list[str]]:
        before = len(posted)
        click()
        page.wait_for_function("document.querySelector('#command-result .ok') !== null")
        page.evaluate("document.getElementById('command-result').textContent = ''")
        assert len(posted) == before + 1
        body = posted[-1]
        assert body.pop("csrfmiddlewaretoken")
        assert headers[-1]["hx-request"] == "true"
        return body

    notification = page.locator('.controls-row[data-group="notification"]')
    assert submit(lambda: notification.locator('[data-role="toggle"]').click()) == {
        "consumer": ["notification"],
        "command": ["consumer.up"],
    }
    payment = page.locator('.controls-row[data-group="payment"]')
    payment.locator('select[name="value"]').select_option("5")
    assert submit(lambda: payment.get_by_role("button", name="Set").first.click()) == {
        "consumer": ["payment"],
        "command": ["consumer.slow"],
        "value": ["5"],
    }
    assert submit(lambda: page.select_option("#speed-select", "10")) == {
        "command": ["speed"],
        "value": ["10"],
    }
    assert submit(lambda: page.click("#btn-pause")) == {"command": ["pause"]}
    producer = page.locator("#producer-row-order-service")
    producer.locator('input[name="value"]').fill("50")
    assert submit(lambda: producer.get_by_role("button").click()) == {
        "command": ["producer.rate"],
        "producer": ["order-service"],
        "value": ["50"],
    }
    assert submit(lambda: page.click("#dlq-payment .dlq-group__action button")) == {
        "command": ["dead_letters.redrive"],
        "consumer": ["payment"],
    }

    page.click("#add-service summary")
    page.click("#fill-fraud")
    assert submit(lambda: page.click('#add-service-form button[type="submit"]')) == {
        "command": ["consumer.add"],
        "name": ["fraud"],
        "label": ["Fraud Service"],
        "topics": ["orders"],
        "events": ["OrderPlaced"],
        "filter_field": ["total"],
        "filter_op": [">"],
        "filter_value": ["5000"],
        "dist": ["lognormal"],
        "mean_ms": ["40"],
        "instances": ["1"],
        "from": ["latest"],
    }
    assert errors == []


def test_home_page_lists_presets(page: Page, static_site: str, artifacts_dir: Path) -> None:
    errors = collect_errors(page, static_site)
    page.goto(static_site + "/")

    assert page.locator("#preset-list .card").count() == 2
    assert page.locator("#lessons-heading").inner_text() == "Lessons"
    page.screenshot(path=artifacts_dir / "home-static.png", full_page=True)
    assert errors == []


def test_hundreds_of_services_draw_as_a_grid_and_keep_animating(
    page: Page, static_site: str, artifacts_dir: Path
) -> None:
    """The scale lesson: 300 services in compact state, a grid of cells, still live."""
    import simulator
    from dashboard.frames import RunState, build_frame

    sc = simulator.load_scenario(
        Path(__file__).resolve().parent.parent / "simulator/presets/lesson-scale.yaml"
    )
    sampler = simulator.EventSampler(150, seed=1)
    sim = simulator.Simulation(sc, observers=(sampler,))
    run = RunState("demo", running=True)
    scale_frames = []
    for seq in range(1, 21):
        sim.run_until(seq * 0.05)
        scale_frames.append(build_frame(sim, run, sampler, seq, full=seq == 1))
    assert scale_frames[-1]["state"]["compact"] is True
    errors = collect_errors(page, static_site)
    page.goto(static_site + PAGE_PATH)
    page.wait_for_function("window.fanout && window.fanout.framesReceived === 1")
    feed(page, scale_frames, every_ms=40)
    # the table lists the twelve furthest behind and says how the other 288 stand, so the page
    # stays a sensible height; a button lists them all
    page.wait_for_function("document.querySelectorAll('[id^=group-row-]').length === 12")
    assert text(page, "#groups-more-text").startswith("288 more services: all up")
    raf = page.evaluate("window.fanout.rafCount")
    page.wait_for_timeout(500)
    assert page.evaluate("window.fanout.rafCount") > raf + 10  # still animating
    assert page.locator("#group-rows .status").first.inner_text() == "up"
    page.click("#groups-more-toggle")
    page.evaluate("f => FanoutSim.feed(f)", {**scale_frames[-1], "seq": 99, "t": 5.0})
    page.wait_for_function("document.querySelectorAll('[id^=group-row-]').length === 300")
    assert text(page, "#groups-more-toggle") == "List only the furthest behind"
    page.locator("canvas").first.screenshot(path=str(artifacts_dir / "simulation-300.png"))
    assert errors == []
