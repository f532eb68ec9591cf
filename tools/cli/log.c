/*
 * craft-cli log: look at a data directory offline (the node must not be
 * running when --repair is used).
 *
 *   log check DIR [--repair]   validate everything; exit 0 clean, 1 torn
 *                              tail only (cut with --repair), 2 corruption
 *   log dump DIR [--from I] [--to J]
 *                              one line per entry: index term type size crc
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "storage/store.h"
#include "util/crc32c.h"
#include "util/log.h"

#define LOG_EXIT_TORN 1
#define LOG_EXIT_CORRUPT 2
#define LOG_EXIT_BUSY 75 /* sysexits.h EX_TEMPFAIL: a node has it open */

static const char check_usage[] =
    "usage: craft-cli log check DIR [--repair]\n"
    "\n"
    "Validate a data directory: metadata, snapshot, every segment and every\n"
    "checksum.  Prints the segments with their first and last index and\n"
    "term, the snapshot, and any torn tail.\n"
    "\n"
    "  --repair   cut a torn tail back to the last whole record and remove\n"
    "             stale files (never touches anything else); refused while\n"
    "             a node has the directory open\n"
    "\n"
    "exit status: 0 clean, 1 a torn tail was found (cut with --repair),\n"
    "2 corruption, 64 bad usage, 74 I/O error, 75 in use (--repair)\n";

static const char dump_usage[] =
    "usage: craft-cli log dump DIR [--from I] [--to J]\n"
    "\n"
    "Print one line per log entry still on disk (including entries a\n"
    "snapshot covers that compaction has not removed yet):\n"
    "  INDEX TERM TYPE SIZE CRC32C\n"
    "\n"
    "exit status: 0, 2 corruption, 64 bad usage, 74 I/O error\n";

static int exit_for(int rv)
{
    if (rv == CRAFT_ECORRUPT || rv == CRAFT_EVERSION) {
        return LOG_EXIT_CORRUPT;
    }
    if (rv == CRAFT_EBUSY) {
        return LOG_EXIT_BUSY;
    }
    return rv == CRAFT_EINVAL ? CLI_EXIT_USAGE : CLI_EXIT_IO;
}

static const char *type_name(uint8_t type)
{
    switch (type) {
    case RAFT_ENTRY_COMMAND:
        return "command";
    case RAFT_ENTRY_NOOP:
        return "noop";
    default:
        return "other";
    }
}

static void print_seg(const struct store_seg_info *si)
{
    if (si->last < si->first) {
        printf("  %-41s %-6s empty, %" PRIu64 " bytes\n", si->name,
               si->open ? "open" : "closed", si->end);
    } else {
        printf("  %-41s %-6s index %" PRIu64 "..%" PRIu64 " term %" PRIu64
               "..%" PRIu64 ", %u records, %" PRIu64 " bytes\n",
               si->name, si->open ? "open" : "closed", si->first, si->last,
               si->first_term, si->last_term, si->n_records, si->end);
    }
    if (si->torn || si->no_header) {
        printf("    torn tail: %" PRIu64 " bytes at offset %" PRIu64
               " (a write that was never reported durable)\n",
               si->torn_bytes, si->end);
    }
}

static void print_scan(const char *dir, const struct store_scan *sc)
{
    printf("directory: %s\n", dir);
    if (sc->meta_file != 0) {
        printf("hard state: term %" PRIu64 " vote %" PRIu64
               " (meta%d, seq %" PRIu64 ")\n",
               sc->hs.term, sc->hs.vote, sc->meta_file, sc->meta_seq);
    } else {
        printf("hard state: none (term 0)\n");
    }
    if (sc->has_snapshot) {
        printf("snapshot: %s index %" PRIu64 " term %" PRIu64 " size %" PRIu64
               " crc %08" PRIx32 " members",
               sc->snapshot_name, sc->snapshot.index, sc->snapshot.term,
               sc->snapshot.size, sc->snapshot_crc);
        for (unsigned i = 0; i < sc->snapshot.config.n; i++) {
            printf("%s%" PRIu64, i ? "," : " ", sc->snapshot.config.ids[i]);
        }
        printf("\n");
    } else {
        printf("snapshot: none\n");
    }
    printf("segments: %zu\n", sc->n_segs);
    for (size_t i = 0; i < sc->n_segs; i++) {
        print_seg(&sc->segs[i]);
    }
    if (sc->n_all_entries > 0) {
        const struct raft_entry *f = &sc->all_entries[0];
        const struct raft_entry *l = &sc->all_entries[sc->n_all_entries - 1];
        printf("log: first index %" PRIu64 " term %" PRIu64
               ", last index %" PRIu64 " term %" PRIu64
               ", %zu entries after the snapshot\n",
               f->index, f->term, l->index, l->term, sc->n_entries);
    } else {
        printf("log: empty\n");
    }
    if (sc->stale_files) {
        printf("stale files: snap.tmp or superseded snapshots (removed by "
               "--repair or at start-up)\n");
    }
}

static int log_check(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        fputs(check_usage, stdout);
        return 0;
    }
    const char *dir = NULL;
    bool repair = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--repair") == 0) {
            repair = true;
        } else if (argv[i][0] != '-' && dir == NULL) {
            dir = argv[i];
        } else {
            fprintf(stderr, "craft-cli log check: unexpected '%s'\n\n%s",
                    argv[i], check_usage);
            return CLI_EXIT_USAGE;
        }
    }
    if (dir == NULL) {
        fputs(check_usage, stderr);
        return CLI_EXIT_USAGE;
    }
    struct store_options o;
    store_options_default(&o);
    struct store_scan sc;
    char err[1024];
    int lock = -1;
    /* --repair writes: hold the node's lock from the scan to the repair,
     * and refuse while a node has the directory open. */
    int rv = repair ? store_lock(dir, &o, &lock, err, sizeof err) : 0;
    if (rv == 0) {
        rv = store_scan(dir, &o, &sc, err, sizeof err);
    }
    if (rv != 0) {
        store_unlock(&o, lock);
        printf("directory: %s\nresult: %s\n", dir,
               rv == CRAFT_ECORRUPT || rv == CRAFT_EVERSION ? "CORRUPT"
                                                            : "ERROR");
        fprintf(stderr, "craft-cli log check: %s\n", err);
        return exit_for(rv);
    }
    print_scan(dir, &sc);
    bool torn = sc.torn;
    if (repair && (sc.torn || sc.stale_files)) {
        rv = store_repair(dir, &o, &sc, err, sizeof err);
        if (rv != 0) {
            fprintf(stderr, "craft-cli log check: repair: %s\n", err);
            store_scan_close(&sc);
            store_unlock(&o, lock);
            return exit_for(rv);
        }
        printf("repaired: %s\n",
               torn ? "torn tail cut" : "stale files removed");
    }
    printf("result: %s\n",
           torn ? (repair ? "torn tail (cut)" : "torn tail") : "clean");
    store_scan_close(&sc);
    store_unlock(&o, lock);
    return torn ? LOG_EXIT_TORN : 0;
}

static int log_dump(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        fputs(dump_usage, stdout);
        return 0;
    }
    const char *dir = NULL;
    uint64_t from = 0, to = UINT64_MAX;
    for (int i = 1; i < argc; i++) {
        bool is_from = strcmp(argv[i], "--from") == 0;
        if (is_from || strcmp(argv[i], "--to") == 0) {
            if (i + 1 >= argc ||
                !cli_parse_u64(argv[i + 1], is_from ? &from : &to)) {
                fprintf(stderr, "craft-cli log dump: %s needs an index\n\n%s",
                        argv[i], dump_usage);
                return CLI_EXIT_USAGE;
            }
            i++;
        } else if (argv[i][0] != '-' && dir == NULL) {
            dir = argv[i];
        } else {
            fprintf(stderr, "craft-cli log dump: unexpected '%s'\n\n%s",
                    argv[i], dump_usage);
            return CLI_EXIT_USAGE;
        }
    }
    if (dir == NULL) {
        fputs(dump_usage, stderr);
        return CLI_EXIT_USAGE;
    }
    struct store_options o;
    store_options_default(&o);
    struct store_scan sc;
    char err[1024];
    int rv = store_scan(dir, &o, &sc, err, sizeof err);
    if (rv != 0) {
        fprintf(stderr, "craft-cli log dump: %s\n", err);
        return exit_for(rv);
    }
    for (size_t i = 0; i < sc.n_all_entries; i++) {
        const struct raft_entry *e = &sc.all_entries[i];
        if (e->index < from || e->index > to) {
            continue;
        }
        printf("%" PRIu64 " %" PRIu64 " %s %zu %08" PRIx32 "\n", e->index,
               e->term, type_name(e->type), e->buf.len,
               crc32c(0, e->buf.base, e->buf.len));
    }
    store_scan_close(&sc);
    return fflush(stdout) == 0 ? 0 : CLI_EXIT_IO;
}

static const struct cli_cmd log_cmds[] = {
    {"check", "validate a data directory (--repair cuts a torn tail)",
     log_check},
    {"dump", "print the log entries, one per line", log_dump},
};

int cli_log(int argc, char **argv)
{
    log_set_ident("craft-cli");
    return cli_dispatch("craft-cli log", log_cmds,
                        sizeof log_cmds / sizeof log_cmds[0], argc - 1,
                        argv + 1);
}
