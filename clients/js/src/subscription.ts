// A subscription: connects, reconnects after every failure but a fatal one, resumes from
// the last id each time, refreshes its token when told, and reports what it does.

import type { ParsedEvent } from "./parser.js";
import { backoffDelay, isFatal } from "./retry.js";
import { webStorage } from "./store.js";
import { canStreamFetch, viaEventSource, viaFetch, type Outcome } from "./transport.js";
import type { ConnectOptions, EventMap, PositionStore, State, Stats, StreamError, StreamEvent } from "./types.js";

type Listener<T> = (value: T) => void;

/** A stream that lives through errors, read with listeners or `for await`. */
export class Subscription implements AsyncIterable<StreamEvent> {
  private listeners = new Map<string, Set<Listener<never>>>();
  private current: State = "connecting";
  private lastId = "";
  private reconnectCount = -1;
  private total = 0;
  private buckets = new Array<number>(10).fill(0);
  private bucketSecond = 0;
  private error: StreamError | null = null;
  private serverRetry: number | undefined;
  private controller = new AbortController();
  private expired = false;
  private transportKind: "fetch" | "eventsource";
  private store: PositionStore | undefined;
  private storeKey: string;
  private routes: Set<string>;
  private url: string;
  private waiters: Array<() => void> = [];

  constructor(url: string | URL, private options: ConnectOptions = {}) {
    const u = new URL(String(url), (globalThis as { location?: { href: string } }).location?.href);
    this.routes = new Set(options.routes ?? []);
    if (this.routes.size > 0) u.searchParams.set("routes", [...this.routes].join(","));
    this.url = u.toString();
    const t = options.transport ?? "auto";
    this.transportKind = t === "eventsource" || (t === "auto" && !canStreamFetch()) ? "eventsource" : "fetch";
    this.store = options.persist === "session" || options.persist === "local" ? webStorage(options.persist) : options.persist;
    this.storeKey = options.persistKey ?? `sse-bridge-client:${this.url}`;
    if (options.signal) {
      if (options.signal.aborted) this.controller.abort();
      else options.signal.addEventListener("abort", () => this.close(), { once: true });
    }
    void this.run();
  }

  /** Listen to `event` (every event), `message`, a named event (`paid`; on a
   * multiplexed stream also `orders:paid`), `reset`, `expired`, `open`, `error` or
   * `state`. Returns a function that stops listening. */
  on<K extends keyof EventMap>(type: K, listener: Listener<EventMap[K]>): () => void;
  on(type: string, listener: Listener<StreamEvent>): () => void;
  on(type: string, listener: Listener<never>): () => void {
    let set = this.listeners.get(type);
    if (!set) this.listeners.set(type, (set = new Set()));
    set.add(listener);
    return () => set!.delete(listener);
  }

  /** Stop for good. */
  close(): void {
    if (this.current === "closed") return;
    this.controller.abort();
    this.setState("closed");
  }

  get state(): State {
    return this.current;
  }

  get lastEventId(): string {
    return this.lastId;
  }

  get stats(): Stats {
    return {
      state: this.current,
      lastEventId: this.lastId,
      reconnects: Math.max(0, this.reconnectCount),
      eventsPerSecond: this.rate(),
      events: this.total,
      lastError: this.error,
      transport: this.transportKind,
    };
  }

  /** Every event, in order, until the subscription closes or fails. */
  async *[Symbol.asyncIterator](): AsyncIterator<StreamEvent> {
    const queue: StreamEvent[] = [];
    const off = this.on("event", (e) => {
      queue.push(e);
      this.wake();
    });
    const offState = this.on("state", () => this.wake());
    try {
      for (;;) {
        const e = queue.shift();
        if (e) {
          yield e;
          continue;
        }
        if (this.current === "closed" || this.current === "failed") return;
        await new Promise<void>((r) => this.waiters.push(r));
      }
    } finally {
      off();
      offState();
    }
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const r of w) r();
  }

  private emit(type: string, value: unknown): void {
    const set = this.listeners.get(type);
    if (!set) return;
    for (const l of [...set]) {
      try {
        (l as Listener<unknown>)(value);
      } catch (e) {
        // A listener's bug must not stop the stream.
        setTimeout(() => {
          throw e;
        });
      }
    }
  }

  private setState(s: State): void {
    if (this.current === s || this.current === "closed") return;
    this.current = s;
    this.emit("state", s);
  }

  private rate(): number {
    this.roll(Math.floor(Date.now() / 1000));
    return this.buckets.reduce((a, b) => a + b, 0) / this.buckets.length;
  }

  private roll(second: number): void {
    const gap = second - this.bucketSecond;
    if (gap <= 0) return;
    for (let i = 1; i <= Math.min(gap, this.buckets.length); i++) this.buckets[(this.bucketSecond + i) % this.buckets.length] = 0;
    this.bucketSecond = second;
  }

  private setId(id: string): void {
    if (id === this.lastId) return;
    this.lastId = id;
    this.emit("id", id);
    if (this.store && id) {
      try {
        void Promise.resolve(this.store.set(this.storeKey, id)).catch(() => {});
      } catch {
        /* a store that throws keeps nothing */
      }
    }
  }

  private onParsed(p: ParsedEvent): void {
    let type = p.type;
    let route: string | undefined;
    const colon = type.indexOf(":");
    if (colon > 0 && this.routes.has(type.slice(0, colon))) {
      route = type.slice(0, colon);
      type = type.slice(colon + 1);
    }
    const data = p.data;
    const e: StreamEvent = {
      type,
      data,
      id: p.id,
      route,
      json<T>(): T | undefined {
        try {
          return JSON.parse(data) as T;
        } catch {
          return undefined;
        }
      },
    };
    this.total++;
    const second = Math.floor(Date.now() / 1000);
    this.roll(second);
    this.buckets[second % this.buckets.length]++;
    this.emit("event", e);
    if (type === "reset") {
      this.emit("reset", { ...(e.json<object>() ?? { reason: "unknown" }), route: route ?? (e.json<{ route?: string }>()?.route), event: e });
    } else if (type === "expired") {
      this.expired = true;
      this.emit("expired", { ...(e.json<object>() ?? { reason: "token_expired" }), event: e });
    } else {
      this.emit(type, e);
    }
    if (route) this.emit(`${route}:${type}`, e);
    this.setId(p.id);
  }

  private names(): Iterable<string> {
    const base = new Set<string>(["message", "reset", "expired", ...this.listeners.keys()]);
    for (const r of this.routes) for (const n of [...base]) base.add(`${r}:${n}`);
    return base;
  }

  private async run(): Promise<void> {
    const o = this.options;
    const initial = () => o.backoff?.initial ?? this.serverRetry ?? 1000;
    const max = o.backoff?.max ?? 30000;
    if (o.lastEventId) this.lastId = o.lastEventId;
    else if (this.store) {
      try {
        this.lastId = (await this.store.get(this.storeKey)) ?? "";
      } catch {
        this.lastId = "";
      }
    }
    let attempt = 0;
    let unauthorized = 0;
    let reason: "connect" | "unauthorized" | "expired" = "connect";
    const fetchFn = o.fetch ?? ((...args: Parameters<typeof fetch>) => fetch(...args));
    while (!this.controller.signal.aborted) {
      this.setState("connecting");
      this.reconnectCount++;
      let token: string | null | undefined;
      if (o.getToken) {
        try {
          token = await o.getToken({ reason });
        } catch (e) {
          const delay = backoffDelay(attempt++, initial(), max);
          this.fail({ status: 0, code: "token_error", message: String((e as Error)?.message ?? e), fatal: false, retryIn: delay });
          if (!(await this.sleep(delay))) return;
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
          event: (p: ParsedEvent) => this.onParsed(p),
          id: (id: string) => this.setId(id),
          retry: (ms: number) => {
            this.serverRetry = ms;
          },
        },
        onOpen: () => {
          this.error = null;
          unauthorized = 0;
          this.setState("open");
          this.emit("open", { reconnect: this.reconnectCount > 0 });
        },
        names: () => this.names(),
      };
      const out: Outcome = this.transportKind === "fetch" ? await viaFetch(attemptArgs, fetchFn) : await viaEventSource(attemptArgs);
      if (out.kind === "aborted" || this.controller.signal.aborted) return;
      reason = "connect";
      let delay: number;
      if (out.kind === "ended") {
        // A stream that lived (events, or a while) starts the backoff over.
        if (this.total > eventsBefore || Date.now() - openedAt > 5000) attempt = 0;
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
        // A fresh token at once; a token that keeps failing backs off like any error.
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
      if (!(await this.sleep(delay))) return;
    }
  }

  /** Record an error; `quiet` ones (a stream that ended) are not emitted as `error`. */
  private fail(e: StreamError, quiet = false): void {
    this.error = e;
    if (!quiet) this.emit("error", e);
  }

  private sleep(ms: number): Promise<boolean> {
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
}
