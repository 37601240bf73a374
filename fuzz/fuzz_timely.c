/* fuzz_timely.c -- libFuzzer target for the Timely codec (see fuzz_codec.h). */
#define FUZZ_CODEC "timely"
#include "fuzz_codec.h"
