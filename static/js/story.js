/**
 * The narrative beside the numbers: sentences the server computes from the present figures at
 * every frame (state.story: [{level: "ok" | "warn" | "bad", text}], docs/api.md), so it never
 * goes stale or contradicts what is shown. Each sentence's level is marked by a word-like
 * sign as well as its colour. Tested by static/js/tests/story.test.mjs.
 */

const SIGNS = { ok: "✓", warn: "!", bad: "✗" };
const WORDS = { ok: "fine", warn: "watch", bad: "trouble" };

/** The sentences to show, each with a known level; anything malformed is left out. */
export function storyItems(story) {
  if (!Array.isArray(story)) return [];
  return story
    .filter((s) => s && typeof s.text === "string" && s.text !== "")
    .map((s) => ({ level: s.level in SIGNS ? s.level : "ok", text: s.text }));
}

/** A signature that changes when the sentences do (the list is rebuilt only then). */
export function storySig(items) {
  return items.map((s) => s.level + ":" + s.text).join("\n");
}

/** Fill `ul` with one <li> per sentence: its sign (with the level in words for readers). */
export function renderStory(doc, ul, items) {
  ul.textContent = "";
  for (const s of items) {
    const li = doc.createElement("li");
    li.className = "story__item story__item--" + s.level;
    const sign = doc.createElement("span");
    sign.className = "story__sign";
    sign.textContent = SIGNS[s.level];
    sign.setAttribute("aria-label", WORDS[s.level] + ":");
    li.append(sign, " " + s.text);
    ul.append(li);
  }
}
