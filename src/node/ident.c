/*
 * Data-dir identity (see ident.h).  The file is small text so that an
 * operator can read it:
 *
 *     craftd-identity 1
 *     node-id 2
 *     cluster-id 9c1f0e6f2b0d4a11
 *     members 1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003
 *     crc32c 5d1e9a03
 *
 * The last line is the CRC-32C of every byte before it.
 */
#include "node/ident.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "craft/common.h"
#include "util/assert.h"
#include "util/crc32c.h"

#define IDENT_VERSION 1
#define IDENT_MAX 4096

static int fail(int code, char *errmsg, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(int code, char *errmsg, size_t len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errmsg, len, fmt, ap);
    va_end(ap);
    return code;
}

/* mkdir -p */
static int make_dirs(const char *path)
{
    char tmp[NODE_PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(tmp, 0755) != 0 && errno != EEXIST) {
                return -1;
            }
            *p = '/';
        }
    }
    /* The data dir itself is private (0700, whatever the umask): it holds
     * every value written.  Parents are created like mkdir -p's. */
    if (mkdir(tmp, 0700) == 0) {
        if (chmod(tmp, 0700) != 0) {
            return -1;
        }
    } else if (errno != EEXIST) {
        return -1;
    }
    struct stat st;
    if (stat(tmp, &st) != 0) {
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) {
        errno = ENOTDIR;
        return -1;
    }
    return 0;
}

static int format_ident(const struct node_config *cfg, char *out, size_t cap)
{
    char members[NODE_MEMBERS_MAX * (NODE_HOST_MAX + 24)];
    node_config_members_string(cfg, members, sizeof members);
    int n = snprintf(out, cap,
                     "craftd-identity %d\nnode-id %llu\ncluster-id %016llx\n"
                     "members %s\n",
                     IDENT_VERSION, (unsigned long long)cfg->id,
                     (unsigned long long)cfg->cluster_id, members);
    CRAFT_ASSERT(n > 0 && (size_t)n < cap);
    uint32_t crc = crc32c(0, out, (size_t)n);
    int k = snprintf(out + n, cap - (size_t)n, "crc32c %08x\n", crc);
    CRAFT_ASSERT(k > 0 && (size_t)(n + k) < cap);
    return n + k;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int write_ident(const struct node_config *cfg, char *errmsg, size_t len)
{
    char text[IDENT_MAX], tmp[NODE_PATH_MAX + 32], path[NODE_PATH_MAX + 32];
    int n = format_ident(cfg, text, sizeof text);
    snprintf(tmp, sizeof tmp, "%s/%s.tmp", cfg->data_dir, NODE_IDENT_FILE);
    snprintf(path, sizeof path, "%s/%s", cfg->data_dir, NODE_IDENT_FILE);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd >= 0 && fchmod(fd, 0600) != 0) {
        close(fd);
        fd = -1;
    }
    if (fd < 0) {
        return fail(CRAFT_EIO, errmsg, len, "cannot create %s: %s", tmp,
                    strerror(errno));
    }
    if (write_all(fd, text, (size_t)n) != 0 || fsync(fd) != 0) {
        int e = errno;
        close(fd);
        unlink(tmp);
        return fail(CRAFT_EIO, errmsg, len, "cannot write %s: %s", tmp,
                    strerror(e));
    }
    close(fd);
    if (rename(tmp, path) != 0) {
        return fail(CRAFT_EIO, errmsg, len, "cannot rename %s: %s", tmp,
                    strerror(errno));
    }
    int dfd = open(cfg->data_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || fsync(dfd) != 0) {
        int e = errno;
        if (dfd >= 0) {
            close(dfd);
        }
        return fail(CRAFT_EIO, errmsg, len, "cannot fsync %s: %s",
                    cfg->data_dir, strerror(e));
    }
    close(dfd);
    return 0;
}

/* Compare the identity on disk with ours, field by field, so the message
 * says exactly what differs. */
static int check_ident(const struct node_config *cfg, const char *text,
                       size_t n, const char *path, char *errmsg, size_t len)
{
    const char *crcline = NULL;
    for (const char *p = text; p < text + n; p++) {
        if (strncmp(p, "crc32c ", 7) == 0 && (p == text || p[-1] == '\n')) {
            crcline = p;
            break;
        }
    }
    unsigned crc = 0;
    if (crcline == NULL || sscanf(crcline, "crc32c %8x", &crc) != 1 ||
        crc != crc32c(0, text, (size_t)(crcline - text))) {
        return fail(CRAFT_ECORRUPT, errmsg, len,
                    "%s is corrupt (checksum mismatch); refusing to start",
                    path);
    }
    unsigned version = 0;
    unsigned long long id = 0, cid = 0;
    char members[IDENT_MAX];
    if (sscanf(text,
               "craftd-identity %u\nnode-id %llu\ncluster-id %llx\n"
               "members %4095s\n",
               &version, &id, &cid, members) != 4) {
        return fail(CRAFT_ECORRUPT, errmsg, len, "%s is malformed", path);
    }
    if (version != IDENT_VERSION) {
        return fail(CRAFT_EVERSION, errmsg, len,
                    "%s has version %u; this craftd reads version %d", path,
                    version, IDENT_VERSION);
    }
    if (id != cfg->id) {
        return fail(CRAFT_EMISMATCH, errmsg, len,
                    "data dir %s belongs to node %llu, not --id %llu",
                    cfg->data_dir, id, (unsigned long long)cfg->id);
    }
    char ours[NODE_MEMBERS_MAX * (NODE_HOST_MAX + 24)];
    node_config_members_string(cfg, ours, sizeof ours);
    if (cid != cfg->cluster_id || strcmp(members, ours) != 0) {
        return fail(CRAFT_EMISMATCH, errmsg, len,
                    "data dir %s belongs to cluster %s, not --cluster %s",
                    cfg->data_dir, members, ours);
    }
    return 0;
}

/* Check the identity file; *missing (OUT) if there is none yet. */
static int read_ident(const struct node_config *cfg, bool *missing,
                      char *errmsg, size_t len)
{
    char path[NODE_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/%s", cfg->data_dir, NODE_IDENT_FILE);
    *missing = false;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT) {
        *missing = true;
        return 0;
    }
    if (fd < 0) {
        return fail(CRAFT_EIO, errmsg, len, "cannot open %s: %s", path,
                    strerror(errno));
    }
    char text[IDENT_MAX];
    ssize_t n = read(fd, text, sizeof text - 1);
    int e = errno;
    close(fd);
    if (n < 0) {
        return fail(CRAFT_EIO, errmsg, len, "cannot read %s: %s", path,
                    strerror(e));
    }
    text[n] = '\0';
    return check_ident(cfg, text, (size_t)n, path, errmsg, len);
}

int node_ident_lock(const struct node_config *cfg, int *lock_fd, bool *missing,
                    char *errmsg, size_t errmsg_len)
{
    CRAFT_ASSERT(cfg->data_dir[0] != '\0');
    CRAFT_ASSERT(errmsg_len > 0);
    if (make_dirs(cfg->data_dir) != 0) {
        return fail(CRAFT_EIO, errmsg, errmsg_len,
                    "cannot create data dir %s: %s", cfg->data_dir,
                    strerror(errno));
    }
    char path[NODE_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/%s", cfg->data_dir, NODE_LOCK_FILE);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        return fail(CRAFT_EIO, errmsg, errmsg_len,
                    "data dir %s is not writable: %s", cfg->data_dir,
                    strerror(errno));
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        close(fd);
        if (e == EWOULDBLOCK) {
            return fail(CRAFT_EBUSY, errmsg, errmsg_len,
                        "data dir %s is in use by another craftd",
                        cfg->data_dir);
        }
        return fail(CRAFT_EIO, errmsg, errmsg_len, "cannot lock %s: %s", path,
                    strerror(e));
    }
    int rv = read_ident(cfg, missing, errmsg, errmsg_len);
    if (rv != 0) {
        close(fd);
        return rv;
    }
    *lock_fd = fd;
    return 0;
}

int node_ident_write(const struct node_config *cfg, char *errmsg,
                     size_t errmsg_len)
{
    return write_ident(cfg, errmsg, errmsg_len);
}

int node_ident_open(const struct node_config *cfg, int *lock_fd, char *errmsg,
                    size_t errmsg_len)
{
    bool missing = false;
    int rv = node_ident_lock(cfg, lock_fd, &missing, errmsg, errmsg_len);
    if (rv == 0 && missing) {
        rv = write_ident(cfg, errmsg, errmsg_len);
        if (rv != 0) {
            close(*lock_fd);
            *lock_fd = -1;
        }
    }
    return rv;
}
