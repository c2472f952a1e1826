// Unit tests for the timeline bar: node --test static/js/tests/
import assert from "node:assert/strict";
import test from "node:test";

import { justBefore, markers, timelineWords, upcomingWords } from "../timeline.js";

const tl = {
  duration: 90,
  t: 12.34,
  left: 77.66,
  past: [{ t: 5, label: "Checkout 30/s", kind: "command" }],
  upcoming: [
    { t: 20, label: "Email down", kind: "fault" },
    { t: 50, label: "Email up", kind: "fault" },
  ],
};

test("the timeline says where the run is, its length and the time left", () => {
  assert.equal(timelineWords(tl), "t = 12.3 s of 1 min 30 s · 1 min 18 s left");
  assert.equal(timelineWords({ ...tl, t: 90, left: 0 }), "t = 90.0 s of 1 min 30 s · finished");
  assert.equal(timelineWords(null), "");
});

test("markers sit at their share of the run, past ones marked", () => {
  const m = markers(tl);
  assert.deepEqual(
    m.map((x) => [Math.round(x.pct * 10) / 10, x.label, x.past]),
    [
      [5.6, "Checkout 30/s", true],
      [22.2, "Email down", false],
      [55.6, "Email up", false],
    ],
  );
});

test("a marker's jump goes to just before it, and the next moments are said in words", () => {
  assert.equal(justBefore(20), 19.5);
  assert.equal(justBefore(0.2), 0);
  assert.deepEqual(upcomingWords(tl), ["t = 20 s: Email down", "t = 50 s: Email up"]);
});
