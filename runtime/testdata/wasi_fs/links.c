/* Links: hard links and their counts, symbolic links, readlink, O_NOFOLLOW, loops, dangling
 * links, and that no path leaves the preopen. Run with an empty directory preopened at "/". */
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include "check.h"

int main(void) {
  int fd = open("/f", O_WRONLY | O_CREAT, 0644);
  CHECK(fd >= 0 && write(fd, "data", 4) == 4 && close(fd) == 0);
  CHECK(link("/f", "/g") == 0);
  struct stat st, st2;
  CHECK(stat("/f", &st) == 0 && st.st_nlink == 2);
  CHECK(stat("/g", &st2) == 0 && st2.st_ino == st.st_ino);
  FAILS(link("/f", "/g"), EEXIST);
  CHECK(mkdir("/d", 0755) == 0);
  FAILS(link("/d", "/d2"), EPERM);
  CHECK(unlink("/f") == 0);
  CHECK(stat("/g", &st) == 0 && st.st_nlink == 1 && st.st_size == 4);
  ok("hard links share an inode and count");

  CHECK(symlink("g", "/s") == 0);
  char buf[64];
  ssize_t n = readlink("/s", buf, sizeof buf);
  CHECK(n == 1 && buf[0] == 'g');
  CHECK(readlink("/s", buf, 0) == -1 || 1); /* a zero buffer is the caller's problem */
  FAILS(readlink("/g", buf, sizeof buf), EINVAL);
  CHECK(lstat("/s", &st) == 0 && S_ISLNK(st.st_mode) && st.st_size == 1);
  CHECK(stat("/s", &st) == 0 && S_ISREG(st.st_mode) && st.st_size == 4);
  fd = open("/s", O_RDONLY);
  CHECK(fd >= 0 && read(fd, buf, 4) == 4 && close(fd) == 0);
  FAILS(open("/s", O_RDONLY | O_NOFOLLOW), ELOOP);
  FAILS(symlink("x", "/s"), EEXIST);
  ok("symlink, readlink, lstat vs stat, O_NOFOLLOW");

  CHECK(symlink("d", "/sd") == 0);
  fd = open("/sd/inner", O_WRONLY | O_CREAT, 0644);
  CHECK(fd >= 0 && close(fd) == 0);
  CHECK(stat("/d/inner", &st) == 0);
  CHECK(unlink("/sd") == 0); /* the link, not the directory */
  CHECK(stat("/d/inner", &st) == 0);
  ok("a link to a directory is followed in the middle of a path");

  CHECK(symlink("loop2", "/loop1") == 0 && symlink("loop1", "/loop2") == 0);
  FAILS(open("/loop1", O_RDONLY), ELOOP);
  FAILS(stat("/loop1", &st), ELOOP);
  CHECK(symlink("nothing", "/dangling") == 0);
  FAILS(open("/dangling", O_RDONLY), ENOENT);
  CHECK(lstat("/dangling", &st) == 0 && S_ISLNK(st.st_mode));
  fd = open("/dangling", O_WRONLY | O_CREAT, 0644); /* creates the target, as POSIX says */
  CHECK(fd >= 0 && close(fd) == 0);
  CHECK(stat("/nothing", &st) == 0);
  ok("loops are ELOOP; dangling links");

  FAILS(open("/../etc/passwd", O_RDONLY), EPERM);
  FAILS(open("/d/../../x", O_RDONLY), EPERM);
  FAILS(symlink("/etc/passwd", "/abs"), EPERM); /* an absolute target could only leave */
  CHECK(symlink("../../../../x", "/d/up") == 0);
  FAILS(open("/d/up", O_RDONLY), EPERM);
  fd = open("/d/../g", O_RDONLY); /* .. inside the preopen is fine */
  CHECK(fd >= 0 && close(fd) == 0);
  ok("no path, link or .. leaves the preopen");
  return 0;
}
