// The keeper's report is told apart from the program's stderr on the one stream they share: for any
// program bytes, an earlier attempt's report among them, and any way the stream is cut into reads,
// the program gets exactly its bytes and the attempt its own report, once; and the program's bytes
// are never held back beyond what could be the start of the marker (under "stderr": "fail" their
// first byte must stop the attempt at once, not when the program ends).
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { controlLine, reportMarker, reportReader, type KeeperReport } from "../worker/keeper";

const TOKEN = "0123456789abcdef01234567";
const marker = reportMarker(TOKEN);

/** Feeds `stream` to a reader for attempt `id`, cut at `cuts`; returns what each side received. */
function read(stream: Buffer, cuts: number[], id: number): { program: Buffer; reports: KeeperReport[]; deliveredAfter: number[] } {
  const program: Buffer[] = [];
  const reports: KeeperReport[] = [];
  const deliveredAfter: number[] = [];
  const feed = reportReader(marker, id, (b) => program.push(Buffer.from(b)), (r) => reports.push(r));
  let from = 0;
  for (const at of [...new Set(cuts.map((c) => c % (stream.length + 1)))].sort((a, b) => a - b).concat(stream.length)) {
    if (at <= from) continue;
    feed(stream.subarray(from, at));
    from = at;
    deliveredAfter.push(Buffer.concat(program).length);
  }
  return { program: Buffer.concat(program), reports, deliveredAfter };
}

const programBytes = fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)).filter((b) => b.indexOf(marker) < 0);

test("the program gets exactly its stderr and the attempt its own report, however the stream is cut", () => {
  fc.assert(
    fc.property(programBytes, programBytes, fc.array(fc.nat(), { maxLength: 12 }), fc.nat({ max: 255 }), (before, after, cuts, status) => {
      // An earlier attempt's report (its container was killed before it was read) sits in between.
      const stream = Buffer.concat([before, marker, Buffer.from("6 1 - 0 0\n"), after, marker, Buffer.from(`7 ${status} exec 2 0\n`), Buffer.from("after the end")]);
      const { program, reports } = read(stream, cuts, 7);
      assert.ok(program.equals(Buffer.concat([before, after])));
      assert.deepEqual(reports, [{ status, step: "exec", errno: 2, scratchErrno: 0 }]);
    }),
  );
});

test("a few bytes of stderr reach the program's side at once unless they could begin the marker", () => {
  fc.assert(
    fc.property(programBytes, fc.nat({ max: marker.length - 1 }), (bytes, prefix) => {
      // Plain bytes: all delivered by the read that brought them.
      const plain = Buffer.concat([bytes, Buffer.from("x")]);
      const r = read(plain, [], 1);
      assert.equal(r.deliveredAfter[0], plain.length);
      // Bytes that end like the start of the marker: only those wait.
      const partial = Buffer.concat([plain, marker.subarray(0, prefix)]);
      assert.equal(read(partial, [], 1).deliveredAfter[0], plain.length);
    }),
  );
  assert.equal(read(Buffer.from("oops\n"), [], 1).deliveredAfter[0], 5);
});

test("an attempt's variables travel as one line whatever their values hold", () => {
  const line = controlLine(3, { A: "new\nline", B: "sp ace\x1e", C: "" });
  assert.equal(line.split("\n").length, 2);
  const [id, ...vars] = line.trimEnd().split(" ");
  assert.equal(id, "3");
  assert.deepEqual(vars.map((h) => Buffer.from(h, "hex").toString()), ["A=new\nline", "B=sp ace\x1e", "C="]);
});
