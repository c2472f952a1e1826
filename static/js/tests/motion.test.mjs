// Unit tests for the motion switch: node --test static/js/tests/
import assert from "node:assert/strict";
import test from "node:test";

import { initialMotion, motionLabel, mountMotionToggle } from "../motion.js";

test("reduced motion stills the dots unless the viewer chose otherwise", () => {
  assert.equal(initialMotion(null, false), true);
  assert.equal(initialMotion(null, true), false);
  assert.equal(initialMotion("on", true), true);
  assert.equal(initialMotion("off", false), false);
});

test("the toggle pauses and plays, says so, and remembers the choice", () => {
  const store = new Map();
  const win = {
    localStorage: { getItem: (k) => store.get(k) ?? null, setItem: (k, v) => store.set(k, v) },
    matchMedia: () => ({ matches: false }),
  };
  const attrs = {};
  let click = null;
  const button = {
    textContent: "",
    setAttribute: (k, v) => (attrs[k] = v),
    addEventListener: (_, fn) => (click = fn),
  };
  const applied = [];
  assert.equal(mountMotionToggle(button, (on) => applied.push(on), win), true);
  assert.equal(button.textContent, motionLabel(true));
  click();
  assert.deepEqual(applied, [true, false]);
  assert.equal(button.textContent, "Play animation");
  assert.equal(attrs["aria-pressed"], "true");
  assert.equal(store.get("fanout.motion"), "off");
});
