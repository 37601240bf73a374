/* http.c -- routing, limits and the suspend/resume dance with the WAL.
 *
 * The race to close: the WAL may call back before the handler has suspended the
 * connection. Each request has a small lock; the handler suspends only if no
 * reply has arrived, and the callback resumes only a suspended connection. */
#include "http.h"

#include "log.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define WEBHOOK_PREFIX "/v1/webhooks/"

static const int codes[] = {200, 400, 401, 404, 405, 413, 415, 429, 500, 503};
#define NCODES (sizeof(codes) / sizeof(codes[0]))

struct rl_http {
    struct MHD_Daemon *d;
    const rl_config_t *cfg;
    rl_ingest_t *ingest;
    rl_metrics_t *metrics;
    rl_ready_fn ready;
    void *ready_arg;
    _Atomic int inflight;
    _Atomic int closing; /* quiesced: every answer closes its connection */
    /* requests[source][code]; the last row is for unknown sources */
    rl_metric_t *(*req_metric)[NCODES];
    rl_metric_t *m_inflight;
};

typedef struct req {
    rl_http_t *h;
    struct MHD_Connection *conn;
    int src_idx; /* -1 unknown */
    int webhook;
    char *source;
    char *body;
    size_t len, cap;
    int too_large;
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

static enum MHD_Result send_buf(rl_http_t *h, struct MHD_Connection *c, int status,
                                const char *ctype, char *body, size_t len, int retry_after)
{
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
    if (atomic_load(&h->closing))
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
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
    return send_buf(rq->h, rq->conn, reply->status, "application/json", body,
                    body ? strlen(body) : 0, reply->retry_after);
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

static enum MHD_Result handle_get(req_t *rq, const char *url)
{
    rl_http_t *h = rq->h;
    if (!strcmp(url, "/healthz"))
        return send_buf(h, rq->conn, 200, "application/json", strdup("{\"status\":\"ok\"}"), 15, 0);
    if (!strcmp(url, "/readyz")) {
        int ok = 1;
        char *s = h->ready ? h->ready(h->ready_arg, &ok) : strdup("{\"status\":\"ready\"}");
        if (!s)
            return send_error(rq, 500, "internal", "out of memory");
        return send_buf(h, rq->conn, ok ? 200 : 503, "application/json", s, strlen(s), ok ? 0 : 5);
    }
    if (!strcmp(url, "/metrics")) {
        size_t len = 0;
        char *s = rl_metrics_render(h->metrics, &len);
        return send_buf(h, rq->conn, s ? 200 : 500, "text/plain; version=0.0.4; charset=utf-8", s,
                        s ? len : 0, 0);
    }
    return send_error(rq, 404, "not_found", "no such route");
}

/* First call of a request: routing and the checks that need no body. */
static enum MHD_Result begin(req_t *rq, const char *url, const char *method)
{
    rl_http_t *h = rq->h;
    const char *cl, *ct;

    if (strncmp(url, WEBHOOK_PREFIX, strlen(WEBHOOK_PREFIX)) != 0) {
        if (strcmp(method, "GET") && strcmp(method, "HEAD"))
            return send_error(
                rq,
                strcmp(url, "/healthz") && strcmp(url, "/readyz") && strcmp(url, "/metrics") ? 404
                                                                                             : 405,
                "method_not_allowed", "use GET");
        return handle_get(rq, url);
    }
    rq->webhook = 1;
    rq->source = strdup(url + strlen(WEBHOOK_PREFIX));
    for (size_t i = 0; rq->source && i < h->cfg->nsources; i++)
        if (!strcmp(h->cfg->sources[i].name, rq->source))
            rq->src_idx = (int)i;
    if (rq->src_idx < 0)
        return send_error(rq, 404, "unknown_source", "no such source is configured");
    if (strcmp(method, "POST") != 0)
        return send_error(rq, 405, "method_not_allowed", "webhooks are POSTed");
    ct = MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
    if (ct && !json_content_type(ct))
        return send_error(rq, 415, "unsupported_media_type", "the body must be application/json");
    cl = MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl && strtoull(cl, NULL, 10) > (unsigned long long)h->cfg->http.max_body)
        return send_error(rq, 413, "payload_too_large", "the body is larger than http.max_body");
    return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    rl_http_t *h = cls;
    req_t *rq = *con_cls;
    (void)version;

    if (!rq) {
        if (!(rq = calloc(1, sizeof(*rq))))
            return MHD_NO;
        rq->h = h;
        rq->conn = conn;
        rq->src_idx = -1;
        pthread_mutex_init(&rq->lock, NULL);
        *con_cls = rq;
        return begin(rq, url, method);
    }
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (rq->too_large || rq->len + n > (size_t)h->cfg->http.max_body) {
            rq->too_large = 1; /* chunked bodies have no Content-Length to check early */
            return MHD_YES;
        }
        if (rq->len + n > rq->cap) {
            size_t cap = rq->cap ? rq->cap : 4096;
            while (cap < rq->len + n)
                cap *= 2;
            char *b = realloc(rq->body, cap);
            if (!b)
                return MHD_NO;
            rq->body = b;
            rq->cap = cap;
        }
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

    rl_ingest_req_t ir = {rq->source, (const uint8_t *)rq->body, rq->len, header_of, conn};
    rl_reply_t reply = {0};
    rq->submitted = 1;
    atomic_fetch_add(&h->inflight, 1);
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
    (void)conn;
    (void)toe;
    if (!rq)
        return;
    if (rq->submitted && rq->have_reply)
        atomic_fetch_sub(&h->inflight, 1);
    free(rq->reply.body);
    free(rq->body);
    free(rq->source);
    pthread_mutex_destroy(&rq->lock);
    free(rq);
    *con_cls = NULL;
}

static void mhd_log(void *arg, const char *fmt, va_list ap)
{
    char msg[512];
    (void)arg;
    vsnprintf(msg, sizeof(msg), fmt, ap);
    msg[strcspn(msg, "\n")] = '\0';
    rl_warn("http: %s", msg);
}

static int resolve(const char *listen, struct sockaddr_storage *ss, char *errstr,
                   size_t errstr_size)
{
    char host[256];
    const char *colon = strrchr(listen, ':');
    struct addrinfo hints = {0}, *res = NULL;
    int rc;

    if (!colon || (size_t)(colon - listen) >= sizeof(host)) {
        snprintf(errstr, errstr_size, "http.listen '%s' is not host:port", listen);
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
        snprintf(errstr, errstr_size, "http.listen '%s': %s", listen, gai_strerror(rc));
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

rl_http_t *rl_http_new(const rl_config_t *cfg, rl_ingest_t *ingest, rl_metrics_t *metrics,
                       rl_ready_fn ready, void *ready_arg, char *errstr, size_t errstr_size)
{
    struct sockaddr_storage ss;
    rl_http_t *h = calloc(1, sizeof(*h));
    int ok = 0;

    if (!h) {
        snprintf(errstr, errstr_size, "out of memory");
        goto out;
    }
    h->cfg = cfg;
    h->ingest = ingest;
    h->metrics = metrics;
    h->ready = ready;
    h->ready_arg = ready_arg;
    h->req_metric = calloc(cfg->nsources + 1, sizeof(*h->req_metric));
    if (!h->req_metric)
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
    h->m_inflight = rl_metrics_gauge(metrics, "relay_http_inflight", "",
                                     "Webhook requests waiting for their answer (the WAL, or "
                                     "the sinks with ack = publish); they hold no thread.");
    rl_metrics_on_render(metrics, render_hook, h);
    if (resolve(cfg->http.listen, &ss, errstr, errstr_size) != 0)
        goto out;
    unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL |
                         MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG | MHD_USE_TURBO;
    if (ss.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    uint16_t port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                   : ((struct sockaddr_in *)&ss)->sin_port);
    h->d = MHD_start_daemon(flags, port, NULL, NULL, on_request, h, MHD_OPTION_EXTERNAL_LOGGER,
                            mhd_log, NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
                            MHD_OPTION_THREAD_POOL_SIZE, (unsigned int)cfg->http.threads,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)cfg->http.timeout,
                            MHD_OPTION_CONNECTION_LIMIT, (unsigned int)cfg->http.max_connections,
                            MHD_OPTION_NOTIFY_COMPLETED, on_completed, h, MHD_OPTION_END);
    if (!h->d) {
        snprintf(errstr, errstr_size, "cannot listen on %s (address in use or not permitted)",
                 cfg->http.listen);
        goto out;
    }
    rl_info("http: listening on %s (%lld threads)", cfg->http.listen, cfg->http.threads);
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
    free(h->req_metric);
    free(h);
}
