import type { ConnectOptions, EventMap, State, Stats, StreamEvent } from "./types.js";
type Listener<T> = (value: T) => void;
/** A stream that lives through errors, read with listeners or `for await`. */
export declare class Subscription implements AsyncIterable<StreamEvent> {
    private options;
    private listeners;
    private current;
    private lastId;
    private reconnectCount;
    private total;
    private buckets;
    private bucketSecond;
    private error;
    private serverRetry;
    private controller;
    private expired;
    private transportKind;
    private store;
    private storeKey;
    private routes;
    private url;
    private waiters;
    constructor(url: string | URL, options?: ConnectOptions);
    /** Listen to `event` (every event), `message`, a named event (`paid`; on a
     * multiplexed stream also `orders:paid`), `reset`, `expired`, `open`, `error` or
     * `state`. Returns a function that stops listening. */
    on<K extends keyof EventMap>(type: K, listener: Listener<EventMap[K]>): () => void;
    on(type: string, listener: Listener<StreamEvent>): () => void;
    /** Stop for good. */
    close(): void;
    get state(): State;
    get lastEventId(): string;
    get stats(): Stats;
    /** Every event, in order, until the subscription closes or fails. */
    [Symbol.asyncIterator](): AsyncIterator<StreamEvent>;
    private wake;
    private emit;
    private setState;
    private rate;
    private roll;
    private setId;
    private onParsed;
    private names;
    private run;
    /** Record an error; `quiet` ones (a stream that ended) are not emitted as `error`. */
    private fail;
    private sleep;
}
export {};
