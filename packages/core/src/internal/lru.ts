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
  // Each entry carries the tick of its last move to the back. A hit on an entry moved within the last
  // `capacity / 8` ticks stays where it is: on a memo of tens of thousands of entries the delete and the insert of
  // every hit were most of a lookup's cost, and a hot entry is hit again and again. So an entry is kept until
  // `capacity` insertions or moves have happened since its last move, and at least `capacity − capacity / 8` since
  // its last use: least recently used to within an eighth (exactly, below a capacity of 8).
  const map = new Map<string, { value: V; tick: number }>()
  const bound = Math.max(0, Math.floor(capacity))
  const slack = Math.floor(bound / 8)
  let tick = 0
  const toBack = (key: string, value: V) => {
    map.delete(key)
    map.set(key, { value, tick: ++tick })
  }
  return {
    capacity: bound,
    get: (key) => {
      const entry = map.get(key)
      if (entry === undefined) return undefined
      if (tick - entry.tick > slack) toBack(key, entry.value)
      return entry.value
    },
    set: (key, value) => {
      if (bound === 0) return
      toBack(key, value)
      if (map.size > bound) {
        const oldest = map.keys().next()
        if (oldest.done !== true) map.delete(oldest.value)
      }
    },
    size: () => map.size
  }
}
