// When to try again.

/** Fatal answers: the request itself is wrong, retrying cannot help. */
export function isFatal(status: number): boolean {
  return status === 400 || status === 403 || status === 404 || status === 405 || status === 410 || status === 431 || status === 204;
}

/** `Retry-After` as milliseconds (seconds or an HTTP date), or undefined. */
export function retryAfter(value: string | null, now = Date.now()): number | undefined {
  if (!value) return undefined;
  const v = value.trim();
  if (/^[0-9]+$/.test(v)) return parseInt(v, 10) * 1000;
  const at = Date.parse(v);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/** Exponential backoff with jitter: attempt 0 waits about `initial`, each next one
 * twice as long up to `max`, less a random part of up to half. */
export function backoffDelay(attempt: number, initial: number, max: number, random = Math.random): number {
  const full = Math.min(max, initial * 2 ** Math.min(attempt, 30));
  return Math.round(full / 2 + (full / 2) * random());
}
