// The event stream parser against the WHATWG standard's rules, fed whole and byte by byte.
import { test } from "node:test";
import assert from "node:assert/strict";
import { EventStreamParser, backoffDelay, retryAfter, isFatal } from "../dist/sse-bridge-client.js";

function parse(chunks, lastId = "") {
  const out = { events: [], ids: [], retries: [] };
  const p = new EventStreamParser({ event: (e) => out.events.push(e), id: (i) => out.ids.push(i), retry: (r) => out.retries.push(r) }, lastId);
  for (const c of chunks) p.push(typeof c === "string" ? new TextEncoder().encode(c) : c);
  p.end();
  return out;
}

function bytewise(text) {
  return [...new TextEncoder().encode(text)].map((b) => new Uint8Array([b]));
}

const STREAM = "\uFEFF: comment\nretry: 1500\nid: a1\nevent: paid\ndata: {\"x\":1}\ndata:second\n\ndata\n\nid: hb\n\nevent: e\ndata:  two spaces\r\n\r\nid: bad\u0000id\ndata: nul id ignored\r\rdata: unterminated";

for (const [name, chunks] of [["whole", [STREAM]], ["byte by byte", bytewise(STREAM)]]) {
  test(`parses the standard's cases (${name})`, () => {
    const out = parse(chunks);
    assert.deepEqual(out.events, [
      { type: "paid", data: "{\"x\":1}\nsecond", id: "a1" },
      { type: "message", data: "", id: "a1" },
      { type: "e", data: " two spaces", id: "hb" },
      { type: "message", data: "nul id ignored", id: "hb" },
    ]);
    assert.deepEqual(out.retries, [1500]);
    // Events carry their ids; the id-only heartbeat reports its own.
    assert.deepEqual(out.ids, ["hb"]);
  });
}

test("a CR at the end of a chunk and the LF in the next are one line end", () => {
  const out = parse(["data: a\r", "\n\r", "\ndata: b\n\n"]);
  assert.deepEqual(out.events.map((e) => e.data), ["a", "b"]);
});

test("multi-byte UTF-8 split across chunks", () => {
  const bytes = new TextEncoder().encode("data: €uro ✓\n\n");
  const out = parse([bytes.slice(0, 7), bytes.slice(7, 9), bytes.slice(9)]);
  assert.equal(out.events[0].data, "€uro ✓");
});

test("retry takes digits only; unknown fields are ignored", () => {
  const out = parse(["retry: 10s\nretry: -1\nretry:250\nfoo: bar\ndata: x\n\n"]);
  assert.deepEqual(out.retries, [250]);
  assert.equal(out.events.length, 1);
});

test("the last id carries over from the constructor", () => {
  const out = parse(["data: x\n\n"], "prev");
  assert.equal(out.events[0].id, "prev");
});

test("an empty id resets the last id", () => {
  const out = parse(["id: 5\ndata: a\n\nid\ndata: b\n\n"]);
  assert.deepEqual(out.events.map((e) => e.id), ["5", ""]);
});

test("Retry-After in seconds and as a date", () => {
  assert.equal(retryAfter("7"), 7000);
  assert.equal(retryAfter(new Date(10_000 + 3000).toUTCString(), 10_000), 3000);
  assert.equal(retryAfter(null), undefined);
  assert.equal(retryAfter("soon"), undefined);
});

test("backoff doubles up to its cap, jittered down by at most half", () => {
  assert.equal(backoffDelay(0, 1000, 30000, () => 1), 1000);
  assert.equal(backoffDelay(0, 1000, 30000, () => 0), 500);
  assert.equal(backoffDelay(3, 1000, 30000, () => 1), 8000);
  assert.equal(backoffDelay(10, 1000, 30000, () => 1), 30000);
  assert.equal(backoffDelay(100, 1000, 30000, () => 0), 15000);
});

test("fatal answers stop, transient ones do not", () => {
  for (const s of [400, 403, 404]) assert.equal(isFatal(s), true, String(s));
  for (const s of [401, 429, 500, 502, 503, 504]) assert.equal(isFatal(s), false, String(s));
});
