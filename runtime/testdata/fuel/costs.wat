;; Small functions whose fuel cost is known exactly (see runtime/fuel_test.ts and
;; /work/notes/fuel-README.md for the cost model).
(module
  ;; 2: i32.const, drop
  (func (export "straight") (drop (i32.const 1)))
  ;; per call with n: entry 0 + header 7*n (local.get, i32.const, i32.sub, local.tee, i32.const,
  ;; i32.gt_s, br_if) + after-loop 0 ... see the test for the formula
  (func (export "count") (param i32)
    (loop $l
      (br_if $l (i32.gt_s (local.tee 0 (i32.sub (local.get 0) (i32.const 1))) (i32.const 0)))))
  ;; if/else: condition (local.get, if) = 2, then 1 (i32.const) or else 3
  (func (export "branch") (param i32) (result i32)
    (if (result i32) (local.get 0)
      (then (i32.const 1))
      (else (i32.add (i32.const 2) (i32.const 3)))))
  ;; return, then dead code that must not be charged: 2
  (func (export "early") (result i32)
    (return (i32.const 7))
    (drop (i32.const 1)) (drop (i32.const 2)) (i32.const 3))
  ;; recursion: each call charges its own body
  (func $down (export "down") (param i32)
    (if (local.get 0) (then (call $down (i32.sub (local.get 0) (i32.const 1))))))
  ;; infinite loop
  (func (export "spin") (loop $l (br $l)))
)
