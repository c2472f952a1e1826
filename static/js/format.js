/**
 * Number formats shared by the pages. An ES module; the classic page scripts (compare.js) find
 * it as window.fanoutFormat once it has loaded. Tested by static/js/tests/format.test.mjs.
 */

/** Bytes in B, kB, MB or GB (powers of 1000, as Kafka's tools print them). */
export function bytesText(n) {
  if (typeof n !== "number" || !Number.isFinite(n)) return "–";
  if (n >= 1e9) return (n / 1e9).toFixed(1) + " GB";
  if (n >= 1e6) return (n / 1e6).toFixed(1) + " MB";
  if (n >= 1e3) return (n / 1e3).toFixed(1) + " kB";
  return Math.round(n) + " B";
}

/** "48.2 kB (1.3 kB/s)" for every topic: what a broker holds and how fast it grows. */
export function topicsBytesText(topics) {
  const parts = Object.entries(topics || {}).map(
    ([name, t]) => name + ": " + bytesText(t.bytes_stored) + " (" + bytesText(t.bytes_per_s) + "/s)",
  );
  return parts.length ? parts.join(", ") : "–";
}

/** Table rows (<th scope=row> label, <td> value) for [label, value] pairs: a page's facts. */
export function factRows(pairs) {
  return pairs.map(([label, value]) => {
    const tr = document.createElement("tr");
    const th = document.createElement("th");
    th.scope = "row";
    th.textContent = label;
    const td = document.createElement("td");
    td.textContent = value;
    tr.append(th, td);
    return tr;
  });
}

/**
 * What a person typed to follow an order, as the server names its journey: an order id
 * ("ord-245", which is its correlation id) as text, an event id ("245") as a number, or null
 * for nothing. At most 200 characters, as the server accepts.
 */
export function correlationFromText(text) {
  const t = String(text ?? "").trim();
  if (t === "") return null;
  if (/^\d{1,15}$/.test(t)) return Number(t);
  return t.length <= 200 ? t : null;
}

if (typeof window !== "undefined") {
  window.fanoutFormat = { bytesText, topicsBytesText, correlationFromText };
}
