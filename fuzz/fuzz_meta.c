/* fuzz_meta.c -- libFuzzer target for the Meta WhatsApp Cloud API codec (see
 * fuzz_codec.h), its source set up as relay would with a verify_token. */
#define FUZZ_CODEC "meta"
#define FUZZ_SOURCE                                                                                \
    {                                                                                              \
        .name = "fuzz", .codec = "meta", .verify_token = "fuzz-token"                              \
    }
#include "fuzz_codec.h"
