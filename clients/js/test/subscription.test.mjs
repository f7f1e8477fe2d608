// The subscription's rules against a scripted server (answers chosen per request), for
// what the real bridge cannot be made to do on cue: the order of an event, its handlers
// and its kept id; which answers stop it; what `getToken` is told; the async iterator.

import { test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { connect } from "../dist/sse-bridge-client.js";

/** A server answering the n-th request with `script[n]` (the last one repeats). */
async function scripted(script) {
  const requests = [];
  const server = http.createServer((req, res) => {
    requests.push({ url: req.url, headers: req.headers });
    const step = script[Math.min(requests.length - 1, script.length - 1)];
    step(req, res);
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return { url: `http://127.0.0.1:${server.address().port}/streams/r`, requests, close: () => server.close() };
}

const stream = (body, end = true) => (_req, res) => {
  res.writeHead(200, { "content-type": "text/event-stream" });
  res.write(body);
  if (end) res.end();
};
const refuse = (status, code, headers = {}) => (_req, res) => {
  res.writeHead(status, { "content-type": "application/json", ...headers });
  res.end(JSON.stringify({ error: code, message: `${code} here` }));
};
const hold = () => () => {};

const until = async (check, ms = 5000) => {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error("timed out");
    await new Promise((r) => setTimeout(r, 10));
  }
};

test("a kept id is kept with what its event changed, heartbeats move it too", async () => {
  const s = await scripted([stream("retry: 50\nid: 1\ndata: a\n\nid: 2\ndata: b\n\nid: 3\n\n", false)]);
  const kept = [];
  let seen = 0;
  const sub = connect(s.url, {
    persist: { get: () => null, set: (_k, id) => kept.push([id, seen]) },
  });
  sub.on("message", () => seen++);
  try {
    await until(() => kept.length === 3);
    assert.deepEqual(kept, [["1", 1], ["2", 2], ["3", 2]]);
    assert.equal(sub.lastEventId, "3");
  } finally {
    sub.close();
    s.close();
  }
});

test("resumes with Last-Event-ID and the kept id; honours retry:", async () => {
  const s = await scripted([stream("retry: 30\nid: 7\ndata: x\n\n"), stream("id: 8\ndata: y\n\n", false)]);
  const sub = connect(s.url, { lastEventId: "6" });
  const got = [];
  sub.on("message", (e) => got.push(e.data));
  try {
    await until(() => got.length === 2);
    assert.equal(s.requests[0].headers["last-event-id"], "6");
    assert.equal(s.requests[1].headers["last-event-id"], "7");
    assert.equal(sub.stats.reconnects, 1);
  } finally {
    sub.close();
    s.close();
  }
});

for (const status of [400, 403, 404]) {
  test(`${status} stops for good and says why`, async () => {
    const s = await scripted([refuse(status, "nope")]);
    const sub = connect(s.url, { backoff: { initial: 10 } });
    const errors = [];
    sub.on("error", (e) => errors.push(e));
    try {
      await until(() => sub.state === "failed");
      await new Promise((r) => setTimeout(r, 100));
      assert.equal(s.requests.length, 1, "no retry");
      assert.deepEqual([errors[0].status, errors[0].code, errors[0].fatal], [status, "nope", true]);
      assert.equal(sub.stats.lastError.message, "nope here");
    } finally {
      s.close();
    }
  });
}

test("429 and 5xx are retried, Retry-After first", async () => {
  const s = await scripted([refuse(429, "too_many_connections", { "retry-after": "1" }), refuse(502, "http_502"), stream("id: 1\ndata: ok\n\n", false)]);
  const sub = connect(s.url, { backoff: { initial: 10, max: 20 } });
  const errors = [];
  sub.on("error", (e) => errors.push([e.status, e.retryIn]));
  const t0 = Date.now();
  try {
    await until(() => sub.state === "open", 5000);
    assert.ok(Date.now() - t0 >= 1000, "waited Retry-After");
    assert.equal(errors[0][0], 429);
    assert.ok(errors[0][1] >= 1000);
    assert.equal(errors[1][0], 502);
    assert.ok(errors[1][1] <= 20);
  } finally {
    sub.close();
    s.close();
  }
});

test("getToken: before each connect, again on 401 and on expiry, sent as a bearer header", async () => {
  const s = await scripted([
    refuse(401, "unauthorized"),
    stream("id: 1\ndata: a\n\nevent: expired\nid: 1\ndata: {\"reason\":\"token_expired\"}\n\n"),
    stream("id: 2\ndata: b\n\n", false),
  ]);
  const reasons = [];
  let n = 0;
  const sub = connect(s.url, { getToken: ({ reason }) => (reasons.push(reason), `t${n++}`) });
  const expired = [];
  sub.on("expired", (x) => expired.push(x.reason));
  const got = [];
  sub.on("message", (e) => got.push(e.data));
  try {
    await until(() => got.length === 2);
    assert.deepEqual(reasons, ["connect", "unauthorized", "expired"]);
    assert.deepEqual(s.requests.map((r) => r.headers.authorization), ["Bearer t0", "Bearer t1", "Bearer t2"]);
    assert.deepEqual(expired, ["token_expired"]);
    assert.equal(s.requests[2].headers["last-event-id"], "1");
  } finally {
    sub.close();
    s.close();
  }
});

test("401 without getToken is fatal", async () => {
  const s = await scripted([refuse(401, "unauthorized")]);
  const sub = connect(s.url);
  try {
    await until(() => sub.state === "failed");
  } finally {
    s.close();
  }
});

test("multiplexed: the route prefix is split off, reset parsed, composite id kept", async () => {
  const s = await scripted([
    stream('id: X1\nevent: orders:paid\ndata: {"n":1}\n\nid: X2\nevent: users:reset\ndata: {"reason":"position_unavailable","route":"users"}\n\nid: X3\nevent: users:message\ndata: hi\n\n', false),
  ]);
  const sub = connect(s.url.replace("/streams/r", "/streams"), { routes: ["orders", "users"] });
  const seen = [];
  sub.on("paid", (e) => seen.push(["paid", e.route, e.json().n]));
  sub.on("orders:paid", (e) => seen.push(["orders:paid", e.id]));
  sub.on("reset", (r) => seen.push(["reset", r.route, r.reason]));
  sub.on("users:message", (e) => seen.push(["users:message", e.data]));
  try {
    await until(() => seen.length === 4);
    assert.equal(new URL(s.requests[0].url, "http://x").searchParams.get("routes"), "orders,users");
    assert.deepEqual(seen, [["paid", "orders", 1], ["orders:paid", "X1"], ["reset", "users", "position_unavailable"], ["users:message", "hi"]]);
    assert.equal(sub.lastEventId, "X3");
  } finally {
    sub.close();
    s.close();
  }
});

test("for await gets every event in order, and ends when closed", async () => {
  const s = await scripted([stream("id: 1\ndata: a\n\n"), stream("id: 2\nevent: n\ndata: b\n\n"), hold()]);
  const sub = connect(s.url, { backoff: { initial: 10 } });
  const got = [];
  for await (const e of sub) {
    got.push(`${e.type}:${e.data}`);
    if (got.length === 2) sub.close();
  }
  assert.deepEqual(got, ["message:a", "n:b"]);
  assert.equal(sub.state, "closed");
  s.close();
});

test("stats: state, events, events per second, reconnects", async () => {
  const s = await scripted([stream("id: 1\ndata: a\n\nid: 2\ndata: b\n\n"), stream("id: 3\ndata: c\n\n", false)]);
  const sub = connect(s.url, { backoff: { initial: 10 } });
  try {
    await until(() => sub.stats.events === 3);
    const st = sub.stats;
    assert.equal(st.state, "open");
    assert.equal(st.reconnects, 1);
    assert.equal(st.lastEventId, "3");
    assert.equal(st.transport, "fetch");
    assert.ok(st.eventsPerSecond > 0 && st.eventsPerSecond <= 0.3 + 1e-9, String(st.eventsPerSecond));
  } finally {
    sub.close();
    s.close();
  }
});
