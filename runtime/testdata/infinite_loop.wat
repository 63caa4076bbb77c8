;; Never ends and never calls the host: only a kill stops it.
(module
  (memory (export "memory") 1)
  (func (export "_start") (loop $l (br $l))))
