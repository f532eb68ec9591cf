#!/usr/bin/env python3
"""
Bad input on real craftd processes: one test per group of rows of
docs/bad-input.md.  Every test also checks that the server stays up and
that other connections are unaffected.

    badinput_test.py [test ...]    run the named tests (default: all)
"""
import os
import resource
import shutil
import socket
import struct
import subprocess
import tempfile
import time

from craftd_harness import (Cluster, Conn, RespError, craftd_path,
                            free_port_pair, poll, run_tests)

# ctest's SKIP_RETURN_CODE: a test the machine cannot run.
SKIP = 77

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



def test_slow_reader():
    """A client that never reads its replies: once SRV_OUTBUF_MAX (64 MiB)
    of replies wait for it, craftd stops reading its commands, and once
    more than SRV_OUTBUF_HARD_MAX (128 MiB) would wait, it closes the
    connection; memory stays bounded and other clients are unaffected."""
    c = one_node("bad-slow")
    nd = c.node(1)
    try:
        k = Conn(nd.port)
        value = b"v" * (1 << 20)
        assert k.call("SET", "big", value) == "OK"
        rss0 = rss_kb(nd.proc.pid)
        mark = os.path.getsize(nd.log)
        slow = socket.create_connection(("127.0.0.1", nd.port), 5)
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        # 1000 replies of 1 MiB: 1 GB if nothing bounded them.
        slow.sendall(b"*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n" * 1000)

        def closed_logged():
            with open(nd.log, errors="replace") as f:
                f.seek(mark)
                return "of replies unread; closing" in f.read()
        poll("the slow client closed", closed_logged, 30)
        grew = rss_kb(nd.proc.pid) - rss0
        # 128 MiB of replies, one more being made, the kernel's buffers;
        # ASan's quarantine in build-san.
        assert grew < 400 * 1024, "RSS grew by %d kB" % grew
        # The slow client gets what was written, then the end.
        got = 0
        slow.settimeout(10)
        while True:
            b = slow.recv(1 << 20)
            if not b:
                break
            got += len(b)
        slow.close()
        assert got < 200 * (1 << 20), got
        k.close()
        k = Conn(nd.port, timeout=20)
        assert k.call("GET", "big") == value
        assert k.call("SET", "after", "1") == "OK"
        k.close()
        assert nd.alive()
    except BaseException:
        c.dump_logs()
        raise
    finally:
        c.close()


def test_max_clients():
    """10 000 idle connections are served; the 10 001st gets Redis's
    error and is closed; a freed slot is usable again."""
    want = 10000 + 200
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
        except (ValueError, OSError) as e:
            print("SKIP: cannot raise the open-file limit to %d: %s" %
                  (want, e))
            raise SystemExit(SKIP)
    else:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    # craftd inherits the raised limit from this process.
    c = one_node("bad-maxcl")
    nd = c.node(1)
    conns = []
    try:
        for i in range(10000):
            s = socket.create_connection(("127.0.0.1", nd.port), 5)
            conns.append(s)
        # Every one of them is served (PING on each, answered).
        for s in conns:
            s.sendall(b"PING\r\n")
        for s in conns:
            s.settimeout(10)
            assert s.recv(16) == b"+PONG\r\n"
        extra = Conn(nd.port)
        r = extra.read_reply()
        assert isinstance(r, RespError) and \
            r.text == "ERR max number of clients reached", r
        assert closed(extra)
        extra.close()
        conns.pop().close()

        def slot_free():
            k = Conn(nd.port)
            try:
                return k.call("SET", "x", "1") == "OK"
            finally:
                k.close()
        poll("a freed slot", slot_free, 10)
        assert nd.alive()
    except BaseException:
        c.dump_logs()
        raise
    finally:
        for s in conns:
            s.close()
        c.close()


def test_corrupt_files():
    c = one_node("bad-files")
    nd = c.node(1)
    try:
        k = Conn(nd.port)
        for i in range(50):
            assert k.call("SET", "k%d" % i, "v" * 100) == "OK"
        k.close()
        assert nd.stop() == 0
        raft = os.path.join(nd.dir, "raft")
        good = nd.dir + ".good"
        shutil.copytree(nd.dir, good)

        def damage(name, off):
            path = os.path.join(raft, name) if name != "IDENTITY" else \
                os.path.join(nd.dir, name)
            with open(path, "r+b") as f:
                f.seek(off)
                b = f.read(1)
                f.seek(off)
                f.write(bytes([b[0] ^ 0x10]))
            return path

        # The first record of the open segment (more follow it), a
        # metadata file, the identity: each refused naming the file.
        for name, off in (("open", 32 + 8), ("meta1", 30),
                          ("IDENTITY", 20)):
            if not os.path.exists(os.path.join(raft, name)) and \
                    name != "IDENTITY":
                continue
            path = damage(name, off)
            p = subprocess.run(nd.args(), capture_output=True, timeout=20)
            out = (p.stdout + p.stderr).decode(errors="replace")
            assert p.returncode == 1, (name, p.returncode, out)
            # A damaged meta1 falls back to meta2, which is then behind
            # the log: the message names meta2.
            assert (name if name != "meta1" else "meta") in out, (name, out)
            shutil.rmtree(nd.dir)
            shutil.copytree(good, nd.dir)
        # Undamaged, everything is there.
        nd.start()
        c.leader()
        poll("the 50 keys back", lambda: nd.keys() >= 51, 10)
    except BaseException:
        c.dump_logs()
        raise
    finally:
        c.close()
        shutil.rmtree(nd.dir + ".good", ignore_errors=True)


def test_full_disk():
    """A data dir on a small tmpfs that fills: per docs/storage.md the
    failed write and those behind it fail, the node stops (exit 1) with
    the reason in its log, and after a restart with space every
    acknowledged write is there."""
    mnt = tempfile.mkdtemp(prefix="craft-fulldisk-")
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=160m", "tmpfs",
                        mnt], capture_output=True)
    if p.returncode != 0:
        os.rmdir(mnt)
        print("SKIP: cannot mount a tmpfs (%s)" %
              (p.stdout + p.stderr).decode().strip())
        raise SystemExit(SKIP)
    c = None
    try:
        c = Cluster(1, name="bad-fulldisk", root=mnt,
                    extra=["--snapshot-bytes", "1g"])
        nd = c.node(1)
        # Logs outside the small file system, so that they survive it.
        nd.log = os.path.join(tempfile.gettempdir(),
                              "craft-fulldisk-%d.log" % os.getpid())
        # Deadlines are generous: under ASan on a loaded machine a start
        # that replays 64 MiB of log, or one 512 KiB write, can take long;
        # nothing here depends on timing otherwise.
        nd.start(wait=False)
        nd.wait_ready(timeout=120)
        c.leader(timeout=120)
        # Leave about 1 MiB free: the open segment is preallocated (64 MiB),
        # so writes go on until the next segment cannot be created.  The
        # storage preallocates on its worker thread, possibly after
        # "ready": wait until the open segment holds its 64 MiB, or the
        # filler could take that space first.
        k = Conn(nd.port, timeout=120)
        assert k.call("SET", "first", "1") == "OK"
        k.close()
        seg = os.path.join(nd.dir, "raft", "open")
        poll("the open segment preallocated",
             lambda: os.stat(seg).st_blocks * 512 >= 64 << 20, 120)
        st = os.statvfs(mnt)
        free = st.f_bavail * st.f_frsize - (1 << 20)
        with open(os.path.join(mnt, "filler"), "wb", buffering=0) as f:
            chunk = b"\0" * (1 << 20)
            while free > 0:
                n = min(free, len(chunk))
                try:
                    f.write(chunk[:n])
                except OSError:
                    break
                free -= n
        acked = []
        err = None
        k = Conn(nd.port, timeout=120)
        value = b"x" * (512 * 1024)
        for i in range(400):
            try:
                r = k.call("SET", "k%d" % i, value)
            except socket.timeout:
                raise AssertionError("SET k%d: no reply in 120 s (%d acked)"
                                     % (i, len(acked)))
            except (ConnectionError, OSError) as e:
                err = e
                break
            if r == "OK":
                acked.append(i)
            else:
                err = r
                break
        k.close()
        print("%d writes acknowledged before the disk filled; then %r" %
              (len(acked), err), flush=True)
        assert err is not None, "the disk never filled"
        assert len(acked) >= 50, acked
        try:
            rc = nd.proc.wait(120)
        except subprocess.TimeoutExpired:
            raise AssertionError("the node did not stop after the disk "
                                 "filled:\n" + nd.tail(40))
        nd.proc = None
        assert rc == 1, (rc, nd.tail(40))
        with open(nd.log, errors="replace") as f:
            log = f.read()
        assert "no space left on device" in log.lower(), log[-2000:]
        os.unlink(os.path.join(mnt, "filler"))
        nd.start(wait=False)
        nd.wait_ready(timeout=120)
        c.leader(timeout=120)
        k = Conn(nd.port, timeout=120)
        for i in acked:
            n = k.call("STRLEN", "k%d" % i)
            assert n == len(value), ("acknowledged k%d lost" % i, n)
        assert k.call("SET", "after", "1") == "OK"
        k.close()
    except BaseException:
        if c is not None:
            c.dump_logs()
        raise
    finally:
        if c is not None:
            for nd in c.nodes:
                if nd.proc is not None:
                    nd.kill9()
            try:
                os.unlink(c.node(1).log)
            except OSError:
                pass
        subprocess.run(["umount", mnt])
        os.rmdir(mnt)

if __name__ == "__main__":
    run_tests({"resp_every_byte": test_resp_every_byte,
               "resp_limits": test_resp_limits,
               "peer_port": test_peer_port,
               "other_cluster": test_other_cluster,
               "slow_reader": test_slow_reader,
               "max_clients": test_max_clients,
               "corrupt_files": test_corrupt_files,
               "full_disk": test_full_disk})
