/*
 * resp.h -- the Redis protocol (RESP2) codec: an incremental, bounded
 * request parser and the reply writers.  No I/O: the caller owns the bytes.
 *
 * Requests come in two forms, exactly as Redis accepts them:
 *
 *   multibulk  *<argc>\r\n then argc times $<len>\r\n<len bytes>\r\n
 *   inline     one line of space-separated words, with Redis's quoting
 *              rules ("double" quotes with \n \r \t \b \a \\ \" \xHH escapes,
 *              'single' quotes with only \' ), ended by \n or \r\n.
 *
 * Invariants:
 *   1. The parser never allocates in proportion to a length the peer merely
 *      claims.  Argument slots grow one bulk header at a time, and bulk data
 *      is never copied: argv points into the caller's buffer.
 *   2. Every limit has a name (RESP_BULK_MAX, RESP_ARGS_MAX, RESP_INLINE_MAX)
 *      and exceeding it is a protocol error with Redis's wording.
 *   3. After RESP_EPROTO the parser is spent: the connection should send the
 *      error text and close (Redis does the same).  Only that connection is
 *      affected.
 *   4. The parser keeps offsets, not pointers, between calls, so the caller
 *      may grow (realloc) its buffer while a command is incomplete; it must
 *      not drop or move bytes that were not yet reported as consumed.
 */
#ifndef CRAFT_SERVER_RESP_H
#define CRAFT_SERVER_RESP_H

#include <stddef.h>
#include <stdint.h>

#include "craft/common.h"
#include "util/buf.h"

/* Redis's proto-max-bulk-len default: 512 MiB. */
#define RESP_BULK_MAX (512u * 1024u * 1024u)
/* Redis refuses multibulk counts above 1024*1024 from unauthenticated
 * clients; one million arguments is also far above any real command. */
#define RESP_ARGS_MAX (1024u * 1024u)
/* Redis's PROTO_INLINE_MAX_SIZE: an inline request, a *<n> or a $<n> line
 * longer than this without a newline is an error. */
#define RESP_INLINE_MAX (64u * 1024u)

enum {
    RESP_OK = 0,        /* one command is complete */
    RESP_NEED_MORE = 1, /* the buffer holds only part of a command */
    RESP_EPROTO = -1    /* malformed input; see resp_parser.err */
};

struct resp_limits {
    size_t bulk_max;   /* largest argument, bytes */
    size_t args_max;   /* most arguments in one command */
    size_t inline_max; /* longest inline request or header line */
};

/* One parsed command.  argv[i] points into the caller's buffer (multibulk)
 * or into the parser's scratch space (inline); both stay valid until the
 * next resp_parse() or resp_parser_close().  The arguments are binary-safe;
 * they are not NUL-terminated. */
struct resp_cmd {
    size_t argc;
    const uint8_t **argv;
    const size_t *lens;
};

struct resp_parser {
    struct resp_limits limits;
    const struct craft_alloc *alloc;
    const char *err; /* static Redis-style error text after RESP_EPROTO */
    char err_buf[64];
    /* Progress on the current command, as offsets into the buffer. */
    int kind;             /* 0 between commands, '*' multibulk, 'i' inline */
    size_t pos;           /* next byte to look at */
    long long mb_left;    /* bulks still expected */
    long long bulk_len;   /* length of the bulk being read, or -1 */
    size_t argc;          /* arguments collected so far */
    size_t slots;         /* capacity of the three arrays below */
    size_t *offs;         /* argument offsets (multibulk) */
    size_t *lens;         /* argument lengths */
    const uint8_t **argv; /* filled on RESP_OK */
    uint8_t *scratch;     /* unescaped inline arguments */
    size_t scratch_cap;
};

/* Two-phase init: resp_parser_close() is safe afterwards whatever happens.
 * limits may be NULL for the RESP_*_MAX defaults; alloc may be NULL. */
void resp_parser_init(struct resp_parser *p, const struct resp_limits *limits,
                      const struct craft_alloc *alloc);
void resp_parser_close(struct resp_parser *p);

/*
 * Parse the next command from buf[0, len).  Bytes before the first call's
 * buf[0] that were reported consumed must have been dropped by the caller;
 * between calls on one incomplete command the caller may only append.
 *
 * RESP_OK: *cmd is filled and *consumed is the byte length of the command;
 *          the caller drops those bytes after it is done with argv.  An
 *          empty command (blank inline line, "*0", "*-1") is skipped
 *          silently, as Redis does, so argc is always >= 1.
 * RESP_NEED_MORE: nothing to do until more bytes arrive.  *consumed counts
 *          leading bytes of skipped empty commands that may be dropped
 *          (usually 0); progress on a partial command is kept.
 * RESP_EPROTO: p->err holds the error text ("ERR Protocol error: ...").
 * CRAFT_ENOMEM: out of memory growing the argument slots.
 */
int resp_parse(struct resp_parser *p, const uint8_t *buf, size_t len,
               struct resp_cmd *cmd, size_t *consumed);

/* Bytes the current incomplete bulk still needs (0 if unknown), so that a
 * server can reserve the exact room for a large argument, as Redis does. */
size_t resp_parser_pending(const struct resp_parser *p, size_t len);

/*
 * Reply writers.  Each appends one RESP2 value to b and returns 0 or
 * CRAFT_ENOMEM (b is unchanged on failure).  resp_write_error() writes
 * "-<msg>\r\n"; msg must not contain CR or LF and should start with an
 * error code such as "ERR ".  resp_write_array() writes only the header;
 * the caller then writes the n elements.
 */
int resp_write_simple(struct buf *b, const char *s);
int resp_write_error(struct buf *b, const char *msg);
int resp_write_errorf(struct buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
int resp_write_int(struct buf *b, long long v);
int resp_write_bulk(struct buf *b, const void *p, size_t n);
int resp_write_null(struct buf *b);
int resp_write_array(struct buf *b, size_t n);
int resp_write_null_array(struct buf *b);

/* Encode a command as a multibulk request (what a client sends). */
int resp_write_command(struct buf *b, size_t argc, const uint8_t *const *argv,
                       const size_t *lens);

/*
 * Validate one complete RESP2 reply value at the start of buf[0, len) and
 * return its length in *n.  Nesting is limited to RESP_DEPTH_MAX.  Returns
 * RESP_OK, RESP_NEED_MORE or RESP_EPROTO.  Used to check saved replies when
 * a snapshot is loaded, and by clients and tests to split reply streams.
 */
#define RESP_DEPTH_MAX 8
int resp_reply_len(const uint8_t *buf, size_t len, size_t *n);

/* Parse a strict decimal long long the way Redis's string2ll does: optional
 * '-', no '+', no leading zeros, no spaces, no overflow.  0 or -1. */
int resp_strtoll(const uint8_t *s, size_t n, long long *out);

#endif /* CRAFT_SERVER_RESP_H */
