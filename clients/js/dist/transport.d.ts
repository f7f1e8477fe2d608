import { type ParserSink } from "./parser.js";
/** How a connection attempt ended. */
export type Outcome = 
/** The stream ended (the server closed it, or the connection broke after it opened). */
{
    kind: "ended";
    opened: true;
    message?: string;
}
/** An answer other than a stream. */
 | {
    kind: "http";
    opened: false;
    status: number;
    code: string;
    message: string;
    retryAfter?: number;
}
/** No answer (refused, reset, DNS, TLS). */
 | {
    kind: "network";
    opened: false;
    message: string;
}
/** `close()` or the signal. */
 | {
    kind: "aborted";
    opened: boolean;
};
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
export declare function viaFetch(a: Attempt, fetchFn: typeof fetch): Promise<Outcome>;
/** Whether streaming fetch works here (a response body that is a ReadableStream). */
export declare function canStreamFetch(): boolean;
export declare function viaEventSource(a: Attempt): Promise<Outcome>;
