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
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "craft/common.h"
#include "mr/cli.h"
#include "mr/coordinator.h"
#include "mr/run.h"
#include "mr/seq.h"
#include "mr/split.h"
#include "mr/task.h"
#include "mr/worker.h"
#include "util/log.h"

static const char usage[] =
    "usage:\n"
    "  craft-mr coordinator --plugin PATH [--reduce N] [--listen ADDR]\n"
    "        [--task-timeout SEC] [--output-dir DIR] [--arg KEY=VALUE]...\n"
    "        [--split-mb N] [--max-attempts N] [--worker-timeout SEC]\n"
    "        [--port-file PATH] [--log-level L] [--quiet] INPUT...\n"
    "  craft-mr worker [--coordinator ADDR] [--work-dir DIR]\n"
    "        [--memory-mb N] [--connect-timeout SEC] [--log-level L]\n"
    "        [--quiet]\n"
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

static int set_log_level(const char *s)
{
    enum log_level level;
    if (log_level_parse(s, &level) != 0) {
        fprintf(stderr,
                "craft-mr: --log-level wants debug, info, warn, "
                "error or off, got '%s'\n",
                s);
        return CRAFT_EINVAL;
    }
    log_set_level(level);
    return 0;
}

static int cmd_coordinator(int argc, char **argv)
{
    static const struct option opts[] = {
        {"plugin", required_argument, NULL, 'p'},
        {"reduce", required_argument, NULL, 'r'},
        {"listen", required_argument, NULL, 'l'},
        {"task-timeout", required_argument, NULL, 't'},
        {"worker-timeout", required_argument, NULL, 'W'},
        {"output-dir", required_argument, NULL, 'o'},
        {"arg", required_argument, NULL, 'a'},
        {"split-mb", required_argument, NULL, 's'},
        {"max-attempts", required_argument, NULL, 'A'},
        {"port-file", required_argument, NULL, 'P'},
        {"log-level", required_argument, NULL, 'L'},
        {"quiet", no_argument, NULL, 'q'},
        {NULL, 0, NULL, 0}};
    struct mr_arglist args = {0};
    struct mr_coord_config cfg = {.n_reduces = 10,
                                  .listen = "127.0.0.1:7400",
                                  .output_dir = ".",
                                  .task_timeout_ms = 10000,
                                  .worker_timeout_ms = 5000,
                                  .split_bytes = MR_SPLIT_BYTES_DEFAULT,
                                  .max_failures = 3,
                                  .max_losses = 10};
    uint64_t v;
    int c, bad = 0;
    log_set_level(LOG_WARN);
    while (!bad && (c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'p':
            cfg.plugin_path = optarg;
            break;
        case 'r':
            bad = mr_parse_u64("--reduce", optarg, 1, MR_PARTITIONS_MAX, &v);
            cfg.n_reduces = (uint32_t)v;
            break;
        case 'l':
            cfg.listen = optarg;
            break;
        case 't':
            bad = mr_parse_u64("--task-timeout", optarg, 1, 86400, &v);
            cfg.task_timeout_ms = v * 1000;
            break;
        case 'W':
            bad = mr_parse_u64("--worker-timeout", optarg, 1, 86400, &v);
            cfg.worker_timeout_ms = v * 1000;
            break;
        case 'o':
            cfg.output_dir = optarg;
            break;
        case 'a':
            bad = mr_arglist_add(&args, optarg);
            break;
        case 's':
            bad = mr_parse_u64("--split-mb", optarg, 1, 1024, &v);
            cfg.split_bytes = v << 20;
            break;
        case 'A':
            bad = mr_parse_u64("--max-attempts", optarg, 1, 1000, &v);
            cfg.max_failures = (uint32_t)v;
            break;
        case 'P':
            cfg.port_file = optarg;
            break;
        case 'L':
            bad = set_log_level(optarg);
            break;
        case 'q':
            cfg.quiet = 1;
            break;
        default:
            bad = 1;
        }
    }
    if (!bad && (!cfg.plugin_path || optind >= argc)) {
        fprintf(stderr, "craft-mr coordinator: needs --plugin PATH and at "
                        "least one INPUT\n");
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
    int code = mr_coordinator_run(&cfg);
    mr_arglist_free(&args);
    return code;
}

static int cmd_worker(int argc, char **argv)
{
    static const struct option opts[] = {
        {"coordinator", required_argument, NULL, 'c'},
        {"work-dir", required_argument, NULL, 'w'},
        {"memory-mb", required_argument, NULL, 'm'},
        {"connect-timeout", required_argument, NULL, 't'},
        {"log-level", required_argument, NULL, 'L'},
        {"quiet", no_argument, NULL, 'q'},
        {NULL, 0, NULL, 0}};
    struct mr_worker_config cfg = {.coordinator = "127.0.0.1:7400",
                                   .memory_bytes = 256u << 20,
                                   .connect_timeout_ms = 10000};
    uint64_t v;
    int c, bad = 0;
    log_set_level(LOG_WARN);
    while (!bad && (c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            cfg.coordinator = optarg;
            break;
        case 'w':
            cfg.work_dir = optarg;
            break;
        case 'm':
            /* 16 MiB at least: room for one maximal record (craft/mr.h). */
            bad = mr_parse_u64("--memory-mb", optarg, 16, 1u << 20, &v);
            cfg.memory_bytes = v << 20;
            break;
        case 't':
            bad = mr_parse_u64("--connect-timeout", optarg, 1, 86400, &v);
            cfg.connect_timeout_ms = v * 1000;
            break;
        case 'L':
            bad = set_log_level(optarg);
            break;
        case 'q':
            cfg.quiet = 1;
            break;
        default:
            bad = 1;
        }
    }
    if (!bad && optind < argc) {
        fprintf(stderr, "craft-mr worker: unexpected argument '%s'\n",
                argv[optind]);
        bad = 1;
    }
    if (bad) {
        fputs(usage, stderr);
        return 2;
    }
    return mr_worker_run(&cfg);
}

int main(int argc, char **argv)
{
#ifdef __GLIBC__
    /* Buffers of 128 KiB and more (input splits, sort buffers, chunks) get
     * their own mappings and go back to the system when freed.  glibc's
     * default raises this threshold each time such a block is freed, after
     * which big buffers come from the heap arenas, fragment them, and a
     * worker's RSS drifts far above its --memory-mb (measured: 49 MB vs
     * 14 MB for a 32 MB worker).  Setting it also fixes it. */
    mallopt(M_MMAP_THRESHOLD, 128 * 1024);
#endif
    if (argc < 2 || strcmp(argv[1], "help") == 0 ||
        strcmp(argv[1], "--help") == 0) {
        fputs(usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "coordinator") == 0) {
        return cmd_coordinator(argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "worker") == 0) {
        return cmd_worker(argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "seq") == 0) {
        return cmd_seq(argc - 1, argv + 1);
    }
    fprintf(stderr, "craft-mr: unknown command '%s'\n", argv[1]);
    fputs(usage, stderr);
    return 2;
}
