// Map of gdelt-per-country-year: for each GDELT 1.0 event row (tab-separated), prints
// `COUNTRY\tYEAR\t1`, so the reducer can count events per country and year.
//
// The country is ActionGeo_CountryCode (0-based column 51, a FIPS 10-4 code such as NI for Nigeria):
// where the event took place, which is what "events in a country" means, and GDELT fills it for every
// located event (all 83,659 rows of a real West Africa sample). Actor1CountryCode (column 7) is the
// first actor's affiliation instead, and is empty for actors without one ("POLICE", "REBEL"): 43% of
// that sample. The year is column 3 (Year). (The rows of ../data/gen-gdelt.js have 8 columns per
// geography block where GDELT has 7, so there column 51 holds a geography type, 0-4, and the
// "countries" come out as 0-4; the benchmark's generator writes RS there in every row.)
//
// Nothing is dropped: a row with an empty country (an event GDELT could not place), or too few columns
// to have one, counts under an empty country (the key `\tYEAR`, or `\t` when the year is missing too),
// so the counts always add up to the input's rows and the empty key says how many were unplaced.
//
// Fast on purpose (the benchmark runs it over 1 GiB): it walks the tabs of each row with indexOf instead
// of splitting the row into 58 strings, and writes once per piece of input.
"use strict";

const YEAR = 3;
const COUNTRY = 51;

/** The row's fields YEAR and COUNTRY as `COUNTRY\tYEAR\t1\n`; the row is text[start, end). */
function keyOf(text, start, end) {
  let year = "";
  let country = "";
  let from = start;
  for (let column = 0; column <= COUNTRY; column++) {
    let tab = text.indexOf("\t", from);
    if (tab === -1 || tab > end) tab = end;
    if (column === YEAR) year = text.slice(from, tab);
    else if (column === COUNTRY) country = text.slice(from, tab);
    if (tab === end) break;
    from = tab + 1;
  }
  return `${country}\t${year}\t1\n`;
}

let rest = "";
// latin1 maps each byte to one character and back, so any bytes in the input come out unchanged.
process.stdin.setEncoding("latin1");
process.stdin.on("data", (data) => {
  const text = rest + data;
  let out = "";
  let start = 0;
  for (let end = text.indexOf("\n"); end !== -1; end = text.indexOf("\n", start)) {
    out += keyOf(text, start, end);
    start = end + 1;
  }
  rest = text.slice(start);
  if (out) process.stdout.write(out, "latin1");
});
process.stdin.on("end", () => {
  // A last row without its "\n" is a row all the same.
  if (rest) process.stdout.write(keyOf(rest, 0, rest.length), "latin1");
});
