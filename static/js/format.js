/**
 * Number formats shared by the pages (an ES module). Tested by static/js/tests/format.test.mjs.
 */

/** A count that fits a small box: 950, 12.5k, 130k, 1.2M, 35M. */
export function compact(n) {
  if (n >= 1e6) return (n / 1e6).toFixed(n >= 1e7 ? 0 : 1) + "M";
  if (n >= 1e4) return (n / 1e3).toFixed(n >= 1e5 ? 0 : 1) + "k";
  return String(n);
}

/** Events per second: "120/s", "12.5/s", "0.3/s". */
export function rateText(r) {
  if (r >= 100) return Math.round(r) + "/s";
  if (r >= 10) return r.toFixed(1).replace(/\.0$/, "") + "/s";
  return (Math.round(r * 10) / 10).toString() + "/s";
}

/** A duration given in ms: "420 ms", "3.5 s", "2 min 5 s". */
export function secondsText(ms) {
  if (ms < 1000) return Math.round(ms) + " ms";
  if (ms < 60000) return (ms / 1000).toFixed(1) + " s";
  return Math.floor(ms / 60000) + " min " + Math.round((ms % 60000) / 1000) + " s";
}

/** A whole number with thousands separators: "1,234". */
export function intText(v) {
  return Math.round(v || 0).toLocaleString("en-US");
}

/** Milliseconds without the unit: "1,234", "42", "3.5". */
export function msText(v) {
  if (v >= 10) return intText(v);
  return (Math.round(v * 10) / 10).toString();
}

/** A share (0..1) as a percentage without the sign: "0", "0.4", "26". */
export function pctText(rate) {
  const p = (rate || 0) * 100;
  if (p === 0) return "0";
  if (p < 1) return p.toFixed(1);
  return String(Math.round(p));
}

/** A number to two decimals at most: "3", "0.25". */
export function num(v) {
  return String(Math.round((v || 0) * 100) / 100);
}

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
