/**
 * "Rebuild from the log": one key's state as of an offset, rebuilt by replaying its events
 * (GET /api/simulations/<id>/replay?topic=&key=&upto=). The server folds the events with the
 * same function the event-sourcing lesson is measured with; this module picks the key and the
 * offset (a slider over the key's events) and shows what comes back.
 *
 * An ES module; its logic is tested with Node's test runner (static/js/tests/replay.test.mjs).
 */

import { factRows } from "./format.js";

/** The key's events, each marked applied (at or before the offset) or not yet. */
export function eventMarks(events, upto) {
  return events.map((e) => ({ ...e, applied: upto === null || e.offset <= upto }));
}

/** The state as rows: status and version first, then the other fields by name. */
export function stateRows(state) {
  const first = ["status", "version"].filter((k) => k in state);
  const rest = Object.keys(state)
    .filter((k) => !first.includes(k))
    .sort();
  return [...first, ...rest].map((k) => [k, formatField(state[k])]);
}

export function formatField(value) {
  if (value === null || value === undefined) return "–";
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

/** The query string for a replay as of ``upto`` (null: all of the key's events). */
export function replayQuery(topic, key, upto) {
  const q = new URLSearchParams({ topic, key });
  if (upto !== null && upto !== undefined) q.set("upto", String(upto));
  return q.toString();
}

function mount(root) {
  const $ = (id) => document.getElementById(id);
  const form = $("replay-form");
  const slider = $("replay-slider");
  let current = null; // {topic, key, events}
  let pending = 0;

  async function fetchReplay(topic, key, upto) {
    const ticket = ++pending;
    const response = await fetch(root.dataset.url + "?" + replayQuery(topic, key, upto));
    const body = await response.json();
    if (ticket !== pending) return null; // a newer request answers instead
    if (!response.ok) throw new Error(body.error || "the replay failed");
    return body;
  }

  function show(body) {
    const error = $("replay-error");
    error.hidden = true;
    $("replay-result").hidden = false;
    $("replay-where").textContent =
      body.events.length === 0
        ? "No event with key " + body.key + " is in " + body.topic + " (retention may have deleted it)."
        : body.events.length + " event" + (body.events.length === 1 ? "" : "s") + " with key " + body.key +
          ", all in partition " + body.partition + " of " + body.topic + " (the key decides the partition).";
    const upto = body.upto;
    $("replay-offset").textContent = upto === null ? "latest" : String(upto);
    const list = $("replay-events");
    list.replaceChildren(
      ...eventMarks(body.events, upto).map((e) => {
        const li = document.createElement("li");
        li.className = e.applied ? "is-applied" : "is-pending";
        li.textContent = "offset " + e.offset + ": " + e.type + (e.applied ? " — applied" : " — not yet");
        return li;
      }),
    );
    $("replay-caption").textContent =
      "Its state as of offset " + (upto === null ? "now" : upto) + ", rebuilt from these events";
    $("replay-state").replaceChildren(...factRows(stateRows(body.state)));
  }

  function fail(err) {
    const error = $("replay-error");
    error.hidden = false;
    error.textContent = err.message;
  }

  // not a <form>: a read-only viewer's page has no forms, and this one only reads
  async function go() {
    const topic = String(form.querySelector("[name=topic]").value || "");
    const key = String(form.querySelector("[name=key]").value || "").trim();
    if (!key) return;
    try {
      const body = await fetchReplay(topic, key, null);
      if (!body) return;
      current = { topic, key, events: body.events };
      slider.max = String(Math.max(0, body.events.length - 1));
      slider.value = slider.max;
      slider.disabled = body.events.length === 0;
      show(body);
    } catch (err) {
      fail(err);
    }
  }
  $("replay-go").addEventListener("click", go);
  form.querySelector("[name=key]").addEventListener("keydown", (ev) => {
    if (ev.key === "Enter") go();
  });
  slider.addEventListener("input", async () => {
    if (!current || !current.events.length) return;
    const event = current.events[Number(slider.value)];
    try {
      const body = await fetchReplay(current.topic, current.key, event.offset);
      if (body) show(body);
    } catch (err) {
      fail(err);
    }
  });
}

if (typeof document !== "undefined") {
  const root = document.getElementById("replay");
  if (root) mount(root);
}
