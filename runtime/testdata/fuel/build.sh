#!/bin/sh
# Rebuild the fuel instrumenter's fixtures (Debian clang + wasi-libc, wabt).
set -eu
cd "$(dirname "$0")"
CC="clang --target=wasm32-wasi -O2"
$CC words.c -o words.wasm
$CC spin.c -o spin.wasm
$CC sha256.c -o sha256.wasm
$CC fib.c -o fib.wasm
$CC -msimd128 -mbulk-memory -msign-ext -mnontrapping-fptoint simd.c -o simd.wasm
for f in *.wat; do wat2wasm --enable-tail-call --enable-threads "$f" -o "${f%.wat}.wasm"; done
