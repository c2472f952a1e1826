// Unit tests for presenter mode's address handling: node --test static/js/tests/
import assert from "node:assert/strict";
import test from "node:test";

import { presentingUrl, wantsPresenting } from "../present.js";

test("?present=1 asks for presenter mode; its absence, 0 or false do not", () => {
  assert.equal(wantsPresenting("?present=1"), true);
  assert.equal(wantsPresenting("?x=2&present"), true);
  assert.equal(wantsPresenting("?present=0"), false);
  assert.equal(wantsPresenting("?present=false"), false);
  assert.equal(wantsPresenting(""), false);
});

test("turning presenter mode on and off keeps the rest of the address", () => {
  const on = presentingUrl("http://h:8000/simulations/abc/?x=2#guide", true);
  assert.equal(on, "http://h:8000/simulations/abc/?x=2&present=1#guide");
  assert.equal(presentingUrl(on, false), "http://h:8000/simulations/abc/?x=2#guide");
});
