#ifndef SLUICE_CARCHIVE_SHIM_H
#define SLUICE_CARCHIVE_SHIM_H
/* libarchive (Debian's libarchive-dev): the decompression filters (gzip, bzip2, xz, zstd) that
   unpack delivered files on their way into the transform. */
#include <archive.h>
#include <archive_entry.h>
#endif
