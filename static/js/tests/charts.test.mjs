// Unit tests for the shared chart logic: node --test static/js/tests/
import assert from "node:assert/strict";
import test from "node:test";

import { MAX_POINTS, Table, chartValue, historyRows, mergeMarks, othersLabel, seriesDash, statusMarks, topAndOthers } from "../charts.js";

test("a table keeps its columns aligned, the newest MAX_POINTS rows, and refuses going back", () => {
  const t = new Table();
  assert.equal(t.push(1, { a: 1 }), true);
  assert.equal(t.push(2, { b: 5 }), true);
  assert.equal(t.push(2, { a: 9 }), false);
  assert.deepEqual(t.data(["a", "b", "c"]), [[1, 2], [1, null], [null, 5], [null, null]]);
  for (let x = 3; x < MAX_POINTS + 10; x++) t.push(x, { a: x });
  assert.equal(t.x.length, MAX_POINTS);
  assert.equal(t.x[0], 10);
  assert.equal(t.cols.get("a").length, MAX_POINTS);
});

test("a few services get a line each; many get the top eight and the others as one", () => {
  assert.deepEqual(topAndOthers({ a: 1, b: 2 }), { top: ["a", "b"], others: [] });
  const many = {};
  for (let i = 0; i < 300; i++) many["s" + i] = i % 50 === 0 ? 1000 + i : i % 7;
  const { top, others } = topAndOthers(many);
  assert.equal(top.length, 8);
  assert.deepEqual(top.slice(0, 3), ["s250", "s200", "s150"]);
  assert.equal(others.length, 292);
  assert.equal(othersLabel(others.length), "the other 292 services");
  assert.equal(othersLabel(1), "the other 1 service");
});

test("engine marks become chart marks for changes only, never the start-up 'up'", () => {
  const marks = statusMarks(
    [
      { t: 0, target: "group", name: "email", status: "up" },
      { t: 20, target: "group", name: "email", status: "down" },
      { t: 20, target: "group", name: "email", status: "down" },
      { t: 50, target: "group", name: "email", status: "up" },
    ],
    (status) => (status === "down" ? "grey" : "green"),
  );
  assert.deepEqual(marks, [
    { t: 20, label: "email down", colour: "grey" },
    { t: 50, label: "email up", colour: "green" },
  ]);
});

test("chart numbers are short and readable", () => {
  assert.equal(chartValue(null), "–");
  assert.equal(chartValue(1_250_000), "1.3M");
  assert.equal(chartValue(35_200), "35k");
  assert.equal(chartValue(420.4), "420");
  assert.equal(chartValue(12), "12");
  assert.equal(chartValue(0.254), "0.25");
});

test("services past the first four colours are drawn dashed, then dotted", () => {
  assert.equal(seriesDash(0), undefined);
  assert.equal(seriesDash(3), undefined);
  assert.deepEqual(seriesDash(4), [8, 4]);
  assert.deepEqual(seriesDash(8), [2, 3]);
  assert.equal(seriesDash(12), undefined);
});

test("marks from a full frame's history and from later frames merge once each, in time order", () => {
  const old = [
    { t: 20, target: "group", name: "email", status: "down" },
    { t: 50, target: "group", name: "email", status: "up" },
  ];
  const latest = [
    { t: 50, target: "group", name: "email", status: "up" },
    { t: 70, target: "group", name: "payment", status: "slow" },
  ];
  assert.deepEqual(
    mergeMarks(old, latest).map((m) => m.t + " " + m.status),
    ["20 down", "50 up", "70 slow"],
  );
  assert.equal(mergeMarks([], Array.from({ length: 400 }, (_, t) => ({ t, target: "g", name: "a", status: "up" }))).length, 300);
});

test("a history's rows follow its time column", () => {
  assert.deepEqual(historyRows({ t: [1, 2] }), [{ t: 1, i: 0 }, { t: 2, i: 1 }]);
  assert.deepEqual(historyRows(null), []);
});
