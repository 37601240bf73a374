/* waltool.h -- `relay wal stat|dump|verify`: looking inside a WAL directory
 * from outside the relay that owns it.
 *
 * The files are read directly, the way recovery reads them (wal_recover.c),
 * and never changed: every open is O_RDONLY, DIR/.lock is not taken, nothing
 * is written or cut. It is therefore safe beside a live relay that appends:
 * a record it is still writing at the end of the last segment (the file ends
 * inside it, or its end is still the zeros of a preallocated segment) is "in
 * progress", said as such and not counted as damage. Anything else that is not
 * a whole record with a matching checksum is damage; the reading resumes at
 * the next whole record, so one damaged record hides nothing after it.
 *
 *   stat    segments, sequence range, bytes against wal.max_size, each reader's
 *           cursor (every DIR/<name>.cursor) and lag, what retention keeps
 *           (text, or one JSON object with --json)
 *   dump    one JSON line per record (--from-seq N skips whole segments below
 *           N without reading them; --limit K)
 *   verify  every record: bounds, checksum, seqs increasing across segments,
 *           payloads that decode; each problem on a line, then a summary
 *
 * The directory is --dir, else the config's wal.dir (-c FILE, loaded as relay
 * loads it). A config that does not load is an error, unless --dir is given:
 * then the tool goes on without templates, retention or max_size and says so. */
#ifndef RL_WALTOOL_H
#define RL_WALTOOL_H

#include <stdio.h>

/* Exit codes. Verify returns DAMAGE when it found a problem, dump when it had
 * to skip damaged bytes; stat always returns OK once it could read. */
enum { RL_WALTOOL_OK = 0, RL_WALTOOL_DAMAGE = 1, RL_WALTOOL_ERROR = 2 };

/* Runs one command: argv[0] is "wal", argv[1] the command (stat, dump, verify
 * or --help), then its options. Results go to `out`, errors, warnings and
 * usage to `err` (verify's problems and summary are results: `out`); neither is
 * closed. default_config is -c's default (main.c's RL_DEFAULT_CONFIG). Returns
 * an exit code above (ERROR for a usage, config or I/O error). It uses getopt
 * (and resets it), so one call at a time per process. */
int rl_waltool_run(int argc, char **argv, const char *default_config, FILE *out, FILE *err);

/* rl_waltool_run on stdout and stderr: what `relay wal ...` calls. */
int rl_waltool_main(int argc, char **argv, const char *default_config);

/* The commands' usage lines (part of relay --help). */
void rl_waltool_usage(FILE *out);

#endif
