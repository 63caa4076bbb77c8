;; Busy-waits for 3 s of monotonic clock, then writes "slept\n" to stdout: a job long enough
;; to kill its worker mid-run or fill a queue. Build: wat2wasm slow.wat -o slow.wasm
(module
  (import "wasi_snapshot_preview1" "clock_time_get"
    (func $clock (param i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write"
    (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "slept\n")
  (func (export "_start")
    (local $start i64)
    (drop (call $clock (i32.const 1) (i64.const 1) (i32.const 0)))
    (local.set $start (i64.load (i32.const 0)))
    (loop $wait
      (drop (call $clock (i32.const 1) (i64.const 1) (i32.const 0)))
      (br_if $wait (i64.lt_u (i64.sub (i64.load (i32.const 0)) (local.get $start))
        (i64.const 3000000000))))
    ;; iovec at 16: {buf 64, len 6}; bytes written at 24.
    (i32.store (i32.const 16) (i32.const 64))
    (i32.store (i32.const 20) (i32.const 6))
    (drop (call $write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 24)))))
