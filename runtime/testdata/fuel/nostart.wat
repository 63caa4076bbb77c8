;; No globals, exports or start: the instrumenter must add the global and export sections.
(module (func (drop (i32.const 1))))
