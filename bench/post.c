/* post.c -- the benchmark's fixed-input client: POSTs N webhook requests over
 * one keep-alive connection, one after the other, and checks every answer is
 * 200. Each event has a new id (a counter), so none takes the dedup shortcut;
 * everything else is the same bytes every run, which is what makes relay's
 * instruction count under callgrind (bench/callgrind.sh) repeatable.
 *
 *   post PORT KIND N [FIRST]
 * KIND: timely (one Timely message.received per request) or whapi (one Whapi
 * messages.post batch of 10 per request). FIRST (default 0) is the first id
 * number, so that two runs against one relay do not repeat ids.
 * Prints "POST n=N status_200=N". Exit 1 on any other answer. */

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define WHAPI_BATCH 10

static int body_timely(char *b, size_t size, long id)
{
    return snprintf(b, size,
                    "{\"event\":\"message.received\",\"event_id\":\"evt_cg_%ld\","
                    "\"timestamp\":\"2026-04-19T14:30:00Z\",\"workspace_id\":\"ws_abc123\","
                    "\"data\":{\"message_id\":\"msg_cg_%ld\",\"conversation_id\":\"conv_01HX3B2K\","
                    "\"contact_id\":\"cont_456\",\"channel_id\":\"chan_%ld\","
                    "\"channel_type\":\"whatsapp\",\"content\":\"Oi, gostaria de saber sobre os "
                    "planos\",\"type\":\"text\",\"direction\":\"inbound\",\"media_url\":null,"
                    "\"media_mime_type\":null,\"location\":null,"
                    "\"received_at\":\"2026-04-19T14:30:00Z\"}}",
                    id, id, id % 50);
}

static int body_whapi(char *b, size_t size, long id)
{
    int n = snprintf(b, size, "{\"messages\":[");
    for (int i = 0; i < WHAPI_BATCH && n > 0 && (size_t)n < size; i++)
        n += snprintf(b + n, size - (size_t)n,
                      "%s{\"id\":\"wa_cg_%ld_%d\",\"from_me\":false,\"type\":\"text\","
                      "\"chat_id\":\"554791234567@s.whatsapp.net\",\"timestamp\":1776609000,"
                      "\"source\":\"mobile\",\"text\":{\"body\":\"Hello, message %d\"},"
                      "\"from\":\"554791234567\",\"from_name\":\"Bench\"}",
                      i ? "," : "", id, i, i);
    if (n > 0 && (size_t)n < size)
        n += snprintf(b + n, size - (size_t)n,
                      "],\"event\":{\"type\":\"messages\",\"event\":\"post\"},"
                      "\"channel_id\":\"WHAPI-%ld\"}",
                      id % 50);
    return n;
}

/* Reads one answer (headers, then Content-Length bytes of body) and returns
 * its status, or -1 when the connection ends or the answer is not HTTP. */
static int read_answer(int fd, char *buf, size_t size)
{
    size_t have = 0;
    char *end = NULL;
    while (!(end = memmem(buf, have, "\r\n\r\n", 4))) {
        if (have == size)
            return -1;
        ssize_t r = read(fd, buf + have, size - have);
        if (r <= 0)
            return -1;
        have += (size_t)r;
    }
    int status = -1;
    long clen = 0;
    if (sscanf(buf, "HTTP/1.1 %d", &status) != 1)
        return -1;
    char *cl = memmem(buf, (size_t)(end - buf), "\r\nContent-Length: ", 18);
    if (cl)
        clen = strtol(cl + 18, NULL, 10);
    size_t want = (size_t)(end + 4 - buf) + (size_t)clen;
    while (have < want) {
        char sink[4096];
        size_t chunk = want - have < sizeof(sink) ? want - have : sizeof(sink);
        ssize_t r = read(fd, sink, chunk);
        if (r <= 0)
            return -1;
        have += (size_t)r;
    }
    return status;
}

int main(int argc, char **argv)
{
    if (argc < 4 || (strcmp(argv[2], "timely") && strcmp(argv[2], "whapi"))) {
        fprintf(stderr, "usage: post PORT timely|whapi N [FIRST]\n");
        return 2;
    }
    int port = atoi(argv[1]), whapi = strcmp(argv[2], "whapi") == 0;
    long n = atol(argv[3]), first = argc > 4 ? atol(argv[4]) : 0, ok = 0;
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1, rc = 1;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    static char body[16384], req[17408], ans[16384];

    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        perror("post: connect");
        goto out;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    for (long i = 0; i < n; i++) {
        long id = first + i;
        int blen = whapi ? body_whapi(body, sizeof(body), id) : body_timely(body, sizeof(body), id);
        int len = snprintf(req, sizeof(req),
                           "POST /v1/webhooks/%s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                           "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
                           whapi ? "whapi" : "timely", blen, body);
        for (int off = 0; off < len;) {
            ssize_t w = write(fd, req + off, (size_t)(len - off));
            if (w <= 0) {
                perror("post: write");
                goto out;
            }
            off += (int)w;
        }
        int status = read_answer(fd, ans, sizeof(ans));
        if (status != 200) {
            fprintf(stderr, "post: request %ld answered %d\n", i, status);
            goto out;
        }
        ok++;
    }
    rc = 0;
out:
    printf("POST n=%ld status_200=%ld\n", n, ok);
    if (fd >= 0)
        close(fd);
    return rc;
}
