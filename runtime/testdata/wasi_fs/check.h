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

/* A raw WASI call (`__wasi_*`, from <wasi/api.h>) must succeed, or fail with errno `err`. */
#define WASI_OK(expr) CHECK((expr) == 0)
#define WASI_ERR(expr, err)                                                          \
  do {                                                                               \
    __wasi_errno_t _e = (expr);                                                      \
    if (_e != (err)) {                                                               \
      printf("FAIL %s:%d: %s: want errno %d, got %d\n", __FILE__, __LINE__, #expr, (err), _e); \
      exit(1);                                                                       \
    }                                                                                \
  } while (0)
