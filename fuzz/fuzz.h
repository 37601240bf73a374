/* fuzz.h -- what the libFuzzer targets share (each fuzz/fuzz_*.c is one target,
 * built by `make fuzz` with clang -fsanitize=fuzzer,address,undefined).
 *
 * A target checks invariants of its own besides what the sanitizers catch;
 * FUZZ_CHECK aborts, which libFuzzer reports as a crash with the input saved. */
#ifndef RL_FUZZ_H
#define RL_FUZZ_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define FUZZ_CHECK(cond, ...)                                                                      \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz invariant failed: %s: ", #cond);                                 \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif
