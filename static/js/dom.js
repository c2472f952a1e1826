/** DOM helpers both pages use (an ES module). */

export function $(id) {
  return document.getElementById(id);
}

export function clamp(v, lo, hi) {
  return v < lo ? lo : v > hi ? hi : v;
}

/** Set a node's text only when it changed (no layout work for an unchanged number). */
export function setText(node, text) {
  if (node && node.__text !== text) {
    node.__text = text;
    node.textContent = text;
  }
}

/** A new element with a class and text (text, never markup). */
export function make(tag, cls, text) {
  const n = document.createElement(tag);
  if (cls) n.className = cls;
  if (text !== undefined && text !== null) n.textContent = String(text);
  return n;
}
