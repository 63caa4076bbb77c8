;; Copies the file `in.txt` of its preopen (fd 3) to `out.txt` (at most 2 MiB, in one read and
;; one write); exits 3 when there is no `in.txt`. Built to copy_file.wasm with wabt.
(module
  (import "wasi_snapshot_preview1" "path_open"
    (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 48)
  (data (i32.const 100) "in.txt")
  (data (i32.const 110) "out.txt")
  (func (export "_start")
    (if (i32.ne (call $open (i32.const 3) (i32.const 0) (i32.const 100) (i32.const 6)
          (i32.const 0) (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 200)) (i32.const 0))
      (then (call $exit (i32.const 3))))
    (i32.store (i32.const 16) (i32.const 65536))
    (i32.store (i32.const 20) (i32.const 2097152))
    (drop (call $fd_read (i32.load (i32.const 200)) (i32.const 16) (i32.const 1) (i32.const 32)))
    (drop (call $open (i32.const 3) (i32.const 0) (i32.const 110) (i32.const 7)
      (i32.const 9) (i64.const 64) (i64.const 0) (i32.const 0) (i32.const 204)))
    (i32.store (i32.const 20) (i32.load (i32.const 32)))
    (drop (call $fd_write (i32.load (i32.const 204)) (i32.const 16) (i32.const 1) (i32.const 32)))))
