// Unit tests for the shared live connection: node --test static/js/tests/
import assert from "node:assert/strict";
import test from "node:test";

import { LiveSocket, PING_MS, reconnectDelay, socketUrl } from "../live.js";

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
