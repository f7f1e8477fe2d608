// The real bridge binary, broker and replica set for the client's tests. scripts/test
// builds the bridge, starts the servers and sets SSE_BRIDGE_BIN, SSE_BRIDGE_TEST_KAFKA,
// SSE_BRIDGE_TEST_MONGO and SSE_BRIDGE_PY (the venv's python with confluent-kafka and
// pymongo).

import { spawn } from "node:child_process";
import { createHmac } from "node:crypto";
import { mkdtempSync, writeFileSync, openSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import assert from "node:assert/strict";

const HERE = dirname(fileURLToPath(import.meta.url));

function need(name) {
  const v = process.env[name];
  if (!v) {
    throw new Error(`${name} is not set: run the client's tests through scripts/test, which builds the bridge and starts the broker and replica set`);
  }
  return v;
}

export const BIN = need("SSE_BRIDGE_BIN");
export const KAFKA = need("SSE_BRIDGE_TEST_KAFKA");
export const MONGO = need("SSE_BRIDGE_TEST_MONGO");
const PY = need("SSE_BRIDGE_PY");

let counter = 0;
export function unique(prefix) {
  return `${prefix}-${process.pid}-${Date.now().toString(36)}-${counter++}`;
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function feeds(...args) {
  return new Promise((resolve, reject) => {
    const p = spawn(PY, [join(HERE, "feeds.py"), ...args.map(String)], { stdio: ["ignore", "ignore", "pipe"] });
    let err = "";
    p.stderr.on("data", (d) => (err += d));
    p.on("exit", (code) => (code === 0 ? resolve() : reject(new Error(`feeds.py ${args[0]} failed (${code}): ${err}`))));
  });
}

export const createTopic = (topic, partitions) => feeds("topic", KAFKA, topic, partitions);
export const deleteTopic = (topic) => feeds("delete", KAFKA, topic);
/** Records {"seq": i}, i in first..first+count, to partition i % partitions. */
export const produce = (topic, first, count, partitions, delayMs = 0) => feeds("produce", KAFKA, topic, first, count, partitions, delayMs);
export const insert = (db, coll, first, count, delayMs = 0) => feeds("insert", MONGO, db, coll, first, count, delayMs);

/** A port below the kernel's ephemeral range (so nothing else is handed it between a
 * bridge's stop and its restart), free now. */
export async function fixedPort() {
  for (;;) {
    const port = 20000 + ((process.pid * 7919 + counter++ * 13) % 10000);
    const free = await new Promise((resolve) => {
      const s = net.createServer();
      s.once("error", () => resolve(false));
      s.listen(port, "127.0.0.1", () => s.close(() => resolve(true)));
    });
    if (free) return port;
  }
}

export function serverToml(port, admin, extra = "") {
  return `[server]
listen = "127.0.0.1:${port}"
admin_listen = "127.0.0.1:${admin}"
heartbeat_interval = "1s"
retry = "300ms"
shutdown_grace = "3s"
drain_window = "1s"
source_wait = "5s"
cors_origins = ["*"]
${extra}
`;
}

export function kafkaRoute(name, topic, extra = "") {
  return `
[[routes]]
name = "${name}"
source = { type = "kafka", brokers = ["${KAFKA}"], topics = ["${topic}"], value_format = "json" }
payload = "envelope"
start = "earliest"
${extra}
`;
}

export function mongoRoute(name, db, coll, extra = "") {
  return `
[[routes]]
name = "${name}"
source = { type = "mongodb", uri = "${MONGO}", database = "${db}", collection = "${coll}" }
payload = "document"
${extra}
`;
}

/** The bridge binary running `toml` (its ports chosen by the caller). */
export class Bridge {
  constructor(toml, port, admin, label = "bridge") {
    this.port = port;
    this.admin = admin;
    const dir = mkdtempSync(join(tmpdir(), "sse-bridge-client-"));
    this.file = join(dir, "bridge.toml");
    writeFileSync(this.file, toml);
    this.log = join(dir, `${label}.log`);
    this.start();
  }

  start() {
    const out = openSync(this.log, "a");
    this.proc = spawn(BIN, ["--config", this.file], { stdio: ["ignore", out, out], env: { ...process.env, RUST_LOG: "warn" } });
    this.exited = new Promise((r) => this.proc.once("exit", r));
  }

  url(path) {
    return `http://127.0.0.1:${this.port}${path}`;
  }

  async ready(within = 30000) {
    await until(async () => {
      try {
        const r = await fetch(`http://127.0.0.1:${this.admin}/readyz`);
        if (r.status !== 200) return false;
        const body = await r.json();
        return body.routes.every((x) => x.ready);
      } catch {
        return false;
      }
    }, within, `bridge on ${this.port} ready (log ${this.log})`);
    return this;
  }

  async stop(signal = "SIGTERM") {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    this.proc.kill(signal);
    await this.exited;
  }

  async restart() {
    await this.stop("SIGKILL");
    this.start();
    return this.ready();
  }
}

export async function until(check, within, what) {
  const deadline = Date.now() + within;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${within} ms waiting for ${what}`);
    await sleep(50);
  }
}

/** An HS256 JWT. */
export function hs256(secret, claims) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const body = `${b64({ alg: "HS256", typ: "JWT" })}.${b64(claims)}`;
  return `${body}.${createHmac("sha256", secret).update(body).digest("base64url")}`;
}

/** A TCP front for several bridges, like a Service: each connection goes to the first
 * backend that accepts it. */
export function front(ports) {
  const server = net.createServer((client) => {
    const tryAt = (i) => {
      if (i >= ports.length) return client.destroy();
      const up = net.connect(ports[i], "127.0.0.1");
      up.once("connect", () => {
        client.pipe(up).pipe(client);
        client.on("error", () => up.destroy());
        up.on("error", () => client.destroy());
        client.on("close", () => up.destroy());
        up.on("close", () => client.destroy());
      });
      up.once("error", () => tryAt(i + 1));
    };
    tryAt(0);
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve({ port: server.address().port, close: () => server.close() })));
}

/** Kafka envelopes collected from a subscription's events. */
export class Records {
  constructor() {
    this.list = [];
  }
  add(e) {
    const env = e.json();
    this.list.push({ partition: env.partition, offset: env.offset, seq: env.value.seq, id: e.id });
  }
  get size() {
    return this.list.length;
  }
  /** Every seq in first..first+count exactly once, offsets rising per partition. */
  assertExactlyOnce(first, count, what = "records") {
    const seqs = this.list.map((r) => r.seq).sort((a, b) => a - b);
    const want = Array.from({ length: count }, (_, i) => first + i);
    const dup = seqs.filter((s, i) => i > 0 && seqs[i - 1] === s);
    assert.deepEqual(dup, [], `${what}: delivered twice`);
    assert.deepEqual(seqs, want, `${what}: every record once`);
    const last = new Map();
    for (const r of this.list) {
      const prev = last.get(r.partition);
      assert.ok(prev === undefined || r.offset > prev, `${what}: partition ${r.partition} out of order at offset ${r.offset}`);
      last.set(r.partition, r.offset);
    }
  }
}
