#include "util/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "craft/common.h"

static int log_fd = 2;
static enum log_level log_level = LOG_INFO;
static char log_ident[32] = "craft";

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

int log_level_parse(const char *s, enum log_level *level)
{
    static const char *const names[] = {"debug", "info", "warn", "error",
                                        "off"};
    for (unsigned i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (strcmp(s, names[i]) == 0) {
            *level = (enum log_level)i;
            return 0;
        }
    }
    return CRAFT_EINVAL;
}

void log_printf(enum log_level level, const char *fmt, ...)
{
    static const char letters[] = "DIWE";
    if (level < log_level || level >= LOG_OFF) {
        return;
    }
    char line[1024];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(line, sizeof line, "%Y-%m-%dT%H:%M:%S", &tm);
    int k = snprintf(line + n, sizeof line - n, ".%03ldZ %c %s ",
                     ts.tv_nsec / 1000000L, letters[level], log_ident);
    n += k > 0 ? (size_t)k : 0;
    va_list ap;
    va_start(ap, fmt);
    k = vsnprintf(line + n, sizeof line - n - 1, fmt, ap);
    va_end(ap);
    if (k > 0) {
        n += (size_t)k < sizeof line - n - 1 ? (size_t)k : sizeof line - n - 2;
    }
    line[n++] = '\n';
    ssize_t w = write(log_fd, line, n);
    (void)w; /* nowhere better to report a failed log write */
}
