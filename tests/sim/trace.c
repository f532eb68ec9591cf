/*
 * tests/sim/trace.c -- the event trace kept for failure reports.
 *
 * The cluster records one line per notable event (messages received, role
 * changes, applies, snapshots, faults, proposals, and the core's own trace
 * hook) in a ring of SIM_TRACE_MAX lines.  On a failure the last lines are
 * printed with one column per node, so that the run reads like a story:
 *
 *   time ms | n1                 | n2                 | n3
 *      1230 | 4C <-2 VOTE_RESP ye |                    |
 *      1230 | 4L -> leader        |                    |
 *
 * Each cell starts with the node's term and role letter (F follower, P
 * pre-candidate, C candidate, L leader, - down) at that moment.
 */
#include <stdarg.h>
#include <string.h>

#include "sim_internal.h"
#include "util/assert.h"

static void trace_vadd(struct sim_cluster *c, unsigned node, const char *fmt,
                       va_list ap)
{
    struct sim_trace_line *l = &c->trace[c->n_trace % SIM_TRACE_MAX];
    c->n_trace++;
    l->time = c->now;
    l->node = node;
    l->term = 0;
    l->role = 0;
    if (node >= 1 && node <= c->o.n_nodes) {
        l->term = c->nodes[node - 1].term;
        l->role = c->nodes[node - 1].up ? c->nodes[node - 1].role : 0;
    }
    vsnprintf(l->text, sizeof l->text, fmt, ap);
    if (c->o.verbose) {
        fprintf(stderr, "%8llu n%u t%llu %s\n", (unsigned long long)l->time,
                node, (unsigned long long)l->term, l->text);
    }
}

void sim__trace(struct sim_cluster *c, unsigned node, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    trace_vadd(c, node, fmt, ap);
    va_end(ap);
}

void sim_note(struct sim_cluster *c, raft_id id, const char *fmt, ...)
{
    CRAFT_ASSERT(id <= c->o.n_nodes);
    va_list ap;
    va_start(ap, fmt);
    trace_vadd(c, (unsigned)id, fmt, ap);
    va_end(ap);
}

void sim__raft_trace_hook(void *data, const char *line)
{
    struct sim_node *n = data;
    sim__trace(n->cluster, (unsigned)n->id, "%s", line);
}

static char role_letter(uint8_t role)
{
    switch ((enum raft_role)role) {
    case RAFT_FOLLOWER:
        return 'F';
    case RAFT_PRE_CANDIDATE:
        return 'P';
    case RAFT_CANDIDATE:
        return 'C';
    case RAFT_LEADER:
        return 'L';
    }
    return '-';
}

void sim_trace_print(const struct sim_cluster *c, FILE *f, unsigned n)
{
    unsigned nodes = c->o.n_nodes;
    /* Fit the columns in about 160 characters. */
    int width = nodes <= 3 ? 34 : nodes <= 5 ? 28 : 20;
    size_t count = c->n_trace < n ? c->n_trace : n;
    if (count > SIM_TRACE_MAX) {
        count = SIM_TRACE_MAX;
    }
    fprintf(f, "--- last %zu of %llu trace lines ---\n%8s", count,
            (unsigned long long)c->n_trace, "time ms");
    for (unsigned k = 1; k <= nodes; k++) {
        fprintf(f, " | n%-*u", width - 2, k);
    }
    fputc('\n', f);
    for (size_t i = c->n_trace - count; i < c->n_trace; i++) {
        const struct sim_trace_line *l = &c->trace[i % SIM_TRACE_MAX];
        fprintf(f, "%8llu", (unsigned long long)l->time);
        if (l->node == 0) {
            fprintf(f, " | == %s\n", l->text);
            continue;
        }
        for (unsigned k = 1; k <= nodes; k++) {
            if (k != l->node) {
                fprintf(f, " | %-*s", width - 1, "");
                continue;
            }
            char cell[128];
            snprintf(cell, sizeof cell, "%llu%c %s",
                     (unsigned long long)l->term, role_letter(l->role),
                     l->text);
            if (k == nodes) {
                fprintf(f, " | %s", cell); /* the last column may run on */
            } else {
                fprintf(f, " | %-*.*s", width - 1, width - 1, cell);
            }
        }
        fputc('\n', f);
    }
}
