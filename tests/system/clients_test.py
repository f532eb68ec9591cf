"""
Real Redis clients against a 3-node craftd cluster on 127.0.0.1, each
writing and reading through a leader change caused by kill -9
(tests/system/clients.cmake registers one ctest per test):

  cluster_replies  the CLUSTER replies on every node, before and after a
                   failover and with no leader; MOVED carries the key's slot
  redis_cli        redis-cli -c pointed at followers
  redis_benchmark  redis-benchmark, plain and --cluster
  hiredis          tests/system/hiredis_client.c (built against hiredis)
  python_plain     redis-py's redis.Redis, following the leader by hand
  python_cluster   redis-py's redis.cluster.RedisCluster
  ioredis          ioredis's Cluster client (npm)

Every client test: the client starts on a follower, the leader is killed
with -9 once a third of the writes are acknowledged, the client goes on
(retrying what failed), and at the end every acknowledged write is read
back with its value from the surviving nodes.  A client that is not
installed makes its test exit 77 (skipped), or fail under CI=true.
"""
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from craftd_harness import (Client, Cluster, Conn, RespError,  # noqa: E402
                            build_dir, poll, run_tests)

HERE = os.path.dirname(os.path.abspath(__file__))
SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's, with python3-redis
N_WRITES = 150
KILL_AT = N_WRITES // 3
CLIENT_TIMEOUT = 45.0  # seconds for a whole client run


class Skip(Exception):
    pass


def require(ok, what):
    """Skip (or, under CI=true, fail) when a client is not installed."""
    if ok:
        return
    if os.environ.get("CI") == "true":
        raise AssertionError("%s is missing (CI=true: failing instead of "
                             "skipping; run scripts/install-deps)" % what)
    raise Skip("%s is missing; run scripts/install-deps" % what)


def keyslot(key):
    """Redis Cluster's slot: CRC16/XMODEM of the key or its {hash tag}."""
    if isinstance(key, str):
        key = key.encode()
    s = key.find(b"{")
    if s >= 0:
        e = key.find(b"}", s + 1)
        if e > s + 1:
            key = key[s + 1:e]
    crc = 0
    for b in key:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xffff
    return crc % 16384


def call1(nd, *args):
    """One command on a fresh connection to nd."""
    k = Conn(nd.port, host=nd.host)
    try:
        return k.call(*args)
    finally:
        k.close()


def addr(nd):
    return "%s:%d" % (nd.host, nd.port)


def followers_first(c, lid):
    order = [nd for nd in c.nodes if nd.id != lid] + [c.node(lid)]
    return ",".join(addr(nd) for nd in order)


def value_of(prefix, i):
    return ("%s-value-%d" % (prefix, i)).encode()


def verify(c, prefix, acked):
    """Every acknowledged write is readable, with its value, from the
    surviving nodes (a fresh connection that follows MOVED)."""
    k = Client(c)
    try:
        for i in sorted(acked):
            got = k.call("GET", "%s:%d" % (prefix, i))
            assert got == value_of(prefix, i), (i, got)
    finally:
        k.close()


def kill_leader_when(c, lid, cond, stop):
    """A thread that kill -9s node lid once cond() holds, unless the event
    stop is set first; returns a dict whose "killed_at" is set to
    time.monotonic() once the node is dead."""
    state = {"killed_at": None}

    def run():
        while not stop.is_set():
            if cond():
                c.node(lid).kill9()
                state["killed_at"] = time.monotonic()
                return
            time.sleep(0.002)

    threading.Thread(target=run, daemon=True).start()
    return state


def run_client(name, argv, env=None):
    """Start a client program on a fresh cluster, kill -9 the leader once it
    acknowledged KILL_AT writes, wait for it to finish, and check that it
    did all N_WRITES and that every one of them reads back."""
    c = Cluster(3, name=name)
    proc = None
    try:
        c.start()
        lid = c.leader()
        prefix = "%s%d" % (name, os.getpid())
        cmd = argv(followers_first(c, lid), N_WRITES, prefix)
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=env)
        lines = queue.Queue()

        def reader():
            for raw in proc.stdout:
                lines.put(raw.decode(errors="replace").rstrip("\n"))
            lines.put(None)

        threading.Thread(target=reader, daemon=True).start()
        acked, extra = {}, []
        kill_ns = None
        deadline = time.monotonic() + CLIENT_TIMEOUT
        while True:
            left = deadline - time.monotonic()
            assert left > 0, "client still running after %.0fs" % \
                CLIENT_TIMEOUT
            try:
                line = lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                break
            m = re.fullmatch(r"ok (\d+) (\d+)", line)
            if m:
                acked[int(m.group(1))] = int(m.group(2))
                if len(acked) >= KILL_AT and kill_ns is None:
                    c.node(lid).kill9()  # returns once it is dead
                    kill_ns = time.monotonic_ns()
            else:
                extra.append(line)
        rc = proc.wait(10)
        err = proc.stderr.read().decode(errors="replace")
        assert rc == 0, "client exited %d:\n%s" % (rc, err)
        assert kill_ns is not None, "the client finished before the kill"
        assert set(acked) == set(range(N_WRITES)), sorted(
            set(range(N_WRITES)) - set(acked))[:10]
        assert "done %d" % N_WRITES in extra, extra
        # The kill landed mid-run: many writes were acknowledged after it
        # (the clients stamp each acknowledgement with CLOCK_MONOTONIC, the
        # clock of time.monotonic_ns()).
        after_kill = sum(t > kill_ns for t in acked.values())
        assert after_kill >= N_WRITES // 3, after_kill
        verify(c, prefix, acked)
        new = c.leader()
        assert new != lid
        # What the failover cost this client: the longest pause between two
        # acknowledgements (from the kill to the first write after it).
        stamps = sorted(acked.values())
        gap_ms = max(b - a for a, b in zip(stamps, stamps[1:])) / 1e6
        print("   %s; %d writes acknowledged after the kill of leader %d, "
              "new leader %d; longest pause %.0f ms" %
              ("; ".join(l for l in extra if l.startswith("stats")),
               after_kill, lid, new, gap_ms))
    except BaseException:
        c.dump_logs()
        raise
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(5)
        c.close()


# ---- CLUSTER replies ----------------------------------------------------

def cluster_view(nd):
    """CLUSTER MYID, NODES (parsed), SLOTS, SHARDS and INFO of one node."""
    k = Conn(nd.port)
    try:
        myid = k.call("CLUSTER", "MYID")
        nodes = k.call("CLUSTER", "NODES")
        slots = k.call("CLUSTER", "SLOTS")
        shards = k.call("CLUSTER", "SHARDS")
        info = k.call("CLUSTER", "INFO")
    finally:
        k.close()
    return myid, nodes, slots, shards, info


def parse_nodes(text):
    assert isinstance(text, bytes) and text.endswith(b"\n"), text
    out = {}
    for line in text.decode().split("\n")[:-1]:
        f = line.split(" ")
        assert len(f) >= 8, line
        out[f[0]] = {"addr": f[1], "flags": f[2].split(","), "master": f[3],
                     "epoch": int(f[6]), "link": f[7], "slots": f[8:]}
    return out


def check_topology(c, lid, alive, dead=()):
    """Every live node's CLUSTER replies say: lid leads and owns 0-16383,
    the other live members are its replicas, the dead are failed."""
    ids = {}
    for nd in alive:
        myid = call1(nd, "CLUSTER", "MYID")
        assert re.fullmatch(rb"[0-9a-f]{40}", myid), myid
        ids[nd.id] = myid.decode()
    for nd in alive:
        myid, nodes, slots, shards, info = cluster_view(nd)
        assert myid.decode() == ids[nd.id]
        term = int(nd.info()["raft_term"])
        nodes = parse_nodes(nodes)
        assert len(nodes) == len(c.nodes), nodes
        lead = nodes[ids[lid]]
        assert "master" in lead["flags"] and lead["master"] == "-", lead
        assert lead["slots"] == ["0-16383"], lead
        assert lead["addr"] == "%s:%d@%d" % (c.node(lid).host,
                                             c.node(lid).port,
                                             c.node(lid).port + c.offset)
        for other in alive:
            e = nodes[ids[other.id]]
            assert ("myself" in e["flags"]) == (other.id == nd.id), e
            assert e["link"] == "connected" and "fail?" not in e["flags"], e
            assert e["epoch"] == term, (e, term)
            if other.id != lid:
                assert "slave" in e["flags"] and e["master"] == ids[lid], e
                assert e["slots"] == [], e
        for d in dead:
            e = [v for v in nodes.values()
                 if v["addr"].startswith("%s:%d@" % (d.host, d.port))][0]
            assert "fail?" in e["flags"] and e["link"] == "disconnected", e
        # SLOTS: one range, the leader first, then its live replicas.
        assert len(slots) == 1 and slots[0][:2] == [0, 16383], slots
        assert slots[0][2] == [c.node(lid).host.encode(), c.node(lid).port,
                               ids[lid].encode()], slots
        replicas = sorted(r[1] for r in slots[0][3:])
        assert replicas == sorted(o.port for o in alive if o.id != lid), \
            slots
        # SHARDS: one shard with every member, roles and health.
        assert len(shards) == 1, shards
        shard = dict(zip(shards[0][::2], shards[0][1::2]))
        assert shard[b"slots"] == [0, 16383], shard
        members = [dict(zip(m[::2], m[1::2])) for m in shard[b"nodes"]]
        assert len(members) == len(c.nodes)
        for m in members:
            lead_m = m[b"id"].decode() == ids[lid]
            assert m[b"role"] == (b"master" if lead_m else b"replica"), m
            live = any(m[b"port"] == o.port for o in alive)
            assert m[b"health"] == (b"online" if live else b"failed"), m
        text = info.decode()
        assert "cluster_state:ok\r\n" in text, text
        assert "cluster_slots_assigned:16384\r\n" in text, text
        assert "cluster_known_nodes:%d\r\n" % len(c.nodes) in text, text
        assert "cluster_size:1\r\n" in text, text
        assert "cluster_current_epoch:%d\r\n" % term in text, text
    return ids


def test_cluster_replies():
    c = Cluster(3, name="clusterreplies")
    try:
        c.start()
        lid = c.leader()
        # Poll: the followers learn the leader (and connect to each other)
        # within a heartbeat or two.
        poll("every node reporting the topology",
             lambda: _quiet(lambda: check_topology(c, lid, c.nodes)))
        ids = check_topology(c, lid, c.nodes)
        assert len(set(ids.values())) == 3
        f = next(nd for nd in c.nodes if nd.id != lid)
        k = Conn(f.port)
        assert k.call("CONFIG", "GET", "cluster-enabled") == \
            [b"cluster-enabled", b"yes"]
        assert "cluster_enabled" in f.info()
        assert f.info()["cluster_enabled"] == "1"
        # MOVED from a follower names the key's slot, as CLUSTER KEYSLOT
        # and Redis compute it, and the leader.
        for key in ["foo", "{user1000}.following", "{user1000}.followers",
                    "y", "k\x00bin", "a{}b", "x" * 300]:
            want = keyslot(key)
            assert k.call("CLUSTER", "KEYSLOT", key) == want, key
            for cmd in (("SET", key, "v"), ("GET", key), ("DEL", key)):
                r = k.call(*cmd)
                assert isinstance(r, RespError) and r.text == \
                    "MOVED %d 127.0.0.1:%d" % (want, c.node(lid).port), \
                    (cmd, r)
        assert keyslot("foo") == 12182
        assert keyslot("{user1000}.following") == \
            keyslot("{user1000}.followers")
        k.close()
        # After kill -9 of the leader the survivors agree on a new one and
        # report the dead member as failed.
        dead = c.node(lid)
        dead.kill9()
        alive = [nd for nd in c.nodes if nd.id != lid]
        new = c.leader()
        assert new != lid
        poll("the survivors reporting the new topology",
             lambda: _quiet(lambda: check_topology(c, new, alive, [dead])))
        ids2 = check_topology(c, new, alive, [dead])
        assert all(ids2[i] == ids[i] for i in ids2)  # stable ids
        # A leader cut off from the majority (its follower stopped) steps
        # down and then refuses the topology at once: it never names
        # itself, so that clients ask another node.
        other = next(nd for nd in alive if nd.id != new)
        other.proc.send_signal(signal.SIGSTOP)
        try:
            poll("CLUSTERDOWN on the cut-off leader",
                 lambda: refuses_topology(c.node(new)), timeout=20)
        finally:
            other.proc.send_signal(signal.SIGCONT)
        # Together again, the two elect a leader and both report it.
        lid3 = c.leader()
        poll("the pair reporting their leader",
             lambda: _quiet(lambda: check_topology(c, lid3, alive, [dead])))
        # With one member of three left, the survivor names the dead leader
        # while an election could still settle, and then, as a node on a
        # minority side, refuses the topology.
        c.node(lid3).kill9()
        last = next(nd for nd in alive if nd.id != lid3)
        poll("CLUSTERDOWN on the last node", lambda: refuses_topology(last),
             timeout=20)
        assert call1(last, "CLUSTER", "MYID") == ids[last.id].encode()
        r = call1(last, "CLUSTER", "NOPE")
        assert isinstance(r, RespError) and \
            r.text == "ERR unknown subcommand 'NOPE'. Try CLUSTER HELP.", r
        # A node that has never known a leader has no topology to give.
        lone = Cluster(3, name="clusterlone")
        try:
            lone.node(1).start()
            for sub in ("SLOTS", "SHARDS", "NODES"):
                r = call1(lone.node(1), "CLUSTER", sub)
                assert isinstance(r, RespError) and \
                    r.kind() == "CLUSTERDOWN", (sub, r)
            assert b"cluster_state:fail\r\n" in \
                call1(lone.node(1), "CLUSTER", "INFO")
        finally:
            lone.close()
    except BaseException:
        c.dump_logs()
        raise
    finally:
        c.close()


def refuses_topology(nd):
    """nd answers CLUSTER SLOTS, SHARDS and NODES with CLUSTERDOWN and
    CLUSTER INFO with cluster_state:fail."""
    r = [call1(nd, "CLUSTER", s) for s in ("SLOTS", "SHARDS", "NODES")]
    return all(isinstance(x, RespError) and x.kind() == "CLUSTERDOWN"
               for x in r) and \
        b"cluster_state:fail\r\n" in call1(nd, "CLUSTER", "INFO")


def _quiet(fn):
    """fn() is True, or False when one of its assertions failed (for
    poll)."""
    try:
        fn()
        return True
    except AssertionError:
        return False


# ---- redis-cli ----------------------------------------------------------

def cli(nd, *args):
    p = subprocess.run(["redis-cli", "-c", "-h", nd.host, "-p",
                        str(nd.port)] + list(args), capture_output=True,
                       timeout=10)
    return p.stdout.strip()


def cluster_check(nd, n_keys):
    """redis-cli --cluster check, Redis's own consistency checker, run on
    nd: one master with all the slots and n_keys keys, every live node
    agreeing (a dead member only gets a "Could not connect" on stderr)."""
    p = subprocess.run(["redis-cli", "--cluster", "check",
                        "%s:%d" % (nd.host, nd.port)], capture_output=True,
                       timeout=20)
    out = re.sub(rb"\x1b\[[0-9;]*m", b"", p.stdout).decode()
    assert p.returncode == 0, out + p.stderr.decode()
    for want in ("-> %d keys | 16384 slots" % n_keys,
                 "[OK] %d keys in 1 masters." % n_keys,
                 "[OK] All nodes agree about slots configuration.",
                 "[OK] All 16384 slots covered."):
        assert want in out, (want, out)


def test_redis_cli():
    require(shutil.which("redis-cli"), "redis-cli (redis-tools)")
    c = Cluster(3, name="rediscli")
    stop = threading.Event()
    try:
        c.start()
        lid = c.leader()
        # Always enter through the two original followers: before the kill
        # every command is redirected with MOVED; after it one of them leads
        # and the other redirects to it.
        entries = [nd for nd in c.nodes if nd.id != lid]
        # Without -c redis-cli shows the redirect: the key's slot, the
        # leader.
        p = subprocess.run(["redis-cli", "-p", str(entries[0].port), "SET",
                            "foo", "x"], capture_output=True, timeout=10)
        assert p.stdout.strip() == b"MOVED 12182 127.0.0.1:%d" % \
            c.node(lid).port, p.stdout
        cluster_check(entries[0], 0)
        acked = set()
        state = kill_leader_when(c, lid, lambda: len(acked) >= KILL_AT,
                                 stop)
        prefix = "cli%d" % os.getpid()
        done_at = []
        deadline = time.monotonic() + CLIENT_TIMEOUT
        for i in range(N_WRITES):
            key, val = "%s:%d" % (prefix, i), value_of(prefix, i)
            for op in (("SET", key, val.decode()), ("GET", key)):
                want = b"OK" if op[0] == "SET" else val
                n = 0
                while cli(entries[(i + n) % 2], *op) != want:
                    n += 1
                    assert time.monotonic() < deadline, (op, n)
                    time.sleep(0.02)
            acked.add(i)
            done_at.append(time.monotonic())
        stop.set()
        assert state["killed_at"] is not None
        after_kill = sum(t > state["killed_at"] for t in done_at)
        assert after_kill >= N_WRITES // 3, after_kill
        verify(c, prefix, acked)
        # And read back through redis-cli -c from both survivors.
        for nd in entries:
            assert cli(nd, "GET", "%s:0" % prefix) == value_of(prefix, 0)
        # redis-cli's own cluster checker accepts the new topology.
        cluster_check(entries[0], N_WRITES)
        ver = subprocess.run(["redis-cli", "--version"], capture_output=True)
        print("   %s; %d writes after the kill" %
              (ver.stdout.decode().strip(), after_kill))
    except BaseException:
        c.dump_logs()
        raise
    finally:
        stop.set()
        c.close()


# ---- redis-benchmark ----------------------------------------------------

def bench(nd, *args, timeout=30):
    return subprocess.run(["redis-benchmark", "-h", nd.host, "-p",
                           str(nd.port)] + list(args), capture_output=True,
                          timeout=timeout)


def keys_with(c, pattern):
    k = Client(c)
    try:
        r = k.call("KEYS", pattern)
        assert isinstance(r, list), r
        return {key: k.call("GET", key) for key in r}
    finally:
        k.close()


def test_redis_benchmark():
    require(shutil.which("redis-benchmark"), "redis-benchmark (redis-tools)")
    c = Cluster(3, name="redisbench")
    bg = None
    try:
        c.start()
        lid = c.leader()
        leader = c.node(lid)
        # 1. A complete run: exit 0 (redis-benchmark 7 exits at the first
        # error reply), every key written.
        p = bench(leader, "-n", "3000", "-c", "10", "-r", "500", "-q",
                  "SET", "b1:__rand_int__", "one")
        out = p.stdout.decode() + p.stderr.decode()
        assert p.returncode == 0 and "requests per second" in out, out
        before = keys_with(c, "b1:*")
        assert len(before) > 400 and set(before.values()) == {b"one"}, \
            len(before)
        # 2. kill -9 of the leader under a running benchmark.
        # redis-benchmark does not reconnect: it stops with an error when
        # its server dies (it must stop, not hang).
        bg = subprocess.Popen(["redis-benchmark", "-h", leader.host, "-p",
                               str(leader.port), "-n", "10000000", "-c", "10",
                               "-r", "500", "-q", "SET", "b2:__rand_int__",
                               "two"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
        poll("writes of the running benchmark",
             lambda: len(call1(leader, "KEYS", "b2:*")) > 50)
        leader.kill9()
        rc = bg.wait(20)
        assert rc != 0, "redis-benchmark went on after its server died"
        bg = None
        # 3. The same benchmark against the new leader, found with CLUSTER
        # SLOTS on a survivor, completes cleanly.
        survivor = next(nd for nd in c.nodes if nd.id != lid)

        def new_leader_port():
            r = call1(survivor, "CLUSTER", "SLOTS")
            return not isinstance(r, RespError) and \
                r[0][2][1] != leader.port and r[0][2][1]
        port = poll("CLUSTER SLOTS naming a new leader", new_leader_port)
        new = next(nd for nd in c.nodes if nd.port == port)
        p = bench(new, "-n", "3000", "-c", "10", "-r", "500", "-q",
                  "SET", "b3:__rand_int__", "three")
        out = p.stdout.decode() + p.stderr.decode()
        assert p.returncode == 0 and "requests per second" in out, out
        after = keys_with(c, "b3:*")
        assert len(after) > 400 and set(after.values()) == {b"three"}
        # Everything acknowledged before the kill is still there.
        assert keys_with(c, "b1:*") == before
        assert set(keys_with(c, "b2:*").values()) == {b"two"}
        # 4. --cluster, from a follower: redis-benchmark reads CLUSTER NODES
        # and finds the leader as the only master with slots 0-16383, then
        # refuses, as it refuses a real one-master Redis cluster
        # (redis-benchmark.c: cluster_node_count <= 1).  Anything else --
        # a parse failure, a master without slots -- would print another
        # message.
        follower = next(nd for nd in c.nodes if nd.alive() and nd is not new)
        p = bench(follower, "--cluster", "-n", "1000", "-t", "set", "-q")
        out = p.stdout.decode() + p.stderr.decode()
        assert out.strip() == "Invalid cluster: 1 node(s).", out
        ver = subprocess.run(["redis-benchmark", "--version"],
                             capture_output=True).stdout.decode().strip()
        print("   %s: plain runs before and after the kill passed; "
              "--cluster parses craftd's CLUSTER NODES and refuses a "
              "one-master cluster" % ver)
    except BaseException:
        c.dump_logs()
        raise
    finally:
        if bg is not None:
            bg.kill()
            bg.wait(5)
        c.close()


# ---- client libraries ---------------------------------------------------

def test_hiredis():
    exe = os.path.join(build_dir(), "tests", "hiredis_client")
    require(os.path.exists(exe), "tests/hiredis_client (libhiredis-dev)")
    run_client("hiredis", lambda addrs, n, prefix: [exe, addrs, str(n),
                                                    prefix])


def redispy_available():
    if not os.path.exists(SYSTEM_PYTHON):
        return False
    p = subprocess.run([SYSTEM_PYTHON, "-c", "import redis.cluster"],
                       capture_output=True)
    return p.returncode == 0


def test_python_plain():
    require(redispy_available(), "python3-redis for %s" % SYSTEM_PYTHON)
    script = os.path.join(HERE, "clients_redispy.py")
    run_client("pyplain", lambda addrs, n, prefix: [
        SYSTEM_PYTHON, script, "plain", addrs, str(n), prefix])


def test_python_cluster():
    require(redispy_available(), "python3-redis for %s" % SYSTEM_PYTHON)
    script = os.path.join(HERE, "clients_redispy.py")
    run_client("pycluster", lambda addrs, n, prefix: [
        SYSTEM_PYTHON, script, "cluster", addrs, str(n), prefix])


def npm_dir():
    return os.environ.get("CRAFT_NPM_DIR") or "/var/cache/craft-npm"


def test_ioredis():
    node = shutil.which("node")
    require(node, "node (nodejs)")
    pkg = os.path.join(npm_dir(), "node_modules", "ioredis", "package.json")
    require(os.path.exists(pkg), "ioredis in %s (CRAFT_NPM_DIR)" % npm_dir())
    script = os.path.join(HERE, "ioredis_client.js")
    env = dict(os.environ, CRAFT_NPM_DIR=npm_dir())
    run_client("ioredis", lambda addrs, n, prefix: [
        node, script, addrs, str(n), prefix], env=env)


TESTS = {
    "cluster_replies": test_cluster_replies,
    "redis_cli": test_redis_cli,
    "redis_benchmark": test_redis_benchmark,
    "hiredis": test_hiredis,
    "python_plain": test_python_plain,
    "python_cluster": test_python_cluster,
    "ioredis": test_ioredis,
}

if __name__ == "__main__":
    try:
        run_tests(TESTS)
    except Skip as e:
        print("   skipped: %s" % e)
        sys.exit(77)
