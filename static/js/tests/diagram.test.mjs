// Unit tests for the diagram's pure parts: node --test static/js/tests/
import assert from "node:assert/strict";
import test from "node:test";

import { Diagram, TypeColours, alphaStep, cellMark, cellState, typeShape } from "../diagram.js";

test("each event type has a shape as well as a colour", () => {
  assert.deepEqual([0, 1, 2, 3, 4].map(typeShape), ["circle", "square", "triangle", "diamond", "circle"]);
  const types = new TypeColours();
  types.setPalette(["#0072b2", "#cc79a7"]);
  types.learn({ producers: { checkout: { event: "OrderPlaced" } }, groups: { payment: { emits: [{ event: "PaymentProcessed" }] } } });
  assert.deepEqual(types.entries(), [
    ["OrderPlaced", "#0072b2", "circle"],
    ["PaymentProcessed", "#cc79a7", "square"],
  ]);
});

test("a grid cell's colour says the service's state, the worst first", () => {
  assert.equal(cellState({}), 0);
  assert.equal(cellState({ status: "up", lag: 5 }), 0);
  assert.equal(cellState({ status: "up", lag: 6 }), 1);
  // amber is a backlog, not the lag a healthy service has until its next auto-commit
  assert.equal(cellState({ status: "up", lag: 90, backlog: 0 }), 0);
  assert.equal(cellState({ status: "up", lag: 90, backlog: 6 }), 1);
  assert.equal(cellState({ status: "slow", lag: 0 }), 0);
  assert.equal(cellState({ status: "down", lag: 900 }), 2);
  assert.equal(cellState({ status: "crashed" }), 3);
  assert.equal(cellState({ status: "down", dead_lettered: 1 }), 3);
});

test("an effect fades through alpha steps, from the top one to 0", () => {
  assert.equal(alphaStep(0, 8), 7);
  assert.equal(alphaStep(0.124, 8), 7);
  assert.equal(alphaStep(0.5, 8), 4);
  assert.equal(alphaStep(0.99, 8), 0);
  assert.equal(alphaStep(1, 8), 0);
  assert.equal(alphaStep(-0.5, 8), 7); // clamped, never out of range
  assert.equal(alphaStep(2, 8), 0);
});

/* A Diagram on fake canvases: each context records the calls it gets. */
function fakeContext(calls) {
  const ctx = { measureText: (t) => ({ width: String(t).length * 6 }) };
  return new Proxy(ctx, {
    get(target, name) {
      if (name in target) return target[name];
      return (...args) => calls.push([name, ...args]);
    },
    set(target, name, value) {
      target[name] = value;
      return true;
    },
  });
}

function fakeDiagram() {
  const calls = { bg: [], fg: [] };
  const canvas = (layer) => ({ getContext: () => fakeContext(calls[layer]), addEventListener() {}, style: {}, width: 0, height: 0 });
  const canvases = { bg: canvas("bg"), fg: canvas("fg") };
  globalThis.window = { devicePixelRatio: 1, addEventListener() {} };
  globalThis.document = { documentElement: { classList: { contains: () => false } } };
  globalThis.getComputedStyle = () => ({ getPropertyValue: () => "" });
  const container = {
    clientWidth: 1320,
    style: {},
    querySelector: (sel) => (sel.includes("bg") ? canvases.bg : canvases.fg),
  };
  return { d: new Diagram(container), calls };
}

function scaleState(n) {
  const groups = {};
  for (let i = 0; i < n; i++) {
    const name = "svc-" + i;
    groups[name] = { topics: ["trips"], status: i === 7 ? "down" : "up", lag: i % 3 ? 0 : 40, dead_lettered: i === 9 ? 1 : 0 };
  }
  return {
    producers: { trips: { topic: "trips", event: "TripCompleted", rate: 20, produced: 100 } },
    topics: { trips: { partitions: Array.from({ length: 12 }, (_, i) => ({ index: i, start: 0, end: 10 })) } },
    groups,
  };
}

test("300 services are a grid drawn in one path and fill per colour, with no curves", () => {
  const { d, calls } = fakeDiagram();
  d.setState(scaleState(300));
  assert.ok(d.layout.grid, "above 40 services the diagram is a grid");
  calls.bg.length = 0;
  d.drawCells(d.bctx, d.state.groups);
  const names = calls.bg.map((c) => c[0]);
  const states = Object.values(d.state.groups).map(cellState);
  const count = (s) => states.filter((x) => x === s).length;
  assert.deepEqual([0, 1, 2, 3].map(count), [199, 99, 1, 1]);
  // a cell each, and a mark on each cell not ok: a bar (backlog) or a hollow (down) is a rect
  assert.equal(names.filter((n) => n === "rect").length, 300 + count(1) + count(2));
  assert.equal(names.filter((n) => n === "moveTo").length, 2 * count(3)); // a cross
  // ok, backlog, down, dead letters; then the marks of backlog and down (the cross is stroked)
  assert.equal(names.filter((n) => n === "fill").length, 4 + 2);
  assert.equal(names.filter((n) => n === "stroke").length, 1);
  assert.equal(names.filter((n) => n === "arc" || n === "arcTo" || n === "fillText").length, 0);
  calls.bg.length = 0;
  d.drawBackground();
  assert.ok(calls.bg.filter((c) => c[0] === "fill").length < 40, "not a fill per service");
});

test("effects: a ring buffer that keeps the newest, retires in order, draws a path per step", () => {
  const { d, calls } = fakeDiagram();
  d.setState(scaleState(3));
  for (let i = 0; i < 450; i++) d.addEffect(0, i, 0, 0, "#0a0"); // rings, all at t = 0
  assert.equal(d.effectCount, 400); // full: the 50 oldest went
  calls.fg.length = 0;
  d.drawEffects(d.fctx, 100);
  const strokes = calls.fg.filter((c) => c[0] === "stroke").length;
  assert.equal(strokes, 1, "400 rings of one colour and step: one stroke");
  assert.equal(calls.fg.filter((c) => c[0] === "arc").length, 400);
  const xs = [];
  for (let k = 0, i = d.fxHead; k < d.effectCount; k++, i = (i + 1) % 400) xs.push(d.fxX[i]);
  assert.deepEqual(xs, Array.from({ length: 400 }, (_, k) => 50 + k));

  // rings (450 ms) and flashes (600 ms) mixed: at 500 ms only the flashes are left, in order
  d.clearEffects();
  const box = { x: 0, y: 0, w: 10, h: 10 };
  for (let i = 0; i < 10; i++) d.addEffect(i % 2, i, 0, 0, "#0a0", box);
  d.drawEffects(d.fctx, 500);
  assert.equal(d.effectCount, 5);
  const left = [];
  for (let k = 0, i = d.fxHead; k < d.effectCount; k++, i = (i + 1) % 400) left.push(d.fxX[i]);
  assert.deepEqual(left, [1, 3, 5, 7, 9]);
  d.drawEffects(d.fctx, 700);
  assert.equal(d.effectCount, 0);
  assert.ok(d.fxBox.every((b) => b === null), "no box kept alive by a retired flash");
});

test("on a grid cell an effect is square, round its cell", () => {
  const { d, calls } = fakeDiagram();
  d.setState(scaleState(300));
  d.spawn({ kind: "processed", service: "svc-5", instance: 0 }, 0);
  assert.equal(d.effectCount, 1);
  const cell = d.groupBox("svc-5");
  calls.fg.length = 0;
  d.drawEffects(d.fctx, 10);
  const rects = calls.fg.filter((c) => c[0] === "rect");
  assert.equal(rects.length, 1);
  const [, x, y, w, h] = rects[0];
  assert.equal(w, h);
  assert.ok(x < cell.x && y < cell.y && x + w > cell.x + cell.w && y + h > cell.y + cell.h);
  assert.equal(calls.fg.filter((c) => c[0] === "arc").length, 0);
});

test("a grid cell's state has a mark as well as a colour, and the key shows each", () => {
  const traced = (state) => {
    const calls = [];
    cellMark(fakeContext(calls), state, 0, 0, 16);
    return calls.map((c) => c[0]);
  };
  assert.deepEqual([0, 1, 2, 3].map(traced), [[], ["rect"], ["rect"], ["moveTo", "lineTo", "moveTo", "lineTo"]]);
  const { d, calls } = fakeDiagram();
  d.setState(scaleState(300));
  calls.bg.length = 0;
  d.drawCellKey(d.bctx, d.layout.grid);
  const words = calls.bg.filter((c) => c[0] === "fillText").map((c) => c[1]);
  assert.deepEqual(words, ["ok", "backlog", "down", "failed"]);
  assert.equal(calls.bg.filter((c) => c[0] === "fillRect").length, 4);
});
