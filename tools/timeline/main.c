/*
 * craft-timeline: merge the logs of several craftd nodes into one
 * time-ordered timeline, one column per node.
 *
 *   craft-timeline [--since T] [--until T] [--events PATTERNS]
 *                  [--width N] [--tsv] FILE...
 *
 * Input lines are craftd's structured log lines (util/log.h):
 *   TIME LEVEL node=ID term=T role=ROLE event=NAME [key=value ...] [-- text]
 * or the same as JSON objects (--log-format json); files may mix both.
 * A line that is not one (a plain-format line, a line cut by a crash,
 * garbage) is skipped and counted; the counts are reported on stderr per
 * file, with the first such line number, and never stop the merge.
 *
 * Lines are ordered by their timestamps (RFC 3339 UTC with milliseconds,
 * so text order is time order); lines with the same time keep the order
 * of the files and of the lines within a file.  The clocks of different
 * machines are only as close as NTP keeps them: across nodes, an order
 * within a few milliseconds means little.
 *
 * Exit status: 0 done; 1 no input line could be parsed or a file could
 * not be read; 2 bad usage.
 */
#include <errno.h>
#include <fnmatch.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Longer lines are cut by craftd's logger (LOG_LINE_MAX, 1024); a longer
 * one here is not craftd's and is skipped. */
#define TL_LINE_MAX 4096
/* Columns: craftd clusters have at most 7 members; logs of several
 * clusters merged together still fit. */
#define TL_NODES_MAX 32
#define TL_WIDTH_DEFAULT 34
#define TL_WIDTH_MIN 12
#define TL_WIDTH_MAX 400
#define TL_TIME_LEN 24 /* 2026-11-29T16:40:01.123Z */

struct ev {
    char time[TL_TIME_LEN + 1];
    unsigned long long node, term;
    char role[16];
    char event[48];
    char *rest; /* fields and tail, owned */
    size_t seq; /* input order, for a stable sort */
};

struct evs {
    struct ev *v;
    size_t n, cap;
};

static const char usage[] =
    "usage: craft-timeline [--since T] [--until T] [--events PATTERNS]\n"
    "                      [--width N] [--tsv] FILE...\n"
    "\n"
    "Merge craftd logs (one file per node, or several nodes in one file;\n"
    "text or --log-format json) into one time-ordered timeline with a\n"
    "column per node.\n"
    "\n"
    "  --since T        only lines at or after T\n"
    "  --until T        only lines at or before T (a prefix: 16:41 takes\n"
    "                   all of 16:41)\n"
    "                   T is a full time (2026-11-29T16:40:01.123Z) or a\n"
    "                   prefix of one, or a time of day (16:40, 16:40:01)\n"
    "  --events P       only events matching P: comma-separated globs,\n"
    "                   e.g. 'became_*,voted,snapshot_*'\n"
    "  --width N        column width (default 34)\n"
    "  --tsv            one event per line: time, node, term, role, event,\n"
    "                   fields (tab-separated), for scripts\n"
    "  -h, --help       this help\n"
    "\n"
    "Lines that are not craftd log events are skipped and counted on\n"
    "stderr.  Exit status: 0 done, 1 nothing parsed or a file unreadable,\n"
    "2 bad usage.\n";

/* "key=" at p: the value up to the next blank into out.  Returns the
 * position after it, or NULL. */
static const char *take(const char *p, const char *key, char *out, size_t cap)
{
    size_t k = strlen(key);
    if (strncmp(p, key, k) != 0) {
        return NULL;
    }
    p += k;
    size_t n = strcspn(p, " ");
    if (n == 0 || n >= cap) {
        return NULL;
    }
    memcpy(out, p, n);
    out[n] = '\0';
    return p[n] == ' ' ? p + n + 1 : p + n;
}

static bool all_digits(const char *s)
{
    return *s != '\0' && strspn(s, "0123456789") == strlen(s);
}

/* The timestamp shape: YYYY-MM-DDTHH:MM:SS.mmmZ. */
static bool valid_time(const char *t)
{
    static const char shape[] = "dddd-dd-ddTdd:dd:dd.dddZ";
    for (size_t i = 0; i < TL_TIME_LEN; i++) {
        char want = shape[i];
        if (want == 'd' ? (t[i] < '0' || t[i] > '9') : t[i] != want) {
            return false;
        }
    }
    return t[TL_TIME_LEN] == ' ';
}

/* ---- --log-format json lines ------------------------------------------
 * craftd writes flat objects: string or number values, no nesting.  A
 * JSON string is read into out (cap bytes; \uXXXX below 0x80 decoded,
 * others kept as '?'); returns the position after it or NULL. */
static const char *json_string(const char *p, char *out, size_t cap)
{
    if (*p != '"') {
        return NULL;
    }
    p++;
    size_t n = 0;
    while (*p != '\0' && *p != '"') {
        char ch = *p++;
        if (ch == '\\') {
            ch = *p++;
            if (ch == 'u') {
                unsigned v = 0;
                if (sscanf(p, "%4x", &v) != 1) {
                    return NULL;
                }
                p += 4;
                ch = v < 0x80 ? (char)v : '?';
            } else if (ch == 'n') {
                ch = ' ';
            } else if (ch != '"' && ch != '\\' && ch != '/') {
                return NULL;
            }
        }
        if (n + 1 >= cap) {
            return NULL;
        }
        out[n++] = ch;
    }
    if (*p != '"') {
        return NULL;
    }
    out[n] = '\0';
    return p + 1;
}

/* Copy s into out if it fits (cap bytes with the NUL); false if not. */
static bool copy_word(char *out, size_t cap, const char *s)
{
    size_t n = strnlen(s, cap);
    if (n >= cap) {
        return false;
    }
    memcpy(out, s, n + 1);
    return true;
}

/* One JSON log line into e, the fields other than the header as
 * "key=value" and the msg as the " -- " tail, as in the text format. */
static bool parse_json_line(const char *line, struct ev *e)
{
    const char *p = line + 1;
    char key[64], val[TL_LINE_MAX], rest[TL_LINE_MAX] = "",
                                    msg[TL_LINE_MAX] = "";
    bool have_time = false, have_node = false, have_term = false,
         have_event = false;
    size_t rn = 0;
    while (*p != '}') {
        p = json_string(p, key, sizeof key);
        if (p == NULL || *p++ != ':') {
            return false;
        }
        bool quoted = *p == '"';
        if (quoted) {
            p = json_string(p, val, sizeof val);
            if (p == NULL) {
                return false;
            }
        } else {
            size_t n = strcspn(p, ",}");
            if (n == 0 || n >= sizeof val) {
                return false;
            }
            memcpy(val, p, n);
            val[n] = '\0';
            p += n;
        }
        if (strcmp(key, "time") == 0 && strlen(val) == TL_TIME_LEN) {
            memcpy(e->time, val, TL_TIME_LEN + 1);
            char probe[TL_TIME_LEN + 2];
            memcpy(probe, val, TL_TIME_LEN);
            probe[TL_TIME_LEN] = ' ';
            probe[TL_TIME_LEN + 1] = '\0';
            have_time = valid_time(probe);
        } else if (strcmp(key, "node") == 0 && all_digits(val)) {
            e->node = strtoull(val, NULL, 10);
            have_node = true;
        } else if (strcmp(key, "term") == 0 && all_digits(val)) {
            e->term = strtoull(val, NULL, 10);
            have_term = true;
        } else if (strcmp(key, "role") == 0) {
            copy_word(e->role, sizeof e->role, val);
        } else if (strcmp(key, "event") == 0) {
            have_event =
                val[0] != '\0' && copy_word(e->event, sizeof e->event, val);
        } else if (strcmp(key, "msg") == 0) {
            snprintf(msg, sizeof msg, "%s", val);
        } else if (strcmp(key, "level") != 0) {
            bool bare = val[0] != '\0' && strpbrk(val, " \"=") == NULL;
            int k = snprintf(rest + rn, sizeof rest - rn,
                             bare ? "%s%s=%s" : "%s%s=\"%s\"",
                             rn > 0 ? " " : "", key, val);
            if (k < 0 || (size_t)k >= sizeof rest - rn) {
                return false;
            }
            rn += (size_t)k;
        }
        if (*p == ',') {
            p++;
        } else if (*p != '}') {
            return false;
        }
    }
    if (!have_time || !have_node || !have_term || !have_event) {
        return false;
    }
    if (msg[0] != '\0') {
        snprintf(rest + rn, sizeof rest - rn, "%s-- %s", rn > 0 ? " " : "",
                 msg);
    }
    e->rest = strdup(rest);
    return e->rest != NULL;
}

/* Parse one line (NUL-terminated, no newline) into e; false if it is not
 * a craftd event line (text or JSON format). */
static bool parse_line(const char *line, struct ev *e)
{
    if (line[0] == '{') {
        return parse_json_line(line, e);
    }
    if (strlen(line) < TL_TIME_LEN + 3 || !valid_time(line)) {
        return false;
    }
    memcpy(e->time, line, TL_TIME_LEN);
    e->time[TL_TIME_LEN] = '\0';
    const char *p = line + TL_TIME_LEN + 1;
    if (strchr("DIWE", p[0]) == NULL || p[0] == '\0' || p[1] != ' ') {
        return false;
    }
    p += 2;
    char node[24], term[24];
    p = take(p, "node=", node, sizeof node);
    p = p ? take(p, "term=", term, sizeof term) : NULL;
    p = p ? take(p, "role=", e->role, sizeof e->role) : NULL;
    p = p ? take(p, "event=", e->event, sizeof e->event) : NULL;
    if (p == NULL || !all_digits(node) || !all_digits(term) ||
        strlen(node) > 18 || strlen(term) > 18) {
        return false;
    }
    e->node = strtoull(node, NULL, 10);
    e->term = strtoull(term, NULL, 10);
    e->rest = strdup(p);
    return e->rest != NULL;
}

/* Does t (an event time) pass a --since/--until bound?  A bound of the
 * form HH:MM... compares with the time of day, anything else with the
 * start of the full time.  sign < 0: t must not be before the bound;
 * sign > 0: t must not be after it. */
static bool time_ok(const char *t, const char *bound, int sign)
{
    if (bound == NULL) {
        return true;
    }
    const char *subject = t;
    if (strlen(bound) >= 2 && bound[2] == ':') {
        subject = t + 11; /* HH:MM:SS.mmmZ */
    }
    int c = strncmp(subject, bound, strlen(bound));
    return sign < 0 ? c >= 0 : c <= 0;
}

static bool event_ok(const char *event, const char *patterns)
{
    if (patterns == NULL) {
        return true;
    }
    char buf[512];
    snprintf(buf, sizeof buf, "%s", patterns);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok != NULL;
         tok = strtok_r(NULL, ",", &save)) {
        if (fnmatch(tok, event, 0) == 0) {
            return true;
        }
    }
    return false;
}

static int push(struct evs *a, const struct ev *e)
{
    if (a->n == a->cap) {
        size_t cap = a->cap ? 2 * a->cap : 1024;
        struct ev *v = realloc(a->v, cap * sizeof *v);
        if (v == NULL) {
            return -1;
        }
        a->v = v;
        a->cap = cap;
    }
    a->v[a->n++] = *e;
    return 0;
}

struct opts {
    const char *since, *until, *events;
    unsigned width;
    bool tsv;
};

/* Read one file's events into a.  Returns 0, or -1 if it is unreadable. */
static int read_file(const char *path, const struct opts *o, struct evs *a,
                     size_t *parsed)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        fprintf(stderr, "craft-timeline: cannot read %s: %s\n", path,
                strerror(errno));
        return -1;
    }
    static char line[TL_LINE_MAX + 2];
    size_t lineno = 0, bad = 0, first_bad = 0;
    while (fgets(line, sizeof line, f) != NULL) {
        lineno++;
        size_t len = strlen(line);
        bool whole = len > 0 && line[len - 1] == '\n';
        if (!whole && !feof(f)) {
            /* Too long: skip the rest of it. */
            int ch;
            while ((ch = fgetc(f)) != EOF && ch != '\n') {
            }
            bad++;
            first_bad = first_bad ? first_bad : lineno;
            continue;
        }
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) {
            line[--len] = '\0';
        }
        if (len == 0) {
            continue;
        }
        struct ev e;
        memset(&e, 0, sizeof e);
        if (!parse_line(line, &e)) {
            bad++;
            first_bad = first_bad ? first_bad : lineno;
            continue;
        }
        (*parsed)++;
        if (!time_ok(e.time, o->since, -1) || !time_ok(e.time, o->until, 1) ||
            !event_ok(e.event, o->events)) {
            free(e.rest);
            continue;
        }
        e.seq = a->n;
        if (push(a, &e) != 0) {
            free(e.rest);
            fclose(f);
            fprintf(stderr, "craft-timeline: out of memory\n");
            return -1;
        }
    }
    bool err = ferror(f) != 0;
    fclose(f);
    if (err) {
        fprintf(stderr, "craft-timeline: error reading %s\n", path);
        return -1;
    }
    if (bad > 0) {
        fprintf(stderr,
                "craft-timeline: %s: skipped %zu line%s not in craftd's log "
                "format (first: line %zu)\n",
                path, bad, bad == 1 ? "" : "s", first_bad);
    }
    return 0;
}

static int by_time(const void *x, const void *y)
{
    const struct ev *a = x, *b = y;
    int c = strcmp(a->time, b->time);
    if (c != 0) {
        return c;
    }
    return a->seq < b->seq ? -1 : a->seq > b->seq;
}

static int by_id(const void *x, const void *y)
{
    unsigned long long a = *(const unsigned long long *)x;
    unsigned long long b = *(const unsigned long long *)y;
    return a < b ? -1 : a > b;
}

static const char *role_short(const char *role)
{
    if (strcmp(role, "leader") == 0) {
        return "L";
    }
    if (strcmp(role, "follower") == 0) {
        return "F";
    }
    if (strcmp(role, "candidate") == 0) {
        return "C";
    }
    if (strcmp(role, "pre-candidate") == 0) {
        return "P";
    }
    return "?";
}

static void print_columns(const struct evs *a, const unsigned long long *ids,
                          size_t n_ids, unsigned width)
{
    printf("%-*s", TL_TIME_LEN, "TIME");
    for (size_t i = 0; i < n_ids; i++) {
        char h[32];
        snprintf(h, sizeof h, "node %llu", ids[i]);
        printf(" | %-*.*s", i + 1 < n_ids ? (int)width : 0, (int)width, h);
    }
    printf("\n");
    for (size_t k = 0; k < a->n; k++) {
        const struct ev *e = &a->v[k];
        char cell[TL_LINE_MAX];
        snprintf(cell, sizeof cell, "t%llu %s %s%s%s", e->term,
                 role_short(e->role), e->event, e->rest[0] ? " " : "", e->rest);
        printf("%s", e->time);
        for (size_t i = 0; i < n_ids; i++) {
            const char *text = ids[i] == e->node ? cell : "";
            /* No padding after the last column (no trailing blanks). */
            int pad = i + 1 < n_ids ? (int)width : 0;
            printf(" |%s%-*.*s", text[0] != '\0' || pad ? " " : "", pad,
                   (int)width, text);
        }
        printf("\n");
    }
}

static void print_tsv(const struct evs *a)
{
    for (size_t k = 0; k < a->n; k++) {
        const struct ev *e = &a->v[k];
        printf("%s\t%llu\t%llu\t%s\t%s\t", e->time, e->node, e->term, e->role,
               e->event);
        for (const char *p = e->rest; *p != '\0'; p++) {
            putchar(*p == '\t' ? ' ' : *p);
        }
        putchar('\n');
    }
}

static int parse_opts(int argc, char **argv, struct opts *o)
{
    static const struct option longs[] = {
        {"since", required_argument, NULL, 's'},
        {"until", required_argument, NULL, 'u'},
        {"events", required_argument, NULL, 'e'},
        {"width", required_argument, NULL, 'w'},
        {"tsv", no_argument, NULL, 't'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    memset(o, 0, sizeof *o);
    o->width = TL_WIDTH_DEFAULT;
    opterr = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, ":h", longs, NULL)) != -1) {
        switch (ch) {
        case 's':
            o->since = optarg;
            break;
        case 'u':
            o->until = optarg;
            break;
        case 'e':
            o->events = optarg;
            break;
        case 'w': {
            char *end;
            unsigned long w = strtoul(optarg, &end, 10);
            if (*end != '\0' || w < TL_WIDTH_MIN || w > TL_WIDTH_MAX) {
                fprintf(stderr,
                        "craft-timeline: --width: '%s' is not in %d..%d\n",
                        optarg, TL_WIDTH_MIN, TL_WIDTH_MAX);
                return 2;
            }
            o->width = (unsigned)w;
            break;
        }
        case 't':
            o->tsv = true;
            break;
        case 'h':
            fputs(usage, stdout);
            return -1;
        case ':':
            fprintf(stderr, "craft-timeline: option '%s' needs a value\n\n%s",
                    argv[optind - 1], usage);
            return 2;
        default:
            fprintf(stderr, "craft-timeline: unknown option '%s'\n\n%s",
                    argv[optind - 1], usage);
            return 2;
        }
    }
    if (optind >= argc) {
        fprintf(stderr, "craft-timeline: no log file given\n\n%s", usage);
        return 2;
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct opts o;
    int rv = parse_opts(argc, argv, &o);
    if (rv != 0) {
        return rv < 0 ? 0 : rv;
    }
    struct evs a = {0};
    size_t parsed = 0;
    int code = 0;
    for (int i = optind; i < argc; i++) {
        if (read_file(argv[i], &o, &a, &parsed) != 0) {
            code = 1;
        }
    }
    if (parsed == 0) {
        fprintf(stderr, "craft-timeline: no craftd log events in the input\n");
        code = 1;
    }
    qsort(a.v, a.n, sizeof *a.v, by_time);
    unsigned long long ids[TL_NODES_MAX];
    size_t n_ids = 0;
    for (size_t k = 0; k < a.n; k++) {
        bool seen = false;
        for (size_t i = 0; i < n_ids; i++) {
            seen |= ids[i] == a.v[k].node;
        }
        if (!seen && n_ids == TL_NODES_MAX) {
            fprintf(stderr, "craft-timeline: more than %d nodes\n",
                    TL_NODES_MAX);
            code = 1;
            break;
        }
        if (!seen) {
            ids[n_ids++] = a.v[k].node;
        }
    }
    qsort(ids, n_ids, sizeof ids[0], by_id);
    if (o.tsv) {
        print_tsv(&a);
    } else if (code == 0 || a.n > 0) {
        print_columns(&a, ids, n_ids, o.width);
    }
    for (size_t k = 0; k < a.n; k++) {
        free(a.v[k].rest);
    }
    free(a.v);
    return code;
}
