/* Fills the filesystem: `fill bytes N` writes N bytes to /big in 64 KiB writes; `fill files N`
 * creates N empty files /f0, /f1, ...; both exit 0 when done (so a cap must stop them). */
#include <fcntl.h>
#include <unistd.h>
#include "check.h"

int main(int argc, char **argv) {
  CHECK(argc == 3);
  long n = atol(argv[2]);
  if (strcmp(argv[1], "bytes") == 0) {
    static char chunk[65536];
    memset(chunk, 'x', sizeof chunk);
    int fd = open("/big", O_WRONLY | O_CREAT, 0644);
    CHECK(fd >= 0);
    for (long done = 0; done < n; done += sizeof chunk) {
      long take = n - done < (long)sizeof chunk ? n - done : (long)sizeof chunk;
      CHECK(write(fd, chunk, take) == take);
    }
    CHECK(close(fd) == 0);
  } else {
    char path[32];
    for (long i = 0; i < n; i++) {
      snprintf(path, sizeof path, "/f%ld", i);
      int fd = open(path, O_WRONLY | O_CREAT, 0644);
      CHECK(fd >= 0 && close(fd) == 0);
    }
  }
  printf("filled\n");
  return 0;
}
