/**
 * Charts over simulated time (uPlot), shared by the simulation and comparison pages.
 *
 *   Table          aligned columns: one x array and named y arrays, at most MAX_POINTS rows
 *   ChartSet       the uPlot plumbing both pages use: one plot per element, rebuilt only when
 *                  its series change, fault marks as labelled dashed lines, resizing
 *   SimulationCharts  lag, lag time, throughput and end-to-end latency of one simulation
 *   CompareCharts     checkout response time, errors and consumer lag of a comparison
 *   topAndOthers   the few series worth a line each, and the rest as one ("the other 290")
 *
 * Series are bounded; the pages redraw at most a few times a second. uPlot is a classic script
 * (static/vendor/uplot, installed by `make assets`) found as window.uPlot. The pure parts are
 * tested by static/js/tests/charts.test.mjs.
 */

export const MAX_POINTS = 600;
export const MAX_SERIES = 10; // lines a chart draws one by one; past that: top ones + the others
const TOP_SERIES = 8;
const MIN_SIM_S = 0.2;

function cssVar(name, fallback) {
  if (typeof document === "undefined") return fallback;
  const v = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  return v || fallback;
}

/** A chart's number: "1.2M", "35k", "420", "3.5", "0.25". */
export function chartValue(v) {
  if (v == null) return "–";
  const a = Math.abs(v);
  if (a >= 1e6) return (v / 1e6).toFixed(1) + "M";
  if (a >= 1e4) return (v / 1e3).toFixed(0) + "k";
  if (a >= 100) return Math.round(v).toString();
  if (a >= 10) return v.toFixed(1).replace(/\.0$/, "");
  return (Math.round(v * 100) / 100).toString();
}

/** Aligned columns: one x array and named y arrays of the same length, at most MAX_POINTS. */
export class Table {
  constructor(max = MAX_POINTS) {
    this.max = max;
    this.x = [];
    this.cols = new Map();
  }
  clear() {
    this.x = [];
    this.cols = new Map();
  }
  col(key) {
    let c = this.cols.get(key);
    if (!c) this.cols.set(key, (c = new Array(this.x.length).fill(null)));
    return c;
  }
  /** Add a row at x (later than the last; false if not); columns it lacks get null. */
  push(x, values) {
    if (this.x.length && x <= this.x[this.x.length - 1]) return false;
    for (const k of Object.keys(values)) this.col(k); // a new column: null for the rows before
    this.x.push(x);
    for (const [k, c] of this.cols) c.push(k in values ? values[k] : null);
    if (this.x.length > this.max) {
      const n = this.x.length - this.max;
      this.x.splice(0, n);
      for (const c of this.cols.values()) c.splice(0, n);
    }
    return true;
  }
  /** Keep only these columns. */
  keep(keys) {
    for (const k of Array.from(this.cols.keys())) if (!keys.has(k)) this.cols.delete(k);
  }
  /** The columns as uPlot data: [x, ...one array per key] (a missing column is all null). */
  data(keys) {
    return [this.x, ...keys.map((k) => this.cols.get(k) || new Array(this.x.length).fill(null))];
  }
}

/**
 * Which names get a line of their own: all of them when there are at most `max`, else the `top`
 * largest by value (ties by name) and the rest, summed, as one series.
 */
export function topAndOthers(values, max = MAX_SERIES, top = TOP_SERIES) {
  const names = Object.keys(values);
  if (names.length <= max) return { top: names, others: [] };
  const ranked = names.slice().sort((a, b) => (values[b] || 0) - (values[a] || 0) || (a < b ? -1 : 1));
  return { top: ranked.slice(0, top), others: ranked.slice(top) };
}

/** The line pattern of the i-th series: solid for the first four colours, then dashed, dotted. */
export function seriesDash(i) {
  const round = Math.floor(i / 4) % 3;
  return round === 0 ? undefined : round === 1 ? [8, 4] : [2, 3];
}

/** "the other 292 services" */
export function othersLabel(n, noun = "service") {
  return "the other " + n + " " + noun + (n === 1 ? "" : "s");
}

/** The uPlot plumbing both pages share. Subclasses say what each series looks like. */
export class ChartSet {
  /** els: {id: element}; opts.height: plot height (px). */
  constructor(els, opts = {}) {
    this.els = els;
    this.height = opts.height || 190;
    this.plots = {};
    this.sigs = {};
    this.marks = []; // [{t, label, colour}]
    this.marksSig = "";
    this.dirty = true;
    this.available = typeof window !== "undefined" && typeof window.uPlot === "function";
    if (typeof window !== "undefined" && !this.available) console.warn("Fanout: uPlot did not load; charts are off (run `make assets`).");
    if (typeof window !== "undefined" && window.ResizeObserver) {
      this.ro = new ResizeObserver(() => this.resize());
      for (const el of Object.values(els)) if (el) this.ro.observe(el);
    }
  }

  /** Colours, font and muted text from the page's CSS (subclasses may cache them). */
  theme() {
    return {
      muted: cssVar("--text-muted", "#59636e"),
      border: cssVar("--border", "#d8dee4"),
      font: cssVar("--font-sans", "system-ui"),
    };
  }

  /** Marks already in {t, label, colour} form, sorted by t. */
  setMarks(marks) {
    const sig = marks.map((m) => m.t + m.label + m.colour).join("|");
    if (sig !== this.marksSig) {
      this.marksSig = sig;
      this.marks = marks;
      this.dirty = true;
    }
  }

  /** The look of one series (label, stroke, dash, ...): the subclass's. */
  seriesFor(id, key) {
    return { label: key };
  }

  /** The y scale of a chart: from 0, with some head room (the subclass may override). */
  yScale(id) {
    return { range: (u, lo, hi) => [0, Math.max(hi || 0, 10) * 1.05] };
  }

  draw(id, table, keys, unit) {
    const el = this.els[id];
    if (!el || !this.available) return;
    const data = table.data(keys);
    const sig = keys.join("|") + "|" + keys.map((k) => this.seriesFor(id, k).label).join("|");
    let plot = this.plots[id];
    if (!plot || this.sigs[id] !== sig) {
      if (plot) plot.destroy();
      this.sigs[id] = sig;
      this.plots[id] = new window.uPlot(this.options(id, el, keys, unit), data, el);
      return;
    }
    plot.setData(data);
  }

  options(id, el, keys, unit) {
    const th = this.theme();
    const font = "11px " + th.font;
    const axis = { stroke: th.muted, grid: { stroke: th.border, width: 1 }, ticks: { stroke: th.border, width: 1 }, font };
    return {
      width: Math.max(200, el.clientWidth),
      height: this.height,
      scales: { x: { time: false }, y: this.yScale(id) },
      cursor: { drag: { x: false, y: false, setScale: false } },
      legend: { live: false },
      series: [
        { label: "t", value: (u, v) => (v == null ? "–" : v.toFixed(1) + " s") },
        ...keys.map((k) => {
          const s = { width: 1.75, points: { show: false }, ...this.seriesFor(id, k) };
          s.value = (u, v) => (v == null ? "–" : chartValue(v));
          return s;
        }),
      ],
      axes: [
        { ...axis, label: "simulated time (s)", labelSize: 18, labelFont: font, size: 34 },
        { ...axis, label: unit, labelSize: 18, labelFont: font, size: 52, values: (u, splits) => splits.map(chartValue) },
      ],
      hooks: { draw: [(u) => this.drawMarks(u)] },
    };
  }

  /** Fault marks: a dashed vertical line and its words, staggered on three rows. */
  drawMarks(u) {
    if (!this.marks.length) return;
    const ctx = u.ctx;
    const { left, top, width, height } = u.bbox;
    const px = u.pxRatio || 1;
    const min = u.scales.x.min;
    const max = u.scales.x.max;
    ctx.save();
    ctx.font = Math.round(11 * px) + "px " + this.theme().font;
    ctx.textBaseline = "top";
    let row = 0;
    let lastX = -Infinity;
    for (const m of this.marks) {
      if (min == null || m.t < min || m.t > max) continue;
      const x = Math.round(u.valToPos(m.t, "x", true));
      ctx.strokeStyle = m.colour;
      ctx.lineWidth = px;
      ctx.setLineDash([4 * px, 3 * px]);
      ctx.beginPath();
      ctx.moveTo(x + 0.5, top);
      ctx.lineTo(x + 0.5, top + height);
      ctx.stroke();
      ctx.setLineDash([]);
      row = x - lastX < 110 * px ? (row + 1) % 3 : 0;
      lastX = x;
      const tw = ctx.measureText(m.label).width;
      const tx = Math.min(x + 3 * px, left + width - tw - 2);
      ctx.fillStyle = m.colour;
      ctx.fillText(m.label, tx, top + 2 * px + row * 13 * px);
    }
    ctx.restore();
  }

  resize() {
    for (const [id, plot] of Object.entries(this.plots)) {
      const w = Math.max(200, this.els[id].clientWidth);
      if (plot && Math.abs(plot.width - w) > 1) plot.setSize({ width: w, height: this.height });
    }
  }
}

function splitKey(key) {
  const i = key.indexOf(":");
  return i < 0 ? [key, key] : [key.slice(0, i), key.slice(i + 1)];
}

/**
 * The engine's marks a page knows: a full frame's history brings the older ones, each frame the
 * latest 50. Merged by moment, service and status, in time order, at most `keep`.
 */
export function mergeMarks(known, more, keep = 300) {
  const byKey = new Map();
  for (const m of [...(known || []), ...(more || [])]) byKey.set(m.t + "|" + m.target + "|" + m.name + "|" + m.status, m);
  const out = Array.from(byKey.values()).sort((a, b) => a.t - b.t);
  return out.length > keep ? out.slice(out.length - keep) : out;
}

/** A full frame's columnar history as rows: [{t, i}] for each sample, oldest first. */
export function historyRows(history) {
  const t = (history && history.t) || [];
  return t.map((x, i) => ({ t: x, i }));
}

/** The engine's status marks as chart marks: the changes only (never the start-up "up"s). */
export function statusMarks(marks, colourOf) {
  const last = new Map();
  const out = [];
  for (const m of marks || []) {
    const key = m.target + ":" + m.name;
    const prev = last.get(key);
    last.set(key, m.status);
    if (prev === undefined && m.status === "up") continue;
    if (prev === m.status) continue;
    out.push({ t: m.t, label: m.name + " " + m.status, colour: colourOf(m.status) });
  }
  return out;
}

/** The simulation page's charts: lag, lag time, throughput, and one service's latency. */
export class SimulationCharts extends ChartSet {
  constructor(els, opts) {
    super(els, { height: 190 });
    this.groupColour = opts.groupColour;
    this.topicColour = opts.topicColour;
    this.labelOf = opts.labelOf || ((g) => g);
    this.dashOf = opts.dashOf || null; // a line pattern per service, so lines differ without colour
    this.lagT = new Table();
    this.thrT = new Table();
    this.lat = new Map(); // group -> Table with p50/p95/p99
    this.latencyGroup = null;
    this.lastT = -Infinity;
    this.lastWall = 0;
    this.top = null; // with many services: the ones drawn one by one ({top, others})
    this.topAt = -Infinity;
  }

  reset() {
    this.lagT.clear();
    this.thrT.clear();
    this.lat.clear();
    this.lastT = -Infinity;
    this.top = null;
    this.engineMarks = [];
    this.dirty = true;
  }

  /** With many services, which get a line: re-ranked by lag every few seconds of wall time. */
  chooseTop(groups, wallNow) {
    const names = Object.keys(groups);
    if (names.length <= MAX_SERIES) {
      this.top = null;
      return;
    }
    if (this.top && wallNow - this.topAt < 5000) return;
    const by = {};
    for (const n of names) by[n] = (groups[n].lag || 0) * 1e6 + (groups[n].throughput || 0);
    this.top = topAndOthers(by);
    this.topAt = wallNow;
  }

  /** One row's values per group: each top group by name, the others summed as "others". */
  perGroup(values) {
    if (!this.top) return values;
    const out = {};
    let others = 0;
    let any = false;
    const top = new Set(this.top.top);
    for (const [g, v] of Object.entries(values)) {
      if (top.has(g)) out[g] = v;
      else if (v != null) {
        others += v;
        any = true;
      }
    }
    if (any) out[""] = others; // "" names the others: no service is called that
    return out;
  }

  /**
   * Fill every chart from a full frame's history (docs/api.md, "history"): columns aligned on
   * history.t; a compact run's top services and the others as one series.
   */
  loadHistory(history, groupsNow, top) {
    if (!history || !history.t || !history.t.length) return;
    const groups = history.groups || {};
    const topics = history.topics || {};
    const others = history.others || null;
    if (top) this.top = { top: top.services || [], others: new Array((top.others || {}).services || 0) };
    else if (groupsNow) this.chooseTop(groupsNow, -Infinity);
    for (const { t, i } of historyRows(history)) {
      const lag = {};
      const lagS = {};
      const thr = {};
      for (const [g, h] of Object.entries(groups)) {
        if (h.lag && h.lag[i] != null) lag[g] = h.lag[i];
        if (h.lag_ms && h.lag_ms[i] != null) lagS[g] = h.lag_ms[i] / 1000;
        if (h.throughput && h.throughput[i] != null) thr[g] = h.throughput[i];
        if (h.p50 && h.p50[i] != null) {
          let tab = this.lat.get(g);
          if (!tab) this.lat.set(g, (tab = new Table()));
          tab.push(t, { p50: h.p50[i], p95: h.p95[i], p99: h.p99[i] });
        }
      }
      const row = { ...prefixed("lag:", this.top && !top ? this.perGroup(lag) : lag), ...prefixed("lagS:", this.top && !top ? this.perGroup(lagS) : lagS) };
      const thrRow = prefixed("g:", this.top && !top ? this.perGroup(thr) : thr);
      if (others) {
        if (others.lag && others.lag[i] != null) row["lag:"] = others.lag[i];
        if (others.lag_ms && others.lag_ms[i] != null) row["lagS:"] = others.lag_ms[i] / 1000;
        if (others.throughput && others.throughput[i] != null) thrRow["g:"] = others.throughput[i];
      }
      for (const [name, h] of Object.entries(topics)) if (h.throughput && h.throughput[i] != null) thrRow["t:" + name] = h.throughput[i];
      this.lagT.push(t, row);
      this.thrT.push(t, thrRow);
      this.lastT = t;
    }
    if (history.marks) this.setEngineMarks(history.marks);
    this.dirty = true;
  }

  /** Record one point from a frame (skipped when too close to the previous one). */
  record(t, state, latency, wallNow) {
    const groups = state.groups || {};
    // latency percentiles arrive on some frames only: record them whenever they do
    for (const [g, l] of Object.entries(latency)) {
      if (!groups[g] || !l.end_to_end_ms || l.t === undefined) continue;
      let tab = this.lat.get(g);
      if (!tab) this.lat.set(g, (tab = new Table()));
      const e = l.end_to_end_ms;
      if (!e.count) continue;
      tab.push(l.t, { p50: e.p50, p95: e.p95, p99: e.p99 });
    }
    const minDt = Math.max(MIN_SIM_S, (state.effective_speed || 1) * 0.2);
    if (t - this.lastT < minDt && wallNow - this.lastWall < 2000) return;
    this.lastT = t;
    this.lastWall = wallNow;
    const topics = {};
    for (const [name, tp] of Object.entries(state.topics || {})) topics["t:" + name] = tp.throughput || 0;
    const top = state.top;
    if (top && top.services) {
      // a compact run: the server ranks the services and sums the others (docs/api.md, "top")
      this.top = { top: top.services, others: new Array((top.others || {}).services || 0) };
      const lag = {};
      const thr = {};
      for (const g of top.services) {
        const s = groups[g];
        if (!s) continue;
        lag["lag:" + g] = s.lag;
        lag["lagS:" + g] = (s.lag_ms || 0) / 1000;
        thr["g:" + g] = s.throughput || 0;
      }
      const o = top.others || {};
      if (o.services) {
        lag["lag:"] = o.lag;
        lag["lagS:"] = (o.lag_ms || 0) / 1000;
        thr["g:"] = o.throughput || 0;
      }
      this.lagT.push(t, lag);
      this.thrT.push(t, { ...topics, ...thr });
      this.dirty = true;
      return;
    }
    this.chooseTop(groups, wallNow);
    const lag = {};
    const lagS = {};
    const thr = {};
    for (const [g, s] of Object.entries(groups)) {
      lag[g] = s.lag;
      lagS[g] = (s.lag_ms || 0) / 1000;
      thr[g] = s.throughput || 0;
    }
    this.lagT.push(t, { ...prefixed("lag:", this.perGroup(lag)), ...prefixed("lagS:", this.perGroup(lagS)) });
    this.thrT.push(t, { ...topics, ...prefixed("g:", this.perGroup(thr)) });
    this.dirty = true;
  }

  setEngineMarks(marks) {
    this.engineMarks = mergeMarks(this.engineMarks, marks);
    this.setMarks(statusMarks(this.engineMarks, markColour));
  }

  setLatencyGroup(g) {
    if (g !== this.latencyGroup) {
      this.latencyGroup = g;
      this.dirty = true;
    }
  }

  /** Keep only the series of groups/topics that still exist (and are drawn). */
  prune(state) {
    const gs = this.top ? [...this.top.top, ""] : Object.keys(state.groups || {});
    const ts = Object.keys(state.topics || {});
    this.lagT.keep(new Set(gs.flatMap((g) => ["lag:" + g, "lagS:" + g])));
    this.thrT.keep(new Set([...ts.map((t) => "t:" + t), ...gs.map((g) => "g:" + g)]));
    for (const g of Array.from(this.lat.keys())) if (!(state.groups || {})[g]) this.lat.delete(g);
  }

  update() {
    if (!this.available || !this.dirty) return;
    this.dirty = false;
    const lagKeys = Array.from(this.lagT.cols.keys());
    this.draw("lag", this.lagT, lagKeys.filter((k) => k.startsWith("lag:")), "events");
    this.draw("lagTime", this.lagT, lagKeys.filter((k) => k.startsWith("lagS:")), "seconds");
    const thrKeys = Array.from(this.thrT.cols.keys()).sort((a, b) => (a[0] === b[0] ? 0 : a[0] === "t" ? -1 : 1));
    this.draw("throughput", this.thrT, thrKeys, "events/s");
    const lt = this.lat.get(this.latencyGroup) || new Table();
    this.draw("latency", lt, lt.x.length ? ["p50", "p95", "p99"] : [], "ms");
  }

  seriesFor(id, key) {
    const [kind, name] = splitKey(key);
    if (kind === "lag" || kind === "lagS" || kind === "g") {
      if (name === "") {
        const n = this.top ? this.top.others.length : 0;
        return { label: othersLabel(n), stroke: cssVar("--text-muted", "#59636e"), dash: [2, 3] };
      }
      return { label: this.labelOf(name), stroke: this.groupColour(name), dash: this.dashOf ? this.dashOf(name) : undefined };
    }
    if (kind === "t") return { label: name + " (produced)", stroke: this.topicColour(name), width: 1.5, dash: [6, 4] };
    const latCol = { p50: cssVar("--series-lat-50", "#009e73"), p95: cssVar("--series-lat-95", "#e69f00"), p99: cssVar("--series-lat-99", "#d55e00") };
    const latDash = { p50: undefined, p95: [6, 3], p99: [2, 2] }; // not by colour alone
    return { label: key, stroke: latCol[key], dash: latDash[key] };
  }
}

function prefixed(prefix, values) {
  const out = {};
  for (const [k, v] of Object.entries(values)) out[prefix + k] = v;
  return out;
}

function markColour(status) {
  if (status === "down") return cssVar("--text-muted", "#59636e");
  if (status === "crashed" || status === "removed") return cssVar("--fail-text", "#b34f00");
  if (status === "up") return cssVar("--ok-text", "#00745a");
  return cssVar("--warn-text", "#8a5d00");
}

/** The comparison's charts: checkout response time and errors per side, and consumer lag. */
export class CompareCharts extends ChartSet {
  /** opts: theme() -> the page's theme; serviceColour(name); labelOf(name). */
  constructor(els, opts) {
    super(els, { height: 200 });
    this.pageTheme = opts.theme;
    this.serviceColour = opts.serviceColour;
    this.labelOf = opts.labelOf;
    this.dashOf = opts.dashOf || null;
    this.tables = { latency: new Table(), errors: new Table(), lag: new Table() };
    this.lastRecord = 0;
    this.lastDraw = 0;
    this.every = opts.everyMs || 250;
  }

  theme() {
    return this.pageTheme();
  }

  reset() {
    for (const t of Object.values(this.tables)) t.clear();
    this.lastRecord = 0;
    this.dirty = true;
  }

  /** Fill every chart from a full frame's history (docs/api.md, "history", a comparison). */
  loadHistory(history) {
    if (!history || !history.t || !history.t.length) return;
    const side = (name) => history[name] || {};
    const sync = side("sync");
    const events = side("events");
    const groups = history.groups || {};
    const at = (col, i) => (col && col[i] != null ? col[i] : undefined);
    for (const { t, i } of historyRows(history)) {
      const lat = {};
      for (const [name, h] of [["sync", sync], ["events", events]]) {
        for (const p of ["p50", "p95", "p99"]) {
          const v = at(h[p], i);
          if (v !== undefined) lat[name + ":" + p] = v;
        }
      }
      this.tables.latency.push(t, lat);
      const errs = {};
      if (at(sync.error_pct, i) !== undefined) errs.sync = sync.error_pct[i];
      if (at(events.error_pct, i) !== undefined) errs.events = events.error_pct[i];
      this.tables.errors.push(t, errs);
      const lag = {};
      for (const [g, h] of Object.entries(groups)) if (at(h.lag, i) !== undefined) lag[g] = h.lag[i];
      this.tables.lag.push(t, lag);
    }
    this.dirty = true;
  }

  record(t, st, wallNow, force) {
    if (!force && wallNow - this.lastRecord < this.every) return;
    const s = st.sync || {};
    const e = st.events || {};
    const sr = s.recent_checkout_ms || {};
    const er = e.recent_checkout_ms || {};
    const lat = {};
    if (sr.count) Object.assign(lat, { "sync:p50": sr.p50, "sync:p95": sr.p95, "sync:p99": sr.p99 });
    if (er.count) Object.assign(lat, { "events:p50": er.p50, "events:p95": er.p95, "events:p99": er.p99 });
    let changed = this.tables.latency.push(t, lat);
    changed = this.tables.errors.push(t, { sync: (s.recent_error_rate || 0) * 100, events: (e.recent_error_rate || 0) * 100 }) || changed;
    const lag = {};
    for (const [g, v] of Object.entries(e.groups || {})) lag[g] = v.lag;
    changed = this.tables.lag.push(t, lag) || changed;
    if (changed) {
      this.lastRecord = wallNow;
      this.dirty = true;
    }
  }

  update(now) {
    if (!this.available || !this.dirty || now - this.lastDraw < this.every) return;
    this.dirty = false;
    this.lastDraw = now;
    const latKeys = ["sync:p50", "sync:p95", "sync:p99", "events:p50", "events:p95", "events:p99"];
    this.draw("latency", this.tables.latency, latKeys, "ms");
    this.draw("errors", this.tables.errors, ["sync", "events"], "%");
    this.draw("lag", this.tables.lag, Array.from(this.tables.lag.cols.keys()), "events");
  }

  yScale(id) {
    if (id === "errors") return { range: [0, 100] };
    return { range: (u, lo, hi) => [0, Math.max(hi || 0, id === "lag" ? 10 : 50) * 1.05] };
  }

  seriesFor(id, key) {
    const theme = this.theme();
    if (id === "latency") {
      const [side, p] = key.split(":");
      const colour = theme.lat[["p50", "p95", "p99"].indexOf(p)];
      const label = (side === "sync" ? "sync " : "events ") + p;
      return side === "sync" ? { label, stroke: colour, width: 2 } : { label, stroke: colour, dash: [6, 4] };
    }
    if (id === "errors") {
      return key === "sync"
        ? { label: "synchronous", stroke: theme.fail, width: 2, fill: "rgba(198, 47, 59, 0.08)" }
        : { label: "event-driven", stroke: theme.call, dash: [6, 4] };
    }
    return { label: this.labelOf(key), stroke: this.serviceColour(key), dash: this.dashOf ? this.dashOf(key) : undefined };
  }
}
