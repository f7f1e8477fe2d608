/** Fatal answers: the request itself is wrong, retrying cannot help. */
export declare function isFatal(status: number): boolean;
/** `Retry-After` as milliseconds (seconds or an HTTP date), or undefined. */
export declare function retryAfter(value: string | null, now?: number): number | undefined;
/** Exponential backoff with jitter: attempt 0 waits about `initial`, each next one
 * twice as long up to `max`, less a random part of up to half. */
export declare function backoffDelay(attempt: number, initial: number, max: number, random?: () => number): number;
