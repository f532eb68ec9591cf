#!/usr/bin/env python3
"""
Nemesis tests: faults on real craftd processes (issue #7, docs/nemesis.md).

A cluster of 3 or 5 craftd processes on 127.0.0.11.. (one loopback address
per member, so that firewall rules on addresses can cut them apart), a
concurrent workload that records its history, and a nemesis that kills
(SIGKILL) and restarts members, freezes them (SIGSTOP/SIGCONT) and splits
the network with iptables.  At the end the run checks:

  1. every history is linearizable (build/bin/craft-lincheck), timeouts and
     -UNCERTAIN replies being operations of unknown outcome;
  2. no acknowledged write is lost and none is applied twice: every token
     appended (plain APPEND, or exactly-once through CRAFT.EXEC) appears
     exactly once if acknowledged, at most once if the outcome is unknown,
     never if the command was refused before it was proposed;
  3. a minority never answers: no write sent to a member cut off from the
     majority gets +OK and no read there gets a value, while the fault
     lasts;
  4. the majority serves again within FAILOVER_BOUND_S of the start of a
     fault (the time to the first acknowledged write on the majority side
     is printed for every fault);
  5. everything converges after healing: every member reaches the same
     applied index, the same key count, and -- read offline from each data
     dir with `craft-cli snapshot save --include-log` after a clean stop --
     the same keys, values and sessions, equal to a final read through the
     leader.

Usage:
  nemesis.py SCENARIO [--seed N]       one scenario (see SCENARIOS below)
  nemesis.py --list                    the scenario names
  nemesis.py --soak SECONDS [--nodes 3|5] [--seed N]
                                       a random fault schedule that long

Partitions need root and iptables.  Without them a partition scenario
exits 77 (ctest's SKIP_RETURN_CODE) after saying why; the soak leaves
partitions out of its schedule.

Cleanup: every craftd is started with a parent-death signal and killed by
PID in every exit path; the firewall rules live in a chain of this process
(CRAFT-NEM-<pid>) that is removed in a finally clause, at exit, and on
SIGTERM/SIGINT; chains of dead processes are removed at the next start.
"""
import argparse
import atexit
import collections
import os
import random
import re
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from craftd_harness import (Cluster, Conn, RespError, build_dir,  # noqa: E402
                            poll)

HOSTS = ["127.0.0.%d" % i for i in range(11, 18)]
# craftd's default election timeout is 250-500 ms: a new leader takes about
# one timeout plus a pre-vote and a vote round; 5 s is ten timeouts, room
# for a loaded 2-core machine without letting a stuck cluster pass.
FAILOVER_BOUND_S = 5.0
# After healing, every member must have applied what was committed at that
# moment within this bound: a restart, a reconnection through a healed
# partition (at most NET_USER_TIMEOUT_MS_DEFAULT + a reconnect backoff,
# 4 s) and a snapshot install, with room for a loaded machine.
CATCHUP_BOUND_S = 8.0
# Keys are renamed every EPOCH_S seconds so that no key gathers more than a
# few hundred operations: the checker's search is per key, and its cost
# grows with the number of operations of unknown outcome on one key.
EPOCH_S = 6.0
# A client gives up retrying an operation that was refused (MOVED,
# CLUSTERDOWN, connection refused) after this long; it was never executed.
RETRY_S = 3.0
SKIP = 77
# 300 values of 10 KiB: 3 MiB, three snapshot chunks.
BALLAST_KEYS = 300
NS = 1000000000


def now():
    return time.monotonic_ns()


def log(msg):
    print("   " + msg, flush=True)


# ---- firewall --------------------------------------------------------------

CHAIN_PREFIX = "CRAFT-NEM-"


def iptables(*args, check=True):
    """Run iptables; -w waits for the xtables lock that parallel tests
    share.  Returns the CompletedProcess."""
    p = subprocess.run(["iptables", "-w", "5"] + list(args),
                       capture_output=True, text=True, timeout=30)
    if check and p.returncode != 0:
        raise RuntimeError("iptables %s: %s" % (" ".join(args),
                                                p.stderr.strip()))
    return p


def iptables_problem():
    """None if this process may change the firewall, else why not."""
    if os.geteuid() != 0:
        return "not root"
    if shutil.which("iptables") is None:
        return "no iptables binary"
    try:
        p = iptables("-L", "INPUT", "-n", check=False)
    except (OSError, subprocess.SubprocessError) as e:
        return "iptables failed: %s" % e
    if p.returncode != 0:
        return "iptables -L failed: %s" % p.stderr.strip()
    return None


def _chain_owner_alive(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return b"nemesis" in f.read()
    except OSError:
        return False


def _remove_chain(chain):
    for hook in ("INPUT", "OUTPUT"):
        while iptables("-D", hook, "-j", chain, check=False).returncode == 0:
            pass
    iptables("-F", chain, check=False)
    iptables("-X", chain, check=False)


def remove_stale_chains():
    """Remove the chains of nemesis processes that died without cleaning
    up (SIGKILL, a power cut of the test runner)."""
    p = iptables("-S", check=False)
    removed = []
    for m in re.finditer(r"^-N (%s(\d+))$" % CHAIN_PREFIX, p.stdout, re.M):
        chain, pid = m.group(1), int(m.group(2))
        if pid != os.getpid() and not _chain_owner_alive(pid):
            _remove_chain(chain)
            removed.append(chain)
    return removed


class Firewall:
    """Packet filter rules of one test, in the chain CRAFT-NEM-<pid>,
    jumped to from INPUT and OUTPUT.  Each rule names a source and a
    destination member address and this cluster's two ports (either end),
    so parallel tests on the same addresses are never touched, nor is any
    other traffic.

    A "silent" cut (DROP, with -i lo so that it acts in INPUT) makes
    packets vanish after they were sent, like a pulled cable: TCP
    retransmits into the void and a connect() hangs.  A "reset" cut
    (REJECT --reject-with tcp-reset, acting in OUTPUT) answers every packet
    with a RST at once, like a host whose port is closed: connections break
    and reconnections fail immediately."""

    def __init__(self, ports):
        self.chain = "%s%d" % (CHAIN_PREFIX, os.getpid())
        self.ports = ",".join(str(p) for p in ports)
        self.rules = 0
        self.closed = False
        stale = remove_stale_chains()
        if stale:
            log("removed stale firewall chains: %s" % " ".join(stale))
        _remove_chain(self.chain)  # ours, from an earlier run in this pid
        iptables("-N", self.chain)
        atexit.register(self.close)
        try:
            iptables("-I", "INPUT", "1", "-j", self.chain)
            iptables("-I", "OUTPUT", "1", "-j", self.chain)
        except BaseException:
            self.close()
            raise

    def cut(self, src, dst, silent=True):
        """Stop packets from address src to address dst (silently, or with
        a TCP reset to the sender)."""
        rule = ["-s", src, "-d", dst, "-p", "tcp", "-m", "multiport",
                "--ports", self.ports]
        if silent:
            rule = ["-i", "lo"] + rule + ["-j", "DROP"]
        else:
            rule += ["-j", "REJECT", "--reject-with", "tcp-reset"]
        iptables("-A", self.chain, *rule)
        self.rules += 1

    def heal(self):
        if self.rules:
            iptables("-F", self.chain)
            self.rules = 0

    def close(self):
        # closed only once the chain is gone: if a signal interrupts the
        # removal, the atexit hook (or the caller) tries again.
        if not self.closed:
            _remove_chain(self.chain)
            self.closed = True


# ---- faults -----------------------------------------------------------------

class Fault:
    """One fault in force from t_start to t_end (monotonic ns).  minority:
    members that cannot reach a majority (they must not answer); majority:
    the members that must serve again within FAILOVER_BOUND_S, or empty
    when no majority is left."""

    def __init__(self, desc, minority=(), majority=()):
        self.desc = desc
        self.minority = frozenset(minority)
        self.majority = frozenset(majority)
        self.t_start = now()
        self.t_end = None
        self.undo = []
        self.failover_s = None
        self.recovery_s = None
        self.catchup_s = None


class Nemesis:
    def __init__(self, run):
        self.run = run
        self.c = run.cluster
        self.fw = run.firewall
        self.faults = []
        self.active = []

    def ids(self):
        return [nd.id for nd in self.c.nodes]

    def host(self, nid):
        return self.c.node(nid).host

    def quorum(self):
        return len(self.c.nodes) // 2 + 1

    def _begin(self, f):
        f.t_start = now()
        self.faults.append(f)
        self.active.append(f)
        log("fault: %s" % f.desc)
        return f

    def kill(self, victims):
        victims = list(victims)
        for v in victims:
            self.c.node(v).kill9()
        rest = [i for i in self.ids() if i not in victims]
        f = Fault("kill -9 %s" % self.names(victims),
                  minority=rest if len(rest) < self.quorum() else (),
                  majority=rest if len(rest) >= self.quorum() else ())
        f.undo.append(lambda: self._restart(victims))
        return self._begin(f)

    def _restart(self, victims):
        for v in victims:
            self.c.node(v).start(wait=False)
        for v in victims:
            self.c.node(v).wait_ready()

    def pause(self, victims):
        victims = list(victims)
        for v in victims:
            nd = self.c.node(v)
            nd.pause()
            # Stopped for sure before the fault counts as started.
            poll("node %d to stop" % v, lambda: proc_state(nd) == "T", 5)
        rest = [i for i in self.ids() if i not in victims]
        f = Fault("SIGSTOP %s" % self.names(victims),
                  minority=rest if len(rest) < self.quorum() else (),
                  majority=rest if len(rest) >= self.quorum() else ())
        f.undo.append(lambda: [self.c.node(v).resume() for v in victims])
        return self._begin(f)

    def partition(self, groups, silent=True):
        """Cut every pair of members in different groups, both ways."""
        groups = [list(g) for g in groups]
        for i, a in enumerate(groups):
            for b in groups[i + 1:]:
                for x in a:
                    for y in b:
                        self.fw.cut(self.host(x), self.host(y), silent)
                        self.fw.cut(self.host(y), self.host(x), silent)
        big = [g for g in groups if len(g) >= self.quorum()]
        majority = big[0] if big else []
        f = Fault("partition %s (%s)" % (
            " | ".join(self.names(g) for g in groups),
            "silent drop" if silent else "tcp reset"),
            minority=[i for i in self.ids() if i not in majority],
            majority=majority)
        f.undo.append(self.fw.heal)
        return self._begin(f)

    def bridge(self, left, mid, right, silent=True):
        """left and right cannot talk; mid talks to both (every member still
        reaches a majority through mid's side)."""
        for x in left:
            for y in right:
                self.fw.cut(self.host(x), self.host(y), silent)
                self.fw.cut(self.host(y), self.host(x), silent)
        f = Fault("bridge %s <-> %s <-> %s" % (
            self.names(left), self.names([mid]), self.names(right)),
            minority=(), majority=self.ids())
        f.undo.append(self.fw.heal)
        return self._begin(f)

    def oneway(self, src, dsts, silent=True):
        """Drop only the packets from src to dsts.  Over TCP the other
        direction degrades too (its acknowledgements are lost, so the
        sender stalls after its retransmission timer), as on a real
        asymmetric link; src is the minority."""
        for y in dsts:
            self.fw.cut(self.host(src), self.host(y), silent)
        f = Fault("one-way %s -> %s dropped" % (
            self.names([src]), self.names(dsts)),
            minority=[src], majority=list(dsts))
        f.undo.append(self.fw.heal)
        return self._begin(f)

    def heal(self, f):
        # The end is stamped before anything is undone: a reply received
        # before it came from a member still cut off.
        f.t_end = now()
        for u in f.undo:
            u()
        self.active.remove(f)
        log("healed: %s" % f.desc)

    def heal_all(self):
        for f in list(reversed(self.active)):
            self.heal(f)

    def names(self, ids):
        lid = self.run.last_leader
        return ",".join("n%d%s" % (i, "*" if i == lid else "")
                        for i in sorted(ids))


def proc_state(nd):
    try:
        with open("/proc/%d/stat" % nd.proc.pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "?"


# ---- clients --------------------------------------------------------------

class Link:
    """One client connection that moves between members: follows MOVED,
    goes elsewhere after CLUSTERDOWN, a refused connection or a timeout."""

    def __init__(self, cluster, rnd, timeout):
        self.c = cluster
        self.rnd = rnd
        self.timeout = timeout
        self.conn = None
        self.node = rnd.choice(cluster.nodes)
        self.by_addr = {"%s:%d" % (nd.host, nd.port): nd
                        for nd in cluster.nodes}

    def drop(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def elsewhere(self):
        self.drop()
        others = [nd for nd in self.c.nodes if nd is not self.node]
        self.node = self.rnd.choice(others)

    def follow(self, moved):
        nd = self.by_addr.get(moved.text.split(" ")[-1])
        if nd is None:
            raise AssertionError("MOVED to an unknown address: %r" % moved)
        self.drop()
        self.node = nd

    def attempt(self, args):
        """(what, reply, node, t_send): what is "reply", "notsent" (no
        connection: not executed) or "lost" (sent, no reply: unknown)."""
        nd = self.node
        if self.conn is None:
            try:
                self.conn = Conn(nd.port, host=nd.host, timeout=self.timeout)
            except OSError:
                self.conn = None
                return "notsent", None, nd, None
        t_send = now()
        try:
            r = self.conn.call(*args)
        except (OSError, ConnectionError, ValueError) as e:
            self.drop()
            return "lost", e, nd, t_send
        return "reply", r, nd, t_send


class Op:
    __slots__ = ("client", "kind", "key", "arg", "out", "t_call", "t_ret",
                 "node", "t_send", "t_reply", "answered")

    def __init__(self, client, kind, key, arg=None):
        self.client = client
        self.kind = kind
        self.key = key
        self.arg = arg
        self.out = None
        self.t_call = now()
        self.t_ret = None  # None: outcome unknown
        self.node = None
        self.t_send = None
        self.t_reply = None
        self.answered = False  # a success reply (a value, +OK, a length)


def quote(b):
    if b is None:
        return "nil"
    if isinstance(b, str):
        b = b.encode()
    out = []
    for ch in b:
        c = chr(ch)
        if c in '\\"':
            out.append("\\" + c)
        elif 32 <= ch < 127:
            out.append(c)
        else:
            out.append("\\x%02x" % ch)
    return '"' + "".join(out) + '"'


def op_line(op):
    ret = "?" if op.t_ret is None else str(op.t_ret)
    line = "%s %d %s %s %s" % (op.client, op.t_call, ret, op.kind,
                               quote(op.key))
    if op.arg is not None:
        line += " " + quote(op.arg)
    if op.t_ret is not None and op.kind == "get":
        line += " -> " + quote(op.out)
    return line


class Worker(threading.Thread):
    """Plain GET / SET / APPEND on a few keys per epoch.  A write is never
    retried once it may have run: an UNCERTAIN reply or a lost connection
    ends it with an unknown outcome."""

    def __init__(self, run, wid, timeout):
        super().__init__(daemon=True, name="worker%d" % wid)
        self.run_ = run
        self.wid = wid
        self.rnd = random.Random(run.rnd.randrange(1 << 62))
        self.link = Link(run.cluster, self.rnd, timeout)
        self.ops = []
        self.refused = []  # writes refused before proposal: never ran
        self.error = None

    def run(self):
        try:
            self.loop()
        except BaseException as e:  # reported by the main thread
            self.error = e
        finally:
            self.link.drop()

    def loop(self):
        n = 0
        r = self.run_
        while not r.stop.is_set():
            n += 1
            ep = r.epoch()
            x = self.rnd.random()
            if x < 0.4:
                key = self.rnd.choice(r.all_keys(ep))
                op = Op("w%d" % self.wid, "get", key)
                args = ("GET", key)
            elif x < 0.7:
                key = "r%d.%s" % (self.rnd.randrange(2), ep)
                val = "w%d.%d" % (self.wid, n)
                op = Op("w%d" % self.wid, "put", key, val)
                args = ("SET", key, val)
            else:
                key = "a%d.%s" % (self.rnd.randrange(2), ep)
                tok = "[w%d.%d]" % (self.wid, n)
                op = Op("w%d" % self.wid, "append", key, tok)
                args = ("APPEND", key, tok)
            r.note_key(key)
            self.execute(op, args)
            # A little think time keeps each key's history small enough for
            # the checker; it decides nothing.
            time.sleep(self.rnd.uniform(0, 0.004))

    def execute(self, op, args):
        deadline = op.t_call + int(RETRY_S * NS)
        while True:
            what, rep, nd, t_send = self.link.attempt(args)
            op.node, op.t_send = nd.id, t_send
            if what == "notsent":
                self.link.elsewhere()
                if now() > deadline:
                    self.refused.append(op)
                    return
                time.sleep(0.02)
                continue
            if what == "lost":
                self.unknown(op)
                return
            op.t_reply = now()
            if isinstance(rep, RespError):
                k = rep.kind()
                if k in ("MOVED", "CLUSTERDOWN", "SHUTDOWN"):
                    if k == "MOVED":
                        self.link.follow(rep)
                    else:
                        self.link.elsewhere()
                        time.sleep(0.02)
                    if now() > deadline:
                        self.refused.append(op)
                        return
                    continue
                if k == "UNCERTAIN":
                    self.link.elsewhere()
                    self.unknown(op)
                    return
                raise AssertionError("%r -> %r" % (args, rep))
            op.t_ret = op.t_reply
            op.answered = True
            if op.kind == "get":
                if rep is not None and not isinstance(rep, bytes):
                    raise AssertionError("%r -> %r" % (args, rep))
                op.out = rep
            elif op.kind == "put" and rep != "OK":
                raise AssertionError("%r -> %r" % (args, rep))
            elif op.kind == "append" and not isinstance(rep, int):
                raise AssertionError("%r -> %r" % (args, rep))
            self.ops.append(op)
            return

    def unknown(self, op):
        op.t_ret = None
        if op.kind != "get":  # an unknown read changes nothing
            self.ops.append(op)


class Appender(threading.Thread):
    """Exactly-once appends: CRAFT.SESSION, then CRAFT.EXEC id seq seq
    APPEND key token, retried with the same seq after every unknown outcome
    until acknowledged.  Stops only between tokens, so that at the end
    every token it started is acknowledged (or the run fails).

    Each appender has keys of its own: with two writers appending to one
    key and few reads between, the checker would have to try every order
    of their overlapping appends (each order is another value), which is
    exponential; plain APPEND already covers concurrent appends."""

    def __init__(self, run, aid, timeout):
        super().__init__(daemon=True, name="appender%d" % aid)
        self.run_ = run
        self.aid = aid
        self.rnd = random.Random(run.rnd.randrange(1 << 62))
        self.link = Link(run.cluster, self.rnd, timeout)
        self.ops = []
        self.sid = None
        self.seq = 0
        self.retries = 0
        self.error = None

    def run(self):
        try:
            n = 0
            r = self.run_
            while not r.stop.is_set():
                n += 1
                key = "e%d.%s" % (self.aid, r.epoch())
                r.note_key(key)
                op = Op("s%d" % self.aid, "append", key,
                        "[s%d.%d]" % (self.aid, n))
                self.exactly_once(op)
                self.ops.append(op)
                time.sleep(self.rnd.uniform(0, 0.004))
        except BaseException as e:
            self.error = e
        finally:
            self.link.drop()

    def call(self, args, hard_deadline):
        """The reply to args, retried until it is a definite answer (not
        MOVED, CLUSTERDOWN, UNCERTAIN or a lost connection)."""
        while now() < hard_deadline:
            what, rep, nd, t_send = self.link.attempt(args)
            if what != "reply":
                self.link.elsewhere()
                self.retries += what == "lost"
                time.sleep(0.02)
                continue
            if isinstance(rep, RespError):
                k = rep.kind()
                if k == "MOVED":
                    self.link.follow(rep)
                    continue
                if k in ("CLUSTERDOWN", "SHUTDOWN", "UNCERTAIN"):
                    self.retries += k == "UNCERTAIN"
                    self.link.elsewhere()
                    time.sleep(0.02)
                    continue
            return rep, nd, t_send
        raise AssertionError("appender %d: no definite reply to %r within "
                             "the run" % (self.aid, args))

    def exactly_once(self, op):
        hard = self.run_.hard_deadline
        while self.sid is None:
            rep, _, _ = self.call(("CRAFT.SESSION",), hard)
            if not isinstance(rep, int):
                raise AssertionError("CRAFT.SESSION -> %r" % (rep,))
            self.sid, self.seq = rep, 0
        self.seq += 1
        args = ("CRAFT.EXEC", self.sid, self.seq, self.seq, "APPEND", op.key,
                op.arg)
        rep, nd, t_send = self.call(args, hard)
        if not isinstance(rep, int):
            raise AssertionError("%r -> %r" % (args, rep))
        op.t_ret = op.t_reply = now()
        op.node, op.t_send, op.answered = nd.id, t_send, True


class Prober(threading.Thread):
    """While a fault leaves a minority, sends a SET and a GET straight to
    each minority member (no redirect followed) and keeps every reply, so
    that the run can check that none of them was an answer."""

    def __init__(self, run):
        super().__init__(daemon=True, name="prober")
        self.run_ = run
        self.seen = []  # (fault, node id, kind, t_send, t_reply, reply)
        self.error = None

    def run(self):
        n = 0
        try:
            while not self.run_.stop.is_set():
                targets = [(f, i) for f in list(self.run_.nem.active)
                           for i in f.minority]
                if not targets:
                    time.sleep(0.01)
                    continue
                for f, i in targets:
                    nd = self.run_.cluster.node(i)
                    if not nd.alive() or nd.paused:
                        continue
                    n += 1
                    self.probe(f, nd, ("SET", "nem:probe", "p%d" % n))
                    self.probe(f, nd, ("GET", "nem:probe"))
                time.sleep(0.02)
        except BaseException as e:
            self.error = e

    def probe(self, f, nd, args):
        try:
            c = Conn(nd.port, host=nd.host, timeout=1.0)
        except OSError:
            return
        try:
            t_send = now()
            try:
                r = c.call(*args)
            except (OSError, ConnectionError):
                return
            self.seen.append((f, nd.id, args[0], t_send, now(), r))
        finally:
            c.close()


# ---- offline state of a data dir ------------------------------------------

def read_state(path):
    """Parse a `craft-cli snapshot save` file (docs/craftd.md, KV snapshot
    versions 1 and 2): ({key: value}, {key: (expire_ms, version)},
    {session id: (first_unacked, [(seq, reply)])}, last_applied)."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != b"CRAFTSNP":
        raise AssertionError("%s: not a craft-cli snapshot file" % path)
    kv = data[48:]
    if kv[:8] != b"CRAFTKV\0":
        raise AssertionError("%s: no KV snapshot inside" % path)
    version, = struct.unpack_from("<I", kv, 8)
    if version not in (1, 2):
        raise AssertionError("%s: KV snapshot version %d" % (path, version))
    last_applied, _now_ms, n_keys, n_sess = struct.unpack_from("<QQQQ", kv,
                                                                16)
    off = 52
    keys = {}
    meta = {}
    for _ in range(n_keys):
        tag, klen, vlen, expire = struct.unpack_from("<cIIq", kv, off)
        assert tag == b"K", (path, off, tag)
        kversion = 0
        if version >= 2:
            kversion, = struct.unpack_from("<Q", kv, off + 17)
            off += 8
        off += 21
        key = kv[off:off + klen]
        keys[key] = kv[off + klen:off + klen + vlen]
        meta[key] = (expire, kversion)
        off += klen + vlen + 4
    sessions = {}
    for _ in range(n_sess):
        tag, sid, _last_ms, first, n_saved = struct.unpack_from("<cQQQI", kv,
                                                                off)
        assert tag == b"S", (path, off, tag)
        off += 33
        saved = []
        for _ in range(n_saved):
            seq, rlen = struct.unpack_from("<QI", kv, off)
            off += 16
            saved.append((seq, kv[off:off + rlen]))
            off += rlen + 4
        sessions[sid] = (first, saved)
    assert kv[off:off + 1] == b"E", (path, off)
    return keys, meta, sessions, last_applied


# ---- checks -----------------------------------------------------------------

def token_problems(final, ops, refused):
    """Check appended tokens against the final values: an acknowledged
    append is there exactly once, one of unknown outcome at most once, one
    refused before it was proposed never, and nothing else is there.
    Returns (problems, acknowledged appends checked)."""
    acked = collections.defaultdict(set)
    unknown = collections.defaultdict(set)
    never = collections.defaultdict(set)
    for op in ops:
        if op.kind == "append":
            (acked if op.t_ret is not None else unknown)[op.key].add(op.arg)
    for op in refused:
        if op.kind == "append":
            never[op.key].add(op.arg)
    bad = []
    n = 0
    for key in sorted(set(acked) | set(unknown) | set(never)):
        val = (final.get(key) or b"").decode(errors="replace")
        toks = re.findall(r"\[[^\]]*\]", val)
        if "".join(toks) != val:
            bad.append("%s holds junk: %r" % (key, val[:200]))
        count = collections.Counter(toks)
        for t in sorted(acked[key]):
            if count[t] != 1:
                bad.append("acknowledged append %s to %s appears %d times"
                           % (t, key, count[t]))
        for t in sorted(unknown[key]):
            if count[t] > 1:
                bad.append("append %s to %s appears %d times" % (
                    t, key, count[t]))
        for t in sorted(never[key]):
            if count[t]:
                bad.append("append %s to %s was refused but appears" % (
                    t, key))
        stray = set(count) - acked[key] - unknown[key] - never[key]
        if stray:
            bad.append("%s holds tokens nobody appended: %r" % (
                key, sorted(stray)[:5]))
        n += len(acked[key])
    return bad, n


def minority_problems(faults, ops, probes):
    """Replies that a member cut off from the majority sent while the fault
    lasted (sent after it began, received before it ended) must all be
    errors.  Returns (problems, client operations checked, probes
    checked)."""
    def during(f, t_send, t_reply):
        return t_send is not None and f.t_start <= t_send and \
            t_reply is not None and f.t_end is not None and \
            t_reply < f.t_end

    bad = []
    n = 0
    for op in ops:
        for f in faults:
            if op.node in f.minority and during(f, op.t_send, op.t_reply):
                n += 1
                if op.answered:
                    bad.append("%s %s %s answered by n%d during %s" % (
                        op.client, op.kind, op.key, op.node, f.desc))
    m = 0
    for f, nid, kind, t_send, t_reply, r in probes:
        if not during(f, t_send, t_reply) or nid not in f.minority:
            continue
        m += 1
        if not isinstance(r, RespError):
            bad.append("%s to n%d answered %r during %s" % (
                kind, nid, r, f.desc))
    return bad, n, m


def settle_unknown_appends(final, ops):
    """Drop the appends of unknown outcome whose token is not in the key's
    final value.  The a* and e* keys only ever grow by appends of unique
    tokens, so such an append certainly never took effect, and leaving it
    out is the only linearization the checker could find for it anyway;
    kept in, the checker would try it at every point after its call (each
    such append doubles the states it explores)."""
    kept = []
    for op in ops:
        if op.kind == "append" and op.t_ret is None and op.key in final:
            v = final[op.key] or b""
            if op.arg.encode() not in v:
                continue
        kept.append(op)
    return kept


# ---- a run ------------------------------------------------------------------

class Run:
    def __init__(self, name, n, seed, partitions, budget_s, n_workers=4,
                 n_appenders=2, snapshots=False):
        self.name = name
        self.seed = seed
        self.rnd = random.Random(seed)
        self.budget_s = budget_s
        self.n_workers = n_workers
        self.n_appenders = n_appenders
        self.partitions = partitions
        self.snapshots = snapshots
        # With snapshots: a threshold the workload passes every second or
        # two, so that members restarted or cut off for a few seconds
        # (more than the 4096 entries kept behind a snapshot) catch up by
        # installing one while new ones are taken.
        extra = ["--snapshot-bytes", "256k"] if snapshots else []
        self.cluster = Cluster(n, name="nem-" + name, fast=False,
                               hosts=HOSTS[:n], die_with_parent=True,
                               extra=extra)
        self.firewall = None
        self.nem = None
        self.stop = threading.Event()
        self.keys = set()
        self.keys_lock = threading.Lock()
        self.t0 = now()
        self.hard_deadline = self.t0 + int(budget_s * NS)
        self.last_leader = None
        self.threads = []
        self.prober = None
        self.history_path = None
        # A run is one or more chapters (the soak's last a minute each):
        # a workload on fresh keys, faults, then every check but the
        # offline comparison, which needs the cluster stopped.
        self.chapter = 0
        self.t_chapter = now()
        self.finals = {}
        self.totals = collections.Counter()
        self.verdicts = []

    # -- workload

    def epoch(self):
        """The key suffix: chapter and epoch, never reused in a run."""
        return "%d.%d" % (self.chapter,
                          int((now() - self.t_chapter) / NS / EPOCH_S))

    def all_keys(self, ep):
        return ["r0.%s" % ep, "r1.%s" % ep, "a0.%s" % ep, "a1.%s" % ep] + \
            ["e%d.%s" % (i, ep) for i in range(self.n_appenders)]

    def note_key(self, key):
        with self.keys_lock:
            self.keys.add(key)

    def leader(self, timeout=15.0):
        self.last_leader = self.cluster.leader(timeout)
        return self.last_leader

    def start(self):
        c = self.cluster
        if self.partitions:
            ports = (c.nodes[0].port, c.nodes[0].port + c.offset)
            self.firewall = Firewall(ports)
        self.nem = Nemesis(self)
        c.start()
        self.leader()
        if self.snapshots:
            self.ballast()
        self.t0 = now()
        self.start_workload()

    def start_workload(self):
        self.chapter += 1
        self.t_chapter = now()
        self.stop.clear()
        with self.keys_lock:
            self.keys = set()
        # Timeouts from short to longer than most faults, so that some
        # clients are still waiting when a frozen leader resumes.
        timeouts = [0.5, 1.0, 2.0, 4.0]
        self.threads = [Worker(self, i, timeouts[i % len(timeouts)])
                        for i in range(self.n_workers)]
        self.threads += [Appender(self, i, timeouts[(i + 1) % 4])
                         for i in range(self.n_appenders)]
        self.prober = Prober(self)
        self.threads.append(self.prober)
        for t in self.threads:
            t.start()

    def ballast(self):
        """BALLAST_KEYS values of 10 KiB, so that every snapshot spans
        several 1 MiB chunks: a transfer then takes long enough for the
        leader to take a newer snapshot in the middle of it."""
        nd = self.cluster.node(self.last_leader)
        conn = Conn(nd.port, host=nd.host, timeout=10)
        try:
            conn.send_raw(b"".join(
                Conn.encode("SET", "ballast.%d" % i, (b"%06d" % i) * 1707)
                for i in range(BALLAST_KEYS)))
            for _ in range(BALLAST_KEYS):
                r = conn.read_reply()
                assert r == "OK", "ballast SET -> %r" % (r,)
        finally:
            conn.close()

    def check_threads(self):
        for t in self.threads:
            if t.error is not None:
                raise AssertionError("%s failed: %r" % (t.name, t.error))

    def hold(self, seconds):
        """Let the workload run for a while (the schedule, not a check)."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.check_threads()
            time.sleep(min(0.05, max(0.0, end - time.monotonic())))

    # -- measurements

    def first_write(self, targets, t_from, what):
        """Seconds from t_from to the first acknowledged write sent to one
        of targets (following MOVED only among them)."""
        targets = [self.cluster.node(i) for i in sorted(targets)]
        by_addr = {"%s:%d" % (nd.host, nd.port): nd for nd in targets}
        limit = t_from + int(3 * FAILOVER_BOUND_S * NS)
        i = 0
        nxt = None
        while now() < limit:
            self.check_threads()
            nd = nxt or targets[i % len(targets)]
            nxt = None
            i += 1
            try:
                c = Conn(nd.port, host=nd.host, timeout=1.0)
            except OSError:
                time.sleep(0.01)
                continue
            try:
                r = c.call("SET", "nem:failover", "t%d" % now())
            except (OSError, ConnectionError):
                continue
            finally:
                c.close()
            if r == "OK":
                return (now() - t_from) / NS
            if isinstance(r, RespError) and r.kind() == "MOVED":
                nxt = by_addr.get(r.text.split(" ")[-1])
            if nxt is None:
                time.sleep(0.01)
        raise AssertionError("%s: no write acknowledged by %s within %.0fs"
                             % (what, sorted(t.id for t in targets),
                                3 * FAILOVER_BOUND_S))

    def failover(self, f):
        """Measure and check how soon the majority serves after f began."""
        if not f.majority:
            return None
        f.failover_s = self.first_write(f.majority, f.t_start, f.desc)
        log("majority %s served %.0f ms after the fault" % (
            sorted(f.majority), f.failover_s * 1000))
        assert f.failover_s <= FAILOVER_BOUND_S, \
            "failover took %.2fs > %.1fs (%s)" % (f.failover_s,
                                                 FAILOVER_BOUND_S, f.desc)
        return f.failover_s

    def heal(self, f):
        t = now()
        self.nem.heal(f)
        if not f.majority:
            # No majority served during the fault: how soon after healing?
            f.recovery_s = self.first_write(self.nem.ids(), t, f.desc)
            log("served again %.0f ms after healing" % (f.recovery_s * 1000))
            assert f.recovery_s <= FAILOVER_BOUND_S, \
                "recovery took %.2fs (%s)" % (f.recovery_s, f.desc)
        f.catchup_s = self.catch_up(f.t_end, f.desc)

    def catch_up(self, t_from, what):
        """Seconds from t_from until every member has applied what the
        leader had committed when we looked; checked against
        CATCHUP_BOUND_S."""
        def commit():
            best = 0
            for nd in self.cluster.nodes:
                try:
                    best = max(best, int(nd.info().get("raft_commit_index",
                                                       0)))
                except (OSError, ConnectionError):
                    pass
            return best
        target = commit()
        limit = t_from + int(3 * CATCHUP_BOUND_S * NS)
        behind = list(self.cluster.nodes)
        while behind and now() < limit:
            self.check_threads()
            nd = behind[0]
            try:
                if int(nd.info().get("raft_applied_index", 0)) >= target:
                    behind.pop(0)
                    continue
            except (OSError, ConnectionError):
                pass
            time.sleep(0.01)
        took = (now() - t_from) / NS
        assert not behind, "%s: n%d had not applied index %d %.0fs after " \
            "healing" % (what, behind[0].id, target, took)
        log("every member applied index %d %.0f ms after healing" % (
            target, took * 1000))
        assert took <= CATCHUP_BOUND_S, \
            "catching up after healing took %.1fs > %.0fs (%s)" % (
                took, CATCHUP_BOUND_S, what)
        return took

    # -- the end

    def end_chapter(self):
        """Heal everything, stop the clients, and check the chapter: the
        members converge, tokens, the minority, linearizability."""
        c = self.cluster
        self.nem.heal_all()
        self.first_write(self.nem.ids(), now(), "after healing everything")
        self.stop.set()
        for t in self.threads:
            t.join(RETRY_S + 10)
            if t.is_alive():
                raise AssertionError("%s did not stop" % t.name)
        self.check_threads()
        t_end = now()
        lid = self.leader()
        ops = [op for t in self.threads if isinstance(t, (Worker, Appender))
               for op in t.ops]
        n_ok = sum(1 for op in ops if op.t_ret is not None)
        n_unknown = len(ops) - n_ok
        n_refused = sum(len(t.refused) for t in self.threads
                        if isinstance(t, Worker))
        secs = (t_end - self.t_chapter) / NS
        self.totals.update(ops=len(ops) + n_refused, ok=n_ok,
                           unknown=n_unknown, refused=n_refused)
        self.totals["ns"] += t_end - self.t_chapter
        log("%d operations (%d ok, %d unknown outcome, %d refused unsent)"
            " in %.1fs: %.0f ops/s" % (len(ops) + n_refused, n_ok,
                                       n_unknown, n_refused, secs,
                                       (len(ops) + n_refused) / secs))
        # 5. convergence: the same applied index everywhere (the write
        # above ended every log in the current term).
        t_conv = now()
        final = self.final_reads(lid, ops)
        self.converge()
        log("converged %.0f ms after the last client stopped" % (
            (now() - t_conv) / NS * 1000))
        counts = {nd.id: nd.keys() for nd in c.nodes}
        assert len(set(counts.values())) == 1, \
            "members hold different key counts: %r" % counts
        self.finals.update(final)
        # 2. tokens, 3. minority, 1. linearizability
        self.check_tokens(final, ops)
        self.check_minority(ops)
        self.check_linearizable(settle_unknown_appends(final, ops))

    def finish(self):
        self.end_chapter()
        self.compare_offline(self.finals)
        self.figures()

    def final_reads(self, lid, ops):
        c = self.cluster
        keys = sorted(self.keys)
        conn = Conn(c.node(lid).port, host=c.node(lid).host, timeout=10)
        try:
            t_call = now()
            vals = conn.call("MGET", *keys)
            t_ret = now()
        finally:
            conn.close()
        assert isinstance(vals, list), \
            "final MGET on the leader: %r" % (vals,)
        final = dict(zip(keys, vals))
        for k, v in final.items():
            op = Op("final", "get", k)
            op.t_call, op.t_ret, op.out = t_call, t_ret, v
            ops.append(op)
        return final

    def converge(self):
        c = self.cluster

        def same():
            infos = [nd.info() for nd in c.nodes]
            idx = set()
            for i in infos:
                idx.add(i.get("raft_applied_index"))
                idx.add(i.get("raft_commit_index"))
                idx.add(i.get("raft_last_index"))
            return len(idx) == 1 and None not in idx and idx
        got = poll("every member to apply the same index", same, 30)
        log("every member applied index %s" % next(iter(got)))

    def compare_offline(self, final):
        c = self.cluster
        rcs = c.stop_all()
        assert set(rcs.values()) == {0}, "exit codes after SIGTERM: %r" % rcs
        cli = os.path.join(build_dir(), "bin", "craft-cli")
        states = {}
        for nd in c.nodes:
            out = os.path.join(c.tmp, "state-n%d.snap" % nd.id)
            p = subprocess.run([cli, "snapshot", "save", nd.dir, out,
                                "--include-log"], capture_output=True,
                               text=True, timeout=60)
            assert p.returncode == 0, "craft-cli snapshot save n%d: %s" % (
                nd.id, p.stdout + p.stderr)
            states[nd.id] = read_state(out)
        ref_id = c.nodes[0].id
        ref_keys, ref_meta, ref_sessions, _ = states[ref_id]
        for nid, (keys, meta, sessions, _) in states.items():
            if keys != ref_keys:
                diff = sorted(set(keys.items()) ^ set(ref_keys.items()))[:10]
                raise AssertionError("n%d and n%d hold different keys: %r"
                                     % (nid, ref_id, diff))
            if meta != ref_meta:
                diff = sorted(set(meta.items()) ^ set(ref_meta.items()))[:10]
                raise AssertionError("n%d and n%d hold different expiry "
                                     "times or versions: %r" % (nid, ref_id,
                                                                diff))
            assert sessions == ref_sessions, \
                "n%d and n%d hold different sessions" % (nid, ref_id)
        for k, v in final.items():
            assert ref_keys.get(k.encode()) == v, \
                "key %s: read %r through the leader, %r on disk" % (
                    k, v, ref_keys.get(k.encode()))
        log("%d members hold the same %d keys and %d sessions on disk" % (
            len(states), len(ref_keys), len(ref_sessions)))

    def check_tokens(self, final, ops):
        refused = [op for t in self.threads
                   for op in getattr(t, "refused", [])]
        bad, n = token_problems(final, ops, refused)
        assert not bad, "appends lost or duplicated:\n  " + "\n  ".join(
            bad[:10])
        log("%d acknowledged appends each present exactly once" % n)

    def check_minority(self, ops):
        faults = [f for f in self.nem.faults
                  if f.minority and f.t_start >= self.t_chapter]
        if not faults:
            return
        bad, n, probes = minority_problems(faults, ops, self.prober.seen)
        assert not bad, "a minority answered:\n  " + "\n  ".join(bad[:10])
        log("minority members answered none of %d requests (%d probes, %d "
            "client operations)" % (probes + n, probes, n))
        assert probes > 0, "no probe reached a minority member"

    def check_linearizable(self, ops):
        lincheck = os.path.join(build_dir(), "bin", "craft-lincheck")
        path = os.path.join(self.cluster.tmp,
                            "history-%d.txt" % self.chapter)
        ops = sorted(ops, key=lambda op: op.t_call)
        with open(path, "w") as f:
            f.write("# nemesis %s seed %d\n" % (self.name, self.seed))
            for op in ops:
                f.write(op_line(op) + "\n")
        self.history_path = path
        t = time.monotonic()
        # About 20k operations a second on this machine; a minute at least.
        budget_ms = 60000 + len(ops) // 5
        p = subprocess.run([lincheck, "--timeout-ms", str(budget_ms), path],
                           capture_output=True, text=True,
                           timeout=budget_ms / 1000 + 60)
        out = (p.stdout + p.stderr).strip()
        verdict = out.splitlines()[-1] if out else str(p.returncode)
        log("craft-lincheck (%.1fs): %s" % (time.monotonic() - t, verdict))
        if p.returncode != 0:
            kept = self.keep_history()
            raise AssertionError("history not shown linearizable (exit %d, "
                                 "kept in %s):\n%s" % (p.returncode, kept,
                                                       out[-3000:]))
        self.verdicts.append(verdict)

    def keep_history(self):
        if not self.history_path:
            return None
        d = os.path.abspath("nemesis-failures")
        os.makedirs(d, exist_ok=True)
        dst = os.path.join(d, "%s-seed%d-%d.history" % (
            self.name, self.seed, self.chapter))
        shutil.copy(self.history_path, dst)
        return dst

    def figures(self):
        t = self.totals
        if self.chapter > 1:
            log("in all: %d operations (%d ok, %d unknown, %d refused) in "
                "%.0fs: %.0f ops/s; %d histories linearizable" % (
                    t["ops"], t["ok"], t["unknown"], t["refused"],
                    t["ns"] / NS, t["ops"] / (t["ns"] / NS),
                    len(self.verdicts)))
        fo = sorted(f.failover_s for f in self.nem.faults
                    if f.failover_s is not None)
        rec = sorted(f.recovery_s for f in self.nem.faults
                     if f.recovery_s is not None)
        if fo:
            log("failovers: %d, median %.0f ms, max %.0f ms" % (
                len(fo), 1000 * fo[len(fo) // 2], 1000 * fo[-1]))
        if rec:
            log("recoveries after healing a lost majority: %d, max %.0f ms"
                % (len(rec), 1000 * rec[-1]))
        cu = sorted(f.catchup_s for f in self.nem.faults
                    if f.catchup_s is not None)
        if cu:
            log("catch-up after healing: median %.0f ms, max %.0f ms" % (
                1000 * cu[len(cu) // 2], 1000 * cu[-1]))
        ev = collections.Counter()
        for nd in self.cluster.nodes:
            try:
                with open(nd.log, errors="replace") as f:
                    ev.update(re.findall(r" event=(snapshot_\w+)", f.read()))
            except OSError:
                continue
        if ev:
            # A transfer that starts and never ends was dropped: the
            # follower went away, or the leader replaced the snapshot.
            log("snapshots: %d taken, %d abandoned, %d installed from a "
                "leader; transfers: %d started, %d completed" % (
                    ev["snapshot_taken"], ev["snapshot_abandoned"],
                    ev["snapshot_installed"], ev["snapshot_send_started"],
                    ev["snapshot_sent"]))
        retries = sum(t.retries for t in self.threads
                      if isinstance(t, Appender))
        log("exactly-once appends retried %d times after unknown outcomes"
            % retries)

    def close(self):
        self.stop.set()
        try:
            if self.nem is not None:
                for f in list(self.nem.active):
                    if f.t_end is None:
                        f.t_end = now()
        finally:
            try:
                for nd in self.cluster.nodes:
                    if nd.paused and nd.alive():
                        nd.resume()
            finally:
                try:
                    if self.firewall is not None:
                        self.firewall.close()
                finally:
                    self.cluster.close()


# ---- scenarios --------------------------------------------------------------

def others(run, nid):
    return [i for i in run.nem.ids() if i != nid]


def sc_kill9_leader(run):
    """kill -9 of the leader, three times, each restarted."""
    for _ in range(3):
        run.hold(run.rnd.uniform(1.0, 2.0))
        f = run.nem.kill([run.leader()])
        run.failover(f)
        run.hold(run.rnd.uniform(0.2, 1.0))
        run.heal(f)


def sc_kill9_any(run):
    """kill -9 of random members: one (a majority survives) or two (the
    survivor alone must answer nothing), each restarted."""
    for rnd in range(5):
        run.hold(run.rnd.uniform(1.0, 2.0))
        k = 2 if rnd % 2 == 1 else 1
        run.leader()
        f = run.nem.kill(run.rnd.sample(run.nem.ids(), k))
        run.failover(f)
        # The last round keeps one member down long enough to need a
        # snapshot when it comes back.
        run.hold(run.rnd.uniform(0.8, 1.5) if rnd < 4 else 6.0)
        run.heal(f)


def sc_sigstop_leader(run):
    """SIGSTOP of the leader; the others elect; SIGCONT brings back an old
    leader that still believes it leads, with clients waiting on it."""
    for _ in range(3):
        run.hold(run.rnd.uniform(1.0, 2.0))
        f = run.nem.pause([run.leader()])
        run.failover(f)
        run.hold(run.rnd.uniform(0.5, 1.5))
        run.heal(f)


def sc_sigstop_minority_majority(run):
    """SIGSTOP of one follower (a minority), then of two members (a
    majority: the one left running must answer nothing)."""
    for rnd in range(4):
        run.hold(run.rnd.uniform(1.0, 2.0))
        lid = run.leader()
        if rnd % 2 == 0:
            f = run.nem.pause([run.rnd.choice(others(run, lid))])
        else:
            f = run.nem.pause(run.rnd.sample(run.nem.ids(), 2))
            run.hold(0.5)  # the minority must see the majority go
        run.failover(f)
        run.hold(run.rnd.uniform(1.0, 2.0))
        run.heal(f)


def sc_partition_leader(run):
    """The leader cut off from both followers (packets dropped silently);
    the last time long enough for it to need a snapshot to catch up."""
    for rnd in range(4):
        run.hold(run.rnd.uniform(1.0, 2.0))
        lid = run.leader()
        f = run.nem.partition([[lid], others(run, lid)])
        run.failover(f)
        run.hold(run.rnd.uniform(1.0, 2.0) if rnd < 3 else 6.0)
        run.heal(f)


def sc_partition_long(run):
    """The leader cut off silently for 13 s, long enough for TCP's
    retransmission backoff to grow past 10 s: when the cut heals, the
    members must reconnect at once (TCP_USER_TIMEOUT), not when the next
    retransmission happens to go out; the old leader also needs a
    snapshot to catch up."""
    run.hold(run.rnd.uniform(1.0, 2.0))
    lid = run.leader()
    f = run.nem.partition([[lid], others(run, lid)])
    run.failover(f)
    run.hold(13.0)
    run.heal(f)
    run.hold(1.0)


def sc_partition_majority_minority(run):
    """A random member (leader or follower) on the minority side, the cut
    alternating between silent drops and refusals at the sender."""
    for rnd in range(4):
        run.hold(run.rnd.uniform(1.0, 2.0))
        run.leader()
        lone = run.rnd.choice(run.nem.ids())
        f = run.nem.partition([[lone], others(run, lone)],
                              silent=rnd % 2 == 0)
        run.failover(f)
        run.hold(run.rnd.uniform(1.0, 2.0))
        run.heal(f)


def sc_partition_bridge(run):
    """Two members that cannot talk, and a third that talks to both: the
    leader at the bridge, then at one end."""
    for rnd in range(3):
        run.hold(run.rnd.uniform(1.0, 2.0))
        lid = run.leader()
        o = others(run, lid)
        if rnd % 2 == 0:
            f = run.nem.bridge([o[0]], lid, [o[1]])
        else:
            f = run.nem.bridge([lid], o[0], [o[1]])
        run.failover(f)
        run.hold(run.rnd.uniform(1.5, 2.5))
        run.heal(f)


def sc_partition_oneway(run):
    """One direction only: the leader's packets to the followers dropped,
    then the followers' packets to the leader."""
    for rnd in range(4):
        run.hold(run.rnd.uniform(1.0, 2.0))
        lid = run.leader()
        if rnd % 2 == 0:
            f = run.nem.oneway(lid, others(run, lid))
        else:
            for o in others(run, lid):
                run.firewall.cut(run.nem.host(o), run.nem.host(lid))
            f = Fault("one-way %s -> %s dropped" % (
                run.nem.names(others(run, lid)), run.nem.names([lid])),
                minority=[lid], majority=others(run, lid))
            f.undo.append(run.firewall.heal)
            run.nem._begin(f)
        run.failover(f)
        run.hold(run.rnd.uniform(1.0, 2.0))
        run.heal(f)


def random_fault(run):
    """One fault drawn at random for a cluster of any size: what the mixed
    scenario and the soak inject."""
    nem = run.nem
    ids = nem.ids()
    n = len(ids)
    lid = run.leader()
    minority = n // 2  # the most members that can fail
    kinds = ["kill_leader", "kill_some", "kill_all_but", "pause_leader",
             "pause_some", "pause_majority"]
    if run.firewall is not None:
        kinds += ["part_leader", "part_split", "bridge", "oneway"]
    kind = run.rnd.choice(kinds)
    k = run.rnd.randint(1, minority)
    if kind == "kill_leader":
        return nem.kill([lid] + run.rnd.sample(others(run, lid), k - 1))
    if kind == "kill_some":
        return nem.kill(run.rnd.sample(ids, k))
    if kind == "kill_all_but":
        return nem.kill(run.rnd.sample(ids, minority + 1))
    if kind == "pause_leader":
        return nem.pause([lid] + run.rnd.sample(others(run, lid), k - 1))
    if kind == "pause_some":
        return nem.pause(run.rnd.sample(ids, k))
    if kind == "pause_majority":
        return nem.pause(run.rnd.sample(ids, minority + 1))
    silent = run.rnd.random() < 0.7
    if kind == "part_leader":
        small = [lid] + run.rnd.sample(others(run, lid), k - 1)
        return nem.partition([small, [i for i in ids if i not in small]],
                             silent)
    if kind == "part_split":
        shuffled = run.rnd.sample(ids, n)
        return nem.partition([shuffled[:k], shuffled[k:]], silent)
    if kind == "bridge":
        shuffled = run.rnd.sample(ids, n)
        half = (n - 1) // 2
        return nem.bridge(shuffled[:half], shuffled[half],
                          shuffled[half + 1:], silent)
    src = run.rnd.choice([lid, run.rnd.choice(ids)])
    return nem.oneway(src, [i for i in ids if i != src], silent)


def sc_five_nodes_mixed(run):
    """Five members, a random fault per round: kills, pauses, splits,
    bridges and one-way cuts, of one or two members or of a majority."""
    for _ in range(5):
        run.hold(run.rnd.uniform(0.8, 1.5))
        f = random_fault(run)
        if not f.majority:
            run.hold(0.5)
        run.failover(f)
        run.hold(run.rnd.uniform(0.8, 1.5))
        run.heal(f)


# name: (function, members, needs iptables, frequent snapshots)
SCENARIOS = {
    "kill9_leader": (sc_kill9_leader, 3, False, False),
    "kill9_any": (sc_kill9_any, 3, False, True),
    "sigstop_leader": (sc_sigstop_leader, 3, False, False),
    "sigstop_minority_majority": (sc_sigstop_minority_majority, 3, False,
                                  True),
    "partition_leader": (sc_partition_leader, 3, True, True),
    "partition_long": (sc_partition_long, 3, True, True),
    "partition_majority_minority": (sc_partition_majority_minority, 3, True,
                                    False),
    "partition_bridge": (sc_partition_bridge, 3, True, False),
    "partition_oneway": (sc_partition_oneway, 3, True, False),
    "five_nodes_mixed": (sc_five_nodes_mixed, 5, True, True),
}


# The soak checks its histories a chapter at a time, so that memory and the
# checker's work stay bounded however long it runs.
SOAK_CHAPTER_S = 60.0


def soak(run, seconds):
    end = time.monotonic() + seconds
    chapter_end = time.monotonic() + SOAK_CHAPTER_S
    while time.monotonic() < end:
        if time.monotonic() >= chapter_end:
            log("-- chapter %d checks" % run.chapter)
            run.end_chapter()
            run.start_workload()
            chapter_end = time.monotonic() + SOAK_CHAPTER_S
        run.hold(run.rnd.uniform(0.5, 3.0))
        f = random_fault(run)
        if not f.majority:
            run.hold(0.5)
        run.failover(f)
        run.hold(run.rnd.uniform(0.5, 4.0))
        run.heal(f)


# ---- self-test of the checks and the cleanup --------------------------------

def _expect(what, cond, failures):
    print("   %s %s" % ("ok  " if cond else "FAIL", what), flush=True)
    if not cond:
        failures.append(what)


def _fake_op(kind, key, arg, acked, node=None, t_send=None, t_reply=None):
    op = Op("t", kind, key, arg)
    op.t_ret = 1 if acked else None
    op.answered = acked
    op.node, op.t_send, op.t_reply = node, t_send, t_reply
    return op


def selftest_checks(failures):
    """Each check must flag a planted violation and pass a clean case."""
    ops = [_fake_op("append", "a", "[x1]", True),
           _fake_op("append", "a", "[x2]", False),
           _fake_op("append", "a", "[x3]", True)]
    refused = [_fake_op("append", "a", "[x4]", False)]
    bad, _ = token_problems({"a": b"[x1][x2][x2][x4][zz]"}, ops, refused)
    text = "\n".join(bad)
    _expect("tokens: a duplicate is flagged", "[x2] to a appears 2" in text,
            failures)
    _expect("tokens: a lost acknowledged append is flagged",
            "[x3] to a appears 0" in text, failures)
    _expect("tokens: a refused append that ran is flagged",
            "[x4] to a was refused" in text, failures)
    _expect("tokens: a stray token is flagged", "[zz]" in text, failures)
    bad, n = token_problems({"a": b"[x3][x1]"}, ops, refused)
    _expect("tokens: a clean value passes", not bad and n == 2, failures)

    f = Fault("test", minority=[1], majority=[2, 3])
    f.t_start, f.t_end = 100, 200
    ops = [_fake_op("put", "k", "v", True, 1, 150, 160),
           _fake_op("put", "k", "v", True, 2, 150, 160),
           _fake_op("put", "k", "v", True, 1, 150, 250),
           _fake_op("put", "k", "v", False, 1, 150, 160)]
    probes = [(f, 1, "SET", 120, 130, "OK"),
              (f, 1, "GET", 120, 130, RespError("CLUSTERDOWN x")),
              (f, 1, "GET", 120, 130, None)]
    bad, n, m = minority_problems([f], ops, probes)
    _expect("minority: answers during the fault are flagged (3 of them)",
            len(bad) == 3 and n == 2 and m == 3, failures)
    bad, _, _ = minority_problems([f], ops[1:2] + ops[3:], probes[1:2])
    _expect("minority: errors and other members pass", not bad, failures)

    lincheck = os.path.join(build_dir(), "bin", "craft-lincheck")
    good = ("c1 1 2 put k \"a\"\nc2 3 4 get k -> \"a\"\n"
            "c1 5 ? put k \"b\"\nc2 6 7 get k -> \"b\"\n")
    stale = good + "c3 8 9 get k -> \"a\"\n"
    for name, text, want in (("a linearizable history", good, 0),
                             ("a stale read", stale, 1)):
        p = subprocess.run([lincheck, "-"], input=text, text=True,
                           capture_output=True, timeout=30)
        _expect("craft-lincheck: %s exits %d" % (name, want),
                p.returncode == want, failures)

    # A craft-cli snapshot file with one key and one session, in both KV
    # snapshot versions (version 2 adds a u64 version per key).
    for ver in (1, 2):
        kv = bytearray(b"CRAFTKV\0" + struct.pack("<IIQQQQI", ver, 0, 42, 7,
                                                  1, 1, 0))
        kv += struct.pack("<cIIq", b"K", 1, 2, 9)
        kv += (struct.pack("<Q", 3) if ver == 2 else b"") + b"\0" * 4
        kv += b"kvv" + b"\0" * 4
        kv += struct.pack("<cQQQII", b"S", 5, 7, 2, 1, 0)
        kv += struct.pack("<QII", 2, 4, 0) + b":12\r" + b"\0" * 4
        kv += b"E" + b"\0" * 4
        path = os.path.join(build_dir(), "nemesis-selftest.snap")
        with open(path, "wb") as fh:
            fh.write(b"CRAFTSNP" + b"\0" * 40 + bytes(kv))
        try:
            keys, meta, sessions, applied = read_state(path)
        finally:
            os.unlink(path)
        _expect("read_state parses a version %d snapshot" % ver,
                keys == {b"k": b"vv"} and
                meta == {b"k": (9, 3 if ver == 2 else 0)} and
                sessions == {5: (2, [(2, b":12\r")])} and applied == 42,
                failures)


def fw_child():
    """--fw-child: hold a firewall chain until a signal (for the
    self-test of the cleanup paths)."""
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    fw = Firewall((1,))
    try:
        print("ready %s" % fw.chain, flush=True)
        time.sleep(60)
    except Interrupted:
        pass
    finally:
        ignore_signals()
        fw.close()


def _chains():
    return re.findall(r"^-N (%s\d+)$" % CHAIN_PREFIX,
                      iptables("-S", check=False).stdout, re.M)


def _jumps(chain):
    return [l for l in iptables("-S", check=False).stdout.splitlines()
            if ("-j %s" % chain) in l]


def _connect(src, dst, port, timeout=0.5):
    """'ok', 'refused' (an error at once) or 'timeout'."""
    import socket
    s = socket.socket()
    s.settimeout(timeout)
    try:
        if src:
            s.bind((src, 0))
        s.connect((dst, port))
        return "ok"
    except socket.timeout:
        return "timeout"
    except OSError:
        return "refused"
    finally:
        s.close()


def selftest_firewall(failures):
    for sig, name in ((signal.SIGTERM, "SIGTERM"), (signal.SIGINT, "SIGINT"),
                      (signal.SIGKILL, "SIGKILL")):
        p = subprocess.Popen([sys.executable, os.path.abspath(__file__),
                              "--fw-child"], stdout=subprocess.PIPE,
                             text=True)
        try:
            line = p.stdout.readline().split()
            chain = line[1] if len(line) == 2 else "?"
            _expect("a firewall makes its chain %s and both jumps" % chain,
                    chain in _chains() and len(_jumps(chain)) == 2, failures)
            p.send_signal(sig)
            p.wait(30)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        if sig == signal.SIGKILL:
            _expect("after SIGKILL the chain is left behind",
                    chain in _chains(), failures)
            # (A nemesis test starting meanwhile may remove it first.)
            remove_stale_chains()
            _expect("the next start removes the stale chain",
                    chain not in _chains() and not _jumps(chain), failures)
        else:
            _expect("after %s the chain and its jumps are gone" % name,
                    chain not in _chains() and not _jumps(chain), failures)

    import socket
    a, b = HOSTS[0], HOSTS[1]
    listeners = []
    for _ in range(2):
        ls = socket.socket()
        ls.bind((b, 0))
        ls.listen(16)
        listeners.append(ls)
    ours, other = (ls.getsockname()[1] for ls in listeners)
    fw = Firewall((ours,))
    try:
        fw.cut(a, b, silent=False)
        _expect("a reset cut fails a connection at once",
                _connect(a, b, ours) == "refused", failures)
        _expect("another port between the same addresses still connects",
                _connect(a, b, other) == "ok", failures)
        _expect("another source address still connects",
                _connect(None, b, ours) == "ok", failures)
        fw.heal()
        fw.cut(a, b, silent=True)
        _expect("a silent cut leaves a connection hanging",
                _connect(a, b, ours) == "timeout", failures)
        fw.heal()
        _expect("healed, it connects again", _connect(a, b, ours) == "ok",
                failures)
    finally:
        fw.close()
        for ls in listeners:
            ls.close()
    _expect("close() removes the chain", fw.chain not in _chains(),
            failures)


def selftest_close_retry(failures):
    """A Firewall.close() interrupted inside the chain removal must stay
    open, so that the atexit hook removes the chain."""
    global _remove_chain
    real = _remove_chain
    calls = []

    def interrupted_once(chain):
        calls.append(chain)
        if len(calls) == 1:
            raise Interrupted("signal during cleanup")

    fw = Firewall.__new__(Firewall)
    fw.chain, fw.rules, fw.closed = CHAIN_PREFIX + "selftest", 0, False
    _remove_chain = interrupted_once
    try:
        try:
            fw.close()
        except Interrupted:
            pass
        _expect("an interrupted close() is not marked closed",
                not fw.closed, failures)
        fw.close()
        fw.close()
        _expect("the next close() removes the chain, once",
                fw.closed and len(calls) == 2, failures)
    finally:
        _remove_chain = real


def selftest():
    print("nemesis self-test", flush=True)
    failures = []
    selftest_checks(failures)
    selftest_close_retry(failures)
    problem = iptables_problem()
    if problem:
        print("   firewall cleanup not tested: iptables not usable (%s)"
              % problem)
    else:
        selftest_firewall(failures)
    if failures:
        print("self-test FAILED: %d checks" % len(failures))
        return 1
    print("self-test ok")
    return 0


# ---- main -------------------------------------------------------------------

class Interrupted(BaseException):
    pass


def on_signal(signum, _frame):
    raise Interrupted("signal %d" % signum)


def ignore_signals():
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGALRM):
        signal.signal(sig, signal.SIG_IGN)


def main():
    ap = argparse.ArgumentParser(
        description="Faults on real craftd processes; see docs/nemesis.md.")
    ap.add_argument("scenario", nargs="?", help="one of --list")
    ap.add_argument("--list", action="store_true", help="list scenarios")
    ap.add_argument("--seed", type=int, help="replay this seed")
    ap.add_argument("--soak", type=float, metavar="SECONDS",
                    help="a random fault schedule for SECONDS")
    ap.add_argument("--nodes", type=int, default=3, choices=(3, 5),
                    help="members in the soak (default 3)")
    ap.add_argument("--selftest", action="store_true",
                    help="check the checks and the firewall cleanup")
    ap.add_argument("--fw-child", action="store_true",
                    help=argparse.SUPPRESS)
    ap.add_argument("--budget", type=float, default=None,
                    help="seconds before the run gives up (default 60, or "
                    "the soak time plus 120)")
    a = ap.parse_args()
    if a.list:
        print("\n".join(SCENARIOS))
        return 0
    if a.selftest:
        return selftest()
    if a.fw_child:
        fw_child()
        return 0
    if (a.scenario is None) == (a.soak is None):
        ap.error("name one scenario, or --soak SECONDS")
    if a.scenario is not None and a.scenario not in SCENARIOS:
        ap.error("unknown scenario %r (--list)" % a.scenario)
    seed = a.seed if a.seed is not None else random.randrange(1 << 30)
    if a.soak is not None:
        name, nodes, need_fw, snaps = "soak", a.nodes, False, True
        budget = a.budget or a.soak + 120
        replay = "--soak %g --nodes %d --seed %d" % (a.soak, nodes, seed)
    else:
        name = a.scenario
        fn, nodes, need_fw, snaps = SCENARIOS[name]
        budget = a.budget or 80
        replay = "%s --seed %d" % (name, seed)
    print("nemesis %s: seed %d (replay: %s %s)" % (
        name, seed, os.path.relpath(__file__), replay), flush=True)
    problem = iptables_problem()
    if problem and need_fw:
        print("SKIPPED: %s needs iptables to partition members, and this "
              "machine does not allow it (%s)" % (name, problem), flush=True)
        return SKIP
    if problem:
        log("no partitions in this run: iptables not usable (%s)" % problem)
    lincheck = os.path.join(build_dir(), "bin", "craft-lincheck")
    if not os.path.exists(lincheck):
        print("craft-lincheck not built (%s)" % lincheck)
        return 1
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGALRM, on_signal)
    # Our own deadline, below ctest's TIMEOUT, so that cleanup always runs.
    signal.alarm(int(budget))
    run = Run(name, nodes, seed, budget_s=budget, snapshots=snaps,
              partitions=problem is None and (need_fw or a.soak is not None))
    t = time.monotonic()
    try:
        run.start()
        if a.soak is not None:
            soak(run, a.soak)
        else:
            fn(run)
        run.finish()
        signal.alarm(0)
        print("nemesis %s: ok (%.1fs, seed %d)" % (
            name, time.monotonic() - t, seed), flush=True)
        return 0
    except BaseException:
        signal.alarm(0)
        print("nemesis %s FAILED (seed %d; replay: %s %s)" % (
            name, seed, os.path.relpath(__file__), replay), flush=True)
        try:
            run.cluster.dump_logs()
        except Exception:
            pass
        raise
    finally:
        # A second SIGINT/SIGTERM (Ctrl-C twice, ctest's timeout) or the
        # budget alarm must not interrupt the cleanup: it would leave the
        # firewall chain and the craftd processes behind.
        ignore_signals()
        run.close()


if __name__ == "__main__":
    sys.exit(main())
