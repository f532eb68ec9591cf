/*
 * Constant-time password comparison; see auth.h.
 */
#include "server/auth.h"

#include <string.h>

#include "util/assert.h"
#include "util/sha256.h"

bool srv_pass_equal(const char *pass, const uint8_t *given, size_t n)
{
    CRAFT_ASSERT(pass != NULL);
    CRAFT_ASSERT(given != NULL || n == 0);
    uint8_t want[SHA256_SIZE], got[SHA256_SIZE];
    struct sha256 s;
    sha256_init(&s);
    sha256_update(&s, pass, strlen(pass));
    sha256_final(&s, want);
    sha256_init(&s);
    sha256_update(&s, given, n);
    sha256_final(&s, got);
    return sha256_equal(want, got) != 0;
}
