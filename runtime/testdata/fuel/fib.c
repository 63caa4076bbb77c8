// Worst case for metering: tiny recursive calls (a charge and a check per call) and a short
// inner loop. Fixture for bench/fuel_bench.ts.
#include <stdio.h>
#include <stdlib.h>

__attribute__((noinline)) static unsigned fib(unsigned n) { return n < 2 ? n : fib(n - 1) + fib(n - 2); }

int main(int argc, char **argv) {
  unsigned n = argc > 1 ? (unsigned)atoi(argv[1]) : 30;
  unsigned sieve = 0;
  static unsigned char composite[1 << 20];
  for (unsigned i = 2; i < sizeof composite; i++) {
    if (composite[i]) continue;
    sieve++;
    for (unsigned j = i * 2; j < sizeof composite; j += i) composite[j] = 1;
  }
  printf("fib(%u)=%u primes=%u\n", n, fib(n), sieve);
  return 0;
}
