/* walgen.c -- fills a WAL directory with N events, as if relay had taken them
 * while both sinks were down, for the benchmark's replay measurement.
 *
 *   walgen CONFIG DIR N
 * Events are Timely message.received CloudEvents built by relay's own code
 * (record.c), spread over 200 channels, appended in group commits of 1000.
 * relay's dedup persister (dedup_store.c, configured from CONFIG and the
 * environment, wal.dir = DIR) runs over them as it would have in relay during
 * the outage, so that a restart finds the window on disk, as a real one would,
 * rather than rebuilding it from all N events. */
#include "codec.h"
#include "config.h"
#include "dedup_store.h"
#include "record.h"
#include "wal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: walgen CONFIG DIR N\n");
        return 2;
    }
    long n = atol(argv[3]);
    char errstr[512];
    setenv("RELAY_WAL_DIR", argv[2], 1);
    rl_config_t *cfg = rl_config_load(argv[1], errstr, sizeof(errstr));
    if (!cfg) {
        fprintf(stderr, "walgen: %s\n", errstr);
        return 1;
    }
    const char *readers[] = {"kafka", "redis", "dedup"};
    rl_wal_opts_t o = {.dir = argv[2],
                       .segment_size = 64ull << 20,
                       .max_size = 64ull << 30,
                       .fsync = 1,
                       .readers = readers,
                       .nreaders = 3};
    rl_wal_t *w = rl_wal_open(&o, NULL, errstr, sizeof(errstr));
    if (!w) {
        fprintf(stderr, "walgen: %s\n", errstr);
        return 1;
    }
    enum { BATCH = 1000 };
    struct iovec iov[BATCH];
    uint64_t first;
    uint64_t now_ms = (uint64_t)time(NULL) * 1000;
    for (long done = 0; done < n;) {
        int k = 0;
        for (; k < BATCH && done < n; k++, done++) {
            char id[64], ch[32], mid[64];
            snprintf(id, sizeof(id), "evt_replay_%ld", done);
            snprintf(ch, sizeof(ch), "chan_%ld", done % 200);
            snprintf(mid, sizeof(mid), "msg_%ld", done);
            const char *strs[][2] = {{"message_id", mid},
                                     {"conversation_id", "conv_01HX3B2K"},
                                     {"contact_id", "cont_456"},
                                     {"direction", "inbound"},
                                     {"content_type", "text"},
                                     {"content", "Oi, gostaria de saber sobre os planos"},
                                     {"occurred_at", "2026-04-19T14:30:00Z"},
                                     {"channel_id", ch},
                                     {"sent_by_type", "contact"}};
            rl_field_t f[11] = {[9] = {.name = "media_url"}, [10] = {.name = "raw"}};
            for (int j = 0; j < 9; j++)
                f[j] = (rl_field_t){.name = strs[j][0],
                                    .kind = RL_FIELD_STRING,
                                    .str = strs[j][1],
                                    .len = strlen(strs[j][1])};
            rl_event_t ev = {.id = id,
                             .type = "message.received",
                             .channel_id = ch,
                             .workspace_id = "ws_abc123",
                             .time = "2026-04-19T14:30:00Z",
                             .fields = f,
                             .nfields = 11};
            char *ce = rl_record_cloudevent(&ev, "timely", "timely");
            uint8_t *buf;
            size_t len;
            if (!ce || rl_record_encode("timely", &ev, ce, now_ms, &buf, &len) != 0) {
                fprintf(stderr, "walgen: encode failed\n");
                return 1;
            }
            free(ce);
            iov[k].iov_base = buf;
            iov[k].iov_len = len;
        }
        int rc = rl_wal_append_sync(w, iov, (size_t)k, &first);
        for (int i = 0; i < k; i++)
            free(iov[i].iov_base);
        if (rc != RL_WAL_OK) {
            fprintf(stderr, "walgen: append failed (%d)\n", rc);
            return 1;
        }
    }
    rl_dstore_t *ds = rl_dstore_new(cfg, w, NULL, errstr, sizeof(errstr));
    if (!ds) {
        fprintf(stderr, "walgen: %s\n", errstr);
        return 1;
    }
    while (!rl_wal_reader_caught_up(rl_wal_reader(w, "dedup"))) {
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
    }
    rl_dstore_destroy(ds);
    printf("walgen: %ld events, %llu bytes in %s\n", n, (unsigned long long)rl_wal_bytes(w),
           argv[2]);
    rl_wal_close(w);
    rl_config_destroy(cfg);
    return 0;
}
