/*
 * craft-cli snapshot save / restore: move a craftd node's state in and out
 * of a single file, offline.
 *
 *   snapshot save DIR FILE [--include-log]
 *       The state in DIR's latest durable snapshot (always committed), or,
 *       with --include-log, that state with every command of DIR's log
 *       applied on top (see the caveat in the help text).  The state is
 *       loaded into a real state machine and written out again, so FILE
 *       is checked from end to end before it is renamed into place.
 *   snapshot restore FILE --data-dir NEW --id N --cluster LIST
 *       A new data dir for member N of the cluster LIST (craftd's own
 *       flags), holding FILE as its snapshot: IDENTITY written as craftd
 *       writes it (node_ident_open), the snapshot stored through the log
 *       store (store_snapshot_put), the term recorded in the hard state.
 *       Restore the same FILE for every member to rebuild a cluster.
 *
 * FILE format (little-endian), a thin frame around the KV snapshot format
 * of docs/craftd.md:
 *
 *   magic "CRAFTSNP", u32 version (1), u32 flags (0), u64 index, u64 term,
 *   u64 size, u32 crc32c of the data, u32 crc32c of the 44 bytes before it;
 *   then size bytes of KV snapshot data.
 *
 * Exit status: 0; 1 nothing to save; 2 FILE or DIR is corrupt; 64 usage;
 * 74 I/O error (or NEW is not empty, or DIR is in use by a running node).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <dirent.h>

#include "cli.h"
#include "node/config.h"
#include "node/ident.h"
#include "node/sm.h"
#include "storage/store.h"
#include "util/crc32c.h"
#include "util/encoding.h"

#define SNAP_EXIT_EMPTY 1
#define SNAP_EXIT_CORRUPT 2
#define SNAP_MAGIC "CRAFTSNP"
#define SNAP_VERSION 1
#define SNAP_HDR_BYTES 48
/* Chunks handed to the store; the store copies each at submission. */
#define SNAP_CHUNK_BYTES ((size_t)1 << 20)

static const char save_usage[] =
    "usage: craft-cli snapshot save DIR FILE [--include-log]\n"
    "\n"
    "Write the state of craftd data dir DIR to FILE.  By default that is\n"
    "the state of DIR's latest snapshot, which holds only committed writes\n"
    "(and may be older than the node's last writes).  With --include-log\n"
    "every command in DIR's log after the snapshot is applied too: after\n"
    "stopping a whole cluster cleanly (SIGTERM) its leader's log is\n"
    "committed, but the log of a node deposed in a crash may end with\n"
    "entries that never committed.  DIR is only read.\n"
    "\n"
    "exit status: 0, 1 nothing to save, 2 DIR is corrupt, 64 bad usage,\n"
    "74 I/O error\n";

static const char restore_usage[] =
    "usage: craft-cli snapshot restore FILE --data-dir NEW --id N "
    "--cluster LIST\n"
    "                                 [--raft-port-offset N]\n"
    "\n"
    "Create data dir NEW (absent or empty) for member N of the cluster\n"
    "LIST, holding the state saved in FILE, so that\n"
    "  craftd --id N --cluster LIST --data-dir NEW\n"
    "starts from it.  Restore the same FILE for every member to rebuild a\n"
    "cluster (LIST may differ from the original cluster's).\n"
    "\n"
    "exit status: 0, 2 FILE is corrupt, 64 bad usage, 74 I/O error or NEW\n"
    "is not empty\n";

struct snap {
    uint64_t index, term;
    char *data;
    size_t size;
};

/* ---- the FILE frame --------------------------------------------------- */

static int fsync_dir_of(const char *path)
{
    char *copy = strdup(path);
    if (copy == NULL) {
        return -1;
    }
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY);
    free(copy);
    if (fd < 0) {
        return -1;
    }
    int rv = fsync(fd);
    close(fd);
    return rv;
}

/* Write through PATH.tmp, fsync, rename, directory fsync. */
static int snap_write(const char *path, const struct snap *s)
{
    uint8_t hdr[SNAP_HDR_BYTES];
    memcpy(hdr, SNAP_MAGIC, 8);
    put_u32(hdr + 8, SNAP_VERSION);
    put_u32(hdr + 12, 0);
    put_u64(hdr + 16, s->index);
    put_u64(hdr + 24, s->term);
    put_u64(hdr + 32, s->size);
    put_u32(hdr + 40, crc32c(0, s->data, s->size));
    put_u32(hdr + 44, crc32c(0, hdr, 44));
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) {
        errno = ENAMETOOLONG;
        return -1;
    }
    /* The file holds every key and value: 0600 whatever the umask (an
     * existing PATH.tmp keeps its mode through O_CREAT, hence fchmod). */
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        return -1;
    }
    FILE *f = fchmod(fd, 0600) == 0 ? fdopen(fd, "wb") : NULL;
    if (f == NULL) {
        int saved = errno;
        close(fd);
        unlink(tmp);
        errno = saved;
        return -1;
    }
    bool ok = fwrite(hdr, 1, sizeof hdr, f) == sizeof hdr &&
              fwrite(s->data, 1, s->size, f) == s->size && fflush(f) == 0 &&
              fsync(fileno(f)) == 0;
    int saved = errno;
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, path) != 0 || fsync_dir_of(path) != 0) {
        saved = errno != 0 ? errno : saved;
        unlink(tmp);
        errno = saved;
        return -1;
    }
    return 0;
}

/* 0, CRAFT_EIO (errno set) or CRAFT_ECORRUPT with a reason in why. */
static int snap_read(const char *path, struct snap *s, char *why, size_t len)
{
    memset(s, 0, sizeof *s);
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return CRAFT_EIO;
    }
    uint8_t hdr[SNAP_HDR_BYTES];
    int rv = CRAFT_ECORRUPT;
    if (fread(hdr, 1, sizeof hdr, f) != sizeof hdr) {
        snprintf(why, len, "shorter than a header (%d bytes)", SNAP_HDR_BYTES);
    } else if (memcmp(hdr, SNAP_MAGIC, 8) != 0) {
        snprintf(why, len, "not a craft snapshot file (bad magic)");
    } else if (get_u32(hdr + 44) != crc32c(0, hdr, 44)) {
        snprintf(why, len, "header checksum mismatch");
    } else if (get_u32(hdr + 8) != SNAP_VERSION || get_u32(hdr + 12) != 0) {
        snprintf(why, len, "unsupported version %u (flags %u)",
                 get_u32(hdr + 8), get_u32(hdr + 12));
    } else {
        s->index = get_u64(hdr + 16);
        s->term = get_u64(hdr + 24);
        uint64_t size = get_u64(hdr + 32);
        struct stat st;
        if (fstat(fileno(f), &st) != 0) {
            rv = CRAFT_EIO;
        } else if ((uint64_t)st.st_size != SNAP_HDR_BYTES + size) {
            snprintf(why, len,
                     "header says %" PRIu64 " data bytes, file has %lld", size,
                     (long long)st.st_size - SNAP_HDR_BYTES);
        } else if (s->index == 0 || s->term == 0) {
            snprintf(why, len, "index or term is 0");
        } else if ((s->data = malloc(size > 0 ? size : 1)) == NULL) {
            rv = CRAFT_ENOMEM;
        } else if (fread(s->data, 1, size, f) != size) {
            rv = CRAFT_EIO;
        } else if (crc32c(0, s->data, size) != get_u32(hdr + 40)) {
            snprintf(why, len, "data checksum mismatch");
        } else {
            s->size = size;
            rv = 0;
        }
    }
    fclose(f);
    if (rv != 0) {
        free(s->data);
        s->data = NULL;
    }
    return rv;
}

/* ---- state machine round trips --------------------------------------- */

struct memreader {
    const char *p;
    size_t left;
};

static int64_t mem_read(void *data, void *buf, size_t len)
{
    struct memreader *r = data;
    size_t n = len < r->left ? len : r->left;
    memcpy(buf, r->p, n);
    r->p += n;
    r->left -= n;
    return (int64_t)n;
}

static int sm_load(struct node_sm *sm, const char *data, size_t size)
{
    struct memreader r = {data, size};
    return node_sm_snapshot_load(sm, mem_read, &r);
}

/* Serialise sm into s->data (malloc'ed). */
static int sm_dump(struct node_sm *sm, struct snap *s)
{
    char *buf = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&buf, &size);
    if (f == NULL) {
        return CRAFT_ENOMEM;
    }
    int rv = node_sm_snapshot_write(sm, f);
    if (fclose(f) != 0 && rv == 0) {
        rv = CRAFT_ENOMEM;
    }
    if (rv != 0) {
        free(buf);
        return rv;
    }
    s->data = buf;
    s->size = size;
    return 0;
}

/* ---- save ------------------------------------------------------------- */

static int read_store_snapshot(const char *raft_dir,
                               const struct store_scan *sc, char **out)
{
    char path[4200];
    if (snprintf(path, sizeof path, "%s/%s", raft_dir, sc->snapshot_name) >=
        (int)sizeof path) {
        return CRAFT_EINVAL;
    }
    char *data = malloc(sc->snapshot.size > 0 ? sc->snapshot.size : 1);
    if (data == NULL) {
        return CRAFT_ENOMEM;
    }
    FILE *f = fopen(path, "rb");
    bool ok = f != NULL && fseek(f, STORE_SNAP_HDR_BYTES, SEEK_SET) == 0 &&
              fread(data, 1, sc->snapshot.size, f) == sc->snapshot.size;
    if (f != NULL) {
        fclose(f);
    }
    if (!ok) {
        free(data);
        return CRAFT_EIO;
    }
    /* store_scan checked this CRC; check it again on the bytes we use. */
    if (crc32c(0, data, sc->snapshot.size) != sc->snapshot_crc) {
        free(data);
        return CRAFT_ECORRUPT;
    }
    *out = data;
    return 0;
}

static int exit_for(int rv)
{
    if (rv == CRAFT_ECORRUPT || rv == CRAFT_EVERSION || rv == CRAFT_ELIMIT) {
        return SNAP_EXIT_CORRUPT;
    }
    return CLI_EXIT_IO;
}

/* Build the state of dir into st; s gets index and term. */
static int save_state(const char *dir, bool include_log, struct node_sm *sm,
                      struct snap *s)
{
    char raft_dir[4096];
    if (snprintf(raft_dir, sizeof raft_dir, "%s/raft", dir) >=
        (int)sizeof raft_dir) {
        fprintf(stderr, "craft-cli snapshot save: path too long\n");
        return CLI_EXIT_USAGE;
    }
    struct store_options so;
    store_options_default(&so);
    struct store_scan sc;
    char err[512];
    int rv = store_scan(raft_dir, &so, &sc, err, sizeof err);
    if (rv != 0) {
        fprintf(stderr, "craft-cli snapshot save: %s: %s\n", raft_dir,
                rv == CRAFT_ENOENT ? "no raft/ log here (not a craftd data "
                                     "dir?)"
                                   : err);
        return exit_for(rv);
    }
    if (sc.has_snapshot) {
        char *data;
        rv = read_store_snapshot(raft_dir, &sc, &data);
        if (rv == 0) {
            rv = sm_load(sm, data, sc.snapshot.size);
            free(data);
        }
        if (rv != 0) {
            fprintf(stderr, "craft-cli snapshot save: %s/%s: cannot load: %s\n",
                    raft_dir, sc.snapshot_name, craft_strerror(rv));
            store_scan_close(&sc);
            return exit_for(rv);
        }
        s->index = sc.snapshot.index;
        s->term = sc.snapshot.term;
    }
    for (size_t i = 0; include_log && i < sc.n_entries; i++) {
        const struct raft_entry *e = &sc.entries[i];
        if (e->type == RAFT_ENTRY_COMMAND) {
            rv = node_sm_apply(sm, e->index, e->buf.base, e->buf.len, NULL);
        } else {
            node_sm_skip(sm, e->index);
        }
        if (rv != 0) {
            fprintf(stderr,
                    "craft-cli snapshot save: entry %llu cannot be applied: "
                    "%s\n",
                    (unsigned long long)e->index, craft_strerror(rv));
            store_scan_close(&sc);
            return exit_for(rv);
        }
        s->index = e->index;
        s->term = e->term;
    }
    store_scan_close(&sc);
    return 0;
}

static int snapshot_save(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"include-log", no_argument, NULL, 'l'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    bool include_log = false;
    opterr = 0;
    optind = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        if (ch == 'l') {
            include_log = true;
        } else if (ch == 'h') {
            fputs(save_usage, stdout);
            return 0;
        } else {
            fprintf(stderr,
                    "craft-cli snapshot save: unknown option '%s'\n\n%s",
                    argv[optind - 1], save_usage);
            return CLI_EXIT_USAGE;
        }
    }
    if (argc - optind != 2) {
        fprintf(stderr, "craft-cli snapshot save: want DIR and FILE\n\n%s",
                save_usage);
        return CLI_EXIT_USAGE;
    }
    const char *dir = argv[optind], *file = argv[optind + 1];
    struct node_sm *sm;
    if (node_sm_new(&sm) != 0) {
        fprintf(stderr, "craft-cli snapshot save: out of memory\n");
        return CLI_EXIT_IO;
    }
    struct snap s = {0};
    int code = save_state(dir, include_log, sm, &s);
    if (code == 0 && s.index == 0) {
        fprintf(stderr,
                "craft-cli snapshot save: %s has no snapshot yet%s; nothing "
                "to save\n",
                dir,
                include_log ? " and an empty log"
                            : " (--include-log "
                              "adds its log)");
        code = SNAP_EXIT_EMPTY;
    }
    if (code == 0) {
        int rv = sm_dump(sm, &s);
        if (rv != 0) {
            fprintf(stderr, "craft-cli snapshot save: %s\n",
                    craft_strerror(rv));
            code = CLI_EXIT_IO;
        } else if (snap_write(file, &s) != 0) {
            fprintf(stderr, "craft-cli snapshot save: %s: %s\n", file,
                    strerror(errno));
            code = CLI_EXIT_IO;
        } else {
            printf("saved index %" PRIu64 " (term %" PRIu64 "), %zu bytes, "
                   "%llu keys to %s\n",
                   s.index, s.term, s.size,
                   (unsigned long long)node_sm_keys(sm), file);
        }
    }
    free(s.data);
    node_sm_free(sm);
    return code;
}

/* ---- restore ---------------------------------------------------------- */

struct restore_run {
    int pending;
    int status;
    bool closed;
};

static void on_stored(struct store_req *req, int status)
{
    struct restore_run *run = req->data;
    run->pending--;
    if (status != 0 && run->status == 0) {
        run->status = status;
    }
}

static void on_store_closed(struct store *st)
{
    (void)st;
}

/* Store s as the snapshot of raft_dir with the given member ids. */
static int store_restore(const char *raft_dir, const struct node_config *cfg,
                         const struct snap *s, char *err, size_t err_len)
{
    uv_loop_t loop;
    if (uv_loop_init(&loop) != 0) {
        snprintf(err, err_len, "cannot create an event loop");
        return CRAFT_EIO;
    }
    struct store_options so;
    store_options_default(&so);
    struct store *st;
    int rv = store_open(raft_dir, &so, &loop, &st, err, err_len);
    if (rv != 0) {
        uv_loop_close(&loop);
        return rv;
    }
    struct raft_snapshot_meta meta = {.index = s->index,
                                      .term = s->term,
                                      .config = {.n = cfg->n_members},
                                      .size = s->size};
    for (unsigned i = 0; i < cfg->n_members; i++) {
        meta.config.ids[i] = cfg->members[i].id;
    }
    size_t n_chunks = s->size / SNAP_CHUNK_BYTES + 1;
    struct store_req *reqs = calloc(n_chunks + 1, sizeof *reqs);
    struct restore_run run = {0, 0, false};
    if (reqs == NULL) {
        rv = CRAFT_ENOMEM;
    }
    /* The term the snapshot was taken in is the floor of this node's term;
     * no vote is cast in it.  It goes first: the store refuses a snapshot
     * whose term is above the hard state's (a directory it would refuse to
     * start from). */
    struct raft_hard_state hs = {.term = s->term, .vote = 0};
    if (rv == 0) {
        reqs[0].data = &run;
        rv = store_append(st, &reqs[0], &hs, 0, NULL, 0, on_stored);
        run.pending += rv == 0;
    }
    for (size_t i = 0, off = 0; rv == 0 && i < n_chunks; i++) {
        size_t len =
            s->size - off < SNAP_CHUNK_BYTES ? s->size - off : SNAP_CHUNK_BYTES;
        reqs[i + 1].data = &run;
        rv = store_snapshot_put(st, &reqs[i + 1], &meta, off, s->data + off,
                                len, i + 1 == n_chunks, on_stored);
        run.pending += rv == 0;
        off += len;
    }
    while (run.pending > 0 && uv_run(&loop, UV_RUN_ONCE) != 0) {
    }
    store_close(st, on_store_closed);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    free(reqs);
    if (rv == 0 && run.status != 0) {
        rv = run.status;
    }
    if (rv != 0 && err[0] == '\0') {
        snprintf(err, err_len, "storing the snapshot: %s", craft_strerror(rv));
    }
    return rv;
}

static bool dir_absent_or_empty(const char *path)
{
    DIR *d = opendir(path);
    if (d == NULL) {
        return errno == ENOENT;
    }
    struct dirent *e;
    bool empty = true;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
            empty = false;
        }
    }
    closedir(d);
    return empty;
}

static int snapshot_restore(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"data-dir", required_argument, NULL, 'd'},
        {"id", required_argument, NULL, 'i'},
        {"cluster", required_argument, NULL, 'c'},
        {"raft-port-offset", required_argument, NULL, 'o'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *dir = NULL, *id = NULL, *cluster = NULL, *offset = NULL;
    opterr = 0;
    optind = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, "d:i:c:h", longopts, NULL)) != -1) {
        switch (ch) {
        case 'd':
            dir = optarg;
            break;
        case 'i':
            id = optarg;
            break;
        case 'c':
            cluster = optarg;
            break;
        case 'o':
            offset = optarg;
            break;
        case 'h':
            fputs(restore_usage, stdout);
            return 0;
        default:
            fprintf(stderr,
                    "craft-cli snapshot restore: unknown option or missing "
                    "value '%s'\n\n%s",
                    argv[optind - 1], restore_usage);
            return CLI_EXIT_USAGE;
        }
    }
    if (argc - optind != 1 || dir == NULL || id == NULL || cluster == NULL) {
        fprintf(stderr,
                "craft-cli snapshot restore: want FILE, --data-dir, --id and "
                "--cluster\n\n%s",
                restore_usage);
        return CLI_EXIT_USAGE;
    }
    /* craftd's own parser, so the identity matches what craftd expects. */
    char a_craftd[] = "craftd", a_id[] = "--id", a_cluster[] = "--cluster",
         a_dir[] = "--data-dir", a_off[] = "--raft-port-offset",
         a_default_off[] = "10000";
    char *cargv[] = {a_craftd,
                     a_id,
                     (char *)id,
                     a_cluster,
                     (char *)cluster,
                     a_dir,
                     (char *)dir,
                     a_off,
                     offset != NULL ? (char *)offset : a_default_off,
                     NULL};
    struct node_config cfg;
    enum node_config_action action;
    char err[512] = "";
    if (node_config_parse(9, cargv, &cfg, &action, err, sizeof err) != 0) {
        fprintf(stderr, "craft-cli snapshot restore: %s\n", err);
        return CLI_EXIT_USAGE;
    }
    const char *file = argv[optind];
    struct snap s;
    int rv = snap_read(file, &s, err, sizeof err);
    if (rv != 0) {
        fprintf(stderr, "craft-cli snapshot restore: %s: %s\n", file,
                rv == CRAFT_EIO ? strerror(errno) : err);
        return rv == CRAFT_ECORRUPT ? SNAP_EXIT_CORRUPT : CLI_EXIT_IO;
    }
    /* Never store a state a node could not load. */
    struct node_sm *sm;
    rv = node_sm_new(&sm);
    if (rv == 0) {
        rv = sm_load(sm, s.data, s.size);
        node_sm_free(sm);
    }
    if (rv != 0) {
        fprintf(stderr,
                "craft-cli snapshot restore: %s: the state does not "
                "load: %s\n",
                file, craft_strerror(rv));
        free(s.data);
        return exit_for(rv);
    }
    if (!dir_absent_or_empty(dir)) {
        fprintf(stderr,
                "craft-cli snapshot restore: %s exists and is not empty; "
                "restore into a new directory\n",
                dir);
        free(s.data);
        return CLI_EXIT_IO;
    }
    int lock_fd = -1;
    rv = node_ident_open(&cfg, &lock_fd, err, sizeof err);
    if (rv == 0) {
        char raft_dir[NODE_PATH_MAX + 8];
        snprintf(raft_dir, sizeof raft_dir, "%s/raft", dir);
        err[0] = '\0';
        rv = store_restore(raft_dir, &cfg, &s, err, sizeof err);
        close(lock_fd);
    }
    if (rv != 0) {
        fprintf(stderr, "craft-cli snapshot restore: %s: %s\n", dir, err);
        free(s.data);
        return CLI_EXIT_IO;
    }
    printf("restored index %" PRIu64 " (term %" PRIu64 ") into %s for node "
           "%s; start it with craftd --id %s --cluster %s --data-dir %s\n",
           s.index, s.term, dir, id, id, cluster, dir);
    free(s.data);
    return 0;
}

int cli_snapshot(int argc, char **argv)
{
    static const struct cli_cmd cmds[] = {
        {"save", "write a data dir's state to a file (offline)", snapshot_save},
        {"restore", "create a new data dir from a saved state",
         snapshot_restore},
    };
    return cli_dispatch("craft-cli snapshot", cmds,
                        sizeof cmds / sizeof cmds[0], argc - 1, argv + 1);
}
