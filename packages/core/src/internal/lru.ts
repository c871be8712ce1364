/** @internal */

/**
 * @internal
 * A bounded map that forgets its least recently used entry. Synchronous and mutable on purpose: it sits on the
 * verification and key-import paths, where a persistent structure would cost more than the work it saves. Only
 * touched from inside `Effect.sync` by the service that owns it.
 */
export interface Lru<V> {
  readonly capacity: number
  readonly get: (key: string) => V | undefined
  readonly set: (key: string, value: V) => void
  readonly size: () => number
}

/** @internal a capacity of 0 or less keeps nothing */
export const make = <V>(capacity: number): Lru<V> => {
  const map = new Map<string, V>()
  const bound = Math.max(0, Math.floor(capacity))
  return {
    capacity: bound,
    get: (key) => {
      const value = map.get(key)
      if (value !== undefined) {
        map.delete(key)
        map.set(key, value)
      }
      return value
    },
    set: (key, value) => {
      if (bound === 0) return
      map.delete(key)
      map.set(key, value)
      if (map.size > bound) {
        const oldest = map.keys().next()
        if (oldest.done !== true) map.delete(oldest.value)
      }
    },
    size: () => map.size
  }
}
