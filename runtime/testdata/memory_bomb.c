/* Allocates and touches 64 KiB blocks, chained in a list so the compiler keeps them, until
 * malloc returns NULL; then reports on stderr and exits 1, as a typical program does when it
 * runs out of memory. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BLOCK (64 * 1024)

int main(void) {
  void **head = NULL;
  for (;;) {
    void **p = malloc(BLOCK);
    if (p == NULL) break;
    memset(p, 0xAB, BLOCK);
    *p = head;
    head = p;
  }
  size_t blocks = 0;
  for (void **p = head; p != NULL; p = *p) blocks++;
  fprintf(stderr, "out of memory after %zu KiB\n", blocks * 64);
  return 1;
}
