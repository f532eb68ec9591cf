/*
 * install_raft_single -- a program built against an *installed* libcraft
 * through `pkg-config craft` by tests/system/install_test.py.
 *
 * It runs a one-member Raft cluster in memory: ticks the core until it
 * elects itself, proposes one command and waits for it to commit, carrying
 * out each update the way a runtime must (docs/raft.md): persistence is
 * "durable" at once here, so every persist_seq is acknowledged straight
 * away.  Prints "leader term T" and "committed index I: hello" and exits 0;
 * exits 1 with a message on any failure.
 */
#include <stdio.h>
#include <string.h>

#include <craft/raft.h>

#define MAX_TICKS 10000

static int step(struct raft *r, struct raft_event *ev, struct raft_update *u)
{
    int rv = raft_step(r, ev, u);
    if (rv != 0) {
        fprintf(stderr, "raft_step: %s\n", craft_strerror(rv));
        return rv;
    }
    /* A single member sends nothing; then acknowledge the write at once
     * (the update's pointers stay valid until this next step). */
    if (u->n_messages != 0) {
        fprintf(stderr, "a single member sent %zu messages\n", u->n_messages);
        return CRAFT_EINVAL;
    }
    return 0;
}

/* Steps ev, then acknowledges persistence until nothing more is pending.
 * Sets *found if a committed entry carrying `want` appeared. */
static int run(struct raft *r, struct raft_event *ev, struct raft_update *u,
               const char *want, raft_index *found)
{
    int rv = step(r, ev, u);
    while (rv == 0) {
        for (size_t i = 0; want != NULL && i < u->n_committed; i++) {
            const struct raft_entry *e = &u->committed[i];
            if (e->type == RAFT_ENTRY_COMMAND && e->buf.len == strlen(want) &&
                memcmp(e->buf.base, want, e->buf.len) == 0) {
                *found = e->index;
            }
        }
        if (u->persist_seq == 0) {
            break;
        }
        struct raft_event p = {.type = RAFT_PERSISTED};
        p.persisted.seq = u->persist_seq;
        rv = step(r, &p, u);
    }
    return rv;
}

int main(int argc, char **argv)
{
    if (argc > 1) {
        printf("usage: %s\n(elects a one-member Raft cluster and commits "
               "one command)\n",
               argv[0]);
        return strcmp(argv[1], "--help") == 0 ? 0 : 2;
    }
    struct raft_config cfg = {.n = 1, .ids = {1}};
    struct raft *r;
    int rv = raft_new(1, &cfg, NULL, 42, NULL, NULL, &r);
    if (rv != 0) {
        fprintf(stderr, "raft_new: %s\n", craft_strerror(rv));
        return 1;
    }
    struct raft_update u;
    raft_index found = 0;
    int ticks = 0;
    for (; ticks < MAX_TICKS && rv == 0; ticks++) {
        struct raft_event tick = {.type = RAFT_TICK};
        rv = run(r, &tick, &u, NULL, &found);
        if (rv == 0 && u.role == RAFT_LEADER) {
            break;
        }
    }
    if (rv != 0 || u.role != RAFT_LEADER) {
        fprintf(stderr, "no leader after %d ticks (role %s)\n", ticks,
                raft_role_name(u.role));
        raft_free(r);
        return 1;
    }
    printf("leader term %llu after %d ticks\n", (unsigned long long)u.term,
           ticks);

    char cmd[] = "hello";
    struct raft_buffer buf = {.base = cmd, .len = strlen(cmd)};
    struct raft_event prop = {.type = RAFT_PROPOSE};
    prop.propose.bufs = &buf;
    prop.propose.n = 1;
    rv = run(r, &prop, &u, cmd, &found);
    for (int i = 0; rv == 0 && found == 0 && i < MAX_TICKS; i++) {
        struct raft_event tick = {.type = RAFT_TICK};
        rv = run(r, &tick, &u, cmd, &found);
    }
    if (rv != 0 || found == 0 || found != prop.propose.index) {
        fprintf(stderr, "command proposed at %llu did not commit\n",
                (unsigned long long)prop.propose.index);
        raft_free(r);
        return 1;
    }
    struct raft_status st;
    raft_status(r, &st);
    printf("committed index %llu: %s (commit %llu, role %s)\n",
           (unsigned long long)found, cmd, (unsigned long long)st.commit,
           raft_role_name(st.role));
    raft_free(r);
    return 0;
}
