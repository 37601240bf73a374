/* fuzz_config.c -- libFuzzer target for the configuration parser (relay/config/config.c
 * over inih) and what start-up derives from a config: each source's
 * authentication (secrets split and decoded), the destination templates, the
 * --check-config dump. Seeds: relay.conf and fuzz/seeds/config/.
 *
 * The input is the file's text (rl_config_load reads a path: a memfd gives it
 * one without touching the disk). Invariants: a config that loads has sources
 * with a codec, and its dump never shows a secret. */
#include "fuzz.h"

#include "auth.h"
#include "config.h"
#include "record.h"

#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

extern char **environ;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    /* Environment overrides would make runs depend on the shell: none. */
    for (int again = 1; again;) {
        again = 0;
        for (char **e = environ; *e; e++) {
            if (!strncmp(*e, "RELAY_", 6)) {
                char name[256];
                snprintf(name, sizeof(name), "%.*s", (int)strcspn(*e, "="), *e);
                unsetenv(name);
                again = 1;
                break;
            }
        }
    }
    return 0;
}

/* No line of the dump reads "secret = <value>" or "url = <value>" (redis.url may
 * hold a password): those print "(set)" or nothing. */
static void check_dump(const char *dump)
{
    for (const char *line = dump; line && *line;) {
        const char *eol = strchr(line, '\n');
        size_t n = eol ? (size_t)(eol - line) : strlen(line);
        if ((n > 9 && !strncmp(line, "secret = ", 9)) || (n > 6 && !strncmp(line, "url = ", 6))) {
            const char *v = line + (line[0] == 's' ? 9 : 6);
            size_t vl = n - (size_t)(v - line);
            FUZZ_CHECK(vl == 5 && !strncmp(v, "(set)", 5), "dump shows a secret: %.*s", (int)n,
                       line);
        }
        line = eol ? eol + 1 : NULL;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[64], err[1024] = "";
    int fd = memfd_create("relay-fuzz.conf", 0);

    if (fd < 0)
        abort();
    if (size && write(fd, data, size) != (ssize_t)size)
        abort();
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    rl_config_t *cfg = rl_config_load(path, err, sizeof(err));
    close(fd);
    if (!cfg) {
        FUZZ_CHECK(err[0], "refused without a reason");
        return 0;
    }
    FUZZ_CHECK(cfg->nsources > 0, "loaded without sources");
    for (size_t i = 0; i < cfg->nsources; i++) {
        FUZZ_CHECK(cfg->sources[i].codec && cfg->sources[i].auth, "source without codec/auth");
        rl_auth_t *a = rl_auth_new(&cfg->sources[i], err, sizeof(err));
        rl_auth_destroy(a);
    }
    rl_record_template_check(cfg->kafka.topic, err, sizeof(err));
    rl_record_template_check(cfg->kafka.deadletter_topic, err, sizeof(err));
    rl_record_template_check(cfg->redis.stream, err, sizeof(err));
    char *dump = NULL;
    size_t dlen = 0;
    FILE *f = open_memstream(&dump, &dlen);
    if (f) {
        rl_config_dump(cfg, f);
        fclose(f);
        check_dump(dump);
    }
    free(dump);
    rl_config_destroy(cfg);
    return 0;
}
