/* Fanout diagram: Producers (Publishers) -> Event Broker (topics, partitions) -> Consumers
 * (Subscribers), drawn on two stacked canvases.
 *
 * The background canvas (boxes, edges, labels, partition logs) is redrawn only when the state
 * changed; the foreground canvas (dots, rings, flashes) every animation frame. Dots live in
 * typed arrays with a fixed capacity, so 1,000+ of them cost one pass and one fill() per colour;
 * rings and flashes too, one path per kind, colour and fade step. Hundreds of services are a grid
 * of square cells, one path per colour, without text (docs/performance.md, "The page").
 * Nothing here touches the DOM outside the two canvases. An ES module: simulation.js imports it.
 */
import { bytesText, compact, rateText, secondsText } from "./format.js";
import { behind } from "./tables.js";

const TAU = Math.PI * 2;
// Path kinds for a dot.
const K_MOVE = 0;
const K_DLQ = 1;
// Effect kinds (drawn at a point, not along a path).
const E_RING = 0;
const E_FLASH = 1;

const DOT_MS = { produced: 650, delivered: 750, dead_lettered: 700, redriven: 700 };
const RING_MS = 450;
const FLASH_MS = 600;
const MAX_EFFECTS = 400;
// Effects fade in this many alpha steps: those of one kind, colour and step share one path and
// one stroke() or fill(), so hundreds of rings cost a few draw calls, not one each.
const FX_LEVELS = 8;
const MAX_PENDING = 6000;
// Below this width the diagram is drawn at this width and scaled down, so columns never overlap.
const MIN_LAYOUT_W = 980;
// Below this width (a phone) the columns stack: producers, then the broker, then consumers, at
// full size and readable, instead of a scaled-down picture.
const VERTICAL_BELOW = 640;
// Directions a path leaves or enters a box with (unit vectors): rightwards, downwards, leftwards.
const RIGHT = [1, 0];
const DOWN = [0, 1];
const LEFT = [-1, 0];

const GRID_ABOVE = 40; // services; above this the diagram draws a grid of cells
const GRID_HEAD = 40; // px above the grid's cells: its count, then the key to the cells
// the grid's key: a cell of each state (cellState) with its mark, and its word
const CELL_KEY = ["ok", "backlog", "down", "failed"];

function clamp(v, lo, hi) {
  return v < lo ? lo : v > hi ? hi : v;
}

function cssVar(style, name, fallback) {
  const v = style.getPropertyValue(name).trim();
  return v || fallback;
}

function niceSpan(n) {
  const steps = [20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000];
  for (const s of steps) if (n <= s) return s;
  return Math.ceil(n / 100000) * 100000;
}

/* A colour per event type: the order comes from the state (producers, then what services
 * emit), so every viewer of a run sees the same colours. */
/** A shape per event type, so two types differ without colour (under colour-blindness too). */
export const SHAPES = ["circle", "square", "triangle", "diamond"];

/** The shape of the i-th event type: circle, square, triangle, diamond, then round again. */
export function typeShape(i) {
  return SHAPES[((i % SHAPES.length) + SHAPES.length) % SHAPES.length];
}

/** Add a dot of `shape` at (x, y), radius r, to the current path (one fill per colour). */
function shapePath(ctx, shape, x, y, r) {
  if (shape === "square") {
    ctx.rect(x - r * 0.9, y - r * 0.9, r * 1.8, r * 1.8);
  } else if (shape === "triangle") {
    ctx.moveTo(x, y - r * 1.2);
    ctx.lineTo(x + r * 1.1, y + r * 0.8);
    ctx.lineTo(x - r * 1.1, y + r * 0.8);
    ctx.closePath();
  } else if (shape === "diamond") {
    ctx.moveTo(x, y - r * 1.25);
    ctx.lineTo(x + r * 1.1, y);
    ctx.lineTo(x, y + r * 1.25);
    ctx.lineTo(x - r * 1.1, y);
    ctx.closePath();
  } else {
    ctx.moveTo(x + r, y);
    ctx.arc(x, y, r, 0, TAU);
  }
}

class TypeColours {
  constructor() {
    this.index = new Map();
    this.palette = [];
  }
  setPalette(p) {
    this.palette = p;
  }
  learn(state) {
    const names = [];
    for (const p of Object.values(state.producers || {})) if (p.event) names.push(p.event);
    for (const g of Object.values(state.groups || {})) {
      for (const e of g.emits || []) names.push(typeof e === "string" ? e : e.event);
    }
    for (const g of Object.values(state.groups || {})) for (const e of g.events || []) names.push(e);
    let added = false;
    for (const n of names) {
      if (n && !this.index.has(n)) {
        this.index.set(n, this.index.size);
        added = true;
      }
    }
    return added;
  }
  idx(type) {
    let i = this.index.get(type);
    if (i === undefined) {
      i = this.index.size;
      this.index.set(type, i);
    }
    return i % Math.max(1, this.palette.length);
  }
  colour(type) {
    return this.palette[this.idx(type)] || "#888";
  }
  shape(type) {
    let i = this.index.get(type);
    if (i === undefined) i = this.idx(type);
    return typeShape(i);
  }
  entries() {
    return Array.from(this.index.keys()).map((t) => [t, this.colour(t), this.shape(t)]);
  }
}

class Diagram {
  constructor(container, opts) {
    opts = opts || {};
    this.container = container;
    this.bg = container.querySelector('canvas[data-layer="bg"]');
    this.fg = container.querySelector('canvas[data-layer="fg"]');
    this.bctx = this.bg.getContext("2d");
    this.fctx = this.fg.getContext("2d");
    this.types = new TypeColours();
    this.groupColour = opts.groupColour || (() => "#888");
    this.onSelect = opts.onSelect || null;

    const cap = (this.cap = opts.maxDots || 2000);
    this.keepEvery = opts.keepEvery || 1;
    this.effectsOn = opts.effects !== false;
    // false: no moving dots or effects; the edges' thickness and arrows show the flows (motion.js)
    this.motion = true;
    this.path = new Float32Array(cap * 8); // x0 y0 c1x c1y c2x c2y x1 y1
    this.start = new Float64Array(cap);
    this.dur = new Float32Array(cap);
    this.col = new Int16Array(cap); // palette index; -1 = dead-letter red
    this.kind = new Uint8Array(cap);
    this.count = 0;
    this.dropped = 0;
    // Effects (rings, flashes) in typed arrays too, oldest first; `fxBox` holds the service box a
    // dead letter tints. Colours are indices into `fxColours` (a handful of theme colours).
    this.fxX = new Float32Array(MAX_EFFECTS);
    this.fxY = new Float32Array(MAX_EFFECTS);
    this.fxStart = new Float64Array(MAX_EFFECTS);
    this.fxType = new Uint8Array(MAX_EFFECTS);
    this.fxCol = new Uint8Array(MAX_EFFECTS);
    this.fxHalf = new Float32Array(MAX_EFFECTS); // 0: a circle at a chip; > 0: a square round a cell
    this.fxBox = new Array(MAX_EFFECTS).fill(null);
    this.fxLevel = new Int16Array(MAX_EFFECTS); // scratch, per frame: the alpha step (-1: not yet)
    this.fxHead = 0;
    this.fxCount = 0;
    this.fxColours = [];
    this.fxUsed = new Uint8Array(0); // scratch, per frame: which (kind, colour, step) occur
    this.tint = new Map(); // scratch, per frame: service box -> strongest dead-letter tint
    this.pending = [];
    this.pendingHead = 0;
    this.seen = 0;

    this.state = null;
    this.layout = null;
    this.sig = "";
    this.emitTopic = new Map(); // event type -> topic, learned from the frames
    this.emitter = new Map(); // event type -> group name
    this.bgDirty = true;
    this.width = 0;
    this.cssW = 0;
    this.scale = 1;
    this.dpr = 1;

    this.readTheme();
    this.resize();
    if (window.ResizeObserver) {
      this.ro = new ResizeObserver(() => this.resize());
      this.ro.observe(container);
    } else {
      window.addEventListener("resize", () => this.resize());
    }
    const dark = window.matchMedia ? window.matchMedia("(prefers-color-scheme: dark)") : null;
    if (dark && dark.addEventListener) {
      dark.addEventListener("change", () => {
        this.readTheme();
        this.bgDirty = true;
      });
    }
    this.fg.addEventListener("click", (ev) => this.click(ev));
    this.fg.addEventListener("mousemove", (ev) => {
      this.fg.style.cursor = this.hit(ev) ? "pointer" : "";
    });
  }

  readTheme() {
    const s = getComputedStyle(document.documentElement);
    this.theme = {
      font: cssVar(s, "--font-sans", "system-ui, sans-serif"),
      text: cssVar(s, "--text", "#1f2328"),
      muted: cssVar(s, "--text-muted", "#59636e"),
      border: cssVar(s, "--border", "#d8dee4"),
      surface: cssVar(s, "--surface", "#fff"),
      bg: cssVar(s, "--bg", "#f7f7f8"),
      accent: cssVar(s, "--accent", "#2f5fd0"),
      broker: cssVar(s, "--broker-bg", "#eef2fb"),
      // the darker shades of the status colours: text and badges on the canvas stay readable
      ok: cssVar(s, "--ok-text", "#00745a"),
      fail: cssVar(s, "--warn-text", "#8a5d00"),
      dead: cssVar(s, "--fail-text", "#b34f00"),
      retry: cssVar(s, "--warn-text", "#8a5d00"),
      busy: cssVar(s, "--event-produced", "#0072b2"),
      slow: cssVar(s, "--warn-text", "#8a5d00"),
      rebalancing: cssVar(s, "--status-rebalancing", "#41505f"),
      lagFill: cssVar(s, "--lag-fill", "rgba(230,159,0,0.45)"),
      logFill: cssVar(s, "--log-fill", "rgba(47,95,208,0.18)"),
    };
    const pal = [];
    for (let i = 0; i < 8; i++) pal.push(cssVar(s, "--type-" + i, "#2f6fdb"));
    this.types.setPalette(pal);
  }

  resize(force) {
    const cssW = Math.max(240, Math.floor(this.container.clientWidth));
    const dpr = window.devicePixelRatio || 1;
    if (!force && cssW === this.cssW && dpr === this.dpr && this.layout) return;
    this.cssW = cssW;
    this.vertical = cssW < VERTICAL_BELOW;
    // presenter mode (present.js) lets a wide screen draw larger than life: readable at the back
    const most = document.documentElement.classList.contains("presenting") ? 1.15 : 1;
    this.scale = this.vertical ? 1 : Math.min(most, cssW / MIN_LAYOUT_W);
    this.width = cssW / this.scale; // layout units
    this.dpr = dpr;
    this.relayout();
    this.count = 0; // in-flight dots were placed for the old geometry
    this.clearEffects();
  }

  /* ---- state & layout -------------------------------------------------------------- */

  setState(state) {
    this.state = state;
    if (this.types.learn(state)) this.typesChanged = true;
    const sig = this.signature(state);
    if (sig !== this.sig) {
      this.sig = sig;
      this.relayout();
    }
    this.bgDirty = true;
  }

  signature(state) {
    const parts = [];
    for (const [n, p] of Object.entries(state.producers || {})) parts.push("p" + n + ">" + p.topic);
    for (const [n, t] of Object.entries(state.topics || {})) {
      const down = (t.partitions || []).filter((p) => p.online === false).map((p) => p.index);
      parts.push("t" + n + ":" + (t.partitions || []).length + ":" + down.join(","));
    }
    for (const [n, g] of Object.entries(state.groups || {})) {
      parts.push("g" + n + ":" + (g.instances || []).length + ":" + (g.topics || []).join(",") + ":" + (g.filter ? 1 : 0));
    }
    return parts.join("|");
  }

  relayout() {
    if (this.vertical) {
      this.relayoutVertical();
      return;
    }
    const st = this.state || {};
    const W = this.width;
    const pad = 14;
    const top = 34;
    const L = { producers: new Map(), topics: new Map(), groups: new Map(), width: W };
    const pW = Math.round(clamp(W * 0.17, 150, 210));
    const gW = Math.round(clamp(W * 0.25, 220, 300));
    const bW = Math.round(clamp(W * 0.3, 240, 380));
    const px = pad;
    const gx = W - pad - gW;
    const bx = Math.round((px + pW + gx) / 2 - bW / 2);
    L.cols = { px, pW, bx, bW, gx, gW };
    L.heads = [
      { text: "PRODUCERS (PUBLISHERS)", x: px, y: 18, align: "left" },
      { text: "EVENT BROKER · TOPICS & PARTITIONS", x: bx + bW / 2, y: 18, align: "center" },
      { text: "CONSUMERS (SUBSCRIBERS)", x: gx, y: 18, align: "left" },
    ];
    // where paths leave and enter boxes: left to right
    L.dirs = { produce: [RIGHT, RIGHT], deliver: [RIGHT, RIGHT], emit: null, bundle: [RIGHT, RIGHT] };

    const prods = Object.entries(st.producers || {});
    const topics = Object.entries(st.topics || {});
    const groups = Object.entries(st.groups || {});

    const pH = 62;
    const pGap = 12;
    const colP = prods.length ? prods.length * (pH + pGap) - pGap : 0;

    const bHead = 48;
    const tGap = 10;
    const topicBoxes = topics.map(([name, t]) => {
      const n = (t.partitions || []).length;
      const rowH = n <= 6 ? 15 : Math.max(5, Math.floor(96 / n));
      return { name, n, rowH, h: 26 + n * rowH + 6 };
    });
    const colB = bHead + topicBoxes.reduce((a, b) => a + b.h, 0) + Math.max(0, topicBoxes.length - 1) * tGap + 12;

    const gGap = 12;
    const trayH = 16;
    const chipSz = 12;
    const chipGap = 4;
    const perRow = Math.max(1, Math.floor((gW - 20 + chipGap) / (chipSz + chipGap)));
    const groupBoxes = groups.map(([name, g]) => {
      const n = (g.instances || []).length;
      const rows = Math.max(1, Math.ceil(n / perRow));
      const filterLine = g.filter ? 14 : 0;
      const chipsY = 46 + filterLine;
      const h = chipsY + rows * (chipSz + chipGap) + 4;
      return { name, n, rows, chipsY, h, total: h + 3 + trayH };
    });
    // Hundreds of services (the Uber lesson): one small cell each, in a grid, coloured by state.
    const grid = groups.length > GRID_ABOVE;
    const cell = 16;
    const cellGap = 3;
    const gridCols = Math.max(1, Math.floor((gW + cellGap) / (cell + cellGap)));
    const gridRows = Math.ceil(groups.length / gridCols);
    const colG = grid
      ? GRID_HEAD + gridRows * (cell + cellGap)
      : groupBoxes.reduce((a, b) => a + b.total, 0) + Math.max(0, groupBoxes.length - 1) * gGap;

    const inner = Math.max(colP, colB, colG, 140);
    L.height = top + inner + pad;

    // Producers, centred in their column.
    let y = top + Math.round((inner - colP) / 2);
    for (const [name] of prods) {
      L.producers.set(name, { x: px, y, w: pW, h: pH });
      y += pH + pGap;
    }

    // Broker and its topics.
    const by = top + Math.round((inner - colB) / 2);
    L.broker = { x: bx, y: by, w: bW, h: colB };
    y = by + bHead;
    for (const tb of topicBoxes) {
      const box = { x: bx + 10, y, w: bW - 20, h: tb.h, rowH: tb.rowH, parts: [] };
      for (let i = 0; i < tb.n; i++) box.parts.push(y + 26 + i * tb.rowH + tb.rowH / 2);
      box.barX0 = box.x + 30;
      box.barX1 = box.x + box.w - 50;
      L.topics.set(tb.name, box);
      y += tb.h + tGap;
    }

    // Consumer services, each with its DLQ tray underneath.
    y = top + Math.round((inner - colG) / 2);
    L.grid = grid ? { x: gx, y, w: gW, n: groups.length } : null;
    if (grid) {
      groupBoxes.forEach((gb, i) => {
        const cx = gx + (i % gridCols) * (cell + cellGap);
        const cy = y + GRID_HEAD + Math.floor(i / gridCols) * (cell + cellGap);
        L.groups.set(gb.name, { x: cx, y: cy, w: cell, h: cell, chips: [], chipSz: 0, cell: true, tray: null });
      });
    }
    for (const gb of grid ? [] : groupBoxes) {
      const box = { x: gx, y, w: gW, h: gb.h, chips: [], chipSz };
      for (let i = 0; i < gb.n; i++) {
        const r = Math.floor(i / perRow);
        const c = i % perRow;
        box.chips.push({ x: gx + 10 + c * (chipSz + chipGap), y: y + gb.chipsY + r * (chipSz + chipGap) });
      }
      box.chipsY = gb.chipsY;
      box.tray = { x: gx + 10, y: y + gb.h + 3, w: gW - 20, h: trayH };
      L.groups.set(gb.name, box);
      y += gb.total + gGap;
    }

    this.applyLayout(L);
  }

  applyLayout(L) {
    this.layout = L;
    const ratio = this.dpr * this.scale;
    const cssH = Math.round(L.height * this.scale);
    for (const c of [this.bg, this.fg]) {
      c.width = Math.round(this.width * ratio);
      c.height = Math.round(L.height * ratio);
      c.style.height = cssH + "px";
    }
    this.container.style.height = cssH + "px";
    this.bgDirty = true;
  }

  /**
   * A phone's layout: producers (two a row), then the broker, then the consumer services, each
   * full width, at full size. Deliveries run down the right margin into a service's right side;
   * emitted events go back up the left margin into their topic.
   */
  relayoutVertical() {
    const st = this.state || {};
    const W = this.width;
    const pad = 10;
    const margin = 22; // beside the services: where the delivery and emit paths run
    const L = { producers: new Map(), topics: new Map(), groups: new Map(), width: W, vertical: true, heads: [] };
    const prods = Object.entries(st.producers || {});
    const topics = Object.entries(st.topics || {});
    const groups = Object.entries(st.groups || {});
    let y = 6;

    // producers, two a row
    const perRow = W >= 300 ? 2 : 1;
    const pGap = 10;
    const pW = Math.floor((W - 2 * pad - (perRow - 1) * pGap) / perRow);
    const pH = 62;
    L.heads.push({ text: "PRODUCERS (PUBLISHERS)", x: pad, y: y + 12, align: "left" });
    y += 22;
    prods.forEach(([name], i) => {
      const r = Math.floor(i / perRow);
      const c = i % perRow;
      L.producers.set(name, { x: pad + c * (pW + pGap), y: y + r * (pH + pGap), w: pW, h: pH });
    });
    y += prods.length ? Math.ceil(prods.length / perRow) * (pH + pGap) : 0;
    y += 30; // room for the paths down into the broker

    // the broker, full width
    L.heads.push({ text: "EVENT BROKER · TOPICS & PARTITIONS", x: pad, y: y - 6, align: "left" });
    const bx = pad;
    const bW = W - 2 * pad - margin + 10;
    const bHead = 48;
    const tGap = 10;
    const by = y + 4;
    let ty = by + bHead;
    for (const [name, t] of topics) {
      const n = (t.partitions || []).length;
      const rowH = n <= 6 ? 15 : Math.max(5, Math.floor(96 / n));
      const h = 26 + n * rowH + 6;
      const box = { x: bx + 10, y: ty, w: bW - 20, h, rowH, parts: [] };
      for (let i = 0; i < n; i++) box.parts.push(ty + 26 + i * rowH + rowH / 2);
      box.barX0 = box.x + 30;
      box.barX1 = box.x + box.w - 50;
      L.topics.set(name, box);
      ty += h + tGap;
    }
    const bH = ty - by - tGap + 12;
    L.broker = { x: bx, y: by, w: bW, h: Math.max(bH, bHead + 12) };
    y = by + L.broker.h + 34;

    // consumer services, full width less the margins, each with its DLQ tray
    L.heads.push({ text: "CONSUMERS (SUBSCRIBERS)", x: pad, y: y - 10, align: "left" });
    const gx = pad + margin;
    const gW = W - 2 * pad - 2 * margin;
    const grid = groups.length > GRID_ABOVE;
    const trayH = 16;
    const gGap = 12;
    if (grid) {
      const cell = 16;
      const cellGap = 3;
      const cols = Math.max(1, Math.floor((gW + cellGap) / (cell + cellGap)));
      L.grid = { x: gx, y, w: gW, n: groups.length };
      groups.forEach(([name], i) => {
        const cx = gx + (i % cols) * (cell + cellGap);
        const cy = y + GRID_HEAD + Math.floor(i / cols) * (cell + cellGap);
        L.groups.set(name, { x: cx, y: cy, w: cell, h: cell, chips: [], chipSz: 0, cell: true, tray: null });
      });
      y += GRID_HEAD + Math.ceil(groups.length / cols) * (cell + cellGap);
    } else {
      L.grid = null;
      const chipSz = 12;
      const chipGap = 4;
      const chipsPerRow = Math.max(1, Math.floor((gW - 20 + chipGap) / (chipSz + chipGap)));
      for (const [name, g] of groups) {
        const n = (g.instances || []).length;
        const rows = Math.max(1, Math.ceil(n / chipsPerRow));
        const chipsY = 46 + (g.filter ? 14 : 0);
        const h = chipsY + rows * (chipSz + chipGap) + 4;
        const box = { x: gx, y, w: gW, h, chips: [], chipSz, chipsY };
        for (let i = 0; i < n; i++) {
          const r = Math.floor(i / chipsPerRow);
          const c = i % chipsPerRow;
          box.chips.push({ x: gx + 10 + c * (chipSz + chipGap), y: y + chipsY + r * (chipSz + chipGap) });
        }
        box.tray = { x: gx + 10, y: y + h + 3, w: gW - 20, h: trayH };
        L.groups.set(name, box);
        y += h + 3 + trayH + gGap;
      }
    }
    L.height = y + pad;
    L.dirs = { produce: [DOWN, RIGHT], deliver: [RIGHT, LEFT], emit: [LEFT, RIGHT], bundle: [DOWN, DOWN] };
    this.applyLayout(L);
  }

  /* ---- path anchors: where a path leaves and enters a box, in either layout ------------ */

  /** Producer box -> its topic's partition row. */
  produceAnchors(b, t, py) {
    if (this.layout.vertical) return [b.x + b.w / 2, b.y + b.h, t.x, py];
    return [b.x + b.w, b.y + b.h / 2, t.x, py];
  }

  /** Topic -> a service that reads it. */
  deliverAnchors(t, g) {
    if (this.layout.vertical) return [t.x + t.w, t.y + t.h / 2, g.x + g.w, g.y + Math.min(24, g.h / 2)];
    return [t.x + t.w, t.y + t.h / 2, g.x, g.y + g.h / 2];
  }

  /** A service emitting an event -> the topic it goes to. */
  emitAnchors(g, t) {
    if (this.layout.vertical) return [g.x, g.y + g.h - 8, t.x, t.y + t.h - 6];
    return [g.x, g.y + g.h - 8, t.x + t.w, t.y + t.h - 6];
  }

  /* ---- anchors ----------------------------------------------------------------------- */

  partY(topic, p) {
    const t = this.layout.topics.get(topic);
    if (!t) return null;
    return t.parts[p] !== undefined ? t.parts[p] : t.y + t.h / 2;
  }

  chipXY(group, instance) {
    const g = this.layout.groups.get(group);
    if (!g) return null;
    if (g.cell) return { x: g.x + g.w / 2, y: g.y + g.h / 2 }; // the grid: one cell a service
    const insts = (this.state.groups[group] || {}).instances || [];
    let pos = -1;
    for (let i = 0; i < insts.length; i++) if (insts[i].index === instance) pos = i;
    const c = g.chips[pos];
    if (!c) return { x: g.x + 10, y: g.y + g.h / 2 };
    return { x: c.x + g.chipSz / 2, y: c.y + g.chipSz / 2 };
  }

  /* ---- events -> animations ------------------------------------------------------------ */

  /** Queue a frame's sampled events; `at(e)` gives the wall time (ms) each one should start. */
  enqueue(events, at) {
    if (!this.motion) return;
    for (let i = 0; i < events.length; i++) {
      const e = events[i];
      if (this.keepEvery > 1 && this.seen++ % this.keepEvery !== 0) continue;
      this.pending.push(at(e), e);
    }
    const size = (this.pending.length - this.pendingHead) / 2;
    if (size > MAX_PENDING) {
      this.pendingHead += (size - MAX_PENDING) * 2;
      this.dropped += size - MAX_PENDING;
    }
  }

  /** Moving dots on or off (a viewer's choice, or their system's reduced-motion setting). */
  setMotion(on) {
    this.motion = !!on;
    if (!this.motion) this.clear();
    this.bgDirty = true;
  }

  clear() {
    this.count = 0;
    this.clearEffects();
    this.pending.length = 0;
    this.pendingHead = 0;
  }

  activate(now) {
    const q = this.pending;
    let h = this.pendingHead;
    while (h < q.length && q[h] <= now) {
      const start = q[h];
      const e = q[h + 1];
      h += 2;
      if (now - start > 1200) {
        this.dropped++;
        continue; // the tab was hidden: don't replay a backlog
      }
      this.spawn(e, start);
    }
    if (h >= q.length) {
      q.length = 0;
      h = 0;
    } else if (h > 4096) {
      q.splice(0, h);
      h = 0;
    }
    this.pendingHead = h;
  }

  spawn(e, start) {
    const L = this.layout;
    if (!L || !this.state) return;
    switch (e.kind) {
      case "produced": {
        const py = this.partY(e.topic, e.partition);
        const t = L.topics.get(e.topic);
        if (py === null) return;
        let src = null;
        for (const [name, p] of Object.entries(this.state.producers || {})) {
          if (p.topic === e.topic && p.event === e.event_type) {
            src = L.producers.get(name) || null;
            break;
          }
        }
        if (src) {
          const [x0, y0, x1, y1] = this.produceAnchors(src, t, py);
          this.addDot(x0, y0, x1, y1, start, DOT_MS.produced, this.types.idx(e.event_type), K_MOVE, 0, L.dirs.produce);
          return;
        }
        // Emitted by a consumer service: it is a producer too. Learn which topic it goes to.
        this.emitTopic.set(e.event_type, e.topic);
        const gname = this.emitterOf(e.event_type);
        const g = gname && L.groups.get(gname);
        if (g) {
          const [x0, y0, x1, y1] = this.emitAnchors(g, t);
          this.addDot(x0, y0, x1, y1, start, DOT_MS.produced, this.types.idx(e.event_type), K_MOVE, 1, L.dirs.emit);
        }
        return;
      }
      case "delivered": {
        // along the topic -> service edge; the instance that took it lights up when done
        const t = L.topics.get(e.topic);
        const g = L.groups.get(e.service);
        if (!t || !g) return;
        const [x0, y0, x1, y1] = this.deliverAnchors(t, g);
        this.addDot(x0, y0, x1, y1, start, DOT_MS.delivered, this.types.idx(e.event_type), K_MOVE, 0, L.dirs.deliver);
        return;
      }
      case "dead_lettered": {
        const g = L.groups.get(e.service);
        if (!g || !g.tray) return;
        const x = g.x + g.w / 2;
        this.addDot(x, g.y + g.h - 4, g.tray.x + 44 + Math.random() * (g.tray.w - 60), g.tray.y + g.tray.h / 2, start, DOT_MS.dead_lettered, -1, K_DLQ, 0);
        if (this.effectsOn) this.addEffect(E_FLASH, x, g.y + g.h - 4, start, this.theme.dead, g);
        return;
      }
      case "redriven": {
        const g = L.groups.get(e.service);
        if (!g || !g.tray) return;
        this.addDot(g.tray.x + 30, g.tray.y + g.tray.h / 2, g.x + 10, g.y + g.h / 2, start, DOT_MS.redriven, this.types.idx(e.event_type), K_MOVE, 2);
        return;
      }
      default: {
        if (!this.effectsOn) return;
        const at = this.chipXY(e.service, e.instance);
        if (!at) return;
        // in the grid, square and the cell's size: a ring round it, not over its neighbours
        const g = L.groups.get(e.service);
        const half = g && g.cell ? g.w / 2 : 0;
        if (e.kind === "processed") this.addEffect(E_RING, at.x, at.y, start, this.theme.ok, null, half);
        else if (e.kind === "failed") this.addEffect(E_FLASH, at.x, at.y, start, this.theme.dead, null, half);
        else if (e.kind === "retried") this.addEffect(E_RING, at.x, at.y, start, this.theme.retry, null, half);
        else if (e.kind === "deduplicated") this.addEffect(E_RING, at.x, at.y, start, this.theme.muted, null, half);
      }
    }
  }

  emitterOf(type) {
    let g = this.emitter.get(type);
    if (g && this.state.groups[g]) return g;
    g = null;
    for (const [name, grp] of Object.entries(this.state.groups || {})) {
      for (const e of grp.emits || []) if ((typeof e === "string" ? e : e.event) === type) g = name;
    }
    if (g) this.emitter.set(type, g);
    return g;
  }

  addDot(x0, y0, x1, y1, start, dur, col, kind, style, dirs) {
    let i = this.count;
    if (i >= this.cap) {
      this.dropped++;
      return;
    }
    this.count++;
    const o = i * 8;
    const P = this.path;
    const dx = Math.max(30, Math.abs(x1 - x0) * 0.5);
    P[o] = x0;
    P[o + 1] = y0;
    P[o + 6] = x1;
    P[o + 7] = y1;
    if (dirs && this.layout && this.layout.vertical && kind !== K_DLQ) {
      // the phone layout: the same curves as its edges
      const reach = dirs[1] === LEFT ? 26 : dirs[0] === LEFT ? 18 : 0;
      const c = controls(x0, y0, x1, y1, dirs[0], dirs[1], reach);
      P[o + 2] = c[0];
      P[o + 3] = c[1];
      P[o + 4] = c[2];
      P[o + 5] = c[3];
    } else if (kind === K_DLQ) {
      P[o + 2] = x0;
      P[o + 3] = y0 + 10;
      P[o + 4] = x1;
      P[o + 5] = y1 - 12;
    } else if (style === 1) {
      // consumer -> topic (an emitted event): bow below the straight line
      P[o + 2] = x0 - 40;
      P[o + 3] = y0 + 34;
      P[o + 4] = x1 + 60;
      P[o + 5] = y1 + 34;
    } else if (style === 2) {
      P[o + 2] = x0 - 30;
      P[o + 3] = y0;
      P[o + 4] = x1 - 30;
      P[o + 5] = y1;
    } else {
      const dir = x1 >= x0 ? 1 : -1;
      P[o + 2] = x0 + dir * dx;
      P[o + 3] = y0;
      P[o + 4] = x1 - dir * dx;
      P[o + 5] = y1;
    }
    this.start[i] = start;
    this.dur[i] = dur;
    this.col[i] = col;
    this.kind[i] = kind;
  }

  /** The number of effects (rings, flashes) alive or waiting to start. */
  get effectCount() {
    return this.fxCount;
  }

  clearEffects() {
    this.fxHead = 0;
    this.fxCount = 0;
    this.fxBox.fill(null);
  }

  /**
   * An effect at (x, y) from `start` (ms). `half` > 0: on a grid cell of that half-size, drawn
   * square (axis-aligned shapes are the cheap ones to rasterise). The effects are a ring buffer
   * in insertion order; when it is full the oldest goes (a ring lasts under half a second).
   */
  addEffect(type, x, y, start, colour, box, half) {
    let i;
    if (this.fxCount >= MAX_EFFECTS) {
      i = this.fxHead;
      this.fxHead = i + 1 === MAX_EFFECTS ? 0 : i + 1;
    } else {
      i = this.fxHead + this.fxCount;
      if (i >= MAX_EFFECTS) i -= MAX_EFFECTS;
      this.fxCount++;
    }
    let c = this.fxColours.indexOf(colour);
    if (c < 0) {
      c = this.fxColours.length;
      this.fxColours.push(colour);
    }
    this.fxX[i] = x;
    this.fxY[i] = y;
    this.fxStart[i] = start;
    this.fxType[i] = type;
    this.fxCol[i] = c;
    this.fxHalf[i] = half || 0;
    this.fxBox[i] = type === E_FLASH ? box || null : null;
  }

  /* ---- drawing --------------------------------------------------------------------------- */

  frame(now) {
    this.activate(now);
    if (this.bgDirty) {
      this.bgDirty = false;
      this.drawBackground();
    }
    this.drawForeground(now);
  }

  drawForeground(now) {
    const ctx = this.fctx;
    const px = this.dpr * this.scale;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, this.fg.width, this.fg.height);
    ctx.setTransform(px, 0, 0, px, 0, 0);

    this.drawEffects(ctx, now);

    // Dots: retire the finished ones, then one path + fill per colour.
    const P = this.path;
    const S = this.start;
    const D = this.dur;
    let n = this.count;
    for (let i = 0; i < n; ) {
      if (now - S[i] >= D[i]) {
        n--;
        if (i !== n) this.move(n, i);
      } else i++;
    }
    this.count = n;
    if (!n) return;
    const pal = this.types.palette;
    const cols = pal.length;
    const r = 3.4;
    for (let c = -1; c < cols; c++) {
      const shape = c < 0 ? "circle" : typeShape(c);
      let any = false;
      ctx.beginPath();
      for (let i = 0; i < n; i++) {
        if (this.col[i] !== c) continue;
        let t = (now - S[i]) / D[i];
        if (t < 0) continue;
        if (this.kind[i] === K_DLQ) t = t * t; // it falls
        const u = 1 - t;
        const o = i * 8;
        const a = u * u * u;
        const b = 3 * u * u * t;
        const cc = 3 * u * t * t;
        const d = t * t * t;
        const x = a * P[o] + b * P[o + 2] + cc * P[o + 4] + d * P[o + 6];
        const y = a * P[o + 1] + b * P[o + 3] + cc * P[o + 5] + d * P[o + 7];
        shapePath(ctx, shape, x, y, r);
        any = true;
      }
      if (any) {
        ctx.fillStyle = c < 0 ? this.theme.dead : pal[c];
        ctx.fill();
      }
    }
  }

  /**
   * Effects: rings where an instance finished something, red flashes on failures; a dead letter
   * also tints its whole service box (once, at the strongest level, not stacked). One pass retires
   * the finished ones and gives each an alpha step; then one path per (kind, colour, step).
   */
  drawEffects(ctx, now) {
    const n0 = this.fxCount;
    if (!n0) return;
    const X = this.fxX;
    const Y = this.fxY;
    const T0 = this.fxStart;
    const K = this.fxType;
    const C = this.fxCol;
    const H = this.fxHalf;
    const B = this.fxBox;
    const lvl = this.fxLevel;
    const ncol = this.fxColours.length;
    if (this.fxUsed.length < 2 * ncol * FX_LEVELS) this.fxUsed = new Uint8Array(2 * ncol * FX_LEVELS + 16);
    const used = this.fxUsed;
    used.fill(0);
    const tint = this.tint;
    tint.clear();
    // retire the finished ones: the survivors close up behind the head, in order
    const head = this.fxHead;
    let r = head;
    let w = head;
    let n = 0;
    for (let k = 0; k < n0; k++) {
      const i = r;
      r = r + 1 === MAX_EFFECTS ? 0 : r + 1;
      const age = now - T0[i];
      const life = K[i] === E_FLASH ? FLASH_MS : RING_MS;
      if (age > life) continue;
      if (w !== i) {
        X[w] = X[i];
        Y[w] = Y[i];
        T0[w] = T0[i];
        K[w] = K[i];
        C[w] = C[i];
        H[w] = H[i];
        B[w] = B[i];
      }
      if (age < 0) {
        lvl[w] = -1; // not started yet
      } else {
        const step = alphaStep(age / life, FX_LEVELS);
        lvl[w] = step;
        used[(K[w] * ncol + C[w]) * FX_LEVELS + step] = 1;
        const b = B[w];
        if (b) tint.set(b, Math.max(tint.get(b) || 0, 1 - age / life));
      }
      w = w + 1 === MAX_EFFECTS ? 0 : w + 1;
      n++;
    }
    for (let k = n; k < n0; k++) {
      B[w] = null; // the freed slots hold no box
      w = w + 1 === MAX_EFFECTS ? 0 : w + 1;
    }
    this.fxCount = n;
    // then one path per (kind, colour, step)
    for (let kind = 0; kind < 2; kind++) {
      for (let c = 0; c < ncol; c++) {
        for (let step = 0; step < FX_LEVELS; step++) {
          if (!used[(kind * ncol + c) * FX_LEVELS + step]) continue;
          ctx.globalAlpha = (step + 0.5) / FX_LEVELS;
          if (kind === E_RING) {
            ctx.strokeStyle = this.fxColours[c];
            ctx.lineWidth = 2;
          } else {
            ctx.fillStyle = this.fxColours[c];
          }
          ctx.beginPath();
          for (let k = 0, i = head; k < n; k++, i = i + 1 === MAX_EFFECTS ? 0 : i + 1) {
            if (lvl[i] !== step || K[i] !== kind || C[i] !== c) continue;
            const x = X[i];
            const y = Y[i];
            const h = H[i];
            if (kind === E_RING) {
              const p = Math.max(0, now - T0[i]) / RING_MS;
              if (h > 0) {
                // a square ring in the gap just outside the cell (not over its neighbours)
                const e = Math.round(h + 1 + p);
                ctx.rect(x - e, y - e, 2 * e, 2 * e);
              } else {
                const rr = 6 + p * 9;
                ctx.moveTo(x + rr, y);
                ctx.arc(x, y, rr, 0, TAU);
              }
            } else if (h > 0) {
              ctx.rect(x - h, y - h, 2 * h, 2 * h);
            } else {
              ctx.moveTo(x + 6, y);
              ctx.arc(x, y, 6, 0, TAU);
            }
          }
          if (kind === E_RING) ctx.stroke();
          else ctx.fill();
        }
      }
    }
    ctx.fillStyle = this.theme.dead;
    for (const [b, level] of tint) {
      ctx.globalAlpha = 0.16 * level;
      if (b.cell) ctx.fillRect(b.x, b.y, b.w, b.h);
      else {
        roundRect(ctx, b.x, b.y, b.w, b.h, 8);
        ctx.fill();
      }
    }
    ctx.globalAlpha = 1;
  }

  move(from, to) {
    const P = this.path;
    P.copyWithin(to * 8, from * 8, from * 8 + 8);
    this.start[to] = this.start[from];
    this.dur[to] = this.dur[from];
    this.col[to] = this.col[from];
    this.kind[to] = this.kind[from];
  }

  drawBackground() {
    const L = this.layout;
    const st = this.state;
    const ctx = this.bctx;
    const th = this.theme;
    const px = this.dpr * this.scale;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, this.bg.width, this.bg.height);
    ctx.setTransform(px, 0, 0, px, 0, 0);
    if (!L || !st) return;
    const F = th.font;
    ctx.textBaseline = "alphabetic";

    // Column headings, in the lesson's words.
    ctx.font = "600 11px " + F;
    ctx.fillStyle = th.muted;
    for (const h of L.heads) {
      ctx.textAlign = h.align;
      ctx.fillText(h.text, h.x, h.y);
    }

    const producers = st.producers || {};
    const topics = st.topics || {};
    const groups = st.groups || {};

    // Edges first, so the boxes sit on top of them.
    let maxRate = 1;
    for (const p of Object.values(producers)) maxRate = Math.max(maxRate, p.rate || 0);
    for (const [name, p] of Object.entries(producers)) {
      const b = L.producers.get(name);
      const t = L.topics.get(p.topic);
      if (!b || !t) continue;
      // one edge per partition: the producer appends each event to one of them (by key)
      const f = Math.sqrt((p.rate || 0) / maxRate);
      const lw = 1 + (2.5 * f) / Math.sqrt(Math.max(1, t.parts.length));
      for (const py of t.parts) {
        // nothing flows while the rate is 0 or the registry refuses everything it sends
        const blocked = !(p.rate > 0) || ((p.rejected || 0) > 0 && p.rejected >= p.produced);
        const [x0, y0, x1, y1] = this.produceAnchors(b, t, py);
        this.edge(ctx, x0, y0, x1, y1, lw, blocked ? th.muted : this.types.colour(p.event), blocked ? 0.35 : 0.3 + 0.45 * f, blocked ? [4, 4] : null, 5, L.dirs.produce);
      }
    }
    let maxThr = 1;
    for (const g of Object.values(groups)) maxThr = Math.max(maxThr, g.throughput || 0);
    if (L.grid) {
      // one bundled edge from each topic to the grid, not hundreds of separate ones
      const gy = L.grid.y + 26;
      for (const t of L.topics.values()) {
        if (L.vertical) this.edge(ctx, t.x + t.w / 2, L.broker.y + L.broker.h, L.grid.x + L.grid.w / 2, L.grid.y + 16, 6, th.accent, 0.45, null, 7, L.dirs.bundle);
        else this.edge(ctx, t.x + t.w, t.y + t.h / 2, L.grid.x - 4, gy + 60, 6, th.accent, 0.45, null);
      }
    }
    for (const [name, g] of Object.entries(groups)) {
      const b = L.groups.get(name);
      if (!b) continue;
      if (b.cell) continue;
      const down = g.status === "down" || g.status === "crashed";
      const f = Math.sqrt((g.throughput || 0) / maxThr);
      for (const tn of g.topics || []) {
        const t = L.topics.get(tn);
        if (!t) continue;
        const [x0, y0, x1, y1] = this.deliverAnchors(t, b);
        this.edge(ctx, x0, y0, x1, y1, down ? 1 : 1 + 4 * f, down ? th.muted : th.accent, down ? 0.35 : 0.22 + 0.5 * f, down ? [3, 4] : null, 7, L.dirs.deliver);
      }
      for (const em of g.emits || []) {
        const type = typeof em === "string" ? em : em.event;
        const tn = (typeof em === "object" && em.topic) || this.emitTopic.get(type);
        const t = tn && L.topics.get(tn);
        if (!t) continue;
        ctx.save();
        ctx.setLineDash([5, 4]);
        ctx.strokeStyle = this.types.colour(type);
        ctx.globalAlpha = 0.6;
        ctx.lineWidth = 1.5;
        ctx.beginPath();
        const [sx, sy, ex, ey] = this.emitAnchors(b, t);
        const [c1x, c1y, c2x, c2y] = L.vertical ? controls(sx, sy, ex, ey, LEFT, RIGHT, 18) : [sx - 40, sy + 34, ex + 60, ey + 34];
        ctx.moveTo(sx, sy);
        ctx.bezierCurveTo(c1x, c1y, c2x, c2y, ex, ey);
        ctx.stroke();
        ctx.setLineDash([]);
        arrowHead(ctx, ex, ey, c2x, c2y, this.types.colour(type));
        ctx.restore();
      }
    }

    // Producers.
    for (const [name, p] of Object.entries(producers)) {
      const b = L.producers.get(name);
      if (!b) continue;
      box(ctx, b.x, b.y, b.w, b.h, th.surface, th.border, 1);
      ctx.fillStyle = this.types.colour(p.event);
      roundRect(ctx, b.x, b.y, 5, b.h, { tl: 8, bl: 8, tr: 0, br: 0 });
      ctx.fill();
      ctx.textAlign = "left";
      ctx.fillStyle = th.text;
      ctx.font = "600 13px " + F;
      ctx.fillText(fit(ctx, name, b.w - 22), b.x + 13, b.y + 19);
      ctx.font = "12px " + F;
      ctx.fillStyle = th.muted;
      ctx.fillText(fit(ctx, (p.event || "") + " → " + p.topic, b.w - 22), b.x + 13, b.y + 36);
      const refused = p.rejected || 0;
      ctx.fillStyle = p.rate > 0 ? th.text : th.muted;
      let line = rateText(p.rate || 0) + " · " + compact((p.produced || 0) - refused) + " produced";
      if (refused) {
        line += " · " + compact(refused) + " refused";
        ctx.fillStyle = th.dead;
      }
      ctx.fillText(fit(ctx, line, b.w - 22), b.x + 13, b.y + 53);
    }

    // The broker and its topics, each partition an append-only log.
    const B = L.broker;
    box(ctx, B.x, B.y, B.w, B.h, th.broker, th.border, 1);
    ctx.textAlign = "center";
    ctx.fillStyle = th.text;
    ctx.font = "700 14px " + F;
    ctx.fillText("Event Broker", B.x + B.w / 2, B.y + 21);
    ctx.font = "11px " + this.theme.font;
    ctx.fillStyle = th.muted;
    ctx.fillText("durable · ordered · replayable", B.x + B.w / 2, B.y + 37);

    // committed offsets per partition, from every group subscribed to it
    const commits = new Map();
    for (const [gname, g] of Object.entries(groups)) {
      for (const c of g.partitions || []) {
        const key = c.topic + "/" + c.partition;
        let arr = commits.get(key);
        if (!arr) commits.set(key, (arr = []));
        arr.push({ group: gname, committed: c.committed, lag: c.lag });
      }
    }
    for (const [name, t] of Object.entries(topics)) {
      const b = L.topics.get(name);
      if (!b) continue;
      box(ctx, b.x, b.y, b.w, b.h, th.surface, th.border, 1);
      ctx.textAlign = "left";
      ctx.fillStyle = th.text;
      ctx.font = "600 12px " + F;
      ctx.fillText(fit(ctx, name, b.w * 0.55), b.x + 8, b.y + 17);
      ctx.textAlign = "right";
      ctx.font = "11px " + this.theme.font;
      ctx.fillStyle = th.muted;
      // records and bytes a second (the serialised payloads), partitions, bytes stored
      ctx.fillText(fit(ctx, rateText(t.throughput || 0) + " · " + bytesText(t.bytes_per_s || 0) + "/s · " + (t.partitions || []).length + " partitions · " + bytesText(t.bytes_stored || 0) + " stored", b.w * 0.7), b.x + b.w - 8, b.y + 17);
      const parts = t.partitions || [];
      let maxLag = 0;
      for (const p of parts) for (const c of commits.get(name + "/" + p.index) || []) maxLag = Math.max(maxLag, p.end - c.committed);
      const span = niceSpan(Math.max(20, maxLag * 1.15));
      const x0 = b.barX0;
      const x1 = b.barX1;
      const bw = x1 - x0;
      const bh = Math.min(8, b.rowH - 4);
      for (let i = 0; i < parts.length; i++) {
        const p = parts[i];
        const cy = b.parts[i];
        if (b.rowH >= 12) {
          ctx.textAlign = "left";
          ctx.fillStyle = th.muted;
          ctx.font = "10px " + F;
          ctx.fillText("P" + p.index, b.x + 8, cy + 3.5);
          ctx.textAlign = "right";
          ctx.fillStyle = th.text;
          ctx.fillText(compact(p.end), b.x + b.w - 8, cy + 3.5);
        }
        // track = the last `span` offsets; the filled part is what the log still retains
        ctx.fillStyle = th.bg;
        ctx.fillRect(x0, cy - bh / 2, bw, bh);
        const from = Math.max(p.start, p.end - span);
        const lx = x1 - ((p.end - from) / span) * bw;
        ctx.fillStyle = th.logFill;
        ctx.fillRect(lx, cy - bh / 2, x1 - lx, bh);
        const cs = commits.get(name + "/" + p.index) || [];
        let minC = p.end;
        for (const c of cs) minC = Math.min(minC, c.committed);
        if (minC < p.end) {
          const mx = x1 - (Math.min(span, p.end - minC) / span) * bw;
          ctx.fillStyle = th.lagFill;
          ctx.fillRect(mx, cy - bh / 2, x1 - mx, bh);
        }
        for (const c of cs) {
          const cx = x1 - (Math.min(span, p.end - c.committed) / span) * bw;
          ctx.fillStyle = this.groupColour(c.group);
          ctx.fillRect(Math.round(cx) - 1, cy - bh / 2 - 2, 2, bh + 4);
        }
        ctx.strokeStyle = th.border;
        ctx.lineWidth = 1;
        ctx.strokeRect(x0 + 0.5, cy - bh / 2 + 0.5, bw - 1, bh - 1);
        if (p.online === false) {
          // broker.down: no leader, so no appends and no fetches; said in words, not colour
          ctx.setLineDash([3, 3]);
          ctx.strokeStyle = th.text;
          ctx.strokeRect(x0 - 1.5, cy - bh / 2 - 1.5, bw + 3, bh + 3);
          ctx.setLineDash([]);
          ctx.textAlign = "left";
          ctx.fillStyle = th.text;
          ctx.font = "600 10px " + F;
          ctx.fillText("no leader", x0 + 4, cy + 3.5);
        }
      }
    }

    if (L.grid) {
      ctx.font = "600 11px " + F;
      ctx.textAlign = "left";
      ctx.fillStyle = th.muted;
      ctx.fillText(fit(ctx, L.grid.n + " services, one cell each", L.grid.w), L.grid.x, L.grid.y + 12);
      this.drawCellKey(ctx, L.grid);
      this.drawCells(ctx, groups);
    }
    // Consumer services: instances as chips, a status badge, their lag; DLQ tray below.
    for (const [name, g] of Object.entries(groups)) {
      const b = L.groups.get(name);
      if (!b) continue;
      if (b.cell) continue; // drawn above, a path per colour
      const status = g.status || "up";
      const down = status === "down";
      const crashed = status === "crashed";
      ctx.save();
      if (down) ctx.globalAlpha = 0.55;
      const stroke = crashed ? th.dead : status === "slow" ? th.slow : status === "rebalancing" ? th.rebalancing : th.border;
      box(ctx, b.x, b.y, b.w, b.h, down ? th.bg : th.surface, stroke, crashed || status === "slow" || status === "rebalancing" ? 2 : 1, down ? [5, 4] : null);
      ctx.fillStyle = this.groupColour(name);
      roundRect(ctx, b.x, b.y, 5, b.h, { tl: 8, bl: 8, tr: 0, br: 0 });
      ctx.fill();
      // badge
      let badge = "up";
      let badgeCol = th.ok;
      if (down) [badge, badgeCol] = ["DOWN", th.muted];
      else if (crashed) [badge, badgeCol] = ["CRASHED", th.dead];
      else if (status === "slow") [badge, badgeCol] = ["SLOW ×" + fmtFactor(g.slow), th.slow];
      else if (status === "rebalancing") [badge, badgeCol] = ["REBALANCING", th.rebalancing];
      else if (status !== "up") [badge, badgeCol] = [status.toUpperCase(), th.muted];
      ctx.font = "700 10px " + F;
      const bwid = ctx.measureText(badge).width + 12;
      ctx.fillStyle = badgeCol;
      roundRect(ctx, b.x + b.w - bwid - 8, b.y + 7, bwid, 16, 8);
      ctx.fill();
      ctx.fillStyle = "#fff";
      ctx.textAlign = "center";
      ctx.fillText(badge, b.x + b.w - bwid / 2 - 8, b.y + 18.5);
      // title
      ctx.textAlign = "left";
      ctx.fillStyle = th.text;
      ctx.font = "600 13px " + F;
      ctx.fillText(fit(ctx, g.label || name, b.w - bwid - 30), b.x + 13, b.y + 19);
      // lag line
      ctx.font = "12px " + F;
      const lag = g.lag || 0;
      const lagMs = g.lag_ms || 0;
      ctx.fillStyle = lagMs > 1000 ? th.fail : th.muted;
      const lagText = "lag " + compact(lag) + (lag > 0 ? " · " + secondsText(lagMs) : "");
      ctx.fillText(fit(ctx, lagText, b.w * 0.62), b.x + 13, b.y + 37);
      ctx.textAlign = "right";
      ctx.fillStyle = th.muted;
      ctx.fillText(rateText(g.throughput || 0), b.x + b.w - 8, b.y + 37);
      if (g.filter) {
        ctx.textAlign = "left";
        ctx.font = "11px " + this.theme.font;
        ctx.fillText(fit(ctx, "filter: " + g.filter, b.w - 22), b.x + 13, b.y + 51);
      }
      // instances
      const insts = g.instances || [];
      for (let i = 0; i < insts.length && i < b.chips.length; i++) {
        const c = b.chips[i];
        const s = insts[i].state;
        const sz = b.chipSz;
        if (s === "dead") {
          ctx.strokeStyle = th.dead;
          ctx.lineWidth = 1.5;
          ctx.strokeRect(c.x + 0.75, c.y + 0.75, sz - 1.5, sz - 1.5);
          ctx.beginPath();
          ctx.moveTo(c.x + 3, c.y + 3);
          ctx.lineTo(c.x + sz - 3, c.y + sz - 3);
          ctx.moveTo(c.x + sz - 3, c.y + 3);
          ctx.lineTo(c.x + 3, c.y + sz - 3);
          ctx.stroke();
          continue;
        }
        ctx.fillStyle = s === "busy" ? th.busy : s === "backoff" ? th.retry : th.bg;
        roundRect(ctx, c.x, c.y, sz, sz, 3);
        ctx.fill();
        ctx.strokeStyle = s === "idle" ? th.muted : "transparent";
        ctx.lineWidth = 1;
        if (s === "idle") ctx.stroke();
      }
      ctx.restore();
      // DLQ tray
      const tr = b.tray;
      const waiting = g.dead_letters_waiting !== undefined ? g.dead_letters_waiting : (g.dead_letters || []).length;
      ctx.fillStyle = waiting ? "rgba(198,47,59,0.08)" : "transparent";
      roundRect(ctx, tr.x, tr.y, tr.w, tr.h, 4);
      ctx.fill();
      ctx.strokeStyle = waiting ? th.dead : th.border;
      ctx.setLineDash([3, 3]);
      ctx.lineWidth = 1;
      ctx.stroke();
      ctx.setLineDash([]);
      ctx.font = "600 10px " + F;
      ctx.textAlign = "left";
      ctx.fillStyle = waiting ? th.dead : th.muted;
      ctx.fillText((g.mode === "queue" ? "DLQ " : "DLT ") + compact(waiting), tr.x + 6, tr.y + 11.5); // a dead-letter queue, or topic
      ctx.fillStyle = th.dead;
      const slots = Math.min(waiting, Math.floor((tr.w - 60) / 7));
      for (let i = 0; i < slots; i++) {
        ctx.beginPath();
        ctx.arc(tr.x + 56 + i * 7, tr.y + tr.h / 2, 2.5, 0, TAU);
        ctx.fill();
      }
    }
    this.drawPointer(ctx);
  }

  /**
   * The grid: one small cell a service, coloured by its state (cellState). No text in a cell (too
   * small to read): the numbers table names the services furthest behind. The cells of one
   * colour are one path and one fill(), so 300 services cost four draw calls; they are square,
   * because a software rasteriser fills 300 rounded corners about twice as slowly.
   */
  drawCells(ctx, groups) {
    const colours = this.cellColours();
    const boxes = this.layout.groups;
    const names = Object.keys(groups);
    const states = this.cellStates && this.cellStates.length >= names.length ? this.cellStates : (this.cellStates = new Uint8Array(names.length + 64));
    let seen = 0;
    for (let i = 0; i < names.length; i++) {
      states[i] = cellState(groups[names[i]]);
      seen |= 1 << states[i];
    }
    for (let c = 0; c < colours.length; c++) {
      if (!(seen & (1 << c))) continue;
      ctx.beginPath();
      for (let i = 0; i < names.length; i++) {
        if (states[i] !== c) continue;
        const b = boxes.get(names[i]);
        if (b && b.cell) ctx.rect(b.x, b.y, b.w, b.h); // square: curves cost more to fill
      }
      ctx.fillStyle = colours[c];
      ctx.fill();
      if (c === 0) continue;
      // colour is not the only signal: each state but ok has a mark, one path per state
      ctx.beginPath();
      for (let i = 0; i < names.length; i++) {
        if (states[i] !== c) continue;
        const b = boxes.get(names[i]);
        if (b && b.cell) cellMark(ctx, c, b.x, b.y, b.w);
      }
      this.strokeMark(ctx, c);
    }
  }

  cellColours() {
    const th = this.theme;
    return [th.ok, th.slow, th.muted, th.dead]; // by cellState
  }

  /** Draw the marks of state ``c`` traced by cellMark: a fill (bar, hollow) or a stroke (×). */
  strokeMark(ctx, c) {
    if (c === 3) {
      ctx.strokeStyle = this.theme.surface;
      ctx.lineWidth = 2;
      ctx.stroke();
    } else {
      ctx.fillStyle = this.theme.surface;
      ctx.fill();
    }
  }

  /** The grid's key, under its title: a cell of each state with its mark, then its word. */
  drawCellKey(ctx, grid) {
    const colours = this.cellColours();
    const size = 11;
    let x = grid.x;
    const y = grid.y + 19;
    ctx.font = "11px " + this.theme.font;
    ctx.textAlign = "left";
    for (let c = 0; c < CELL_KEY.length; c++) {
      const word = CELL_KEY[c];
      const w = size + 4 + ctx.measureText(word).width;
      if (x + w > grid.x + grid.w) break; // (a phone fits all four)
      ctx.fillStyle = colours[c];
      ctx.fillRect(x, y, size, size);
      if (c) {
        ctx.beginPath();
        cellMark(ctx, c, x, y, size);
        this.strokeMark(ctx, c);
      }
      ctx.fillStyle = this.theme.muted;
      ctx.fillText(word, x + size + 4, y + size - 1.5);
      x += w + 10;
    }
  }

  edge(ctx, x0, y0, x1, y1, width, colour, alpha, dash, head, dirs) {
    ctx.save();
    ctx.globalAlpha = alpha;
    ctx.strokeStyle = colour;
    ctx.lineWidth = width;
    if (dash) ctx.setLineDash(dash);
    const [d0, d1] = dirs || [RIGHT, RIGHT];
    const [c1x, c1y, c2x, c2y] = controls(x0, y0, x1, y1, d0, d1, this.layout && this.layout.vertical && d1 === LEFT ? 26 : 0);
    ctx.beginPath();
    ctx.moveTo(x0, y0);
    ctx.bezierCurveTo(c1x, c1y, c2x, c2y, x1, y1);
    ctx.stroke();
    ctx.setLineDash([]);
    ctx.globalAlpha = Math.min(1, alpha + 0.2);
    arrowHead(ctx, x1, y1, c2x, c2y, colour, head);
    ctx.restore();
  }

  /* ---- interaction ------------------------------------------------------------------------ */

  hit(ev) {
    if (!this.layout) return null;
    const r = this.fg.getBoundingClientRect();
    const x = (ev.clientX - r.left) / this.scale;
    const y = (ev.clientY - r.top) / this.scale;
    for (const [name, b] of this.layout.groups) {
      const bottom = b.tray ? b.tray.y + b.tray.h : b.y + b.h;
      if (x >= b.x && x <= b.x + b.w && y >= b.y && y <= bottom) return name;
    }
    return null;
  }

  click(ev) {
    const name = this.hit(ev);
    if (name && this.onSelect) this.onSelect(name);
  }

  /**
   * Point at one box, as a guided lesson's card does ("Watch: Email's lag"): a dashed frame
   * around it with the words, so it does not rely on colour. null: point at nothing.
   */
  point(target) {
    const same = JSON.stringify(target || null) === JSON.stringify(this.pointed || null);
    this.pointed = target || null;
    if (!same) this.bgDirty = true;
  }

  drawPointer(ctx) {
    const p = this.pointed;
    const L = this.layout;
    if (!p || !L) return;
    const boxes = { group: L.groups, producer: L.producers, topic: L.topics }[p.kind];
    const b = boxes && boxes.get(p.name);
    if (!b || b.cell) return;
    ctx.save();
    ctx.strokeStyle = this.theme.text;
    ctx.lineWidth = 2.5;
    ctx.setLineDash([6, 4]);
    ctx.strokeRect(b.x - 5, b.y - 5, b.w + 10, b.h + 10);
    ctx.setLineDash([]);
    ctx.font = "700 11px " + this.theme.font;
    ctx.textAlign = "left";
    ctx.fillStyle = this.theme.text;
    ctx.fillText(fit(ctx, "▶ watch: " + (p.label || p.name), b.w + 10), b.x - 5, b.y - 9);
    ctx.restore();
  }

  /** Layout box of a service, for tests and for positioning. */
  groupBox(name) {
    return this.layout ? this.layout.groups.get(name) || null : null;
  }
}

/**
 * A grid cell's colour by its service's state: 0 ok, 1 backlog (> 5 events not yet processed),
 * 2 down, 3 crashed or dead letters. Backlog, not Kafka's lag: lag also counts what is processed
 * and waits for the next auto-commit (up to 5 s of events), so most healthy services have some.
 */
export function cellState(g) {
  const st = g.status || "up";
  if (st === "crashed" || (g.dead_lettered || 0) > 0) return 3;
  if (st === "down") return 2;
  return behind(g) > 5 ? 1 : 0;
}

/**
 * Trace the mark of a grid cell's state (cellState) on a cell of side `s` at (x, y), in the
 * path being built: a bar across it (1, a backlog), a hollow (2, down), a cross (3, dead
 * letters or crashed: "failed" in the key). Ok (0) has none. The caller fills (1, 2) or strokes (3) the path.
 */
export function cellMark(ctx, state, x, y, s) {
  const k = Math.max(2, Math.round(s / 5));
  if (state === 1) ctx.rect(x + k, y + s / 2 - k / 2, s - 2 * k, k);
  else if (state === 2) ctx.rect(x + k, y + k, s - 2 * k, s - 2 * k);
  else if (state === 3) {
    ctx.moveTo(x + k, y + k);
    ctx.lineTo(x + s - k, y + s - k);
    ctx.moveTo(x + s - k, y + k);
    ctx.lineTo(x + k, y + s - k);
  }
}

/**
 * The alpha step of an effect `p` (0..1) through its life, out of `levels`: it fades from the
 * top step to 0. Effects on one step share a draw call, drawn at alpha (step + 0.5) / levels.
 */
export function alphaStep(p, levels) {
  const s = Math.floor((1 - p) * levels);
  return s < 0 ? 0 : s >= levels ? levels - 1 : s;
}

function fmtFactor(f) {
  return (Math.round((f || 1) * 10) / 10).toString();
}

/**
 * A path's two bezier control points: it leaves (x0, y0) heading d0 and arrives at (x1, y1)
 * heading d1. `reach`: how far the controls go (0: half the distance, at least 30).
 */
function controls(x0, y0, x1, y1, d0, d1, reach) {
  const k0 = reach || Math.max(30, Math.abs(d0[0] ? x1 - x0 : y1 - y0) * 0.5);
  const k1 = reach || Math.max(30, Math.abs(d1[0] ? x1 - x0 : y1 - y0) * 0.5);
  return [x0 + d0[0] * k0, y0 + d0[1] * k0, x1 - d1[0] * k1, y1 - d1[1] * k1];
}

function fit(ctx, text, maxW) {
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

function roundRect(ctx, x, y, w, h, r) {
  const rr = typeof r === "number" ? { tl: r, tr: r, br: r, bl: r } : r;
  ctx.beginPath();
  ctx.moveTo(x + rr.tl, y);
  ctx.lineTo(x + w - rr.tr, y);
  ctx.arcTo(x + w, y, x + w, y + rr.tr, rr.tr);
  ctx.lineTo(x + w, y + h - rr.br);
  ctx.arcTo(x + w, y + h, x + w - rr.br, y + h, rr.br);
  ctx.lineTo(x + rr.bl, y + h);
  ctx.arcTo(x, y + h, x, y + h - rr.bl, rr.bl);
  ctx.lineTo(x, y + rr.tl);
  ctx.arcTo(x, y, x + rr.tl, y, rr.tl);
  ctx.closePath();
}

function box(ctx, x, y, w, h, fill, stroke, lw, dash) {
  roundRect(ctx, x + 0.5, y + 0.5, w - 1, h - 1, 8);
  ctx.fillStyle = fill;
  ctx.fill();
  ctx.strokeStyle = stroke;
  ctx.lineWidth = lw;
  if (dash) ctx.setLineDash(dash);
  ctx.stroke();
  if (dash) ctx.setLineDash([]);
}

function arrowHead(ctx, x, y, fromX, fromY, colour, size) {
  const a = Math.atan2(y - fromY, x - fromX);
  const s = size || 7;
  ctx.fillStyle = colour;
  ctx.beginPath();
  ctx.moveTo(x, y);
  ctx.lineTo(x - s * Math.cos(a - 0.45), y - s * Math.sin(a - 0.45));
  ctx.lineTo(x - s * Math.cos(a + 0.45), y - s * Math.sin(a + 0.45));
  ctx.closePath();
  ctx.fill();
}

export { Diagram, TypeColours };
