/*
 * lincheck.h -- a linearizability checker for key-value histories.
 *
 * The search is Wing and Gong's, with Lowe's memoisation (as in Jepsen's
 * Knossos and Anish Athalye's porcupine): the history is split per key,
 * since a key-value store is linearizable iff every key is a linearizable
 * register; then a depth-first search tries to order each key's operations
 * so that every operation takes effect between its call and its return and
 * every output agrees with a sequential model.  A cache of (set of
 * operations linearized, model state) pairs already explored prunes the
 * search.
 *
 * Operations whose outcome is unknown (the client timed out, the
 * connection broke) have no return: they may take effect at any point
 * after their call, or never, and their output is not checked.  An unknown
 * read is dropped entirely, since it cannot change the state.  So is an
 * unknown append that no read could have seen: on a key without incr, a
 * non-empty append none of whose possible readers (known reads returning
 * after its call) contains its argument; check.c proves that this keeps
 * the verdict.  Left in, each such append may be placed at every later
 * point, which multiplies the states the search visits.
 *
 * The model: a key holds nil (absent) or a byte string.  get returns the
 * value (nil when absent); put sets it; append concatenates (absent counts
 * as empty); incr adds a decimal delta to an integer value (absent counts
 * as 0) and returns the new value; del makes the key absent.  Adding an
 * operation is one enum value and one case in lin_model_step().
 *
 * Text history format (craft-lincheck FILE), one operation per line:
 *
 *   <client> <call> <return> <op> <key> [<arg>] [-> <output>]
 *
 *   client   any token naming the client (only used in reports)
 *   call     call time, an unsigned integer (any unit, e.g. ns)
 *   return   return time >= call, or ? if the outcome is unknown
 *   op       get | put | append | incr | del
 *   arg      put/append: the value; incr: the delta; none for get/del
 *   output   get: the value read, or nil; incr: the new value
 *
 * Tokens are separated by blanks.  A token starting with " is a quoted
 * string with the escapes \\ \" \n \r \t \xHH; the bare token nil means
 * absent (write "nil" for the three-letter string).  # starts a comment
 * line.  For example:
 *
 *   c1 100 250 put x "hello world"
 *   c2 120 300 get x -> "hello world"
 *   c3 130 ? append x "!"
 *   c2 400 410 get y -> nil
 *   c4 500 520 incr n 5 -> 5
 */
#ifndef CRAFT_LINCHECK_H
#define CRAFT_LINCHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define LIN_TIME_UNKNOWN UINT64_MAX

/* Default search budget per key.  Each step is one attempt to linearize
 * or one backtrack; 10 million steps take a few seconds and bound the memo
 * cache to as many entries. */
#define LIN_STEPS_MAX 10000000u
/* Default memory budget of the search for one key: its interned states
 * (each distinct value stored once, whole), its memo cache and its work
 * arrays.  Keys are checked one after another, each freeing its memory, so
 * the process needs about the history plus this.  Past it the key's
 * verdict is unknown.  A memo entry costs (ops / 64 + 1) words, so 1 GiB
 * holds millions of entries for keys of a few hundred operations; what
 * usually runs out first is the states of a key with long values built by
 * many appends (each state is a whole value). */
#define LIN_MEMORY_BYTES_DEFAULT (1024ull * 1024u * 1024u)
/* Bytes of read outputs scanned per key when setting unseen unknown
 * appends aside (see above); past it the rest are kept, which is always
 * correct, only slower.  At memmem's speed, well under a second. */
#define LIN_PRUNE_SCAN_BYTES_MAX (1024ull * 1024u * 1024u)
/* Longest accepted history line. */
#define LIN_LINE_MAX (1u << 20)

enum lin_kind { LIN_GET, LIN_PUT, LIN_APPEND, LIN_INCR, LIN_DEL };

/* A value: nil, or bytes p[0, n).  Owned by the history. */
struct lin_value {
    bool nil;
    uint8_t *p;
    size_t n;
};

struct lin_op {
    char *client;
    enum lin_kind kind;
    struct lin_value key;
    struct lin_value arg; /* put/append value, incr delta */
    struct lin_value out; /* get/incr output; nil if none given */
    bool has_out;
    uint64_t call;
    uint64_t ret; /* LIN_TIME_UNKNOWN for an unknown outcome */
    size_t line;  /* line in the source file, or 0 */
};

struct lin_history {
    struct lin_op *ops;
    size_t n;
    size_t cap;
};

void lin_history_init(struct lin_history *h);
void lin_history_close(struct lin_history *h);

/* Append an operation, copying all its strings.  0 or -1 (out of memory,
 * or ret < call). */
int lin_history_add(struct lin_history *h, const struct lin_op *op);

/* Parse the text format above, appending to h.  0, or -1 with a message
 * "line N: ..." in err. */
int lin_history_parse(struct lin_history *h, const char *text, size_t len,
                      char *err, size_t err_len);

/* Write h in the text format (it parses back to the same history). */
void lin_history_print(FILE *f, const struct lin_history *h);

struct lin_options {
    uint64_t steps_max; /* per key; 0 for LIN_STEPS_MAX */
    uint64_t time_ms;   /* wall-clock budget for the whole check; 0 none */
    const struct lin_value *only_key; /* check only this key, or NULL */
    /* Per key, see LIN_MEMORY_BYTES_DEFAULT; 0 for that default. */
    uint64_t memory_bytes;
    /* Keep unknown appends nobody read (tests compare both ways). */
    bool keep_unseen;
};

enum lin_verdict { LIN_OK = 0, LIN_ILLEGAL = 1, LIN_UNKNOWN = 2 };

/* Which budget made a key's verdict unknown. */
enum lin_limit {
    LIN_LIMIT_NONE = 0,
    LIN_LIMIT_STEPS,  /* lin_options.steps_max */
    LIN_LIMIT_TIME,   /* lin_options.time_ms */
    LIN_LIMIT_MEMORY, /* lin_options.memory_bytes */
};

struct lin_result {
    enum lin_verdict verdict;
    size_t n_ops;        /* operations checked (unknown reads dropped) */
    size_t n_keys;       /* keys checked */
    size_t keys_unknown; /* keys whose search ran out of budget */
    uint64_t steps;      /* total search steps */
    size_t n_unseen;     /* unknown appends nobody read, set aside */
    /* For LIN_UNKNOWN, the first key that ran out: */
    size_t unknown_key_op;  /* index of an op on that key */
    enum lin_limit limit;   /* which budget ran out */
    uint64_t limit_value;   /* that budget: steps, ms or bytes */
    uint64_t unknown_steps; /* steps spent on that key */
    uint64_t unknown_bytes; /* search memory of that key when it stopped */
    /* For LIN_ILLEGAL, the first failing key and its smallest window: */
    size_t bad_key_op;      /* index of an op on the failing key */
    size_t prefix_len;      /* most ops of that key ever linearized at once */
    size_t key_ops;         /* ops of that key */
    size_t blocked;         /* op whose return came before it could be placed */
    struct lin_value state; /* model state after the longest prefix */
    size_t *window;         /* ops of the window, by call time */
    size_t n_window;
};

/* Check h.  Returns 0 and fills *r (release with lin_result_close()), or
 * -1 if out of memory. */
int lin_check(const struct lin_history *h, const struct lin_options *o,
              struct lin_result *r);
void lin_result_close(struct lin_result *r);

/* Print a human-readable verdict; for a failure, the window of operations
 * and the command that replays only the failing key of path. */
void lin_report(FILE *f, const struct lin_history *h,
                const struct lin_result *r, const char *path);

/* One step of the model: is op legal in state s, and the state after it.
 * *next is allocated with malloc (or NULL for nil/empty).  Exposed for
 * tests.  Returns 1 legal, 0 illegal, -1 out of memory. */
int lin_model_step(const struct lin_value *s, const struct lin_op *op,
                   struct lin_value *next);

#endif /* CRAFT_LINCHECK_H */
