/*
 * craft-cli's command table.  A command is a name, a one-line summary and a
 * function taking the arguments after its name (argv[0] is the command's
 * own name).  A group of commands ("log check", "log dump") is a command
 * whose function dispatches through its own table with cli_dispatch().
 *
 * Exit codes shared by every command: 0 success, CLI_EXIT_USAGE for a bad
 * command line, CLI_EXIT_IO when a file or the network failed; a command
 * may define more (log check: 1 torn tail, 2 corruption).
 */
#ifndef CRAFT_CLI_H
#define CRAFT_CLI_H

#include <stdbool.h>
#include <stdint.h>

#define CLI_EXIT_USAGE 64 /* sysexits.h EX_USAGE */
#define CLI_EXIT_IO 74    /* sysexits.h EX_IOERR */

struct cli_cmd {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv);
};

/* Run the command argv[0] names from the table, or print the table for
 * --help/-h/help (exit 0) or an unknown name (CLI_EXIT_USAGE).  prefix is
 * the command path for messages, e.g. "craft-cli log". */
int cli_dispatch(const char *prefix, const struct cli_cmd *cmds, size_t n,
                 int argc, char **argv);

/* True if argv holds -h or --help. */
bool cli_wants_help(int argc, char **argv);

/* Parse a whole decimal number; false on anything else. */
bool cli_parse_u64(const char *s, uint64_t *out);

/* Command groups. */
int cli_log(int argc, char **argv);

#endif
