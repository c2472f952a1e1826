/* Fanout live simulation page: frames in, pixels and numbers out.
 *
 *   FanoutSim.start({wsPath, initialFrame, canControl})   once, at load (boot() below)
 *   FanoutSim.feed(frame)                                  every frame (WebSocket or a test)
 *
 * A frame only stores state and queues dot animations; everything visible is updated from one
 * requestAnimationFrame loop: the canvases every frame, the numbers table when a frame arrived,
 * charts / event log / dead letters at most 4 times a second. Counts always come from
 * `frame.state`; `frame.events` is a bounded sample, used for animation and the event log only.
 * Text from the server (names, payloads, details) is inserted with textContent, never as markup.
 */
import { $, clamp, make, setText } from "./dom.js";
import { SimulationCharts, seriesDash } from "./charts.js";
import { Diagram } from "./diagram.js";
import { correlationFromText, num, secondsText } from "./format.js";
import { LiveSocket, connectionView } from "./live.js";
import { mountMotionToggle } from "./motion.js";
import { mountFeedback } from "./feedback.js";
import { mountPresenter } from "./present.js";
import { renderStory, storyItems, storySig } from "./story.js";
import { labelCells, othersSentence, rowsToShow } from "./tables.js";

const LOG_KEEP = 2000; // sampled events kept for filtering
const LOG_ROWS = 300; // rows shown
const LOG_ROWS_PER_UPDATE = 60; // newest rows added per update: a readable sample, cheap to lay out
const PANEL_MS = 250; // charts and dead letters: at most 4 updates a second
const LOG_MS = 500; // the event log: twice a second is as fast as anyone reads it

const fanout = (window.fanout = { framesReceived: 0, rafCount: 0, dotsInFlight: 0, lastState: null });
/** For tests and the curious: what each chart holds (first time, rows, series) and its marks. */
fanout.chartSummary = () => {
  if (!charts) return {};
  const one = (t) => ({ first: t.x.length ? t.x[0] : null, rows: t.x.length, series: Array.from(t.cols.keys()) });
  const lat = charts.lat.get(charts.latencyGroup);
  return { lag: one(charts.lagT), throughput: one(charts.thrT), latency: lat ? one(lat) : null, marks: charts.marks.map((m) => m.label) };
};

const S = {
  started: false,
  canControl: false,
  wsPath: "",
  apiUrl: "",
  live: null, // the shared LiveSocket (static/js/live.js)
  shownGroups: null, // the services the table lists (all, or the furthest behind: tables.js)
  shownAt: 0,
  showAllGroups: false,
  state: null,
  t: 0,
  latency: {}, // group -> last known {t, wait_ms, end_to_end_ms, processing_ms}
  lastFrameWall: 0,
  frameGap: 50,
  numbersDirty: false,
  panelsDirty: false,
  lastPanels: 0,
  lastLog: 0,
  logDirty: false,
  log: [],
  logPending: [],
  logRebuild: true,
  traceCorr: null,
  traceWanted: null,
  logVisible: true,
};

const el = {};
let diagram = null;
let charts = null;
const producerRows = new Map();
const groupRows = new Map();
const dlqSections = new Map();
const groupIndex = new Map();
let seriesPalette = [];

/* ---- small helpers ------------------------------------------------------------------- */

function groupColour(name) {
  let i = groupIndex.get(name);
  if (i === undefined) {
    i = groupIndex.size;
    groupIndex.set(name, i);
  }
  return seriesPalette[i % seriesPalette.length] || "#888";
}

function topicColour(name) {
  const st = S.state || {};
  for (const p of Object.values(st.producers || {})) if (p.topic === name) return diagram.types.colour(p.event);
  for (const [type, topic] of diagram.emitTopic) if (topic === name) return diagram.types.colour(type);
  return "#8c959f";
}

function labelOf(name) {
  const g = ((S.state || {}).groups || {})[name];
  return (g && g.label) || name;
}

/* ---- start ------------------------------------------------------------------------------ */

function start(opts) {
  if (S.started) return;
  S.started = true;
  opts = opts || {};
  S.wsPath = opts.wsPath || "";
  S.apiUrl = opts.apiUrl || "";
  S.canControl = !!opts.canControl;

  const css = getComputedStyle(document.documentElement);
  for (let i = 0; i < 10; i++) seriesPalette.push(css.getPropertyValue("--series-" + i).trim() || "#4e79a7");

  for (const id of [
    "sim-time", "sim-status", "sim-speed", "sim-effective-speed", "sim-behind", "sim-finished", "sim-note",
    "frames-received", "ws-state", "ws-banner", "ws-banner-detail", "sim-error", "speed-select",
    "seed-input", "producer-rows", "group-rows", "type-legend", "insight", "dlq-list", "dlq-empty",
    "log-type", "log-kind", "log-corr", "log-freeze", "log-count", "event-log-rows", "trace",
    "trace-title", "trace-hops", "latency-service", "latency-now", "add-topics", "fill-fraud",
    "btn-start", "btn-pause", "command-result", "groups-more", "groups-more-text", "groups-more-toggle",
  ]) {
    el[id] = $(id);
  }

  diagram = new Diagram($("diagram"), {
    maxDots: 2000,
    groupColour,
    onSelect: selectGroup,
  });
  mountFeedback(document);
  mountPresenter(document, window, () => diagram.resize(true));
  mountMotionToggle($("motion-toggle"), (on) => {
    diagram.setMotion(on);
    const note = $("motion-note");
    if (note) note.hidden = on;
  });
  // a guided lesson's card points at the box whose number it names (static/js/guide.js)
  document.addEventListener("fanout:point", (ev) => diagram.point(ev.detail));
  charts = new SimulationCharts(
    { lag: $("chart-lag"), lagTime: $("chart-lag-time"), throughput: $("chart-throughput"), latency: $("chart-latency") },
    { groupColour, topicColour, labelOf, dashOf: (name) => seriesDash(groupIndex.get(name) || 0) }
  );

  bindUi();
  if (opts.initialFrame) feed(opts.initialFrame);
  if (S.wsPath) {
    const view = connectionView(document);
    S.live = new LiveSocket({
      path: S.wsPath,
      onMessage: receive,
      onState: (state, detail) => {
        view.state(state, detail);
        if (state === "live" && S.traceWanted !== null) requestTrace(S.traceWanted);
      },
    });
    S.showError = view.error;
    fanout.send = (obj) => S.live.send(obj);
    S.live.connect();
  }
  requestAnimationFrame(tick);
}

/* ---- frames -------------------------------------------------------------------------------- */

function feed(frame) {
  if (!S.started || !frame || frame.type !== "frame" || !frame.state) return;
  const now = performance.now();
  const st = frame.state;
  const t = typeof frame.t === "number" ? frame.t : st.t || 0;
  const prev = S.state;
  const reset = !prev || frame.full || t + 1e-9 < S.t || (st.id && prev.id && st.id !== prev.id);
  if (reset) {
    charts.reset();
    diagram.clear();
    S.log.length = 0;
    S.logPending.length = 0;
    S.logRebuild = true;
    S.latency = {};
    if (frame.history) charts.loadHistory(frame.history, st.groups, st.top);
  }
  if (S.lastFrameWall) S.frameGap = S.frameGap * 0.8 + clamp(now - S.lastFrameWall, 10, 250) * 0.2;
  S.lastFrameWall = now;

  const groups = st.groups || {};
  for (const [name, g] of Object.entries(groups)) {
    if (g.end_to_end_ms || g.wait_ms || g.processing_ms) {
      S.latency[name] = { t, wait_ms: g.wait_ms, end_to_end_ms: g.end_to_end_ms, processing_ms: g.processing_ms };
    }
  }
  for (const name of Object.keys(S.latency)) if (!groups[name]) delete S.latency[name];

  const prevT = reset ? null : S.t;
  S.state = st;
  S.t = t;
  fanout.framesReceived += 1;
  fanout.lastState = st;

  diagram.setState(st);
  const events = frame.events || [];
  if (events.length) {
    const t0 = prevT === null ? events[0].t : prevT;
    const span = t - t0;
    const gap = S.frameGap;
    diagram.enqueue(events, (e) => now + (span > 0 ? clamp((e.t - t0) / span, 0, 1) * gap : 0));
    for (const e of events) {
      S.log.push(e);
      S.logPending.push(e);
    }
    if (S.log.length > LOG_KEEP * 1.25) S.log.splice(0, S.log.length - LOG_KEEP);
    if (S.logPending.length > LOG_ROWS * 2) S.logPending.splice(0, S.logPending.length - LOG_ROWS);
  }
  charts.setEngineMarks(st.marks);
  charts.record(t, st, S.latency, now);
  S.numbersDirty = true;
  S.panelsDirty = true;
  S.logDirty = true;
}

function tick(now) {
  fanout.rafCount += 1;
  try {
    diagram.frame(now);
    fanout.dotsInFlight = diagram.count;
    if (S.numbersDirty && S.state) {
      S.numbersDirty = false;
      renderNumbers();
    }
    if (S.panelsDirty && S.state && now - S.lastPanels >= PANEL_MS) {
      S.lastPanels = now;
      S.panelsDirty = false;
      renderPanels();
    }
    if (S.logDirty && now - S.lastLog >= LOG_MS) {
      S.lastLog = now;
      S.logDirty = false;
      renderLog();
    }
    // drawn: acknowledge the frames received (flow control, docs/api.md)
    if (S.live) S.live.drawn();
  } finally {
    requestAnimationFrame(tick);
  }
}

/* ---- numbers ---------------------------------------------------------------------------- */

function renderNumbers() {
  const st = S.state;
  setText(el["sim-time"], S.t.toFixed(2));
  const status = st.running ? "running" : "paused";
  setText(el["sim-status"], status);
  el["sim-status"].className = "run-status run-status--" + status;
  if (el["btn-start"]) {
    // the button that changes something is the prominent one
    el["btn-start"].classList.toggle("btn--primary", !st.running);
    el["btn-pause"].classList.toggle("btn--primary", !!st.running);
  }
  setText(el["sim-speed"], num(st.speed === undefined ? 1 : st.speed));
  setText(el["sim-effective-speed"], num(st.effective_speed));
  el["sim-behind"].hidden = !st.behind;
  if (st.behind) setText(el["sim-behind"], "behind — the engine can't keep up: ×" + num(st.effective_speed) + " of ×" + num(st.speed));
  el["sim-finished"].hidden = !st.finished;
  if (el["sim-note"]) {
    el["sim-note"].hidden = !st.run_note;
    setText(el["sim-note"], st.run_note || "");
  }
  setText(el["frames-received"], String(fanout.framesReceived));
  const sel = el["speed-select"];
  if (sel && document.activeElement !== sel && st.speed !== undefined && sel.__server !== st.speed) {
    sel.__server = st.speed;
    for (const o of sel.options) if (parseFloat(o.value) === st.speed) sel.value = o.value;
  }
  const seed = el["seed-input"];
  if (seed && document.activeElement !== seed && st.seed !== undefined && seed.__server !== st.seed) {
    seed.__server = st.seed;
    seed.value = st.seed === null ? "" : st.seed;
  }
  syncProducers(st.producers || {});
  syncGroups(st.groups || {});
}

function syncProducers(producers) {
  const body = el["producer-rows"];
  for (const [name, row] of producerRows) {
    if (!producers[name]) {
      row.tr.remove();
      producerRows.delete(name);
    }
  }
  for (const [name, p] of Object.entries(producers)) {
    let row = producerRows.get(name);
    if (!row) {
      const tr = make("tr");
      tr.id = "producer-row-" + name;
      tr.dataset.point = "producers." + name;
      const th = make("th");
      th.scope = "row";
      const sw = make("span", "swatch");
      th.append(sw, " ", make("span", "mono", name));
      const emitsCell = make("td");
      const emits = make("span");
      // the send path's trouble, if any (records waiting for a leader, failed sends)
      const notes = make("span", "group-notes");
      notes.id = "producer-" + name + "-notes";
      emitsCell.append(emits, notes);
      const rate = make("td", "num");
      rate.id = "producer-" + name + "-rate";
      const produced = make("td", "num");
      produced.id = "producer-" + name + "-produced";
      tr.append(th, emitsCell, rate, produced);
      row = { tr, sw, emits, notes, rate, produced, field: null };
      const ctrl = cloneTemplate("tpl-producer-controls", { producer: name });
      if (ctrl) {
        const td = make("td", "ctl");
        td.append(ctrl);
        tr.append(td);
        row.field = td.querySelector('[data-field="rate"]');
      }
      body.append(tr);
      labelCells(tr);
      if (ctrl && window.htmx) window.htmx.process(tr);
      producerRows.set(name, row);
    }
    row.sw.style.setProperty("--swatch", diagram.types.colour(p.event));
    row.sw.className = "swatch swatch--" + diagram.types.shape(p.event);
    setText(row.emits, (p.event || "") + " → " + p.topic);
    // publishes the schema registry refused were never stored: counted apart, said in words
    const refused = p.rejected || 0;
    const notes = (p.notes || []).slice();
    if (refused) notes.unshift(refused + " refused by the schema registry" + (p.last_rejection ? " (" + p.last_rejection + ")" : ""));
    setText(row.notes, notes.join("\n"));
    setText(row.rate, num(p.rate));
    setText(row.produced, String(p.produced - refused));
    serverValue(row.field, p.rate);
  }
}

function syncGroups(groups) {
  const body = el["group-rows"];
  // hundreds of services: the ones furthest behind, re-chosen every few seconds (not every
  // frame, so rows don't jump under the reader's eyes), and a sentence on the rest
  const now = performance.now();
  if (!S.shownGroups || now - S.shownAt > 3000 || S.shownGroups.some((n) => !groups[n])) {
    S.shownGroups = rowsToShow(groups, S.showAllGroups);
    S.shownAt = now;
  }
  const shown = new Set(S.shownGroups);
  for (const [name, row] of groupRows) {
    if (!groups[name] || !shown.has(name)) {
      row.tr.remove();
      if (row.ctl) row.ctl.remove();
      groupRows.delete(name);
    }
  }
  const more = el["groups-more"];
  if (more) {
    const total = Object.keys(groups).length;
    const sentence = othersSentence(groups, S.shownGroups);
    more.hidden = !sentence && !S.showAllGroups;
    setText(el["groups-more-text"], sentence || total + " services listed.");
    setText(el["groups-more-toggle"], S.showAllGroups ? "List only the furthest behind" : "List all " + total);
  }
  let placed = null; // the last node of the rows placed so far
  for (const name of S.shownGroups) {
    const g = groups[name];
    let row = groupRows.get(name);
    if (!row) row = addGroupRow(body, name);
    // keep the listed order, moving a row only when it is out of place (a move restyles it:
    // moving every row every frame cost 100 ms/s of style and layout, bench/page_fps.py)
    const want = placed ? placed.nextElementSibling : body.firstElementChild;
    if (want !== row.tr) {
      body.insertBefore(row.tr, want);
      if (row.ctl) body.insertBefore(row.ctl, row.tr.nextSibling);
    } else if (row.ctl && row.tr.nextElementSibling !== row.ctl) {
      body.insertBefore(row.ctl, row.tr.nextSibling);
    }
    placed = row.ctl || row.tr;
    // a compact state (hundreds of services) carries the counts, not each instance
    const insts = g.instances || [];
    const alive = g.instances_alive !== undefined ? g.instances_alive : insts.filter((i) => i.state !== "dead").length;
    const total = g.instances_total !== undefined ? g.instances_total : insts.length;
    const status = g.status || "up";
    setText(row.label, g.label || name);
    setText(row.status, status);
    row.status.className = "status status--" + status;
    setText(row.notes, (g.notes || []).join("\n"));
    setText(row.instances, alive + "/" + total);
    setText(row.lag, String(g.lag));
    setText(row.lagMs, String(Math.round(g.lag_ms || 0)));
    setText(row.processed, String(g.processed));
    setText(row.throughput, num(g.throughput));
    setText(row.retries, String(g.retries || 0));
    setText(row.dead, String(g.dead_lettered || 0));
    const lat = S.latency[name];
    const p95 = lat && lat.end_to_end_ms && lat.end_to_end_ms.count ? lat.end_to_end_ms.p95 : g.end_to_end_p95_ms;
    setText(row.p95, p95 != null ? String(Math.round(p95)) : "–");
    row.tr.classList.toggle("is-down", status === "down" || status === "crashed");
    if (row.ctl) {
      const isDown = status === "down" || status === "crashed";
      const toggle = row.ctl.querySelector('[data-role="toggle"]');
      if (toggle) {
        toggle.value = isDown ? "consumer.up" : "consumer.down";
        setText(toggle, isDown ? "Bring up" : "Take down");
        toggle.classList.toggle("btn--primary", isDown);
      }
      serverValue(row.ctl.querySelector('[data-field="slow"]'), g.slow);
      serverValue(row.ctl.querySelector('[data-field="failure_rate"]'), g.failure_rate);
      serverValue(row.ctl.querySelector('[data-field="instances"]'), total);
    }
  }
}

function addGroupRow(body, name) {
  const tr = make("tr", "group-row");
  tr.id = "group-row-" + name;
  tr.dataset.group = name;
  tr.dataset.point = "groups." + name; // a guided lesson's card may point at it
  const th = make("th");
  th.scope = "row";
  const sw = make("span", "swatch");
  sw.style.setProperty("--swatch", groupColour(name));
  const label = make("span", "group-label");
  th.append(sw, " ", label, " ", make("code", "group-name", name));
  const cells = {};
  const cell = (key, id, cls) => {
    const td = make("td", cls);
    const span = make("span");
    if (id) span.id = "group-" + name + "-" + id;
    td.append(span);
    tr.append(td);
    cells[key] = span;
  };
  tr.append(th);
  cell("status", "status", "");
  // what the broker is doing for this service right now (crash not detected yet, batches,
  // uncommitted work, unacked messages): text from the server, one line each
  const notes = make("span", "group-notes");
  notes.id = "group-" + name + "-notes";
  cells.status.parentElement.append(notes);
  cells.notes = notes;
  cell("instances", "instances", "num");
  cell("lag", "lag", "num");
  cell("lagMs", "lag-ms", "num");
  cell("processed", "processed", "num");
  cell("throughput", "throughput", "num");
  cell("retries", "retries", "num");
  cell("dead", "dead-lettered", "num");
  cell("p95", "p95", "num");
  body.append(tr);
  labelCells(tr);
  const row = { tr, label, ...cells, ctl: null };
  const ctrl = cloneTemplate("tpl-group-controls", { consumer: name });
  if (ctrl) {
    const ctr = make("tr", "controls-row");
    ctr.dataset.group = name;
    const td = make("td");
    td.colSpan = 10;
    td.append(ctrl);
    ctr.append(td);
    body.append(ctr);
    if (window.htmx) window.htmx.process(ctr);
    row.ctl = ctr;
  }
  groupRows.set(name, row);
  refreshLatencySelect();
  return row;
}

/** Show the server's value in a form field, unless the user is editing it. */
function serverValue(field, value) {
  if (!field || value === undefined || value === null || document.activeElement === field) return;
  if (field.__server === value) return;
  field.__server = value;
  const v = String(value);
  if (field.tagName === "SELECT" && ![...field.options].some((o) => parseFloat(o.value) === value)) {
    field.append(new Option("×" + v, v));
  }
  if (field.tagName === "SELECT") {
    for (const o of field.options) if (parseFloat(o.value) === value) field.value = o.value;
  } else {
    field.value = v;
  }
}

function cloneTemplate(id, bind) {
  const tpl = $(id);
  if (!tpl || !S.canControl) return null;
  const frag = tpl.content.cloneNode(true);
  for (const input of frag.querySelectorAll("[data-bind]")) {
    const v = bind[input.dataset.bind];
    if (v === undefined || v === null) input.remove();
    else input.value = String(v);
  }
  return frag;
}

/* ---- panels: charts, legend, dead letters, event log, insight ------------------------------- */

function renderPanels() {
  const st = S.state;
  if (diagram.typesChanged) {
    diagram.typesChanged = false;
    renderTypeLegend();
  }
  charts.prune(st);
  if (!charts.latencyGroup || !(st.groups || {})[charts.latencyGroup]) refreshLatencySelect();
  charts.update();
  renderLatencyNow();
  renderDeadLetters(st.groups || {});
  renderInsight(st);
  syncTopicOptions(st.topics || {});
}

function renderTypeLegend() {
  const ul = el["type-legend"];
  ul.textContent = "";
  const sel = el["log-type"];
  const chosen = sel.value;
  while (sel.options.length > 1) sel.remove(1);
  for (const [type, colour, shape] of diagram.types.entries()) {
    const li = make("li");
    const sw = make("span", "swatch swatch--" + shape);
    sw.style.setProperty("--swatch", colour);
    li.append(sw, type);
    ul.append(li);
    sel.append(new Option(type, type));
  }
  sel.value = chosen;
}

function refreshLatencySelect() {
  const sel = el["latency-service"];
  if (!sel || !S.state) return;
  const groups = S.state.groups || {};
  const names = Object.keys(groups);
  const sig = names.join("|");
  if (sig === sel.__names && charts.latencyGroup && groups[charts.latencyGroup]) return; // unchanged
  sel.__names = sig;
  const current = sel.value;
  sel.textContent = "";
  for (const n of names) sel.append(new Option(groups[n].label || n, n));
  const pick = names.includes(current) ? current : charts.latencyGroup && names.includes(charts.latencyGroup) ? charts.latencyGroup : names[0];
  if (pick) sel.value = pick;
  charts.setLatencyGroup(pick || null);
}

function renderLatencyNow() {
  const g = charts.latencyGroup;
  const l = g && S.latency[g];
  const e = l && l.end_to_end_ms;
  if (!e || !e.count) {
    setText(el["latency-now"], "");
    return;
  }
  setText(el["latency-now"], "now: p50 " + Math.round(e.p50) + " · p95 " + Math.round(e.p95) + " · p99 " + Math.round(e.p99) + " ms");
}

function selectGroup(name) {
  const sel = el["latency-service"];
  if (sel) {
    sel.value = name;
    charts.setLatencyGroup(name);
    S.panelsDirty = true;
  }
  const row = groupRows.get(name);
  if (row) {
    row.tr.classList.remove("flash");
    void row.tr.offsetWidth; // restart the highlight animation
    row.tr.classList.add("flash");
  }
}

function renderDeadLetters(groups) {
  let any = false;
  for (const [name, sec] of dlqSections) {
    if (!groups[name]) {
      sec.root.remove();
      dlqSections.delete(name);
    }
  }
  for (const [name, g] of Object.entries(groups)) {
    const letters = g.dead_letters || [];
    const waiting = g.dead_letters_waiting !== undefined ? g.dead_letters_waiting : letters.length;
    if (!g.dead_lettered && !waiting && !letters.length && !dlqSections.has(name)) continue;
    any = true;
    let sec = dlqSections.get(name);
    if (!sec) sec = addDlqSection(name, g);
    setText(sec.title, g.label || name);
    setText(sec.where, destinationText(name, g));
    setText(sec.count, waiting + " waiting · " + (g.dead_lettered || 0) + " dead-lettered · " + (g.redriven || 0) + " redriven");
    if (sec.redrive) sec.redrive.hidden = !waiting;
    const sig = [waiting, g.dead_lettered, letters.length, letters.length ? letters[0].event_id : 0].join(":");
    if (sig === sec.sig) continue;
    sec.sig = sig;
    sec.list.textContent = "";
    for (const d of letters) sec.list.append(dlqEntry(name, d, sec.open));
  }
  el["dlq-empty"].hidden = any;
}

function destinationText(name, g) {
  const dest = g.dead_letter_destination || "";
  if (g.mode === "queue") {
    return "Dead-lettered through the dead-letter exchange to the queue " + dest +
      ". Redrive shovels them back to the tail of " + name + ": only its consumers see them again.";
  }
  const topics = (g.topics || []).join(", ");
  return "Published to the Kafka topic " + dest + " (same partition, kafka_dlt-* headers). Redrive republishes them to " +
    topics + ": every service reading " + topics + " gets them again, and one that already processed an event processes it twice unless it is idempotent.";
}

function addDlqBrowser(g) {
  // Read the dead-letter topic like a consumer: from an offset, with each record's headers.
  const dest = g.dead_letter_destination;
  const box = make("details", "dlq-browse");
  box.append(make("summary", "", "Read " + dest + " by offset"));
  const form = make("form", "inline-form dlq-browse__form");
  const field = (label, value) => {
    const lab = make("label", "", label + " ");
    const input = make("input");
    input.type = "number";
    input.min = "0";
    input.step = "1";
    input.value = String(value);
    input.className = "input--narrow";
    lab.append(input);
    form.append(lab, " ");
    return input;
  };
  const part = field("partition", 0);
  const from = field("from offset", 0);
  const go = make("button", "btn btn--small", "Read");
  go.type = "submit";
  form.append(go);
  const status = make("p", "muted dlq-browse__status");
  status.setAttribute("aria-live", "polite");
  const rows = make("ol", "dlq-browse__rows");
  rows.tabIndex = 0; // scrollable: reachable from the keyboard
  rows.setAttribute("aria-label", "records read from " + dest);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (!S.apiUrl) return;
    const q = new URLSearchParams({ topic: dest, partition: part.value || "0", offset: from.value || "0", limit: "20" });
    status.textContent = "Reading…";
    try {
      const res = await fetch(S.apiUrl + "/records?" + q.toString(), { headers: { Accept: "application/json" } });
      const body = await res.json();
      if (!res.ok) {
        status.textContent = body.error || "Could not read " + dest;
        return;
      }
      rows.textContent = "";
      for (const r of body.records) {
        const h = r.headers || {};
        const li = make("li", "dlq-browse__row");
        li.append(
          make("span", "mono", "offset " + r.offset),
          " ",
          make("strong", "", r.type),
          make("span", "mono", " #" + r.id),
          make("span", "muted", " from " + h["kafka_dlt-original-topic"] + "/" + h["kafka_dlt-original-partition"] +
            " @ " + h["kafka_dlt-original-offset"] + " by " + h["kafka_dlt-original-consumer-group"]),
          make("span", "dlq-entry__reason", " " + (h["kafka_dlt-exception-message"] || ""))
        );
        rows.append(li);
      }
      status.textContent = body.topic + "/" + body.partition + ": offsets " + body.log_start_offset + "–" +
        Math.max(body.log_start_offset, body.log_end_offset - 1) + " stored; " + body.records.length + " read from " + (from.value || 0) + ".";
    } catch (err) {
      status.textContent = "Could not read " + dest + ": " + err;
    }
  });
  box.append(form, status, rows);
  return box;
}

function addDlqSection(name, g) {
  const root = make("article", "dlq-group");
  root.id = "dlq-" + name;
  const head = make("header", "dlq-group__head");
  const title = make("h3", "dlq-group__title");
  const count = make("span", "muted dlq-group__count");
  const sw = make("span", "swatch");
  sw.style.setProperty("--swatch", groupColour(name));
  head.append(sw, title, count);
  const where = make("p", "muted dlq-group__where");
  const sec = { root, title, count, where, list: make("ol", "dlq-entries"), sig: "", open: new Set(), redrive: null };
  const form = cloneTemplate("tpl-redrive", { consumer: name });
  if (form) {
    const span = make("span", "dlq-group__action");
    span.append(form);
    const btn = span.querySelector('[data-role="label"]');
    if (btn) btn.textContent = "Redrive all";
    head.append(span);
    sec.redrive = span;
  }
  root.append(head, where, sec.list);
  if (g && g.mode !== "queue" && g.dead_letter_destination && S.apiUrl) root.append(addDlqBrowser(g));
  el["dlq-list"].append(root);
  if (form && window.htmx) window.htmx.process(root);
  dlqSections.set(name, sec);
  return sec;
}

function dlqEntry(group, d, open) {
  const li = make("li", "dlq-entry");
  const btn = make("button", "dlq-entry__summary");
  btn.type = "button";
  const sw = make("span", "swatch");
  sw.style.setProperty("--swatch", diagram.types.colour(d.event_type));
  sw.classList.add("swatch--" + diagram.types.shape(d.event_type));
  btn.append(
    make("span", "mono muted", "t=" + Number(d.t).toFixed(2) + " s"),
    " ",
    sw,
    make("strong", "", d.event_type),
    make("span", "mono", " #" + d.event_id),
    make("span", "muted", " order " + d.correlation_id),
    make("span", "dlq-entry__reason", d.reason),
    make("span", "muted", d.attempts + (d.attempts === 1 ? " attempt" : " attempts")),
    make("span", "mono muted", "from " + d.topic + "/" + d.partition + " @ " + d.offset),
    make("span", "mono muted", "→ " + d.destination + (/(\.DLT|-dlt)$/.test(d.destination) ? "/" + d.dl_partition + " @ " + d.dl_offset : " #" + d.dl_offset))
  );
  const detail = make("div", "dlq-entry__detail");
  const pre = make("pre", "payload dlq-entry__payload");
  let payload;
  try {
    payload = JSON.stringify(d.payload, null, 2);
  } catch (err) {
    payload = String(d.payload);
  }
  pre.textContent = payload === undefined ? "(no payload)" : payload;
  const headers = make("pre", "payload dlq-entry__headers");
  headers.textContent = "headers " + JSON.stringify(d.headers || {}, null, 2);
  detail.append(pre, headers);
  const form = cloneTemplate("tpl-redrive", { consumer: group, event_id: d.event_id });
  if (form) {
    const btnLabel = form.querySelector('[data-role="label"]');
    if (btnLabel) btnLabel.textContent = "Redrive this event";
    detail.append(form);
  }
  const isOpen = open.has(d.event_id);
  detail.hidden = !isOpen;
  btn.setAttribute("aria-expanded", String(isOpen));
  btn.addEventListener("click", () => {
    const show = detail.hidden;
    detail.hidden = !show;
    btn.setAttribute("aria-expanded", String(show));
    if (show) open.add(d.event_id);
    else open.delete(d.event_id);
  });
  li.append(btn, detail);
  if (form && window.htmx) window.htmx.process(detail);
  return li;
}

/* ---- event log & traces ----------------------------------------------------------------- */

function logFilter() {
  const type = el["log-type"].value;
  const kind = el["log-kind"].value;
  const corr = correlationFromText(el["log-corr"].value);
  return (e) => (!type || e.event_type === type) && (!kind || e.kind === kind) && (corr === null || e.correlation_id === corr);
}

function renderLog() {
  // Off screen, the log costs nothing: it is rebuilt from S.log when it scrolls into view.
  if (!S.logVisible) {
    S.logRebuild = true;
    S.logPending.length = 0;
    return;
  }
  if (el["log-freeze"].checked) return;
  const body = el["event-log-rows"];
  const ok = logFilter();
  let fresh;
  if (S.logRebuild) {
    S.logRebuild = false;
    body.textContent = "";
    fresh = S.log;
  } else {
    fresh = S.logPending;
  }
  const limit = fresh === S.log ? LOG_ROWS : LOG_ROWS_PER_UPDATE;
  S.logPending = [];
  const rows = [];
  for (let i = fresh.length - 1; i >= 0 && rows.length < limit; i--) if (ok(fresh[i])) rows.push(logRow(fresh[i]));
  if (rows.length) {
    const frag = document.createDocumentFragment();
    for (const r of rows) frag.append(r);
    body.prepend(frag);
  }
  while (body.rows.length > LOG_ROWS) body.deleteRow(-1);
  setText(el["log-count"], body.rows.length + " rows shown (newest first, a sample)");
}

function logRow(e) {
  const tr = document.createElement("tr");
  const cells = [
    [Number(e.t).toFixed(3), "num mono"],
    [e.kind, "kind kind--" + e.kind],
    [e.event_type, ""],
    [String(e.correlation_id), "num mono corr"],
    [e.topic + "/" + e.partition + " @ " + e.offset, "mono"],
    [e.service ? e.service + (e.instance >= 0 ? " #" + e.instance : "") : "", "mono"],
    [e.attempt ? String(e.attempt) : "", "num"],
    [e.detail || "", "muted"],
  ];
  for (const [text, cls] of cells) {
    const td = tr.insertCell();
    td.className = cls;
    td.textContent = text;
  }
  tr.cells[3].dataset.corr = String(e.correlation_id);
  tr.cells[3].title = "Follow " + e.correlation_id + "'s journey";
  return tr;
}

function onLogFilterChange() {
  S.logRebuild = true;
  S.logDirty = true;
  S.lastLog = 0;
}

function onCorrChange() {
  onLogFilterChange();
  const corr = correlationFromText(el["log-corr"].value);
  if (corr === null) {
    S.traceCorr = null;
    el.trace.hidden = true;
    return;
  }
  requestTrace(corr);
}

function requestTrace(corr) {
  S.traceCorr = corr;
  el.trace.hidden = false;
  el["trace-hops"].textContent = "";
  if (S.live && S.live.send({ type: "trace", correlation_id: corr })) {
    setText(el["trace-title"], "Tracing " + corr + "…");
    S.traceWanted = null;
  } else {
    setText(el["trace-title"], corr + ": the journey is asked for as soon as the connection is back.");
    S.traceWanted = corr;
  }
}

function renderTrace(msg) {
  if (S.traceCorr !== null && msg.correlation_id !== S.traceCorr) return;
  const hops = (msg.hops || []).slice().sort((a, b) => a.t - b.t);
  el.trace.hidden = false;
  const ol = el["trace-hops"];
  ol.textContent = "";
  if (!hops.length) {
    setText(el["trace-title"], "No journey recorded for " + msg.correlation_id + " (the server keeps only the most recent journeys).");
    return;
  }
  const t0 = hops[0].t;
  const total = Math.max(1e-9, hops[hops.length - 1].t - t0);
  setText(el["trace-title"], "Journey of " + msg.correlation_id + ": " + hops.length + " hops over " + secondsText(total * 1000));
  for (const h of hops) {
    const li = make("li", "trace__hop");
    const bar = make("span", "trace__bar");
    bar.style.setProperty("--at", ((h.t - t0) / total) * 100 + "%");
    bar.style.setProperty("--swatch", diagram.types.colour(h.event_type));
    li.append(
      make("span", "trace__t mono", "+" + ((h.t - t0) * 1000).toFixed(1) + " ms"),
      bar,
      make("span", "kind kind--" + h.kind, h.kind),
      make("span", "", h.event_type + " #" + h.event_id),
      make("span", "mono muted", h.topic + "/" + h.partition + " @ " + h.offset),
      make("span", "mono", h.service ? h.service + (h.instance >= 0 ? " #" + h.instance : "") : ""),
      make("span", "muted", h.detail || "")
    );
    ol.append(li);
  }
}

/* ---- the insight line: the lesson, applied to what is on screen ---------------------------- */

/** The narrative: the server's sentences from the present figures (state.story, story.js). */
function renderInsight(st) {
  if (!el.insight) return;
  let items = storyItems(st.story);
  if (!items.length) {
    items = [{ level: "ok", text: "Each consumer group reads at its own pace from its committed offset; the producer never waits for any of them. Take a consumer down to watch temporal decoupling." }];
  }
  const sig = storySig(items);
  if (sig === S.insightSig) return;
  S.insightSig = sig;
  renderStory(document, el.insight, items);
}

function syncTopicOptions(topics) {
  const sel = el["add-topics"];
  if (!sel) return;
  const names = Object.keys(topics);
  const sig = names.join("|");
  if (sel.__sig === sig) return;
  sel.__sig = sig;
  const chosen = new Set([...sel.selectedOptions].map((o) => o.value));
  sel.textContent = "";
  for (const n of names) {
    const o = new Option(n, n);
    o.selected = chosen.has(n);
    sel.append(o);
  }
  sel.size = Math.min(4, Math.max(2, names.length));
}

function fillFraud() {
  const form = $("add-service-form");
  if (!form) return;
  const st = S.state || {};
  let topic = null;
  for (const p of Object.values(st.producers || {})) if (p.event === "OrderPlaced") topic = p.topic;
  const topics = Object.keys(st.topics || {});
  topic = topic || (topics.includes("orders") ? "orders" : topics[0]);
  form.elements.name.value = "fraud";
  form.elements.label.value = "Fraud Service";
  for (const o of form.elements.topics.options) o.selected = o.value === topic;
  form.elements.events.value = "OrderPlaced";
  form.elements.filter_field.value = "total";
  form.elements.filter_op.value = ">";
  form.elements.filter_value.value = "5000";
  form.elements.dist.value = "lognormal";
  form.elements.mean_ms.value = "40";
  form.elements.instances.value = "1";
  form.elements.from.value = "latest";
}

/* ---- messages ------------------------------------------------------------------------------ */

function showError(message) {
  if (S.showError) S.showError(message);
  else connectionView(document).error(message);
}

/** One server message: what the WebSocket handler does with it (tests call it directly). */
function receive(msg) {
  if (!msg || typeof msg !== "object") return;
  // other modules of the page (the guided lesson: static/js/guide.js) read every message
  document.dispatchEvent(new CustomEvent("fanout:message", { detail: msg }));
  if (msg.type === "frame") feed(msg);
  else if (msg.type === "trace") renderTrace(msg);
  else if (msg.type === "error") showError(msg.message);
  // "ack" (a command took effect) and "pong" need nothing: the next frame shows the effect
}

/* ---- UI wiring ---------------------------------------------------------------------------- */

function bindUi() {
  el["log-type"].addEventListener("change", onLogFilterChange);
  el["log-kind"].addEventListener("change", onLogFilterChange);
  el["log-freeze"].addEventListener("change", onLogFilterChange);
  let corrTimer = 0;
  el["log-corr"].addEventListener("input", () => {
    clearTimeout(corrTimer);
    corrTimer = setTimeout(onCorrChange, 350);
  });
  el["event-log-rows"].addEventListener("click", (ev) => {
    const td = ev.target.closest("td[data-corr]");
    if (!td) return;
    el["log-corr"].value = td.dataset.corr;
    onCorrChange();
  });
  if (el["latency-service"]) {
    el["latency-service"].addEventListener("change", () => {
      charts.setLatencyGroup(el["latency-service"].value);
      S.panelsDirty = true;
    });
  }
  if (el["fill-fraud"]) el["fill-fraud"].addEventListener("click", fillFraud);
  if (el["groups-more-toggle"]) {
    el["groups-more-toggle"].addEventListener("click", () => {
      S.showAllGroups = !S.showAllGroups;
      S.shownGroups = null;
      S.numbersDirty = true;
    });
  }
  // A command's answer is news for a while, then it goes.
  let resultTimer = 0;
  document.body.addEventListener("htmx:afterSwap", (ev) => {
    const target = el["command-result"];
    if (!target || ev.target !== target) return;
    clearTimeout(resultTimer);
    resultTimer = setTimeout(() => {
      target.textContent = "";
    }, 8000);
  });
  const logPanel = el["event-log-rows"].closest("section");
  if (window.IntersectionObserver && logPanel) {
    new IntersectionObserver((entries) => {
      S.logVisible = entries[entries.length - 1].isIntersecting;
      if (S.logVisible) S.logDirty = true;
    }).observe(logPanel);
  }
}

window.FanoutSim = {
  start,
  feed,
  receive,
  /** For tests: the diagram's layout box of a service ({x, y, w, h, tray}). */
  groupBox: (name) => (diagram ? diagram.groupBox(name) : null),
};

/* Start from what the template put in the DOM (no inline script). */
function boot() {
  const root = document.getElementById("sim-root");
  if (!root) return;
  const data = document.getElementById("initial-frame");
  let initialFrame = null;
  if (data) {
    try {
      initialFrame = JSON.parse(data.textContent);
    } catch (err) {
      console.warn("Fanout: the initial frame is not valid JSON", err);
    }
  }
  start({
    wsPath: root.dataset.wsPath,
    initialFrame,
    canControl: root.dataset.canControl === "true",
    apiUrl: root.dataset.apiUrl || "",
  });
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", boot);
else boot();
