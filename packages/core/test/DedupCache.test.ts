import { describe, expect, it } from "@effect/vitest"
import * as FastCheck from "effect/FastCheck"
import * as Option from "effect/Option"
import * as DedupCache from "../src/DedupCache.js"
import { alice, dedupCacheSuite, full, hash, inserted } from "./suites/dedupCacheSuite.js"

dedupCacheSuite("DedupCache.layerMemory", DedupCache.layerMemory)

// A direct transcription of the SPEC §8.2 table, with a linear search for the smallest keepUntil. Ties go to the
// entry whose keepUntil was set first, as in the index.
interface ModelEntry {
  hits: number
  keepUntil: number
  stamp: number
}

const model = (capacity: number, lifetime: number) => {
  const entries = new Map<number, ModelEntry>()
  let stamp = 0
  return {
    insert: (h: number, now: number, keepUntil: number | undefined): string => {
      const until = keepUntil ?? now + lifetime
      const present = entries.get(h)
      if (present) {
        present.hits += 1
        if (until > present.keepUntil) {
          present.keepUntil = until
          present.stamp = ++stamp
        }
        return `Inserted(${present.hits})`
      }
      if (entries.size >= capacity) {
        let victim: [number, ModelEntry] | undefined
        for (const e of entries) {
          if (
            victim === undefined || e[1].keepUntil < victim[1].keepUntil ||
            (e[1].keepUntil === victim[1].keepUntil && e[1].stamp < victim[1].stamp)
          ) victim = e
        }
        if (victim === undefined || !(victim[1].keepUntil < now)) return "Full"
        entries.delete(victim[0])
      }
      entries.set(h, { hits: 1, keepUntil: until, stamp: ++stamp })
      return "Inserted(1)"
    },
    trim: (now: number) => {
      let n = 0
      for (const [h, e] of entries) {
        if (e.keepUntil < now) {
          entries.delete(h)
          n++
        }
      }
      return n
    },
    hits: (h: number) => entries.get(h)?.hits ?? 0,
    size: () => entries.size
  }
}

const show = (r: DedupCache.DedupInsertResult) => r._tag === "Inserted" ? `Inserted(${r.hits})` : r._tag

const Op = FastCheck.oneof(
  FastCheck.record({
    op: FastCheck.constant("insert" as const),
    h: FastCheck.integer({ min: 0, max: 9 }),
    keepUntil: FastCheck.option(FastCheck.integer({ min: 0, max: 60 }), { nil: undefined })
  }),
  FastCheck.record({ op: FastCheck.constant("tick" as const), by: FastCheck.integer({ min: 0, max: 15 }) }),
  FastCheck.record({ op: FastCheck.constant("trim" as const) })
)

describe("DedupCache.makeIndex", () => {
  it.prop(
    "agrees with the SPEC table on every insert, hit count and trim",
    [FastCheck.integer({ min: 0, max: 5 }), FastCheck.array(Op, { maxLength: 80 })],
    ([capacity, ops]) => {
      const lifetime = 20
      const index = DedupCache.makeIndex({ capacity, defaultLifetimeMs: lifetime })
      const reference = model(capacity, lifetime)
      let now = 0
      for (const step of ops) {
        if (step.op === "tick") now += step.by
        else if (step.op === "trim") expect(index.trim(now).length).toBe(reference.trim(now))
        else {
          expect(show(index.insert(hash(step.h), alice, now, step.keepUntil).result))
            .toBe(reference.insert(step.h, now, step.keepUntil))
        }
        expect(index.size()).toBe(reference.size())
        for (let h = 0; h < 10; h++) expect(index.hitCount(hash(h))).toBe(reference.hits(h))
      }
    },
    { fastCheck: { numRuns: 1_000 } }
  )

  it("rebuilds its heap when raised keepUntils leave stale slots behind, without losing order", () => {
    const index = DedupCache.makeIndex({ capacity: 2, defaultLifetimeMs: 0 })
    index.insert(hash(1), alice, 0, 1)
    index.insert(hash(2), alice, 0, 5_000)
    // thousands of hits, each raising keepUntil, compact the heap several times
    for (let t = 2; t < 4_000; t++) index.insert(hash(1), alice, 0, t)
    expect(index.insert(hash(3), alice, 3_999, 10_000).result).toEqual(full)
    expect(index.insert(hash(3), alice, 4_000, 10_000).result).toEqual(inserted(1))
    expect(index.hitCount(hash(1))).toBe(0)
    expect(index.hitCount(hash(2))).toBe(1)
  })

  it("one hash array shared by several caches, and copies of it, count alike in each", () => {
    // a simulation's nodes look one broadcast's hash array up in every cache
    const shared = hash(7)
    const first = DedupCache.makeIndex({ capacity: 4, defaultLifetimeMs: 10 })
    const second = DedupCache.makeIndex({ capacity: 4, defaultLifetimeMs: 10 })
    expect(first.insert(shared, alice, 0).result).toEqual(inserted(1))
    expect(second.hit(shared, alice, 0)).toBeUndefined()
    expect(first.hit(hash(7), alice, 1)).toBe(2)
    expect(second.insert(hash(7), alice, 1).result).toEqual(inserted(1))
    expect(second.hit(shared, alice, 2)).toBe(2)
    expect(first.hit(shared, alice, 2)).toBe(3)
    expect([first.hitCount(hash(7)), second.hitCount(shared)]).toEqual([3, 2])
    expect(first.hit(hash(8), alice, 2)).toBeUndefined()
  })

  it("restore puts an entry back as it was", () => {
    const index = DedupCache.makeIndex({ capacity: 1, defaultLifetimeMs: 10 })
    const outcome = index.insert(hash(1), alice, 0)
    const added = Option.getOrThrow(outcome.added)
    expect(index.remove(hash(1))).toBe(true)
    expect(index.size()).toBe(0)
    index.restore(added)
    expect(index.get(hash(1))).toEqual(added)
    expect(index.insert(hash(2), alice, 5).result).toEqual(full)
    expect(index.trim(11).map((e) => e.hits)).toEqual([1])
  })
})
