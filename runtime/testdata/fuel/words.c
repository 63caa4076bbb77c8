// Reads stdin, counts words, sorts them (qsort: indirect calls), prints a report with printf,
// floats, malloc/free and recursion. Fixture for the fuel instrumenter (runtime/fuel_test.ts).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fib(int n) { return n < 2 ? n : fib(n - 1) + fib(n - 2); }

static int cmp(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(void) {
  size_t cap = 1024, len = 0;
  char *text = malloc(cap);
  int c;
  while ((c = getchar()) != EOF) {
    if (len + 1 >= cap) text = realloc(text, cap *= 2);
    text[len++] = (char)c;
  }
  text[len] = 0;
  char **words = malloc(sizeof(char *) * (len / 2 + 1));
  size_t n = 0;
  for (char *w = strtok(text, " \n\t"); w; w = strtok(NULL, " \n\t")) words[n++] = w;
  qsort(words, n, sizeof(char *), cmp);
  for (size_t i = 0; i < n; i++) {
    if (i == 0 || strcmp(words[i], words[i - 1]) != 0) printf("%s\n", words[i]);
  }
  double avg = n ? (double)len / (double)n : 0.0;
  printf("words=%zu bytes=%zu avg=%.3f fib(22)=%d\n", n, len, avg, fib(22));
  free(words);
  free(text);
  return n == 0 ? 3 : 0;
}
