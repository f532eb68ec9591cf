#!/usr/bin/env python3
"""
libcraftclient and craft-cli system tests: real craftd processes on
127.0.0.1 (tests/system/craftd_harness.py).

    client_test.py [test ...]      run the named tests (default: all)
    CRAFT_SEED=n                   replay the random choices of a run
"""
import json
import os
import random
import subprocess
import time

from craftd_harness import Client, Cluster, RespError, build_dir, poll, \
    run_tests


def tool(name):
    for d in ("bin", "tests"):
        p = os.path.join(build_dir(), d, name)
        if os.path.exists(p):
            return p
    raise AssertionError("%s is not built" % name)


def addrs(c, with_ids=False, nodes=None):
    nodes = nodes or c.nodes
    if with_ids:
        return ",".join("%d=%s:%d" % (n.id, n.host, n.port) for n in nodes)
    return ",".join("%s:%d" % (n.host, n.port) for n in nodes)


def cli(*args, timeout=60):
    p = subprocess.run([tool("craft-cli")] + [str(a) for a in args],
                       capture_output=True, timeout=timeout)
    return p.returncode, p.stdout.decode(errors="replace"), \
        p.stderr.decode(errors="replace")


def tokens_exactly_once(value, n):
    """value is "0,1,2,...,n-1," -- every append once, in order."""
    toks = value.decode().split(",")
    assert toks[-1] == "", value[-40:]
    toks = [int(t) for t in toks[:-1]]
    dup = sorted({t for t in toks if toks.count(t) > 1})
    assert not dup, "appended more than once: %r" % dup[:10]
    assert toks == list(range(n)), "missing or reordered: %r ... (%d of %d)" \
        % (toks[:10], len(toks), n)


def read_key(c, key):
    cl = Client(c)
    try:
        v = cl.call("GET", key)
    finally:
        cl.close()
    assert not isinstance(v, (RespError, Exception)), v
    return v


def test_example():
    """The documented example program runs against a real cluster."""
    c = Cluster(3, name="client-ex")
    try:
        c.start()
        c.leader()
        p = subprocess.run([tool("craft-client-example"), addrs(c)],
                           capture_output=True, timeout=60)
        out = p.stdout.decode()
        assert p.returncode == 0, (p.returncode, out, p.stderr.decode())
        assert "GET -> hello, world" in out, out
        assert "async GET -> 3" in out, out
        rc = subprocess.run([tool("craft-client-example")],
                            capture_output=True).returncode
        assert rc == 2
    finally:
        c.close()


def test_redirect():
    """Given only a follower's address, the client learns the leader from
    MOVED and stays with it."""
    c = Cluster(3, name="client-moved")
    try:
        c.start()
        lead = c.leader()
        follower = next(n for n in c.nodes if n.id != lead)
        p = subprocess.run([tool("client_driver"),
                            "%s:%d" % (follower.host, follower.port),
                            "k", "20"], capture_output=True, timeout=60)
        out = p.stdout.decode()
        assert p.returncode == 0, (out, p.stderr.decode())
        stats = dict(kv.split("=") for kv in out.splitlines()[-1].split()[1:])
        # One redirect to find the leader; nothing later moved it.
        assert int(stats["redirects"]) == 1, out
        assert int(stats["sends"]) == 20 + 1 + 1, out  # + SESSION + MOVED
        tokens_exactly_once(read_key(c, "k"), 20)
    finally:
        c.close()


def failover(async_mode):
    """kill -9 the leader (twice) under a stream of session appends: every
    append is acknowledged and appears exactly once, in order."""
    c = Cluster(3, name="client-failover")
    n = 400
    try:
        c.start()
        c.leader()
        args = [tool("client_driver")] + (["--async"] if async_mode else []) \
            + [addrs(c), "log", str(n)]
        drv = subprocess.Popen(args, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
        try:
            killed = []
            acked = 0
            for kill_at in (random.randint(40, 120), random.randint(200, 280)):
                while acked < kill_at:
                    line = drv.stdout.readline()
                    assert line, "driver stopped: %s" % drv.stderr.read()
                    acked = int(line.split()[1]) + 1
                lead = c.leader()
                c.node(lead).kill9()
                killed.append(lead)
                print("   killed leader %d after %d acks" % (lead, acked))
                # Restart it at once: the next kill must leave a majority.
                c.node(lead).start(wait=False)
            out, err = drv.communicate(timeout=90)
        finally:
            if drv.poll() is None:
                drv.kill()
                drv.wait()
        out = out.decode()
        assert drv.returncode == 0, (drv.returncode, out[-500:],
                                     err.decode())
        print("   " + out.splitlines()[-1])
        tokens_exactly_once(read_key(c, "log"), n)
    except BaseException:
        c.dump_logs()
        raise
    finally:
        c.close()


def test_failover_sync():
    failover(False)


def test_failover_async():
    failover(True)


def test_no_quorum():
    """Without a majority a write times out with a clear error (exit 74) and
    is not applied twice once the cluster is back."""
    c = Cluster(3, name="client-noq")
    try:
        c.start()
        lead = c.leader()
        others = [n for n in c.nodes if n.id != lead]
        for n in others:
            n.kill9()
        t0 = time.monotonic()
        rc, out, err = cli("append", "-c", addrs(c), "-t", "1500", "k", "x")
        took = time.monotonic() - t0
        assert rc == 74, (rc, out, err)
        # "may have run" only if the append reached the leader before it
        # stepped down (check-quorum); either way it timed out.
        assert "timed out" in err and "no answer" in err, err
        assert took < 10, took
        for n in others:
            n.start(wait=False)
        for n in others:
            n.wait_ready()
        c.leader()
        rc, out, err = cli("append", "-c", addrs(c), "k", "y")
        assert rc == 0, (rc, out, err)
        # The timed-out append may or may not have run, but only once.
        v = read_key(c, "k")
        assert v in (b"y", b"xy"), v
    finally:
        c.close()


def test_cli():
    c = Cluster(3, name="client-cli")
    try:
        c.start()
        lead = c.leader()
        spec = addrs(c, with_ids=True)
        assert cli("set", "-c", spec, "greeting", "hi")[:2] == (0, "OK\n")
        assert cli("append", "-c", spec, "greeting", " there")[:2] == \
            (0, "8\n")
        assert cli("get", "-c", spec, "greeting")[:2] == (0, "hi there\n")
        rc, out, _ = cli("get", "-c", spec, "--json", "greeting")
        assert rc == 0 and json.loads(out) == {"command": "get",
                                               "value": "hi there"}, out
        assert cli("get", "-c", spec, "missing")[:2] == (1, "")
        assert cli("set", "-c", spec, "greeting", "x", "NX")[0] == 1
        rc, out, err = cli("set", "-c", spec, "--", "greeting", "x", "EX",
                           "-1")
        assert rc == 2 and "invalid expire time" in err, (rc, out, err)
        assert cli("del", "-c", spec, "greeting", "nope")[:2] == (0, "1\n")
        # Binary-safe values come back escaped in JSON.
        assert cli("set", "-c", spec, "bin", "a\"b\\\x01\xff")[0] == 0
        rc, out, _ = cli("get", "-c", spec, "--json", "bin")
        assert json.loads(out)["value"] == "a\"b\\\x01\xff", out

        rc, out, err = cli("status", "-c", spec)
        assert rc == 0, (rc, out, err)
        lines = out.splitlines()
        assert lines[0].split()[:3] == ["ID", "ADDRESS", "ROLE"], out
        rows = {int(l.split()[0]): l.split() for l in lines[1:]}
        assert sorted(rows) == [1, 2, 3], out
        assert rows[lead][2] == "leader" and rows[lead][8] == "self", out
        rc, out, err = cli("status", "-c", spec, "--json")
        st = json.loads(out)
        assert rc == 0 and st["leader"] == lead, out
        assert [m["role"] == "leader" for m in st["members"]].count(True) == 1
        assert all(m["lag"] is not None for m in st["members"]), out

        victim = next(n for n in c.nodes if n.id != lead)
        victim.kill9()
        rc, out, err = cli("status", "-c", spec)
        assert rc == 1, (rc, out, err)
        row = next(l for l in out.splitlines() if l.startswith(str(victim.id)))
        assert "unreachable" in row and "down:" in row, out
        # Writes still work with a member down.
        assert cli("set", "-c", spec, "k", "v")[0] == 0

        # Bad input: clear errors, never a crash.
        for args, msg in ((["get"], "wrong number of arguments"),
                          (["get", "-c", "nonsense", "k"], "bad address"),
                          (["get", "-c", "1=h:0", "k"], "bad address"),
                          (["get", "-t", "0", "k"], "--timeout-ms"),
                          (["set", "--frob", "k", "v"], "unknown option"),
                          (["status", "extra"], "unexpected argument")):
            rc, out, err = cli(*args)
            assert rc == 64 and msg in err, (args, rc, err)
        for cmd in ("status", "get", "set", "del", "append"):
            rc, out, _ = cli(cmd, "--help")
            assert rc == 0 and out.startswith("usage: craft-cli " + cmd), out
        rc, out, _ = cli("--help")
        assert rc == 0 and "status" in out and "append" in out, out
        rc, _, err = cli("get", "-c", "127.0.0.1:1", "-t", "300", "k")
        assert rc == 74 and "refused" in err, err
    finally:
        c.close()


def test_snapshot():
    """snapshot save from a stopped cluster's data dir, restore into three
    new data dirs for a new cluster, which then serves the same data."""
    c = Cluster(3, name="client-snap", extra=["--snapshot-bytes", "16k"])
    c2 = None
    try:
        c.start()
        lead = c.leader()
        cl = Client(c)
        for i in range(300):
            assert cl.call("SET", "key%d" % i, "value%d" % i) == "OK"
        cl.close()
        poll("a snapshot on the leader",
             lambda: int(c.node(lead).info()["raft_snapshot_index"]) > 0)
        # Keys written after the snapshot live only in the log.
        cl = Client(c)
        assert cl.call("SET", "late", "after-snapshot") == "OK"
        cl.close()
        for nd in c.nodes:
            assert nd.stop() == 0
        src = c.node(lead).dir
        f1 = os.path.join(c.tmp, "snap-only.craftsnap")
        f2 = os.path.join(c.tmp, "with-log.craftsnap")
        # The files hold every key and value: 0600 even with umask 0 and a
        # world-readable leftover FILE.tmp.
        with open(f2 + ".tmp", "wb"):
            pass
        os.chmod(f2 + ".tmp", 0o666)
        old_umask = os.umask(0)
        try:
            rc, out, err = cli("snapshot", "save", src, f1)
            assert rc == 0 and "saved index" in out, (rc, out, err)
            idx1 = int(out.split()[2])
            rc, out, err = cli("snapshot", "save", src, f2, "--include-log")
            assert rc == 0 and "saved index" in out, (rc, out, err)
            idx2 = int(out.split()[2])
        finally:
            os.umask(old_umask)
        for f in (f1, f2):
            mode = os.stat(f).st_mode & 0o777
            assert mode == 0o600, "%s has mode %o" % (f, mode)
        assert not os.path.exists(f2 + ".tmp")
        # The log holds at least the "late" write beyond the snapshot.
        assert 0 < idx1 < idx2, (idx1, idx2)

        c2 = Cluster(3, name="client-restored")
        for nd in c2.nodes:
            rc, out, err = cli("snapshot", "restore", f2, "--data-dir", nd.dir,
                               "--id", nd.id, "--cluster", c2.spec,
                               "--raft-port-offset", c2.offset)
            assert rc == 0 and "restored index" in out, (rc, out, err)
        c2.start()
        c2.leader()
        cl = Client(c2)
        for i in range(0, 300, 7):
            assert cl.call("GET", "key%d" % i) == b"value%d" % i
        assert cl.call("GET", "late") == b"after-snapshot"
        assert cl.call("DBSIZE") == 301
        assert cl.call("SET", "new", "1") == "OK"
        cl.close()

        # Refusals, each with its message and exit status.
        nd = c2.node(1)
        rc, out, err = cli("snapshot", "restore", f1, "--data-dir", nd.dir,
                           "--id", 1, "--cluster", c2.spec,
                           "--raft-port-offset", c2.offset)
        assert rc == 74 and "not empty" in err, (rc, err)
        bad = os.path.join(c.tmp, "bad.craftsnap")
        data = bytearray(open(f1, "rb").read())
        data[len(data) // 2] ^= 0x40
        open(bad, "wb").write(bytes(data))
        rc, out, err = cli("snapshot", "restore", bad, "--data-dir",
                           os.path.join(c.tmp, "x"), "--id", 1,
                           "--cluster", c2.spec, "--raft-port-offset",
                           c2.offset)
        assert rc == 2 and "checksum" in err, (rc, err)
        open(bad, "wb").write(b"hello")
        rc, out, err = cli("snapshot", "restore", bad, "--data-dir",
                           os.path.join(c.tmp, "x"), "--id", 1,
                           "--cluster", c2.spec, "--raft-port-offset",
                           c2.offset)
        assert rc == 2 and "header" in err, (rc, err)
        rc, out, err = cli("snapshot", "restore", f1, "--data-dir",
                           os.path.join(c.tmp, "x"), "--id", 9,
                           "--cluster", c2.spec, "--raft-port-offset",
                           c2.offset)
        assert rc == 64 and "not a member" in err, (rc, err)
        rc, out, err = cli("snapshot", "save", os.path.join(c.tmp, "nope"),
                           bad)
        assert rc == 74 and "no raft/ log" in err, (rc, err)
        for args in (["save", "--help"], ["restore", "--help"], ["--help"]):
            rc, out, _ = cli("snapshot", *args)
            assert rc == 0 and "usage" in out, (args, out)
        rc, _, err = cli("snapshot", "save", src)
        assert rc == 64, err
    finally:
        c.close()
        if c2 is not None:
            c2.close()


TESTS = {
    "example": test_example,
    "redirect": test_redirect,
    "failover_sync": test_failover_sync,
    "failover_async": test_failover_async,
    "no_quorum": test_no_quorum,
    "cli": test_cli,
    "snapshot": test_snapshot,
}

if __name__ == "__main__":
    run_tests(TESTS)
