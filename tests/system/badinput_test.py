#!/usr/bin/env python3
"""
Bad input on real craftd processes: one test per group of rows of
docs/bad-input.md.  Every test also checks that the server stays up and
that other connections are unaffected.

    badinput_test.py [test ...]    run the named tests (default: all)
"""
import os
import socket
import struct
import time

from craftd_harness import (Cluster, Conn, RespError, free_port_pair, poll,
                            run_tests)

# A valid pipelined stream: multibulk and inline commands, and where each
# command ends (so that the replies a prefix must get are known).
COMMANDS = [
    b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\n",
    b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n",
    b"PING\r\n",
    b"*2\r\n$6\r\nAPPEND\r\n$1\r\nk\r\n",  # arity error: a reply all the same
    b"ECHO \"a b\"\r\n",
    b"*1\r\n$4\r\nPING\r\n",
]
STREAM = b"".join(COMMANDS)
ENDS = []
_n = 0
for _c in COMMANDS:
    _n += len(_c)
    ENDS.append(_n)


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def read_replies(k, n):
    return [k.read_reply() for _ in range(n)]


def closed(k, timeout=5.0):
    """True once the server closed the connection."""
    k.sock.settimeout(timeout)
    try:
        return k.sock.recv(1) == b""
    except ConnectionResetError:
        return True


def one_node(name, extra=None):
    c = Cluster(1, name=name, extra=extra)
    c.start()
    c.leader()
    k = Conn(c.node(1).port)
    poll("a first write", lambda: k.call("SET", "warm", "1") == "OK", 10)
    k.close()
    return c


def test_resp_every_byte():
    c = one_node("bad-resp")
    nd = c.node(1)
    try:
        watcher = Conn(nd.port)
        # Cut at every byte: the complete commands are answered, the rest
        # waits for more, and sending the rest completes the stream.
        for cut in range(len(STREAM) + 1):
            k = Conn(nd.port)
            k.send_raw(STREAM[:cut])
            done = sum(1 for e in ENDS if e <= cut)
            first = read_replies(k, done)
            k.send_raw(STREAM[cut:])
            rest = read_replies(k, len(COMMANDS) - done)
            got = first + rest
            assert got[0] == "OK" and got[1] == b"hello" and \
                got[2] == "PONG" and isinstance(got[3], RespError) and \
                got[4] == b"a b" and got[5] == "PONG", (cut, got)
            k.close()
        # Corrupt each byte in turn (three ways): every reply is a valid
        # RESP value; a protocol error is the last thing sent before the
        # server closes; the server never crashes.
        errors = 0
        for at in range(len(STREAM)):
            for bad in (b"\x00", b"\x01", b"$", b"\n"):
                data = STREAM[:at] + bad + STREAM[at + 1:]
                k = Conn(nd.port, timeout=5)
                k.send_raw(data + b"\r\nPING\r\n")
                k.sock.shutdown(socket.SHUT_WR)
                while True:
                    try:
                        r = k.read_reply()
                    except (ConnectionError, OSError):
                        break
                    if isinstance(r, RespError) and "Protocol error" in r.text:
                        errors += 1
                        assert closed(k), (at, bad)
                        break
                k.close()
            assert nd.alive(), "server died at byte %d" % at
        assert errors > 0
        assert watcher.call("PING") == "PONG"
        assert watcher.call("GET", "k") == b"hello"
        watcher.close()
        assert nd.alive()
    except BaseException:
        c.dump_logs()
        raise
    finally:
        c.close()


def test_resp_limits():
    c = one_node("bad-limits")
    nd = c.node(1)
    try:
        watcher = Conn(nd.port)
        rss0 = rss_kb(nd.proc.pid)
        cases = [
            # A 1 GB bulk header: above proto-max-bulk-len (512 MB).
            (b"*1\r\n$1073741824\r\n", "invalid bulk length"),
            # More arguments than 1024*1024.
            (b"*2000000\r\n", "invalid multibulk length"),
            (b"*1\r\nX3\r\n", "expected '$', got 'X'"),
            (b"*1\r\n$3\r\nabcXY", "expected CRLF after bulk data"),
            (b"*1x\r\n", "invalid multibulk length"),
            (b"SET \"unbalanced\r\n", "unbalanced quotes"),
            # Unterminated lines longer than 64 KiB.
            (b"A" * (70 * 1024), "too big inline request"),
            (b"*" + b"1" * (70 * 1024), "too big mbulk count string"),
            (b"*1\r\n$" + b"1" * (70 * 1024), "too big bulk count string"),
        ]
        for data, want in cases:
            k = Conn(nd.port)
            k.send_raw(data)
            r = k.read_reply()
            assert isinstance(r, RespError) and want in r.text, (data[:20], r)
            assert closed(k), data[:20]
            k.close()
        # 1 M arguments announced: accepted (the limit is 1024*1024), and
        # waited for without allocating for them up front.
        k = Conn(nd.port)
        k.send_raw(b"*1000000\r\n" + b"$1\r\na\r\n" * 1000)
        assert watcher.call("PING") == "PONG"
        grew = rss_kb(nd.proc.pid) - rss0
        assert grew < 64 * 1024, "RSS grew by %d kB" % grew
        k.close()
        # A 1 GB-ish bulk that is allowed (500 MB) is not allocated before
        # its bytes arrive either.
        k = Conn(nd.port)
        k.send_raw(b"*3\r\n$3\r\nSET\r\n$1\r\nb\r\n$500000000\r\nxyz")
        assert watcher.call("PING") == "PONG"
        grew = rss_kb(nd.proc.pid) - rss0
        assert grew < 64 * 1024, "RSS grew by %d kB" % grew
        k.close()
        assert watcher.call("GET", "warm") == b"1"
        watcher.close()
        assert nd.alive()
    except BaseException:
        c.dump_logs()
        raise
    finally:
        c.close()


# CRC-32C for building craft frames by hand (net/frame.h).
_CRC_TABLE = []
for _i in range(256):
    _v = _i
    for _ in range(8):
        _v = (_v >> 1) ^ 0x82F63B78 if _v & 1 else _v >> 1
    _CRC_TABLE.append(_v)


def crc32c(data):
    v = 0xFFFFFFFF
    for b in data:
        v = _CRC_TABLE[(v ^ b) & 0xFF] ^ (v >> 8)
    return v ^ 0xFFFFFFFF


def frame_header(kind, length, type_=0, id_=0, payload_crc=0):
    h = struct.pack("<4sBBBBHhIQI", b"CRFT", 1, kind, 0, 0, type_, 0, length,
                    id_, payload_crc)
    return h + struct.pack("<I", crc32c(h))


def test_peer_port():
    c = Cluster(3, name="bad-peer")
    try:
        c.start()
        lid = c.leader()
        fol = next(nd for nd in c.nodes if nd.id != lid)
        rport = fol.port + c.offset
        mark = os.path.getsize(fol.log)
        cases = [
            (b"GET / HTTP/1.0\r\n\r\n" + b"x" * 32,
             "bad magic: not a craft frame"),
            (b"CRFT" + os.urandom(60), None),
            # A well-formed header claiming a 2 GiB payload.
            (frame_header(1, 1 << 31), "frame larger than the frame max"),
            # A header with a bad checksum.
            (frame_header(1, 0)[:-1] + b"\x00", "header checksum mismatch"),
            (b"CRFT\x07" + b"\x00" * 27, "unsupported protocol version"),
        ]
        for data, reason in cases:
            s = socket.create_connection(("127.0.0.1", rport), 5)
            s.sendall(data)
            s.settimeout(5)
            try:
                while s.recv(4096):
                    pass
            except ConnectionResetError:
                pass
            s.close()
        def logged():
            with open(fol.log, errors="replace") as f:
                f.seek(mark)
                t = f.read()
            return t.count("net: closing connection") >= len(cases) and \
                all(r in t for _, r in cases if r)
        poll("the refusals in the log", logged, 10)
        assert fol.alive()
        # The cluster keeps working, the follower included.
        k = Conn(c.node(lid).port)
        assert k.call("SET", "after", "garbage") == "OK"
        k.close()
        poll("follower applies", lambda: fol.keys() >= 1, 10)
    except BaseException:
        c.dump_logs()
        raise
    finally:
        c.close()


def test_other_cluster():
    a = Cluster(1, name="bad-a")
    b = Cluster(1, name="bad-b")
    try:
        a.start()
        a.leader()
        # Cluster b's second member is a's node: b's node connects to it.
        b.offset = a.offset
        p = free_port_pair(b.offset)
        while p == a.node(1).port:
            p = free_port_pair(b.offset)
        b.node(1).port = p
        b.spec = "1=127.0.0.1:%d,2=127.0.0.1:%d" % (p, a.node(1).port)
        b.node(1).start()
        poll("a refuses b's node",
             lambda: "another cluster" in a.node(1).tail(200), 10)
        assert a.node(1).alive() and b.node(1).alive()
        k = Conn(a.node(1).port)
        assert k.call("SET", "x", "1") == "OK"
        k.close()
        i = b.node(1).info()
        assert i.get("raft_role") != "leader", i
    except BaseException:
        a.dump_logs()
        b.dump_logs()
        raise
    finally:
        a.close()
        b.close()


if __name__ == "__main__":
    run_tests({"resp_every_byte": test_resp_every_byte,
               "resp_limits": test_resp_limits,
               "peer_port": test_peer_port,
               "other_cluster": test_other_cluster})
