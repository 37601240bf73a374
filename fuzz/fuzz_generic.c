/* fuzz_generic.c -- libFuzzer target for codec = generic (see fuzz_codec.h),
 * configured with an items array and every pointer, so that bodies from the
 * Whapi and Timely fixtures reach the pointers' every branch. */
#define FUZZ_CODEC "generic"
#define FUZZ_SOURCE                                                                                \
    {                                                                                              \
        .name = "fuzz", .codec = "generic", .items = "/messages", .id = "/id", .type = "/type",    \
        .channel = "/chat_id", .time = "/timestamp", .workspace = "/from~1me/0",                   \
        .type_map = "text=message.received,image=message.sent,AUTH=channel.connected"              \
    }
#include "fuzz_codec.h"
