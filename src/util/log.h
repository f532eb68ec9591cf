/*
 * Process-wide logging for the runtime layers (storage, net, node, server,
 * mr).  The pure Raft core never logs; it reports through its update.
 *
 * Two line formats.  Processes that name no node (craft-mr, the tools)
 * write: ISO-8601 UTC time with milliseconds, a level letter, the process
 * identity, then the message:
 *   2026-11-29T14:05:02.123Z I mr-worker registered as worker 3
 *
 * craftd names its node (log_set_node()), and every line is then a
 * structured event (docs/operations.md, "Log lines"):
 *   TIME LEVEL node=ID term=T role=ROLE event=NAME [key=value ...] [-- text]
 *   2026-11-29T16:40:01.123Z I node=2 term=5 role=leader event=became_leader
 * where TIME is RFC 3339 UTC with milliseconds, LEVEL a letter (D I W E),
 * ROLE follower, pre-candidate, candidate or leader, NAME a lower-case
 * word with underscores, each value either a bare word without blanks or
 * "double quoted" (\" and \\ escaped), and an optional free-text tail
 * after " -- " for humans.  Lines written with log_printf() (messages not
 * yet given an event name) are events named after their level (info,
 * warning, error, debug) with the message as the tail.  With
 * log_set_format(LOG_FORMAT_JSON) the same content is one JSON object per
 * line.
 *
 * Lines are written with one write() each so that concurrent processes
 * appending to one file never interleave within a line.
 */
#ifndef CRAFT_UTIL_LOG_H
#define CRAFT_UTIL_LOG_H

#include <stddef.h>
#include <stdint.h>

enum log_level { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR, LOG_OFF };
enum log_format { LOG_FORMAT_TEXT = 0, LOG_FORMAT_JSON };

/* The longest line written; longer ones are cut (a JSON line is closed). */
#define LOG_LINE_MAX 1024

/* Where lines go (an open file descriptor; default 2) and the minimum level
 * (default LOG_INFO).  Not thread-safe: call before starting threads. */
void log_set_fd(int fd);
void log_set_level(enum log_level level);
void log_set_ident(const char *ident);
void log_set_format(enum log_format format);

/*
 * Make every line a structured event of node `id`.  ctx (may be NULL) is
 * called for each line, on the thread that logs, to fill in the current
 * term and role name (a static string); with no ctx they are 0 and
 * "follower".  Call before starting threads.
 */
typedef void (*log_context_fn)(void *arg, uint64_t *term, const char **role);
void log_set_node(uint64_t id, log_context_fn ctx, void *arg);

/* Parse "debug", "info", "warn", "error" or "off".  0 or CRAFT_EINVAL. */
int log_level_parse(const char *s, enum log_level *level);
/* Parse "text" or "json".  0 or CRAFT_EINVAL. */
int log_format_parse(const char *s, enum log_format *format);

enum log_level log_get_level(void);

void log_printf(enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/*
 * One event.  fields (may be NULL) is a printf format producing
 * space-separated key=value pairs; a value that may hold blanks or quotes
 * must be written with log_quote().  A tail for humans may follow the
 * fields after " -- ".  Without a node (log_set_node()) the line is
 * written in the plain format with the event name as its first word.
 */
void log_event(enum log_level level, const char *event, const char *fields, ...)
    __attribute__((format(printf, 3, 4)));

/* s as a field value: unchanged if it is a non-empty word without blanks,
 * quotes or '=', otherwise double-quoted with \" and \\ escaped (and
 * control bytes as \xHH).  Always NUL-terminates out; returns out. */
const char *log_quote(const char *s, char *out, size_t cap);

#define LOG_DEBUGF(...) log_printf(LOG_DEBUG, __VA_ARGS__)
#define LOG_INFOF(...) log_printf(LOG_INFO, __VA_ARGS__)
#define LOG_WARNF(...) log_printf(LOG_WARN, __VA_ARGS__)
#define LOG_ERRORF(...) log_printf(LOG_ERROR, __VA_ARGS__)

#endif /* CRAFT_UTIL_LOG_H */
