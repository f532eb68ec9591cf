/*
 * Unit tests for libcraftclient (src/client/).
 *
 * policy/...   the pure parts: addresses, command and reply classes, the
 *              session envelope, backoff, option checks.
 * sync/...     craft_client against fake servers: threads that accept on
 *              127.0.0.1:0 and answer each command through a per-test
 *              script (a reply, a silent close, or silence), recording
 *              every command they receive.  They exercise what a real
 *              cluster only shows by chance: a reply lost after the
 *              command ran, NOSESSION, UNCERTAIN, a hung leader.
 * async/...    the same for craft_aclient on a libuv loop, including the
 *              exactly-once callback rule and cancellation on close.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#include "client/client_int.h"
#include "craft/client.h"

/* ---- policy ---------------------------------------------------------- */

static void policy_addr_parse(void **state)
{
    (void)state;
    struct client_addr a;
    assert_int_equal(client__addr_parse("127.0.0.1:7001", &a), 0);
    assert_string_equal(a.host, "127.0.0.1");
    assert_int_equal(a.port, 7001);
    assert_string_equal(a.text, "127.0.0.1:7001");
    assert_int_equal(client__addr_parse("localhost:1", &a), 0);
    const char *bad[] = {"",    ":7001",   "h:",
                         "h:0", "h:65536", "h:12x",
                         "h",   "h:-1",    "h:99999999999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(client__addr_parse(bad[i], &a), CRAFT_EINVAL);
    }
}

static void policy_addrs_leader(void **state)
{
    (void)state;
    struct craft_client_options o;
    craft_client_options_init(&o);
    const char *list[] = {"127.0.0.1:1", "127.0.0.1:2"};
    o.addrs = list;
    o.n_addrs = 2;
    struct client_addrs as;
    assert_int_equal(client__addrs_init(&as, &o, NULL, 0), 0);
    assert_int_equal(as.n, 2);
    assert_false(as.leader_known);
    /* A known address becomes current; an unknown one is added. */
    assert_int_equal(client__addrs_set_leader(&as, "127.0.0.1:2", 11), 0);
    assert_int_equal(as.cur, 1);
    assert_true(as.leader_known);
    assert_int_equal(client__addrs_set_leader(&as, "10.0.0.9:5", 10), 0);
    assert_int_equal(as.n, 3);
    assert_int_equal(as.cur, 2);
    client__addrs_next(&as);
    assert_int_equal(as.cur, 0);
    assert_false(as.leader_known);
    assert_int_equal(client__addrs_set_leader(&as, "garbage", 7), CRAFT_EINVAL);
    /* A full list keeps the given addresses and reuses the last slot. */
    for (int i = 0; i < 40; i++) {
        char t[32];
        int n = snprintf(t, sizeof t, "10.1.0.%d:80", i);
        assert_int_equal(client__addrs_set_leader(&as, t, (size_t)n), 0);
        assert_true(as.n <= CRAFT_CLIENT_ADDRS_MAX);
        assert_string_equal(as.a[as.cur].text, t);
    }
    assert_string_equal(as.a[0].text, "127.0.0.1:1");
    assert_string_equal(as.a[1].text, "127.0.0.1:2");

    char err[128];
    o.n_addrs = 0;
    assert_int_equal(client__addrs_init(&as, &o, err, sizeof err),
                     CRAFT_EINVAL);
    assert_non_null(strstr(err, "no member"));
    const char *bad[] = {"127.0.0.1:1", "nope"};
    o.addrs = bad;
    o.n_addrs = 2;
    assert_int_equal(client__addrs_init(&as, &o, err, sizeof err),
                     CRAFT_EINVAL);
    assert_non_null(strstr(err, "'nope'"));
    o.connect_timeout_ms = 0;
    assert_int_equal(client__options_check(&o, err, sizeof err), CRAFT_EINVAL);
}

static void policy_kinds(void **state)
{
    (void)state;
    assert_int_equal(client__kind("get", 3), CLIENT_IDEMPOTENT);
    assert_int_equal(client__kind("GET", 3), CLIENT_IDEMPOTENT);
    assert_int_equal(client__kind("GETSET", 6), CLIENT_WRITE);
    assert_int_equal(client__kind("GETX", 3), CLIENT_IDEMPOTENT); /* len */
    assert_int_equal(client__kind("set", 3), CLIENT_WRITE);
    assert_int_equal(client__kind("Append", 6), CLIENT_WRITE);
    assert_int_equal(client__kind("INCR", 4), CLIENT_WRITE);
    assert_int_equal(client__kind("craft.exec", 10), CLIENT_IDEMPOTENT);
    assert_int_equal(client__kind("CRAFT.SESSION", 13), CLIENT_IDEMPOTENT);
    assert_int_equal(client__kind("multi", 5), CLIENT_UNSUPPORTED);
    assert_int_equal(client__kind("EXEC", 4), CLIENT_UNSUPPORTED);
    assert_int_equal(client__kind("subscribe", 9), CLIENT_UNSUPPORTED);
}

static enum client_verdict verdict_of(const char *err, const char **addr,
                                      size_t *len)
{
    redisReply r = {
        .type = REDIS_REPLY_ERROR, .str = (char *)err, .len = strlen(err)};
    return client__verdict(&r, addr, len);
}

static void policy_verdicts(void **state)
{
    (void)state;
    const char *addr = NULL;
    size_t len = 0;
    assert_int_equal(verdict_of("MOVED 0 127.0.0.1:7002", &addr, &len),
                     CLIENT_MOVED);
    assert_int_equal(len, 14);
    assert_memory_equal(addr, "127.0.0.1:7002", 14);
    assert_int_equal(verdict_of("MOVED", &addr, &len), CLIENT_DONE);
    assert_int_equal(verdict_of("MOVED 0", &addr, &len), CLIENT_DONE);
    assert_int_equal(verdict_of("MOVEDX 0 a:1", &addr, &len), CLIENT_DONE);
    assert_int_equal(verdict_of("CLUSTERDOWN no leader", &addr, &len),
                     CLIENT_NOT_RUN);
    assert_int_equal(verdict_of("SHUTDOWN stopping", &addr, &len),
                     CLIENT_NOT_RUN);
    assert_int_equal(verdict_of("UNCERTAIN maybe", &addr, &len),
                     CLIENT_UNCERTAIN);
    assert_int_equal(verdict_of("NOSESSION session 3", &addr, &len),
                     CLIENT_NOSESSION);
    assert_int_equal(verdict_of("NOAUTH Authentication required.", &addr, &len),
                     CLIENT_AUTH);
    assert_int_equal(verdict_of("WRONGPASS invalid", &addr, &len), CLIENT_AUTH);
    assert_int_equal(verdict_of("ERR wrong number of arguments", &addr, &len),
                     CLIENT_DONE);
    char okstr[] = "OK";
    redisReply ok = {.type = REDIS_REPLY_STATUS, .str = okstr, .len = 2};
    assert_int_equal(client__verdict(&ok, &addr, &len), CLIENT_DONE);
}

static void policy_envelope(void **state)
{
    (void)state;
    const char *argv[] = {"APPEND", "k", "v\0x"};
    size_t lens[] = {6, 1, 3};
    struct client_req req;
    assert_int_equal(client__req_init(&req, 3, argv, lens), 0);
    assert_int_equal(req.kind, CLIENT_WRITE);
    assert_int_equal(client__req_argc(&req), 3);
    assert_false(client__may_resend(&req));
    client__req_wrap(&req, 42, 7, 5);
    assert_true(client__may_resend(&req));
    assert_int_equal(client__req_argc(&req), 7);
    const char **av = client__req_argv(&req);
    const size_t *al = client__req_lens(&req);
    assert_string_equal(av[0], "CRAFT.EXEC");
    assert_string_equal(av[1], "42");
    assert_string_equal(av[2], "7");
    assert_string_equal(av[3], "5");
    assert_string_equal(av[4], "APPEND");
    assert_int_equal(al[6], 3);
    assert_memory_equal(av[6], "v\0x", 3);
    client__req_unwrap(&req);
    assert_int_equal(client__req_argc(&req), 3);
    assert_string_equal(client__req_argv(&req)[0], "APPEND");
    client__req_close(&req);
    assert_int_equal(client__req_init(&req, 0, argv, NULL), CRAFT_EINVAL);

    /* hiredis-formatted commands split back into their arguments. */
    int argc;
    const char **sav;
    size_t *slen;
    const char fmt[] = "*2\r\n$3\r\nGET\r\n$4\r\na\r\nb\r\n";
    assert_int_equal(
        client__split_formatted(fmt, sizeof fmt - 1, &argc, &sav, &slen), 0);
    assert_int_equal(argc, 2);
    assert_int_equal(slen[1], 4);
    assert_memory_equal(sav[1], "a\r\nb", 4);
    free(sav);
    free(slen);
    const char *badf[] = {"", "*0\r\n", "*1\r\n$5\r\nab\r\n", "*1\r\n:1\r\n",
                          "*x\r\n"};
    for (size_t i = 0; i < sizeof badf / sizeof badf[0]; i++) {
        assert_int_equal(client__split_formatted(badf[i], strlen(badf[i]),
                                                 &argc, &sav, &slen),
                         CRAFT_EINVAL);
    }
}

static void policy_backoff(void **state)
{
    (void)state;
    assert_int_equal(client__backoff_ms(0), CLIENT_BACKOFF_MIN_MS);
    assert_int_equal(client__backoff_ms(1), CLIENT_BACKOFF_MIN_MS);
    assert_int_equal(client__backoff_ms(2), 2 * CLIENT_BACKOFF_MIN_MS);
    for (unsigned f = 0; f < 100; f++) {
        assert_true(client__backoff_ms(f) <= CLIENT_BACKOFF_MAX_MS);
        assert_true(client__backoff_ms(f + 1) >= client__backoff_ms(f));
    }
}

/* ---- fake servers ---------------------------------------------------- */

#define FAKE_LOG_MAX 64
#define FAKE_CLOSE ((const char *)1) /* close without replying */
#define FAKE_HANG ((const char *)2)  /* never reply on this connection */

struct fake;
/* Answer one command: raw RESP, FAKE_CLOSE or FAKE_HANG.  n counts the
 * commands this server received before this one. */
typedef const char *(*fake_fn)(struct fake *f, int n, int argc, char **argv);

struct fake {
    int fd;
    int port;
    fake_fn fn;
    void *data;
    pthread_t thread;
    pthread_mutex_t mu;
    volatile int stop;
    int n_cmds;
    int n_conns;
    char log[FAKE_LOG_MAX][128];
    char scratch[256]; /* for handlers that format a reply */
};

/* Parse one multibulk command at buf; returns its length or 0. */
static size_t parse_cmd(const char *buf, size_t len, int *argc, char **argv)
{
    const char *p = buf, *end = buf + len;
    if (len < 4 || *p != '*') {
        return 0;
    }
    char *e;
    long n = strtol(p + 1, &e, 10);
    if (e + 2 > end || e[0] != '\r' || n < 1 || n > 16) {
        return 0;
    }
    p = e + 2;
    for (long i = 0; i < n; i++) {
        if (p >= end || *p != '$') {
            return 0;
        }
        long l = strtol(p + 1, &e, 10);
        if (e + 2 > end || e + 2 + l + 2 > end) {
            return 0;
        }
        argv[i] = strndup(e + 2, (size_t)l);
        p = e + 2 + l + 2;
    }
    *argc = (int)n;
    return (size_t)(p - buf);
}

static void serve_conn(struct fake *f, int c)
{
    char buf[8192];
    size_t have = 0;
    bool hang = false;
    while (!f->stop) {
        struct pollfd pfd = {.fd = c, .events = POLLIN};
        if (poll(&pfd, 1, 20) <= 0) {
            continue;
        }
        ssize_t k = read(c, buf + have, sizeof buf - have);
        if (k <= 0) {
            return;
        }
        have += (size_t)k;
        for (;;) {
            int argc = 0;
            char *argv[16];
            size_t used = parse_cmd(buf, have, &argc, argv);
            if (used == 0) {
                break;
            }
            memmove(buf, buf + used, have - used);
            have -= used;
            pthread_mutex_lock(&f->mu);
            int n = f->n_cmds++;
            if (n < FAKE_LOG_MAX) {
                size_t off = 0;
                for (int i = 0; i < argc && off < 120; i++) {
                    off += (size_t)snprintf(f->log[n] + off, 128 - off, "%s%s",
                                            i ? " " : "", argv[i]);
                }
            }
            const char *reply = hang ? FAKE_HANG : f->fn(f, n, argc, argv);
            pthread_mutex_unlock(&f->mu);
            for (int i = 0; i < argc; i++) {
                free(argv[i]);
            }
            if (reply == FAKE_CLOSE) {
                return;
            }
            if (reply == FAKE_HANG) {
                hang = true;
                continue;
            }
            ssize_t w = write(c, reply, strlen(reply));
            assert_true(w == (ssize_t)strlen(reply));
        }
    }
}

static void *fake_main(void *arg)
{
    struct fake *f = arg;
    while (!f->stop) {
        struct pollfd pfd = {.fd = f->fd, .events = POLLIN};
        if (poll(&pfd, 1, 20) <= 0) {
            continue;
        }
        int c = accept(f->fd, NULL, NULL);
        if (c < 0) {
            continue;
        }
        pthread_mutex_lock(&f->mu);
        f->n_conns++;
        pthread_mutex_unlock(&f->mu);
        serve_conn(f, c);
        close(c);
    }
    return NULL;
}

static struct fake *fake_start(fake_fn fn, void *data)
{
    struct fake *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->fn = fn;
    f->data = data;
    pthread_mutex_init(&f->mu, NULL);
    f->fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(f->fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(f->fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(f->fd, 16), 0);
    socklen_t sl = sizeof sa;
    getsockname(f->fd, (struct sockaddr *)&sa, &sl);
    f->port = ntohs(sa.sin_port);
    assert_int_equal(pthread_create(&f->thread, NULL, fake_main, f), 0);
    return f;
}

static void fake_stop(struct fake *f)
{
    f->stop = 1;
    pthread_join(f->thread, NULL);
    close(f->fd);
    pthread_mutex_destroy(&f->mu);
    free(f);
}

static int fake_cmds(struct fake *f)
{
    pthread_mutex_lock(&f->mu);
    int n = f->n_cmds;
    pthread_mutex_unlock(&f->mu);
    return n;
}

/* A port nobody listens on: bound, then closed. */
static int dead_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bind(fd, (struct sockaddr *)&sa, sizeof sa);
    socklen_t sl = sizeof sa;
    getsockname(fd, (struct sockaddr *)&sa, &sl);
    close(fd);
    return ntohs(sa.sin_port);
}

static struct craft_client *client_for(int n, const int *ports,
                                       struct craft_client_options *o,
                                       char addrbuf[][32])
{
    static const char *list[8];
    for (int i = 0; i < n; i++) {
        snprintf(addrbuf[i], 32, "127.0.0.1:%d", ports[i]);
        list[i] = addrbuf[i];
    }
    o->addrs = list;
    o->n_addrs = (size_t)n;
    struct craft_client *c;
    char err[128];
    assert_int_equal(craft_client_new(o, &c, err, sizeof err), 0);
    return c;
}

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- scripts --------------------------------------------------------- */

/* Redirects everything to the port in f->data. */
static const char *script_moved(struct fake *f, int n, int argc, char **argv)
{
    (void)n, (void)argc, (void)argv;
    snprintf(f->scratch, sizeof f->scratch, "-MOVED 0 127.0.0.1:%d\r\n",
             *(int *)f->data);
    return f->scratch;
}

/* A leader: session 7; the first CRAFT.EXEC "runs" and loses its reply
 * (the connection closes); a resend with the same seq gets the saved
 * reply; a different seq would be a bug. */
static const char *script_lost_reply(struct fake *f, int n, int argc,
                                     char **argv)
{
    (void)n;
    int *execs = f->data;
    if (strcasecmp(argv[0], "CRAFT.SESSION") == 0) {
        return ":7\r\n";
    }
    if (strcasecmp(argv[0], "CRAFT.EXEC") == 0 && argc >= 5) {
        if (strcmp(argv[1], "7") != 0 || strcmp(argv[2], "1") != 0 ||
            strcmp(argv[3], "1") != 0) {
            return "-ERR unexpected envelope\r\n";
        }
        return (*execs)++ == 0 ? FAKE_CLOSE : ":5\r\n";
    }
    if (strcasecmp(argv[0], "GET") == 0) {
        return "$2\r\nhi\r\n";
    }
    return "-ERR unexpected\r\n";
}

static void sync_moved(void **state)
{
    (void)state;
    int execs = 0;
    struct fake *b = fake_start(script_lost_reply, &execs);
    struct fake *a = fake_start(script_moved, &b->port);
    struct craft_client_options o;
    craft_client_options_init(&o);
    char ab[2][32];
    int ports[] = {a->port};
    struct craft_client *c = client_for(1, ports, &o, ab);
    redisReply *r;
    assert_int_equal(craft_client_command(c, &r, "GET %s", "k"), 0);
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    assert_string_equal(r->str, "hi");
    freeReplyObject(r);
    char want[32];
    snprintf(want, sizeof want, "127.0.0.1:%d", b->port);
    assert_string_equal(craft_client_leader(c), want);
    struct craft_client_stats st;
    craft_client_get_stats(c, &st);
    assert_int_equal(st.redirects, 1);
    assert_int_equal(st.sends, 2);
    assert_int_equal(fake_cmds(a), 1);
    /* The next command goes straight to the leader. */
    assert_int_equal(craft_client_command(c, &r, "GET k"), 0);
    freeReplyObject(r);
    assert_int_equal(fake_cmds(a), 1);
    craft_client_free(c);
    fake_stop(a);
    fake_stop(b);
}

static void sync_lost_reply_exactly_once(void **state)
{
    (void)state;
    int execs = 0;
    struct fake *f = fake_start(script_lost_reply, &execs);
    struct craft_client_options o;
    craft_client_options_init(&o);
    char ab[1][32];
    int ports[] = {f->port};
    struct craft_client *c = client_for(1, ports, &o, ab);
    redisReply *r;
    assert_int_equal(craft_client_command(c, &r, "APPEND k %s", "v"), 0);
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    assert_int_equal(r->integer, 5);
    freeReplyObject(r);
    /* SESSION, EXEC (reply lost), the same EXEC again. */
    assert_int_equal(fake_cmds(f), 3);
    assert_string_equal(f->log[0], "CRAFT.SESSION");
    assert_string_equal(f->log[1], "CRAFT.EXEC 7 1 1 APPEND k v");
    assert_string_equal(f->log[2], "CRAFT.EXEC 7 1 1 APPEND k v");
    struct craft_client_stats st;
    craft_client_get_stats(c, &st);
    assert_int_equal(st.retries, 1);
    assert_int_equal(st.session, 7);
    craft_client_free(c);
    fake_stop(f);
}

/* Without exactly_once no session is opened and writes go bare; a
 * command's own error reply is a successful call. */
static void sync_no_session_sends_bare(void **state)
{
    (void)state;
    int execs = 0;
    struct fake *f = fake_start(script_lost_reply, &execs);
    struct craft_client_options o;
    craft_client_options_init(&o);
    o.exactly_once = false;
    char ab[1][32];
    int ports[] = {f->port};
    struct craft_client *c = client_for(1, ports, &o, ab);
    redisReply *r = NULL;
    assert_int_equal(craft_client_command(c, &r, "SET k v"), 0);
    assert_int_equal(r->type, REDIS_REPLY_ERROR);
    freeReplyObject(r);
    assert_int_equal(fake_cmds(f), 1);
    assert_string_equal(f->log[0], "SET k v");
    craft_client_free(c);
    fake_stop(f);
}

static const char *script_uncertain(struct fake *f, int n, int argc,
                                    char **argv)
{
    (void)f, (void)n, (void)argc;
    if (strcasecmp(argv[0], "GET") == 0) {
        return n == 0 ? FAKE_CLOSE : "$-1\r\n";
    }
    return "-UNCERTAIN leadership changed before the command committed\r\n";
}

static void sync_uncertain(void **state)
{
    (void)state;
    struct fake *f = fake_start(script_uncertain, NULL);
    struct craft_client_options o;
    craft_client_options_init(&o);
    o.exactly_once = false;
    char ab[1][32];
    int ports[] = {f->port};
    struct craft_client *c = client_for(1, ports, &o, ab);
    redisReply *r = NULL;
    /* A read whose connection dies is simply resent. */
    assert_int_equal(craft_client_command(c, &r, "GET k"), 0);
    assert_int_equal(r->type, REDIS_REPLY_NIL);
    freeReplyObject(r);
    assert_int_equal(fake_cmds(f), 2);
    /* A bare write answered UNCERTAIN is not resent. */
    r = NULL;
    assert_int_equal(craft_client_command(c, &r, "INCR n"), CRAFT_ELEADERLOST);
    assert_null(r);
    assert_non_null(strstr(craft_client_errmsg(c), "may or may not"));
    assert_int_equal(fake_cmds(f), 3);
    craft_client_free(c);
    fake_stop(f);
}

/* NOSESSION for a request that cannot have run: a new session, resent. */
static const char *script_nosession(struct fake *f, int n, int argc,
                                    char **argv)
{
    (void)argc;
    int *sessions = f->data;
    if (strcasecmp(argv[0], "CRAFT.SESSION") == 0) {
        return ++*sessions == 1 ? ":3\r\n" : ":4\r\n";
    }
    if (strcmp(argv[1], "3") == 0) {
        return "-NOSESSION session 3 is unknown or has expired\r\n";
    }
    (void)n;
    return "+OK\r\n";
}

static void sync_nosession(void **state)
{
    (void)state;
    int sessions = 0;
    struct fake *f = fake_start(script_nosession, &sessions);
    struct craft_client_options o;
    craft_client_options_init(&o);
    char ab[1][32];
    int ports[] = {f->port};
    struct craft_client *c = client_for(1, ports, &o, ab);
    redisReply *r;
    assert_int_equal(craft_client_command(c, &r, "SET a b"), 0);
    assert_string_equal(r->str, "OK");
    freeReplyObject(r);
    assert_int_equal(fake_cmds(f), 4);
    assert_string_equal(f->log[1], "CRAFT.EXEC 3 1 1 SET a b");
    assert_string_equal(f->log[3], "CRAFT.EXEC 4 1 1 SET a b");
    craft_client_free(c);
    fake_stop(f);
}

/* NOSESSION after a lost reply: the first send may have run. */
static const char *script_nosession_in_doubt(struct fake *f, int n, int argc,
                                             char **argv)
{
    (void)f, (void)argc;
    if (strcasecmp(argv[0], "CRAFT.SESSION") == 0) {
        return ":3\r\n";
    }
    return n == 1 ? FAKE_CLOSE : "-NOSESSION session 3 has expired\r\n";
}

static void sync_nosession_in_doubt(void **state)
{
    (void)state;
    struct fake *f = fake_start(script_nosession_in_doubt, NULL);
    struct craft_client_options o;
    craft_client_options_init(&o);
    char ab[1][32];
    int ports[] = {f->port};
    struct craft_client *c = client_for(1, ports, &o, ab);
    redisReply *r = NULL;
    assert_int_equal(craft_client_command(c, &r, "INCR n"), CRAFT_ELEADERLOST);
    assert_null(r);
    assert_non_null(strstr(craft_client_errmsg(c), "unknown"));
    assert_int_equal(fake_cmds(f), 3);
    craft_client_free(c);
    fake_stop(f);
}

/* CLUSTERDOWN during an election, then an answer. */
static const char *script_clusterdown(struct fake *f, int n, int argc,
                                      char **argv)
{
    (void)f, (void)argc, (void)argv;
    return n < 3 ? "-CLUSTERDOWN no leader is known; retry shortly\r\n"
                 : "$1\r\nv\r\n";
}

static void sync_clusterdown_backoff(void **state)
{
    (void)state;
    struct fake *f = fake_start(script_clusterdown, NULL);
    struct craft_client_options o;
    craft_client_options_init(&o);
    char ab[1][32];
    int ports[] = {f->port};
    struct craft_client *c = client_for(1, ports, &o, ab);
    redisReply *r;
    uint64_t t0 = mono_ms();
    assert_int_equal(craft_client_command(c, &r, "GET k"), 0);
    uint64_t took = mono_ms() - t0;
    assert_string_equal(r->str, "v");
    freeReplyObject(r);
    assert_int_equal(fake_cmds(f), 4);
    /* Three failed rounds of one address: 20 + 40 + 80 ms of backoff. */
    assert_true(took >= 140);
    craft_client_free(c);
    fake_stop(f);
}

static const char *script_hang(struct fake *f, int n, int argc, char **argv)
{
    (void)f, (void)n, (void)argc;
    if (strcasecmp(argv[0], "CRAFT.SESSION") == 0) {
        return ":9\r\n";
    }
    if (strcasecmp(argv[0], "AUTH") == 0) {
        return strcmp(argv[1], "right") == 0
                   ? "+OK\r\n"
                   : "-WRONGPASS invalid username-password pair\r\n";
    }
    return FAKE_HANG;
}

static void sync_timeouts(void **state)
{
    (void)state;
    struct fake *f = fake_start(script_hang, NULL);
    struct craft_client_options o;
    craft_client_options_init(&o);
    o.request_timeout_ms = 100;
    o.total_timeout_ms = 450;
    char ab[1][32];
    int ports[] = {f->port};
    struct craft_client *c = client_for(1, ports, &o, ab);
    redisReply *r = NULL;
    uint64_t t0 = mono_ms();
    assert_int_equal(craft_client_command(c, &r, "SET k v"), CRAFT_ETIMEDOUT);
    uint64_t took = mono_ms() - t0;
    assert_null(r);
    assert_true(took >= 450 && took < 2000);
    assert_non_null(strstr(craft_client_errmsg(c), "may have run"));
    /* Every resend carried the same seq. */
    int n = fake_cmds(f);
    assert_true(n >= 3);
    for (int i = 2; i < n && i < FAKE_LOG_MAX; i++) {
        assert_string_equal(f->log[i], f->log[1]);
    }
    assert_string_equal(f->log[1], "CRAFT.EXEC 9 1 1 SET k v");
    craft_client_free(c);

    /* max_attempts bounds the sends. */
    o.total_timeout_ms = 10000;
    o.max_attempts = 2;
    c = client_for(1, ports, &o, ab);
    int before = fake_cmds(f);
    assert_int_equal(craft_client_command(c, &r, "GET k"), CRAFT_ETIMEDOUT);
    assert_int_equal(fake_cmds(f) - before, 2);
    craft_client_free(c);

    /* AUTH. */
    o.max_attempts = 0;
    o.password = "wrong";
    c = client_for(1, ports, &o, ab);
    assert_int_equal(craft_client_command(c, &r, "GET k"), CRAFT_EAUTH);
    assert_non_null(strstr(craft_client_errmsg(c), "WRONGPASS"));
    craft_client_free(c);
    fake_stop(f);
}

static void sync_refused_and_bad_input(void **state)
{
    (void)state;
    struct craft_client_options o;
    craft_client_options_init(&o);
    o.total_timeout_ms = 300;
    char ab[2][32];
    int ports[] = {dead_port(), dead_port()};
    struct craft_client *c = client_for(2, ports, &o, ab);
    redisReply *r = NULL;
    assert_int_equal(craft_client_command(c, &r, "GET k"), CRAFT_ECONNREFUSED);
    assert_non_null(strstr(craft_client_errmsg(c), "refused"));
    assert_int_equal(craft_client_command(c, &r, "MULTI"), CRAFT_EINVAL);
    assert_int_equal(craft_client_command(c, &r, ""), CRAFT_EINVAL);
    assert_null(r);
    craft_client_free(c);

    const char *bad[] = {"127.0.0.1"};
    o.addrs = bad;
    o.n_addrs = 1;
    char err[128];
    assert_int_equal(craft_client_new(&o, &c, err, sizeof err), CRAFT_EINVAL);
    assert_non_null(strstr(err, "bad address"));
    craft_client_free(NULL);
}

/* ---- async ----------------------------------------------------------- */

struct acall {
    int fired;
    int status;
    long long integer;
    char str[256];
};

static void on_acall(struct craft_aclient *c, void *data, int status,
                     redisReply *reply, const char *errmsg)
{
    (void)c;
    struct acall *a = data;
    a->fired++;
    a->status = status;
    assert_non_null(errmsg);
    assert_true((status == 0) == (reply != NULL));
    if (status != 0) {
        snprintf(a->str, sizeof a->str, "%s", errmsg);
    } else if (reply->type == REDIS_REPLY_INTEGER) {
        a->integer = reply->integer;
    } else if (reply->str != NULL) {
        snprintf(a->str, sizeof a->str, "%s", reply->str);
    }
}

static void on_aclosed(struct craft_aclient *c, void *data)
{
    (void)c;
    (*(int *)data)++;
}

static struct craft_aclient *aclient_for(uv_loop_t *loop, int port,
                                         struct craft_client_options *o,
                                         char *buf)
{
    static const char *list[1];
    snprintf(buf, 32, "127.0.0.1:%d", port);
    list[0] = buf;
    o->addrs = list;
    o->n_addrs = 1;
    struct craft_aclient *c;
    assert_int_equal(craft_aclient_new(loop, o, &c, NULL, 0), 0);
    return c;
}

static void run_until(uv_loop_t *loop, const int *counter, int want)
{
    uint64_t deadline = mono_ms() + 20000;
    while (*counter < want && mono_ms() < deadline) {
        uv_run(loop, UV_RUN_ONCE);
    }
    assert_true(*counter >= want);
}

static void async_moved_and_lost_reply(void **state)
{
    (void)state;
    int execs = 0;
    struct fake *b = fake_start(script_lost_reply, &execs);
    struct fake *a = fake_start(script_moved, &b->port);
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct craft_client_options o;
    craft_client_options_init(&o);
    char buf[32];
    struct craft_aclient *c = aclient_for(&loop, a->port, &o, buf);
    struct acall get = {0}, app = {0};
    const char *gargv[] = {"GET", "k"};
    const char *aargv[] = {"APPEND", "k", "v"};
    assert_int_equal(
        craft_aclient_command_argv(c, 2, gargv, NULL, on_acall, &get), 0);
    assert_int_equal(
        craft_aclient_command_argv(c, 3, aargv, NULL, on_acall, &app), 0);
    assert_int_equal(get.fired, 0); /* never from inside the call */
    run_until(&loop, &app.fired, 1);
    assert_int_equal(get.fired, 1);
    assert_int_equal(get.status, 0);
    assert_string_equal(get.str, "hi");
    assert_int_equal(app.fired, 1);
    assert_int_equal(app.status, 0);
    assert_int_equal(app.integer, 5);
    /* After the lost reply the client tried the next address, A, which
     * sent it back to B. */
    assert_int_equal(fake_cmds(a), 2);
    assert_int_equal(fake_cmds(b), 4); /* GET SESSION EXEC EXEC */
    assert_string_equal(b->log[2], b->log[3]);
    const char *margv[] = {"MULTI"};
    assert_int_equal(
        craft_aclient_command_argv(c, 1, margv, NULL, on_acall, &get),
        CRAFT_EINVAL);
    int closed = 0;
    craft_aclient_close(c, on_aclosed, &closed);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(closed, 1);
    assert_int_equal(uv_loop_close(&loop), 0);
    assert_int_equal(get.fired, 1);
    assert_int_equal(app.fired, 1);
    fake_stop(a);
    fake_stop(b);
}

static void async_timeout_and_cancel(void **state)
{
    (void)state;
    struct fake *f = fake_start(script_hang, NULL);
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct craft_client_options o;
    craft_client_options_init(&o);
    o.request_timeout_ms = 100;
    o.total_timeout_ms = 350;
    char buf[32];
    struct craft_aclient *c = aclient_for(&loop, f->port, &o, buf);
    struct acall calls[4] = {{0}};
    const char *argv[] = {"SET", "k", "v"};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(
            craft_aclient_command_argv(c, 3, argv, NULL, on_acall, &calls[i]),
            0);
    }
    run_until(&loop, &calls[0].fired, 1);
    assert_int_equal(calls[0].status, CRAFT_ETIMEDOUT);
    assert_int_equal(calls[1].fired, 0);
    int closed = 0;
    craft_aclient_close(c, on_aclosed, &closed);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(calls[i].fired, 1);
    }
    assert_int_equal(calls[1].status, CRAFT_ECANCELED);
    assert_int_equal(calls[3].status, CRAFT_ECANCELED);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(closed, 1);
    assert_int_equal(uv_loop_close(&loop), 0);
    fake_stop(f);
}

static void async_refused(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct craft_client_options o;
    craft_client_options_init(&o);
    o.total_timeout_ms = 300;
    char buf[32];
    struct craft_aclient *c = aclient_for(&loop, dead_port(), &o, buf);
    struct acall a = {0};
    const char *argv[] = {"GET", "k"};
    assert_int_equal(craft_aclient_command_argv(c, 2, argv, NULL, on_acall, &a),
                     0);
    run_until(&loop, &a.fired, 1);
    if (a.status != CRAFT_ECONNREFUSED) {
        fprintf(stderr, "%s\n", a.str);
    }
    assert_int_equal(a.status, CRAFT_ECONNREFUSED);
    craft_aclient_close(c, NULL, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    assert_int_equal(a.fired, 1);
}

/* The async client: AUTH with the right password, then a NOSESSION before
 * the write could run moves it to a new session. */
static const char *script_auth_nosession(struct fake *f, int n, int argc,
                                         char **argv)
{
    (void)n, (void)argc;
    int *sessions = f->data;
    if (strcasecmp(argv[0], "AUTH") == 0) {
        return strcmp(argv[1], "right") == 0 ? "+OK\r\n"
                                             : "-WRONGPASS invalid\r\n";
    }
    if (strcasecmp(argv[0], "CRAFT.SESSION") == 0) {
        return ++*sessions == 1 ? ":3\r\n" : ":4\r\n";
    }
    if (strcmp(argv[1], "3") == 0) {
        return "-NOSESSION session 3 is unknown or has expired\r\n";
    }
    return ":1\r\n";
}

static void async_auth_and_nosession(void **state)
{
    (void)state;
    int sessions = 0;
    struct fake *f = fake_start(script_auth_nosession, &sessions);
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct craft_client_options o;
    craft_client_options_init(&o);
    o.password = "right";
    char buf[32];
    struct craft_aclient *c = aclient_for(&loop, f->port, &o, buf);
    struct acall a = {0};
    const char *argv[] = {"INCR", "n"};
    assert_int_equal(craft_aclient_command_argv(c, 2, argv, NULL, on_acall, &a),
                     0);
    run_until(&loop, &a.fired, 1);
    assert_int_equal(a.status, 0);
    assert_int_equal(a.integer, 1);
    /* Each send is preceded by AUTH only on a new connection; what matters
     * is the EXEC under session 3, then the same seq under session 4. */
    int auths = 0;
    bool saw3 = false, saw4 = false;
    for (int i = 0; i < fake_cmds(f); i++) {
        auths += strncmp(f->log[i], "AUTH", 4) == 0;
        saw3 |= strcmp(f->log[i], "CRAFT.EXEC 3 1 1 INCR n") == 0;
        saw4 |= strcmp(f->log[i], "CRAFT.EXEC 4 1 1 INCR n") == 0;
    }
    assert_true(saw3);
    assert_true(saw4);
    assert_int_equal(auths, 1); /* one connection, one AUTH */
    craft_aclient_close(c, NULL, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);

    /* A wrong password fails the request with CRAFT_EAUTH. */
    o.password = "wrong";
    c = aclient_for(&loop, f->port, &o, buf);
    struct acall b = {0};
    assert_int_equal(craft_aclient_command_argv(c, 2, argv, NULL, on_acall, &b),
                     0);
    run_until(&loop, &b.fired, 1);
    assert_int_equal(b.status, CRAFT_EAUTH);
    assert_non_null(strstr(b.str, "WRONGPASS"));
    craft_aclient_close(c, NULL, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    assert_int_equal(a.fired, 1);
    assert_int_equal(b.fired, 1);
    fake_stop(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(policy_addr_parse),
        cmocka_unit_test(policy_addrs_leader),
        cmocka_unit_test(policy_kinds),
        cmocka_unit_test(policy_verdicts),
        cmocka_unit_test(policy_envelope),
        cmocka_unit_test(policy_backoff),
        cmocka_unit_test(sync_moved),
        cmocka_unit_test(sync_lost_reply_exactly_once),
        cmocka_unit_test(sync_no_session_sends_bare),
        cmocka_unit_test(sync_uncertain),
        cmocka_unit_test(sync_nosession),
        cmocka_unit_test(sync_nosession_in_doubt),
        cmocka_unit_test(sync_clusterdown_backoff),
        cmocka_unit_test(sync_timeouts),
        cmocka_unit_test(sync_refused_and_bad_input),
        cmocka_unit_test(async_moved_and_lost_reply),
        cmocka_unit_test(async_timeout_and_cancel),
        cmocka_unit_test(async_refused),
        cmocka_unit_test(async_auth_and_nosession),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
