/** Where a subscription is. */
export type State = 
/** Opening a connection (or waiting for a token). */
"connecting"
/** Connected: events flow. */
 | "open"
/** Disconnected; reconnecting after a delay. */
 | "retrying"
/** Closed by `close()` or its `signal`. */
 | "closed"
/** Stopped for good on a fatal answer (400, 403, 404, ...): see `stats.lastError`. */
 | "failed";
/** An event of the stream. */
export interface StreamEvent {
    /** The event name (`message` when the stream names none); on a multiplexed stream,
     * without its `route:` prefix. */
    type: string;
    /** The event's data. */
    data: string;
    /** The event's id: the position after it, to resume from. */
    id: string;
    /** The route it came from, on a multiplexed stream (`connect` with `routes`). */
    route?: string;
    /** `data` parsed as JSON (undefined when it is not JSON). */
    json<T = unknown>(): T | undefined;
}
/** One partition (or a run of partitions) in a Kafka reset. */
export interface ResetPartition {
    topic: string;
    partition: number;
    /** The last partition of a run of missing partitions. */
    through?: number;
    requested: number | null;
    earliest: number;
    latest: number;
    resumed_from: number;
    reason: string;
}
/** `event: reset`: the position asked for could not be served; the stream continues
 * from what is available. Kafka routes list partitions, MongoDB routes say what was
 * asked and where the stream resumed. */
export interface ResetInfo {
    reason: string;
    route?: string;
    partitions?: ResetPartition[];
    omitted?: number;
    [field: string]: unknown;
}
/** `event: expired`: the token expired; the client gets a new one and resumes. */
export interface ExpiredInfo {
    reason: string;
    [field: string]: unknown;
}
/** Why a connection attempt or a stream failed. */
export interface StreamError {
    /** HTTP status, or 0 for a network error. */
    status: number;
    /** The bridge's error code (`over_capacity`, `unauthorized`, ...) or `network_error`,
     * `stream_ended`, `not_event_stream`. */
    code: string;
    message: string;
    /** Whether the client stops (400, 403, 404, ...) rather than retrying. */
    fatal: boolean;
    /** When the next attempt is made (ms from now), unless fatal. */
    retryIn?: number;
}
/** What a UI shows about a subscription. */
export interface Stats {
    state: State;
    /** The last id received (events and heartbeats). */
    lastEventId: string;
    /** Connections made after the first. */
    reconnects: number;
    /** Events per second over the last 10 seconds. */
    eventsPerSecond: number;
    /** Events received in all. */
    events: number;
    lastError: StreamError | null;
    /** Which transport is in use. */
    transport: "fetch" | "eventsource";
}
/** Keeps the last id across page reloads or process restarts. */
export interface PositionStore {
    get(key: string): string | null | undefined | Promise<string | null | undefined>;
    set(key: string, id: string): void | Promise<void>;
}
export interface ConnectOptions {
    /** Routes of a multiplexed stream: `url` is the multiplex path (e.g.
     * `https://bridge/streams`); events come per route (`event.route`). */
    routes?: string[];
    /** Called before each connection: the bearer token to send (`Authorization` header;
     * `access_token` query with the EventSource transport). `reason` says why: a plain
     * (re)connect, or a token the bridge refused (`unauthorized`) or let expire
     * (`expired`), when a cached token must not be returned again. */
    getToken?: (context: {
        reason: "connect" | "unauthorized" | "expired";
    }) => string | null | undefined | Promise<string | null | undefined>;
    /** Resume from this id (else from the persisted one, else the route's `start`). */
    lastEventId?: string;
    /** Keep the last id: `"session"` (sessionStorage: survives reloads of the tab),
     * `"local"` (localStorage), or a store of your own. Default: not kept. */
    persist?: "session" | "local" | PositionStore;
    /** The key of the kept id (default: the URL with its routes). */
    persistKey?: string;
    /** `"fetch"` (streaming fetch: headers, status codes), `"eventsource"`, or `"auto"`
     * (default): fetch where a response body can be streamed, else EventSource. */
    transport?: "auto" | "fetch" | "eventsource";
    /** Reconnection delays: the first (default: the stream's `retry:`, else 1000 ms), the
     * most (default 30000 ms), each attempt multiplying by 2, with up to half of each
     * delay taken off at random so clients do not return all at once. */
    backoff?: {
        initial?: number;
        max?: number;
    };
    /** Extra request headers (fetch transport). */
    headers?: Record<string, string>;
    /** Stops the subscription when aborted. */
    signal?: AbortSignal;
    /** The fetch to use (default: the global one). */
    fetch?: typeof fetch;
}
export interface EventMap {
    /** Every event of the stream, whatever its name. */
    event: StreamEvent;
    /** Events named `message` (no `event:` line). */
    message: StreamEvent;
    /** A reset, with its JSON. */
    reset: ResetInfo & {
        event: StreamEvent;
    };
    /** The token expired; a new one is being fetched. */
    expired: ExpiredInfo & {
        event: StreamEvent;
    };
    /** A connection opened. */
    open: {
        reconnect: boolean;
    };
    /** A connection failed or a stream ended with an error. */
    error: StreamError;
    /** The state changed. */
    state: State;
    /** The last id moved (with an event, or a heartbeat's position). */
    id: string;
}
