// ioredis_client.js -- ioredis's Cluster client against craftd through a
// leader change:
//
//     node ioredis_client.js HOST:PORT[,HOST:PORT...] N PREFIX
//
// The Cluster client discovers the leader itself (CLUSTER SLOTS: the
// leader owns every slot) and follows MOVED and CLUSTERDOWN on its own;
// this program only retries a command that failed outright (a connection
// lost under it, -UNCERTAIN, too many redirections while no leader is
// known), as an application must.  For i = 0 .. N-1 it sets PREFIX:i to
// PREFIX-value-i, reads it back and prints "ok i T" (T: the monotonic clock
// in ns, CLOCK_MONOTONIC on Linux, which the test compares with the time of
// its kill); then it reads every key again and prints "done N".  ioredis is found in $CRAFT_NPM_DIR
// (node_modules/ioredis), where scripts/install-deps puts it.
"use strict";
const path = require("path");

const npmDir = process.env.CRAFT_NPM_DIR || "/var/cache/craft-npm";
const Redis = require(path.join(npmDir, "node_modules", "ioredis"));

// Far beyond one election (300-600 ms in the tests).
const OP_DEADLINE_MS = 20000;
const ATTEMPT_MS = 3000;

function die(msg) {
  process.stderr.write("ioredis_client: " + msg + "\n");
  process.exit(1);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// One attempt, abandoned after ATTEMPT_MS (a SET or GET may run twice).
function attempt(fn) {
  let timer;
  return Promise.race([
    fn(),
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error("attempt timed out")),
                         ATTEMPT_MS);
    }),
  ]).finally(() => clearTimeout(timer));
}

let retries = 0;

async function retry(what, fn) {
  const deadline = Date.now() + OP_DEADLINE_MS;
  let last;
  while (Date.now() < deadline) {
    try {
      return await attempt(fn);
    } catch (e) {
      last = e;
      retries++;
      await sleep(50);
    }
  }
  die(what + ": no answer within " + OP_DEADLINE_MS + " ms: " + last);
}

async function main() {
  if (process.argv.length !== 5) {
    die("usage: node ioredis_client.js HOST:PORT[,...] N PREFIX");
  }
  const nodes = process.argv[2].split(",").map((a) => {
    const i = a.lastIndexOf(":");
    return { host: a.slice(0, i), port: Number(a.slice(i + 1)) };
  });
  const n = Number(process.argv[3]);
  const prefix = process.argv[4];
  const cluster = new Redis.Cluster(nodes, {
    scaleReads: "master",
    retryDelayOnFailover: 100,
    retryDelayOnClusterDown: 100,
    slotsRefreshTimeout: 1000,
    clusterRetryStrategy: (times) => Math.min(50 * times, 500),
    redisOptions: { connectTimeout: 1000, maxRetriesPerRequest: 2 },
  });
  cluster.on("error", () => {}); // failures surface through the commands
  let nodesAdded = 0;
  cluster.on("+node", () => nodesAdded++);
  for (let i = 0; i < n; i++) {
    const key = prefix + ":" + i;
    const value = prefix + "-value-" + i;
    const ok = await retry("SET " + key, () => cluster.set(key, value));
    if (ok !== "OK") die("SET " + key + ": " + ok);
    const got = await retry("GET " + key, () => cluster.get(key));
    if (got !== value) die("GET " + key + ": got " + got + ", want " + value);
    console.log("ok " + i + " " + process.hrtime.bigint());
  }
  for (let i = 0; i < n; i++) {
    const key = prefix + ":" + i;
    const got = await retry("GET " + key, () => cluster.get(key));
    if (got !== prefix + "-value-" + i) die("GET " + key + ": got " + got);
  }
  console.log("done " + n);
  console.log("stats retries=" + retries + " nodes_added=" + nodesAdded +
              " ioredis=" + require(path.join(npmDir, "node_modules",
                                               "ioredis", "package.json"))
                                 .version);
  cluster.disconnect();
}

main().catch((e) => die(String(e && e.stack || e)));
