// Unit tests for the services table's size: node --test static/js/tests/
import assert from "node:assert/strict";
import test from "node:test";

import { ALL_BELOW, SHOWN, behind, othersSentence, rowsToShow } from "../tables.js";

function many(n) {
  const groups = {};
  for (let i = 0; i < n; i++) groups["svc-" + i] = { lag: 0, throughput: 2, status: "up" };
  return groups;
}

test("a few services are all listed, in their own order", () => {
  const groups = { payment: { lag: 0 }, email: { lag: 90 } };
  assert.deepEqual(rowsToShow(groups), ["payment", "email"]);
  assert.equal(othersSentence(groups, rowsToShow(groups)), "");
});

test("hundreds of services list the furthest behind first, and say how the rest stand", () => {
  const groups = many(300);
  groups["svc-200"].lag = 40;
  groups["svc-7"].lag = 3;
  groups["svc-9"].status = "down";
  const shown = rowsToShow(groups);
  assert.equal(shown.length, SHOWN);
  assert.deepEqual(shown.slice(0, 2), ["svc-200", "svc-7"]);
  assert.equal(othersSentence(groups, shown), "288 more services: 1 of them down, the furthest 0 events behind.");
  assert.equal(rowsToShow(groups, true).length, 300);
  assert.equal(rowsToShow(many(ALL_BELOW)).length, ALL_BELOW);
});

test("a service is behind by what it has not processed, not by what waits for a commit", () => {
  // Kafka's lag counts processed events the next auto-commit has not covered yet: a healthy
  // service can show 90 of it with nothing left to do
  const groups = many(300);
  groups["svc-3"].lag = 90;
  groups["svc-3"].backlog = 0;
  groups["svc-250"].lag = 60;
  groups["svc-250"].backlog = 55;
  const shown = rowsToShow(groups);
  assert.equal(shown[0], "svc-250");
  assert.equal(behind(groups["svc-3"]), 0);
  assert.equal(behind({ lag: 7 }), 7); // a frame without backlog (an older server): its lag
  groups["svc-250"].backlog = 0;
  groups["svc-299"].backlog = 9;
  assert.match(othersSentence(groups, ["svc-0"]), /the furthest 9 events behind/);
});
