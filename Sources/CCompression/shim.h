#ifndef SLUICE_CCOMPRESSION_SHIM_H
#define SLUICE_CCOMPRESSION_SHIM_H
/* Page compression for the Parquet writer: libzstd (ZSTD, the default) and snappy's C API. */
#include <zstd.h>
#include <snappy-c.h>
#endif
