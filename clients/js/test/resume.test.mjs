// Exactly-once delivery through what stops a plain EventSource: a bridge killed and
// restarted, drained to another instance, over capacity, over its per-address limit, a
// token that expires, a position that is gone, and a multiplexed stream across a
// restart. Against the real bridge binary, broker and replica set.

import { test } from "node:test";
import assert from "node:assert/strict";
import { connect, memoryStore } from "../dist/sse-bridge-client.js";
import {
  Bridge, Records, createTopic, deleteTopic, fixedPort, front, hs256, insert, kafkaRoute, mongoRoute,
  produce, serverToml, sleep, unique, until,
} from "./support/harness.mjs";

const FAST = { backoff: { initial: 200, max: 2000 } };

/** Collect the Kafka records of `sub`, and its errors and states. */
function watch(sub) {
  const w = { records: new Records(), errors: [], states: [], resets: [], expired: 0 };
  sub.on("event", (e) => {
    if (e.type === "message") w.records.add(e);
  });
  sub.on("error", (e) => w.errors.push(e));
  sub.on("state", (s) => w.states.push(s));
  sub.on("reset", (r) => w.resets.push(r));
  sub.on("expired", () => w.expired++);
  return w;
}

test("(a) the bridge killed with SIGKILL and restarted: every record once, in order", async () => {
  const topic = unique("kill");
  await createTopic(topic, 2);
  const [port, admin] = [await fixedPort(), await fixedPort()];
  const bridge = await new Bridge(serverToml(port, admin) + kafkaRoute("r", topic), port, admin).ready();
  const sub = connect(bridge.url("/streams/r"), FAST);
  const w = watch(sub);
  try {
    await produce(topic, 0, 40, 2);
    await until(() => w.records.size >= 40, 15000, "the first 40 records");
    const producing = produce(topic, 40, 60, 2, 30);
    await sleep(500);
    await bridge.stop("SIGKILL");
    await sleep(1500);
    bridge.start();
    await producing;
    await until(() => w.records.size >= 100, 30000, `100 records (have ${w.records.size})`);
    await sleep(500);
    w.records.assertExactlyOnce(0, 100);
    assert.ok(sub.stats.reconnects >= 1, "reconnected");
    assert.ok(w.states.includes("retrying"));
    assert.equal(sub.state, "open");
  } finally {
    sub.close();
    await bridge.stop("SIGKILL");
  }
});

test("(b) SIGTERM drain, reconnecting to a second instance behind the same address", async () => {
  const topic = unique("drain");
  await createTopic(topic, 2);
  const [pa, aa, pb, ab] = [await fixedPort(), await fixedPort(), await fixedPort(), await fixedPort()];
  const a = await new Bridge(serverToml(pa, aa) + kafkaRoute("r", topic), pa, aa, "a").ready();
  const b = await new Bridge(serverToml(pb, ab) + kafkaRoute("r", topic), pb, ab, "b").ready();
  const svc = await front([pa, pb]);
  const sub = connect(`http://127.0.0.1:${svc.port}/streams/r`, FAST);
  const w = watch(sub);
  try {
    await produce(topic, 0, 30, 2);
    await until(() => w.records.size >= 30, 15000, "the first 30 records");
    const producing = produce(topic, 30, 70, 2, 30);
    await sleep(300);
    await a.stop("SIGTERM");
    await producing;
    await until(() => w.records.size >= 100, 30000, `100 records (have ${w.records.size})`);
    await sleep(500);
    w.records.assertExactlyOnce(0, 100);
    assert.ok(sub.stats.reconnects >= 1);
  } finally {
    sub.close();
    svc.close();
    await a.stop("SIGKILL");
    await b.stop("SIGKILL");
  }
});

test("(c) 503 over_capacity, then capacity freed", async () => {
  const topic = unique("capacity");
  await createTopic(topic, 2);
  const [port, admin] = [await fixedPort(), await fixedPort()];
  const bridge = await new Bridge(serverToml(port, admin, "max_connections = 1") + kafkaRoute("r", topic), port, admin).ready();
  const holder = new AbortController();
  const held = await fetch(bridge.url("/streams/r"), { signal: holder.signal });
  assert.equal(held.status, 200);
  const sub = connect(bridge.url("/streams/r"), FAST);
  const w = watch(sub);
  try {
    await produce(topic, 0, 50, 2);
    await until(() => w.errors.some((e) => e.code === "over_capacity"), 10000, "an over_capacity answer");
    const e = w.errors.find((x) => x.code === "over_capacity");
    assert.equal(e.status, 503);
    assert.equal(e.fatal, false);
    assert.equal(sub.state === "retrying" || sub.state === "connecting", true, sub.state);
    holder.abort();
    await until(() => w.records.size >= 50, 20000, `50 records (have ${w.records.size})`);
    await produce(topic, 50, 10, 2);
    await until(() => w.records.size >= 60, 10000, "60 records");
    await sleep(300);
    w.records.assertExactlyOnce(0, 60);
    assert.equal(sub.stats.lastError?.code ?? null, null, "an open stream clears the last error");
  } finally {
    sub.close();
    holder.abort();
    await bridge.stop("SIGKILL");
  }
});

test("(d) 429 too_many_connections: waits its Retry-After, then gets everything", async () => {
  const topic = unique("per-ip");
  await createTopic(topic, 1);
  const [port, admin] = [await fixedPort(), await fixedPort()];
  const bridge = await new Bridge(serverToml(port, admin, "max_connections_per_ip = 1") + kafkaRoute("r", topic), port, admin).ready();
  const holder = new AbortController();
  const held = await fetch(bridge.url("/streams/r"), { signal: holder.signal });
  assert.equal(held.status, 200);
  const sub = connect(bridge.url("/streams/r"), { backoff: { initial: 50, max: 100 } });
  const w = watch(sub);
  try {
    await produce(topic, 0, 20, 1);
    await until(() => w.errors.some((e) => e.status === 429), 10000, "a 429");
    const e = w.errors.find((x) => x.status === 429);
    assert.equal(e.code, "too_many_connections");
    // The backoff alone would retry within 100 ms: Retry-After (whole seconds) rules.
    assert.ok(e.retryIn >= 1000, `retryIn ${e.retryIn}`);
    const before = w.errors.filter((x) => x.status === 429).length;
    await sleep(600);
    assert.equal(w.errors.filter((x) => x.status === 429).length, before, "no retry before Retry-After");
    holder.abort();
    await until(() => w.records.size >= 20, 20000, `20 records (have ${w.records.size})`);
    await sleep(300);
    w.records.assertExactlyOnce(0, 20);
  } finally {
    sub.close();
    holder.abort();
    await bridge.stop("SIGKILL");
  }
});

test("(e) a token that expires is refreshed and the stream resumes with nothing lost", async () => {
  const topic = unique("expiry");
  await createTopic(topic, 2);
  const secret = "a-test-secret-of-at-least-32-bytes!!";
  const [port, admin] = [await fixedPort(), await fixedPort()];
  const auth = `auth = { type = "jwt", algorithm = "HS256", secret = "${secret}", leeway = "0s" }`;
  const bridge = await new Bridge(serverToml(port, admin) + kafkaRoute("r", topic, auth), port, admin).ready();
  const reasons = [];
  const sub = connect(bridge.url("/streams/r"), {
    ...FAST,
    getToken: ({ reason }) => {
      reasons.push(reason);
      return hs256(secret, { sub: "dash", exp: Math.floor(Date.now() / 1000) + 2 });
    },
  });
  const w = watch(sub);
  try {
    await produce(topic, 0, 120, 2, 40);
    await until(() => w.records.size >= 120, 30000, `120 records (have ${w.records.size})`);
    await sleep(300);
    w.records.assertExactlyOnce(0, 120);
    assert.ok(w.expired >= 1, "the stream said the token expired");
    assert.ok(reasons.includes("expired"), `getToken reasons ${reasons}`);
    assert.equal(w.errors.filter((e) => e.fatal).length, 0);
  } finally {
    sub.close();
    await bridge.stop("SIGKILL");
  }
});

test("(f) a position that is gone comes as a typed reset, then the stream goes on", async () => {
  const topic = unique("reset");
  await createTopic(topic, 1);
  const [port, admin] = [await fixedPort(), await fixedPort()];
  const bridge = await new Bridge(serverToml(port, admin) + kafkaRoute("r", topic), port, admin).ready();
  const store = memoryStore();
  const first = connect(bridge.url("/streams/r"), { ...FAST, persist: store });
  const w1 = watch(first);
  try {
    await produce(topic, 0, 10, 1);
    await until(() => w1.records.size >= 10, 15000, "10 records");
    first.close();
    assert.ok(store.entries.size === 1, "the last id was kept");
    // The topic is deleted and created again: the kept offset is beyond the new log.
    await deleteTopic(topic);
    await sleep(1000);
    await createTopic(topic, 1);
    await produce(topic, 100, 3, 1);
    const second = connect(bridge.url("/streams/r"), { ...FAST, persist: store });
    const w2 = watch(second);
    try {
      await until(() => w2.resets.length >= 1 && w2.records.size >= 3, 20000, "a reset and 3 records");
      const r = w2.resets[0];
      assert.equal(r.reason, "position_unavailable");
      assert.equal(r.route, "r");
      assert.equal(r.partitions[0].topic, topic);
      assert.equal(r.partitions[0].reason, "offset_beyond_log_end");
      assert.equal(r.partitions[0].requested, 10);
      assert.equal(r.partitions[0].resumed_from, 0);
      assert.equal(r.event.type, "reset");
      w2.records.assertExactlyOnce(100, 3, "after the reset");
    } finally {
      second.close();
    }
  } finally {
    first.close();
    await bridge.stop("SIGKILL");
  }
});

test("(g) a multiplexed stream resumes both routes across a restart", async () => {
  const topic = unique("mux");
  await createTopic(topic, 2);
  const db = unique("muxdb").replaceAll("-", "_");
  const [port, admin] = [await fixedPort(), await fixedPort()];
  const toml = serverToml(port, admin) + kafkaRoute("orders", topic) + mongoRoute("stock", db, "items");
  const bridge = await new Bridge(toml, port, admin).ready();
  const sub = connect(bridge.url("/streams"), { ...FAST, routes: ["orders", "stock"] });
  const orders = new Records();
  const stock = [];
  const perRoute = { orders: 0, stock: 0 };
  sub.on("message", (e) => {
    if (e.route === "orders") orders.add(e);
  });
  sub.on("insert", (e) => {
    assert.equal(e.route, "stock");
    stock.push(e.json().seq);
  });
  sub.on("orders:message", () => perRoute.orders++);
  sub.on("stock:insert", () => perRoute.stock++);
  try {
    await until(() => sub.state === "open", 10000, "open");
    await Promise.all([produce(topic, 0, 20, 2), insert(db, "items", 0, 20)]);
    await until(() => orders.size >= 20 && stock.length >= 20, 15000, "the first events of both routes");
    const writing = Promise.all([produce(topic, 20, 40, 2, 25), insert(db, "items", 20, 40, 25)]);
    await sleep(400);
    await bridge.restart();
    await writing;
    await until(() => orders.size >= 60 && stock.length >= 60, 30000, `60 of each (have ${orders.size}, ${stock.length})`);
    await sleep(500);
    orders.assertExactlyOnce(0, 60, "orders");
    assert.deepEqual(stock, Array.from({ length: 60 }, (_, i) => i), "stock: every insert once, in order");
    assert.deepEqual(perRoute, { orders: 60, stock: 60 });
    assert.ok(sub.lastEventId.length > 0);
    assert.ok(sub.stats.reconnects >= 1);
  } finally {
    sub.close();
    await bridge.stop("SIGKILL");
  }
});
