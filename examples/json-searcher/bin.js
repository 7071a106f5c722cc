// The seed's json-searcher: input is one GeoJSON Feature per line; prints the lines whose properties
// hold a value containing $SEARCH (case-insensitive; default "STREET"). Record-wise and streaming.
"use strict";
const search = (process.env.SEARCH || "STREET").toLowerCase();
let rest = "";
process.stdin.setEncoding("utf8");
function keep(line) {
  if (!line) return false;
  const feature = JSON.parse(line);
  return Object.values(feature.properties || {}).some((v) => v !== null && String(v).toLowerCase().includes(search));
}
process.stdin.on("data", (data) => {
  const lines = (rest + data).split("\n");
  rest = lines.pop();
  let out = "";
  for (const line of lines) if (keep(line)) out += `${line}\n`;
  if (out) process.stdout.write(out);
});
process.stdin.on("end", () => {
  if (keep(rest)) process.stdout.write(`${rest}\n`);
});
