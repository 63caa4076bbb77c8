/* sha256: a CPU benchmark. Generates MIB MiB of deterministic bytes (an LCG), then chains
 * ROUNDS SHA-256 passes over them: d = SHA256(d || data), starting from 32 zero bytes.
 * Prints "<hex of d>  <ROUNDS> x <MIB> MiB\n". Usage: sha256 [MIB=8] [ROUNDS=8]. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "sha256_compress.h"

typedef struct {
  uint32_t h[8];
  uint8_t block[64];
  size_t fill;
  uint64_t bytes;
} sha256_ctx;

static void init(sha256_ctx *c) {
  memcpy(c->h, SHA256_IV, sizeof SHA256_IV);
  c->fill = 0;
  c->bytes = 0;
}

static void update(sha256_ctx *c, const uint8_t *p, size_t n) {
  c->bytes += n;
  if (c->fill > 0) {
    while (n > 0 && c->fill < 64) { c->block[c->fill++] = *p++; n--; }
    if (c->fill < 64) return;
    sha256_compress(c->h, c->block);
    c->fill = 0;
  }
  for (; n >= 64; p += 64, n -= 64) sha256_compress(c->h, p);
  memcpy(c->block, p, n);
  c->fill = n;
}

static void final(sha256_ctx *c, uint8_t out[32]) {
  uint64_t bits = c->bytes * 8;
  uint8_t pad = 0x80, zero = 0, len[8];
  update(c, &pad, 1);
  while (c->fill != 56) update(c, &zero, 1);
  for (int i = 0; i < 8; i++) len[i] = (uint8_t)(bits >> (56 - 8 * i));
  update(c, len, 8);
  for (int i = 0; i < 8; i++) {
    out[4 * i] = c->h[i] >> 24; out[4 * i + 1] = c->h[i] >> 16;
    out[4 * i + 2] = c->h[i] >> 8; out[4 * i + 3] = c->h[i];
  }
}

int main(int argc, char **argv) {
  long mib = argc > 1 ? strtol(argv[1], NULL, 10) : 8;
  long rounds = argc > 2 ? strtol(argv[2], NULL, 10) : 8;
  if (mib < 1 || mib > 1024 || rounds < 1 || rounds > 100000) {
    fprintf(stderr, "usage: sha256 [MIB 1..1024] [ROUNDS 1..100000]\n");
    return 2;
  }
  size_t size = (size_t)mib << 20;
  uint8_t *data = malloc(size);
  if (data == NULL) {
    fprintf(stderr, "sha256: cannot allocate %ld MiB\n", mib);
    return 1;
  }
  uint32_t x = 1;
  for (size_t i = 0; i < size; i++) {
    x = x * 1103515245u + 12345u;
    data[i] = (uint8_t)(x >> 24);
  }
  uint8_t d[32] = {0};
  for (long r = 0; r < rounds; r++) {
    sha256_ctx c;
    init(&c);
    update(&c, d, 32);
    update(&c, data, size);
    final(&c, d);
  }
  for (int i = 0; i < 32; i++) printf("%02x", d[i]);
  printf("  %ld x %ld MiB\n", rounds, mib);
  return 0;
}
