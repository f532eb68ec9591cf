/*
 * Process-wide logging for the runtime layers (storage, net, node, server,
 * mr).  The pure Raft core never logs; it reports through its update.
 *
 * A line is: ISO-8601 UTC time with milliseconds, a level letter, the
 * process identity (e.g. "n1" or "mr-worker"), then the message:
 *   2026-11-29T14:05:02.123Z I n1 ready
 * Lines are written with one write() each so that concurrent processes
 * appending to one file never interleave within a line.
 */
#ifndef CRAFT_UTIL_LOG_H
#define CRAFT_UTIL_LOG_H

enum log_level { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR, LOG_OFF };

/* Where lines go (an open file descriptor; default 2) and the minimum level
 * (default LOG_INFO).  Not thread-safe: call before starting threads. */
void log_set_fd(int fd);
void log_set_level(enum log_level level);
void log_set_ident(const char *ident);

/* Parse "debug", "info", "warn", "error" or "off".  0 or CRAFT_EINVAL. */
int log_level_parse(const char *s, enum log_level *level);

enum log_level log_get_level(void);

void log_printf(enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define LOG_DEBUGF(...) log_printf(LOG_DEBUG, __VA_ARGS__)
#define LOG_INFOF(...) log_printf(LOG_INFO, __VA_ARGS__)
#define LOG_WARNF(...) log_printf(LOG_WARN, __VA_ARGS__)
#define LOG_ERRORF(...) log_printf(LOG_ERROR, __VA_ARGS__)

#endif /* CRAFT_UTIL_LOG_H */
