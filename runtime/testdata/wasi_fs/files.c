/* Regular files: open/create/exclusive, read/write/pread/pwrite/append, seek/tell, truncate,
 * stat sizes and times. Run with a directory holding in.txt = "hello\n" preopened at "/". */
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include "check.h"

int main(void) {
  char buf[64];
  int fd = open("/in.txt", O_RDONLY);
  CHECK(fd >= 3);
  CHECK(read(fd, buf, sizeof buf) == 6 && memcmp(buf, "hello\n", 6) == 0);
  CHECK(read(fd, buf, sizeof buf) == 0);
  FAILS(write(fd, "x", 1), EBADF);
  CHECK(close(fd) == 0);
  FAILS(close(fd), EBADF);
  ok("read an input file; a read-only fd refuses writes");

  FAILS(open("/missing", O_RDONLY), ENOENT);
  fd = open("/new.txt", O_RDWR | O_CREAT | O_EXCL, 0644);
  CHECK(fd >= 3);
  FAILS(open("/new.txt", O_RDWR | O_CREAT | O_EXCL, 0644), EEXIST);
  FAILS(open("/in.txt/", O_RDONLY), ENOTDIR);
  FAILS(open("/newdir/", O_RDWR | O_CREAT, 0644), EISDIR);
  ok("create, exclusive create, trailing slash on a file");

  CHECK(write(fd, "abcdef", 6) == 6);
  CHECK(lseek(fd, 0, SEEK_CUR) == 6);
  CHECK(lseek(fd, 1, SEEK_SET) == 1);
  CHECK(read(fd, buf, 3) == 3 && memcmp(buf, "bcd", 3) == 0);
  CHECK(lseek(fd, -2, SEEK_END) == 4);
  FAILS(lseek(fd, -10, SEEK_CUR), EINVAL);
  CHECK(pwrite(fd, "XY", 2, 10) == 2);
  CHECK(pread(fd, buf, sizeof buf, 0) == 12);
  CHECK(memcmp(buf, "abcdef\0\0\0\0XY", 12) == 0);
  CHECK(lseek(fd, 0, SEEK_CUR) == 4); /* pread/pwrite leave the offset alone */
  ok("write, seek, tell, pread, pwrite past the end (zero-filled hole)");

  CHECK(ftruncate(fd, 3) == 0);
  struct stat st;
  CHECK(fstat(fd, &st) == 0 && st.st_size == 3 && S_ISREG(st.st_mode) && st.st_nlink == 1);
  CHECK(ftruncate(fd, 5) == 0);
  CHECK(pread(fd, buf, sizeof buf, 0) == 5 && memcmp(buf, "abc\0\0", 5) == 0);
  CHECK(close(fd) == 0);
  fd = open("/new.txt", O_WRONLY | O_TRUNC);
  CHECK(fd >= 3 && fstat(fd, &st) == 0 && st.st_size == 0);
  CHECK(close(fd) == 0);
  ok("truncate shorter and longer, O_TRUNC");

  fd = open("/log.txt", O_WRONLY | O_CREAT | O_APPEND, 0644);
  CHECK(fd >= 3);
  CHECK(write(fd, "one\n", 4) == 4);
  CHECK(lseek(fd, 0, SEEK_SET) == 0);
  CHECK(write(fd, "two\n", 4) == 4);
  CHECK(close(fd) == 0);
  FILE *f = fopen("/log.txt", "r");
  CHECK(f != NULL && fread(buf, 1, sizeof buf, f) == 8 && memcmp(buf, "one\ntwo\n", 8) == 0);
  fclose(f);
  ok("append mode writes at the end whatever the offset");

  CHECK(stat("/log.txt", &st) == 0 && st.st_size == 8);
  CHECK(st.st_mtim.tv_sec > 1600000000); /* the job's realtime clock, not zero */
  struct timespec times[2] = {{.tv_sec = 1000, .tv_nsec = 5}, {.tv_sec = 2000, .tv_nsec = 7}};
  CHECK(utimensat(AT_FDCWD, "/log.txt", times, 0) == 0);
  CHECK(stat("/log.txt", &st) == 0 && st.st_atim.tv_sec == 1000 && st.st_mtim.tv_sec == 2000 &&
        st.st_mtim.tv_nsec == 7);
  ok("stat times come from the clock and can be set");

  f = fopen("/result.txt", "w");
  CHECK(f != NULL);
  fprintf(f, "files: all passed\n");
  CHECK(fclose(f) == 0);
  ok("stdio writes a result file");
  return 0;
}
