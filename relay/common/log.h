/* log.h -- leveled logging to stderr (journald picks it up under systemd).
 * Never pass a secret to these functions: callers log names, never values. */
#ifndef RL_LOG_H
#define RL_LOG_H

enum { RL_LOG_DEBUG, RL_LOG_INFO, RL_LOG_WARN, RL_LOG_ERROR };

/* Sets the minimum level from "debug|info|warn|error"; returns -1 when unknown. */
int rl_log_set_level(const char *name);
void rl_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define rl_debug(...) rl_log(RL_LOG_DEBUG, __VA_ARGS__)
#define rl_info(...) rl_log(RL_LOG_INFO, __VA_ARGS__)
#define rl_warn(...) rl_log(RL_LOG_WARN, __VA_ARGS__)
#define rl_error(...) rl_log(RL_LOG_ERROR, __VA_ARGS__)

#endif
