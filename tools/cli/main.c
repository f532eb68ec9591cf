/*
 * craft-cli -- admin and client tool for craft.
 *
 *     craft-cli log check DIR [--repair]
 *     craft-cli log dump DIR [--from I] [--to J]
 *
 * Later commands (status, get, set, ...) are added as rows of `commands`
 * below, each in its own file.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const struct cli_cmd commands[] = {
    {"log", "inspect, check and repair a node's data directory", cli_log},
};

bool cli_wants_help(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            return true;
        }
    }
    return false;
}

bool cli_parse_u64(const char *s, uint64_t *out)
{
    if (s == NULL || *s < '0' || *s > '9') {
        return false;
    }
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0') {
        return false;
    }
    *out = (uint64_t)v;
    return true;
}

static void print_table(FILE *f, const char *prefix, const struct cli_cmd *cmds,
                        size_t n)
{
    fprintf(f, "usage: %s COMMAND [ARGS...]\n\ncommands:\n", prefix);
    for (size_t i = 0; i < n; i++) {
        fprintf(f, "  %-10s %s\n", cmds[i].name, cmds[i].summary);
    }
    fprintf(f, "\n'%s COMMAND --help' describes a command.\n", prefix);
}

int cli_dispatch(const char *prefix, const struct cli_cmd *cmds, size_t n,
                 int argc, char **argv)
{
    if (argc < 1) {
        print_table(stderr, prefix, cmds, n);
        return CLI_EXIT_USAGE;
    }
    if (strcmp(argv[0], "-h") == 0 || strcmp(argv[0], "--help") == 0 ||
        strcmp(argv[0], "help") == 0) {
        print_table(stdout, prefix, cmds, n);
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        if (strcmp(argv[0], cmds[i].name) == 0) {
            return cmds[i].run(argc, argv);
        }
    }
    fprintf(stderr, "%s: unknown command '%s'\n\n", prefix, argv[0]);
    print_table(stderr, prefix, cmds, n);
    return CLI_EXIT_USAGE;
}

int main(int argc, char **argv)
{
    return cli_dispatch("craft-cli", commands,
                        sizeof commands / sizeof commands[0], argc - 1,
                        argv + 1);
}
