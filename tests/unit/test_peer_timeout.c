/* Unit test for src/node/peer_timeout.h: the peer links' TCP_USER_TIMEOUT
 * follows the election timeout between its bounds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "node/peer_timeout.h"

static void follows_the_election_timeout(void **state)
{
    (void)state;
    /* Defaults (250-500 ms) keep the net layer's 2 s. */
    assert_int_equal(node_peer_user_timeout_ms(500), 2000);
    assert_int_equal(node_peer_user_timeout_ms(1), 2000);
    assert_int_equal(node_peer_user_timeout_ms(1000), 2000);
    /* --election-ms 1000-2000: a 2 s stall must not cut links. */
    assert_int_equal(node_peer_user_timeout_ms(2000), 4000);
    assert_int_equal(node_peer_user_timeout_ms(2999), 5998);
    /* Capped: a healed partition must reconnect within the nemesis
     * catch-up bound (8 s). */
    assert_int_equal(node_peer_user_timeout_ms(3000), 6000);
    assert_int_equal(node_peer_user_timeout_ms(60000), 6000);
    assert_int_equal(node_peer_user_timeout_ms(0xffffffffu), 6000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(follows_the_election_timeout),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
