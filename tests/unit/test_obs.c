/*
 * Unit tests for observability: structured log lines (util/log.c, text and
 * JSON), the counters and histograms (util/obs.c), INFO section selection
 * and the Prometheus page of a node report (src/node/info.c,
 * metrics_text.c).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "node/report.h"
#include "util/log.h"
#include "util/obs.h"

/* Run fn with the log going to a pipe; returns what it wrote. */
static char *capture(void (*fn)(void))
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    log_set_fd(fds[1]);
    fn();
    log_set_fd(2);
    close(fds[1]);
    static char out[8192];
    size_t n = 0;
    ssize_t k;
    while ((k = read(fds[0], out + n, sizeof out - 1 - n)) > 0) {
        n += (size_t)k;
    }
    close(fds[0]);
    out[n] = '\0';
    return out;
}

static void ctx(void *arg, uint64_t *term, const char **role)
{
    (void)arg;
    *term = 7;
    *role = "leader";
}

static void write_events(void)
{
    char q[64];
    log_event(LOG_INFO, "became_leader", "commit=%d", 12);
    log_event(LOG_WARN, "snapshot_abandoned", "reason=%s",
              log_quote("disk \"full\"", q, sizeof q));
    log_printf(LOG_INFO, "free text %d", 5);
    log_event(LOG_INFO, "ready", "client=%s -- ready", "127.0.0.1:7001");
    log_event(LOG_DEBUG, "hidden", NULL);
}

static void text_lines_are_events(void **state)
{
    (void)state;
    log_set_level(LOG_INFO);
    log_set_format(LOG_FORMAT_TEXT);
    log_set_node(3, ctx, NULL);
    char *out = capture(write_events);
    char *lines[8];
    int n = 0;
    for (char *save = NULL, *l = strtok_r(out, "\n", &save); l && n < 8;
         l = strtok_r(NULL, "\n", &save)) {
        lines[n++] = l;
    }
    assert_int_equal(n, 4);
    /* 2026-11-29T16:40:01.123Z: 24 characters, then the level. */
    for (int i = 0; i < n; i++) {
        assert_true(strlen(lines[i]) > 26);
        assert_int_equal(lines[i][10], 'T');
        assert_int_equal(lines[i][19], '.');
        assert_int_equal(lines[i][23], 'Z');
    }
    assert_string_equal(lines[0] + 24,
                        " I node=3 term=7 role=leader event=became_leader "
                        "commit=12");
    assert_string_equal(lines[1] + 24,
                        " W node=3 term=7 role=leader event=snapshot_abandoned "
                        "reason=\"disk \\\"full\\\"\"");
    assert_string_equal(lines[2] + 24, " I node=3 term=7 role=leader "
                                       "event=info -- free text 5");
    size_t len = strlen(lines[3]);
    assert_string_equal(lines[3] + len - 6, " ready");
    log_set_node(0, NULL, NULL);
}

static void json_lines(void **state)
{
    (void)state;
    log_set_level(LOG_INFO);
    log_set_format(LOG_FORMAT_JSON);
    log_set_node(3, ctx, NULL);
    char *out = capture(write_events);
    log_set_format(LOG_FORMAT_TEXT);
    log_set_node(0, NULL, NULL);
    char *l0 = strtok(out, "\n");
    char *l1 = strtok(NULL, "\n");
    char *l2 = strtok(NULL, "\n");
    char *l3 = strtok(NULL, "\n");
    assert_non_null(l3);
    assert_null(strtok(NULL, "\n"));
    assert_int_equal(strncmp(l0, "{\"time\":\"", 9), 0);
    assert_non_null(strstr(l0, "\",\"level\":\"info\",\"node\":3,\"term\":7,"
                               "\"role\":\"leader\",\"event\":"
                               "\"became_leader\",\"commit\":12}"));
    assert_non_null(strstr(l1, "\"reason\":\"disk \\\"full\\\"\"}"));
    assert_non_null(strstr(l2, "\"event\":\"info\",\"msg\":\"free text 5\"}"));
    assert_non_null(
        strstr(l3, "\"client\":\"127.0.0.1:7001\",\"msg\":\"ready\"}"));
}

static void plain_format_without_node(void **state)
{
    (void)state;
    log_set_level(LOG_INFO);
    log_set_format(LOG_FORMAT_TEXT);
    log_set_ident("mr-worker");
    char *out = capture(write_events);
    char *l0 = strtok(out, "\n");
    assert_string_equal(l0 + 24, " I mr-worker became_leader commit=12");
    char *l1 = strtok(NULL, "\n");
    assert_non_null(l1);
    char *l2 = strtok(NULL, "\n");
    assert_string_equal(l2 + 24, " I mr-worker free text 5");
}

static void quote_rules(void **state)
{
    (void)state;
    char q[32];
    assert_string_equal(log_quote("plain", q, sizeof q), "plain");
    assert_string_equal(log_quote("", q, sizeof q), "\"\"");
    assert_string_equal(log_quote("a=b", q, sizeof q), "\"a=b\"");
    assert_string_equal(log_quote("a\nb", q, sizeof q), "\"a\\x0ab\"");
    /* Cut to fit, still closed. */
    char small[8];
    log_quote("a long value here", small, sizeof small);
    assert_true(strlen(small) < sizeof small);
    assert_int_equal(small[0], '"');
    assert_int_equal(small[strlen(small) - 1], '"');
    assert_int_equal(log_format_parse("json", &(enum log_format){0}), 0);
    assert_int_not_equal(log_format_parse("xml", &(enum log_format){0}), 0);
}

static void histogram_and_quantiles(void **state)
{
    (void)state;
    struct obs_hist h;
    memset(&h, 0, sizeof h);
    assert_true(obs_hist_quantile(&h, 0.5) == 0);
    for (int i = 0; i < 98; i++) {
        obs_hist_observe(&h, 0.0003); /* the 0.0005 bucket */
    }
    obs_hist_observe(&h, 0.2);  /* 0.25 */
    obs_hist_observe(&h, 99.0); /* +Inf */
    assert_int_equal(h.count, 100);
    assert_int_equal(h.counts[2], 98);
    assert_int_equal(h.counts[OBS_BUCKETS], 1);
    assert_true(obs_hist_quantile(&h, 0.5) == 0.0005);
    assert_true(obs_hist_quantile(&h, 0.99) == 0.25);
    assert_true(obs_hist_quantile(&h, 1.0) == 99.0);
    assert_true(h.max == 99.0 && h.last == 99.0);
}

static void command_labels_are_bounded(void **state)
{
    (void)state;
    obs_init();
    const char ok[] = "+OK\r\n", unk[] = "-ERR unknown command 'x'\r\n",
               moved[] = "-MOVED 0 1.2.3.4:5\r\n", nil[] = "$-1\r\n";
    assert_int_equal(obs_result_of(ok, 5), OBS_OK);
    assert_int_equal(obs_result_of(moved, strlen(moved)), OBS_MOVED);
    assert_int_equal(obs_result_of("-WRONGTYPE x", 12), OBS_ERR);
    obs_command((const uint8_t *)"SeT", 3, OBS_WRITE, OBS_OK, ok, 5, 1000);
    obs_command((const uint8_t *)"set", 3, OBS_WRITE, OBS_MOVED, moved,
                strlen(moved), 1000);
    obs_command((const uint8_t *)"GET", 3, OBS_READ, OBS_OK, nil, 5, 1000);
    obs_command((const uint8_t *)"get", 3, OBS_READ, OBS_OK, "$1\r\nv\r\n", 7,
                1000);
    obs_command((const uint8_t *)"x", 1, OBS_LOCAL, OBS_ERR, unk, strlen(unk),
                1000);
    assert_int_equal(obs.n_cmds, 3);
    assert_string_equal(obs.cmds[0].name, "set");
    assert_int_equal(obs.cmds[0].calls[OBS_OK], 1);
    assert_int_equal(obs.cmds[0].calls[OBS_MOVED], 1);
    assert_string_equal(obs.cmds[2].name, "unknown");
    assert_int_equal(obs.keyspace_hits, 1);
    assert_int_equal(obs.keyspace_misses, 1);
    assert_int_equal(obs.commands, 5);
    /* Random names fill the table at most up to its bound. */
    for (int i = 0; i < 1000; i++) {
        char name[16];
        int n = snprintf(name, sizeof name, "c%d", i);
        obs_command((const uint8_t *)name, (size_t)n, OBS_LOCAL, OBS_OK, ok, 5,
                    1);
    }
    obs_command((const uint8_t *)"bad name!", 9, OBS_LOCAL, OBS_OK, ok, 5, 1);
    assert_true(obs.n_cmds <= OBS_CMDS_MAX);
    assert_string_equal(obs.cmds[obs.n_cmds - 1].name, "other");
}

static bool only_get_set(const char *name, size_t len)
{
    return (len == 3 && memcmp(name, "get", 3) == 0) ||
           (len == 3 && memcmp(name, "set", 3) == 0);
}

/* With a filter, names a client makes up (refused -NOAUTH, say, before
 * any look-up) never get a label: the table keeps room for the real
 * commands, which are still counted under their names. */
static void command_labels_filtered(void **state)
{
    (void)state;
    obs_init();
    obs_command_filter(only_get_set);
    const char noauth[] = "-NOAUTH Authentication required.\r\n",
               ok[] = "+OK\r\n";
    for (int i = 0; i < 1000; i++) {
        char name[16];
        int n = snprintf(name, sizeof name, "zz%03d", i);
        obs_command((const uint8_t *)name, (size_t)n, OBS_LOCAL, OBS_ERR,
                    noauth, strlen(noauth), 0);
    }
    obs_command((const uint8_t *)"GET", 3, OBS_LOCAL, OBS_ERR, noauth,
                strlen(noauth), 0);
    obs_command((const uint8_t *)"SET", 3, OBS_WRITE, OBS_OK, ok, 5, 1000);
    obs_command_filter(NULL);
    assert_int_equal(obs.n_cmds, 3);
    assert_string_equal(obs.cmds[0].name, "unknown");
    assert_int_equal(obs.cmds[0].calls[OBS_ERR], 1000);
    assert_string_equal(obs.cmds[1].name, "get");
    assert_int_equal(obs.cmds[1].calls[OBS_ERR], 1);
    assert_string_equal(obs.cmds[2].name, "set");
    assert_int_equal(obs.cmds[2].calls[OBS_OK], 1);
    assert_int_equal(obs.commands, 1002);
}

static unsigned heap_measured;
static uint64_t fake_heap(void)
{
    return 1000u * ++heap_measured;
}

/* used_memory's mallinfo2 runs at most once per NODE_HEAP_SAMPLE_MS:
 * figures in between are the cached one. */
static void heap_sampled(void **state)
{
    (void)state;
    struct node_heap_cache c = {0};
    heap_measured = 0;
    assert_int_equal(node_heap_sample(&c, 5000, fake_heap), 1000);
    for (uint64_t t = 5000; t < 5000 + NODE_HEAP_SAMPLE_MS; t += 7) {
        assert_int_equal(node_heap_sample(&c, t, fake_heap), 1000);
    }
    assert_int_equal(heap_measured, 1);
    assert_int_equal(
        node_heap_sample(&c, 5000 + NODE_HEAP_SAMPLE_MS, fake_heap), 2000);
    /* A clock that went back measures again rather than serve forever. */
    assert_int_equal(node_heap_sample(&c, 10, fake_heap), 3000);
    assert_int_equal(heap_measured, 3);
    /* The real one: a plausible figure (0 under ASan, whose malloc
     * mallinfo2 does not see), the same one twice in a row although
     * memory was allocated in between. */
    uint64_t a = node_heap_bytes();
    void *p = malloc(1u << 20);
    assert_non_null(p);
    uint64_t b = node_heap_bytes();
    free(p);
    assert_true(a < (1ull << 40));
    assert_true(a == b);
}

static void ops_per_sec(void **state)
{
    (void)state;
    obs_init();
    for (uint64_t t = 0; t <= 2000; t += 10) {
        obs.commands += 5; /* 500 per second */
        obs_tick(1000000 + t);
    }
    double r = obs_ops_per_sec();
    assert_true(r > 450 && r < 550);
}

/* CONFIG RESETSTAT: the client and command statistics go back to zero,
 * command names keep their labels (and are found again), Raft counters
 * stay. */
static void reset_stats(void **state)
{
    (void)state;
    obs_init();
    const char ok[] = "+OK\r\n";
    obs_command((const uint8_t *)"set", 3, OBS_WRITE, OBS_OK, ok, 5, 1000);
    obs_command((const uint8_t *)"get", 3, OBS_READ, OBS_OK, "$1\r\nv\r\n", 7,
                1000);
    obs.connections_received = 7;
    obs.elections = 3;
    obs_fsync(100000);
    for (uint64_t t = 0; t <= 500; t += 100) {
        obs_tick(t);
    }
    obs_reset_stats();
    assert_int_equal(obs.commands, 0);
    assert_int_equal(obs.keyspace_hits, 0);
    assert_int_equal(obs.connections_received, 0);
    assert_int_equal(obs.fsync.count, 0);
    assert_int_equal(obs.cmd_latency[OBS_WRITE].count, 0);
    assert_int_equal(obs.cmds[0].calls[OBS_OK], 0);
    assert_true(obs_ops_per_sec() == 0);
    assert_int_equal(obs.elections, 3);
    obs_command((const uint8_t *)"SET", 3, OBS_WRITE, OBS_OK, ok, 5, 1000);
    assert_int_equal(obs.n_cmds, 2);
    assert_string_equal(obs.cmds[0].name, "set");
    assert_int_equal(obs.cmds[0].calls[OBS_OK], 1);
    assert_int_equal(obs.commands, 1);
}

static void info_sections(void **state)
{
    (void)state;
    const uint8_t *argv[3] = {(const uint8_t *)"RAFT",
                              (const uint8_t *)"keyspace",
                              (const uint8_t *)"bogus"};
    size_t lens[3] = {4, 8, 5};
    assert_int_equal(node_info_sections(0, argv, lens), INFO_DEFAULT);
    assert_int_equal(node_info_sections(3, argv, lens),
                     INFO_RAFT | INFO_KEYSPACE);
    assert_int_equal(node_info_sections(1, argv + 2, lens + 2), 0);
    const uint8_t *all[1] = {(const uint8_t *)"Everything"};
    size_t alen[1] = {10};
    assert_int_equal(node_info_sections(1, all, alen), INFO_ALL);
    assert_true((INFO_DEFAULT & INFO_COMMANDSTATS) == 0);
}

/* A report with one peer, through both writers. */
static void report_writers(void **state)
{
    (void)state;
    obs_init();
    static struct node_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.n_members = 2;
    cfg.self = 0;
    cfg.tick_ms = 10;
    cfg.members[0] = (struct node_member){1, "127.0.0.1", 7001, 17001};
    cfg.members[1] = (struct node_member){2, "127.0.0.1", 7002, 17002};
    struct node_report r;
    memset(&r, 0, sizeof r);
    r.cfg = &cfg;
    r.id = 1;
    r.n_members = 2;
    r.role = "leader";
    r.leader = true;
    r.term = 4;
    r.commit = r.applied = r.last_index = 10;
    r.keys = 3;
    r.expires = 1;
    r.n_peers = 1;
    struct node_report_peer *p = &r.peers[0];
    p->id = 2;
    snprintf(p->addr, sizeof p->addr, "127.0.0.1:7002");
    snprintf(p->raft_addr, sizeof p->raft_addr, "127.0.0.1:17002");
    p->connected = true;
    p->has_progress = true;
    p->match = 10;
    p->next = 11;
    p->state = "replicate";
    p->last_contact_ms = 20;
    struct buf b;
    buf_init(&b);
    assert_int_equal(node_info_write(&r, INFO_RAFT | INFO_KEYSPACE, &b), 0);
    assert_int_equal(buf_append(&b, "", 1), 0);
    const char *text = (const char *)b.data;
    assert_int_equal(strncmp(text, "# Raft\r\n", 8), 0);
    assert_non_null(strstr(text, "raft_peer_2:addr=127.0.0.1:7002,raft_addr="
                                 "127.0.0.1:17002,connected=1,match=10,next=11,"
                                 "lag=0,state=replicate,last_contact_ms=20,"));
    assert_non_null(strstr(
        text, "\r\n\r\n# Keyspace\r\ndb0:keys=3,expires=1,avg_ttl=0\r\n"));
    buf_reset(&b);
    assert_int_equal(node_metrics_write(&r, &b), 0);
    assert_int_equal(buf_append(&b, "", 1), 0);
    text = (const char *)b.data;
    assert_non_null(strstr(text, "# TYPE craftd_term gauge\ncraftd_term 4\n"));
    assert_non_null(strstr(text, "craftd_peer_lag_entries{peer=\"2\"} 0\n"));
    assert_non_null(strstr(text, "craftd_fsync_duration_seconds_bucket{le="
                                 "\"+Inf\"} 0\n"));
    buf_close(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(text_lines_are_events),
        cmocka_unit_test(json_lines),
        cmocka_unit_test(plain_format_without_node),
        cmocka_unit_test(quote_rules),
        cmocka_unit_test(histogram_and_quantiles),
        cmocka_unit_test(command_labels_are_bounded),
        cmocka_unit_test(command_labels_filtered),
        cmocka_unit_test(heap_sampled),
        cmocka_unit_test(ops_per_sec),
        cmocka_unit_test(reset_stats),
        cmocka_unit_test(info_sections),
        cmocka_unit_test(report_writers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
