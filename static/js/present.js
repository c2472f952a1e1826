/**
 * Presenter mode, for a projector: large type, the diagram (or the two boards) and the key
 * numbers on one 1280x720 screen, the share link as a QR code. `?present=1` in the address
 * turns it on (so a bookmark or a reload keeps it); the page's "Present" button toggles it.
 * Tested by static/js/tests/present.test.mjs.
 */

/** Whether an address asks for presenter mode. */
export function wantsPresenting(search) {
  const v = new URLSearchParams(search || "").get("present");
  return v !== null && v !== "0" && v !== "false";
}

/** The address with presenter mode on or off, keeping every other parameter and the hash. */
export function presentingUrl(href, on) {
  const url = new URL(href);
  if (on) url.searchParams.set("present", "1");
  else url.searchParams.delete("present");
  return url.toString();
}

/** Wire the toggle button; `onChange(on)` lets the page re-measure its canvases. */
export function mountPresenter(doc, win, onChange) {
  const root = doc.documentElement;
  const button = doc.getElementById("present-toggle");
  const apply = (on) => {
    root.classList.toggle("presenting", on);
    if (button) {
      button.setAttribute("aria-pressed", String(on));
      button.textContent = on ? "Leave presenter mode" : "Present";
    }
    if (onChange) onChange(on);
  };
  apply(wantsPresenting(win.location.search));
  if (button) {
    button.addEventListener("click", () => {
      const on = !root.classList.contains("presenting");
      win.history.replaceState(null, "", presentingUrl(win.location.href, on));
      apply(on);
    });
  }
}
