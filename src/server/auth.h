/*
 * Password checks for AUTH and HELLO ... AUTH.
 */
#ifndef CRAFT_SERVER_AUTH_H
#define CRAFT_SERVER_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Whether given[0, n) equals the NUL-terminated pass, in time that depends
 * on neither where they differ nor the length of pass: both are hashed
 * with SHA-256 and the digests compared with a constant-time loop.  (A
 * memcmp that stops at the first difference lets a client find the
 * password byte by byte by timing its replies.)
 */
bool srv_pass_equal(const char *pass, const uint8_t *given, size_t n);

#endif /* CRAFT_SERVER_AUTH_H */
