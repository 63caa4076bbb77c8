;; Imports its memory as env.memory (as --import-memory builds do), declares no maximum, and
;; grows one page at a time until memory.grow refuses; exits with the final page count.
(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (import "env" "memory" (memory 1))
  (func (export "_start")
    (loop $more
      (br_if $more (i32.ne (memory.grow (i32.const 1)) (i32.const -1))))
    (call $exit (memory.size))))
