/* fuzz_cloudevents.c -- libFuzzer target for the CloudEvents codec (see
 * fuzz_codec.h): without a request, i.e. structured events. */
#define FUZZ_CODEC "cloudevents"
#include "fuzz_codec.h"
