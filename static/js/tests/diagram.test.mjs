// Unit tests for the diagram's pure parts: node --test static/js/tests/
import assert from "node:assert/strict";
import test from "node:test";

import { TypeColours, typeShape } from "../diagram.js";

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
