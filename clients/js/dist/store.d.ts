import type { PositionStore } from "./types.js";
/** A store over `sessionStorage` or `localStorage`; a no-op where it is missing or
 * refuses (private mode, quota). */
export declare function webStorage(kind: "session" | "local"): PositionStore;
/** A store kept in memory (tests, Node processes that restart the subscription). */
export declare function memoryStore(): PositionStore & {
    entries: Map<string, string>;
};
