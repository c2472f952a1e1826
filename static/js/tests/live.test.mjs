// Unit tests for the shared live connection: node --test static/js/tests/
import assert from "node:assert/strict";
import test from "node:test";

import { LiveSocket, PING_MS, applyDelta, connectionView, reconnectDelay, slowSentence, socketUrl } from "../live.js";

class FakeSocket {
  static made = [];
  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.sent = [];
    FakeSocket.made.push(this);
  }
  send(text) {
    this.sent.push(JSON.parse(text));
  }
  close() {
    this.readyState = 3;
  }
  // what the server does
  open() {
    this.readyState = 1;
    this.onopen();
  }
  deliver(obj) {
    this.onmessage({ data: typeof obj === "string" ? obj : JSON.stringify(obj) });
  }
  drop() {
    this.readyState = 3;
    this.onclose();
  }
}

function fakeTimers() {
  const t = { now: 0, jobs: [], id: 0 };
  t.setTimeout = (fn, ms) => (t.jobs.push({ id: ++t.id, at: t.now + ms, fn }), t.id);
  t.setInterval = (fn, ms) => (t.jobs.push({ id: ++t.id, at: t.now + ms, fn, every: ms }), t.id);
  t.clearTimeout = t.clearInterval = (id) => (t.jobs = t.jobs.filter((j) => j.id !== id));
  t.advance = (ms) => {
    const end = t.now + ms;
    for (;;) {
      const due = t.jobs.filter((j) => j.at <= end).sort((a, b) => a.at - b.at)[0];
      if (!due) break;
      t.now = due.at;
      if (due.every) due.at += due.every;
      else t.jobs = t.jobs.filter((j) => j !== due);
      due.fn();
    }
    t.now = end;
  };
  return t;
}

function live(extra = {}) {
  FakeSocket.made = [];
  const messages = [];
  const states = [];
  const timers = fakeTimers();
  const socket = new LiveSocket({
    path: "/ws/simulations/abc/",
    onMessage: (m) => messages.push(m),
    onState: (s, d) => states.push([s, d]),
    WebSocketImpl: FakeSocket,
    loc: { protocol: "https:", host: "fanout.example" },
    timers,
    random: () => 0.5,
    ...extra,
  });
  return { socket, messages, states, timers };
}

test("the socket address follows the page's scheme and host", () => {
  assert.equal(socketUrl({ protocol: "https:", host: "a.example" }, "/ws/x/"), "wss://a.example/ws/x/");
  assert.equal(socketUrl({ protocol: "http:", host: "127.0.0.1:8000" }, "/ws/x/"), "ws://127.0.0.1:8000/ws/x/");
});

test("frames are acknowledged once drawn, with one ack for the latest (docs/api.md)", () => {
  const { socket, messages } = live();
  socket.connect();
  const ws = FakeSocket.made[0];
  ws.open();
  ws.deliver({ type: "frame", full: true, seq: 0 });
  ws.deliver({ type: "frame", seq: 1 });
  ws.deliver({ type: "frame", seq: 2 });
  assert.equal(messages.length, 3);
  assert.deepEqual(ws.sent, []); // nothing acknowledged before it is drawn
  socket.drawn();
  assert.deepEqual(ws.sent, [{ type: "ack", seq: 2 }]);
  socket.drawn(); // nothing new drawn: nothing sent
  assert.equal(ws.sent.length, 1);
});

test("a full frame is not acknowledged, and garbage from the server is ignored", () => {
  const { socket, messages } = live();
  socket.connect();
  const ws = FakeSocket.made[0];
  ws.open();
  ws.deliver("{not json");
  ws.deliver({ type: "frame", full: true, seq: 7 });
  socket.drawn();
  assert.deepEqual(ws.sent, []);
  assert.equal(messages.length, 1);
});

test("a watching page pings every 20 s while the socket is open", () => {
  const { socket, timers } = live();
  socket.connect();
  const ws = FakeSocket.made[0];
  ws.open();
  timers.advance(PING_MS * 3 + 1);
  assert.deepEqual(ws.sent, [{ type: "ping" }, { type: "ping" }, { type: "ping" }]);
});

test("a dropped socket reconnects with a growing back-off, and says when", () => {
  const { socket, states, timers } = live();
  socket.connect();
  FakeSocket.made[0].open();
  FakeSocket.made[0].drop();
  assert.deepEqual(states.at(-1), ["down", { retryMs: 1000 }]);
  timers.advance(999);
  assert.equal(FakeSocket.made.length, 1);
  timers.advance(1);
  assert.equal(FakeSocket.made.length, 2);
  FakeSocket.made[1].drop(); // never opened: the next wait doubles
  assert.deepEqual(states.at(-1), ["down", { retryMs: 2000 }]);
  timers.advance(2000);
  FakeSocket.made[2].open(); // opened: the back-off starts again
  FakeSocket.made[2].drop();
  assert.deepEqual(states.at(-1), ["down", { retryMs: 1000 }]);
  // a dropped socket's ping stops with it
  assert.deepEqual(FakeSocket.made[0].sent, []);
});

test("the back-off is capped at 15 s and jittered by a quarter either way", () => {
  assert.equal(reconnectDelay(0, () => 0.5), 1000);
  assert.equal(reconnectDelay(10, () => 0.5), 15000);
  assert.equal(reconnectDelay(10, () => 0), 11250);
  assert.equal(reconnectDelay(10, () => 1), 18750);
});

test("nothing is sent while disconnected, and a closed socket stays closed", () => {
  const { socket, timers } = live();
  assert.equal(socket.send({ command: "pause" }), false);
  socket.connect();
  assert.equal(socket.send({ command: "pause" }), false); // still connecting
  FakeSocket.made[0].open();
  assert.equal(socket.send({ command: "pause" }), true);
  socket.close();
  timers.advance(60000);
  assert.equal(FakeSocket.made.length, 1);
});

// --- deltas (docs/api.md, "Deltas") -------------------------------------------------------

const FULL = {
  type: "frame",
  seq: 10,
  full: true,
  t: 1.5,
  epoch: 1,
  history: { t: [1] },
  my_vote: "b",
  state: {
    t: 1.5,
    stepping_to: 3,
    groups: {
      email: {
        lag: 4,
        notes: ["4 processed but not committed yet (auto-commit every 5 s)"],
        partitions: [
          { partition: 0, lag: 1 },
          { partition: 1, lag: 3 },
        ],
        wait_ms: { count: 2, p50: 1.5 },
      },
      fraud: { lag: 0 },
    },
    marks: [{ t: 1 }, { t: 2 }, { t: 3 }],
    letters: [{ id: 1 }, { id: 2 }],
    shape: [1, 2],
  },
  events: [{ t: 1.4, kind: "produced" }],
  events_seen: 1,
};

test("a delta makes the whole frame from the one before, sharing what did not change", () => {
  const delta = {
    type: "delta",
    seq: 11,
    base: 10,
    patch: {
      t: 1.55,
      state: {
        t: 1.55,
        stepping_to: null, // null is a value, not a removal
        groups: {
          email: {
            lag: 5,
            notes: { at: { 0: { p: 0, s: 56, m: "5" } } },
            partitions: { at: { 1: { lag: 4 } } },
          },
          billing: { lag: 2 }, // a new key: the object as it is
        },
        marks: { d: 1, t: [{ t: 4 }] }, // the oldest dropped, the newest appended
        letters: { h: [{ id: 3 }], k: 1 }, // the newest first, the oldest dropped
        shape: { kind: "now an object" }, // a list that became an object: removed, then set
      },
      events: [],
      events_seen: 0,
    },
    remove: { state: { groups: { fraud: null, email: { wait_ms: null } }, shape: null } },
  };
  const before = JSON.stringify(FULL);
  const frame = applyDelta(FULL, delta);
  assert.equal(JSON.stringify(FULL), before, "the frame before is left as it was");
  assert.deepEqual(frame, {
    type: "frame",
    seq: 11,
    full: false,
    t: 1.55,
    epoch: 1,
    state: {
      t: 1.55,
      stepping_to: null,
      groups: {
        email: {
          lag: 5,
          notes: ["5 processed but not committed yet (auto-commit every 5 s)"],
          partitions: [
            { partition: 0, lag: 1 },
            { partition: 1, lag: 4 },
          ],
        },
        billing: { lag: 2 },
      },
      marks: [{ t: 2 }, { t: 3 }, { t: 4 }],
      letters: [{ id: 3 }, { id: 1 }],
      shape: { kind: "now an object" },
    },
    events: [],
    events_seen: 0,
  });
  // history and my_vote belong to the full frame alone; unchanged parts are the same objects
  assert.equal(frame.state.groups.email.partitions[0], FULL.state.groups.email.partitions[0]);
  assert.equal(frame.state.marks[0], FULL.state.marks[1]);
});

test("a delta for another frame does not apply", () => {
  assert.equal(applyDelta(FULL, { type: "delta", seq: 12, base: 11, patch: {} }), null);
  assert.equal(applyDelta(null, { type: "delta", seq: 11, base: 10, patch: {} }), null);
});

test("a key named __proto__ is a key like any other", () => {
  const last = { type: "frame", seq: 1, state: { groups: {} } };
  const delta = JSON.parse('{"type":"delta","seq":2,"base":1,"patch":{"state":{"groups":{"__proto__":{"lag":1}}}}}');
  const frame = applyDelta(last, delta);
  assert.deepEqual(Object.keys(frame.state.groups), ["__proto__"]);
  assert.equal(frame.state.groups.__proto__.lag, 1);
  assert.equal(Object.getPrototypeOf(frame.state.groups), Object.prototype);
});

test("the socket gives the page whole frames, acks them, and asks once for a resync", () => {
  const { socket, messages } = live();
  socket.connect();
  const ws = FakeSocket.made[0];
  ws.open();
  ws.deliver(FULL);
  ws.deliver({ type: "delta", seq: 11, base: 10, patch: { t: 1.55, events: [], events_seen: 0 } });
  assert.equal(messages.length, 2);
  assert.equal(messages[1].type, "frame");
  assert.equal(messages[1].seq, 11);
  assert.equal(messages[1].t, 1.55);
  assert.equal(messages[1].state, messages[0].state); // shared, not copied
  socket.drawn();
  assert.deepEqual(ws.sent, []); // one frame drawn: acknowledged with the next
  ws.deliver({ type: "delta", seq: 12, base: 11, patch: { t: 1.6 } });
  socket.drawn();
  assert.deepEqual(ws.sent, [{ type: "ack", seq: 12 }]);
  // a delta whose base this page does not have: one resync, the deltas after it are dropped
  ws.deliver({ type: "delta", seq: 14, base: 13, patch: {} });
  ws.deliver({ type: "delta", seq: 15, base: 14, patch: {} });
  assert.equal(messages.length, 3);
  assert.deepEqual(ws.sent.slice(1), [{ type: "resync" }]);
  // the whole frame comes, and deltas apply to it again
  ws.deliver({ ...FULL, full: false, history: undefined, seq: 15 });
  ws.deliver({ type: "delta", seq: 16, base: 15, patch: { t: 2 } });
  assert.equal(messages.length, 5);
  assert.equal(messages[4].t, 2);
  socket.drawn();
  assert.deepEqual(ws.sent.slice(2), [{ type: "ack", seq: 16 }]);
  // a new connection starts from nothing: its first delta cannot apply
  ws.drop();
});

// --- the "slow" notice ---------------------------------------------------------------------

test("the slow notice says how many of the frames made a second this screen gets", () => {
  assert.equal(
    slowSentence({ thinned: true, sent: 12, published: 40, seconds: 2 }),
    "Your screen is getting 6 of 20 frames a second: the numbers are exact, the animation is thinned.",
  );
  assert.equal(slowSentence({ thinned: true, sent: 0, published: 2, seconds: 2 }).slice(0, 38), "Your screen is getting 0 of 1 frame a ");
  assert.equal(slowSentence({ thinned: false, sent: 39, published: 40, seconds: 2 }), ""); // over: cleared
  assert.equal(slowSentence({}), "");
});

class FakeNode {
  constructor() {
    this.textContent = "";
    this.hidden = true;
    this.className = "";
  }
}

test("the socket hands the slow notice to the page's connection view, which shows #ws-slow", () => {
  const nodes = { "ws-state": new FakeNode(), "ws-slow": new FakeNode(), "ws-banner": new FakeNode() };
  const doc = { getElementById: (id) => nodes[id] || null };
  const view = connectionView(doc);
  const { socket, messages, states } = live({ onState: (s, d) => view.state(s, d) });
  socket.connect();
  FakeSocket.made[0].open();
  FakeSocket.made[0].deliver({ type: "slow", thinned: true, sent: 12, published: 40, seconds: 2 });
  assert.equal(messages.length, 0); // the page's own handler never sees it
  assert.equal(states.length, 0);
  assert.equal(nodes["ws-slow"].hidden, false);
  assert.match(nodes["ws-slow"].textContent, /^Your screen is getting 6 of 20 frames a second/);
  assert.equal(nodes["ws-state"].textContent, "live"); // the badge is left as it was
  FakeSocket.made[0].deliver({ type: "slow", thinned: false, sent: 39, published: 40, seconds: 2 });
  assert.equal(nodes["ws-slow"].hidden, true);
  FakeSocket.made[0].deliver({ type: "slow", thinned: true, sent: 2, published: 40, seconds: 2 });
  assert.equal(nodes["ws-slow"].hidden, false);
  FakeSocket.made[0].drop(); // a connection that is gone says nothing of its frames
  assert.equal(nodes["ws-slow"].hidden, true);
});
