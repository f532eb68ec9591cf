/*
 * Unit tests for the RESP front end (src/server/srv.c) over real loopback
 * sockets, with a scripted backend:
 *   SLOW x      answered later, in reverse order of arrival, with +x
 *   FAST x      answered inside submit with +x
 *   NOTLEADER   CRAFT_ENOTLEADER (MOVED or CLUSTERDOWN), also as the
 *               first command of a transaction
 *   LOST        CRAFT_ELEADERLOST
 *   READ x      a read (classify), answered later like SLOW with +x
 *   INVALID     refused by classify, never submitted
 * The loop runs in a thread; the test talks to it with blocking sockets
 * (5 s receive timeout, so a hang fails instead of blocking forever).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cmocka.h>

#include "craft/common.h"
#include "server/resp.h"
#include "server/srv.h"

#define SLOW_MAX 64

struct fixture {
    uv_loop_t loop;
    uv_async_t wake;  /* runs on_wake on the loop thread */
    uv_timer_t flush; /* answers the SLOW ops */
    pthread_t thread;
    struct srv *srv;
    struct srv_op *slow[SLOW_MAX];
    int n_slow;
    int reads_out, writes_out; /* submitted, not yet answered */
    int mixed; /* submissions while ops of the other kind were out */
    int leader_known;
    int stop; /* set by the test, acted on in on_wake */
    int stopped;
    uint16_t port;
};

static int classify(void *data, struct srv_op *op)
{
    (void)data;
    if (op->n_cmds == 0 && srv_arg_is(op->argv[0], op->lens[0], "read")) {
        return SRV_OP_READ;
    }
    if (op->n_cmds == 0 && srv_arg_is(op->argv[0], op->lens[0], "invalid")) {
        resp_write_error(&op->reply, "ERR invalid");
        return SRV_OP_ANSWERED;
    }
    return SRV_OP_WRITE;
}

static void submit(void *data, struct srv_op *op)
{
    struct fixture *f = data;
    assert_int_not_equal(op->kind, SRV_OP_ANSWERED);
    bool read = op->kind == SRV_OP_READ;
    if (read ? f->writes_out > 0 : f->reads_out > 0) {
        f->mixed++;
    }
    if (read) {
        assert_true(f->n_slow < SLOW_MAX);
        f->slow[f->n_slow++] = op;
        f->reads_out++;
        return;
    }
    if (op->n_cmds > 0 && !srv_arg_is(op->argv[0], op->lens[0], "notleader")) {
        /* A transaction: answer with the commands' names, in order. */
        resp_write_array(&op->reply, op->n_cmds);
        size_t a = 0;
        for (size_t i = 0; i < op->n_cmds; i++) {
            resp_write_bulk(&op->reply, op->argv[a], op->lens[a]);
            a += op->cmd_argc[i];
        }
        srv_op_done(op, 0);
        return;
    }
    if (srv_arg_is(op->argv[0], op->lens[0], "slow")) {
        assert_true(f->n_slow < SLOW_MAX);
        f->slow[f->n_slow++] = op;
        f->writes_out++;
        return;
    }
    if (srv_arg_is(op->argv[0], op->lens[0], "fast")) {
        resp_write_simple(&op->reply, (const char *)op->argv[1]);
        srv_op_done(op, 0);
        return;
    }
    if (srv_arg_is(op->argv[0], op->lens[0], "notleader")) {
        srv_op_done(op, CRAFT_ENOTLEADER);
        return;
    }
    srv_op_done(op, CRAFT_ELEADERLOST);
}

/* Inside MULTI, BAD is refused at queue time. */
static int check(void *data, size_t argc, const uint8_t *const *argv,
                 const size_t *lens, struct buf *err)
{
    (void)data;
    (void)argc;
    if (srv_arg_is(argv[0], lens[0], "bad")) {
        resp_write_error(err, "ERR unknown command 'BAD'");
        return CRAFT_EINVAL;
    }
    return 0;
}

static bool leader(void *data, char *out, size_t cap)
{
    struct fixture *f = data;
    snprintf(out, cap, "127.0.0.1:9999");
    return f->leader_known;
}

static int info(void *data, size_t argc, const uint8_t *const *argv,
                const size_t *lens, struct buf *b)
{
    (void)data;
    (void)argc;
    (void)argv;
    (void)lens;
    return buf_append(b, "role:test\r\n", 11);
}

/* Answer the queued SLOW ops newest first, so that the front end must
 * restore the order. */
static void on_flush(uv_timer_t *t)
{
    struct fixture *f = t->data;
    while (f->n_slow > 0) {
        struct srv_op *op = f->slow[--f->n_slow];
        if (op->kind == SRV_OP_READ) {
            f->reads_out--;
        } else {
            f->writes_out--;
        }
        resp_write_simple(&op->reply, (const char *)op->argv[1]);
        srv_op_done(op, 0);
    }
}

static void on_stopped(struct srv *s, void *data)
{
    struct fixture *f = data;
    srv_free(s);
    f->stopped = 1;
    uv_close((uv_handle_t *)&f->wake, NULL);
    uv_close((uv_handle_t *)&f->flush, NULL);
}

static void on_wake(uv_async_t *a)
{
    struct fixture *f = a->data;
    if (f->stop && f->srv != NULL) {
        struct srv *s = f->srv;
        f->srv = NULL;
        srv_stop(s, on_stopped, f);
    }
}

static void *run_loop(void *arg)
{
    struct fixture *f = arg;
    uv_run(&f->loop, UV_RUN_DEFAULT);
    return NULL;
}

static struct fixture *start_limited(unsigned max_clients, const char *pass,
                                     size_t command_max)
{
    struct fixture *f = calloc(1, sizeof *f);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    uv_async_init(&f->loop, &f->wake, on_wake);
    f->wake.data = f;
    uv_timer_init(&f->loop, &f->flush);
    f->flush.data = f;
    uv_timer_start(&f->flush, on_flush, 20, 20);
    struct srv_options o = {.host = "127.0.0.1",
                            .port = 0,
                            .max_clients = max_clients,
                            .requirepass = pass,
                            .command_max = command_max,
                            .fsync = true};
    struct srv_backend be = {.data = f,
                             .classify = classify,
                             .submit = submit,
                             .check = check,
                             .leader = leader,
                             .info = info};
    char err[256];
    assert_int_equal(srv_start(&f->loop, &o, &be, &f->srv, err, sizeof err), 0);
    f->port = srv_port(f->srv);
    assert_true(f->port != 0);
    assert_int_equal(pthread_create(&f->thread, NULL, run_loop, f), 0);
    return f;
}

static struct fixture *start(unsigned max_clients, const char *pass)
{
    return start_limited(max_clients, pass, 0);
}

static void finish(struct fixture *f)
{
    f->stop = 1;
    uv_async_send(&f->wake);
    pthread_join(f->thread, NULL);
    assert_true(f->stopped);
    assert_int_equal(f->mixed, 0); /* srv.h invariant 5, in every test */
    assert_int_equal(uv_loop_close(&f->loop), 0);
    free(f);
}

static int client(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    return fd;
}

static void send_str(int fd, const char *s)
{
    size_t n = strlen(s);
    assert_int_equal(write(fd, s, n), (ssize_t)n);
}

/* Read exactly strlen(want) bytes and compare. */
static void expect(int fd, const char *want)
{
    size_t n = strlen(want), got = 0;
    char buf[4096];
    assert_true(n < sizeof buf);
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r <= 0) {
            buf[got] = '\0';
            fail_msg("expected '%s', got '%s' then %s", want, buf,
                     r == 0 ? "EOF" : "timeout");
        }
        got += (size_t)r;
    }
    buf[got] = '\0';
    assert_string_equal(buf, want);
}

/* expect() for replies longer than its buffer. */
static void expect_long(int fd, const char *want)
{
    size_t n = strlen(want);
    char *buf = malloc(n + 1);
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r <= 0) {
            free(buf);
            fail_msg("short reply: %zu of %zu bytes", got, n);
        }
        got += (size_t)r;
    }
    buf[n] = '\0';
    assert_memory_equal(buf, want, n);
    free(buf);
}

static void expect_eof(int fd)
{
    char c;
    assert_int_equal(read(fd, &c, 1), 0);
}

static void local_commands(void **state)
{
    (void)state;
    struct fixture *f = start(100, NULL);
    int fd = client(f->port);
    send_str(fd, "*1\r\n$4\r\nPING\r\n");
    expect(fd, "+PONG\r\n");
    send_str(fd, "PING hello\r\n"); /* inline */
    expect(fd, "$5\r\nhello\r\n");
    send_str(fd, "ECHO \"a b\"\r\nSELECT 0\r\nSELECT 3\r\n");
    expect(fd, "$3\r\na b\r\n+OK\r\n-ERR DB index is out of range\r\n");
    send_str(fd, "CONFIG GET appendonly\r\n");
    expect(fd, "*2\r\n$10\r\nappendonly\r\n$3\r\nyes\r\n");
    send_str(fd, "CONFIG GET nosuch*\r\nCOMMAND DOCS\r\n");
    expect(fd, "*0\r\n*0\r\n");
    send_str(fd, "ECHO\r\n");
    expect(fd, "-ERR wrong number of arguments for 'echo' command\r\n");
    send_str(fd, "CLIENT SETNAME x\r\nCLIENT GETNAME\r\nCLIENT KILL y\r\n");
    expect(fd, "+OK\r\n$1\r\nx\r\n-ERR No such client\r\n");
    send_str(fd, "HELLO 4\r\n");
    expect(fd, "-NOPROTO unsupported protocol version\r\n");
    /* RESP3: a map, and RESP3's null. */
    send_str(fd, "HELLO 3\r\nCLIENT SETNAME\r\nCLIENT SETNAME \"\"\r\n"
                 "CLIENT GETNAME\r\n");
    expect(fd, "%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n"
               "$5\r\n7.0.0\r\n$5\r\nproto\r\n:3\r\n$2\r\nid\r\n:1\r\n"
               "$4\r\nmode\r\n$10\r\nstandalone\r\n$4\r\nrole\r\n"
               "$6\r\nmaster\r\n$7\r\nmodules\r\n*0\r\n"
               "-ERR wrong number of arguments for 'client|setname' "
               "command\r\n+OK\r\n_\r\n");
    send_str(fd, "HELLO 2\r\n");
    expect(fd, "*14\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n"
               "$5\r\n7.0.0\r\n$5\r\nproto\r\n:2\r\n$2\r\nid\r\n:1\r\n"
               "$4\r\nmode\r\n$10\r\nstandalone\r\n$4\r\nrole\r\n"
               "$6\r\nmaster\r\n$7\r\nmodules\r\n*0\r\n");
    send_str(fd, "QUIT\r\n");
    expect(fd, "+OK\r\n");
    expect_eof(fd);
    close(fd);
    finish(f);
}

static void pipeline_order(void **state)
{
    (void)state;
    struct fixture *f = start(100, NULL);
    int fd = client(f->port);
    /* The backend answers b before a; replies must still come in order,
     * with the local PING and the synchronous FAST between them. */
    send_str(fd, "SLOW a\r\nPING\r\nSLOW b\r\nFAST c\r\nSLOW d\r\n");
    expect(fd, "+a\r\n+PONG\r\n+b\r\n+c\r\n+d\r\n");
    close(fd);
    finish(f);
}

/* Reads and writes of one connection are never out together (srv.h,
 * invariant 5): a read waits for the writes before it and a write for the
 * reads before it, while runs of one kind are pipelined.  A client that
 * leaves with ops held back leaks nothing (ASan). */
static void reads_wait_for_earlier_writes(void **state)
{
    (void)state;
    struct fixture *f = start(100, NULL);
    int fd = client(f->port);
    send_str(fd, "SLOW a\r\nSLOW b\r\nREAD c\r\nINVALID\r\nREAD d\r\n"
                 "PING\r\nFAST e\r\nREAD f\r\nMULTI\r\nSET x 1\r\n"
                 "EXEC\r\nREAD g\r\n");
    expect(fd, "+a\r\n+b\r\n+c\r\n-ERR invalid\r\n+d\r\n+PONG\r\n"
               "+e\r\n+f\r\n+OK\r\n+QUEUED\r\n*1\r\n$3\r\nSET\r\n"
               "+g\r\n");
    send_str(fd, "SLOW h\r\nREAD i\r\nSLOW j\r\n");
    close(fd);
    int fd2 = client(f->port);
    send_str(fd2, "SLOW k\r\n"); /* READ i was never submitted */
    expect(fd2, "+k\r\n");
    close(fd2);
    finish(f);
}

/* An argument beyond command_max is refused from its header, before any of
 * it is buffered; one within it goes through. */
static void command_max_bounds_arguments(void **state)
{
    (void)state;
    struct fixture *f = start_limited(100, NULL, 100000);
    int fd = client(f->port);
    static char big[100001];
    memset(big, 'x', sizeof big - 1);
    char head[64];
    snprintf(head, sizeof head, "*2\r\n$4\r\nFAST\r\n$%zu\r\n", sizeof big - 1);
    send_str(fd, head);
    send_str(fd, big);
    send_str(fd, "\r\n");
    /* FAST answers with its argument as a simple string. */
    size_t n = 1 + (sizeof big - 1) + 2;
    char *want = malloc(n + 1);
    want[0] = '+';
    memcpy(want + 1, big, sizeof big - 1);
    memcpy(want + sizeof big, "\r\n", 3);
    expect_long(fd, want);
    free(want);
    send_str(fd, "*2\r\n$4\r\nFAST\r\n$200000000\r\n");
    expect(fd, "-ERR Protocol error: invalid bulk length\r\n");
    expect_eof(fd);
    close(fd);
    finish(f);
}

static void errors_for_not_proposed_and_lost(void **state)
{
    (void)state;
    struct fixture *f = start(100, NULL);
    int fd = client(f->port);
    send_str(fd, "NOTLEADER\r\n");
    expect(fd, "-CLUSTERDOWN no leader is known; retry shortly\r\n");
    f->leader_known = 1;
    send_str(fd, "NOTLEADER\r\n");
    expect(fd, "-MOVED 0 127.0.0.1:9999\r\n");
    /* MOVED names the key's Redis Cluster slot (CLUSTER KEYSLOT foo). */
    send_str(fd, "NOTLEADER foo\r\n");
    expect(fd, "-MOVED 12182 127.0.0.1:9999\r\n");
    /* A transaction's slot is its first command's first key's. */
    send_str(fd, "MULTI\r\n");
    expect(fd, "+OK\r\n");
    send_str(fd, "NOTLEADER {user1000}.a\r\n");
    expect(fd, "+QUEUED\r\n");
    send_str(fd, "EXEC\r\n");
    expect(fd, "-MOVED 3443 127.0.0.1:9999\r\n");
    /* This backend has no cluster view: no CLUSTER, as Redis without
     * cluster support. */
    send_str(fd, "CLUSTER SLOTS\r\n");
    expect(fd, "-ERR This instance has cluster support disabled\r\n");
    send_str(fd, "LOST\r\n");
    expect(fd, "-UNCERTAIN leadership changed before the command committed; "
               "it may or may not have taken effect\r\n");
    close(fd);
    finish(f);
}

static void protocol_error_closes_only_that_client(void **state)
{
    (void)state;
    struct fixture *f = start(100, NULL);
    int good = client(f->port);
    int bad = client(f->port);
    /* A pending reply first, then garbage: the reply still comes, then
     * the error, then the close. */
    send_str(bad, "SLOW x\r\n*1\r\n$abc\r\n");
    expect(bad, "+x\r\n-ERR Protocol error");
    char rest[256];
    ssize_t r = read(bad, rest, sizeof rest);
    assert_true(r > 0 && rest[r - 1] == '\n');
    expect_eof(bad);
    close(bad);
    send_str(good, "PING\r\n");
    expect(good, "+PONG\r\n");
    close(good);
    finish(f);
}

static void auth_and_max_clients(void **state)
{
    (void)state;
    struct fixture *f = start(1, "secret");
    int fd = client(f->port);
    send_str(fd, "PING\r\n");
    expect(fd, "-NOAUTH Authentication required.\r\n");
    send_str(fd, "AUTH wrong\r\n");
    expect(fd, "-WRONGPASS invalid username-password pair or user is "
               "disabled.\r\n");
    send_str(fd, "AUTH secret\r\nPING\r\n");
    expect(fd, "+OK\r\n+PONG\r\n");
    int second = client(f->port);
    expect(second, "-ERR max number of clients reached\r\n");
    expect_eof(second);
    close(second);
    close(fd);
    finish(f);
}

/* A client that goes away with an op in flight: the op is answered later
 * into the void, and nothing leaks or crashes (ASan checks). */
static void disconnect_with_op_in_flight(void **state)
{
    (void)state;
    struct fixture *f = start(100, NULL);
    int fd = client(f->port);
    send_str(fd, "SLOW gone\r\n");
    close(fd);
    int fd2 = client(f->port);
    send_str(fd2, "SLOW here\r\n");
    expect(fd2, "+here\r\n");
    close(fd2);
    finish(f);
}

static void multi_exec(void **state)
{
    (void)state;
    struct fixture *f = start(100, NULL);
    int fd = client(f->port);
    send_str(fd, "EXEC\r\nDISCARD\r\n");
    expect(fd, "-ERR EXEC without MULTI\r\n-ERR DISCARD without MULTI\r\n");
    /* Queued, then proposed as one op, after a slow op ahead of it. */
    send_str(fd, "SLOW first\r\nMULTI\r\nSET a 1\r\nGET a b\r\n"
                 "INCR c\r\nEXEC\r\nPING\r\n");
    expect(fd, "+first\r\n+OK\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n"
               "*3\r\n$3\r\nSET\r\n$3\r\nGET\r\n$4\r\nINCR\r\n"
               "+PONG\r\n");
    send_str(fd, "MULTI\r\nMULTI\r\nEXEC\r\n");
    expect(fd, "+OK\r\n-ERR MULTI calls can not be nested\r\n"
               "-EXECABORT Transaction discarded because of previous "
               "errors.\r\n");
    send_str(fd, "MULTI\r\nSET a 1\r\nBAD\r\nEXEC\r\n");
    expect(fd, "+OK\r\n+QUEUED\r\n-ERR unknown command 'BAD'\r\n"
               "-EXECABORT Transaction discarded because of previous "
               "errors.\r\n");
    send_str(fd, "MULTI\r\nSET a 1\r\nDISCARD\r\nMULTI\r\nEXEC\r\n");
    expect(fd, "+OK\r\n+QUEUED\r\n+OK\r\n+OK\r\n*0\r\n");
    /* A client gone with a transaction queued leaks nothing (ASan). */
    send_str(fd, "MULTI\r\nSET a 1\r\n");
    expect(fd, "+OK\r\n+QUEUED\r\n");
    close(fd);
    finish(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(local_commands),
        cmocka_unit_test(pipeline_order),
        cmocka_unit_test(reads_wait_for_earlier_writes),
        cmocka_unit_test(command_max_bounds_arguments),
        cmocka_unit_test(errors_for_not_proposed_and_lost),
        cmocka_unit_test(protocol_error_closes_only_that_client),
        cmocka_unit_test(auth_and_max_clients),
        cmocka_unit_test(disconnect_with_op_in_flight),
        cmocka_unit_test(multi_exec),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
