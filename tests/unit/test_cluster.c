/*
 * Unit tests for src/server/cluster.c: Redis Cluster key slots (Redis's
 * published test vectors and hash-tag rules), node ids, the slot a MOVED
 * reply carries, and the exact bytes of the CLUSTER replies for a scripted
 * three-member view.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "craft/common.h"
#include "server/cluster.h"
#include "server/resp.h"
#include "server/srv.h"
#include "util/buf.h"

static unsigned slot_of(const char *key)
{
    return srv_cluster_keyslot((const uint8_t *)key, strlen(key));
}

/* CRC16/XMODEM's check value, and Redis's own examples. */
static void crc16_vectors(void **state)
{
    (void)state;
    assert_int_equal(srv_cluster_crc16("123456789", 9), 0x31C3);
    assert_int_equal(srv_cluster_crc16("", 0), 0);
    assert_int_equal(slot_of("foo"), 12182);
    assert_int_equal(slot_of("bar"), 5061);
    assert_int_equal(slot_of("hello"), 866);
    assert_int_equal(slot_of(""), 0);
    /* Every slot is below 16384 whatever the key. */
    uint8_t key[4];
    for (unsigned i = 0; i < 70000; i++) {
        memcpy(key, &i, sizeof key);
        assert_true(srv_cluster_keyslot(key, sizeof key) < SRV_CLUSTER_SLOTS);
    }
}

/* The hash-tag rules of the Redis Cluster specification. */
static void keyslot_hash_tags(void **state)
{
    (void)state;
    unsigned user = slot_of("user1000");
    assert_int_equal(slot_of("{user1000}.following"), user);
    assert_int_equal(slot_of("{user1000}.followers"), user);
    assert_int_not_equal(slot_of("user1000.following"),
                         slot_of("user1000.followers"));
    /* Only the first '{' and the next '}' count. */
    assert_int_equal(slot_of("foo{bar}{zap}"), slot_of("bar"));
    assert_int_equal(slot_of("foo{{bar}}zap"), slot_of("{bar"));
    /* An empty tag, or none closed: the whole key. */
    assert_int_equal(slot_of("foo{}{bar}"),
                     srv_cluster_crc16("foo{}{bar}", 10) & 16383);
    assert_int_equal(slot_of("foo{bar"),
                     srv_cluster_crc16("foo{bar", 7) & 16383);
    assert_int_equal(slot_of("}foo{"), srv_cluster_crc16("}foo{", 5) & 16383);
    /* Binary keys: a NUL inside the tag is part of it. */
    const uint8_t bin[] = {'{', 'a', 0, 'b', '}', 'x'};
    const uint8_t tag[] = {'a', 0, 'b'};
    assert_int_equal(srv_cluster_keyslot(bin, sizeof bin),
                     srv_cluster_keyslot(tag, sizeof tag));
}

static void node_ids(void **state)
{
    (void)state;
    char a[SRV_CLUSTER_ID_LEN + 1], b[SRV_CLUSTER_ID_LEN + 1];
    srv_cluster_node_id(42, 1, a);
    assert_int_equal(strlen(a), SRV_CLUSTER_ID_LEN);
    assert_int_equal(strspn(a, "0123456789abcdef"), SRV_CLUSTER_ID_LEN);
    srv_cluster_node_id(42, 1, b);
    assert_string_equal(a, b); /* stable */
    srv_cluster_node_id(42, 2, b);
    assert_string_not_equal(a, b); /* per member */
    srv_cluster_node_id(43, 1, b);
    assert_string_not_equal(a, b); /* per cluster */
}

/* The slot of a command's first key, through a CRAFT.EXEC envelope. */
static unsigned cmd_slot(int argc, ...)
{
    const uint8_t *argv[16];
    size_t lens[16];
    va_list ap;
    va_start(ap, argc);
    for (int i = 0; i < argc; i++) {
        argv[i] = (const uint8_t *)va_arg(ap, const char *);
        lens[i] = strlen((const char *)argv[i]);
    }
    va_end(ap);
    return srv_cluster_cmd_slot((size_t)argc, argv, lens);
}

static void command_slots(void **state)
{
    (void)state;
    assert_int_equal(cmd_slot(3, "SET", "foo", "v"), 12182);
    assert_int_equal(cmd_slot(2, "get", "{foo}x"), 12182);
    assert_int_equal(cmd_slot(3, "MGET", "bar", "foo"), 5061);
    assert_int_equal(cmd_slot(6, "CRAFT.EXEC", "7", "1", "SET", "foo", "v"),
                     12182);
    assert_int_equal(
        cmd_slot(7, "craft.exec", "7", "2", "1", "SET", "foo", "v"), 12182);
    assert_int_equal(cmd_slot(4, "CRAFT.EXEC", "7", "1", "DBSIZE"), 0);
    assert_int_equal(cmd_slot(5, "CRAFT.EXEC", "7", "2", "1", "INCR"), 0);
    assert_int_equal(cmd_slot(1, "DBSIZE"), 0);
    assert_int_equal(cmd_slot(2, "KEYS", "foo"), 0);
    assert_int_equal(cmd_slot(1, "CRAFT.SESSION"), 0);
    assert_int_equal(cmd_slot(1, "GET"), 0); /* no key given */
}

/* ---- CLUSTER replies ---------------------------------------------------- */

struct fake {
    struct srv_cluster_view view;
    int rv;
    int calls;
};

static int fake_cluster(void *data, struct srv_cluster_view *out)
{
    struct fake *f = data;
    f->calls++;
    assert_int_equal(out->leader, -1); /* arrives cleared */
    assert_int_equal(out->last_leader, -1);
    if (f->rv != 0) {
        return f->rv;
    }
    *out = f->view;
    return 0;
}

static void fake_init(struct fake *f, int self, int leader)
{
    memset(f, 0, sizeof *f);
    f->view.cluster_id = 99;
    f->view.term = 7;
    f->view.n_members = 3;
    f->view.self = (unsigned)self;
    f->view.leader = leader;
    f->view.last_leader = leader;
    for (unsigned i = 0; i < 3; i++) {
        struct srv_cluster_member *m = &f->view.members[i];
        m->id = i + 1;
        snprintf(m->host, sizeof m->host, "127.0.0.%u", i + 1);
        m->port = (uint16_t)(7001 + i);
        m->bus_port = (uint16_t)(17001 + i);
        m->connected = true;
        m->offset = 10 * (i + 1);
    }
}

/* Run "CLUSTER args..." against f (NULL: a backend without the callback)
 * and return the reply as a NUL-terminated string (static storage). */
static const char *run(struct fake *f, int argc, ...)
{
    static char out[8192];
    const uint8_t *argv[8];
    size_t lens[8];
    va_list ap;
    va_start(ap, argc);
    for (int i = 0; i < argc; i++) {
        argv[i] = (const uint8_t *)va_arg(ap, const char *);
        lens[i] = strlen((const char *)argv[i]);
    }
    va_end(ap);
    struct resp_cmd cmd = {.argc = (size_t)argc, .argv = argv, .lens = lens};
    struct srv_backend be;
    memset(&be, 0, sizeof be);
    be.data = f;
    be.cluster = f != NULL ? fake_cluster : NULL;
    struct buf b;
    buf_init(&b);
    srv__cluster_command(&be, &cmd, &b);
    assert_true(b.len > 0 && b.len < sizeof out);
    /* Exactly one complete RESP value. */
    size_t n = 0;
    assert_int_equal(resp_reply_len(b.data, b.len, &n), RESP_OK);
    assert_int_equal(n, b.len);
    memcpy(out, b.data, b.len);
    out[b.len] = '\0';
    buf_close(&b);
    return out;
}

static void id_of(unsigned member, char *out)
{
    srv_cluster_node_id(99, member, out);
}

static void slots_reply(void **state)
{
    (void)state;
    struct fake f;
    fake_init(&f, 0, 1); /* asked on member 1, member 2 leads */
    char i1[41], i2[41], i3[41], want[1024];
    id_of(1, i1);
    id_of(2, i2);
    id_of(3, i3);
    snprintf(want, sizeof want,
             "*1\r\n*5\r\n:0\r\n:16383\r\n"
             "*3\r\n$9\r\n127.0.0.2\r\n:7002\r\n$40\r\n%s\r\n"
             "*3\r\n$9\r\n127.0.0.1\r\n:7001\r\n$40\r\n%s\r\n"
             "*3\r\n$9\r\n127.0.0.3\r\n:7003\r\n$40\r\n%s\r\n",
             i2, i1, i3);
    assert_string_equal(run(&f, 2, "CLUSTER", "SLOTS"), want);
    /* A replica this node cannot reach is left out, as Redis leaves out
     * failed replicas. */
    f.view.members[2].connected = false;
    snprintf(want, sizeof want,
             "*1\r\n*4\r\n:0\r\n:16383\r\n"
             "*3\r\n$9\r\n127.0.0.2\r\n:7002\r\n$40\r\n%s\r\n"
             "*3\r\n$9\r\n127.0.0.1\r\n:7001\r\n$40\r\n%s\r\n",
             i2, i1);
    assert_string_equal(run(&f, 2, "cluster", "slots"), want);
}

static void nodes_reply(void **state)
{
    (void)state;
    struct fake f;
    fake_init(&f, 2, 0);
    f.view.members[1].connected = false;
    char i1[41], i2[41], i3[41], text[1024], want[1100];
    id_of(1, i1);
    id_of(2, i2);
    id_of(3, i3);
    int n =
        snprintf(text, sizeof text,
                 "%s 127.0.0.1:7001@17001 master - 0 0 7 connected 0-16383\n"
                 "%s 127.0.0.2:7002@17002 slave,fail? %s 0 0 7 disconnected\n"
                 "%s 127.0.0.3:7003@17003 myself,slave %s 0 0 7 connected\n",
                 i1, i2, i1, i3, i1);
    snprintf(want, sizeof want, "$%d\r\n%s\r\n", n, text);
    assert_string_equal(run(&f, 2, "CLUSTER", "NODES"), want);
    fake_init(&f, 0, 0);
    const char *r = run(&f, 2, "CLUSTER", "NODES");
    assert_non_null(strstr(r, " myself,master - 0 0 7 connected 0-16383\n"));
}

static void shards_reply(void **state)
{
    (void)state;
    struct fake f;
    fake_init(&f, 0, 0);
    f.view.members[2].connected = false;
    const char *r = run(&f, 2, "CLUSTER", "SHARDS");
    char i1[41], want[512];
    id_of(1, i1);
    snprintf(want, sizeof want,
             "*1\r\n*4\r\n$5\r\nslots\r\n*2\r\n:0\r\n:16383\r\n"
             "$5\r\nnodes\r\n*3\r\n*14\r\n$2\r\nid\r\n$40\r\n%s\r\n"
             "$4\r\nport\r\n:7001\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n"
             "$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\nrole\r\n"
             "$6\r\nmaster\r\n$18\r\nreplication-offset\r\n:10\r\n"
             "$6\r\nhealth\r\n$6\r\nonline\r\n",
             i1);
    assert_memory_equal(r, want, strlen(want));
    assert_non_null(strstr(r, "$4\r\nrole\r\n$7\r\nreplica\r\n"));
    assert_non_null(strstr(r, "$6\r\nhealth\r\n$6\r\nfailed\r\n"));
}

static void info_myid_keyslot(void **state)
{
    (void)state;
    struct fake f;
    fake_init(&f, 1, 0);
    const char *r = run(&f, 2, "CLUSTER", "INFO");
    assert_non_null(strstr(r, "\r\ncluster_state:ok\r\n"));
    assert_non_null(strstr(r, "cluster_slots_assigned:16384\r\n"));
    assert_non_null(strstr(r, "cluster_slots_ok:16384\r\n"));
    assert_non_null(strstr(r, "cluster_known_nodes:3\r\n"));
    assert_non_null(strstr(r, "cluster_size:1\r\n"));
    assert_non_null(strstr(r, "cluster_current_epoch:7\r\n"));
    char i2[41], want[64];
    id_of(2, i2);
    snprintf(want, sizeof want, "$40\r\n%s\r\n", i2);
    assert_string_equal(run(&f, 2, "cluster", "myid"), want);
    assert_string_equal(run(&f, 3, "CLUSTER", "KEYSLOT", "foo"), ":12182\r\n");
    assert_string_equal(run(&f, 3, "CLUSTER", "KEYSLOT", "{user1000}.x"),
                        run(&f, 3, "CLUSTER", "KEYSLOT", "user1000"));
    r = run(&f, 2, "CLUSTER", "HELP");
    assert_true(r[0] == '*');
}

/* During an election the last leader stays the master of the topology
 * replies, as Redis lists a failed master until a replica takes over. */
static void election_keeps_last_leader(void **state)
{
    (void)state;
    struct fake f, g;
    fake_init(&f, 1, 0);
    fake_init(&g, 1, 0);
    g.view.leader = -1;
    g.view.members[0].connected = false;
    g.view.term = 8;
    /* SLOTS: the same reply; the master is listed even when this node
     * cannot reach it. */
    char want[1024];
    snprintf(want, sizeof want, "%s", run(&f, 2, "CLUSTER", "SLOTS"));
    assert_string_equal(run(&g, 2, "CLUSTER", "SLOTS"), want);
    char i1[41], line[256];
    id_of(1, i1);
    snprintf(line, sizeof line,
             "%s 127.0.0.1:7001@17001 master,fail? - 0 0 8 disconnected "
             "0-16383\n",
             i1);
    assert_non_null(strstr(run(&g, 2, "CLUSTER", "NODES"), line));
    const char *r = run(&g, 2, "CLUSTER", "INFO");
    assert_non_null(strstr(r, "cluster_state:fail\r\n"));
    assert_non_null(strstr(r, "cluster_size:0\r\n"));
    r = run(&g, 2, "CLUSTER", "SHARDS");
    assert_non_null(strstr(r, "$6\r\nmaster\r\n"));
    assert_non_null(strstr(r, "$6\r\nfailed\r\n"));
}

static void no_leader_and_errors(void **state)
{
    (void)state;
    struct fake f;
    fake_init(&f, 1, -1); /* never knew a leader */
    const char *down = "-CLUSTERDOWN no leader is known; retry shortly\r\n";
    assert_string_equal(run(&f, 2, "CLUSTER", "SLOTS"), down);
    assert_string_equal(run(&f, 2, "CLUSTER", "SHARDS"), down);
    assert_string_equal(run(&f, 2, "CLUSTER", "NODES"), down);
    const char *r = run(&f, 2, "CLUSTER", "INFO");
    assert_non_null(strstr(r, "cluster_state:fail\r\n"));
    assert_non_null(strstr(r, "cluster_slots_ok:0\r\n"));
    assert_non_null(strstr(r, "cluster_slots_fail:16384\r\n"));
    assert_non_null(strstr(run(&f, 2, "CLUSTER", "MYID"), "$40\r\n"));

    assert_string_equal(
        run(&f, 1, "CLUSTER"),
        "-ERR wrong number of arguments for 'cluster' command\r\n");
    assert_string_equal(
        run(&f, 3, "CLUSTER", "SLOTS", "x"),
        "-ERR wrong number of arguments for 'cluster|slots' command\r\n");
    assert_string_equal(
        run(&f, 2, "CLUSTER", "KEYSLOT"),
        "-ERR wrong number of arguments for 'cluster|keyslot' command\r\n");
    assert_string_equal(
        run(&f, 2, "CLUSTER", "MEET"),
        "-ERR unknown subcommand 'MEET'. Try CLUSTER HELP.\r\n");
    f.calls = 0;
    f.rv = CRAFT_ENOMEM;
    r = run(&f, 2, "CLUSTER", "SLOTS");
    assert_int_equal(f.calls, 1);
    assert_true(strncmp(r, "-ERR ", 5) == 0);
    assert_string_equal(run(NULL, 2, "CLUSTER", "INFO"),
                        "-ERR This instance has cluster support disabled\r\n");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(crc16_vectors),
        cmocka_unit_test(keyslot_hash_tags),
        cmocka_unit_test(node_ids),
        cmocka_unit_test(command_slots),
        cmocka_unit_test(slots_reply),
        cmocka_unit_test(nodes_reply),
        cmocka_unit_test(shards_reply),
        cmocka_unit_test(info_myid_keyslot),
        cmocka_unit_test(election_keeps_last_leader),
        cmocka_unit_test(no_leader_and_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
