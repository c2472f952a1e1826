// Unit tests for the shared number formats: node --test static/js/tests/
import assert from "node:assert/strict";
import test from "node:test";

import { bytesText, correlationFromText, topicsBytesText } from "../format.js";

test("bytes are shown in B, kB, MB and GB", () => {
  assert.equal(bytesText(999), "999 B");
  assert.equal(bytesText(1500), "1.5 kB");
  assert.equal(bytesText(2_500_000), "2.5 MB");
  assert.equal(bytesText(3e9), "3.0 GB");
  assert.equal(bytesText(undefined), "–");
});

test("each topic says what it stores and how fast it grows", () => {
  assert.equal(
    topicsBytesText({ orders: { bytes_stored: 48200, bytes_per_s: 1300 } }),
    "orders: 48.2 kB (1.3 kB/s)",
  );
  assert.equal(topicsBytesText({}), "–");
});

test("an order is followed by its order id, or by an event id for orders without one", () => {
  assert.equal(correlationFromText(" ord-245 "), "ord-245");
  assert.equal(correlationFromText("245"), 245);
  assert.equal(correlationFromText(""), null);
  assert.equal(correlationFromText("x".repeat(201)), null);
});
