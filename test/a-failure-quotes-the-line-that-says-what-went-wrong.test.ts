// A failed attempt's summary quotes the stderr line that says what went wrong: a Python traceback's
// exception line, a node uncaught exception's error line, otherwise the first non-empty line. The pure
// function (core/stderr-summary.ts) is tested with properties; real python3 and node failures show
// the line a user sees, and the report still holds the whole stderr.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import fc from "fast-check";
import { stderrSummary } from "../core/stderr-summary";
import { runBach, taskFolder, tempDir } from "./harness";

const pythonTraceback = `Traceback (most recent call last):
  File "<string>", line 1, in <module>
ModuleNotFoundError: No module named 'geopandas'
`;

const nodeException = `/tmp/task/main.js:2
x.foo;
  ^

TypeError: Cannot read properties of null (reading 'foo')
    at Object.<anonymous> (/tmp/task/main.js:2:3)
    at node:internal/main/run_main_module:28:49

Node.js v20.20.2
`;

/** A line that none of the rules takes for a marker: no caret-only line, no traceback header, not indented. */
const plainLine = fc.string({ minLength: 1, maxLength: 60 }).map((s) => s.replace(/[\r\n]/g, " ").trim()).filter((s) => s.length > 0 && !/^\^+$/.test(s) && !s.startsWith("Traceback"));
const errorLine = fc.tuple(fc.constantFrom("ValueError", "KeyError", "RuntimeError", "TypeError", "Error"), plainLine).map(([k, m]) => `${k}: ${m}`);

describe("stderrSummary", () => {
  test("a Python traceback is summed up by its exception line", () => {
    assert.equal(stderrSummary(pythonTraceback), "ModuleNotFoundError: No module named 'geopandas'");
  });

  test("a chained Python traceback is summed up by the last exception raised", () => {
    const chained = `Traceback (most recent call last):\n  File "a.py", line 2, in <module>\n    d["k"]\nKeyError: 'k'\n\nDuring handling of the above exception, another exception occurred:\n\nTraceback (most recent call last):\n  File "a.py", line 4, in <module>\n    raise ValueError("bad row")\nValueError: bad row\n`;
    assert.equal(stderrSummary(chained), "ValueError: bad row");
  });

  test("a Python syntax error is summed up by its SyntaxError line", () => {
    assert.equal(stderrSummary(`  File "<string>", line 1\n    x = (\n        ^\nSyntaxError: '(' was never closed\n`), "SyntaxError: '(' was never closed");
  });

  test("a node uncaught exception is summed up by its error line, not the source line", () => {
    assert.equal(stderrSummary(nodeException), "TypeError: Cannot read properties of null (reading 'foo')");
    assert.equal(stderrSummary(`[eval]:1\nthrow "boom"\n^\nboom\n(Use \`node --trace-uncaught ...\` to show where the exception was thrown)\n`), "boom");
  });

  test("anything else is summed up by its first non-empty line", () => {
    assert.equal(stderrSummary("\n\n  warning: skipping malformed row 12\nmore\n"), "warning: skipping malformed row 12");
    assert.equal(stderrSummary("bad record 77\r\n"), "bad record 77");
    assert.equal(stderrSummary(""), "");
    assert.equal(stderrSummary(" \n\t\n"), "");
  });

  test("a summary is one line of at most 203 characters, taken from the text, and empty only for blank text", () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 600 }), (text) => {
        const s = stderrSummary(text);
        assert.ok(!s.includes("\n") && !s.includes("\r"));
        assert.ok(s.length <= 203);
        assert.equal(s === "", text.trim() === "");
        assert.ok(text.includes(s.endsWith("...") ? s.slice(0, -3) : s));
      }),
    );
  });

  test("whatever a program printed before its traceback, the summary is the exception line", () => {
    fc.assert(
      fc.property(fc.array(plainLine, { maxLength: 5 }), fc.array(plainLine, { maxLength: 4 }), errorLine, (before, frames, error) => {
        const trace = ["Traceback (most recent call last):", ...frames.flatMap((f) => [`  File "x.py", line 3, in f`, `    ${f}`]), error];
        assert.equal(stderrSummary([...before, ...trace, ""].join("\n")), error.slice(0, 200) + (error.length > 200 ? "..." : ""));
      }),
    );
  });

  test("whatever a program printed before its uncaught exception, the summary is the error line", () => {
    fc.assert(
      fc.property(fc.array(plainLine, { maxLength: 5 }), plainLine, fc.nat(40), errorLine, (before, source, column, error) => {
        const crash = [`/task/main.js:${column + 1}`, source, `${" ".repeat(column)}^`, "", error, "    at Object.<anonymous> (/task/main.js:1:1)", "", "Node.js v20.20.2"];
        assert.equal(stderrSummary([...before, ...crash, ""].join("\n")), error);
      }),
    );
  });

  test("text without a traceback or a caret is summed up by its first non-empty line", () => {
    fc.assert(
      fc.property(fc.array(fc.constantFrom("", "  ", "\t")), fc.array(plainLine, { minLength: 1, maxLength: 6 }), (blanks, lines) => {
        assert.equal(stderrSummary([...blanks, ...lines].join("\n")), lines[0].slice(0, 200) + (lines[0].length > 200 ? "..." : ""));
      }),
    );
  });
});

describe("a real failure", () => {
  test("a python3 traceback fails the task with its exception line, and the report keeps the whole traceback", async () => {
    const home = tempDir("bach-home-");
    const data = path.join(tempDir(), "rows.txt");
    fs.writeFileSync(data, "a\nb\n");
    const task = taskFolder({ binary: "python3", args: ["-c", "import sys; sys.stdin.read(); import geopandas"], retries: 0 });
    const r = await runBach(["task-run", "--no-progress", "--data", data], { cwd: task, env: { BACH_HOME: home } });
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /^bach: task \S+ failed: chunk 0 \(bytes 0-4\) failed after 1 attempt: stderr: ModuleNotFoundError: No module named 'geopandas' \(a program that may write/m);
    const report = await runBach(["task-report", "--json"], { cwd: task, env: { BACH_HOME: home } });
    const failures = (JSON.parse(report.stdout.toString()) as { failures: { reason: string; stderr: string }[] }).failures;
    assert.equal(failures[0].reason, "stderr: ModuleNotFoundError: No module named 'geopandas'");
    assert.match(failures[0].stderr, /^Traceback \(most recent call last\):\n {2}File "<string>", line 1, in <module>\nModuleNotFoundError: No module named 'geopandas'\n$/);
  });

  test("a node uncaught exception under \"stderr\": \"log\" fails the task with exit 1 and its error line", async () => {
    const data = path.join(tempDir(), "rows.txt");
    fs.writeFileSync(data, "a\nb\n");
    const task = taskFolder(
      { binary: "node", args: ["main.js"], stderr: "log", retries: 0 },
      { "main.js": `process.stdin.resume();\nprocess.stdin.on("end", () => {\n  const x = null;\n  x.foo;\n});\n` },
    );
    const r = await runBach(["task-run", "--no-progress", "--data", data], { cwd: task });
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /^bach: task \S+ failed: chunk 0 \(bytes 0-4\) failed after 1 attempt: exit 1: TypeError: Cannot read properties of null \(reading 'foo'\)$/m);
    // The whole stderr follows, source line and stack included, once: not also as the attempt's live stderr.
    assert.doesNotMatch(r.stderr, /^bach: stderr of chunk/m);
    assert.match(r.stderr, /^bach: \S+main\.js:4$/m);
    assert.match(r.stderr, /^bach: {5}at .*main\.js:4:5\)$/m);
  });
});
