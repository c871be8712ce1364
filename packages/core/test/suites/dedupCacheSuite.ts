/**
 * The `DedupCache` cases (SPEC §8.2, scenario 43) every implementation must pass: core runs them on `layerMemory`,
 * `@comms-dht/store` on its sqlite cache. Imports core by package name so that both packages' tests resolve the same
 * modules.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as TestClock from "effect/TestClock"
import * as DedupCache from "@comms-dht/core/DedupCache"
import * as DhtConfig from "@comms-dht/core/DhtConfig"
import * as DhtMetrics from "@comms-dht/core/DhtMetrics"
import * as NodeId from "@comms-dht/core/NodeId"

/** A 32-byte message hash numbered `i`. */
export const hash = (i: number): Uint8Array => {
  const bytes = new Uint8Array(32)
  new DataView(bytes.buffer).setUint32(28, i)
  return bytes
}

const key = (i: number): NodeId.PublicKey => NodeId.PublicKey.make(hash(i + 1_000_000))

/** A sender key. */
export const alice = key(1)
const bob = key(2)

/** The expected insert outcomes. */
export const inserted = (hits: number) => DedupCache.DedupInsertResult.Inserted({ hits })
export const full = DedupCache.DedupInsertResult.Full()

const trimmedTotal = Effect.map(Metric.value(DhtMetrics.dedupTrimmed), (s) => s.count)
const entriesGauge = Effect.map(Metric.value(DhtMetrics.dedupCacheEntries), (s) => s.value)

const MINUTE = 60_000
const HOUR = 60 * MINUTE

/**
 * Declares the `DedupCache` cases under `name`. `layer` must build a fresh, empty store each time it is provided; the
 * suite supplies the `DhtConfig` each case needs.
 */
export const dedupCacheSuite = <E>(name: string, layer: Layer.Layer<DedupCache.DedupCache, E>): void => {
  const withCache = (overrides: DhtConfig.Overrides = {}) =>
    Effect.provide(Layer.provide(layer, DhtConfig.layer(DhtConfig.unsafeMake(overrides))))

  describe(name, () => {
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

    it.effect("unsafeRecordHit counts a copy of a held hash as insert does, and leaves an absent hash to insert", () =>
      Effect.gen(function*() {
        const cache = yield* DedupCache.DedupCache
        // absent: nothing recorded, so the copy must go through insert (a write, for a persistent cache)
        expect(cache.unsafeRecordHit(hash(1), alice, 0, 5 * HOUR)).toBeUndefined()
        expect(yield* cache.hitCount(hash(1))).toBe(0)
        expect(yield* cache.size).toBe(0)
        expect(yield* cache.insert(hash(1), alice, 5 * HOUR)).toEqual(inserted(1))
        yield* TestClock.adjust("1 minute")
        expect(cache.unsafeRecordHit(hash(1), bob, MINUTE, 2 * HOUR)).toBe(2)
        expect(cache.unsafeRecordHit(hash(1), bob, MINUTE, 7 * HOUR)).toBe(3)
        // insert goes on from the hits recorded without it
        expect(yield* cache.insert(hash(1), alice, HOUR)).toEqual(inserted(4))
        const entry = Option.getOrThrow(yield* cache.get(hash(1)))
        expect(entry.sender).toEqual(alice)
        expect(entry.lastHitAt).toBe(MINUTE)
        // the longer keepUntil of a recorded hit was kept, the shorter ones never shortened it
        expect(entry.keepUntil).toBe(7 * HOUR)
        expect(yield* cache.size).toBe(1)
      }).pipe(withCache()))

    it.effect("unsafeInsert records as insert does, sets the entries gauge, or leaves the insert to insert", () =>
      Effect.gen(function*() {
        const cache = yield* DedupCache.DedupCache
        const unsafeInsert = cache.unsafeInsert
        if (unsafeInsert === undefined) return
        const now = 0
        const answered: Array<DedupCache.DedupInsertResult> = []
        // 200 new hashes: whatever the cache cannot record at once (a batch to write) it leaves to insert
        for (let i = 1; i <= 200; i++) {
          const quick = unsafeInsert(hash(i), alice, now, 5 * HOUR, [])
          answered.push(quick ?? (yield* cache.insert(hash(i), alice, 5 * HOUR)))
        }
        expect(answered).toEqual(Array.from({ length: 200 }, () => inserted(1)))
        expect(yield* cache.size).toBe(200)
        expect(yield* entriesGauge).toBe(200)
        // a copy of a held hash is a hit, never left to insert
        expect(unsafeInsert(hash(7), bob, now, 6 * HOUR, [])).toEqual(inserted(2))
        const entry = Option.getOrThrow(yield* cache.get(hash(7)))
        expect(entry.sender).toEqual(bob)
        expect(entry.keepUntil).toBe(6 * HOUR)
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
}
