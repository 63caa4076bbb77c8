/* Writes "y\n" to stdout forever. */
#include <stdio.h>

int main(void) {
  for (;;) fputs("y\n", stdout);
}
