// Prints a line, then loops forever. Fixture for the fuel instrumenter.
#include <stdio.h>

volatile unsigned counter;

int main(void) {
  printf("spinning\n");
  fflush(stdout);
  for (;;) counter = counter * 3 + 1;
}
