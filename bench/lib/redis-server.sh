#!/bin/sh
# A redis-server on 127.0.0.1 for benchmarks, configured as the durable
# peer of bench/kv: every write is in the append-only file and fsynced
# before the reply (--appendonly yes --appendfsync always), no RDB saves.
#
#   redis-server.sh start DIR [ARGS...]  start it with its files in DIR
#                                        (created), extra redis-server
#                                        ARGS appended; wait until it
#                                        answers PING; print 127.0.0.1:PORT
#                                        (also kept in DIR/endpoint)
#   redis-server.sh stop DIR             stop it by the PID in DIR/pid
#                                        (TERM, then KILL after 5 s)
#
# The port is picked free by the kernel; a start that loses the race for it
# is retried.  Environment: REDIS_SERVER (default: redis-server on PATH).
set -eu

REDIS_SERVER=${REDIS_SERVER:-redis-server}

die() {
    echo "redis-server.sh: $*" >&2
    exit 1
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Whether PID $1 is still the redis-server started in directory $2.
is_ours() {
    [ -r "/proc/$1/cwd" ] && [ "$(readlink "/proc/$1/cwd" 2>/dev/null)" = "$2" ] &&
        grep -q '^State:[^Z]*$' "/proc/$1/status" 2>/dev/null
}

stop() {
    dir=$(cd "$1" 2>/dev/null && pwd) || return 0
    [ -f "$dir/pid" ] || return 0
    pid=$(cat "$dir/pid")
    if is_ours "$pid" "$dir"; then kill -TERM "$pid" 2>/dev/null || true; fi
    i=0
    while is_ours "$pid" "$dir" && [ $i -lt 50 ]; do
        sleep 0.1
        i=$((i + 1))
    done
    if is_ours "$pid" "$dir"; then kill -KILL "$pid" 2>/dev/null || true; fi
    rm -f "$dir/pid" "$dir/endpoint"
}

start() {
    dir=$1
    shift
    command -v "$REDIS_SERVER" >/dev/null 2>&1 || die "no $REDIS_SERVER"
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    [ ! -e "$dir/pid" ] || die "$dir already holds a server (stop it first)"
    for attempt in 1 2 3; do
        port=$(free_port)
        # cd so that is_ours can recognise the process by its directory.
        (cd "$dir" && exec "$REDIS_SERVER" --port "$port" --bind 127.0.0.1 \
            --dir "$dir" --save '' --appendonly yes --appendfsync always \
            "$@" >"$dir/redis.log" 2>&1) &
        echo $! >"$dir/pid"
        i=0
        while [ $i -lt 100 ]; do
            if redis-cli -p "$port" ping 2>/dev/null | grep -q PONG; then
                echo "127.0.0.1:$port" | tee "$dir/endpoint"
                return 0
            fi
            is_ours "$(cat "$dir/pid")" "$dir" || break
            sleep 0.1
            i=$((i + 1))
        done
        echo "redis-server.sh: attempt $attempt failed: $(tail -n 2 "$dir/redis.log")" >&2
        stop "$dir"
    done
    die "could not start redis-server in $dir"
}

case "${1:-}" in
start)
    [ $# -ge 2 ] || die "usage: redis-server.sh start DIR [ARGS...]"
    shift
    start "$@"
    ;;
stop) stop "${2:?usage: redis-server.sh stop DIR}" ;;
*) die "usage: redis-server.sh start|stop DIR" ;;
esac
