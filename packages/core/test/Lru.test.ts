/**
 * The bounded map behind the verification memo, the NodeId memo and the peer-info memo: never more than its capacity,
 * never a stale value, and never forgetting a key that an exact LRU map of seven eighths of its capacity would still
 * hold (exactly an LRU map below a capacity of 8).
 */
import { describe, expect, it } from "@effect/vitest"
import { FastCheck as fc } from "effect"
import * as Lru from "../src/internal/lru.js"

type Op = { readonly _tag: "Get"; readonly key: number } | {
  readonly _tag: "Set"
  readonly key: number
  readonly value: number
}

const ops = (keys: number) =>
  fc.array(
    fc.oneof(
      fc.record({ _tag: fc.constant("Get" as const), key: fc.integer({ min: 0, max: keys - 1 }) }),
      fc.record({
        _tag: fc.constant("Set" as const),
        key: fc.integer({ min: 0, max: keys - 1 }),
        value: fc.integer()
      })
    ),
    { maxLength: 400 }
  )

// an exact LRU map: the `capacity` most recently used keys
const exact = (capacity: number) => {
  const map = new Map<string, number>()
  const touch = (key: string, value: number) => {
    map.delete(key)
    map.set(key, value)
    if (map.size > capacity) map.delete(map.keys().next().value!)
  }
  return {
    get: (key: string) => {
      const value = map.get(key)
      if (value !== undefined) touch(key, value)
      return value
    },
    set: touch
  }
}

const run = (capacity: number, keys: number) =>
  fc.property(ops(keys), (sequence: ReadonlyArray<Op>) => {
    const lru = Lru.make<number>(capacity)
    const floor = exact(capacity - Math.floor(capacity / 8))
    const same = exact(capacity)
    const last = new Map<string, number>()
    for (const op of sequence) {
      const key = `k${op.key}`
      if (op._tag === "Set") {
        lru.set(key, op.value)
        floor.set(key, op.value)
        same.set(key, op.value)
        last.set(key, op.value)
      } else {
        const got = lru.get(key)
        const held = floor.get(key)
        const exactly = same.get(key)
        if (got !== undefined) expect(got).toBe(last.get(key))
        if (held !== undefined) expect(got).toBe(held)
        if (capacity < 8) expect(got).toBe(exactly)
      }
      expect(lru.size()).toBeLessThanOrEqual(capacity)
    }
  })

describe("Lru", () => {
  it("below a capacity of 8 it is an exact LRU map", () => {
    for (const capacity of [1, 2, 3, 7]) fc.assert(run(capacity, capacity + 3), { numRuns: 300 })
  })

  it("holds at least what an exact LRU map of seven eighths of its capacity holds, and only current values", () => {
    for (const capacity of [8, 16, 40]) fc.assert(run(capacity, capacity + 4), { numRuns: 500 })
  })

  it("a hit within an eighth of the capacity of the entry's last move leaves it where it is", () => {
    // capacity 16, an eighth 2: "a" set, `between` other keys set, "a" hit, then `fresh` new keys set
    const afterHit = (between: number, fresh: number) => {
      const lru = Lru.make<number>(16)
      lru.set("a", 0)
      for (let i = 0; i < between; i++) lru.set(`b${i}`, i)
      expect(lru.get("a")).toBe(0)
      for (let i = 0; i < fresh; i++) lru.set(`n${i}`, i)
      return lru.get("a")
    }
    // 2 moves since "a"'s: the hit leaves it, so 14 new keys push it out (an exact LRU map of 14 forgets it too)
    expect(afterHit(2, 13)).toBe(0)
    expect(afterHit(2, 14)).toBeUndefined()
    // 3 moves since: the hit moves it to the back, and 14 new keys leave it in
    expect(afterHit(3, 14)).toBe(0)
  })

  it("keeps nothing at capacity 0", () => {
    const lru = Lru.make<number>(0)
    lru.set("a", 1)
    expect(lru.get("a")).toBeUndefined()
    expect(lru.size()).toBe(0)
  })
})
