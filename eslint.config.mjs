// Lint for the bugs tsc cannot see: a promise nobody awaits or catches (one
// once crashed the worker with an unhandled rejection) and a promise-returning
// function handed where a void callback is expected (its rejection goes nowhere).
// Type-aware, on the project's tsconfig.json. Style is not this file's business.
import { defineConfig } from "eslint/config";
import tseslint from "typescript-eslint";

export default defineConfig(
  { ignores: ["dist/", "node_modules/", "core/generated/"] },
  {
    files: ["**/*.ts"],
    languageOptions: {
      parser: tseslint.parser,
      parserOptions: {
        project: "./tsconfig.json",
        tsconfigRootDir: import.meta.dirname,
      },
    },
    plugins: { "@typescript-eslint": tseslint.plugin },
    linterOptions: { reportUnusedDisableDirectives: "error" },
    rules: {
      "@typescript-eslint/no-floating-promises": [
        "error",
        {
          // node:test's test()/describe() (t.test() matches too) return promises
          // the runner itself tracks: they never reject, a failure is a failed
          // test, and a subtest still running when its parent ends is cancelled
          // and reported as failed: leaving these promises floating loses nothing.
          allowForKnownSafeCalls: [
            { from: "package", package: "node:test", name: ["test", "describe", "it", "suite"] },
          ],
        },
      ],
      "@typescript-eslint/no-misused-promises": "error",
      // The same family, cheap, and silent on today's code: awaiting what is not a promise (a stream,
      // a sync result) hides that nothing waits; returning a promise unawaited from inside try or
      // before finally lets its rejection skip the catch and the finally run too early.
      "@typescript-eslint/await-thenable": "error",
      "@typescript-eslint/return-await": ["error", "error-handling-correctness-only"],
    },
  },
);
