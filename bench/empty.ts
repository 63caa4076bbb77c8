// An empty script: the reference point for a bare `deno run` in bench/run_bench.ts.
export {};
