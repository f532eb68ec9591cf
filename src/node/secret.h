/*
 * Secrets read from files (--requirepass-file, --cluster-secret-file), so
 * that they need not appear on the command line, where `ps` shows them to
 * every user of the machine.
 */
#ifndef CRAFT_NODE_SECRET_H
#define CRAFT_NODE_SECRET_H

#include <stddef.h>

/*
 * Read the secret in the file at path into out (cap bytes; the secret may
 * be at most cap - 1 bytes and is NUL-terminated, but may hold any bytes
 * but NUL).  One trailing "\n" or "\r\n" is dropped, as editors add one.
 * The file must be a regular file that neither its group nor other users
 * can read or write (mode 0600 or 0400): a secret everyone can read is no
 * secret, so the node refuses to start rather than run unprotected.
 *
 * Returns 0 with *len set, or CRAFT_EINVAL with a one-line reason naming
 * `flag` and path in errmsg.  Never prints, never exits.
 */
int node_secret_read(const char *flag, const char *path, char *out, size_t cap,
                     size_t *len, char *errmsg, size_t errmsg_len);

#endif /* CRAFT_NODE_SECRET_H */
