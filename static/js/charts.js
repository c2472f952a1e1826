/* Fanout charts: lag, lag time, throughput and end-to-end latency over simulated time (uPlot).
 *
 * Series are bounded (MAX_POINTS); a point is recorded at most every MIN_WALL_MS of wall time and
 * every MIN_SIM_S of simulated time, and the plots are redrawn by the page's animation loop at
 * most a few times a second. Fault marks (state.marks) are drawn as vertical lines.
 */
(function () {
  "use strict";

  const MAX_POINTS = 600;
  const MIN_SIM_S = 0.2;
  const HEIGHT = 190;

  function cssVar(name, fallback) {
    const v = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
    return v || fallback;
  }

  /** Aligned columns: one x array and any number of named y arrays of the same length. */
  class Table {
    constructor() {
      this.x = [];
      this.cols = new Map();
    }
    clear() {
      this.x = [];
      this.cols = new Map();
    }
    col(key) {
      let c = this.cols.get(key);
      if (!c) {
        c = new Array(this.x.length).fill(null);
        this.cols.set(key, c);
      }
      return c;
    }
    push(x, values) {
      this.x.push(x);
      for (const [k, v] of Object.entries(values)) this.col(k);
      for (const [k, c] of this.cols) c.push(k in values ? values[k] : null);
      if (this.x.length > MAX_POINTS) {
        const n = this.x.length - MAX_POINTS;
        this.x.splice(0, n);
        for (const c of this.cols.values()) c.splice(0, n);
      }
    }
    keep(keys) {
      for (const k of Array.from(this.cols.keys())) if (!keys.has(k)) this.cols.delete(k);
    }
  }

  class Charts {
    constructor(els, opts) {
      this.els = els; // {lag, lagTime, throughput, latency}
      this.groupColour = opts.groupColour;
      this.topicColour = opts.topicColour;
      this.labelOf = opts.labelOf || ((g) => g);
      this.lagT = new Table();
      this.thrT = new Table();
      this.lat = new Map(); // group -> Table with p50/p95/p99
      this.latencyGroup = null;
      this.marks = [];
      this.plots = {};
      this.keys = {};
      this.lastT = -Infinity;
      this.lastWall = 0;
      this.dirty = true;
      this.available = typeof window.uPlot === "function";
      if (!this.available) console.warn("Fanout: uPlot did not load; charts are off (run `make assets`).");
      if (window.ResizeObserver) {
        this.ro = new ResizeObserver(() => this.resize());
        for (const el of Object.values(els)) if (el) this.ro.observe(el);
      }
    }

    reset() {
      this.lagT.clear();
      this.thrT.clear();
      this.lat.clear();
      this.lastT = -Infinity;
      this.dirty = true;
    }

    /** Fill the lag charts from a full frame's history (per group: t, lag, lag_ms, processed). */
    loadHistory(history) {
      if (!history) return;
      const groups = Object.entries(history).filter(([, h]) => h && h.t && h.t.length);
      if (!groups.length) return;
      // The engine samples every group at the same ticks; align on the longest.
      let xs = [];
      for (const [, h] of groups) if (h.t.length > xs.length) xs = h.t;
      const n = xs.length;
      for (let i = 0; i < n; i++) {
        const lag = {};
        const thr = {};
        for (const [g, h] of groups) {
          const j = i - (n - h.t.length);
          if (j < 0) continue;
          lag["lag:" + g] = h.lag[j];
          lag["lagS:" + g] = h.lag_ms[j] / 1000;
          if (j > 0 && h.t[j] > h.t[j - 1]) thr["g:" + g] = (h.processed[j] - h.processed[j - 1]) / (h.t[j] - h.t[j - 1]);
        }
        this.lagT.push(xs[i], lag);
        this.thrT.push(xs[i], thr);
      }
      this.lastT = xs[n - 1];
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
        if (tab.x.length && l.t <= tab.x[tab.x.length - 1]) continue;
        const e = l.end_to_end_ms;
        if (!e.count) continue;
        tab.push(l.t, { p50: e.p50, p95: e.p95, p99: e.p99 });
      }
      const minDt = Math.max(MIN_SIM_S, (state.effective_speed || 1) * 0.2);
      if (t - this.lastT < minDt && wallNow - this.lastWall < 2000) return;
      this.lastT = t;
      this.lastWall = wallNow;
      const lag = {};
      const thr = {};
      for (const [g, s] of Object.entries(groups)) {
        lag["lag:" + g] = s.lag;
        lag["lagS:" + g] = (s.lag_ms || 0) / 1000;
        thr["g:" + g] = s.throughput || 0;
      }
      for (const [name, tp] of Object.entries(state.topics || {})) thr["t:" + name] = tp.throughput || 0;
      this.lagT.push(t, lag);
      this.thrT.push(t, thr);
      this.dirty = true;
    }

    setMarks(marks) {
      // The engine marks every status it sets; keep the changes (and never the start-up "up"s).
      const last = new Map();
      const out = [];
      for (const m of marks || []) {
        const key = m.target + ":" + m.name;
        const prev = last.get(key);
        last.set(key, m.status);
        if (prev === undefined && m.status === "up") continue;
        if (prev === m.status) continue;
        out.push(m);
      }
      if (out.length !== this.marks.length || out.some((m, i) => m.t !== this.marks[i].t || m.status !== this.marks[i].status)) {
        this.marks = out;
        this.dirty = true;
      }
    }

    setLatencyGroup(g) {
      if (g !== this.latencyGroup) {
        this.latencyGroup = g;
        this.keys.latency = null; // rebuild: the labels change
        this.dirty = true;
      }
    }

    /** Keep only the series of groups/topics that still exist. */
    prune(state) {
      const gs = Object.keys(state.groups || {});
      const ts = Object.keys(state.topics || {});
      this.lagT.keep(new Set(gs.flatMap((g) => ["lag:" + g, "lagS:" + g])));
      this.thrT.keep(new Set([...ts.map((t) => "t:" + t), ...gs.map((g) => "g:" + g)]));
      for (const g of Array.from(this.lat.keys())) if (!(state.groups || {})[g]) this.lat.delete(g);
    }

    /* ---- drawing ---------------------------------------------------------------------------- */

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

    seriesFor(key) {
      const [kind, name] = splitKey(key);
      if (kind === "lag" || kind === "lagS" || kind === "g") {
        return { label: this.labelOf(name), stroke: this.groupColour(name), width: 1.75, points: { show: false } };
      }
      if (kind === "t") {
        return { label: name + " (produced)", stroke: this.topicColour(name), width: 1.5, dash: [6, 4], points: { show: false } };
      }
      const latCol = { p50: cssVar("--series-lat-50", "#1f9d55"), p95: cssVar("--series-lat-95", "#d9822b"), p99: cssVar("--series-lat-99", "#c62f3b") };
      return { label: key, stroke: latCol[key], width: 1.75, points: { show: false } };
    }

    draw(id, table, keys, unit) {
      const el = this.els[id];
      if (!el) return;
      const sig = keys.join("|");
      let plot = this.plots[id];
      const data = [table.x, ...keys.map((k) => table.cols.get(k) || [])];
      if (!plot || this.keys[id] !== sig) {
        if (plot) plot.destroy();
        this.keys[id] = sig;
        plot = this.plots[id] = new window.uPlot(this.options(el, keys, unit), data, el);
        return;
      }
      plot.setData(data);
    }

    options(el, keys, unit) {
      const text = cssVar("--text-muted", "#59636e");
      const grid = cssVar("--border", "#d8dee4");
      const font = "11px " + cssVar("--font-sans", "system-ui");
      const axis = { stroke: text, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 }, font };
      const self = this;
      return {
        width: Math.max(200, el.clientWidth),
        height: HEIGHT,
        scales: { x: { time: false } },
        cursor: { drag: { x: false, y: false, setScale: false } },
        legend: { live: false },
        series: [
          { label: "t", value: (u, v) => (v == null ? "–" : v.toFixed(1) + " s") },
          ...keys.map((k) => {
            const s = this.seriesFor(k);
            s.value = (u, v) => (v == null ? "–" : fmt(v));
            return s;
          }),
        ],
        axes: [
          { ...axis, label: "simulated time (s)", labelSize: 18, labelFont: font, size: 34 },
          { ...axis, label: unit, labelSize: 18, labelFont: font, size: 52, values: (u, splits) => splits.map(fmt) },
        ],
        hooks: { draw: [(u) => self.drawMarks(u)] },
      };
    }

    drawMarks(u) {
      if (!this.marks.length) return;
      const ctx = u.ctx;
      const { left, top, width, height } = u.bbox;
      const px = u.pxRatio || 1;
      const min = u.scales.x.min;
      const max = u.scales.x.max;
      ctx.save();
      ctx.font = Math.round(10 * px) + "px " + cssVar("--font-sans", "system-ui");
      ctx.textBaseline = "top";
      let row = 0;
      let lastX = -Infinity;
      for (const m of this.marks) {
        if (min == null || m.t < min || m.t > max) continue;
        const x = Math.round(u.valToPos(m.t, "x", true));
        const colour = markColour(m.status);
        ctx.strokeStyle = colour;
        ctx.lineWidth = px;
        ctx.setLineDash([4 * px, 3 * px]);
        ctx.beginPath();
        ctx.moveTo(x + 0.5, top);
        ctx.lineTo(x + 0.5, top + height);
        ctx.stroke();
        ctx.setLineDash([]);
        row = x - lastX < 90 * px ? (row + 1) % 3 : 0;
        lastX = x;
        const label = m.name + " " + m.status;
        const tw = ctx.measureText(label).width;
        const tx = Math.min(x + 3 * px, left + width - tw - 2);
        ctx.fillStyle = colour;
        ctx.fillText(label, tx, top + 2 * px + row * 12 * px);
      }
      ctx.restore();
    }

    resize() {
      for (const [id, plot] of Object.entries(this.plots)) {
        const el = this.els[id];
        const w = Math.max(200, el.clientWidth);
        if (plot && Math.abs(plot.width - w) > 1) plot.setSize({ width: w, height: HEIGHT });
      }
    }
  }

  function splitKey(key) {
    const i = key.indexOf(":");
    return i < 0 ? [key, key] : [key.slice(0, i), key.slice(i + 1)];
  }

  function fmt(v) {
    if (v == null) return "–";
    const a = Math.abs(v);
    if (a >= 1e6) return (v / 1e6).toFixed(1) + "M";
    if (a >= 1e4) return (v / 1e3).toFixed(0) + "k";
    if (a >= 100) return Math.round(v).toString();
    if (a >= 10) return v.toFixed(1).replace(/\.0$/, "");
    return (Math.round(v * 100) / 100).toString();
  }

  function markColour(status) {
    if (status === "down") return cssVar("--text-muted", "#59636e");
    if (status === "crashed" || status === "removed") return cssVar("--event-dead-lettered", "#c62f3b");
    if (status === "up") return cssVar("--event-processed", "#1f9d55");
    return cssVar("--event-failed", "#d9822b");
  }

  window.Fanout = window.Fanout || {};
  window.Fanout.Charts = Charts;
})();
