/*
 * Shared option parsing and JSON output for craft-cli's cluster commands.
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cluster.h"

/* A list is "HOST:PORT,..." or craftd's "ID=HOST:PORT,..."; the ids are
 * kept so that `status` can name members that do not answer. */
static int parse_list(const char *cmd, const char *list,
                      struct cli_cluster_opts *o)
{
    if (strlen(list) >= sizeof o->spec) {
        fprintf(stderr, "craft-cli %s: --cluster list too long\n", cmd);
        return CLI_EXIT_USAGE;
    }
    strcpy(o->spec, list);
    o->n_addrs = 0;
    char *save = NULL;
    for (char *tok = strtok_r(o->spec, ",", &save); tok != NULL;
         tok = strtok_r(NULL, ",", &save)) {
        if (o->n_addrs == CRAFT_CLIENT_ADDRS_MAX) {
            fprintf(stderr, "craft-cli %s: more than %d addresses\n", cmd,
                    CRAFT_CLIENT_ADDRS_MAX);
            return CLI_EXIT_USAGE;
        }
        unsigned long id = 0;
        char *eq = strchr(tok, '=');
        if (eq != NULL) {
            *eq = '\0';
            uint64_t v;
            if (!cli_parse_u64(tok, &v) || v == 0 || v > 999999) {
                fprintf(stderr, "craft-cli %s: bad member id '%s'\n", cmd, tok);
                return CLI_EXIT_USAGE;
            }
            id = (unsigned long)v;
            tok = eq + 1;
        }
        const char *colon = strrchr(tok, ':');
        uint64_t port;
        if (colon == NULL || colon == tok || !cli_parse_u64(colon + 1, &port) ||
            port == 0 || port > 65535) {
            fprintf(stderr,
                    "craft-cli %s: bad address '%s' (expected HOST:PORT or "
                    "ID=HOST:PORT)\n",
                    cmd, tok);
            return CLI_EXIT_USAGE;
        }
        o->ids[o->n_addrs] = id;
        o->addrs[o->n_addrs++] = tok;
    }
    if (o->n_addrs == 0) {
        fprintf(stderr, "craft-cli %s: --cluster lists no address\n", cmd);
        return CLI_EXIT_USAGE;
    }
    return 0;
}

int cli_cluster_parse(int argc, char **argv, const char *usage,
                      struct cli_cluster_opts *opts)
{
    static const struct option longopts[] = {
        {"cluster", required_argument, NULL, 'c'},
        {"timeout-ms", required_argument, NULL, 't'},
        {"password", required_argument, NULL, 'a'},
        {"json", no_argument, NULL, 'j'},
        {"no-session", no_argument, NULL, 'S'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *cmd = argv[0];
    memset(opts, 0, sizeof *opts);
    opts->timeout_ms = 10000;
    const char *list = getenv("CRAFT_CLUSTER");
    if (list == NULL || *list == '\0') {
        list = CLI_CLUSTER_DEFAULT;
    }
    opterr = 0;
    optind = 0; /* GNU: reinitialise, argv[0] is the command */
    int ch;
    while ((ch = getopt_long(argc, argv, "c:t:a:jh", longopts, NULL)) != -1) {
        uint64_t v;
        switch (ch) {
        case 'c':
            list = optarg;
            break;
        case 't':
            if (!cli_parse_u64(optarg, &v) || v == 0 || v > 3600000) {
                fprintf(stderr,
                        "craft-cli %s: --timeout-ms wants 1..3600000, not "
                        "'%s'\n",
                        cmd, optarg);
                return CLI_EXIT_USAGE;
            }
            opts->timeout_ms = (unsigned)v;
            break;
        case 'a':
            opts->password = optarg;
            break;
        case 'j':
            opts->json = true;
            break;
        case 'S':
            opts->no_session = true;
            break;
        case 'h':
            fputs(usage, stdout);
            return -1;
        default:
            fprintf(stderr, "craft-cli %s: unknown option '%s'\n\n%s", cmd,
                    argv[optind - 1], usage);
            return CLI_EXIT_USAGE;
        }
    }
    int rv = parse_list(cmd, list, opts);
    if (rv != 0) {
        return rv;
    }
    opts->args = argv + optind;
    opts->n_args = argc - optind;
    return 0;
}

void cli_cluster_client_options(const struct cli_cluster_opts *opts,
                                struct craft_client_options *o)
{
    craft_client_options_init(o);
    o->addrs = opts->addrs;
    o->n_addrs = opts->n_addrs;
    o->total_timeout_ms = opts->timeout_ms;
    if (o->request_timeout_ms > opts->timeout_ms) {
        o->request_timeout_ms = opts->timeout_ms;
    }
    if (o->connect_timeout_ms > opts->timeout_ms) {
        o->connect_timeout_ms = opts->timeout_ms;
    }
    o->password = opts->password;
    o->exactly_once = !opts->no_session;
}

/* Length of the valid UTF-8 sequence at s (at most n bytes), or 0. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    size_t len;
    unsigned min;
    unsigned cp;
    if (s[0] >= 0xc2 && s[0] <= 0xdf) {
        len = 2, min = 0x80, cp = s[0] & 0x1fu;
    } else if (s[0] >= 0xe0 && s[0] <= 0xef) {
        len = 3, min = 0x800, cp = s[0] & 0x0fu;
    } else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
        len = 4, min = 0x10000, cp = s[0] & 0x07u;
    } else {
        return 0;
    }
    if (n < len) {
        return 0;
    }
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) {
            return 0;
        }
        cp = (cp << 6) | (s[i] & 0x3fu);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
        return 0;
    }
    return len;
}

void cli_json_string(FILE *f, const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    fputc('"', f);
    for (size_t i = 0; i < len;) {
        unsigned char ch = p[i];
        if (ch == '"' || ch == '\\') {
            fprintf(f, "\\%c", ch);
            i++;
        } else if (ch == '\n') {
            fputs("\\n", f);
            i++;
        } else if (ch < 0x20 || ch == 0x7f) {
            fprintf(f, "\\u%04x", ch);
            i++;
        } else if (ch < 0x80) {
            fputc(ch, f);
            i++;
        } else {
            size_t n = utf8_len(p + i, len - i);
            if (n == 0) {
                fprintf(f, "\\u%04x", ch);
                i++;
            } else {
                fwrite(p + i, 1, n, f);
                i += n;
            }
        }
    }
    fputc('"', f);
}

int cli_client_exit(int rv)
{
    return rv == CRAFT_EINVAL ? CLI_EXIT_USAGE : CLI_EXIT_IO;
}
