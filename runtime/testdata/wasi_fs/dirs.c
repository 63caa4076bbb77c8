/* Directories: mkdir, readdir (with telldir/seekdir cookies), rmdir and unlink with trailing
 * slashes, rename over files and directories. Run with an empty directory preopened at "/". */
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include "check.h"

static void touch(const char *path, const char *text) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  CHECK(fd >= 0);
  CHECK(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
  CHECK(close(fd) == 0);
}

int main(void) {
  CHECK(mkdir("/d", 0755) == 0);
  FAILS(mkdir("/d", 0755), EEXIST);
  CHECK(mkdir("/d/sub/", 0755) == 0);
  FAILS(mkdir("/nope/x", 0755), ENOENT);
  touch("/d/a", "A");
  touch("/d/b", "B");
  ok("mkdir, EEXIST, ENOENT for a missing parent");

  DIR *dir = opendir("/d");
  CHECK(dir != NULL);
  int seen = 0, count = 0;
  long cookie = -1;
  struct dirent *e;
  while ((e = readdir(dir)) != NULL) {
    count++;
    if (strcmp(e->d_name, "a") == 0) { seen |= 1; CHECK(e->d_type == DT_REG); }
    if (strcmp(e->d_name, "sub") == 0) { seen |= 2; CHECK(e->d_type == DT_DIR); }
    if (strcmp(e->d_name, ".") == 0) { seen |= 4; cookie = telldir(dir); }
  }
  CHECK(seen == 7 && count == 5);
  seekdir(dir, cookie);
  e = readdir(dir);
  CHECK(e != NULL && strcmp(e->d_name, "..") == 0);
  closedir(dir);
  FAILS((long)(opendir("/d/a") ? 0 : -1), ENOTDIR);
  ok("readdir lists . .. and entries with types; seekdir to a cookie");

  FAILS(rmdir("/d"), ENOTEMPTY);
  FAILS(rmdir("/d/a"), ENOTDIR);
  FAILS(unlink("/d/sub"), EISDIR);
  FAILS(unlink("/d/sub/"), EISDIR);
  FAILS(unlink("/d/a/"), ENOTDIR);
  CHECK(rmdir("/d/sub/") == 0);
  FAILS(rmdir("/d/sub"), ENOENT);
  ok("rmdir/unlink errors and trailing slashes");

  CHECK(rename("/d/a", "/d/b") == 0); /* over a file */
  char buf[4] = {0};
  int fd = open("/d/b", O_RDONLY);
  CHECK(fd >= 0 && read(fd, buf, 4) == 1 && buf[0] == 'A' && close(fd) == 0);
  FAILS(open("/d/a", O_RDONLY), ENOENT);
  CHECK(mkdir("/e", 0755) == 0);
  CHECK(mkdir("/f", 0755) == 0);
  CHECK(rename("/e", "/f") == 0); /* over an empty directory */
  FAILS(rename("/f", "/d"), ENOTEMPTY);
  FAILS(rename("/d/b", "/f"), EISDIR);
  FAILS(rename("/f", "/d/b"), ENOTDIR);
  FAILS(rename("/d", "/d/inside"), EINVAL);
  FAILS(rename("/d/b", "/d/c/"), ENOTDIR);
  CHECK(rename("/f/", "/g") == 0);
  struct stat st;
  CHECK(stat("/g", &st) == 0 && S_ISDIR(st.st_mode));
  ok("rename over files and directories, and its errors");

  /* A file unlinked while open stays readable through its descriptor. */
  touch("/tmp1", "keep");
  fd = open("/tmp1", O_RDONLY);
  CHECK(fd >= 0 && unlink("/tmp1") == 0);
  CHECK(read(fd, buf, 4) == 4 && memcmp(buf, "keep", 4) == 0 && close(fd) == 0);
  ok("an unlinked open file stays readable");
  return 0;
}
