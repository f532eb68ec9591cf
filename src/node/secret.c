/*
 * Reading secrets from files; see secret.h.
 */
#include "node/secret.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "craft/common.h"
#include "util/assert.h"

int node_secret_read(const char *flag, const char *path, char *out, size_t cap,
                     size_t *len, char *errmsg, size_t errmsg_len)
{
    CRAFT_ASSERT(cap >= 2);
    CRAFT_ASSERT(errmsg_len > 0);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        snprintf(errmsg, errmsg_len, "%s: cannot open %s: %s", flag, path,
                 strerror(errno));
        return CRAFT_EINVAL;
    }
    struct stat st;
    int rv = CRAFT_EINVAL;
    ssize_t n = 0;
    char *buf = NULL;
    if (fstat(fd, &st) != 0) {
        snprintf(errmsg, errmsg_len, "%s: cannot stat %s: %s", flag, path,
                 strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(errmsg, errmsg_len, "%s: %s is not a regular file", flag,
                 path);
        goto out;
    }
    if ((st.st_mode & 077) != 0) {
        snprintf(errmsg, errmsg_len,
                 "%s: %s is accessible by group or others (mode %03o); "
                 "make it 0600 (chmod 600 %s)",
                 flag, path, (unsigned)(st.st_mode & 0777), path);
        goto out;
    }
    /* A secret of cap - 1 bytes plus "\r\n" is the longest file. */
    if (st.st_size < 0 || (unsigned long long)st.st_size > cap + 1) {
        snprintf(errmsg, errmsg_len, "%s: %s is longer than %zu bytes", flag,
                 path, cap - 1);
        goto out;
    }
    /* Up to cap + 2 bytes (one more than the longest file, to see that
     * it grew since fstat), until end of file. */
    buf = malloc(cap + 2);
    if (buf == NULL) {
        snprintf(errmsg, errmsg_len, "%s: out of memory", flag);
        goto out;
    }
    size_t k = 0;
    while (k < cap + 2) {
        n = read(fd, buf + k, cap + 2 - k);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            snprintf(errmsg, errmsg_len, "%s: cannot read %s: %s", flag, path,
                     strerror(errno));
            goto out;
        }
        if (n == 0) {
            break;
        }
        k += (size_t)n;
    }
    if (k > 0 && buf[k - 1] == '\n') {
        k--;
        if (k > 0 && buf[k - 1] == '\r') {
            k--;
        }
    }
    if (k == 0 || k >= cap || memchr(buf, '\0', k) != NULL) {
        snprintf(errmsg, errmsg_len,
                 "%s: %s must hold 1..%zu bytes (no NUL bytes; one "
                 "trailing newline is ignored)",
                 flag, path, cap - 1);
        goto out;
    }
    memcpy(out, buf, k);
    out[k] = '\0';
    *len = k;
    rv = 0;
out:
    close(fd);
    if (buf != NULL) {
        explicit_bzero(buf, cap + 2);
        free(buf);
    }
    if (rv != 0) {
        memset(out, 0, cap);
    }
    return rv;
}
