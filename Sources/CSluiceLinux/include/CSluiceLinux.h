#ifndef CSLUICE_LINUX_H
#define CSLUICE_LINUX_H

#include <stdint.h>
#include <sys/types.h>

/// renameat2(olddirfd, oldpath, newdirfd, newpath, RENAME_NOREPLACE).
/// Returns 0 or -1 with errno set (EEXIST when newpath exists).
int CSluiceLinux_renameNoReplace(int olddirfd, const char *oldpath, int newdirfd, const char *newpath);
/* copy_file_range(2): copies `len` bytes from `*off_in` of `fd_in` to `*off_out` of `fd_out` in the
   kernel, advancing both offsets; returns the bytes copied, or -1 with errno. */
long CSluiceLinux_copyFileRange(int fd_in, long long *off_in, int fd_out, long long *off_out, unsigned long len);

/// syncfs(fd): flush the whole file system that holds fd.
int CSluiceLinux_syncfs(int fd);

/// openat2(dirfd, path, flags, mode, RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS).
/// Symlinks are followed only while they stay below dirfd. Returns fd or -1 with errno
/// (EXDEV when the path escapes dirfd, ENOSYS on kernels older than 5.6).
int CSluiceLinux_openBeneath(int dirfd, const char *path, int flags, mode_t mode);

/// sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE): start writing a file's dirty pages
/// now, without waiting, so that a later fsync has less to do.
int CSluiceLinux_startWriteback(int fd);
/// sync_file_range(fd, offset, length, SYNC_FILE_RANGE_WRITE): the same for one range.
int CSluiceLinux_startWritebackRange(int fd, off_t offset, off_t length);

/// Constants Swift cannot import as macros.
extern const int CSluiceLinux_O_NOFOLLOW;
extern const int CSluiceLinux_O_DIRECTORY;
extern const int CSluiceLinux_O_CLOEXEC;
extern const int CSluiceLinux_O_NOATIME;
extern const int CSluiceLinux_O_PATH;
extern const int CSluiceLinux_O_TMPFILE;

#endif
