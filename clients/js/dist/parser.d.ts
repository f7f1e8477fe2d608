/** A dispatched event, as an `EventSource` would fire it. */
export interface ParsedEvent {
    /** The `event:` field, or `message`. */
    type: string;
    /** The `data:` lines joined with `\n`. */
    data: string;
    /** The last event id at dispatch. */
    id: string;
}
export interface ParserSink {
    /** An event with data. */
    event(e: ParsedEvent): void;
    /** The last event id, at a dispatch without data (a heartbeat); an event's id comes
     * with the event, so that whoever keeps the id can keep it together with what the
     * event changed. */
    id(id: string): void;
    /** A valid `retry:` field, in milliseconds. */
    retry(ms: number): void;
}
export declare class EventStreamParser {
    private sink;
    private decoder;
    private buf;
    private first;
    private pendingCR;
    private data;
    private hasData;
    private type;
    private lastId;
    constructor(sink: ParserSink, lastId?: string);
    /** Feed bytes (or text, already decoded). */
    push(chunk: Uint8Array | string): void;
    /** The stream ended: an unterminated event is dropped, as the standard says. */
    end(): void;
    private line;
    private dispatch;
}
