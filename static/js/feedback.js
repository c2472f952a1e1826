/**
 * A command's answer as a sentence beside the control that sent it, not at the top of the page
 * where nobody looks. The forms post with htmx into #command-result (kept for screen readers,
 * which announce it); this copies its sentence next to the sending form for a few seconds.
 * Tested by static/js/tests/feedback.test.mjs.
 */

export const SHOW_MS = 8000;

/** Where the sentence goes: after the form (or the control's own row) that sent the command. */
export function anchorFor(elt) {
  if (!elt || !elt.closest) return null;
  return elt.closest("form") || elt;
}

/** Put `text` (ok or not) beside `anchor`, replacing an earlier sentence there. */
export function showBeside(doc, anchor, text, ok, timers = globalThis) {
  if (!anchor || !anchor.parentNode) return null;
  let note = anchor.nextElementSibling;
  if (!note || !note.classList || !note.classList.contains("cmd-feedback")) {
    note = doc.createElement("span");
    note.className = "cmd-feedback";
    anchor.after(note);
  }
  note.textContent = text;
  note.classList.toggle("cmd-feedback--error", !ok);
  timers.clearTimeout(note._timer);
  note._timer = timers.setTimeout(() => note.remove(), SHOW_MS);
  return note;
}

/** Listen for htmx's answers into #command-result and echo each beside its form. */
export function mountFeedback(doc) {
  doc.body.addEventListener("htmx:afterSwap", (ev) => {
    const target = ev.detail && ev.detail.target;
    if (!target || target.id !== "command-result") return;
    const p = target.querySelector(".command-result");
    const cfg = ev.detail.requestConfig || {};
    const anchor = anchorFor(cfg.elt || ev.detail.elt);
    if (!p || !anchor) return;
    showBeside(doc, anchor, p.textContent.trim(), !p.classList.contains("command-result--error"));
    doc.documentElement.classList.add("feedback-beside");
  });
}
