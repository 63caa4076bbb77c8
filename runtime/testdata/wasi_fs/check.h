/* Checks for the WASI filesystem conformance programs: each failure prints one line naming the
 * file, line, the expression and errno, and exits 1; `ok(name)` prints a passed check. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                                                                  \
  do {                                                                               \
    if (!(cond)) {                                                                   \
      printf("FAIL %s:%d: %s (errno %d: %s)\n", __FILE__, __LINE__, #cond, errno,   \
             strerror(errno));                                                       \
      exit(1);                                                                       \
    }                                                                                \
  } while (0)

/* `expr` must fail (return -1, or NULL through FAILS_NULL) with errno `err`. */
#define FAILS(expr, err)                                                             \
  do {                                                                               \
    errno = 0;                                                                       \
    long _r = (long)(expr);                                                          \
    if (_r != -1 || errno != (err)) {                                                \
      printf("FAIL %s:%d: %s: want -1 errno %d (%s), got %ld errno %d (%s)\n",     \
             __FILE__, __LINE__, #expr, (err), strerror(err), _r, errno,             \
             strerror(errno));                                                       \
      exit(1);                                                                       \
    }                                                                                \
  } while (0)

#define ok(name) printf("ok %s\n", name)
