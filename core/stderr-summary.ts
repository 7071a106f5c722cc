// The one line of a program's stderr that says what went wrong, quoted in a failed attempt's summary
// (both runtimes, through worker/attempt-supervisor.ts). Pure: text in, one line out; it never decides
// whether an attempt failed, only how its stderr reads in one line.

/** A quoted line is cut here, so a summary stays one readable line. */
const MAX_QUOTE = 200;

/** Python's header of a traceback; the exception line is the first unindented line after the last one. */
const PYTHON_TRACEBACK = /^Traceback \(most recent call last\):\s*$/;
/** The caret under the source line of a node uncaught exception (and of a Python SyntaxError). */
const CARET = /^\s*\^+\s*$/;

/**
 * The line that says what went wrong: for a Python traceback its exception line
 * (`ModuleNotFoundError: No module named 'geopandas'`, the last one raised when exceptions chain); for
 * a node uncaught exception the line after the source line and its caret (`TypeError: ...`);
 * otherwise the first non-empty line. Trimmed, at most 200 characters (then "..."); "" for blank text.
 */
export function stderrSummary(text: string): string {
  const lines = text.split("\n").map((l) => l.replace(/\r$/, ""));
  const line = afterTraceback(lines) ?? afterCaret(lines) ?? lines.find((l) => l.trim() !== "") ?? "";
  const quoted = line.trim();
  return quoted.length > MAX_QUOTE ? `${quoted.slice(0, MAX_QUOTE)}...` : quoted;
}

function afterTraceback(lines: string[]): string | undefined {
  const header = lastIndex(lines, (l) => PYTHON_TRACEBACK.test(l));
  if (header < 0) return undefined;
  return lines.slice(header + 1).find((l) => l.trim() !== "" && !/^\s/.test(l));
}

function afterCaret(lines: string[]): string | undefined {
  const caret = lastIndex(lines, (l) => CARET.test(l));
  if (caret < 1) return undefined;
  return lines.slice(caret + 1).find((l) => l.trim() !== "");
}

function lastIndex(lines: string[], match: (line: string) => boolean): number {
  for (let i = lines.length - 1; i >= 0; i--) if (match(lines[i])) return i;
  return -1;
}
