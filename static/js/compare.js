/* Fanout side-by-side comparison: a synchronous call chain and event flow, one order stream.
 *
 *   FanoutCompare.start({wsPath, initialFrame, canControl})   once (this file boots itself)
 *   FanoutCompare.feed(frame)                                  every frame (WebSocket or a test)
 *
 * A frame only stores state and queues dot animations. Everything visible is updated from one
 * requestAnimationFrame loop: the two canvases every animation frame (their backgrounds only
 * when what they show changed), the numbers when a frame arrived, the charts at most 4 times a
 * second. Chart series are bounded. Text from the server goes in with textContent, never markup.
 */
import { $, clamp, make, setText } from "./dom.js";
import { CompareCharts, mergeMarks, seriesDash } from "./charts.js";
import { intText, msText, num, pctText, secondsText, topicsBytesText } from "./format.js";
import { LiveSocket, connectionView } from "./live.js";
import { mountMotionToggle } from "./motion.js";
import { mountFeedback } from "./feedback.js";
import { mountPresenter } from "./present.js";
import { renderStory, storyItems, storySig } from "./story.js";

const CHART_MS = 250; // charts: at most 4 updates a second
const MAX_DOTS = 700; // per board
const MAX_FX = 200;
const DOT_MS = 700; // the longest a dot travels; shorter paths take less (one speed everywhere)
const DOT_SPEED = 0.12; // px per ms
const FX_MS = 500;
const LANE_MS = 90; // at most one dot per lane this often: a legible sample, whatever the rate
const BOARD_H = 244;
// Narrower than this (a phone), a board stacks its boxes top to bottom at full size instead of
// squeezing them into a row (the boxes' names would be cut to "Ch…").
const NARROW_BELOW = 480;
const BOX_H = 124;
// false: no moving dots or effects (a viewer's choice, or their system's reduced motion: motion.js)
let motion = true;
const TAU = Math.PI * 2;

const fanout = (window.fanoutCompare = { framesReceived: 0, rafCount: 0, lastState: null, dots: 0 });
/** For tests and the curious: what each chart holds (first time, rows, series) and its marks. */
fanout.chartSummary = () => {
  const out = {};
  for (const [id, t] of Object.entries(charts ? charts.tables : {})) {
    out[id] = { first: t.x.length ? t.x[0] : null, rows: t.x.length, series: Array.from(t.cols.keys()) };
  }
  out.marks = charts ? charts.marks.map((m) => m.label) : [];
  return out;
};

const S = {
  started: false,
  canControl: false,
  wsPath: "",
  live: null, // the shared LiveSocket (static/js/live.js)
  view: null, // its words on the page
  resultTimer: 0,
  state: null,
  t: 0,
  lastFrameWall: 0,
  frameGap: 50,
  numbersDirty: false,
  lastRate: null,
  rateMarks: [], // client-side marks for order-rate changes (the engine marks statuses)
  story: "",
};

const el = {};
let theme = null;
let syncBoard = null;
let eventBoard = null;
let charts = null;
const colourIndex = new Map(); // service -> palette index, in order of appearance
const switchRows = new Map();
const lagChips = new Map();

/* ---- small helpers ------------------------------------------------------------------- */

function cssVar(name, fallback) {
  const v = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  return v || fallback;
}

function readTheme() {
  const palette = [];
  for (let i = 0; i < 10; i++) palette.push(cssVar("--series-" + i, "#4e79a7"));
  return {
    font: cssVar("--font-sans", "system-ui, sans-serif"),
    text: cssVar("--text", "#1f2328"),
    muted: cssVar("--text-muted", "#59636e"),
    border: cssVar("--border", "#d8dee4"),
    surface: cssVar("--surface", "#ffffff"),
    bg: cssVar("--bg", "#f7f7f8"),
    accent: cssVar("--accent", "#2f5fd0"),
    call: cssVar("--event-produced", "#0072b2"),
    // the darker shades of the status colours: text and badges on the canvas stay readable
    ok: cssVar("--ok-text", "#00745a"),
    fail: cssVar("--fail-text", "#b34f00"),
    warn: cssVar("--warn-text", "#8a5d00"),
    slow: cssVar("--warn-text", "#8a5d00"),
    rebalancing: cssVar("--status-rebalancing", "#41505f"),
    broker: cssVar("--broker-bg", "#eef2fb"),
    logFill: cssVar("--log-fill", "rgba(47, 95, 208, 0.2)"),
    lagFill: cssVar("--lag-fill", "rgba(230, 159, 0, 0.45)"),
    lat: [cssVar("--series-lat-50", "#009e73"), cssVar("--series-lat-95", "#e69f00"), cssVar("--series-lat-99", "#d55e00")],
    palette,
  };
}

function serviceColour(name) {
  let i = colourIndex.get(name);
  if (i === undefined) {
    i = colourIndex.size;
    colourIndex.set(name, i);
  }
  return theme.palette[i % theme.palette.length];
}

function shortLabel(label, name) {
  const s = String(label || name || "").replace(/\s+Service$/i, "");
  return s || String(name);
}






/** The services added while running: the last `producer_changes` of the sync chain. */
function addedServices(s) {
  const chain = s.chain || [];
  const n = Math.min(chain.length, s.producer_changes || 0);
  return n ? chain.slice(chain.length - n) : [];
}

function isDown(status) {
  return status === "down" || status === "crashed";
}

/** The status a sync service shows: the engine's, or "slow" while a slowdown is switched on. */
function syncStatus(s) {
  if (s.status !== "up") return s.status;
  return s.delay_ms > 0 || s.slow > 1 ? "slow" : "up";
}

function statusColour(status) {
  if (status === "up") return theme.ok;
  if (status === "slow") return theme.slow;
  if (status === "rebalancing") return theme.rebalancing;
  if (status === "crashed") return theme.fail;
  return theme.muted;
}

/* ---- canvas drawing ---------------------------------------------------------------------- */

function roundRect(ctx, x, y, w, h, r) {
  const rr = typeof r === "number" ? { tl: r, tr: r, br: r, bl: r } : r;
  ctx.beginPath();
  ctx.moveTo(x + rr.tl, y);
  ctx.lineTo(x + w - rr.tr, y);
  ctx.quadraticCurveTo(x + w, y, x + w, y + rr.tr);
  ctx.lineTo(x + w, y + h - rr.br);
  ctx.quadraticCurveTo(x + w, y + h, x + w - rr.br, y + h);
  ctx.lineTo(x + rr.bl, y + h);
  ctx.quadraticCurveTo(x, y + h, x, y + h - rr.bl);
  ctx.lineTo(x, y + rr.tl);
  ctx.quadraticCurveTo(x, y, x + rr.tl, y);
  ctx.closePath();
}

function fit(ctx, text, maxW) {
  text = String(text);
  if (maxW <= 0) return "";
  if (ctx.measureText(text).width <= maxW) return text;
  let lo = 0;
  let hi = text.length;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (ctx.measureText(text.slice(0, mid) + "…").width <= maxW) lo = mid;
    else hi = mid - 1;
  }
  return text.slice(0, lo) + "…";
}

function arrow(ctx, x0, y0, x1, y1, colour, dashed) {
  ctx.save();
  ctx.strokeStyle = colour;
  ctx.fillStyle = colour;
  ctx.lineWidth = 1.5;
  if (dashed) ctx.setLineDash([5, 4]);
  ctx.beginPath();
  ctx.moveTo(x0, y0);
  ctx.lineTo(x1, y1);
  ctx.stroke();
  ctx.setLineDash([]);
  const a = Math.atan2(y1 - y0, x1 - x0);
  ctx.beginPath();
  ctx.moveTo(x1, y1);
  ctx.lineTo(x1 - 7 * Math.cos(a - 0.45), y1 - 7 * Math.sin(a - 0.45));
  ctx.lineTo(x1 - 7 * Math.cos(a + 0.45), y1 - 7 * Math.sin(a + 0.45));
  ctx.closePath();
  ctx.fill();
  ctx.restore();
}

/**
 * A service box, drawn the same way on both boards: a colour stripe, a title, a status pill
 * and a few lines. `lines` items are [text, colour?, bold?]. A narrow box puts the pill under
 * the title, uses the short label ("Email" for "Email Service") and a smaller font.
 */
function drawBox(ctx, b, o) {
  const th = theme;
  const F = th.font;
  const down = !!o.down;
  const compact = b.w < 165;
  ctx.save();
  roundRect(ctx, b.x + 0.5, b.y + 0.5, b.w - 1, b.h - 1, 8);
  ctx.fillStyle = down ? th.bg : o.fill || th.surface;
  ctx.fill();
  ctx.lineWidth = 1;
  ctx.strokeStyle = th.border;
  if (down) ctx.setLineDash([5, 4]);
  ctx.stroke();
  ctx.setLineDash([]);
  if (o.stripe) {
    ctx.fillStyle = o.stripe;
    ctx.globalAlpha = down ? 0.35 : 1;
    roundRect(ctx, b.x, b.y, 5, b.h, { tl: 8, bl: 8, tr: 0, br: 0 });
    ctx.fill();
    ctx.globalAlpha = 1;
  }
  let badgeW = 0;
  let y = b.y + 37;
  if (o.badge) {
    ctx.font = "700 10px " + F;
    const label = o.badge.toUpperCase();
    badgeW = ctx.measureText(label).width + 12;
    const bx = compact ? b.x + 11 : b.x + b.w - badgeW - 7;
    const by = compact ? b.y + 27 : b.y + 7;
    ctx.fillStyle = statusColour(o.badge);
    roundRect(ctx, bx, by, badgeW, 16, 8);
    ctx.fill();
    ctx.fillStyle = "#fff";
    ctx.textBaseline = "middle";
    ctx.fillText(label, bx + 6, by + 8.5);
    if (compact) {
      badgeW = 0;
      y = b.y + 58;
    }
  }
  ctx.textBaseline = "alphabetic";
  ctx.globalAlpha = down ? 0.6 : 1;
  ctx.fillStyle = th.text;
  ctx.font = "600 13px " + F;
  const room = b.w - 20 - (badgeW ? badgeW + 8 : 0);
  const title = ctx.measureText(o.title).width <= room || !o.short ? o.title : o.short;
  ctx.fillText(fit(ctx, title, room), b.x + 12, b.y + 20);
  const size = compact ? 11 : 12;
  const step = compact ? 14 : 16;
  for (const line of o.lines || []) {
    if (y > b.y + b.h - 5) break;
    const [text, colour, bold] = line;
    ctx.font = (bold ? "600 " : "") + size + "px " + F;
    ctx.fillStyle = colour || th.muted;
    ctx.fillText(fit(ctx, text, b.w - 18), b.x + 12, y);
    y += step;
  }
  ctx.restore();
}

/** Small dots in rows under a box: customers waiting, calls queued. */
function dotPile(ctx, b, count, colour, label) {
  const th = theme;
  const cols = Math.max(4, Math.floor((b.w - 10) / 9));
  const shown = Math.min(count, cols * 6);
  ctx.fillStyle = colour;
  for (let i = 0; i < shown; i++) {
    ctx.beginPath();
    ctx.arc(b.x + 9 + (i % cols) * 9, b.y + b.h + 12 + Math.floor(i / cols) * 9, 3, 0, TAU);
    ctx.fill();
  }
  if (!label) return;
  const rows = Math.max(1, Math.ceil(shown / cols));
  ctx.font = "11px " + th.font;
  ctx.fillStyle = count ? colour : th.muted;
  ctx.textBaseline = "alphabetic";
  const y = b.y + b.h + 12 + rows * 9 + (count ? 6 : -3);
  ctx.fillText(fit(ctx, label, b.w + 20), b.x + 4, y);
}

/** Two stacked canvases: the background (boxes, numbers) and the foreground (moving dots). */
class Board {
  constructor(container) {
    this.container = container;
    this.bg = container.querySelector('canvas[data-layer="bg"]');
    this.fg = container.querySelector('canvas[data-layer="fg"]');
    this.bctx = this.bg.getContext("2d");
    this.fctx = this.fg.getContext("2d");
    this.dots = [];
    this.fx = [];
    this.laneLast = new Map();
    this.state = null;
    this.layout = null;
    this.sig = "";
    this.bgDirty = true;
    this.width = 0;
    this.dpr = 1;
    this.zoom = 1;
    this.resize();
    if (window.ResizeObserver) {
      this.ro = new ResizeObserver(() => this.resize());
      this.ro.observe(container);
    }
  }

  resize() {
    // presenter mode draws everything a quarter larger (text a projector's back row can read)
    const zoom = document.documentElement.classList.contains("presenting") ? 1.15 : 1;
    const cssW = Math.floor(this.container.clientWidth);
    const w = Math.max(240, Math.floor(cssW / zoom));
    const dpr = (window.devicePixelRatio || 1) * zoom; // canvas pixels per layout unit
    if (w === this.width && dpr === this.dpr) return;
    this.width = w;
    this.dpr = dpr;
    this.zoom = zoom;
    this.narrow = cssW < NARROW_BELOW;
    this.setHeight(this.height || BOARD_H);
    this.layout = null;
    this.bgDirty = true;
  }

  /** The board's height in CSS px: fixed in a row, what the boxes need when stacked. */
  setHeight(h) {
    this.height = h;
    this.container.style.height = Math.round(h * this.zoom) + "px";
    for (const c of [this.bg, this.fg]) {
      c.width = Math.round(this.width * this.dpr);
      c.height = Math.round(h * this.dpr);
      c.style.width = Math.round(this.width * this.zoom) + "px";
      c.style.height = Math.round(h * this.zoom) + "px";
    }
  }

  setState(st) {
    this.state = st;
    const sig = this.signature(st);
    if (sig !== this.sig) {
      if (this.structure(st) !== this.structureSig) this.layout = null;
      this.sig = sig;
      this.bgDirty = true;
    }
  }

  clear() {
    this.dots.length = 0;
    this.fx.length = 0;
    this.laneLast.clear();
  }

  /** A dot from `from` to `to`; `lane` thins each path out to one dot per LANE_MS. */
  dot(from, to, start, colour, lane) {
    if (this.dots.length >= MAX_DOTS) return false;
    const last = this.laneLast.get(lane);
    if (last !== undefined && Math.abs(start - last) < LANE_MS) return false;
    this.laneLast.set(lane, start);
    const dur = clamp(Math.hypot(to[0] - from[0], to[1] - from[1]) / DOT_SPEED, 250, DOT_MS);
    this.dots.push({ x0: from[0], y0: from[1], x1: to[0], y1: to[1], start, dur, colour });
    return true;
  }

  effect(at, start, colour, ring, lane) {
    if (!motion || this.fx.length >= MAX_FX) return;
    if (lane) {
      const last = this.laneLast.get(lane);
      if (last !== undefined && Math.abs(start - last) < FX_MS / 2) return;
      this.laneLast.set(lane, start);
    }
    this.fx.push({ x: at[0], y: at[1], start, colour, ring });
  }

  frame(now) {
    if (!this.state) return;
    if (!this.layout) {
      this.layout = this.narrow ? this.makeNarrowLayout(this.state) : this.makeLayout(this.state);
      const h = this.narrow ? this.layout.height : BOARD_H;
      if (h !== this.height) this.setHeight(h);
      this.structureSig = this.structure(this.state);
      this.bgDirty = true;
    }
    if (this.bgDirty) {
      this.bgDirty = false;
      const ctx = this.bctx;
      ctx.setTransform(this.dpr, 0, 0, this.dpr, 0, 0);
      ctx.clearRect(0, 0, this.width, this.height);
      this.drawBg(ctx, this.state, this.layout);
    }
    const ctx = this.fctx;
    ctx.setTransform(this.dpr, 0, 0, this.dpr, 0, 0);
    ctx.clearRect(0, 0, this.width, this.height);
    let keep = 0;
    for (let i = 0; i < this.dots.length; i++) {
      const d = this.dots[i];
      const p = (now - d.start) / d.dur;
      if (p >= 1) continue;
      this.dots[keep++] = d;
      if (p < 0) continue;
      ctx.fillStyle = d.colour;
      ctx.beginPath();
      ctx.arc(d.x0 + (d.x1 - d.x0) * p, d.y0 + (d.y1 - d.y0) * p, 3.5, 0, TAU);
      ctx.fill();
    }
    this.dots.length = keep;
    keep = 0;
    for (let i = 0; i < this.fx.length; i++) {
      const f = this.fx[i];
      const p = (now - f.start) / FX_MS;
      if (p >= 1) continue;
      this.fx[keep++] = f;
      if (p < 0) continue;
      ctx.globalAlpha = 1 - p;
      if (f.ring) {
        ctx.strokeStyle = f.colour;
        ctx.lineWidth = 2;
        ctx.beginPath();
        ctx.arc(f.x, f.y, 4 + 8 * p, 0, TAU);
        ctx.stroke();
      } else {
        ctx.fillStyle = f.colour;
        ctx.beginPath();
        ctx.arc(f.x, f.y, 5 + 5 * p, 0, TAU);
        ctx.fill();
      }
      ctx.globalAlpha = 1;
    }
    this.fx.length = keep;
  }

  get count() {
    return this.dots.length;
  }
}

/* Left: Checkout -> Inventory -> Email (-> Fraud) in a row; every call waits for its reply. */
class SyncBoard extends Board {
  structure(st) {
    return ((st.sync || {}).chain || []).join("|");
  }

  signature(st) {
    const s = st.sync || {};
    const parts = [st.rate, s.in_flight];
    for (const [n, v] of Object.entries(s.services || {})) {
      parts.push(n, v.status, v.busy, v.queue, v.calls, v.failures + v.refused, v.delay_ms, v.slow, v.failure_rate);
    }
    return parts.join(",");
  }

  makeLayout(st) {
    const chain = (st.sync || {}).chain || [];
    const nodes = ["checkout", ...chain];
    const n = nodes.length;
    const m = 8;
    const gap = clamp(this.width * (n > 3 ? 0.06 : 0.08), 26, 72);
    const bw = (this.width - 2 * m - (n - 1) * gap) / n;
    const boxes = new Map();
    nodes.forEach((name, i) => {
      boxes.set(name, { x: m + i * (bw + gap), y: 30, w: bw, h: BOX_H });
    });
    return { nodes, boxes, gap };
  }

  /** A phone: the chain top to bottom, calls going down on the left, replies up on the right. */
  makeNarrowLayout(st) {
    const chain = (st.sync || {}).chain || [];
    const nodes = ["checkout", ...chain];
    const m = 8;
    const h = 84;
    const gap = 34;
    const boxes = new Map();
    nodes.forEach((name, i) => boxes.set(name, { x: m, y: 30 + i * (h + gap), w: this.width - 2 * m, h }));
    return { nodes, boxes, gap, narrow: true, height: 30 + nodes.length * (h + gap) - gap + 10 };
  }

  /** The call lane from box a down (or across) to box b, and the reply lane back. */
  lanes(a, b, narrow) {
    if (narrow) {
      const cx = a.x + a.w * 0.3;
      const rx = a.x + a.w * 0.7;
      return { call: [[cx, a.y + a.h + 2], [cx, b.y - 3]], reply: [[rx, b.y - 2], [rx, a.y + a.h + 3]] };
    }
    const my = a.y + a.h / 2;
    return { call: [[a.x + a.w + 2, my - 9], [b.x - 3, my - 9]], reply: [[b.x - 2, my + 9], [a.x + a.w + 3, my + 9]] };
  }

  drawBg(ctx, st, L) {
    const th = theme;
    const F = th.font;
    const s = st.sync || {};
    const services = s.services || {};
    // the call lanes: calls one way, replies the other
    for (let i = 1; i < L.nodes.length; i++) {
      const a = L.boxes.get(L.nodes[i - 1]);
      const b = L.boxes.get(L.nodes[i]);
      const svc = services[L.nodes[i]] || {};
      const dead = isDown(svc.status);
      const lane = this.lanes(a, b, L.narrow);
      arrow(ctx, ...lane.call[0], ...lane.call[1], th.border, false);
      arrow(ctx, ...lane.reply[0], ...lane.reply[1], dead ? th.fail : th.border, dead);
    }
    ctx.font = "600 11px " + F;
    ctx.fillStyle = th.muted;
    ctx.textBaseline = "alphabetic";
    ctx.fillText(fit(ctx, "Checkout calls each service in turn and waits for its reply", this.width - 16), 8, 18);

    const co = L.boxes.get("checkout");
    const waiting = s.in_flight || 0;
    drawBox(ctx, co, {
      title: "Checkout",
      stripe: th.accent,
      lines: [
        ["Order Service"],
        [num(st.rate) + " orders/s"],
        [intText(waiting) + " waiting", waiting > 20 ? th.fail : th.text, true],
      ],
    });
    if (!L.narrow) dotPile(ctx, co, waiting, waiting > 20 ? th.fail : th.call, waiting ? intText(waiting) + (waiting === 1 ? " customer waiting" : " customers waiting") : "no customer waiting");
    const added = addedServices(s);
    for (const name of L.nodes.slice(1)) {
      const v = services[name] || {};
      const b = L.boxes.get(name);
      const status = syncStatus(v);
      const failed = (v.failures || 0) + (v.refused || 0);
      const lines = [
        ["queue " + intText(v.queue) + " · " + v.busy + " busy", v.queue > 0 ? th.warn : th.text, v.queue > 0],
        [intText(v.calls) + " calls"],
        [intText(failed) + " failed", failed ? th.fail : th.muted],
      ];
      const faults = [];
      if (v.delay_ms > 0) faults.push("+" + intText(v.delay_ms) + " ms");
      if (v.slow > 1) faults.push("×" + num(v.slow) + " slower");
      if (v.failure_rate > 0) faults.push("fails " + pctText(v.failure_rate) + "%");
      if (faults.length) lines.push([faults.join(" · "), th.fail, true]);
      if (added.includes(name)) lines.push(["new: code change", th.fail]);
      drawBox(ctx, b, {
        title: v.label || name,
        short: shortLabel(v.label, name),
        stripe: serviceColour(name),
        badge: status,
        down: isDown(status),
        lines,
      });
      if (v.queue > 0 && !L.narrow) dotPile(ctx, b, v.queue, th.warn, intText(v.queue) + " calls queued");
    }
  }

  /** Sync hops: call dots go down the chain, replies (green) or failures (red) come back. */
  enqueue(hops, when) {
    const L = this.layout;
    if (!L) return;
    for (const h of hops) {
      if (!motion) continue;
      const i = L.nodes.indexOf(h.service);
      if (i < 1) continue;
      const a = L.boxes.get(L.nodes[i - 1]);
      const b = L.boxes.get(h.service);
      const lane = this.lanes(a, b, L.narrow);
      const at = when(h);
      if (h.kind === "call") {
        this.dot(lane.call[0], lane.call[1], at, theme.call, "c" + i);
      } else if (h.kind === "reply") {
        this.dot(lane.reply[0], lane.reply[1], at, theme.ok, "r" + i);
      } else if (this.dot(lane.reply[0], lane.reply[1], at, theme.fail, "f" + i)) {
        this.effect(lane.reply[0], at, theme.fail, false);
      }
    }
  }
}

/* Right: Checkout -> broker topic -> each consumer, on its own. */
class EventBoard extends Board {
  structure(st) {
    return Object.keys(((st.events || {}).groups) || {}).join("|") + "#" + this.partitionCount(st);
  }

  partitionCount(st) {
    let n = 0;
    for (const g of Object.values(((st.events || {}).groups) || {})) n = Math.max(n, (g.partitions || []).length);
    return n;
  }

  signature(st) {
    const e = st.events || {};
    const parts = [st.rate, e.orders_published];
    for (const [n, g] of Object.entries(e.groups || {})) {
      parts.push(n, g.status, g.lag, Math.round(g.lag_ms / 100), g.processed, g.delay_ms, g.failure_rate, g.filtered);
    }
    return parts.join(",");
  }

  makeLayout(st) {
    const groups = Object.keys(((st.events || {}).groups) || {});
    const w = this.width;
    const m = 8;
    const gap = clamp(w * 0.05, 22, 48);
    const cw = clamp(w * 0.24, 96, 170);
    const gw = clamp(w * 0.34, 120, 240);
    const bw = w - 2 * m - cw - gw - 2 * gap;
    const checkout = { x: m, y: 30, w: cw, h: BOX_H };
    const broker = { x: m + cw + gap, y: 30, w: bw, h: BOARD_H - 38 };
    const n = Math.max(1, groups.length);
    const gGap = 8;
    const gh = Math.min(104, (BOARD_H - 38 - (n - 1) * gGap) / n);
    const boxes = new Map();
    groups.forEach((name, i) => {
      boxes.set(name, { x: w - m - gw, y: 30 + i * (gh + gGap), w: gw, h: gh });
    });
    const parts = Math.max(1, this.partitionCount(st));
    const rowTop = broker.y + 56;
    const rowH = Math.min(22, (broker.h - 80) / parts);
    const rows = [];
    for (let p = 0; p < parts; p++) rows.push(rowTop + p * rowH + rowH / 2);
    return { checkout, broker, boxes, rows, rowH };
  }

  /** A phone: checkout, then the broker, then each consumer, top to bottom at full size. */
  makeNarrowLayout(st) {
    const groups = Object.keys(((st.events || {}).groups) || {});
    const w = this.width;
    const m = 8;
    const checkout = { x: m, y: 30, w: w - 2 * m, h: 80 };
    const parts = Math.max(1, this.partitionCount(st));
    const rowH = 18;
    const broker = { x: m, y: checkout.y + checkout.h + 30, w: w - 2 * m, h: 56 + parts * rowH + 22 };
    const rows = [];
    for (let p = 0; p < parts; p++) rows.push(broker.y + 56 + p * rowH + rowH / 2);
    const boxes = new Map();
    const bus = m + 10; // the line the deliveries run down, left of the consumers
    let y = broker.y + broker.h + 26;
    for (const name of groups) {
      boxes.set(name, { x: m + 26, y, w: w - 2 * m - 26, h: 70 });
      y += 70 + 10;
    }
    return { checkout, broker, boxes, rows, rowH, narrow: true, bus, height: y + 4 };
  }

  drawBg(ctx, st, L) {
    const th = theme;
    const F = th.font;
    const e = st.events || {};
    const groups = e.groups || {};
    const co = L.checkout;
    const br = L.broker;
    ctx.font = "600 11px " + F;
    ctx.fillStyle = th.muted;
    ctx.textBaseline = "alphabetic";
    ctx.fillText(fit(ctx, "Checkout emits OrderPlaced and returns; each consumer reads at its own pace", this.width - 16), 8, 18);

    if (L.narrow) {
      arrow(ctx, co.x + co.w / 2, co.y + co.h + 2, co.x + co.w / 2, br.y - 3, th.border, false);
      let last = br.y + br.h;
      for (const b of L.boxes.values()) last = b.y + b.h / 2;
      ctx.strokeStyle = th.border;
      ctx.lineWidth = 1.5;
      ctx.beginPath();
      ctx.moveTo(L.bus, br.y + br.h);
      ctx.lineTo(L.bus, last);
      ctx.stroke();
      for (const [name, b] of L.boxes) {
        const g = groups[name] || {};
        arrow(ctx, L.bus, b.y + b.h / 2, b.x - 3, b.y + b.h / 2, th.border, isDown(g.status));
      }
    } else {
      arrow(ctx, co.x + co.w + 2, co.y + co.h / 2, br.x - 3, co.y + co.h / 2, th.border, false);
      for (const [name, b] of L.boxes) {
        const g = groups[name] || {};
        arrow(ctx, br.x + br.w + 2, b.y + b.h / 2, b.x - 3, b.y + b.h / 2, th.border, isDown(g.status));
      }
    }
    drawBox(ctx, co, {
      title: "Checkout",
      stripe: th.accent,
      lines: [["Order Service"], [num(st.rate) + " orders/s"], ["returns at once", th.ok, true]],
    });

    // the broker and its topic's partitions (the last `span` offsets of each)
    roundRect(ctx, br.x + 0.5, br.y + 0.5, br.w - 1, br.h - 1, 8);
    ctx.fillStyle = th.broker;
    ctx.fill();
    ctx.strokeStyle = th.border;
    ctx.lineWidth = 1;
    ctx.stroke();
    ctx.fillStyle = th.text;
    ctx.font = "700 13px " + F;
    ctx.fillText(fit(ctx, "Event Broker", br.w - 16), br.x + 10, br.y + 20);
    const topic = this.topicName(groups);
    ctx.font = "12px " + F;
    ctx.fillStyle = th.muted;
    ctx.fillText(fit(ctx, "topic " + topic + " · " + intText(e.orders_published) + " events", br.w - 16), br.x + 10, br.y + 37);
    const parts = this.partitions(groups);
    let maxLag = 0;
    for (const p of parts) maxLag = Math.max(maxLag, p.end - p.minCommitted);
    const span = niceSpan(Math.max(50, maxLag * 1.25));
    const x0 = br.x + 30;
    const bwid = br.w - 40;
    parts.forEach((p, i) => {
      const y = L.rows[i];
      if (y === undefined) return;
      const h = Math.max(6, Math.min(12, L.rowH - 6));
      ctx.fillStyle = th.muted;
      ctx.font = "10px " + F;
      ctx.fillText("P" + i, br.x + 10, y + 4);
      ctx.fillStyle = th.surface;
      ctx.fillRect(x0, y - h / 2, bwid, h);
      ctx.fillStyle = th.logFill;
      ctx.fillRect(x0, y - h / 2, bwid, h);
      const lag = Math.min(span, p.end - p.minCommitted);
      if (lag > 0) {
        ctx.fillStyle = th.lagFill;
        ctx.fillRect(x0 + bwid * (1 - lag / span), y - h / 2, bwid * (lag / span), h);
      }
      for (const [name, c] of p.committed) {
        const behind = Math.min(span, p.end - c);
        ctx.fillStyle = serviceColour(name);
        ctx.fillRect(Math.round(x0 + bwid * (1 - behind / span)) - 1, y - h / 2 - 2, 2, h + 4);
      }
      ctx.strokeStyle = th.border;
      ctx.strokeRect(x0 + 0.5, y - h / 2 + 0.5, bwid - 1, h - 1);
    });
    ctx.fillStyle = th.muted;
    ctx.font = "10px " + F;
    const foot = br.y + br.h - 10;
    ctx.fillText(fit(ctx, "last " + intText(span) + " offsets of each partition", br.w - 16), br.x + 10, foot);

    for (const [name, b] of L.boxes) {
      const g = groups[name] || {};
      const lines = [];
      const behind = g.lag_ms > 0 ? " · " + secondsText(g.lag_ms) + " behind" : "";
      lines.push(["lag " + intText(g.lag) + behind, g.lag > 20 ? th.warn : th.text, g.lag > 20]);
      const faults = [];
      if (g.delay_ms > 0) faults.push("+" + intText(g.delay_ms) + " ms");
      if (g.slow > 1) faults.push("×" + num(g.slow) + " slower");
      if (g.failure_rate > 0) faults.push("fails " + pctText(g.failure_rate) + "%");
      if (faults.length) lines.push([faults.join(" · "), th.fail, true]);
      lines.push([intText(g.processed) + " processed" + (g.filter ? " · " + g.filter : "")]);
      drawBox(ctx, b, {
        title: g.label || name,
        short: shortLabel(g.label, name),
        stripe: serviceColour(name),
        badge: g.status || "up",
        down: isDown(g.status),
        lines,
      });
    }
  }

  topicName(groups) {
    for (const g of Object.values(groups)) if (g.topics && g.topics.length) return g.topics[0];
    return "orders";
  }

  /** Per partition: the log end and each consumer's committed offset. */
  partitions(groups) {
    const out = [];
    for (const [name, g] of Object.entries(groups)) {
      for (const p of g.partitions || []) {
        const i = p.partition;
        if (!out[i]) out[i] = { end: 0, minCommitted: Infinity, committed: [] };
        out[i].end = Math.max(out[i].end, p.end);
        out[i].minCommitted = Math.min(out[i].minCommitted, p.committed);
        out[i].committed.push([name, p.committed]);
      }
    }
    return out.filter(Boolean).map((p) => (p.minCommitted === Infinity ? { ...p, minCommitted: p.end } : p));
  }

  /** Sampled event-side observations: produced, delivered, processed, failed, ... */
  enqueue(events, when) {
    const L = this.layout;
    if (!L) return;
    const co = L.checkout;
    const br = L.broker;
    for (const e of events) {
      const row = L.rows[e.partition] !== undefined ? L.rows[e.partition] : br.y + br.h / 2;
      const at = when(e);
      if (e.kind === "produced") {
        if (!motion) continue;
        const from = L.narrow ? [co.x + co.w / 2, co.y + co.h] : [co.x + co.w, co.y + co.h / 2];
        this.dot(from, [L.narrow ? br.x + 30 : br.x, row], at, theme.call, "p" + e.partition);
        continue;
      }
      const b = L.boxes.get(e.service);
      if (!b) continue;
      const target = [b.x + 6, b.y + b.h / 2];
      if (e.kind === "delivered") {
        if (!motion) continue;
        this.dot(L.narrow ? [L.bus, br.y + br.h] : [br.x + br.w, row], target, at, theme.call, "d" + e.service);
      } else if (e.kind === "processed") {
        this.effect(target, at + 300, theme.ok, true, "ok" + e.service);
      } else if (e.kind === "failed" || e.kind === "dead_lettered") {
        this.effect(target, at + 300, theme.fail, false, "fail" + e.service);
      }
    }
  }
}

function niceSpan(n) {
  for (const s of [50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000]) if (n <= s) return s;
  return Math.ceil(n / 100000) * 100000;
}

/* ---- charts (uPlot) ------------------------------------------------------------------------ */

const STATUSES = new Set(["up", "down", "crashed", "slow", "rebalancing", "removed"]);

/**
 * Switch flips as chart marks. The engine marks every status it sets ("down", "up", "slow",
 * "added (from latest)") and notes what a command changed ("+500 ms", "failure rate 0.2");
 * keep the changes, one label per service and moment (the note when there is one), plus the
 * order-rate changes this page saw.
 */
function chartMarks(st) {
  const labels = new Map();
  for (const [n, g] of Object.entries(((st.events || {}).groups) || {})) labels.set(n, shortLabel(g.label, n));
  const last = new Map();
  const byMoment = new Map();
  for (const m of S.engineMarks || st.marks || []) {
    const text = String(m.status || "");
    const who = labels.get(m.name) || m.name;
    let mark = null;
    if (STATUSES.has(text) || text.startsWith("added")) {
      const prev = last.get(m.name);
      last.set(m.name, text);
      if (text === "rebalancing" || prev === text || (prev === undefined && text === "up")) continue;
      if (text === "up") mark = { label: who + (prev === "slow" ? " back to normal" : " up"), colour: theme.ok };
      else if (text === "down") mark = { label: who + " down", colour: theme.muted };
      else if (text === "crashed" || text === "removed") mark = { label: who + " " + text, colour: theme.fail };
      else if (text.startsWith("added")) mark = { label: who + " added", colour: theme.accent };
      else mark = { label: who + " " + text, colour: theme.warn };
    } else {
      const off = /^(\+0 ms|slow x1|failure rate 0)$/.test(text);
      mark = { label: who + " " + (off && text.startsWith("+") ? "delay off" : text), colour: off ? theme.ok : theme.warn, note: true };
    }
    const key = m.t + "|" + m.name;
    const had = byMoment.get(key);
    if (!had || (mark.note && !had.note)) byMoment.set(key, { t: m.t, ...mark });
  }
  const out = Array.from(byMoment.values());
  for (const r of S.rateMarks) out.push({ t: r.t, label: num(r.rate) + " orders/s", colour: theme.accent });
  out.sort((a, b) => a.t - b.t);
  return out;
}

/* ---- start ------------------------------------------------------------------------------ */

function start(opts) {
  if (S.started) return;
  opts = opts || {};
  const root = $("compare-root");
  S.started = true;
  S.wsPath = opts.wsPath || "";
  S.canControl = opts.canControl !== undefined ? !!opts.canControl : !!(root && root.dataset.canControl === "true");
  theme = readTheme();

  for (const id of [
    "sim-time", "sim-status", "sim-speed", "sim-orders", "sim-rate", "sim-behind", "sim-finished", "sim-note", "ws-state",
    "ws-banner", "ws-banner-detail", "sim-error", "speed-select", "rate-input", "service-switches", "add-fraud",
    "fraud-topic", "command-result", "story", "btn-start", "btn-pause",
    "sync-p50", "sync-p95", "sync-p99", "sync-errors", "sync-error-count", "sync-timeouts", "sync-finished",
    "sync-in-flight", "sync-producer-changes", "sync-pc-note", "sync-pc-box",
    "events-p50", "events-p95", "events-p99", "events-errors", "events-published", "events-bytes", "events-lags",
    "events-producer-changes", "events-pc-note", "events-pc-box",
  ]) {
    el[id] = $(id);
  }

  syncBoard = new SyncBoard($("board-sync"));
  eventBoard = new EventBoard($("board-events"));
  mountFeedback(document);
  mountPresenter(document, window, () => {
    for (const b of [syncBoard, eventBoard]) b.resize();
  });
  mountMotionToggle($("motion-toggle"), (on) => {
    motion = on;
    for (const b of [syncBoard, eventBoard]) b.clear();
    const note = $("motion-note");
    if (note) note.hidden = on;
  });
  charts = new CompareCharts(
    { latency: $("chart-latency"), errors: $("chart-errors"), lag: $("chart-lag") },
    {
      theme: () => theme,
      serviceColour,
      labelOf: (name) => {
        const g = (((S.state || {}).events || {}).groups || {})[name];
        return shortLabel(g && g.label, name);
      },
      everyMs: CHART_MS,
    }
  );

  bindUi();
  if (opts.initialFrame) feed(opts.initialFrame);
  S.view = connectionView(document);
  if (S.wsPath) {
    S.live = new LiveSocket({ path: S.wsPath, onMessage: receive, onState: S.view.state });
    fanout.send = (obj) => S.live.send(obj);
    S.live.connect();
  }
  requestAnimationFrame(tick);
}

/* ---- frames -------------------------------------------------------------------------------- */

function feed(frame) {
  if (!S.started || !frame || frame.type !== "frame" || !frame.state || !frame.state.sync) return;
  const now = performance.now();
  const st = frame.state;
  const t = typeof frame.t === "number" ? frame.t : st.t || 0;
  const prev = S.state;
  const reset = !prev || frame.full || t + 1e-9 < S.t || (st.id && prev.id && st.id !== prev.id);
  if (reset) {
    charts.reset();
    syncBoard.clear();
    eventBoard.clear();
    if (t + 1e-9 < S.t || (prev && st.id !== prev.id)) S.rateMarks = [];
    S.lastRate = null;
    S.engineMarks = [];
    if (frame.history) {
      charts.loadHistory(frame.history);
      S.engineMarks = mergeMarks([], frame.history.marks);
    }
  }
  S.engineMarks = mergeMarks(S.engineMarks, st.marks);
  if (S.lastRate !== null && st.rate !== S.lastRate) S.rateMarks.push({ t, rate: st.rate });
  S.lastRate = st.rate;
  if (S.rateMarks.length > 50) S.rateMarks.splice(0, S.rateMarks.length - 50);
  if (S.lastFrameWall) S.frameGap = S.frameGap * 0.8 + clamp(now - S.lastFrameWall, 10, 250) * 0.2;
  S.lastFrameWall = now;

  const prevT = reset ? null : S.t;
  S.state = st;
  S.t = t;
  fanout.framesReceived += 1;
  fanout.lastState = st;

  for (const name of (st.sync || {}).chain || []) serviceColour(name);
  syncBoard.setState(st);
  eventBoard.setState(st);
  // lay out now, so this frame's dots start from the right places
  if (!syncBoard.layout) syncBoard.frame(now);
  if (!eventBoard.layout) eventBoard.frame(now);
  const gap = S.frameGap;
  const schedule = (items) => {
    if (!items.length) return () => now;
    const t0 = prevT === null ? items[0].t : prevT;
    const span = t - t0;
    return (e) => now + (span > 0 ? clamp((e.t - t0) / span, 0, 1) * gap : 0);
  };
  const hops = frame.sync_hops || [];
  if (hops.length) syncBoard.enqueue(hops, schedule(hops));
  const events = frame.events || [];
  if (events.length) eventBoard.enqueue(events, schedule(events));

  charts.setMarks(chartMarks(st));
  charts.record(t, st, now, reset);
  S.numbersDirty = true;
}

function tick(now) {
  fanout.rafCount += 1;
  try {
    syncBoard.frame(now);
    eventBoard.frame(now);
    fanout.dots = syncBoard.count + eventBoard.count;
    if (S.numbersDirty && S.state) {
      S.numbersDirty = false;
      renderNumbers(S.state);
    }
    charts.update(now);
    if (S.live) S.live.drawn(); // flow control: acknowledge what was drawn (docs/api.md)
  } finally {
    requestAnimationFrame(tick);
  }
}

/* ---- numbers ---------------------------------------------------------------------------- */

function bigMs(node, summary) {
  const has = summary && summary.count;
  return (v) => {
    setText(node, has ? msText(v) : "–");
    if (node) node.dataset.level = !has ? "" : v >= 500 ? "bad" : v >= 200 ? "warn" : "good";
  };
}

function renderSide(prefix, side) {
  const r = side.recent_checkout_ms || {};
  bigMs(el[prefix + "-p50"], r)(r.p50);
  bigMs(el[prefix + "-p95"], r)(r.p95);
  bigMs(el[prefix + "-p99"], r)(r.p99);
  const errs = el[prefix + "-errors"];
  const rate = side.recent_error_rate || 0;
  setText(errs, pctText(rate));
  if (errs) errs.dataset.level = rate >= 0.05 ? "bad" : rate > 0 ? "warn" : "good";
  const pc = side.producer_changes || 0;
  setText(el[prefix + "-producer-changes"], String(pc));
  const box = el[prefix + "-pc-box"];
  if (box) box.dataset.level = pc > 0 ? "bad" : "good";
}

function renderNumbers(st) {
  setText(el["sim-time"], S.t.toFixed(2));
  const status = st.finished ? "finished" : st.running ? "running" : "paused";
  setText(el["sim-status"], status);
  el["sim-status"].className = "run-status run-status--" + (st.running ? "running" : "paused");
  setText(el["sim-speed"], num(st.speed === undefined ? 1 : st.speed));
  setText(el["sim-orders"], intText(st.orders));
  setText(el["sim-rate"], num(st.rate));
  el["sim-behind"].hidden = !st.behind;
  if (st.behind) setText(el["sim-behind"], "behind — the engine can't keep up: ×" + num(st.effective_speed) + " of ×" + num(st.speed));
  el["sim-finished"].hidden = !st.finished;
  if (el["sim-note"]) {
    el["sim-note"].hidden = !st.run_note;
    setText(el["sim-note"], st.run_note || "");
  }
  const sel = el["speed-select"];
  if (sel && document.activeElement !== sel && st.speed !== undefined && sel.__server !== st.speed) {
    sel.__server = st.speed;
    for (const o of sel.options) if (parseFloat(o.value) === st.speed) sel.value = o.value;
  }
  serverValue(el["rate-input"], st.rate);
  // the button that changes something is the one that stands out
  if (el["btn-start"]) el["btn-start"].classList.toggle("btn--primary", !st.running && !st.finished);
  if (el["btn-pause"]) el["btn-pause"].classList.toggle("btn--primary", !!st.running);

  const s = st.sync;
  const e = st.events || {};
  renderSide("sync", s);
  renderSide("events", e);
  setText(el["sync-error-count"], intText(s.checkout_errors));
  setText(el["sync-timeouts"], intText(s.checkout_timeouts));
  setText(el["sync-finished"], intText((s.checkout_ok || 0) + (s.checkout_errors || 0)));
  setText(el["sync-in-flight"], intText(s.in_flight));
  setText(el["events-published"], intText(e.orders_published));
  setText(el["events-bytes"], topicsBytesText(e.topics));
  const added = addedServices(s);
  const addedLabels = added.map((n) => shortLabel(((s.services || {})[n] || {}).label, n)).join(", ");
  setText(
    el["sync-pc-note"],
    s.producer_changes > 0
      ? "Checkout's code was changed to call " + addedLabels + "; every checkout now waits for it too."
      : "Adding a 4th service = code change in Order."
  );
  setText(
    el["events-pc-note"],
    added.length && e.producer_changes === 0
      ? addedLabels + " subscribed to OrderPlaced; the Order service never changed."
      : "A new consumer subscribes; Order never changes."
  );
  syncLags(e.groups || {});
  syncSwitches(st);
  renderStoryList(st);
}

function syncLags(groups) {
  const list = el["events-lags"];
  if (!list) return;
  for (const [name, chip] of lagChips) {
    if (!groups[name]) {
      chip.li.remove();
      lagChips.delete(name);
    }
  }
  for (const [name, g] of Object.entries(groups)) {
    let chip = lagChips.get(name);
    if (!chip) {
      const li = make("li", "lag-chip");
      li.id = "events-lag-chip-" + name;
      li.dataset.point = "events.groups." + name;
      const sw = make("span", "swatch");
      sw.style.setProperty("--swatch", serviceColour(name));
      const label = make("span", "lag-chip__label");
      const value = make("strong", "lag-chip__value");
      value.id = "events-lag-" + name;
      const extra = make("span", "lag-chip__extra muted");
      li.append(sw, label, value, extra);
      list.append(li);
      chip = { li, label, value, extra };
      lagChips.set(name, chip);
    }
    setText(chip.label, shortLabel(g.label, name));
    setText(chip.value, intText(g.lag));
    const down = isDown(g.status);
    setText(chip.extra, down ? "DOWN — the broker keeps its events" : g.lag_ms > 0 ? secondsText(g.lag_ms) + " behind" : "up to date");
    chip.li.dataset.level = down ? "down" : g.lag > 20 ? "warn" : "good";
  }
}

/* ---- switches --------------------------------------------------------------------------- */

function syncSwitches(st) {
  const s = st.sync;
  const box = el["service-switches"];
  const tpl = $("tpl-service-switches");
  if (box && tpl && S.canControl) {
    const services = s.services || {};
    for (const [name, row] of switchRows) {
      if (!services[name]) {
        row.node.remove();
        switchRows.delete(name);
      }
    }
    for (const name of s.chain || []) {
      const v = services[name];
      if (!v) continue;
      let row = switchRows.get(name);
      if (!row) row = addSwitchRow(box, tpl, name);
      const short = shortLabel(v.label, name);
      setText(row.label, v.label || name);
      const slowOn = v.delay_ms > 0;
      const ms = slowOn ? v.delay_ms : parseFloat(row.ms.value) || 0;
      row.slow.setAttribute("aria-pressed", String(slowOn));
      setText(row.slow, short + " slow (+" + intText(ms) + " ms)");
      row.slow.title = slowOn ? "On: every " + short + " call takes " + intText(v.delay_ms) + " ms longer. Click to switch it off." : "Make every " + short + " call " + intText(ms) + " ms slower, on both sides";
      row.slowValue.value = slowOn ? "0" : String(parseFloat(row.ms.value) || 0);
      if (slowOn) serverValue(row.ms, v.delay_ms);
      const down = isDown(v.status);
      row.down.setAttribute("aria-pressed", String(down));
      row.down.value = down ? "consumer.up" : "consumer.down";
      setText(row.down, short + " down");
      row.down.title = down ? short + " is down: click to bring it back up" : "Take " + short + " down, on both sides";
      serverValue(row.failure, v.failure_rate);
    }
  }
  const fraud = el["add-fraud"];
  if (fraud) {
    const has = !!(s.services || {}).fraud;
    fraud.disabled = has;
    setText(fraud, has ? "Fraud service added" : "Add a Fraud service");
  }
  const topic = el["fraud-topic"];
  if (topic) {
    for (const g of Object.values(((st.events || {}).groups) || {})) {
      if (g.topics && g.topics.length) {
        topic.value = g.topics[0];
        break;
      }
    }
  }
}

function addSwitchRow(box, tpl, name) {
  const frag = tpl.content.cloneNode(true);
  for (const input of frag.querySelectorAll("[data-bind]")) input.value = name;
  const node = frag.firstElementChild;
  node.id = "switches-" + name;
  node.dataset.service = name;
  const q = (role) => node.querySelector('[data-role="' + role + '"]');
  const row = {
    node,
    label: q("label"),
    slow: q("slow-toggle"),
    slowValue: q("slow-value"),
    ms: q("slow-ms"),
    down: q("down-toggle"),
    failure: q("failure-rate"),
  };
  q("swatch").style.setProperty("--swatch", serviceColour(name));
  row.slow.id = "switch-" + name + "-slow";
  row.down.id = "switch-" + name + "-down";
  row.ms.id = "switch-" + name + "-slow-ms";
  row.failure.id = "switch-" + name + "-failure-rate";
  row.ms.addEventListener("input", () => {
    if (row.slow.getAttribute("aria-pressed") !== "true") {
      const ms = parseFloat(row.ms.value) || 0;
      row.slowValue.value = String(ms);
      setText(row.slow, shortLabel(labelOf(name), name) + " slow (+" + intText(ms) + " ms)");
    }
  });
  box.append(node);
  if (window.htmx) window.htmx.process(node);
  switchRows.set(name, row);
  return row;
}

function labelOf(name) {
  const v = (((S.state || {}).sync || {}).services || {})[name];
  return (v && v.label) || name;
}

/** Show the server's value in a form field, unless the user is editing it. */
function serverValue(field, value) {
  if (!field || value === undefined || value === null || document.activeElement === field) return;
  if (field.__server === value) return;
  field.__server = value;
  field.value = String(value);
}

/* ---- the story: the lesson, applied to what is on screen ----------------------------------- */

/** The narrative: the server's sentences from the present figures (state.story, story.js). */
function renderStoryList(st) {
  if (!el.story) return;
  let items = storyItems(st.story);
  if (!items.length) {
    const text = "Same orders, same services, same luck on both sides." + (S.canControl ? " Press Start, then flip a switch." : "");
    items = [{ level: "ok", text }];
  }
  const sig = storySig(items);
  if (sig === S.story) return;
  S.story = sig;
  renderStory(document, el.story, items);
}

/* ---- WebSocket ------------------------------------------------------------------------------ */

function receive(msg) {
  if (!msg || typeof msg !== "object") return;
  // other modules of the page (the guided lesson: static/js/guide.js) read every message
  document.dispatchEvent(new CustomEvent("fanout:message", { detail: msg }));
  if (msg.type === "frame") feed(msg);
  else if (msg.type === "error") showError(msg.message);
  // "ack" (a command of ours took effect) and "pong" need nothing: the next frame shows it
}

function showError(message) {
  (S.view || connectionView(document)).error(message);
}

/* ---- UI wiring ---------------------------------------------------------------------------- */

function bindUi() {
  // a command's answer shows for a few seconds, then makes room
  document.body.addEventListener("htmx:afterSwap", (ev) => {
    const target = ev.detail && ev.detail.target;
    if (!target || target.id !== "command-result") return;
    clearTimeout(S.resultTimer);
    S.resultTimer = setTimeout(() => {
      target.textContent = "";
    }, 6000);
  });
  if (window.matchMedia) {
    const mq = window.matchMedia("(prefers-color-scheme: dark)");
    const retheme = () => {
      theme = readTheme();
      for (const b of [syncBoard, eventBoard]) b.bgDirty = true;
      for (const p of Object.values(charts.plots)) p.destroy();
      charts.plots = {};
      charts.dirty = true;
    };
    if (mq.addEventListener) mq.addEventListener("change", retheme);
  }
}

window.FanoutCompare = { start, feed, receive };

function boot() {
  const root = $("compare-root");
  if (!root) return;
  const data = $("initial-frame");
  let initialFrame = null;
  if (data) {
    try {
      initialFrame = JSON.parse(data.textContent);
    } catch (err) {
      console.warn("Fanout: the initial frame is not valid JSON", err);
    }
  }
  start({ wsPath: root.dataset.wsPath, initialFrame, canControl: root.dataset.canControl === "true" });
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", boot);
else boot();
