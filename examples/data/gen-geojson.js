#!/usr/bin/env node
// gen-geojson.js COUNT OUT: writes COUNT deterministic GeoJSON Features shaped like San Francisco's
// city lots, one per line, to OUT ("-" for stdout).
"use strict";
const fs = require("fs");
const [countArg, out] = process.argv.slice(2);
const count = Number(countArg);
if (!Number.isInteger(count) || count < 0 || !out) {
  process.stderr.write("usage: gen-geojson.js COUNT OUT\n");
  process.exit(2);
}
let seed = 0x9e3779b9;
function rand(n) {
  seed ^= seed << 13;
  seed ^= seed >>> 17;
  seed ^= seed << 5;
  return (seed >>> 0) % n;
}
const streets = ["MISSION", "MARKET", "VALENCIA", "FOLSOM", "HOWARD", "GEARY", "JUDAH", "IRVING", "NORIEGA", "TARAVAL"];
const types = ["ST", "AVE", "BLVD", "WAY", null];
const fd = out === "-" ? 1 : fs.openSync(out, "w");
let block = "";
for (let i = 0; i < count; i++) {
  const x = -122.5 + rand(100000) / 1e6;
  const y = 37.7 + rand(100000) / 1e6;
  const ring = [[x, y, 0], [x + 0.0002, y, 0], [x + 0.0002, y + 0.0001, 0], [x, y + 0.0001, 0], [x, y, 0]];
  const block4 = String(1000 + rand(8000));
  const lot = String(rand(100)).padStart(3, "0");
  const feature = {
    type: "Feature",
    properties: {
      MAPBLKLOT: block4 + lot, BLKLOT: block4 + lot, BLOCK_NUM: block4, LOT_NUM: lot,
      FROM_ST: String(rand(3000)), TO_ST: String(rand(3000)), STREET: pick(streets), ST_TYPE: pick(types), ODD_EVEN: rand(2) ? "O" : "E",
    },
    geometry: { type: "Polygon", coordinates: [ring] },
  };
  block += `${JSON.stringify(feature)}\n`;
  if (block.length > 1 << 20) {
    fs.writeSync(fd, block);
    block = "";
  }
}
fs.writeSync(fd, block);
if (fd !== 1) fs.closeSync(fd);
function pick(list) {
  return list[rand(list.length)];
}
