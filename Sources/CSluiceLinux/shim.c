#define _GNU_SOURCE
#include "CSluiceLinux.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/openat2.h>

int CSluiceLinux_renameNoReplace(int olddirfd, const char *oldpath, int newdirfd, const char *newpath) {
    return renameat2(olddirfd, oldpath, newdirfd, newpath, RENAME_NOREPLACE);
}

long CSluiceLinux_copyFileRange(int fd_in, long long *off_in, int fd_out, long long *off_out, unsigned long len) {
    loff_t in = *off_in, out = *off_out;
    ssize_t n = copy_file_range(fd_in, &in, fd_out, &out, len, 0);
    *off_in = in;
    *off_out = out;
    return (long)n;
}

int CSluiceLinux_syncfs(int fd) {
    return syncfs(fd);
}

int CSluiceLinux_openBeneath(int dirfd, const char *path, int flags, mode_t mode) {
    struct open_how how;
    memset(&how, 0, sizeof how);
    how.flags = (uint64_t)(unsigned)flags;
    how.mode = (flags & (O_CREAT | O_TMPFILE)) ? mode : 0;
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
    return (int)syscall(SYS_openat2, dirfd, path, &how, sizeof how);
}

const int CSluiceLinux_O_NOFOLLOW = O_NOFOLLOW;
const int CSluiceLinux_O_DIRECTORY = O_DIRECTORY;
const int CSluiceLinux_O_CLOEXEC = O_CLOEXEC;
const int CSluiceLinux_O_NOATIME = O_NOATIME;
const int CSluiceLinux_O_PATH = O_PATH;
const int CSluiceLinux_O_TMPFILE = O_TMPFILE;

int CSluiceLinux_startWriteback(int fd) {
    return sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE);
}

int CSluiceLinux_startWritebackRange(int fd, off_t offset, off_t length) {
    return sync_file_range(fd, offset, length, SYNC_FILE_RANGE_WRITE);
}
