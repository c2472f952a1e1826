/**
 * The run's timeline (templates/_timeline.html), on both pages: a bar of the run's length with
 * where it is now, the scheduled faults still to come and what already happened as markers,
 * the time left in words, and for the controller a jump to any time ("just before" a fault: a
 * marker's button fills it in) and, once the run has finished, a way on. It draws
 * state.timeline (docs/api.md). Tested by static/js/tests/timeline.test.mjs.
 */

import { secondsText } from "./format.js";

/** "t = 12.3 s of 90 s · 1 min 18 s left", or the finished sentence. */
export function timelineWords(tl) {
  if (!tl || !(tl.duration > 0)) return "";
  const t = Math.min(tl.t, tl.duration);
  const of = "t = " + t.toFixed(1) + " s of " + secondsText(tl.duration * 1000);
  if (tl.left <= 1e-9) return of + " · finished";
  return of + " · " + secondsText(tl.left * 1000) + " left";
}

/** Markers on the bar: where (0..100 %), what, and whether it already happened. */
export function markers(tl) {
  if (!tl || !(tl.duration > 0)) return [];
  const one = (m, past) => ({
    t: m.t,
    pct: Math.max(0, Math.min(100, (m.t / tl.duration) * 100)),
    label: m.label,
    kind: m.kind,
    past,
  });
  return [...(tl.past || []).map((m) => one(m, true)), ...(tl.upcoming || []).map((m) => one(m, false))];
}

/** The time to jump to for "just before" a moment: half a second before, never below 0. */
export function justBefore(t) {
  return Math.max(0, Math.round((t - 0.5) * 10) / 10);
}

/** The next few moments to come, in words: "t = 20 s: Email down". */
export function upcomingWords(tl, n = 3) {
  return ((tl && tl.upcoming) || []).slice(0, n).map((m) => "t = " + m.t.toFixed(m.t % 1 ? 1 : 0) + " s: " + m.label);
}

/** Wire the timeline section to the page's frames. */
export function mount(root, doc = document) {
  const $ = (id) => doc.getElementById(id);
  const setText = (node, text) => {
    if (node && node.textContent !== text) node.textContent = text;
  };
  const controls = root.dataset.controls === "1";
  let sig = "";

  function render(st) {
    const tl = st && st.timeline;
    if (!tl) return;
    setText($("timeline-words"), timelineWords(tl));
    const pct = tl.duration > 0 ? Math.min(100, (tl.t / tl.duration) * 100) : 0;
    $("timeline-fill").style.width = pct.toFixed(2) + "%";
    $("timeline-track").setAttribute("aria-valuenow", String(Math.round(pct)));
    const finished = tl.left <= 1e-9;
    $("timeline-finished").hidden = !finished;
    if (finished) {
      setText($("timeline-finished-text"), "The run finished at t = " + secondsText(tl.duration * 1000) + ", its length.");
    }
    const next = upcomingWords(tl);
    setText($("timeline-next"), next.length ? "Coming: " + next.join(" · ") : tl.after_end ? tl.after_end + " scheduled after the end: extend the run to reach them." : "");
    const marks = markers(tl);
    const newSig = marks.map((m) => m.t + m.label + m.past).join("|") + tl.duration;
    if (newSig === sig) return;
    sig = newSig;
    const list = $("timeline-marks");
    list.textContent = "";
    for (const m of marks) {
      const li = doc.createElement("li");
      li.className = "timeline__mark timeline__mark--" + m.kind + (m.past ? " is-past" : "");
      li.style.left = m.pct + "%";
      const words = "t = " + m.t.toFixed(1) + " s: " + m.label;
      if (controls) {
        const b = doc.createElement("button");
        b.type = "button";
        b.className = "timeline__pin";
        b.dataset.t = String(m.t);
        b.title = words + " — jump to just before it";
        b.setAttribute("aria-label", "Jump to just before " + words);
        li.append(b);
      } else {
        const span = doc.createElement("span");
        span.className = "timeline__pin";
        span.title = words;
        li.append(span);
      }
      list.append(li);
    }
  }

  root.addEventListener("click", (ev) => {
    const pin = ev.target.closest("button.timeline__pin");
    if (!pin) return;
    const input = $("seek-value");
    if (input) {
      input.value = String(justBefore(Number(pin.dataset.t)));
      input.focus();
    }
  });
  doc.addEventListener("fanout:message", (ev) => {
    if (ev.detail && ev.detail.type === "frame") render(ev.detail.state);
  });
  const initial = $("initial-frame");
  if (initial) render(JSON.parse(initial.textContent).state);
}

if (typeof document !== "undefined") {
  const root = document.getElementById("timeline");
  if (root) mount(root);
}
