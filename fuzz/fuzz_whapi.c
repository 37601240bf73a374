/* fuzz_whapi.c -- libFuzzer target for the Whapi codec (see fuzz_codec.h). */
#define FUZZ_CODEC "whapi"
#include "fuzz_codec.h"
