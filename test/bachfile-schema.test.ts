// The bachfile schema: the seed's example parses, defaults fill in, "//" keys are comments, and every
// problem is reported at once, one line each, naming the field's path.
import { test } from "node:test";
import assert from "node:assert/strict";
import { bachfileTemplate, parseBachfile } from "../core/bachfile";
import { BachfileError } from "../core/errors";

const seed = `{"logical-name":"json-searcher","interruptible":true,"binary":"node","args":["bin.js"],"delimiter":"\\n",
 "hardware":{"cpu":{"min":0.1,"max":2},"memory":{"min":128,"max":256},"disk":{"min":"1g"},"graphics":null,"network":null}}`;

function problems(text: string): string[] {
  try {
    parseBachfile(text, "bachfile.json", "folder");
  } catch (err) {
    assert.ok(err instanceof BachfileError, String(err));
    return err.message.split("\n");
  }
  assert.fail("expected the bachfile to be refused");
}

test("the seed's example parses, with defaults for what it leaves out", () => {
  const b = parseBachfile(seed, "bachfile.json", "folder");
  assert.equal(b.logicalName, "json-searcher");
  assert.deepEqual(b.hardware.cpu, { min: 0.1, max: 2 });
  assert.equal(b.hardware.disk.min, 2 ** 30);
  assert.equal(b.hardware.network, "none");
  assert.equal(b.stderr, "fail");
  assert.equal(b.retries, 3);
  assert.equal(b.chunkSize, "auto");
  assert.equal(b.timeoutMs, null);
  const minimal = parseBachfile('{"binary": "cat", "chunk-size": "64m", "timeout": "10m"}', "bachfile.json", "folder");
  assert.equal(minimal.logicalName, "folder");
  assert.equal(minimal.hardware.network, "default");
  assert.equal(minimal.chunkSize, 64 * 2 ** 20);
  assert.equal(minimal.timeoutMs, 600_000);
});

test('keys starting with "//" are comments; the init template parses', () => {
  assert.equal(parseBachfile('{"//": "a note", "binary": "cat", "hardware": {"// cpu": "cores"}}', "f", "d").binary, "cat");
  assert.equal(parseBachfile(bachfileTemplate("mytask", { binary: "node", args: ["upper.js"] }), "bachfile.json", "mytask").logicalName, "mytask");
});

test("every problem at once, one line each, with the field's path", () => {
  const lines = problems('{"args": ["a", 2], "retries": "three", "hardware": {"cpus": 2, "cpu": {"min": 3, "max": 2}}, "stderr": "loud", "chunk-size": "12q"}');
  assert.ok(lines.includes("bachfile.json: binary: is required"), lines.join("\n"));
  assert.ok(lines.includes('bachfile.json: args[1]: expected a string, got 2'), lines.join("\n"));
  assert.ok(lines.includes('bachfile.json: retries: expected a number, got "three"'), lines.join("\n"));
  assert.ok(lines.includes('bachfile.json: hardware.cpus: unknown field (did you mean "cpu"?)'), lines.join("\n"));
  assert.ok(lines.some((l) => l.startsWith("bachfile.json: stderr: must be")), lines.join("\n"));
});

test("cross-field checks, sizes and durations, and bad JSON", () => {
  assert.deepEqual(problems('{"binary": "cat", "hardware": {"cpu": {"min": 3, "max": 2}}}'), ["bachfile.json: hardware.cpu.min: must not exceed hardware.cpu.max (3 > 2)"]);
  assert.match(problems('{"binary": "cat", "chunk-size": "12q"}')[0], /^bachfile\.json: chunk-size: .*12q/);
  assert.match(problems('{"binary": "cat", "timeout": "soon"}')[0], /^bachfile\.json: timeout: .*soon/);
  assert.match(problems('{"binary": "cat",\n}')[0], /^bachfile\.json: \(top level\): not valid JSON: .*line 2, column 1/);
});
