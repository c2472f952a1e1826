/**
 * Moving dots, or not: a viewer who asked their system for reduced motion gets still pictures
 * (the edges' thickness and arrows show each flow's rate), and any viewer can pause the
 * animation with the page's "Pause animation" button. The choice is remembered in this browser.
 * Tested by static/js/tests/motion.test.mjs.
 */

export const STORAGE_KEY = "fanout.motion";

/** Whether dots move at first: the viewer's own choice if they made one, else their system's. */
export function initialMotion(stored, reducedMotion) {
  if (stored === "on") return true;
  if (stored === "off") return false;
  return !reducedMotion;
}

/** The button's words for a state. */
export function motionLabel(on) {
  return on ? "Pause animation" : "Play animation";
}

/**
 * Wire a toggle button (aria-pressed = paused) to `apply(on)`, called once now with the
 * initial state and again on each press. Returns the initial state.
 */
export function mountMotionToggle(button, apply, win = globalThis) {
  let stored = null;
  try {
    stored = win.localStorage ? win.localStorage.getItem(STORAGE_KEY) : null;
  } catch {
    stored = null; // storage refused (private mode): the system's preference decides
  }
  const reduced = !!(win.matchMedia && win.matchMedia("(prefers-reduced-motion: reduce)").matches);
  let on = initialMotion(stored, reduced);
  const show = () => {
    if (!button) return;
    button.textContent = motionLabel(on);
    button.setAttribute("aria-pressed", String(!on));
  };
  show();
  apply(on);
  if (button) {
    button.addEventListener("click", () => {
      on = !on;
      try {
        win.localStorage.setItem(STORAGE_KEY, on ? "on" : "off");
      } catch {
        // not remembered: it still applies to this page
      }
      show();
      apply(on);
    });
  }
  return on;
}
