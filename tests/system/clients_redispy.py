"""
redis-py (Debian's python3-redis) against craftd through a leader change.
Run with /usr/bin/python3 (pyenv's python3 has no redis module):

    clients_redispy.py plain|cluster HOST:PORT[,HOST:PORT...] N PREFIX

plain    redis.Redis on one node, following the leader by hand: -MOVED
         names the leader; -CLUSTERDOWN, -UNCERTAIN and connection errors
         move on to the next address after a short pause.
cluster  redis.cluster.RedisCluster: it discovers the leader itself (CLUSTER
         SLOTS, the leader owning every slot) and follows MOVED and
         failovers on its own; the loop here only retries a command that
         failed outright, as an application must.

For i = 0 .. N-1: SET PREFIX:i PREFIX-value-i, GET it back, print "ok i T"
(T: time.monotonic_ns(), CLOCK_MONOTONIC, which the test compares with the
time of its kill);
then GET every key again and print "done N".  Exit 0 only if all of it
succeeded with the right values.  A SET or GET may safely run twice.
"""
import sys
import time

import redis
from redis.exceptions import RedisError, ResponseError

OP_DEADLINE = 20.0  # seconds; one election takes 300-600 ms in the tests
PAUSE = 0.02


def die(msg):
    sys.stderr.write("clients_redispy: %s\n" % msg)
    sys.exit(1)


def parse_addrs(spec):
    out = []
    for a in spec.split(","):
        host, port = a.rsplit(":", 1)
        out.append((host, int(port)))
    return out


class Plain:
    """A redis.Redis that moves to the leader when told."""

    def __init__(self, addrs):
        self.addrs = addrs
        self.next = 0
        self.moved = 0
        self.retries = 0
        self._connect(addrs[0])

    def _connect(self, addr):
        self.r = redis.Redis(host=addr[0], port=addr[1], socket_timeout=2,
                             socket_connect_timeout=1)

    def _rotate(self):
        self.r.close()
        self.next = (self.next + 1) % len(self.addrs)
        self._connect(self.addrs[self.next])
        self.retries += 1
        time.sleep(PAUSE)

    def call(self, *args):
        deadline = time.monotonic() + OP_DEADLINE
        last = None
        while time.monotonic() < deadline:
            try:
                return self.r.execute_command(*args)
            except ResponseError as e:
                last = e
                text = str(e)
                if text.startswith("MOVED "):
                    host, port = text.split(" ")[2].rsplit(":", 1)
                    self.r.close()
                    self._connect((host, int(port)))
                    self.moved += 1
                    continue
                if text.split(" ")[0] in ("CLUSTERDOWN", "UNCERTAIN",
                                          "SHUTDOWN"):
                    self._rotate()
                    continue
                die("unexpected error reply to %r: %s" % (args, text))
            except (redis.ConnectionError, redis.TimeoutError) as e:
                last = e
                self._rotate()
        die("no answer to %r within %.0fs: %r" % (args, OP_DEADLINE, last))

    def stats(self):
        return "moved=%d retries=%d" % (self.moved, self.retries)


def cluster_class():
    """RedisCluster, with two fixes that redis-py made after 4.3 (Debian 12
    ships 4.3.4) backported here, as an application on Debian 12 must; a
    failover of a real Redis Cluster hits both the same way:

    1. After a failover NodesManager.initialize() deep-copies the
       connection kwargs, which hold a bound method of the RedisCluster and
       so the client and its locks: "TypeError: cannot pickle
       '_thread.lock' object" (redis/redis-py#2480, fixed by #2377).
       Copying the client as itself avoids it.
    2. A replica promoted to primary keeps its cached "replica" role, so a
       one-primary cluster has no primary left after initialize():
       IndexError in get_nodes_by_server_type(PRIMARY)[0]
       (redis/redis-py#2433, fixed by #2549, which sets the role of a
       reused node).
    """
    import redis.cluster as rcm

    version = tuple(int(x) for x in redis.__version__.split(".")[:2])
    if version < (4, 5):
        orig = rcm.NodesManager._get_or_create_cluster_node

        def get_or_create(self, host, port, role, tmp_nodes_cache):
            fresh = rcm.get_node_name(host, port) not in tmp_nodes_cache
            node = orig(self, host, port, role, tmp_nodes_cache)
            if fresh:
                node.server_type = role  # the fix of #2549
            return node

        rcm.NodesManager._get_or_create_cluster_node = get_or_create

    class Patched(rcm.RedisCluster):
        def __deepcopy__(self, memo):
            return self

    return Patched


class Cluster:
    """redis.cluster.RedisCluster, with an application's retry loop."""

    def __init__(self, addrs):
        from redis.cluster import ClusterNode
        RedisCluster = cluster_class()
        nodes = [ClusterNode(h, p) for h, p in addrs]
        self.retries = 0
        deadline = time.monotonic() + OP_DEADLINE
        while True:
            try:
                self.rc = RedisCluster(startup_nodes=nodes, socket_timeout=2,
                                       socket_connect_timeout=1)
                break
            except RedisError as e:
                if time.monotonic() > deadline:
                    die("RedisCluster could not start: %r" % e)
                time.sleep(0.1)

    def call(self, *args):
        deadline = time.monotonic() + OP_DEADLINE
        last = None
        while time.monotonic() < deadline:
            try:
                return self.rc.execute_command(*args)
            except RedisError as e:
                # MOVED is followed inside RedisCluster; what comes out is a
                # failover it could not ride out (CLUSTERDOWN, a dead node,
                # UNCERTAIN).  Any other error reply is a failure.
                text = str(e)
                if isinstance(e, ResponseError) and \
                        not text.startswith(("UNCERTAIN", "CLUSTERDOWN",
                                             "SHUTDOWN")):
                    die("unexpected error reply to %r: %s" % (args, text))
                last = e
                self.retries += 1
                time.sleep(0.05)
        die("no answer to %r within %.0fs: %r" % (args, OP_DEADLINE, last))

    def stats(self):
        leader = self.rc.get_default_node()
        return "retries=%d primary=%s:%d" % (self.retries, leader.host,
                                             leader.port)


def main():
    if len(sys.argv) != 5 or sys.argv[1] not in ("plain", "cluster"):
        die("usage: clients_redispy.py plain|cluster HOST:PORT[,...] N "
            "PREFIX")
    addrs = parse_addrs(sys.argv[2])
    n, prefix = int(sys.argv[3]), sys.argv[4]
    c = Plain(addrs) if sys.argv[1] == "plain" else Cluster(addrs)
    for i in range(n):
        key, value = "%s:%d" % (prefix, i), ("%s-value-%d" % (prefix, i))
        r = c.call("SET", key, value)
        if r is not True and r != b"OK":
            die("SET %s: %r" % (key, r))
        got = c.call("GET", key)
        if got != value.encode():
            die("GET %s: got %r, want %r" % (key, got, value))
        print("ok %d %d" % (i, time.monotonic_ns()), flush=True)
    for i in range(n):
        key, value = "%s:%d" % (prefix, i), ("%s-value-%d" % (prefix, i))
        got = c.call("GET", key)
        if got != value.encode():
            die("GET %s: got %r, want %r" % (key, got, value))
    print("done %d" % n)
    print("stats %s redis-py=%s" % (c.stats(), redis.__version__), flush=True)


if __name__ == "__main__":
    main()
