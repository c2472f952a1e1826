"""How smoothly the simulation page draws in headless Chromium: requestAnimationFrame callbacks
per second, long tasks, WebSocket frames received per second, and whether the engine said it
was behind.

Starts its own daphne (in-memory layer, temp SQLite) and opens the page in Debian's Chromium
(Playwright). Two modes:

- e-commerce (the default): creates the e-commerce preset through ``POST /api/simulations`` with
  its order rate raised so the sampled event stream keeps about a thousand dots moving, starts it
  (x2 by default) and measures. Target: >= 55 frames/s with 1,000 events in flight.
- ``--lesson scale``: what a teacher runs. Opens ``/lessons/scale/``, clicks "Open it live"
  (``#open-live``), then Start (``#btn-start``) at x1: 300 consumer services, drawn as a grid of
  cells. At the lesson's question the run pauses; the script reveals the answer and presses Start
  again, waits two seconds and measures. Target: >= 30 frames/s, no long task over 200 ms, the
  engine not behind.

In each of ``--windows`` windows of ``--seconds`` s it reads, in the page:
``window.fanout.rafCount`` (rAF callbacks), ``window.fanout.framesReceived`` (WebSocket frames),
the long tasks a ``PerformanceObserver({type: "longtask"})`` saw (count, total and longest), and,
every 0.25 s, whether ``#sim-behind`` is visible and ``#sim-effective-speed``; and the CPU the
server (daphne) and the browser's processes used (``/proc``: the machine shares it between them).

    .venv/bin/python bench/page_fps.py [--rate 400] [--speed 2] [--seconds 5] [--json]
    .venv/bin/python bench/page_fps.py --lesson scale [--json] [--trace] [--profile]

Where the time goes, over the last window:

- ``--trace`` records a Chrome trace and prints the page's main-thread CPU by phase (scripts in
  requestAnimationFrame, other scripts, style, layout, paint, canvas raster at commit, GC) and the
  busiest other threads (``--trace-out F`` saves it for chrome://tracing or Perfetto).
- ``--profile`` records a CPU profile (DevTools Protocol ``Profiler``) and prints the functions
  with the most self time, then the page's own with the most total time (``--profile-out F``).
- ``--replace static/js/diagram.js=/tmp/old.js`` serves another file for that URL: the before and
  after of a change in the same conditions.

``--server-only`` runs the same scenario with no browser (created through the JSON API, read twice
a second): whether the engine is behind on its own, without the browser's share of the CPU.

Exits 0 whatever the figures say: the verdicts are printed (and in ``--json``), not asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import defaultdict
from pathlib import Path
from typing import Any

import yaml
from playwright.sync_api import Page, sync_playwright

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
LONG_TASK_LIMIT_MS = 200

# Installed before any page script: every long task (>= 50 ms of main-thread work) is kept.
LONG_TASKS_INIT = """
window.__longTasks = [];
try {
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) window.__longTasks.push([e.startTime, e.duration]);
  }).observe({ type: "longtask", buffered: true });
} catch (err) {
  window.__longTasks = null;  // not supported: reported as such
}
"""

SAMPLE_JS = """() => {
  const f = window.fanout || {};
  const behind = document.getElementById("sim-behind");
  const eff = document.getElementById("sim-effective-speed");
  const st = f.lastState || {};
  return {
    now: performance.now(),
    raf: f.rafCount || 0,
    frames: f.framesReceived || 0,
    dots: f.dotsInFlight || 0,
    behind: !!(behind && !behind.hidden),
    effective: eff ? parseFloat(eff.textContent) : null,
    t: typeof st.t === "number" ? st.t : null,
    running: !!st.running,
  };
}"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def post(url: str, doc: object, token: str | None = None) -> dict:
    req = urllib.request.Request(
        url, data=json.dumps(doc).encode(), headers={"Content-Type": "application/json"}
    )
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=10) as r:
        return dict(json.load(r))


def long_tasks(page: Page, t0: float, t1: float) -> dict[str, Any]:
    """The long tasks that started in [t0, t1) (page clock, ms)."""
    tasks = page.evaluate("window.__longTasks")
    if tasks is None:
        return {"count": None, "total_ms": None, "max_ms": None}
    durs = [d for s, d in tasks if t0 <= s < t1]
    return {"count": len(durs), "total_ms": sum(durs), "max_ms": max(durs, default=0.0)}


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def descendants(root: int) -> list[int]:
    """Every process below ``root`` (the browser's processes, under this one)."""
    parent: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                parent[int(d.name)] = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parent.items() if pp == p]
        out += kids
        todo += kids
    return out


def measure(page: Page, seconds: float, server_pid: int) -> dict[str, Any]:
    """One window: what the page did in about ``seconds`` of wall time."""
    browser_pids = [p for p in descendants(os.getpid()) if p != server_pid]
    cpu0 = cpu_seconds(server_pid), sum(cpu_seconds(p) for p in browser_pids)
    w0 = time.perf_counter()
    first = page.evaluate(SAMPLE_JS)
    samples = []
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        time.sleep(0.25)
        samples.append(page.evaluate(SAMPLE_JS))
    last = samples[-1]
    wall = time.perf_counter() - w0
    cpu1 = cpu_seconds(server_pid), sum(cpu_seconds(p) for p in browser_pids)
    dt = (last["now"] - first["now"]) / 1000
    effs = [s["effective"] for s in samples if s["effective"] is not None]
    sim_dt = (last["t"] - first["t"]) if last["t"] is not None and first["t"] is not None else None
    return {
        "seconds": dt,
        "fps": (last["raf"] - first["raf"]) / dt,
        "frames_per_s": (last["frames"] - first["frames"]) / dt,
        "long_tasks": long_tasks(page, first["now"], last["now"]),
        "behind_fraction": sum(s["behind"] for s in samples) / len(samples),
        "effective_speed_mean": sum(effs) / len(effs) if effs else None,
        "effective_speed_min": min(effs) if effs else None,
        "sim_seconds_per_s": sim_dt / dt if sim_dt is not None else None,
        "running": all(s["running"] for s in samples),
        "server_cpu": (cpu1[0] - cpu0[0]) / wall,
        "browser_cpu": (cpu1[1] - cpu0[1]) / wall,
        "dots_mean": sum(s["dots"] for s in samples) / len(samples),
        "dots_min": min(s["dots"] for s in samples),
    }


def top_functions(profile: dict[str, Any], n: int = 25) -> list[dict[str, Any]]:
    """Self and total time per function (name, file:line) from a CDP ``Profiler.stop`` profile."""
    nodes = {node["id"]: node for node in profile["nodes"]}
    parent = {c: node["id"] for node in profile["nodes"] for c in node.get("children", ())}

    def key(node_id: int) -> tuple[str, str]:
        cf = nodes[node_id]["callFrame"]
        where = cf.get("url", "").rsplit("/", 1)[-1]
        if where:
            where += f":{cf.get('lineNumber', -1) + 1}"
        return (cf.get("functionName") or "(anonymous)", where)

    self_us: dict[tuple[str, str], float] = defaultdict(float)
    total_us: dict[tuple[str, str], float] = defaultdict(float)
    samples = profile.get("samples") or []
    deltas = profile.get("timeDeltas") or []
    for node_id, d in zip(samples, deltas, strict=False):
        self_us[key(node_id)] += d
        on_stack = set()
        at: int | None = node_id
        while at is not None:
            on_stack.add(key(at))
            at = parent.get(at)
        for k in on_stack:
            total_us[k] += d
    everything = sum(self_us.values()) or 1.0
    by_self = [k for k, _ in sorted(self_us.items(), key=lambda kv: -kv[1])[:n]]
    # then the page's own functions with the most time including what they call
    by_total = [
        k for k, _ in sorted(total_us.items(), key=lambda kv: -kv[1]) if k[1] and k not in by_self
    ][:n]
    return [
        {
            "function": f,
            "where": w,
            "ms": self_us[(f, w)] / 1000,
            "total_ms": total_us[(f, w)] / 1000,
            "share": self_us[(f, w)] / everything,
        }
        for f, w in by_self + by_total
    ]


TRACE_CATEGORIES = [
    "devtools.timeline",
    "disabled-by-default-devtools.timeline",
    "toplevel",
    "blink",
    "cc",
    "v8",
]
# Where the page's main thread spends its time: the outermost of these events (a layout forced by
# a script counts as script). Canvas drawing is recorded by the scripts and rasterised at commit
# (``LayerTreeHost::DoUpdateLayers``: the canvases' pixels, in software without a GPU).
PHASES = [
    ("requestAnimationFrame scripts", ("FireAnimationFrame",)),
    ("other scripts (WebSocket, timers, events)", ("FunctionCall", "EvaluateScript", "TimerFire")),
    ("style", ("UpdateLayoutTree",)),
    ("layout", ("Layout",)),
    ("paint", ("PrePaint", "Paint", "LocalFrameView::RunPaintLifecyclePhase")),
    ("canvas raster and layers (commit)", ("LayerTreeHost::DoUpdateLayers",)),
    ("rest of commit", ("ProxyMain::BeginMainFrame::commit",)),
    ("garbage collection", ("MajorGC", "MinorGC", "V8.GCIncrementalMarking")),
]


def trace_breakdown(raw: bytes) -> dict[str, Any]:
    """CPU of the page's main thread by phase, and of the other busy threads, from a trace."""
    doc = json.loads(raw)
    events = doc["traceEvents"] if isinstance(doc, dict) else doc
    names: dict[tuple[int, int], str] = {}
    procs: dict[int, str] = {}
    for e in events:
        if e.get("ph") == "M" and e.get("name") == "thread_name":
            names[(e["pid"], e["tid"])] = e["args"]["name"]
        elif e.get("ph") == "M" and e.get("name") == "process_name":
            procs[e["pid"]] = e["args"]["name"]
    tasks: dict[tuple[int, int], list[dict[str, Any]]] = defaultdict(list)
    by_thread: dict[tuple[int, int], list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        if e.get("ph") != "X" or "dur" not in e:
            continue
        key = (e["pid"], e["tid"])
        by_thread[key].append(e)
        if e["name"] in ("ThreadControllerImpl::RunTask", "ThreadPool_RunTask"):
            tasks[key].append(e)
    stamps = [e["ts"] for evs in by_thread.values() for e in evs]
    span = (max(stamps) - min(stamps)) / 1e6 if stamps else 1.0
    mains = [k for k in tasks if names.get(k) == "CrRendererMain"]
    main = max(mains, key=lambda k: sum(e["dur"] for e in tasks[k]))
    phase_of = {n: label for label, ns in PHASES for n in ns}
    cpu: dict[str, float] = defaultdict(float)
    wall: dict[str, float] = defaultdict(float)
    end = -1.0
    for e in sorted(by_thread[main], key=lambda e: (e["ts"], -e["dur"])):
        label = phase_of.get(e["name"])
        if label is None or e["ts"] < end:
            continue  # not a phase, or inside one already counted
        end = e["ts"] + e["dur"]
        cpu[label] += e.get("tdur", e["dur"]) / 1000
        wall[label] += e["dur"] / 1000
    busy_cpu = sum(e.get("tdur", e["dur"]) for e in tasks[main]) / 1000
    busy_wall = sum(e["dur"] for e in tasks[main]) / 1000
    frames = sum(1 for e in by_thread[main] if e["name"] == "ProxyMain::BeginMainFrame")
    threads = sorted(
        (
            (f"{procs.get(k[0], '?')}/{names.get(k, '?')}", sum(e.get("tdur", 0) for e in v) / 1000)
            for k, v in tasks.items()
            if k != main
        ),
        key=lambda kv: -kv[1],
    )[:4]
    rows = [
        {"phase": label, "cpu_ms_per_s": cpu[label] / span, "wall_ms_per_s": wall[label] / span}
        for label, _ in PHASES
    ]
    rest = busy_cpu - sum(cpu.values())
    rows.append({"phase": "other", "cpu_ms_per_s": rest / span, "wall_ms_per_s": None})
    return {
        "seconds": span,
        "main_frames_per_s": frames / span,
        "main_busy_cpu_ms_per_s": busy_cpu / span,
        "main_busy_wall_ms_per_s": busy_wall / span,
        "phases": rows,
        "other_threads_cpu_ms_per_s": [{"thread": t, "cpu_ms_per_s": c / span} for t, c in threads],
    }


def serve_file(file: str) -> Any:
    """A route handler that answers with ``file`` (a JavaScript module)."""

    def handler(route: Any) -> None:
        route.fulfill(path=file, content_type="text/javascript")

    return handler


def start_server(tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    env = {
        **os.environ,
        "DJANGO_DEBUG": "1",
        "DJANGO_DB_PATH": str(tmp / "db.sqlite3"),
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
    }
    env.pop("REDIS_URL", None)
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "daphne",
            "-b",
            "127.0.0.1",
            "-p",
            str(port),
            "dashboard.asgi:application",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(100):
        try:
            urllib.request.urlopen(url + "/", timeout=1)
            break
        except OSError:
            time.sleep(0.1)
    return server, url


def open_ecommerce(page: Page, url: str, args: argparse.Namespace) -> None:
    created = post(f"{url}/api/simulations", scenario_doc(args))
    page.goto(created["url"])
    page.wait_for_function("window.fanout && window.fanout.framesReceived > 0")
    for cmd in ({"command": "speed", "value": args.speed}, {"command": "start"}):
        post(f"{url}/api/simulations/{created['id']}/commands", cmd, created["control_token"])
    page.locator("canvas").first.scroll_into_view_if_needed()
    time.sleep(3)  # fill the diagram


def scenario_doc(args: argparse.Namespace) -> dict[str, Any]:
    """The scenario a mode runs: the lesson's preset, or e-commerce with its rate raised."""
    if args.lesson:
        for path in sorted((ROOT / "simulator/presets/lessons").glob("*.yaml")):
            lesson = yaml.safe_load(path.read_text())
            if lesson.get("slug") == args.lesson:
                return dict(
                    yaml.safe_load(
                        (ROOT / f"simulator/presets/{lesson['preset']}.yaml").read_text()
                    )
                )
        raise SystemExit(f"no lesson with slug {args.lesson!r}")
    doc = yaml.safe_load((ROOT / "simulator/presets/ecommerce.yaml").read_text())
    doc["producers"][0]["rate"] = args.rate
    for c in doc["consumers"]:
        c["instances"] = 6  # enough capacity for the raised rate
    return dict(doc)


def server_only(url: str, server_pid: int, args: argparse.Namespace) -> list[dict[str, Any]]:
    """The same scenario with no browser on the machine: is the engine behind on its own?

    Created through the JSON API (so no guided-lesson pause), started at the same speed, and
    read with ``GET /api/simulations/<id>`` twice a second (each read is one state snapshot on
    the server, about what one viewer's frame costs)."""
    created = post(f"{url}/api/simulations", scenario_doc(args))
    for cmd in ({"command": "speed", "value": args.speed}, {"command": "start"}):
        post(f"{url}/api/simulations/{created['id']}/commands", cmd, created["control_token"])
    time.sleep(2)

    def read() -> dict[str, Any]:
        with urllib.request.urlopen(f"{url}/api/simulations/{created['id']}", timeout=10) as r:
            return dict(json.load(r))

    results = []
    for _ in range(args.windows):
        cpu0, w0, first = cpu_seconds(server_pid), time.perf_counter(), read()
        samples = []
        while time.perf_counter() - w0 < args.seconds:
            time.sleep(0.5)
            samples.append(read())
        wall = time.perf_counter() - w0
        results.append(
            {
                "seconds": wall,
                "behind_fraction": sum(bool(s.get("behind")) for s in samples) / len(samples),
                "sim_seconds_per_s": (samples[-1]["t"] - first["t"]) / wall,
                "effective_speed_min": min(s.get("effective_speed") or 0 for s in samples),
                "server_cpu": (cpu_seconds(server_pid) - cpu0) / wall,
                "running": all(s.get("running") for s in samples),
            }
        )
    return results


def open_lesson(page: Page, url: str, args: argparse.Namespace) -> dict[str, Any]:
    """Open the lesson live as a teacher does; past its question; returns what setup cost."""
    page.goto(f"{url}/lessons/{args.lesson}/")
    page.click("#open-live")
    page.wait_for_function("window.fanout && window.fanout.framesReceived > 0", timeout=60_000)
    setup: dict[str, Any] = {"open_tasks": long_tasks(page, 0, 1e12)}
    if args.speed != 1:
        page.select_option("#speed-select", f"{args.speed:g}")
        page.click("form:has(#speed-select) button[type=submit]")
    page.click("#btn-start")
    page.wait_for_function("window.fanout.lastState && window.fanout.lastState.running")
    # a guided lesson pauses at its question: reveal the answer and play on
    asked = page.locator("#guide-question")
    if asked.count():
        try:
            page.wait_for_selector("#guide-question:not([hidden])", timeout=30_000)
            page.click("#guide-reveal")
            page.wait_for_selector("#guide-answer:not([hidden])", timeout=10_000)
            page.click("#btn-start")
            page.wait_for_function("window.fanout.lastState && window.fanout.lastState.running")
        except Exception as e:  # a lesson without a question, or asked already
            setup["question"] = f"not handled: {e}"
    # the diagram on screen (the guide's answer above it has pushed it down)
    page.evaluate("document.getElementById('diagram').scrollIntoView({block: 'center'})")
    time.sleep(2)  # settle after the restart
    return setup


# The draw-only replay: each diagram.js under test draws the recorded frames into its own canvases
# at 60 draws a second of page time (three per frame, as at 20 frames/s), and reading one pixel of
# each canvas after every draw makes Chromium rasterise it there and then, so the time measured
# is the script's and the raster's, with no server, network or DOM around it.
DRAW_HTML = """<!doctype html><html><head><style>body{margin:0}
.d{position:relative;width:1318px} .d canvas{position:absolute;left:0;top:0;width:100%}</style>
</head><body>{{DIVS}}<script type="module">
const frames = await (await fetch("/frames.json")).json();
const ds = [];
for (let v = 0; v < {{N}}; v++) {
  const m = await import("/v" + v + "/diagram.js");
  ds.push(new m.Diagram(document.getElementById("d" + v), { maxDots: 2000 }));
}
window.run = (v) => {
  const d = ds[v];
  let now = 1000, last = null, total = 0, draws = 0;
  d.clear();
  for (const fr of frames) {
    d.setState(fr.state);
    const t0 = last === null ? (fr.events.length ? fr.events[0].t : fr.t) : last;
    const span = fr.t - t0, base = now;
    const at = (e) => base + (span > 0 ? Math.min(1, Math.max(0, (e.t - t0) / span)) * 50 : 0);
    d.enqueue(fr.events, at);
    last = fr.t;
    for (let k = 0; k < 3; k++) {
      now += 1000 / 60;
      const a = performance.now();
      d.frame(now);
      d.bctx.getImageData(0, 0, 1, 1);
      d.fctx.getImageData(0, 0, 1, 1);
      total += performance.now() - a;
      draws++;
    }
  }
  return { ms: total / draws, draws, dots: d.count };
};
window.ready = true;
</script></body></html>"""


def draw_replay(frames_file: str, versions: list[str], runs: int = 6) -> list[dict[str, Any]]:
    """ms per draw of each diagram.js on the recorded frames, runs alternating between them."""
    divs = "".join(
        f'<div class="d" id="d{i}"><canvas data-layer="bg"></canvas>'
        f'<canvas data-layer="fg"></canvas></div>'
        for i in range(len(versions))
    )
    html = DRAW_HTML.replace("{{DIVS}}", divs).replace("{{N}}", str(len(versions)))

    def route(r: Any) -> None:
        path = r.request.url.split("//", 1)[1].split("/", 1)[1]
        if path == "":
            r.fulfill(body=html, content_type="text/html")
        elif path == "frames.json":
            r.fulfill(path=frames_file, content_type="application/json")
        elif path.startswith("v") and "/" in path:
            v, name = path.split("/", 1)
            js = versions[int(v[1:])] if name == "diagram.js" else ROOT / "static/js" / name
            r.fulfill(path=str(js), content_type="text/javascript")
        else:
            r.fulfill(status=404)

    times: list[list[float]] = [[] for _ in versions]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.route("http://draw.local/**", route)
        page.goto("http://draw.local/")
        page.wait_for_function("window.ready === true", timeout=60_000)
        for run in range(runs + 1):  # the first round warms up
            for v in range(len(versions)):
                got = page.evaluate(f"window.run({v})")
                if run:
                    times[v].append(got["ms"])
        browser.close()
    return [
        {
            "file": f,
            "ms_per_draw_median": sorted(t)[len(t) // 2],
            "ms_per_draw_min": min(t),
            "runs": t,
            "draws": got["draws"],
        }
        for f, t in zip(versions, times, strict=True)
    ]


def print_server_only(results: list[dict[str, Any]], args: argparse.Namespace) -> int:
    what = f"lesson '{args.lesson}'" if args.lesson else f"e-commerce, orders/s {args.rate:g}"
    report = {
        "mode": f"{what}, server only",
        "speed": args.speed,
        "load_average": os.getloadavg(),
        "windows": results,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(
        f"{what} at x{args.speed:g}, no browser; {args.windows} windows of {args.seconds:g} s; "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    print("  window | behind | sim s per wall s | eff. speed (min) | CPU server")
    for i, r in enumerate(results, 1):
        print(
            f"  {i:6d} | {r['behind_fraction']:6.0%} | {r['sim_seconds_per_s']:16.2f} | "
            f"{r['effective_speed_min']:16.2f} | {r['server_cpu']:10.0%}"
        )
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    ap.add_argument("--rate", type=float, default=400, help="orders/s (default 400; e-commerce)")
    ap.add_argument("--speed", type=float, default=None, help="default x2, x1 for a lesson")
    ap.add_argument("--lesson", default=None, help="a lesson's slug, e.g. scale (300 services)")
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--windows", type=int, default=3, help="measurement windows")
    ap.add_argument("--profile", action="store_true", help="CPU-profile the last window")
    ap.add_argument("--profile-out", default=None, help="save the .cpuprofile here")
    ap.add_argument(
        "--trace", action="store_true", help="trace the last window: main-thread CPU by phase"
    )
    ap.add_argument("--trace-out", default=None, help="save the trace here (chrome://tracing)")
    ap.add_argument("--screenshot", default=None, help="save a screenshot at the end")
    ap.add_argument(
        "--replace",
        action="append",
        default=[],
        metavar="URL_PATH=FILE",
        help="serve FILE for URL_PATH, e.g. static/js/diagram.js=/tmp/old.js (before/after)",
    )
    ap.add_argument(
        "--server-only",
        action="store_true",
        help="no browser: run the same scenario and report only whether the engine is behind",
    )
    ap.add_argument(
        "--record-frames",
        default=None,
        metavar="FILE",
        help="save the whole frames received while measuring, for --draw-replay (a delta"
        " message, if the server sends them, is not kept)",
    )
    ap.add_argument(
        "--draw-replay",
        nargs="+",
        default=None,
        metavar=("FRAMES", "DIAGRAM_JS"),
        help="no server: time each diagram.js drawing the recorded FRAMES (ms per draw)",
    )
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.draw_replay:
        frames_file, *versions = args.draw_replay
        rows = draw_replay(frames_file, versions or [str(ROOT / "static/js/diagram.js")])
        if args.json:
            print(json.dumps({"frames": frames_file, "versions": rows}, indent=2))
            return 0
        print(f"draw-only replay of {frames_file} ({rows[0]['draws']} draws a run, 6 runs each)")
        for row in rows:
            print(
                f"  {row['ms_per_draw_median']:5.2f} ms per draw (median; min "
                f"{row['ms_per_draw_min']:.2f})  {row['file']}"
            )
        return 0
    if args.speed is None:
        args.speed = 1.0 if args.lesson else 2.0

    tmp = Path(tempfile.mkdtemp())
    server, url = start_server(tmp)
    if args.server_only:
        try:
            alone = server_only(url, server.pid, args)
        finally:
            server.terminate()
            server.wait(timeout=10)
        return print_server_only(alone, args)
    setup: dict[str, Any] = {}
    profile_rows: list[dict[str, Any]] = []
    breakdown: dict[str, Any] | None = None
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.add_init_script(LONG_TASKS_INIT)
            recorded: list[str] = []
            recording = [False]  # set while measuring
            if args.record_frames:
                page.on(
                    "websocket",
                    lambda ws: ws.on(
                        "framereceived",
                        lambda data: (
                            recorded.append(data)
                            if recording[0] and isinstance(data, str)
                            else None
                        ),
                    ),
                )
            for spec in args.replace:
                url_path, _, file = spec.partition("=")
                page.route(f"**/{url_path.lstrip('/')}", serve_file(file))
            if args.lesson:
                setup = open_lesson(page, url, args)
            else:
                open_ecommerce(page, url, args)
            results = []
            cdp = None
            tracing = False
            recording[0] = True
            for i in range(args.windows):
                if args.profile and i == args.windows - 1:
                    cdp = page.context.new_cdp_session(page)
                    cdp.send("Profiler.enable")
                    cdp.send("Profiler.setSamplingInterval", {"interval": 200})
                    cdp.send("Profiler.start")
                if args.trace and i == args.windows - 1:
                    browser.start_tracing(page=page, categories=TRACE_CATEGORIES)
                    tracing = True
                results.append(measure(page, args.seconds, server.pid))
            if tracing:
                raw = browser.stop_tracing()
                if args.trace_out:
                    Path(args.trace_out).write_bytes(raw)
                breakdown = trace_breakdown(raw)
            if cdp is not None:
                prof = cdp.send("Profiler.stop")["profile"]
                profile_rows = top_functions(prof)
                if args.profile_out:
                    Path(args.profile_out).write_text(json.dumps(prof))
            recording[0] = False
            if args.screenshot:
                page.screenshot(path=args.screenshot)
            if args.record_frames:
                kept = [f for f in map(json.loads, recorded) if f.get("type") == "frame"]
                Path(args.record_frames).write_text(json.dumps(kept))
            frames = page.evaluate("window.fanout.framesReceived")
            groups = page.evaluate("Object.keys((window.fanout.lastState||{}).groups||{}).length")
            version = browser.version
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=10)

    worst_task = max((r["long_tasks"]["max_ms"] or 0 for r in results), default=0)
    fps_min = min(r["fps"] for r in results)
    report: dict[str, Any] = {
        "mode": f"lesson {args.lesson}" if args.lesson else "e-commerce",
        "chromium": version,
        "load_average": os.getloadavg(),
        "speed": args.speed,
        "services": groups,
        "seconds": args.seconds,
        "windows": results,
        "best_fps": max(r["fps"] for r in results),
        "min_fps": fps_min,
        "max_long_task_ms": worst_task,
        "frames_received": frames,
        "setup": setup,
        "replaced": args.replace,
    }
    if not args.lesson:
        report["rate"] = args.rate
    streaming = all(r["running"] and r["frames_per_s"] >= 5 for r in results)
    target_fps = 30 if args.lesson else 55
    report["verdict"] = {
        "streaming": streaming,
        "page_ok": streaming and fps_min >= target_fps and worst_task <= LONG_TASK_LIMIT_MS,
        "engine_ok": streaming and all(r["behind_fraction"] == 0 for r in results),
    }
    if profile_rows:
        report["profile_last_window"] = profile_rows
    if breakdown:
        report["trace_last_window"] = breakdown
    if args.json:
        print(json.dumps(report, indent=2))
        return 0

    what = (
        f"lesson '{args.lesson}' ({groups} services) at x{args.speed:g}"
        if args.lesson
        else f"e-commerce, orders/s {args.rate:g} at x{args.speed:g}"
    )
    print(
        f"{what}; {args.windows} windows of {args.seconds:g} s; Chromium {version}; "
        f"load average {os.getloadavg()[0]:.2f}; WebSocket frames received: {frames}"
    )
    for spec in args.replace:
        print(f"  served instead: {spec}")
    print(
        "  window | rAF/s | frames/s | long tasks (n, total ms, max ms) | behind | "
        "eff. speed | CPU server, browser | dots (mean)"
    )
    for i, r in enumerate(results, 1):
        lt = r["long_tasks"]
        tasks = (
            "unsupported"
            if lt["count"] is None
            else f"{lt['count']:3d} {lt['total_ms']:8.0f} {lt['max_ms']:7.0f}"
        )
        eff = r["effective_speed_mean"]
        print(
            f"  {i:6d} | {r['fps']:5.1f} | {r['frames_per_s']:8.1f} | {tasks:>32} | "
            f"{r['behind_fraction']:6.0%} | {'-' if eff is None else f'x{eff:.2f}':>10} | "
            f"{r['server_cpu']:>9.0%} {r['browser_cpu']:>8.0%} | {r['dots_mean']:,.0f}"
        )
    verdict = report["verdict"]
    if not verdict["streaming"]:
        print("NOT MEASURED: the run did not stream (no frames arrived, or it was not running)")
    if args.lesson:
        behind = max(r["behind_fraction"] for r in results)
        print(
            f"page: min {fps_min:.1f} rAF/s, longest task {worst_task:.0f} ms (target >= 30 rAF/s, "
            f"no long task over {LONG_TASK_LIMIT_MS} ms): "
            + ("met" if verdict["page_ok"] else "NOT met")
        )
        print(
            f"engine: 'behind' shown in up to {behind:.0%} of the samples (target: never): "
            + ("met" if verdict["engine_ok"] else "NOT met")
        )
        ot = setup.get("open_tasks") or {}
        if ot.get("count") is not None:
            print(
                f"opening the page: {ot['count']} long tasks, {ot['total_ms']:.0f} ms, "
                f"longest {ot['max_ms']:.0f} ms"
            )
    else:
        best = report["best_fps"]
        print(
            f"best {best:.1f}, min {fps_min:.1f} rAF/s, longest task {worst_task:.0f} ms "
            "(target >= 55 frames/s in every window with ~1,000 dots): "
            + ("met" if verdict["page_ok"] else "NOT met")
        )
    if breakdown:
        b = breakdown
        print(
            f"trace of the last window ({b['seconds']:.1f} s, {b['main_frames_per_s']:.1f} main "
            f"frames/s): page main thread busy {b['main_busy_wall_ms_per_s']:.0f} ms/s, of which "
            f"CPU {b['main_busy_cpu_ms_per_s']:.0f} ms/s (the rest: waiting for a core)"
        )
        for row in b["phases"]:
            print(f"  {row['cpu_ms_per_s']:6.1f} ms/s CPU  {row['phase']}")
        for row in b["other_threads_cpu_ms_per_s"]:
            print(f"  {row['cpu_ms_per_s']:6.1f} ms/s CPU  thread {row['thread']}")
    if profile_rows:
        print("CPU profile of the last window (self ms, total ms: with what it calls):")
        for row in profile_rows:
            print(
                f"  {row['ms']:8.1f} {row['total_ms']:8.1f} ms  {row['function']}  {row['where']}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
