/**
 * The live connection both pages share: one WebSocket to /ws/simulations/<id>/, flow control
 * as docs/api.md specifies, a ping that keeps a watched run alive, and reconnection with
 * back-off. Tested by static/js/tests/live.test.mjs with a fake WebSocket and fake timers.
 *
 *   const live = new LiveSocket({ path, onMessage, onState });
 *   live.connect();
 *   live.drawn();          // after drawing: acknowledges the latest frame received
 *   live.send({ ... });    // false when not connected
 */

export const PING_MS = 20000; // the server pauses a run nobody has pinged for 50 s
export const RECONNECT_MAX_MS = 15000;

/** Milliseconds before reconnection attempt `retry` (0, 1, ...): 1 s doubling to 15 s, ±25%. */
export function reconnectDelay(retry, random = Math.random) {
  const base = Math.min(RECONNECT_MAX_MS, 1000 * Math.pow(2, retry));
  return Math.round(base * (0.75 + random() * 0.5));
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
      // Flow control: the server sends a few frames ahead, then waits. A frame is acknowledged
      // once drawn (drawn()), so a busy or hidden tab is sent the latest frame, not a backlog.
      if (msg && msg.type === "frame" && !msg.full && Number.isInteger(msg.seq)) this.ackOwed = msg.seq;
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

  /** The page drew what it received: one ack for the latest frame acknowledges every earlier one. */
  drawn() {
    if (!this.ackOwed || !this.open) return;
    this.ws.send(JSON.stringify({ type: "ack", seq: this.ackOwed }));
    this.ackOwed = 0;
  }

  disconnected() {
    this.ws = null;
    this.ackOwed = 0;
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
 * (#ws-banner, #ws-banner-detail) and server errors (#sim-error, shown for 10 s).
 */
export function connectionView(doc) {
  const $ = (id) => doc.getElementById(id);
  let errorTimer = 0;
  const setText = (node, text) => {
    if (node && node.textContent !== text) node.textContent = text;
  };
  return {
    state(state, detail) {
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
