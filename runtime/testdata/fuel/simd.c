// Uses SIMD (v128.const, shuffles, lanes, lane loads), bulk memory, sign extension and
// saturating conversions, so the instrumenter must decode their immediates. Fixture.
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <wasm_simd128.h>

static int8_t bytes[64];
static float floats[16];

__attribute__((noinline)) static int32_t sat(float f) { return __builtin_wasm_trunc_saturate_s_i32_f32(f); }

int main(void) {
  memset(bytes, 7, sizeof bytes);  // memory.fill
  for (int i = 0; i < 64; i++) bytes[i] = (int8_t)(i * 37);
  for (int i = 0; i < 16; i++) floats[i] = (float)i * 1.5f - 4.0f;
  v128_t acc = wasm_i32x4_const(1, 2, 3, 4);
  for (int i = 0; i < 64; i += 16) {
    v128_t v = wasm_v128_load(bytes + i);
    v128_t s = wasm_i8x16_shuffle(v, v, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
    acc = wasm_i32x4_add(acc, wasm_i32x4_extend_low_i16x8(wasm_i16x8_extend_low_i8x16(s)));
    acc = wasm_i32x4_replace_lane(acc, 2, wasm_i32x4_extract_lane(acc, 2) ^ wasm_i8x16_extract_lane(v, 3));
    acc = wasm_i32x4_add(acc, wasm_v128_load32_splat(bytes + i));
  }
  v128_t f = wasm_f32x4_mul(wasm_v128_load(floats), wasm_f32x4_splat(2.0f));
  int8_t copy[64];
  memcpy(copy, bytes, sizeof copy);  // memory.copy
  long long wide = (long long)copy[5] + (short)copy[9];  // sign extension
  printf("%d %d %d %d | %.2f %.2f | %lld %d %d\n", wasm_i32x4_extract_lane(acc, 0),
         wasm_i32x4_extract_lane(acc, 1), wasm_i32x4_extract_lane(acc, 2),
         wasm_i32x4_extract_lane(acc, 3), wasm_f32x4_extract_lane(f, 0),
         wasm_f32x4_extract_lane(f, 3), wide, sat(3e10f), sat(-7.9f));
  return 0;
}
