#!/usr/bin/env python3
"""
System tests for the issue #7 commands of craftd on real processes:

  expiry    a key with a TTL disappears on its own (no other writes) on the
            leader within a bounded time, and from every replica's state
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from craftd_harness import (Cluster, Conn, RespError, poll,  # noqa: E402
                            run_tests)


def started(n=3, name="cmds", extra=None):
    c = Cluster(n=n, name=name, extra=extra)
    try:
        c.start()
        lid = c.leader()
    except BaseException:
        c.dump_logs()
        c.close()
        raise
    return c, lid


def run(c, body):
    try:
        body()
    except BaseException:
        c.dump_logs()
        raise
    finally:
        c.close()


def test_expiry():
    c, lid = started(name="cmds-expiry")

    def body():
        leader = Conn(c.node(lid).port)
        assert leader.call("SET", "keep", "x") == "OK"
        assert leader.call("SET", "k", "v", "PX", "200") == "OK"
        t0 = time.monotonic()
        first = leader.call("PTTL", "k")
        assert 0 < first <= 200, first
        # The TTL counts down with no write in between.
        poll("PTTL counting down",
             lambda: 0 < (leader.call("PTTL", "k") or 0) < first - 50
             or leader.call("GET", "k") is None, timeout=1.0)
        # Gone within a bounded time after 200 ms, with no other writes.
        poll("k expired on the leader",
             lambda: leader.call("GET", "k") is None, timeout=1.5)
        elapsed = time.monotonic() - t0
        assert elapsed < 1.5, elapsed
        assert leader.call("PTTL", "k") == -2
        assert leader.call("EXISTS", "k") == 0
        assert leader.call("DBSIZE") == 1
        # The clock entry removed it from every replica's state (INFO's key
        # count is the state machine's, expired keys included if any).
        for nd in c.nodes:
            poll("k deleted on node %d" % nd.id, lambda: nd.keys() == 1,
                 timeout=3.0)
        print("   expired after %.0f ms" % (elapsed * 1000))
        # No keys with a TTL: the leader proposes nothing, so the commit
        # index stays still.
        ci = int(c.node(lid).info()["raft_commit_index"])
        time.sleep(0.3)  # an observation window, not a synchronisation
        assert int(c.node(lid).info()["raft_commit_index"]) == ci
        leader.close()

    run(c, body)


TESTS = {
    "expiry": test_expiry,
}

if __name__ == "__main__":
    run_tests(TESTS)
