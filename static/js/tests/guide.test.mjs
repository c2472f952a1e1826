// Unit tests for the guided lesson's logic: node --test static/js/tests/
import assert from "node:assert/strict";
import test from "node:test";

import {
  answersText,
  cardIndex,
  formatValue,
  navTarget,
  pointMatches,
  pointTarget,
  resolve,
  tallyRows,
  verdict,
} from "../guide.js";

const cards = [{ at: 0 }, { at: 15 }, { at: 20 }, { at: 50 }];
const choices = [
  { key: "slower", text: "it slows down" },
  { key: "fails", text: "it fails" },
  { key: "unchanged", text: "nothing" },
];

test("the card showing is the last whose simulated time has come", () => {
  assert.equal(cardIndex(cards, 0), 0);
  assert.equal(cardIndex(cards, 19.99), 1);
  assert.equal(cardIndex(cards, 20), 2);
  assert.equal(cardIndex(cards, 1e9), 3);
  assert.equal(cardIndex([{ at: 5 }], 1), -1);
});

test("a card's number is read from the frame's state by its dotted path", () => {
  const state = { events: { groups: { email: { lag: 42 } } } };
  assert.equal(resolve(state, "events.groups.email.lag"), 42);
  assert.equal(resolve(state, "events.groups.fraud.lag"), undefined);
  assert.equal(resolve(null, "a"), undefined);
  assert.equal(formatValue(1234), "1,234");
  assert.equal(formatValue(3.14159), "3.14");
  assert.equal(formatValue(85.739), "85.7");
  assert.equal(formatValue(undefined), "–");
});

test("the tally gives each choice its count and share, in the question's order", () => {
  const rows = tallyRows(choices, { slower: 1, unchanged: 2 });
  assert.deepEqual(
    rows.map((r) => [r.key, r.count, r.share]),
    [
      ["slower", 1, 33],
      ["fails", 0, 0],
      ["unchanged", 2, 67],
    ],
  );
  assert.deepEqual(
    tallyRows(choices, {}).map((r) => r.share),
    [0, 0, 0],
  );
  assert.equal(answersText(1), "1 answer");
  assert.equal(answersText(3), "3 answers");
});

test("each browser sees its own prediction beside the measured answer", () => {
  assert.match(verdict("unchanged", "unchanged", choices), /nothing — it matches/);
  assert.match(verdict("slower", "unchanged", choices), /it slows down — the run measured something else/);
  assert.equal(verdict(null, "unchanged", choices), "You did not answer this time.");
});

test("back, replay and next stay within the lesson's cards", () => {
  assert.equal(navTarget("back", 0, 4), 0);
  assert.equal(navTarget("back", 2, 4), 1);
  assert.equal(navTarget("replay", 2, 4), 2);
  assert.equal(navTarget("next", 2, 4), 3);
  assert.equal(navTarget("next", 3, 4), 3);
  assert.equal(navTarget("next", -1, 4), 1);
});

test("a card points at the box its number belongs to, where the page draws one", () => {
  assert.deepEqual(pointTarget("groups.email.lag", "Email's lag"), {
    kind: "group",
    name: "email",
    label: "Email's lag",
  });
  assert.deepEqual(pointTarget("topics.orders-fat.bytes_per_s", ""), {
    kind: "topic",
    name: "orders-fat",
    label: "orders-fat",
  });
  assert.equal(pointTarget("events.groups.email.lag", "x"), null);
  assert.equal(pointTarget("", "x"), null);
});

test("a card points at the page's figure that shows its number, or one inside it", () => {
  assert.equal(pointMatches("events.groups.email", "events.groups.email.lag"), true);
  assert.equal(pointMatches("events.checkout_ms.p50 events.recent_checkout_ms.p50", "events.recent_checkout_ms.p50"), true);
  assert.equal(pointMatches("events.groups.email", "events.groups.emailer.lag"), false);
  assert.equal(pointMatches("sync.checkout_ms.p50", "events.checkout_ms.p50"), false);
  assert.equal(pointMatches("groups.email", ""), false);
});
