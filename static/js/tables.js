/**
 * Tables of services that stay a sensible size: with hundreds of services (the scale lesson)
 * the page lists the ones worth looking at — the furthest behind, then the busiest — and says
 * how many more there are and how they stand, with a button to list them all.
 * Tested by static/js/tests/tables.test.mjs.
 */

export const ALL_BELOW = 40; // up to this many services, every one has its row
export const SHOWN = 12; // past it, this many rows

/**
 * How far behind a service is: the events it has not yet processed (`backlog`), not Kafka's
 * consumer lag, which also counts what is processed and waits for the next auto-commit.
 */
export function behind(g) {
  return g.backlog ?? g.lag ?? 0;
}

/** The services to list, in order: all of them, or the SHOWN furthest behind then busiest. */
export function rowsToShow(groups, showAll = false) {
  const names = Object.keys(groups);
  if (showAll || names.length <= ALL_BELOW) return names;
  const back = (n) => behind(groups[n]);
  const lag = (n) => groups[n].lag || 0;
  const busy = (n) => groups[n].throughput || 0;
  return names
    .slice()
    .sort((a, b) => back(b) - back(a) || lag(b) - lag(a) || busy(b) - busy(a) || (a < b ? -1 : 1))
    .slice(0, SHOWN);
}

/** A sentence on the services not listed: "288 more services: all up, the furthest 3 behind." */
export function othersSentence(groups, shown) {
  const listed = new Set(shown);
  const rest = Object.entries(groups).filter(([n]) => !listed.has(n));
  if (!rest.length) return "";
  const down = rest.filter(([, g]) => g.status === "down" || g.status === "crashed").length;
  const worst = Math.max(0, ...rest.map(([, g]) => behind(g)));
  const state = down ? down + " of them down" : "all up";
  const n = rest.length;
  return n + " more service" + (n === 1 ? "" : "s") + ": " + state + ", the furthest " + worst + (worst === 1 ? " event" : " events") + " behind.";
}

/** Each cell names its column (data-label), so a narrow screen can show a row as a card. */
export function labelCells(tr) {
  const table = tr.closest("table");
  const heads = table && table.tHead ? [...table.tHead.rows[0].cells].map((th) => th.textContent.trim()) : [];
  [...tr.cells].forEach((cell, i) => {
    if (i > 0 && heads[i]) cell.dataset.label = heads[i];
  });
}
