// Reduce of gdelt-per-country-year: its stdin is `COUNTRY\tYEAR\tCOUNT` lines sorted by their key
// (COUNTRY\tYEAR, the first two fields); it prints `COUNTRY\tYEAR\tTOTAL` once per run of equal keys.
//
// It reads what it prints (key fields, then a count), and a sum of sums is the sum, so it can also run
// as the combiner ("combine": true) on each map chunk's output before the shuffle: counts of 1 from
// the mapper and partial totals from a combine add up the same.
"use strict";

let rest = "";
let key = null;
let total = 0;

/** Adds the line text[start, end) to the current key's total, or prints that total and starts anew. */
function add(text, start, end, out) {
  const first = text.indexOf("\t", start);
  const second = first === -1 || first >= end ? -1 : text.indexOf("\t", first + 1);
  // A line with fewer than three fields is all key and counts once (this mapper never writes one).
  const cut = second === -1 || second >= end ? end : second;
  const lineKey = text.slice(start, cut);
  const count = cut === end ? 1 : Number(text.slice(cut + 1, end));
  if (lineKey !== key) {
    if (key !== null) out.push(`${key}\t${total}\n`);
    key = lineKey;
    total = 0;
  }
  total += count;
}

process.stdin.setEncoding("latin1");
process.stdin.on("data", (data) => {
  const text = rest + data;
  const out = [];
  let start = 0;
  for (let end = text.indexOf("\n"); end !== -1; end = text.indexOf("\n", start)) {
    add(text, start, end, out);
    start = end + 1;
  }
  rest = text.slice(start);
  if (out.length) process.stdout.write(out.join(""), "latin1");
});
process.stdin.on("end", () => {
  const out = [];
  if (rest) add(rest, 0, rest.length, out);
  if (key !== null) out.push(`${key}\t${total}\n`);
  process.stdout.write(out.join(""), "latin1");
});
