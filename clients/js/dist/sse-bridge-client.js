// src/retry.ts
function isFatal(status) {
  return status === 400 || status === 403 || status === 404 || status === 405 || status === 410 || status === 431 || status === 204;
}
function retryAfter(value, now = Date.now()) {
  if (!value) return void 0;
  const v = value.trim();
  if (/^[0-9]+$/.test(v)) return parseInt(v, 10) * 1e3;
  const at = Date.parse(v);
  return Number.isNaN(at) ? void 0 : Math.max(0, at - now);
}
function backoffDelay(attempt, initial, max, random = Math.random) {
  const full = Math.min(max, initial * 2 ** Math.min(attempt, 30));
  return Math.round(full / 2 + full / 2 * random());
}

// src/store.ts
function webStorage(kind) {
  const storage = () => {
    try {
      const g = globalThis;
      return kind === "session" ? g.sessionStorage : g.localStorage;
    } catch {
      return void 0;
    }
  };
  return {
    get(key) {
      try {
        return storage()?.getItem(key) ?? null;
      } catch {
        return null;
      }
    },
    set(key, id) {
      try {
        storage()?.setItem(key, id);
      } catch {
      }
    }
  };
}
function memoryStore() {
  const entries = /* @__PURE__ */ new Map();
  return {
    entries,
    get: (key) => entries.get(key) ?? null,
    set: (key, id) => {
      entries.set(key, id);
    }
  };
}

// src/parser.ts
var EventStreamParser = class {
  constructor(sink, lastId = "") {
    this.sink = sink;
    this.decoder = new TextDecoder("utf-8");
    this.buf = "";
    this.first = true;
    this.pendingCR = false;
    this.data = "";
    this.hasData = false;
    this.type = "";
    this.lastId = lastId;
  }
  /** Feed bytes (or text, already decoded). */
  push(chunk) {
    let text = typeof chunk === "string" ? chunk : this.decoder.decode(chunk, { stream: true });
    if (this.first && text.length > 0) {
      this.first = false;
      if (text.charCodeAt(0) === 65279) text = text.slice(1);
    }
    if (this.pendingCR) {
      this.pendingCR = false;
      if (text.startsWith("\n")) text = text.slice(1);
    }
    this.buf += text;
    let start = 0;
    for (let i = 0; i < this.buf.length; i++) {
      const c = this.buf.charCodeAt(i);
      if (c !== 10 && c !== 13) continue;
      const line = this.buf.slice(start, i);
      if (c === 13) {
        if (i + 1 === this.buf.length) {
          this.pendingCR = true;
        } else if (this.buf.charCodeAt(i + 1) === 10) {
          i++;
        }
      }
      start = i + 1;
      this.line(line);
    }
    this.buf = this.buf.slice(start);
  }
  /** The stream ended: an unterminated event is dropped, as the standard says. */
  end() {
    this.buf = "";
    this.data = "";
    this.hasData = false;
    this.type = "";
  }
  line(line) {
    if (line === "") {
      this.dispatch();
      return;
    }
    if (line.charCodeAt(0) === 58) return;
    const colon = line.indexOf(":");
    let field = line;
    let value = "";
    if (colon >= 0) {
      field = line.slice(0, colon);
      value = line.slice(colon + 1);
      if (value.charCodeAt(0) === 32) value = value.slice(1);
    }
    switch (field) {
      case "event":
        this.type = value;
        break;
      case "data":
        this.data += value + "\n";
        this.hasData = true;
        break;
      case "id":
        if (!value.includes("\0")) this.lastId = value;
        break;
      case "retry":
        if (/^[0-9]+$/.test(value)) this.sink.retry(parseInt(value, 10));
        break;
      default:
        break;
    }
  }
  dispatch() {
    if (!this.hasData) {
      this.type = "";
      this.sink.id(this.lastId);
      return;
    }
    const data = this.data.slice(0, -1);
    const type = this.type || "message";
    this.data = "";
    this.hasData = false;
    this.type = "";
    this.sink.event({ type, data, id: this.lastId });
  }
};

// src/transport.ts
var MAX_ERROR_BODY = 16 * 1024;
async function errorOf(res) {
  let text = "";
  try {
    text = (await res.text()).slice(0, MAX_ERROR_BODY);
  } catch {
  }
  try {
    const body = JSON.parse(text);
    if (typeof body.error === "string") {
      return { code: body.error, message: typeof body.message === "string" ? body.message : body.error };
    }
  } catch {
  }
  return { code: `http_${res.status}`, message: text.trim().slice(0, 200) || res.statusText || `HTTP ${res.status}` };
}
async function viaFetch(a, fetchFn) {
  const headers = { Accept: "text/event-stream", "Cache-Control": "no-cache", ...a.headers };
  if (a.lastEventId) headers["Last-Event-ID"] = a.lastEventId;
  if (a.token) headers["Authorization"] = `Bearer ${a.token}`;
  let res;
  try {
    res = await fetchFn(a.url, { headers, signal: a.signal, cache: "no-store" });
  } catch (e) {
    if (a.signal.aborted) return { kind: "aborted", opened: false };
    return { kind: "network", opened: false, message: String(e?.message ?? e) };
  }
  if (res.status !== 200) {
    const { code, message } = await errorOf(res);
    return { kind: "http", opened: false, status: res.status, code, message, retryAfter: retryAfter(res.headers.get("retry-after")) };
  }
  const type = res.headers.get("content-type") ?? "";
  if (!type.toLowerCase().startsWith("text/event-stream") || !res.body) {
    try {
      await res.body?.cancel();
    } catch {
    }
    return { kind: "http", opened: false, status: 200, code: "not_event_stream", message: `expected text/event-stream, got ${type || "no content type"}` };
  }
  a.onOpen();
  const parser = new EventStreamParser(a.sink, a.lastEventId);
  const reader = res.body.getReader();
  try {
    for (; ; ) {
      const { done, value } = await reader.read();
      if (done) break;
      parser.push(value);
    }
  } catch (e) {
    if (a.signal.aborted) return { kind: "aborted", opened: true };
    return { kind: "ended", opened: true, message: String(e?.message ?? e) };
  } finally {
    parser.end();
    reader.releaseLock();
  }
  return { kind: "ended", opened: true };
}
function canStreamFetch() {
  return typeof fetch === "function" && typeof ReadableStream === "function" && typeof Response === "function" && "body" in Response.prototype;
}
function viaEventSource(a) {
  const u = new URL(a.url, globalThis.location?.href);
  if (a.lastEventId) u.searchParams.set("lastEventId", a.lastEventId);
  if (a.token) u.searchParams.set("access_token", a.token);
  return new Promise((resolve) => {
    const es = new EventSource(u.toString());
    let opened = false;
    const heard = /* @__PURE__ */ new Set();
    const onEvent = (e) => {
      const m = e;
      a.sink.event({ type: m.type, data: String(m.data), id: m.lastEventId });
    };
    const listen = () => {
      for (const name of a.names()) {
        if (!heard.has(name)) {
          heard.add(name);
          es.addEventListener(name, onEvent);
        }
      }
    };
    listen();
    const relisten = setInterval(listen, 1e3);
    const finish = (o) => {
      clearInterval(relisten);
      es.close();
      a.signal.removeEventListener("abort", abort);
      resolve(o);
    };
    const abort = () => finish({ kind: "aborted", opened });
    a.signal.addEventListener("abort", abort);
    es.onopen = () => {
      opened = true;
      a.onOpen();
    };
    es.onerror = () => finish(opened ? { kind: "ended", opened: true } : { kind: "network", opened: false, message: "EventSource failed (no status visible)" });
  });
}

// src/subscription.ts
var Subscription = class {
  constructor(url, options = {}) {
    this.options = options;
    this.listeners = /* @__PURE__ */ new Map();
    this.current = "connecting";
    this.lastId = "";
    this.reconnectCount = -1;
    this.total = 0;
    this.buckets = new Array(10).fill(0);
    this.bucketSecond = 0;
    this.error = null;
    this.controller = new AbortController();
    this.expired = false;
    this.waiters = [];
    const u = new URL(String(url), globalThis.location?.href);
    this.routes = new Set(options.routes ?? []);
    if (this.routes.size > 0) u.searchParams.set("routes", [...this.routes].join(","));
    this.url = u.toString();
    const t = options.transport ?? "auto";
    this.transportKind = t === "eventsource" || t === "auto" && !canStreamFetch() ? "eventsource" : "fetch";
    this.store = options.persist === "session" || options.persist === "local" ? webStorage(options.persist) : options.persist;
    this.storeKey = options.persistKey ?? `sse-bridge-client:${this.url}`;
    if (options.signal) {
      if (options.signal.aborted) this.controller.abort();
      else options.signal.addEventListener("abort", () => this.close(), { once: true });
    }
    void this.run();
  }
  on(type, listener) {
    let set = this.listeners.get(type);
    if (!set) this.listeners.set(type, set = /* @__PURE__ */ new Set());
    set.add(listener);
    return () => set.delete(listener);
  }
  /** Stop for good. */
  close() {
    if (this.current === "closed") return;
    this.controller.abort();
    this.setState("closed");
  }
  get state() {
    return this.current;
  }
  get lastEventId() {
    return this.lastId;
  }
  get stats() {
    return {
      state: this.current,
      lastEventId: this.lastId,
      reconnects: Math.max(0, this.reconnectCount),
      eventsPerSecond: this.rate(),
      events: this.total,
      lastError: this.error,
      transport: this.transportKind
    };
  }
  /** Every event, in order, until the subscription closes or fails. */
  async *[Symbol.asyncIterator]() {
    const queue = [];
    const off = this.on("event", (e) => {
      queue.push(e);
      this.wake();
    });
    const offState = this.on("state", () => this.wake());
    try {
      for (; ; ) {
        const e = queue.shift();
        if (e) {
          yield e;
          continue;
        }
        if (this.current === "closed" || this.current === "failed") return;
        await new Promise((r) => this.waiters.push(r));
      }
    } finally {
      off();
      offState();
    }
  }
  wake() {
    const w = this.waiters;
    this.waiters = [];
    for (const r of w) r();
  }
  emit(type, value) {
    const set = this.listeners.get(type);
    if (!set) return;
    for (const l of [...set]) {
      try {
        l(value);
      } catch (e) {
        setTimeout(() => {
          throw e;
        });
      }
    }
  }
  setState(s) {
    if (this.current === s || this.current === "closed") return;
    this.current = s;
    this.emit("state", s);
  }
  rate() {
    this.roll(Math.floor(Date.now() / 1e3));
    return this.buckets.reduce((a, b) => a + b, 0) / this.buckets.length;
  }
  roll(second) {
    const gap = second - this.bucketSecond;
    if (gap <= 0) return;
    for (let i = 1; i <= Math.min(gap, this.buckets.length); i++) this.buckets[(this.bucketSecond + i) % this.buckets.length] = 0;
    this.bucketSecond = second;
  }
  setId(id) {
    if (id === this.lastId) return;
    this.lastId = id;
    this.emit("id", id);
    if (this.store && id) {
      try {
        void Promise.resolve(this.store.set(this.storeKey, id)).catch(() => {
        });
      } catch {
      }
    }
  }
  onParsed(p) {
    let type = p.type;
    let route;
    const colon = type.indexOf(":");
    if (colon > 0 && this.routes.has(type.slice(0, colon))) {
      route = type.slice(0, colon);
      type = type.slice(colon + 1);
    }
    const data = p.data;
    const e = {
      type,
      data,
      id: p.id,
      route,
      json() {
        try {
          return JSON.parse(data);
        } catch {
          return void 0;
        }
      }
    };
    this.total++;
    const second = Math.floor(Date.now() / 1e3);
    this.roll(second);
    this.buckets[second % this.buckets.length]++;
    this.emit("event", e);
    if (type === "reset") {
      this.emit("reset", { ...e.json() ?? { reason: "unknown" }, route: route ?? e.json()?.route, event: e });
    } else if (type === "expired") {
      this.expired = true;
      this.emit("expired", { ...e.json() ?? { reason: "token_expired" }, event: e });
    } else {
      this.emit(type, e);
    }
    if (route) this.emit(`${route}:${type}`, e);
    this.setId(p.id);
  }
  names() {
    const base = /* @__PURE__ */ new Set(["message", "reset", "expired", ...this.listeners.keys()]);
    for (const r of this.routes) for (const n of [...base]) base.add(`${r}:${n}`);
    return base;
  }
  async run() {
    const o = this.options;
    const initial = () => o.backoff?.initial ?? this.serverRetry ?? 1e3;
    const max = o.backoff?.max ?? 3e4;
    if (o.lastEventId) this.lastId = o.lastEventId;
    else if (this.store) {
      try {
        this.lastId = await this.store.get(this.storeKey) ?? "";
      } catch {
        this.lastId = "";
      }
    }
    let attempt = 0;
    let unauthorized = 0;
    let reason = "connect";
    const fetchFn = o.fetch ?? ((...args) => fetch(...args));
    while (!this.controller.signal.aborted) {
      this.setState("connecting");
      this.reconnectCount++;
      let token;
      if (o.getToken) {
        try {
          token = await o.getToken({ reason });
        } catch (e) {
          const delay2 = backoffDelay(attempt++, initial(), max);
          this.fail({ status: 0, code: "token_error", message: String(e?.message ?? e), fatal: false, retryIn: delay2 });
          if (!await this.sleep(delay2)) return;
          continue;
        }
      }
      this.expired = false;
      const openedAt = Date.now();
      const eventsBefore = this.total;
      const attemptArgs = {
        url: this.url,
        headers: o.headers ?? {},
        lastEventId: this.lastId,
        token,
        signal: this.controller.signal,
        sink: {
          event: (p) => this.onParsed(p),
          id: (id) => this.setId(id),
          retry: (ms) => {
            this.serverRetry = ms;
          }
        },
        onOpen: () => {
          this.error = null;
          unauthorized = 0;
          this.setState("open");
          this.emit("open", { reconnect: this.reconnectCount > 0 });
        },
        names: () => this.names()
      };
      const out = this.transportKind === "fetch" ? await viaFetch(attemptArgs, fetchFn) : await viaEventSource(attemptArgs);
      if (out.kind === "aborted" || this.controller.signal.aborted) return;
      reason = "connect";
      let delay;
      if (out.kind === "ended") {
        if (this.total > eventsBefore || Date.now() - openedAt > 5e3) attempt = 0;
        if (this.expired) {
          reason = "expired";
          delay = 0;
        } else {
          delay = backoffDelay(attempt++, initial(), max);
          this.fail({ status: 200, code: "stream_ended", message: out.message ?? "the stream ended", fatal: false, retryIn: delay }, true);
        }
      } else if (out.kind === "network") {
        delay = backoffDelay(attempt++, initial(), max);
        this.fail({ status: 0, code: "network_error", message: out.message, fatal: false, retryIn: delay });
      } else if (out.status === 401 && o.getToken) {
        reason = "unauthorized";
        delay = unauthorized++ === 0 ? 0 : backoffDelay(attempt++, initial(), max);
        this.fail({ status: 401, code: out.code, message: out.message, fatal: false, retryIn: delay });
      } else if (isFatal(out.status) || out.status === 401) {
        this.fail({ status: out.status, code: out.code, message: out.message, fatal: true });
        this.setState("failed");
        this.wake();
        return;
      } else {
        delay = Math.max(out.retryAfter ?? 0, backoffDelay(attempt++, initial(), max));
        this.fail({ status: out.status, code: out.code, message: out.message, fatal: false, retryIn: delay });
      }
      this.setState("retrying");
      if (!await this.sleep(delay)) return;
    }
  }
  /** Record an error; `quiet` ones (a stream that ended) are not emitted as `error`. */
  fail(e, quiet = false) {
    this.error = e;
    if (!quiet) this.emit("error", e);
  }
  sleep(ms) {
    const signal = this.controller.signal;
    if (signal.aborted) return Promise.resolve(false);
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        signal.removeEventListener("abort", stop);
        resolve(true);
      }, ms);
      const stop = () => {
        clearTimeout(t);
        resolve(false);
      };
      signal.addEventListener("abort", stop, { once: true });
    });
  }
};

// src/index.ts
function connect(url, options) {
  return new Subscription(url, options);
}
export {
  EventStreamParser,
  Subscription,
  backoffDelay,
  connect,
  isFatal,
  memoryStore,
  retryAfter,
  webStorage
};
