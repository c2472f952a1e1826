// Unit tests for command feedback beside its control: node --test static/js/tests/
import assert from "node:assert/strict";
import test from "node:test";

import { SHOW_MS, anchorFor, showBeside } from "../feedback.js";

function fakeDoc() {
  const make = () => {
    const el = {
      className: "",
      textContent: "",
      parentNode: {},
      nextElementSibling: null,
      removed: false,
      classList: {
        set: new Set(),
        contains: (c) => el.className.split(" ").includes(c) || el.classList.set.has(c),
        toggle: (c, on) => (on ? el.classList.set.add(c) : el.classList.set.delete(c)),
      },
      after: (n) => (el.nextElementSibling = n),
      remove: () => (el.removed = true),
    };
    return el;
  };
  return { createElement: make, make };
}

test("the sentence goes after the form that sent the command", () => {
  const form = { tag: "form" };
  const button = { closest: (sel) => (sel === "form" ? form : null) };
  assert.equal(anchorFor(button), form);
  assert.equal(anchorFor(null), null);
});

test("a sentence shows beside its form, replaces the previous one, and goes after a while", () => {
  const doc = fakeDoc();
  const form = doc.make();
  const jobs = [];
  const timers = { setTimeout: (fn, ms) => (jobs.push([fn, ms]), jobs.length), clearTimeout: () => {} };
  const note = showBeside(doc, form, "Done: consumer.down email", true, timers);
  assert.equal(form.nextElementSibling, note);
  assert.equal(note.textContent, "Done: consumer.down email");
  const again = showBeside(doc, form, "unknown consumer 'ghost'", false, timers);
  assert.equal(again, note);
  assert.equal(note.classList.contains("cmd-feedback--error"), true);
  assert.equal(jobs.at(-1)[1], SHOW_MS);
  jobs.at(-1)[0]();
  assert.equal(note.removed, true);
});
