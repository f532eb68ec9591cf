"""
Harness for craftd system tests: real craftd processes on 127.0.0.1, in a
temporary directory, with a small self-contained RESP client (stdlib only).

Rules kept here so every test follows them:
  * free ports are found by binding port 0 (client and Raft ports both);
  * every wait polls with a deadline -- no sleep decides correctness;
  * every process started is stopped by its PID (Cluster.close, atexit);
  * the temporary directory is removed unless CRAFT_KEEP_TMP is set.
"""
import atexit
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time


class RespError(Exception):
    """An error reply (-ERR ...), returned as a value, not raised."""

    def __init__(self, text):
        super().__init__(text)
        self.text = text

    def kind(self):
        return self.text.split(" ", 1)[0]

    def __repr__(self):
        return "RespError(%r)" % self.text


class Conn:
    """A blocking RESP2 connection."""

    def __init__(self, port, host="127.0.0.1", timeout=5.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.port = port

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    @staticmethod
    def encode(*args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            if not isinstance(a, bytes):
                a = str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        return b"".join(out)

    def send_raw(self, data):
        self.sock.sendall(data)

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed by server")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n + 2:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed by server")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def read_reply(self):
        line = self._line()
        t, rest = line[:1], line[1:]
        if t == b"+":
            return rest.decode()
        if t == b"-":
            return RespError(rest.decode())
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n)
        if t == b"*":
            n = int(rest)
            return None if n < 0 else [self.read_reply() for _ in range(n)]
        raise ConnectionError("bad reply line %r" % line)

    def call(self, *args):
        self.send_raw(self.encode(*args))
        return self.read_reply()


def free_port_pair(offset, hosts=("127.0.0.1",)):
    """A port p with p and p + offset both free right now on every host."""
    for _ in range(200):
        s = socket.socket()
        s.bind((hosts[0], 0))
        p = s.getsockname()[1]
        held = [s]
        ok = p + offset <= 65535
        for h in hosts:
            for q in ((p, p + offset) if h != hosts[0] else (p + offset,)):
                if not ok:
                    break
                t = socket.socket()
                held.append(t)
                try:
                    t.bind((h, q))
                except OSError:
                    ok = False
        for t in held:
            t.close()
        if ok:
            return p
    raise RuntimeError("no free port pair")


def build_dir():
    return os.environ.get("CRAFT_BUILD_DIR") or os.path.join(
        os.path.dirname(__file__), "..", "..", "build")


def craftd_path():
    return os.environ.get("CRAFTD") or os.path.join(build_dir(), "bin",
                                                    "craftd")


def poll(what, fn, timeout=15.0, interval=0.02):
    """Call fn until it returns a true value; fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            v = fn()
            if v:
                return v
        except (OSError, ConnectionError) as e:
            last = e
        time.sleep(interval)
    raise AssertionError("timed out after %.0fs waiting for %s (last: %r)" %
                         (timeout, what, last))


_live = set()


def _kill_all():
    for p in list(_live):
        try:
            p.kill()
            p.wait(5)
        except Exception:
            pass


atexit.register(_kill_all)


class Node:
    def __init__(self, cluster, nid, port, host="127.0.0.1"):
        self.cluster = cluster
        self.id = nid
        self.port = port
        self.host = host
        self.dir = os.path.join(cluster.tmp, "n%d" % nid)
        self.log = os.path.join(cluster.tmp, "n%d.log" % nid)
        self.proc = None
        self.paused = False

    def args(self):
        c = self.cluster
        return [craftd_path(), "--id", str(self.id), "--cluster", c.spec,
                "--data-dir", self.dir, "--raft-port-offset",
                str(c.offset), "--log-file", self.log] + c.extra

    def start(self, wait=True):
        assert self.proc is None
        self.ready_mark = self._log_size()
        argv = self.args()
        if self.cluster.die_with_parent and shutil.which("setpriv"):
            # The kernel kills the node if the test process dies without
            # running its cleanup (SIGKILL from a ctest timeout).  setpriv
            # execs craftd, so proc.pid is craftd's.  The death signal
            # follows the thread that forked: start nodes from the main
            # thread.
            argv = ["setpriv", "--pdeathsig", "KILL", "--"] + argv
        with open(self.log + ".err", "ab") as err:
            self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL,
                                         stderr=err)
        self.paused = False
        _live.add(self.proc)
        if wait:
            self.wait_ready()

    def _log_size(self):
        try:
            return os.path.getsize(self.log)
        except OSError:
            return 0

    def wait_ready(self, timeout=15.0):
        def ready():
            if self.proc.poll() is not None:
                raise AssertionError("node %d exited with %s:\n%s" %
                                     (self.id, self.proc.returncode,
                                      self.tail()))
            with open(self.log, "rb") as f:
                f.seek(self.ready_mark)
                return any(l.endswith(b" ready") for l in
                           f.read().splitlines())
        poll("node %d ready" % self.id, ready, timeout)

    def tail(self, n=30):
        out = []
        for path in (self.log, self.log + ".err"):
            try:
                with open(path, "rb") as f:
                    out += f.read().decode(errors="replace").splitlines()[-n:]
            except OSError:
                pass
        return "\n".join(out)

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        _live.discard(self.proc)
        self.proc = None
        self.paused = False

    def pause(self):
        """SIGSTOP: the process keeps its sockets but runs nothing."""
        self.proc.send_signal(signal.SIGSTOP)
        self.paused = True

    def resume(self):
        """SIGCONT after pause()."""
        self.proc.send_signal(signal.SIGCONT)
        self.paused = False

    def stop(self, timeout=10.0):
        """SIGTERM; returns the exit code."""
        if self.paused:
            self.resume()
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout)
        _live.discard(self.proc)
        self.proc = None
        return rc

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def info(self):
        c = Conn(self.port, host=self.host, timeout=2.0)
        try:
            r = c.call("INFO")
        finally:
            c.close()
        if isinstance(r, RespError):
            return {}
        d = {}
        for line in r.decode().splitlines():
            if ":" in line:
                k, v = line.split(":", 1)
                d[k] = v
        return d

    def keys(self):
        """The key count of INFO's Redis-style `db0:keys=N,...` line."""
        db0 = self.info().get("db0")
        if db0 is None:
            return 0
        return int(dict(f.split("=", 1) for f in db0.split(","))["keys"])


class Cluster:
    def __init__(self, n=3, extra=None, name="craftd", root=None,
                 fast=True, hosts=None, die_with_parent=False):
        """hosts: one address per node (e.g. 127.0.0.11..13, so that
        firewall rules on addresses can partition them); default all on
        127.0.0.1 with distinct ports.  die_with_parent: the nodes get
        SIGKILL when the test process dies, even by SIGKILL (setpriv
        --pdeathsig); start them from the main thread then."""
        self.die_with_parent = die_with_parent
        self.tmp = tempfile.mkdtemp(prefix="craft-%s-" % name, dir=root)
        self.offset = random.randint(1000, 5000)
        if hosts:
            p = free_port_pair(self.offset, hosts)
            self.nodes = [Node(self, i + 1, p, hosts[i]) for i in range(n)]
        else:
            ports = []
            while len(ports) < n:
                p = free_port_pair(self.offset)
                if p not in ports and all(abs(p - q) != self.offset
                                          for q in ports):
                    ports.append(p)
            self.nodes = [Node(self, i + 1, ports[i]) for i in range(n)]
        self.spec = ",".join("%d=%s:%d" % (nd.id, nd.host, nd.port)
                             for nd in self.nodes)
        # Fast elections keep the tests short; still 10x the heartbeat.
        fast_args = ["--election-ms", "300-600", "--heartbeat-ms", "30"]
        self.extra = (fast_args if fast else []) + (extra or [])

    def node(self, nid):
        return self.nodes[nid - 1]

    def start(self):
        for nd in self.nodes:
            nd.start(wait=False)
        for nd in self.nodes:
            nd.wait_ready()

    def leader(self, timeout=15.0):
        """The id of the node that says it leads in the highest term."""
        def find():
            best = None
            for nd in self.nodes:
                if not nd.alive():
                    continue
                try:
                    i = nd.info()
                except (OSError, ConnectionError):
                    continue
                if i.get("raft_role") == "leader":
                    t = int(i["raft_term"])
                    if best is None or t > best[0]:
                        best = (t, nd.id)
            return best and best[1]
        return poll("a leader", find, timeout)

    def stop_all(self, timeout=15.0):
        """SIGTERM to every running node at once, then wait for each;
        returns {id: exit code}."""
        running = [nd for nd in self.nodes if nd.proc is not None]
        for nd in running:
            if nd.paused:
                nd.resume()
            nd.proc.send_signal(signal.SIGTERM)
        rcs = {}
        for nd in running:
            rcs[nd.id] = nd.proc.wait(timeout)
            _live.discard(nd.proc)
            nd.proc = None
        return rcs

    def close(self):
        for nd in self.nodes:
            if nd.proc is not None:
                try:
                    nd.kill9()
                except Exception:
                    pass
        if os.environ.get("CRAFT_KEEP_TMP"):
            print("kept", self.tmp)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def dump_logs(self):
        for nd in self.nodes:
            print("---- node %d ----\n%s" % (nd.id, nd.tail(40)))


class Client:
    """Follows MOVED, retries CLUSTERDOWN and dead nodes until a deadline.
    UNCERTAIN and connection losses after sending are returned to the
    caller, who decides (they mean: the outcome is unknown)."""

    RETRY = ("CLUSTERDOWN", "SHUTDOWN")

    def __init__(self, cluster, timeout=20.0):
        self.cluster = cluster
        self.timeout = timeout
        self.conn = None
        self.target = (cluster.nodes[0].host, cluster.nodes[0].port)

    def _connect(self):
        if self.conn is None:
            self.conn = Conn(self.target[1], host=self.target[0],
                             timeout=3.0)
        return self.conn

    def _next_target(self):
        addrs = [(nd.host, nd.port) for nd in self.cluster.nodes]
        self.target = addrs[(addrs.index(self.target) + 1) % len(addrs)] \
            if self.target in addrs else addrs[0]

    def _drop(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def call(self, *args):
        """Returns the reply, or an exception object when the outcome of a
        sent command is unknown (connection lost, UNCERTAIN)."""
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            try:
                c = self._connect()
            except OSError:
                self._drop()
                self._next_target()
                time.sleep(0.02)
                continue
            try:
                r = c.call(*args)
            except (OSError, ConnectionError) as e:
                self._drop()
                self._next_target()
                return e
            if isinstance(r, RespError):
                k = r.kind()
                if k == "MOVED":
                    self._drop()
                    host, port = r.text.split(" ")[2].rsplit(":", 1)
                    self.target = (host, int(port))
                    continue
                if k in self.RETRY:
                    self._drop()
                    self._next_target()
                    time.sleep(0.02)
                    continue
            return r
        raise AssertionError("no answer to %r within %.0fs" %
                             (args, self.timeout))

    def close(self):
        self._drop()


def run_tests(tests):
    """main(): run the test named in argv[1], or all of them."""
    names = sys.argv[1:] or list(tests)
    seed = int(os.environ.get("CRAFT_SEED", random.randrange(1 << 30)))
    print("seed %d (replay with CRAFT_SEED=%d)" % (seed, seed))
    random.seed(seed)
    for name in names:
        t0 = time.monotonic()
        print("== %s" % name, flush=True)
        tests[name]()
        print("   ok (%.1fs)" % (time.monotonic() - t0), flush=True)
