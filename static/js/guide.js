/**
 * A guided lesson on the live page (simulation or comparison): the card for the simulated time,
 * the number it names (live), the question when the run asks it, the class's answers, and the
 * measured answer beside this browser's prediction. The server decides (dashboard/guide.py);
 * this module shows what frames say and sends what the user chose.
 *
 * An ES module shared by both pages. The page's own script (simulation.js, compare.js)
 * dispatches every WebSocket message as a "fanout:message" event and offers
 * `send(obj)`. The functions exported here hold the logic; they are tested with Node's test
 * runner (static/js/tests/guide.test.mjs).
 */

import { factRows } from "./format.js";

/** The card showing at simulated time t: the last one whose time has come (-1: none yet). */
export function cardIndex(cards, t) {
  let index = -1;
  cards.forEach((card, i) => {
    if (card.at <= t + 1e-9) index = i;
  });
  return index;
}

/** A dotted path in a frame's state ("events.groups.email.lag"); undefined when absent. */
export function resolve(state, path) {
  let value = state;
  for (const part of String(path || "").split(".")) {
    if (value === null || typeof value !== "object" || !(part in value)) return undefined;
    value = value[part];
  }
  return value;
}

/** A number as a card shows it: whole numbers with separators, others to one decimal. */
export function formatValue(value) {
  if (typeof value !== "number" || !Number.isFinite(value)) return "–";
  const digits = Number.isInteger(value) ? 0 : Math.abs(value) < 10 ? 2 : 1;
  return value.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

/** "1 answer", "3 answers". */
export function answersText(n) {
  return n + (n === 1 ? " answer" : " answers");
}

/** Rows for the tally: each choice with its count and share of the answers (0-100). */
export function tallyRows(choices, tally) {
  const counts = choices.map((c) => (tally && Number.isInteger(tally[c.key]) ? tally[c.key] : 0));
  const total = counts.reduce((a, b) => a + b, 0);
  return choices.map((c, i) => ({
    key: c.key,
    text: c.text,
    count: counts[i],
    share: total ? Math.round((100 * counts[i]) / total) : 0,
  }));
}

/** What a browser is told about its own prediction once the answer is revealed. */
export function verdict(mine, correct, choices) {
  const text = (key) => (choices.find((c) => c.key === key) || { text: key }).text;
  if (!mine) return "You did not answer this time.";
  if (mine === correct) return "Your prediction: " + text(mine) + " — it matches what was measured.";
  return "Your prediction: " + text(mine) + " — the run measured something else.";
}

/**
 * The diagram box a card's number belongs to: "groups.email.lag" → the Email service's box,
 * "producers.x.rate" → that producer's, "topics.orders.stored" → that topic's. null when the
 * number has no box on this page (the comparison's sides draw no diagram).
 */
export function pointTarget(path, label) {
  const parts = String(path || "").split(".");
  const kinds = { groups: "group", producers: "producer", topics: "topic" };
  if (parts.length < 2 || !(parts[0] in kinds)) return null;
  return { kind: kinds[parts[0]], name: parts[1], label: label || parts[1] };
}

/**
 * Whether an element marked data-point="events.groups.email other.path" shows the figure a card
 * points at: a path it names, or one inside it ("events.groups.email.lag" is Email's).
 */
export function pointMatches(attr, path) {
  if (!path) return false;
  return String(attr || "")
    .split(/\s+/)
    .some((p) => p !== "" && (path === p || path.startsWith(p + ".")));
}

/** The card a navigation button goes to: back, replay (this one) or next, within the cards. */
export function navTarget(action, index, count) {
  const here = Math.max(0, index);
  if (action === "back") return Math.max(0, here - 1);
  if (action === "next") return Math.min(count - 1, here + 1);
  return here;
}

/** Wire the panel to the page: frames update it, buttons send votes and commands. */
export function mount(root, page) {
  const $ = (id) => document.getElementById(id);
  const controls = root.dataset.controls === "1";
  let statics = null; // title, cards, question, choices (from a full frame)
  let mine = null; // this browser's answer
  let shown = { card: null, phase: null };
  let pointed = { path: null, els: [] };

  function setText(node, text) {
    if (node && node.textContent !== text) node.textContent = text;
  }

  function render(st) {
    const g = st && st.guide;
    if (!g) return;
    if (g.cards) statics = g;
    if (!statics) return;
    const cards = statics.cards;
    const i = Math.max(0, g.card);
    const card = cards[i];
    if (card) {
      setText($("guide-step"), "Card " + (i + 1) + " of " + cards.length);
      setText($("guide-when"), "t = " + formatValue(card.at) + " s");
      setText($("guide-text"), card.text);
      setText($("guide-label"), card.label);
      setText($("guide-value"), formatValue(resolve(st, card.point)));
      // every frame: a diagram that starts after this module still gets it (it redraws only
      // when the target changes)
      const detail = pointTarget(card.point, card.label);
      document.dispatchEvent(new CustomEvent("fanout:point", { detail }));
      pointAt(card.point, card.label);
      root.dataset.card = String(i);
    }
    root.dataset.phase = g.phase;
    const asking = g.phase !== "playing";
    $("guide-question").hidden = !asking;
    for (const b of root.querySelectorAll(".guide-choice")) {
      b.disabled = g.phase !== "asking" || mine !== null;
      b.setAttribute("aria-pressed", String(b.dataset.choice === mine));
    }
    const rows = tallyRows(statics.choices, g.tally);
    setText($("guide-votes"), answersText(g.votes));
    for (const row of rows) {
      const li = root.querySelector('.guide-tally__rows li[data-choice="' + row.key + '"]');
      if (!li) continue;
      setText(li.querySelector(".guide-tally__n"), row.count + " (" + row.share + "%)");
      li.querySelector(".guide-tally__fill").style.width = row.share + "%";
    }
    const revealed = g.phase === "revealed" && g.answer;
    $("guide-tally").hidden = !(controls || revealed);
    const reveal = $("guide-reveal");
    if (reveal) reveal.hidden = g.phase !== "asking";
    $("guide-answer").hidden = !revealed;
    if (revealed) {
      setText($("guide-correct"), g.answer.correct_text);
      setText($("guide-yours"), verdict(mine, g.answer.correct, statics.choices));
      setText($("guide-summary"), g.answer.summary);
      const facts = $("guide-facts");
      if (facts && !facts.childElementCount) facts.append(...factRows(g.answer.facts));
      for (const li of root.querySelectorAll(".guide-tally__rows li")) {
        const correct = li.dataset.choice === g.answer.correct;
        li.classList.toggle("is-correct", correct);
        li.querySelector(".guide-tally__measured").hidden = !correct;
      }
    }
    shown = { card: i, phase: g.phase };
  }

  // the page's own figure for the card's number (a table row, a big number, a lag chip), framed
  // and labelled "watch", so pointing works on every page and does not rely on colour; checked
  // every frame, since rows appear as services do
  function pointAt(path, label) {
    const els = [...document.querySelectorAll("[data-point]")].filter(
      (node) => !root.contains(node) && pointMatches(node.dataset.point, path),
    );
    if (path === pointed.path && els.length === pointed.els.length) return;
    for (const node of pointed.els) {
      node.classList.remove("is-pointed");
      delete node.dataset.watch;
    }
    for (const node of els) {
      node.classList.add("is-pointed");
      node.dataset.watch = "watch: " + (label || path);
    }
    pointed = { path, els };
  }

  function showMine() {
    const note = $("guide-mine");
    if (!statics || mine === null) return;
    // at once, not at the next frame (a paused run sends one a second)
    for (const b of root.querySelectorAll(".guide-choice")) {
      b.disabled = true;
      b.setAttribute("aria-pressed", String(b.dataset.choice === mine));
    }
    const choice = statics.choices.find((c) => c.key === mine);
    note.hidden = false;
    setText(note, "Your answer: " + (choice ? choice.text : mine));
  }

  document.addEventListener("fanout:message", (ev) => {
    const msg = ev.detail;
    if (msg.type === "frame") {
      if (msg.full && "my_vote" in msg) {
        mine = msg.my_vote || null;
        showMine();
      }
      render(msg.state);
    } else if (msg.type === "vote") {
      mine = msg.choice;
      showMine();
    }
  });
  root.addEventListener("click", (ev) => {
    const button = ev.target.closest("button");
    if (!button || button.disabled) return;
    if (button.dataset.choice) page.send({ type: "vote", choice: button.dataset.choice });
    else if (button.id === "guide-reveal") page.send({ command: "lesson.reveal" });
    else if (button.dataset.guide && statics) {
      const target = navTarget(button.dataset.guide, shown.card ?? 0, statics.cards.length);
      page.send({ command: "lesson.card", value: target });
    }
  });
  const initial = document.getElementById("initial-frame");
  if (initial) render(JSON.parse(initial.textContent).state);
}

if (typeof document !== "undefined") {
  const root = document.getElementById("guide");
  if (root) {
    const page = {
      send: (obj) => {
        const api = window.fanout || window.fanoutCompare;
        return !!(api && api.send && api.send(obj));
      },
    };
    mount(root, page);
  }
}
