#!/usr/bin/env python3
"""
Packaging system test (issue #7): what `make install` and `cpack -G DEB`
produce is complete and usable on its own.

  install   `cmake --install` into DESTDIR=<tmp>/stage with a non-default
            --prefix; checks every file is there (programs, shared and
            static libraries with their SONAME links, headers, .pc files,
            man pages); builds src/client/example.c with
            `cc $(pkg-config --cflags --libs craftclient)` and
            install_raft_single.c with `pkg-config craft` (shared and
            static) using only the staged files; runs the Raft program
            (a single member elects itself and commits a command), then
            starts the *installed* craftd as a one-node cluster and runs
            the installed example and craft-cli against it.
  deb       `cpack -G DEB` into a temporary directory; checks the package
            name, dependencies and contents with dpkg-deb.

Usage: install_test.py install|deb   (env CRAFT_BUILD_DIR, CRAFT_SOURCE_DIR,
CRAFT_CC; CRAFT_KEEP_TMP=1 keeps the temporary directory).
"""
import gzip
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

BUILD = os.path.abspath(os.environ.get("CRAFT_BUILD_DIR", "build"))
SOURCE = os.path.abspath(os.environ.get(
    "CRAFT_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", "..")))
CC = os.environ.get("CRAFT_CC") or "cc"
PREFIX = "/opt/craft-test"

procs = []


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def sh(args, env=None, check=True, timeout=120):
    print("+ " + " ".join(args), flush=True)
    p = subprocess.run(args, env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=timeout)
    if check and p.returncode != 0:
        fail("exit %d from %s:\n%s" % (p.returncode, args[0], p.stdout))
    return p


def libdir_of(root):
    """The staged libdir (lib, or lib/<multiarch> on some configurations):
    where craft.pc was installed."""
    for dirpath, _, files in os.walk(root):
        if "craft.pc" in files:
            return os.path.dirname(dirpath)
    fail("craft.pc not installed under " + root)


def expect_files(root, libdir, paths):
    missing = [p for p in paths if not os.path.lexists(
        os.path.join(root, p.replace("@LIB@", libdir)))]
    if missing:
        fail("not installed: " + ", ".join(missing))


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return sorted(s.getsockname()[1] for s in socks)
    finally:
        for s in socks:
            s.close()


def wait_for(pred, what, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.02)
    fail("timed out after %gs waiting for %s" % (seconds, what))


def test_install(tmp):
    stage = os.path.join(tmp, "stage")
    env = dict(os.environ, DESTDIR=stage)
    sh(["cmake", "--install", BUILD, "--prefix", PREFIX], env=env)
    root = stage + PREFIX
    lib = os.path.relpath(libdir_of(root), root)
    expect_files(root, lib, [
        "bin/craftd", "bin/craft-cli", "bin/craft-mr", "bin/craft-timeline",
        "@LIB@/libcraft.so", "@LIB@/libcraft.so.0", "@LIB@/libcraft.a",
        "@LIB@/libcraftclient.so", "@LIB@/libcraftclient.so.0",
        "@LIB@/libcraftclient.a",
        "@LIB@/pkgconfig/craft.pc", "@LIB@/pkgconfig/craftclient.pc",
        "@LIB@/craft/mr/wc.so",
        "include/craft/common.h", "include/craft/raft.h",
        "include/craft/client.h", "include/craft/mr.h",
        "share/man/man1/craftd.1.gz", "share/man/man1/craft-cli.1.gz",
        "share/man/man1/craft-mr.1.gz", "share/man/man1/craft-timeline.1.gz",
    ])
    for page in ("craftd", "craft-cli", "craft-mr", "craft-timeline"):
        gz = os.path.join(root, "share/man/man1", page + ".1.gz")
        with gzip.open(gz, "rt") as f:
            text = f.read()
        if "\n.TH " + page.upper() + " 1 " not in text or \
                "\n.SH SYNOPSIS\n" not in text:
            fail("man page %s.1 has no .TH/.SH SYNOPSIS" % page)
        if shutil.which("groff"):
            src = os.path.join(tmp, page + ".1")
            with open(src, "w") as f:
                f.write(text)
            p = sh(["groff", "-man", "-Tutf8", "-ww", "-z", src])
            if p.stdout.strip():
                fail("groff warns on %s.1:\n%s" % (page, p.stdout))

    # Only the staged files: no in-tree include paths, libraries or .pc.
    penv = dict(os.environ, PKG_CONFIG_PATH=os.path.join(root, lib,
                                                         "pkgconfig"))
    penv.pop("PKG_CONFIG_LIBDIR", None)
    renv = dict(os.environ, LD_LIBRARY_PATH=os.path.join(root, lib))

    def pc(*args):
        return sh(["pkg-config"] + list(args), env=penv).stdout.split()

    if sh(["pkg-config", "--modversion", "craft"], env=penv).stdout.strip() \
            != sh(["pkg-config", "--modversion", "craftclient"],
                  env=penv).stdout.strip():
        fail("craft.pc and craftclient.pc disagree on the version")
    # craft/raft.h is strict C11; uv.h (which the client example includes)
    # needs the POSIX types of the default GNU dialect.
    strict = ["-std=c11", "-Wall", "-Wextra", "-Wpedantic", "-Werror"]
    warn = ["-Wall", "-Wextra", "-Werror"]

    # libcraftclient: the documented example program.
    example = os.path.join(tmp, "client-example")
    sh([CC] + warn + ["-o", example,
                        os.path.join(SOURCE, "src/client/example.c")]
       + pc("--cflags", "--libs", "craftclient"))
    p = sh([example, "--help"], env=renv)
    if "usage: craft-client-example" not in p.stdout:
        fail("example --help printed: " + p.stdout)
    p = sh(["ldd", example], env=renv)
    want = os.path.join(root, lib, "libcraftclient.so.0")
    if want not in p.stdout:
        fail("example does not load the installed libcraftclient.so.0:\n"
             + p.stdout)

    # libcraft alone: a single member elects itself and commits, linked
    # shared and then statically.
    single = os.path.join(SOURCE, "tests/system/install_raft_single.c")
    for kind in ("shared", "static"):
        exe = os.path.join(tmp, "raft-single-" + kind)
        if kind == "shared":
            libs = pc("--libs", "craft")
        else:
            libs = ["-L" + os.path.join(root, lib), "-l:libcraft.a"] + \
                [x for x in pc("--static", "--libs", "craft")
                 if not x.startswith("-L") and x != "-lcraft"]
        sh([CC] + strict + ["-o", exe, single] + pc("--cflags", "craft")
           + libs)
        p = sh(["ldd", exe], env=renv)
        if (kind == "shared") != ("libcraft.so.0" in p.stdout):
            fail("%s build: ldd says\n%s" % (kind, p.stdout))
        p = sh([exe], env=renv)
        if "leader term" not in p.stdout or "committed index" not in p.stdout:
            fail("raft-single (%s) printed:\n%s" % (kind, p.stdout))
        print(p.stdout, end="")

    # The installed craftd serves the installed client and craft-cli.
    port, raft_port = free_ports(2)
    cluster = "1=127.0.0.1:%d" % port
    logf = os.path.join(tmp, "craftd.log")
    errf = open(os.path.join(tmp, "craftd.err"), "w+")
    craftd = subprocess.Popen(
        [os.path.join(root, "bin/craftd"), "--id", "1", "--cluster", cluster,
         "--data-dir", os.path.join(tmp, "data"),
         "--raft-port-offset", str(raft_port - port),
         "--election-ms", "200-400", "--heartbeat-ms", "50",
         "--log-file", logf],
        stdout=errf, stderr=subprocess.STDOUT)
    procs.append(craftd)

    def ready():
        if craftd.poll() is not None:
            errf.seek(0)
            fail("craftd exited with %d:\n%s" % (craftd.returncode,
                                                 errf.read()))
        return os.path.exists(logf) and "ready" in open(logf).read()
    wait_for(ready, "craftd to log 'ready'", 30)
    p = sh([example, "127.0.0.1:%d" % port], env=renv, timeout=60)
    if "SET -> OK" not in p.stdout:
        fail("example against craftd printed:\n" + p.stdout)
    print(p.stdout, end="")
    cli = os.path.join(root, "bin/craft-cli")
    sh([cli, "set", "-c", cluster, "pkg:k", "v1"])
    p = sh([cli, "get", "-c", cluster, "pkg:k"])
    if p.stdout.strip() != "v1":
        fail("craft-cli get printed %r" % p.stdout)
    craftd.send_signal(signal.SIGTERM)
    if craftd.wait(timeout=30) != 0:
        fail("craftd exited %d on SIGTERM" % craftd.returncode)
    procs.remove(craftd)


def test_deb(tmp):
    if not shutil.which("cpack") or not shutil.which("dpkg-deb"):
        fail("cpack or dpkg-deb missing")
    out = os.path.join(tmp, "deb")
    sh(["cpack", "-G", "DEB", "--config",
        os.path.join(BUILD, "CPackConfig.cmake"), "-B", out], timeout=300)
    debs = [f for f in os.listdir(out) if f.endswith(".deb")]
    if len(debs) != 1:
        fail("expected one .deb in %s, found %s" % (out, debs))
    deb = os.path.join(out, debs[0])
    info = sh(["dpkg-deb", "-f", deb, "Package", "Depends", "Version"]).stdout
    print(info, end="")
    if "Package: craft\n" not in info or "libuv1" not in info or \
            "libhiredis0.14" not in info:
        fail("bad control fields:\n" + info)
    listing = sh(["dpkg-deb", "-c", deb]).stdout
    for path in ("./usr/bin/craftd", "./usr/bin/craft-cli",
                 "./usr/bin/craft-mr", "./usr/bin/craft-timeline",
                 "libcraft.so.0", "libcraft.a",
                 "libcraftclient.so.0", "libcraftclient.a", "craft.pc",
                 "craftclient.pc", "./usr/include/craft/raft.h",
                 "./usr/include/craft/client.h", "man1/craftd.1.gz"):
        if path not in listing:
            fail("%s not in the package:\n%s" % (path, listing))
    print("%s: %d files" % (debs[0], listing.count("\n")))


def main():
    tests = {"install": test_install, "deb": test_deb}
    if len(sys.argv) != 2 or sys.argv[1] not in tests:
        print("usage: install_test.py install|deb", file=sys.stderr)
        return 64
    tmp = tempfile.mkdtemp(prefix="craft-install-")
    try:
        tests[sys.argv[1]](tmp)
    finally:
        for p in procs:
            p.kill()
            p.wait()
        if os.environ.get("CRAFT_KEEP_TMP"):
            print("kept " + tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
