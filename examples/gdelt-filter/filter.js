// A record-wise mapper over GDELT 1.0 event rows (tab-separated): keeps the rows whose EventRootCode
// (0-based column 28) is a conflict code, 17-20 by default or the comma-separated list in $CODES.
"use strict";
const codes = new Set((process.env.CODES || "17,18,19,20").split(",").map((c) => c.trim()));
let rest = "";
process.stdin.setEncoding("latin1");
process.stdin.on("data", (data) => {
  const lines = (rest + data).split("\n");
  rest = lines.pop();
  let out = "";
  for (const line of lines) if (codes.has(line.split("\t", 29)[28])) out += `${line}\n`;
  if (out) process.stdout.write(out, "latin1");
});
process.stdin.on("end", () => {
  if (rest && codes.has(rest.split("\t", 29)[28])) process.stdout.write(`${rest}\n`, "latin1");
});
