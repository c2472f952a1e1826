// Unit tests for "Rebuild from the log": node --test static/js/tests/
import assert from "node:assert/strict";
import test from "node:test";

import { eventMarks, formatField, replayQuery, stateRows } from "../replay.js";

const events = [
  { offset: 4, type: "OrderPlaced" },
  { offset: 5, type: "PaymentProcessed" },
  { offset: 19, type: "OrderShipped" },
];

test("events at or before the offset are applied, later ones not yet", () => {
  assert.deepEqual(
    eventMarks(events, 5).map((e) => e.applied),
    [true, true, false],
  );
  assert.deepEqual(
    eventMarks(events, null).map((e) => e.applied),
    [true, true, true],
  );
});

test("the state shows status and version first, then its fields by name", () => {
  const rows = stateRows({ total: 116.28, version: 2, customer_id: 36, status: "paid" });
  assert.deepEqual(rows, [
    ["status", "paid"],
    ["version", "2"],
    ["customer_id", "36"],
    ["total", "116.28"],
  ]);
  assert.equal(formatField({ a: 1 }), '{"a":1}');
  assert.equal(formatField(null), "–");
});

test("the query names the topic, the key and the offset when there is one", () => {
  assert.equal(replayQuery("order-events", "ord-10", 5), "topic=order-events&key=ord-10&upto=5");
  assert.equal(replayQuery("order-events", "ord 1&x", null), "topic=order-events&key=ord+1%26x");
});
