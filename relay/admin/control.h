/* control.h -- the commands of the admin socket: `relay replay` and `relay
 * redrive`, both ends.
 *
 * Requests (one JSON object each, see admin.h):
 *   {"cmd":"replay","sink":"redis|kafka|all","from_seq":N,"until_seq":N,
 *    "since_ms":T,"until_ms":T,"channel":"…","type":"…"}  -> {"ok":true,…status}
 *   {"cmd":"status"}                                      -> {"ok":true,"replays":[…]}
 *   {"cmd":"redrive","source":"NAME","since_ms":T}        -> {"ok":true,"letters":N,
 *    "redriven":N,"accepted":N,"duplicates":N,"still_dead":N,"skipped":N,"errors":N,
 *    "reasons":{reason:count}}
 * An error is {"ok":false,"error":"…"}. */
#ifndef RL_CONTROL_H
#define RL_CONTROL_H

#include <jansson.h>

#include "ingest.h"
#include "replay.h"
#include "wal.h"

typedef struct rl_control {
    rl_replay_t *replay; /* borrowed, all three */
    rl_ingest_t *ingest;
    rl_wal_t *wal;
} rl_control_t;

/* The admin socket's rl_admin_fn; arg is an rl_control_t. */
json_t *rl_control_handle(void *arg, json_t *req);

/* `relay replay …` and `relay redrive …` (argv[0] is the command): talks to the
 * running relay whose configuration is -c FILE (default_config without it),
 * or to --socket PATH. Prints progress to stdout, errors to stderr. Returns the
 * exit code: 0 done, 1 refused or failed, 2 usage. */
int rl_control_cli(int argc, char **argv, const char *default_config);

#endif
