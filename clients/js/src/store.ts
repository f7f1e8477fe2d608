// Where the last id is kept across reloads.

import type { PositionStore } from "./types.js";

/** A store over `sessionStorage` or `localStorage`; a no-op where it is missing or
 * refuses (private mode, quota). */
export function webStorage(kind: "session" | "local"): PositionStore {
  const storage = (): Storage | undefined => {
    try {
      const g = globalThis as { sessionStorage?: Storage; localStorage?: Storage };
      return kind === "session" ? g.sessionStorage : g.localStorage;
    } catch {
      return undefined;
    }
  };
  return {
    get(key) {
      try {
        return storage()?.getItem(key) ?? null;
      } catch {
        return null;
      }
    },
    set(key, id) {
      try {
        storage()?.setItem(key, id);
      } catch {
        /* full or refused: resuming after a reload is best effort */
      }
    },
  };
}

/** A store kept in memory (tests, Node processes that restart the subscription). */
export function memoryStore(): PositionStore & { entries: Map<string, string> } {
  const entries = new Map<string, string>();
  return {
    entries,
    get: (key) => entries.get(key) ?? null,
    set: (key, id) => {
      entries.set(key, id);
    },
  };
}
