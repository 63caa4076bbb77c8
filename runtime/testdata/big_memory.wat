;; Declares 300 MiB of initial memory (4800 pages), above the default 256 MiB cap.
(module
  (memory (export "memory") 4800)
  (func (export "_start")))
