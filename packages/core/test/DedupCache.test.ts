import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as FastCheck from "effect/FastCheck"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as TestClock from "effect/TestClock"
import * as DedupCache from "../src/DedupCache.js"
import * as DhtConfig from "../src/DhtConfig.js"
import * as DhtMetrics from "../src/DhtMetrics.js"
import * as NodeId from "../src/NodeId.js"

const hash = (i: number): Uint8Array => {
  const bytes = new Uint8Array(32)
  new DataView(bytes.buffer).setUint32(28, i)
  return bytes
}

const key = (i: number): NodeId.PublicKey => NodeId.PublicKey.make(hash(i + 1_000_000))

const alice = key(1)
const bob = key(2)

const withCache = (overrides: DhtConfig.Overrides = {}) =>
  Effect.provide(Layer.provide(DedupCache.layerMemory, DhtConfig.layer(DhtConfig.unsafeMake(overrides))))

const inserted = (hits: number) => DedupCache.DedupInsertResult.Inserted({ hits })
const full = DedupCache.DedupInsertResult.Full()

const trimmedTotal = Effect.map(Metric.value(DhtMetrics.dedupTrimmed), (s) => s.count)
const entriesGauge = Effect.map(Metric.value(DhtMetrics.dedupCacheEntries), (s) => s.value)

const MINUTE = 60_000
const HOUR = 60 * MINUTE

describe("DedupCache.layerMemory", () => {
  it.effect("counts hits per hash; the latest sender wins; keepUntil only grows", () =>
    Effect.gen(function*() {
      const cache = yield* DedupCache.DedupCache
      expect(yield* cache.hitCount(hash(1))).toBe(0)
      expect(yield* cache.insert(hash(1), alice, 5 * HOUR)).toEqual(inserted(1))
      yield* TestClock.adjust("1 minute")
      expect(yield* cache.insert(hash(1), bob, 2 * HOUR)).toEqual(inserted(2))
      expect(yield* cache.insert(hash(1), bob)).toEqual(inserted(3))
      expect(yield* cache.insert(hash(2), alice)).toEqual(inserted(1))
      expect(yield* cache.hitCount(hash(1))).toBe(3)
      expect(yield* cache.hitCount(hash(2))).toBe(1)
      expect(yield* cache.size).toBe(2)

      const entry = Option.getOrThrow(yield* cache.get(hash(1)))
      expect(entry.sender).toEqual(bob)
      expect(entry.storedAt).toBe(0)
      expect(entry.lastHitAt).toBe(MINUTE)
      // the shorter keepUntil of the later copy did not shorten it
      expect(entry.keepUntil).toBe(5 * HOUR)
    }).pipe(withCache()))

  it.effect("without a keepUntil an entry lives saf.msgValidity + clockSkewAllowance from its last hit", () =>
    Effect.gen(function*() {
      const cache = yield* DedupCache.DedupCache
      yield* TestClock.adjust("1 hour")
      yield* cache.insert(hash(1), alice)
      const entry = Option.getOrThrow(yield* cache.get(hash(1)))
      // defaults: 3 h validity + 10 min skew
      expect(entry.keepUntil).toBe(HOUR + 3 * HOUR + 10 * MINUTE)
      yield* TestClock.adjust("1 hour")
      yield* cache.insert(hash(1), alice)
      expect(Option.getOrThrow(yield* cache.get(hash(1))).keepUntil).toBe(2 * HOUR + 3 * HOUR + 10 * MINUTE)
    }).pipe(withCache()))

  it.effect("at capacity a new live message is Full and no live entry is evicted", () =>
    Effect.gen(function*() {
      const cache = yield* DedupCache.DedupCache
      for (const i of [1, 2, 3]) expect(yield* cache.insert(hash(i), alice)).toEqual(inserted(1))
      expect(yield* cache.insert(hash(4), alice)).toEqual(full)
      expect(yield* cache.insert(hash(4), alice)).toEqual(full)
      expect(yield* cache.size).toBe(3)
      for (const i of [1, 2, 3]) expect(yield* cache.hitCount(hash(i))).toBe(1)
      expect(yield* cache.hitCount(hash(4))).toBe(0)
      // copies of known messages are still counted
      expect(yield* cache.insert(hash(2), bob)).toEqual(inserted(2))
    }).pipe(withCache({ dedupCacheCapacity: 3 })))

  it.effect("once keepUntil has passed, a new insert replaces the dead entry with the smallest keepUntil", () =>
    Effect.gen(function*() {
      const cache = yield* DedupCache.DedupCache
      yield* cache.insert(hash(1), alice, 200)
      yield* cache.insert(hash(2), alice, 100)
      yield* cache.insert(hash(3), alice, 300)

      // keepUntil = now is still alive
      yield* TestClock.setTime(100)
      expect(yield* cache.insert(hash(4), alice, 10_000)).toEqual(full)

      yield* TestClock.setTime(101)
      expect(yield* cache.insert(hash(4), alice, 10_000)).toEqual(inserted(1))
      expect(yield* cache.hitCount(hash(2))).toBe(0)
      expect(yield* cache.hitCount(hash(1))).toBe(1)
      expect(yield* cache.hitCount(hash(3))).toBe(1)
      expect(yield* cache.size).toBe(3)

      // hash(1) is alive until 200, so the next one is Full again
      expect(yield* cache.insert(hash(5), alice, 10_000)).toEqual(full)
      yield* TestClock.setTime(201)
      expect(yield* cache.insert(hash(5), alice, 10_000)).toEqual(inserted(1))
      expect(yield* cache.hitCount(hash(1))).toBe(0)
    }).pipe(withCache({ dedupCacheCapacity: 3 })))

  it.effect("a hit that extends keepUntil keeps the entry alive past its first deadline", () =>
    Effect.gen(function*() {
      const cache = yield* DedupCache.DedupCache
      yield* cache.insert(hash(1), alice, 100)
      yield* cache.insert(hash(2), alice, 200)
      yield* cache.insert(hash(1), bob, 1_000)
      yield* TestClock.setTime(500)
      // hash(2) is the dead one now, not hash(1)
      expect(yield* cache.insert(hash(3), alice, 10_000)).toEqual(inserted(1))
      expect(yield* cache.hitCount(hash(1))).toBe(2)
      expect(yield* cache.hitCount(hash(2))).toBe(0)
      expect(yield* cache.trim).toBe(0)
    }).pipe(withCache({ dedupCacheCapacity: 2 })))

  it.effect("capacity 0 keeps nothing", () =>
    Effect.gen(function*() {
      const cache = yield* DedupCache.DedupCache
      expect(yield* cache.insert(hash(1), alice)).toEqual(full)
      expect(yield* cache.size).toBe(0)
    }).pipe(withCache({ dedupCacheCapacity: 0 })))

  it.effect("trim removes only dead entries, counts dedupTrimmed and updates the entries gauge", () =>
    Effect.gen(function*() {
      const cache = yield* DedupCache.DedupCache
      yield* cache.insert(hash(1), alice, 100)
      yield* cache.insert(hash(2), alice, 200)
      yield* cache.insert(hash(3), alice, 300)
      yield* cache.insert(hash(4), alice, 250)
      expect(yield* entriesGauge).toBe(4)

      const before = yield* trimmedTotal
      yield* TestClock.setTime(250)
      expect(yield* cache.trim).toBe(2)
      expect((yield* trimmedTotal) - before).toBe(2)
      expect(yield* entriesGauge).toBe(2)
      expect(yield* cache.size).toBe(2)
      expect(yield* cache.hitCount(hash(1))).toBe(0)
      expect(yield* cache.hitCount(hash(2))).toBe(0)
      expect(yield* cache.hitCount(hash(3))).toBe(1)
      // keepUntil = now (250) is not dead yet
      expect(yield* cache.hitCount(hash(4))).toBe(1)
      expect(yield* cache.trim).toBe(0)
      expect((yield* trimmedTotal) - before).toBe(2)

      // a trimmed hash starts again from one hit
      expect(yield* cache.insert(hash(1), alice)).toEqual(inserted(1))
    }).pipe(withCache()))

  it.effect("at 100,000 entries, each insert past the deadlines replaces the oldest dead entry", () =>
    Effect.gen(function*() {
      const cache = yield* DedupCache.DedupCache
      const n = 100_000
      for (let i = 0; i < n; i++) yield* cache.insert(hash(i), alice, i)
      expect(yield* cache.insert(hash(n), alice, 2 * n)).toEqual(full)
      // entries 0 … n/2 − 1 are dead at n/2
      yield* TestClock.setTime(n / 2)
      for (let i = 0; i < n / 2; i++) {
        expect(yield* cache.insert(hash(n + 1 + i), alice, 3 * n)).toEqual(inserted(1))
      }
      expect(yield* cache.insert(hash(2 * n), alice, 3 * n)).toEqual(full)
      expect(yield* cache.hitCount(hash(n / 2 - 1))).toBe(0)
      expect(yield* cache.hitCount(hash(n / 2))).toBe(1)
      expect(yield* cache.size).toBe(n)
    }).pipe(withCache({ dedupCacheCapacity: 100_000 })))
})

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
