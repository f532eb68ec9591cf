#!/usr/bin/env python3
"""
craftd system tests: real processes on 127.0.0.1 (see craftd_harness.py).

    craftd_test.py [test ...]      run the named tests (default: all)
    CRAFT_SEED=n                   replay the random choices of a run
"""
import os
import random
import shutil
import signal
import socket
import subprocess
import threading
import time

from craftd_harness import (Client, Cluster, Conn, RespError, build_dir,
                            craftd_path, poll, run_tests)


def run_craftd(args, timeout=10):
    p = subprocess.run([craftd_path()] + args, capture_output=True,
                       timeout=timeout)
    return p.returncode, (p.stdout + p.stderr).decode()


def test_cli_errors():
    rc, out = run_craftd(["--help"])
    assert rc == 0 and "--cluster" in out and "--requirepass" in out, out
    rc, out = run_craftd(["--id", "1"])
    assert rc == 2 and "missing --cluster" in out, (rc, out)
    rc, out = run_craftd(["--id", "9", "--cluster", "1=127.0.0.1:7001",
                          "--data-dir", "/tmp/x"])
    assert rc == 2 and "not a member" in out, (rc, out)
    rc, out = run_craftd(["--frobnicate"])
    assert rc == 2 and "unknown option" in out, (rc, out)

    c = Cluster(1, name="cli")
    try:
        nd = c.node(1)
        # An unwritable data dir.
        rc, out = run_craftd(["--id", "1", "--cluster", c.spec,
                              "--data-dir", "/proc/craftd-test/dir",
                              "--raft-port-offset", str(c.offset)])
        assert rc == 1 and "cannot create data dir" in out, (rc, out)
        # A first start that cannot listen (an address not on this host)
        # leaves the data dir unclaimed, so the corrected command line
        # below (nd.start) works.
        rc, out = run_craftd(["--id", "1", "--cluster",
                              "1=10.99.99.99:%d" % nd.port, "--data-dir",
                              nd.dir, "--raft-port-offset", str(c.offset)])
        assert rc == 1, (rc, out)
        assert not os.path.exists(os.path.join(nd.dir, "IDENTITY")), out
        # The client port in use.
        s = socket.socket()
        s.bind(("127.0.0.1", nd.port))
        s.listen(1)
        rc, out = run_craftd(nd.args()[1:])
        s.close()
        assert rc == 1 and "address already in use" in out, (rc, out)
        # The Raft port in use.
        s = socket.socket()
        s.bind(("127.0.0.1", nd.port + c.offset))
        s.listen(1)
        rc, out = run_craftd(nd.args()[1:])
        s.close()
        assert rc == 1 and "address already in use" in out, (rc, out)
        # First start records the identity; another id or member list is
        # refused.
        nd.start()
        assert nd.stop() == 0
        other = "%s,2=127.0.0.1:%d" % (c.spec, nd.port + 1)
        rc, out = run_craftd(["--id", "1", "--cluster", other, "--data-dir",
                              nd.dir, "--raft-port-offset", str(c.offset)])
        assert rc == 1 and "belongs to cluster" in out, (rc, out)
        rc, out = run_craftd(["--id", "2", "--cluster", other, "--data-dir",
                              nd.dir, "--raft-port-offset", str(c.offset)])
        assert rc == 1 and "belongs to node 1" in out, (rc, out)
        # A data dir whose log is gone is refused, not started empty.
        shutil.copytree(nd.dir, nd.dir + ".bak")
        shutil.rmtree(os.path.join(nd.dir, "raft"))
        rc, out = run_craftd(nd.args()[1:])
        assert rc == 1 and "no raft/ log" in out, (rc, out)
        shutil.rmtree(nd.dir)
        os.rename(nd.dir + ".bak", nd.dir)
        # Two processes on one data dir.
        nd.start()
        rc, out = run_craftd(nd.args()[1:])
        assert rc == 1 and "in use by another craftd" in out, (rc, out)
        assert nd.stop() == 0
    finally:
        c.close()


def test_single_node():
    c = Cluster(1, name="single")
    try:
        c.start()
        assert c.leader() == 1
        k = Conn(c.node(1).port)
        assert k.call("PING") == "PONG"
        assert k.call("SET", "a", "1") == "OK"
        assert k.call("INCR", "a") == 2
        assert k.call("GET", "a") == b"2"
        assert k.call("GET", "missing") is None
        k.close()
        assert c.node(1).stop() == 0
        c.node(1).start()
        c.leader()
        k = Conn(c.node(1).port)
        assert poll("a after restart",
                    lambda: k.call("GET", "a") == b"2", 10)
        k.close()
    except BaseException:
        c.dump_logs()
        raise
    finally:
        c.close()


def test_basic_three():
    c = Cluster(3, name="basic")
    try:
        c.start()
        lid = c.leader()
        leader = c.node(lid)
        follower = next(nd for nd in c.nodes if nd.id != lid)
        k = Conn(leader.port)
        assert k.call("PING") == "PONG"
        assert k.call("SET", "x", "hello") == "OK"
        assert k.call("APPEND", "x", " world") == 11
        assert k.call("GET", "x") == b"hello world"
        # INFO: Redis's keyspace line; the leader's view of each peer.
        info = leader.info()
        assert info["db0"].startswith("keys=1,expires=0,"), info
        text = k.call("INFO").decode()
        assert text.index("# Raft") < text.index("raft_peer_") < \
            text.index("# Keyspace"), text
        for nd in c.nodes:
            if nd.id != lid:
                peer = dict(f.split("=", 1) for f in
                            info["raft_peer_%d" % nd.id].split(","))
                assert peer["connected"] == "1", peer
                assert 0 <= int(peer["last_contact_ms"]) < 1000, peer
        assert "last_contact_ms" not in follower.info().get(
            "raft_peer_%d" % lid, ""), follower.info()
        f = Conn(follower.port)
        r = f.call("SET", "y", "1")
        assert isinstance(r, RespError) and \
            r.text == "MOVED 12222 127.0.0.1:%d" % leader.port, r  # "y"
        r = f.call("GET", "x")
        assert isinstance(r, RespError) and r.kind() == "MOVED", r
        assert f.call("PING") == "PONG"
        # redis-cli -c follows the redirect.
        out = subprocess.run(["redis-cli", "-c", "-p", str(follower.port),
                              "SET", "z", "via-cli"], capture_output=True,
                             timeout=10).stdout.decode()
        assert "OK" in out, out
        assert k.call("GET", "z") == b"via-cli"
        # Large values replicate; one beyond what a log entry may carry is
        # refused with a clear error, and the connection goes on.
        big = os.urandom(1 << 20).hex().encode()  # 2 MiB
        assert k.call("SET", "big", big) == "OK"
        assert k.call("GET", "big") == big
        r = k.call("SET", "huge", b"x" * (9 << 20))
        assert isinstance(r, RespError) and "too large" in r.text, r
        assert k.call("EXISTS", "huge") == 0
        # An argument far beyond that is refused from its header, before
        # the server buffers any of it, and only that connection closes.
        h = Conn(leader.port)
        h.send_raw(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$209715200\r\n")
        r = h.read_reply()
        assert isinstance(r, RespError) and "invalid bulk length" in r.text, r
        h.close()
        # A transaction is one log entry: its replies come as one array.
        assert k.call("MULTI") == "OK"
        assert k.call("SET", "t", "1") == "QUEUED"
        assert k.call("INCRBY", "t", "41") == "QUEUED"
        assert k.call("GET", "t") == "QUEUED"
        assert k.call("EXEC") == ["OK", 42, b"42"]
        # Pipelined commands are answered in order.
        k.send_raw(b"".join(Conn.encode("INCR", "p") for _ in range(100)))
        assert [k.read_reply() for _ in range(100)] == list(range(1, 101))
        # ... and take effect in order: a read sees the same connection's
        # earlier writes and not its later ones.
        k.send_raw(b"".join(Conn.encode(*a) for a in [
            ("SET", "fresh1", "hello"), ("GET", "fresh1"), ("INCR", "fc"),
            ("GET", "fc"), ("EXISTS", "fresh1"), ("MULTI",),
            ("SET", "fresh2", "a"), ("EXEC",), ("GET", "fresh2"),
            ("DEL", "fresh2"), ("GET", "fresh2")]))
        assert [k.read_reply() for _ in range(11)] == [
            "OK", b"hello", 1, b"1", 1, "OK", "QUEUED", ["OK"], b"a", 1,
            None]
        k.send_raw(b"".join(Conn.encode("SET", "ord", "v%d" % i) +
                            Conn.encode("GET", "ord") for i in range(300)))
        for i in range(300):
            assert k.read_reply() == "OK"
            assert k.read_reply() == b"v%d" % i
        k.close()
        f.close()
        # A leader stopped with SIGTERM hands leadership over first.
        assert leader.stop() == 0
        with open(leader.log) as lf:
            assert "leadership handed over" in lf.read(), leader.tail()
        assert c.leader() != lid
        leader.start()
        # Clean stops, a restart of all, the data is still there.
        for nd in c.nodes:
            assert nd.stop() == 0, nd.tail()
        c.start()
        c.leader()
        cl = Client(c)
        assert cl.call("GET", "x") == b"hello world"
        assert cl.call("GET", "p") == b"100"
        assert cl.call("GET", "big") == big
        cl.close()
    except BaseException:
        c.dump_logs()
        raise
    finally:
        c.close()


class Writer(threading.Thread):
    """SETs unique keys; records what was acknowledged."""

    def __init__(self, cluster, tag):
        super().__init__(daemon=True)
        self.client = Client(cluster, timeout=30.0)
        self.tag = tag
        self.acked = {}
        self.stop = False
        self.error = None

    def run(self):
        i = 0
        try:
            while not self.stop:
                key, val = "k-%s-%d" % (self.tag, i), "v%d" % i
                r = self.client.call("SET", key, val)
                if r == "OK":
                    self.acked[key] = val
                i += 1
        except BaseException as e:
            self.error = e
        finally:
            self.client.close()


class SessionCounter(threading.Thread):
    """INCRs a counter through a CRAFT session, retrying every unknown
    outcome with the same sequence number: exactly-once means the counter
    ends equal to the number of increments."""

    def __init__(self, cluster, key):
        super().__init__(daemon=True)
        self.client = Client(cluster, timeout=30.0)
        self.key = key
        self.done = 0
        self.stop = False
        self.error = None

    def run(self):
        try:
            sid = None
            while sid is None:
                r = self.client.call("CRAFT.SESSION")
                if isinstance(r, int):
                    sid = r
            seq = 1
            while not self.stop:
                r = self.client.call("CRAFT.EXEC", sid, seq, "INCR", self.key)
                if isinstance(r, int):
                    assert r == seq, "counter %d at seq %d" % (r, seq)
                    self.done = seq
                    seq += 1
                elif isinstance(r, RespError) and r.kind() != "UNCERTAIN":
                    raise AssertionError("unexpected %r" % r)
                # Otherwise (UNCERTAIN, connection lost): retry same seq.
        except BaseException as e:
            self.error = e
        finally:
            self.client.close()


def check_acked(c, writers, counter):
    cl = Client(c, timeout=30.0)
    n = 0
    items = [kv for w in writers for kv in w.acked.items()]
    for i in range(0, len(items), 500):
        batch = items[i:i + 500]
        r = cl.call("MGET", *[k for k, _ in batch])
        assert isinstance(r, list), r
        for (k, v), got in zip(batch, r):
            assert got == v.encode(), "acknowledged %s=%s lost: got %r" % (
                k, v, got)
            n += 1
    got = cl.call("GET", counter.key)
    assert got == str(counter.done).encode() or (
        counter.done == 0 and got is None), \
        "session counter %r, expected %d" % (got, counter.done)
    cl.close()
    return n


def test_crash_restart():
    # A small snapshot threshold, so that snapshots (and restarts from
    # them) happen during the test, with the sessions inside.
    c = Cluster(3, extra=["--snapshot-bytes", "64k"], name="crash")
    try:
        c.start()
        c.leader()
        writers = [Writer(c, t) for t in range(4)]
        counter = SessionCounter(c, "ctr")
        for w in writers + [counter]:
            w.start()
        rounds = int(os.environ.get("CRAFT_CRASH_ROUNDS", "8"))
        for rnd in range(rounds):
            # Let the workload run, then kill the leader or a follower.
            time.sleep(random.uniform(0.3, 0.8))
            lid = c.leader()
            victim = lid if rnd % 2 == 0 else random.choice(
                [nd.id for nd in c.nodes if nd.id != lid])
            print("   round %d: %s node %d (%s)" % (
                rnd, "SIGTERM" if rnd % 3 == 2 else "kill -9", victim,
                "leader" if victim == lid else "follower"), flush=True)
            if rnd % 3 == 2:
                # A clean stop under load: in-flight writes finish or fail
                # clearly, and the process exits 0.
                rc = c.node(victim).stop()
                assert rc == 0, "SIGTERM exit code %d" % rc
            else:
                c.node(victim).kill9()
            time.sleep(random.uniform(0.0, 0.5))
            c.node(victim).start()
        for w in writers + [counter]:
            w.stop = True
        for w in writers + [counter]:
            w.join(60)
            assert w.error is None, w.error
        n = check_acked(c, writers, counter)
        print("   %d acknowledged writes and %d session increments "
              "verified" % (n, counter.done))
        assert n > 50 and counter.done > 10, (n, counter.done)
        # All down hard, all up: still there.
        for nd in c.nodes:
            nd.kill9()
        c.start()
        c.leader()
        check_acked(c, writers, counter)
    except BaseException:
        c.dump_logs()
        raise
    finally:
        c.close()


def test_snapshot_catchup():
    c = Cluster(3, extra=["--snapshot-bytes", "32k"], name="snap")
    try:
        c.start()
        lid = c.leader()
        lag = next(nd for nd in c.nodes if nd.id != lid)
        lag.stop()
        cl = Client(c)
        # Far more than the trailing entries kept after a snapshot, so the
        # lagging node can only catch up by installing one.
        n = 6000
        conn = Conn(c.node(lid).port)
        for base in range(0, n, 500):
            conn.send_raw(b"".join(Conn.encode("SET", "s%d" % i, "v" * 20)
                                   for i in range(base, base + 500)))
            for _ in range(500):
                assert conn.read_reply() == "OK"
        conn.close()
        lag.start()
        expect = n

        def caught_up():
            return lag.keys() == expect and \
                int(lag.info().get("raft_snapshot_index", "0")) > 0
        poll("node %d to catch up by snapshot" % lag.id, caught_up, 30)
        # Restart everything: each node loads its snapshot and log.
        for nd in c.nodes:
            rc = nd.stop()
            assert rc == 0, "node %d exit %d:\n%s" % (nd.id, rc, nd.tail())
        c.start()
        c.leader()
        for nd in c.nodes:
            poll("node %d keys" % nd.id,
                 lambda: nd.keys() == expect, 15)
        assert cl.call("GET", "s5999") == b"v" * 20
        cl.close()
    except BaseException:
        c.dump_logs()
        raise
    finally:
        c.close()


def test_minority_leader():
    """A leader cut off from the majority (its followers frozen with
    SIGSTOP) answers no write and no read: check-quorum makes it step down,
    it fails the write it proposed with UNCERTAIN and answers the read with
    CLUSTERDOWN or MOVED; nothing is acknowledged."""
    c = Cluster(3, name="minority")
    frozen = []
    try:
        c.start()
        lid = c.leader()
        k = Conn(c.node(lid).port, timeout=10)
        assert k.call("SET", "m", "before") == "OK"
        for nd in c.nodes:
            if nd.id != lid:
                nd.proc.send_signal(signal.SIGSTOP)
                frozen.append(nd)
        t0 = time.monotonic()
        r = k.call("SET", "m", "during")
        took = time.monotonic() - t0
        assert isinstance(r, RespError) and r.kind() in (
            "UNCERTAIN", "CLUSTERDOWN", "MOVED"), r
        # Failed at once on stepping down, within about an election timeout.
        assert took < 5, took
        r = k.call("GET", "m")
        assert isinstance(r, RespError) and r.kind() in (
            "CLUSTERDOWN", "MOVED"), r
        for nd in frozen:
            nd.proc.send_signal(signal.SIGCONT)
        frozen = []
        cl = Client(c)
        # The write may or may not have been applied (it was proposed), but
        # the cluster goes on and the earlier write is there or replaced.
        assert cl.call("GET", "m") in (b"before", b"during")
        assert cl.call("SET", "m", "after") == "OK"
        assert cl.call("GET", "m") == b"after"
        cl.close()
        k.close()
    except BaseException:
        c.dump_logs()
        raise
    finally:
        for nd in frozen:
            nd.proc.send_signal(signal.SIGCONT)
        c.close()


def test_five_nodes():
    """Five members tolerate two failures, not three; garbage on the Raft
    port costs only that connection."""
    c = Cluster(5, name="five")
    try:
        c.start()
        lid = c.leader()
        # Garbage and a stranger on a follower's Raft port.
        victim = next(nd for nd in c.nodes if nd.id != lid)
        g = socket.create_connection(("127.0.0.1", victim.port + c.offset),
                                     timeout=5)
        g.sendall(b"GET / HTTP/1.0\r\n\r\n" + os.urandom(64))
        assert poll("the garbage connection to close",
                    lambda: g.recv(4096) == b"", 10)
        g.close()
        cl = Client(c)
        assert cl.call("SET", "five", "1") == "OK"
        down = [nd for nd in c.nodes if nd.id != lid][:2]
        for nd in down:
            nd.kill9()
        assert cl.call("INCR", "five") == 2
        third = next(nd for nd in c.nodes if nd.alive() and nd.id != lid)
        third.kill9()
        k = Conn(c.node(lid).port, timeout=10)
        r = k.call("INCR", "five")
        assert isinstance(r, RespError), r
        k.close()
        for nd in down + [third]:
            nd.start()
        assert cl.call("GET", "five") in (b"2", b"3")
        cl.close()
        with open(victim.log) as f:
            assert "not a craft frame" in f.read(), victim.tail()
    except BaseException:
        c.dump_logs()
        raise
    finally:
        c.close()


def iptables_usable():
    if os.geteuid() != 0 or shutil.which("iptables") is None:
        return False
    return subprocess.run(["iptables", "-L", "INPUT", "-n"],
                          capture_output=True).returncode == 0


def test_partition():
    """Members on 127.0.0.11-13, a firewall cuts the leader off: it answers
    no write and no read, the majority elects a leader and goes on, and
    after healing the old leader catches up.  The rules match only this
    cluster's ports, so parallel tests are not affected.  Skipped without
    root and iptables."""
    if not iptables_usable():
        print("   iptables not usable (needs root); skipped")
        return
    hosts = ("127.0.0.11", "127.0.0.12", "127.0.0.13")
    c = Cluster(3, name="partition", hosts=hosts)
    rules = []

    def cut(a, others):
        ports = "%d,%d" % (c.nodes[0].port, c.nodes[0].port + c.offset)
        for src, dst in ((a, others), (others, a)):
            rule = ["INPUT", "-s", src, "-d", dst, "-p", "tcp", "-m",
                    "multiport", "--ports", ports, "-j", "DROP"]
            subprocess.run(["iptables", "-I"] + rule, check=True)
            rules.append(rule)

    def heal():
        while rules:
            subprocess.run(["iptables", "-D"] + rules.pop(), check=True)
    try:
        c.start()
        lid = c.leader()
        old = c.node(lid)
        rest = [nd for nd in c.nodes if nd.id != lid]
        k = Conn(old.port, host=old.host, timeout=10)
        assert k.call("SET", "p", "before") == "OK"
        cut(old.host, ",".join(nd.host for nd in rest))
        # Proposed before the leader can know it is cut off: when
        # check-quorum steps it down, the outcome is unknown, and it says
        # so at once.
        r = k.call("SET", "p", "cut-off")
        assert isinstance(r, RespError) and r.kind() == "UNCERTAIN", r
        r = k.call("GET", "p")
        assert isinstance(r, RespError), r
        # The majority side elects a leader and takes writes.
        ms = [Conn(nd.port, host=nd.host, timeout=10) for nd in rest]
        assert poll("a write on the majority side",
                    lambda: any(m.call("SET", "p", "majority") == "OK"
                                for m in ms), 15)
        # The old leader still answers nothing.
        r = k.call("GET", "p")
        assert isinstance(r, RespError), r
        heal()
        cl = Client(c)
        assert cl.call("GET", "p") == b"majority"
        assert poll("the old leader to catch up",
                    lambda: old.info().get("raft_applied_index") ==
                    rest[0].info().get("raft_applied_index"), 15)
        k.close()
        for m in ms:
            m.close()
        cl.close()
    except BaseException:
        c.dump_logs()
        raise
    finally:
        heal()
        c.close()


def test_linearizable():
    """Concurrent clients on a few keys while leaders are killed and
    restarted; the history (unknown outcomes included) must be
    linearizable, as checked by craft-lincheck."""
    lincheck = os.path.join(build_dir(), "bin", "craft-lincheck")
    if not os.path.exists(lincheck):
        print("   craft-lincheck not built; skipped")
        return
    c = Cluster(3, extra=["--snapshot-bytes", "16k"], name="lin")
    history = []
    lock = threading.Lock()
    stop = threading.Event()
    errors = []

    def record(cid, t0, t1, op, key, arg=None, out=None, known=True):
        line = "c%d %d %s %s %s" % (cid, t0, t1 if known else "?", op, key)
        if arg is not None:
            line += " %s" % arg
        if known and out is not None:
            line += " -> %s" % out
        with lock:
            history.append(line)

    def worker(cid, seed):
        rnd = random.Random(seed)
        cl = Client(c, timeout=30.0)
        i = 0
        try:
            while not stop.is_set():
                i += 1
                kind = rnd.choice(["get", "get", "put", "append", "incr"])
                key = ("n%d" if kind == "incr" else "k%d") % rnd.randrange(2)
                val = "c%di%d" % (cid, i)
                args = {"get": ("GET", key), "put": ("SET", key, val),
                        "append": ("APPEND", key, val),
                        "incr": ("INCRBY", key, 1)}[kind]
                t0 = time.monotonic_ns()
                r = cl.call(*args)
                t1 = time.monotonic_ns()
                unknown = isinstance(r, Exception) and not isinstance(
                    r, RespError) or (isinstance(r, RespError) and
                                      r.kind() == "UNCERTAIN")
                if isinstance(r, RespError) and not unknown:
                    raise AssertionError("%r -> %r" % (args, r))
                if kind == "get":
                    if not unknown:
                        record(cid, t0, t1, "get", key, out='nil' if r is None
                               else '"%s"' % r.decode())
                elif kind == "incr":
                    record(cid, t0, t1, "incr", key, arg=1,
                           out=None if unknown else r, known=not unknown)
                else:
                    record(cid, t0, t1, kind, key, arg='"%s"' % val,
                           known=not unknown)
        except BaseException as e:
            errors.append(e)
        finally:
            cl.close()

    try:
        c.start()
        c.leader()
        base = random.randrange(1 << 30)
        threads = [threading.Thread(target=worker, args=(i, base + i),
                                    daemon=True) for i in range(5)]
        for t in threads:
            t.start()
        for _ in range(3):
            time.sleep(random.uniform(0.5, 1.0))
            lid = c.leader()
            c.node(lid).kill9()
            time.sleep(random.uniform(0.1, 0.4))
            c.node(lid).start()
        time.sleep(0.5)
        stop.set()
        for t in threads:
            t.join(60)
        assert not errors, errors
        path = os.path.join(c.tmp, "history.txt")
        with open(path, "w") as f:
            f.write("\n".join(history) + "\n")
        p = subprocess.run([lincheck, path], capture_output=True, timeout=120)
        out = (p.stdout + p.stderr).decode()
        print("   %d operations; craft-lincheck: %s" % (
            len(history), out.strip().splitlines()[-1] if out.strip()
            else p.returncode))
        assert p.returncode == 0, out
    except BaseException:
        c.dump_logs()
        raise
    finally:
        stop.set()
        c.close()


def test_redis_tools():
    if shutil.which("redis-benchmark") is None:
        print("   redis-benchmark not installed; skipped")
        return
    c = Cluster(3, name="tools")
    try:
        c.start()
        lid = c.leader()
        port = str(c.node(lid).port)
        p = subprocess.run(["redis-benchmark", "-p", port, "-t", "set,get",
                            "-n", "2000", "-c", "10", "-q"],
                           capture_output=True, timeout=60)
        out = p.stdout.decode()
        assert p.returncode == 0 and "SET:" in out and "GET:" in out, \
            out + p.stderr.decode()
        p = subprocess.run(["redis-cli", "-p", port, "DBSIZE"],
                           capture_output=True, timeout=10)
        assert p.stdout.strip() == b"1", p.stdout
        # Pipelined, as bench/kv runs it.
        p = subprocess.run(["redis-benchmark", "-p", port, "-t", "set,get",
                            "-n", "20000", "-c", "20", "-P", "16", "-r",
                            "1000", "-q"], capture_output=True, timeout=60)
        out = p.stdout.decode()
        assert p.returncode == 0 and "SET:" in out and "GET:" in out, \
            out + p.stderr.decode()
        # redis-cli -c on a follower follows MOVED to the leader.
        fport = str(next(nd.port for nd in c.nodes if nd.id != lid))
        for args, want in ((["SET", "cli", "v"], b"OK"),
                           (["GET", "cli"], b"v")):
            p = subprocess.run(["redis-cli", "-c", "-p", fport] + args,
                               capture_output=True, timeout=10)
            assert p.stdout.strip() == want, p.stdout + p.stderr
    except BaseException:
        c.dump_logs()
        raise
    finally:
        c.close()


TESTS = {
    "cli_errors": test_cli_errors,
    "single_node": test_single_node,
    "basic_three": test_basic_three,
    "crash_restart": test_crash_restart,
    "snapshot_catchup": test_snapshot_catchup,
    "minority_leader": test_minority_leader,
    "five_nodes": test_five_nodes,
    "partition": test_partition,
    "linearizable": test_linearizable,
    "redis_tools": test_redis_tools,
}

if __name__ == "__main__":
    run_tests(TESTS)
