// One connection attempt: open the stream, feed its bytes to the parser, and say how it
// ended. Two transports: streaming `fetch` (headers, status codes, error bodies) and
// `EventSource` (where a response body cannot be streamed; it sees no status codes and
// sends no headers: the id and the token go in the query).

import { EventStreamParser, type ParserSink } from "./parser.js";
import { retryAfter } from "./retry.js";

/** How a connection attempt ended. */
export type Outcome =
  /** The stream ended (the server closed it, or the connection broke after it opened). */
  | { kind: "ended"; opened: true; message?: string }
  /** An answer other than a stream. */
  | { kind: "http"; opened: false; status: number; code: string; message: string; retryAfter?: number }
  /** No answer (refused, reset, DNS, TLS). */
  | { kind: "network"; opened: false; message: string }
  /** `close()` or the signal. */
  | { kind: "aborted"; opened: boolean };

export interface Attempt {
  url: string;
  headers: Record<string, string>;
  lastEventId: string;
  token?: string | null;
  signal: AbortSignal;
  sink: ParserSink;
  onOpen(): void;
  /** Event names an EventSource must listen to (it cannot listen to all). */
  names: () => Iterable<string>;
}

const MAX_ERROR_BODY = 16 * 1024;

async function errorOf(res: Response): Promise<{ code: string; message: string }> {
  let text = "";
  try {
    text = (await res.text()).slice(0, MAX_ERROR_BODY);
  } catch {
    /* the body is gone: the status says enough */
  }
  try {
    const body = JSON.parse(text) as { error?: unknown; message?: unknown };
    if (typeof body.error === "string") {
      return { code: body.error, message: typeof body.message === "string" ? body.message : body.error };
    }
  } catch {
    /* not the bridge's JSON (a proxy's page) */
  }
  return { code: `http_${res.status}`, message: text.trim().slice(0, 200) || res.statusText || `HTTP ${res.status}` };
}

export async function viaFetch(a: Attempt, fetchFn: typeof fetch): Promise<Outcome> {
  const headers: Record<string, string> = { Accept: "text/event-stream", "Cache-Control": "no-cache", ...a.headers };
  if (a.lastEventId) headers["Last-Event-ID"] = a.lastEventId;
  if (a.token) headers["Authorization"] = `Bearer ${a.token}`;
  let res: Response;
  try {
    res = await fetchFn(a.url, { headers, signal: a.signal, cache: "no-store" });
  } catch (e) {
    if (a.signal.aborted) return { kind: "aborted", opened: false };
    return { kind: "network", opened: false, message: String((e as Error)?.message ?? e) };
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
      /* already closed */
    }
    return { kind: "http", opened: false, status: 200, code: "not_event_stream", message: `expected text/event-stream, got ${type || "no content type"}` };
  }
  a.onOpen();
  const parser = new EventStreamParser(a.sink, a.lastEventId);
  const reader = res.body.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      parser.push(value);
    }
  } catch (e) {
    if (a.signal.aborted) return { kind: "aborted", opened: true };
    return { kind: "ended", opened: true, message: String((e as Error)?.message ?? e) };
  } finally {
    parser.end();
    reader.releaseLock();
  }
  return { kind: "ended", opened: true };
}

/** Whether streaming fetch works here (a response body that is a ReadableStream). */
export function canStreamFetch(): boolean {
  return typeof fetch === "function" && typeof ReadableStream === "function" && typeof Response === "function" && "body" in Response.prototype;
}

export function viaEventSource(a: Attempt): Promise<Outcome> {
  const u = new URL(a.url, (globalThis as { location?: { href: string } }).location?.href);
  if (a.lastEventId) u.searchParams.set("lastEventId", a.lastEventId);
  if (a.token) u.searchParams.set("access_token", a.token);
  return new Promise((resolve) => {
    const es = new EventSource(u.toString());
    let opened = false;
    const heard = new Set<string>();
    const onEvent = (e: Event) => {
      const m = e as MessageEvent;
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
    const relisten = setInterval(listen, 1000);
    const finish = (o: Outcome) => {
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
    // The browser would reconnect by itself, but with the old token and no say in the
    // delay: take over instead. It tells no status: every failure is worth retrying.
    es.onerror = () =>
      finish(opened ? { kind: "ended", opened: true } : { kind: "network", opened: false, message: "EventSource failed (no status visible)" });
  });
}
