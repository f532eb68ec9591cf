/* Unit tests for craftd's command line (src/node/config.c) and data-dir
 * identity (src/node/ident.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "craft/common.h"
#include "node/config.h"
#include "node/ident.h"

#define CLUSTER3 "1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003"

static int parse(struct node_config *cfg, char *err, ...)
{
    const char *argv[32] = {"craftd"};
    int argc = 1;
    va_list ap;
    va_start(ap, err);
    for (const char *a; (a = va_arg(ap, const char *)) != NULL;) {
        argv[argc++] = a;
    }
    va_end(ap);
    enum node_config_action action = 0;
    int rv = node_config_parse(argc, (char **)argv, cfg, &action, err, 256);
    if (rv == 0) {
        assert_int_equal(action, NODE_CONFIG_RUN);
    }
    return rv;
}

static void config_valid(void **state)
{
    (void)state;
    static struct node_config cfg;
    char err[256];
    assert_int_equal(parse(&cfg, err, "--id", "2", "--cluster",
                           "3=127.0.0.1:7003,1=127.0.0.1:7001,2=127.0.0.1:"
                           "7002",
                           "--data-dir", "/tmp/x", NULL),
                     0);
    assert_int_equal(cfg.n_members, 3);
    assert_int_equal(cfg.id, 2);
    assert_int_equal(cfg.self, 1);
    assert_int_equal(cfg.members[0].id, 1);
    assert_int_equal(cfg.members[2].client_port, 7003);
    assert_int_equal(cfg.members[2].raft_port, 17003);
    uint64_t cid = cfg.cluster_id;
    /* The cluster id depends on the members, not on the order given. */
    assert_int_equal(parse(&cfg, err, "-i", "1", "-c", CLUSTER3, "-d", "/tmp/y",
                           "--raft-port-offset", "100", "--election-ms",
                           "300-600", "--heartbeat-ms", "50",
                           "--snapshot-bytes", "2m", "--requirepass", "pw",
                           "--log-level", "debug", NULL),
                     0);
    assert_int_equal(cfg.cluster_id, cid);
    assert_int_equal(cfg.members[0].raft_port, 7101);
    assert_int_equal(cfg.snapshot_bytes, 2u << 20);
    assert_int_equal(cfg.election_ms_min, 300);
    assert_string_equal(cfg.requirepass, "pw");
    assert_int_equal(parse(&cfg, err, "--id", "1", "--cluster",
                           "1=127.0.0.1:7001,2=127.0.0.1:7002", "--data-dir",
                           "/tmp/y", NULL),
                     0);
    assert_true(cfg.cluster_id != cid);
}

static void config_errors(void **state)
{
    (void)state;
    static struct node_config cfg;
    char err[256];
    struct {
        const char *args[8];
        const char *needle;
    } cases[] = {
        {{"--cluster", CLUSTER3, "--data-dir", "d"}, "missing --id"},
        {{"--id", "1", "--data-dir", "d"}, "missing --cluster"},
        {{"--id", "1", "--cluster", CLUSTER3}, "missing --data-dir"},
        {{"--id", "4", "--cluster", CLUSTER3, "-d", "d"}, "not a member"},
        {{"--id", "x", "--cluster", CLUSTER3, "-d", "d"}, "--id"},
        {{"--id", "1", "--cluster", "1=127.0.0.1:7001,1=127.0.0.1:7002", "-d",
          "d"},
         "twice"},
        {{"--id", "1", "--cluster", "1=127.0.0.1:70000", "-d", "d"},
         "bad port"},
        {{"--id", "1", "--cluster", "1=127.0.0.1:60000", "-d", "d"},
         "above 65535"},
        {{"--id", "1", "--cluster", "1=127.0.0.1", "-d", "d"}, "ID=HOST:PORT"},
        {{"--id", "1", "--cluster",
          "1=1.0.0.1:1,2=1.0.0.1:2,3=1.0.0.1:3,4=1.0.0.1:4,5=1.0.0.1:5,"
          "6=1.0.0.1:6,7=1.0.0.1:7,8=1.0.0.1:8",
          "-d", "d"},
         "at most 7"},
        {{"--id", "1", "--cluster", "1=1.0.0.1:7001,2=1.0.0.1:7001", "-d", "d"},
         "share a port"},
        {{"--id", "1", "--cluster", "1=localhost:7001", "-d", "d"},
         "numeric IPv4"},
        {{"--id", "1", "--cluster", CLUSTER3, "-d", "d", "--bogus"},
         "unknown option"},
        {{"--id", "1", "--cluster", CLUSTER3, "-d", "d", "--election-ms",
          "500-100"},
         "MIN < MAX"},
        {{"--id", "1", "--cluster", CLUSTER3, "-d", "d", "--log-level", "loud"},
         "--log-level"},
        {{"--id", "1", "--cluster", CLUSTER3, "-d", "d", "extra"},
         "unexpected argument"},
        {{"--id", "1", "--cluster", CLUSTER3, "-d", "d", "--max-clients", "0"},
         "--max-clients"},
        {{"--id", "1", "--cluster", CLUSTER3, "-d", "d", "--snapshot-bytes",
          "12q"},
         "--snapshot-bytes"},
        {{"--id"}, "needs a value"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *argv[10] = {"craftd"};
        int argc = 1;
        for (int j = 0; j < 8 && cases[i].args[j] != NULL; j++) {
            argv[argc++] = cases[i].args[j];
        }
        enum node_config_action action;
        int rv = node_config_parse(argc, (char **)argv, &cfg, &action, err,
                                   sizeof err);
        if (rv != CRAFT_EINVAL || strstr(err, cases[i].needle) == NULL) {
            fail_msg("case %zu: rv %d, message '%s', expected '%s'", i, rv, err,
                     cases[i].needle);
        }
    }
}

static void write_file(const char *path, const char *data, size_t n, int mode)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(chmod(path, (mode_t)mode), 0);
}

/* --requirepass-file and --cluster-secret-file: contents, one trailing
 * newline dropped, and every way the file can be unfit, each a one-line
 * reason naming the flag. */
static void config_secret_files(void **state)
{
    (void)state;
    static struct node_config cfg;
    char err[256], dir[] = "/tmp/craft-test-secret.XXXXXX", path[300];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/s", dir);
    write_file(path, "pass word\r\n", 11, 0600);
    assert_int_equal(parse(&cfg, err, "-i", "1", "-c", CLUSTER3, "-d", "/tmp/y",
                           "--requirepass-file", path, "--cluster-secret-file",
                           path, NULL),
                     0);
    assert_string_equal(cfg.requirepass, "pass word");
    assert_int_equal(cfg.cluster_secret_len, 9);
    assert_memory_equal(cfg.cluster_secret, "pass word", 9);
    /* Binary bytes are kept; only one newline goes. */
    write_file(path, "\x01\xff\n\n", 4, 0400);
    assert_int_equal(parse(&cfg, err, "-i", "1", "-c", CLUSTER3, "-d", "/tmp/y",
                           "--cluster-secret-file", path, NULL),
                     0);
    assert_int_equal(cfg.cluster_secret_len, 3);
    static const struct {
        const char *data;
        size_t len;
        int mode;
        const char *want;
    } bad[] = {
        {"x", 1, 0640, "accessible by group or others"},
        {"x", 1, 0604, "accessible by group or others"},
        {"\n", 1, 0600, "must hold 1..256 bytes"},
        {"", 0, 0600, "must hold 1..256 bytes"},
        {"a\0b", 3, 0600, "no NUL bytes"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_file(path, bad[i].data, bad[i].len, bad[i].mode);
        assert_int_equal(parse(&cfg, err, "-i", "1", "-c", CLUSTER3, "-d",
                               "/tmp/y", "--cluster-secret-file", path, NULL),
                         CRAFT_EINVAL);
        assert_non_null(strstr(err, "--cluster-secret-file"));
        if (strstr(err, bad[i].want) == NULL) {
            fail_msg("case %zu: %s", i, err);
        }
    }
    static char big[600];
    memset(big, 'a', sizeof big);
    write_file(path, big, 257, 0600);
    assert_int_equal(parse(&cfg, err, "-i", "1", "-c", CLUSTER3, "-d", "/tmp/y",
                           "--cluster-secret-file", path, NULL),
                     CRAFT_EINVAL);
    assert_non_null(strstr(err, "must hold 1..256 bytes"));
    /* The longest secret with a CRLF or LF after it is accepted. */
    memcpy(big + 256, "\r\n", 2);
    write_file(path, big, 258, 0600);
    assert_int_equal(parse(&cfg, err, "-i", "1", "-c", CLUSTER3, "-d", "/tmp/y",
                           "--cluster-secret-file", path, NULL),
                     0);
    assert_int_equal(cfg.cluster_secret_len, 256);
    assert_int_equal(cfg.cluster_secret[255], 'a');
    memcpy(big + 256, "\n", 1);
    write_file(path, big, 257, 0600);
    assert_int_equal(parse(&cfg, err, "-i", "1", "-c", CLUSTER3, "-d", "/tmp/y",
                           "--cluster-secret-file", path, NULL),
                     0);
    assert_int_equal(cfg.cluster_secret_len, 256);
    memcpy(big + 512, "\r\n", 2);
    write_file(path, big, 514, 0600);
    assert_int_equal(parse(&cfg, err, "-i", "1", "-c", CLUSTER3, "-d", "/tmp/y",
                           "--requirepass-file", path, NULL),
                     0);
    assert_int_equal(strlen(cfg.requirepass), 512);
    memset(big, 'a', sizeof big);
    write_file(path, big, 259, 0600);
    assert_int_equal(parse(&cfg, err, "-i", "1", "-c", CLUSTER3, "-d", "/tmp/y",
                           "--cluster-secret-file", path, NULL),
                     CRAFT_EINVAL);
    assert_non_null(strstr(err, "longer than 256"));
    write_file(path, big, 512, 0600);
    assert_int_equal(parse(&cfg, err, "-i", "1", "-c", CLUSTER3, "-d", "/tmp/y",
                           "--requirepass-file", path, NULL),
                     0);
    assert_int_equal(strlen(cfg.requirepass), 512);
    write_file(path, big, 513, 0600);
    assert_int_equal(parse(&cfg, err, "-i", "1", "-c", CLUSTER3, "-d", "/tmp/y",
                           "--requirepass-file", path, NULL),
                     CRAFT_EINVAL);
    assert_non_null(strstr(err, "--requirepass-file"));
    assert_int_equal(parse(&cfg, err, "-i", "1", "-c", CLUSTER3, "-d", "/tmp/y",
                           "--requirepass-file", dir, NULL),
                     CRAFT_EINVAL);
    assert_non_null(strstr(err, "not a regular file"));
    unlink(path);
    assert_int_equal(parse(&cfg, err, "-i", "1", "-c", CLUSTER3, "-d", "/tmp/y",
                           "--requirepass-file", path, NULL),
                     CRAFT_EINVAL);
    assert_non_null(strstr(err, "cannot open"));
    assert_int_equal(rmdir(dir), 0);
}

static void config_help(void **state)
{
    (void)state;
    static struct node_config cfg;
    char err[64];
    const char *argv[] = {"craftd", "--id", "1", "--help"};
    enum node_config_action action = 0;
    assert_int_equal(
        node_config_parse(4, (char **)argv, &cfg, &action, err, sizeof err), 0);
    assert_int_equal(action, NODE_CONFIG_HELP);
    FILE *f = tmpfile();
    node_config_usage(f);
    long size = ftell(f);
    fclose(f);
    assert_true(size > 500);
}

static void make_cfg(struct node_config *cfg, const char *dir, const char *id,
                     const char *cluster)
{
    char err[256];
    const char *argv[] = {"craftd", "--id",       id, "--cluster",
                          cluster,  "--data-dir", dir};
    enum node_config_action action;
    assert_int_equal(
        node_config_parse(7, (char **)argv, cfg, &action, err, sizeof err), 0);
}

static void ident_lifecycle(void **state)
{
    (void)state;
    char tmpl[] = "/tmp/craft-ident-XXXXXX";
    char *root = mkdtemp(tmpl);
    assert_non_null(root);
    char dir[256];
    snprintf(dir, sizeof dir, "%s/a/b", root);
    static struct node_config cfg, other;
    char err[512];
    int fd = -1, fd2 = -1;

    make_cfg(&cfg, dir, "1", CLUSTER3);
    assert_int_equal(node_ident_open(&cfg, &fd, err, sizeof err), 0);
    assert_true(fd >= 0);
    /* A second process (here: a second open) is refused while locked. */
    assert_int_equal(node_ident_open(&cfg, &fd2, err, sizeof err), CRAFT_EBUSY);
    assert_non_null(strstr(err, "in use"));
    close(fd);
    assert_int_equal(node_ident_open(&cfg, &fd, err, sizeof err), 0);
    close(fd);

    make_cfg(&other, dir, "2", CLUSTER3);
    assert_int_equal(node_ident_open(&other, &fd, err, sizeof err),
                     CRAFT_EMISMATCH);
    assert_non_null(strstr(err, "belongs to node 1"));
    make_cfg(&other, dir, "1", "1=127.0.0.1:7001,2=127.0.0.1:7002");
    assert_int_equal(node_ident_open(&other, &fd, err, sizeof err),
                     CRAFT_EMISMATCH);
    assert_non_null(strstr(err, "belongs to cluster"));

    /* Flip one byte of the identity: the checksum catches it. */
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, NODE_IDENT_FILE);
    FILE *f = fopen(path, "r+");
    assert_non_null(f);
    fseek(f, 20, SEEK_SET);
    int c = fgetc(f);
    fseek(f, 20, SEEK_SET);
    fputc(c ^ 1, f);
    fclose(f);
    assert_int_equal(node_ident_open(&cfg, &fd, err, sizeof err),
                     CRAFT_ECORRUPT);

    /* A data dir that cannot be created. */
    make_cfg(&other, "/proc/craft-no-such/dir", "1", CLUSTER3);
    assert_int_equal(node_ident_open(&other, &fd, err, sizeof err), CRAFT_EIO);
    assert_non_null(strstr(err, "cannot create data dir"));

    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(config_valid),
        cmocka_unit_test(config_errors),
        cmocka_unit_test(config_help),
        cmocka_unit_test(config_secret_files),
        cmocka_unit_test(ident_lifecycle),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
