// The event stream format of the WHATWG HTML standard ("9.2.6 Interpreting an event
// stream"), fed bytes as they arrive: UTF-8 decoding across chunk boundaries, a leading
// BOM dropped, lines ended by CRLF, LF or CR (a CR at the end of a chunk waits for the
// next one), comments, `event`, `data`, `id` (ignored when it holds NULL) and `retry`
// (digits only). Like a browser, it sets the last event id at every dispatch, also for
// an event with no data (sse-bridge's heartbeats are id-only: they move the position):
// an event carries its id, a dispatch without data reports the id alone.

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

export class EventStreamParser {
  private decoder = new TextDecoder("utf-8");
  private buf = "";
  private first = true;
  private pendingCR = false;
  private data = "";
  private hasData = false;
  private type = "";
  private lastId: string;

  constructor(private sink: ParserSink, lastId = "") {
    this.lastId = lastId;
  }

  /** Feed bytes (or text, already decoded). */
  push(chunk: Uint8Array | string): void {
    let text = typeof chunk === "string" ? chunk : this.decoder.decode(chunk, { stream: true });
    if (this.first && text.length > 0) {
      this.first = false;
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
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
  end(): void {
    this.buf = "";
    this.data = "";
    this.hasData = false;
    this.type = "";
  }

  private line(line: string): void {
    if (line === "") {
      this.dispatch();
      return;
    }
    if (line.charCodeAt(0) === 58 /* ':' */) return;
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
        if (!value.includes("\u0000")) this.lastId = value;
        break;
      case "retry":
        if (/^[0-9]+$/.test(value)) this.sink.retry(parseInt(value, 10));
        break;
      default:
        break;
    }
  }

  private dispatch(): void {
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
}
