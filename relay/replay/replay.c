/* replay.c -- relay replay: a range reader feeding a second instance of a sink,
 * and a thread that retires each replay once its range is published. */
#include "replay.h"

#include "clock.h"
#include "err.h"
#include "log.h"
#include "record.h"
#include "sink.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define CHECK_MS 200

/* ENDING: its instance is being torn down (no lock held); still in the way of
 * a new replay to the sink, and shown from `last`. */
enum { JOB_NONE, JOB_RUNNING, JOB_DONE, JOB_STOPPED, JOB_ENDING };

/* One replay to one sink. The filter fields are read by the sink's thread
 * (through the range reader) and fixed while it runs. */
typedef struct job {
    int state;
    const char *sink; /* "kafka" or "redis" */
    char name[32];    /* "<sink>-replay" */
    int64_t since_ms, until_ms;
    char *channel, *type;
    rl_wal_reader_t *reader;
    rl_sink_t *instance;
    rl_wal_range_progress_t last; /* when it ended */
    int64_t started_ms, ended_ms; /* monotonic */
    rl_metric_t *m_running, *m_events, *m_remaining;
} job_t;

struct rl_replay {
    const rl_config_t *cfg;
    rl_wal_t *wal;
    rl_metrics_t *metrics;
    pthread_mutex_t lock;
    pthread_cond_t cv;
    pthread_t thread;
    int stop, started;
    job_t jobs[2]; /* kafka, redis */
};

static int take(void *arg, uint64_t seq, const uint8_t *p, size_t len)
{
    const job_t *j = arg;
    rl_record_t rec;
    (void)seq;
    if (rl_record_decode(p, len, &rec) != 0)
        return 0; /* a sink would refuse it too */
    if (j->since_ms && rec.received_ms < (uint64_t)j->since_ms)
        return 0;
    if (j->until_ms && rec.received_ms > (uint64_t)j->until_ms)
        return 0;
    if (j->channel && (rec.channel_id_len != strlen(j->channel) ||
                       memcmp(rec.channel_id, j->channel, rec.channel_id_len)))
        return 0;
    if (j->type && (rec.type_len != strlen(j->type) || memcmp(rec.type, j->type, rec.type_len)))
        return 0;
    return 1;
}

/* Ends a running replay: the caller holds the lock; it is dropped while the
 * instance's thread is joined, and held again on return. */
static void job_end(rl_replay_t *rp, job_t *j, int state)
{
    rl_wal_range_progress(j->reader, &j->last);
    j->state = JOB_ENDING;
    pthread_mutex_unlock(&rp->lock);
    rl_sink_destroy(j->instance);
    rl_wal_range_close(j->reader);
    j->instance = NULL;
    j->reader = NULL;
    j->ended_ms = rl_clock_mono_ms();
    rl_metric_set(j->m_running, 0);
    rl_metric_set(j->m_remaining, 0);
    rl_metric_set(j->m_events, (int64_t)j->last.matched);
    rl_info("%s: %s: %llu events of seq %llu..%llu published in %.1f s%s", j->name,
            state == JOB_DONE ? "done" : "stopped", (unsigned long long)j->last.matched,
            (unsigned long long)j->last.from, (unsigned long long)j->last.until,
            (double)(j->ended_ms - j->started_ms) / 1000.0,
            j->last.gap ? " (a segment of the range was deleted before it was read: "
                          "wal.max_size gave its room to new events)"
                        : "");
    pthread_mutex_lock(&rp->lock);
    j->state = state;
}

static void *monitor_main(void *arg)
{
    rl_replay_t *rp = arg;
    pthread_mutex_lock(&rp->lock);
    while (!rp->stop) {
        rl_cond_wait_ms(&rp->cv, &rp->lock, CHECK_MS);
        for (size_t i = 0; i < 2 && !rp->stop; i++) {
            job_t *j = &rp->jobs[i];
            rl_wal_range_progress_t p;
            if (j->state != JOB_RUNNING)
                continue;
            rl_wal_range_progress(j->reader, &p);
            rl_metric_set(j->m_events, (int64_t)p.matched);
            rl_metric_set(j->m_remaining,
                          p.done || p.committed >= p.until ? 0 : (int64_t)(p.until - p.committed));
            if (p.done)
                job_end(rp, j, JOB_DONE);
        }
    }
    pthread_mutex_unlock(&rp->lock);
    return NULL;
}

rl_replay_t *rl_replay_new(const rl_config_t *cfg, rl_wal_t *wal, rl_metrics_t *metrics,
                           char *errstr, size_t errstr_size)
{
    rl_replay_t *rp = calloc(1, sizeof(*rp));
    if (!rp)
        goto fail;
    rp->cfg = cfg;
    rp->wal = wal;
    rp->metrics = metrics;
    pthread_mutex_init(&rp->lock, NULL);
    rl_cond_init(&rp->cv);
    for (size_t i = 0; i < 2; i++) {
        job_t *j = &rp->jobs[i];
        char labels[64];
        j->sink = i == 0 ? "kafka" : "redis";
        snprintf(j->name, sizeof(j->name), "%s-replay", j->sink);
        snprintf(labels, sizeof(labels), "sink=\"%s\"", j->sink);
        j->m_running = rl_metrics_gauge(metrics, "relay_replay_running", labels,
                                        "1 while a relay replay to the sink runs.");
        j->m_events = rl_metrics_gauge(
            metrics, "relay_replay_events", labels,
            "Events the running (or last) replay to the sink has taken from the WAL.");
        j->m_remaining = rl_metrics_gauge(
            metrics, "relay_replay_remaining_records", labels,
            "WAL records of the running replay's range not yet read or acknowledged.");
    }
    if (pthread_create(&rp->thread, NULL, monitor_main, rp) != 0)
        goto fail;
    rp->started = 1;
    return rp;
fail:
    rl_seterr(errstr, errstr_size, "cannot start the replayer: out of memory");
    rl_replay_destroy(rp);
    return NULL;
}

static int sink_enabled(const rl_config_t *cfg, const char *sink)
{
    return !strcmp(sink, "kafka") ? (int)cfg->kafka.enabled : (int)cfg->redis.enabled;
}

/* Starts job j (lock not held; j not running). */
static int job_start(rl_replay_t *rp, job_t *j, const rl_replay_req_t *req, char *errstr,
                     size_t errstr_size)
{
    uint64_t from = req->from_seq ? req->from_seq : rl_wal_seq_since(rp->wal, req->since_ms);
    uint64_t until = req->until_seq ? req->until_seq : rl_wal_durable_seq(rp->wal);
    rl_wal_stats_t st;

    rl_wal_stats(rp->wal, &st);
    if (from < st.first_seq)
        from = st.first_seq;
    if (!st.first_seq || from > until || from > st.durable_seq) {
        rl_seterr(errstr, errstr_size,
                  "nothing retained in that range (the WAL holds seq %llu..%llu)",
                  (unsigned long long)st.first_seq, (unsigned long long)st.durable_seq);
        return -1;
    }
    free(j->channel);
    free(j->type);
    j->channel = req->channel && *req->channel ? strdup(req->channel) : NULL;
    j->type = req->type && *req->type ? strdup(req->type) : NULL;
    j->since_ms = req->since_ms;
    j->until_ms = req->until_ms;
    if (!(j->reader = rl_wal_range_open(rp->wal, from, until, take, j, errstr, errstr_size)))
        return -1;
    j->instance =
        !strcmp(j->sink, "kafka")
            ? rl_sink_kafka_new(rp->cfg, j->name, j->reader, rp->metrics, errstr, errstr_size)
            : rl_sink_redis_new(rp->cfg, j->name, j->reader, rp->metrics, errstr, errstr_size);
    if (!j->instance) {
        rl_wal_range_close(j->reader);
        j->reader = NULL;
        return -1;
    }
    j->started_ms = rl_clock_mono_ms();
    memset(&j->last, 0, sizeof(j->last));
    rl_metric_set(j->m_running, 1);
    rl_info("%s: started: seq %llu..%llu%s%s%s%s", j->name, (unsigned long long)from,
            (unsigned long long)until, j->channel ? ", channel " : "", j->channel ? j->channel : "",
            j->type ? ", type " : "", j->type ? j->type : "");
    return 0;
}

int rl_replay_start(rl_replay_t *rp, const rl_replay_req_t *req, char *errstr, size_t errstr_size)
{
    int want[2] = {0, 0}, rc = -1;
    const char *sink = req->sink ? req->sink : "";

    for (size_t i = 0; i < 2; i++)
        want[i] = (!strcmp(sink, "all") && sink_enabled(rp->cfg, rp->jobs[i].sink)) ||
                  !strcmp(sink, rp->jobs[i].sink);
    if (!want[0] && !want[1]) {
        rl_seterr(errstr, errstr_size, "sink '%s': say kafka, redis or all (of those enabled)",
                  sink);
        return -1;
    }
    pthread_mutex_lock(&rp->lock);
    for (size_t i = 0; i < 2; i++) {
        if (!want[i])
            continue;
        if (!sink_enabled(rp->cfg, rp->jobs[i].sink)) {
            rl_seterr(errstr, errstr_size, "%s is not enabled", rp->jobs[i].sink);
            goto out;
        }
        if (rp->jobs[i].state == JOB_RUNNING || rp->jobs[i].state == JOB_ENDING) {
            rl_seterr(errstr, errstr_size, "a replay to %s is running", rp->jobs[i].sink);
            goto out;
        }
    }
    /* Started with the lock held: the monitor looks only at running jobs, and
     * the constructors take no lock of ours. */
    for (size_t i = 0; i < 2; i++) {
        if (!want[i])
            continue;
        if (job_start(rp, &rp->jobs[i], req, errstr, errstr_size) != 0) {
            for (size_t k = 0; k < i; k++) /* undo the one started */
                if (want[k] && rp->jobs[k].state == JOB_RUNNING)
                    job_end(rp, &rp->jobs[k], JOB_STOPPED);
            goto out;
        }
        rp->jobs[i].state = JOB_RUNNING;
    }
    rc = 0;
out:
    pthread_mutex_unlock(&rp->lock);
    return rc;
}

json_t *rl_replay_status(rl_replay_t *rp)
{
    static const char *const states[] = {"none", "running", "done", "stopped", "running"};
    json_t *list = json_array();

    pthread_mutex_lock(&rp->lock);
    for (size_t i = 0; list && i < 2; i++) {
        job_t *j = &rp->jobs[i];
        rl_wal_range_progress_t p = j->last;
        if (j->state == JOB_NONE)
            continue;
        if (j->state == JOB_RUNNING)
            rl_wal_range_progress(j->reader, &p);
        int64_t end =
            j->state >= JOB_DONE && j->state != JOB_ENDING ? j->ended_ms : rl_clock_mono_ms();
        json_array_append_new(
            list, json_pack("{s:s,s:s,s:I,s:I,s:I,s:I,s:I,s:b,s:f}", "sink", j->sink, "state",
                            states[j->state], "from_seq", (json_int_t)p.from, "until_seq",
                            (json_int_t)p.until, "read_seq", (json_int_t)p.read_seq, "events",
                            (json_int_t)p.matched, "published_seq", (json_int_t)p.committed, "gap",
                            p.gap, "seconds", (double)(end - j->started_ms) / 1000.0));
    }
    pthread_mutex_unlock(&rp->lock);
    return list ? json_pack("{s:o}", "replays", list) : NULL;
}

void rl_replay_destroy(rl_replay_t *rp)
{
    if (!rp)
        return;
    if (rp->started) {
        pthread_mutex_lock(&rp->lock);
        rp->stop = 1;
        pthread_cond_broadcast(&rp->cv);
        pthread_mutex_unlock(&rp->lock);
        pthread_join(rp->thread, NULL);
    }
    pthread_mutex_lock(&rp->lock);
    for (size_t i = 0; i < 2; i++)
        if (rp->jobs[i].state == JOB_RUNNING)
            job_end(rp, &rp->jobs[i], JOB_STOPPED);
    pthread_mutex_unlock(&rp->lock);
    for (size_t i = 0; i < 2; i++) {
        job_t *j = &rp->jobs[i];
        free(j->channel);
        free(j->type);
    }
    pthread_cond_destroy(&rp->cv);
    pthread_mutex_destroy(&rp->lock);
    free(rp);
}
