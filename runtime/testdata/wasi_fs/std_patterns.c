/* The raw WASI call patterns of Rust's std::fs (and similar runtimes) rather than wasi-libc's:
 * create_dir_all (EEXIST tolerated), File::create (CREAT|TRUNC with explicit rights), fs::read
 * (filestat for the size, then reads), read_dir through a directory descriptor with a buffer too
 * small for one call (cookies), metadata vs symlink_metadata, rename between two directory
 * descriptors, and remove_dir_all through descriptors opened beneath the preopen. Run with an empty
 * directory preopened at "/" (fd 3). */
#include <wasi/api.h>
#include "check.h"

static const __wasi_rights_t READ = __WASI_RIGHTS_FD_READ | __WASI_RIGHTS_FD_SEEK |
                                    __WASI_RIGHTS_FD_TELL | __WASI_RIGHTS_FD_FILESTAT_GET |
                                    __WASI_RIGHTS_POLL_FD_READWRITE;
static const __wasi_rights_t WRITE = __WASI_RIGHTS_FD_WRITE | __WASI_RIGHTS_FD_DATASYNC |
                                     __WASI_RIGHTS_FD_ALLOCATE | __WASI_RIGHTS_FD_FILESTAT_SET_SIZE |
                                     __WASI_RIGHTS_FD_SEEK | __WASI_RIGHTS_FD_TELL |
                                     __WASI_RIGHTS_FD_FILESTAT_GET;
static const __wasi_rights_t DIRS = __WASI_RIGHTS_PATH_OPEN | __WASI_RIGHTS_FD_READDIR |
                                    __WASI_RIGHTS_PATH_UNLINK_FILE |
                                    __WASI_RIGHTS_PATH_REMOVE_DIRECTORY |
                                    __WASI_RIGHTS_PATH_FILESTAT_GET | __WASI_RIGHTS_FD_FILESTAT_GET;

/* create_dir_all: each prefix, EEXIST is fine. */
static void create_dir_all(const char *path) {
  char prefix[256];
  for (size_t i = 1; path[i - 1] != 0; i++) {
    if (path[i] == '/' || path[i] == 0) {
      memcpy(prefix, path, i);
      prefix[i] = 0;
      __wasi_errno_t e = __wasi_path_create_directory(3, prefix);
      CHECK(e == 0 || e == __WASI_ERRNO_EXIST);
    }
  }
}

/* Every name in a directory, read through `fd` with a `size`-byte buffer. */
static int read_dir(__wasi_fd_t fd, size_t size, char names[][32], int max) {
  static uint8_t buf[512];
  __wasi_dircookie_t cookie = 0;
  int n = 0;
  for (;;) {
    size_t used;
    WASI_OK(__wasi_fd_readdir(fd, buf, size, cookie, &used));
    size_t at = 0;
    int progressed = 0;
    while (at + sizeof(__wasi_dirent_t) <= used) {
      __wasi_dirent_t d;
      memcpy(&d, buf + at, sizeof d);
      if (at + sizeof d + d.d_namlen > used) break; /* cut: read again from its cookie */
      CHECK(n < max && d.d_namlen < 32);
      memcpy(names[n], buf + at + sizeof d, d.d_namlen);
      names[n++][d.d_namlen] = 0;
      cookie = d.d_next;
      progressed = 1;
      at += sizeof d + d.d_namlen;
    }
    if (used < size) return n; /* the end */
    if (!progressed) size *= 2; /* one entry does not fit: a bigger buffer, as Rust does */
    CHECK(size <= sizeof buf);
  }
}

/* remove_dir_all of `name` in directory `parent`, through descriptors. */
static void remove_dir_all(__wasi_fd_t parent, const char *name) {
  __wasi_fd_t fd;
  WASI_OK(__wasi_path_open(parent, 0, name, __WASI_OFLAGS_DIRECTORY, DIRS, READ | WRITE | DIRS, 0, &fd));
  char names[16][32];
  int n = read_dir(fd, 64, names, 16);
  for (int i = 0; i < n; i++) {
    if (strcmp(names[i], ".") == 0 || strcmp(names[i], "..") == 0) continue;
    __wasi_filestat_t st;
    WASI_OK(__wasi_path_filestat_get(fd, 0, names[i], &st));
    if (st.filetype == __WASI_FILETYPE_DIRECTORY) remove_dir_all(fd, names[i]);
    else WASI_OK(__wasi_path_unlink_file(fd, names[i]));
  }
  WASI_OK(__wasi_fd_close(fd));
  WASI_OK(__wasi_path_remove_directory(parent, name));
}

int main(void) {
  create_dir_all("a/b/c");
  create_dir_all("a/b/c");
  ok("create_dir_all, twice");

  __wasi_fd_t f;
  const char text[] = "std::fs::write";
  for (int round = 0; round < 2; round++) { /* the second create truncates */
    WASI_OK(__wasi_path_open(3, __WASI_LOOKUPFLAGS_SYMLINK_FOLLOW, "a/b/c/f.txt",
                        __WASI_OFLAGS_CREAT | __WASI_OFLAGS_TRUNC, WRITE, WRITE, 0, &f));
    __wasi_ciovec_t iov = {(const uint8_t *)text, sizeof text - 1};
    size_t n;
    WASI_OK(__wasi_fd_write(f, &iov, 1, &n));
    CHECK(n == sizeof text - 1);
    WASI_OK(__wasi_fd_close(f));
  }
  WASI_OK(__wasi_path_open(3, __WASI_LOOKUPFLAGS_SYMLINK_FOLLOW, "a/b/c/f.txt", 0, READ, 0, 0, &f));
  __wasi_filestat_t st;
  WASI_OK(__wasi_fd_filestat_get(f, &st));
  CHECK(st.size == sizeof text - 1 && st.filetype == __WASI_FILETYPE_REGULAR_FILE);
  char back[64];
  __wasi_iovec_t riov = {(uint8_t *)back, sizeof back};
  size_t got;
  WASI_OK(__wasi_fd_read(f, &riov, 1, &got));
  CHECK(got == sizeof text - 1 && memcmp(back, text, got) == 0);
  WASI_OK(__wasi_fd_read(f, &riov, 1, &got));
  CHECK(got == 0);
  WASI_OK(__wasi_fd_close(f));
  ok("File::create truncates; fs::read reads what was written");

  for (int i = 0; i < 6; i++) {
    char name[32];
    snprintf(name, sizeof name, "a/entry-with-a-long-name-%d", i);
    WASI_OK(__wasi_path_open(3, 0, name, __WASI_OFLAGS_CREAT, WRITE, 0, 0, &f));
    WASI_OK(__wasi_fd_close(f));
  }
  __wasi_fd_t a;
  WASI_OK(__wasi_path_open(3, 0, "a", __WASI_OFLAGS_DIRECTORY, DIRS, READ | WRITE | DIRS, 0, &a));
  char names[16][32];
  CHECK(read_dir(a, 32, names, 16) == 9); /* . .. b and six files, 32 bytes at a time */
  ok("read_dir with a buffer smaller than an entry resumes from cookies");

  WASI_OK(__wasi_path_symlink("b/c/f.txt", a, "link"));
  WASI_OK(__wasi_path_filestat_get(a, __WASI_LOOKUPFLAGS_SYMLINK_FOLLOW, "link", &st));
  CHECK(st.filetype == __WASI_FILETYPE_REGULAR_FILE && st.size == sizeof text - 1);
  WASI_OK(__wasi_path_filestat_get(a, 0, "link", &st));
  CHECK(st.filetype == __WASI_FILETYPE_SYMBOLIC_LINK);
  ok("metadata follows links, symlink_metadata does not");

  __wasi_fd_t c;
  WASI_OK(__wasi_path_open(a, 0, "b/c", __WASI_OFLAGS_DIRECTORY, DIRS | __WASI_RIGHTS_PATH_RENAME_TARGET,
                      READ | WRITE | DIRS, 0, &c));
  WASI_OK(__wasi_path_rename(a, "entry-with-a-long-name-0", c, "moved"));
  WASI_OK(__wasi_path_filestat_get(3, 0, "a/b/c/moved", &st));
  WASI_ERR(__wasi_path_open(c, 0, "../../..", __WASI_OFLAGS_DIRECTORY, 0, 0, 0, &f), __WASI_ERRNO_PERM);
  WASI_OK(__wasi_fd_close(c));
  ok("rename between two directory descriptors; .. stops at the descriptor");

  WASI_OK(__wasi_fd_close(a));
  remove_dir_all(3, "a");
  WASI_ERR(__wasi_path_filestat_get(3, 0, "a", &st), __WASI_ERRNO_NOENT);
  ok("remove_dir_all through descriptors beneath the preopen");
  return 0;
}
