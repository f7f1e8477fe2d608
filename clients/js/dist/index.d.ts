import { Subscription } from "./subscription.js";
import type { ConnectOptions } from "./types.js";
export { Subscription } from "./subscription.js";
export { EventStreamParser } from "./parser.js";
export type { ParsedEvent, ParserSink } from "./parser.js";
export { memoryStore, webStorage } from "./store.js";
export { backoffDelay, isFatal, retryAfter } from "./retry.js";
export type * from "./types.js";
/** Open a stream (a route's URL, or the multiplex path with `options.routes`) that
 * reconnects until closed, resuming from its last id every time. */
export declare function connect(url: string | URL, options?: ConnectOptions): Subscription;
