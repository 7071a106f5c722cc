// A program's stderr: under the default "stderr": "fail" the task's failure says how to allow it; under
// "log" what the program wrote is really kept and shown, live by the embedded run (bounded per attempt)
// and afterwards by `bach task-report` as text (the first lines), --json (all of it) and --html.
import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { runBach, taskFolder, tempDir } from "./harness";

function rows(n: number): string {
  const file = path.join(tempDir(), "rows.txt");
  fs.writeFileSync(file, Array.from({ length: n }, (_, i) => `row ${i + 1}\n`).join(""));
  return file;
}

const warns = `cat; echo "warning: skipping malformed row 12" >&2; i=1; while [ $i -le 30 ]; do echo "detail $i" >&2; i=$((i+1)); done`;

test("a program that writes to stderr under the default fails with a line that says how to allow it", async () => {
  const task = taskFolder({ binary: "sh", args: ["-c", `cat; echo "warning: skipping malformed row 12" >&2`] });
  const r = await runBach(["task-run", "--no-progress", "--data", rows(20), "-p", "1"], { cwd: task });
  assert.equal(r.code, 1, r.stderr);
  assert.match(
    r.stderr,
    /^bach: task \S+ failed: chunk 0 \(bytes 0-\d+\) failed after 4 attempts: stderr: warning: skipping malformed row 12 \(a program that may write to stderr: "stderr": "log" in bachfile\.json keeps it in the report instead\)$/m,
  );
});

test("under \"stderr\": \"log\" the embedded run prints each attempt's stderr, bounded, and the report keeps all of it", async () => {
  const home = tempDir("bach-home-");
  const env = { BACH_HOME: home };
  const task = taskFolder({ binary: "sh", args: ["-c", warns], stderr: "log" });
  const input = rows(20);
  const r = await runBach(["task-run", "--no-progress", "--data", input, "-p", "1"], { cwd: task, env });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout.toString(), fs.readFileSync(input, "utf8"));
  // Live: the first 10 lines of the attempt's stderr, then how many more and where they are.
  assert.match(r.stderr, /^bach: stderr of chunk 0: warning: skipping malformed row 12$/m);
  assert.match(r.stderr, /^bach: stderr of chunk 0: detail 9$/m);
  assert.doesNotMatch(r.stderr, /detail 10$/m);
  assert.match(r.stderr, /^bach: stderr of chunk 0: \.\.\. 21 more lines \(bach task-report t-\S+ --json has them\)$/m);

  const text = await runBach(["task-report"], { cwd: task, env });
  assert.equal(text.code, 0, text.stderr);
  const out = text.stdout.toString();
  assert.match(out, /^ {2}stderr \(1 attempt wrote to it; the first 10 lines of each\):$/m, out);
  assert.match(out, /^ {4}chunk 0 \(bytes 0-\d+\), attempt \d+ on \S+: succeeded$/m, out);
  assert.match(out, /^ {6}\| warning: skipping malformed row 12$/m, out);
  assert.match(out, /^ {6}\| detail 9$/m, out);
  assert.doesNotMatch(out, /detail 10$/m, out);
  assert.match(out, /^ {6}\| \.\.\. 21 more lines \(bach task-report t-\S+ --json has them\)$/m, out);

  const json = await runBach(["task-report", "--json"], { cwd: task, env });
  assert.equal(json.code, 0, json.stderr);
  const report = JSON.parse(json.stdout.toString()) as { stderr: { attempts: number; first: { chunk: number; state: string; stderr: string }[] } };
  assert.equal(report.stderr.attempts, 1);
  assert.equal(report.stderr.first.length, 1);
  assert.equal(report.stderr.first[0].chunk, 0);
  assert.equal(report.stderr.first[0].state, "succeeded");
  assert.equal(report.stderr.first[0].stderr.trimEnd().split("\n").length, 31);
  assert.match(report.stderr.first[0].stderr, /^warning: skipping malformed row 12\ndetail 1\n[^]*detail 30\n$/);

  const page = path.join(tempDir(), "report.html");
  const html = await runBach(["task-report", "--html", page], { cwd: task, env });
  assert.equal(html.code, 0, html.stderr);
  const body = fs.readFileSync(page, "utf8");
  assert.match(body, /<h2>Stderr<\/h2>/);
  assert.match(body, /<pre>warning: skipping malformed row 12\ndetail 1\n[^<]*detail 30<\/pre>/);
});
