#!/usr/bin/env python3
"""
System tests for the issue #7 commands of craftd on real processes:

  expiry    a key with a TTL disappears on its own (no other writes) on the
            leader within a bounded time, and from every replica's state
  readonly  READONLY reads on followers: see the leader's writes eventually,
            -MOVED without READONLY, still answer with the leader killed
  watch     WATCH/MULTI/EXEC across two connections: the classic race
            gets a null array and changes nothing
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
        for nd in c.nodes:
            if nd.id != lid:
                f = Conn(nd.port)
                assert f.call("READONLY") == "OK"
                assert f.call("GET", "k") is None
                assert f.call("DBSIZE") == 1
                assert f.call("GET", "keep") == b"x"
                f.close()
        # No keys with a TTL: the leader proposes nothing, so the commit
        # index stays still.
        ci = int(c.node(lid).info()["raft_commit_index"])
        time.sleep(0.3)  # an observation window, not a synchronisation
        assert int(c.node(lid).info()["raft_commit_index"]) == ci
        leader.close()

    run(c, body)


def test_readonly():
    c, lid = started(name="cmds-readonly")

    def body():
        leader = Conn(c.node(lid).port)
        fid = [nd.id for nd in c.nodes if nd.id != lid][0]
        f = Conn(c.node(fid).port)
        # Without READONLY a follower sends reads to the leader.
        r = f.call("GET", "a")
        assert isinstance(r, RespError) and r.kind() == "MOVED", r
        assert f.call("READONLY") == "OK"
        assert leader.call("SET", "a", "1") == "OK"
        poll("the write seen on follower %d" % fid,
             lambda: f.call("GET", "a") == b"1", timeout=5.0)
        assert f.call("MGET", "a", "b") == [b"1", None]
        assert f.call("EXISTS", "a") == 1
        # Writes still go to the leader.
        r = f.call("SET", "a", "2")
        assert isinstance(r, RespError) and r.kind() == "MOVED", r
        r = f.call("READONLY", "x")
        assert isinstance(r, RespError), r
        # A counter written many times is never seen going backwards.
        seen = 0
        for i in range(1, 101):
            assert leader.call("INCR", "n") == i
            v = f.call("GET", "n")
            v = int(v) if v is not None else 0
            assert v >= seen, (v, seen)
            seen = v
        poll("n caught up", lambda: f.call("GET", "n") == b"100", timeout=5)
        # READWRITE goes back to redirects.
        assert f.call("READWRITE") == "OK"
        r = f.call("GET", "a")
        assert isinstance(r, RespError) and r.kind() == "MOVED", r
        assert f.call("READONLY") == "OK"
        # The leader dies: stale reads still answer on the follower.
        leader.close()
        c.node(lid).kill9()
        for _ in range(20):
            assert f.call("GET", "a") == b"1"
            assert f.call("GET", "n") == b"100"
        f.close()

    run(c, body)


def test_watch():
    c, lid = started(name="cmds-watch")

    def body():
        a = Conn(c.node(lid).port)
        b = Conn(c.node(lid).port)
        assert a.call("SET", "balance", "100") == "OK"
        # No interference: the transaction runs.
        assert a.call("WATCH", "balance") == "OK"
        v = int(a.call("GET", "balance"))
        assert a.call("MULTI") == "OK"
        assert a.call("SET", "balance", str(v - 10)) == "QUEUED"
        assert a.call("EXEC") == ["OK"]
        assert a.call("GET", "balance") == b"90"
        # The race: b changes the key between a's WATCH and EXEC.
        assert a.call("WATCH", "balance", "other") == "OK"
        v = int(a.call("GET", "balance"))
        assert b.call("INCRBY", "balance", "5") == 95
        assert a.call("MULTI") == "OK"
        assert a.call("SET", "balance", str(v - 10)) == "QUEUED"
        assert a.call("SET", "side", "effect") == "QUEUED"
        assert a.call("EXEC") is None  # the null array
        assert a.call("GET", "balance") == b"95"
        assert a.call("EXISTS", "side") == 0
        # EXEC unwatched: the next transaction runs.
        assert a.call("MULTI") == "OK"
        assert a.call("INCR", "balance") == "QUEUED"
        assert a.call("EXEC") == [96]
        # Setting an equal value is a change too (as in Redis).
        assert a.call("WATCH", "balance") == "OK"
        assert b.call("SET", "balance", "96") == "OK"
        assert a.call("MULTI") == "OK"
        assert a.call("INCR", "balance") == "QUEUED"
        assert a.call("EXEC") is None
        # UNWATCH and DISCARD forget the watched keys.
        assert a.call("WATCH", "balance") == "OK"
        assert a.call("UNWATCH") == "OK"
        assert b.call("INCR", "balance") == 97
        assert a.call("MULTI") == "OK"
        assert a.call("INCR", "balance") == "QUEUED"
        assert a.call("EXEC") == [98]
        assert a.call("WATCH", "balance") == "OK"
        assert a.call("MULTI") == "OK"
        r = a.call("WATCH", "x")
        assert isinstance(r, RespError) and \
            r.text == "ERR WATCH inside MULTI is not allowed", r
        assert a.call("DISCARD") == "OK"
        assert b.call("INCR", "balance") == 99
        assert a.call("MULTI") == "OK"
        assert a.call("INCR", "balance") == "QUEUED"
        assert a.call("EXEC") == [100]
        # Expiry of a watched key aborts.
        assert a.call("SET", "t", "1", "PX", "100") == "OK"
        assert a.call("WATCH", "t") == "OK"
        poll("t expired", lambda: b.call("EXISTS", "t") == 0, timeout=2.0)
        assert a.call("MULTI") == "OK"
        assert a.call("SET", "t", "2") == "QUEUED"
        assert a.call("EXEC") is None
        assert a.call("EXISTS", "t") == 0
        # Pipelined in one write: WATCH is answered before EXEC is parsed.
        a.send_raw(Conn.encode("WATCH", "balance") + Conn.encode("MULTI") +
                   Conn.encode("INCR", "balance") + Conn.encode("EXEC"))
        assert [a.read_reply() for _ in range(4)] == \
            ["OK", "OK", "QUEUED", [101]]
        r = a.call("WATCH")
        assert isinstance(r, RespError) and "wrong number" in r.text, r
        # On a follower WATCH goes to the leader, even after READONLY.
        fid = [nd.id for nd in c.nodes if nd.id != lid][0]
        f = Conn(c.node(fid).port)
        assert f.call("READONLY") == "OK"
        r = f.call("WATCH", "balance")
        assert isinstance(r, RespError) and r.kind() == "MOVED", r
        for x in (a, b, f):
            x.close()

    run(c, body)


TESTS = {
    "expiry": test_expiry,
    "readonly": test_readonly,
    "watch": test_watch,
}

if __name__ == "__main__":
    run_tests(TESTS)
