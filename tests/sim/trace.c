/*
 * tests/sim/trace.c -- the event trace kept for failure reports.
 *
 * The cluster records one line per notable event (messages received, role
 * changes, applies, snapshots, faults, proposals, and the core's own trace
 * hook) in a ring of SIM_TRACE_MAX lines, with every node's term and role
 * at that moment.  On a failure the last lines are printed with one column
 * per node, the acting node's column marked with '*', and the event at the
 * right, so that the run reads like a story:
 *
 *   time ms |  n1   n2   n3  | event
 *      1063 |  3C*  2P   2F  | n1 candidate
 *      1072 |  3C   3F*  2F  | n2 <-1 VOTE t3 last 4/2
 *      1093 |  3L*  3F   3F  | n1 leader, no-op at 6
 *
 * A cell is the node's term and role letter: F follower, P pre-candidate,
 * C candidate, L leader; "-" is a node that is down.
 */
#include <stdarg.h>
#include <string.h>

#include "sim_internal.h"
#include "util/assert.h"

/* A new line with every node's state now; the caller fills in the event. */
static struct sim_trace_line *line_new(struct sim_cluster *c, unsigned node)
{
    struct sim_trace_line *l = &c->trace[c->n_trace % SIM_TRACE_MAX];
    c->n_trace++;
    l->time = c->now;
    l->node = node;
    for (unsigned k = 0; k < c->o.n_nodes; k++) {
        const struct sim_node *n = &c->nodes[k];
        l->term[k] = (uint32_t)n->term;
        l->role[k] = n->up ? n->role : 0;
    }
    return l;
}

static void format_msg(const struct raft_message *m, char *buf, size_t size);

/* The event of a line as text. */
static const char *line_text(const struct sim_trace_line *l, char *buf,
                             size_t size)
{
    if (!l->is_msg) {
        return l->text;
    }
    format_msg(&l->msg, buf, size);
    return buf;
}

static void verbose_print(const struct sim_cluster *c,
                          const struct sim_trace_line *l)
{
    char buf[128];
    fprintf(stderr, "%8llu n%u t%u %s\n", (unsigned long long)l->time, l->node,
            l->node ? l->term[l->node - 1] : 0, line_text(l, buf, sizeof buf));
    (void)c;
}

__attribute__((format(printf, 3, 0))) static void
trace_vadd(struct sim_cluster *c, unsigned node, const char *fmt, va_list ap)
{
    struct sim_trace_line *l = line_new(c, node);
    l->is_msg = false;
    vsnprintf(l->text, sizeof l->text, fmt, ap);
    if (c->o.verbose) {
        verbose_print(c, l);
    }
}

void sim__trace_receive(struct sim_cluster *c, const struct raft_message *m)
{
    struct sim_trace_line *l = line_new(c, (unsigned)m->to);
    l->is_msg = true;
    l->msg = *m;
    /* Only the summary survives: the entries and data die with the
     * delivery. */
    if (m->type == RAFT_MSG_APPEND) {
        l->msg.append.entries = NULL;
    } else if (m->type == RAFT_MSG_SNAPSHOT) {
        l->msg.snapshot.data.base = NULL;
    }
    if (c->o.verbose) {
        verbose_print(c, l);
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

/* The core's lines start with "n<id> t<term> <role>: ", which the columns
 * already show. */
void sim__raft_trace_hook(void *data, const char *line)
{
    struct sim_node *n = data;
    const char *colon = strstr(line, ": ");
    if (line[0] == 'n' && colon != NULL && colon - line < 32) {
        line = colon + 2;
    }
    sim__trace(n->cluster, (unsigned)n->id, "%s", line);
}

static void format_msg(const struct raft_message *m, char *buf, size_t size)
{
    buf[0] = '\0';
    switch ((enum raft_msg_type)m->type) {
    case RAFT_MSG_VOTE:
        snprintf(buf, size, "<-%llu %sVOTE t%llu last %llu/%llu",
                 (unsigned long long)m->from, m->vote.pre ? "PRE" : "",
                 (unsigned long long)m->term,
                 (unsigned long long)m->vote.last_index,
                 (unsigned long long)m->vote.last_term);
        break;
    case RAFT_MSG_VOTE_RESP:
        snprintf(buf, size, "<-%llu %sVOTE_RESP t%llu %s",
                 (unsigned long long)m->from, m->vote_resp.pre ? "PRE" : "",
                 (unsigned long long)m->term,
                 m->vote_resp.granted ? "yes" : "no");
        break;
    case RAFT_MSG_APPEND:
        snprintf(buf, size, "<-%llu APP t%llu %llu/%llu +%zu c%llu r%llu",
                 (unsigned long long)m->from, (unsigned long long)m->term,
                 (unsigned long long)m->append.prev_index,
                 (unsigned long long)m->append.prev_term, m->append.n_entries,
                 (unsigned long long)m->append.commit,
                 (unsigned long long)m->append.read_round);
        break;
    case RAFT_MSG_APPEND_RESP:
        snprintf(buf, size, "<-%llu APP_RESP t%llu %s %llu r%llu",
                 (unsigned long long)m->from, (unsigned long long)m->term,
                 m->append_resp.success ? "ok" : "rej",
                 (unsigned long long)(m->append_resp.success
                                          ? m->append_resp.index
                                          : m->append_resp.rejected),
                 (unsigned long long)m->append_resp.read_round);
        break;
    case RAFT_MSG_SNAPSHOT:
        snprintf(buf, size, "<-%llu SNAP t%llu %llu @%llu%s",
                 (unsigned long long)m->from, (unsigned long long)m->term,
                 (unsigned long long)m->snapshot.meta.index,
                 (unsigned long long)m->snapshot.offset,
                 m->snapshot.last ? " last" : "");
        break;
    case RAFT_MSG_SNAPSHOT_RESP:
        snprintf(buf, size, "<-%llu SNAP_RESP t%llu %llu @%llu%s",
                 (unsigned long long)m->from, (unsigned long long)m->term,
                 (unsigned long long)m->snapshot_resp.index,
                 (unsigned long long)m->snapshot_resp.next_offset,
                 m->snapshot_resp.done ? " done" : "");
        break;
    case RAFT_MSG_TIMEOUT_NOW:
        snprintf(buf, size, "<-%llu TIMEOUT_NOW t%llu",
                 (unsigned long long)m->from, (unsigned long long)m->term);
        break;
    }
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
    size_t count = c->n_trace < n ? c->n_trace : n;
    if (count > SIM_TRACE_MAX) {
        count = SIM_TRACE_MAX;
    }
    fprintf(f, "--- last %zu of %llu trace lines ---\n%8s |", count,
            (unsigned long long)c->n_trace, "time ms");
    for (unsigned k = 1; k <= nodes; k++) {
        fprintf(f, "  n%-3u", k);
    }
    fprintf(f, " | event\n");
    for (size_t i = c->n_trace - count; i < c->n_trace; i++) {
        const struct sim_trace_line *l = &c->trace[i % SIM_TRACE_MAX];
        fprintf(f, "%8llu |", (unsigned long long)l->time);
        for (unsigned k = 0; k < nodes; k++) {
            char cell[16];
            if (l->role[k] == 0) {
                snprintf(cell, sizeof cell, "-");
            } else {
                snprintf(cell, sizeof cell, "%u%c", (unsigned)l->term[k],
                         role_letter(l->role[k]));
            }
            fprintf(f, " %5s%c", cell, l->node == k + 1 ? '*' : ' ');
        }
        char buf[128];
        const char *text = line_text(l, buf, sizeof buf);
        if (l->node == 0) {
            fprintf(f, " | == %s\n", text);
        } else {
            fprintf(f, " | n%u %s\n", l->node, text);
        }
    }
}
