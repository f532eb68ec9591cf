#!/usr/bin/env python3
"""
craftd start-up failures after the ports are bound (issue 7, hardening):
a node whose identity file cannot be written, after its client listener
and its metrics listener are already open, must close both and exit 1
with its message, not hang.

    startfail_test.py [test ...]    run the named tests (default: all)
"""
import os
import socket

from craftd_harness import Cluster, poll, run_tests


def free_port():
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def port_free(port):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def test_ident_unwritable():
    c = Cluster(1, name="startfail")
    try:
        nd = c.node(1)
        mport = free_port()
        c.extra += ["--metrics-addr", "127.0.0.1:%d" % mport]
        # The identity is written to IDENTITY.tmp, then renamed; a directory
        # in its place makes the write fail, deterministically and as root
        # too, after srv_start() has bound the client port.
        os.makedirs(os.path.join(nd.dir, "IDENTITY.tmp"))
        nd.start(wait=False)
        try:
            poll("craftd to exit", lambda: nd.proc.poll() is not None, 10)
        except AssertionError:
            raise AssertionError("craftd did not exit after a failed start "
                                 "(listeners left open?):\n" + nd.tail())
        rc = nd.proc.returncode
        nd.proc = None
        with open(nd.log + ".err", "rb") as f:
            err = f.read().decode(errors="replace")
        assert rc == 1, (rc, err)
        assert "craftd: cannot create" in err and "IDENTITY.tmp" in err, err
        assert port_free(nd.port) and port_free(mport)
        # The failed first start left a directory that starts cleanly.
        os.rmdir(os.path.join(nd.dir, "IDENTITY.tmp"))
        nd.start()
        assert os.path.exists(os.path.join(nd.dir, "IDENTITY"))
        assert nd.stop() == 0
    except BaseException:
        c.dump_logs()
        raise
    finally:
        c.close()


if __name__ == "__main__":
    run_tests({"ident_unwritable": test_ident_unwritable})
