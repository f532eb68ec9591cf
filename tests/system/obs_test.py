#!/usr/bin/env python3
"""
Observability system tests: INFO sections, the Prometheus endpoint
(--metrics-addr), structured log lines and craft-timeline, craft-cli status.
Real craftd processes on 127.0.0.1 (tests/system/craftd_harness.py).

    obs_test.py [test ...]      run the named tests (default: all)
    CRAFT_SEED=n                replay the random choices of a run
"""
import json
import math
import os
import re
import socket
import subprocess
import time

from craftd_harness import Cluster, Conn, RespError, build_dir, \
    free_port_pair, poll, run_tests


def tool(name):
    p = os.path.join(build_dir(), "bin", name)
    assert os.path.exists(p), "%s is not built" % name
    return p


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def with_metrics(c):
    """Give every node of c its own --metrics-addr; returns {id: port}."""
    ports = {}
    for nd in c.nodes:
        ports[nd.id] = free_port()
        base = nd.args

        def args(base=base, port=ports[nd.id]):
            return base() + ["--metrics-addr", "127.0.0.1:%d" % port]
        nd.args = args
    return ports


def info_sections(text):
    """{section name (lower case): {field: value}} of INFO text."""
    out, cur = {}, None
    for line in text.split("\r\n"):
        if line.startswith("# "):
            cur = line[2:].lower()
            assert cur not in out, "section %s twice" % cur
            out[cur] = {}
        elif line:
            assert cur is not None and ":" in line, line
            k, v = line.split(":", 1)
            out[cur][k] = v
    return out


def info(port, *sections):
    c = Conn(port)
    try:
        r = c.call("INFO", *sections)
    finally:
        c.close()
    assert isinstance(r, bytes), r
    text = r.decode()
    assert text == "" or text.endswith("\r\n"), repr(text[-20:])
    return info_sections(text)


def kv(s):
    return dict(f.split("=", 1) for f in s.split(","))


# ---- INFO -------------------------------------------------------------

FIELDS = {
    "server": ["redis_version", "craftd_version", "process_id", "run_id",
               "tcp_port", "uptime_in_seconds", "craft_raft_port"],
    "clients": ["connected_clients", "maxclients", "blocked_clients"],
    "memory": ["used_memory", "used_memory_rss", "used_memory_human"],
    "persistence": ["aof_enabled", "rdb_bgsave_in_progress",
                    "rdb_last_save_time", "craft_snapshot_index",
                    "craft_fsync_count", "craft_fsync_p99_ms",
                    "craft_log_first_index", "craft_log_last_index"],
    "stats": ["total_connections_received", "total_commands_processed",
              "instantaneous_ops_per_sec", "rejected_connections",
              "keyspace_hits", "keyspace_misses", "expired_keys"],
    "replication": ["role", "connected_slaves", "master_repl_offset"],
    "raft": ["raft_node_id", "raft_role", "raft_term", "raft_leader_id",
             "raft_leader_addr", "raft_commit_index", "raft_applied_index",
             "raft_first_index", "raft_last_index", "raft_log_bytes",
             "raft_snapshot_index", "raft_members"],
    "cluster": ["cluster_enabled"],
    "keyspace": [],
}


def test_info():
    c = Cluster(3, name="obs-info", extra=["--snapshot-bytes", "32k"])
    try:
        c.start()
        lid = c.leader()
        leader = c.node(lid)
        fol = next(nd for nd in c.nodes if nd.id != lid)
        before = info(leader.port)
        for sec, fields in FIELDS.items():
            assert sec in before, (sec, list(before))
            for f in fields:
                assert f in before[sec], (sec, f, before[sec])
        assert "commandstats" not in before
        mem = before["memory"]
        # used_memory: malloc's figure (sampled; 0 under ASan, whose
        # malloc mallinfo2 does not see), below 1 TiB; RSS at least a page.
        assert 0 <= int(mem["used_memory"]) < 1 << 40, mem
        assert int(mem["used_memory_rss"]) >= 4096, mem
        srv = before["server"]
        assert int(srv["tcp_port"]) == leader.port
        assert int(srv["process_id"]) == leader.proc.pid
        assert re.fullmatch(r"[0-9a-f]{40}", srv["run_id"]), srv["run_id"]
        assert int(before["memory"]["used_memory_rss"]) > 100000
        assert before["persistence"]["aof_enabled"] == "1"
        assert before["clients"]["blocked_clients"] == "0"
        assert int(before["clients"]["connected_clients"]) >= 1

        # Writes: the commit index and the counters move; keys with a TTL
        # are counted; GET hits and misses are counted.
        k = Conn(leader.port)
        for i in range(20):
            assert k.call("SET", "k%d" % i, "v") == "OK"
        assert k.call("SET", "ttl1", "v", "EX", "1000") == "OK"
        assert k.call("SET", "ttl2", "v", "PX", "900000") == "OK"
        assert k.call("GET", "k1") == b"v"
        assert k.call("GET", "nope") is None
        k.close()
        after = info(leader.port)
        r0, r1 = before["raft"], after["raft"]
        assert int(r1["raft_commit_index"]) >= \
            int(r0["raft_commit_index"]) + 22, (r0, r1)
        st0, st1 = before["stats"], after["stats"]
        assert int(st1["total_commands_processed"]) >= \
            int(st0["total_commands_processed"]) + 24
        assert int(st1["keyspace_hits"]) == int(st0["keyspace_hits"]) + 1
        assert int(st1["keyspace_misses"]) == int(st0["keyspace_misses"]) + 1
        assert int(st1["total_connections_received"]) > \
            int(st0["total_connections_received"])
        db0 = kv(after["keyspace"]["db0"])
        assert db0 == {"keys": "22", "expires": "2", "avg_ttl": "0"}, db0
        assert int(after["persistence"]["craft_fsync_count"]) > \
            int(before["persistence"]["craft_fsync_count"])

        # Roles: the leader is master with two slaves, a follower a slave
        # that names the leader.
        assert after["replication"]["role"] == "master"
        assert after["replication"]["connected_slaves"] == "2"
        assert r1["raft_role"] == "leader"
        fi = info(fol.port)
        assert fi["replication"]["role"] == "slave"
        assert fi["replication"]["master_host"] == "127.0.0.1"
        assert int(fi["replication"]["master_port"]) == leader.port
        assert fi["replication"]["master_link_status"] == "up"
        assert fi["raft"]["raft_role"] == "follower"
        assert fi["raft"]["raft_leader_id"] == str(lid)
        assert fi["raft"]["raft_leader_addr"] == "127.0.0.1:%d" % leader.port

        # Each peer, on the leader: address, match, next, lag, state; the
        # lag drains to 0 once the cluster is quiet.
        def quiet():
            r = info(leader.port, "raft")["raft"]
            last = int(r["raft_last_index"])
            ok = True
            for nd in c.nodes:
                if nd.id == lid:
                    continue
                p = kv(r["raft_peer_%d" % nd.id])
                assert p["addr"] == "127.0.0.1:%d" % nd.port, p
                assert p["state"] in ("probe", "replicate", "snapshot"), p
                assert int(p["next"]) <= last + 1, p
                assert int(p["bytes_sent"]) > 0, p
                assert int(p["bytes_received"]) > 0, p
                ok = ok and p["lag"] == "0" and int(p["match"]) == last and \
                    p["state"] == "replicate" and \
                    int(p["last_contact_ms"]) < 1000
            return ok
        poll("lag 0 on every peer", quiet, 10)
        # A follower has no progress view of its peers.
        fp = kv(info(fol.port, "raft")["raft"]["raft_peer_%d" % lid])
        assert "lag" not in fp and "last_contact_ms" not in fp, fp

        # Section selection, as Redis: case-insensitive, several at once,
        # all/everything with commandstats, unknown names select nothing.
        only = info(leader.port, "RaFt")
        assert list(only) == ["raft"], list(only)
        two = info(leader.port, "server", "KEYSPACE")
        assert list(two) == ["server", "keyspace"], list(two)
        for word in ("all", "everything"):
            a = info(leader.port, word)
            assert "commandstats" in a and "raft" in a, list(a)
            cs = kv(a["commandstats"]["cmdstat_set"])
            assert int(cs["calls"]) >= 22, cs
        d = info(leader.port, "default")
        assert list(d) == list(FIELDS), list(d)
        assert info(leader.port, "nosuchsection") == {}

        # Snapshots: past --snapshot-bytes every member takes one, and the
        # persistence section says when, how big, how long.
        p0 = info(leader.port, "persistence")["persistence"]
        assert p0["craft_snapshots_taken"] == "0", p0
        assert p0["rdb_last_bgsave_time_sec"] == "-1", p0
        k = Conn(leader.port)
        for i in range(120):
            assert k.call("SET", "bulk%d" % i, "x" * 400) == "OK"
        k.close()

        def snapshotted():
            p = info(leader.port, "persistence")["persistence"]
            return int(p["craft_snapshots_taken"]) >= 1 and p
        p1 = poll("a snapshot on the leader", snapshotted, 20)
        assert int(p1["craft_snapshot_last_index"]) > 0, p1
        assert int(p1["craft_snapshot_last_bytes"]) > 10000, p1
        assert int(p1["rdb_last_bgsave_time_sec"]) >= 0, p1
        assert p1["rdb_last_bgsave_status"] == "ok", p1
        assert int(p1["rdb_last_save_time"]) >= \
            int(p0["rdb_last_save_time"]), (p0, p1)

        # CONFIG RESETSTAT zeroes the command statistics, not the keys.
        k = Conn(leader.port)
        assert k.call("CONFIG", "RESETSTAT") == "OK"
        k.close()
        reset = info(leader.port)
        assert int(reset["stats"]["total_commands_processed"]) <= 3, \
            reset["stats"]
        assert int(reset["stats"]["keyspace_hits"]) == 0, reset["stats"]
        assert int(kv(reset["keyspace"]["db0"])["keys"]) == 142, reset
    finally:
        c.close()


# ---- /metrics -----------------------------------------------------------

NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"')


def parse_value(s):
    if s in ("+Inf", "-Inf", "NaN"):
        return float(s.replace("Inf", "inf").replace("NaN", "nan"))
    assert re.fullmatch(r"[-+]?[0-9]*\.?[0-9]+([eE][-+]?[0-9]+)?", s), s
    return float(s)


def parse_labels(s):
    """'{a="1",b="x"}' -> {a: 1, b: x}, strictly."""
    assert s.startswith("{") and s.endswith("}"), s
    body, out, pos = s[1:-1], {}, 0
    while pos < len(body):
        m = LABEL.match(body, pos)
        assert m, "bad label at %r" % body[pos:]
        assert m.group(1) not in out, "label %s twice" % m.group(1)
        out[m.group(1)] = m.group(2)
        pos = m.end()
        if pos < len(body):
            assert body[pos] == ",", body
            pos += 1
    return out


def parse_exposition(text):
    """A strict reader of the text format 0.0.4: returns
    {family: {"type": t, "samples": [(name, labels, value)]}} and fails on
    anything out of place."""
    assert text.endswith("\n"), "no final newline"
    fams, order, cur = {}, [], None
    for line in text[:-1].split("\n"):
        assert line and line == line.strip(), "blank or padded %r" % line
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            kind, rest = line[2:6], line[7:]
            name, _, arg = rest.partition(" ")
            assert NAME.match(name), name
            f = fams.setdefault(name, {"type": None, "help": None,
                                       "samples": []})
            if name not in order:
                order.append(name)
            assert not f["samples"], "%s declared after samples" % name
            key = kind.lower()
            assert f[key] is None, "%s %s twice" % (kind, name)
            if kind == "TYPE":
                assert arg in ("counter", "gauge", "histogram", "summary",
                               "untyped"), line
            assert arg, line
            f[key] = arg
            cur = name
            continue
        assert not line.startswith("#"), line
        m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)\Z", line)
        assert m, "bad sample line %r" % line
        name, labels, value = m.group(1), m.group(2), m.group(3)
        labels = parse_labels(labels) if labels else {}
        fam = name
        for suffix in ("_bucket", "_sum", "_count"):
            if name.endswith(suffix) and name[:-len(suffix)] in fams and \
                    fams[name[:-len(suffix)]]["type"] == "histogram":
                fam = name[:-len(suffix)]
        assert fam == cur, "sample %s outside its family block (%s)" % (
            name, cur)
        fams[fam]["samples"].append((name, labels, parse_value(value)))
    for name, f in fams.items():
        assert f["type"] and f["help"], name
        if f["type"] == "counter":
            assert name.endswith("_total"), name
            assert all(v >= 0 for _, _, v in f["samples"]), name
        if f["type"] == "histogram":
            check_histogram(name, f["samples"])
    return fams


def check_histogram(name, samples):
    series = {}
    for n, labels, v in samples:
        key = tuple(sorted((k, x) for k, x in labels.items() if k != "le"))
        s = series.setdefault(key, {"buckets": [], "sum": None,
                                    "count": None})
        if n == name + "_bucket":
            s["buckets"].append((parse_value(labels["le"]), v))
        elif n == name + "_sum":
            s["sum"] = v
        elif n == name + "_count":
            s["count"] = v
        else:
            raise AssertionError("stray sample %s in %s" % (n, name))
    for key, s in series.items():
        b = s["buckets"]
        assert b and b[-1][0] == math.inf, (name, key)
        assert [x for x, _ in b] == sorted(x for x, _ in b), (name, key)
        assert all(b[i][1] <= b[i + 1][1] for i in range(len(b) - 1)), b
        assert s["count"] == b[-1][1], (name, key, s)
        assert s["sum"] is not None and s["sum"] >= 0, (name, key)


def http(port, request, timeout=10.0):
    """Send raw bytes, read until the server closes: (status, headers,
    body); status None if it closed without answering."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        if request:
            s.sendall(request)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    if not data:
        return None, {}, b""
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for l in lines[1:]:
        k, v = l.split(": ", 1)
        headers[k.lower()] = v
    if "content-length" in headers and not request.startswith(b"HEAD"):
        assert len(body) == int(headers["content-length"]), headers
    return status, headers, body


def scrape(port):
    st, h, body = http(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n"
                       b"User-Agent: test\r\n\r\n")
    assert st == 200, st
    assert h["content-type"] == \
        "text/plain; version=0.0.4; charset=utf-8", h
    assert h["connection"] == "close", h
    return parse_exposition(body.decode())


def value(fams, name, **labels):
    base = re.sub(r"_(bucket|sum|count)\Z", "", name)
    fam = fams[name] if name in fams else fams[base]
    for n, l, v in fam["samples"]:
        if n == name and all(l.get(k) == str(x) for k, x in labels.items()):
            return v
    raise AssertionError("no %s%r" % (name, labels))


def test_metrics():
    c = Cluster(3, name="obs-metrics")
    mports = with_metrics(c)
    try:
        c.start()
        lid = c.leader()
        leader = c.node(lid)
        mp = mports[lid]
        m0 = scrape(mp)
        for fam in ("craftd_commands_total", "craftd_command_duration_seconds",
                    "craftd_fsync_duration_seconds",
                    "craftd_peer_bytes_sent_total",
                    "craftd_peer_bytes_received_total",
                    "craftd_elections_total", "craftd_leader_changes_total",
                    "craftd_term", "craftd_commit_index",
                    "craftd_applied_index", "craftd_is_leader",
                    "craftd_snapshot_duration_seconds",
                    "craftd_snapshots_total", "craftd_connected_clients",
                    "craftd_keys", "process_resident_memory_bytes"):
            assert fam in m0, fam
        assert value(m0, "craftd_is_leader") == 1
        assert value(m0, "craftd_leader_changes_total") >= 1
        k = Conn(leader.port)
        for i in range(30):
            assert k.call("SET", "m%d" % i, "x" * 100) == "OK"
        for i in range(10):
            assert k.call("GET", "m%d" % i) == b"x" * 100
        assert isinstance(k.call("NOSUCHCMD"), RespError)
        k.close()
        m1 = scrape(mp)
        sets0 = sum(v for n, l, v in m0["craftd_commands_total"]["samples"]
                    if l["cmd"] == "set")
        assert value(m1, "craftd_commands_total", cmd="set",
                     result="ok") == sets0 + 30
        assert value(m1, "craftd_commands_total", cmd="get",
                     result="ok") >= 10
        assert value(m1, "craftd_commands_total", cmd="unknown",
                     result="error") == 1
        assert value(m1, "craftd_command_duration_seconds_count",
                     **{"class": "write"}) >= 30
        assert value(m1, "craftd_fsync_duration_seconds_count") > \
            value(m0, "craftd_fsync_duration_seconds_count")
        assert value(m1, "craftd_commit_index") >= \
            value(m0, "craftd_commit_index") + 30
        assert value(m1, "craftd_keys") == 30
        for nd in c.nodes:
            if nd.id == lid:
                continue
            sent0 = value(m0, "craftd_peer_bytes_sent_total", peer=nd.id)
            sent1 = value(m1, "craftd_peer_bytes_sent_total", peer=nd.id)
            assert sent1 >= sent0 + 30 * 100, (sent0, sent1)
            assert value(m1, "craftd_peer_bytes_received_total",
                         peer=nd.id) > 0
        # A follower: not leader, the same term, a commit index that
        # catches up.
        fol = next(nd for nd in c.nodes if nd.id != lid)
        fm = scrape(mports[fol.id])
        assert value(fm, "craftd_is_leader") == 0
        assert value(fm, "craftd_term") == value(m1, "craftd_term")

        # Bad HTTP gets an answer (or is cut off) and closed; the node
        # goes on serving.
        assert http(mp, b"GET /nope HTTP/1.1\r\n\r\n")[0] == 404
        assert http(mp, b"POST /metrics HTTP/1.1\r\n\r\n")[0] == 405
        assert http(mp, b"GET /metrics HTTP/2.0\r\n\r\n")[0] == 400
        assert http(mp, b"\x16\x03\x01\x00\xa5garbage\r\n\r\n")[0] == 400
        assert http(mp, b"GET  /metrics HTTP/1.1\r\n\r\n")[0] == 400
        assert http(mp, b"G" * 20000)[0] == 431
        st, h, body = http(mp, b"HEAD /metrics HTTP/1.0\r\n\r\n")
        assert st == 200 and body == b"" and int(h["content-length"]) > 0
        # Idle connections (health checks, port scans) that never send a
        # byte: more than the limit do not keep a scrape out (the oldest
        # incomplete one is evicted), and each is closed after the first
        # byte timeout (1 s), well before the 5 s request bound.
        t0 = time.monotonic()
        idle = [socket.create_connection(("127.0.0.1", mp), timeout=15)
                for _ in range(20)]
        try:
            m_idle = scrape(mp)
            assert value(m_idle, "craftd_is_leader") == 1
            dt = time.monotonic() - t0
            assert dt < 1.0, "scrape behind 20 idle connections: %.2fs" % dt
            for s in idle:
                try:
                    data = s.recv(4096)
                except OSError:
                    data = b""
                assert data == b"", data
            dt = time.monotonic() - t0
            assert dt < 4.0, "idle connections closed after %.2fs" % dt
        finally:
            for s in idle:
                s.close()
        # Slowloris: a request that never ends is cut off after the
        # request timeout (5 s), and many at once are refused beyond the
        # limit without hurting scrapes that come later.
        t0 = time.monotonic()
        slow = [socket.create_connection(("127.0.0.1", mp), timeout=15)
                for _ in range(20)]
        for s in slow:
            s.sendall(b"GET /metrics HTTP/1.1\r\n")
        closed = 0
        for s in slow:
            try:
                data = s.recv(4096)
            except OSError:
                data = b""
            closed += 1
            assert data == b"" or data.startswith(b"HTTP/1.1 408"), data
            s.close()
        dt = time.monotonic() - t0
        assert closed == 20 and dt < 12, dt
        assert Conn(leader.port).call("PING") == "PONG"
        m2 = scrape(mp)
        assert value(m2, "craftd_is_leader") == 1

        # The flag: bad values are usage errors (2); an address in use
        # stops the start with a clear message (1).
        craftd = leader.args()[0]
        base = ["--id", "1", "--cluster",
                "1=127.0.0.1:%d" % free_port_pair(10000),
                "--data-dir", os.path.join(c.tmp, "flagtest")]
        for bad, msg in (("nonsense", "is not HOST:PORT"),
                         ("localhost:9121", "not a numeric IPv4"),
                         ("127.0.0.1:0", "not in 1..65535"),
                         ("127.0.0.1:99999", "not in 1..65535")):
            p = subprocess.run([craftd] + base + ["--metrics-addr", bad],
                               capture_output=True, timeout=10)
            assert p.returncode == 2 and msg in p.stderr.decode(), \
                (bad, p.returncode, p.stderr)
        p = subprocess.run([craftd] + base + ["--metrics-addr",
                                              "127.0.0.1:%d" % mp],
                           capture_output=True, timeout=10)
        assert p.returncode == 1 and \
            "cannot listen for metrics" in p.stderr.decode(), p.stderr
    finally:
        c.close()


# ---- logs and craft-timeline --------------------------------------------

EVENT = re.compile(
    r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z [DIWE] node=(\d+) term=(\d+) "
    r"role=(follower|pre-candidate|candidate|leader) event=([a-z_]+)"
    r"( [a-z_]+=(\"(?:[^\"\\]|\\.)*\"|[^ \"]+))*( -- .*)?\Z")


def timeline(*args):
    p = subprocess.run([tool("craft-timeline")] + list(args),
                       capture_output=True, timeout=30)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def test_timeline():
    c = Cluster(3, name="obs-timeline")
    try:
        c.start()
        lid = c.leader()
        k = Conn(c.node(lid).port)
        assert k.call("SET", "a", "1") == "OK"
        k.close()
        old_term = int(c.node(lid).info()["raft_term"])
        c.node(lid).kill9()
        lid2 = poll("a new leader", lambda: (lambda x: x != lid and x)(
            c.leader()), 20)
        new_term = int(c.node(lid2).info()["raft_term"])
        assert new_term > old_term
        for nd in c.nodes:
            if nd.alive():
                assert nd.stop() == 0, nd.tail()
        logs = [nd.log for nd in c.nodes]
        # Every line of every log is a structured event.
        for path in logs:
            with open(path) as f:
                lines = f.read().splitlines()
            assert lines, path
            for line in lines:
                assert EVENT.match(line), "not an event line: %r" % line
            assert any(l.endswith(" ready") and "event=ready" in l
                       for l in lines)
        rc, out, err = timeline("--tsv", *logs)
        assert rc == 0 and err == "", (rc, err)
        rows = [l.split("\t") for l in out.splitlines()]
        times = [r[0] for r in rows]
        assert times == sorted(times), "not in time order"
        # The election of the new term, in order on the winner: it stood
        # as a candidate in new_term, then became leader in it.
        cand = [i for i, r in enumerate(rows) if r[1] == str(lid2) and
                r[4] == "became_candidate" and int(r[2]) == new_term]
        won = [i for i, r in enumerate(rows) if r[1] == str(lid2) and
               r[4] == "became_leader" and int(r[2]) == new_term]
        assert cand and won and cand[0] < won[0], (cand, won, out)
        # The survivors saw the leader change, after the old leader's
        # last line.
        last_old = max(i for i, r in enumerate(rows) if r[1] == str(lid))
        for nd in c.nodes:
            if nd.id != lid:
                seen = [i for i, r in enumerate(rows) if r[1] == str(nd.id)
                        and r[4] == "leader_changed" and
                        int(r[2]) == new_term]
                assert seen and seen[0] > last_old, (nd.id, seen, last_old)
        # Columns: a header with one column per node; each event in its
        # node's column.
        rc, out, err = timeline("--events", "became_*,leader_changed",
                                "--width", "40", *logs)
        assert rc == 0, err
        lines = out.splitlines()
        head = [h.strip() for h in lines[0].split(" | ")]
        assert head == ["TIME", "node 1", "node 2", "node 3"], head
        assert len(lines) > 3
        for l in lines[1:]:
            cells = (l + " ").split(" | ")  # the last cell is unpadded
            assert len(cells) == 4, l
            filled = [i for i, x in enumerate(cells[1:]) if x.strip()]
            assert len(filled) == 1, l
            assert re.search(r"\b(became_\w+|leader_changed)\b",
                             cells[1 + filled[0]]), l
        # --since/--until select by time; a garbage line is skipped and
        # counted, not fatal.
        t_mid = rows[len(rows) // 2][0]
        rc, out, err = timeline("--tsv", "--since", t_mid, *logs)
        assert rc == 0 and all(l.split("\t")[0] >= t_mid
                               for l in out.splitlines())
        rc, out, err = timeline("--tsv", "--until", t_mid, *logs)
        assert rc == 0 and all(l.split("\t")[0] <= t_mid
                               for l in out.splitlines())
        with open(logs[0], "ab") as f:
            f.write(b"garbage \xff\xfe line\nanother one\n")
        rc, out2, err = timeline("--tsv", *logs)
        assert rc == 0, err
        assert "skipped 2 lines" in err and logs[0] in err, err
        rc, _, err = timeline(os.path.join(c.tmp, "missing.log"))
        assert rc == 1 and "cannot read" in err, err
        rc, _, err = timeline("--width", "3", logs[0])
        assert rc == 2 and "--width" in err, err
    finally:
        c.close()


def test_log_json():
    c = Cluster(1, name="obs-json", extra=["--log-format", "json"])
    try:
        c.nodes[0].start(wait=False)
        # The harness waits for a line ending in " ready"; a JSON log has
        # none, so wait for the client port instead.
        poll("node answers", lambda: Conn(c.nodes[0].port).call("PING") ==
             "PONG", 15)
        c.leader()
        assert c.nodes[0].stop() == 0
        with open(c.nodes[0].log) as f:
            recs = [json.loads(l) for l in f.read().splitlines()]
        assert recs
        for r in recs:
            for key in ("time", "level", "node", "term", "role", "event"):
                assert key in r, r
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z",
                                r["time"]), r
        events = [r["event"] for r in recs]
        assert "ready" in events and "became_leader" in events and \
            "stopped" in events, events
        ready = recs[events.index("ready")]
        assert ready["members"] == 1 and ready["msg"] == "ready", ready
        # craft-timeline reads JSON logs as well.
        rc, out, err = timeline("--tsv", c.nodes[0].log)
        assert rc == 0 and err == "", (rc, err)
        rows = [l.split("\t") for l in out.splitlines()]
        assert [r[4] for r in rows] == events, (rows, events)
        assert rows[events.index("ready")][5].endswith("-- ready"), rows
    finally:
        c.close()


def test_expires_large():
    """INFO's expires= with many keys, a quarter of them with a TTL (the
    count is the state machine's; it once was a background pass)."""
    c = Cluster(1, name="obs-expires")
    try:
        c.start()
        c.leader()
        k = Conn(c.nodes[0].port, timeout=30)
        n, with_ttl = 25000, 5000
        batch = []
        for i in range(n):
            if i < with_ttl:
                batch.append(Conn.encode("SET", "e%d" % i, "v", "EX", 9999))
            else:
                batch.append(Conn.encode("SET", "e%d" % i, "v"))
        k.send_raw(b"".join(batch))
        for _ in range(n):
            assert k.read_reply() == "OK"
        k.close()

        def counted():
            db0 = kv(info(c.nodes[0].port, "keyspace")["keyspace"]["db0"])
            assert int(db0["keys"]) == n, db0
            return int(db0["expires"]) == with_ttl
        poll("expires=%d" % with_ttl, counted, 15)
    finally:
        c.close()


# ---- craft-cli status -----------------------------------------------------

def test_status():
    c = Cluster(3, name="obs-status")
    try:
        c.start()
        lid = c.leader()
        k = Conn(c.node(lid).port)
        for i in range(10):
            assert k.call("SET", "s%d" % i, "v") == "OK"
        k.close()
        spec = ",".join("%d=127.0.0.1:%d" % (nd.id, nd.port)
                        for nd in c.nodes)
        cli = tool("craft-cli")

        def run(*args):
            p = subprocess.run([cli, "status", "-c", spec] + list(args),
                               capture_output=True, timeout=30)
            return p.returncode, p.stdout.decode(), p.stderr.decode()

        def settled():
            rc, out, err = run("--json")
            d = json.loads(out)
            return rc == 0 and all(m.get("lag") == 0 for m in d["members"]) \
                and len({m["commit"] for m in d["members"]}) == 1 and d
        d = poll("status with every lag 0", settled, 10)
        assert d["leader"] == lid
        for m in d["members"]:
            for key in ("id", "address", "role", "term", "commit", "applied",
                        "lag", "snapshot", "contact", "state", "next"):
                assert key in m, (key, m)
            assert m["commit"] >= 11 and m["term"] == d["term"], m
            if m["id"] != lid:
                assert m["role"] == "follower" and m["state"] == \
                    "replicate", m
                assert m["contact"].endswith("ms ago"), m
        rc, out, err = run()
        assert rc == 0, err
        lines = out.splitlines()
        assert lines[0].split()[:10] == ["ID", "ADDRESS", "ROLE", "TERM",
                                         "COMMIT", "APPLIED", "LAG",
                                         "SNAPSHOT", "STATE", "CONTACT"], \
            lines[0]
        assert len(lines) == 4 and all(len(l) <= 120 for l in lines), out
        # A member down: shown, and the exit status says degraded.
        victim = next(nd for nd in c.nodes if nd.id != lid)
        victim.kill9()
        rc, out, err = run()
        assert rc == 1 and "unreachable" in out, (rc, out)
    finally:
        c.close()


TESTS = {
    "info": test_info,
    "metrics": test_metrics,
    "timeline": test_timeline,
    "log_json": test_log_json,
    "expires_large": test_expires_large,
    "status": test_status,
}

if __name__ == "__main__":
    run_tests(TESTS)
