/* hello: write stdin to stdout reversed by UTF-8 code point ("Hello, World" -> "dlroW ,olleH").
 * No newline is added. Exit code 0, or 1 when stdin cannot be read or memory runs out. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void) {
  size_t cap = 4096, len = 0;
  unsigned char *buf = malloc(cap);
  if (buf == NULL) return 1;
  for (;;) {
    if (len == cap) {
      cap *= 2;
      unsigned char *grown = realloc(buf, cap);
      if (grown == NULL) return 1;
      buf = grown;
    }
    size_t n = fread(buf + len, 1, cap - len, stdin);
    len += n;
    if (n == 0) break;
  }
  if (ferror(stdin)) return 1;
  unsigned char *out = malloc(len > 0 ? len : 1);
  if (out == NULL) return 1;
  /* Walk code points from the end; a code point is a lead byte plus its continuation bytes. */
  size_t at = 0, end = len;
  while (end > 0) {
    size_t start = end - 1;
    while (start > 0 && (buf[start] & 0xC0) == 0x80 && end - start < 4) start--;
    memcpy(out + at, buf + start, end - start);
    at += end - start;
    end = start;
  }
  fwrite(out, 1, at, stdout);
  return fflush(stdout) == 0 ? 0 : 1;
}
