/*
 * craft-cli get / set / del / append: one command through libcraftclient,
 * which finds the leader, follows it, and makes writes exactly-once with a
 * session.
 *
 * Exit status: 0 done; 1 nothing to report (GET of a missing key, SET NX/XX
 * not applied); 2 the server refused the command (an error reply);
 * CLI_EXIT_USAGE; CLI_EXIT_IO when the cluster could not be reached or a
 * write's outcome is unknown.
 */
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cluster.h"

#define KV_EXIT_NIL 1
#define KV_EXIT_REFUSED 2

#define COMMON_OPTS                                                            \
    "  -c, --cluster LIST  members, HOST:PORT,... or craftd's "                \
    "ID=HOST:PORT,...\n"                                                       \
    "                      (default $CRAFT_CLUSTER, else " CLI_CLUSTER_DEFAULT \
    ")\n"                                                                      \
    "  -t, --timeout-ms N  give up after N ms, retries included (10000)\n"     \
    "  -a, --password P    AUTH with P (craftd --requirepass)\n"               \
    "  -j, --json          print one JSON object\n"                            \
    "      --no-session    send writes bare (no exactly-once retries)\n"       \
    "\n"                                                                       \
    "exit status: 0 ok, 1 no value / not applied, 2 the server refused the\n"  \
    "command, 64 bad usage, 74 cluster unreachable or outcome unknown\n"

static const char get_usage[] =
    "usage: craft-cli get [OPTIONS] KEY\n"
    "\n"
    "Print the value of KEY (a linearizable read at the leader); exit 1 if\n"
    "there is none.\n\n" COMMON_OPTS;

static const char set_usage[] =
    "usage: craft-cli set [OPTIONS] KEY VALUE [NX|XX] [EX s|PX ms|KEEPTTL]\n"
    "\n"
    "Set KEY to VALUE, exactly once.  With NX or XX, exit 1 if the condition\n"
    "was not met.\n\n" COMMON_OPTS;

static const char del_usage[] =
    "usage: craft-cli del [OPTIONS] KEY [KEY...]\n"
    "\n"
    "Delete keys, exactly once; prints how many existed.\n\n" COMMON_OPTS;

static const char append_usage[] =
    "usage: craft-cli append [OPTIONS] KEY VALUE\n"
    "\n"
    "Append VALUE to KEY, exactly once; prints the new length.\n"
    "\n" COMMON_OPTS;

static void print_reply(const struct cli_cluster_opts *o, const char *cmd,
                        const redisReply *r)
{
    if (o->json) {
        printf("{\"command\":\"%s\",", cmd);
        switch (r->type) {
        case REDIS_REPLY_STRING:
        case REDIS_REPLY_STATUS:
            fputs("\"value\":", stdout);
            cli_json_string(stdout, r->str, r->len);
            break;
        case REDIS_REPLY_INTEGER:
            printf("\"value\":%lld", r->integer);
            break;
        case REDIS_REPLY_ERROR:
            fputs("\"error\":", stdout);
            cli_json_string(stdout, r->str, r->len);
            break;
        default:
            fputs("\"value\":null", stdout);
            break;
        }
        fputs("}\n", stdout);
        return;
    }
    switch (r->type) {
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
        fwrite(r->str, 1, r->len, stdout);
        fputc('\n', stdout);
        break;
    case REDIS_REPLY_INTEGER:
        printf("%lld\n", r->integer);
        break;
    case REDIS_REPLY_ERROR:
        fprintf(stderr, "craft-cli %s: %s\n", cmd, r->str);
        break;
    default:
        break; /* nil: nothing to print, the exit status says it */
    }
}

/* Run argv[0..n) (the Redis command) against the cluster. */
static int run_one(const struct cli_cluster_opts *o, const char *cmd, int n,
                   const char *const *argv)
{
    struct craft_client_options co;
    cli_cluster_client_options(o, &co);
    struct craft_client *c;
    char err[256];
    int rv = craft_client_new(&co, &c, err, sizeof err);
    if (rv != 0) {
        fprintf(stderr, "craft-cli %s: %s\n", cmd, err);
        return cli_client_exit(rv);
    }
    redisReply *r;
    rv = craft_client_command_argv(c, &r, n, argv, NULL);
    if (rv != 0) {
        if (o->json) {
            printf("{\"command\":\"%s\",\"error\":", cmd);
            const char *m = craft_client_errmsg(c);
            cli_json_string(stdout, m, strlen(m));
            printf(",\"code\":\"%s\"}\n", craft_errname(rv));
        }
        fprintf(stderr, "craft-cli %s: %s: %s\n", cmd, craft_strerror(rv),
                craft_client_errmsg(c));
        craft_client_free(c);
        return cli_client_exit(rv);
    }
    print_reply(o, cmd, r);
    int code = 0;
    if (r->type == REDIS_REPLY_ERROR) {
        code = KV_EXIT_REFUSED;
    } else if (r->type == REDIS_REPLY_NIL) {
        code = KV_EXIT_NIL;
    }
    freeReplyObject(r);
    craft_client_free(c);
    return code;
}

static int kv_command(int argc, char **argv, const char *usage,
                      const char *redis_cmd, int min_args, int max_args)
{
    struct cli_cluster_opts o;
    int rv = cli_cluster_parse(argc, argv, usage, &o);
    if (rv != 0) {
        return rv < 0 ? 0 : rv;
    }
    if (o.n_args < min_args || (max_args > 0 && o.n_args > max_args)) {
        fprintf(stderr, "craft-cli %s: wrong number of arguments\n\n%s",
                argv[0], usage);
        return CLI_EXIT_USAGE;
    }
    const char **cmd = calloc((size_t)o.n_args + 1, sizeof *cmd);
    if (cmd == NULL) {
        fprintf(stderr, "craft-cli %s: out of memory\n", argv[0]);
        return CLI_EXIT_IO;
    }
    cmd[0] = redis_cmd;
    for (int i = 0; i < o.n_args; i++) {
        cmd[i + 1] = o.args[i];
    }
    rv = run_one(&o, argv[0], o.n_args + 1, cmd);
    free(cmd);
    return rv;
}

int cli_get(int argc, char **argv)
{
    return kv_command(argc, argv, get_usage, "GET", 1, 1);
}

int cli_set(int argc, char **argv)
{
    return kv_command(argc, argv, set_usage, "SET", 2, 6);
}

int cli_del(int argc, char **argv)
{
    return kv_command(argc, argv, del_usage, "DEL", 1, 0);
}

int cli_append(int argc, char **argv)
{
    return kv_command(argc, argv, append_usage, "APPEND", 2, 2);
}
