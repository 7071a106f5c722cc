#!/usr/bin/env node
// gen-gdelt.js BYTES OUT: writes about BYTES of deterministic GDELT-1.0-like event rows (58 tab-separated
// columns, whole rows ending "\n") to OUT ("-" for stdout). Seeded: the same arguments give the same bytes.
"use strict";
const fs = require("fs");

const [bytesArg, out] = process.argv.slice(2);
const target = Number(bytesArg);
if (!Number.isFinite(target) || target < 0 || !out) {
  process.stderr.write("usage: gen-gdelt.js BYTES OUT\n");
  process.exit(2);
}

let seed = 0x2545f491;
function rand(n) {
  // xorshift32: small, fast, deterministic
  seed ^= seed << 13;
  seed ^= seed >>> 17;
  seed ^= seed << 5;
  return (seed >>> 0) % n;
}
const pick = (list) => list[rand(list.length)];

const countries = ["NGA", "GHA", "SEN", "MLI", "USA", "GBR", "FRA", "CHN", "IND", "BRA", "RUS", "ZAF", "KEN", "EGY", "DEU"];
const names = { NGA: "NIGERIA", GHA: "GHANA", SEN: "SENEGAL", MLI: "MALI", USA: "UNITED STATES", GBR: "UNITED KINGDOM", FRA: "FRANCE", CHN: "CHINA", IND: "INDIA", BRA: "BRAZIL", RUS: "RUSSIA", ZAF: "SOUTH AFRICA", KEN: "KENYA", EGY: "EGYPT", DEU: "GERMANY" };
const roles = ["GOV", "MIL", "REB", "COP", "BUS", "MED", "EDU", "CVL", "OPP", "JUD"];
const roleNames = { GOV: "GOVERNMENT", MIL: "MILITARY", REB: "REBEL", COP: "POLICE", BUS: "BUSINESS", MED: "MEDIA", EDU: "STUDENT", CVL: "CIVILIAN", OPP: "OPPOSITION", JUD: "JUDGE" };

let id = 100000000;
function row() {
  id++;
  const year = 1979 + rand(35);
  const month = 1 + rand(12);
  const day = 1 + rand(28);
  const date = `${year}${String(month).padStart(2, "0")}${String(day).padStart(2, "0")}`;
  const c1 = pick(countries);
  const c2 = pick(countries);
  const r1 = pick(roles);
  const r2 = pick(roles);
  const root = String(1 + rand(20)).padStart(2, "0");
  const code = `${root}${rand(10)}`;
  const lat = (rand(180000) / 1000 - 90).toFixed(4);
  const lon = (rand(360000) / 1000 - 180).toFixed(4);
  const cols = [
    id, date, date.slice(0, 6), year, (year + (month - 1) / 12).toFixed(4),
    `${c1}${r1}`, `${names[c1]} ${roleNames[r1]}`, c1, "", "", "", "", "", r1, "",
    `${c2}${r2}`, `${names[c2]} ${roleNames[r2]}`, c2, "", "", "", "", "", r2, "",
    rand(2), code, code.slice(0, 3), root, 1 + rand(4), (rand(200) / 10 - 10).toFixed(1),
    1 + rand(50), 1 + rand(10), 1 + rand(50), (rand(2000) / 100 - 10).toFixed(2),
    rand(5), `${names[c1]}`, c1, c1, "", lat, lon, rand(100000),
    rand(5), `${names[c2]}`, c2, c2, "", lat, lon, rand(100000),
    rand(5), `${names[c1]}`, c1, c1, "", lat, lon, rand(100000),
  ];
  return `${cols.join("\t")}\n`;
}

const fd = out === "-" ? 1 : fs.openSync(out, "w");
let written = 0;
while (written < target) {
  let block = "";
  while (block.length < 1 << 20 && written + block.length < target) block += row();
  const buf = Buffer.from(block, "latin1");
  fs.writeSync(fd, buf);
  written += buf.length;
}
if (fd !== 1) fs.closeSync(fd);
