;; A reactor-style module: exports memory and `main`, but no `_start`.
(module
  (memory (export "memory") 1)
  (func (export "main") (result i32) (i32.const 0)))
