/* harness.c -- the system tests' harness (declarations and what each helper does:
 * harness.h). Built once into $(BUILD)/libtests.a, which the system test binaries
 * link; the state below is the test process's own (Criterion runs each test in a
 * process of its own). */
#include "harness.h"

#include "tmpdir.h"

extern char **environ;

/* ------------------------------------------------------------------ small utilities */

int64_t th_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void th_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
    }
}

const char *th_env(const char *name, const char *fallback)
{
    const char *v = getenv(name);
    return v && *v ? v : fallback;
}

char *th_strf(const char *fmt, ...)
{
    va_list ap;
    char *s = NULL;
    va_start(ap, fmt);
    int n = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (n < 0)
        cr_assert_fail("out of memory");
    return s;
}

char *th_memdup(const void *p, size_t n)
{
    if (!p)
        return NULL;
    char *s = malloc(n + 1);
    cr_assert(s, "out of memory");
    memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

char *th_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    size_t got;
    while (buf && (got = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += got;
        if (cap - n - 1 == 0) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
    }
    fclose(f);
    if (!buf)
        return NULL;
    buf[n] = '\0';
    if (len)
        *len = n;
    return buf;
}

int th_write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    int ok = fputs(text, f) >= 0;
    return (fclose(f) == 0 && ok) ? 0 : -1;
}

int th_mkdir_p(const char *path)
{
    char buf[PATH_MAX];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return -1;
    for (char *p = buf + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(buf, 0755) == -1 && errno != EEXIST)
                return -1;
            *p = '/';
        }
    }
    return (mkdir(buf, 0755) == -1 && errno != EEXIST) ? -1 : 0;
}

int th_free_port(void)
{
    int lo = 20000, hi = 32000;
    FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
    if (f) {
        int elo, ehi;
        if (fscanf(f, "%d %d", &elo, &ehi) == 2 && elo - 1 > lo + 1000)
            hi = elo - 1;
        fclose(f);
    }
    static unsigned seed;
    if (!seed)
        seed = (unsigned)getpid() ^ (unsigned)th_now_ms();
    for (int i = 0; i < 500; i++) {
        int port = lo + (int)(rand_r(&seed) % (unsigned)(hi - lo + 1));
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            break;
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        int ok = bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
        close(fd);
        if (ok)
            return port;
    }
    cr_assert_fail("no free TCP port found");
    return -1;
}

int th_rfc3339(const char *s, time_t *out)
{
    int Y, M, D, h, m, sec, n = 0;
    if (!s || sscanf(s, "%4d-%2d-%2d%n", &Y, &M, &D, &n) != 3 || n != 10)
        return -1;
    s += n;
    if (*s != 'T' && *s != 't')
        return -1;
    s++;
    if (sscanf(s, "%2d:%2d:%2d%n", &h, &m, &sec, &n) != 3 || n != 8)
        return -1;
    s += n;
    if (*s == '.') {
        s++;
        if (*s < '0' || *s > '9')
            return -1;
        while (*s >= '0' && *s <= '9')
            s++;
    }
    long off = 0;
    if (*s == 'Z' || *s == 'z') {
        s++;
    } else if (*s == '+' || *s == '-') {
        int oh, om;
        if (sscanf(s + 1, "%2d:%2d%n", &oh, &om, &n) != 2 || n != 5)
            return -1;
        off = (oh * 60L + om) * 60L * (*s == '-' ? -1 : 1);
        s += 1 + n;
    } else {
        return -1;
    }
    if (*s || M < 1 || M > 12 || D < 1 || D > 31 || h > 23 || m > 59 || sec > 60)
        return -1;
    struct tm tm = {.tm_year = Y - 1900,
                    .tm_mon = M - 1,
                    .tm_mday = D,
                    .tm_hour = h,
                    .tm_min = m,
                    .tm_sec = sec};
    *out = timegm(&tm) - off;
    return 0;
}

/* --------------------------------------------------------------------- test state */

static struct {
    char test_dir[PATH_MAX - 256]; /* shorter than the paths made from it */
    th_relay_t *relays[TH_MAX_RELAYS];
    int nrelays;
    int curl_ready;
    int redis_stopped;     /* this test stopped the shared Redis: teardown restarts it */
    int kafka_stopped;     /* the same for Kafka */
    char cainfo[PATH_MAX]; /* CA file th_http trusts for https:// (th_relay_use_tls) */
} th_state;

/* Where a test's files go: $RELAY_TEST_TMP/<suite>.<test>. The report hook below
 * (which runs in Criterion's runner process, not the test's) derives the same path. */
static void th_test_dir_for(const char *suite, const char *test, char *buf, size_t size)
{
    const char *tmp = th_env("RELAY_TEST_TMP", "/tmp/relay-systest");
    snprintf(buf, size, "%s/%s.%s", tmp, suite ? suite : "suite", test ? test : "test");
}

/* Prints the last `lines` lines of a file to stderr. */
static void th_print_tail(const char *path, int lines)
{
    size_t len;
    char *text = th_read_file(path, &len);
    if (!text)
        return;
    const char *p = text + len;
    int seen = 0;
    while (p > text) {
        p--;
        if (*p == '\n' && p != text + len - 1 && ++seen == lines) {
            p++;
            break;
        }
    }
    fprintf(stderr, "---- tail of %s ----\n%s%s---- end ----\n", path, p,
            len && text[len - 1] != '\n' ? "\n" : "");
    free(text);
}

ReportHook(POST_TEST)(struct criterion_test_stats *stats)
{
    if (!stats || stats->test_status != CR_STATUS_FAILED || !stats->test)
        return;
    char dir[PATH_MAX], log[PATH_MAX + 32];
    th_test_dir_for(stats->test->category, stats->test->name, dir, sizeof dir);
    for (int i = 1; i <= TH_MAX_RELAYS; i++) {
        snprintf(log, sizeof log, "%s/r%d/relay.log", dir, i);
        if (access(log, R_OK) == 0)
            th_print_tail(log, 30);
    }
}

void th_setup(void)
{
    const struct criterion_test *t = criterion_current_test;
    th_test_dir_for(t ? t->category : NULL, t ? t->name : NULL, th_state.test_dir,
                    sizeof th_state.test_dir);
    tu_tmpdir_remove(th_state.test_dir);
    cr_assert(th_mkdir_p(th_state.test_dir) == 0, "cannot create %s: %s", th_state.test_dir,
              strerror(errno));
    if (!th_state.curl_ready) {
        curl_global_init(CURL_GLOBAL_DEFAULT);
        th_state.curl_ready = 1;
    }
    /* A relay that died would otherwise kill the test with SIGPIPE on a write. */
    signal(SIGPIPE, SIG_IGN);
}

const char *th_test_dir(void)
{
    return th_state.test_dir;
}

static int th_relay_check_exit(th_relay_t *r);
static void th_relay_free(th_relay_t *r);

void th_teardown(void)
{
    int bad = 0;
    for (int i = 0; i < th_state.nrelays; i++) {
        bad |= th_relay_check_exit(th_state.relays[i]);
        th_relay_free(th_state.relays[i]);
    }
    th_state.nrelays = 0;
    if (th_state.redis_stopped)
        th_redis_service("start");
    if (th_state.kafka_stopped)
        th_kafka_service("start");
    if (th_state.curl_ready) {
        curl_global_cleanup();
        th_state.curl_ready = 0;
    }
    /* Criterion 2.4 ignores assertions made in .fini; a crash of the test's own
     * process is what it reports as a failure. */
    if (bad)
        abort();
}

/* ---------------------------------------------------------------------- commands */

int th_run(char *const argv[], int timeout_ms, char **output)
{
    int fds[2];
    cr_assert(pipe2(fds, O_CLOEXEC) == 0, "pipe: %s", strerror(errno));
    fflush(NULL);
    pid_t pid = fork();
    cr_assert(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(fds[1], 1);
        dup2(fds[1], 2);
        execv(argv[0], argv);
        _exit(127);
    }
    close(fds[1]);
    size_t cap = 1024, n = 0;
    char *buf = malloc(cap);
    cr_assert(buf, "out of memory");
    int64_t deadline = th_now_ms() + timeout_ms;
    int timed_out = 0;
    for (;;) {
        int left = (int)(deadline - th_now_ms());
        if (left <= 0) {
            timed_out = 1;
            break;
        }
        struct pollfd pfd = {fds[0], POLLIN, 0};
        if (poll(&pfd, 1, left) <= 0)
            continue;
        if (n + 512 > cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            cr_assert(buf, "out of memory");
        }
        ssize_t got = read(fds[0], buf + n, cap - n - 1);
        if (got <= 0)
            break;
        n += (size_t)got;
    }
    buf[n] = '\0';
    close(fds[0]);
    if (timed_out)
        kill(pid, SIGKILL);
    int st = 0;
    waitpid(pid, &st, 0);
    *output = buf;
    if (timed_out || !WIFEXITED(st))
        return -1;
    return WEXITSTATUS(st);
}

/* ------------------------------------------------------------------------- HTTP */

void th_resp_free(th_resp_t *r)
{
    free(r->body);
    json_decref(r->json);
    memset(r, 0, sizeof *r);
}

size_t th_curl_body(char *p, size_t size, size_t nmemb, void *ud)
{
    th_resp_t *r = ud;
    size_t n = size * nmemb;
    char *nb = realloc(r->body, r->len + n + 1);
    if (!nb)
        return 0;
    memcpy(nb + r->len, p, n);
    r->body = nb;
    r->len += n;
    nb[r->len] = '\0';
    return n;
}

static size_t th_curl_header(char *p, size_t size, size_t nmemb, void *ud)
{
    th_resp_t *r = ud;
    size_t n = size * nmemb;
    static const char ra[] = "Retry-After:";
    if (n > sizeof ra - 1 && strncasecmp(p, ra, sizeof ra - 1) == 0) {
        const char *v = p + sizeof ra - 1;
        size_t vl = n - (sizeof ra - 1);
        while (vl && (*v == ' ' || *v == '\t'))
            v++, vl--;
        while (vl && (v[vl - 1] == '\r' || v[vl - 1] == '\n' || v[vl - 1] == ' '))
            vl--;
        snprintf(r->retry_after, sizeof r->retry_after, "%.*s", (int)vl, v);
    }
    return n;
}

void th_curl_prepare(CURL *c, const char *url, struct curl_slist *hl, long timeout_ms,
                     long connect_ms, curl_write_callback body_fn, void *body_arg)
{
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, connect_ms);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, body_fn);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, body_arg);
}

int th_http(const char *method, const char *url, const char *body, size_t len,
            const char *const *headers, th_resp_t *out)
{
    memset(out, 0, sizeof *out);
    out->body = calloc(1, 1);
    CURL *c = curl_easy_init();
    cr_assert(c && out->body, "curl_easy_init failed");
    struct curl_slist *hl = curl_slist_append(NULL, "Expect:");
    int has_ct = 0;
    for (const char *const *h = headers; h && *h; h++) {
        hl = curl_slist_append(hl, *h);
        if (strncasecmp(*h, "Content-Type:", 13) == 0)
            has_ct = 1;
    }
    if (!has_ct)
        hl = curl_slist_append(hl, "Content-Type:");
    th_curl_prepare(c, url, hl, 10000, 2000, th_curl_body, out);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, th_curl_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, out);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, out->error);
    if (th_state.cainfo[0])
        curl_easy_setopt(c, CURLOPT_CAINFO, th_state.cainfo);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    }
    if (strcmp(method, body ? "POST" : "GET") != 0)
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    CURLcode rc = curl_easy_perform(c);
    if (rc == CURLE_OK) {
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
        char *ct = NULL;
        curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ct);
        if (ct)
            snprintf(out->content_type, sizeof out->content_type, "%s", ct);
        out->json = json_loadb(out->body, out->len, 0, NULL);
    } else if (!out->error[0]) {
        snprintf(out->error, sizeof out->error, "%s", curl_easy_strerror(rc));
    }
    curl_slist_free_all(hl);
    curl_easy_cleanup(c);
    return rc == CURLE_OK ? 0 : -1;
}

/* ------------------------------------------------------------------ relay process */

const char *th_kafka_brokers(void)
{
    return th_env("RELAY_TEST_KAFKA_BROKERS", "127.0.0.1:9092");
}

int th_redis_port(void)
{
    return atoi(th_env("RELAY_TEST_REDIS_PORT", "6379"));
}

th_relay_t *th_relay_new(void)
{
    cr_assert(th_state.nrelays < TH_MAX_RELAYS, "too many relays in one test");
    th_relay_t *r = calloc(1, sizeof *r);
    cr_assert(r, "out of memory");
    th_state.relays[th_state.nrelays++] = r;
    r->n = th_state.nrelays;
    snprintf(r->dir, sizeof r->dir, "%s/r%d", th_state.test_dir, r->n);
    snprintf(r->conf, sizeof r->conf, "%s/relay.conf", r->dir);
    snprintf(r->wal_dir, sizeof r->wal_dir, "%s/wal", r->dir);
    snprintf(r->log, sizeof r->log, "%s/relay.log", r->dir);
    cr_assert(th_mkdir_p(r->dir) == 0, "cannot create %s", r->dir);
    /* '-' rather than '_' or '.': Kafka refuses topics that differ only by '.' vs '_'. */
    snprintf(r->prefix, sizeof r->prefix, "t%ld-%ld-%d", (long)getpid(),
             (long)(time(NULL) % 1000000), r->n);
    r->port = th_free_port();
    snprintf(r->base, sizeof r->base, "http://127.0.0.1:%d", r->port);
    snprintf(r->kafka_brokers, sizeof r->kafka_brokers, "%s", th_kafka_brokers());
    snprintf(r->redis_url, sizeof r->redis_url, "redis://127.0.0.1:%d/0", th_redis_port());
    snprintf(r->max_body, sizeof r->max_body, "1m");
    snprintf(r->state_extra, sizeof r->state_extra,
             "redis_prefix = %s:channels\nkafka_topic = %s.channels.state\ndebounce = 1h\n",
             r->prefix, r->prefix);
    return r;
}

void th_relay_sinks_unreachable(th_relay_t *r)
{
    snprintf(r->kafka_brokers, sizeof r->kafka_brokers, "127.0.0.1:%d", th_free_port());
    snprintf(r->redis_url, sizeof r->redis_url, "redis://127.0.0.1:%d/0", th_free_port());
}

void th_relay_sinks_reachable(th_relay_t *r)
{
    snprintf(r->kafka_brokers, sizeof r->kafka_brokers, "%s", th_kafka_brokers());
    snprintf(r->redis_url, sizeof r->redis_url, "redis://127.0.0.1:%d/0", th_redis_port());
}

void th_relay_setenv(th_relay_t *r, const char *name, const char *value)
{
    int i = 0;
    size_t nl = strlen(name);
    while (r->env[i] && !(strncmp(r->env[i], name, nl) == 0 && r->env[i][nl] == '='))
        i++;
    cr_assert(i < TH_MAX_ENV, "too many environment overrides");
    free(r->env[i]);
    r->env[i] = th_strf("%s=%s", name, value);
}

const char *th_topic(const th_relay_t *r, const char *family, char *buf, size_t size)
{
    snprintf(buf, size, "%s.events.%s", r->prefix, family);
    return buf;
}

const char *th_stream(const th_relay_t *r, const char *channel, char *buf, size_t size)
{
    snprintf(buf, size, "%s:events:%s", r->prefix, channel);
    return buf;
}

char *th_relay_config_text(const th_relay_t *r)
{
    return th_strf("# generated by tests/system/harness.c\n"
                   "[http]\n"
                   "listen = 127.0.0.1:%d\n"
                   "threads = 2\n"
                   "max_body = %s\n"
                   "\n"
                   "[wal]\n"
                   "dir = %s\n"
                   "fsync = true\n"
                   "%s"
                   "\n"
                   "[dedup]\n"
                   "window = 1h\n"
                   "\n"
                   "[kafka]\n"
                   "enabled = true\n"
                   "brokers = %s\n"
                   "topic = %s.events.{family}\n"
                   "deadletter_topic = %s.events.deadletter\n"
                   "linger.ms = 5\n"
                   "%s"
                   "\n"
                   "[redis]\n"
                   "enabled = true\n"
                   "url = %s\n"
                   "stream = %s:events:{channel_id}\n"
                   "deadletter_stream = %s:events:deadletter\n"
                   "maxlen = 100000\n"
                   "\n"
                   "[state]\n"
                   "enabled = true\n"
                   "%s"
                   "\n"
                   "[log]\n"
                   "level = info\n"
                   "\n"
                   "[source timely]\n"
                   "codec = timely\n"
                   "auth = none\n"
                   "\n"
                   "[source whapi]\n"
                   "codec = whapi\n"
                   "auth = none\n"
                   "\n"
                   "[source locked]\n"
                   "codec = whapi\n"
                   "auth = token\n"
                   "secret = s3cret\n"
                   "\n"
                   "[source lockedhdr]\n"
                   "codec = whapi\n"
                   "auth = token\n"
                   "secret = hdr-s3cret\n"
                   "token_header = X-Relay-Token\n"
                   "%s",
                   r->conf_port ? r->conf_port : r->port, r->max_body, r->wal_dir, r->wal_extra,
                   r->kafka_brokers, r->prefix, r->prefix, r->kafka_extra, r->redis_url, r->prefix,
                   r->prefix, r->state_extra, r->extra);
}

void th_relay_use_tls(th_relay_t *r, const char *cert, const char *key)
{
    th_relay_setenv(r, "RELAY_HTTP_TLS_CERT", cert);
    th_relay_setenv(r, "RELAY_HTTP_TLS_KEY", key);
    snprintf(r->base, sizeof r->base, "https://127.0.0.1:%d", r->port);
    snprintf(th_state.cainfo, sizeof th_state.cainfo, "%s", cert);
}

/* Relay's environment: ours without any RELAY_* variable (the runner's RELAY_TEST_*
 * or a developer's RELAY_KAFKA_BROKERS must not leak into relay's overrides), plus
 * the instance's own overrides. Returns a malloc'd NULL-terminated array whose
 * strings belong to environ or to r. */
static char **th_child_env(const th_relay_t *r)
{
    size_t n = 0, k = 0;
    while (environ[n])
        n++;
    char **env = calloc(n + TH_MAX_ENV + 1, sizeof *env);
    cr_assert(env, "out of memory");
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "RELAY_", 6) != 0)
            env[k++] = environ[i];
    for (int i = 0; r->env[i]; i++)
        env[k++] = r->env[i];
    return env;
}

/* True while the child runs; reaps it (pid = 0, *status set) once it has exited. */
static int th_relay_alive(th_relay_t *r, int *status)
{
    if (!r->pid)
        return 0;
    int st;
    pid_t p = waitpid(r->pid, &st, WNOHANG);
    if (p == 0)
        return 1;
    if (p == r->pid && status)
        *status = st;
    r->pid = 0;
    return 0;
}

int th_relay_start_timeout(th_relay_t *r, int timeout_ms)
{
    cr_assert(!r->pid, "relay %d is already running", r->n);
    const char *bin = th_env("RELAY_TEST_BIN", "build/relay");
    char *conf = th_relay_config_text(r);
    cr_assert(th_write_file(r->conf, conf) == 0, "cannot write %s", r->conf);
    free(conf);

    int logfd = open(r->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    cr_assert(logfd >= 0, "cannot open %s", r->log);
    dprintf(logfd, "==== harness: start %d of %s (port %d, prefix %s)\n", ++r->starts, bin, r->port,
            r->prefix);
    char **env = th_child_env(r);
    char *argv[] = {(char *)bin, "-c", r->conf, NULL};
    pid_t parent = getpid();
    fflush(NULL);
    pid_t pid = fork();
    cr_assert(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        /* Only async-signal-safe calls between fork and exec. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(126);
        dup2(logfd, 1);
        dup2(logfd, 2);
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0)
            dup2(devnull, 0);
        execve(bin, argv, env);
        _exit(127);
    }
    close(logfd);
    free(env);
    r->pid = pid;

    char url[128];
    snprintf(url, sizeof url, "%s/healthz", r->base);
    int64_t deadline = th_now_ms() + timeout_ms;
    while (th_now_ms() < deadline) {
        int st = 0;
        if (!th_relay_alive(r, &st)) {
            fprintf(stderr, "relay %d exited during start-up (status 0x%x), log: %s\n", r->n, st,
                    r->log);
            return -1;
        }
        th_resp_t resp;
        int ok = th_http("GET", url, NULL, 0, NULL, &resp) == 0 && resp.status == 200;
        th_resp_free(&resp);
        if (ok)
            return 0;
        th_sleep_ms(50);
    }
    fprintf(stderr, "relay %d: no 200 on /healthz within %d ms, log: %s\n", r->n, timeout_ms,
            r->log);
    kill(r->pid, SIGKILL);
    waitpid(r->pid, NULL, 0);
    r->pid = 0;
    return -1;
}

int th_relay_start(th_relay_t *r)
{
    return th_relay_start_timeout(r, 15000);
}

int th_relay_stop(th_relay_t *r, int timeout_ms)
{
    if (!r->pid)
        return -1;
    kill(r->pid, SIGTERM);
    int64_t deadline = th_now_ms() + timeout_ms;
    int st = 0;
    while (th_now_ms() < deadline) {
        if (!th_relay_alive(r, &st))
            return st;
        th_sleep_ms(20);
    }
    kill(r->pid, SIGKILL);
    waitpid(r->pid, NULL, 0);
    r->pid = 0;
    return -1;
}

void th_relay_kill(th_relay_t *r)
{
    if (!r->pid)
        return;
    kill(r->pid, SIGKILL);
    waitpid(r->pid, NULL, 0);
    r->pid = 0;
}

/* At teardown a relay still running is stopped the way an operator would (SIGTERM)
 * and must exit 0; its log must hold no sanitizer report (a SANITIZE=1 build
 * prints one for memory errors, undefined behaviour and leaks), whichever way the
 * test ended it. */
static int th_relay_check_exit(th_relay_t *r)
{
    static const char *const marks[] = {"AddressSanitizer", "LeakSanitizer",
                                        "runtime error:", "UndefinedBehaviorSanitizer"};
    int bad = 0;
    if (!r)
        return 0;
    if (r->pid) {
        int st = th_relay_stop(r, 15000);
        if (st != 0) {
            cr_log_error("relay #%d did not exit 0 on SIGTERM at teardown (wait status %d)", r->n,
                         st);
            bad = 1;
        }
    }
    FILE *f = fopen(r->log, "r");
    if (!f)
        return bad;
    char line[1024];
    while (!bad && fgets(line, sizeof line, f)) {
        for (size_t i = 0; i < sizeof marks / sizeof marks[0]; i++) {
            if (strstr(line, marks[i])) {
                cr_log_error("relay #%d log %s has a sanitizer report: %s", r->n, r->log, line);
                bad = 1;
                break;
            }
        }
    }
    fclose(f);
    return bad;
}

/* Kills r if it runs and frees it (th_teardown, for every relay of the test). */
static void th_relay_free(th_relay_t *r)
{
    if (!r)
        return;
    th_relay_kill(r);
    for (int i = 0; r->env[i]; i++)
        free(r->env[i]);
    free(r);
}

int th_get(const th_relay_t *r, const char *path, th_resp_t *out)
{
    char url[512];
    snprintf(url, sizeof url, "%s%s", r->base, path);
    return th_http("GET", url, NULL, 0, NULL, out);
}

int th_post(const th_relay_t *r, const char *source, const char *body, const char *const *headers,
            th_resp_t *out)
{
    const char *h[12] = {"Content-Type: application/json"};
    int n = 1;
    for (const char *const *p = headers; p && *p && n < 11; p++)
        h[n++] = *p;
    h[n] = NULL;
    char url[512];
    snprintf(url, sizeof url, "%s/v1/webhooks/%s", r->base, source);
    return th_http("POST", url, body, strlen(body), h, out);
}

char *th_timely_message(const char *event_id, const char *channel, int seq)
{
    return th_strf("{\"event\":\"message.received\",\"event_id\":\"%s\","
                   "\"timestamp\":\"2026-04-19T14:%02d:%02dZ\",\"workspace_id\":\"ws_abc123\","
                   "\"data\":{\"message_id\":\"msg_%s\",\"conversation_id\":\"conv_01HX3B2K\","
                   "\"contact_id\":\"cont_456\",\"channel_id\":\"%s\",\"channel_type\":"
                   "\"whatsapp\",\"content\":\"message number %d\",\"type\":\"text\","
                   "\"direction\":\"inbound\",\"media_url\":null,\"media_mime_type\":null,"
                   "\"location\":null,\"received_at\":\"2026-04-19T14:%02d:%02dZ\"}}",
                   event_id, seq / 60 % 60, seq % 60, event_id, channel, seq, seq / 60 % 60,
                   seq % 60);
}

long th_raw_http(int port, const char *request, int timeout_ms, char **reply)
{
    long status = 0;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert(fd >= 0, "socket: %s", strerror(errno));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        send(fd, request, strlen(request), MSG_NOSIGNAL) == (ssize_t)strlen(request))
        status = th_read_answer(fd, timeout_ms, reply);
    else if (reply)
        *reply = th_memdup("", 0);
    close(fd);
    return status;
}

long th_read_answer(int fd, int timeout_ms, char **reply)
{
    char buf[8192];
    size_t n = 0;
    int64_t deadline = th_now_ms() + timeout_ms;
    for (;;) {
        int left = (int)(deadline - th_now_ms());
        struct pollfd pfd = {fd, POLLIN, 0};
        if (left <= 0 || poll(&pfd, 1, left) <= 0 || n + 1 >= sizeof buf)
            break;
        ssize_t got = recv(fd, buf + n, sizeof buf - n - 1, 0);
        if (got <= 0)
            break;
        n += (size_t)got;
        /* One answer is enough: stop at the end of its headers plus any body
         * announced, rather than waiting for a close that keep-alive delays. */
        buf[n] = '\0';
        const char *eoh = strstr(buf, "\r\n\r\n");
        if (eoh) {
            const char *cl = strcasestr(buf, "\r\nContent-Length:");
            size_t want = cl && cl < eoh ? strtoul(cl + 17, NULL, 10) : 0;
            if (n >= (size_t)(eoh + 4 - buf) + want)
                break;
        }
    }
    buf[n] = '\0';
    long status = 0;
    if (n > 12 && memcmp(buf, "HTTP/1.", 7) == 0)
        status = strtol(buf + 9, NULL, 10);
    if (reply)
        *reply = th_memdup(buf, n);
    return status;
}

/* ------------------------------------------------------------------------ Kafka */

void th_kmsgs_free(th_kmsgs_t *l)
{
    for (size_t i = 0; i < l->n; i++) {
        th_kmsg_t *m = &l->v[i];
        free(m->key);
        free(m->value);
        json_decref(m->json);
        for (size_t h = 0; h < m->nheaders; h++) {
            free(m->headers[h].name);
            free(m->headers[h].value);
        }
        free(m->headers);
    }
    free(l->v);
    memset(l, 0, sizeof *l);
}

const char *th_kheader(const th_kmsg_t *m, const char *name)
{
    const char *v = NULL;
    for (size_t i = 0; i < m->nheaders; i++)
        if (strcmp(m->headers[i].name, name) == 0)
            v = m->headers[i].value;
    return v;
}

int th_kheader_count(const th_kmsg_t *m, const char *name)
{
    int n = 0;
    for (size_t i = 0; i < m->nheaders; i++)
        n += strcmp(m->headers[i].name, name) == 0;
    return n;
}

static void th_kafka_push(th_kmsgs_t *l, const rd_kafka_message_t *km)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 16;
        l->v = realloc(l->v, l->cap * sizeof *l->v);
        cr_assert(l->v, "out of memory");
    }
    th_kmsg_t *m = &l->v[l->n++];
    memset(m, 0, sizeof *m);
    m->partition = km->partition;
    m->offset = km->offset;
    m->key = th_memdup(km->key, km->key_len);
    m->value = th_memdup(km->payload, km->len);
    m->value_len = km->len;
    if (m->value)
        m->json = json_loadb(m->value, m->value_len, 0, NULL);
    rd_kafka_headers_t *hdrs = NULL;
    if (rd_kafka_message_headers(km, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR && hdrs) {
        size_t cnt = rd_kafka_header_cnt(hdrs);
        m->headers = calloc(cnt ? cnt : 1, sizeof *m->headers);
        cr_assert(m->headers, "out of memory");
        const char *name;
        const void *val;
        size_t size;
        for (size_t i = 0; i < cnt && !rd_kafka_header_get_all(hdrs, i, &name, &val, &size); i++) {
            m->headers[i].name = th_memdup(name, strlen(name));
            m->headers[i].value = th_memdup(val, size);
            m->nheaders++;
        }
    }
}

static void th_kafka_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)rk;
    if (level <= 3)
        fprintf(stderr, "test consumer: %s: %s\n", fac, buf);
}

size_t th_kafka_consume(const char *topic, th_kafka_msg_fn fn, th_kafka_done_fn done, void *arg,
                        int timeout_ms, int settle_ms)
{
    char errstr[512];
    char group[64];
    size_t n = 0;
    snprintf(group, sizeof group, "relay-systest-%ld", (long)getpid());
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    const char *kv[][2] = {
        {"bootstrap.servers", th_kafka_brokers()},
        {"group.id", group},
        {"enable.auto.commit", "false"},
        {"enable.auto.offset.store", "false"},
        {"enable.partition.eof", "false"},
        {"fetch.wait.max.ms", "50"},
        {"topic.metadata.refresh.interval.ms", "500"},
        {"allow.auto.create.topics", "false"},
    };
    for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++)
        cr_assert(rd_kafka_conf_set(conf, kv[i][0], kv[i][1], errstr, sizeof errstr) ==
                      RD_KAFKA_CONF_OK,
                  "consumer config %s: %s", kv[i][0], errstr);
    rd_kafka_conf_set_log_cb(conf, th_kafka_log);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
    cr_assert(rk, "rd_kafka_new: %s", errstr);

    int64_t deadline = th_now_ms() + timeout_ms;

    /* Wait for the topic: relay creates it (auto-create) on its first produce. */
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    int partitions = 0;
    while (!partitions && th_now_ms() < deadline) {
        const struct rd_kafka_metadata *md = NULL;
        if (rd_kafka_metadata(rk, 0, rkt, &md, 2000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
            if (md->topic_cnt == 1 && md->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR)
                partitions = md->topics[0].partition_cnt;
            rd_kafka_metadata_destroy(md);
        }
        if (!partitions)
            th_sleep_ms(100);
    }
    rd_kafka_topic_destroy(rkt);

    if (partitions) {
        rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(partitions);
        for (int p = 0; p < partitions; p++)
            rd_kafka_topic_partition_list_add(parts, topic, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
        rd_kafka_resp_err_t err = rd_kafka_assign(rk, parts);
        rd_kafka_topic_partition_list_destroy(parts);
        cr_assert(!err, "rd_kafka_assign: %s", rd_kafka_err2str(err));

        int64_t settle_end = -1;
        for (;;) {
            int64_t now = th_now_ms();
            if (settle_end < 0 && done(arg))
                settle_end = now + settle_ms;
            if ((settle_end >= 0 && now >= settle_end) || (settle_end < 0 && now >= deadline))
                break;
            rd_kafka_message_t *km = rd_kafka_consumer_poll(rk, 50);
            if (!km)
                continue;
            if (km->err) {
                fprintf(stderr, "test consumer: %s: %s\n", topic, rd_kafka_message_errstr(km));
            } else {
                fn(arg, km);
                n++;
            }
            rd_kafka_message_destroy(km);
        }
        rd_kafka_assign(rk, NULL);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return n;
}

typedef struct th_kread {
    th_kmsgs_t *out;
    size_t before, want;
} th_kread_t;

static void th_kread_push(void *arg, const rd_kafka_message_t *km)
{
    th_kafka_push(((th_kread_t *)arg)->out, km);
}

static int th_kread_done(void *arg)
{
    th_kread_t *k = arg;
    return k->out->n - k->before >= k->want;
}

size_t th_kafka_read(const char *topic, size_t want, int timeout_ms, int settle_ms, th_kmsgs_t *out)
{
    th_kread_t k = {out, out->n, want};
    th_kafka_consume(topic, th_kread_push, th_kread_done, &k, timeout_ms, settle_ms);
    return out->n - k.before;
}

/* ------------------------------------------------------------------------ Redis */

void th_xentries_free(th_xentries_t *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i].sid);
        for (size_t f = 0; f < l->v[i].nfields; f++)
            free(l->v[i].fields[f]);
        free(l->v[i].fields);
        json_decref(l->v[i].event);
    }
    free(l->v);
    memset(l, 0, sizeof *l);
}

const char *th_xfield(const th_xentry_t *e, const char *name)
{
    for (size_t i = 0; i + 1 < e->nfields; i += 2)
        if (strcmp(e->fields[i], name) == 0)
            return e->fields[i + 1];
    return NULL;
}

int th_xfield_count(const th_xentry_t *e, const char *name)
{
    int n = 0;
    for (size_t i = 0; i + 1 < e->nfields; i += 2)
        n += strcmp(e->fields[i], name) == 0;
    return n;
}

/* Replaces *out with the result of XRANGE key - +. Returns 0, -1 on an error. */
static int th_xrange(redisContext *rc, const char *key, th_xentries_t *out)
{
    redisReply *rep = redisCommand(rc, "XRANGE %s - +", key);
    if (!rep)
        return -1;
    if (rep->type != REDIS_REPLY_ARRAY) {
        int err = rep->type == REDIS_REPLY_ERROR;
        if (err)
            fprintf(stderr, "XRANGE %s: %s\n", key, rep->str);
        freeReplyObject(rep);
        return err ? -1 : 0;
    }
    th_xentries_free(out);
    out->v = calloc(rep->elements ? rep->elements : 1, sizeof *out->v);
    cr_assert(out->v, "out of memory");
    for (size_t i = 0; i < rep->elements; i++) {
        redisReply *e = rep->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements != 2)
            continue;
        th_xentry_t *x = &out->v[out->n++];
        x->sid = th_memdup(e->element[0]->str, e->element[0]->len);
        redisReply *f = e->element[1];
        x->fields = calloc(f->elements ? f->elements : 1, sizeof *x->fields);
        cr_assert(x->fields, "out of memory");
        for (size_t j = 0; j < f->elements; j++)
            x->fields[x->nfields++] = th_memdup(f->element[j]->str, f->element[j]->len);
        const char *ev = th_xfield(x, "event");
        if (ev)
            x->event = json_loads(ev, 0, NULL);
    }
    freeReplyObject(rep);
    return 0;
}

size_t th_redis_read(const char *key, size_t want, int timeout_ms, int settle_ms,
                     th_xentries_t *out)
{
    struct timeval tv = {2, 0};
    redisContext *rc = redisConnectWithTimeout("127.0.0.1", th_redis_port(), tv);
    cr_assert(rc && !rc->err, "cannot connect to the test Redis on port %d: %s", th_redis_port(),
              rc ? rc->errstr : "out of memory");
    int64_t deadline = th_now_ms() + timeout_ms;
    for (;;) {
        th_xrange(rc, key, out);
        if (out->n >= want) {
            if (settle_ms > 0) {
                th_sleep_ms(settle_ms);
                th_xrange(rc, key, out);
            }
            break;
        }
        if (th_now_ms() >= deadline)
            break;
        th_sleep_ms(50);
    }
    redisFree(rc);
    return out->n;
}

/* Runs tools/<script> ACTION DIR [PORT] (PORT for "start" only) on a shared test
 * service, and keeps *stopped up to date so that teardown can start again what a test
 * left stopped. Returns -2 without RELAY_TEST_TOOLS or the directory, else the
 * script's exit code. */
static int th_service(const char *script, const char *dir, const char *port, const char *action,
                      int timeout_ms, int *stopped)
{
    const char *tools = getenv("RELAY_TEST_TOOLS");
    if (!tools || !dir || !port)
        return -2;
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", tools, script);
    char *argv[] = {path, (char *)action, (char *)dir, (char *)port, NULL};
    if (strcmp(action, "start") != 0)
        argv[3] = NULL;
    char *out = NULL;
    int rc = th_run(argv, timeout_ms, &out);
    if (rc != 0)
        fprintf(stderr, "%s %s: exit %d: %s\n", script, action, rc, out);
    free(out);
    if (rc == 0)
        *stopped = strcmp(action, "start") != 0;
    return rc;
}

int th_redis_service(const char *action)
{
    char port[16];
    snprintf(port, sizeof port, "%d", th_redis_port());
    return th_service("redis.sh", getenv("RELAY_TEST_REDIS_DIR"), port, action, 30000,
                      &th_state.redis_stopped);
}

int th_kafka_service(const char *action)
{
    return th_service("kafka.sh", getenv("RELAY_TEST_KAFKA_DIR"), getenv("RELAY_TEST_KAFKA_PORT"),
                      action, 180000, &th_state.kafka_stopped);
}

/* -------------------------------------------------------------------- Prometheus */

double th_metric(const char *text, const char *name, const char *labels)
{
    double sum = 0;
    int found = 0;
    size_t nlen = strlen(name);
    for (const char *line = text; line && *line;) {
        const char *eol = strchr(line, '\n');
        size_t len = eol ? (size_t)(eol - line) : strlen(line);
        char buf[1024];
        if (len < sizeof buf && line[0] != '#' && strncmp(line, name, nlen) == 0 &&
            (line[nlen] == '{' || line[nlen] == ' ')) {
            memcpy(buf, line, len);
            buf[len] = '\0';
            char *p = buf + nlen;
            char lbl[768] = ",";
            if (*p == '{') {
                /* Rewrite {a="x",b="y"} as ",a=x,b=y," for simple matching. */
                size_t k = 1;
                p++;
                while (*p && *p != '}' && k + 2 < sizeof lbl) {
                    if (*p == '"') {
                        p++;
                        while (*p && *p != '"' && k + 2 < sizeof lbl) {
                            if (*p == '\\' && p[1])
                                p++;
                            lbl[k++] = *p++;
                        }
                        if (*p == '"')
                            p++;
                    } else if (*p == ' ') {
                        p++;
                    } else {
                        lbl[k++] = *p++;
                    }
                }
                if (*p == '}')
                    p++;
                lbl[k++] = ',';
                lbl[k] = '\0';
            }
            int match = 1;
            if (labels && *labels) {
                char want[256];
                snprintf(want, sizeof want, "%s", labels);
                for (char *save = NULL, *tok = strtok_r(want, ",", &save); tok;
                     tok = strtok_r(NULL, ",", &save)) {
                    char pat[300];
                    snprintf(pat, sizeof pat, ",%s,", tok);
                    if (!strstr(lbl, pat))
                        match = 0;
                }
            }
            char *end;
            double v = strtod(p, &end);
            if (match && end != p) {
                sum += v;
                found = 1;
            }
        }
        line = eol ? eol + 1 : NULL;
    }
    return found ? sum : -1;
}

double th_relay_metric(const th_relay_t *r, const char *name, const char *labels)
{
    th_resp_t resp;
    double v = -1;
    if (th_get(r, "/metrics", &resp) == 0 && resp.status == 200)
        v = th_metric(resp.body, name, labels);
    th_resp_free(&resp);
    return v;
}
