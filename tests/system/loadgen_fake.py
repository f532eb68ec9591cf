#!/usr/bin/env python3
"""A misbehaving Redis-protocol server for the craft-loadgen system test.

  loadgen_fake.py PORTFILE moved HOST:PORT N   first N commands get
                                               -CLUSTERDOWN, then every
                                               command -MOVED 0 HOST:PORT
  loadgen_fake.py PORTFILE garbage             answers with bytes that are
                                               not RESP
  loadgen_fake.py PORTFILE silent              reads requests, never answers
  loadgen_fake.py PORTFILE http-close          answers one etcd put per
                                               connection ("Connection:
                                               close"), then hangs up
  loadgen_fake.py PORTFILE drop HOST:PORT      hangs up on every odd
                                               connection at its first
                                               request; redirects on the
                                               others as "moved" does

Binds 127.0.0.1 port 0 and writes the port to PORTFILE (via a rename, so a
reader never sees half of it); runs until killed.
"""
import os
import socket
import sys
import threading

portfile, mode = sys.argv[1], sys.argv[2]
lock = threading.Lock()
clusterdown_left = int(sys.argv[4]) if mode == "moved" else 0
connections = 0


def split_commands(buf):
    """Count the complete multibulk commands at the start of buf; return
    (count, rest)."""
    n = 0
    while True:
        try:
            end = buf.index(b"\r\n")
            argc, pos = int(buf[1:end]), end + 2
            for _ in range(argc):
                end = buf.index(b"\r\n", pos)
                pos = end + 2 + int(buf[pos + 1:end]) + 2
                if pos > len(buf):
                    raise ValueError
        except ValueError:
            return n, buf
        n, buf = n + 1, buf[pos:]


def serve_http_close(conn):
    with conn:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return
            data += chunk
        body = b'{"header":{"revision":"1"}}'
        conn.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))


def serve(conn):
    global clusterdown_left, connections
    pending = b""
    with lock:
        connections += 1
        drop = mode == "drop" and connections % 2 == 1
    with conn:
        while True:
            try:
                data = conn.recv(65536)
            except OSError:  # the client reset the connection
                return
            if not data:
                return
            n, pending = split_commands(pending + data)
            if drop and n > 0:
                return  # hang up without a reply
            if mode == "silent":
                continue
            out = b""
            for _ in range(n):
                if mode == "garbage":
                    out += b"this is not RESP\r\n"
                    continue
                with lock:
                    down = clusterdown_left > 0
                    clusterdown_left -= down
                if down:
                    out += b"-CLUSTERDOWN no leader is known\r\n"
                else:
                    out += b"-MOVED 0 " + sys.argv[3].encode() + b"\r\n"
            conn.sendall(out)


srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", 0))
srv.listen(64)
with open(portfile + ".tmp", "w") as f:
    f.write("%d\n" % srv.getsockname()[1])
os.rename(portfile + ".tmp", portfile)
while True:
    c, _ = srv.accept()
    target = serve_http_close if mode == "http-close" else serve
    threading.Thread(target=target, args=(c,), daemon=True).start()
