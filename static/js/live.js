/**
 * The live connection both pages share: one WebSocket to /ws/simulations/<id>/, deltas made
 * whole frames and flow control as docs/api.md specifies, a ping that keeps a watched run
 * alive, and reconnection with back-off. Tested by static/js/tests/live.test.mjs with a fake
 * WebSocket and fake timers.
 *
 *   const live = new LiveSocket({ path, onMessage, onState });
 *   live.connect();
 *   live.drawn();          // after drawing: acknowledges the latest frame received
 *   live.send({ ... });    // false when not connected
 *
 * Pages receive whole frames only: a delta ({"type": "delta", "seq", "base", "patch",
 * "remove"}) is applied here to the frame before it (applyDelta), and one that does not apply
 * asks the server for a whole frame ({"type": "resync"}). The server's notice that this screen
 * gets fewer frames than are made ({"type": "slow"}) goes to onState("slow", detail).
 */

export const PING_MS = 20000; // the server pauses a run nobody has pinged for 50 s
// Frames drawn per acknowledgement: the server sends 8 ahead, so an ack every second frame
// keeps it sending while halving what every viewer costs it to read (docs/api.md, flow control).
export const ACK_EVERY = 2;
export const RECONNECT_MAX_MS = 15000;

/** Milliseconds before reconnection attempt `retry` (0, 1, ...): 1 s doubling to 15 s, ±25%. */
export function reconnectDelay(retry, random = Math.random) {
  const base = Math.min(RECONNECT_MAX_MS, 1000 * Math.pow(2, retry));
  return Math.round(base * (0.75 + random() * 0.5));
}

// A frame's envelope: what a delta never carries (docs/api.md, "Deltas").
const ENVELOPE = new Set(["type", "seq", "full", "history", "my_vote"]);

const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);
const hasOwn = (o, k) => Object.prototype.hasOwnProperty.call(o, k);

// a key named "__proto__" (a service may be called anything) is a key like any other here
function put(obj, key, value) {
  if (key === "__proto__") Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
  else obj[key] = value;
}

function removed(value, tree) {
  const out = { ...value };
  for (const [key, sub] of Object.entries(tree)) {
    if (sub === null) delete out[key];
    else if (hasOwn(out, key) && isObject(out[key]) && isObject(sub)) put(out, key, removed(out[key], sub));
  }
  return out;
}

function merged(base, change) {
  if (!isObject(change)) return change;
  if (isObject(base)) {
    const out = { ...base };
    for (const [key, value] of Object.entries(change)) put(out, key, hasOwn(out, key) ? merged(out[key], value) : value);
    return out;
  }
  if (Array.isArray(base)) {
    // {h, d, k, t, at}: h + base[d:d+k] + t, then element i patched by at[i]
    const d = change.d || 0;
    const k = change.k === undefined ? base.length - d : change.k;
    const items = [...(change.h || []), ...base.slice(d, d + k), ...(change.t || [])];
    for (const [i, element] of Object.entries(change.at || {})) items[Number(i)] = merged(items[Number(i)], element);
    return items;
  }
  if (typeof base === "string") {
    // {p, s, m}: the first p characters, then m, then the last s
    const s = change.s || 0;
    return base.slice(0, change.p) + change.m + (s ? base.slice(base.length - s) : "");
  }
  return change;
}

/**
 * The frame a delta stands for, made from the frame before it (`last`, left as it was: what
 * did not change is shared, not copied), or null when the delta does not apply to it (its
 * `base` is not `last.seq`): then ask for a whole frame. docs/api.md, "Deltas".
 */
export function applyDelta(last, delta) {
  if (!last || !delta || last.seq !== delta.base || !isObject(delta.patch)) return null;
  let body = {};
  for (const key of Object.keys(last)) if (!ENVELOPE.has(key)) put(body, key, last[key]);
  if (isObject(delta.remove)) body = removed(body, delta.remove);
  return { type: "frame", seq: delta.seq, full: false, ...merged(body, delta.patch) };
}

/**
 * The sentence for a {"type": "slow", thinned, sent, published, seconds} notice: how many of
 * the frames made a second this screen gets. "" once it is no longer thinned (cleared).
 */
export function slowSentence(detail) {
  const { thinned, sent, published, seconds } = detail || {};
  if (!thinned || !(published > 0) || !(seconds > 0) || !(sent >= 0)) return "";
  const made = Math.max(1, Math.round(published / seconds));
  const got = Math.min(made, Math.round(sent / seconds));
  return (
    "Your screen is getting " + got + " of " + made + " frame" + (made === 1 ? "" : "s") +
    " a second: the numbers are exact, the animation is thinned."
  );
}

/** The WebSocket address of a path on this page's host (wss on https). */
export function socketUrl(loc, path) {
  return (loc.protocol === "https:" ? "wss://" : "ws://") + loc.host + path;
}

export class LiveSocket {
  /**
   * path: the socket's path; onMessage(msg): every parsed message; onState(state, detail):
   * "connecting", "live" or "down" (detail: {retryMs}). The last four options are for tests.
   */
  constructor({ path, onMessage, onState, WebSocketImpl, loc, timers, random }) {
    this.path = path;
    this.onMessage = onMessage || (() => {});
    this.onState = onState || (() => {});
    this.WebSocketImpl = WebSocketImpl || globalThis.WebSocket;
    this.loc = loc || globalThis.location;
    this.timers = timers || globalThis;
    this.random = random || Math.random;
    this.ws = null;
    this.retry = 0;
    this.ackOwed = 0; // seq of the latest regular frame received and not yet acknowledged
    this.unacked = 0; // regular frames received since the last acknowledgement
    this.frame = null; // the last frame received: what the next delta applies to
    this.resyncAsked = false;
    this.pingTimer = null;
    this.reconnectTimer = null;
    this.closed = false;
  }

  connect() {
    this.timers.clearTimeout(this.reconnectTimer);
    let ws;
    try {
      ws = new this.WebSocketImpl(socketUrl(this.loc, this.path));
    } catch (err) {
      console.warn("Fanout: cannot open the WebSocket", err);
      this.disconnected();
      return;
    }
    this.ws = ws;
    this.ackOwed = 0;
    this.unacked = 0;
    this.frame = null;
    this.resyncAsked = false;
    this.onState("connecting", {});
    ws.onopen = () => {
      if (this.ws !== ws) return;
      this.retry = 0;
      this.timers.clearInterval(this.pingTimer);
      // a viewer still watching keeps an otherwise idle run alive
      this.pingTimer = this.timers.setInterval(() => this.send({ type: "ping" }), PING_MS);
      this.onState("live", {});
    };
    ws.onmessage = (ev) => {
      if (this.ws !== ws) return;
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch (err) {
        console.warn("Fanout: a message that is not JSON", err);
        return;
      }
      if (msg && msg.type === "delta") {
        const frame = applyDelta(this.frame, msg);
        if (!frame) {
          // it does not apply to what this page has: one whole frame, then deltas again
          this.frame = null;
          if (!this.resyncAsked) this.resyncAsked = this.send({ type: "resync" });
          return;
        }
        msg = frame;
      }
      if (msg && msg.type === "slow") {
        const { thinned, sent, published, seconds } = msg;
        this.onState("slow", { thinned, sent, published, seconds });
        return;
      }
      if (msg && msg.type === "frame" && msg.state) {
        this.frame = msg;
        this.resyncAsked = false;
      }
      // Flow control: the server sends a few frames ahead, then waits. A frame is acknowledged
      // once drawn (drawn()), so a busy or hidden tab is sent the latest frame, not a backlog.
      if (msg && msg.type === "frame" && !msg.full && Number.isInteger(msg.seq)) {
        this.ackOwed = msg.seq;
        this.unacked += 1;
      }
      this.onMessage(msg);
    };
    ws.onerror = () => {}; // onclose follows and says what to do
    ws.onclose = () => {
      if (this.ws === ws) this.disconnected();
    };
  }

  get open() {
    return !!this.ws && this.ws.readyState === 1;
  }

  /** Send a message; false when the socket is not open (nothing is queued). */
  send(obj) {
    if (!this.open) return false;
    this.ws.send(JSON.stringify(obj));
    return true;
  }

  /**
   * The page drew what it received: one ack for the latest frame acknowledges every earlier one
   * (sent once ACK_EVERY frames are drawn).
   */
  drawn() {
    if (!this.ackOwed || !this.open || this.unacked < ACK_EVERY) return;
    this.ws.send(JSON.stringify({ type: "ack", seq: this.ackOwed }));
    this.ackOwed = 0;
    this.unacked = 0;
  }

  disconnected() {
    this.ws = null;
    this.ackOwed = 0;
    this.frame = null;
    this.timers.clearInterval(this.pingTimer);
    if (this.closed) return;
    const retryMs = reconnectDelay(this.retry, this.random);
    this.retry += 1;
    this.onState("down", { retryMs });
    this.reconnectTimer = this.timers.setTimeout(() => this.connect(), retryMs);
  }

  /** Stop for good (a test, or a page going away). */
  close() {
    this.closed = true;
    this.timers.clearTimeout(this.reconnectTimer);
    this.timers.clearInterval(this.pingTimer);
    const ws = this.ws;
    this.ws = null;
    if (ws) ws.close();
  }
}

/**
 * The connection's words on the page: the state badge (#ws-state), the banner while it is down
 * (#ws-banner, #ws-banner-detail), the notice that this screen gets fewer frames than are made
 * (#ws-slow, from onState("slow", detail)) and server errors (#sim-error, shown for 10 s).
 */
export function connectionView(doc) {
  const $ = (id) => doc.getElementById(id);
  let errorTimer = 0;
  const setText = (node, text) => {
    if (node && node.textContent !== text) node.textContent = text;
  };
  return {
    state(state, detail) {
      const slow = $("ws-slow");
      if (state === "slow") {
        // the server counts what it sent this socket against what the run made (docs/api.md)
        const text = slowSentence(detail);
        if (slow) {
          setText(slow, text);
          slow.hidden = !text;
        }
        return;
      }
      if (slow && state !== "live") slow.hidden = true; // said of a connection that is gone
      const badge = $("ws-state");
      const words = { connecting: "connecting…", live: "live", down: "disconnected" }[state];
      if (badge) {
        badge.className = "conn conn--" + state;
        setText(badge, words);
      }
      const banner = $("ws-banner");
      if (!banner) return;
      banner.hidden = state !== "down";
      if (state === "down") {
        const s = Math.max(1, Math.round((detail.retryMs || 0) / 1000));
        setText($("ws-banner-detail"), "Trying again in " + s + " s. The numbers below are the last ones received.");
      }
    },
    error(message) {
      const n = $("sim-error");
      if (!n) return;
      n.textContent = String(message || "error");
      n.hidden = false;
      clearTimeout(errorTimer);
      errorTimer = setTimeout(() => {
        n.hidden = true;
      }, 10000);
    },
  };
}
