#include "util/log.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "craft/common.h"

static int log_fd = 2;
static enum log_level log_level = LOG_INFO;
static enum log_format log_format = LOG_FORMAT_TEXT;
static char log_ident[32] = "craft";
static uint64_t log_node;
static log_context_fn log_ctx;
static void *log_ctx_arg;

static const char *const level_names[] = {"debug", "info", "warn", "error",
                                          "off"};
/* The event name of a plain log_printf() line, by level. */
static const char *const level_events[] = {"debug", "info", "warning", "error"};

void log_set_fd(int fd)
{
    log_fd = fd;
}

void log_set_level(enum log_level level)
{
    log_level = level;
}

enum log_level log_get_level(void)
{
    return log_level;
}

void log_set_ident(const char *ident)
{
    snprintf(log_ident, sizeof log_ident, "%s", ident);
}

void log_set_format(enum log_format format)
{
    log_format = format;
}

void log_set_node(uint64_t id, log_context_fn ctx, void *arg)
{
    log_node = id;
    log_ctx = ctx;
    log_ctx_arg = arg;
}

int log_level_parse(const char *s, enum log_level *level)
{
    for (unsigned i = 0; i < sizeof level_names / sizeof level_names[0]; i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *level = (enum log_level)i;
            return 0;
        }
    }
    return CRAFT_EINVAL;
}

int log_format_parse(const char *s, enum log_format *format)
{
    if (strcmp(s, "text") == 0) {
        *format = LOG_FORMAT_TEXT;
        return 0;
    }
    if (strcmp(s, "json") == 0) {
        *format = LOG_FORMAT_JSON;
        return 0;
    }
    return CRAFT_EINVAL;
}

const char *log_quote(const char *s, char *out, size_t cap)
{
    if (cap == 0) {
        return out;
    }
    bool bare = s[0] != '\0' && strcspn(s, " \t\r\n\"=\\") == strlen(s);
    if (bare) {
        snprintf(out, cap, "%s", s);
        return out;
    }
    size_t n = 0;
    out[n++] = '"';
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        char tmp[5];
        size_t k;
        if (*p == '"' || *p == '\\') {
            tmp[0] = '\\';
            tmp[1] = (char)*p;
            k = 2;
        } else if (*p < 0x20 || *p == 0x7f) {
            snprintf(tmp, sizeof tmp, "\\x%02x", *p);
            k = 4;
        } else {
            tmp[0] = (char)*p;
            k = 1;
        }
        if (n + k + 2 > cap) {
            break;
        }
        memcpy(out + n, tmp, k);
        n += k;
    }
    if (n + 2 <= cap) {
        out[n++] = '"';
    }
    out[n < cap ? n : cap - 1] = '\0';
    return out;
}

/* Append a formatted piece at line[at], never past cap: returns the new
 * length, at most cap - 1 (a cut piece is cut, never overflows). */
static size_t app(char *line, size_t at, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static size_t app(char *line, size_t at, size_t cap, const char *fmt, ...)
{
    if (at + 1 >= cap) {
        return at;
    }
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(line + at, cap - at, fmt, ap);
    va_end(ap);
    if (k < 0) {
        return at;
    }
    return (size_t)k < cap - at ? at + (size_t)k : cap - 1;
}

/* Append s (n bytes) to line as a JSON string body. */
static size_t json_str(char *line, size_t at, size_t cap, const char *s,
                       size_t n)
{
    for (size_t i = 0; i < n && at + 8 < cap; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\') {
            line[at++] = '\\';
            line[at++] = (char)ch;
        } else if (ch < 0x20) {
            at = app(line, at, cap, "\\u%04x", ch);
        } else {
            line[at++] = (char)ch;
        }
    }
    return at;
}

static bool is_integer(const char *s, size_t n)
{
    size_t i = n > 1 && s[0] == '-' ? 1 : 0;
    if (i == n || n > 19) {
        return false;
    }
    for (; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return false;
        }
    }
    return true;
}

/* One "key=value" field of body at *p as JSON ("key":value), or false at
 * the tail or the end. */
static bool json_field(const char **p, char *line, size_t *at, size_t cap)
{
    const char *s = *p;
    while (*s == ' ') {
        s++;
    }
    if (*s == '\0' || strncmp(s, "-- ", 3) == 0 || strcmp(s, "--") == 0) {
        *p = s;
        return false;
    }
    const char *eq = s;
    while (*eq != '\0' && *eq != '=' && *eq != ' ') {
        eq++;
    }
    if (*eq != '=') {
        *p = s; /* not a field: the rest is text */
        return false;
    }
    char val[LOG_LINE_MAX];
    size_t vn = 0;
    const char *v = eq + 1;
    bool quoted = *v == '"';
    if (quoted) {
        v++;
        while (*v != '\0' && *v != '"' && vn + 1 < sizeof val) {
            if (*v == '\\' && v[1] != '\0') {
                v++;
            }
            val[vn++] = *v++;
        }
        if (*v == '"') {
            v++;
        }
    } else {
        while (*v != '\0' && *v != ' ' && vn + 1 < sizeof val) {
            val[vn++] = *v++;
        }
    }
    *at = app(line, *at, cap, ",\"");
    *at = json_str(line, *at, cap, s, (size_t)(eq - s));
    if (!quoted && is_integer(val, vn)) {
        *at = app(line, *at, cap, "\":%.*s", (int)vn, val);
    } else {
        *at = app(line, *at, cap, "\":\"");
        *at = json_str(line, *at, cap, val, vn);
        *at = app(line, *at, cap, "\"");
    }
    *p = v;
    return *at + 16 < cap;
}

static size_t format_time(char *line, size_t cap)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(line, cap, "%Y-%m-%dT%H:%M:%S", &tm);
    n = app(line, n, cap, ".%03ldZ", ts.tv_nsec / 1000000L);
    return n;
}

static void emit(enum log_level level, const char *event, const char *body)
{
    static const char letters[] = "DIWE";
    char line[LOG_LINE_MAX];
    size_t cap = sizeof line - 2; /* room for "}\n" or "\n" */
    uint64_t term = 0;
    const char *role = "follower";
    if (log_node != 0 && log_ctx != NULL) {
        log_ctx(log_ctx_arg, &term, &role);
    }
    size_t n;
    if (log_format == LOG_FORMAT_JSON) {
        char ts[40];
        format_time(ts, sizeof ts);
        n = app(line, 0, cap, "{\"time\":\"%s\",\"level\":\"%s\"", ts,
                level_names[level]);
        if (log_node != 0) {
            n = app(
                line, n, cap, ",\"node\":%llu,\"term\":%llu,\"role\":\"%s\"",
                (unsigned long long)log_node, (unsigned long long)term, role);
        } else {
            n = app(line, n, cap, ",\"ident\":\"%s\"", log_ident);
        }
        n = app(line, n, cap, ",\"event\":\"%s\"", event);
        const char *p = body;
        while (n < cap && json_field(&p, line, &n, cap)) {
        }
        if (strncmp(p, "-- ", 3) == 0) {
            p += 3;
        }
        if (*p != '\0' && n + 16 < cap) {
            n = app(line, n, cap, ",\"msg\":\"");
            n = json_str(line, n, cap - 2, p, strlen(p));
            line[n++] = '"';
        }
        n = n < cap ? n : cap;
        line[n++] = '}';
    } else if (log_node != 0) {
        n = format_time(line, cap);
        n = app(line, n, cap, " %c node=%llu term=%llu role=%s event=%s%s%s",
                letters[level], (unsigned long long)log_node,
                (unsigned long long)term, role, event,
                body[0] != '\0' ? " " : "", body);
    } else {
        n = format_time(line, cap);
        n = app(line, n, cap, " %c %s %s", letters[level], log_ident, body);
    }
    line[n++] = '\n';
    ssize_t w = write(log_fd, line, n);
    (void)w; /* nowhere better to report a failed log write */
}

void log_printf(enum log_level level, const char *fmt, ...)
{
    if (level < log_level || level >= LOG_OFF) {
        return;
    }
    char body[LOG_LINE_MAX];
    size_t n = 0;
    if (log_node != 0 || log_format == LOG_FORMAT_JSON) {
        memcpy(body, "-- ", 3);
        n = 3;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(body + n, sizeof body - n, fmt, ap);
    va_end(ap);
    emit(level, level_events[level], body);
}

void log_event(enum log_level level, const char *event, const char *fields, ...)
{
    if (level < log_level || level >= LOG_OFF) {
        return;
    }
    char body[LOG_LINE_MAX];
    body[0] = '\0';
    if (fields != NULL) {
        va_list ap;
        va_start(ap, fields);
        vsnprintf(body, sizeof body, fields, ap);
        va_end(ap);
    }
    if (log_node == 0 && log_format == LOG_FORMAT_TEXT) {
        /* The plain format: the event name leads the message. */
        char plain[LOG_LINE_MAX];
        size_t n = strnlen(event, 64);
        memcpy(plain, event, n);
        if (body[0] != '\0') {
            plain[n++] = ' ';
            size_t k = strnlen(body, sizeof plain - n - 1);
            memcpy(plain + n, body, k);
            n += k;
        }
        plain[n] = '\0';
        emit(level, event, plain);
        return;
    }
    emit(level, event, body);
}
