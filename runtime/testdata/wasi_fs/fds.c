/* Descriptors through the raw WASI calls: preopens, rights, fdflags, renumber, preopen close and
 * overwrite, directory descriptors used as files. Run with a directory holding in.txt preopened
 * at "/" (fd 3). */
#include <fcntl.h>
#include <unistd.h>
#include <wasi/api.h>
#include "check.h"

int main(void) {
  __wasi_prestat_t pre;
  WASI_OK(__wasi_fd_prestat_get(3, &pre));
  CHECK(pre.tag == __WASI_PREOPENTYPE_DIR && pre.u.dir.pr_name_len == 1);
  char name[8] = {0};
  WASI_ERR(__wasi_fd_prestat_dir_name(3, (uint8_t *)name, 0), __WASI_ERRNO_NAMETOOLONG);
  WASI_OK(__wasi_fd_prestat_dir_name(3, (uint8_t *)name, 1));
  CHECK(name[0] == '/');
  WASI_ERR(__wasi_fd_prestat_get(4, &pre), __WASI_ERRNO_BADF);
  ok("the preopen is fd 3, named /");

  __wasi_fdstat_t st;
  WASI_OK(__wasi_fd_fdstat_get(3, &st));
  CHECK(st.fs_filetype == __WASI_FILETYPE_DIRECTORY);
  CHECK(st.fs_rights_base & __WASI_RIGHTS_PATH_OPEN);
  __wasi_fd_t fd;
  WASI_OK(__wasi_path_open(3, 0, "in.txt", 0, __WASI_RIGHTS_FD_READ | __WASI_RIGHTS_FD_SEEK, 0, 0, &fd));
  WASI_OK(__wasi_fd_fdstat_get(fd, &st));
  CHECK(st.fs_filetype == __WASI_FILETYPE_REGULAR_FILE);
  CHECK(st.fs_rights_base == (__WASI_RIGHTS_FD_READ | __WASI_RIGHTS_FD_SEEK));
  WASI_ERR(__wasi_fd_fdstat_set_rights(fd, __WASI_RIGHTS_FD_WRITE, 0), __WASI_ERRNO_NOTCAPABLE);
  WASI_OK(__wasi_fd_fdstat_set_rights(fd, __WASI_RIGHTS_FD_SEEK, 0));
  uint8_t byte;
  __wasi_iovec_t iov = {&byte, 1};
  size_t n;
  WASI_ERR(__wasi_fd_read(fd, &iov, 1, &n), __WASI_ERRNO_NOTCAPABLE);
  __wasi_filesize_t off;
  WASI_OK(__wasi_fd_seek(fd, 2, __WASI_WHENCE_SET, &off));
  CHECK(off == 2);
  WASI_ERR(__wasi_fd_tell(fd, &off), __WASI_ERRNO_NOTCAPABLE);
  ok("rights shrink, never grow, and are enforced");

  __wasi_fd_t w;
  WASI_OK(__wasi_path_open(3, 0, "out.txt", __WASI_OFLAGS_CREAT,
                           __WASI_RIGHTS_FD_WRITE | __WASI_RIGHTS_FD_FDSTAT_SET_FLAGS |
                               __WASI_RIGHTS_FD_SEEK | __WASI_RIGHTS_FD_READ,
                           0, __WASI_FDFLAGS_APPEND, &w));
  WASI_OK(__wasi_fd_fdstat_get(w, &st));
  CHECK(st.fs_flags == __WASI_FDFLAGS_APPEND);
  WASI_OK(__wasi_fd_fdstat_set_flags(w, __WASI_FDFLAGS_NONBLOCK));
  WASI_OK(__wasi_fd_fdstat_get(w, &st));
  CHECK(st.fs_flags == __WASI_FDFLAGS_NONBLOCK);
  ok("fdflags are reported and set");

  /* Directory descriptors are not files, and files are not directories. */
  WASI_ERR(__wasi_fd_read(3, &iov, 1, &n), __WASI_ERRNO_BADF);
  __wasi_ciovec_t ciov = {&byte, 1};
  WASI_ERR(__wasi_fd_write(3, &ciov, 1, &n), __WASI_ERRNO_BADF);
  WASI_ERR(__wasi_fd_seek(3, 0, __WASI_WHENCE_CUR, &off), __WASI_ERRNO_BADF);
  uint8_t dbuf[64];
  WASI_ERR(__wasi_fd_readdir(w, dbuf, sizeof dbuf, 0, &n), __WASI_ERRNO_NOTDIR);
  WASI_ERR(__wasi_path_open(w, 0, "x", 0, 0, 0, 0, &fd), __WASI_ERRNO_NOTDIR);
  WASI_ERR(__wasi_path_open(3, 0, ".", 0, __WASI_RIGHTS_FD_WRITE, 0, 0, &fd), __WASI_ERRNO_ISDIR);
  WASI_ERR(__wasi_path_open(3, 0, "in.txt", __WASI_OFLAGS_DIRECTORY, 0, 0, 0, &fd), __WASI_ERRNO_NOTDIR);
  ok("directory-fd and file-fd misuse errors");

  /* Renumber a file over another descriptor; the source closes. */
  __wasi_fd_t r;
  WASI_OK(__wasi_path_open(3, 0, "in.txt", 0, __WASI_RIGHTS_FD_READ, 0, 0, &r));
  WASI_OK(__wasi_fd_renumber(r, w));
  WASI_ERR(__wasi_fd_close(r), __WASI_ERRNO_BADF);
  WASI_OK(__wasi_fd_read(w, &iov, 1, &n));
  CHECK(n == 1 && byte == 'h');
  WASI_ERR(__wasi_fd_renumber(w, 1000), __WASI_ERRNO_BADF);
  ok("renumber replaces the target and closes the source");

  /* A preopen overwritten by renumber is not a preopen any more; closed, it is gone. */
  __wasi_fd_t d;
  WASI_OK(__wasi_path_open(3, 0, ".", __WASI_OFLAGS_DIRECTORY, __WASI_RIGHTS_PATH_OPEN | __WASI_RIGHTS_FD_READDIR, __WASI_RIGHTS_FD_READ, 0, &d));
  WASI_OK(__wasi_fd_renumber(w, d));
  WASI_ERR(__wasi_fd_prestat_get(d, &pre), __WASI_ERRNO_BADF);
  WASI_OK(__wasi_fd_close(d));
  WASI_OK(__wasi_fd_close(3));
  WASI_ERR(__wasi_fd_prestat_get(3, &pre), __WASI_ERRNO_BADF);
  WASI_ERR(__wasi_path_open(3, 0, "in.txt", 0, 0, 0, 0, &fd), __WASI_ERRNO_BADF);
  ok("preopen close and overwrite");
  return 0;
}
