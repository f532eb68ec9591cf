#!/usr/bin/env python3
"""
craftd security system tests (docs/craftd-running.md, "Security"):
passwords from a file, the cluster secret, file modes, bind addresses.

    security_test.py [test ...]    run the named tests (default: all)
"""
import os
import socket
import stat
import subprocess

from craftd_harness import (Cluster, Conn, RespError, craftd_path, poll,
                            run_tests)


def write_secret(path, data, mode=0o600):
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, mode)


def run_craftd(args, timeout=10):
    p = subprocess.run([craftd_path()] + args, capture_output=True,
                       timeout=timeout)
    return p.returncode, (p.stdout + p.stderr).decode()


def test_auth():
    c = Cluster(1, name="sec-auth")
    try:
        pw = os.path.join(c.tmp, "pw")
        nd = c.node(1)
        # A password file others can read is refused, naming the file.
        write_secret(pw, b"open sesame\n", 0o644)
        rc, out = run_craftd(nd.args()[1:] + ["--requirepass-file", pw])
        assert rc == 2 and "--requirepass-file" in out and "0600" in out, \
            (rc, out)
        rc, out = run_craftd(nd.args()[1:] + ["--requirepass-file",
                                              pw + ".missing"])
        assert rc == 2 and "cannot open" in out, (rc, out)
        os.chmod(pw, 0o600)
        c.extra += ["--requirepass-file", pw]
        nd.start()
        # The password is not on the command line (ps shows that).
        with open("/proc/%d/cmdline" % nd.proc.pid, "rb") as f:
            assert b"open sesame" not in f.read()
        k = Conn(nd.port)
        r = k.call("GET", "a")
        assert isinstance(r, RespError) and r.kind() == "NOAUTH", r
        r = k.call("AUTH", "open sesam")
        assert isinstance(r, RespError) and r.kind() == "WRONGPASS", r
        r = k.call("AUTH", "open sesame!")
        assert isinstance(r, RespError) and r.kind() == "WRONGPASS", r
        r = k.call("AUTH", "nobody", "open sesame")
        assert isinstance(r, RespError) and r.kind() == "WRONGPASS", r
        r = k.call("GET", "a")
        assert isinstance(r, RespError) and r.kind() == "NOAUTH", r
        assert k.call("AUTH", "open sesame") == "OK"
        poll("a write", lambda: k.call("SET", "a", "1") == "OK", 10)
        assert k.call("GET", "a") == b"1"
        k.close()
        k = Conn(nd.port)
        assert k.call("AUTH", "default", "open sesame") == "OK"
        assert k.call("GET", "a") == b"1"
        k.close()
    except BaseException:
        c.dump_logs()
        raise
    finally:
        c.close()


def read_frames(sock, n, timeout=5.0):
    """n craft frames (net/frame.h) as (kind, raw bytes)."""
    sock.settimeout(timeout)
    out = []
    buf = b""
    while len(out) < n:
        while len(buf) < 32:
            b = sock.recv(4096)
            assert b, "connection closed after %r" % (out,)
            buf += b
        length = int.from_bytes(buf[12:16], "little")
        while len(buf) < 32 + length:
            b = sock.recv(4096)
            assert b, "connection closed in a frame"
            buf += b
        out.append((buf[5], buf[:32 + length]))
        buf = buf[32 + length:]
    return out


def node_args_with(nd, extra):
    orig = nd.args
    nd.args = lambda: orig() + extra


def test_cluster_secret():
    c = Cluster(3, name="sec-secret")
    try:
        good = os.path.join(c.tmp, "secret")
        bad = os.path.join(c.tmp, "other-secret")
        secret = b"0123456789abcdef-the-cluster-secret"
        write_secret(good, secret + b"\n")
        write_secret(bad, b"a different secret\n")
        # A world-readable secret file is refused.
        os.chmod(bad, 0o640)
        rc, out = run_craftd(c.node(3).args()[1:] +
                             ["--cluster-secret-file", bad])
        assert rc == 2 and "--cluster-secret-file" in out and \
            "group or others" in out, (rc, out)
        os.chmod(bad, 0o600)
        node_args_with(c.node(1), ["--cluster-secret-file", good])
        node_args_with(c.node(2), ["--cluster-secret-file", good])
        node_args_with(c.node(3), ["--cluster-secret-file", bad])
        c.start()
        lid = c.leader()
        assert lid in (1, 2), lid
        k = Conn(c.node(lid).port)
        for i in range(20):
            assert k.call("SET", "k%d" % i, "v") == "OK"
        k.close()
        other = 3 - lid
        poll("the other good member applies",
             lambda: c.node(other).keys() == 20, 10)
        # Node 3 never joins: it is refused with a log line on both sides,
        # never leads and never receives the entries.
        def refused():
            return "authentication failed" in c.node(3).tail(200) and \
                "authentication failed" in c.node(lid).tail(200)
        poll("refusals logged", refused, 10)
        i3 = c.node(3).info()
        assert i3.get("raft_role") != "leader", i3
        assert c.node(3).keys() == 0
        # The secret never crosses the wire.  Play node 3 by hand: take
        # the leader's outgoing handshake on node 3's port and a handshake
        # on the leader's own port, and feed each HELLO to the other side,
        # so that the leader sends its AUTH proofs on both connections.
        c.node(3).kill9()
        ls = socket.socket()
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(("127.0.0.1", c.node(3).port + c.offset))
        ls.listen(4)
        ls.settimeout(10)
        srv = socket.create_connection(("127.0.0.1",
                                        c.node(lid).port + c.offset), 5)
        try:
            hello_s = read_frames(srv, 1)[0]
            cli, _ = ls.accept()
            hello_c = read_frames(cli, 1)[0]
            assert hello_s[0] == 1 and hello_c[0] == 1, (hello_s, hello_c)
            cli.sendall(hello_s[1])
            srv.sendall(hello_c[1])
            got = [f for f in read_frames(cli, 1) + read_frames(srv, 1)]
            cli.close()
        finally:
            srv.close()
            ls.close()
        kinds = [hello_s[0], hello_c[0]] + [f[0] for f in got]
        assert kinds == [1, 1, 5, 5], kinds
        wire = hello_s[1] + hello_c[1] + b"".join(f[1] for f in got)
        for i in range(0, len(secret) - 7):
            assert secret[i:i + 8] not in wire, "secret bytes on the wire"
    except BaseException:
        c.dump_logs()
        raise
    finally:
        c.close()


def test_file_modes():
    c = Cluster(1, name="sec-modes",
                extra=["--snapshot-bytes", "64k"])
    nd = c.node(1)
    try:
        old = os.umask(0)
        try:
            nd.start()
        finally:
            os.umask(old)
        c.leader()
        k = Conn(nd.port)
        for i in range(400):
            assert k.call("SET", "key%d" % i, "x" * 500) == "OK"
        k.close()
        assert nd.stop() == 0
        seen = 0
        for root, dirs, files in os.walk(nd.dir):
            for d in [root]:
                m = stat.S_IMODE(os.stat(d).st_mode)
                assert m == 0o700, "%s: mode %o" % (d, m)
            for f in files:
                p = os.path.join(root, f)
                m = stat.S_IMODE(os.stat(p).st_mode)
                assert m == 0o600, "%s: mode %o" % (p, m)
                seen += 1
        names = " ".join(f for _, _, fs in os.walk(nd.dir) for f in fs)
        assert seen >= 4 and "snap-" in names, names
    except BaseException:
        c.dump_logs()
        raise
    finally:
        c.close()


def test_bind():
    c = Cluster(1, name="sec-bind")
    nd = c.node(1)
    try:
        nd.start()
        for port in (nd.port, nd.port + c.offset):
            s = socket.create_connection(("127.0.0.1", port), 5)
            s.close()
            try:
                s = socket.create_connection(("127.0.0.2", port), 5)
                s.close()
                raise AssertionError("127.0.0.2:%d accepted a connection" %
                                     port)
            except ConnectionRefusedError:
                pass
    except BaseException:
        c.dump_logs()
        raise
    finally:
        c.close()


if __name__ == "__main__":
    run_tests({"auth": test_auth, "cluster_secret": test_cluster_secret,
               "file_modes": test_file_modes, "bind": test_bind})
