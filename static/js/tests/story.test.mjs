// Unit tests for the narrative list: node --test static/js/tests/
import assert from "node:assert/strict";
import test from "node:test";

import { storyItems, storySig } from "../story.js";

test("the server's sentences are kept with their levels; malformed ones are left out", () => {
  const items = storyItems([
    { level: "bad", text: "64% of synchronous checkouts fail: Email is down." },
    { level: "nonsense", text: "Email's lag grows 16/s." },
    { level: "ok", text: "" },
    null,
    { text: 3 },
  ]);
  assert.deepEqual(items, [
    { level: "bad", text: "64% of synchronous checkouts fail: Email is down." },
    { level: "ok", text: "Email's lag grows 16/s." },
  ]);
  assert.deepEqual(storyItems(undefined), []);
});

test("the list is rebuilt only when a sentence changes", () => {
  const a = storyItems([{ level: "warn", text: "Email's lag grows 16/s." }]);
  const b = storyItems([{ level: "warn", text: "Email's lag grows 17/s." }]);
  assert.notEqual(storySig(a), storySig(b));
  assert.equal(storySig(a), storySig(storyItems([{ level: "warn", text: "Email's lag grows 16/s." }])));
});
