/* http.c -- routing, limits and the suspend/resume dance with the WAL.
 *
 * The race to close: the WAL may call back before the handler has suspended the
 * connection. Each request has a small lock; the handler suspends only if no
 * reply has arrived, and the callback resumes only a suspended connection.
 *
 * Hostile clients: connection counts (in all and per address) and the deadline
 * to send a request are connguard's; the memory for a request's headers is
 * libmicrohttpd's per-connection pool (http.max_header). A request's state is
 * allocated when its request line is in (the URI log callback), so that a
 * request libmicrohttpd refuses before our handler runs (431, a timeout) is
 * still seen, and counted, when it completes. */
#include "http.h"

#include "array.h"
#include "codec.h"
#include "connguard.h"
#include "clock.h"
#include "log.h"
#include "err.h"
#include "sig.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define WEBHOOK_PREFIX "/v1/webhooks/"
#define CHANNELS_PREFIX "/v1/channels"
/* TLS 1.2 and 1.3 only, GnuTLS's NORMAL choice of ciphers within them. */
#define TLS_PRIORITIES "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"
#define PEM_MAX (1024 * 1024)

static const int codes[] = {200, 400, 401, 403, 404, 405, 413, 415, 429, 500, 503};
#define NCODES (sizeof(codes) / sizeof(codes[0]))

struct rl_http {
    struct MHD_Daemon *d;
    rl_connguard_t *guard;
    char *tls_cert, *tls_key; /* PEM text, kept while the daemon runs */
    const rl_config_t *cfg;
    rl_ingest_t *ingest;
    rl_state_t *state; /* NULL: channel state is off */
    rl_metrics_t *metrics;
    rl_ready_fn ready;
    void *ready_arg;
    _Atomic int inflight;
    _Atomic int closing; /* quiesced: every answer closes its connection */
    _Atomic int serving; /* the daemon has started */
    /* requests[source][code]; the last row is for unknown sources */
    rl_metric_t *(*req_metric)[NCODES];
    rl_metric_t *m_inflight;
    rl_metric_t *m_request;         /* relay_http_request_seconds */
    rl_metric_t **m_body;           /* relay_limit_hits_total max_body, per source */
    rl_metric_t *m_header, *m_idle; /* max_header, timeout */
    rl_metric_t *m_framing;         /* requests with Content-Length and Transfer-Encoding */
};

typedef struct req {
    rl_http_t *h;
    struct MHD_Connection *conn;
    int began;         /* the handler has seen the request */
    uint64_t start_us; /* the request line was in (CLOCK_MONOTONIC) */
    int src_idx;       /* -1 unknown */
    int webhook;
    char *source;
    char *body;
    size_t len, cap;
    size_t discarded; /* body bytes read and dropped once past max_body */
    int too_large;
    int close_after; /* answered with Connection: close (ambiguous framing) */
    pthread_mutex_t lock;
    int submitted, suspended, have_reply;
    rl_reply_t reply;
} req_t;

static void count(rl_http_t *h, int src_idx, int status)
{
    size_t row = src_idx < 0 ? h->cfg->nsources : (size_t)src_idx;
    for (size_t i = 0; i < NCODES; i++)
        if (codes[i] == status)
            rl_metric_add(h->req_metric[row][i], 1);
}

/* The connguard record of a connection (NULL when it could not be tracked). */
static rl_conn_t *conn_of(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *i =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return i ? i->socket_context : NULL;
}

static enum MHD_Result send_buf(req_t *rq, int status, const char *ctype, char *body, size_t len,
                                int retry_after)
{
    struct MHD_Connection *c = rq->conn;
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, body ? body : (char *)"", MHD_RESPMEM_MUST_FREE);
    enum MHD_Result ret;
    if (!r) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    if (retry_after > 0) {
        char ra[16];
        snprintf(ra, sizeof(ra), "%d", retry_after);
        MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, ra);
    }
    if (status == 405)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "POST");
    if (atomic_load(&rq->h->closing) || rq->close_after)
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
    /* Answering: the request is in, however slowly the client now reads. */
    rl_connguard_received(rq->h->guard, conn_of(c));
    ret = MHD_queue_response(c, (unsigned int)status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result send_reply(req_t *rq, rl_reply_t *reply)
{
    char *body = reply->body;
    reply->body = NULL;
    if (rq->webhook)
        count(rq->h, rq->src_idx, reply->status);
    if (!body)
        body = strdup("{\"error\":\"internal\",\"message\":\"out of memory\"}");
    return send_buf(rq, reply->status, "application/json", body, body ? strlen(body) : 0,
                    reply->retry_after);
}

static enum MHD_Result send_error(req_t *rq, int status, const char *code, const char *msg)
{
    rl_reply_t reply;
    rl_reply_error(&reply, status, code, "%s", msg);
    return send_reply(rq, &reply);
}

static const char *header_of(void *ctx, const char *name)
{
    return MHD_lookup_connection_value(ctx, MHD_HEADER_KIND, name);
}

static const char *query_arg_of(void *ctx, const char *name)
{
    return MHD_lookup_connection_value(ctx, MHD_GET_ARGUMENT_KIND, name);
}

typedef struct each_header {
    int (*fn)(void *arg, const char *name, const char *value);
    void *arg;
} each_header_t;

static enum MHD_Result each_header_step(void *cls, enum MHD_ValueKind kind, const char *key,
                                        const char *value)
{
    each_header_t *e = cls;
    (void)kind;
    return e->fn(e->arg, key, value ? value : "") == 0 ? MHD_YES : MHD_NO;
}

static void each_header_of(void *ctx, int (*fn)(void *arg, const char *name, const char *value),
                           void *arg)
{
    each_header_t e = {.fn = fn, .arg = arg};
    MHD_get_connection_values(ctx, MHD_HEADER_KIND, each_header_step, &e);
}

/* A GET on a webhook URL: the source's handshake, or 405. */
static enum MHD_Result handle_handshake(req_t *rq)
{
    rl_handshake_t hs;
    char *body;

    if (!rl_ingest_handshake(rq->h->ingest, rq->source, query_arg_of, rq->conn, &hs))
        return send_error(rq, 405, "method_not_allowed", "webhooks are POSTed");
    count(rq->h, rq->src_idx, hs.status);
    body = hs.body ? hs.body : strdup("");
    return send_buf(rq, hs.status, "text/plain; charset=utf-8", body, body ? strlen(body) : 0, 0);
}

/* The WAL's answer for a suspended request (flusher thread). */
static void on_reply(void *opaque, rl_reply_t *reply)
{
    req_t *rq = opaque;
    pthread_mutex_lock(&rq->lock);
    rq->reply = *reply;
    rq->have_reply = 1;
    if (rq->suspended) {
        rq->suspended = 0;
        MHD_resume_connection(rq->conn);
    }
    pthread_mutex_unlock(&rq->lock);
}

static int json_content_type(const char *ct)
{
    size_t n = strcspn(ct, ";");
    while (n > 0 && ct[n - 1] == ' ')
        n--;
    if (n == 16 && !strncasecmp(ct, "application/json", 16))
        return 1;
    return n > 5 && !strncasecmp(ct + n - 5, "+json", 5);
}

/* 1 when the request may see an admin route: no http.admin_token, or
 * "Authorization: Bearer <token>" (compared in constant time). */
static int admin_allowed(req_t *rq)
{
    const char *tok = rq->h->cfg->http.admin_token;
    const char *a = MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND, "Authorization");
    size_t n = strlen(tok);

    if (!*tok)
        return 1;
    if (!a || strncasecmp(a, "Bearer ", 7) != 0)
        return 0;
    a += 7;
    return strlen(a) == n && rl_sig_equal(a, tok, n);
}

/* A non-negative decimal query argument, `dflt` when absent; -1 when malformed. */
static long query_long(req_t *rq, const char *name, long dflt, long max)
{
    const char *v = query_arg_of(rq->conn, name);
    char *end = NULL;
    long n;
    if (!v)
        return dflt;
    n = strtol(v, &end, 10);
    return (!*v || *end || n < 0 || n > max) ? -1 : n;
}

/* GET /v1/channels[/{id}]: the channel state (state.h). */
static enum MHD_Result handle_channels(req_t *rq, const char *url)
{
    rl_http_t *h = rq->h;
    const char *id = url[strlen(CHANNELS_PREFIX)] == '/' ? url + strlen(CHANNELS_PREFIX) + 1 : NULL;
    char *body = NULL;
    int status;

    if (!h->state)
        return send_error(rq, 404, "not_found", "channel state is off (state.enabled)");
    if (id && !*id)
        return send_error(rq, 404, "unknown_channel", "no channel id");
    if (id) {
        status = rl_state_get(h->state, id, &body);
    } else {
        const char *st = query_arg_of(rq->conn, "status");
        long limit = query_long(rq, "limit", 100, 1000),
             offset = query_long(rq, "offset", 0, 1L << 40);
        if (!st || !*st)
            return send_error(rq, 400, "missing_status", "say which channels: ?status=S");
        if (limit < 1 || offset < 0)
            return send_error(rq, 400, "bad_request",
                              "limit is 1 to 1000 and offset a number of channels");
        status = rl_state_list(h->state, st, offset, limit, &body);
    }
    if (!body)
        return send_error(rq, 500, "internal", "out of memory");
    return send_buf(rq, status, "application/json", body, strlen(body), status == 503 ? 5 : 0);
}

static enum MHD_Result handle_get(req_t *rq, const char *url)
{
    rl_http_t *h = rq->h;
    int channels = !strncmp(url, CHANNELS_PREFIX, strlen(CHANNELS_PREFIX)) &&
                   (!url[strlen(CHANNELS_PREFIX)] || url[strlen(CHANNELS_PREFIX)] == '/');

    if ((channels || !strcmp(url, "/metrics")) && !admin_allowed(rq))
        return send_error(rq, 401, "unauthorized", "this route needs the admin token");
    if (channels)
        return handle_channels(rq, url);
    if (!strcmp(url, "/healthz"))
        return send_buf(rq, 200, "application/json", strdup("{\"status\":\"ok\"}"), 15, 0);
    if (!strcmp(url, "/readyz")) {
        int ok = 1;
        char *s = h->ready ? h->ready(h->ready_arg, &ok) : strdup("{\"status\":\"ready\"}");
        if (!s)
            return send_error(rq, 500, "internal", "out of memory");
        return send_buf(rq, ok ? 200 : 503, "application/json", s, strlen(s), ok ? 0 : 5);
    }
    if (!strcmp(url, "/metrics")) {
        size_t len = 0;
        char *s = rl_metrics_render(h->metrics, &len);
        return send_buf(rq, s ? 200 : 500, "text/plain; version=0.0.4; charset=utf-8", s,
                        s ? len : 0, 0);
    }
    return send_error(rq, 404, "not_found", "no such route");
}

/* First call of a request: routing and the checks that need no body. */
static enum MHD_Result begin(req_t *rq, const char *url, const char *method)
{
    rl_http_t *h = rq->h;
    const rl_source_conf_t *sc = NULL;
    const rl_codec_t *codec;
    const char *cl, *ct;

    /* Content-Length and Transfer-Encoding both: libmicrohttpd reads the body
     * by Transfer-Encoding, as RFC 9112 section 6.1 allows, and the server then
     * MUST close the connection, or a request smuggled after the body (read by
     * a proxy with the other framing) would be answered too. */
    if (MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH) &&
        MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING)) {
        rq->close_after = 1;
        rl_metric_add(h->m_framing, 1);
    }
    if (strncmp(url, WEBHOOK_PREFIX, strlen(WEBHOOK_PREFIX)) != 0) {
        if (strcmp(method, "GET") && strcmp(method, "HEAD"))
            return send_error(rq,
                              strcmp(url, "/healthz") && strcmp(url, "/readyz") &&
                                      strcmp(url, "/metrics") &&
                                      strncmp(url, CHANNELS_PREFIX, strlen(CHANNELS_PREFIX))
                                  ? 404
                                  : 405,
                              "method_not_allowed", "use GET");
        return handle_get(rq, url);
    }
    rq->webhook = 1;
    rq->source = strdup(url + strlen(WEBHOOK_PREFIX));
    /* The metrics' row: the source's index in the configuration (ingest keeps its
     * sources in the same order). */
    if (rq->source && (sc = rl_config_source(h->cfg, rq->source)))
        rq->src_idx = (int)(sc - h->cfg->sources);
    if (rq->src_idx < 0)
        return send_error(rq, 404, "unknown_source", "no such source is configured");
    if (!strcmp(method, "GET"))
        return handle_handshake(rq);
    if (strcmp(method, "POST") != 0)
        return send_error(rq, 405, "method_not_allowed", "webhooks are POSTed");
    ct = MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
    codec = rl_codec_find(sc->codec);
    if (ct && !json_content_type(ct) && !(codec && (codec->flags & RL_CODEC_ANY_BODY)))
        return send_error(rq, 415, "unsupported_media_type", "the body must be application/json");
    cl = MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl && strtoull(cl, NULL, 10) > (unsigned long long)h->cfg->http.max_body) {
        rl_metric_add(h->m_body[rq->src_idx], 1);
        return send_error(rq, 413, "payload_too_large", "the body is larger than http.max_body");
    }
    return MHD_YES;
}

static req_t *req_new(rl_http_t *h, struct MHD_Connection *conn)
{
    req_t *rq = calloc(1, sizeof(*rq));
    if (!rq)
        return NULL;
    rq->h = h;
    rq->conn = conn;
    rq->src_idx = -1;
    rq->start_us = rl_clock_mono_us();
    pthread_mutex_init(&rq->lock, NULL);
    return rq;
}

/* The request line is in: the request's state, before the headers. */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
    (void)uri;
    return req_new(cls, conn);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    rl_http_t *h = cls;
    req_t *rq = *con_cls;
    size_t max_body = (size_t)h->cfg->http.max_body;
    (void)version;

    if (!rq || !rq->began) {
        if (!rq && !(rq = req_new(h, conn)))
            return MHD_NO;
        rq->began = 1;
        *con_cls = rq;
        return begin(rq, url, method);
    }
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (rq->too_large || rq->len + n > max_body) {
            /* A chunked body has no Content-Length to refuse early, and
             * libmicrohttpd 0.9.75 cannot answer before the body is in: what
             * comes is dropped and 413 answered at its end. A client that sends
             * more than twice max_body is cut off without an answer. */
            if (!rq->too_large)
                rl_metric_add(h->m_body[rq->src_idx], 1);
            rq->too_large = 1;
            rq->discarded += n;
            return rq->len + rq->discarded > 2 * max_body ? MHD_NO : MHD_YES;
        }
        char *b = rl_array_grow(rq->body, &rq->cap, rq->len + n, 1, 4096);
        if (!b)
            return MHD_NO;
        rq->body = b;
        memcpy(rq->body + rq->len, upload_data, n);
        rq->len += n;
        return MHD_YES;
    }
    if (rq->submitted) { /* resumed: the WAL has answered */
        enum MHD_Result r;
        pthread_mutex_lock(&rq->lock);
        r = rq->have_reply ? send_reply(rq, &rq->reply) : MHD_YES;
        pthread_mutex_unlock(&rq->lock);
        return r;
    }
    if (rq->too_large)
        return send_error(rq, 413, "payload_too_large", "the body is larger than http.max_body");

    rl_ingest_req_t ir = {.source = rq->source,
                          .body = (const uint8_t *)rq->body,
                          .len = rq->len,
                          .header = header_of,
                          .each_header = each_header_of,
                          .header_ctx = conn};
    rl_reply_t reply = {0};
    rl_connguard_received(h->guard, conn_of(conn)); /* no deadline while the WAL decides */
    rq->submitted = 1;
    /* Counted before `closing` is read, while shutdown sets `closing` before it
     * reads the count (both sequentially consistent): either shutdown waits for this
     * request, or this request sees `closing` and is answered now. A request that
     * suspended after shutdown's last look would make MHD_stop_daemon abort. */
    atomic_fetch_add(&h->inflight, 1);
    if (atomic_load(&h->closing)) {
        atomic_fetch_sub(&h->inflight, 1);
        rl_reply_error(&reply, 503, "shutting_down", "relay is stopping; retry");
        reply.retry_after = 1;
        return send_reply(rq, &reply);
    }
    pthread_mutex_lock(&rq->lock);
    if (rl_ingest_submit(h->ingest, &ir, on_reply, rq, &reply)) {
        pthread_mutex_unlock(&rq->lock);
        atomic_fetch_sub(&h->inflight, 1);
        return send_reply(rq, &reply);
    }
    /* Pending. on_reply needs rq->lock, so it cannot run until we decide. */
    rq->suspended = 1;
    MHD_suspend_connection(conn);
    pthread_mutex_unlock(&rq->lock);
    return MHD_YES;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    rl_http_t *h = cls;
    req_t *rq = *con_cls;

    rl_connguard_done(h->guard, conn_of(conn));
    if (toe == MHD_REQUEST_TERMINATED_TIMEOUT_REACHED)
        rl_metric_add(h->m_idle, 1);
    if (!rq)
        return;
    if (!rq->began) { /* refused by libmicrohttpd itself */
        const union MHD_ConnectionInfo *st =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_HTTP_STATUS);
        if (st && st->http_status == MHD_HTTP_REQUEST_HEADER_FIELDS_TOO_LARGE)
            rl_metric_add(h->m_header, 1);
    }
    if (rq->submitted && rq->have_reply)
        atomic_fetch_sub(&h->inflight, 1);
    if (rq->submitted && toe == MHD_REQUEST_TERMINATED_COMPLETED_OK)
        rl_metric_observe_us(h->m_request, rl_clock_mono_us() - rq->start_us);
    free(rq->reply.body);
    free(rq->body);
    free(rq->source);
    pthread_mutex_destroy(&rq->lock);
    free(rq);
    *con_cls = NULL;
}

/* Connections: connguard counts them, limits them and times their requests. */
static enum MHD_Result on_accept(void *cls, const struct sockaddr *addr, socklen_t addrlen)
{
    rl_http_t *h = cls;
    return rl_connguard_admit(h->guard, addr, addrlen) ? MHD_YES : MHD_NO;
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    rl_http_t *h = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *fd =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        const union MHD_ConnectionInfo *ai =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        const struct sockaddr *a = ai ? ai->client_addr : NULL;
        socklen_t alen = a && a->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                       : sizeof(struct sockaddr_in);
        *socket_context = rl_connguard_open(h->guard, fd ? fd->connect_fd : -1, a, alen);
    } else {
        rl_connguard_close(h->guard, *socket_context);
        *socket_context = NULL;
    }
}

static void mhd_log(void *arg, const char *fmt, va_list ap)
{
    rl_http_t *h = arg;
    char msg[512];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    msg[strcspn(msg, "\n")] = '\0';
    /* A request line longer than http.max_header is refused (414) before any
     * callback of ours sees the request; this message is the only trace. */
    if (h && strstr(msg, "response code is 414"))
        rl_metric_add(h->m_header, 1);
    /* Once serving, what libmicrohttpd reports is what clients did wrong, which
     * the metrics count: at warn level a hostile client could flood the log. */
    rl_log(h && atomic_load(&h->serving) ? RL_LOG_DEBUG : RL_LOG_WARN, "http: %s", msg);
}

/* The whole of a PEM file, NUL-terminated (libmicrohttpd takes them in memory). */
static char *read_pem(const char *path, const char *what, char *errstr, size_t errstr_size)
{
    FILE *f = fopen(path, "r");
    char *buf = NULL;
    size_t n = 0;

    if (!f) {
        rl_seterr(errstr, errstr_size, "http.%s %s: %s", what, path, strerror(errno));
        return NULL;
    }
    if ((buf = malloc(PEM_MAX + 1)))
        n = fread(buf, 1, PEM_MAX + 1, f);
    fclose(f);
    if (!buf || n == 0 || n > PEM_MAX) {
        rl_seterr(errstr, errstr_size, "http.%s %s: %s", what, path,
                  !buf ? "out of memory"
                  : n  ? "larger than 1 MiB"
                       : "empty");
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    return buf;
}

static int resolve(const char *listen, struct sockaddr_storage *ss, char *errstr,
                   size_t errstr_size)
{
    char host[256];
    const char *colon = strrchr(listen, ':');
    struct addrinfo hints = {0}, *res = NULL;
    int rc;

    if (!colon || (size_t)(colon - listen) >= sizeof(host)) {
        rl_seterr(errstr, errstr_size, "http.listen '%s' is not host:port", listen);
        return -1;
    }
    snprintf(host, sizeof(host), "%.*s", (int)(colon - listen), listen);
    if (host[0] == '[') { /* [::1]:8080 */
        memmove(host, host + 1, strlen(host));
        host[strcspn(host, "]")] = '\0';
    }
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    rc = getaddrinfo(*host ? host : NULL, colon + 1, &hints, &res);
    if (rc != 0) {
        rl_seterr(errstr, errstr_size, "http.listen '%s': %s", listen, gai_strerror(rc));
        return -1;
    }
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    return 0;
}

static void render_hook(void *arg)
{
    rl_http_t *h = arg;
    rl_metric_set(h->m_inflight, atomic_load(&h->inflight));
}

rl_http_t *rl_http_new(const rl_config_t *cfg, rl_ingest_t *ingest, rl_state_t *state,
                       rl_metrics_t *metrics, rl_ready_fn ready, void *ready_arg, char *errstr,
                       size_t errstr_size)
{
    struct sockaddr_storage ss;
    rl_http_t *h = calloc(1, sizeof(*h));
    int ok = 0;

    if (!h) {
        rl_seterr(errstr, errstr_size, "out of memory");
        goto out;
    }
    h->cfg = cfg;
    h->ingest = ingest;
    h->state = state;
    h->metrics = metrics;
    h->ready = ready;
    h->ready_arg = ready_arg;
    h->req_metric = calloc(cfg->nsources + 1, sizeof(*h->req_metric));
    h->m_body = calloc(cfg->nsources + 1, sizeof(*h->m_body));
    if (!h->req_metric || !h->m_body)
        goto out;
    for (size_t s = 0; s < cfg->nsources; s++) {
        char l[256];
        snprintf(l, sizeof(l), "limit=\"max_body\",source=\"%s\"", cfg->sources[s].name);
        h->m_body[s] = rl_metrics_counter(metrics, RL_LIMIT_HITS, l, RL_LIMIT_HITS_HELP);
    }
    h->m_header =
        rl_metrics_counter(metrics, RL_LIMIT_HITS, "limit=\"max_header\"", RL_LIMIT_HITS_HELP);
    h->m_idle = rl_metrics_counter(metrics, RL_LIMIT_HITS, "limit=\"timeout\"", RL_LIMIT_HITS_HELP);
    h->m_framing = rl_metrics_counter(
        metrics, "relay_http_ambiguous_framing_total", "",
        "Requests with both Content-Length and Transfer-Encoding (read by the latter; the "
        "connection is closed after the answer, RFC 9112 section 6.1).");
    rl_connguard_opts_t go = {.max_total = (size_t)cfg->http.max_connections,
                              .max_per_ip = (size_t)cfg->http.max_connections_per_ip,
                              .request_timeout_ms = (int)(cfg->http.request_timeout * 1000),
                              .tick_ms = 0};
    if (!(h->guard = rl_connguard_new(&go, metrics, errstr, errstr_size)))
        goto out;
    int tls = *cfg->http.tls_cert != '\0';
    if (tls && (!(h->tls_cert = read_pem(cfg->http.tls_cert, "tls_cert", errstr, errstr_size)) ||
                !(h->tls_key = read_pem(cfg->http.tls_key, "tls_key", errstr, errstr_size))))
        goto out;
    for (size_t s = 0; s <= cfg->nsources; s++) {
        for (size_t i = 0; i < NCODES; i++) {
            char l[256];
            snprintf(l, sizeof(l), "source=\"%s\",code=\"%d\"",
                     s < cfg->nsources ? cfg->sources[s].name : "_unknown", codes[i]);
            h->req_metric[s][i] = rl_metrics_counter(metrics, "relay_http_requests_total", l,
                                                     "Webhook requests by source and status.");
        }
    }
    h->m_request = rl_metrics_histogram(
        metrics, "relay_http_request_seconds", "",
        "Webhook requests that reached ingest, from their request line being read to their "
        "answer being handed to the socket (reading the body, ingest, writing the answer): "
        "what a client sees beyond this is the network and the wait for a worker thread.");
    h->m_inflight = rl_metrics_gauge(metrics, "relay_http_inflight", "",
                                     "Webhook requests waiting for their answer (the WAL, or "
                                     "the sinks with ack = publish); they hold no thread.");
    rl_metrics_on_render(metrics, render_hook, h);
    if (resolve(cfg->http.listen, &ss, errstr, errstr_size) != 0)
        goto out;
    unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL |
                         MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG | MHD_USE_TURBO |
                         (tls ? MHD_USE_TLS : 0);
    /* Single-pointer options go in ptr_value (libmicrohttpd's MHD_OPTION_ARRAY). */
    struct MHD_OptionItem tls_opts[] = {
        {MHD_OPTION_HTTPS_MEM_CERT, 0, h->tls_cert},
        {MHD_OPTION_HTTPS_MEM_KEY, 0, h->tls_key},
        {MHD_OPTION_HTTPS_PRIORITIES, 0, (void *)TLS_PRIORITIES},
        {MHD_OPTION_END, 0, NULL},
    };
    if (ss.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    uint16_t port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                   : ((struct sockaddr_in *)&ss)->sin_port);
    /* libmicrohttpd's own connection limit is split among its threads; ours
     * (connguard, through on_accept) is the real one, so its own is set where
     * no thread can reach it first. */
    h->d = MHD_start_daemon(flags, port, on_accept, h, on_request, h, MHD_OPTION_EXTERNAL_LOGGER,
                            mhd_log, h, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
                            MHD_OPTION_THREAD_POOL_SIZE, (unsigned int)cfg->http.threads,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)cfg->http.timeout,
                            MHD_OPTION_CONNECTION_LIMIT,
                            (unsigned int)(cfg->http.max_connections * cfg->http.threads),
                            MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)cfg->http.max_header,
                            MHD_OPTION_URI_LOG_CALLBACK, on_uri, h, MHD_OPTION_NOTIFY_CONNECTION,
                            on_connection, h, MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
                            MHD_OPTION_ARRAY, tls ? tls_opts : tls_opts + 3, MHD_OPTION_END);
    if (!h->d) {
        rl_seterr(errstr, errstr_size, "cannot listen on %s (address in use or not permitted)",
                  cfg->http.listen);
        goto out;
    }
    atomic_store(&h->serving, 1);
    rl_info("http: listening on %s (%lld threads%s)", cfg->http.listen, cfg->http.threads,
            tls ? ", TLS" : "");
    ok = 1;
out:
    if (!ok) {
        rl_http_destroy(h);
        h = NULL;
    }
    return h;
}

void rl_http_quiesce(rl_http_t *h)
{
    if (h && h->d) {
        atomic_store(&h->closing, 1);
        MHD_socket s = MHD_quiesce_daemon(h->d);
        if (s != MHD_INVALID_SOCKET)
            close(s);
        else
            rl_warn("http: cannot stop listening before the in-flight requests are answered");
    }
}

int rl_http_inflight(rl_http_t *h)
{
    return h ? atomic_load(&h->inflight) : 0;
}

void rl_http_destroy(rl_http_t *h)
{
    if (!h)
        return;
    if (h->d)
        MHD_stop_daemon(h->d);
    rl_metrics_off_render(h->metrics, render_hook, h); /* before h is freed */
    rl_connguard_destroy(h->guard); /* after the daemon: it closed every connection */
    free(h->req_metric);
    free(h->m_body);
    if (h->tls_key)
        explicit_bzero(h->tls_key, strlen(h->tls_key));
    free(h->tls_key);
    free(h->tls_cert);
    free(h);
}
