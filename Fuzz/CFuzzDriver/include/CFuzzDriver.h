#ifndef SLUICE_FUZZ_DRIVER_H
#define SLUICE_FUZZ_DRIVER_H
#include <stddef.h>
#include <stdint.h>

/// libFuzzer's entry for a program with its own main (libclang_rt.fuzzer_no_main): runs the
/// fuzzer with the command line's flags, calling `callback` with each input.
int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size));

#endif
