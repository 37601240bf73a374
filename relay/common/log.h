/* log.h -- leveled logging to stderr (journald picks it up under systemd).
 *
 * Messages are written "module: what happened" (the module a lowercase word
 * before the first ": "). Two formats:
 *   - text (the default): "2026-12-05T11:27:28.123Z info  wal: ...";
 *   - json: one object per line, {"time":"…","level":"info","module":"wal",
 *     "message":"…","fields":{…}} ("module" left out when the message has no
 *     prefix, "fields" when it has none: rl_log_kv), for
 *     log shippers (Fluent Bit, Vector, Loki's promtail) that parse JSON.
 * One write per line keeps lines from different threads whole. The level and
 * the format are set once at start-up, before threads start.
 *
 * Never pass a secret to these functions: callers log names, never values. */
#ifndef RL_LOG_H
#define RL_LOG_H

enum { RL_LOG_DEBUG, RL_LOG_INFO, RL_LOG_WARN, RL_LOG_ERROR };

/* Sets the minimum level from "debug|info|warn|error"; returns -1 when unknown. */
int rl_log_set_level(const char *name);
/* Sets the format from "text|json"; returns -1 when unknown. */
int rl_log_set_format(const char *name);
void rl_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* rl_log with fields: kv is "name=value name=value" (names [a-z0-9_], values
 * without spaces). text appends them to the message; json puts them in a
 * "fields" object, a value that is a whole number as a number. kv may be NULL. */
void rl_log_kv(int level, const char *kv, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define rl_debug(...) rl_log(RL_LOG_DEBUG, __VA_ARGS__)
#define rl_info(...) rl_log(RL_LOG_INFO, __VA_ARGS__)
#define rl_warn(...) rl_log(RL_LOG_WARN, __VA_ARGS__)
#define rl_error(...) rl_log(RL_LOG_ERROR, __VA_ARGS__)

#endif
