/*
 * craft-mr: MapReduce on craft.  Subcommands:
 *
 *   craft-mr coordinator --plugin PATH [options] INPUT...
 *   craft-mr worker [--coordinator ADDR] [--work-dir DIR] [options]
 *   craft-mr seq --plugin PATH [--output FILE] INPUT...
 *
 * `craft-mr help` (or no arguments) prints the full usage.  Exit status: 0
 * when the job (or the worker's part in it) is done, 1 when it failed, 2 on
 * a usage error.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "craft/common.h"
#include "mr/cli.h"
#include "mr/seq.h"
#include "mr/split.h"
#include "mr/task.h"

static const char usage[] =
    "usage:\n"
    "  craft-mr coordinator --plugin PATH [--reduce N] [--listen ADDR]\n"
    "        [--task-timeout SEC] [--output-dir DIR] [--arg KEY=VALUE]...\n"
    "        [--split-mb N] [--max-attempts N] [--port-file PATH] [--quiet]\n"
    "        INPUT...\n"
    "  craft-mr worker [--coordinator ADDR] [--work-dir DIR]\n"
    "        [--memory-mb N] [--connect-timeout SEC] [--quiet]\n"
    "  craft-mr seq --plugin PATH [--output FILE] [--arg KEY=VALUE]...\n"
    "        [--split-mb N] [--sort-mb N] [--work-dir DIR] INPUT...\n"
    "defaults: --reduce 10, --listen/--coordinator 127.0.0.1:7400,\n"
    "  --task-timeout 10, --output-dir ., --output mr-out-0, --memory-mb 256\n";

static int cmd_seq(int argc, char **argv)
{
    static const struct option opts[] = {
        {"plugin", required_argument, NULL, 'p'},
        {"output", required_argument, NULL, 'o'},
        {"arg", required_argument, NULL, 'a'},
        {"split-mb", required_argument, NULL, 's'},
        {"sort-mb", required_argument, NULL, 'm'},
        {"work-dir", required_argument, NULL, 'w'},
        {NULL, 0, NULL, 0}};
    struct mr_arglist args = {0};
    struct mr_seq_config cfg = {.output = "mr-out-0",
                                .split_bytes = MR_SPLIT_BYTES_DEFAULT,
                                .sort_bytes = 64u << 20};
    uint64_t v;
    int c, bad = 0;
    while (!bad && (c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'p':
            cfg.plugin_path = optarg;
            break;
        case 'o':
            cfg.output = optarg;
            break;
        case 'a':
            bad = mr_arglist_add(&args, optarg) != 0;
            break;
        case 's':
            bad = mr_parse_u64("--split-mb", optarg, 1, 1024, &v) != 0;
            cfg.split_bytes = v << 20;
            break;
        case 'm':
            bad = mr_parse_u64("--sort-mb", optarg, 1, 4095, &v) != 0;
            cfg.sort_bytes = (size_t)v << 20;
            break;
        case 'w':
            cfg.work_dir = optarg;
            break;
        default:
            bad = 1;
        }
    }
    if (!bad && (!cfg.plugin_path || optind >= argc)) {
        fprintf(stderr, "craft-mr seq: needs --plugin PATH and at least one "
                        "INPUT\n");
        bad = 1;
    }
    if (bad) {
        fputs(usage, stderr);
        mr_arglist_free(&args);
        return 2;
    }
    struct mr_args view;
    mr_arglist_view(&args, &view);
    cfg.args = &view;
    cfg.inputs = (const char *const *)argv + optind;
    cfg.n_inputs = (uint32_t)(argc - optind);
    int rv = mr_seq_run(&cfg);
    mr_arglist_free(&args);
    return rv == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "help") == 0 ||
        strcmp(argv[1], "--help") == 0) {
        fputs(usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "seq") == 0) {
        return cmd_seq(argc - 1, argv + 1);
    }
    fprintf(stderr, "craft-mr: unknown command '%s'\n", argv[1]);
    fputs(usage, stderr);
    return 2;
}
